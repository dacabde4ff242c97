"""Run the simulator's ASGI app under uvicorn: in a background thread (tests, benchmarks) or in the
foreground (`manage.py runsimulator`)."""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import uvicorn

from mocking.simulator.app import ASGIApp, build_app
from mocking.simulator.state import SimulatorState

log = logging.getLogger(__name__)


def simulator_app(state: SimulatorState) -> ASGIApp:
    """The simulator's ASGI app (ticker WebSocket + REST endpoints)."""
    return build_app(state)


def _config(state: SimulatorState, host: str, port: int) -> uvicorn.Config:
    return uvicorn.Config(
        simulator_app(state),
        host=host,
        port=port,
        lifespan="on",
        log_level="warning",
        access_log=False,
        loop="asyncio",
        ws="websockets-sansio",
        timeout_graceful_shutdown=2,
    )


def _bind(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    sock.setblocking(False)
    return sock


@dataclass
class SimulatorHandle:
    """A simulator listening on loopback in a background thread. `stop()` shuts it down cleanly."""

    port: int
    host: str
    state: SimulatorState
    _server: uvicorn.Server = field(repr=False)
    _thread: threading.Thread = field(repr=False)

    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    def stop(self, timeout: float = 5.0) -> None:
        self._server.should_exit = True
        self._thread.join(timeout)
        if self._thread.is_alive():
            self._server.force_exit = True
            self._thread.join(timeout)

    def __enter__(self) -> SimulatorHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_simulator(state: SimulatorState, *, host: str = "127.0.0.1", port: int = 0) -> SimulatorHandle:
    """Serve the simulator in a background thread with its own event loop; returns once it listens."""
    sock = _bind(host, port)
    bound_port = sock.getsockname()[1]
    server = uvicorn.Server(_config(state, host, bound_port))
    failure: list[BaseException] = []

    def run() -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(server.serve(sockets=[sock]))
        except BaseException as exc:  # reported to the starting thread
            failure.append(exc)
        finally:
            loop.close()
            sock.close()

    thread = threading.Thread(target=run, name=f"simulator:{bound_port}", daemon=True)
    thread.start()
    while not server.started:
        if failure or not thread.is_alive():
            raise RuntimeError(f"the simulator did not start: {failure[0] if failure else 'thread exited'}")
        thread.join(0.01)
    return SimulatorHandle(port=bound_port, host=host, state=state, _server=server, _thread=thread)


def serve_forever(
    state: SimulatorState,
    sock: socket.socket,
    *,
    on_listening: Callable[[int], None] | None = None,
) -> None:
    """Serve on the listening `sock` in the foreground until SIGINT/SIGTERM (uvicorn installs the
    handlers in the main thread), then close it. `on_listening(port)` is told the bound port (useful
    with port 0) before serving starts."""
    host, bound_port = sock.getsockname()[:2]
    try:
        if on_listening is not None:
            on_listening(bound_port)
        uvicorn.Server(_config(state, host, bound_port)).run(sockets=[sock])
    finally:
        sock.close()
