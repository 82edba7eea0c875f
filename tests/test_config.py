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
