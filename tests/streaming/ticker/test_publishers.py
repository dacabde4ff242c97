"""Publishers: the channel layer gets every delta; Redis gets the latest state behind the breaker,
and everything missed during an outage is re-sent when Redis answers again."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil

import numpy as np
import pytest
import redis.asyncio as aioredis
from channels.layers import InMemoryChannelLayer

from core.ticks import MODE_FULL, TickBatch, empty_ticks
from streaming.contract import chain_event_payload, chain_group
from streaming.snapshot_store import chain_key, get_chain_snapshot
from streaming.ticker.circuit_breaker import CircuitBreaker
from streaming.ticker.market_state import MarketState
from streaming.ticker.publishers import (
    LATEST_KEY,
    ChannelPublisher,
    RedisPublisher,
    SharedPayload,
    _dumps,
    _SnapshotEncoder,
    chain_channel,
    decode_latest,
    encode_chain_message,
    latest_records,
)
from tests.streaming.ticker.support import RedisServer


def _chain(seq: int, ltp: float = 10.0) -> dict:
    return {
        "underlying": "NIFTY",
        "expiry": "2026-12-01",
        "seq": seq,
        "ts": 1.0,
        "source": "mock",
        "header": {"spot": 24000.0},
        "rows": [{"strike": 24000.0, "CE": {"instrument_token": 1, "ltp": ltp}}],
    }


async def test_channel_publisher_sends_to_the_chain_group_and_stores_the_snapshot():
    layer = InMemoryChannelLayer()
    channel = await layer.new_channel()
    await layer.group_add(chain_group("NIFTY", "2026-12-01"), channel)
    publisher = ChannelPublisher(layer)
    assert await publisher.publish(snapshot=_chain(3), delta=_chain(3), kind="snapshot")
    message = await asyncio.wait_for(layer.receive(channel), 1)
    assert message == {"type": "chain.update", "kind": "snapshot", "chain": _chain(3)}
    assert get_chain_snapshot("NIFTY", "2026-12-01")["seq"] == 3


async def test_on_the_redis_channel_layer_a_delta_travels_as_its_json_and_reads_back_as_the_delta():
    from channels_redis.core import RedisChannelLayer

    server = RedisServer()
    server.start()
    layer = RedisChannelLayer(hosts=[{"address": server.url}], prefix="tp:test")
    try:
        channel = await layer.new_channel()
        await layer.group_add(chain_group("NIFTY", "2026-12-01"), channel)
        publisher = ChannelPublisher(layer)
        assert publisher.sends_encoded and not ChannelPublisher(InMemoryChannelLayer()).sends_encoded
        assert await publisher.publish(snapshot=_chain(3), delta=_chain(3))
        # What the caller already encoded (for Redis pub/sub too) goes out as it is.
        encoded = encode_chain_message(_chain(4, ltp=11.5))
        assert await publisher.publish(snapshot=_chain(4), delta={"not": "re-encoded"}, encoded=encoded)
        first = await asyncio.wait_for(layer.receive(channel), 2)
        second = await asyncio.wait_for(layer.receive(channel), 2)
        assert set(first) == {"type", "kind", "chain_json"} and first["kind"] == "delta"
        assert json.loads(first["chain_json"]) == _chain(3)
        assert chain_event_payload(first) == _chain(3)
        assert second["chain_json"] == encoded and chain_event_payload(second) == _chain(4, ltp=11.5)
    finally:
        await layer.flush()
        await layer.close_pools()
        server.stop()


@pytest.mark.parametrize(
    "event",
    [
        {"type": "chain.update", "kind": "delta"},
        {"type": "chain.update", "chain_json": b"{not json"},
        {"type": "chain.update", "chain_json": b"[1, 2]"},
        {"type": "chain.update", "chain_json": 42},
    ],
    ids=["no payload", "bad json", "not an object", "not bytes"],
)
def test_a_chain_event_without_a_readable_payload_is_a_value_error(event):
    with pytest.raises(ValueError):
        chain_event_payload(event)


async def test_a_delta_that_cannot_be_encoded_is_counted_as_a_failed_send_not_raised():
    class Recording:
        sent: list = []

        async def group_send(self, group, message):
            self.sent.append(message)

    layer = Recording()
    publisher = ChannelPublisher(layer)
    assert not await publisher.publish(snapshot=_chain(1), delta={**_chain(1), "rows": {1, 2}})
    assert (publisher.failed, layer.sent) == (1, [])
    assert await publisher.publish(snapshot=_chain(2), delta=_chain(2))  # the next one goes out


async def test_channel_publisher_failure_is_counted_not_raised():
    class Broken:
        async def group_send(self, group, message):
            raise ConnectionError("layer down")

    publisher = ChannelPublisher(Broken())
    assert not await publisher.publish(snapshot=_chain(1), delta=_chain(1))
    assert publisher.failed == 1


def test_latest_records_round_trip_without_nan():
    state = MarketState([7, 8])
    ticks = empty_ticks(1)
    ticks["instrument_token"] = 7
    ticks["mode"] = MODE_FULL
    ticks["last_price"] = 101.5
    ticks["oi"] = 42
    state.apply(TickBatch(ticks=ticks, received_at=5.0, is_mock=True))
    records = latest_records(state, state.rows_for([7, 8]))
    first = decode_latest(records[7])
    assert first["last_price"] == 101.5 and first["oi"] == 42 and first["is_mock"] is True
    assert first["mode"] == "full" and first["received_at"] == 5.0
    assert first["bid"] is None  # NaN decodes to None
    assert decode_latest(records[8])["last_price"] is None


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs the redis-server binary")
async def test_redis_publisher_survives_an_outage_and_resyncs():
    server = RedisServer()
    server.start()
    redis = aioredis.Redis.from_url(server.url, socket_timeout=0.5, socket_connect_timeout=0.5)
    check = aioredis.Redis.from_url(server.url, socket_timeout=0.5, socket_connect_timeout=0.5)
    snapshots = {"NIFTY": _chain(1)}
    latest = {1: b"one"}
    breaker = CircuitBreaker(name="test", failure_threshold=1, reset_timeout_s=0.2, call_timeout_s=0.5)
    publisher = RedisPublisher(
        redis, breaker=breaker, snapshots=lambda: list(snapshots.values()), all_latest=lambda: dict(latest)
    )
    pubsub = check.pubsub()
    await pubsub.subscribe(chain_channel("NIFTY", "2026-12-01"))
    await pubsub.get_message(timeout=1)  # the subscribe confirmation
    try:
        publisher.offer_chain(snapshot=_chain(1), delta=_chain(1))
        publisher.offer_latest(latest)
        assert await publisher.flush()
        assert json.loads(await check.get(chain_key("NIFTY", "2026-12-01")))["seq"] == 1
        assert await check.hget(LATEST_KEY, "1") == b"one"
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1)
        assert json.loads(message["data"])["seq"] == 1

        server.stop()
        await pubsub.aclose()
        # While Redis is down: the first write fails and opens the breaker; later ones return at once.
        snapshots["NIFTY"] = _chain(2, ltp=20.0)
        latest[1] = b"two"
        publisher.offer_chain(snapshot=snapshots["NIFTY"], delta=_chain(2, ltp=20.0))
        assert not await publisher.flush()
        assert breaker.state == "open"
        publisher.offer_latest({1: latest[1]})
        assert not await publisher.flush()  # refused by the open breaker, not waited on
        assert publisher.skipped >= 2

        server.start()  # an empty Redis: everything must be re-sent
        await asyncio.sleep(0.25)  # past the reset time: the next write is the half-open probe
        publisher.offer_latest({2: b"three"})
        assert await publisher.flush()  # the probe succeeds and closes the breaker ...
        await asyncio.sleep(0)  # ... whose hook asks for a re-sync
        assert await publisher.flush()
        assert publisher.resyncs == 1
        assert json.loads(await check.get(chain_key("NIFTY", "2026-12-01")))["seq"] == 2
        assert await check.hget(LATEST_KEY, "1") == b"two"
    finally:
        await redis.aclose()
        await check.aclose()
        server.stop()


def test_latest_records_for_many_rows_is_vectorised_input():
    state = MarketState(np.arange(1, 1001))
    ticks = empty_ticks(1000)
    ticks["instrument_token"] = np.arange(1, 1001)
    ticks["last_price"] = np.linspace(1, 2, 1000)
    state.apply(TickBatch(ticks=ticks, received_at=1.0))
    records = latest_records(state, np.arange(1000))
    assert len(records) == 1000 and decode_latest(records[1000])["last_price"] == 2.0


def test_snapshot_encoder_reencodes_only_the_changed_rows_of_a_sparse_change_and_stays_exact(monkeypatch):
    from streaming.ticker import publishers

    calls = []
    monkeypatch.setattr(publishers, "_dumps", lambda value: calls.append(value) or _dumps(value))
    encoder = _SnapshotEncoder()
    rows = [{"strike": float(k), "CE": {"ltp": k}} for k in range(6)]
    snapshot = {"underlying": "NIFTY", "expiry": "2026-12-01", "seq": 1, "rows": rows}
    assert encoder.encode(snapshot) == _dumps(snapshot) and len(calls) == 1  # all new: one call
    sparse = list(rows)
    sparse[2] = {"strike": 2.0, "CE": {"ltp": 99}}
    second = {**snapshot, "seq": 2, "rows": sparse}
    assert encoder.encode(second) == _dumps(second)  # the first sparse change encodes every row once
    sparser = list(sparse)
    sparser[4] = {"strike": 4.0, "CE": {"ltp": 77}}
    third = {**snapshot, "seq": 3, "rows": sparser}
    calls.clear()
    assert encoder.encode(third) == _dumps(third)
    assert calls == [sparser[4], {k: v for k, v in third.items() if k != "rows"}]  # that row and the head
    busy = [{"strike": float(k), "CE": {"ltp": -k}} for k in range(6)]
    fourth = {**snapshot, "seq": 4, "rows": busy}
    calls.clear()
    assert encoder.encode(fourth) == _dumps(fourth) and calls == [fourth]  # most rows new: whole


def test_snapshot_encoder_never_mistakes_a_new_row_for_a_freed_one():
    # A freed row's memory (and so its id()) is reused by the next dict CPython allocates: the
    # encoder must compare row objects, not ids, or a new row would go out with the old row's JSON.
    encoder = _SnapshotEncoder()
    steady = [{"strike": float(k), "CE": {"ltp": k}} for k in range(2, 6)]
    snapshot = {"underlying": "NIFTY", "expiry": "2026-12-01", "seq": 0, "rows": [{"strike": 1.0}, *steady]}
    encoder.encode(snapshot)
    for n in range(1, 50):  # one row of five changes each time: the per-row path
        snapshot["rows"] = None  # the previous first row is freed here...
        row = {"strike": 1.0}  # ...and this dict most likely takes its place
        row["CE"] = {"ltp": n}
        snapshot = {**snapshot, "seq": n, "rows": [row, *steady]}
        assert json.loads(encoder.encode(snapshot))["rows"][0]["CE"]["ltp"] == n


def test_channel_payload_is_shared_not_copied_and_reads_as_the_delta():
    import copy

    delta = {"underlying": "NIFTY", "expiry": "2026-12-01", "seq": 3, "rows": [{"strike": 1.0, "CE": {"ltp": 2.5}}]}
    payload = SharedPayload(delta)
    assert copy.deepcopy(payload) is payload  # the in-memory layer's per-member deep copy costs nothing
    assert payload == delta and json.loads(_dumps(payload)) == delta


class _RecordingRedis:
    """Just enough of redis.asyncio.Redis for RedisPublisher._write: records what would be sent."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, bytes]] = []

    def pipeline(self, transaction: bool = False) -> _RecordingRedis:
        return self

    def set(self, key: str, value: bytes, ex: int | None = None) -> None:
        self.sent.append(("set", key, value))

    def publish(self, channel: str, value: bytes) -> None:
        self.sent.append(("publish", channel, value))

    async def execute(self) -> list:
        return []

    async def hset(self, key: str, mapping: dict) -> None:
        pass


