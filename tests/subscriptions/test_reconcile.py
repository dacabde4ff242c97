"""The reconciler against the database: deactivation with reasons, sticky failover, overflow, the plan."""

from __future__ import annotations

import datetime as dt

import pytest

from subscriptions.models import IST, Subscription, TradingAccount
from subscriptions.services.reconcile import (
    deactivate_expired_subscriptions,
    last_reconcile_report,
    load_plan,
    market_is_open,
    plan_fingerprint,
    reconcile_subscriptions,
)
from tests.subscriptions.factories import AccountFactory, HolidayFactory, OptionFactory, SubscriptionFactory
from tickerproject.platform import reload_notifications as notifications

pytestmark = pytest.mark.django_db

NOW = dt.datetime(2029, 12, 3, 11, 0, tzinfo=IST)  # a Monday, market hours, contracts (2030) alive


def _account(label: str, **kwargs) -> TradingAccount:
    kwargs.setdefault("access_token", f"token-{label}")
    return AccountFactory(label=label, **kwargs)


def _placements() -> dict[int, tuple[int | None, int | None]]:
    return {s.pk: (s.account_id, s.connection_index) for s in Subscription.objects.filter(is_active=True)}


@pytest.fixture
def listener():
    heard: list[dict] = []
    remove = notifications.add_listener(heard.append)
    yield heard
    remove()


def test_assigns_within_limits_and_is_sticky_across_reconciles():
    a = _account("A", instruments_per_connection=10, max_connections=2)
    b = _account("B", instruments_per_connection=10, max_connections=2)
    subs = SubscriptionFactory.create_batch(30)

    first = reconcile_subscriptions(now=NOW, mode="live", notify=False)

    placements = _placements()
    assert all(account is not None for account, _ in placements.values())
    per_connection: dict[tuple, int] = {}
    for key in placements.values():
        per_connection[key] = per_connection.get(key, 0) + 1
    assert max(per_connection.values()) <= 10
    assert first.assigned == 30 and first.overflow_count == 0 and first.changed == 30
    usage = {u.label: u for u in first.accounts}
    assert usage["A"].used == 15 and usage["B"].used == 15  # balanced
    assert usage["A"].free == 5 and usage["A"].per_connection in ([8, 7], [7, 8])

    updated_before = {s.pk: s.updated_at for s in Subscription.objects.all()}
    second = reconcile_subscriptions(now=NOW + dt.timedelta(minutes=1), mode="live", notify=False)

    assert _placements() == placements
    assert second.changed == 0 and second.kept == 30
    assert {s.pk: s.updated_at for s in Subscription.objects.all()} == updated_before  # nothing rewritten
    assert {a.pk, b.pk} == {u.account_id for u in second.accounts}
    assert len(subs) == 30


def test_auth_failed_account_loses_its_instruments_to_healthy_ones_and_others_stay():
    a = _account("A")
    b = _account("B")
    SubscriptionFactory.create_batch(40)
    reconcile_subscriptions(now=NOW, mode="live", notify=False)
    before = _placements()
    on_a = {pk for pk, (account, _) in before.items() if account == a.pk}
    assert len(on_a) == 20

    TradingAccount.objects.filter(pk=a.pk).update(health=TradingAccount.Health.AUTH_FAILED)
    report = reconcile_subscriptions(now=NOW, mode="live", notify=False)

    after = _placements()
    assert all(after[pk][0] == b.pk for pk in on_a)
    assert all(after[pk] == before[pk] for pk in before if pk not in on_a)
    assert report.moved == 20 and report.kept == 20
    usage = {u.label: u for u in report.accounts}
    assert usage["A"].usable is False and usage["A"].used == 0 and usage["A"].health == "auth_failed"
    assert usage["B"].used == 40

    # A new login brings A back: nothing moves back (sticky), but new subscriptions go to the emptier A.
    TradingAccount.objects.filter(pk=a.pk).update(health=TradingAccount.Health.OK)
    SubscriptionFactory.create_batch(10)
    report = reconcile_subscriptions(now=NOW, mode="live", notify=False)

    assert {pk: _placements()[pk] for pk in after} == after
    assert {u.label: u.used for u in report.accounts} == {"A": 10, "B": 40}


