"""Tell running tickers that subscriptions or accounts changed.

With Redis the message goes out on a pub/sub channel so tickers in other processes hear it;
embedded, in-process listeners are called. Callers use `notify_subscriptions_changed` after
commit (see signals.py); the ticker's reloader coalesces bursts and rate-limits the reloads.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable

from django.conf import settings

logger = logging.getLogger(__name__)

RELOAD_CHANNEL = "tp:subscriptions:changed"

_listeners: list[Callable[[dict], None]] = []


def add_listener(callback: Callable[[dict], None]) -> Callable[[], None]:
    """Register an in-process listener; returns a function that removes it."""
    _listeners.append(callback)
    return lambda: _listeners.remove(callback) if callback in _listeners else None


def notify_subscriptions_changed(*, reason: str, request_id: str | None = None) -> str:
    """Announce a change; returns the request id that a blocking reload can wait for."""
    message = {"reason": reason, "request_id": request_id or uuid.uuid4().hex, "at": time.time()}
    for callback in list(_listeners):
        try:
            callback(message)
        except Exception:
            logger.exception("reload listener failed for %s", reason)
    if settings.REDIS_URL:
        try:
            from streaming.redis_client import sync_redis

            sync_redis().publish(RELOAD_CHANNEL, json.dumps(message))
        except Exception as exc:  # the periodic check still picks the change up
            logger.warning("could not publish reload notification (%s); the periodic check will", exc)
    return message["request_id"]
