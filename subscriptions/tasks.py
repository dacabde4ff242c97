"""Celery tasks for subscriptions: thin adapters over the services, each behind a lock so a job never
runs twice at once, with time limits and late acks (a lost worker's job is redelivered)."""

from __future__ import annotations

import logging
from typing import Any

from celery import shared_task

from tickerproject.platform.locks import task_lock

logger = logging.getLogger(__name__)


@shared_task(name="subscriptions.reconcile", acks_late=True, time_limit=120, soft_time_limit=100)
def reconcile_subscriptions() -> dict[str, Any]:
    """Every minute: deactivate delisted/expired subscriptions and assign the rest to accounts."""
    from subscriptions.services.reconcile import reconcile_subscriptions as reconcile

    with task_lock("subscriptions.reconcile", timeout=180) as acquired:
        if not acquired:
            return {"skipped": "another reconcile is running"}
        report = reconcile()
        return {
            "active": report.active,
            "assigned": report.assigned,
            "changed": report.changed,
            "overflow": report.overflow_count,
            "deactivated": report.deactivated,
        }


@shared_task(name="subscriptions.instrument_sync", acks_late=True, time_limit=900, soft_time_limit=840)
def instrument_sync() -> dict[str, Any]:
    """08:30 IST: download Kite's instruments dump and sync the registry (needs a logged-in account)."""
    from subscriptions.services.instruments import (
        WOULD_DELIST_SHOWN,
        InstrumentDumpUnreadable,
        NoKiteAccount,
        instruments_sync_from_kite,
    )

    with task_lock("subscriptions.instrument_sync", timeout=960) as acquired:
        if not acquired:
            return {"skipped": "another instrument sync is running"}
        try:
            report = instruments_sync_from_kite()
        except NoKiteAccount as exc:
            logger.warning("instrument sync skipped: %s", exc)
            return {"skipped": str(exc)}
        except InstrumentDumpUnreadable as exc:
            logger.error("instrument sync refused: %s", exc)
            return {"refused": str(exc)}
        if report.delist_refused:
            # Unattended, the guard has no override: an operator checks the dump and runs the command.
            logger.error(
                "instrument sync: %s (first: %s); run `manage.py syncinstruments --allow-mass-delist` if it is real",
                report.delist_refused,
                ", ".join(report.would_delist[:WOULD_DELIST_SHOWN]),
            )
            return {"summary": report.summary(), "refused": report.delist_refused}
        return {"summary": report.summary()}
