"""The local stack's plan without starting it: which programs, from which start scripts, on which
ports, with what supervisord configuration (fast; the end-to-end run is test_local_stack.py)."""

from __future__ import annotations

import configparser
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TAKEN = {5432, 6379, 5672, 8080}


@pytest.fixture
def stack(tmp_path, monkeypatch):
    from mbats.config import reset_settings_cache
    from mbats.stack.local import Stack

    monkeypatch.chdir(tmp_path)  # no stray .env
    for name in ("AIRFLOW_ADMIN_PASSWORD", "SUPERSET_ADMIN_PASSWORD", "SUPERSET_SECRET_KEY",
                 "MLFLOW_ADMIN_PASSWORD", "MLFLOW_SECRET_KEY", "MBATS_SUPERSET_DB_PASSWORD"):
        monkeypatch.setenv(name, f"{name.lower()}-value%x")
    monkeypatch.setenv("MBATS_STACK_DIR", str(tmp_path / "stack"))
    monkeypatch.delenv("MBATS_OANDA_TOKEN", raising=False)
    reset_settings_cache()
    yield Stack.load()
    reset_settings_cache()


def test_programs_use_the_service_start_scripts_and_their_own_venvs(stack):
    programs = {p.name: p for p in stack.programs()}
    assert set(programs) == {"s3", "mlflow", "airflow-api-server", "airflow-scheduler", "airflow-dag-processor",
                             "superset", "oanda-sim"}
    assert programs["mlflow"].command[-1] == str(ROOT / "services" / "mlflow" / "start.sh")
    # Superset through the init-stamp wrapper: start.sh init only when its inputs changed, then start.sh serve
    assert programs["superset"].command == [str(ROOT / ".cache" / "venv" / "bin" / "python"), "-m",
                                            "mbats.stack.superset_start", str(stack.state)]
    assert programs["oanda-sim"].command == [str(ROOT / "services" / "oanda-sim" / "start.sh")]
    for name in ("airflow-api-server", "airflow-scheduler", "airflow-dag-processor"):
        assert programs[name].command == [str(ROOT / "services" / "airflow" / "start.sh"), name.split("-", 1)[1]]
        assert programs[name].env["PATH"].startswith(str(ROOT / ".cache" / "venv-airflow" / "bin"))
        assert programs[name].env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
        assert programs[name].extra["autostart"] == "false"  # `up` starts them after `airflow db migrate`
    assert programs["superset"].env["SUPERSET_BIN_DIR"] == str(ROOT / ".cache" / "venv-superset" / "bin")
    assert programs["s3"].command[:2] == [str(ROOT / ".cache" / "venv" / "bin" / "weed"), "mini"]
    # without an OANDA token everything talks to the simulator, with one shared token
    assert programs["airflow-scheduler"].env["MBATS_OANDA_ENVIRONMENT"] == "sim"
    assert programs["airflow-scheduler"].env["MBATS_OANDA_TOKEN"] == programs["oanda-sim"].env["MBATS_OANDA_TOKEN"]
    assert "basic-auth" in programs["mlflow"].env["MLFLOW_EXTRA_ARGS"]


def test_ports_come_from_the_settings_and_avoid_the_usual_defaults(stack, monkeypatch):
    from mbats.stack.local import Stack

    ports = set()
    for prog in stack.programs():
        for arg in prog.command:
            m = re.fullmatch(r"-[\w.]*[pP]ort[\w.]*=(\d+)", arg)
            if m and int(m.group(1)):  # 0 switches a listener off
                ports.add(int(m.group(1)))
    ports |= {stack.stack.mlflow_port, stack.stack.airflow_port, stack.stack.superset_port, stack.sim_port,
              stack.stack.supervisor_port, stack.stack.airflow_log_port, stack.settings.embedded_pg_port}
    assert not ports & TAKEN and len(ports) >= 18
    monkeypatch.setenv("MBATS_STACK_AIRFLOW_PORT", "28123")
    again = {p.name: p for p in Stack.load().programs()}
    assert again["airflow-api-server"].health == "http://127.0.0.1:28123/api/v2/monitor/health"
    assert again["airflow-api-server"].env["AIRFLOW_API_PORT"] == "28123"


