"""Tick sources: where the ticker loop's TickBatches come from.

One source per (account, connection). Two kinds behind one interface, so mock data takes the same
path through the loop as live data:

- `KiteConnectionSource`: one Kite ticker WebSocket (`streaming.ticker.kite_client.KiteTickerClient`), for a
  live account (or the simulator, which speaks the same protocol);
- `MockConnectionSource`: the in-process mock market (`mocking.market.MockMarket`), stepped every
  `interval_s` for the tokens this connection carries, flagged `is_mock` all the way to the browser.

Both keep a desired token → mode map; `apply_diff()` changes it (only the difference goes on the
wire for Kite). Callbacks: `on_ticks(TickBatch)` and, for Kite, `on_auth_failure(source, error)`.
No Django imports.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, Protocol

import numpy as np

from core.ticks import MODE_CODES, TickBatch

log = logging.getLogger(__name__)

TicksCallback = Callable[[TickBatch], Awaitable[None] | None]


class TickSource(Protocol):
    account_id: int
    connection_index: int
    kind: str  # "live" | "mock"

    @property
    def name(self) -> str: ...
    @property
    def subscriptions(self) -> dict[int, str]: ...
    def apply_diff(self, *, subscribe: Mapping[int, str], unsubscribe: Iterable[int]) -> None: ...
    def start(self) -> asyncio.Task: ...
    async def close(self) -> None: ...
    def status(self) -> dict[str, Any]: ...


async def _maybe_await(result: Any) -> None:
    if inspect.isawaitable(result):
        await result


def _group_by_mode(subscribe: Mapping[int, str]) -> dict[str, list[int]]:
    groups: dict[str, list[int]] = {}
    for token, mode in subscribe.items():
        groups.setdefault(mode, []).append(int(token))
    return groups


class KiteConnectionSource:
    """A live Kite ticker connection for one account."""

    kind = "live"

    def __init__(
        self,
        *,
        account_id: int,
        connection_index: int,
        api_key: str,
        access_token: str,
        root: str,
        on_ticks: TicksCallback,
        on_auth_failure: Callable[[KiteConnectionSource, Exception], Any] | None = None,
        client_factory: Callable[..., Any] | None = None,
        **client_options: Any,
    ) -> None:
        from streaming.ticker.kite_client import KiteTickerClient

        self.account_id = account_id
        self.connection_index = connection_index
        self._on_auth_failure = on_auth_failure
        factory = client_factory or KiteTickerClient
        self.client = factory(
            api_key=api_key,
            access_token=access_token,
            root=root,
            on_ticks=on_ticks,
            on_auth_failure=self._auth_failed,
            source=self.name,
            **client_options,
        )

    @property
    def name(self) -> str:
        return f"account:{self.account_id}/conn:{self.connection_index}"

    @property
    def subscriptions(self) -> dict[int, str]:
        return self.client.subscriptions

    def apply_diff(self, *, subscribe: Mapping[int, str], unsubscribe: Iterable[int]) -> None:
        unsubscribe = [int(t) for t in unsubscribe]
        if unsubscribe:
            self.client.unsubscribe(unsubscribe)
        # The client sends subscribe + mode; a token already subscribed only gets the mode message.
        for mode, tokens in _group_by_mode(subscribe).items():
            current = self.client.subscriptions
            fresh = [t for t in tokens if t not in current]
            moved = [t for t in tokens if t in current and current[t] != mode]
            if fresh:
                self.client.subscribe(fresh, mode)
            if moved:
                self.client.set_mode(mode, moved)

    def update_token(self, access_token: str) -> None:
        self.client.update_token(access_token)

    def start(self) -> asyncio.Task:
        return self.client.start()

    async def close(self) -> None:
        await self.client.close()

    async def _auth_failed(self, error: Exception) -> None:
        if self._on_auth_failure is not None:
            await _maybe_await(self._on_auth_failure(self, error))

    def status(self) -> dict[str, Any]:
        stats = self.client.stats
        return {
            "kind": self.kind,
            "state": stats.state,
            "reconnects": stats.reconnects,
            "ticks": stats.ticks,
            "frames": stats.frames,
            "heartbeats": stats.heartbeats,
            "malformed": stats.malformed.as_dict() if hasattr(stats.malformed, "as_dict") else {},
            "last_message_at": stats.last_message_at,
            "last_error": stats.last_error,
        }


class MockConnectionSource:
    """The mock market as a tick source: every `interval_s` it asks the market for one tick per
    subscribed token in its mode and hands the batch to the loop like a Kite frame."""

    kind = "mock"

    def __init__(
        self,
        *,
        account_id: int,
        connection_index: int,
        market: Any,
        on_ticks: TicksCallback,
        interval_s: float = 0.5,
        market_time: Callable[[], float] | None = None,
    ) -> None:
        self.account_id = account_id
        self.connection_index = connection_index
        self.market = market
        self.on_ticks = on_ticks
        self.interval_s = interval_s
        self._market_time = market_time  # None: the market's own session clock
        self._desired: dict[int, str] = {}
        self._tokens = np.empty(0, dtype=np.int64)
        self._modes = np.empty(0, dtype=np.int8)
        self._task: asyncio.Task | None = None
        self.ticks = 0
        self.batches = 0
        self.errors = 0
        self.last_tick_at: float | None = None
        self.last_error = ""
        self.state = "idle"

    @property
    def name(self) -> str:
        return f"account:{self.account_id}/conn:{self.connection_index}/mock"

    @property
    def subscriptions(self) -> dict[int, str]:
        return dict(self._desired)

    def apply_diff(self, *, subscribe: Mapping[int, str], unsubscribe: Iterable[int]) -> None:
        for token in unsubscribe:
            self._desired.pop(int(token), None)
        for token, mode in subscribe.items():
            self._desired[int(token)] = mode
        self._tokens = np.fromiter(self._desired.keys(), dtype=np.int64, count=len(self._desired))
        self._modes = np.fromiter(
            (MODE_CODES[m] for m in self._desired.values()), dtype=np.int8, count=len(self._desired)
        )

    def start(self) -> asyncio.Task:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self.run(), name=f"mock-source:{self.name}")
        return self._task

    async def close(self) -> None:
        task = self._task
        if task is not None and not task.done() and task is not asyncio.current_task():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self.state = "closed"

    def emit_once(self) -> TickBatch | None:
        """One batch for the current subscriptions (None when there are none)."""
        if not len(self._tokens):
            return None
        market_now = self._market_time() if self._market_time is not None else None
        batch = self.market.ticks(self._tokens, self._modes, now=market_now)
        return TickBatch(
            ticks=batch.ticks, received_at=time.time(), is_mock=True, source=self.name, malformed=batch.malformed
        )

    async def run(self) -> None:
        self.state = "connected"
        next_at = time.monotonic()
        while True:
            try:
                batch = self.emit_once()
                if batch is not None and len(batch):
                    self.ticks += len(batch)
                    self.batches += 1
                    self.last_tick_at = batch.received_at
                    await _maybe_await(self.on_ticks(batch))
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a bad step must not end the stream
                self.errors += 1
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.exception("mock source %s failed to produce ticks", self.name)
            next_at += self.interval_s
            delay = next_at - time.monotonic()
            if delay < 0:  # fell behind: do not try to catch up in a burst
                next_at = time.monotonic()
                delay = 0
            await asyncio.sleep(delay)

    def status(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "state": self.state,
            "reconnects": 0,
            "ticks": self.ticks,
            "frames": self.batches,
            "heartbeats": 0,
            "malformed": {},
            "last_message_at": self.last_tick_at,
            "last_error": self.last_error,
        }


__all__ = ["KiteConnectionSource", "MockConnectionSource", "TickSource"]
