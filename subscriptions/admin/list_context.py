"""What the account and subscription list pages show above the list: unassigned subscriptions, the last
reconcile report and the running ticker's status per account and connection."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from django.urls import reverse
from django.utils import timezone

from streaming.status import ticker_status
from subscriptions import selectors
from subscriptions.admin.filters import ReconcileOverflowFilter
from subscriptions.models import Subscription
from subscriptions.services.reconcile import last_reconcile_report

logger = logging.getLogger(__name__)

OVERFLOW_SHOWN = 50  # overflowing subscriptions named on the list pages; the filter shows them all


def unassigned_context() -> dict[str, Any]:
    unassigned = selectors.unassigned_active_subscriptions().count()
    return {
        "unassigned_count": unassigned,
        "unassigned_url": reverse("admin:subscriptions_subscription_changelist") + "?is_active__exact=1&assigned=no",
    }


def _epoch_to_datetime(value: Any) -> dt.datetime | None:
    try:
        return dt.datetime.fromtimestamp(float(value), tz=dt.UTC) if value else None
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def streaming_status() -> dict[str, Any] | None:
    """The running ticker's status shaped per account, each with its connections; None when no ticker
    reported recently (or the status cannot be read: it is advisory, the page renders without it)."""
    try:
        document = ticker_status()
    except Exception:
        logger.warning("could not read the ticker status", exc_info=True)
        return None
    if not document:
        return None
    accounts: dict[int, dict[str, Any]] = {}

    def entry(account_id: int, label: str = "", mode: str = "") -> dict[str, Any]:
        if account_id not in accounts:
            accounts[account_id] = {
                "account_id": account_id,
                "label": label or f"account {account_id}",
                "mode": mode,
                "health": "",
                "connections": [],
                "url": reverse("admin:subscriptions_tradingaccount_change", args=[account_id]),
            }
        return accounts[account_id]

    now = timezone.now()
    for account in document.get("accounts", []):
        row = entry(int(account["account_id"]), account.get("label", ""), account.get("mode", ""))
        row["health"] = account.get("health", "")
    for conn in document.get("connections", []):
        row = entry(int(conn["account_id"]), conn.get("label", ""), conn.get("mode", ""))
        last_tick = _epoch_to_datetime(conn.get("last_tick_at"))
        row["connections"].append(
            {
                "index": conn.get("connection_index"),
                "mode": conn.get("mode", ""),
                "state": conn.get("state", "unknown"),
                "instruments": conn.get("instruments", 0),
                "last_tick_at": last_tick,
                "last_tick_age": (now - last_tick).total_seconds() if last_tick else None,
                "ticks_per_second": conn.get("ticks_per_second", 0.0),
                "reconnects": conn.get("reconnects", 0),
                "last_error": conn.get("last_error", ""),
            }
        )
    return {
        "ticker_id": document.get("ticker_id", ""),
        "updated_at": _epoch_to_datetime(document.get("updated_at")),
        "accounts": sorted(accounts.values(), key=lambda a: (a["label"], a["account_id"])),
    }


def reconcile_context() -> dict[str, Any]:
    """The last reconcile report (when, what overflows, the load per account and connection) and the
    live streaming status, for the account and subscription list pages."""
    report = last_reconcile_report()
    overflow: list[Subscription] = []
    if report is not None and report.overflow_subscription_ids:
        shown = report.overflow_subscription_ids[:OVERFLOW_SHOWN]
        by_pk = Subscription.objects.select_related("instrument").in_bulk(shown)
        overflow = [by_pk[pk] for pk in shown if pk in by_pk]
    changelist = reverse("admin:subscriptions_subscription_changelist")
    return {
        "reconcile_report": report,
        "reconcile_overflow": overflow,
        "reconcile_overflow_more": max((report.overflow_count if report else 0) - len(overflow), 0),
        "reconcile_overflow_url": f"{changelist}?{ReconcileOverflowFilter.parameter_name}=overflow",
        "streaming_status": streaming_status(),
    }


def list_context() -> dict[str, Any]:
    """Everything the account and subscription list pages add to their context."""
    return {**unassigned_context(), **reconcile_context()}
