"""A simulator for history tests: the real REST endpoints over a market whose candles are known
(one per interval step inside every NSE session), so tests can count exactly what arrives."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from history.services.chunking import INTERVAL_SECONDS
from mocking.simulator.state import SimulatorState

IST = ZoneInfo("Asia/Kolkata")
API_KEY, API_SECRET, ACCESS_TOKEN = "hist_key", "hist_secret", "hist_token"


class SessionCandleMarket:
    """One candle per step from 09:15 to 15:30 IST on weekdays; day candles at midnight IST."""

    def __init__(self, holidays: set[dt.date] = frozenset()) -> None:
        self.holidays = set(holidays)
        self.calls: list[tuple[int, str, dt.datetime, dt.datetime]] = []
        self.specs: dict[int, object] = {}

    def set_instruments(self, specs) -> None:
        self.specs.update({int(s.instrument_token): s for s in specs})

    def timestamps(self, interval: str, start: dt.datetime, end: dt.datetime) -> list[dt.datetime]:
        out = []
        day = start.astimezone(IST).date()
        while day <= end.astimezone(IST).date():
            if day.weekday() < 5 and day not in self.holidays:
                if interval == "day":
                    candidates = [dt.datetime.combine(day, dt.time(0, 0), tzinfo=IST)]
                else:
                    first = dt.datetime.combine(day, dt.time(9, 15), tzinfo=IST)
                    close = dt.datetime.combine(day, dt.time(15, 30), tzinfo=IST)
                    step = dt.timedelta(seconds=INTERVAL_SECONDS[interval])
                    candidates = []
                    t = first
                    while t < close:
                        candidates.append(t)
                        t += step
                out.extend(t for t in candidates if start <= t < end)
            day += dt.timedelta(days=1)
        return out

    def candles(self, token, interval, start, end):
        self.calls.append((int(token), interval, start, end))
        rows = []
        for ts in self.timestamps(interval, start, end):
            base = 100.0 + (int(token) % 97) + (ts.timestamp() % 3600) / 100.0
            rows.append((ts, base, base + 1.0, base - 1.0, base + 0.5, 1000, 50))
        return rows

    def tick_dicts(self, tokens, modes, now=None):
        return [
            {
                "instrument_token": int(t),
                "last_price": 101.5,
                "ohlc": {"open": 100.0, "high": 102.0, "low": 99.0, "close": 100.0},
                "last_traded_quantity": 5,
                "total_buy_quantity": 10,
                "total_sell_quantity": 12,
                "volume_traded": 1000,
                "average_traded_price": 100.7,
                "oi": 50,
                "oi_day_high": 60,
                "oi_day_low": 40,
                "exchange_timestamp": dt.datetime(2024, 1, 8, 10, 0),
                "last_trade_time": dt.datetime(2024, 1, 8, 9, 59, 58),
                "depth": {"buy": [{"quantity": 1, "price": 101.45, "orders": 1}], "sell": []},
                "is_mock": True,
            }
            for t in tokens
        ]


def spec_for(instrument):
    from mocking.market.spec import InstrumentSpec

    return InstrumentSpec.from_instrument(instrument)


def make_state(instruments=(), *, rate: float = 3.0, market=None) -> SimulatorState:
    state = SimulatorState(market=market or SessionCandleMarket(), historical_rate_per_second=rate)
    state.instruments = [spec_for(i) for i in instruments]
    state.register_account(API_KEY, API_SECRET, ACCESS_TOKEN)
    return state
