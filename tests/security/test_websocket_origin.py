"""The websocket Origin must be the site's own (host and port) or allow-listed.

Channels' AllowedHostsOriginValidator compared host names only, so a page on another port of an
allowed host name (`http://localhost:9999` for a site on `127.0.0.1:8000`) could open the chain stream
with the user's session cookie.
"""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.db import connections
from django.test import Client

from streaming import snapshot_store
from tickerproject import websocket_security
from tickerproject.asgi import application

EXPIRY = "2026-12-29"
PATH = f"/ws/chain/NIFTY/{EXPIRY}/"

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
async def cookie(django_user_model) -> bytes:
    snapshot_store._local.clear()
    snapshot_store.put_local_chain_snapshot(
        "NIFTY", EXPIRY, {"underlying": "NIFTY", "expiry": EXPIRY, "seq": 1, "ts": 1.0, "header": {}, "rows": []}
    )
    user = await database_sync_to_async(django_user_model.objects.create_user)("trader")
    client = Client()
    await database_sync_to_async(client.force_login)(user)
    yield f"sessionid={client.cookies['sessionid'].value}".encode()
    snapshot_store._local.clear()
    await database_sync_to_async(connections.close_all)()


@pytest.fixture(autouse=True)
def _fresh_refusal_log(monkeypatch):
    monkeypatch.setattr(websocket_security.REFUSAL_LOG_THROTTLE, "_kinds", {})


async def handshake(cookie: bytes, origin: str | None, host: str = "127.0.0.1:8000", scheme: str = "ws") -> bool:
    headers = [(b"host", host.encode()), (b"cookie", cookie)]
    if origin is not None:
        headers.append((b"origin", origin.encode()))
    ws = WebsocketCommunicator(application, PATH, headers=headers)
    ws.scope["scheme"] = scheme
    connected, _ = await ws.connect(timeout=2)
    if connected:
        assert (await ws.receive_json_from(timeout=2))["type"] == "snapshot"
        await ws.disconnect()
    else:
        await ws.wait()
    return connected


@pytest.mark.parametrize(
    "origin",
    [
        "http://localhost:9999",  # an allowed host name on another port
        "http://127.0.0.1:9999",  # the same host on another port
        "http://localhost:8000",  # another host name (another origin to the browser) on the same port
        "http://127.0.0.1",  # the default port is not 8000
        "null",  # sandboxed frames, file:// pages
        "http://127.0.0.1:8000.evil.example",
    ],
)
async def test_another_origin_is_refused(cookie, origin):
    assert await handshake(cookie, origin) is False


async def test_the_sites_own_host_and_port_is_accepted(cookie):
    assert await handshake(cookie, "http://127.0.0.1:8000") is True
    assert await handshake(cookie, "https://127.0.0.1:8000") is True  # scheme not compared (TLS proxy)


async def test_default_ports_left_out_on_both_sides_match(cookie):
    assert await handshake(cookie, "https://localhost", host="localhost", scheme="wss") is True
    assert await handshake(cookie, "http://localhost", host="localhost:80") is True


async def test_a_host_outside_allowed_hosts_is_refused_even_when_origin_matches_it(cookie):
    # DNS rebinding: an attacker's name pointing at the server sends matching Host and Origin.
    assert await handshake(cookie, "http://rebind.example:8000", host="rebind.example:8000") is False


async def test_without_origin_the_handshake_is_refused(cookie):
    assert await handshake(cookie, None) is False


async def test_an_allow_listed_origin_is_accepted(cookie, settings):
    settings.WEBSOCKET_ALLOWED_ORIGINS = ["https://dashboard.example.com"]
    assert await handshake(cookie, "https://dashboard.example.com") is True
    assert await handshake(cookie, "http://dashboard.example.com") is False  # scheme and port count here
    assert await handshake(cookie, "https://dashboard.example.com:8443") is False


async def test_csrf_trusted_origins_are_honoured_with_their_subdomain_wildcard(cookie, settings):
    settings.CSRF_TRUSTED_ORIGINS = ["https://*.example.com"]
    assert await handshake(cookie, "https://ticker.example.com") is True
    assert await handshake(cookie, "https://ticker.example.org") is False
