"""The security master: instruments and bars of any granularity, in PostgreSQL."""

from mbats.secmaster.bars import BarWriteResult, read_bars, write_bars, write_sides
from mbats.secmaster.instruments import Instrument, get_instrument_id, upsert_instruments

__all__ = ["BarWriteResult", "Instrument", "get_instrument_id", "read_bars", "upsert_instruments", "write_bars",
           "write_sides"]
