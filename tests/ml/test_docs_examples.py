"""The docs' shell examples run as written: the block marked ``docs-example: stack-shell`` in
docs/stack.md, in bash, against the tests' embedded PostgreSQL, MLflow server, S3 server and an
OANDA simulator (in place of the stack's ``client.env``, the one line not run)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pandas as pd

PROJECT = Path(__file__).resolve().parents[2]
SOURCE_ENV = "set -a; . .mbats/stack/client.env; set +a"


def docs_block(path: Path, name: str) -> list[str]:
    """The lines of the bash block that follows ``<!-- docs-example: name``."""
    text = path.read_text(encoding="utf-8")
    match = re.search(rf"<!-- docs-example: {re.escape(name)}\b.*?-->\s*```bash\n(.*?)```", text, re.S)
    assert match, f"{path.name} has no docs-example {name}"
    return match.group(1).strip().splitlines()


def test_stack_shell_example_downloads_trains_promotes_backtests_and_reports(ml_env, tmp_path):
    from mbats.sim import DEFAULT_ACCOUNT, DEFAULT_TOKEN, SimConfig, SimServer, Simulator, synthetic_bars

    lines = docs_block(PROJECT / "docs" / "stack.md", "stack-shell")
    assert lines[0].startswith(SOURCE_ENV)  # the stack's settings: the fixtures provide them here
    script = "\n".join(["set -euo pipefail", *lines[1:]])

    now = pd.Timestamp.now(tz="UTC").floor("h")
    bars = {"EUR_USD": synthetic_bars("EUR_USD", now - pd.Timedelta(days=90), now, "H1")}
    server = SimServer(Simulator(bars, "H1", SimConfig(max_requests_per_second=None))).start()
    venv_bin = str(Path(sys.executable).parent)
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"} | {
        "PATH": f"{venv_bin}:{os.environ['PATH']}",  # `mbats` as installed in the venv
        "MBATS_OANDA_ENVIRONMENT": "sim", "MBATS_OANDA_SIM_URL": server.url, "MBATS_OANDA_TOKEN": DEFAULT_TOKEN,
        "MBATS_OANDA_ACCOUNT_ID": DEFAULT_ACCOUNT,
        "MBATS_ML_MODEL_NAME": f"docs-example-{uuid.uuid4().hex[:6]}",  # not the other tests' model
    }
    try:
        proc = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=1800)
    finally:
        server.stop()
    assert proc.returncode == 0, f"stdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}"
    assert "Traceback" not in proc.stderr
    # Quiet for a script: no library warnings, log records or "Downloading artifacts" bars on either stream.
    noise = re.compile(r"Warning|INFO |WARNING |Downloading artifacts|\d+%\||View run")
    assert not noise.search(proc.stdout) and not noise.search(proc.stderr), proc.stderr[-3000:]
    run = json.loads((tmp_path / "run.json").read_text())
    assert run["strategy"] == "ml_signal" and run["bars"] > 1000
    # The report names the model the run traded on and where its bars came from.
    assert env["MBATS_ML_MODEL_NAME"] in proc.stdout and "model_run_id" in proc.stdout
    assert "EUR_USD: oanda-sim (synthetic)" in proc.stdout
