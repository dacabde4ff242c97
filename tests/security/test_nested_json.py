"""Malformed client input: deeply nested JSON on the API, bad messages on the chain websocket.

The API answers a clear 400 for every body nested deeper than JSON_MAX_DEPTH (one parser for all
endpoints). The chain websocket answers a bad message with an error message, counts it, logs at most
one line a minute, and keeps streaming.
"""

from __future__ import annotations

import json
import logging
import time

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.db import connections
from django.test import Client
from prometheus_client import REGISTRY

from streaming import snapshot_store
from streaming.contract import chain_group
from streaming.web import consumers
from subscriptions.models import Subscription
from tests.api_helpers import *  # noqa: F403
from tests.subscriptions.factories import IndexFactory, make_chain
from tickerproject.asgi import application

DEEP = "[" * 5000 + "]" * 5000
EXPIRY = "2030-01-29"


def nested(levels: int) -> object:
    """A JSON value `levels` deep (1: [])."""
    value: object = []
    for _ in range(levels - 1):
        value = [value]
    return value


# --- the API --------------------------------------------------------------------------------------------
@pytest.mark.django_db
def test_deeply_nested_body_on_subscribe_chain_is_a_400_with_a_detail_and_saves_nothing(staff_client):
    response = staff_client.post("/api/subscriptions/subscribe-chain/", DEEP, content_type="application/json")
    assert response.status_code == 400
    assert response.json() == {"detail": "JSON nested deeper than 32 levels"}
    assert Subscription.objects.count() == 0


@pytest.mark.django_db
def test_deeply_nested_body_on_the_token_login_is_a_400_too(anon_client):
    response = anon_client.post("/api/auth/token/", DEEP, content_type="application/json")
    assert response.status_code == 400
    assert response.json() == {"detail": "JSON nested deeper than 32 levels"}


@pytest.mark.django_db
def test_a_body_past_the_limit_but_under_the_recursion_limit_is_refused(staff_client, settings):
    settings.JSON_MAX_DEPTH = 8
    body = {"underlying": "NIFTY", "expiry": EXPIRY, "strikes_each_side": 2, "preview": True, "note": nested(8)}
    response = staff_client.post("/api/subscriptions/subscribe-chain/", body, format="json")
    assert response.status_code == 400
    assert response.json() == {"detail": "JSON nested deeper than 8 levels"}


