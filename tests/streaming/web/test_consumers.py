"""The chain websocket through the project's real ASGI stack (origin check, session auth, routing)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import itertools
import json
import time

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.db import connections
from django.test import Client
from django.urls import re_path

from streaming import snapshot_store
from streaming.contract import chain_group
from streaming.web.consumers import CLOSE_LOGIN_REQUIRED, CLOSE_UNKNOWN_CHAIN, ChainConsumer
from subscriptions.models import Instrument
from tickerproject.asgi import application

pytestmark = pytest.mark.django_db(transaction=True)

EXPIRY = "2026-12-29"
ORIGIN = (b"origin", b"http://127.0.0.1:8000")


def chain_payload(seq: int, *, ltp: float = 100.0, strikes: tuple[float, ...] = (25900.0, 26000.0, 26100.0)) -> dict:
    side = {
        "ltp": ltp,
        "change": 1.0,
        "oi": 1000,
        "oi_change": 10,
        "volume": 500,
        "iv": 0.13,
        "delta": 0.5,
        "gamma": 0.001,
        "theta": -5.0,
        "vega": 10.0,
        "bid": ltp - 0.05,
        "ask": ltp + 0.05,
        "updated_at": 1.0,
    }
    return {
        "underlying": "NIFTY",
        "expiry": EXPIRY,
        "seq": seq,
        "ts": time.time(),
        "source": "mock",
        "header": {
            "spot": 26010.0,
            "forward": 26030.0,
            "atm_strike": 26000.0,
            "pcr_oi": 1.0,
            "pcr_volume": 1.0,
            "max_pain": 26000.0,
            "time_to_expiry_years": 0.1,
            "expires_at": f"{EXPIRY}T15:30:00+05:30",
            "last_tick_at": 1.0,
        },
        "rows": [
            {
                "strike": k,
                "CE": {**side, "instrument_token": int(k) * 10, "tradingsymbol": f"NIFTY{int(k)}CE"},
                "PE": {**side, "instrument_token": int(k) * 10 + 1, "tradingsymbol": f"NIFTY{int(k)}PE"},
            }
            for k in strikes
        ],
    }


@pytest.fixture(autouse=True)
async def _close_worker_thread_connections():
    """The consumer reads the database from asgiref's worker thread; close that thread's connection
    so the test database can be dropped at the end."""
    yield
    await database_sync_to_async(connections.close_all)()


@pytest.fixture(autouse=True)
def _clean_snapshots():
    snapshot_store._local.clear()
    yield
    snapshot_store._local.clear()


@pytest.fixture
def session_cookie(django_user_model) -> bytes:
    user = django_user_model.objects.create_user("trader")
    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}".encode()


@pytest.fixture
def listed_chain() -> None:
    for kind in ("CE", "PE"):
        Instrument.objects.create(
            instrument_token=1000 + len(kind),
            tradingsymbol=f"NIFTY26DEC26000{kind}",
            name="NIFTY",
            strike=26000,
            expiry=dt.date.fromisoformat(EXPIRY),
            instrument_type=kind,
            segment="NFO-OPT",
            exchange="NFO",
            underlying="NIFTY",
        )


def communicator(path: str, cookie: bytes | None, *, origin: tuple[bytes, bytes] = ORIGIN, app=application):
    headers = [origin, (b"host", b"127.0.0.1:8000")]
    if cookie:
        headers.append((b"cookie", cookie))
    return WebsocketCommunicator(app, path, headers=headers)


def rows(message: dict) -> list[dict]:
    """The browser's compact rows ([strike, ce, pe], sides as arrays in side_fields order) as dicts."""
    fields = message["side_fields"]
    return [
        {
            "strike": strike,
            **{side: dict(zip(fields, values, strict=True)) for side, values in (("CE", ce), ("PE", pe)) if values},
        }
        for strike, ce, pe in message["chain"]["rows"]
    ]


async def publish(kind: str, chain: dict) -> None:
    await get_channel_layer().group_send(
        chain_group("NIFTY", EXPIRY), {"type": "chain.update", "kind": kind, "chain": chain}
    )


async def test_anonymous_user_is_closed_with_login_required():
    snapshot_store.put_local_chain_snapshot("NIFTY", EXPIRY, chain_payload(1))
    ws = communicator(f"/ws/chain/NIFTY/{EXPIRY}/", cookie=None)
    await ws.connect()
    closed = await ws.receive_output(timeout=2)
    assert closed["type"] == "websocket.close"
    assert closed["code"] == CLOSE_LOGIN_REQUIRED
    await ws.wait()


