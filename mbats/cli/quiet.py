"""Keep the terminal for the command's own output: libraries' warnings, log records and progress bars
go to ``MBATS_HOME/logs/cli.log`` instead (stdout stays parseable, stderr keeps mbats's own lines).

Installed by :func:`mbats.cli.main.run` before any command imports MLflow, pydantic, pandas, … .
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import warnings
from pathlib import Path

_installed = False

# Environment switches the libraries read when they are imported (after this module runs).
QUIET_ENV = {
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",  # "Downloading artifacts: 100%|███" bars on stderr
    "MLFLOW_CONFIGURE_LOGGING": "false",              # MLflow's own stderr handler: its records reach the log
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",  # "🏃 View run … at: http://…" would break --json stdout
    "TQDM_DISABLE": "1",                              # any other dependency's tqdm bar
    "GIT_PYTHON_REFRESH": "quiet",
}


def log_path() -> Path:
    """``MBATS_HOME/logs/cli.log`` from the settings; settings that do not load (their error is the
    command's to report) fall back to the default home, so routing the noise never fails a command."""
    from mbats.config import PROJECT_ROOT, Settings

    try:
        home = Settings().home  # not get_settings(): its cache must not outlive a test's environment
    except Exception:  # noqa: BLE001 - the command itself reports bad settings
        home = PROJECT_ROOT / ".mbats"
    return Path(home) / "logs" / "cli.log"


class _LazyFileHandler(logging.FileHandler):
    """Finds (from the settings) and creates the log only when something is written: ``--help`` writes
    nothing, so it loads no settings and creates no folder."""

    def __init__(self) -> None:
        super().__init__(os.devnull, delay=True, encoding="utf-8")

    def _open(self):
        path = log_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        self.baseFilename = str(path)
        return super()._open()


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time (tests and callers may swap it)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def install() -> None:
    """Route warnings and third-party log records to the log file; mbats's own warnings still reach stderr."""
    global _installed
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)
    root = logging.getLogger()
    # Plain console handlers (logging.basicConfig's) would print library records: the file takes them.
    root.handlers = [h for h in root.handlers if not (type(h) is logging.StreamHandler
                                                      and h.stream in (sys.stderr, sys.stdout))]
    if not any(isinstance(h, _LazyFileHandler) for h in root.handlers):
        handler = _LazyFileHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
    if root.level > logging.WARNING or root.level == logging.NOTSET:
        root.setLevel(logging.WARNING)
    warnings.simplefilter("default")   # every library warning once per place, into the log
    logging.captureWarnings(True)      # warnings.warn(...) → the "py.warnings" logger → the file
    own = logging.getLogger("mbats")   # the platform's own notices stay visible
    if not any(getattr(h, "_mbats_stderr", False) for h in own.handlers):
        stderr = _StderrHandler()
        stderr.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
        stderr.setLevel(logging.WARNING)
        stderr._mbats_stderr = True
        own.addHandler(stderr)
    _installed = True


class _LineLogger(io.TextIOBase):
    def __init__(self, logger: logging.Logger):
        self.logger, self.buffer = logger, ""

    def write(self, text: str) -> int:
        self.buffer += text
        *lines, self.buffer = self.buffer.split("\n")
        for line in filter(str.strip, lines):
            self.logger.info(line)
        return len(text)


@contextlib.contextmanager
def library_output(name: str = "library.stderr"):
    """Under the CLI, what a library prints to stderr itself (MLflow's "Successfully registered model
    …", "Created version …") goes to the log; elsewhere (notebooks, tests) it is left alone."""
    if not _installed:
        yield
        return
    logger = logging.getLogger(name)
    logger.setLevel(logging.INFO)
    with contextlib.redirect_stderr(_LineLogger(logger)):
        yield
