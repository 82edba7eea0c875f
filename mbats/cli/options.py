"""Option parsing shared by the CLI commands."""

from __future__ import annotations

from datetime import datetime

from mbats.errors import MbatsError


def parse_when(value: str | None, option: str) -> datetime | None:
    """A user's date/time option as an aware UTC datetime (naive input is read as UTC)."""
    if not value:
        return None
    import pandas as pd

    try:
        ts = pd.Timestamp(value)
    except ValueError:
        raise MbatsError(f"{option} '{value}' is not a date/time such as 2024-01-31 or 2024-01-31T12:00Z") from None
    return (ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")).to_pydatetime()
