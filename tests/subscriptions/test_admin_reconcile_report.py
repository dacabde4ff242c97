"""The reconcile report and the live ticker status on the account and subscription list pages."""

from __future__ import annotations

import datetime as dt
import re
import time

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.cache import cache
from django.urls import reverse

from streaming import status as ticker_status
from subscriptions.models import IST, Subscription, TradingAccount
from subscriptions.services.reconcile import REPORT_CACHE_KEY, reconcile_subscriptions
from tests.subscriptions.factories import AccountFactory, SubscriptionFactory

pytestmark = pytest.mark.django_db

NOW = dt.datetime(2029, 12, 3, 11, 0, tzinfo=IST)  # a Monday in market hours; the 2030 contracts are alive
ACCOUNTS_URL = "admin:subscriptions_tradingaccount_changelist"
SUBSCRIPTIONS_URL = "admin:subscriptions_subscription_changelist"


@pytest.fixture(autouse=True)
def _no_report_or_status():
    cache.delete(REPORT_CACHE_KEY)
    ticker_status.publish_local(None)
    yield
    cache.delete(REPORT_CACHE_KEY)
    ticker_status.publish_local(None)


@pytest.fixture
def staff_client(client):
    user = get_user_model().objects.create_user("operator", password="pw-operator-123", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(content_type__app_label="subscriptions"))
    client.force_login(user)
    return client


@pytest.fixture
def overflowing():
    """Two accounts of 2 connections x 3 instruments (capacity 12) and 14 subscriptions: 2 overflow."""
    main = AccountFactory(label="Main", access_token="token-main", max_connections=2, instruments_per_connection=3)
    spare = AccountFactory(label="Spare", access_token="token-spare", max_connections=2, instruments_per_connection=3)
    subscriptions = SubscriptionFactory.create_batch(14)
    report = reconcile_subscriptions(now=NOW, mode="live", notify=False)
    assert report.overflow_count == 2
    return {"main": main, "spare": spare, "subscriptions": subscriptions, "report": report}


