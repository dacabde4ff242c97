"""The API's OpenAPI schema and documentation UIs (local static files), token login, throttling."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from tests.api_helpers import *  # noqa: F403

pytestmark = pytest.mark.django_db


def test_schema_documents_every_endpoint(user_client):
    response = user_client.get("/api/schema/", {"format": "json"})
    assert response.status_code == 200
    paths = response.json()["paths"]
    for path in (
        "/api/instruments/",
        "/api/subscriptions/",
        "/api/subscriptions/subscribe-chain/",
        "/api/accounts/",
        "/api/candles/",
        "/api/chains/",
        "/api/chains/{underlying}/{expiry}/",
        "/api/health/",
        "/api/auth/token/",
    ):
        assert path in paths, path


@pytest.mark.parametrize("path", ["/api/docs/", "/api/redoc/"])
def test_documentation_ui_is_served_from_local_static_files(user_client, path):
    response = user_client.get(path)
    assert response.status_code == 200
    html = response.content.decode()
    assert "/static/drf_spectacular_sidecar/" in html
    assert "cdn." not in html and "unpkg" not in html and "jsdelivr" not in html


def test_token_login_then_token_authenticated_reads(anon_client):
    get_user_model().objects.create_user("scripted", password="a-long-pass-phrase-42")
    response = anon_client.post("/api/auth/token/", {"username": "scripted", "password": "a-long-pass-phrase-42"})
    assert response.status_code == 200
    anon_client.credentials(HTTP_AUTHORIZATION=f"Token {response.json()['token']}")
    assert anon_client.get("/api/instruments/").status_code == 200


def test_token_login_with_a_wrong_password_is_a_400_and_is_throttled(anon_client, settings):
    get_user_model().objects.create_user("scripted", password="a-long-pass-phrase-42")
    codes = [
        anon_client.post("/api/auth/token/", {"username": "scripted", "password": f"guess-{n}"}).status_code
        for n in range(12)
    ]
    assert codes[0] == 400
    # The sign-in lockout: 5 failures for one user from one address (LOGIN_THROTTLE_FAILURES), then 429.
    assert codes == [400] * 5 + [429] * 7


def test_bad_token_is_rejected(anon_client):
    anon_client.credentials(HTTP_AUTHORIZATION="Token not-a-real-token")
    assert anon_client.get("/api/instruments/").status_code == 401
