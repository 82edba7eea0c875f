"""Checks on simulator requests, as OANDA's v20 API makes them, before anything changes.

An order OANDA can parse but refuses (units zero, unknown instrument, a price that is not a
positive decimal, a timeInForce its type does not take, …) is answered HTTP 400 with an
``orderRejectTransaction`` (``<TYPE>_ORDER_REJECT`` with the ``rejectReason``), recorded in the
account's transactions like OANDA does, plus ``errorCode`` and ``errorMessage``. A body that is
not an order at all (malformed JSON, no ``order`` object) is a plain 400 ``errorMessage``. The
reason codes and their texts are OANDA's ``TransactionRejectReason`` table (as oandapyV20 ships it).
Query parameters of the read endpoints (candles, lists) are checked the same way: 400, never a 500.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal, InvalidOperation

from oandapyV20.definitions.transactions import definitions

from mbats.sim.market import parse_time

REASONS: dict[str, str] = definitions["TransactionRejectReason"]
MAX_ORDER_UNITS = 100_000_000  # maximumOrderUnits the simulator reports per instrument
TIME_IN_FORCE = {"MARKET": {"FOK", "IOC"}, "LIMIT": {"GTC", "GTD", "GFD", "FOK", "IOC"},
                 "STOP": {"GTC", "GTD", "GFD", "FOK", "IOC"}}
DEPENDENT_TIME_IN_FORCE = {"GTC", "GTD", "GFD"}
POSITION_FILL = {"DEFAULT", "OPEN_ONLY", "REDUCE_FIRST", "REDUCE_ONLY"}
ORDER_TYPES = {"MARKET", "LIMIT", "STOP", "MARKET_IF_TOUCHED", "TAKE_PROFIT", "STOP_LOSS", "TRAILING_STOP_LOSS",
               "GUARANTEED_STOP_LOSS", "FIXED_PRICE"}
DECIMAL = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)$")  # OANDA's DecimalNumber: no exponent, no inf/nan
CLIENT_ID_MAX = 128


class BadRequest(Exception):
    """Not an order OANDA could read: HTTP 400 with an errorMessage only."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class OrderRejected(Exception):
    """An order OANDA reads and rejects: recorded as a ``<TYPE>_ORDER_REJECT`` transaction."""

    def __init__(self, reason: str, order_type: str, order: dict):
        super().__init__(reason)
        self.reason, self.order_type, self.order = reason, order_type, order

    @property
    def message(self) -> str:
        return REASONS.get(self.reason, self.reason)