def test_supervisord_conf_has_one_log_per_service_and_stops_process_groups(stack):
    stack.logs.mkdir(parents=True, exist_ok=True)
    stack.write_conf(stack.programs())
    assert stack.conf.stat().st_mode & 0o077 == 0  # it holds the passwords
    conf = configparser.RawConfigParser()
    conf.read(stack.conf)
    programs = [s for s in conf.sections() if s.startswith("program:")]
    assert len(programs) == 7
    for section in programs:
        assert conf[section]["stdout_logfile"] == str(stack.logs / f"{section.split(':')[1]}.log")
        assert conf[section]["stopasgroup"] == conf[section]["killasgroup"] == "true"
    assert conf["inet_http_server"]["port"] == f"127.0.0.1:{stack.stack.supervisor_port}"
    # %-signs in secrets are escaped for supervisord's expansion
    assert "airflow_admin_password-value%%x" in conf["program:airflow-scheduler"]["environment"]
    password = conf["supervisorctl"]["password"]
    stack.write_conf(stack.programs())  # rewriting keeps the control password of a running supervisord
    conf.read(stack.conf)
    assert conf["supervisorctl"]["password"] == password


def test_up_refuses_without_the_secrets(stack, monkeypatch):
    from mbats.errors import ConfigError
    from mbats.stack.local import Stack

    monkeypatch.delenv("SUPERSET_SECRET_KEY")
    with pytest.raises(ConfigError, match="SUPERSET_SECRET_KEY.*make env"):
        Stack.load().up(echo=lambda *_: None)


def test_each_service_connects_as_its_own_role(stack):
    """No program gets the superuser: a role per service (mbats.stack.dbroles), passwords kept 0600."""
    from urllib.parse import urlparse

    programs = {p.name: p for p in stack.programs()}
    users = {
        "airflow": urlparse(programs["airflow-scheduler"].env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]).username,
        "airflow tasks": urlparse(programs["airflow-scheduler"].env["MBATS_DATABASE_URL"]).username,
        "mlflow": urlparse(programs["mlflow"].env["MLFLOW_BACKEND_STORE_URI"]).username,
        "superset": urlparse(programs["superset"].env["SUPERSET_DATABASE_URI"]).username,
        "dashboards": urlparse(programs["superset"].env["MBATS_SUPERSET_DATA_URL"]).username,
        "simulator": urlparse(programs["oanda-sim"].env["MBATS_DATABASE_URL"]).username,
        "client.env": urlparse(stack.client_env()["MBATS_DATABASE_URL"]).username,
    }
    assert users == {"airflow": "airflow", "airflow tasks": "mbats_tasks", "mlflow": "mlflow", "superset": "superset",
                     "dashboards": "mbats_superset", "simulator": "mbats_sim", "client.env": "mbats_tasks"}
    assert "MBATS_DATABASE_URL" not in programs["mlflow"].env  # MLflow needs no platform database
    passwords = stack.state / "db_passwords.json"
    assert passwords.stat().st_mode & 0o077 == 0
    assert stack.programs()[1].env == programs["mlflow"].env  # generated once, then the same


def test_stack_status_names_the_ports_it_uses_and_the_compose_ones_it_does_not(stack, monkeypatch, capsys):
    from mbats.stack.local import print_urls

    monkeypatch.setenv("AIRFLOW_PORT", "8081")
    print_urls(stack)
    out = capsys.readouterr().out
    assert f"http://127.0.0.1:{stack.stack.airflow_port}" in out and "MBATS_STACK_AIRFLOW_PORT" in out
    assert "Not used by the local stack (docker compose's published ports): AIRFLOW_PORT=8081" in out


