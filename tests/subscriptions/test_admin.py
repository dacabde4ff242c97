"""Every admin page and action, as a staff user, through the test client."""

from __future__ import annotations

import datetime as dt
import io

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.management import call_command
from django.urls import reverse

from subscriptions.models import Instrument, MarketHoliday, Subscription, TradingAccount
from tests.subscriptions.factories import (
    AccountFactory,
    HolidayFactory,
    IndexFactory,
    OptionFactory,
    SubscriptionFactory,
    make_chain,
)

pytestmark = pytest.mark.django_db

SECRET = "s3cr3t-api-secret-value"
TOKEN = "acc3ss-t0ken-value-xyz"
EXPIRY = dt.date(2030, 1, 29)
CHAIN_URL = "admin:subscriptions_subscription_chain_subscribe"


@pytest.fixture
def staff_client(client):
    """A staff user with every permission on the subscriptions app (not a superuser)."""
    user = get_user_model().objects.create_user("operator", password="pw-operator-123", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(content_type__app_label="subscriptions"))
    client.force_login(user)
    return client


@pytest.fixture
def objects():
    account = AccountFactory(api_secret=SECRET, access_token=TOKEN, label="Main account")
    subscription = SubscriptionFactory(account=account, connection_index=0)
    return {
        "instrument": subscription.instrument,
        "tradingaccount": account,
        "subscription": subscription,
        "marketholiday": HolidayFactory(),
    }


MODELS = ["instrument", "tradingaccount", "subscription", "marketholiday"]


@pytest.mark.parametrize("model", MODELS)
def test_changelist_add_change_and_delete_pages_render(staff_client, objects, model):
    obj = objects[model]
    pages = [
        reverse(f"admin:subscriptions_{model}_changelist"),
        reverse(f"admin:subscriptions_{model}_add"),
        reverse(f"admin:subscriptions_{model}_change", args=[obj.pk]),
        reverse(f"admin:subscriptions_{model}_delete", args=[obj.pk]),
        reverse(f"admin:subscriptions_{model}_history", args=[obj.pk]),
    ]
    for url in pages:
        response = staff_client.get(url)
        assert response.status_code == 200, url
        assert SECRET.encode() not in response.content and TOKEN.encode() not in response.content, url


def test_admin_index_and_app_index_list_the_models(staff_client):
    for url in (reverse("admin:index"), reverse("admin:app_list", args=["subscriptions"])):
        page = staff_client.get(url).content.decode()
        for name in ("Instruments", "Trading accounts", "Subscriptions", "Market holidays"):
            assert name in page, (url, name)


@pytest.mark.parametrize(
    ("model", "query"),
    [
        ("instrument", "q=NIFTY&instrument_type__exact=CE&exchange__exact=NFO&listed=yes&underlying=NIFTY"),
        ("instrument", "listed=no&expiry__year=2030"),
        ("tradingaccount", "q=Main&is_active__exact=1&is_mock__exact=0&health__exact=unknown"),
        ("subscription", "q=NIFTY&is_active__exact=1&mode__exact=full&assigned=yes&underlying=NIFTY"),
        ("subscription", "assigned=no&instrument__instrument_type__exact=PE"),
        ("marketholiday", "q=Test&exchange__exact=NSE&date__year=2030"),
    ],
)
def test_search_and_filters_work(staff_client, objects, model, query):
    response = staff_client.get(reverse(f"admin:subscriptions_{model}_changelist") + "?" + query)
    assert response.status_code == 200
    assert b"errornote" not in response.content


def test_delete_confirmations_really_delete(staff_client, objects):
    holiday = objects["marketholiday"]
    url = reverse("admin:subscriptions_marketholiday_delete", args=[holiday.pk])
    assert staff_client.post(url, {"post": "yes"}).status_code == 302
    assert not MarketHoliday.objects.filter(pk=holiday.pk).exists()


