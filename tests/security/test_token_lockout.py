"""The API token login (/api/auth/token/) is guarded by the same sign-in lockout as the admin's and
the chain page's: 429 with Retry-After before the password is checked, for JSON and form bodies."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.test import Client
from rest_framework.test import APIClient

PASSWORD = "correct-horse-battery-42"
TOKEN_URL = "/api/auth/token/"

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_counters(settings):
    settings.LOGIN_THROTTLE_FAILURES = 5
    settings.LOGIN_THROTTLE_FAILURES_PER_ADDRESS = 8
    settings.LOGIN_THROTTLE_WINDOW_S = 900
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.TRUSTED_PROXIES = []
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def operator():
    return get_user_model().objects.create_user("operator", password=PASSWORD, is_staff=True)


def _token(username: str, password: str, *, body: str = "json", address: str = "10.0.0.1", **headers):
    api = APIClient(REMOTE_ADDR=address)
    return api.post(TOKEN_URL, {"username": username, "password": password}, format=body, **headers)


@pytest.mark.parametrize("body", ["json", "multipart"])
def test_a_token_guesser_is_locked_out_even_with_the_right_password(body, operator):
    codes = [_token("operator", f"guess-{n}", body=body).status_code for n in range(5)]
    assert codes == [400] * 5
    refused = _token("operator", PASSWORD, body=body)
    assert refused.status_code == 429
    assert refused["Retry-After"] == "900"
    assert "token" not in refused.content.decode()


def test_a_url_encoded_token_guesser_is_locked_out():
    client = Client(REMOTE_ADDR="10.0.0.1")
    for n in range(5):
        assert client.post(TOKEN_URL, {"username": "operator", "password": f"g{n}"}).status_code == 400
    assert (
        client.post(TOKEN_URL, "username=operator&password=x", "application/x-www-form-urlencoded").status_code == 429
    )


def test_the_locked_out_token_login_does_not_check_the_password(operator, monkeypatch):
    for n in range(5):
        _token("operator", f"guess-{n}")
    import django.contrib.auth

    def must_not_run(*args, **kwargs):
        raise AssertionError("the password was checked")

    monkeypatch.setattr(django.contrib.auth, "authenticate", must_not_run)
    monkeypatch.setattr("rest_framework.authtoken.serializers.authenticate", must_not_run)
    assert _token("operator", PASSWORD).status_code == 429


def test_the_token_lockout_is_per_username_from_one_address(operator):
    get_user_model().objects.create_user("analyst", password=PASSWORD)
    for n in range(5):
        _token("operator", f"guess-{n}")
    assert _token("Operator ", PASSWORD).status_code == 429  # the same user, however it is spelled
    assert _token("analyst", PASSWORD).status_code == 200
    assert _token("operator", PASSWORD, address="10.0.0.2").status_code == 200  # elsewhere: not locked out


def test_password_spraying_at_the_token_login_is_stopped(operator):
    for n in range(8):
        assert _token(f"user{n}", "guess").status_code == 400
    refused = _token("operator", PASSWORD)
    assert refused.status_code == 429
    assert refused["Retry-After"] == "900"  # the lockout's, not the rate limit's


def test_the_token_lockout_is_shared_with_the_sign_in_pages(operator):
    for n in range(5):
        Client(REMOTE_ADDR="10.0.0.1").post("/admin/login/", {"username": "operator", "password": f"g{n}"})
    assert _token("operator", PASSWORD).status_code == 429


def test_a_successful_token_login_clears_the_count(operator):
    for n in range(4):
        _token("operator", f"guess-{n}")
    assert _token("operator", PASSWORD).status_code == 200
    for n in range(3):  # 3 more for this user: under 5, because the success cleared the first 4
        assert _token("operator", f"again-{n}").status_code == 400
    signed_in = Client(REMOTE_ADDR="10.0.0.1").post("/admin/login/", {"username": "operator", "password": PASSWORD})
    assert signed_in.status_code == 302


def test_rotating_x_forwarded_for_does_not_escape_the_token_lockout(operator):
    for n in range(5):
        assert _token("operator", f"guess-{n}", HTTP_X_FORWARDED_FOR=f"198.51.100.{n}").status_code == 400
    assert _token("operator", PASSWORD, HTTP_X_FORWARDED_FOR="198.51.100.99").status_code == 429


def test_a_locked_out_address_gets_429_even_for_a_malformed_json_body(operator):
    def malformed():
        return APIClient(REMOTE_ADDR="10.0.0.1").post(TOKEN_URL, "{not json", content_type="application/json")

    first = malformed()
    assert first.status_code == 400  # a clear error, not a crash
    assert "JSON parse error" in first.json()["detail"]
    for n in range(8):
        _token(f"user{n}", "guess")
    assert malformed().status_code == 429
