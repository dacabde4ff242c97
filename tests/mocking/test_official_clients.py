"""Zerodha's own clients against the simulator: `kiteconnect.KiteTicker` (in a subprocess: its Twisted
reactor cannot restart) receives and parses ticks; `kiteconnect.KiteConnect` gets profile, quotes,
historical candles and the instruments dump."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import subprocess
import sys

import pytest
from kiteconnect import KiteConnect
from kiteconnect.exceptions import TokenException

pytestmark = pytest.mark.integration

TICKER_PROBE = r"""
import json, sys
from kiteconnect import KiteTicker
from twisted.internet import reactor

root, api_key, access_token, tokens = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
ticker = KiteTicker(api_key, access_token, root=root, reconnect=False)
received, errors, done = [], [], []

def finish():
    if not done:  # once: stopping the reactor drops the socket, which calls on_close again
        done.append(True)
        print(json.dumps({"ticks": received, "errors": errors}, default=str), flush=True)
        reactor.stop()

def on_connect(ws, response):
    ws.subscribe(tokens)
    ws.set_mode(ws.MODE_FULL, tokens[:1])
    ws.set_mode(ws.MODE_LTP, tokens[1:2])

def on_ticks(ws, ticks):
    received.extend(ticks)
    modes = {t["instrument_token"]: t["mode"] for t in received}
    if modes.get(tokens[0]) == "full" and modes.get(tokens[1]) == "ltp" and set(modes) >= set(tokens):
        finish()

def on_close(ws, code, reason):
    if not done:
        errors.append(["close", code, str(reason)])
    finish()

ticker.on_connect = on_connect
ticker.on_ticks = on_ticks
ticker.on_error = lambda ws, code, reason: done or errors.append(["error", code, str(reason)])
ticker.on_close = on_close
reactor.callLater(20, finish)
ticker.connect()
"""


def run_ticker_probe(simulator, tokens: list[int], access_token: str = "sim_token") -> dict:
    completed = subprocess.run(
        [sys.executable, "-c", TICKER_PROBE, simulator.ws_url, "sim_key", access_token, json.dumps(tokens)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    return json.loads(completed.stdout.strip().splitlines()[-1])


@pytest.fixture
def specs(simulator):
    if not simulator.state.instruments:
        pytest.skip("mocking.market is not available: the simulator has no instruments")
    return simulator.state.instruments


@pytest.mark.slow
def test_kiteticker_receives_and_parses_ticks_from_the_simulator(simulator, specs):
    tokens = [spec.instrument_token for spec in specs[:4]]
    result = run_ticker_probe(simulator, tokens)
    ticks = result["ticks"]
    modes = {t["instrument_token"]: t["mode"] for t in ticks}
    assert set(modes) == set(tokens), result["errors"]
    assert modes[tokens[0]] == "full"
    assert modes[tokens[1]] == "ltp"
    full = [t for t in ticks if t["mode"] == "full" and t["instrument_token"] == tokens[0]][-1]
    assert full["last_price"] > 0
    assert full["ohlc"]["high"] >= full["ohlc"]["low"] > 0
    quote = [t for t in ticks if t["instrument_token"] == tokens[2]][-1]
    assert quote["mode"] == "quote" and quote["tradable"] is True
    assert quote["ohlc"]["close"] > 0 and quote["last_price"] > 0
    # What the simulator saw from the official client.
    assert not [e for e in result["errors"] if e[0] == "error"]


@pytest.mark.slow
def test_kiteticker_with_a_bad_token_is_refused(simulator, specs):
    result = run_ticker_probe(simulator, [specs[0].instrument_token], access_token="not-a-token")
    assert result["ticks"] == []
    assert result["errors"]
    assert simulator.state.rejected_upgrades == 1


def kite(simulator, access_token: str | None = "sim_token") -> KiteConnect:
    client = KiteConnect(api_key="sim_key", root=simulator.http_url, disable_ssl=True, timeout=10)
    if access_token:
        client.set_access_token(access_token)
    return client


def test_kiteconnect_login_and_profile(simulator):
    client = kite(simulator, access_token=None)
    session = client.generate_session("request-token-1", api_secret="sim_secret")
    assert session["api_key"] == "sim_key"
    assert simulator.state.is_authorised("sim_key", session["access_token"])
    client.set_access_token(session["access_token"])
    profile = client.profile()
    assert profile["user_id"] == simulator.state.accounts["sim_key"].user_id
    assert hashlib.sha256(session["access_token"].encode()).hexdigest()[:32] == session["public_token"]


def test_kiteconnect_rejects_a_bad_token(simulator):
    with pytest.raises(TokenException):
        kite(simulator, access_token="wrong").profile()


def test_kiteconnect_quote_and_ltp(simulator, specs):
    names = [f"{spec.exchange}:{spec.tradingsymbol}" for spec in specs[:3]]
    client = kite(simulator)
    quotes = client.quote(names)
    assert set(quotes) == set(names)
    first = quotes[names[1]]
    assert first["instrument_token"] == specs[1].instrument_token
    assert first["last_price"] > 0 and len(first["depth"]["buy"]) == 5
    ltp = client.ltp(names)
    assert {k: v["instrument_token"] for k, v in ltp.items()} == {
        name: spec.instrument_token for name, spec in zip(names, specs[:3], strict=True)
    }


def test_kiteconnect_historical_data_and_instruments(simulator, specs):
    client = kite(simulator)
    option = specs[1]
    end = dt.datetime.combine(option.expiry or dt.date.today(), dt.time(15, 30)) - dt.timedelta(days=7)
    start = end - dt.timedelta(days=5)
    candles = client.historical_data(option.instrument_token, start, end, "15minute", oi=True)
    assert candles, "no candles in five days of market hours"
    assert {"date", "open", "high", "low", "close", "volume", "oi"} <= set(candles[0])
    assert all(c["low"] <= min(c["open"], c["close"]) <= max(c["open"], c["close"]) <= c["high"] for c in candles)
    assert all(isinstance(c["date"], dt.datetime) and c["date"].tzinfo is not None for c in candles)

    instruments = client.instruments()
    by_token = {row["instrument_token"]: row for row in instruments}
    assert set(by_token) == {spec.instrument_token for spec in specs}
    assert by_token[option.instrument_token]["tradingsymbol"] == option.tradingsymbol
    assert by_token[option.instrument_token]["expiry"] == option.expiry
