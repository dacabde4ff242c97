"""Who may do what, endpoint by endpoint: anonymous, a signed-in user who is not staff, and staff.

Reads of market data are for any signed-in user; writes (subscriptions), the admin and the Kite
login flow are for staff; nothing ever renders an api_secret or access token.
"""

from __future__ import annotations

import datetime as dt

import pytest
from channels.testing import WebsocketCommunicator
from django.test import Client
from rest_framework.test import APIClient

from streaming import snapshot_store
from streaming.web.consumers import CLOSE_LOGIN_REQUIRED
from subscriptions.models import Instrument, Subscription, TradingAccount
from tests.api_helpers import *  # noqa: F403  (fixtures: anon_client, user_client, staff_client, ...)
from tickerproject.asgi import application

API_SECRET = "api-secret-7c1f0e9b2d4a48c6"
ACCESS_TOKEN = "access-token-93be51a7f0c24d18"
EXPIRY = "2030-01-31"

READ_ENDPOINTS = ["/api/instruments/", "/api/subscriptions/", "/api/accounts/", "/api/chains/"]


@pytest.fixture
def account(db) -> TradingAccount:
    return TradingAccount.objects.create(
        label="Primary", api_key="kitekey123", api_secret=API_SECRET, access_token=ACCESS_TOKEN
    )


@pytest.fixture
def option(db) -> Instrument:
    return Instrument.objects.create(
        instrument_token=12345602,
        exchange_token=48225,
        tradingsymbol="NIFTY30JAN26000CE",
        name="NIFTY",
        underlying="NIFTY",
        strike=26000,
        expiry=dt.date.fromisoformat(EXPIRY),
        instrument_type="CE",
        segment="NFO-OPT",
        exchange="NFO",
        lot_size=75,
        tick_size=0.05,
    )


@pytest.fixture
def subscription(option, account) -> Subscription:
    return Subscription.objects.create(instrument=option, account=account, mode="full")


def _assert_no_secret(body: bytes) -> None:
    assert API_SECRET.encode() not in body
    assert ACCESS_TOKEN.encode() not in body


# --- the REST API -----------------------------------------------------------------------------------
@pytest.mark.django_db
@pytest.mark.parametrize("path", READ_ENDPOINTS)
def test_reads_need_a_sign_in_and_any_signed_in_user_may_read(path, anon_client, user_client, staff_client, account):
    anonymous = anon_client.get(path)
    assert anonymous.status_code == 401
    assert anonymous["WWW-Authenticate"].startswith("Token")
    for client in (user_client, staff_client):
        response = client.get(path)
        assert response.status_code == 200, (path, response.content[:300])
        _assert_no_secret(response.content)


@pytest.mark.django_db
def test_candles_need_a_sign_in(anon_client, user_client):
    assert anon_client.get("/api/candles/").status_code == 401
    assert user_client.get("/api/candles/").status_code in (200, 400)  # 400: required filters missing


@pytest.mark.django_db
def test_account_api_never_shows_a_secret_even_to_staff(staff_client, account):
    listing = staff_client.get("/api/accounts/")
    detail = staff_client.get(f"/api/accounts/{account.pk}/")
    assert listing.status_code == detail.status_code == 200
    assert detail.json()["label"] == "Primary"
    for response in (listing, detail):
        _assert_no_secret(response.content)
        assert b"kitekey123" not in response.content


@pytest.mark.django_db
@pytest.mark.parametrize("method", ["put", "patch", "delete", "post"])
def test_accounts_cannot_be_changed_through_the_api(method, staff_client, account):
    path = "/api/accounts/" if method == "post" else f"/api/accounts/{account.pk}/"
    response = getattr(staff_client, method)(path, {"label": "Renamed"}, format="json")
    assert response.status_code == 405
    account.refresh_from_db()
    assert account.label == "Primary"


@pytest.mark.django_db
def test_only_staff_create_subscriptions(anon_client, user_client, staff_client, option, account):
    body = {"instrument": option.pk, "mode": "full"}
    assert anon_client.post("/api/subscriptions/", body, format="json").status_code == 401
    denied = user_client.post("/api/subscriptions/", body, format="json")
    assert denied.status_code == 403
    assert Subscription.objects.count() == 0
    bad = staff_client.post("/api/subscriptions/", {"mode": "everything"}, format="json")
    assert bad.status_code == 400
    assert Subscription.objects.count() == 0


@pytest.mark.django_db
def test_only_staff_change_or_delete_subscriptions(anon_client, user_client, staff_client, subscription):
    path = f"/api/subscriptions/{subscription.pk}/"
    assert anon_client.delete(path).status_code == 401
    assert user_client.patch(path, {"mode": "ltp"}, format="json").status_code == 403
    assert user_client.delete(path).status_code == 403
    subscription.refresh_from_db()
    assert (subscription.mode, subscription.is_active) == ("full", True)
    assert staff_client.patch(path, {"mode": "ltp"}, format="json").status_code == 200
    subscription.refresh_from_db()
    assert subscription.mode == "ltp"