def test_superset_init_digest_follows_its_inputs(tmp_path, monkeypatch):
    """The stamp that lets a warm start skip Superset's init changes with a setting or a bundle file."""
    import shutil

    from mbats.stack import superset_start

    service = tmp_path / "superset"
    shutil.copytree(ROOT / "services" / "superset", service, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(superset_start, "SERVICE", service)
    env = {"SUPERSET_BIN_DIR": str(ROOT / ".cache" / "venv-superset" / "bin"), "SUPERSET_ADMIN_PASSWORD": "a",
           "SUPERSET_DATABASE_URI": "postgresql://nobody:x@127.0.0.1:1/superset"}
    first = superset_start.init_digest(env)
    assert superset_start.init_digest(env) == first
    assert superset_start.init_digest(env | {"SUPERSET_ADMIN_PASSWORD": "b"}) != first
    (service / "__pycache__").mkdir()
    (service / "__pycache__" / "x.pyc").write_bytes(b"cache")  # byte code is not an input
    assert superset_start.init_digest(env) == first
    chart = next(service.glob("bundle/**/*.yaml"))
    chart.write_text(chart.read_text() + "\n# changed\n")
    assert superset_start.init_digest(env) != first


def test_wait_healthy_sees_each_service_while_another_one_hangs_and_makes_the_buckets_once_s3_answers(stack):
    """A gunicorn still loading its worker accepts connections and answers late: its probe must not
    hide the services that are ready, and the buckets are made as soon as S3 answers."""
    import threading

    from mbats.stack.local import Program

    released, buckets, said = threading.Event(), [], []
    programs = [Program("superset", [], {}, "http://superset/health"), Program("s3", [], {}, "http://s3"),
                Program("mlflow", [], {}, "http://mlflow/health")]

    def healthy(prog) -> bool:
        if prog.name == "superset":
            released.wait(30)  # loading: answers only once the others were seen and the buckets made
            return released.is_set()
        return True

    def release_once_the_rest_is_ready() -> None:
        if buckets and {"s3: healthy at http://s3", "mlflow: healthy at http://mlflow/health"} <= set(said):
            released.set()

    def make_buckets() -> None:
        buckets.append(released.is_set())
        release_once_the_rest_is_ready()

    def echo(message: str) -> None:
        said.append(message)
        release_once_the_rest_is_ready()

    class Supervisor:
        @staticmethod
        def getAllProcessInfo():
            return [{"name": p.name, "statename": "RUNNING", "start": 1, "now": 2} for p in programs]

    stack.programs = lambda: programs
    stack.healthy = healthy
    stack._rpc = lambda: type("Rpc", (), {"supervisor": Supervisor})()
    stack._ensure_buckets = make_buckets
    stack._wait_healthy(120, echo)  # raises if superset never answers (its probe hid the others)
    assert said[-1] == "superset: healthy at http://superset/health", said
    assert buckets == [False]  # made once, while superset was still loading


def test_wait_healthy_stops_at_a_service_that_died_with_its_log(stack):
    from mbats.errors import ServiceUnavailableError
    from mbats.stack.local import Program

    stack.logs.mkdir(parents=True, exist_ok=True)
    (stack.logs / "mlflow.log").write_text("ModuleNotFoundError: No module named 'mlflow'\n")
    stack.programs = lambda: [Program("mlflow", [], {}, "http://mlflow/health")]
    stack.healthy = lambda prog: False
    stack._rpc = lambda: type("Rpc", (), {"supervisor": type("S", (), {"getAllProcessInfo": staticmethod(
        lambda: [{"name": "mlflow", "statename": "FATAL", "start": 1, "now": 2}])})})()
    with pytest.raises(ServiceUnavailableError, match="(?s)mlflow is FATAL.*No module named 'mlflow'"):
        stack._wait_healthy(120, print)