def _text(html: bytes) -> str:
    """The page as a reader sees it: tags dropped, whitespace collapsed."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html.decode()))


def _row(html: bytes, css_class: str, **data: object) -> str:
    """The text of the table row with that class and those data-* attributes."""
    attrs = "".join(rf'\s+data-{key}="{value}"' for key, value in data.items())
    match = re.search(rf'<tr class="{css_class}"{attrs}>(.*?)</tr>', html.decode(), re.S)
    assert match, (css_class, data)
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", match.group(1))).strip()


@pytest.mark.parametrize("url_name", [ACCOUNTS_URL, SUBSCRIPTIONS_URL])
def test_lists_name_the_subscriptions_over_capacity_and_the_load_per_connection(staff_client, overflowing, url_name):
    report = overflowing["report"]
    over = Subscription.objects.filter(pk__in=report.overflow_subscription_ids).select_related("instrument")
    assert over.count() == 2 and all(s.account_id is None for s in over)  # not streamed: that is what we show

    response = staff_client.get(reverse(url_name))

    assert response.status_code == 200
    text = _text(response.content)
    assert "2 active subscriptions exceed the usable capacity (12) at the last reconcile and are not streamed" in text
    for subscription in over:
        assert subscription.instrument.tradingsymbol in text
        assert reverse("admin:subscriptions_subscription_change", args=[subscription.pk]).encode() in response.content
    assert "Last reconcile: 2029-12-03 05:30:00 UTC" in text  # stored in UTC: 11:00 IST
    assert "14 active, 12 assigned (capacity 12), 2 over capacity" in text
    for account in (overflowing["main"], overflowing["spare"]):
        row = _row(response.content, "reconcile-account", account=account.pk)
        assert row == f"{account.label} yes unknown 6 6 0 #0: 3 · #1: 3"


def test_the_overflow_link_lists_exactly_the_subscriptions_over_capacity(staff_client, overflowing):
    listing = staff_client.get(reverse(SUBSCRIPTIONS_URL), {"reconcile": "overflow"})

    assert listing.status_code == 200
    shown = {s.pk for s in listing.context["cl"].result_list}
    assert shown == set(overflowing["report"].overflow_subscription_ids)
    assert b"?reconcile=overflow" in staff_client.get(reverse(ACCOUNTS_URL)).content


def test_a_reconcile_with_room_for_everything_shows_no_overflow(staff_client):
    account = AccountFactory(label="Roomy", access_token="t", max_connections=3, instruments_per_connection=10)
    SubscriptionFactory.create_batch(4)
    reconcile_subscriptions(now=NOW, mode="live", notify=False)

    response = staff_client.get(reverse(ACCOUNTS_URL))

    assert b'id="reconcile-overflow"' not in response.content
    assert "4 active, 4 assigned (capacity 30), 0 over capacity" in _text(response.content)
    row = _row(response.content, "reconcile-account", account=account.pk)
    assert row.startswith("Roomy yes unknown 30 4 26 #0: ")
    loads = [int(n) for n in re.findall(r"#\d: (\d+)", row)]
    assert sorted(loads) == [1, 1, 2]  # balanced over the three connections


def test_an_unusable_account_is_listed_with_no_capacity(staff_client):
    AccountFactory(label="Live", access_token="t", max_connections=1, instruments_per_connection=5)
    failed = AccountFactory(label="Failed", access_token="t", health="auth_failed")
    SubscriptionFactory.create_batch(2)
    reconcile_subscriptions(now=NOW, mode="live", notify=False)

    row = _row(staff_client.get(reverse(ACCOUNTS_URL)).content, "reconcile-account", account=failed.pk)

    assert row == "Failed no auth_failed 0 0 0 —"


@pytest.mark.parametrize("url_name", [ACCOUNTS_URL, SUBSCRIPTIONS_URL])
def test_lists_say_when_neither_the_reconciler_nor_a_ticker_has_reported(staff_client, url_name):
    response = staff_client.get(reverse(url_name))

    assert response.status_code == 200
    text = _text(response.content)
    assert "The reconciler has not run yet" in text
    assert "No ticker has reported its status recently" in text


@pytest.mark.parametrize("url_name", [ACCOUNTS_URL, SUBSCRIPTIONS_URL])
def test_lists_show_live_state_last_tick_rate_and_reconnects_per_account_and_connection(staff_client, url_name):
    main = AccountFactory(label="Main", is_mock=True)
    idle = AccountFactory(label="Idle", is_mock=True)
    board = ticker_status.StatusBoard(ticker_id="host-a:1234")
    board.accounts[main.pk] = {"label": "Main", "mode": "mock", "health": "ok", "streaming": True}
    board.accounts[idle.pk] = {"label": "Idle", "mode": "mock", "health": "auth_failed", "streaming": False}
    board.set_connection(account_id=main.pk, label="Main", connection_index=0, mode="mock", instruments=3000)
    board.set_connection(account_id=main.pk, label="Main", connection_index=1, mode="mock", instruments=1200)
    now = time.time()
    for second in range(10):  # ~100 ticks/s on connection 0
        board.record_ticks(main.pk, 0, 100, at=now - 10 + second)
    board.record_ticks(main.pk, 0, 100, at=now)
    sources = {
        (main.pk, 0): {"state": "connected", "reconnects": 0},
        (main.pk, 1): {"state": "reconnecting", "reconnects": 4, "last_error": "connection closed by peer"},
    }
    ticker_status.publish_local(board.as_dict(sources=sources))

    response = staff_client.get(reverse(url_name))

    assert response.status_code == 200
    assert "Live streaming (ticker host-a:1234" in _text(response.content)
    first = _row(response.content, "streaming-connection", account=main.pk, connection=0)
    assert re.fullmatch(r"Main mock #0 connected 3000 \d\d:\d\d:\d\d UTC \(0\.\d s ago\) (\d+\.\d) 0", first), first
    rate = float(first.split()[-2])
    assert 50 < rate < 150
    second = _row(response.content, "streaming-connection", account=main.pk, connection=1)
    assert second == "Main mock #1 reconnecting 1200 none yet 0.0 4 connection closed by peer"
    idle_row = _row(response.content, "streaming-connection", account=idle.pk)
    assert idle_row == "Idle mock no open connection (health: auth_failed)"


def test_an_unreadable_ticker_status_does_not_break_the_page(staff_client, monkeypatch):
    def unreachable() -> None:
        raise ConnectionError("redis is down")

    monkeypatch.setattr("subscriptions.admin.list_context.ticker_status", unreachable)

    response = staff_client.get(reverse(ACCOUNTS_URL))

    assert response.status_code == 200
    assert "No ticker has reported its status recently" in _text(response.content)


def test_the_report_says_when_subscriptions_moved_to_even_out_the_accounts(staff_client):
    main = AccountFactory(label="Main", access_token="token-main", max_connections=2, instruments_per_connection=10)
    AccountFactory(label="Spare", access_token="token-spare", max_connections=2, instruments_per_connection=10)
    SubscriptionFactory.create_batch(16)
    reconcile_subscriptions(now=NOW, mode="live", notify=False)
    TradingAccount.objects.filter(pk=main.pk).update(health=TradingAccount.Health.AUTH_FAILED)
    reconcile_subscriptions(now=NOW, mode="live", notify=False)
    TradingAccount.objects.filter(pk=main.pk).update(health=TradingAccount.Health.OK)
    reconcile_subscriptions(now=NOW, mode="live", notify=False)

    text = _text(staff_client.get(reverse(ACCOUNTS_URL)).content)

    assert "8 kept, 8 moved (8 to even out the accounts), 0 newly placed" in text