@pytest.mark.django_db
def test_only_staff_subscribe_a_whole_chain(anon_client, user_client, staff_client, option):
    path = "/api/subscriptions/subscribe-chain/"
    body = {"underlying": "NIFTY", "expiry": EXPIRY}
    assert anon_client.post(path, body, format="json").status_code == 401
    assert user_client.post(path, body, format="json").status_code == 403
    assert Subscription.objects.count() == 0
    assert staff_client.post(path, {"underlying": ""}, format="json").status_code == 400


@pytest.mark.django_db
def test_health_is_public_and_carries_no_secret(anon_client, account):
    response = anon_client.get("/api/health/")
    assert response.status_code in (200, 503)
    _assert_no_secret(response.content)


@pytest.mark.django_db
def test_bad_or_missing_token_gets_401(account):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token 0123456789abcdef0123456789abcdef01234567")
    assert client.get("/api/subscriptions/").status_code == 401


@pytest.mark.django_db
def test_metrics_carry_no_secret(account):
    response = Client().get("/metrics/")
    assert response.status_code == 200
    _assert_no_secret(response.content)


# --- pages: admin, Kite login flow, chain page -------------------------------------------------------
def _signed_in(user) -> Client:
    client = Client()
    if user is not None:
        client.force_login(user)
    return client


@pytest.mark.django_db
def test_admin_is_for_staff_only(user, staff_user, account):
    change = f"/admin/subscriptions/tradingaccount/{account.pk}/change/"
    for who in (None, user):
        response = _signed_in(who).get(change)
        assert response.status_code == 302
        assert response["Location"].startswith("/admin/login/")
    staff_user.is_superuser = True
    staff_user.save(update_fields=["is_superuser"])
    page = _signed_in(staff_user).get(change)
    assert page.status_code == 200
    assert b"Primary" in page.content
    _assert_no_secret(page.content)  # secrets are write-only in the admin


@pytest.mark.django_db
def test_kite_login_flow_is_for_staff_only(user, staff_user, account):
    for path in (f"/kite/login/{account.pk}/", f"/kite/callback/?account={account.pk}&request_token=x&status=success"):
        for who in (None, user):
            response = _signed_in(who).get(path)
            assert response.status_code == 302, path
            assert response["Location"].startswith("/admin/login/"), path
    account.refresh_from_db()
    assert account.access_token == ACCESS_TOKEN  # nothing exchanged for an outsider
    redirect = _signed_in(staff_user).get(f"/kite/login/{account.pk}/")
    assert redirect.status_code == 302
    assert "api_key=kitekey123" in redirect["Location"]
    assert API_SECRET not in redirect["Location"]


@pytest.mark.django_db
def test_chain_page_needs_a_sign_in(user):
    anonymous = Client().get("/chain/")
    assert anonymous.status_code == 302
    assert "login" in anonymous["Location"]
    assert _signed_in(user).get("/chain/").status_code == 200


# --- the chain websocket -------------------------------------------------------------------------------
def _cookie(user) -> bytes:
    client = _signed_in(user)
    return f"sessionid={client.cookies['sessionid'].value}".encode()


def _ws(cookie: bytes | None) -> WebsocketCommunicator:
    headers = [(b"origin", b"http://127.0.0.1:8000"), (b"host", b"127.0.0.1:8000")]
    if cookie:
        headers.append((b"cookie", cookie))
    return WebsocketCommunicator(application, f"/ws/chain/NIFTY/{EXPIRY}/", headers=headers)


def _snapshot() -> dict:
    return {"underlying": "NIFTY", "expiry": EXPIRY, "seq": 3, "ts": 1.0, "source": "mock", "header": {}, "rows": []}


@pytest.fixture
def chain_snapshot():
    snapshot_store._local.clear()
    snapshot_store.put_local_chain_snapshot("NIFTY", EXPIRY, _snapshot())
    yield
    snapshot_store._local.clear()


@pytest.mark.django_db(transaction=True)
async def test_websocket_refuses_anonymous_before_any_data(chain_snapshot):
    ws = _ws(None)
    await ws.connect()
    closed = await ws.receive_output(timeout=2)
    assert closed["type"] == "websocket.close"
    assert closed["code"] == CLOSE_LOGIN_REQUIRED
    await ws.wait()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("is_staff", [False, True])
async def test_websocket_serves_any_signed_in_user(chain_snapshot, django_user_model, is_staff):
    from asgiref.sync import sync_to_async

    user = await sync_to_async(django_user_model.objects.create_user)("watcher", is_staff=is_staff)
    cookie = await sync_to_async(_cookie)(user)
    ws = _ws(cookie)
    connected, _ = await ws.connect()
    assert connected
    first = await ws.receive_json_from(timeout=2)
    assert (first["type"], first["chain"]["seq"]) == ("snapshot", 3)
    await ws.disconnect()
