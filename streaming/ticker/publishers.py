"""Where chain messages and latest ticks go: the channel layer (browsers) and Redis (other processes).

`ChannelPublisher` sends each chain message to the chain's group as a `chain.update` event
(`streaming.contract`) and keeps the latest snapshot in the snapshot store, so a consumer can always
start from a full chain (docs/websocket.md). On a channel layer that serialises its messages (Redis)
the payload travels as its JSON instead (the contract's `chain_json` form, the bytes Redis pub/sub
gets too): encoded once, where msgpack would walk the nested payload again. A channel-layer failure
is logged and counted; it never stops the loop.

`RedisPublisher` writes, per chain, the snapshot JSON under `snapshot_store.chain_key`, publishes the
delta on the chain's pub/sub channel (`chain_channel`), and keeps the latest state per instrument in
the hash `LATEST_KEY` (field = token, value = a packed `LATEST_DTYPE` record; `decode_latest` reads
one). The loop only *offers* work (`offer_chain`, `offer_latest`: latest wins, nothing queues up); a
writer task drains it in pipelines (at most one per `min_interval_s`) through the circuit breaker
(`streaming/ticker/circuit_breaker.py`), so a slow or dead Redis never stalls tick processing. Deltas
go out with every pipeline; a chain's snapshot (the whole chain, ~200 KB for 375 strikes) at most every
`snapshot_interval_s` (1 s): re-sending it with every delta would be most of the bytes the ticker
writes to Redis. A reader that finds
the stored snapshot older than the deltas it receives waits for the next one (docs/websocket.md).
Whatever could not be written while Redis was away is re-sent in full when the breaker closes again
(`resync`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable
from typing import Any, cast

import numpy as np
import orjson

from core.ticks import MODE_NAMES
from streaming.contract import CHAIN, CHAIN_JSON, CHAIN_UPDATE, DELTA, KIND, chain_group
from streaming.snapshot_store import chain_key, put_local_chain_snapshot
from streaming.ticker.circuit_breaker import CircuitBreaker, CircuitOpenError
from streaming.ticker.market_state import MarketState

log = logging.getLogger(__name__)

LATEST_KEY = "tp:latest"
SNAPSHOT_TTL_S = 24 * 3600


def chain_channel(underlying: str, expiry: str) -> str:
    """Redis pub/sub channel carrying a chain's deltas (same JSON as the channel-layer payload)."""
    return chain_key(underlying, expiry) + ":updates"


def _dumps(value: Any) -> bytes:
    """Compact JSON (orjson: ~10x the standard library on chain rows; NaN would become null)."""
    return orjson.dumps(value)


def encode_chain_message(message: dict[str, Any]) -> bytes:
    """A chain message as the JSON that Redis pub/sub and a serialising channel layer carry."""
    return _dumps(message)


# The latest tick per instrument as a fixed little-endian record: packing 9,000 of them is a few
# vectorised numpy operations, where JSON would cost ~10 µs each on the hot side of the loop.
LATEST_DTYPE = np.dtype(
    [
        ("instrument_token", "<i8"),
        ("mode", "i1"),
        ("is_mock", "?"),
        ("last_price", "<f8"),
        ("close", "<f8"),
        ("volume", "<i8"),
        ("oi", "<i8"),
        ("bid", "<f8"),
        ("ask", "<f8"),
        ("exchange_timestamp", "<i8"),
        ("received_at", "<f8"),
    ]
)
# LATEST_DTYPE's field names, in order (numpy's stubs type `dtype.names` as optional).
LATEST_FIELD_NAMES = cast("tuple[str, ...]", LATEST_DTYPE.names)


def latest_records(state: MarketState, rows: np.ndarray) -> dict[int, bytes]:
    """The `tp:latest` values for `rows` of the market state: token -> LATEST_DTYPE record bytes."""
    rows = np.asarray(rows, dtype=np.int64)
    if not len(rows):
        return {}
    ticks = state.ticks[rows]
    records = np.empty(len(rows), dtype=LATEST_DTYPE)
    for name in ("instrument_token", "mode", "last_price", "close", "oi", "exchange_timestamp"):
        records[name] = ticks[name]
    records["volume"] = ticks["volume_traded"]
    records["bid"] = ticks["bid_price"][:, 0]
    records["ask"] = ticks["ask_price"][:, 0]
    records["is_mock"] = state.is_mock[rows]
    records["received_at"] = state.updated_at[rows]
    raw = records.tobytes()
    size = LATEST_DTYPE.itemsize
    chunks = [raw[k : k + size] for k in range(0, len(raw), size)]
    return dict(zip(records["instrument_token"].tolist(), chunks, strict=True))