async def test_foreign_origin_is_refused_before_any_data(session_cookie):
    snapshot_store.put_local_chain_snapshot("NIFTY", EXPIRY, chain_payload(1))
    ws = communicator(f"/ws/chain/NIFTY/{EXPIRY}/", session_cookie, origin=(b"origin", b"https://evil.example"))
    connected, _ = await ws.connect()
    assert connected is False
    await ws.wait()


@pytest.mark.parametrize(
    ("path", "reason_part"),
    [
        (f"/ws/chain/NOSUCH/{EXPIRY}/", "unknown chain NOSUCH"),
        ("/ws/chain/NIFTY/2030-01-01/", "unknown chain NIFTY 2030-01-01"),
        ("/ws/chain/NIFTY/tomorrow/", "bad expiry"),
        (f"/ws/chain/M&M/{EXPIRY}/", "unsupported underlying"),
    ],
)
async def test_unknown_chain_is_closed_with_4404_and_a_reason(session_cookie, listed_chain, path, reason_part):
    ws = communicator(path, session_cookie)
    connected, _ = await ws.connect()
    assert connected
    closed = await ws.receive_output(timeout=2)
    assert closed["type"] == "websocket.close"
    assert closed["code"] == CLOSE_UNKNOWN_CHAIN
    assert reason_part in closed["reason"]
    await ws.wait()


async def test_snapshot_on_connect_then_deltas_in_order(session_cookie):
    snapshot_store.put_local_chain_snapshot("NIFTY", EXPIRY, chain_payload(5, ltp=100.0))
    ws = communicator(f"/ws/chain/nifty/{EXPIRY}/", session_cookie)
    connected, _ = await ws.connect()
    assert connected
    first = await ws.receive_json_from(timeout=2)
    assert first["type"] == "snapshot"
    assert first["chain"]["seq"] == 5
    assert [r["strike"] for r in rows(first)] == [25900.0, 26000.0, 26100.0]
    assert rows(first)[1]["PE"]["tradingsymbol"] == "NIFTY26000PE"

    delta = chain_payload(6, ltp=101.5, strikes=(26000.0,))
    await publish("delta", delta)
    await publish("delta", chain_payload(5, ltp=99.0))  # already in the snapshot: not sent again
    await publish("delta", chain_payload(7, ltp=102.0, strikes=(26100.0,)))
    second = await ws.receive_json_from(timeout=2)
    third = await ws.receive_json_from(timeout=2)
    assert (second["type"], second["chain"]["seq"], rows(second)[0]["CE"]["ltp"]) == ("delta", 6, 101.5)
    assert (third["type"], third["chain"]["seq"]) == ("delta", 7)
    assert await ws.receive_nothing(timeout=0.2)
    await ws.disconnect()


async def test_seq_gap_gets_a_fresh_snapshot_instead(session_cookie):
    snapshot_store.put_local_chain_snapshot("NIFTY", EXPIRY, chain_payload(1))
    ws = communicator(f"/ws/chain/NIFTY/{EXPIRY}/", session_cookie)
    await ws.connect()
    assert (await ws.receive_json_from(timeout=2))["chain"]["seq"] == 1
    # Deltas 2..9 never reached this client; the store holds the state as of seq 10.
    snapshot_store.put_local_chain_snapshot("NIFTY", EXPIRY, chain_payload(10, ltp=130.0))
    await publish("delta", chain_payload(10, ltp=130.0, strikes=(26000.0,)))
    resync = await ws.receive_json_from(timeout=2)
    assert resync["type"] == "snapshot"
    assert resync["chain"]["seq"] == 10
    assert len(rows(resync)) == 3
    await publish("delta", chain_payload(11, strikes=(25900.0,)))
    assert (await ws.receive_json_from(timeout=2))["chain"]["seq"] == 11
    await ws.disconnect()


