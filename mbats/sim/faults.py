"""Faults the simulator can inject, for testing clients against a misbehaving OANDA.

Each fault matches ``/v3`` requests whose path contains ``path`` (all of them when empty), lets
``after`` matching requests through, then affects the next ``count`` ones:

- ``status``: answer with HTTP ``status`` (429, 500, 503, …) and an OANDA-style ``errorMessage``;
- ``delay``: sleep ``seconds`` before answering (timeouts, slow links);
- ``malformed``: corrupt one candle of a candles response (``variant``: missing / nan / inverted);
- ``drop_stream``: cut a pricing stream after ``messages`` lines without closing it cleanly;
- ``lost_answer``: a request that changes the account (order create/cancel, trade/position close)
  is processed in full, then answered with HTTP ``status`` as if the answer had been lost on the
  way back — the case that doubles orders in a client that resends blindly.
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass
from typing import Literal

FaultKind = Literal["status", "delay", "malformed", "drop_stream", "lost_answer"]


@dataclass
class Fault:
    kind: FaultKind
    count: int = 1
    after: int = 0
    path: str = ""
    status: int = 503
    seconds: float = 0.0
    variant: Literal["missing", "nan", "inverted"] = "missing"
    messages: int = 3
    message: str | None = None


class FaultPlan:
    """Thread-safe list of pending faults."""

    def __init__(self) -> None:
        self._faults: list[Fault] = []
        self._lock = threading.Lock()

    def add(self, fault: Fault) -> None:
        with self._lock:
            self._faults.append(fault)

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def pending(self) -> list[dict]:
        with self._lock:
            return [asdict(f) for f in self._faults]

    def take(self, kind: FaultKind, path: str) -> Fault | None:
        """The fault of ``kind`` this request triggers, if any (each match uses up one turn)."""
        with self._lock:
            for fault in self._faults:
                if fault.kind != kind or fault.path not in path:
                    continue
                if fault.after > 0:
                    fault.after -= 1
                    continue
                fault.count -= 1
                if fault.count <= 0:
                    self._faults.remove(fault)
                return fault
        return None
