"""The live option chain over a websocket: `ws/chain/<underlying>/<expiry>/`.

Protocol in docs/websocket.md. On connect the client gets the chain's latest snapshot, then the
deltas the ticker sends to the chain's group, at most one message per CHAIN_PUBLISH_INTERVAL_MS
(the chain's hub folds the deltas in between into one). Each client has a small bounded send queue between
the channel layer and its socket: a client that cannot keep up overflows it, loses the backlog and
gets one fresh snapshot instead, so a slow browser never holds up the ticker or the other clients
(the channel layer's own per-channel capacity drops messages too; `ChainFeed` sees the seq gap).
The chain's group is joined once per process by a `ChainHub`, which hands each update to every
local consumer of the chain.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import re
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from streaming.contract import CHAIN, DELTA, KIND, SNAPSHOT, chain_group, encode_browser_message, first_seq
from streaming.snapshot_store import aget_chain_snapshot
from streaming.web.chain_feed import ChainFeed, Decision
from streaming.web.chain_hub import chain_hub
from streaming.web.metrics import CHAIN_WS_BAD_MESSAGES_TOTAL
from tickerproject.platform.json_limits import JSONTooDeep, loads_limited
from tickerproject.platform.log_throttle import ThrottleRepeatsFilter

logger = logging.getLogger(__name__)
# What clients send is theirs to vary: one line a minute for all bad messages, however many clients
# send them; the counter (chain_ws_bad_messages_total) has every one.
input_logger = logging.getLogger(f"{__name__}.client_input")
INPUT_LOG_THROTTLE = ThrottleRepeatsFilter(interval_s=60.0, per_argument=False)
input_logger.addFilter(INPUT_LOG_THROTTLE)

# Close codes (4000-4999 are the application's). Browsers see code and reason in the close event.
CLOSE_LOGIN_REQUIRED = 4401
CLOSE_UNKNOWN_CHAIN = 4404
CLOSE_TRY_AGAIN = 1013  # RFC 6455 "try again later": the page reconnects with backoff

# Underlyings that fit a channel-layer group name (letters, digits, '_', '-').
_SAFE_UNDERLYING = re.compile(r"[A-Z0-9_-]{1,40}")

_RESYNC = object()  # queue marker: the backlog was dropped, send a fresh snapshot


_EXPECTED = 'expected {"action": "snapshot"}'


class BadClientMessage(ValueError):
    """A client message the chain protocol does not understand: `reason` labels the counter,
    the message goes back to the client."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def parse_client_action(text_data: str | None, bytes_data: bytes | None) -> str:
    """The action a client message asks for (only "snapshot" exists), or BadClientMessage."""
    if text_data is None:
        raise BadClientMessage("binary", f"binary frames are not understood: send JSON text, {_EXPECTED}")
    limit = settings.CHAIN_WS_MAX_MESSAGE_BYTES
    if len(text_data) > limit or len(text_data.encode("utf-8", "replace")) > limit:
        raise BadClientMessage("too_large", f"message longer than {limit} bytes: {_EXPECTED}")
    try:
        message = loads_limited(text_data, settings.JSON_MAX_DEPTH)
    except JSONTooDeep as exc:
        raise BadClientMessage("too_deep", f"{exc}: {_EXPECTED}") from None
    except ValueError:
        raise BadClientMessage("not_json", f"not JSON: {_EXPECTED}") from None
    if not isinstance(message, dict):
        raise BadClientMessage("not_object", f"not a JSON object: {_EXPECTED}")
    action = message.get("action")
    if action != "snapshot":
        raise BadClientMessage("unknown_action", f"unknown action {str(action)[:40]!r}: {_EXPECTED}")
    return action


@dataclass(frozen=True)
class _Text:
    """A protocol message (error) queued for the writer like chain messages."""

    text: str


class _EncodedMessages:
    """Every client of a chain is sent the same text for the same message: encode it once per
    process, not once per client."""

    def __init__(self, size: int = 256) -> None:
        self._size = size
        self._texts: OrderedDict[tuple, str] = OrderedDict()

    def text(self, kind: str, chain: dict[str, Any]) -> str:
        key = (kind, chain.get("underlying"), chain.get("expiry"), first_seq(chain), chain.get("seq"), chain.get("ts"))
        text = self._texts.get(key)
        if text is None:
            text = self._texts[key] = encode_browser_message(kind, chain)
            if len(self._texts) > self._size:
                self._texts.popitem(last=False)
        return text


_encoded = _EncodedMessages()


@database_sync_to_async
def _chain_is_listed(underlying: str, expiry: dt.date) -> bool:
    from subscriptions.selectors import chain_instruments

    return chain_instruments(underlying=underlying, expiry=expiry).exists()


