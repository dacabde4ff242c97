"""NSE's calendar: the IST zone, the session's hours, trading days and when a contract expires.

NSE equity derivatives trade 09:15-15:30 IST on weekdays that are not exchange holidays, and an index
option expires at the close (15:30 IST) of its expiry day. IST has no daylight saving, so these are
fixed offsets from UTC. Holidays come from the caller (the `MarketHoliday` table, or none).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

IST = ZoneInfo("Asia/Kolkata")
SESSION_OPEN = time(9, 15)
SESSION_CLOSE = time(15, 30)
SESSION_SECONDS = 6 * 3600 + 15 * 60
# Contracts expire at the close of their expiry day.
EXPIRY_TIME = SESSION_CLOSE


def expiry_datetime(expiry: date) -> datetime:
    """The moment a contract expiring on `expiry` expires: 15:30 IST that day (aware)."""
    return datetime.combine(expiry, EXPIRY_TIME, tzinfo=IST)


class TradingCalendar:
    """Weekdays that are not exchange holidays."""

    def __init__(self, holidays: Iterable[date] = ()) -> None:
        self.holidays = frozenset(holidays)

    def is_trading_day(self, day: date) -> bool:
        return day.weekday() < 5 and day not in self.holidays

    def session_open(self, day: date) -> datetime:
        return datetime.combine(day, SESSION_OPEN, tzinfo=IST)

    def session_close(self, day: date) -> datetime:
        return datetime.combine(day, SESSION_CLOSE, tzinfo=IST)

    def is_open(self, at: datetime) -> bool:
        local = at.astimezone(IST)
        return self.is_trading_day(local.date()) and SESSION_OPEN <= local.time() < SESSION_CLOSE

    def previous_trading_day(self, day: date) -> date:
        """The nearest trading day strictly before `day`."""
        day -= timedelta(days=1)
        while not self.is_trading_day(day):
            day -= timedelta(days=1)
        return day

    def trading_day_on_or_before(self, day: date) -> date:
        """`day` itself if it is a trading day, else the nearest trading day before it."""
        return day if self.is_trading_day(day) else self.previous_trading_day(day)

    def last_session_day(self, at: datetime) -> date:
        """The trading day whose session is running or most recently ran at `at`."""
        local = at.astimezone(IST)
        day = local.date()
        if self.is_trading_day(day) and local.time() >= SESSION_OPEN:
            return day
        return self.previous_trading_day(day)

    def trading_days(self, start: date, end: date) -> list[date]:
        days, day = [], start
        while day <= end:
            if self.is_trading_day(day):
                days.append(day)
            day += timedelta(days=1)
        return days
