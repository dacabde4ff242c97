"""/api/subscriptions/: CRUD, subscribe-this-chain, permissions, field errors, reaching the ticker."""

from __future__ import annotations

import datetime as dt

import pytest

from subscriptions.models import Subscription
from tests.api_helpers import *  # noqa: F403
from tests.subscriptions.factories import AccountFactory, IndexFactory, OptionFactory, SubscriptionFactory, make_chain
from tickerproject.platform import reload_notifications as notifications

pytestmark = pytest.mark.django_db

EXPIRY = dt.date(2030, 1, 29)


@pytest.fixture
def heard() -> list[dict]:
    """Reload notifications the ticker would hear."""
    messages: list[dict] = []
    remove = notifications.add_listener(messages.append)
    yield messages
    remove()


def test_list_requires_login(anon_client):
    assert anon_client.get("/api/subscriptions/").status_code == 401


def test_viewer_lists_and_filters_but_cannot_write(user_client):
    nifty = SubscriptionFactory(instrument=OptionFactory(underlying="NIFTY", name="NIFTY"))
    SubscriptionFactory(instrument=OptionFactory(underlying="BANKNIFTY", name="BANKNIFTY"), is_active=False)
    body = user_client.get("/api/subscriptions/", {"underlying": "nifty"}).json()
    assert body["count"] == 1
    assert body["results"][0]["id"] == nifty.pk
    assert body["results"][0]["instrument_detail"]["tradingsymbol"] == nifty.instrument.tradingsymbol
    assert user_client.get("/api/subscriptions/", {"is_active": "false"}).json()["count"] == 1

    response = user_client.post("/api/subscriptions/", {"instrument": OptionFactory().pk}, format="json")
    assert response.status_code == 403
    assert user_client.patch(f"/api/subscriptions/{nifty.pk}/", {"mode": "ltp"}, format="json").status_code == 403
    assert user_client.delete(f"/api/subscriptions/{nifty.pk}/").status_code == 403
    assert Subscription.objects.count() == 2


def test_staff_creates_and_the_ticker_hears_after_commit(staff_client, heard, django_capture_on_commit_callbacks):
    option = OptionFactory()
    with django_capture_on_commit_callbacks(execute=True):
        response = staff_client.post("/api/subscriptions/", {"instrument": option.pk, "mode": "quote"}, format="json")
    assert response.status_code == 201, response.content
    created = Subscription.objects.get(pk=response.json()["id"])
    assert (created.instrument_id, created.mode, created.is_active) == (option.pk, "quote", True)
    assert heard, "the running ticker must be told about the new subscription"


def test_second_active_subscription_is_a_field_error_and_saves_nothing(staff_client):
    existing = SubscriptionFactory()
    response = staff_client.post("/api/subscriptions/", {"instrument": existing.instrument_id}, format="json")
    assert response.status_code == 400
    assert "already has an active subscription" in response.json()["instrument"][0]
    assert Subscription.objects.count() == 1


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"mode": "full"}, "instrument"),
        ({"instrument": 999999}, "instrument"),
        ({"instrument": "abc"}, "instrument"),
        ({"instrument": "__option__", "mode": "everything"}, "mode"),
        ({"instrument": "__option__", "is_active": "maybe"}, "is_active"),
    ],
)
def test_bad_create_requests_get_per_field_errors(staff_client, payload, field):
    option = OptionFactory()
    payload = {k: (option.pk if v == "__option__" else v) for k, v in payload.items()}
    response = staff_client.post("/api/subscriptions/", payload, format="json")
    assert response.status_code == 400
    assert field in response.json()
    assert Subscription.objects.count() == 0


def test_delisted_instrument_cannot_be_subscribed(staff_client):
    from django.utils import timezone

    option = OptionFactory(delisted_at=timezone.now())
    response = staff_client.post("/api/subscriptions/", {"instrument": option.pk}, format="json")
    assert response.status_code == 400
    assert "delisted" in response.json()["instrument"][0]


