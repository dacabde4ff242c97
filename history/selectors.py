"""Reads of history: what the candles say about an instrument's past, the ATM IV history and the
chains' stored intraday series."""

from __future__ import annotations

import datetime as dt

from django.db.models import Max, OuterRef, Subquery

from core.calendar import IST
from history.models import AtmIvSample, Candle, ChainSeriesPoint
from subscriptions.models import Instrument


def previous_close_oi(*, subscription_ids: list[int], day: dt.date) -> dict[int, float]:
    """Instrument token -> the OI of its latest day candle before `day` (the previous close), for the
    subscriptions' instruments that have one. Mock candles count: in mock mode they are the history."""
    before = dt.datetime.combine(day, dt.time(0, 0), tzinfo=IST)
    found: dict[int, float] = {}
    for start in range(0, len(subscription_ids), 500):
        chunk = subscription_ids[start : start + 500]
        last_oi = (
            Candle.objects.filter(
                instrument=OuterRef("pk"), interval=Candle.Interval.DAY, timestamp__lt=before, oi__isnull=False
            )
            .order_by("-timestamp")
            .values("oi")[:1]
        )
        rows = (
            Instrument.objects.filter(subscriptions__id__in=chunk)
            .annotate(prev_oi=Subquery(last_oi))
            .values_list("instrument_token", "prev_oi")
        )
        found.update({int(token): float(oi) for token, oi in rows if oi is not None})
    return found


def atm_iv_closes(*, underlying: str, bucket: str, before_day: dt.date, sessions: int) -> list[float]:
    """The closing ATM IV (each session's latest sample) of the last `sessions` sessions before
    `before_day` with a sample, oldest first."""
    samples = AtmIvSample.objects.filter(underlying=underlying, bucket=bucket, session_day__lt=before_day)
    days = list(samples.order_by("-session_day").values_list("session_day", flat=True).distinct()[:sessions])
    if not days:
        return []
    latest = samples.filter(session_day__in=days).values("session_day").annotate(last=Max("timestamp"))
    stamps = [row["last"] for row in latest]
    rows = samples.filter(timestamp__in=stamps).order_by("timestamp").values_list("atm_iv", flat=True)
    return [float(v) for v in rows]


def atm_iv_history(*, underlying: str, bucket: str, sessions: int) -> list[tuple[dt.date, float, bool]]:
    """(session day, closing ATM IV, is mock) of the last `sessions` sessions, oldest first (the API)."""
    samples = AtmIvSample.objects.filter(underlying=underlying, bucket=bucket)
    days = list(samples.order_by("-session_day").values_list("session_day", flat=True).distinct()[:sessions])
    latest = samples.filter(session_day__in=days).values("session_day").annotate(last=Max("timestamp"))
    stamps = [row["last"] for row in latest]
    rows = samples.filter(timestamp__in=stamps).order_by("timestamp")
    return [(r.session_day, r.atm_iv, r.is_mock) for r in rows]


SERIES_COLUMNS = (
    "spot", "forward", "atm_strike", "atm_iv", "straddle", "pcr_oi", "ce_oi_change", "pe_oi_change", "net_gex",
)  # fmt: skip


def chain_series_points(*, underlying: str, expiry: dt.date, session_day: dt.date) -> list[tuple[float | None, ...]]:
    """A chain's stored minutes of one session, oldest first: (epoch seconds, *SERIES_COLUMNS)."""
    rows = (
        ChainSeriesPoint.objects.filter(underlying=underlying, expiry=expiry, session_day=session_day)
        .order_by("timestamp")
        .values_list("timestamp", *SERIES_COLUMNS)
    )
    return [(row[0].timestamp(), *row[1:]) for row in rows]
