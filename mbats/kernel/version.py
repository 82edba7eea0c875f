"""The code version every run records: the package version plus the git commit (and ``.dirty``)."""

from __future__ import annotations

import subprocess
from functools import lru_cache

import mbats
from mbats.config import PROJECT_ROOT


@lru_cache(maxsize=1)
def code_version() -> str:
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=PROJECT_ROOT, capture_output=True,
                             text=True, timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=PROJECT_ROOT,
                               capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        sha, dirty = "", ""
    suffix = f"+g{sha}{'.dirty' if dirty else ''}" if sha else ""
    return f"mbats {mbats.__version__}{suffix}"
