"""The mock market: a seeded model of an NSE session that produces Kite-shaped ticks and candles.

Public interface:
- `InstrumentSpec` (spec.py): what the mock needs to know about an instrument.
- `SessionClock`, `TradingCalendar` (clock.py): real IST time during market hours, a simulated session
  otherwise.
- `MockMarket` (market.py): `set_instruments`, `step`, `ticks` (a TickBatch flagged is_mock),
  `tick_dicts` (kiteconnect-shaped dicts + "is_mock"), `snapshot` (a `MarketSnapshot`, snapshot.py:
  immutable, lock-free), `cleanup_expired`, `candles`.
- `mock_candles` (history.py): historical candles from the same model; `mock_atm_iv_close`: the
  closing ATM IV history.
- `ticks_to_kite_dicts` (kite_ticks.py): TICK_DTYPE rows as kiteconnect's tick dicts, flagged is_mock.

Inside: model.py (the spot path's returns, the IV surface, model prices), underlying.py (one underlying's
live spot), book.py (tick grid, order book, trades, a session's opening state).

Plain numpy/scipy; no Django imports.
"""

from core.calendar import SESSION_SECONDS, TradingCalendar
from mocking.market.clock import SessionClock
from mocking.market.history import INTERVAL_MINUTES, mock_atm_iv_close, mock_candles
from mocking.market.kite_ticks import ticks_to_kite_dicts
from mocking.market.market import MockMarket
from mocking.market.snapshot import MarketSnapshot
from mocking.market.spec import InstrumentSpec, UnderlyingProfile, plausible_profile, underlying_key

__all__ = [
    "INTERVAL_MINUTES",
    "SESSION_SECONDS",
    "InstrumentSpec",
    "MarketSnapshot",
    "MockMarket",
    "SessionClock",
    "TradingCalendar",
    "UnderlyingProfile",
    "mock_atm_iv_close",
    "mock_candles",
    "plausible_profile",
    "ticks_to_kite_dicts",
    "underlying_key",
]