def decode_latest(value: bytes) -> dict[str, Any]:
    """One `tp:latest` value as a dict (NaN → None, mode as its name)."""
    record = np.frombuffer(value, dtype=LATEST_DTYPE, count=1)[0]
    out: dict[str, Any] = {}
    for name in LATEST_FIELD_NAMES:
        item = record[name].item()
        if isinstance(item, float) and not np.isfinite(item):
            item = None
        out[name] = item
    out["mode"] = MODE_NAMES[out["mode"]]
    return out


class _SnapshotEncoder:
    """Chain snapshot JSON. When at most half of a chain's rows changed since its last snapshot, only
    those are re-encoded: unchanged rows are the same objects from one snapshot to the next
    (copy-on-write in ChainBook), so their JSON is reused. When more changed (a busy chain, written
    once a second, usually has every row new), one orjson call for the whole snapshot is about twice
    as fast as a call per row."""

    def __init__(self) -> None:
        # Per chain, the last snapshot's row objects and their JSON (None: encoded whole, not per
        # row). The row objects themselves are kept, not their id(): a freed row's id is soon reused
        # by a new dict (CPython's dict free list), which must not match the old row's JSON.
        self._rows: dict[tuple[str, str], tuple[list[Any], list[bytes] | None]] = {}

    def encode(self, snapshot: dict[str, Any]) -> bytes:
        rows = snapshot.get("rows")
        if type(rows) is not list or next(reversed(snapshot)) != "rows":
            return _dumps(snapshot)
        key = (snapshot["underlying"], snapshot["expiry"])
        objects, texts = self._rows.get(key, (None, None))
        if objects is None or len(objects) != len(rows):
            objects, texts = [None] * len(rows), None
        changed = [n for n, (row, old) in enumerate(zip(rows, objects, strict=True)) if row is not old]
        if 2 * len(changed) > len(rows):
            self._rows[key] = (list(rows), None)
            return _dumps(snapshot)
        if texts is None:  # the first sparse change after whole encodings: every row's JSON, once
            texts = [_dumps(row) for row in rows]
        else:
            for n in changed:
                texts[n] = _dumps(rows[n])
        self._rows[key] = (list(rows), texts)
        head = _dumps({k: v for k, v in snapshot.items() if k != "rows"})
        return head[:-1] + (b',"rows":[' if len(head) > 2 else b'"rows":[') + b",".join(texts) + b"]}"


class SharedPayload(dict):
    """A chain message that nobody mutates once built (ChainBook builds a new one per message, and
    readers only read it): a deep copy of it is itself. The in-memory channel layer deep-copies every
    message once per group member to isolate senders from receivers; for a ~full-chain delta that
    copy cost more than building it. Other layers get the payload's JSON instead (ChannelPublisher)."""

    __slots__ = ()

    def __deepcopy__(self, memo: dict[int, Any]) -> SharedPayload:
        return self


def _is_in_memory(layer: Any) -> bool:
    from channels.layers import InMemoryChannelLayer

    return isinstance(layer, InMemoryChannelLayer)


class ChannelPublisher:
    """Chain messages to the channel layer + the in-process snapshot store."""

    def __init__(self, channel_layer: Any = None, *, timeout_s: float = 2.0) -> None:
        if channel_layer is None:
            from channels.layers import get_channel_layer

            channel_layer = get_channel_layer()
        self.layer = channel_layer
        self.timeout_s = timeout_s
        # The in-memory layer hands the payload object over (SharedPayload: no copies); any other
        # layer serialises the event, so it gets the payload's JSON.
        self.sends_encoded = channel_layer is not None and not _is_in_memory(channel_layer)
        self.sent = 0
        self.failed = 0
        self.last_error = ""

    async def publish(
        self, *, snapshot: dict[str, Any], delta: dict[str, Any], kind: str = DELTA, encoded: bytes | None = None
    ) -> bool:
        """Store the snapshot and send the delta (`kind="snapshot"` for a chain's first message, or
        after its strikes changed: the payload is then whole). `encoded`: the delta's JSON when the
        caller already has it (`encode_chain_message`)."""
        underlying, expiry = snapshot["underlying"], snapshot["expiry"]
        put_local_chain_snapshot(underlying, expiry, snapshot)
        if self.layer is None:
            return False
        event: dict[str, Any]
        try:
            if self.sends_encoded:
                event = {"type": CHAIN_UPDATE, KIND: kind, CHAIN_JSON: encoded or encode_chain_message(delta)}
            else:
                event = {"type": CHAIN_UPDATE, KIND: kind, CHAIN: SharedPayload(delta)}
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for swallows a cancel that arrives as
            # the send completes (the in-memory layer's send completes at once), and the flusher then
            # outlives the ticker's shutdown.
            async with asyncio.timeout(self.timeout_s):
                await self.layer.group_send(chain_group(underlying, expiry), event)
        except Exception as exc:  # e.g. the Redis channel layer lost Redis: the next delta tries again
            self.failed += 1
            if self.last_error != f"{type(exc).__name__}: {exc}":
                log.warning("channel layer send failed for %s %s: %s", underlying, expiry, exc)
            self.last_error = f"{type(exc).__name__}: {exc}"
            return False
        self.sent += 1
        return True


