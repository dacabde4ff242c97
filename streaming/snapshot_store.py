"""Where the latest chain snapshots live, for consumers and the API to read.

With Redis: a JSON string per chain under `tp:chain:{UNDERLYING}:{YYYY-MM-DD}` (written by the
ticker's Redis publisher behind its circuit breaker). Embedded (`runticker --serve`, one
process): an in-process dict that the ticker writes and the consumers read.
"""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings

_local: dict[str, dict[str, Any]] = {}


def chain_key(underlying: str, expiry: str) -> str:
    return f"tp:chain:{underlying.upper()}:{expiry}"


def put_local_chain_snapshot(underlying: str, expiry: str, snapshot: dict[str, Any]) -> None:
    _local[chain_key(underlying, expiry)] = snapshot


def get_chain_snapshot(underlying: str, expiry: str) -> dict[str, Any] | None:
    """The latest snapshot of one chain, or None when no ticker has published it."""
    key = chain_key(underlying, expiry)
    if key in _local:
        return _local[key]
    if settings.REDIS_URL:
        from tickerproject.platform.redis_client import sync_redis

        raw = sync_redis().get(key)
        if raw:
            return json.loads(raw)
    return None


async def aget_chain_snapshot(underlying: str, expiry: str) -> dict[str, Any] | None:
    key = chain_key(underlying, expiry)
    if key in _local:
        return _local[key]
    if settings.REDIS_URL:
        from asgiref.sync import sync_to_async

        return await sync_to_async(get_chain_snapshot, thread_sensitive=False)(underlying, expiry)
    return None
