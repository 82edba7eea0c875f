"""Run the simulator: in a background thread (tests, the live engine's tests) or in the foreground (CLI)."""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass

import pandas as pd
import uvicorn

from mbats.errors import MbatsError, ServiceUnavailableError
from mbats.sim.app import create_app
from mbats.sim.simulator import SimConfig, Simulator


def _bind(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise MbatsError(f"cannot listen on {host}:{port} ({exc.strerror}); pick another --port") from None
    sock.listen(128)
    return sock


@dataclass
class SimServer:
    """A :class:`Simulator` served over HTTP on loopback.

    ``port=0`` picks a free port (read ``.port`` / ``.url`` after :meth:`start`). Use as a context
    manager, or call :meth:`start` / :meth:`stop`. ``.sim`` is the live state: ``server.sim.advance(3)``
    moves the replay clock deterministically, ``server.sim.faults.add(Fault(...))`` injects faults.
    """

    sim: Simulator
    host: str = "127.0.0.1"
    port: int = 0
    log_level: str = "warning"

    def __post_init__(self) -> None:
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _make_server(self) -> tuple[uvicorn.Server, socket.socket]:
        sock = _bind(self.host, self.port)
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(create_app(self.sim), log_level=self.log_level, access_log=False,
                                timeout_graceful_shutdown=1, lifespan="off")
        return uvicorn.Server(config), sock

    def start(self, timeout: float = 15.0) -> "SimServer":
        if self._thread is not None:  # already running (e.g. start_simulator() used in a with block)
            return self
        self._server, sock = self._make_server()
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]},
                                        name=f"oanda-sim:{self.port}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise ServiceUnavailableError(f"the OANDA simulator did not start on {self.url}")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.sim.stopping.set()  # ends open price streams
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
            if self._thread.is_alive() and self._server is not None:
                self._server.force_exit = True
                self._thread.join(timeout=5)
        self._server = self._thread = None

    def serve_forever(self) -> None:
        """Blocking, in the main thread (Ctrl-C stops it)."""
        server, sock = self._make_server()
        try:
            server.run(sockets=[sock])
        finally:
            self.sim.stopping.set()

    def __enter__(self) -> "SimServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def start_simulator(
    bars: dict[str, pd.DataFrame],
    granularity: str = "M1",
    config: SimConfig | None = None,
    port: int = 0,
    host: str = "127.0.0.1",
) -> SimServer:
    """Start a simulator on ``host:port`` in a background thread; call ``.stop()`` when done."""
    return SimServer(Simulator(bars, granularity, config), host=host, port=port).start()


