"""An asyncio client for Kite's ticker WebSocket (one connection), on the `websockets` library.

Why not kiteconnect's KiteTicker: its Twisted reactor cannot restart and does not fit asyncio, and it
never notices a connection that died silently. This client:

- connects to `{root}?api_key=...&access_token=...` with `X-Kite-Version: 3` (root is passed in; the
  ticker passes settings.KITE_WS_ROOT); the URL is only ever logged redacted;
- keeps the DESIRED subscription state (token → mode) and re-applies all of it (subscribe, then mode
  per mode group, in chunks) after every (re)connect; subscribe/unsubscribe/set_mode change that state
  and go on the wire at once when connected; at most `max_tokens` (3000, Kite's limit) per connection,
  enforced with `SubscriptionLimitError` before anything changes;
- binary frames → `on_ticks(TickBatch)` through the columnar parser; 1-byte heartbeats counted; text
  messages (`order`, `error`, `message`) → their callbacks; malformed frames counted by kind (logged
  once per kind), never raised;
- HTTP 403 at the upgrade → `on_auth_failure(...)`, state `auth_failed`, and NO more attempts until
  `update_token()` (or `retry_now()`) — no retry storm;
- otherwise reconnects with capped exponential backoff and jitter; a connection with no message at all
  (heartbeats included) for `silence_timeout` seconds (5 by default) is aborted and reconnected.

Callbacks may be plain functions or coroutine functions. Run it with `await client.run()` or
`client.start()` (a task); stop it with `await client.close()`. Up to 3 of these per account.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import websockets
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, InvalidStatus

from core.kite.columnar import parse_batch
from core.kite.parser import MalformedCounter
from core.ticks import TickBatch
from tickerproject.platform.log_redaction import RedactSecretsFilter

log = logging.getLogger(__name__)
# The websockets library logs the request line, query string and all, at DEBUG: give it a logger that
# masks credentials itself, whatever handlers the process has.
wire_log = logging.getLogger(f"{__name__}.wire")
wire_log.addFilter(RedactSecretsFilter())

MODES = ("ltp", "quote", "full")
MAX_TOKENS_PER_CONNECTION = 3000
DEFAULT_ROOT = "wss://ws.kite.trade"


class SubscriptionLimitError(ValueError):
    """More tokens than one connection may carry."""


class KiteAuthError(Exception):
    """The ticker refused the api_key/access_token (HTTP 403 at the upgrade)."""


@dataclass
class ClientStats:
    """Counters for the ticker's status page and metrics."""

    state: str = "idle"  # idle | connecting | connected | backoff | auth_failed | closed
    connects: int = 0
    reconnects: int = 0
    silent_reconnects: int = 0  # reconnects because nothing at all arrived for silence_timeout
    auth_failures: int = 0
    frames: int = 0
    ticks: int = 0
    heartbeats: int = 0
    text_messages: int = 0
    last_message_at: float | None = None  # time.time()
    connected_since: float | None = None
    last_error: str = ""
    malformed: MalformedCounter = field(default_factory=MalformedCounter)

    def as_dict(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "connects": self.connects,
            "reconnects": self.reconnects,
            "silent_reconnects": self.silent_reconnects,
            "auth_failures": self.auth_failures,
            "frames": self.frames,
            "ticks": self.ticks,
            "heartbeats": self.heartbeats,
            "text_messages": self.text_messages,
            "last_message_at": self.last_message_at,
            "connected_since": self.connected_since,
            "last_error": self.last_error,
            "malformed": self.malformed.as_dict(),
        }


Callback = Callable[..., Any] | None


def redact_url(root: str, api_key: str) -> str:
    return f"{root}?api_key={api_key}&access_token=***"