def decimal(value) -> Decimal | None:
    """A finite decimal from OANDA's string form (numbers accepted too); None when it is not one."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        if isinstance(value, float) and not math.isfinite(value):
            return None
        value = repr(value) if isinstance(value, float) else str(value)
        if "e" in value.lower():
            value = format(Decimal(value), "f")
    if not isinstance(value, str) or not DECIMAL.match(value.strip()):
        return None
    try:
        return Decimal(value.strip())
    except InvalidOperation:
        return None


def places(d: Decimal) -> int:
    exponent = d.normalize().as_tuple().exponent
    return max(0, -exponent) if isinstance(exponent, int) else 0


def check_order(spec, instruments: dict[str, int], now_ns: int) -> None:
    """Raise :class:`BadRequest` or :class:`OrderRejected` for a POST /orders body OANDA would refuse.

    ``instruments``: known instrument → display precision (decimal places of its prices)."""
    if not isinstance(spec, dict) or not isinstance(spec.get("order"), dict):
        raise BadRequest("Invalid value specified for 'order'")
    order = spec["order"]
    kind = order.get("type", "MARKET")
    if not isinstance(kind, str) or kind.upper() not in ORDER_TYPES:
        raise BadRequest("Invalid value specified for 'order.type'")
    kind = kind.upper()

    def reject(reason: str):
        raise OrderRejected(reason, kind, order)

    if kind not in TIME_IN_FORCE:
        return  # types the simulator does not offer: the broker answers ORDER_TYPE_NOT_SUPPORTED
    instrument = order.get("instrument")
    if instrument in (None, ""):
        reject("INSTRUMENT_MISSING")
    if not isinstance(instrument, str) or instrument.upper() not in instruments:
        reject("INSTRUMENT_UNKNOWN")
    digits = instruments[instrument.upper()]
    if "units" not in order:
        reject("UNITS_MISSING")
    units = decimal(order["units"])
    if units is None or units == 0:
        reject("UNITS_INVALID")
    if places(units) > 0:  # tradeUnitsPrecision 0 for currency pairs
        reject("UNITS_PRECISION_EXCEEDED")
    if abs(units) > MAX_ORDER_UNITS:
        reject("UNITS_LIMIT_EXCEEDED")
    tif = order.get("timeInForce", "FOK" if kind == "MARKET" else "GTC")
    if not isinstance(tif, str) or tif.upper() not in TIME_IN_FORCE[kind]:
        reject("TIME_IN_FORCE_INVALID")
    if tif.upper() == "GTD":
        if not order.get("gtdTime"):
            reject("TIME_IN_FORCE_GTD_TIMESTAMP_MISSING")
        try:
            gtd = parse_time(str(order["gtdTime"]))
        except (ValueError, OverflowError):
            reject("TIME_IN_FORCE_GTD_TIMESTAMP_MISSING")
        if gtd <= now_ns:
            reject("TIME_IN_FORCE_GTD_TIMESTAMP_IN_PAST")
    if kind != "MARKET":
        if order.get("price") in (None, ""):
            reject("PRICE_MISSING")
        _price(order["price"], digits, "PRICE", reject)
    if order.get("priceBound") not in (None, ""):
        _price(order["priceBound"], digits, "PRICE_BOUND", reject)
    fill = order.get("positionFill", "DEFAULT")
    if not isinstance(fill, str) or fill.upper() not in POSITION_FILL:
        reject("POSITION_FILL_INVALID")
    _client_extensions(order.get("clientExtensions"), "", reject)
    _client_extensions(order.get("tradeClientExtensions"), "", reject)
    _dependents(order, digits, now_ns, reject)


def _price(value, digits: int, prefix: str, reject) -> None:
    d = decimal(value)
    if d is None or d <= 0:
        reject(f"{prefix}_INVALID")
    if places(d) > digits:
        reject(f"{prefix}_PRECISION_EXCEEDED")


def _client_extensions(ext, prefix: str, reject) -> None:
    if ext is None:
        return
    if not isinstance(ext, dict):
        reject(f"{prefix}CLIENT_ORDER_ID_INVALID")
    for key in ("id", "tag", "comment"):
        value = ext.get(key)
        if value is not None and (not isinstance(value, str) or len(value) > CLIENT_ID_MAX):
            reject(f"{prefix}CLIENT_ORDER_ID_INVALID")


def _dependents(order: dict, digits: int, now_ns: int, reject) -> None:
    """takeProfitOnFill / stopLossOnFill / trailingStopLossOnFill, each with OANDA's own reasons."""
    for key, prefix in (("takeProfitOnFill", "TAKE_PROFIT_ON_FILL"), ("stopLossOnFill", "STOP_LOSS_ON_FILL"),
                        ("trailingStopLossOnFill", "TRAILING_STOP_LOSS_ON_FILL")):
        dep = order.get(key)
        if dep is None:
            continue
        if not isinstance(dep, dict):
            reject(f"{prefix}_PRICE_MISSING" if key != "trailingStopLossOnFill" else f"{prefix}_PRICE_DISTANCE_MISSING")
        if key == "takeProfitOnFill":
            if dep.get("price") in (None, ""):
                reject(f"{prefix}_PRICE_MISSING")
            _price(dep["price"], digits, f"{prefix}_PRICE", reject)
        elif key == "stopLossOnFill":
            if dep.get("price") in (None, "") and dep.get("distance") in (None, ""):
                reject(f"{prefix}_PRICE_AND_DISTANCE_BOTH_MISSING")
            if dep.get("price") not in (None, ""):
                _price(dep["price"], digits, f"{prefix}_PRICE", reject)
            else:
                _price(dep["distance"], digits, f"{prefix}_DISTANCE", reject)
        else:
            if dep.get("distance") in (None, ""):
                reject(f"{prefix}_PRICE_DISTANCE_MISSING")
            d = decimal(dep["distance"])
            if d is None or d <= 0:
                reject(f"{prefix}_PRICE_DISTANCE_INVALID")
        tif = dep.get("timeInForce", "GTC")
        if not isinstance(tif, str) or tif.upper() not in DEPENDENT_TIME_IN_FORCE:
            reject(f"{prefix}_TIME_IN_FORCE_INVALID")
        if tif.upper() == "GTD":
            try:
                gtd = parse_time(str(dep.get("gtdTime") or ""))
            except (ValueError, OverflowError):
                reject(f"{prefix}_GTD_TIMESTAMP_MISSING")
            if gtd <= now_ns:
                reject(f"{prefix}_GTD_TIMESTAMP_IN_PAST")
        _client_extensions(dep.get("clientExtensions"), f"{prefix}_", reject)


