"""One request rate limit per Kite api_key, shared by every worker and process.

Kite answers HTTP 429 past 3 historical requests per second. The limiter hands out *slots* spaced
`1 / rate` seconds apart (GCRA, the token bucket with a bucket of one: no bursts, because Kite counts
per second and a burst of 3 right after 3 paced requests would exceed it). With Redis the schedule
lives in one key per api_key and is advanced atomically by a Lua script using the Redis server's
clock, so every Celery worker on every host shares it; embedded, an in-process limiter does the same.

`acquire()` reserves the next free slot and sleeps until it: callers queue in order instead of
polling, and nothing is lost if one of them dies (its slot just passes unused).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Protocol

# KEYS[1] = schedule key; ARGV = emission interval (µs), max wait (µs), key ttl (ms).
# Returns the wait in µs for the reserved slot, or -(wait) when the wait would exceed max wait
# (nothing reserved then).
_RESERVE_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local max_wait = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local wait = tat - now
if wait > max_wait then return -wait end
redis.call('SET', KEYS[1], tostring(tat + interval), 'PX', tonumber(ARGV[3]))
return wait
"""


class RateLimitTimeout(TimeoutError):
    """No slot within the caller's deadline (the queue ahead is longer than it is willing to wait)."""


class RateLimiter(Protocol):
    rate: float

    def acquire(self, key: str, *, timeout: float = 60.0) -> float: ...


class LocalRateLimiter:
    """The in-process limiter for embedded mode (one process, any number of threads)."""

    def __init__(
        self,
        rate: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self._interval = 1.0 / rate
        self._clock = clock
        self._sleep = sleep
        self._next_slot: dict[str, float] = {}
        self._lock = threading.Lock()

    def acquire(self, key: str, *, timeout: float = 60.0) -> float:
        """Block until this caller's slot for `key`; return the seconds waited."""
        with self._lock:
            now = self._clock()
            slot = max(self._next_slot.get(key, now), now)
            wait = slot - now
            if wait > timeout:
                raise RateLimitTimeout(f"rate limit for {key!r}: next slot in {wait:.1f}s > {timeout:.1f}s")
            self._next_slot[key] = slot + self._interval
        if wait > 0:
            self._sleep(wait)
        return wait


class RedisRateLimiter:
    """The shared limiter: one Redis key per api_key (the key holds no secret: api_keys are public)."""

    def __init__(
        self, client: object, rate: float, *, prefix: str = "tp:ratelimit:", sleep: Callable[[float], None] = time.sleep
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self._client = client
        self._interval_us = round(1_000_000 / rate)
        self._prefix = prefix
        self._sleep = sleep
        self._script = client.register_script(_RESERVE_LUA)  # type: ignore[attr-defined]

    def acquire(self, key: str, *, timeout: float = 60.0) -> float:
        ttl_ms = int(timeout * 1000) + 60_000
        wait_us = int(self._script(keys=[self._prefix + key], args=[self._interval_us, int(timeout * 1e6), ttl_ms]))
        if wait_us < 0:
            raise RateLimitTimeout(f"rate limit for {key!r}: next slot in {-wait_us / 1e6:.1f}s > {timeout:.1f}s")
        wait = wait_us / 1e6
        if wait > 0:
            self._sleep(wait)
        return wait


# Kite counts requests per second; spacing slots a hair wider than 1/rate keeps network jitter
# between our clock and Kite's from ever putting rate+1 requests into one of its seconds.
SAFETY_FACTOR = 0.97

_local_limiters: dict[float, LocalRateLimiter] = {}
_local_lock = threading.Lock()


def historical_rate_limiter(rate: float | None = None) -> RateLimiter:
    """The limiter for Kite's historical API: Redis-backed when REDIS_URL is set, else in-process."""
    from django.conf import settings

    rate = (rate or settings.HISTORICAL_RATE_PER_SECOND) * SAFETY_FACTOR
    if settings.REDIS_URL:
        from tickerproject.platform.redis_client import sync_redis

        return RedisRateLimiter(sync_redis(), rate, prefix="tp:ratelimit:historical:")
    with _local_lock:
        limiter = _local_limiters.get(rate)
        if limiter is None:
            limiter = _local_limiters[rate] = LocalRateLimiter(rate)
        return limiter
