"""One underlying's live spot path: where a session opens, its overnight gap, and each step's move."""

from __future__ import annotations

import math
from datetime import date

import numpy as np

from core.calendar import TradingCalendar
from mocking.market.history import underlying_close
from mocking.market.model import TRADING_DAYS_PER_YEAR, gbm_log_return, vol_multiplier
from mocking.market.spec import UnderlyingProfile, stable_hash


class UnderlyingPath:
    """The spot of one underlying, advanced by the model with its own seeded random stream."""

    def __init__(self, profile: UnderlyingProfile, seed: int) -> None:
        self.profile = profile
        self.rng = np.random.default_rng([seed, stable_hash("underlying", profile.name)])
        self.spot = profile.spot
        self.prev_close = profile.spot
        self.session_open = profile.spot
        self.vol_mult = 1.0

    def start_at(self, seed: int, day: date, calendar: TradingCalendar) -> None:
        """Begin where the mock history left off: the previous trading day's close."""
        self.prev_close = underlying_close(seed, self.profile, calendar.previous_trading_day(day))
        # The opening gap: about a third of a day's move (16 ~ sqrt(252)).
        self.spot = self.prev_close * math.exp(float(self.rng.normal(0.0, 0.3 * self.profile.vol / 16.0)))
        self.session_open = self.spot

    def new_session(self) -> None:
        self.prev_close = self.spot
        gap = float(self.rng.normal(0.0, 0.35 * self.profile.vol / math.sqrt(TRADING_DAYS_PER_YEAR)))
        self.spot *= math.exp(gap)
        self.session_open = self.spot
        self.vol_mult = 1.0

    def advance(self, dt: float, session_fraction: float) -> None:
        self.spot *= math.exp(gbm_log_return(self.rng, self.profile, dt, session_fraction, self.vol_mult))
        self.vol_mult = vol_multiplier(math.log(self.spot / self.session_open))
