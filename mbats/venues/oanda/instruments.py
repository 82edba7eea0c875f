"""OANDA's instruments: the account's tradeable list as security-master :class:`Instrument` rows.

Also the provenance labels for what this venue delivers: bars from the simulator are labelled
``oanda-sim`` and synthetic, never as OANDA's.
"""

from __future__ import annotations

from oandapyV20.endpoints.accounts import AccountInstruments

from mbats.errors import DataValidationError
from mbats.secmaster import Instrument
from mbats.secmaster.loads import Provenance
from mbats.venues.oanda.client import OandaClient

VENDOR = "oanda"
SIM_VENDOR = "oanda-sim"


def vendor_of(client: OandaClient) -> str:
    """The simulator's bars are never labelled as OANDA's."""
    return SIM_VENDOR if client.config.is_sim else VENDOR


def source_of(client: OandaClient) -> str:
    return f"oanda:{client.environment}"


def provenance(client: OandaClient, kind: str = "download") -> Provenance:
    """How bars fetched from this venue are recorded in a load (``kind``: download, live, …)."""
    return Provenance(kind, vendor_of(client), source_of(client), client.config.is_sim)


def instrument_from_oanda(item: dict, source: str, vendor: str = VENDOR) -> Instrument:
    name = item["name"]
    base, _, quote = name.partition("_")
    pip = 10.0 ** int(item.get("pipLocation", -4))
    return Instrument(
        symbol=name,
        base_currency=base[:3].upper(),
        quote_currency=quote[:3].upper(),
        pip_size=pip,
        vendor=vendor,
        source=source,
        is_synthetic=vendor != VENDOR,
        display_name=item.get("displayName"),
        instrument_type=item.get("type", "CURRENCY"),
        display_precision=item.get("displayPrecision"),
    )


def fx_instrument(client: OandaClient, symbol: str) -> Instrument:
    """An FX pair the account list did not name yet, labelled with this venue's provenance."""
    return Instrument.fx(symbol, vendor_of(client), source=source_of(client), is_synthetic=client.config.is_sim)


def account_instruments(client: OandaClient, names: list[str] | None = None) -> list[dict]:
    """OANDA's entries for the account's instruments (all, or ``names``): pip location, margin, financing…"""
    params = {"instruments": ",".join(n.upper() for n in names)} if names else None
    payload = client.request(AccountInstruments(client.require_account(), params=params))
    items = payload.get("instruments") if isinstance(payload, dict) else None
    if not isinstance(items, list):
        raise DataValidationError(f"OANDA {client.environment}: account instruments response has no 'instruments' list")
    return items


def fetch_instruments(client: OandaClient, currency_only: bool = True) -> list[Instrument]:
    """The account's tradeable instruments (currency pairs only unless ``currency_only`` is off)."""
    items = account_instruments(client)
    try:
        return [instrument_from_oanda(item, source_of(client), vendor_of(client)) for item in items
                if not currency_only or item.get("type", "CURRENCY") == "CURRENCY"]
    except (KeyError, TypeError, ValueError) as exc:
        raise DataValidationError(f"OANDA {client.environment}: malformed instrument entry ({exc})") from None
