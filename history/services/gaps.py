"""Which parts of a backfill window still need fetching (pure: no Django).

Coverage is the list of half-open ranges already fetched (with or without candles: an illiquid
option has minutes with no trades, and asking again would only burn the rate limit). The missing
ranges are the window minus that coverage, with the pieces that contain no trading session at all
(nights, weekends, holidays) dropped, because Kite has nothing there.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

from core.calendar import IST, SESSION_CLOSE, SESSION_OPEN, TradingCalendar
from history.services.chunking import INTERVAL_SECONDS

Range = tuple[dt.datetime, dt.datetime]


def merge_ranges(ranges: Iterable[Range]) -> list[Range]:
    """Sorted, non-overlapping ranges; touching ranges are joined."""
    merged: list[Range] = []
    for start, end in sorted(r for r in ranges if r[0] < r[1]):
        if merged and start <= merged[-1][1]:
            if end > merged[-1][1]:
                merged[-1] = (merged[-1][0], end)
        else:
            merged.append((start, end))
    return merged


def subtract_ranges(window: Range, covered: Iterable[Range]) -> list[Range]:
    """`window` minus the union of `covered`, as sorted half-open ranges."""
    start, end = window
    missing: list[Range] = []
    cursor = start
    for c_start, c_end in merge_ranges(covered):
        if c_end <= cursor:
            continue
        if c_start >= end:
            break
        if c_start > cursor:
            missing.append((cursor, c_start))
        cursor = max(cursor, c_end)
        if cursor >= end:
            break
    if cursor < end:
        missing.append((cursor, end))
    return missing


def trading_sessions(start: dt.datetime, end: dt.datetime, holidays: frozenset[dt.date] | set[dt.date]) -> list[Range]:
    """The NSE sessions (09:15-15:30 IST, weekdays, not holidays) that overlap [start, end)."""
    calendar = TradingCalendar(holidays)
    sessions: list[Range] = []
    for day in calendar.trading_days(start.astimezone(IST).date(), end.astimezone(IST).date()):
        lo, hi = max(calendar.session_open(day), start), min(calendar.session_close(day), end)
        if lo < hi:
            sessions.append((lo, hi))
    return sessions


@dataclass(frozen=True)
class Gap:
    """A hole in the coverage (`start`..`end`) and the part of it worth asking Kite for (`fetch_*`:
    from the first to the last trading-session minute inside it)."""

    start: dt.datetime
    end: dt.datetime
    fetch_start: dt.datetime
    fetch_end: dt.datetime


def missing_ranges(
    window: Range,
    covered: Iterable[Range],
    *,
    holidays: frozenset[dt.date] | set[dt.date] = frozenset(),
    interval: str = "minute",
) -> list[Gap]:
    """The holes of `window` not yet covered that contain at least one trading session.

    A hole over a weekend and the following Monday is fetched as Monday's session only, but once
    fetched the whole hole counts as covered, so coverage stays one contiguous range. For day
    candles the fetch starts at midnight IST (their timestamp) when the hole reaches back that far.
    """
    result: list[Gap] = []
    for gap_start, gap_end in subtract_ranges(window, covered):
        sessions = trading_sessions(gap_start, gap_end, holidays)
        if sessions:
            fetch_start = sessions[0][0]
            if interval == "day":  # a day candle is stamped at midnight IST, before the session opens
                midnight = dt.datetime.combine(fetch_start.astimezone(IST).date(), dt.time(0, 0), tzinfo=IST)
                fetch_start = max(gap_start, midnight)
            result.append(Gap(gap_start, gap_end, fetch_start, sessions[-1][1]))
    return result


def last_open_candle_start(now: dt.datetime, interval: str) -> dt.datetime:
    """Start of the candle that may still change at `now` (Kite aligns intraday candles to 09:15 IST,
    day candles to midnight IST). Coverage stops there, so the next run fetches that candle again.
    After the 15:30 close nothing is still forming."""
    local = now.astimezone(IST)
    if local.time() >= SESSION_CLOSE:
        return now  # after the close every candle of the day is final
    if interval == "day":
        return dt.datetime.combine(local.date(), dt.time(0, 0), tzinfo=IST)
    step = INTERVAL_SECONDS[interval]
    session_open = dt.datetime.combine(local.date(), SESSION_OPEN, tzinfo=IST)
    if local < session_open:
        return now
    elapsed = int((local - session_open).total_seconds())
    return session_open + dt.timedelta(seconds=elapsed - elapsed % step)