def test_staff_changes_mode_deactivates_and_reactivates(staff_client):
    account = AccountFactory()
    sub = SubscriptionFactory(account=account, connection_index=0)
    response = staff_client.patch(f"/api/subscriptions/{sub.pk}/", {"mode": "ltp"}, format="json")
    assert response.status_code == 200
    assert response.json()["mode"] == "ltp"
    response = staff_client.patch(f"/api/subscriptions/{sub.pk}/", {"is_active": False}, format="json")
    assert response.status_code == 200
    sub.refresh_from_db()
    assert (sub.is_active, sub.account_id, sub.mode) == (False, None, "ltp")
    assert sub.deactivated_reason
    assert staff_client.patch(f"/api/subscriptions/{sub.pk}/", {"is_active": True}, format="json").status_code == 200
    sub.refresh_from_db()
    assert sub.is_active


def test_reactivating_when_another_is_active_is_a_400_and_changes_nothing(staff_client):
    old = SubscriptionFactory(is_active=False, mode="full")
    SubscriptionFactory(instrument=old.instrument, is_active=True)
    response = staff_client.patch(f"/api/subscriptions/{old.pk}/", {"is_active": True, "mode": "ltp"}, format="json")
    assert response.status_code == 400
    assert "instrument" in response.json()
    old.refresh_from_db()
    assert (old.is_active, old.mode) == (False, "full")


def test_instrument_of_a_subscription_cannot_change(staff_client):
    sub = SubscriptionFactory()
    other = OptionFactory()
    response = staff_client.put(
        f"/api/subscriptions/{sub.pk}/", {"instrument": other.pk, "mode": "full", "is_active": True}, format="json"
    )
    assert response.status_code == 400
    assert "cannot change" in response.json()["instrument"][0]


def test_read_only_fields_are_ignored_on_write(staff_client):
    account = AccountFactory()
    option = OptionFactory()
    response = staff_client.post(
        "/api/subscriptions/", {"instrument": option.pk, "account": account.pk, "connection_index": 2}, format="json"
    )
    assert response.status_code == 201
    assert (response.json()["account"], response.json()["connection_index"]) == (None, None)


def test_staff_deletes(staff_client, heard, django_capture_on_commit_callbacks):
    sub = SubscriptionFactory()
    with django_capture_on_commit_callbacks(execute=True):
        assert staff_client.delete(f"/api/subscriptions/{sub.pk}/").status_code == 204
    assert not Subscription.objects.filter(pk=sub.pk).exists()
    assert heard


def test_token_authentication_works_for_writes(token_client):
    option = OptionFactory()
    assert token_client.post("/api/subscriptions/", {"instrument": option.pk}, format="json").status_code == 201


def test_wait_returns_once_the_ticker_acknowledged_the_change(staff_client):
    """A stand-in ticker: hears the notification and acknowledges it the way the reloader does."""
    remove = notifications.add_listener(lambda message: notifications.mark_applied([message["request_id"]]))
    try:
        option = OptionFactory()
        response = staff_client.post("/api/subscriptions/?wait=1&timeout=5", {"instrument": option.pk}, format="json")
    finally:
        remove()
    assert response.status_code == 201
    assert response.json()["ticker_applied"] is True


def test_wait_without_a_ticker_says_not_applied_after_the_timeout(staff_client):
    option = OptionFactory()
    response = staff_client.post("/api/subscriptions/?wait=1&timeout=0.2", {"instrument": option.pk}, format="json")
    assert response.status_code == 201
    assert response.json()["ticker_applied"] is False
    assert Subscription.objects.filter(instrument=option, is_active=True).exists()


@pytest.mark.parametrize("timeout", ["soon", "-1", "3600"])
def test_bad_wait_timeout_is_a_field_error_before_anything_is_written(staff_client, timeout):
    option = OptionFactory()
    response = staff_client.post(
        f"/api/subscriptions/?wait=1&timeout={timeout}", {"instrument": option.pk}, format="json"
    )
    assert response.status_code == 400
    assert "timeout" in response.json()
    assert Subscription.objects.count() == 0


