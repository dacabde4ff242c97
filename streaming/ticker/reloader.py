"""The subscription reloader: admin/API edits reach the running ticker loop without a restart.

Sources of reload requests:
- in-process notifications (`tickerproject.platform.reload_notifications.add_listener`; embedded mode and same-process
  edits), delivered from any thread;
- Redis pub/sub on `tickerproject.platform.reload_notifications.RELOAD_CHANNEL` when settings.REDIS_URL is set (edits
  made by the web app or Celery in other processes);
- a periodic check every `check_interval_s` (catches a notification lost with Redis down); when a
  `has_changed` coroutine is given, the periodic reload only runs when it says something changed.

Requests go into a bounded queue (settings.RELOAD_QUEUE_MAX). When it is full a request is dropped and
counted, but the reloader remembers that a reload is owed, so no change is lost (only the dropped
request id is never acknowledged and its waiter times out). Requests that arrive together (within
`debounce_s`, or while waiting out the rate limit) are coalesced into one call of
`perform_reload(request_ids)`; reloads start at most once per settings.RELOAD_MIN_INTERVAL_S. After a
reload succeeds the request ids are acknowledged (`notifications.mark_applied`), which releases API
callers blocked in `wait_until_applied`. A failed reload is logged and retried after the interval
(its request ids stay pending).

The ticker loop supplies `perform_reload` (reconcile, load the plan, diff, send the difference) and
runs `reloader.run()` under the task supervisor.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from django.conf import settings

from tickerproject.platform import reload_notifications as notifications
from tickerproject.platform.redis_client import async_redis

logger = logging.getLogger(__name__)

PerformReload = Callable[[list[str]], Awaitable[None]]


@dataclass(frozen=True)
class ReloaderStats:
    requested: int
    dropped: int
    reloads: int
    failures: int
    pending: int
    last_reload_at: float | None  # time.time()
    last_reload_s: float | None  # how long the last reload took
    last_error: str


class SubscriptionReloader:
    def __init__(
        self,
        perform_reload: PerformReload,
        *,
        min_interval_s: float | None = None,
        queue_max: int | None = None,
        check_interval_s: float | None = 30.0,
        has_changed: Callable[[], Awaitable[bool]] | None = None,
        debounce_s: float = 0.05,
        listen_in_process: bool = True,
        listen_redis: bool | None = None,
        ack: Callable[[list[str]], None] = notifications.mark_applied,
    ) -> None:
        """`min_interval_s`/`queue_max` default to settings.RELOAD_MIN_INTERVAL_S / RELOAD_QUEUE_MAX;
        `check_interval_s=None` turns the periodic check off; `listen_redis` defaults to "REDIS_URL is set"."""
        self._perform_reload = perform_reload
        self.min_interval_s = settings.RELOAD_MIN_INTERVAL_S if min_interval_s is None else min_interval_s
        self.queue_max = max(1, settings.RELOAD_QUEUE_MAX if queue_max is None else queue_max)
        self.check_interval_s = check_interval_s
        self._has_changed = has_changed
        self.debounce_s = debounce_s
        self._listen_in_process = listen_in_process
        self._listen_redis = bool(settings.REDIS_URL) if listen_redis is None else listen_redis
        self._ack = ack
        self._queue: asyncio.Queue[str] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._owed = False  # a request was dropped (queue full) or a reload failed: reload anyway
        self._pending_ids: list[str] = []
        self._last_started: float | None = None  # time.monotonic()
        self._requested = 0
        self._dropped = 0
        self._reloads = 0
        self._failures = 0
        self._consecutive_failures = 0
        self._last_reload_at: float | None = None
        self._last_reload_s: float | None = None
        self._last_error = ""
        self._warned_full = False

    # --- requests ---------------------------------------------------------------------------------

    def request(self, request_id: str = "") -> bool:
        """Ask for a reload (call from the event loop's thread). Returns False when the queue is full
        (the request is dropped, but a reload still happens)."""
        self._requested += 1
        queue = self._ensure_queue()
        try:
            queue.put_nowait(request_id)
        except asyncio.QueueFull:
            self._dropped += 1
            self._owed = True
            if not self._warned_full:
                self._warned_full = True
                logger.warning("reload queue full (%d); coalescing further requests", self.queue_max)
            return False
        return True

    def request_threadsafe(self, request_id: str = "") -> None:
        """Ask for a reload from any thread (the in-process notification listener uses this)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        loop.call_soon_threadsafe(self.request, request_id)

    def _on_notification(self, message: dict) -> None:
        self.request_threadsafe(str(message.get("request_id") or ""))

    def _ensure_queue(self) -> asyncio.Queue[str]:
        if self._queue is None:
            self._queue = asyncio.Queue(maxsize=self.queue_max)
        return self._queue

    def stats(self) -> ReloaderStats:
        return ReloaderStats(
            requested=self._requested,
            dropped=self._dropped,
            reloads=self._reloads,
            failures=self._failures,
            pending=(self._queue.qsize() if self._queue else 0) + len(self._pending_ids),
            last_reload_at=self._last_reload_at,
            last_reload_s=self._last_reload_s,
            last_error=self._last_error,
        )

    # --- the task ---------------------------------------------------------------------------------

    async def run(self) -> None:
        """Serve reload requests until cancelled (run it under the supervisor)."""
        self._loop = asyncio.get_running_loop()
        queue = self._ensure_queue()
        remove_listener = notifications.add_listener(self._on_notification) if self._listen_in_process else None
        redis_task = asyncio.create_task(self._listen_redis_forever()) if self._listen_redis else None
        try:
            while True:
                triggered = await self._next_trigger(queue)
                if not triggered:
                    continue
                await self._wait_rate_limit(queue)
                await self._reload_once()
        finally:
            if remove_listener is not None:
                remove_listener()
            if redis_task is not None:
                redis_task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await redis_task

    async def _next_trigger(self, queue: asyncio.Queue[str]) -> bool:
        """Wait for a request (or the periodic check). True when a reload is due; collects request ids."""
        if self._owed or self._pending_ids:
            self._drain(queue)
            return True
        try:
            if self.check_interval_s is None:
                first = await queue.get()
            else:
                # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancel that lands as get() ends.
                async with asyncio.timeout(self.check_interval_s):
                    first = await queue.get()
        except TimeoutError:
            if self._has_changed is None:
                return True
            try:
                return await self._has_changed()
            except Exception:
                logger.exception("periodic subscription check failed; reloading to be safe")
                return True
        self._add_pending(first)
        if self.debounce_s > 0:
            await asyncio.sleep(self.debounce_s)
        self._drain(queue)
        return True

    async def _wait_rate_limit(self, queue: asyncio.Queue[str]) -> None:
        if self._last_started is not None:
            # After failures, back off (capped) so a broken database is not hammered.
            interval = (
                self.min_interval_s * (2 ** min(self._consecutive_failures, 5)) if self._consecutive_failures else 0
            )
            interval = max(self.min_interval_s, min(interval, 30.0))
            wait = self._last_started + interval - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
        self._drain(queue)  # whatever arrived while waiting rides along

    def _add_pending(self, request_id: str) -> None:
        if request_id and request_id not in self._pending_ids:
            self._pending_ids.append(request_id)
            if len(self._pending_ids) > self.queue_max:  # stay bounded; the reload still covers them
                del self._pending_ids[0]
                self._dropped += 1

    def _drain(self, queue: asyncio.Queue[str]) -> None:
        while True:
            try:
                self._add_pending(queue.get_nowait())
            except asyncio.QueueEmpty:
                return

    async def _reload_once(self) -> None:
        request_ids = list(self._pending_ids)
        self._owed = False
        self._warned_full = False
        self._last_started = time.monotonic()
        try:
            await self._perform_reload(request_ids)
        except Exception as exc:
            self._failures += 1
            self._consecutive_failures += 1
            self._owed = True
            self._last_error = f"{type(exc).__name__}: {exc}"
            logger.exception("subscription reload failed (%d request(s) pending); retrying", len(request_ids))
            return
        self._reloads += 1
        self._consecutive_failures = 0
        self._last_reload_at = time.time()
        self._last_reload_s = time.monotonic() - self._last_started
        self._last_error = ""
        # Ids that arrived during the reload stay pending for the next one: it may have missed them.
        done = set(request_ids)
        self._pending_ids = [request_id for request_id in self._pending_ids if request_id not in done]
        if request_ids:
            try:
                await asyncio.to_thread(self._ack, request_ids)
            except Exception:
                logger.exception("could not acknowledge %d reload request(s)", len(request_ids))

    async def _listen_redis_forever(self) -> None:
        """Forward Redis reload notifications into the queue; reconnects with capped backoff."""
        delay = 0.5
        connected_before = False
        while True:
            client = async_redis()
            try:
                pubsub = client.pubsub(ignore_subscribe_messages=True)
                await pubsub.subscribe(notifications.RELOAD_CHANNEL)
                delay = 0.5
                if connected_before:  # anything published while we were not listening: catch up
                    self.request()
                connected_before = True
                while True:
                    message = await pubsub.get_message(timeout=5.0)
                    if message is None:
                        continue
                    try:
                        request_id = str(json.loads(message["data"]).get("request_id") or "")
                    except (ValueError, AttributeError, TypeError):
                        logger.warning("ignoring a malformed reload notification")
                        request_id = ""
                    self.request(request_id)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning("reload notifications from Redis interrupted (%s); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)
            finally:
                with contextlib.suppress(Exception):
                    await client.aclose()
