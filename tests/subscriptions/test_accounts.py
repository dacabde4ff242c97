"""Trading accounts: secrets encrypted at rest, and the Kite login flow against a fake Kite."""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest
from django.db import connection
from django.urls import reverse

from subscriptions.models import IST, TradingAccount
from subscriptions.services.accounts import account_set_secrets
from tests.subscriptions.factories import AccountFactory

pytestmark = pytest.mark.django_db

SECRET = "s3cr3t-api-secret-value"


def _raw_columns(account_id: int) -> tuple[str, str]:
    table = TradingAccount._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT api_secret, access_token FROM {table} WHERE id = %s", [account_id])
        return cursor.fetchone()


def test_secrets_are_encrypted_in_the_database_and_clear_in_python():
    account = AccountFactory(api_secret=SECRET, access_token="tok-abcdef-123456")
    raw_secret, raw_token = _raw_columns(account.pk)
    assert raw_secret.startswith("fernet:") and SECRET not in raw_secret
    assert raw_token.startswith("fernet:") and "tok-abcdef-123456" not in raw_token
    fresh = TradingAccount.objects.get(pk=account.pk)
    assert (fresh.api_secret, fresh.access_token) == (SECRET, "tok-abcdef-123456")
    assert SECRET not in repr(fresh) and SECRET not in str(fresh)


class FakeKite:
    """A loopback stand-in for api.kite.trade that answers POST /session/token with the fixture."""

    def __init__(self, body: bytes, status: int = 200) -> None:
        self.requests: list[dict] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                fake.requests.append({"path": self.path, "form": parse_qs(self.rfile.read(length).decode())})
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def fake_kite(kite_fixtures, settings) -> Iterator[FakeKite]:
    kite = FakeKite((kite_fixtures / "generate_session.json").read_bytes())
    settings.KITE_API_ROOT = kite.url
    yield kite
    kite.close()


@pytest.fixture
def refusing_kite(settings) -> Iterator[FakeKite]:
    body = json.dumps(
        {"status": "error", "message": "Token is invalid or has expired.", "error_type": "TokenException"}
    )
    kite = FakeKite(body.encode(), status=403)
    settings.KITE_API_ROOT = kite.url
    yield kite
    kite.close()


def test_set_secrets_replaces_only_what_is_given_and_a_new_token_has_no_known_expiry():
    expires = dt.datetime(2030, 1, 2, 6, 0, tzinfo=IST)
    account = AccountFactory(api_secret=SECRET, access_token="tok-old", token_expires_at=expires)
    account_set_secrets(account=account, api_secret="", access_token=None)
    fresh = TradingAccount.objects.get(pk=account.pk)
    assert (fresh.api_secret, fresh.access_token, fresh.token_expires_at) == (SECRET, "tok-old", expires)
    account_set_secrets(account=account, access_token="tok-new")
    fresh = TradingAccount.objects.get(pk=account.pk)
    assert (fresh.api_secret, fresh.access_token, fresh.token_expires_at) == (SECRET, "tok-new", None)
    account_set_secrets(account=fresh, api_secret="other-secret", save=False)
    assert TradingAccount.objects.get(pk=account.pk).api_secret == SECRET


def _start_login(client, account: TradingAccount) -> str:
    """Press "Log in with Kite"; the state Kite will hand back in redirect_params."""
    response = client.get(reverse("kite:login", args=[account.pk]))
    assert response.status_code == 302
    redirect_params = parse_qs(parse_qs(urlsplit(response["Location"]).query)["redirect_params"][0])
    assert redirect_params["account"] == [str(account.pk)]
    return redirect_params["state"][0]


