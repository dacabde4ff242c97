"""Split a time range into the chunks Kite's historical API accepts (pure: no Django).

Kite caps the span of one historical request per interval (a Kite staff answer on its developer forum;
core.kite.limits.MAX_DAYS_PER_REQUEST): minute 60 days; 3/5/10minute 100; 15/30minute 200; 60minute 400;
day 2000.
A chunk never spans more than that, and consecutive chunks neither overlap nor leave a hole.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

from core.kite.limits import MAX_DAYS_PER_REQUEST

INTERVAL_SECONDS: dict[str, int] = {
    "minute": 60,
    "3minute": 180,
    "5minute": 300,
    "10minute": 600,
    "15minute": 900,
    "30minute": 1800,
    "60minute": 3600,
    "day": 86400,
}


class UnknownInterval(ValueError):
    pass


def max_span(interval: str) -> dt.timedelta:
    """The longest range one request may cover for `interval`."""
    try:
        return dt.timedelta(days=MAX_DAYS_PER_REQUEST[interval])
    except KeyError:
        raise UnknownInterval(
            f"unknown interval {interval!r}; expected one of {', '.join(MAX_DAYS_PER_REQUEST)}"
        ) from None


def iter_chunks(start: dt.datetime, end: dt.datetime, interval: str) -> Iterator[tuple[dt.datetime, dt.datetime]]:
    """Half-open chunks [a, b) covering [start, end), each at most `max_span(interval)` long."""
    span = max_span(interval)
    cursor = start
    while cursor < end:
        stop = min(cursor + span, end)
        yield cursor, stop
        cursor = stop


def chunk_range(start: dt.datetime, end: dt.datetime, interval: str) -> list[tuple[dt.datetime, dt.datetime]]:
    return list(iter_chunks(start, end, interval))
