"""Printing helpers shared by the CLI commands: rich tables for people, JSON for scripts."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Sequence

from rich.console import Console
from rich.table import Table
from rich.text import Text



def _width(stream) -> int | None:
    """The terminal's width; output to a pipe or file is not cut at rich's default 80 columns."""
    if os.environ.get("COLUMNS") or (hasattr(stream, "isatty") and stream.isatty()):
        return None
    return 1_000


# emoji=False: ":b:" in a user's grid or parameter is printed as typed, not as an emoji.
console = Console(emoji=False, width=_width(sys.stdout))
err_console = Console(stderr=True, emoji=False, width=_width(sys.stderr))


def print_json(value) -> None:
    from mbats.risk.store import dumps

    print(dumps(value))


def fmt(value, digits: int = 2) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    if hasattr(value, "strftime"):
        return value.strftime("%Y-%m-%d %H:%M")
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value))
    return str(value)


def table(title: str, columns: Sequence[str], rows: Iterable[Sequence], right: Sequence[str] = ()) -> None:
    t = Table(title=Text(title), title_justify="left", header_style="bold")
    for col in columns:
        t.add_column(col, justify="right" if col in right else "left")
    for row in rows:
        t.add_row(*(Text(fmt(v)) for v in row))  # Text: cell values are data, never rich markup
    console.print(t)
