"""/api/health/ carries the last reconcile report: what exceeds the usable capacity is never silent."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from subscriptions.services.reconcile import reconcile_subscriptions
from tests.api_helpers import *  # noqa: F403  (anon_client; the cache, where the report lives, is cleared)
from tests.subscriptions.factories import AccountFactory, SubscriptionFactory

pytestmark = pytest.mark.django_db


def test_health_says_when_the_reconciler_has_not_run(anon_client):
    checks = anon_client.get("/api/health/").json()["checks"]
    assert checks["reconcile"] == {"ok": True, "detail": "the reconciler has not run yet"}


def test_health_is_degraded_while_subscriptions_exceed_the_capacity(anon_client):
    AccountFactory(access_token="t", max_connections=1, instruments_per_connection=3)
    SubscriptionFactory.create_batch(5)
    reconcile_subscriptions(now=timezone.now() - dt.timedelta(seconds=30), mode="live", notify=False)

    response = anon_client.get("/api/health/")

    assert response.status_code == 200  # degraded, not down: what fits still streams
    body = response.json()
    assert body["status"] == "degraded"
    check = body["checks"]["reconcile"]
    assert check["ok"] is False
    assert check["detail"].startswith("last run 3")  # ~30 s ago
    assert check["detail"].endswith(": 3 of 5 active assigned, capacity 3, 2 over capacity (not streamed)")
    assert "account" not in str(body).lower()  # anonymous callers learn nothing about accounts


def test_health_reconcile_is_ok_when_everything_fits(anon_client):
    AccountFactory(access_token="t", max_connections=1, instruments_per_connection=10)
    SubscriptionFactory.create_batch(4)
    reconcile_subscriptions(mode="live", notify=False)

    check = anon_client.get("/api/health/").json()["checks"]["reconcile"]

    assert check["ok"] is True
    assert check["detail"].endswith("4 of 4 active assigned, capacity 10, 0 over capacity (not streamed)")


def test_an_unreadable_report_is_reported_not_raised(anon_client, monkeypatch):
    def broken() -> None:
        raise ConnectionError("cache unreachable")

    monkeypatch.setattr("streaming.web.api.last_reconcile_report", broken)

    response = anon_client.get("/api/health/")

    assert response.status_code == 200
    assert response.json()["checks"]["reconcile"] == {"ok": False, "detail": "report unreadable: ConnectionError"}
