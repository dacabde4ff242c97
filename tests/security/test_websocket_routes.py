"""Websocket handshakes to paths no route serves are refused quietly, through the real ASGI stack.

Channels' URLRouter raises ValueError for an unrouted path: the server answered 500 and logged a
traceback per attempt, so anyone could fill the error log. Now the handshake is refused (HTTP 403 from
the server) and a flood of attempts logs one line a minute.
"""

from __future__ import annotations

import logging

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.db import connections
from django.test import Client

from streaming import snapshot_store
from streaming.web.consumers import CLOSE_UNKNOWN_CHAIN
from tickerproject import websocket_security
from tickerproject.asgi import application

HEADERS = [(b"origin", b"http://127.0.0.1:8000"), (b"host", b"127.0.0.1:8000")]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def refusal_log_clock(monkeypatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(websocket_security.REFUSAL_LOG_THROTTLE, "_clock", clock)
    monkeypatch.setattr(websocket_security.REFUSAL_LOG_THROTTLE, "_kinds", {})
    return clock


def trouble(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]


async def test_an_unrouted_path_is_refused_without_a_traceback(refusal_log_clock, caplog):
    with caplog.at_level(logging.INFO):
        ws = WebsocketCommunicator(application, "/ws/nothing/", headers=HEADERS)
        connected, code = await ws.connect(timeout=2)
        await ws.wait()
    assert connected is False
    assert code == websocket_security.CLOSE_NO_ROUTE
    assert not trouble(caplog)
    refusals = [r for r in caplog.records if "no route" in r.getMessage()]
    assert len(refusals) == 1 and refusals[0].levelno == logging.WARNING
    assert "/ws/nothing/" in refusals[0].getMessage()


async def test_a_flood_of_unrouted_handshakes_logs_one_line_a_minute(refusal_log_clock, caplog):
    with caplog.at_level(logging.INFO):
        for i in range(50):
            ws = WebsocketCommunicator(application, f"/ws/nothing/{i}/", headers=HEADERS)
            connected, _ = await ws.connect(timeout=2)
            await ws.wait()
            assert connected is False
            refusal_log_clock.now += 1
        assert len([r for r in caplog.records if "no route" in r.getMessage()]) == 1
        refusal_log_clock.now += 11  # a minute after the first line
        ws = WebsocketCommunicator(application, "/ws/again/", headers=HEADERS)
        assert (await ws.connect(timeout=2))[0] is False
        await ws.wait()
    refusals = [r.getMessage() for r in caplog.records if "no route" in r.getMessage()]
    assert len(refusals) == 2
    assert "49 similar suppressed" in refusals[1]
    assert not trouble(caplog)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "path",
    [
        "/ws/chain/NIFTY/" + "9" * 300 + "/",
        "/ws/chain/" + "é" * 300 + "/2026-12-29/",
    ],
)
async def test_a_malformed_chain_path_closes_with_a_reason_that_fits_a_close_frame(django_user_model, path, caplog):
    # RFC 6455: a close frame's payload is at most 125 bytes, 2 of them the code.
    snapshot_store._local.clear()
    user = await database_sync_to_async(django_user_model.objects.create_user)("trader")
    client = Client()
    await database_sync_to_async(client.force_login)(user)
    cookie = f"sessionid={client.cookies['sessionid'].value}".encode()
    with caplog.at_level(logging.INFO):
        ws = WebsocketCommunicator(application, path, headers=[*HEADERS, (b"cookie", cookie)])
        connected, _ = await ws.connect(timeout=2)
        closed = await ws.receive_output(timeout=2)
        await ws.wait()
    await database_sync_to_async(connections.close_all)()
    assert connected
    assert closed["code"] == CLOSE_UNKNOWN_CHAIN
    assert 0 < len(closed["reason"].encode()) <= 123
    assert not trouble(caplog)
