"""The one rule for dates and times a user types (CLI options, DAG conf): aware UTC datetimes."""

from __future__ import annotations

from datetime import datetime

from mbats.errors import UsageError


def parse_utc(value: str | None, option: str) -> datetime | None:
    """``value`` as an aware UTC datetime; naive input is read as UTC, empty input is None.

    ``option`` names where the value came from (``--start``, ``conf.start``) in the usage error
    raised for text that is not a date or lies outside 1971–2100.
    """
    if not value:
        return None
    import pandas as pd  # loaded here: the CLI's --help must not pay for pandas

    from mbats.specs import EARLIEST

    try:
        ts = pd.Timestamp(value)
        ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    except (ValueError, TypeError, OverflowError, pd.errors.OutOfBoundsDatetime):
        raise UsageError(f"{option} '{value}' is not a date/time such as 2024-01-31 or 2024-01-31T12:00Z") from None
    if ts is pd.NaT or not EARLIEST <= ts.to_pydatetime() <= EARLIEST.replace(year=2100):
        raise UsageError(f"{option} '{value}' is outside the plausible range 1971-01-01 to 2100-01-01")
    return ts.to_pydatetime()
