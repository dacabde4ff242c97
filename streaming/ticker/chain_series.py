"""A chain's intraday series: one point a minute of market time from the session's start.

Pure Python/numpy. The ticker appends a point (`streaming.contract.SERIES_FIELDS`) at the first
update of each market minute, the chain's snapshot carries the whole session (so a page opened at
14:00 draws the morning), and the loop hands the new points to the injected recorder, which
persists them; after a restart the loop seeds the series back from what was persisted.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from core.calendar import IST

MAX_POINTS = 400  # a session is 375 minutes


class SessionSeries:
    def __init__(self, *, interval_s: float = 60.0) -> None:
        self.interval_s = interval_s
        self.session_day: dt.date | None = None
        # Replaced (never mutated) when a point is added: a published snapshot keeps its own tuple.
        self.points: tuple[tuple[Any, ...], ...] = ()
        self.pending: list[tuple[Any, ...]] = []  # appended, not yet handed to the recorder
        self.version = 0  # +1 whenever `points` changes
        self._last_bucket = -1.0

    def due(self, market_ts: float) -> bool:
        """Whether a point for `market_ts`'s minute is still missing."""
        return self._bucket(market_ts) > self._last_bucket

    def offer(self, market_ts: float, values: tuple[Any, ...]) -> bool:
        """Append `values` (SERIES_FIELDS after `ts`) as the point of `market_ts`'s minute, once per
        minute; a new session day starts a new series. True when appended."""
        bucket = self._bucket(market_ts)
        if bucket <= self._last_bucket:
            return False
        day = dt.datetime.fromtimestamp(bucket, tz=IST).date()
        if day != self.session_day:
            self.session_day, self.points = day, ()
        point = (bucket, *values)
        self.points = (*self.points, point)[-MAX_POINTS:]
        self.pending.append(point)
        self._last_bucket = bucket
        self.version += 1
        return True

    def seed(self, day: dt.date, points: list[tuple[Any, ...]]) -> None:
        """Points persisted earlier for `day` (a restart): merged by time, ours win."""
        if self.session_day not in (None, day):
            return
        ours = {p[0]: p for p in self.points}
        merged = {float(p[0]): tuple(p) for p in points}
        merged.update(ours)
        self.session_day = day
        self.points = tuple(merged[ts] for ts in sorted(merged))[-MAX_POINTS:]
        if self.points:
            self._last_bucket = max(self._last_bucket, float(self.points[-1][0]))
        self.version += 1

    def drain(self) -> list[tuple[Any, ...]]:
        pending, self.pending = self.pending, []
        return pending

    def _bucket(self, market_ts: float) -> float:
        return float(int(market_ts // self.interval_s) * self.interval_s)


__all__ = ["MAX_POINTS", "SessionSeries"]