async def test_client_can_ask_for_a_snapshot_and_bad_requests_get_an_error(session_cookie):
    snapshot_store.put_local_chain_snapshot("NIFTY", EXPIRY, chain_payload(3))
    ws = communicator(f"/ws/chain/NIFTY/{EXPIRY}/", session_cookie)
    await ws.connect()
    await ws.receive_json_from(timeout=2)
    await ws.send_json_to({"action": "snapshot"})
    again = await ws.receive_json_from(timeout=2)
    assert (again["type"], again["chain"]["seq"]) == ("snapshot", 3)
    await ws.send_to(text_data="not json")
    error = await ws.receive_json_from(timeout=2)
    assert error["type"] == "error"
    await ws.disconnect()


async def test_listed_chain_without_data_waits_then_shows_the_first_update(session_cookie, listed_chain):
    ws = communicator(f"/ws/chain/NIFTY/{EXPIRY}/", session_cookie)
    connected, _ = await ws.connect()
    assert connected
    assert (await ws.receive_json_from(timeout=2))["type"] == "waiting"
    snapshot_store.put_local_chain_snapshot("NIFTY", EXPIRY, chain_payload(1))
    await publish("delta", chain_payload(1))
    first = await ws.receive_json_from(timeout=2)
    assert (first["type"], first["chain"]["seq"]) == ("snapshot", 1)
    await ws.disconnect()


async def test_nan_in_a_payload_reaches_the_browser_as_null(session_cookie):
    chain = chain_payload(1)
    chain["rows"][0]["CE"]["iv"] = float("nan")
    snapshot_store.put_local_chain_snapshot("NIFTY", EXPIRY, chain)
    ws = communicator(f"/ws/chain/NIFTY/{EXPIRY}/", session_cookie)
    await ws.connect()
    raw = await ws.receive_from(timeout=2)
    assert "NaN" not in raw
    assert rows(json.loads(raw))[0]["CE"]["iv"] is None
    await ws.disconnect()


class GatedChainConsumer(ChainConsumer):
    """A client whose socket stops draining after the first message until `gate` opens."""

    gate: asyncio.Event

    async def send(self, text_data=None, bytes_data=None, close=False):
        if getattr(self, "_sent_once", False):
            await type(self).gate.wait()
        self._sent_once = True
        await super().send(text_data=text_data, bytes_data=bytes_data, close=close)


async def test_slow_client_gets_a_fresh_snapshot_not_a_backlog_and_others_get_everything(session_cookie, settings):
    settings.CHAIN_WS_SEND_QUEUE = 4
    # No pacing: every delta goes to the clients as published, so the send queue is what is tested.
    settings.CHAIN_PUBLISH_INTERVAL_MS = 0
    GatedChainConsumer.gate = asyncio.Event()
    slow_app = URLRouter(
        [re_path(r"^ws/chain/(?P<underlying>[^/]+)/(?P<expiry>[^/]+)/$", GatedChainConsumer.as_asgi())]
    )
    from channels.auth import AuthMiddlewareStack

    snapshot_store.put_local_chain_snapshot("NIFTY", EXPIRY, chain_payload(1))
    slow = communicator(f"/ws/chain/NIFTY/{EXPIRY}/", session_cookie, app=AuthMiddlewareStack(slow_app))
    fast = communicator(f"/ws/chain/NIFTY/{EXPIRY}/", session_cookie)
    await slow.connect()
    await fast.connect()
    assert (await slow.receive_json_from(timeout=2))["chain"]["seq"] == 1
    assert (await fast.receive_json_from(timeout=2))["chain"]["seq"] == 1

    for seq in range(2, 42):
        snapshot_store.put_local_chain_snapshot("NIFTY", EXPIRY, chain_payload(seq))
        await publish("delta", chain_payload(seq, strikes=(26000.0,)))
    fast_seqs = [(await fast.receive_json_from(timeout=2))["chain"]["seq"] for _ in range(40)]
    assert fast_seqs == list(range(2, 42))

    GatedChainConsumer.gate.set()
    slow_messages = []
    while not await slow.receive_nothing(timeout=0.3):
        slow_messages.append(await slow.receive_json_from(timeout=1))
    # At most the one delta it was writing when it stalled, then one snapshot at the latest state.
    assert len(slow_messages) <= 2
    assert slow_messages[-1]["type"] == "snapshot"
    assert slow_messages[-1]["chain"]["seq"] == 41
    await slow.disconnect()
    await fast.disconnect()