@pytest.mark.django_db
def test_a_body_nested_up_to_the_limit_still_works(staff_client):
    IndexFactory(last_price=26010.0)
    make_chain()  # NIFTY 2030-01-29, strikes 25000..27000 step 100
    # The object itself is level 1: 31 more levels under it make 32, the default limit.
    body = {"underlying": "NIFTY", "expiry": EXPIRY, "strikes_each_side": 1, "preview": True, "note": nested(31)}
    response = staff_client.post("/api/subscriptions/subscribe-chain/", body, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["count"] == 6


# --- the chain websocket ----------------------------------------------------------------------------------
WS_EXPIRY = "2026-12-29"
HEADERS = [(b"origin", b"http://127.0.0.1:8000"), (b"host", b"127.0.0.1:8000")]


def chain(seq: int, ltp: float = 100.0) -> dict:
    side = {"instrument_token": 10, "tradingsymbol": "NIFTY26000CE", "ltp": ltp}
    return {
        "underlying": "NIFTY",
        "expiry": WS_EXPIRY,
        "seq": seq,
        "ts": time.time(),
        "source": "mock",
        "header": {"spot": 26000.0},
        "rows": [{"strike": 26000.0, "CE": side, "PE": None}],
    }


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def input_log_clock(monkeypatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(consumers.INPUT_LOG_THROTTLE, "_clock", clock)
    monkeypatch.setattr(consumers.INPUT_LOG_THROTTLE, "_kinds", {})
    return clock


@pytest.fixture
async def chain_ws(django_user_model):
    snapshot_store._local.clear()
    snapshot_store.put_local_chain_snapshot("NIFTY", WS_EXPIRY, chain(1))
    user = await database_sync_to_async(django_user_model.objects.create_user)("trader")
    client = Client()
    await database_sync_to_async(client.force_login)(user)
    cookie = f"sessionid={client.cookies['sessionid'].value}".encode()
    ws = WebsocketCommunicator(application, f"/ws/chain/NIFTY/{WS_EXPIRY}/", headers=[*HEADERS, (b"cookie", cookie)])
    connected, _ = await ws.connect()
    assert connected
    assert (await ws.receive_json_from(timeout=2))["type"] == "snapshot"
    yield ws
    await ws.disconnect()
    snapshot_store._local.clear()
    await database_sync_to_async(connections.close_all)()


def bad_messages(reason: str) -> float:
    return REGISTRY.get_sample_value("chain_ws_bad_messages_total", {"reason": reason}) or 0.0


async def publish_delta(seq: int, ltp: float) -> None:
    await get_channel_layer().group_send(
        chain_group("NIFTY", WS_EXPIRY),
        {"type": "chain.update", "kind": "delta", "chain": chain(seq, ltp)},
    )


@pytest.mark.django_db(transaction=True)
async def test_deeply_nested_message_gets_an_error_is_counted_and_the_stream_goes_on(chain_ws, input_log_clock, caplog):
    before = bad_messages("too_deep")
    with caplog.at_level(logging.INFO):
        await chain_ws.send_to(text_data=DEEP[:2000] + DEEP[-2000:])
        error = await chain_ws.receive_json_from(timeout=2)
        await publish_delta(2, 101.0)
        delta = await chain_ws.receive_json_from(timeout=2)
    assert error["type"] == "error"
    assert "nested deeper than 32 levels" in error["message"]
    assert (delta["type"], delta["chain"]["seq"]) == ("delta", 2)
    assert bad_messages("too_deep") == before + 1
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("send", "reason", "says"),
    [
        ({"text_data": "not json"}, "not_json", "not JSON"),
        ({"bytes_data": b'{"action": "snapshot"}'}, "binary", "binary frames"),
        ({"text_data": json.dumps({"action": "snapshot", "pad": "x" * 5000})}, "too_large", "longer than 4096 bytes"),
        ({"text_data": json.dumps(["action", "snapshot"])}, "not_object", "not a JSON object"),
        ({"text_data": json.dumps({"action": "subscribe"})}, "unknown_action", "unknown action 'subscribe'"),
        ({"text_data": json.dumps({"type": "snapshot"})}, "unknown_action", "unknown action 'None'"),
    ],
)
async def test_each_kind_of_bad_message_gets_an_error_and_is_counted_and_a_good_one_still_works(
    chain_ws, input_log_clock, send, reason, says
):
    before = bad_messages(reason)
    await chain_ws.send_to(**send)
    error = await chain_ws.receive_json_from(timeout=2)
    assert error["type"] == "error"
    assert says in error["message"] and '{"action": "snapshot"}' in error["message"]
    assert bad_messages(reason) == before + 1
    await chain_ws.send_json_to({"action": "snapshot"})
    assert (await chain_ws.receive_json_from(timeout=2))["type"] == "snapshot"


@pytest.mark.django_db(transaction=True)
async def test_a_flood_of_bad_messages_logs_one_line_a_minute(chain_ws, input_log_clock, caplog):
    def lines() -> list[logging.LogRecord]:
        return [
            r for r in caplog.records if r.name.startswith("streaming.web.consumers") and "bad client message" in r.msg
        ]

    with caplog.at_level(logging.INFO):
        for i in range(30):
            await chain_ws.send_to(text_data=DEEP if i % 2 else "not json")
            assert (await chain_ws.receive_json_from(timeout=2))["type"] == "error"
            input_log_clock.now += 1
        assert len(lines()) == 1
        assert lines()[0].levelno == logging.WARNING
        input_log_clock.now += 31  # a minute after the first line
        await chain_ws.send_to(text_data="not json")
        assert (await chain_ws.receive_json_from(timeout=2))["type"] == "error"
    assert len(lines()) == 2
    assert "29 similar suppressed" in lines()[1].getMessage()
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
