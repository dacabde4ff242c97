"""Mock historical candles: market hours only, deterministic, consistent across intervals and with the model."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from mocking.market import InstrumentSpec, MockMarket, SessionClock, TradingCalendar, mock_candles

IST = ZoneInfo("Asia/Kolkata")
INDEX = InstrumentSpec(256265, "NIFTY 50", "NIFTY", "EQ", 0.0, None, 0.05, 1, "INDICES", "NSE")
STOCK = InstrumentSpec(408065, "INFY", "INFY", "EQ", 0.0, None, 0.05, 1, "NSE", "NSE")
EXPIRY = date(2026, 11, 24)
CALL = InstrumentSpec(5_000_002, "NIFTY26N2426000CE", "NIFTY", "CE", 26000.0, EXPIRY, 0.05, 75, "NFO-OPT", "NFO")
PUT = InstrumentSpec(5_000_258, "NIFTY26N2426000PE", "NIFTY", "PE", 26000.0, EXPIRY, 0.05, 75, "NFO-OPT", "NFO")
FUT = InstrumentSpec(5_000_514, "NIFTY26NOVFUT", "NIFTY", "FUT", 0.0, EXPIRY, 0.1, 75, "NFO-FUT", "NFO")


def ist(*args) -> datetime:
    return datetime(*args, tzinfo=IST)


def candles(spec, interval, start, end, seed=11, holidays=()):
    return mock_candles(spec, interval, start, end, seed=seed, calendar=TradingCalendar(holidays))


def test_minute_candles_cover_market_hours_of_trading_days_only():
    rows = candles(STOCK, "minute", ist(2026, 11, 20), ist(2026, 11, 24, 23, 59), holidays={date(2026, 11, 23)})
    days = sorted({r[0].date() for r in rows})
    assert days == [date(2026, 11, 20), date(2026, 11, 24)]  # Sat, Sun and the Monday holiday skipped
    assert len(rows) == 2 * 375
    times = {r[0].time() for r in rows}
    assert min(times).strftime("%H:%M") == "09:15" and max(times).strftime("%H:%M") == "15:29"
    assert all(r[0].tzinfo is not None and r[0].utcoffset() == timedelta(hours=5, minutes=30) for r in rows)


@pytest.mark.parametrize(
    ("interval", "per_day", "first", "last"),
    [
        ("3minute", 125, "09:15", "15:27"),
        ("5minute", 75, "09:15", "15:25"),
        ("10minute", 38, "09:15", "15:25"),
        ("15minute", 25, "09:15", "15:15"),
        ("30minute", 13, "09:15", "15:15"),
        ("60minute", 7, "09:15", "15:15"),
    ],
)
def test_coarser_intervals_aggregate_the_minutes(interval, per_day, first, last):
    start, end = ist(2026, 11, 24), ist(2026, 11, 24, 23, 0)
    minutes = candles(FUT, "minute", start, end)
    rows = candles(FUT, interval, start, end)
    assert len(rows) == per_day
    assert rows[0][0].strftime("%H:%M") == first and rows[-1][0].strftime("%H:%M") == last
    step = int(interval.removesuffix("minute"))
    for i, row in enumerate(rows):
        group = minutes[i * step : (i + 1) * step]
        assert row[1] == group[0][1] and row[4] == group[-1][4]
        assert row[2] == max(c[2] for c in group) and row[3] == min(c[3] for c in group)
        assert row[5] == sum(c[5] for c in group) and row[6] == group[-1][6]


def test_day_candles_agree_with_the_minutes():
    day = candles(STOCK, "day", ist(2026, 11, 24), ist(2026, 11, 24, 23, 0))
    minutes = candles(STOCK, "minute", ist(2026, 11, 24), ist(2026, 11, 24, 23, 0))
    assert len(day) == 1 and day[0][0] == ist(2026, 11, 24)
    assert day[0][1:5] == (minutes[0][1], max(c[2] for c in minutes), min(c[3] for c in minutes), minutes[-1][4])
    assert day[0][5] == sum(c[5] for c in minutes) and day[0][6] is None


def test_candles_are_deterministic_per_timestamp_and_seed():
    a = candles(CALL, "5minute", ist(2026, 11, 17), ist(2026, 11, 20, 23, 0))
    b = candles(CALL, "5minute", ist(2026, 11, 19, 10, 0), ist(2026, 11, 19, 11, 0))
    assert a == candles(CALL, "5minute", ist(2026, 11, 17), ist(2026, 11, 20, 23, 0))
    by_time = {r[0]: r for r in a}
    assert b and all(by_time[r[0]] == r for r in b)  # a narrower window gives the very same candles
    other = candles(CALL, "5minute", ist(2026, 11, 17), ist(2026, 11, 20, 23, 0), seed=12)
    assert [r[4] for r in other] != [r[4] for r in a]


def test_candles_are_sane_prices_on_the_tick():
    for spec in (INDEX, STOCK, CALL, PUT, FUT):
        rows = candles(spec, "minute", ist(2026, 11, 18), ist(2026, 11, 20, 23, 0))
        assert rows, spec.tradingsymbol
        arr = np.array([r[1:5] for r in rows])
        assert (arr > 0).all()
        o, h, lo, c = arr.T
        assert (lo <= np.minimum(o, c)).all() and (h >= np.maximum(o, c)).all()
        ticks = arr / spec.tick_size
        assert np.allclose(ticks, np.round(ticks), atol=1e-6)
        volumes = np.array([r[5] for r in rows])
        if spec.is_index:
            assert (volumes == 0).all() and all(r[6] is None for r in rows)
        elif spec.instrument_type == "EQ":
            assert volumes.sum() > 0 and all(r[6] is None for r in rows)
        else:
            assert volumes.sum() > 0 and (volumes % 75 == 0).all()
            assert all(r[6] is not None and r[6] >= 0 and r[6] % 75 == 0 for r in rows)


def test_derivatives_follow_the_underlying():
    start, end = ist(2026, 11, 18), ist(2026, 11, 18, 23, 0)
    index = np.array([r[4] for r in candles(INDEX, "minute", start, end)])
    call = np.array([r[4] for r in candles(CALL, "minute", start, end)])
    put = np.array([r[4] for r in candles(PUT, "minute", start, end)])
    fut = np.array([r[4] for r in candles(FUT, "minute", start, end)])
    moves = np.diff(index)
    assert np.corrcoef(moves, np.diff(call))[0, 1] > 0.9
    assert np.corrcoef(moves, np.diff(put))[0, 1] < -0.9
    assert (fut > index - 1).all()  # carry: the future trades above the index before expiry
    # Put-call parity on the closes: C - P = S e^(-qt) - K e^(-rt), which is S - K plus at most a week's carry.
    assert np.abs((call - put) - (index - 26000.0)).max() < 0.07 * 26000.0 * 7 / 365


def test_options_have_no_candles_after_expiry_or_before_listing():
    rows = candles(CALL, "day", ist(2026, 6, 1), ist(2026, 12, 31))
    days = [r[0].date() for r in rows]
    assert days[-1] == EXPIRY
    assert days[0] >= EXPIRY - timedelta(days=95)


def test_bad_requests_raise_clear_errors():
    with pytest.raises(ValueError, match="interval"):
        candles(STOCK, "2minute", ist(2026, 11, 20), ist(2026, 11, 21))
    with pytest.raises(ValueError, match="timezone"):
        mock_candles(STOCK, "minute", datetime(2026, 11, 20), datetime(2026, 11, 21), seed=1)
    assert candles(STOCK, "minute", ist(2026, 11, 21), ist(2026, 11, 22, 23, 0)) == []  # a weekend


def test_market_candles_use_its_seed_calendar_and_instruments():
    clock = SessionClock(holidays={date(2026, 11, 19)})
    market = MockMarket(seed=11, clock=clock)
    market.set_instruments([STOCK, CALL, PUT])
    rows = market.candles(STOCK.instrument_token, "day", ist(2026, 11, 17), ist(2026, 11, 20))
    assert [r[0].date() for r in rows] == [date(2026, 11, 17), date(2026, 11, 18), date(2026, 11, 20)]
    assert market.candles(STOCK, "day", ist(2026, 11, 17), ist(2026, 11, 20)) == rows
    assert market.candles(123, "day", ist(2026, 11, 17), ist(2026, 11, 20)) == []


def test_the_live_market_opens_where_the_history_closed():
    clock = SessionClock(now_fn=lambda: ist(2026, 11, 24, 9, 15).timestamp())
    market = MockMarket(seed=11, clock=clock)
    market.set_instruments([INDEX])
    market.ticks(np.array([INDEX.instrument_token]), np.array([2], dtype=np.int8))
    previous = market.candles(INDEX, "day", ist(2026, 11, 23), ist(2026, 11, 23, 23, 0))
    assert len(previous) == 1
    close = previous[0][4]
    assert market.snapshot().tick(INDEX.instrument_token)["close"] == pytest.approx(close, abs=0.05)
    assert abs(market.snapshot().underlying_spots["NIFTY"] / close - 1) < 0.01
