import itertools
import multiprocessing
import threading
import time

import pytest

from history.rate_limit import LocalRateLimiter, RateLimitTimeout, RedisRateLimiter


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


def test_local_limiter_spaces_slots_by_one_over_rate():
    clock = FakeClock()
    limiter = LocalRateLimiter(3.0, clock=clock, sleep=clock.sleep)
    grants = []
    for _ in range(9):
        limiter.acquire("key")
        grants.append(clock.now)
    gaps = [b - a for a, b in itertools.pairwise(grants)]
    assert gaps == pytest.approx([1 / 3] * 8)
    # never more than 3 grants inside any one second
    assert all(grants[i + 3] - grants[i] >= 1.0 - 1e-9 for i in range(len(grants) - 3))


def test_local_limiter_keys_are_independent():
    clock = FakeClock()
    limiter = LocalRateLimiter(3.0, clock=clock, sleep=clock.sleep)
    assert limiter.acquire("a") == 0
    assert limiter.acquire("b") == 0
    assert limiter.acquire("a") == pytest.approx(1 / 3)


def test_local_limiter_refuses_a_wait_past_the_timeout_without_reserving():
    clock = FakeClock()
    limiter = LocalRateLimiter(1.0, clock=clock, sleep=lambda s: None)
    for _ in range(5):
        limiter.acquire("k", timeout=10)
    with pytest.raises(RateLimitTimeout):
        limiter.acquire("k", timeout=2)
    assert limiter.acquire("k", timeout=10) == pytest.approx(5.0)


def test_local_limiter_is_shared_by_threads():
    limiter = LocalRateLimiter(50.0)
    grants = []
    lock = threading.Lock()

    def worker():
        for _ in range(5):
            limiter.acquire("k")
            with lock:
                grants.append(time.monotonic())

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    grants.sort()
    assert len(grants) == 20
    # 20 slots at 50/s span at least 19 intervals
    assert grants[-1] - grants[0] >= 19 / 50 - 0.01


def _redis_worker(url, n, queue):
    import redis

    limiter = RedisRateLimiter(redis.Redis.from_url(url), 20.0, prefix="tp:test:ratelimit:")
    client = redis.Redis.from_url(url)
    for _ in range(n):
        limiter.acquire("shared-key")
        seconds, micros = client.time()
        queue.put(seconds + micros / 1e6)


@pytest.mark.redis
def test_redis_limiter_is_shared_across_processes(redis_client):
    from django.conf import settings

    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_redis_worker, args=(settings.REDIS_URL, 6, queue)) for _ in range(3)]
    for p in procs:
        p.start()
    grants = sorted(queue.get(timeout=30) for _ in range(18))
    for p in procs:
        p.join(timeout=10)
    # 18 grants from 3 processes at 20/s: never more than 20 in a second, and they are spread
    # over at least 17 intervals because the processes share one schedule.
    assert grants[-1] - grants[0] >= 17 / 20 - 0.02
    per_window = max(sum(1 for g in grants if t <= g < t + 0.25) for t in grants)
    assert per_window <= 6  # 0.25 s at 20/s = 5 slots (+1 for the window edge)


@pytest.mark.redis
def test_redis_limiter_timeout_reserves_nothing(redis_client):
    limiter = RedisRateLimiter(redis_client, 1.0, prefix="tp:test:ratelimit:", sleep=lambda s: None)
    for _ in range(4):
        limiter.acquire("k", timeout=10)
    with pytest.raises(RateLimitTimeout):
        limiter.acquire("k", timeout=1)
    assert limiter.acquire("k", timeout=10) == pytest.approx(4.0, abs=0.2)
