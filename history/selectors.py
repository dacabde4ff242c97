"""Reads of history: what the candles say about an instrument's past."""

from __future__ import annotations

import datetime as dt

from django.db.models import OuterRef, Subquery

from core.calendar import IST
from history.models import Candle
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
