"""The Kite login callback only acts on a login this browser session's user started for that account.

`/kite/callback/` is a GET, so any page can make a signed-in staff browser send it. Without a
single-use state from `/kite/login/<id>/` it must change nothing: not the account's health (which
moves its subscriptions off it), not its access token (login CSRF: the attacker's Kite session), no
token exchange at all. The exchange runs against the project's Kite simulator, which accepts any
request_token with the right checksum, so a callback that slipped through would really log in.
"""

from __future__ import annotations

import datetime as dt
import logging
from urllib.parse import parse_qs, urlsplit

import pytest
from django.contrib.auth import get_user_model
from django.contrib.sessions.backends.db import SessionStore
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from subscriptions.models import Subscription, TradingAccount
from tests.subscriptions.factories import AccountFactory, OptionFactory

pytestmark = pytest.mark.django_db

OLD_TOKEN = "old-access-token-5d1e9a"
REFUSED = b"Kite login refused"


@pytest.fixture
def kite(simulator, settings):
    """The simulator as Kite's REST API; it also knows `sim_key2` for a second real account."""
    settings.KITE_API_ROOT = simulator.http_url
    simulator.state.register_account("sim_key2", "sim_secret2", user_id="CD5678")
    return simulator


def _account(label: str, api_key: str, api_secret: str) -> TradingAccount:
    account = AccountFactory(
        label=label,
        api_key=api_key,
        api_secret=api_secret,
        access_token=OLD_TOKEN,
        kite_user_id="OLD001",
        health=TradingAccount.Health.OK,
        token_expires_at=dt.datetime.now(dt.UTC) + dt.timedelta(hours=6),
    )
    Subscription.objects.create(instrument=OptionFactory(), account=account, mode="full")
    return account


@pytest.fixture
def victim(kite) -> TradingAccount:
    """A healthy account the simulator would log in for any request_token."""
    return _account("Victim", "sim_key", "sim_secret")


@pytest.fixture
def second(kite) -> TradingAccount:
    return _account("Second", "sim_key2", "sim_secret2")


@pytest.fixture
def unknown_key(kite) -> TradingAccount:
    """A healthy account whose exchange the simulator refuses: a callback reaching it marks it auth_failed."""
    return _account("Unknown key", "key-kite-does-not-know", "whatever")


def _state_of(account: TradingAccount) -> tuple:
    account = TradingAccount.objects.get(pk=account.pk)
    subscriptions = list(Subscription.objects.order_by("pk").values_list("pk", "account", "is_active"))
    return (
        account.health,
        account.last_error,
        account.access_token,  # decrypted
        account.kite_user_id,
        account.token_expires_at,
        account.health_changed_at,
        account.updated_at,
        subscriptions,
    )


def _issued_tokens(kite) -> dict[str, set[str]]:
    return {key: set(sim_account.access_tokens) for key, sim_account in kite.state.accounts.items()}


def _start_login(client: Client, account: TradingAccount) -> str:
    """Press "Log in with Kite"; the state Kite will hand back in redirect_params."""
    response = client.get(reverse("kite:login", args=[account.pk]))
    assert response.status_code == 302
    redirect_params = parse_qs(parse_qs(urlsplit(response["Location"]).query)["redirect_params"][0])
    assert redirect_params["account"] == [str(account.pk)]
    return redirect_params["state"][0]


def _callback(client: Client, account: TradingAccount, state: str | None, status: str = "success"):
    params = {"account": account.pk, "status": status, "request_token": "attacker-request-token-77"}
    if state is not None:
        params["state"] = state
    return client.get(reverse("kite:callback"), params)


def _assert_refused(response, account: TradingAccount, expected: str, caplog) -> None:
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:subscriptions_tradingaccount_change", args=[account.pk])
    [message] = [m.message for m in response.wsgi_request._messages if m.message.startswith("Kite login refused: ")]
    assert expected in message
    assert "Nothing was changed" in message
    refusals = [r for r in caplog.records if r.name == "subscriptions.views" and "refused" in r.getMessage()]
    assert len(refusals) == 1
    assert "attacker-request-token-77" not in caplog.text


