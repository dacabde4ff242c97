"""The ticker's session backfill: what history is missing for one account's subscriptions, once per
account per day across every ticker, never alongside another history backfill.

It runs on a thread of the ticker process, so it yields the CPU half the time and ends early (a
partial, resumable run) when the ticker stops or the backfill lock it holds is about to expire.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import math
import threading
import time
from collections.abc import Iterator
from typing import Any

from django.core.cache import cache

from history.services import backfill as backfill_service
from history.services.backfill_lock import BACKFILL_LOCK, BACKFILL_TIME_LIMIT
from history.services.candle_sources import BackfillCancelled
from subscriptions.selectors import subscribed_instrument_ids
from tickerproject.platform.locks import task_lock

log = logging.getLogger(__name__)

# How long the session backfill waits between attempts at the history backfill lock.
BACKFILL_LOCK_POLL_S = 1.0
# The session backfill stops this long before the lock it holds would expire, so a Celery backfill can
# never start alongside it (the run is resumable: the next one continues where it stopped).
BACKFILL_LOCK_MARGIN_S = 60.0


@contextlib.contextmanager
def _history_backfill_lock(stop: threading.Event, *, account_id: int) -> Iterator[float]:
    """Hold the lock every history backfill holds (BACKFILL_LOCK, Celery's `backfill` and
    `backfill_subscription` included), waiting while another one runs: when it is released this
    run finds that work covered and fetches only the rest. Yields the monotonic time by which the
    holder must be done (the lock expires after that)."""
    timeout = BACKFILL_TIME_LIMIT + 60
    waiting = False
    while True:
        if stop.is_set():
            raise BackfillCancelled("the ticker is stopping")
        with task_lock(BACKFILL_LOCK, timeout=timeout, wait=BACKFILL_LOCK_POLL_S) as acquired:
            if acquired:
                yield time.monotonic() + timeout - BACKFILL_LOCK_MARGIN_S
                return
        if not waiting:
            waiting = True
            log.info("session backfill for account %s waits for the backfill that is running", account_id)


def session_backfill_run(*, account_id: int, day: dt.date, subscription_ids: list[int], stop: threading.Event) -> None:
    """Ask the history service for what is missing, once per account per day across tickers, never
    alongside another backfill (see `_history_backfill_lock`). A failed or stopped run is asked for
    again on the next start."""
    last = time.monotonic()
    must_end_by = math.inf
    cancelled = False

    def on_progress(run: Any, advanced: int) -> None:
        nonlocal last, cancelled
        if stop.is_set() or time.monotonic() >= must_end_by:
            cancelled = True
            # The run ends partial (resumable), logged without a traceback: a deliberate stop.
            raise BackfillCancelled(
                "the ticker is stopping" if stop.is_set() else "the history backfill lock is about to expire"
            )
        time.sleep(min(time.monotonic() - last, 0.5))  # a 50% duty cycle at most
        last = time.monotonic()

    key = f"ticker:backfill:{account_id}:{day.isoformat()}"
    if not cache.add(key, 1, timeout=36 * 3600):
        return
    try:
        ids = subscribed_instrument_ids(subscription_ids=subscription_ids)
        with _history_backfill_lock(stop, account_id=account_id) as must_end_by:
            run = backfill_service.backfill_run(
                instrument_ids=ids, trigger=f"ticker session start, account {account_id}", on_progress=on_progress
            )
    except BaseException:
        cache.delete(key)
        raise
    if run.status == "failed" or cancelled:  # broken or stopped early: the next start tries again
        cache.delete(key)
    log.info("session backfill for account %s: %s", account_id, run.status)
