"""Sign-in throttling: the admin and chain-page logins lock a guesser out, the API token login is rate limited,
and the API answers 429 past its anonymous rate."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.test import Client
from rest_framework.test import APIClient

PASSWORD = "correct-horse-battery-42"

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_counters(settings):
    settings.LOGIN_THROTTLE_FAILURES = 5
    settings.LOGIN_THROTTLE_FAILURES_PER_ADDRESS = 8
    settings.LOGIN_THROTTLE_WINDOW_S = 900
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast: many sign-ins here
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def operator():
    return get_user_model().objects.create_user("operator", password=PASSWORD, is_staff=True)


def _login(path: str, username: str, password: str, address: str = "10.0.0.1") -> int:
    client = Client(REMOTE_ADDR=address)
    return client.post(path, {"username": username, "password": password}).status_code


@pytest.mark.parametrize("path", ["/admin/login/", "/login/"])
def test_a_guesser_is_locked_out_even_with_the_right_password(path, operator):
    codes = [_login(path, "operator", f"guess-{n}") for n in range(5)]
    assert codes == [200] * 5  # the form again, with an error
    assert _login(path, "operator", PASSWORD) == 429
    response = Client(REMOTE_ADDR="10.0.0.1").post(path, {"username": "operator", "password": PASSWORD})
    assert response["Retry-After"] == "900"
    assert "_auth_user_id" not in response.client.session


def test_the_lockout_is_shared_by_both_sign_in_pages(operator):
    for n in range(5):
        _login("/login/", "operator", f"guess-{n}")
    assert _login("/admin/login/", "operator", PASSWORD) == 429


def test_the_real_user_elsewhere_is_not_locked_out_by_a_stranger(operator):
    for n in range(5):
        _login("/admin/login/", "operator", f"guess-{n}", address="203.0.113.9")
    assert _login("/admin/login/", "operator", PASSWORD, address="10.0.0.1") == 302  # signed in


def test_password_spraying_from_one_address_is_stopped(operator):
    for n in range(8):
        _login("/admin/login/", f"user{n}", "guess")
    assert _login("/admin/login/", "operator", PASSWORD) == 429


def test_a_successful_sign_in_clears_the_count(operator):
    for n in range(4):
        _login("/admin/login/", "operator", f"guess-{n}")
    assert _login("/admin/login/", "operator", PASSWORD) == 302
    for n in range(3):  # 4 + 3 failures from this address: under its limit of 8
        assert _login("/admin/login/", "operator", f"again-{n}") == 200
    assert _login("/admin/login/", "operator", PASSWORD) == 302


def test_wrong_passwords_at_the_api_token_login_count_towards_the_lockout(operator):
    api = APIClient(REMOTE_ADDR="10.0.0.1")
    codes = [api.post("/api/auth/token/", {"username": "operator", "password": f"g{n}"}).status_code for n in range(5)]
    assert codes == [400] * 5
    assert _login("/admin/login/", "operator", PASSWORD) == 429


def test_api_token_login_is_rate_limited(operator):
    api = APIClient(REMOTE_ADDR="10.0.0.2")
    codes = [
        api.post("/api/auth/token/", {"username": "operator", "password": PASSWORD}).status_code for _ in range(11)
    ]
    assert codes[:10] == [200] * 10
    assert codes[10] == 429  # LOGIN_THROTTLE: 10 per minute, successful or not


def test_anonymous_api_calls_are_rate_limited():
    api = APIClient(REMOTE_ADDR="10.0.0.3")
    codes = [api.get("/api/health/").status_code for _ in range(61)]
    assert 429 not in codes[:60]
    assert codes[60] == 429  # API_THROTTLE_ANON: 60 per minute


class _BrokenCache:
    def __getattr__(self, name):
        def fail(*args, **kwargs):
            raise ConnectionError("cache down")

        return fail


def test_a_cache_outage_does_not_lock_operators_out(operator, monkeypatch):
    import tickerproject.throttling as throttling

    monkeypatch.setattr(throttling, "cache", _BrokenCache())
    assert _login("/admin/login/", "operator", "wrong") == 200  # the form again, no 500
    assert _login("/admin/login/", "operator", PASSWORD) == 302
