"""The chains' stored history, both ways: minute points (the intraday series) out to the recorder, and
what the database holds in (a restarted ticker's earlier points of the session, each bucket chain's
IV history), through the injected `TickerDependencies`; the database calls run in worker threads."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from asgiref.sync import sync_to_async

from core.calendar import IST
from streaming.contract import SERIES_FIELDS
from streaming.ticker.chains import ChainBook
from streaming.ticker.dependencies import ChainHistoryRequest, TickerDependencies

log = logging.getLogger(__name__)


async def sync_chain_history(
    books: list[ChainBook],
    *,
    dependencies: TickerDependencies,
    sessions: int,
    seeded: dict[tuple[str, str], dt.date],
    weeklies: dict[str, bool],
) -> None:
    """Hand the chains' new minute points to the recorder, then load what the database holds:
    a restarted ticker's earlier points of the session, and each bucket chain's IV history."""
    minutes: list[dict[str, Any]] = []
    for book in books:
        for point in book.series.drain():
            minute = dict(zip(("timestamp", *SERIES_FIELDS[1:]), point, strict=True))
            minute.update(
                underlying=book.spec.underlying,
                expiry=book.spec.expiry,
                is_mock=book.is_mock,
                buckets=book.iv_buckets,
            )
            minutes.append(minute)
    if minutes:
        record = sync_to_async(dependencies.chain_minutes_recorder, thread_sensitive=False)
        try:
            await record(minutes=minutes)
        except Exception as exc:  # the database away (a restart): the next minute's go in; these are lost
            log.warning("could not store %d chain minute points: %s: %s", len(minutes), type(exc).__name__, exc)
    started = [book for book in books if book.market_ts > 0]
    if not started:
        return
    days = {book.spec.key: dt.datetime.fromtimestamp(book.market_ts, tz=IST).date() for book in started}
    request = ChainHistoryRequest(
        series=[
            (b.spec.underlying, b.spec.expiry, days[b.spec.key])
            for b in started
            if seeded.get(b.spec.key) != days[b.spec.key]
        ],
        closes=sorted({(b.spec.underlying, bucket, days[b.spec.key]) for b in started for bucket in b.iv_buckets}),
        sessions=sessions,
        mock=any(b.is_mock for b in started),
        weeklies=weeklies,
    )
    load = sync_to_async(dependencies.chain_history_loader, thread_sensitive=False)
    try:
        history = await load(request)
    except Exception as exc:  # the database away: the next pass tries again
        log.warning("could not load the chains' history: %s: %s", type(exc).__name__, exc)
        return
    for book in started:
        key, day = book.spec.key, days[book.spec.key]
        points = history.series.get((book.spec.underlying, book.spec.expiry))
        if points is not None:
            book.series.seed(day, points)
            seeded[key] = day
        if book.iv_bucket is not None:
            book.set_iv_history(history.closes.get((book.spec.underlying, book.iv_bucket), []))


__all__ = ["sync_chain_history"]