def reject_body(account, exc: OrderRejected) -> dict:
    """Record the ``<TYPE>_ORDER_REJECT`` transaction and return OANDA's 400 body."""
    fields = {k: v for k, v in exc.order.items()
              if k in ("instrument", "units", "price", "priceBound", "timeInForce", "gtdTime", "positionFill",
                       "takeProfitOnFill", "stopLossOnFill", "trailingStopLossOnFill", "clientExtensions",
                       "tradeClientExtensions") and isinstance(v, (str, int, float, dict))}
    txn = account._txn(type=f"{exc.order_type}_ORDER_REJECT", reason="CLIENT_ORDER", rejectReason=exc.reason,
                       **{k: str(v) if isinstance(v, (int, float)) else v for k, v in fields.items()})
    return {"orderRejectTransaction": txn, "relatedTransactionIDs": [txn["id"]],
            "lastTransactionID": txn["id"], "errorCode": exc.reason, "errorMessage": exc.message}


# --- query parameters ---------------------------------------------------------------------------
def int_param(q, name: str, default: int | None, low: int | None = None, high: int | None = None) -> int | None:
    """An integer query parameter within [low, high]; OANDA's 400 message otherwise."""
    if name not in q:
        return default
    raw = q[name].strip()
    if not re.fullmatch(r"[+-]?\d{1,18}", raw):
        raise BadRequest(f"Invalid value specified for '{name}'")
    value = int(raw)
    if high is not None and value > high:
        raise BadRequest(f"Maximum value for '{name}' exceeded")
    if low is not None and value < low:
        raise BadRequest(f"Invalid value specified for '{name}'")
    return value


def bool_param(q, name: str, default: bool) -> bool:
    if name not in q:
        return default
    value = q[name].strip().lower()
    if value not in ("true", "false"):
        raise BadRequest(f"Invalid value specified for '{name}'")
    return value == "true"


def check_candles_query(q, count_max: int) -> None:
    """Parameters of GET /instruments/{i}/candles besides instrument, granularity and price."""
    for name in ("dailyAlignment",):
        int_param(q, name, 17, 0, 23)
    if "alignmentTimezone" in q and not re.fullmatch(r"[A-Za-z_]+(/[A-Za-z_+-]+)*", q["alignmentTimezone"]):
        raise BadRequest("Invalid value specified for 'alignmentTimezone'")
    if "weeklyAlignment" in q and q["weeklyAlignment"] not in (
            "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"):
        raise BadRequest("Invalid value specified for 'weeklyAlignment'")
    bool_param(q, "smooth", False)
    bool_param(q, "includeFirst", True)
    int_param(q, "count", 500, 1, count_max)


def check_position_close(body: dict) -> None:
    """PUT /positions/{i}/close: longUnits / shortUnits are ALL, NONE or a positive whole number."""
    for key in ("longUnits", "shortUnits"):
        if key not in body:
            continue
        value = body[key]
        if isinstance(value, str) and value.upper() in ("ALL", "NONE"):
            continue
        d = decimal(value)
        if d is None or d <= 0 or places(d) > 0:
            raise BadRequest(f"Invalid value specified for '{key}'")
