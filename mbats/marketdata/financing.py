"""Financing and margin terms from an OANDA account (or the simulator) into the security master.

OANDA's account instruments carry each instrument's ``marginRate`` and ``financing`` (annual long
and short rates, days charged per weekday). They are today's terms, so they are stored as the row
effective from today (UTC midnight); earlier downloads keep their own rows.
"""

from __future__ import annotations

from dataclasses import replace

import pandas as pd
from oandapyV20.endpoints.accounts import AccountInstruments

from mbats.errors import DataValidationError
from mbats.secmaster.financing import FinancingTerms, store_terms


def terms_from_items(items: list, source: str, effective_from: pd.Timestamp) -> list[FinancingTerms]:
    """Terms of every currency instrument that carries financing data (others are skipped)."""
    try:
        terms = [FinancingTerms.from_oanda(item, source) for item in items
                 if item.get("type", "CURRENCY") == "CURRENCY"]
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise DataValidationError(f"{source}: malformed instrument financing data ({exc!r})") from None
    return [replace(t, effective_from=effective_from) for t in terms if t is not None]


def download_financing(client, conn, instruments: list[str] | None = None) -> list[FinancingTerms]:
    """Fetch the account's instruments and store their financing/margin terms; return what was stored."""
    source = f"oanda:{client.environment}"
    params = {"instruments": ",".join(s.upper() for s in instruments)} if instruments else None
    payload = client.request(AccountInstruments(client.require_account(), params=params))
    items = payload.get("instruments") if isinstance(payload, dict) else None
    if not isinstance(items, list):
        raise DataValidationError(f"OANDA {client.environment}: account instruments response has no 'instruments' list")
    terms = terms_from_items(items, source, pd.Timestamp.now(tz="UTC").normalize())
    if not terms:
        raise DataValidationError(f"OANDA {client.environment}: no instrument carried financing data")
    store_terms(conn, terms, vendor="oanda-sim" if client.environment == "sim" else "oanda")
    return terms