def test_add_instrument_and_holiday_through_the_forms(staff_client):
    response = staff_client.post(
        reverse("admin:subscriptions_instrument_add"),
        {
            "instrument_token": "12345",
            "exchange_token": "48",
            "tradingsymbol": "TESTSYM",
            "name": "Test",
            "last_price": "10",
            "strike": "0",
            "tick_size": "0.05",
            "lot_size": "1",
            "instrument_type": "EQ",
            "segment": "NSE",
            "exchange": "NSE",
            "underlying": "TESTSYM",
        },
    )
    assert response.status_code == 302
    assert Instrument.objects.filter(tradingsymbol="TESTSYM").exists()
    response = staff_client.post(
        reverse("admin:subscriptions_marketholiday_add"),
        {"exchange": "NSE", "date": "2030-03-01", "description": "Extra"},
    )
    assert response.status_code == 302 and MarketHoliday.objects.filter(description="Extra").exists()


def test_second_active_subscription_in_the_add_form_is_a_form_error(staff_client):
    existing = SubscriptionFactory()
    response = staff_client.post(
        reverse("admin:subscriptions_subscription_add"),
        {"instrument": existing.instrument.pk, "mode": "ltp", "is_active": "on", "deactivated_reason": ""},
    )
    assert response.status_code == 200
    assert b"already has an active subscription" in response.content
    assert Subscription.objects.count() == 1


# --- Trading accounts: secrets, capacity, actions -----------------------------------------


def test_account_form_never_renders_secrets_and_blank_keeps_them(staff_client, objects):
    account = objects["tradingaccount"]
    url = reverse("admin:subscriptions_tradingaccount_change", args=[account.pk])
    page = staff_client.get(url).content.decode()
    assert SECRET not in page and TOKEN not in page
    assert 'name="new_api_secret"' in page and 'type="password"' in page
    assert "set (hidden)" in page and "Log in with Kite" in page
    data = {
        "label": "Renamed",
        "kite_user_id": "AB1234",
        "api_key": account.api_key,
        "is_active": "on",
        "max_connections": "2",
        "instruments_per_connection": "1000",
        "new_api_secret": "",
        "new_access_token": "",
    }
    response = staff_client.post(url, data, follow=True)
    assert response.status_code == 200 and SECRET.encode() not in response.content
    account.refresh_from_db()
    assert (account.label, account.api_secret, account.access_token, account.capacity) == (
        "Renamed",
        SECRET,
        TOKEN,
        2000,
    )

    staff_client.post(url, {**data, "new_api_secret": "brand-new-secret-1"})
    account.refresh_from_db()
    assert account.api_secret == "brand-new-secret-1"


def test_account_needs_a_secret_unless_mock_and_limits_are_enforced(staff_client):
    url = reverse("admin:subscriptions_tradingaccount_add")
    base = {
        "label": "New",
        "api_key": "k",
        "is_active": "on",
        "max_connections": "3",
        "instruments_per_connection": "3000",
    }
    response = staff_client.post(url, base)
    assert response.status_code == 200 and b"needs its api_secret" in response.content
    response = staff_client.post(url, {**base, "max_connections": "4", "instruments_per_connection": "3001"})
    assert response.status_code == 200 and b"errorlist" in response.content
    assert not TradingAccount.objects.exists()
    assert staff_client.post(url, {**base, "is_mock": "on"}).status_code == 302
    assert staff_client.post(url, {**base, "label": "Real", "new_api_secret": SECRET}).status_code == 302
    raw = TradingAccount.objects.get(label="Real")
    assert raw.api_secret == SECRET


def test_account_list_shows_capacity_used_free_and_unassigned_warning(staff_client):
    account = AccountFactory(max_connections=1, instruments_per_connection=10)
    for _ in range(3):
        SubscriptionFactory(account=account, connection_index=0)
    SubscriptionFactory(account=account, is_active=False)
    SubscriptionFactory(account=None)
    SubscriptionFactory(account=None)
    page = staff_client.get(reverse("admin:subscriptions_tradingaccount_changelist")).content.decode()
    assert '<td class="field-used_display">3</td>' in page
    assert '<td class="field-free_display">7</td>' in page
    assert "2 active subscriptions are not assigned to any account" in page
    change = staff_client.get(reverse("admin:subscriptions_tradingaccount_change", args=[account.pk])).content.decode()
    assert "10 (1 × 10)" in change and "2 active subscriptions are not assigned" in change
    unassigned = staff_client.get(
        reverse("admin:subscriptions_subscription_changelist") + "?is_active__exact=1&assigned=no"
    )
    assert unassigned.context["cl"].result_count == 2


