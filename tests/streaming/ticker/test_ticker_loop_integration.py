"""The ticker loop end to end, in process, against the Kite simulator with two accounts and
a few thousand subscriptions, publishing to the channel layer and to a Redis we can take down."""

from __future__ import annotations

import asyncio
import json
import shutil
import time

import pytest
import redis.asyncio as aioredis
import redis.exceptions as redis_errors
from asgiref.sync import sync_to_async
from channels.layers import InMemoryChannelLayer

from streaming.contract import chain_group
from streaming.snapshot_store import chain_key
from streaming.ticker.loop import LoopConfig
from streaming.ticker.publishers import LATEST_KEY, decode_latest
from tests.streaming.ticker.support import RedisServer, close_db_connections, instrument_spec, make_account, make_chain
from tickerproject.ticker_wiring import build_ticker_loop

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs the redis-server binary"),
]


async def wait_until(predicate, *, within: float, what: str, interval: float = 0.05):
    deadline = time.monotonic() + within
    while True:
        result = predicate()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for: {what}")
        await asyncio.sleep(interval)


class Deltas:
    """Counts chain messages reaching one channel-layer group."""

    def __init__(self, layer, channel):
        self.layer, self.channel, self.count, self.last = layer, channel, 0, None
        self.task = asyncio.create_task(self._pump())

    async def _pump(self):
        while True:
            message = await self.layer.receive(self.channel)
            self.count += 1
            self.last = message

    async def more_than(self, n: int, within: float, what: str) -> None:
        await wait_until(lambda: self.count > n, within=within, what=what)


