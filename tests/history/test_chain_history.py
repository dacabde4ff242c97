"""The chain analytics' history: minute points stored, closes read back, the mock IV history, pruning."""

from __future__ import annotations

import datetime as dt
import math

import pytest

from core.calendar import IST, TradingCalendar
from history.models import AtmIvSample, ChainSeriesPoint
from history.selectors import atm_iv_closes, chain_series_points
from history.services.chain_history import (
    ChainMinute,
    atm_iv_backfill_mock,
    bucket_expiry,
    chain_history_prune,
    chain_minutes_record,
)
from mocking.market import plausible_profile

pytestmark = pytest.mark.django_db
EXPIRY = dt.date(2026, 12, 1)


def _minute(ts: dt.datetime, iv: float, buckets=("weekly",)) -> ChainMinute:
    return ChainMinute(
        underlying="NIFTY", expiry=EXPIRY, timestamp=ts.timestamp(), spot=26000.0, forward=26010.0,
        atm_strike=26000.0, atm_iv=iv, straddle=250.0, pcr_oi=0.9, ce_oi_change=1000.0, pe_oi_change=-500.0,
        net_gex=1.5e9, is_mock=True, buckets=buckets,
    )  # fmt: skip


def test_minutes_are_stored_once_and_each_sessions_latest_sample_is_its_close():
    days = [dt.date(2026, 11, 23), dt.date(2026, 11, 24), dt.date(2026, 11, 25)]
    minutes = []
    for n, day in enumerate(days):
        for k, clock in enumerate((dt.time(10, 0), dt.time(15, 29), dt.time(12, 0))):
            minutes.append(_minute(dt.datetime.combine(day, clock, tzinfo=IST), 0.10 + n / 100 + k / 1000))
    assert chain_minutes_record(minutes=minutes) == 9
    chain_minutes_record(minutes=minutes[:2])  # a restarted ticker writes a minute again: no duplicate
    assert ChainSeriesPoint.objects.count() == 9 and AtmIvSample.objects.count() == 9
    # The 15:29 sample of each day is its close (k = 1): 0.101, 0.111; 25 Nov is "today", excluded.
    closes = atm_iv_closes(underlying="NIFTY", bucket="weekly", before_day=days[2], sessions=252)
    assert closes == pytest.approx([0.101, 0.111])
    assert atm_iv_closes(underlying="NIFTY", bucket="weekly", before_day=days[2], sessions=1) == pytest.approx([0.111])
    assert atm_iv_closes(underlying="NIFTY", bucket="monthly", before_day=days[2], sessions=252) == []
    points = chain_series_points(underlying="NIFTY", expiry=EXPIRY, session_day=days[0])
    assert [p[0] for p in points] == sorted(p[0] for p in points) and len(points) == 3
    assert points[0][1:] == (26000.0, 26010.0, 26000.0, 0.1, 250.0, 0.9, 1000.0, -500.0, 1.5e9)


def test_mock_iv_history_fills_only_missing_sessions_with_the_mock_surface():
    before = dt.date(2026, 11, 25)
    chain_minutes_record(minutes=[_minute(dt.datetime(2026, 11, 24, 15, 29, tzinfo=IST), 0.5)])
    written = atm_iv_backfill_mock(
        underlying="NIFTY", bucket="weekly", before_day=before, sessions=20, weeklies=True, holidays=set(), seed=7
    )
    assert written == 19  # 24 Nov already had a (live) sample
    closes = atm_iv_closes(underlying="NIFTY", bucket="weekly", before_day=before, sessions=20)
    assert len(closes) == 20 and closes[-1] == 0.5
    assert (
        atm_iv_backfill_mock(
            underlying="NIFTY", bucket="weekly", before_day=before, sessions=20, weeklies=True, holidays=set(), seed=7
        )
        == 0
    )
    # By hand for one session: the ATM level of the mock surface, base x (1 + 0.22 e^(-t/0.04) +
    # 0.06 e^(-t/0.35)) with t from that day's close to its weekly expiry, base = NIFTY's 13 % x the
    # day's leverage multiplier (0.7 to 1.6).
    sample = AtmIvSample.objects.get(underlying="NIFTY", bucket="weekly", session_day=dt.date(2026, 11, 20))
    assert sample.expiry == dt.date(2026, 11, 24)  # the Tuesday after that Friday
    t = (dt.datetime(2026, 11, 24, 15, 30, tzinfo=IST) - dt.datetime(2026, 11, 20, 15, 30, tzinfo=IST)).days / 365
    level = 1 + 0.22 * math.exp(-t / 0.04) + 0.06 * math.exp(-t / 0.35)
    base = plausible_profile("NIFTY").vol
    assert 0.7 * base * level - 1e-9 <= sample.atm_iv <= 1.6 * base * level + 1e-9
    assert len({round(v, 6) for v in closes}) > 5  # it varies from session to session


def test_bucket_expiries_follow_the_nse_calendar():
    friday = dt.date(2026, 11, 20)
    assert bucket_expiry(day=friday, bucket="weekly", weeklies=True, holidays=set()) == dt.date(2026, 11, 24)
    assert bucket_expiry(day=friday, bucket="monthly", weeklies=True, holidays=set()) == dt.date(2026, 11, 24)
    assert bucket_expiry(day=dt.date(2026, 11, 25), bucket="monthly", weeklies=True, holidays=set()) == dt.date(
        2026, 12, 29
    )
    # Without weeklies the weekly bucket is the monthly; an expiry Tuesday counts for its own day.
    tuesday = dt.date(2026, 11, 10)
    assert bucket_expiry(day=tuesday, bucket="weekly", weeklies=False, holidays=set()) == dt.date(2026, 11, 24)
    assert bucket_expiry(day=tuesday, bucket="weekly", weeklies=True, holidays=set()) == tuesday
    assert bucket_expiry(day=dt.date(2026, 11, 9), bucket="weekly", weeklies=True, holidays={tuesday}) == dt.date(
        2026, 11, 9
    )  # a holiday moves the expiry to the trading day before


def test_prune_keeps_recent_minutes_and_old_closes_only():
    today = dt.date(2026, 11, 25)
    calendar = TradingCalendar()
    old_day = calendar.trading_day_on_or_before(today - dt.timedelta(days=40))
    recent_day = calendar.previous_trading_day(today)
    minutes = [
        _minute(dt.datetime.combine(day, clock, tzinfo=IST), 0.12)
        for day in (old_day, recent_day)
        for clock in (dt.time(10, 0), dt.time(15, 29))
    ]
    chain_minutes_record(minutes=minutes)
    AtmIvSample.objects.create(
        underlying="NIFTY", bucket="weekly", expiry=EXPIRY, session_day=dt.date(2025, 1, 2),
        timestamp=dt.datetime(2025, 1, 2, 15, 29, tzinfo=IST), atm_iv=0.2,
    )  # fmt: skip
    deleted = chain_history_prune(today=today)
    assert deleted == {"series_points": 2, "iv_closes": 1, "iv_minutes": 1}
    kept = AtmIvSample.objects.order_by("timestamp").values_list("session_day", "timestamp")
    assert [(d, ts.astimezone(IST).time()) for d, ts in kept] == [
        (old_day, dt.time(15, 29)),
        (recent_day, dt.time(10, 0)),
        (recent_day, dt.time(15, 29)),
    ]
