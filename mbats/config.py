"""One settings object for the whole platform, read from the environment and `.env`.

Every variable is prefixed with ``MBATS_`` (see `.env.example`). With nothing set, MBATS runs on
embedded defaults: a PostgreSQL started from a pip wheel under ``MBATS_HOME`` and MLflow
artifacts on local disk.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="MBATS_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    home: Path = Field(PROJECT_ROOT / ".mbats", description="Local state: embedded Postgres, artifacts, reports")

    # --- Postgres -------------------------------------------------------------------------
    database_url: str | None = Field(
        None,
        description="Server URL without a database name, e.g. postgresql://user:pw@host:5432. "
        "Unset: start the embedded PostgreSQL.",
    )
    embedded_pg_port: int = Field(54329, ge=1024, le=65535, description="TCP port of the embedded PostgreSQL (127.0.0.1 only)")
    secmaster_db: str = "secmaster"
    risk_db: str = "risk"
    mlflow_db: str = "mlflow"

    runner_db_password: SecretStr | None = Field(
        None, description="Password of the mbats_runner role (reads bars, writes runs); unset: it cannot log in")
    loader_db_password: SecretStr | None = Field(
        None, description="Password of the mbats_loader role (writes bars); unset: it cannot log in")
    sim_db_password: SecretStr | None = Field(
        None, description="Password of the mbats_sim role (reads bars only); unset: it cannot log in")

    # --- money ---------------------------------------------------------------------------
    account_currency: str = Field(
        "USD", pattern=r"^[A-Z]{3}$",
        description="Currency runs are booked in (P&L and costs converted at the rate of the moment)")

    # --- MLflow / artifacts ----------------------------------------------------------------
    mlflow_tracking_uri: str | None = Field(
        None, description="MLflow server URL. Unset: track straight into the `mlflow` database."
    )
    mlflow_experiment: str = "mbats-backtests"
    s3_endpoint: str | None = Field(None, description="S3/MinIO endpoint, e.g. http://127.0.0.1:9000")
    s3_access_key: str | None = None
    s3_secret_key: SecretStr | None = None
    s3_region: str = "us-east-1"
    s3_bucket_artifacts: str = Field("mlflow", description="Bucket the MLflow server proxies artifacts to")
    s3_bucket_datasets: str = Field("datasets", description="Bucket for training datasets")
    s3_bucket_reports: str = Field("reports", description="Bucket for reports")

    # --- machine learning ------------------------------------------------------------------
    ml_model_name: str = Field("mbats-fx-direction", description="Registered model the ML strategy trades on")
    ml_experiment: str = Field("mbats-models", description="MLflow experiment of training runs")

    # --- strategies ------------------------------------------------------------------------
    strategies_dir: Path = Field(PROJECT_ROOT / "strategies", description="Folder of strategy modules")

    # --- research sweeps -------------------------------------------------------------------
    compiled_core: bool = Field(
        True, description="Score sweeps with the numba-compiled core (false: the pure-numpy fallback, same results)"
    )

    # --- orchestration (Airflow) and dashboards ----------------------------------------------
    airflow_db: str = Field("airflow", description="Database of Airflow's metadata on the platform's PostgreSQL")
    worker_name: str | None = Field(
        None, description="Host name an Airflow worker reports (several workers on one host); unset: the FQDN")
    strategy_queue: str = Field(
        "strategy_runner", description="Celery queue of the strategy-runner workers (backtests, sweeps, live)")
    airflow_preload: str = Field(
        "mbats.research.sweep,mbats.risk.store",
        description="Modules the Airflow scheduler (LocalExecutor) and Celery workers import before forking tasks "
        "(services/airflow/airflow_local_settings.py); empty: none")
    deployments_file: Path | None = Field(
        None, description="YAML list of live/paper deployments; unset: strategies/deployments.yaml")
    marketdata_instruments: str = Field(
        "", description="Comma-separated instruments the scheduled downloads fetch; empty: EUR_USD,GBP_USD,USD_JPY,AUD_USD")
    superset_db_user: str | None = Field(
        None, description="Read-only PostgreSQL role Superset queries the dash views as; unset: mbats_superset")
    superset_db_password: SecretStr | None = Field(
        None, description="Password of that read-only role; unset: the role cannot log in")

    # --- OANDA -----------------------------------------------------------------------------
    oanda_environment: Literal["practice", "live", "sim"] = "practice"
    oanda_token: SecretStr | None = None
    oanda_account_id: str | None = None
    oanda_sim_url: str = Field("http://127.0.0.1:18080", description="Base URL of the OANDA v20 simulator")
    oanda_requests_per_second: float = Field(
        100.0, gt=0, le=1000, allow_inf_nan=False, description="Client-side cap on OANDA REST requests (OANDA allows 120/s per IP)"
    )
    oanda_timeout_seconds: float = Field(30.0, gt=0, le=600, allow_inf_nan=False, description="Timeout of one OANDA REST request")
    oanda_retry_attempts: int = Field(6, ge=1, le=100, description="Tries per request on 429, 5xx and timeouts")
    oanda_retry_max_wait: float = Field(20.0, ge=0, le=3600, allow_inf_nan=False, description="Longest backoff between retries, seconds")

    # --- live / paper trading (mbats.live) ----------------------------------------------------
    live_confirm: str | None = Field(
        None, description="Must be 'yes-i-mean-real-money' (or pass --confirm-live) to trade a live account"
    )
    live_max_units: float | None = Field(None, gt=0, allow_inf_nan=False, description="Max absolute units held per instrument")
    live_max_gross_exposure: float | None = Field(None, gt=0, allow_inf_nan=False, description="Max sum of |notional| in account currency")
    live_max_orders_per_minute: int | None = Field(None, ge=1, description="Max orders submitted in any 60 s")
    live_max_daily_loss: float | None = Field(
        None, gt=0, allow_inf_nan=False, description="Loss (account currency) from the day's first NAV that trips the kill switch"
    )
    live_risk_webhook_url: SecretStr | None = Field(
        None, description="URL every risk breach is POSTed to (JSON); a secret: only its host and hash are stored or logged"
    )
    live_heartbeat_timeout: float = Field(20.0, gt=0, le=3600, allow_inf_nan=False, description="Reconnect the price stream after this many silent seconds")
    live_on_signal: Literal["leave", "flatten"] = Field(
        "leave", description="SIGTERM/SIGINT stop a live session: leave positions and pending orders, or flatten"
    )
    live_drift_check_bars: int = Field(
        5, description="Compare the runner's positions with the broker's every N bars (0: off)"
    )
    live_drift_tolerance_units: float = Field(
        0.0, description="A position difference above this many units stops trading (any difference is logged)"
    )

    # --- alerts (mbats.alerts, through apprise) -------------------------------------------------
    alert_urls: SecretStr | None = Field(
        None, description="Apprise URLs alerts go to, space or comma separated (tgram://…, slack://…, mailto://…, "
        "json://host/path); a secret: only host and hash are stored or logged")
    alert_events: str = Field(
        "fill,risk,kill_switch,run_failed,dag_failed,summary,control",
        description="Comma-separated alert kinds that are sent (fill, risk, kill_switch, run_failed, dag_failed, "
        "summary, control)")

    @field_validator("database_url")
    @classmethod
    def _strip_db(cls, v: str | None) -> str | None:
        return v.rstrip("/") if v else v

    @property
    def reports_dir(self) -> Path:
        return self.home / "reports"

    @property
    def datasets_dir(self) -> Path:
        return self.home / "datasets"

    @property
    def artifacts_dir(self) -> Path:
        return self.home / "mlartifacts"


@lru_cache
def get_settings() -> Settings:
    return Settings()


def reset_settings_cache() -> None:
    """Forget cached settings (tests and the CLI change the environment)."""
    get_settings.cache_clear()


def env_example() -> str:
    """The text of `.env.example`: every setting with its description and default (secrets empty)."""
    lines = ["# MBATS settings. Copy to .env and fill in what you need; unset means the default shown.",
             "# With nothing set, MBATS starts an embedded PostgreSQL under .mbats/ and keeps artifacts on disk.", ""]
    for name, field in Settings.model_fields.items():
        var = f"MBATS_{name.upper()}"
        if field.description:
            lines.append(f"# {field.description}")
        default = field.default
        secret = "SecretStr" in str(field.annotation)
        shown = "" if default is None or secret else (str(default).replace(str(PROJECT_ROOT), ".") if default != "" else "")
        lines.append(f"# {var}={shown}" if not secret else f"{var}=")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    print(env_example(), end="")
