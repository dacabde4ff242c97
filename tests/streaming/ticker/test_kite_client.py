"""The asyncio Kite ticker client against the simulator: subscriptions on the wire, reconnects after
drops and silent stalls with the desired state restored, auth failures without a retry storm,
malformed frames survived, limits enforced, the token never logged."""

from __future__ import annotations

import asyncio
import io
import logging
import time
from collections.abc import Callable
from types import SimpleNamespace

import pytest

from core.ticks import MODE_FULL, MODE_LTP, MODE_QUOTE, TickBatch
from mocking.simulator.ticker import MALFORMED_MARKER_TOKEN
from streaming.ticker.kite_client import KiteTickerClient, SubscriptionLimitError

pytestmark = pytest.mark.integration


async def wait_until(predicate: Callable[[], bool], within: float = 5.0) -> float:
    """Seconds it took for `predicate` to hold; fails the test after `within` seconds."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > within:
            raise AssertionError(f"condition not met within {within} s")
        await asyncio.sleep(0.02)
    return time.monotonic() - started


class Recorder:
    def __init__(self) -> None:
        self.batches: list[TickBatch] = []
        self.errors: list[str] = []
        self.auth_failures: list[Exception] = []

    def on_ticks(self, batch: TickBatch) -> None:
        self.batches.append(batch)

    def tokens_seen(self, since: int = 0) -> dict[int, int]:
        seen: dict[int, int] = {}
        for batch in self.batches[since:]:
            for token, mode in zip(batch.ticks["instrument_token"].tolist(), batch.ticks["mode"].tolist(), strict=True):
                seen[token] = mode
        return seen


@pytest.fixture
def tokens(simulator) -> list[int]:
    found = [spec.instrument_token for spec in simulator.state.instruments]
    if not found:
        pytest.skip("mocking.market is not available: the simulator has no instruments to stream")
    return found


def newest(simulator):
    """The most recently opened live connection the simulator has (a dummy when there is none)."""
    live = simulator.state.live_connections("sim_key")
    return max(live, key=lambda c: c.id) if live else SimpleNamespace(id=0, modes={})


def newest_modes(simulator) -> dict[int, str]:
    return dict(newest(simulator).modes)


def make_client(simulator, recorder: Recorder, **kwargs) -> KiteTickerClient:
    options = {
        "api_key": "sim_key",
        "access_token": "sim_token",
        "root": simulator.ws_url,
        "on_ticks": recorder.on_ticks,
        "on_error": recorder.errors.append,
        "on_auth_failure": recorder.auth_failures.append,
        "source": "test",
        "backoff_initial": 0.1,
        "backoff_max": 1.0,
    }
    options.update(kwargs)
    return KiteTickerClient(**options)


async def test_streams_ticks_in_the_modes_asked_for(simulator, tokens):
    simulator.state.ticks_per_second = 5
    recorder = Recorder()
    client = make_client(simulator, recorder)
    index, *options = tokens
    client.subscribe([index], mode="full")
    client.subscribe(options[:4], mode="ltp")
    client.subscribe(options[4:6])  # quote by default
    client.start()
    try:
        await wait_until(lambda: set(recorder.tokens_seen()) >= {index, *options[:6]})
        seen = recorder.tokens_seen()
        assert seen[index] == MODE_FULL
        assert {seen[t] for t in options[:4]} == {MODE_LTP}
        assert {seen[t] for t in options[4:6]} == {MODE_QUOTE}
        assert simulator.state.subscribed("sim_key") == {index: "full"} | dict.fromkeys(
            options[:4], "ltp"
        ) | dict.fromkeys(options[4:6], "quote")
        batch = recorder.batches[-1]
        assert batch.source == "test" and not batch.is_mock  # as a live Kite frame would be
        assert client.stats.frames >= len(recorder.batches) and client.stats.ticks >= 7
        assert client.stats.last_message_at is not None

        # Changes go on the wire at once while connected.
        client.unsubscribe(options[4:6])
        client.set_mode("full", options[:1])
        await wait_until(lambda: simulator.state.subscribed("sim_key").get(options[0]) == "full")
        assert options[4] not in simulator.state.subscribed("sim_key")
    finally:
        await client.close()
    assert client.stats.state == "closed"
    await wait_until(lambda: not simulator.state.live_connections())


async def test_survives_dropped_connections_with_subscriptions_and_modes_restored(simulator, tokens):
    recorder = Recorder()
    client = make_client(simulator, recorder)
    desired = {tokens[0]: "full", tokens[1]: "ltp", tokens[2]: "quote", tokens[3]: "full"}
    for token, mode in desired.items():
        client.subscribe([token], mode=mode)
    client.start()
    try:
        await wait_until(lambda: newest_modes(simulator) == desired)
        for drop in range(2):
            before = newest(simulator).id
            simulator.state.faults.drop_all()
            # A new connection on which the client re-applied every subscription with its mode.
            await wait_until(lambda before=before: newest(simulator).id > before and newest_modes(simulator) == desired)
            assert client.stats.reconnects == drop + 1
        seen_before = len(recorder.batches)
        await wait_until(lambda: set(recorder.tokens_seen(seen_before)) == set(desired))
        codes = {"ltp": MODE_LTP, "quote": MODE_QUOTE, "full": MODE_FULL}
        assert recorder.tokens_seen(seen_before) == {t: codes[m] for t, m in desired.items()}
    finally:
        await client.close()


async def test_notices_a_silent_stall_within_five_seconds_and_restores_state(simulator, tokens):
    recorder = Recorder()
    client = make_client(simulator, recorder)  # default silence_timeout: 5 s
    assert client.silence_timeout == 5.0
    desired = {tokens[0]: "full", tokens[1]: "ltp"}
    for token, mode in desired.items():
        client.subscribe([token], mode=mode)
    client.start()
    try:
        await wait_until(lambda: newest_modes(simulator) == desired and recorder.batches)
        stalled = newest(simulator)
        simulator.state.faults.stall = True
        stalled_at = time.monotonic()
        await wait_until(lambda: client.stats.silent_reconnects == 1, within=8)
        noticed_after = time.monotonic() - stalled_at
        # 5 s of silence counted from the last message, which came at most one heartbeat before the stall.
        assert noticed_after <= 5.0 + simulator.state.heartbeat_interval_s
        simulator.state.faults.stall = False
        await wait_until(lambda: newest(simulator).id > stalled.id and newest_modes(simulator) == desired)
        since = len(recorder.batches)
        await wait_until(lambda: set(recorder.tokens_seen(since)) == set(desired))
    finally:
        await client.close()


async def test_a_rejected_token_is_reported_once_without_a_retry_storm(simulator, tokens, caplog):
    caplog.set_level(logging.DEBUG)
    recorder = Recorder()
    client = make_client(simulator, recorder, access_token="wrong_token", backoff_initial=0.01)
    client.subscribe(tokens[:2], mode="full")
    client.start()
    try:
        await wait_until(lambda: recorder.auth_failures)
        await asyncio.sleep(1.0)
        assert simulator.state.rejected_upgrades == 1
        assert len(recorder.auth_failures) == 1
        assert client.stats.state == "auth_failed"
        assert not simulator.state.live_connections()

        client.update_token("sim_token")
        await wait_until(lambda: simulator.state.subscribed("sim_key") == dict.fromkeys(tokens[:2], "full"))
        assert client.stats.state == "connected"
    finally:
        await client.close()
    assert "wrong_token" not in caplog.text
    assert "sim_token" not in caplog.text


async def test_a_revoked_token_stops_the_client_until_a_new_token_arrives(simulator, tokens, caplog):
    recorder = Recorder()
    client = make_client(simulator, recorder)
    client.subscribe(tokens[:1], mode="ltp")
    client.start()
    try:
        await wait_until(lambda: simulator.state.subscribed("sim_key"))
        simulator.state.revoke_token("sim_token")
        await wait_until(lambda: recorder.auth_failures)
        assert client.stats.state == "auth_failed"
        fresh = simulator.state.issue_token("sim_key")
        client.update_token(fresh)
        await wait_until(lambda: client.stats.state == "connected" and simulator.state.subscribed("sim_key"))
    finally:
        await client.close()
    assert fresh not in caplog.text


async def test_malformed_frames_are_counted_and_ticks_keep_flowing(simulator, tokens):
    simulator.state.ticks_per_second = 5
    simulator.state.faults.malformed = True
    recorder = Recorder()
    client = make_client(simulator, recorder)
    client.subscribe(tokens[:3], mode="quote")
    client.start()
    try:
        await wait_until(lambda: len(client.stats.malformed) >= 4, within=8)
        assert set(client.stats.malformed) == {"empty", "truncated", "length_past_end", "unknown_length"}
        assert client.stats.state == "connected" and client.stats.reconnects == 0
        assert set(recorder.tokens_seen()) >= set(tokens[:3])
        # The valid packets in front of the damage are kept.
        assert MALFORMED_MARKER_TOKEN in recorder.tokens_seen()
        assert sum(batch.malformed for batch in recorder.batches) >= 3
        assert client.status()["malformed"] == client.stats.malformed.as_dict()
    finally:
        await client.close()


async def test_heartbeats_are_counted_and_keep_an_idle_connection_alive(simulator):
    simulator.state.heartbeat_interval_s = 0.2
    client = make_client(simulator, Recorder(), silence_timeout=1.0)
    client.start()
    try:
        await wait_until(lambda: client.stats.heartbeats >= 8, within=5)
        assert client.stats.silent_reconnects == 0
        assert client.stats.frames == 0
    finally:
        await client.close()


async def test_requests_are_chunked(simulator, tokens):
    client = make_client(simulator, Recorder(), chunk_size=2)
    client.subscribe(tokens[:5], mode="full")
    client.start()
    try:
        await wait_until(lambda: simulator.state.subscribed("sim_key") == dict.fromkeys(tokens[:5], "full"))
        requests = simulator.state.live_connections("sim_key")[0].requests
        assert [len(r["v"]) for r in requests if r["a"] == "subscribe"] == [2, 2, 1]
        assert [len(r["v"][1]) for r in requests if r["a"] == "mode"] == [2, 2, 1]
    finally:
        await client.close()


async def test_the_simulators_error_messages_reach_on_error(simulator, tokens):
    simulator.state.max_tokens_per_connection = 2
    recorder = Recorder()
    client = make_client(simulator, recorder)
    client.subscribe(tokens[:3], mode="ltp")
    client.start()
    try:
        await wait_until(lambda: recorder.errors)
        assert "Subscription limit" in recorder.errors[0]
        assert client.stats.text_messages >= 1
    finally:
        await client.close()


def test_no_more_than_3000_tokens_per_connection():
    client = KiteTickerClient(api_key="k", access_token="t", root="ws://127.0.0.1:9")
    client.subscribe(range(1, 2001), mode="full")
    with pytest.raises(SubscriptionLimitError, match="at most 3000"):
        client.subscribe(range(2001, 3002))
    assert len(client.subscriptions) == 2000  # nothing half-applied
    client.subscribe(range(1, 3001), mode="ltp")  # re-subscribing known tokens does not count twice
    assert len(client.subscriptions) == 3000
    assert set(client.subscriptions.values()) == {"ltp"}
    with pytest.raises(ValueError, match="mode"):
        client.subscribe([1], mode="depth")


async def test_the_access_token_never_reaches_the_logs_even_at_debug(simulator):
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setLevel(logging.DEBUG)
    # Handlers on the libraries' own loggers see records before anything the project configures on the
    # root (whose redacting filter would otherwise hide a leak from this test).
    watched = [logging.getLogger("websockets"), logging.getLogger("streaming.ticker.kite_client")]
    levels = [logger.level for logger in watched]
    for logger in watched:
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG)
    try:
        client = make_client(simulator, Recorder())
        client.start()
        await wait_until(lambda: client.stats.heartbeats >= 1)
        simulator.state.faults.drop_all()
        await wait_until(lambda: client.stats.connects == 2)
        await client.close()
        bad = make_client(simulator, Recorder(), access_token="bad-token-value")
        bad.start()
        await wait_until(lambda: bad.stats.state == "auth_failed")
        await bad.close()
    finally:
        for logger, level in zip(watched, levels, strict=True):
            logger.removeHandler(handler)
            logger.setLevel(level)
    text = stream.getvalue()
    assert "GET /?api_key=sim_key&access_token=***" in text  # the request line is logged, masked
    assert "sim_token" not in text
    assert "bad-token-value" not in text


def test_the_url_is_logged_redacted():
    client = KiteTickerClient(api_key="key1", access_token="secret-token", root="wss://ws.kite.trade")
    assert "secret-token" in client.url
    assert "secret-token" not in client.redacted_url
    assert "secret-token" not in repr(client.status())