class ChainConsumer(AsyncWebsocketConsumer):
    """One browser watching one option chain."""

    underlying: str
    expiry: str
    group: str | None = None

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.accept()
            await self.close(code=CLOSE_LOGIN_REQUIRED, reason="login required")
            return
        kwargs = self.scope["url_route"]["kwargs"]
        self.underlying = kwargs["underlying"].upper()
        self.expiry = kwargs["expiry"]
        reason = (
            await self._unknown_chain_reason()
            if _SAFE_UNDERLYING.fullmatch(self.underlying)
            else (f"unsupported underlying {self.underlying[:40]!r}")
        )
        if reason:
            await self.accept()
            # A close frame carries at most 123 bytes of reason; the path is the client's choice.
            await self.close(code=CLOSE_UNKNOWN_CHAIN, reason=reason.encode()[:123].decode(errors="ignore"))
            return
        self.feed = ChainFeed()
        self.queue: asyncio.Queue = asyncio.Queue(maxsize=settings.CHAIN_WS_SEND_QUEUE)
        self.overflows = 0
        group = chain_group(self.underlying, self.expiry)
        hub = chain_hub(self.channel_layer, group, interval_s=settings.CHAIN_PUBLISH_INTERVAL_MS / 1000)
        try:
            # Join before reading the snapshot so no delta published in between is missed.
            await hub.join(self)
        except Exception as exc:  # e.g. Redis pool exhausted in a reconnect storm: the page retries
            logger.warning("could not join %s (%s: %s); asking the client to retry", group, type(exc).__name__, exc)
            await self.accept()
            await self.close(code=CLOSE_TRY_AGAIN, reason="server busy, try again shortly")
            return
        self.group, self.hub = group, hub
        await self.accept()
        self.queue.put_nowait(_RESYNC)
        self.writer = asyncio.create_task(self._write_loop(), name=f"chain-ws {self.group}")

    async def _unknown_chain_reason(self) -> str:
        try:
            expiry = dt.date.fromisoformat(self.expiry)
        except ValueError:
            return f"bad expiry {self.expiry[:40]!r}: use YYYY-MM-DD"
        try:
            if await aget_chain_snapshot(self.underlying, self.expiry) is not None:
                return ""
        except Exception as exc:  # the store (Redis) is down: the database still knows the chain
            logger.warning("chain store unavailable while checking %s %s: %s", self.underlying, self.expiry, exc)
        if await _chain_is_listed(self.underlying, expiry):
            return ""
        return f"unknown chain {self.underlying} {self.expiry}"

    async def disconnect(self, code: int) -> None:
        if self.group is None:
            return
        await self.hub.leave(self)
        writer = getattr(self, "writer", None)
        if writer is not None:
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """A bad message is counted, answered with an error and skipped; the stream goes on."""
        try:
            parse_client_action(text_data, bytes_data)
        except BadClientMessage as exc:
            CHAIN_WS_BAD_MESSAGES_TOTAL.labels(reason=exc.reason).inc()
            input_logger.warning(
                "chain websocket %s: answered a bad client message with an error (%s)", self.group, exc.reason
            )
            # Through the queue too: only the writer task writes to the socket.
            self._enqueue(_Text(json.dumps({"type": "error", "message": str(exc)})))
            return
        self._enqueue(_RESYNC)

    def deliver(self, event: dict[str, Any]) -> None:
        """From the process's chain hub: a `chain.update` event whose payload is in `chain` (streaming.contract)."""
        self._enqueue(event)

    def _enqueue(self, item: Any) -> None:
        if self.group is None:
            return
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            # Fell behind: drop the backlog; one fresh snapshot replaces it.
            self.overflows += 1
            while not self.queue.empty():
                self.queue.get_nowait()
            self.queue.put_nowait(_RESYNC)

    async def _write_loop(self) -> None:
        try:
            while True:
                item = await self.queue.get()
                if item is _RESYNC:
                    await self._send_fresh_snapshot(forced=True)
                elif isinstance(item, _Text):
                    await self.send(text_data=item.text)
                elif item.get(KIND) == SNAPSHOT:
                    if self.feed.on_snapshot(item[CHAIN]):
                        await self._send(SNAPSHOT, item[CHAIN])
                else:
                    await self._forward_delta(item[CHAIN])
        except asyncio.CancelledError:
            raise
        except OSError as exc:  # the client went away mid-write: nothing to report
            logger.info("chain websocket %s closed while writing: %s", self.group, exc)
        except Exception:  # a failure ends this client only
            logger.exception("chain websocket writer for %s failed", self.group)
            with contextlib.suppress(Exception):
                await self.close(code=1011)

    async def _forward_delta(self, chain: dict[str, Any]) -> None:
        decision = self.feed.on_delta(chain)
        if decision is Decision.SEND:
            await self._send(DELTA, chain)
        elif decision is Decision.RESYNC:
            self.feed.resyncs += 1
            await self._send_fresh_snapshot()
            if self.feed.on_delta(chain) is Decision.SEND:
                await self._send(DELTA, chain)
            # Still a gap: the stored snapshot lags this delta; the next message retries.

    async def _send_fresh_snapshot(self, *, forced: bool = False) -> None:
        snapshot = await aget_chain_snapshot(self.underlying, self.expiry)
        if snapshot is None:
            if forced and self.feed.last_seq is None:
                await self.send(text_data=json.dumps({"type": "waiting", "message": "no data for this chain yet"}))
            return
        if self.feed.on_snapshot(snapshot, forced=forced):
            await self._send(SNAPSHOT, snapshot)

    async def _send(self, kind: str, chain: dict[str, Any]) -> None:
        await self.send(text_data=_encoded.text(kind, chain))
        self.feed.sent(chain, kind=kind)