def test_account_actions_activate_and_deactivate(staff_client):
    first, second = AccountFactory(is_active=True), AccountFactory(is_active=False)
    url = reverse("admin:subscriptions_tradingaccount_changelist")
    staff_client.post(url, {"action": "deactivate_accounts", "_selected_action": [first.pk]})
    staff_client.post(url, {"action": "activate_accounts", "_selected_action": [second.pk]})
    first.refresh_from_db(), second.refresh_from_db()
    assert (first.is_active, second.is_active) == (False, True)


# --- Subscriptions and instruments: actions -----------------------------------------------


def test_subscription_actions_use_the_services(staff_client):
    active = SubscriptionFactory(account=AccountFactory(), connection_index=0)
    blocked = SubscriptionFactory(instrument=active.instrument, is_active=False)
    url = reverse("admin:subscriptions_subscription_changelist")
    response = staff_client.post(
        url, {"action": "activate_subscriptions", "_selected_action": [blocked.pk]}, follow=True
    )
    assert b"already has an active subscription" in response.content
    blocked.refresh_from_db()
    assert not blocked.is_active

    response = staff_client.post(
        url, {"action": "deactivate_subscriptions", "_selected_action": [active.pk]}, follow=True
    )
    active.refresh_from_db()
    assert not active.is_active and active.account is None and "operator" in active.deactivated_reason
    response = staff_client.post(
        url, {"action": "activate_subscriptions", "_selected_action": [blocked.pk]}, follow=True
    )
    blocked.refresh_from_db()
    assert blocked.is_active and b"1 subscription(s) activated" in response.content


def test_instrument_subscribe_action_skips_subscribed_ones(staff_client):
    subscribed, fresh = SubscriptionFactory().instrument, OptionFactory()
    url = reverse("admin:subscriptions_instrument_changelist")
    response = staff_client.post(
        url, {"action": "subscribe_quote", "_selected_action": [subscribed.pk, fresh.pk]}, follow=True
    )
    assert b"1 subscribed in quote mode; 1 already had an active subscription" in response.content
    assert Subscription.objects.get(instrument=fresh, is_active=True).mode == "quote"
    for action in ("subscribe_full", "subscribe_ltp"):
        other = OptionFactory()
        staff_client.post(url, {"action": action, "_selected_action": [other.pk]})
        assert Subscription.objects.get(instrument=other).mode == action.split("_")[1]


# --- Chain subscribe view -------------------------------------------------------------------


def _chain_form(**overrides):
    return {"underlying": "NIFTY", "expiry": EXPIRY.isoformat(), "strikes_each_side": "2", "mode": "full", **overrides}


def test_chain_form_renders_with_choices_and_link(staff_client):
    make_chain(expiry=EXPIRY)
    page = staff_client.get(reverse(CHAIN_URL)).content.decode()
    assert '<option value="NIFTY">NIFTY</option>' in page and 'value="2030-01-29"' in page
    listing = staff_client.get(reverse("admin:subscriptions_subscription_changelist")).content.decode()
    assert reverse(CHAIN_URL) in listing


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"expiry": "2031-05-05"}, b"No listed NIFTY options expire on 2031-05-05"),
        ({"expiry": "not-a-date"}, b"Enter a valid date"),
        ({"underlying": "NOPE"}, b"Select a valid choice"),
        ({"strikes_each_side": "-3"}, b"greater than or equal to 0"),
        ({"strikes_each_side": "abc"}, b"Enter a whole number"),
        ({"mode": "turbo"}, b"Select a valid choice"),
    ],
)
def test_chain_form_bad_input_shows_errors_and_saves_nothing(staff_client, overrides, message):
    make_chain(expiry=EXPIRY)
    for button in ("preview", "confirm"):
        response = staff_client.post(reverse(CHAIN_URL), {**_chain_form(**overrides), button: "1"})
        assert response.status_code == 200
        assert message in response.content
    assert not Subscription.objects.exists()


