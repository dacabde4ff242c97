"""Which mode an account streams in, and the NSE session it streams for.

Mode per account: `auto` is live for a non-mock account with a valid token during NSE hours
(09:15-15:30 IST, Monday-Friday, not an exchange holiday), mock otherwise; `live`/`mock` force it
(mock accounts are always mock).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from core.calendar import TradingCalendar

MODES = ("auto", "live", "mock")


def is_market_open(now: dt.datetime, holidays: Iterable[dt.date] = ()) -> bool:
    """NSE derivatives hours: 09:15-15:30 IST, Monday to Friday, not on an exchange holiday."""
    return TradingCalendar(holidays).is_open(now)


def session_day(now: dt.datetime, holidays: Iterable[dt.date] = ()) -> dt.date:
    """The trading day whose session is running or last ran at `now` (IST): the one the mock market
    plays at night, and whose previous close OI change is counted against."""
    return TradingCalendar(holidays).last_session_day(now)


def account_mode(*, forced: str, is_mock: bool, has_valid_token: bool, market_open: bool) -> str:
    """'live' or 'mock' for one account (see the module docstring)."""
    if forced not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {forced!r}")
    if is_mock or forced == "mock":
        return "mock"
    if forced == "live":
        return "live"
    return "live" if has_valid_token and market_open else "mock"


__all__ = ["MODES", "account_mode", "is_market_open", "session_day"]