@pytest.fixture
def other_staff(db) -> Client:
    user = get_user_model().objects.create_user("other-ops", password="x", is_staff=True, is_superuser=True)
    client = Client()
    client.force_login(user)
    return client


@pytest.mark.parametrize("account_fixture", ["victim", "unknown_key"])
@pytest.mark.parametrize("pending_login", [False, True], ids=["no-login-started", "login-pending"])
def test_a_cross_site_callback_without_state_changes_nothing(
    request, admin_client, kite, account_fixture, pending_login, caplog
):
    account = request.getfixturevalue(account_fixture)
    if pending_login:  # a login the operator started is no licence for a callback that lacks its state
        _start_login(admin_client, account)
    before, tokens = _state_of(account), _issued_tokens(kite)
    with caplog.at_level(logging.INFO):
        response = _callback(admin_client, account, state=None)
    assert _state_of(account) == before
    assert _issued_tokens(kite) == tokens  # no token exchange reached Kite
    _assert_refused(response, account, "carried no login state", caplog)
    page = admin_client.get(response["Location"])
    assert REFUSED in page.content


def test_wrong_state_changes_nothing(admin_client, kite, victim, caplog):
    _start_login(admin_client, victim)
    before, tokens = _state_of(victim), _issued_tokens(kite)
    with caplog.at_level(logging.INFO):
        response = _callback(admin_client, victim, state="A" * 43)
    assert (_state_of(victim), _issued_tokens(kite)) == (before, tokens)
    _assert_refused(response, victim, "not issued to this browser session or was already used", caplog)


def test_state_for_another_account_changes_nothing(admin_client, kite, victim, second, caplog):
    second_state = _start_login(admin_client, second)
    before, tokens = _state_of(victim), _issued_tokens(kite)
    with caplog.at_level(logging.INFO):
        response = _callback(admin_client, victim, state=second_state)
    assert (_state_of(victim), _issued_tokens(kite)) == (before, tokens)
    _assert_refused(response, victim, "names another account", caplog)
    # The misused state stays good for the login it was issued for.
    _callback(admin_client, second, state=second_state)
    assert TradingAccount.objects.get(pk=second.pk).kite_user_id == "CD5678"


def test_state_from_another_users_session_changes_nothing(admin_client, other_staff, kite, victim, caplog):
    others_state = _start_login(other_staff, victim)
    before, tokens = _state_of(victim), _issued_tokens(kite)
    with caplog.at_level(logging.INFO):
        response = _callback(admin_client, victim, state=others_state)
    assert (_state_of(victim), _issued_tokens(kite)) == (before, tokens)
    _assert_refused(response, victim, "not issued to this browser session", caplog)


def test_expired_state_changes_nothing(admin_client, kite, victim, caplog, monkeypatch):
    state = _start_login(admin_client, victim)
    before, tokens = _state_of(victim), _issued_tokens(kite)
    later = timezone.now() + dt.timedelta(minutes=10, seconds=1)
    monkeypatch.setattr(timezone, "now", lambda: later)  # the operator came back 10 minutes later
    with caplog.at_level(logging.INFO):
        response = _callback(admin_client, victim, state=state)
    assert (_state_of(victim), _issued_tokens(kite)) == (before, tokens)
    _assert_refused(response, victim, "more than 10 minutes ago and expired", caplog)


def test_a_replayed_callback_changes_nothing(admin_client, kite, victim, caplog):
    state = _start_login(admin_client, victim)
    assert _callback(admin_client, victim, state=state).status_code == 302
    logged_in, tokens = _state_of(victim), _issued_tokens(kite)
    assert logged_in[2] != OLD_TOKEN and logged_in[0] == "ok"
    caplog.clear()
    with caplog.at_level(logging.INFO):
        response = _callback(admin_client, victim, state=state)
    assert (_state_of(victim), _issued_tokens(kite)) == (logged_in, tokens)
    _assert_refused(response, victim, "already used", caplog)


