"""How every `mbats` command group is built, so they all behave alike."""

from __future__ import annotations

from typing import Any

import typer


def group(help: str, **settings: Any) -> typer.Typer:
    """A typer group with the CLI's shared settings.

    Help is click's plain text (``rich_markup_mode=None``): rendering it with rich would load rich's
    markdown, syntax and traceback modules, about three times the cost of the rest of ``--help``.
    Exceptions are not pretty-printed: :func:`mbats.cli.main.run` turns them into one ``error:`` line.
    """
    return typer.Typer(help=help, rich_markup_mode=None, no_args_is_help=True, add_completion=False,
                       pretty_exceptions_enable=False, **settings)
