"""Tell running tickers that subscriptions or accounts changed.

With Redis the message goes out on a pub/sub channel so tickers in other processes hear it;
embedded, in-process listeners are called. Callers use `notify_subscriptions_changed` after
commit (subscriptions/signals.py, the chain and reconcile services); the ticker's reloader
coalesces bursts and rate-limits the reloads.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable

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
    request_id = request_id or uuid.uuid4().hex
    message = {"reason": reason, "request_id": request_id, "at": time.time()}
    for callback in list(_listeners):
        try:
            callback(message)
        except Exception:
            logger.exception("reload listener failed for %s", reason)
    if settings.REDIS_URL:
        try:
            from tickerproject.platform.redis_client import sync_redis

            sync_redis().publish(RELOAD_CHANNEL, json.dumps(message))
        except Exception as exc:  # the periodic check still picks the change up
            logger.warning("could not publish reload notification (%s); the periodic check will", exc)
    return request_id


# --- "Has the running ticker applied my change?" ------------------------------------------------
# The reloader calls `mark_applied(request_ids)` after a reload that covered them; an API caller that
# wants to know its change is live calls `wait_until_applied(request_id, timeout)`. With Redis the
# acknowledgement is a short-lived key plus a pub/sub message (the ticker may be another process);
# embedded, an in-process registry guarded by a condition variable.

APPLIED_CHANNEL = "tp:subscriptions:applied"
APPLIED_KEY_PREFIX = "tp:subscriptions:applied:"
APPLIED_TTL_S = 600
_APPLIED_LOCAL_MAX = 10_000

_applied_local: OrderedDict[str, float] = OrderedDict()
_applied_condition = threading.Condition()


def _applied_key(request_id: str) -> str:
    return f"{APPLIED_KEY_PREFIX}{request_id}"


def mark_applied(request_ids: Iterable[str]) -> None:
    """Record that a reload covering these requests is live (called by the ticker's reloader)."""
    ids = [request_id for request_id in request_ids if request_id]
    if not ids:
        return
    now = time.time()
    with _applied_condition:
        for request_id in ids:
            _applied_local[request_id] = now
            _applied_local.move_to_end(request_id)
        while len(_applied_local) > _APPLIED_LOCAL_MAX:
            _applied_local.popitem(last=False)
        _applied_condition.notify_all()
    if settings.REDIS_URL:
        try:
            from tickerproject.platform.redis_client import sync_redis

            client = sync_redis()
            pipe = client.pipeline(transaction=False)
            for request_id in ids:
                pipe.set(_applied_key(request_id), now, ex=APPLIED_TTL_S)
            pipe.publish(APPLIED_CHANNEL, json.dumps(ids))
            pipe.execute()
        except Exception as exc:  # waiters in other processes time out; the change itself is live
            logger.warning("could not publish reload acknowledgements (%s)", exc)


def _applied_in_process(request_id: str, deadline: float) -> bool:
    with _applied_condition:
        while request_id not in _applied_local:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            _applied_condition.wait(remaining)
        return True


def _applied_via_redis(request_id: str, deadline: float) -> bool:
    from tickerproject.platform.redis_client import sync_redis

    client = sync_redis()
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    try:
        pubsub.subscribe(APPLIED_CHANNEL)  # subscribe before checking the key: no ack slips between
        if client.exists(_applied_key(request_id)):
            return True
        while (remaining := deadline - time.monotonic()) > 0:
            message = pubsub.get_message(timeout=min(remaining, 1.0))
            if message and request_id in json.loads(message["data"]):
                return True
            if message is None and client.exists(_applied_key(request_id)):
                return True
        return bool(client.exists(_applied_key(request_id)))
    finally:
        pubsub.close()


def wait_until_applied(request_id: str, timeout: float) -> bool:
    """Block until the running ticker has applied the change announced with `request_id`.

    Returns True once applied, False when `timeout` seconds pass first (no ticker running, or it is
    slower than the timeout; the change still applies later). Call it outside any transaction, after
    `notify_subscriptions_changed` (see `request_reload_and_wait`). Blocks the calling thread: from async
    code use `asgiref.sync.sync_to_async(wait_until_applied)`."""
    deadline = time.monotonic() + max(timeout, 0.0)
    if settings.REDIS_URL:
        try:
            return _applied_via_redis(request_id, deadline)
        except Exception as exc:
            logger.warning("could not wait for the reload acknowledgement on Redis (%s)", exc)
            return False
    return _applied_in_process(request_id, deadline)


def request_reload_and_wait(*, reason: str, timeout: float) -> bool:
    """Announce a change (already committed) and wait until the running ticker has applied it."""
    return wait_until_applied(notify_subscriptions_changed(reason=reason), timeout)