def test_subscribe_chain_preview_saves_nothing_then_subscribes_around_atm(staff_client):
    IndexFactory(last_price=26010.0)
    make_chain(expiry=EXPIRY)  # strikes 25000..27000 step 100
    preview = staff_client.post(
        "/api/subscriptions/subscribe-chain/",
        {"underlying": "nifty", "expiry": "2030-01-29", "strikes_each_side": 2, "preview": True},
        format="json",
    )
    assert preview.status_code == 200, preview.content
    body = preview.json()
    assert body["atm_strike"] == 26000.0
    assert body["strikes"] == [25800.0, 25900.0, 26000.0, 26100.0, 26200.0]
    assert body["count"] == 10
    assert Subscription.objects.count() == 0

    done = staff_client.post(
        "/api/subscriptions/subscribe-chain/",
        {"underlying": "NIFTY", "expiry": "2030-01-29", "strikes_each_side": 2, "mode": "quote"},
        format="json",
    )
    assert done.status_code == 201
    assert done.json()["created"] == 10
    assert Subscription.objects.filter(is_active=True, mode="quote").count() == 10

    again = staff_client.post(
        "/api/subscriptions/subscribe-chain/",
        {"underlying": "NIFTY", "expiry": "2030-01-29", "strikes_each_side": 3},
        format="json",
    )
    assert again.status_code == 201
    assert again.json()["created"] == 4
    assert len(again.json()["already_subscribed"]) == 10


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"expiry": "2030-01-29"}, "underlying"),
        ({"underlying": "NIFTY", "expiry": "29/01/2030"}, "expiry"),
        ({"underlying": "NIFTY", "expiry": "2030-02-26"}, "expiry"),
        ({"underlying": "NIFTY", "expiry": "2030-01-29", "strikes_each_side": -1}, "strikes_each_side"),
        ({"underlying": "NIFTY", "expiry": "2030-01-29", "strikes_each_side": 5000}, "strikes_each_side"),
        ({"underlying": "NIFTY", "expiry": "2030-01-29", "mode": "turbo"}, "mode"),
    ],
)
def test_subscribe_chain_bad_input_gets_field_errors(staff_client, payload, field):
    make_chain(expiry=EXPIRY, strikes=[26000.0])
    response = staff_client.post("/api/subscriptions/subscribe-chain/", payload, format="json")
    assert response.status_code == 400
    assert field in response.json()
    assert Subscription.objects.count() == 0


def test_subscribe_chain_needs_staff(user_client):
    make_chain(expiry=EXPIRY, strikes=[26000.0])
    response = user_client.post(
        "/api/subscriptions/subscribe-chain/", {"underlying": "NIFTY", "expiry": "2030-01-29"}, format="json"
    )
    assert response.status_code == 403
    assert Subscription.objects.count() == 0


def test_pagination_limits_pages(user_client):
    for option in make_chain(expiry=EXPIRY, strikes=[25000.0 + 100 * k for k in range(6)]):
        SubscriptionFactory(instrument=option)
    first = user_client.get("/api/subscriptions/", {"page_size": 5}).json()
    assert (first["count"], len(first["results"])) == (12, 5)
    assert first["next"]
    last = user_client.get("/api/subscriptions/", {"page_size": 5, "page": 3}).json()
    assert len(last["results"]) == 2
    assert user_client.get("/api/subscriptions/", {"page": 99}).status_code == 404
    seen = [
        row["id"]
        for page in (1, 2, 3)
        for row in user_client.get("/api/subscriptions/", {"page_size": 5, "page": page}).json()["results"]
    ]
    assert sorted(seen) == sorted(Subscription.objects.values_list("id", flat=True))  # no overlap, no gap