class RedisPublisher:
    """Latest state to Redis behind a circuit breaker; see the module docstring."""

    def __init__(
        self,
        redis: Any,  # redis.asyncio.Redis
        *,
        breaker: CircuitBreaker | None = None,
        snapshots: Callable[[], list[dict[str, Any]]] | None = None,
        all_latest: Callable[[], dict[int, bytes]] | None = None,
        batch_latest: int = 1000,
        min_interval_s: float = 0.1,
        snapshot_interval_s: float = 1.0,
    ) -> None:
        self.redis = redis
        self.breaker = breaker or CircuitBreaker(name="redis-publisher")
        self.breaker.on_close = self._schedule_resync
        self._snapshots = snapshots or (lambda: [])
        self._all_latest = all_latest or (lambda: {})
        self.batch_latest = batch_latest
        self.min_interval_s = min_interval_s  # coalesce: at most one pipeline per interval
        self.snapshot_interval_s = snapshot_interval_s  # a chain's snapshot at most this often
        # (underlying, expiry) -> (latest snapshot, [(delta, its JSON or None), ...]) to write
        self._chains: dict[tuple[str, str], tuple[dict[str, Any], list[tuple[dict[str, Any], bytes | None]]]] = {}
        # Snapshots offered but not written yet (their chain's last write is recent), and when each
        # chain's snapshot was last written (monotonic).
        self._held_snapshots: dict[tuple[str, str], dict[str, Any]] = {}
        self._snapshot_written_at: dict[tuple[str, str], float] = {}
        self._latest: dict[int, bytes] = {}
        self._encoder = _SnapshotEncoder()
        self._wake = asyncio.Event()
        self._missed = False  # something was not written: re-send everything on recovery
        self._resync_requested = False
        self.writes = 0
        self.skipped = 0
        self.resyncs = 0
        self.last_write_at: float | None = None

    # --- the loop's side: cheap, never blocks -------------------------------------------------
    def offer_chain(self, *, snapshot: dict[str, Any], delta: dict[str, Any], encoded: bytes | None = None) -> None:
        """Queue a chain's delta (and newest snapshot) for the writer; `encoded`: the delta's JSON when
        the caller already has it (`encode_chain_message`)."""
        key = (snapshot["underlying"], snapshot["expiry"])
        pending = self._chains.get(key)
        # Encoded here, while the new rows and sides are still in the CPU caches (measured: the same
        # encoding costs ~25% more at write time, when they are cold). Not while Redis is down. A
        # failure is left to `_write`, where it is counted and logged as before.
        if encoded is None and self.breaker.state != "open":
            try:
                encoded = _dumps(delta)
            except Exception:
                encoded = None
        deltas = [*pending[1], (delta, encoded)] if pending else [(delta, encoded)]
        if len(deltas) > 20:  # Redis is behind: subscribers resync from the snapshot (seq gap)
            deltas = deltas[-20:]
        self._chains[key] = (snapshot, deltas)
        self._wake.set()

    def offer_latest(self, records: dict[int, bytes]) -> None:
        if records:
            self._latest.update(records)
            self._wake.set()

    # --- the writer task ----------------------------------------------------------------------
    async def run(self) -> None:
        """Drain offered work into Redis until cancelled."""
        while True:
            due = self._next_snapshot_due()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(None if due is None else max(due - time.monotonic(), 0.0)):
                    await self._wake.wait()
            self._wake.clear()
            started = time.monotonic()
            await self.flush()
            await asyncio.sleep(max(self.min_interval_s - (time.monotonic() - started), 0.0))
            if self._chains or self._latest:
                # Work is waiting but could not go out (breaker open): check again shortly.
                await asyncio.sleep(0.2)
                self._wake.set()

    def _next_snapshot_due(self) -> float | None:
        if not self._held_snapshots:
            return None
        return min(self._snapshot_written_at.get(key, 0.0) for key in self._held_snapshots) + self.snapshot_interval_s

    def _snapshots_due(self, chains: dict) -> dict[tuple[str, str], dict[str, Any]]:
        """The snapshots to write now: each chain's newest, unless its last write is too recent."""
        for key, (snapshot, _) in chains.items():
            self._held_snapshots[key] = snapshot
        now = time.monotonic()
        due = {
            key: snapshot
            for key, snapshot in self._held_snapshots.items()
            if now - self._snapshot_written_at.get(key, -math.inf) >= self.snapshot_interval_s
        }
        for key in due:
            del self._held_snapshots[key]
        return due

    async def flush(self) -> bool:
        """Write what is pending; True when it all went out."""
        if self._resync_requested:
            self._resync_requested = False
            self._queue_everything()
        snapshot_due = self._next_snapshot_due()
        if not (self._chains or self._latest or (snapshot_due is not None and snapshot_due <= time.monotonic())):
            return True
        if not self.breaker.allow():
            self._drop_pending_while_down()
            return False
        chains, self._chains = self._chains, {}
        latest, self._latest = self._latest, {}
        snapshots = self._snapshots_due(chains)
        try:
            await self.breaker.call(self._write, chains, latest, snapshots)
        except CircuitOpenError:
            self._missed = True
            self.skipped += 1
            return False
        except Exception as exc:
            self._missed = True
            self.skipped += 1
            log.warning("redis publish failed (%s); state is re-sent when Redis answers", exc)
            return False
        self.writes += 1
        self.last_write_at = time.time()
        return True

    async def _write(self, chains: dict, latest: dict[int, bytes], snapshots: dict | None = None) -> None:
        # Several small pipelines rather than one big one: packing a command is synchronous work
        # in the event loop, and the ticks must keep flowing meanwhile.
        pipe = self.redis.pipeline(transaction=False)
        if snapshots is None:  # everything offered, at once
            snapshots = {key: snapshot for key, (snapshot, _) in chains.items()}
        # The snapshot first: a reader that subscribed and then reads it must not find it older than
        # deltas published before it (it may be older than later ones: docs/websocket.md).
        now = time.monotonic()
        for (underlying, expiry), snapshot in snapshots.items():
            pipe.set(chain_key(underlying, expiry), self._encoder.encode(snapshot), ex=SNAPSHOT_TTL_S)
            self._snapshot_written_at[(underlying, expiry)] = now
        for (underlying, expiry), (_, deltas) in chains.items():
            channel = chain_channel(underlying, expiry)
            for delta, encoded in deltas:
                pipe.publish(channel, encoded if encoded is not None else _dumps(delta))
        if chains or snapshots:
            await pipe.execute()
        items = list(latest.items())
        for start in range(0, len(items), self.batch_latest):
            await self.redis.hset(LATEST_KEY, mapping=dict(items[start : start + self.batch_latest]))

    def _drop_pending_while_down(self) -> None:
        # While the breaker is open nothing is kept: the resync on recovery sends the full state.
        if self._chains or self._latest or self._held_snapshots:
            self._missed = True
            self.skipped += 1
        self._chains.clear()
        self._latest.clear()
        self._held_snapshots.clear()

    def _schedule_resync(self) -> None:
        if self._missed:
            self._resync_requested = True
            self._wake.set()

    def _queue_everything(self) -> None:
        self._missed = False
        self.resyncs += 1
        for snapshot in self._snapshots():
            key = (snapshot["underlying"], snapshot["expiry"])
            self._chains[key] = (snapshot, self._chains.get(key, (None, []))[1])
            self._snapshot_written_at.pop(key, None)  # Redis lost it: write it with the next pipeline
        self._latest.update(self._all_latest())
        log.info("redis is back: re-sending %d chains and %d instruments", len(self._chains), len(self._latest))

    def status(self) -> dict[str, Any]:
        breaker = self.breaker.status()
        return {
            "breaker": breaker.state,
            "breaker_opened": breaker.opened,
            "writes": self.writes,
            "skipped": self.skipped,
            "resyncs": self.resyncs,
            "last_write_at": self.last_write_at,
            "last_error": breaker.last_error,
        }


__all__ = [
    "LATEST_DTYPE",
    "LATEST_KEY",
    "ChannelPublisher",
    "RedisPublisher",
    "SharedPayload",
    "chain_channel",
    "decode_latest",
    "encode_chain_message",
    "latest_records",
]