def test_an_account_back_from_a_failure_takes_its_share_back():
    a = _account("A", max_connections=2, instruments_per_connection=20)
    b = _account("B", max_connections=2, instruments_per_connection=20)
    SubscriptionFactory.create_batch(36)
    reconcile_subscriptions(now=NOW, mode="live", notify=False)
    TradingAccount.objects.filter(pk=a.pk).update(health=TradingAccount.Health.AUTH_FAILED)
    reconcile_subscriptions(now=NOW, mode="live", notify=False)
    on_b = _placements()
    assert {account for account, _ in on_b.values()} == {b.pk}

    TradingAccount.objects.filter(pk=a.pk).update(health=TradingAccount.Health.OK)  # a new login
    report = reconcile_subscriptions(now=NOW, mode="live", notify=False)

    assert {u.label: u.used for u in report.accounts} == {"A": 18, "B": 18}
    assert report.rebalanced == report.moved == 18 and report.kept == 18
    after = _placements()
    assert all(after[pk] == on_b[pk] for pk in after if after[pk][0] == b.pk)  # B's remaining ones stayed put
    assert last_reconcile_report().rebalanced == 18  # what the admin's reconcile report shows


def test_inactive_and_tokenless_accounts_get_nothing():
    _account("A", is_active=False)
    _account("B", access_token="")
    _account("C", token_expires_at=NOW - dt.timedelta(minutes=1))
    good = _account("D")
    SubscriptionFactory.create_batch(5)

    report = reconcile_subscriptions(now=NOW, mode="live", notify=False)

    assert {account for account, _ in _placements().values()} == {good.pk}
    assert [u.label for u in report.accounts if u.usable] == ["D"]


def test_overflow_is_reported_and_left_unassigned(caplog):
    _account("A", instruments_per_connection=5, max_connections=2)
    subs = SubscriptionFactory.create_batch(13)

    report = reconcile_subscriptions(now=NOW, mode="live", notify=False)

    assert report.overflow_count == 3
    assert report.overflow_subscription_ids == [s.pk for s in subs[-3:]]  # the newest overflow
    assert Subscription.objects.filter(is_active=True, account__isnull=True).count() == 3
    assert "exceed the usable capacity" in caplog.text
    stored = last_reconcile_report()
    assert stored == report
    assert stored.to_dict()["accounts"][0]["free"] == 0


def test_expired_and_delisted_subscriptions_are_deactivated_with_reasons():
    _account("A")
    expired = SubscriptionFactory(instrument=OptionFactory(expiry=dt.date(2029, 12, 3)))
    delisted = SubscriptionFactory(instrument=OptionFactory(delisted_at=dt.datetime(2029, 11, 30, 3, 0, tzinfo=dt.UTC)))
    alive = SubscriptionFactory()

    # 15:30 IST on the expiry day is the moment a contract dies.
    report = reconcile_subscriptions(now=dt.datetime(2029, 12, 3, 15, 30, tzinfo=IST), mode="live", notify=False)

    expired.refresh_from_db()
    delisted.refresh_from_db()
    alive.refresh_from_db()
    assert not expired.is_active and expired.deactivated_reason == "contract expired on 2029-12-03"
    assert not delisted.is_active and delisted.deactivated_reason == "instrument left the registry on 2029-11-30"
    assert expired.account_id is None and delisted.account_id is None
    assert alive.is_active and alive.account_id is not None
    assert report.deactivated == {"expired": 1, "delisted": 1}
    assert report.deactivated_subscription_ids == sorted([expired.pk, delisted.pk])
    assert report.active == 1