def test_chain_form_previews_then_confirm_saves_the_previewed_rows(staff_client):
    IndexFactory(last_price=25990.0)
    chain = make_chain(expiry=EXPIRY)
    taken = next(i for i in chain if i.strike == 26100.0 and i.instrument_type == "CE")
    SubscriptionFactory(instrument=taken)

    response = staff_client.post(reverse(CHAIN_URL), {**_chain_form(), "preview": "Preview"})
    page = response.content.decode()
    assert response.status_code == 200
    assert '<strong id="chain-preview-count">9</strong>' in page
    assert "ATM strike <strong>26000</strong>" in page and "25800 to 26200" in page
    assert "NIFTY30JAN25800CE" in page and "Already subscribed, skipped (1)" in page
    assert Subscription.objects.count() == 1  # a preview saves nothing

    previewed = response.context["preview_key"]
    # Inputs changed after the preview: show the new preview, save nothing.
    response = staff_client.post(
        reverse(CHAIN_URL), {**_chain_form(strikes_each_side="5"), "previewed": previewed, "confirm": "1"}
    )
    assert response.status_code == 200 and Subscription.objects.count() == 1

    response = staff_client.post(
        reverse(CHAIN_URL), {**_chain_form(), "previewed": previewed, "confirm": "1"}, follow=True
    )
    assert b"Subscribed 9 NIFTY 29 Jan 2030 options in full mode (1 already subscribed, skipped)" in response.content
    added = Subscription.objects.filter(is_active=True).exclude(instrument=taken)
    assert sorted((s.instrument.strike, s.instrument.instrument_type) for s in added) == sorted(
        (strike, kind)
        for strike in (25800.0, 25900.0, 26000.0, 26100.0, 26200.0)
        for kind in ("CE", "PE")
        if (strike, kind) != (26100.0, "CE")
    )


def test_chain_view_needs_permission(client):
    user = get_user_model().objects.create_user("viewer", password="pw-viewer-123", is_staff=True)
    client.force_login(user)
    assert client.get(reverse(CHAIN_URL)).status_code == 403
    client.logout()
    assert client.get(reverse(CHAIN_URL)).status_code == 302


def test_the_seeded_demo_fills_the_first_screens(staff_client):
    call_command("seed_demo", stdout=io.StringIO())
    listing = staff_client.get(reverse("admin:subscriptions_subscription_changelist"))
    assert listing.context["cl"].result_count == 2 + 2 * 41 * 2
    accounts = staff_client.get(reverse("admin:subscriptions_tradingaccount_changelist")).content.decode()
    assert "Mock market" in accounts and '<td class="field-used_display">0</td>' in accounts
    assert "166 active subscriptions are not assigned" in accounts  # until the reconciler runs
    form = staff_client.get(reverse(CHAIN_URL)).context["form"]
    nearest = form.fields["expiry"].widget.choices[0][0]
    response = staff_client.post(
        reverse(CHAIN_URL), {**_chain_form(expiry=nearest, strikes_each_side="25"), "preview": "1"}
    )
    plan = response.context["plan"]
    assert plan.atm_strike == 26000.0 and plan.count == 20 and len(plan.already_subscribed) == 82


@pytest.mark.parametrize("model", MODELS)
def test_bulk_delete_action_confirms_then_deletes(staff_client, objects, model):
    obj = objects[model]
    url = reverse(f"admin:subscriptions_{model}_changelist")
    confirm = staff_client.post(url, {"action": "delete_selected", "_selected_action": [obj.pk]})
    assert confirm.status_code == 200 and b"Delete multiple objects" in confirm.content
    assert SECRET.encode() not in confirm.content and TOKEN.encode() not in confirm.content
    done = staff_client.post(url, {"action": "delete_selected", "_selected_action": [obj.pk], "post": "yes"})
    assert done.status_code == 302
    assert not type(obj).objects.filter(pk=obj.pk).exists()
