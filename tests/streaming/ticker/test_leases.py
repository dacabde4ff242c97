"""Account leases on a real Redis: one owner per account, takeover after the owner stops renewing."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis
from django.conf import settings

from streaming.ticker.leases import KEY_PREFIX, LocalLeases, RedisLeases


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def redis(redis_client):
    client = aioredis.Redis.from_url(settings.REDIS_URL)
    yield client
    await client.aclose()


@pytest.mark.redis
async def test_each_account_goes_to_exactly_one_ticker(redis):
    a = RedisLeases(redis, owner="ticker-a", ttl_ms=5000)
    b = RedisLeases(redis, owner="ticker-b", ttl_ms=5000)
    held_a = await a.sync({1, 2, 3})
    held_b = await b.sync({1, 2, 3, 4})
    assert held_a == {1, 2, 3}
    assert held_b == {4}
    assert held_a.isdisjoint(held_b)
    assert await a.owners([1, 4]) == {1: "ticker-a", 4: "ticker-b"}


@pytest.mark.redis
async def test_renewal_keeps_the_lease_and_others_cannot_steal_it(redis):
    a = RedisLeases(redis, owner="ticker-a", ttl_ms=300, safety_ms=100)
    b = RedisLeases(redis, owner="ticker-b", ttl_ms=300, safety_ms=100)
    await a.sync({7})
    for _ in range(5):  # renew well inside the ttl, for longer than one ttl in total
        await asyncio.sleep(0.1)
        assert await a.sync({7}) == {7}
        assert await b.sync({7}) == set()


@pytest.mark.redis
async def test_takeover_when_the_owner_stops_renewing(redis):
    a = RedisLeases(redis, owner="ticker-a", ttl_ms=300, safety_ms=100)
    b = RedisLeases(redis, owner="ticker-b", ttl_ms=300, safety_ms=100)
    await a.sync({9})
    assert await b.sync({9}) == set()
    await asyncio.sleep(0.35)  # ticker-a died: no renewals, the key expires on the server
    assert await b.sync({9}) == {9}
    # ticker-a comes back: its renewal is refused because the key now names ticker-b
    assert await a.sync({9}) == set()
    assert not a.holds(9)


@pytest.mark.redis
async def test_a_ticker_that_cannot_renew_stops_before_the_key_expires(redis):
    clock = FakeClock()
    a = RedisLeases(redis, owner="ticker-a", ttl_ms=10_000, safety_ms=2_000, clock=clock)
    await a.sync({5})
    assert a.holds(5)
    clock.now += 7.9
    assert a.holds(5)
    clock.now += 0.2  # past ttl - safety without a renewal: stop streaming although the key still exists
    assert not a.holds(5)
    assert await redis.get(KEY_PREFIX + "5") == b"ticker-a"


@pytest.mark.redis
async def test_release_only_drops_own_lease(redis):
    a = RedisLeases(redis, owner="ticker-a", ttl_ms=5000)
    b = RedisLeases(redis, owner="ticker-b", ttl_ms=5000)
    await a.sync({1})
    await b.release(1)  # not b's: must stay
    assert await redis.get(KEY_PREFIX + "1") == b"ticker-a"
    await a.sync(set())  # a no longer wants it: released
    assert await redis.get(KEY_PREFIX + "1") is None
    assert await b.sync({1}) == {1}


async def test_local_leases_grant_everything():
    leases = LocalLeases(owner="solo")
    assert await leases.sync({1, 2}) == {1, 2}
    assert leases.holds(1)
    await leases.release_all()
    assert not leases.holds(1)


@pytest.mark.redis
async def test_after_redis_loses_its_data_holders_keep_their_accounts_and_nobody_takes_them(redis):
    clock = FakeClock()
    a = RedisLeases(redis, owner="ticker-a", ttl_ms=10_000, safety_ms=2_000, clock=clock)
    b = RedisLeases(redis, owner="ticker-b", ttl_ms=10_000, safety_ms=2_000, clock=clock)
    assert await a.sync({1}) == {1}
    assert await b.sync({1, 2}) == {2}
    await redis.flushdb()  # a Redis restart without persistence: every lease key is gone

    clock.now += 1
    assert await b.sync({1, 2}) == {2}  # b re-creates its own key but must not take a's account
    assert await a.sync({1}) == {1}  # a re-asserts its lease and keeps streaming
    assert await redis.get(KEY_PREFIX + "1") == b"ticker-a"
    assert await redis.get(KEY_PREFIX + "2") == b"ticker-b"


@pytest.mark.redis
async def test_after_a_data_loss_an_account_whose_holder_is_gone_is_taken_after_one_lease_time(redis):
    clock = FakeClock()
    a = RedisLeases(redis, owner="ticker-a", ttl_ms=10_000, safety_ms=2_000, clock=clock)
    b = RedisLeases(redis, owner="ticker-b", ttl_ms=10_000, safety_ms=2_000, clock=clock)
    await a.sync({1})
    await b.sync({1})
    await redis.flushdb()  # ... and ticker-a died with it
    clock.now += 1
    assert await b.sync({1}) == set()
    clock.now += 9.5
    assert await b.sync({1}) == set()  # still within one lease time of noticing the loss
    clock.now += 1
    assert await b.sync({1}) == {1}
    assert not a.holds(1)  # a's own local deadline (ttl - safety) passed long before
