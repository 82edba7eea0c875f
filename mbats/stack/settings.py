"""Settings of the stack: the variables of docker-compose.yml (read from the environment and `.env`)
and the ports of the local process stack (``MBATS_STACK_*``).

The passwords are shared by both ways of running the stack; `make env` writes fresh ones into
`.env`. Ports default to values clear of the usual 5432/6379/5672/8080.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


def _secret(name: str, description: str):
    return Field(None, validation_alias=AliasChoices(name), description=description)


class StackSettings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore",
                                      populate_by_name=False)

    # ports of the local process stack (127.0.0.1 only); PostgreSQL is MBATS_EMBEDDED_PG_PORT and
    # the simulator the port of MBATS_OANDA_SIM_URL
    s3_port: int = Field(19000, validation_alias=AliasChoices("MBATS_STACK_S3_PORT"),
                         description="S3 endpoint of the local SeaweedFS")
    s3_internal_port_base: int = Field(19300, validation_alias=AliasChoices("MBATS_STACK_S3_INTERNAL_PORT_BASE"),
                                       description="First of ~12 ports SeaweedFS uses internally (master, volume, filer, grpc)")
    mlflow_port: int = Field(15000, validation_alias=AliasChoices("MBATS_STACK_MLFLOW_PORT"),
                             description="MLflow tracking server and UI")
    airflow_port: int = Field(18081, validation_alias=AliasChoices("MBATS_STACK_AIRFLOW_PORT"),
                              description="Airflow API server and UI")
    airflow_log_port: int = Field(18793, validation_alias=AliasChoices("MBATS_STACK_AIRFLOW_LOG_PORT"),
                                  description="Airflow scheduler's log server (LocalExecutor)")
    superset_port: int = Field(18088, validation_alias=AliasChoices("MBATS_STACK_SUPERSET_PORT"),
                               description="Superset UI")
    supervisor_port: int = Field(19001, validation_alias=AliasChoices("MBATS_STACK_SUPERVISOR_PORT"),
                                 description="supervisord's control port (127.0.0.1, password-protected)")
    up_timeout: float = Field(900, gt=0, validation_alias=AliasChoices("MBATS_STACK_UP_TIMEOUT"),
                              description="Seconds `stack up` waits for every service to be healthy")
    state_dir: Path | None = Field(None, validation_alias=AliasChoices("MBATS_STACK_DIR"),
                                   description="State and logs of the local stack (default MBATS_HOME/stack)")

    # shared with docker-compose.yml
    airflow_admin_password: SecretStr | None = _secret("AIRFLOW_ADMIN_PASSWORD", "Airflow UI user admin")
    superset_admin_user: str = Field("admin", validation_alias=AliasChoices("SUPERSET_ADMIN_USER"))
    superset_admin_password: SecretStr | None = _secret("SUPERSET_ADMIN_PASSWORD", "Superset UI admin")
    superset_secret_key: SecretStr | None = _secret("SUPERSET_SECRET_KEY", "Superset session/encryption key")
    superset_db_password: SecretStr | None = _secret("MBATS_SUPERSET_DB_PASSWORD", "read-only dashboards role")
    mlflow_admin_user: str = Field("admin", validation_alias=AliasChoices("MLFLOW_ADMIN_USER"))
    mlflow_admin_password: SecretStr | None = _secret("MLFLOW_ADMIN_PASSWORD", "MLflow basic-auth admin")
    mlflow_secret_key: SecretStr | None = _secret("MLFLOW_SECRET_KEY", "MLflow basic-auth app's Flask secret")

    def missing_secrets(self) -> list[str]:
        names = {"airflow_admin_password": "AIRFLOW_ADMIN_PASSWORD", "superset_admin_password": "SUPERSET_ADMIN_PASSWORD",
                 "superset_secret_key": "SUPERSET_SECRET_KEY", "mlflow_admin_password": "MLFLOW_ADMIN_PASSWORD",
                 "mlflow_secret_key": "MLFLOW_SECRET_KEY"}
        return [env for field, env in names.items() if not getattr(self, field)]