async def test_a_fast_ticker_reaches_browsers_paced_and_folded_with_nothing_lost(session_cookie, settings):
    """The ticker sends a delta every 20 ms; each browser gets at most one message per
    CHAIN_PUBLISH_INTERVAL_MS, and what it ends up showing is exactly what the ticker sent."""
    settings.CHAIN_PUBLISH_INTERVAL_MS = 250
    strikes = (25900.0, 26000.0, 26100.0)
    snapshot_store.put_local_chain_snapshot("NIFTY", EXPIRY, chain_payload(1, strikes=strikes))
    ws = communicator(f"/ws/chain/NIFTY/{EXPIRY}/", session_cookie)
    await ws.connect()
    shown = {row["strike"]: row["CE"]["ltp"] for row in rows(await ws.receive_json_from(timeout=2))}
    expected = dict(shown)

    received: list[tuple[float, dict]] = []

    async def read() -> None:
        while True:
            message = await ws.receive_json_from(timeout=5)
            received.append((time.monotonic(), message))

    reader = asyncio.create_task(read())
    first_sent_at = time.monotonic()
    for seq in range(2, 52):  # 50 deltas over ~1 s, each moving one strike's CE
        strike = strikes[seq % 3]
        delta = chain_payload(seq, ltp=100.0 + seq, strikes=(strike,))
        delta["rows"][0]["PE"] = None
        snapshot_store.put_local_chain_snapshot("NIFTY", EXPIRY, chain_payload(seq, strikes=strikes))
        await publish("delta", delta)
        expected[strike] = 100.0 + seq
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.6)
    reader.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await reader

    assert all(message["type"] == "delta" for _, message in received)
    times = [at for at, _ in received]
    # The first delta after a quiet spell is not held back.
    assert times[0] - first_sent_at < 0.15
    # Paced: ~1.2 s of updates in at most one message per 250 ms (a little slack for timer jitter).
    assert 3 <= len(received) <= 7
    assert min(b - a for a, b in itertools.pairwise(times)) >= 0.2
    # Folded messages cover an unbroken run of the ticker's seqs, ending at its last one.
    covered = [
        (message["chain"].get("from_seq", message["chain"]["seq"]), message["chain"]["seq"]) for _, message in received
    ]
    assert covered[0][0] == 2 and covered[-1][1] == 51
    assert all(nxt[0] == prev[1] + 1 for prev, nxt in itertools.pairwise(covered))
    for _, message in received:
        for row in rows(message):
            assert "PE" not in row  # unchanged sides stay null, as in the ticker's deltas
            shown[row["strike"]] = row["CE"]["ltp"]
    assert shown == expected
    await ws.disconnect()


async def forget_group_members(group: str) -> None:
    """What the channel layer does to members older than its group expiry."""
    layer = get_channel_layer()
    if hasattr(layer, "groups"):  # in-memory layer
        layer.groups.pop(group, None)
    else:  # channels-redis
        await layer.connection(layer.consistent_hash(group)).delete(layer._group_key(group))


async def test_a_page_left_open_past_the_group_expiry_keeps_receiving(session_cookie, monkeypatch):
    from streaming.web import chain_hub

    monkeypatch.setattr(chain_hub, "GROUP_REJOIN_S", 0.2)
    snapshot_store.put_local_chain_snapshot("NIFTY", EXPIRY, chain_payload(1))
    ws = communicator(f"/ws/chain/NIFTY/{EXPIRY}/", session_cookie)
    await ws.connect()
    await ws.receive_json_from(timeout=2)
    await forget_group_members(chain_group("NIFTY", EXPIRY))
    await asyncio.sleep(0.5)
    await publish("delta", chain_payload(2))
    assert (await ws.receive_json_from(timeout=2))["chain"]["seq"] == 2
    await ws.disconnect()


async def test_a_busy_channel_layer_asks_the_client_to_retry(session_cookie, monkeypatch):
    async def pool_exhausted(group: str, channel: str) -> None:
        raise ConnectionError("Too many connections")

    monkeypatch.setattr(get_channel_layer(), "group_add", pool_exhausted)
    snapshot_store.put_local_chain_snapshot("NIFTY", EXPIRY, chain_payload(1))
    ws = communicator(f"/ws/chain/NIFTY/{EXPIRY}/", session_cookie)
    await ws.connect()
    closed = await ws.receive_output(timeout=2)
    assert (closed["type"], closed["code"]) == ("websocket.close", 1013)
    await ws.wait()
