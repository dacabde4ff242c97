"""The simulator's ticker WebSocket, in Kite's protocol (ASGI; served by uvicorn via `app.build_app`).

- Upgrade: `?api_key=...&access_token=...` is checked against `state.accounts`; an unknown key or token
  gets HTTP 403 (an ASGI close before accept), as Kite answers.
- Requests are JSON text frames `{"a": "subscribe" | "unsubscribe" | "mode", "v": ...}`. A token
  subscribed without a mode message streams in `quote` mode; re-subscribing keeps its mode; a mode
  message applies to subscribed tokens.
- Streaming: every `state.frame_interval_s` each connection packs the ticks that are due (each
  subscribed token at `state.ticks_per_second`, round robin) from `state.market.ticks(...)` into ONE
  binary frame; newly subscribed tokens or changed modes get a frame at once (Kite sends a snapshot on
  subscribe). With nothing to send for `state.heartbeat_interval_s` a 1-byte heartbeat goes out.
- Limits. Kite documents 3000 instruments per connection and 3 connections per api_key (staff answer on
  the Kite forum) but not the wire answer to exceeding them; this simulator answers the way Kite reports
  every non-fatal problem on an open socket, a text frame `{"type": "error", "data": "..."}` (which
  kiteconnect turns into `on_error(ws, 0, data)`):
  * subscribing past 3000 on one connection: tokens up to the limit are taken, the rest are ignored and
    one error message names how many were dropped; the connection stays open;
  * a 4th connection for one api_key: the upgrade is accepted, the error message is sent and the
    socket is closed with code 1008 (policy violation). Accepting first (rather than a bare HTTP 4xx)
    is what lets a client show the reason, and it is not a 403, so clients do not mistake it for a
    revoked token.
- Faults (`state.faults`, flipped by tests while it runs): `drop_all()` closes every connection (code
  1001); `stall` sends nothing at all, heartbeats included, while keeping the socket open and reading
  requests; `malformed` follows every tick frame with a malformed one (cycling: truncated packet,
  length past the end, unknown packet length, empty message); `revoke_token()` makes open connections
  using that token close (code 1008) and new ones get 403.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import struct
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

import numpy as np

from core.kite.packer import frame_from_packets, pack_ticks
from core.ticks import MODE_CODES
from mocking.simulator.state import SimConnection, SimulatorState

log = logging.getLogger(__name__)

HEARTBEAT = b"\x00"
CLOSE_GOING_AWAY = 1001
CLOSE_POLICY = 1008
MODES = ("ltp", "quote", "full")


MALFORMED_MARKER_TOKEN = (1 << 8) | 1  # the valid packet in front of the damage: a token nobody subscribes


def _malformed_frames() -> list[bytes]:
    good = struct.pack(">II", MALFORMED_MARKER_TOKEN, 12_345)  # one valid ltp packet kept in front of the damage
    return [
        struct.pack(">H", 3) + frame_from_packets([good, good])[2:] + b"\x00",  # truncated: ends in a header
        struct.pack(">HH", 2, 8) + good + struct.pack(">H", 184) + b"\x00" * 20,  # length past the end
        frame_from_packets([good, b"\x01" * 13]),  # unknown packet length
        b"",  # an empty message
    ]


MALFORMED_FRAMES = _malformed_frames()


class _Stream:
    """Which tokens are due next on one connection: round robin at the configured rate."""

    def __init__(self) -> None:
        self.version = -1
        self.tokens = np.zeros(0, dtype=np.int64)
        self.modes = np.zeros(0, dtype=np.int8)
        self.cursor = 0
        self.credit = 0.0

    def refresh(self, connection: SimConnection, version: int) -> None:
        if version == self.version:
            return
        self.version = version
        items = list(connection.modes.items())
        self.tokens = np.fromiter((t for t, _ in items), dtype=np.int64, count=len(items))
        self.modes = np.fromiter((MODE_CODES[m] for _, m in items), dtype=np.int8, count=len(items))
        self.cursor = self.cursor % len(items) if items else 0

    def due(self, elapsed: float, rate: float) -> np.ndarray:
        n = len(self.tokens)
        if not n:
            self.credit = 0.0
            return np.zeros(0, dtype=np.int64)
        self.credit = min(self.credit + elapsed * rate * n, 65535.0)
        k = int(self.credit)
        self.credit -= k
        rows = (self.cursor + np.arange(k)) % n
        self.cursor = (self.cursor + k) % n
        return rows


class _Session:
    def __init__(self, state: SimulatorState, connection: SimConnection, send: Callable) -> None:
        self.state = state
        self.connection = connection
        self.send_raw = send
        self.version = 0  # bumped when the subscription set or a mode changes
        self.fresh: dict[int, str] = {}  # tokens to send a snapshot of right away
        self.closed = asyncio.Event()
        self.last_sent = time.monotonic()
        self.malformed_cursor = 0
        self.market_error_logged = False

    async def send_error(self, message: str) -> None:
        self.connection.errors_sent.append(message)
        await self.send_text({"type": "error", "data": message})

    async def send_text(self, payload: dict[str, Any]) -> None:
        await self.send_raw({"type": "websocket.send", "text": json.dumps(payload)})
        self.last_sent = time.monotonic()

    async def send_bytes(self, payload: bytes) -> None:
        await self.send_raw({"type": "websocket.send", "bytes": payload})
        self.last_sent = time.monotonic()

    async def close(self, code: int, reason: str) -> None:
        if self.closed.is_set():
            return
        self.closed.set()
        self.connection.close_reason = reason
        with contextlib.suppress(Exception):
            await self.send_raw({"type": "websocket.close", "code": code, "reason": reason})

    # --- requests -----------------------------------------------------------------------------------
    async def handle_request(self, text: str) -> None:
        try:
            request = json.loads(text)
            action = request["a"]
            value = request["v"]
        except (ValueError, TypeError, KeyError):
            await self.send_error("Invalid message")
            return
        self.connection.requests.append(request)
        modes = self.connection.modes
        if action == "subscribe":
            tokens = _tokens(value)
            if tokens is None:
                await self.send_error("Invalid subscription list")
                return
            new = [t for t in dict.fromkeys(tokens) if t not in modes]
            room = max(0, self.state.max_tokens_per_connection - len(modes))
            taken, dropped = new[:room], new[room:]
            for token in taken:
                modes[token] = "quote"
                self.fresh[token] = "quote"
            if dropped:
                await self.send_error(
                    f"Subscription limit exceeded: at most {self.state.max_tokens_per_connection} instruments per "
                    f"connection; {len(dropped)} instruments were not subscribed"
                )
        elif action == "unsubscribe":
            tokens = _tokens(value)
            if tokens is None:
                await self.send_error("Invalid unsubscription list")
                return
            for token in tokens:
                modes.pop(token, None)
                self.fresh.pop(token, None)
        elif action == "mode":
            if not (isinstance(value, list) and len(value) == 2 and value[0] in MODES):
                await self.send_error("Invalid mode message")
                return
            tokens = _tokens(value[1])
            if tokens is None:
                await self.send_error("Invalid mode message")
                return
            for token in tokens:
                if token in modes:
                    modes[token] = value[0]
                    self.fresh[token] = value[0]
        else:
            await self.send_error(f"Unknown action {action!r}")
            return
        self.version += 1

    # --- streaming ----------------------------------------------------------------------------------
    def _pack(self, tokens: np.ndarray, modes: np.ndarray) -> bytes | None:
        market = self.state.market
        if market is None or not len(tokens):
            return None
        try:
            batch = market.ticks(tokens, modes)  # the market's own clock: simulated outside market hours
        except Exception:
            if not self.market_error_logged:
                self.market_error_logged = True
                log.exception("simulator: the mock market could not make ticks for %d tokens", len(tokens))
            return None
        ticks = batch.ticks
        if not len(ticks):
            return None
        # The market answers one row per token it knows; stream each in the mode the client asked for.
        if len(ticks) == len(tokens) and np.array_equal(ticks["instrument_token"], tokens):
            wire_modes = modes
        else:
            lookup = dict(zip(tokens.tolist(), modes.tolist(), strict=True))
            wire_modes = np.array([lookup.get(t, 1) for t in ticks["instrument_token"].tolist()], dtype=np.int8)
        self.connection.ticks_sent += len(ticks)
        return pack_ticks(ticks, modes=wire_modes)

    async def stream(self, generation: int) -> None:
        state = self.state
        stream = _Stream()
        last = time.monotonic()
        while not self.closed.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.closed.wait(), timeout=state.frame_interval_s)
            if self.closed.is_set():
                return
            if state.faults.drop_generation != generation:
                await self.close(CLOSE_GOING_AWAY, "dropped by fault injection")
                return
            if not state.is_authorised(self.connection.api_key, self.connection.access_token):
                await self.close(CLOSE_POLICY, "access token revoked")
                return
            now_mono = time.monotonic()
            elapsed, last = now_mono - last, now_mono
            if state.faults.stall:
                continue
            stream.refresh(self.connection, self.version)
            frames: list[bytes | None] = []
            if self.fresh:
                fresh, self.fresh = self.fresh, {}
                tokens = np.fromiter(fresh.keys(), dtype=np.int64, count=len(fresh))
                modes = np.fromiter((MODE_CODES[m] for m in fresh.values()), dtype=np.int8, count=len(fresh))
                frames.append(self._pack(tokens, modes))
            rows = stream.due(elapsed, state.ticks_per_second)
            if len(rows):
                frames.append(self._pack(stream.tokens[rows], stream.modes[rows]))
            for frame in frames:
                if frame is None:
                    continue
                await self.send_bytes(frame)
                self.connection.frames_sent += 1
                if state.faults.malformed:
                    bad = MALFORMED_FRAMES[self.malformed_cursor % len(MALFORMED_FRAMES)]
                    self.malformed_cursor += 1
                    await self.send_bytes(bad)
                    self.connection.malformed_sent += 1
            if time.monotonic() - self.last_sent >= state.heartbeat_interval_s:
                await self.send_bytes(HEARTBEAT)
                self.connection.heartbeats_sent += 1


def _tokens(value: Any) -> list[int] | None:
    if not isinstance(value, list) or not all(isinstance(t, int) and not isinstance(t, bool) for t in value):
        return None
    return value


def _credentials(scope: dict[str, Any]) -> tuple[str, str]:
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    return query.get("api_key", [""])[0], query.get("access_token", [""])[0]


async def handle_websocket(scope: dict[str, Any], receive: Callable, send: Callable, state: SimulatorState) -> None:
    """Serve one ticker WebSocket until the client leaves, a fault drops it, or the server stops."""
    message = await receive()
    if message["type"] != "websocket.connect":
        return
    api_key, access_token = _credentials(scope)
    if not state.is_authorised(api_key, access_token):
        state.rejected_upgrades += 1
        await send({"type": "websocket.close", "code": CLOSE_POLICY})  # before accept: HTTP 403
        return
    # Taken before the accept: a drop_all() the client can see as coming after its connect drops it.
    generation = state.faults.drop_generation
    # Counted and registered with no await in between, so simultaneous upgrades cannot all squeeze in.
    over_limit = len(state.live_connections(api_key)) >= state.max_connections_per_key
    if over_limit:
        text = f"Maximum connections exceeded: at most {state.max_connections_per_key} connections per api_key"
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": json.dumps({"type": "error", "data": text})})
        await send({"type": "websocket.close", "code": CLOSE_POLICY, "reason": "too many connections"})
        return
    connection = state.open_connection(api_key, access_token)
    try:
        await send({"type": "websocket.accept"})
        await _serve(state, connection, receive, send, generation)
    finally:
        state.close_connection(connection)


async def _serve(
    state: SimulatorState, connection: SimConnection, receive: Callable, send: Callable, generation: int
) -> None:
    session = _Session(state, connection, send)
    streamer = asyncio.create_task(session.stream(generation))
    try:
        while not session.closed.is_set():
            receiving = asyncio.ensure_future(receive())
            closed = asyncio.ensure_future(session.closed.wait())
            done, _ = await asyncio.wait({receiving, closed}, return_when=asyncio.FIRST_COMPLETED)
            closed.cancel()
            if receiving not in done:
                receiving.cancel()
                break
            message = receiving.result()
            if message["type"] == "websocket.disconnect":
                session.closed.set()
                connection.close_reason = connection.close_reason or "client disconnected"
                break
            if message["type"] == "websocket.receive" and message.get("text") is not None:
                await session.handle_request(message["text"])
            elif message["type"] == "websocket.receive":
                await session.send_error("Binary requests are not understood")
    except Exception:
        log.exception("simulator: ticker connection %d failed", connection.id)
        await session.close(1011, "internal error")
    finally:
        session.closed.set()
        streamer.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await streamer
