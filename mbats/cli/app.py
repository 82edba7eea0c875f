"""How every `mbats` command group is built, so they all behave alike."""

from __future__ import annotations

from typing import Any

import typer
from typer.core import TyperGroup


class Group(TyperGroup):
    """A typer group whose own ``--help`` flag is read as a plain boolean.

    typer coerces every parameter value through a pydantic ``TypeAdapter``; for a group's
    ``--help`` that is not given (``mbats backtest --help`` passes through the root group) the
    value is None, and building that adapter would import pydantic just to print a sub-command's
    help. A help flag needs no coercion: given or not.
    """

    def get_help_option(self, ctx):
        option = super().get_help_option(ctx)
        if option is not None and not getattr(option, "_mbats_plain_flag", False):
            def process_value(ctx, value, option=option):
                value = bool(value)
                return option.callback(ctx, option, value) if option.callback is not None else value

            option.process_value = process_value
            option._mbats_plain_flag = True
        return option


def group(help: str, **settings: Any) -> typer.Typer:
    """A typer group with the CLI's shared settings.

    Help is click's plain text (``rich_markup_mode=None``): rendering it with rich would load rich's
    markdown, syntax and traceback modules, about three times the cost of the rest of ``--help``.
    Exceptions are not pretty-printed: :func:`mbats.cli.main.run` turns them into one ``error:`` line.
    """
    settings.setdefault("cls", Group)
    return typer.Typer(help=help, rich_markup_mode=None, no_args_is_help=True, add_completion=False,
                       pretty_exceptions_enable=False, **settings)
