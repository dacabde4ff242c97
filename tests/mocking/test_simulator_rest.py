"""The simulator's REST endpoints, driven by the official `kiteconnect` client as an app would."""

import datetime as dt
import hashlib
import time
from zoneinfo import ZoneInfo

import pytest
import requests
from kiteconnect import KiteConnect
from kiteconnect import exceptions as kite_exceptions

from mocking.market.spec import InstrumentSpec
from mocking.simulator.rest import rest_stats
from mocking.simulator.server import start_simulator
from mocking.simulator.state import SimulatorState
from tests.history.sim import ACCESS_TOKEN, API_KEY, API_SECRET, SessionCandleMarket

IST = ZoneInfo("Asia/Kolkata")
INFY = InstrumentSpec(408065, "INFY", "INFY", "EQ", segment="NSE", exchange="NSE")
OPTION = InstrumentSpec(
    (12345 << 8) | 2, "NIFTY24JAN21500CE", "NIFTY", "CE", 21500.0, dt.date(2024, 1, 25), 0.05, 50, "NFO-OPT", "NFO"
)


@pytest.fixture
def sim():
    state = SimulatorState(market=SessionCandleMarket(), instruments=[INFY, OPTION], historical_rate_per_second=3.0)
    state.register_account(API_KEY, API_SECRET, ACCESS_TOKEN)
    handle = start_simulator(state)
    yield handle
    handle.stop()


def client(sim, token=ACCESS_TOKEN):
    kite = KiteConnect(api_key=API_KEY, root=sim.http_url, timeout=5)
    kite.set_access_token(token)
    return kite


def test_profile_and_token_check(sim):
    assert client(sim).profile()["user_id"] == "AB1234"
    with pytest.raises(kite_exceptions.TokenException) as exc:
        client(sim, token="wrong").profile()
    assert exc.value.code == 403


def test_historical_candles_in_kites_shape(sim):
    candles = client(sim).historical_data(
        OPTION.instrument_token, "2024-01-08 09:15:00", "2024-01-08 09:19:00", "minute", oi=True
    )
    assert [c["date"] for c in candles] == [dt.datetime(2024, 1, 8, 9, 15 + i, tzinfo=IST) for i in range(5)]
    assert set(candles[0]) == {"date", "open", "high", "low", "close", "volume", "oi"}
    raw = requests.get(
        f"{sim.http_url}/instruments/historical/{OPTION.instrument_token}/day",
        params={"from": "2024-01-08", "to": "2024-01-10"},
        headers={"Authorization": f"token {API_KEY}:{ACCESS_TOKEN}"},
        timeout=5,
    )
    assert raw.headers["content-type"].startswith("application/json")
    body = raw.json()
    assert body["status"] == "success"
    assert [c[0] for c in body["data"]["candles"]] == [
        "2024-01-08T00:00:00+0530",
        "2024-01-09T00:00:00+0530",
        "2024-01-10T00:00:00+0530",
    ]
    assert len(body["data"]["candles"][0]) == 6  # no oi unless asked


@pytest.mark.parametrize("interval,days", [("minute", 60), ("5minute", 100), ("30minute", 200), ("day", 2000)])
def test_more_days_than_kite_allows_is_an_input_error(sim, interval, days):
    kite = client(sim)
    start = dt.datetime(2018, 1, 1)
    ok_end = start + dt.timedelta(days=days)
    kite.historical_data(OPTION.instrument_token, start, ok_end, interval)
    time.sleep(0.4)
    with pytest.raises(kite_exceptions.InputException) as exc:
        kite.historical_data(OPTION.instrument_token, start, ok_end + dt.timedelta(days=1), interval)
    assert exc.value.code == 400
    assert f"{days} days" in str(exc.value)


def test_unknown_token_and_bad_dates_are_input_errors(sim):
    kite = client(sim)
    with pytest.raises(kite_exceptions.InputException):
        kite.historical_data(999, "2024-01-08", "2024-01-09", "minute")
    time.sleep(0.4)
    with pytest.raises(kite_exceptions.InputException):
        kite.historical_data(INFY.instrument_token, "yesterday", "2024-01-09", "minute")
    time.sleep(0.4)
    with pytest.raises(kite_exceptions.InputException):
        kite.historical_data(INFY.instrument_token, "2024-01-08", "2024-01-09", "2minute")


