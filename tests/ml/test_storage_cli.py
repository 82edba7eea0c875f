"""Object storage (S3 via minio, local fallback), the `ml` CLI sub-app and its one-line errors, the
tracking server's Dockerfile."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pandas as pd
from typer.testing import CliRunner

from mbats.cli.ml import ml_app

PROJECT = Path(__file__).resolve().parents[2]
runner = CliRunner()


def _with_env(monkeypatch, **values):
    from mbats.config import reset_settings_cache

    for k, v in values.items():
        if v is None:
            monkeypatch.delenv(k, raising=False)
        else:
            monkeypatch.setenv(k, v)
    reset_settings_cache()


def test_buckets_are_created_once_and_datasets_round_trip_through_s3(ml_env, s3_server, monkeypatch):
    from mbats import storage

    _with_env(monkeypatch, MBATS_S3_BUCKET_DATASETS="datasets-store-test", MBATS_S3_BUCKET_REPORTS="reports-store-test")
    first = storage.ensure_buckets()
    assert set(first) >= {"datasets-store-test", "reports-store-test"}
    assert storage.ensure_buckets() == []
    frame = pd.DataFrame({"x": [1.0, 2.5]}, index=pd.date_range("2024-01-01", periods=2, tz="UTC", name="ts"))
    uri = storage.put_dataset("t/frame.parquet", frame)
    assert uri == "s3://datasets-store-test/t/frame.parquet"
    pd.testing.assert_frame_equal(storage.read_dataset(uri), frame, check_freq=False)


def test_wrong_s3_secret_is_a_one_line_service_error(ml_env, monkeypatch):
    from mbats import storage
    from mbats.errors import ServiceUnavailableError

    _with_env(monkeypatch, MBATS_S3_SECRET_KEY="wrong-secret-000000")
    try:
        storage.ensure_buckets()
    except ServiceUnavailableError as exc:
        assert "MBATS_S3_ENDPOINT" in str(exc) and "\n" not in str(exc)
    else:
        raise AssertionError("a wrong secret must be refused")


def test_without_an_endpoint_datasets_and_reports_go_to_local_disk(monkeypatch, tmp_path):
    from mbats import storage

    _with_env(monkeypatch, MBATS_S3_ENDPOINT=None, MBATS_HOME=str(tmp_path))
    uri = storage.put_dataset("m/d.parquet", pd.DataFrame({"a": [1, 2]}))
    assert uri == (tmp_path / "datasets" / "m" / "d.parquet").resolve().as_uri()
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "report.html").write_text("<html></html>")
    [report] = storage.put_report_folder("run-1", tmp_path / "r")
    assert storage.read_bytes(report) == b"<html></html>"
    assert storage.ensure_buckets() == []


def test_cli_lists_versions_and_refuses_to_promote_the_champion_again(trained):
    result, _ = trained
    out = runner.invoke(ml_app, ["models", "--json"])
    assert out.exit_code == 0, out.output
    rows = json.loads(out.output)
    # (the notebook test may have trained and promoted newer versions by now)
    assert any(r["version"] == result.version for r in rows)
    assert sum("champion" in r["aliases"] for r in rows) == 1
    out = runner.invoke(ml_app, ["promote", "--json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)["promoted"] is False
    helps = runner.invoke(ml_app, ["--help"])
    assert all(cmd in helps.output for cmd in ("train", "promote", "serve", "models"))


def test_mlflow_down_is_a_service_error_naming_the_setting(ml_env, monkeypatch):
    from ml_servers import free_port

    from mbats.errors import ServiceUnavailableError
    from mbats.ml.registry import list_versions

    _with_env(monkeypatch, MBATS_MLFLOW_TRACKING_URI=f"http://127.0.0.1:{free_port()}")
    try:
        list_versions()
    except ServiceUnavailableError as exc:
        assert "MBATS_MLFLOW_TRACKING_URI" in str(exc)
    else:
        raise AssertionError("a dead tracking server must raise ServiceUnavailableError")


def test_tracking_server_dockerfile_passes_hadolint():
    import sys

    hadolint = Path(sys.executable).parent / "hadolint"
    proc = subprocess.run([str(hadolint), str(PROJECT / "services/mlflow/Dockerfile")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
