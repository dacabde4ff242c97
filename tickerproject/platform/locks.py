"""A lock so a periodic job never runs twice at once, across every worker and process.

With Redis: a redis-py Lock (SET NX PX with a random token, released only by its owner, expiring
after `timeout` so a killed worker cannot hold it forever). Embedded (one process): the same
semantics on Django's local-memory cache with `cache.add`.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager

from django.conf import settings
from django.core.cache import cache

LOCK_PREFIX = "tp:lock:"


@contextmanager
def task_lock(name: str, *, timeout: float, wait: float = 0.0) -> Iterator[bool]:
    """Hold the lock `name` for at most `timeout` seconds; yields whether it was acquired (waiting up
    to `wait` seconds for it). The body runs either way: check the flag."""
    if settings.REDIS_URL:
        from tickerproject.platform.redis_client import sync_redis

        lock = sync_redis().lock(LOCK_PREFIX + name, timeout=timeout, blocking=wait > 0, blocking_timeout=wait or None)
        acquired = bool(lock.acquire())
        try:
            yield acquired
        finally:
            if acquired:
                try:
                    lock.release()
                except Exception:  # expired meanwhile and maybe taken by another owner: not ours to free
                    pass
        return

    key = LOCK_PREFIX + name
    token = secrets.token_hex(8)
    deadline = time.monotonic() + wait
    acquired = cache.add(key, token, timeout=timeout)
    while not acquired and time.monotonic() < deadline:
        time.sleep(0.05)
        acquired = cache.add(key, token, timeout=timeout)
    try:
        yield acquired
    finally:
        if acquired and cache.get(key) == token:
            cache.delete(key)


def lock_is_held(name: str) -> bool:
    if settings.REDIS_URL:
        from tickerproject.platform.redis_client import sync_redis

        return bool(sync_redis().exists(LOCK_PREFIX + name))
    return cache.get(LOCK_PREFIX + name) is not None