def test_deactivate_expired_subscriptions_only_after_the_close():
    gone_at = dt.datetime(2029, 12, 1, tzinfo=dt.UTC)
    expiring = SubscriptionFactory(instrument=OptionFactory(expiry=dt.date(2029, 12, 3)))
    expiring_delisted = SubscriptionFactory(instrument=OptionFactory(expiry=dt.date(2029, 12, 3), delisted_at=gone_at))
    delisted_only = SubscriptionFactory(instrument=OptionFactory(delisted_at=gone_at))
    SubscriptionFactory()

    assert deactivate_expired_subscriptions(now=dt.datetime(2029, 12, 3, 15, 29, tzinfo=IST)) == 0
    assert deactivate_expired_subscriptions(now=dt.datetime(2029, 12, 3, 15, 31, tzinfo=IST)) == 2
    for sub in (expiring, expiring_delisted, delisted_only):
        sub.refresh_from_db()
    assert not expiring.is_active and expiring.deactivated_reason == "contract expired on 2029-12-03"
    assert not expiring_delisted.is_active
    assert delisted_only.is_active  # the expiry cleanup leaves delistings to the reconciler
    assert Subscription.objects.filter(is_active=True).count() == 2


def test_mock_accounts_only_take_instruments_in_mock_mode():
    mock = _account("Mock", is_mock=True, access_token="")
    real = _account("Real")
    SubscriptionFactory.create_batch(4)

    reconcile_subscriptions(now=NOW, mode="live", notify=False)
    assert {account for account, _ in _placements().values()} == {real.pk}

    Subscription.objects.update(account=None, connection_index=None)
    reconcile_subscriptions(now=NOW, mode="mock", notify=False)
    assert {account for account, _ in _placements().values()} == {mock.pk, real.pk}


def test_auto_mode_keeps_mock_accounts_out_while_a_real_account_streams_live():
    mock = _account("Mock", is_mock=True, access_token="")
    real = _account("Real")
    SubscriptionFactory.create_batch(4)

    reconcile_subscriptions(now=NOW, mode="auto", notify=False)  # market open: live only
    assert {account for account, _ in _placements().values()} == {real.pk}

    evening = NOW.replace(hour=20)
    Subscription.objects.update(account=None, connection_index=None)
    reconcile_subscriptions(now=evening, mode="auto", notify=False)  # market closed: mock ones join
    assert {account for account, _ in _placements().values()} == {mock.pk, real.pk}


def test_custom_account_filter_decides():
    a = _account("A")
    _account("B")
    SubscriptionFactory.create_batch(3)

    reconcile_subscriptions(now=NOW, account_filter=lambda account: account.label == "A", notify=False)

    assert {account for account, _ in _placements().values()} == {a.pk}


def test_changes_are_announced_after_commit_and_quiet_reconciles_say_nothing(
    listener, django_capture_on_commit_callbacks
):
    _account("A")
    SubscriptionFactory.create_batch(3)
    listener.clear()  # the factory saves announce themselves

    with django_capture_on_commit_callbacks(execute=True):
        reconcile_subscriptions(now=NOW, mode="live")
    assert [m["reason"] for m in listener] == ["reconcile: 3 reassigned, 0 deactivated"]

    listener.clear()
    with django_capture_on_commit_callbacks(execute=True):
        reconcile_subscriptions(now=NOW, mode="live")
    assert listener == []


def test_load_plan_carries_what_the_loop_needs_without_leaking_the_token():
    account = _account("A", access_token="clear-access-token-123")
    option = OptionFactory(strike=25000.0, instrument_type="PE", tick_size=0.05, lot_size=75)
    sub = SubscriptionFactory(instrument=option, mode="quote")
    SubscriptionFactory(is_active=False)
    reconcile_subscriptions(now=NOW, mode="live", notify=False)

    plan = load_plan(now=NOW)

    assert list(plan.instruments) == [option.instrument_token]
    item = plan.instruments[option.instrument_token]
    assert (item.subscription_id, item.tradingsymbol, item.underlying, item.instrument_type) == (
        sub.pk,
        option.tradingsymbol,
        "NIFTY",
        "PE",
    )
    assert (item.strike, item.expiry, item.tick_size, item.segment, item.mode) == (
        25000.0,
        dt.date(2030, 1, 29),
        0.05,
        "NFO-OPT",
        "quote",
    )
    assert item.account_id == account.pk and item.connection_index == 0
    planned = plan.accounts[account.pk]
    assert planned.access_token == "clear-access-token-123" and planned.has_valid_token
    assert "clear-access-token-123" not in repr(plan)
    assert plan.connection_tokens() == {item.placement: {option.instrument_token: "quote"}}
    assert plan.unplaced() == []