def _chunks(items: list[int], size: int) -> Iterable[list[int]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class KiteTickerClient:
    def __init__(
        self,
        *,
        api_key: str,
        access_token: str,
        root: str = DEFAULT_ROOT,
        on_ticks: Callback = None,
        on_order: Callback = None,
        on_error: Callback = None,
        on_message: Callback = None,
        on_auth_failure: Callback = None,
        on_connect: Callback = None,
        on_disconnect: Callback = None,
        source: str = "",
        max_tokens: int = MAX_TOKENS_PER_CONNECTION,
        chunk_size: int = 1000,
        silence_timeout: float = 5.0,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
        stable_after: float = 10.0,
        open_timeout: float = 10.0,
        max_frame_bytes: int = 8 * 2**20,
    ) -> None:
        self.api_key = api_key
        self._access_token = access_token
        self.root = root
        self.on_ticks = on_ticks
        self.on_order = on_order
        self.on_error = on_error
        self.on_message = on_message
        self.on_auth_failure = on_auth_failure
        self.on_connect = on_connect
        self.on_disconnect = on_disconnect
        self.source = source
        self.max_tokens = max_tokens
        self.chunk_size = chunk_size
        self.silence_timeout = silence_timeout
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.stable_after = stable_after
        self.open_timeout = open_timeout
        self.max_frame_bytes = max_frame_bytes
        self.stats = ClientStats(malformed=MalformedCounter(log, label=f"kite {source or api_key}"))
        self._desired: dict[int, str] = {}
        self._ws: ClientConnection | None = None
        self._outbox: asyncio.Queue[str] | None = None  # requests for the open connection, in order
        self._closing = False
        self._resume = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._attempt = 0

    # --- desired state --------------------------------------------------------------------------------
    @property
    def subscriptions(self) -> dict[int, str]:
        """The desired token → mode map (a copy)."""
        return dict(self._desired)

    def subscribe(self, tokens: Iterable[int], mode: str = "quote") -> None:
        """Add tokens in `mode` (Kite streams a bare subscription in quote mode; we always send the mode)."""
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        tokens = [int(t) for t in dict.fromkeys(tokens)]
        new = [t for t in tokens if t not in self._desired]
        if len(self._desired) + len(new) > self.max_tokens:
            raise SubscriptionLimitError(
                f"a Kite connection carries at most {self.max_tokens} instruments: {len(self._desired)} subscribed, "
                f"{len(new)} more requested"
            )
        for token in tokens:
            self._desired[token] = mode
        if new:
            self._send_nowait({"a": "subscribe", "v": new})
        if tokens:
            self._send_nowait({"a": "mode", "v": [mode, tokens]})

    def unsubscribe(self, tokens: Iterable[int]) -> None:
        gone = [int(t) for t in dict.fromkeys(tokens) if int(t) in self._desired]
        for token in gone:
            del self._desired[token]
        if gone:
            self._send_nowait({"a": "unsubscribe", "v": gone})

    def set_mode(self, mode: str, tokens: Iterable[int]) -> None:
        """Change the mode of subscribed tokens (unsubscribed ones are ignored, as Kite ignores them)."""
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        changed = [int(t) for t in dict.fromkeys(tokens) if int(t) in self._desired]
        for token in changed:
            self._desired[token] = mode
        if changed:
            self._send_nowait({"a": "mode", "v": [mode, changed]})

    def update_token(self, access_token: str) -> None:
        """Use a new access token from the next connect on; resumes a client stopped by an auth failure."""
        self._access_token = access_token
        self._resume.set()

    def retry_now(self) -> None:
        """Skip the current backoff (or the auth-failure pause) and connect again."""
        self._resume.set()

    @property
    def connected(self) -> bool:
        return self._ws is not None and self.stats.state == "connected"

    @property
    def url(self) -> str:
        return f"{self.root}?{urlencode({'api_key': self.api_key, 'access_token': self._access_token})}"

    @property
    def redacted_url(self) -> str:
        return redact_url(self.root, self.api_key)

    def status(self) -> dict[str, Any]:
        return self.stats.as_dict() | {"instruments": len(self._desired), "source": self.source}

    # --- wire ---------------------------------------------------------------------------------------
    def _messages_for(self, message: dict[str, Any]) -> list[str]:
        if message["a"] == "mode":
            mode, tokens = message["v"]
            return [json.dumps({"a": "mode", "v": [mode, chunk]}) for chunk in _chunks(tokens, self.chunk_size)]
        return [json.dumps({"a": message["a"], "v": chunk}) for chunk in _chunks(message["v"], self.chunk_size)]

    def _send_nowait(self, message: dict[str, Any]) -> None:
        outbox = self._outbox
        if outbox is None:
            return  # re-applied in full on the next connect
        for text in self._messages_for(message):
            outbox.put_nowait(text)

    def _desired_messages(self) -> list[str]:
        """Everything that re-creates the desired state on a fresh connection: subscribe all, then the
        modes (Kite streams a bare subscription in quote mode; the mode messages make it explicit)."""
        tokens = list(self._desired)
        texts = self._messages_for({"a": "subscribe", "v": tokens}) if tokens else []
        by_mode: dict[str, list[int]] = {}
        for token, mode in self._desired.items():
            by_mode.setdefault(mode, []).append(token)
        for mode in MODES:
            if by_mode.get(mode):
                texts += self._messages_for({"a": "mode", "v": [mode, by_mode[mode]]})
        return texts

    async def _sender(self, ws: ClientConnection, outbox: asyncio.Queue[str]) -> None:
        """The one writer of requests on a connection, so they reach Kite in the order they were made
        (a mode message overtaking its subscribe would be ignored)."""
        try:
            while True:
                await ws.send(await outbox.get())
        except ConnectionClosed:
            pass  # the receive loop ends too; the next connection re-applies the desired state

    # --- lifecycle ----------------------------------------------------------------------------------
    def start(self) -> asyncio.Task:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self.run(), name=f"kite-client:{self.source}")
        return self._task

    async def close(self) -> None:
        self._closing = True
        self._resume.set()
        ws = self._ws
        if ws is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(), timeout=2)
        task = self._task
        if task is not None and task is not asyncio.current_task() and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self.stats.state = "closed"

    async def run(self) -> None:
        """Connect, stream, reconnect, until close(). Auth failures pause it until update_token()."""
        first = True
        while not self._closing:
            if not first:
                self.stats.reconnects += 1
            first = False
            started = time.monotonic()
            try:
                await self._connect_and_stream()
            except InvalidStatus as exc:
                status = exc.response.status_code
                if status == 403:
                    await self._auth_failed()
                    continue
                self._note_error(f"HTTP {status} at the upgrade")
            except (OSError, ConnectionClosed, TimeoutError, websockets.exceptions.WebSocketException) as exc:
                self._note_error(f"{type(exc).__name__}: {exc}")
            except Exception as exc:  # a bug must not end the client silently: log it and reconnect
                log.exception("kite %s: unexpected failure", self.source or self.api_key)
                self._note_error(f"{type(exc).__name__}: {exc}")
            else:
                if not self._closing:
                    self._note_error("closed by the server")
            finally:
                self._ws = None
                self.stats.connected_since = None
            if self._closing:
                break
            if time.monotonic() - started >= self.stable_after:
                self._attempt = 0
            await self._backoff()
        self.stats.state = "closed"

    def _note_error(self, text: str) -> None:
        if self._access_token:
            text = text.replace(self._access_token, "***")  # e.g. InvalidURI quotes the whole URL
        self.stats.last_error = text
        log.warning("kite %s: connection to %s lost: %s", self.source or self.api_key, self.redacted_url, text)

    async def _auth_failed(self) -> None:
        self.stats.auth_failures += 1
        self.stats.state = "auth_failed"
        self.stats.last_error = "authentication failed (HTTP 403): api_key or access_token rejected"
        log.error(
            "kite %s: %s at %s; not retrying until the token is updated",
            self.source,
            self.stats.last_error,
            self.redacted_url,
        )
        self._resume.clear()
        await self._call(self.on_auth_failure, KiteAuthError(self.stats.last_error))
        if not self._closing:
            await self._resume.wait()
        self._resume.clear()
        self._attempt = 0

    async def _backoff(self) -> None:
        ceiling = min(self.backoff_max, self.backoff_initial * 2**self._attempt)
        self._attempt += 1
        delay = ceiling / 2 + random.uniform(0, ceiling / 2)  # equal jitter: never 0, never in lockstep
        self.stats.state = "backoff"
        self._resume.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):  # not wait_for: it can swallow a cancel on 3.11
                await self._resume.wait()
        self._resume.clear()

    async def _connect_and_stream(self) -> None:
        self.stats.state = "connecting"
        ws = await websockets.connect(
            self.url,
            additional_headers={"X-Kite-Version": "3"},
            open_timeout=self.open_timeout,
            ping_interval=None,  # Kite's heartbeats + our silence watchdog do this job
            close_timeout=1,
            max_size=self.max_frame_bytes,
            compression=None,
            logger=wire_log,
        )
        self._ws = ws
        self.stats.connects += 1
        self.stats.state = "connected"
        self.stats.connected_since = time.time()
        last_message = time.monotonic()
        log.info("kite %s: connected to %s", self.source or self.api_key, self.redacted_url)
        outbox: asyncio.Queue[str] = asyncio.Queue()
        for text in self._desired_messages():
            outbox.put_nowait(text)
        self._outbox = outbox  # from here on changes queue up behind the re-applied state

        async def watch() -> None:
            while True:
                await asyncio.sleep(min(0.5, self.silence_timeout / 4))
                if time.monotonic() - last_message > self.silence_timeout:
                    self.stats.silent_reconnects += 1
                    self.stats.last_error = f"no message for {self.silence_timeout:g} s"
                    log.warning("kite %s: silent for %.1f s, reconnecting", self.source, self.silence_timeout)
                    ws.transport.abort()
                    return

        loop = asyncio.get_running_loop()
        helpers = [loop.create_task(self._sender(ws, outbox)), loop.create_task(watch())]
        try:
            await self._call(self.on_connect, self)
            async for message in ws:
                last_message = time.monotonic()
                self.stats.last_message_at = time.time()
                if isinstance(message, bytes):
                    await self._on_binary(message)
                else:
                    await self._on_text(message)
        finally:
            for helper in helpers:
                helper.cancel()
            self._outbox = None
            self._ws = None
            if not self._closing:
                self.stats.state = "backoff"
            await self._call(self.on_disconnect, self)

    async def _on_binary(self, payload: bytes) -> None:
        if len(payload) == 1:
            self.stats.heartbeats += 1
            return
        self.stats.frames += 1
        batch = parse_batch(payload, malformed=self.stats.malformed, received_at=time.time(), source=self.source)
        if len(batch):
            self.stats.ticks += len(batch)
            await self._call(self.on_ticks, batch)

    async def _on_text(self, text: str) -> None:
        self.stats.text_messages += 1
        try:
            message = json.loads(text)
            kind, data = message.get("type"), message.get("data")
        except (ValueError, AttributeError):
            self.stats.malformed.add("bad_text", "(a text message that is not a JSON object)")
            return
        if kind == "order":
            await self._call(self.on_order, data)
        elif kind == "error":
            log.warning("kite %s: error message from the ticker: %s", self.source, data)
            await self._call(self.on_error, data)
        else:
            await self._call(self.on_message, message)

    async def _call(self, callback: Callback, *args: Any) -> None:
        if callback is None:
            return
        try:
            result = callback(*args)
            if inspect.isawaitable(result):
                await result
        except Exception:
            log.exception("kite %s: callback %s failed", self.source, getattr(callback, "__name__", callback))


__all__ = [
    "ClientStats",
    "KiteAuthError",
    "KiteTickerClient",
    "SubscriptionLimitError",
    "TickBatch",
    "redact_url",
]