def _side(token: int, ltp: float | None, iv: float | None) -> dict:
    return {"instrument_token": token, "tradingsymbol": f"S{token}", "ltp": ltp, "iv": iv, "oi": 7}


async def test_redis_json_is_exactly_orjson_of_the_snapshot_and_each_delta():
    import orjson

    nan = float("nan")
    rows = [
        {"strike": 100.0, "CE": _side(1, 1.5, nan), "PE": _side(2, None, 0.2)},
        {"strike": 200.0, "CE": _side(3, nan, None), "PE": None},
        {"strike": 300.0, "PE": _side(4, 2.0, float("inf"))},
    ]
    head = {"underlying": "NIFTY", "expiry": "2026-12-01", "ts": 1.0, "source": "mock", "header": {"spot": nan}}
    breaker = CircuitBreaker(name="test", failure_threshold=1, reset_timeout_s=60, call_timeout_s=1)
    redis = _RecordingRedis()
    publisher = RedisPublisher(redis, breaker=breaker, snapshot_interval_s=0)  # a snapshot with every write
    offered = []
    snapshot = {**head, "seq": 1, "rows": rows}
    offered.append(snapshot)
    publisher.offer_chain(snapshot=snapshot, delta=snapshot)
    for seq in (2, 3):  # two deltas coalesced into one write; row 0 changes in both
        rows = list(rows)
        rows[0] = {**rows[0], "CE": _side(1, float(seq), nan)}
        delta_rows = [{"strike": 100.0, "CE": rows[0]["CE"]}]
        if seq == 3:
            rows[1] = {**rows[1], "PE": _side(5, nan, nan)}
            delta_rows.append({"strike": 200.0, "PE": rows[1]["PE"]})
        snapshot = {**head, "seq": seq, "rows": rows}
        delta = {**head, "seq": seq, "rows": delta_rows}
        offered.append(delta)
        publisher.offer_chain(snapshot=snapshot, delta=delta)
    assert await publisher.flush()
    key, channel = chain_key("NIFTY", "2026-12-01"), chain_channel("NIFTY", "2026-12-01")
    assert redis.sent == [
        ("set", key, orjson.dumps(snapshot)),
        *[("publish", channel, orjson.dumps(message)) for message in offered],
    ]
    assert json.loads(redis.sent[0][2])["rows"][1]["PE"]["ltp"] is None  # NaN goes out as null

    # A snapshot only re-sent (resync) and messages without "rows" last are plain orjson too.
    redis.sent.clear()
    odd = {"underlying": "NIFTY", "expiry": "2026-12-01", "rows": rows[:2], "seq": 4}
    publisher.offer_chain(snapshot=snapshot, delta=odd)
    assert await publisher.flush()
    assert redis.sent == [("set", key, orjson.dumps(snapshot)), ("publish", channel, orjson.dumps(odd))]