def test_plan_fingerprint_changes_with_the_plan_only():
    account = _account("A")
    sub = SubscriptionFactory()
    before = plan_fingerprint()

    assert plan_fingerprint() == before
    Subscription.objects.filter(pk=sub.pk).update(mode="ltp")  # no signal fires for update()
    assert plan_fingerprint() != before
    changed = plan_fingerprint()
    TradingAccount.objects.filter(pk=account.pk).update(health="auth_failed")
    assert plan_fingerprint() != changed


def test_market_hours_and_holidays():
    monday = dt.datetime(2030, 1, 7, 9, 15, tzinfo=IST)

    assert market_is_open(now=monday)
    assert not market_is_open(now=monday.replace(hour=9, minute=14))
    assert not market_is_open(now=monday.replace(hour=15, minute=30))
    assert not market_is_open(now=monday + dt.timedelta(days=5))  # Saturday
    assert market_is_open(now=monday.astimezone(dt.UTC))  # 03:45 UTC is 09:15 IST
    HolidayFactory(date=dt.date(2030, 1, 7))
    assert not market_is_open(now=monday)


def test_lowering_an_accounts_limit_moves_only_the_excess():
    a = _account("A", instruments_per_connection=10, max_connections=1)
    _account("B", instruments_per_connection=10, max_connections=1)
    SubscriptionFactory.create_batch(12)
    reconcile_subscriptions(now=NOW, mode="live", notify=False)
    before = _placements()
    on_a = sorted(pk for pk, (account, _) in before.items() if account == a.pk)

    TradingAccount.objects.filter(pk=a.pk).update(instruments_per_connection=4)
    report = reconcile_subscriptions(now=NOW, mode="live", notify=False)

    after = _placements()
    assert [pk for pk in on_a if after[pk][0] == a.pk] == on_a[:4]  # the oldest four stay
    assert report.moved == len(on_a) - 4 and report.changed == len(on_a) - 4
    assert {u.label: u.used for u in report.accounts} == {"A": 4, "B": 8}


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_reconcilers_never_exceed_the_limits():
    from concurrent.futures import ThreadPoolExecutor

    from django.db import connection

    _account("A", instruments_per_connection=20, max_connections=2)
    _account("B", instruments_per_connection=20, max_connections=2)
    SubscriptionFactory.create_batch(70)

    def reconcile_in_thread(offset: int):
        try:
            return reconcile_subscriptions(now=NOW + dt.timedelta(seconds=offset), mode="live", notify=False)
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=4) as pool:
        reports = list(pool.map(reconcile_in_thread, range(4)))

    per_connection: dict[tuple, int] = {}
    for key in _placements().values():
        per_connection[key] = per_connection.get(key, 0) + 1
    assert (None, None) not in per_connection  # capacity 80 ≥ 70: everything placed
    assert max(per_connection.values()) <= 20 and sum(per_connection.values()) == 70
    assert sum(report.changed for report in reports) == 70  # one of them placed everything; the others kept it


def test_a_cache_outage_does_not_fail_the_reconcile_the_ticker_reloads_with(monkeypatch, caplog):
    from subscriptions.services import reconcile

    class _CacheDown:
        def set(self, *args, **kwargs):
            raise ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    _account("A", instruments_per_connection=10, max_connections=1)
    SubscriptionFactory.create_batch(3)
    monkeypatch.setattr(reconcile, "cache", _CacheDown())

    report = reconcile_subscriptions(now=NOW, mode="live", notify=False)

    assert report.assigned == 3
    assert all(account is not None for account, _ in _placements().values())  # the assignment is saved
    assert "could not store the reconcile report" in caplog.text
    assert not any(record.exc_info for record in caplog.records)
