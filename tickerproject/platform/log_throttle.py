"""A logging filter that lets one record of a kind through per interval and counts the rest.

channels-redis logs "N of M channels over capacity in group G" at INFO on every group send that
finds a member's queue full. The ticker sends each chain's delta up to 20 times a second, so one web
process that died without leaving its groups (their memberships last until the layer's group expiry)
or one that cannot keep up turned into tens of log lines a second. The first line of a kind still goes
out at once; the next one after `interval_s` says how many were held back in between.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable


class ThrottleRepeatsFilter(logging.Filter):
    """Passes the first record per (logger, message template, level, last argument) and then at most
    one per `interval_s`, appending "(N similar suppressed)". The last argument is part of the kind
    because channels-redis puts the group there: each group's trouble is reported. With
    `per_argument=False` it is not: lines about what clients send (the argument is whatever they sent)
    pass once per interval however much the input varies."""

    def __init__(
        self, interval_s: float = 60.0, clock: Callable[[], float] = time.monotonic, *, per_argument: bool = True
    ) -> None:
        super().__init__()
        self.interval_s = interval_s
        self.per_argument = per_argument
        self._clock = clock
        self._kinds: dict[tuple, tuple[float, int]] = {}  # kind -> (last passed at, suppressed since)

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args if isinstance(record.args, tuple) else ()
        try:
            kind = (record.name, str(record.msg), record.levelno, args[-1] if args and self.per_argument else None)
            hash(kind)
        except TypeError:  # an unhashable argument: never hold a record back for it
            return True
        now = self._clock()
        last = self._kinds.get(kind)
        if last is not None and now - last[0] < self.interval_s:
            self._kinds[kind] = (last[0], last[1] + 1)
            return False
        suppressed = last[1] if last is not None else 0
        if len(self._kinds) > 10_000:  # bounded: forget the kinds seen so far, not the record
            self._kinds.clear()
        self._kinds[kind] = (now, 0)
        if suppressed and last is not None:
            record.msg = f"{record.msg} ({suppressed} similar suppressed in the last %.0f s)"
            record.args = (*args, now - last[0])
        return True
