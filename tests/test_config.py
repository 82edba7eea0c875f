"""Settings: one object from the environment, documented in .env.example, no secrets in the repo."""

from pathlib import Path

import pytest

from mbats.config import PROJECT_ROOT, Settings, env_example


def test_env_example_documents_every_setting():
    text = (PROJECT_ROOT / ".env.example").read_text()
    assert env_example() in text, "regenerate with: .cache/venv/bin/python -m mbats.config > .env.example"
    for name in Settings.model_fields:
        assert f"MBATS_{name.upper()}=" in text


def test_settings_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("MBATS_EMBEDDED_PG_PORT", "61234")
    monkeypatch.setenv("MBATS_OANDA_TOKEN", "s3cr3t")
    settings = Settings()
    assert settings.embedded_pg_port == 61234
    assert "s3cr3t" not in repr(settings) and settings.oanda_token.get_secret_value() == "s3cr3t"


def test_wrong_setting_is_rejected(monkeypatch):
    from pydantic import ValidationError

    monkeypatch.setenv("MBATS_EMBEDDED_PG_PORT", "not-a-port")
    with pytest.raises(ValidationError, match="embedded_pg_port"):
        Settings()


def test_no_secret_values_in_env_example():
    for line in (PROJECT_ROOT / ".env.example").read_text().splitlines():
        if line and not line.startswith("#") and any(k in line for k in ("SECRET", "TOKEN", "PASSWORD")):
            assert line.split("=", 1)[1].strip() == "", line


def test_mbats_variables_are_read_only_through_settings():
    """Every MBATS_* variable of the library is a Settings field (so .env.example documents it).

    mbats/stack/ is left out: its own StackSettings read MBATS_STACK_*, and superset_init.py runs in
    Superset's virtualenv, without the mbats settings.
    """
    import re

    read = re.compile(r"""(?:os\.environ(?:\.get)?\(|os\.getenv\(|os\.environ\[)\s*["'](MBATS_[A-Z0-9_]+)""")
    found = {(str(path.relative_to(PROJECT_ROOT)), m.group(1))
             for path in (PROJECT_ROOT / "mbats").rglob("*.py")
             if path.name != "config.py" and "stack" not in path.relative_to(PROJECT_ROOT / "mbats").parts[:1]
             for m in read.finditer(path.read_text())}
    assert found == set()
    for name in ("airflow_db", "worker_name", "strategy_queue", "deployments_file", "marketdata_instruments",
                 "superset_db_user", "superset_db_password"):
        assert name in Settings.model_fields
