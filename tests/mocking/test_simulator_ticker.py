"""The simulator's ticker WebSocket in Kite's protocol, driven with a bare `websockets` client."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatus

from core.kite import MalformedCounter, parse_binary
from mocking.simulator.server import start_simulator
from mocking.simulator.state import SimulatorState
from mocking.simulator.ticker import HEARTBEAT

pytestmark = pytest.mark.integration


def url(simulator, api_key: str = "sim_key", access_token: str = "sim_token") -> str:
    return f"{simulator.ws_url}?api_key={api_key}&access_token={access_token}"


async def connect(simulator, **kwargs):
    return await websockets.connect(url(simulator, **kwargs), additional_headers={"X-Kite-Version": "3"})


async def next_ticks(ws, *, within: float = 3.0) -> list[dict]:
    """The next binary frame that holds ticks, parsed (heartbeats skipped)."""
    deadline = time.monotonic() + within
    while True:
        message = await asyncio.wait_for(ws.recv(), timeout=max(0.01, deadline - time.monotonic()))
        if isinstance(message, bytes) and len(message) > 1:
            return parse_binary(message)


async def next_text(ws, *, within: float = 3.0) -> dict:
    deadline = time.monotonic() + within
    while True:
        message = await asyncio.wait_for(ws.recv(), timeout=max(0.01, deadline - time.monotonic()))
        if isinstance(message, str):
            return json.loads(message)


async def eventually(predicate, *, within: float = 3.0) -> None:
    """The server side finishes closing a moment after the client sees the close frame."""
    deadline = time.monotonic() + within
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def close_code(ws, *, within: float = 5.0) -> int:
    """Read until the server closes the socket; its close code."""
    deadline = time.monotonic() + within
    with pytest.raises(ConnectionClosed) as closed:
        while time.monotonic() < deadline:
            await asyncio.wait_for(ws.recv(), timeout=max(0.01, deadline - time.monotonic()))
    return closed.value.rcvd.code


@pytest.fixture
def tokens(simulator) -> list[int]:
    found = [spec.instrument_token for spec in simulator.state.instruments]
    if not found:
        pytest.skip("mocking.market is not available: the simulator has no instruments to stream")
    return found


@pytest.mark.parametrize(("api_key", "access_token"), [("sim_key", "wrong"), ("other_key", "sim_token"), ("", "")])
async def test_unknown_key_or_token_gets_http_403(simulator, api_key, access_token):
    with pytest.raises(InvalidStatus) as failure:
        await connect(simulator, api_key=api_key, access_token=access_token)
    assert failure.value.response.status_code == 403
    assert simulator.state.rejected_upgrades == 1
    assert not simulator.state.live_connections()


async def test_subscribe_streams_quote_mode_by_default_and_mode_switches_the_packets(simulator, tokens):
    index, option = tokens[0], tokens[1]
    async with await connect(simulator) as ws:
        await ws.send(json.dumps({"a": "subscribe", "v": [option]}))
        ticks = await next_ticks(ws)
        assert [(t["instrument_token"], t["mode"]) for t in ticks] == [(option, "quote")]
        assert "depth" not in ticks[0] and ticks[0]["volume_traded"] >= 0

        await ws.send(json.dumps({"a": "mode", "v": ["full", [option]]}))
        await ws.send(json.dumps({"a": "subscribe", "v": [index]}))
        await ws.send(json.dumps({"a": "mode", "v": ["full", [index]]}))
        seen: dict[int, dict] = {}
        while not (seen.get(option, {}).get("mode") == "full" and seen.get(index, {}).get("mode") == "full"):
            for tick in await next_ticks(ws):
                seen[tick["instrument_token"]] = tick
        assert len(seen[option]["depth"]["buy"]) == 5
        assert seen[option]["depth"]["buy"][0]["price"] < seen[option]["depth"]["sell"][0]["price"]
        assert seen[index]["tradable"] is False and "exchange_timestamp" in seen[index]

        await ws.send(json.dumps({"a": "mode", "v": ["ltp", [option]]}))
        await ws.send(json.dumps({"a": "unsubscribe", "v": [index]}))
        await eventually(lambda: simulator.state.subscribed("sim_key") == {option: "ltp"})
        (connection,) = simulator.state.live_connections("sim_key")
        assert [r["a"] for r in connection.requests] == [
            "subscribe",
            "mode",
            "subscribe",
            "mode",
            "mode",
            "unsubscribe",
        ]


async def test_streams_each_token_at_the_configured_rate_many_ticks_per_frame(simulator, tokens):
    simulator.state.ticks_per_second = 10
    async with await connect(simulator) as ws:
        await ws.send(json.dumps({"a": "subscribe", "v": tokens}))
        await next_ticks(ws)  # the snapshot on subscribe
        counts = dict.fromkeys(tokens, 0)
        frames = 0
        started = time.monotonic()
        while time.monotonic() - started < 2.0:
            for tick in await next_ticks(ws):
                counts[tick["instrument_token"]] += 1
            frames += 1
        elapsed = time.monotonic() - started
    total = sum(counts.values())
    expected = 10 * len(tokens) * elapsed
    assert 0.7 * expected <= total <= 1.3 * expected
    assert min(counts.values()) >= 0.6 * 10 * elapsed  # round robin: every token gets its share
    assert total / frames >= 5  # packed, not one tick per frame


async def test_idle_connection_gets_one_byte_heartbeats(simulator):
    simulator.state.heartbeat_interval_s = 0.2
    async with await connect(simulator) as ws:
        messages = [await asyncio.wait_for(ws.recv(), timeout=2) for _ in range(4)]
    assert messages == [HEARTBEAT] * 4


async def test_a_fourth_connection_per_api_key_gets_an_error_and_is_closed(simulator):
    sockets = [await connect(simulator) for _ in range(3)]
    try:
        fourth = await connect(simulator)
        message = await next_text(fourth)
        assert message["type"] == "error" and "Maximum connections" in message["data"]
        assert await close_code(fourth) == 1008
        assert len(simulator.state.live_connections("sim_key")) == 3
    finally:
        for ws in sockets:
            await ws.close()


async def test_subscriptions_past_the_per_connection_limit_are_refused_with_an_error(simulator, tokens):
    simulator.state.max_tokens_per_connection = 4
    async with await connect(simulator) as ws:
        await ws.send(json.dumps({"a": "subscribe", "v": tokens[:6]}))
        message = await next_text(ws)
        assert message["type"] == "error" and "2 instruments were not subscribed" in message["data"]
        assert simulator.state.subscribed("sim_key") == dict.fromkeys(tokens[:4], "quote")
        await next_ticks(ws)  # still open and streaming


async def test_bad_requests_get_error_messages_and_the_connection_stays(simulator, tokens):
    async with await connect(simulator) as ws:
        for bad in (
            "not json",
            json.dumps({"a": "subscribe", "v": ["x"]}),
            json.dumps({"a": "mode", "v": ["depth", [1]]}),
        ):
            await ws.send(bad)
            assert (await next_text(ws))["type"] == "error"
        await ws.send(json.dumps({"a": "subscribe", "v": tokens[:1]}))
        assert (await next_ticks(ws))[0]["instrument_token"] == tokens[0]


async def test_drop_all_closes_every_connection(simulator):
    sockets = [await connect(simulator) for _ in range(2)]
    simulator.state.faults.drop_all()
    for ws in sockets:
        assert await close_code(ws) == 1001
    await eventually(lambda: not simulator.state.live_connections())
    assert all(c.close_reason == "dropped by fault injection" for c in simulator.state.closed_connections)


async def test_stall_sends_nothing_but_keeps_the_socket_open(simulator, tokens):
    simulator.state.heartbeat_interval_s = 0.2
    async with await connect(simulator) as ws:
        await ws.send(json.dumps({"a": "subscribe", "v": tokens[:3]}))
        await next_ticks(ws)
        simulator.state.faults.stall = True
        await asyncio.sleep(0.15)  # let a frame already in flight arrive
        late = 0
        with pytest.raises(TimeoutError):  # then a whole second of silence, heartbeats included
            for late in range(5):  # noqa: B007
                await asyncio.wait_for(ws.recv(), timeout=1.0)
        assert late <= 1
        assert len(simulator.state.live_connections()) == 1
        simulator.state.faults.stall = False
        assert await next_ticks(ws)


async def test_malformed_fault_mixes_in_frames_of_every_kind(simulator, tokens):
    simulator.state.ticks_per_second = 10
    simulator.state.faults.malformed = True
    counter = MalformedCounter()
    async with await connect(simulator) as ws:
        await ws.send(json.dumps({"a": "subscribe", "v": tokens[:3]}))
        started = time.monotonic()
        while len(counter) < 4 and time.monotonic() - started < 5:
            message = await asyncio.wait_for(ws.recv(), timeout=2)
            parse_binary(message, counter)
    assert set(counter) == {"empty", "truncated", "length_past_end", "unknown_length"}


async def test_revoking_a_token_closes_only_its_connections(simulator):
    other = simulator.state.issue_token("sim_key")
    simulator.state.register_account("key_b", "secret_b", "token_b")
    revoked = await connect(simulator)
    kept_same_key = await connect(simulator, access_token=other)
    kept_other_key = await connect(simulator, api_key="key_b", access_token="token_b")
    simulator.state.revoke_token("sim_token")
    assert await close_code(revoked) == 1008
    await eventually(lambda: {c.access_token for c in simulator.state.live_connections()} == {other, "token_b"})
    await asyncio.sleep(0.3)  # and the others stay up
    assert {c.access_token for c in simulator.state.live_connections()} == {other, "token_b"}
    with pytest.raises(InvalidStatus):
        await connect(simulator)
    await kept_same_key.close()
    await kept_other_key.close()


def test_a_simulator_without_a_market_streams_heartbeats_only():
    state = SimulatorState(heartbeat_interval_s=0.1)
    state.register_account("k", "s", "t")

    async def run(ws_url: str) -> list:
        async with websockets.connect(f"{ws_url}?api_key=k&access_token=t") as ws:
            await ws.send(json.dumps({"a": "subscribe", "v": [256265]}))
            return [await asyncio.wait_for(ws.recv(), timeout=2) for _ in range(3)]

    with start_simulator(state) as handle:
        assert asyncio.run(run(handle.ws_url)) == [HEARTBEAT] * 3
    assert state.subscribed() == {}  # closed connections no longer count
