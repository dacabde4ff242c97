"""Shared Redis clients built from settings.REDIS_URL (one per process and event loop)."""

from __future__ import annotations

from functools import lru_cache

import redis
import redis.asyncio as aioredis
from django.conf import settings


@lru_cache(maxsize=1)
def sync_redis() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2)


def async_redis() -> aioredis.Redis:
    """A new asyncio client; the caller owns it (bind it to its own event loop)."""
    return aioredis.Redis.from_url(settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2)
