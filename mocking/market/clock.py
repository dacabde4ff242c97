"""The session clock the mock market runs on (the calendar itself is `core.calendar`).

During NSE market hours (09:15-15:30 IST, weekdays that are not holidays) the clock is the real IST
time. Otherwise it plays a simulated session of the most recent trading day, starting at its open when
the simulation starts and looping over the session, so a demo at night still moves; time to expiry is
computed from this clock.
"""

from __future__ import annotations

import time as _time
from collections.abc import Callable, Iterable
from datetime import date, datetime, timedelta

from core.calendar import IST, SESSION_SECONDS, TradingCalendar


class SessionClock:
    """Market time for the mock: real IST time during market hours, a simulated session otherwise."""

    def __init__(
        self,
        *,
        holidays: Iterable[date] = (),
        now_fn: Callable[[], float] = _time.time,
        simulated_speed: float = 1.0,
    ) -> None:
        if simulated_speed <= 0:
            raise ValueError("simulated_speed must be positive")
        self.calendar = TradingCalendar(holidays)
        self.holidays = self.calendar.holidays
        self._now_fn = now_fn
        self._speed = simulated_speed
        self._anchor_wall: float | None = None
        self._anchor_day: date | None = None

    @property
    def is_simulated(self) -> bool:
        return not self.calendar.is_open(datetime.fromtimestamp(self._now_fn(), IST))

    def now(self) -> datetime:
        wall = self._now_fn()
        wall_dt = datetime.fromtimestamp(wall, IST)
        if self.calendar.is_open(wall_dt):
            self._anchor_wall = None
            return wall_dt
        day = self.calendar.last_session_day(wall_dt)
        if self._anchor_wall is None or self._anchor_day != day:
            self._anchor_wall, self._anchor_day = wall, day
        offset = ((wall - self._anchor_wall) * self._speed) % SESSION_SECONDS
        return self.calendar.session_open(day) + timedelta(seconds=offset)

    def timestamp(self) -> float:
        return self.now().timestamp()