def test_login_redirects_to_kite_with_the_api_key_account_and_state(admin_client, settings):
    settings.KITE_LOGIN_URL = "https://kite.example/connect/login"
    account = AccountFactory(api_key="myapikey")
    response = admin_client.get(reverse("kite:login", args=[account.pk]))
    assert response.status_code == 302
    url = urlsplit(response["Location"])
    query = parse_qs(url.query)
    assert f"{url.scheme}://{url.netloc}{url.path}" == "https://kite.example/connect/login"
    assert set(query) == {"v", "api_key", "redirect_params"}
    assert query["v"] == ["3"] and query["api_key"] == ["myapikey"]
    redirect_params = parse_qs(query["redirect_params"][0])
    assert set(redirect_params) == {"account", "state"} and redirect_params["account"] == [str(account.pk)]
    assert len(redirect_params["state"][0]) >= 32
    assert SECRET not in response["Location"]
    # The session keeps only a digest of the state, never the state itself.
    assert redirect_params["state"][0] not in json.dumps(dict(admin_client.session))


def test_login_for_a_mock_account_explains_instead_of_redirecting(admin_client):
    account = AccountFactory(is_mock=True, api_secret="")
    response = admin_client.get(reverse("kite:login", args=[account.pk]), follow=True)
    assert b"needs no Kite login" in response.content


def test_login_views_are_staff_only(client):
    account = AccountFactory()
    response = client.get(reverse("kite:login", args=[account.pk]))
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
    response = client.get(reverse("kite:callback"), {"request_token": "rt", "status": "success", "account": account.pk})
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
    account.refresh_from_db()
    assert account.access_token == ""


def test_callback_exchanges_the_request_token_and_stores_the_access_token(admin_client, fake_kite, caplog):
    account = AccountFactory(api_key="myapikey", api_secret=SECRET, health="auth_failed", last_error="expired")
    before = dt.datetime.now(dt.UTC)
    with caplog.at_level(logging.DEBUG):
        state = _start_login(admin_client, account)
        response = admin_client.get(
            reverse("kite:callback"),
            {"request_token": "req-tok-42", "status": "success", "account": account.pk, "state": state},
        )
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:subscriptions_tradingaccount_change", args=[account.pk])
    [request] = fake_kite.requests
    assert request["path"] == "/session/token"
    assert request["form"]["api_key"] == ["myapikey"] and request["form"]["request_token"] == ["req-tok-42"]
    assert "checksum" in request["form"] and SECRET not in json.dumps(request)

    account.refresh_from_db()
    assert account.access_token == "XXXXXX" and account.kite_user_id == "XX0000"
    assert (account.health, account.last_error) == ("ok", "")
    expiry = account.token_expires_at.astimezone(IST)
    assert (expiry.hour, expiry.minute) == (6, 0) and account.token_expires_at > before
    assert account.token_expires_at - before <= dt.timedelta(hours=24)
    assert _raw_columns(account.pk)[1].startswith("fernet:")
    for secret in (SECRET, "req-tok-42"):
        assert secret not in caplog.text


def test_a_started_login_does_not_vouch_for_a_callback_without_its_state(admin_client, fake_kite):
    account = AccountFactory(api_secret=SECRET)
    _start_login(admin_client, account)
    response = admin_client.get(
        reverse("kite:callback"), {"request_token": "rt", "status": "success", "account": account.pk}, follow=True
    )
    assert b"Kite login refused" in response.content
    assert fake_kite.requests == []
    account.refresh_from_db()
    assert account.access_token == ""


def test_refused_exchange_marks_the_account_and_shows_a_safe_message(admin_client, refusing_kite):
    account = AccountFactory(api_secret=SECRET)
    state = _start_login(admin_client, account)
    response = admin_client.get(
        reverse("kite:callback"),
        {"request_token": "rt", "status": "success", "account": account.pk, "state": state},
        follow=True,
    )
    account.refresh_from_db()
    assert account.access_token == "" and account.health == "auth_failed"
    assert "Token is invalid" in account.last_error
    assert b"Kite login failed" in response.content and SECRET.encode() not in response.content


def test_cancelled_login_changes_nothing(admin_client, fake_kite):
    account = AccountFactory(api_secret=SECRET)
    state = _start_login(admin_client, account)
    response = admin_client.get(
        reverse("kite:callback"), {"status": "cancelled", "account": account.pk, "state": state}, follow=True
    )
    assert b"did not succeed" in response.content
    assert fake_kite.requests == []
    account.refresh_from_db()
    assert account.access_token == ""
