"""The simulator's ASGI app: websocket scopes go to the ticker, HTTP scopes to the REST endpoints."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from mocking.simulator.state import SimulatorState

Scope = dict[str, Any]
ASGIApp = Callable[[Scope, Callable, Callable], Awaitable[None]]


def build_app(state: SimulatorState) -> ASGIApp:
    from mocking.simulator import rest, ticker

    async def app(scope: Scope, receive: Callable, send: Callable) -> None:
        if scope["type"] == "websocket":
            await ticker.handle_websocket(scope, receive, send, state)
        elif scope["type"] == "http":
            await rest.handle_http(scope, receive, send, state)
        elif scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return

    return app