@pytest.mark.django_db(transaction=True)
async def test_ticker_against_simulator_two_accounts(monkeypatch):
    from mocking.market import MockMarket
    from mocking.simulator.server import start_simulator
    from mocking.simulator.state import SimulatorState
    from subscriptions.models import Subscription, TradingAccount

    def setup():
        a = make_account("Account A", api_key="key-a", access_token="tok-a", instruments_per_connection=1000)
        b = make_account("Account B", api_key="key-b", access_token="tok-b", instruments_per_connection=1000)
        instruments = make_chain(underlying="NIFTY", index_token=256265, strikes=600, first_exchange_token=40_000)
        instruments += make_chain(
            underlying="BANKNIFTY",
            index_token=260105,
            spot=52000.0,
            step=100.0,
            strikes=600,
            first_exchange_token=60_000,
        )
        return a.pk, b.pk, instruments

    account_a, account_b, instruments = await sync_to_async(setup)()
    assert len(instruments) == 2402
    nifty_expiry = next(i.expiry for i in instruments if i.expiry).isoformat()

    sim_state = SimulatorState()
    sim_state.market = MockMarket(seed=7, max_state=5000)
    sim_state.market.set_instruments([instrument_spec(i) for i in instruments])
    sim_state.register_account("key-a", "secret", "tok-a")
    sim_state.register_account("key-b", "secret", "tok-b")
    simulator = start_simulator(sim_state)
    redis_server = RedisServer()
    redis_server.start()
    publisher_redis = aioredis.Redis.from_url(redis_server.url, socket_timeout=0.5, socket_connect_timeout=0.5)
    check_redis = aioredis.Redis.from_url(redis_server.url, socket_timeout=0.5, socket_connect_timeout=0.5)

    layer = InMemoryChannelLayer(capacity=10_000)
    channel = await layer.new_channel()
    await layer.group_add(chain_group("NIFTY", nifty_expiry), channel)
    deltas = Deltas(layer, channel)

    config = LoopConfig(
        mode="live",
        ws_root=simulator.ws_url,
        stream_interval_s=0.1,
        backfill_on_start=False,
        reload_check_interval_s=5.0,
        status_interval_s=0.5,
        client_options={"silence_timeout": 3.0, "backoff_initial": 0.1, "backoff_max": 1.0},
    )
    loop = build_ticker_loop(config, channel_layer=layer, redis=publisher_redis, use_redis=True)
    loop.redis_publisher.breaker.failure_threshold = 2
    loop.redis_publisher.breaker.reset_timeout_s = 0.5
    stop = asyncio.Event()
    task = asyncio.create_task(loop.run(stop))
    all_tokens = {i.instrument_token for i in instruments}
    try:
        # 1. Both accounts stream; ticks reach the channel layer and Redis.
        await wait_until(lambda: set(sim_state.subscribed()) == all_tokens, within=15, what="all subscribed")
        assert sim_state.subscribed("key-a") and sim_state.subscribed("key-b")
        assert len(sim_state.live_connections("key-a")) <= 3
        await deltas.more_than(3, 10, "chain deltas on the channel layer")
        assert deltas.last["chain"]["source"] == "live"

        async def in_redis():
            try:
                return await check_redis.exists(chain_key("NIFTY", nifty_expiry)) and await check_redis.hlen(LATEST_KEY)
            except redis_errors.ConnectionError:  # our own client notices the outage too
                return False

        await wait_until(in_redis, within=10, what="chain snapshot and latest ticks in Redis")

        # The trader figures are computed from live ticks too (docs/websocket.md), not only in mock mode.
        async def priced_snapshot():
            snapshot = json.loads(await check_redis.get(chain_key("NIFTY", nifty_expiry)))
            return snapshot if snapshot["header"]["straddle"] is not None else None

        snapshot = await wait_until(priced_snapshot, within=15, what="a snapshot with both ATM sides priced")
        header = snapshot["header"]
        assert snapshot["source"] == "live"
        assert header["forward"] > 0 and header["atm_strike"] in {row["strike"] for row in snapshot["rows"]}
        assert header["straddle"] > 0 and header["expected_move_iv"] > 0 and header["net_gex"] is not None
        assert any(row["CE"] and row["CE"]["gex"] for row in snapshot["rows"])
        assert [term[0] for term in header["term_structure"]] == [nifty_expiry]
        token = str(instruments[5].instrument_token)
        raw = await wait_until(lambda: check_redis.hget(LATEST_KEY, token), within=10, what="one token's latest")
        latest = decode_latest(raw)
        assert latest["last_price"] is not None

        # 2. Deactivating one subscription unsubscribes only that token, on its connection only.
        sent_before = {c.id: len(c.requests) for c in sim_state.live_connections()}

        def deactivate():
            sub = Subscription.objects.select_related("instrument").get(instrument=instruments[7])
            sub.is_active = False
            sub.save()
            return sub.instrument.instrument_token

        gone = await sync_to_async(deactivate)()
        await wait_until(lambda: gone not in sim_state.subscribed(), within=10, what="token unsubscribed")
        await asyncio.sleep(0.3)
        new_requests = [
            request for c in sim_state.live_connections() for request in c.requests[sent_before.get(c.id, 0) :]
        ]
        assert new_requests == [{"a": "unsubscribe", "v": [gone]}]
        all_tokens.discard(gone)
        assert set(sim_state.subscribed()) == all_tokens

        # 3. A dropped connection is recovered: every connection comes back with its subscriptions.
        closed_before = len(sim_state.closed_connections)
        sim_state.faults.drop_all()
        await wait_until(lambda: len(sim_state.closed_connections) > closed_before, within=5, what="drop")
        await wait_until(lambda: set(sim_state.subscribed()) == all_tokens, within=15, what="resubscribed")
        seen = deltas.count
        await deltas.more_than(seen + 2, 10, "deltas after the reconnect")

        # 4. Redis goes away and comes back: the channel layer keeps getting ticks; Redis is re-synced.
        redis_server.stop()
        seen = deltas.count
        await deltas.more_than(seen + 5, 10, "deltas while Redis is down")
        await wait_until(lambda: loop.redis_publisher.breaker.state != "closed", within=10, what="breaker open")
        seen = deltas.count
        await deltas.more_than(seen + 3, 10, "deltas with the breaker open")
        redis_server.start()  # empty: the outage lost everything
        await wait_until(lambda: loop.redis_publisher.resyncs >= 1, within=15, what="re-sync after the outage")
        await wait_until(in_redis, within=15, what="Redis holds the chains and ticks again")
        assert loop.redis_publisher.breaker.state == "closed"

        # 5. Revoking account A's token: A is marked auth_failed and B takes all of its instruments.
        sim_state.revoke_token("tok-a")

        async def moved():
            return set(sim_state.subscribed("key-b")) == all_tokens and not sim_state.live_connections("key-a")

        await wait_until(moved, within=20, what="A's instruments moved to B")
        account = await sync_to_async(TradingAccount.objects.get)(pk=account_a)
        assert account.health == TradingAccount.Health.AUTH_FAILED
        assert "403" in account.last_error
        assert account.health_changed_at is not None
        seen = deltas.count
        await deltas.more_than(seen + 2, 10, "deltas after the failover")
        placed = await sync_to_async(
            lambda: set(Subscription.objects.filter(is_active=True).values_list("account_id", flat=True))
        )()
        assert placed == {account_b}
    finally:
        stop.set()
        started = time.monotonic()
        await asyncio.wait_for(task, timeout=8)
        stop_took = time.monotonic() - started
        deltas.task.cancel()
        await check_redis.aclose()
        simulator.stop()
        redis_server.stop()
        await close_db_connections()
    assert stop_took < 5
