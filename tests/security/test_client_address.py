"""Who the client is: X-Forwarded-For counts only from a trusted proxy (FORWARDED_ALLOW_IPS), and the
sign-in lockout, the API throttles and the uvicorn that serves the app all agree on the answer."""

from __future__ import annotations

import subprocess
import sys

import pytest
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.test import Client
from rest_framework.request import Request
from rest_framework.settings import api_settings
from rest_framework.test import APIClient, APIRequestFactory

from tests.faults.stack import REPO
from tickerproject.throttling import client_address

PASSWORD = "correct-horse-battery-42"

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_counters(settings):
    settings.LOGIN_THROTTLE_FAILURES = 5
    settings.LOGIN_THROTTLE_FAILURES_PER_ADDRESS = 20
    settings.LOGIN_THROTTLE_WINDOW_S = 900
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.TRUSTED_PROXIES = []
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def operator():
    return get_user_model().objects.create_user("operator", password=PASSWORD, is_staff=True)


def _admin_login(password: str, *, peer: str, forwarded_for: str | None = None) -> int:
    headers = {"HTTP_X_FORWARDED_FOR": forwarded_for} if forwarded_for else {}
    client = Client(REMOTE_ADDR=peer)
    return client.post("/admin/login/", {"username": "operator", "password": password}, **headers).status_code


def test_without_a_trusted_proxy_rotating_x_forwarded_for_does_not_dodge_the_api_rate_limit():
    codes = [
        APIClient(REMOTE_ADDR="10.0.0.3").get("/api/health/", HTTP_X_FORWARDED_FOR=f"198.51.100.{n}").status_code
        for n in range(61)
    ]
    assert 429 not in codes[:60]
    assert codes[60] == 429  # API_THROTTLE_ANON: 60 per minute, for the one real client


def test_without_a_trusted_proxy_the_token_login_rate_limit_ignores_x_forwarded_for(operator):
    codes = [
        APIClient(REMOTE_ADDR="10.0.0.4")
        .post("/api/auth/token/", {"username": "operator", "password": PASSWORD}, HTTP_X_FORWARDED_FOR=f"192.0.2.{n}")
        .status_code
        for n in range(11)
    ]
    assert codes == [200] * 10 + [429]  # LOGIN_THROTTLE: 10 per minute from this address


def test_a_trusted_proxy_names_the_client_and_a_client_cannot_rename_itself(settings, operator):
    settings.TRUSTED_PROXIES = ["10.0.0.0/8"]
    # The guesser prepends a new address each time; the proxy (10.0.0.1) appends the one it saw.
    codes = [_admin_login(f"guess-{n}", peer="10.0.0.1", forwarded_for=f"192.0.2.{n}, 203.0.113.5") for n in range(6)]
    assert codes == [200] * 5 + [429]
    # The real operator behind the same proxy signs in: its address is its own.
    assert _admin_login(PASSWORD, peer="10.0.0.1", forwarded_for="203.0.113.6") == 302


def test_a_chain_of_trusted_proxies_is_skipped_to_reach_the_client(settings, operator):
    settings.TRUSTED_PROXIES = ["10.0.0.1/32", "172.16.0.0/12"]
    for n in range(5):
        _admin_login(f"guess-{n}", peer="10.0.0.1", forwarded_for="203.0.113.5, 172.16.4.2:5123")
    assert _admin_login(PASSWORD, peer="10.0.0.1", forwarded_for="203.0.113.5") == 429
    assert _admin_login(PASSWORD, peer="10.0.0.1", forwarded_for="203.0.113.6, 172.16.9.9") == 302


@pytest.mark.parametrize(
    ("trusted", "peer", "forwarded_for"),
    [
        ([], "10.0.0.1", "198.51.100.1"),
        (["10.0.0.1"], "10.0.0.1", "198.51.100.1, 10.0.0.1"),
        (["10.0.0.0/8"], "10.0.0.1", "192.0.2.1, 198.51.100.2"),
        (["10.0.0.1"], "198.51.100.3", "192.0.2.9"),
        (["::1"], "::1", "[2001:db8::7]:4431"),
    ],
)
def test_the_api_throttles_count_the_same_client_as_the_sign_in_lockout(settings, trusted, peer, forwarded_for):
    from tickerproject.api_urls import TokenLoginView

    settings.TRUSTED_PROXIES = trusted
    headers = {"HTTP_X_FORWARDED_FOR": forwarded_for} if forwarded_for else {}
    request = Request(APIRequestFactory().get("/api/health/", REMOTE_ADDR=peer, **headers))
    expected = client_address(request)
    throttles = [*api_settings.DEFAULT_THROTTLE_CLASSES, *TokenLoginView.throttle_classes]
    for throttle_class in throttles:
        assert throttle_class().get_ident(request) == expected, throttle_class


def test_runticker_serve_trusts_only_the_configured_proxies(settings):
    from tickerproject.management.commands.runticker import _make_server

    settings.TRUSTED_PROXIES = []
    assert _make_server("127.0.0.1", 8000).config.forwarded_allow_ips == []
    settings.TRUSTED_PROXIES = ["10.0.0.5/32", "172.16.0.0/12"]
    assert _make_server("127.0.0.1", 8000).config.forwarded_allow_ips == ["10.0.0.5/32", "172.16.0.0/12"]


def _settings_with(forwarded_allow_ips: str) -> subprocess.CompletedProcess:
    code = "import django; django.setup(); from django.conf import settings; print(settings.TRUSTED_PROXIES)"
    env = {
        "PATH": "/usr/bin:/bin",
        "DJANGO_SETTINGS_MODULE": "tickerproject.settings",
        "SECRET_KEY": "test-only-secret-key-0123456789abcdefghijklmnopqrstuvwxyz",
        "DEBUG": "0",
        "FORWARDED_ALLOW_IPS": forwarded_allow_ips,
    }
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=60)


def test_trusting_every_proxy_is_refused_at_start_up():
    result = _settings_with("*")
    assert result.returncode != 0
    assert "FORWARDED_ALLOW_IPS" in result.stderr and "'*'" in result.stderr


def test_a_trusted_proxy_that_is_not_an_address_is_refused_at_start_up():
    result = _settings_with("10.0.0.1, nginx.internal")
    assert result.returncode != 0
    assert "'nginx.internal' is not an IP address or network" in result.stderr


def test_trusted_proxies_accept_addresses_and_networks():
    result = _settings_with("10.0.0.5, 172.16.0.0/12, ::1")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "['10.0.0.5/32', '172.16.0.0/12', '::1/128']"
