"""Helpers of the compose e2e tests: the test's .env and the `compose` command (a plain module)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

HERE = Path(__file__).resolve().parent


def read_env(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            key, value = line.split("=", 1)
            out[key.strip()] = value.strip()
    return out


def compose(*args: str, timeout: float = 900, check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
    r = subprocess.run([str(HERE / "compose.sh"), *args], capture_output=True, text=True, timeout=timeout,
                       env=env)
    if check:
        assert r.returncode == 0, f"compose {' '.join(args)} failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r


def containers() -> list[dict]:
    out = compose("ps", "-a", "--format", "json").stdout.strip()
    if out.startswith("["):
        return json.loads(out)
    return [json.loads(line) for line in out.splitlines() if line.strip()]
