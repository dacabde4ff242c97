"""Celery tasks for history: thin adapters that take ids, hold a lock and call the backfill service.

Idempotent by construction: a backfill fetches only what coverage says is missing, and upserts.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from celery import shared_task
from django.utils import timezone

from history.models import BackfillRun
from history.services.backfill_lock import BACKFILL_LOCK, BACKFILL_SOFT_TIME_LIMIT, BACKFILL_TIME_LIMIT
from history.services.mock_cleanup import mock_history_drop_expired
from subscriptions.services.reconcile import deactivate_expired_subscriptions
from tickerproject.platform.locks import task_lock

logger = logging.getLogger(__name__)


def _summary(run: BackfillRun) -> dict[str, Any]:
    return {
        "run_id": run.pk,
        "status": run.status,
        "requests": run.requests_done,
        "candles": run.candles_written,
        "errors": run.errors_count,
    }


def _run_backfill(*, instrument_ids: list[int] | None, trigger: str) -> BackfillRun:
    from history.services.backfill import HistoricalBootstrapper

    run = BackfillRun.objects.create(trigger=trigger[:64])
    try:
        bootstrapper = HistoricalBootstrapper()
    except Exception as exc:  # no usable source (e.g. the mock market failed to build): say so on the run
        logger.exception("backfill %s could not start", run.pk)
        run.status = BackfillRun.Status.FAILED
        run.message = f"could not start: {type(exc).__name__}: {exc}"[:2000]
        run.save(update_fields=["status", "message"])
        return run
    return bootstrapper.run(instrument_ids=instrument_ids, run=run)  # a soft time limit ends it as partial


@shared_task(
    name="history.backfill",
    acks_late=True,
    time_limit=BACKFILL_TIME_LIMIT,
    soft_time_limit=BACKFILL_SOFT_TIME_LIMIT,
)
def backfill(instrument_ids: list[int] | None = None, trigger: str = "schedule") -> dict[str, Any]:
    """Backfill every subscribed instrument (or `instrument_ids`). Skips, with a recorded run, when another
    backfill holds the lock: the running one does the same work."""
    with task_lock(BACKFILL_LOCK, timeout=BACKFILL_TIME_LIMIT + 60) as acquired:
        if not acquired:
            run = BackfillRun.objects.create(
                trigger=trigger[:64], status=BackfillRun.Status.SKIPPED, message="another backfill was running"
            )
            logger.info("backfill skipped: another backfill is running")
            return _summary(run)
        return _summary(_run_backfill(instrument_ids=instrument_ids, trigger=trigger))


@shared_task(
    bind=True,
    name="history.backfill_subscription",
    acks_late=True,
    time_limit=BACKFILL_TIME_LIMIT,
    soft_time_limit=BACKFILL_SOFT_TIME_LIMIT,
    max_retries=30,
    default_retry_delay=60,
)
def backfill_subscription(self, subscription_id: int) -> dict[str, Any]:
    """Backfill one new subscription's instrument. If a backfill is running, retry later (a worker) or
    wait for it (embedded, where this runs on a background thread)."""
    from subscriptions.models import Subscription

    instrument_id = (
        Subscription.objects.filter(pk=subscription_id, is_active=True).values_list("instrument_id", flat=True).first()
    )
    if instrument_id is None:
        return {"skipped": f"subscription {subscription_id} is gone or inactive"}
    eager = bool(self.request.is_eager)
    with task_lock(BACKFILL_LOCK, timeout=BACKFILL_TIME_LIMIT + 60, wait=BACKFILL_TIME_LIMIT if eager else 0) as got:
        if not got:
            raise self.retry()
        run = _run_backfill(instrument_ids=[instrument_id], trigger=f"subscription {subscription_id}")
        return _summary(run)


# Registered under its subscriptions name: operators' beat schedules (django-celery-beat rows) call it so.
# It lives here because it spans both apps, and history builds on subscriptions, not the reverse.
@shared_task(name="subscriptions.expiry_cleanup", acks_late=True, time_limit=600, soft_time_limit=540)
def expiry_cleanup() -> dict[str, Any]:
    """After the close: deactivate expired subscriptions (with a reason) and drop expired mock history.
    The running ticker hears of the deactivations after commit and drops their mock-market state."""
    with task_lock("subscriptions.expiry_cleanup", timeout=660) as acquired:
        if not acquired:
            return {"skipped": "another expiry cleanup is running"}
        now = timezone.now()
        deactivated = deactivate_expired_subscriptions(now=now)
        dropped = mock_history_drop_expired(now=now)
        return {"deactivated": deactivated, "mock_candles_dropped": dropped}


@shared_task(name="history.chain_history_prune", acks_late=True, time_limit=600, soft_time_limit=540)
def chain_history_prune() -> dict[str, int]:
    """Apply the chain history's pruning policy (history.services.chain_history)."""
    from core.calendar import IST
    from history.services.chain_history import chain_history_prune as prune

    with task_lock("history.chain_history_prune", timeout=660) as acquired:
        if not acquired:
            return {}
        return prune(today=dt.datetime.now(IST).date())
