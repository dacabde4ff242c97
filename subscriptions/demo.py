"""Realistic demo instruments in Kite's own format (pure: no Django, no database).

NSE index options as listed on Kite: name NIFTY / BANKNIFTY, instrument_type CE / PE, segment
NFO-OPT, exchange NFO. NIFTY has weekly expiries (Tuesdays) and monthly ones (the month's last
Tuesday); BANKNIFTY monthly only. An expiry that falls on a holiday moves to the previous trading day.
Tradingsymbols: monthly `NIFTY26DEC26000CE` (YY + 3-letter month), weekly `NIFTY26D0126000CE`
(YY + month code 1-9/O/N/D + DD).
"""

from __future__ import annotations

import calendar
import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

from core.calendar import TradingCalendar
from core.greeks import bsm_price

TUESDAY = 1
WEEKLY_MONTH_CODES = "123456789OND"


@dataclass(frozen=True)
class DemoUnderlying:
    underlying: str  # the options' `name`
    index_symbol: str  # the index's tradingsymbol
    index_token: int
    index_exchange_token: int
    spot: float
    strike_step: int
    lot_size: int
    weekly: bool
    volatility: float  # annualised, for demo option prices


# One table, so lot sizes and strike steps are easy to correct when NSE revises them.
DEMO_UNDERLYINGS: tuple[DemoUnderlying, ...] = (
    DemoUnderlying("NIFTY", "NIFTY 50", 256265, 1001, 26000.0, 50, 75, True, 0.12),
    DemoUnderlying("BANKNIFTY", "NIFTY BANK", 260105, 1016, 59000.0, 100, 35, False, 0.14),
)
STRIKES_EACH_SIDE = 40
WEEKLY_EXPIRIES = 4
MONTHLY_EXPIRIES = 2
TICK_SIZE = 0.05
RISK_FREE_RATE = 0.065


def last_weekday_of_month(year: int, month: int, weekday: int = TUESDAY) -> dt.date:
    last = dt.date(year, month, calendar.monthrange(year, month)[1])
    return last - dt.timedelta(days=(last.weekday() - weekday) % 7)


def monthly_expiries(*, today: dt.date, count: int, holidays: set[dt.date]) -> list[dt.date]:
    """The next `count` monthly expiries strictly after `today` (holiday-shifted)."""
    result: list[dt.date] = []
    year, month = today.year, today.month
    while len(result) < count:
        expiry = TradingCalendar(holidays).trading_day_on_or_before(last_weekday_of_month(year, month))
        if expiry > today:
            result.append(expiry)
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return result


def weekly_expiries(*, today: dt.date, weeks: int, holidays: set[dt.date]) -> list[dt.date]:
    """Tuesday expiries in the next `weeks` weeks, strictly after `today` (holiday-shifted)."""
    first = today + dt.timedelta(days=(TUESDAY - today.weekday()) % 7 or 7)
    result = []
    for n in range(weeks):
        expiry = TradingCalendar(holidays).trading_day_on_or_before(first + dt.timedelta(weeks=n))
        if expiry > today:
            result.append(expiry)
    return result


def is_monthly_expiry(expiry: dt.date, holidays: set[dt.date]) -> bool:
    monthly = TradingCalendar(holidays).trading_day_on_or_before(last_weekday_of_month(expiry.year, expiry.month))
    return expiry == monthly


def expiries_for(spec: DemoUnderlying, *, today: dt.date, holidays: set[dt.date]) -> list[dt.date]:
    dates = set(monthly_expiries(today=today, count=MONTHLY_EXPIRIES, holidays=holidays))
    if spec.weekly:
        dates.update(weekly_expiries(today=today, weeks=WEEKLY_EXPIRIES, holidays=holidays))
    return sorted(dates)


def option_tradingsymbol(*, name: str, expiry: dt.date, strike: float, option_type: str, monthly: bool) -> str:
    strike_text = f"{strike:g}"
    if monthly:
        return f"{name}{expiry:%y}{expiry.strftime('%b').upper()}{strike_text}{option_type}"
    return f"{name}{expiry:%y}{WEEKLY_MONTH_CODES[expiry.month - 1]}{expiry:%d}{strike_text}{option_type}"


def strikes_for(spec: DemoUnderlying, each_side: int = STRIKES_EACH_SIDE) -> list[float]:
    atm = round(spec.spot / spec.strike_step) * spec.strike_step
    return [float(atm + k * spec.strike_step) for k in range(-each_side, each_side + 1)]


def demo_option_price(*, spot: float, strike: float, years: float, volatility: float, option_type: str) -> float:
    """A Black-Scholes price (no dividends) rounded to the tick, so the demo chain's prices look like a market's."""
    years = max(years, 1.0 / 365.0)
    price = float(bsm_price(spot, strike, years, RISK_FREE_RATE, 0.0, volatility, option_type == "CE"))
    return max(round(round(price / TICK_SIZE) * TICK_SIZE, 2), TICK_SIZE)


def index_row(spec: DemoUnderlying) -> dict:
    """The index instrument as Kite lists it (segment INDICES, exchange NSE)."""
    return {
        "instrument_token": spec.index_token,
        "exchange_token": spec.index_exchange_token,
        "tradingsymbol": spec.index_symbol,
        "name": spec.index_symbol,
        "last_price": spec.spot,
        "expiry": None,
        "strike": 0.0,
        "tick_size": TICK_SIZE,
        "lot_size": 0,
        "instrument_type": "EQ",
        "segment": "INDICES",
        "exchange": "NSE",
        "underlying": spec.underlying,
    }


def option_rows(spec: DemoUnderlying, *, today: dt.date, holidays: Iterable[dt.date]) -> list[dict]:
    """Every CE and PE of the demo chains, without tokens (the caller allocates them)."""
    holiday_set = set(holidays)
    rows = []
    for expiry in expiries_for(spec, today=today, holidays=holiday_set):
        monthly = is_monthly_expiry(expiry, holiday_set)
        years = ((expiry - today).days + 0.25) / 365.0
        for strike in strikes_for(spec):
            for option_type in ("CE", "PE"):
                rows.append(
                    {
                        "tradingsymbol": option_tradingsymbol(
                            name=spec.underlying, expiry=expiry, strike=strike, option_type=option_type, monthly=monthly
                        ),
                        "name": spec.underlying,
                        "last_price": demo_option_price(
                            spot=spec.spot,
                            strike=strike,
                            years=years,
                            volatility=spec.volatility,
                            option_type=option_type,
                        ),
                        "expiry": expiry,
                        "strike": strike,
                        "tick_size": TICK_SIZE,
                        "lot_size": spec.lot_size,
                        "instrument_type": option_type,
                        "segment": "NFO-OPT",
                        "exchange": "NFO",
                        "underlying": spec.underlying,
                    }
                )
    return rows


def nfo_instrument_token(exchange_token: int) -> int:
    """Kite's token layout: exchange_token in the high bits, the segment (NFO = 2) in the low byte."""
    return exchange_token * 256 + 2