def test_fourth_request_within_a_second_gets_429(sim):
    kite = client(sim)
    codes = []
    for _ in range(5):
        try:
            kite.historical_data(INFY.instrument_token, "2024-01-08", "2024-01-08 10:00:00", "minute")
            codes.append(200)
        except kite_exceptions.NetworkException as exc:
            codes.append(exc.code)
    assert codes[:3] == [200, 200, 200]
    assert 429 in codes[3:]
    stats = rest_stats(sim.state)
    assert stats.max_in_any_second(API_KEY) == 3
    time.sleep(1.05)
    kite.historical_data(INFY.instrument_token, "2024-01-08", "2024-01-08 10:00:00", "minute")  # allowed again


def test_generate_session_checks_the_checksum_and_issues_a_working_token(sim):
    kite = KiteConnect(api_key=API_KEY, root=sim.http_url, timeout=5)
    session = kite.generate_session("request-token-1", api_secret=API_SECRET)
    assert session["api_key"] == API_KEY
    assert session["access_token"] and session["access_token"] != ACCESS_TOKEN
    assert isinstance(session["login_time"], dt.datetime)
    assert kite.profile()["user_id"] == "AB1234"  # the client now carries the new token
    with pytest.raises(kite_exceptions.TokenException):
        KiteConnect(api_key=API_KEY, root=sim.http_url).generate_session("request-token-2", api_secret="wrong")
    # the checksum is Kite's: sha256(api_key + request_token + api_secret)
    checksum = hashlib.sha256(f"{API_KEY}rt3{API_SECRET}".encode()).hexdigest()
    answer = requests.post(
        f"{sim.http_url}/session/token",
        data={"api_key": API_KEY, "request_token": "rt3", "checksum": checksum},
        timeout=5,
    )
    assert answer.status_code == 200 and answer.json()["data"]["access_token"]


def test_instruments_dump_parses_with_the_official_client(sim):
    kite = client(sim)
    rows = kite.instruments()
    assert [(r["instrument_token"], r["tradingsymbol"], r["exchange"]) for r in rows] == [
        (408065, "INFY", "NSE"),
        (OPTION.instrument_token, "NIFTY24JAN21500CE", "NFO"),
    ]
    assert rows[1]["expiry"] == dt.date(2024, 1, 25) and rows[1]["strike"] == 21500.0
    assert [r["tradingsymbol"] for r in kite.instruments("NFO")] == ["NIFTY24JAN21500CE"]


def test_quotes(sim):
    kite = client(sim)
    quote = kite.quote(["NSE:INFY", "NSE:UNKNOWN"])
    assert set(quote) == {"NSE:INFY"}
    infy = quote["NSE:INFY"]
    assert infy["instrument_token"] == 408065
    assert {"ohlc", "depth", "volume", "last_quantity", "oi"} <= set(infy)
    # Kite's REST times are IST wall clock; the tick's naive local time is converted
    expected = dt.datetime(2024, 1, 8, 10, 0).astimezone(IST).replace(tzinfo=None)
    assert infy["timestamp"] == expected  # the official client parses it back to a naive datetime
    assert kite.ltp("NSE:INFY") == {"NSE:INFY": {"instrument_token": 408065, "last_price": 101.5}}
    assert kite.ohlc("NSE:INFY")["NSE:INFY"]["ohlc"]["high"] == 102.0
    with pytest.raises(kite_exceptions.TokenException):
        client(sim, token="nope").ltp("NSE:INFY")


def test_unknown_route_is_a_kite_error(sim):
    answer = requests.get(
        f"{sim.http_url}/orders/xyz", headers={"Authorization": f"token {API_KEY}:{ACCESS_TOKEN}"}, timeout=5
    )
    assert answer.status_code == 404
    assert answer.json()["status"] == "error" and answer.json()["error_type"] == "GeneralException"


def test_rest_delay_fault(sim):
    sim.state.faults.rest_delay_s = 0.3
    started = time.monotonic()
    client(sim).profile()
    assert time.monotonic() - started >= 0.3