def test_the_legitimate_login_exchanges_the_token_through_kite(admin_client, kite, victim, caplog):
    state = _start_login(admin_client, victim)
    with caplog.at_level(logging.DEBUG):
        response = _callback(admin_client, victim, state=state)
    assert response["Location"] == reverse("admin:subscriptions_tradingaccount_change", args=[victim.pk])
    page = admin_client.get(response["Location"])
    assert b"logged in to Kite as AB1234" in page.content
    victim.refresh_from_db()
    assert victim.access_token in kite.state.accounts["sim_key"].access_tokens
    assert victim.access_token != OLD_TOKEN and (victim.kite_user_id, victim.health) == ("AB1234", "ok")
    assert "attacker-request-token-77" not in caplog.text and state not in caplog.text


def test_pending_logins_of_several_accounts_finish_in_any_order(admin_client, kite, victim, second):
    victim_state = _start_login(admin_client, victim)
    second_state = _start_login(admin_client, second)
    _callback(admin_client, second, state=second_state)
    _callback(admin_client, victim, state=victim_state)
    assert TradingAccount.objects.get(pk=second.pk).kite_user_id == "CD5678"
    assert TradingAccount.objects.get(pk=victim.pk).kite_user_id == "AB1234"


@pytest.mark.parametrize("status", ["cancelled", "error", "failure"])
@pytest.mark.parametrize("state", [None, "B" * 43], ids=["no-state", "wrong-state"])
def test_a_failed_status_without_a_valid_state_changes_nothing(admin_client, kite, victim, status, state, caplog):
    real_state = _start_login(admin_client, victim)
    before = _state_of(victim)
    with caplog.at_level(logging.INFO):
        response = _callback(admin_client, victim, state=state, status=status)
    assert _state_of(victim) == before
    _assert_refused(response, victim, "login state", caplog)
    # The forged failure did not cancel the operator's own login.
    _callback(admin_client, victim, state=real_state)
    assert TradingAccount.objects.get(pk=victim.pk).kite_user_id == "AB1234"


def test_the_login_redirect_carries_state_and_account_but_no_secret(admin_client, kite, victim):
    response = admin_client.get(reverse("kite:login", args=[victim.pk]))
    query = parse_qs(urlsplit(response["Location"]).query)
    assert query["api_key"] == ["sim_key"]
    redirect_params = parse_qs(query["redirect_params"][0])
    assert redirect_params["account"] == [str(victim.pk)] and len(redirect_params["state"][0]) >= 32
    assert "sim_secret" not in response["Location"] and OLD_TOKEN not in response["Location"]
    assert _start_login(admin_client, victim) != redirect_params["state"][0]  # fresh per login


# The service pair on its own (what a running-app test can call to mint a state for a session).


def test_a_state_is_bound_to_user_account_and_expiry_and_used_once():
    from subscriptions.services.accounts import KiteLoginStateError, kite_login_state_consume, kite_login_state_issue

    session = SessionStore()
    t0 = dt.datetime(2030, 1, 6, 9, 0, tzinfo=dt.UTC)
    state = kite_login_state_issue(session=session, account_id=7, user_id=1, now=t0)
    for kwargs, reason in (
        ({"state": "", "account_id": 7, "user_id": 1}, "missing"),
        ({"state": state + "x", "account_id": 7, "user_id": 1}, "unknown"),
        ({"state": state, "account_id": 8, "user_id": 1}, "other_account"),
        ({"state": state, "account_id": None, "user_id": 1}, "other_account"),
        ({"state": state, "account_id": 7, "user_id": 2}, "other_user"),
    ):
        with pytest.raises(KiteLoginStateError) as refused:
            kite_login_state_consume(session=session, now=t0, **kwargs)
        assert refused.value.reason == reason
    kite_login_state_consume(session=session, state=state, account_id=7, user_id=1, now=t0 + dt.timedelta(seconds=599))
    with pytest.raises(KiteLoginStateError) as replayed:
        kite_login_state_consume(session=session, state=state, account_id=7, user_id=1, now=t0)
    assert replayed.value.reason == "unknown"

    late = kite_login_state_issue(session=session, account_id=7, user_id=1, now=t0)
    with pytest.raises(KiteLoginStateError) as expired:
        kite_login_state_consume(
            session=session, state=late, account_id=7, user_id=1, now=t0 + dt.timedelta(seconds=600)
        )
    assert expired.value.reason == "expired"
