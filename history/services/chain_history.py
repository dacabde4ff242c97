"""Writes of the chain analytics' history: the ticker's minute points (a chain's intraday series and
the ATM IV of the nearest weekly/monthly expiry), the mock IV history, and the pruning policy.

The ticker hands its points over once a minute through the injected recorder
(`tickerproject.ticker_wiring`), on a worker thread: one bulk insert per model, conflicts ignored
(a restarted ticker may write a minute again).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from django.db import transaction
from django.db.models import Max

from core.calendar import IST, TradingCalendar
from history.models import AtmIvSample, ChainSeriesPoint
from mocking.market import mock_atm_iv_close, plausible_profile
from subscriptions.demo import monthly_expiries, weekly_expiries

# Pruning policy: intraday series for a week, ATM IV minute samples for 30 days (after that only each
# session's close stays), closes for 400 days (N = 252 sessions with room to spare).
SERIES_KEEP_DAYS = 7
IV_MINUTES_KEEP_DAYS = 30
IV_CLOSES_KEEP_DAYS = 400


@dataclass(frozen=True)
class ChainMinute:
    """One minute of one chain, as the ticker reports it."""

    underlying: str
    expiry: dt.date
    timestamp: float  # epoch seconds, the start of the market minute
    spot: float | None
    forward: float | None
    atm_strike: float | None
    atm_iv: float | None
    straddle: float | None
    pcr_oi: float | None
    ce_oi_change: float | None
    pe_oi_change: float | None
    net_gex: float | None
    is_mock: bool
    buckets: tuple[str, ...] = ()  # the IV-history buckets this chain stands for


def chain_minutes_record(*, minutes: Sequence[ChainMinute]) -> int:
    """Store the minutes (series points, and ATM IV samples for the bucket chains); returns the
    series points offered."""
    points: list[ChainSeriesPoint] = []
    samples: list[AtmIvSample] = []
    for m in minutes:
        stamp = dt.datetime.fromtimestamp(m.timestamp, tz=dt.UTC)
        day = stamp.astimezone(IST).date()
        points.append(
            ChainSeriesPoint(
                underlying=m.underlying,
                expiry=m.expiry,
                session_day=day,
                timestamp=stamp,
                spot=m.spot,
                forward=m.forward,
                atm_strike=m.atm_strike,
                atm_iv=m.atm_iv,
                straddle=m.straddle,
                pcr_oi=m.pcr_oi,
                ce_oi_change=m.ce_oi_change,
                pe_oi_change=m.pe_oi_change,
                net_gex=m.net_gex,
                is_mock=m.is_mock,
            )
        )
        if m.atm_iv is not None:
            samples.extend(
                AtmIvSample(
                    underlying=m.underlying,
                    bucket=bucket,
                    expiry=m.expiry,
                    session_day=day,
                    timestamp=stamp,
                    atm_iv=m.atm_iv,
                    is_mock=m.is_mock,
                )
                for bucket in m.buckets
            )
    with transaction.atomic():
        ChainSeriesPoint.objects.bulk_create(points, ignore_conflicts=True, batch_size=500)
        AtmIvSample.objects.bulk_create(samples, ignore_conflicts=True, batch_size=500)
    return len(points)


def bucket_expiry(*, day: dt.date, bucket: str, weeklies: bool, holidays: set[dt.date]) -> dt.date:
    """The expiry a bucket stood for on `day` (NSE's calendar: Tuesday weeklies, last-Tuesday monthlies,
    a holiday moving either to the trading day before): the nearest on or after `day`."""
    before = day - dt.timedelta(days=1)
    if bucket == AtmIvSample.Bucket.WEEKLY and weeklies:
        return weekly_expiries(today=before, weeks=1, holidays=holidays)[0]
    return monthly_expiries(today=before, count=1, holidays=holidays)[0]


def atm_iv_backfill_mock(
    *,
    underlying: str,
    bucket: str,
    before_day: dt.date,
    sessions: int,
    weeklies: bool,
    holidays: set[dt.date],
    seed: int,
) -> int:
    """The closing ATM IV of each of the `sessions` trading days before `before_day` that has no sample
    yet, from the mock history (`mocking.market.mock_atm_iv_close`); returns the samples written."""
    calendar = TradingCalendar(holidays)
    days: list[dt.date] = []
    day = before_day
    while len(days) < sessions:
        day = calendar.previous_trading_day(day)
        days.append(day)
    have = set(
        AtmIvSample.objects.filter(underlying=underlying, bucket=bucket, session_day__in=days).values_list(
            "session_day", flat=True
        )
    )
    profile = plausible_profile(underlying)
    samples = []
    for day in days:
        if day in have:
            continue
        expiry = bucket_expiry(day=day, bucket=bucket, weeklies=weeklies, holidays=holidays)
        closed = dt.datetime.combine(day, dt.time(15, 29), tzinfo=IST)
        samples.append(
            AtmIvSample(
                underlying=underlying,
                bucket=bucket,
                expiry=expiry,
                session_day=day,
                timestamp=closed,
                atm_iv=mock_atm_iv_close(seed, profile, day, expiry),
                is_mock=True,
            )
        )
    AtmIvSample.objects.bulk_create(samples, ignore_conflicts=True, batch_size=500)
    return len(samples)


def chain_history_prune(*, today: dt.date) -> dict[str, int]:
    """Apply the pruning policy (module constants); returns the rows deleted per kind."""
    series, _ = ChainSeriesPoint.objects.filter(session_day__lt=today - dt.timedelta(days=SERIES_KEEP_DAYS)).delete()
    closes, _ = AtmIvSample.objects.filter(session_day__lt=today - dt.timedelta(days=IV_CLOSES_KEEP_DAYS)).delete()
    minutes = 0
    old = AtmIvSample.objects.filter(session_day__lt=today - dt.timedelta(days=IV_MINUTES_KEEP_DAYS))
    closes_kept = old.values("underlying", "bucket", "session_day").annotate(last=Max("timestamp"))
    # One delete per (underlying, bucket, session) that still has minutes; after the first run that
    # is a day's worth of groups a day.
    for row in closes_kept:
        deleted, _ = (
            old.filter(underlying=row["underlying"], bucket=row["bucket"], session_day=row["session_day"])
            .exclude(timestamp=row["last"])
            .delete()
        )
        minutes += deleted
    return {"series_points": series, "iv_closes": closes, "iv_minutes": minutes}