async def test_offers_while_the_breaker_is_open_are_not_encoded_and_still_exact_when_written():
    import orjson

    breaker = CircuitBreaker(name="test", failure_threshold=1, reset_timeout_s=0.05, call_timeout_s=1)

    async def fail():
        raise ConnectionError("down")

    with pytest.raises(ConnectionError):
        await breaker.call(fail)
    assert breaker.state == "open"
    redis = _RecordingRedis()
    publisher = RedisPublisher(redis, breaker=breaker)
    publisher.offer_chain(snapshot=_chain(1), delta=_chain(1))
    assert publisher._chains[("NIFTY", "2026-12-01")][1] == [(_chain(1), None)]
    await asyncio.sleep(0.06)  # half-open: the next write is the probe
    assert await publisher.flush()
    assert [value for _, _, value in redis.sent] == [orjson.dumps(_chain(1)), orjson.dumps(_chain(1))]


async def test_snapshots_go_to_redis_at_most_once_a_second_deltas_with_every_write():
    redis = _RecordingRedis()
    publisher = RedisPublisher(redis, min_interval_s=0.01, snapshot_interval_s=0.3)
    writer = asyncio.create_task(publisher.run())
    key = chain_key("NIFTY", "2026-12-01")
    try:
        for seq in range(1, 11):  # a delta every 50 ms for half a second
            publisher.offer_chain(snapshot=_chain(seq), delta=_chain(seq))
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.4)  # quiet: the newest snapshot still goes out when its time comes
    finally:
        writer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await writer
    published = [json.loads(value)["seq"] for kind, _, value in redis.sent if kind == "publish"]
    stored = [json.loads(value)["seq"] for kind, k, value in redis.sent if kind == "set" and k == key]
    assert published == list(range(1, 11))  # every delta, in order
    assert stored[0] == 1 and stored[-1] == 10  # the first at once, the newest in the end
    assert 2 <= len(stored) <= 3  # ~0.9 s of offers at one snapshot per 0.3 s, not one per delta
    assert stored == sorted(stored)
