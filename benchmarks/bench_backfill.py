"""Backfill: the request rate it holds against the simulator's Kite limit, and candle upsert throughput.

1. Rate: two threads (as two workers) fetch historical chunks through `KiteCandleSource` from the
   simulator (Kite's 3 requests/s per api_key, 429 beyond), sharing one limiter (Redis when
   REDIS_URL is set, else in process). Counted server-side: sustained accepted requests/s
   (target ≥ 2.8 of 3) and the most accepted requests inside any one second (must be ≤ 3).
2. Upserts into PostgreSQL (target ≥ 50,000 candles/s): `candles_upsert` (one unnest statement per
   batch) side by side with Django's `bulk_create(update_conflicts=True)`, fresh rows and a repeat of
   the same rows (which must change nothing). Runs inside a transaction that is rolled back.

`BENCH_BACKFILL_SECONDS` sets the rate measurement's length (default 10).
"""

from __future__ import annotations

import datetime as dt
import os
import threading
import time

from benchmarks.common import emit
from core.calendar import IST, SESSION_OPEN


class _ChunkMarket:
    """Serves a small fixed candle list so the measurement is the request rate, not payload work."""

    def set_instruments(self, specs):
        pass

    def candles(self, token, interval, start, end):
        base = dt.datetime.combine(start.astimezone(IST).date(), SESSION_OPEN, tzinfo=IST)
        return [(base + dt.timedelta(minutes=i), 100.0, 101.0, 99.0, 100.5, 10, None) for i in range(375)]


def bench_rate(seconds: float) -> None:
    from history.rate_limit import historical_rate_limiter
    from history.services.candle_sources import KiteCandleSource, RetryPolicy
    from mocking.market import InstrumentSpec
    from mocking.simulator.rest import rest_stats
    from mocking.simulator.server import start_simulator
    from mocking.simulator.state import SimulatorState
    from subscriptions.models import Instrument

    spec = InstrumentSpec(256265, "NIFTY 50", "NIFTY", "EQ", segment="INDICES", exchange="NSE")
    state = SimulatorState(market=_ChunkMarket(), instruments=[spec], historical_rate_per_second=3.0)
    api_key = f"bench{os.getpid()}"
    state.register_account(api_key, "secret", "token")
    instrument = Instrument(instrument_token=256265, tradingsymbol="NIFTY 50", instrument_type="EQ", exchange="NSE")
    sim = start_simulator(state)
    limiter = historical_rate_limiter(3.0)
    stop = time.monotonic() + seconds
    failures: list[str] = []

    def worker(offset: int) -> None:
        source = KiteCandleSource(
            api_key=api_key, access_token="token", root=sim.http_url, limiter=limiter, retry=RetryPolicy(attempts=8)
        )
        day = dt.datetime(2024, 1, 1, tzinfo=IST) + dt.timedelta(days=offset)
        while time.monotonic() < stop:
            try:
                source.fetch(instrument, "minute", day, day + dt.timedelta(days=1))
            except Exception as exc:  # reported below; a benchmark must not hide failures
                failures.append(f"{type(exc).__name__}: {exc}")
                return
            day += dt.timedelta(days=2)

    try:
        threads = [threading.Thread(target=worker, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sim.stop()
    stats = rest_stats(state)
    accepted = sorted(stats.accepted_times(api_key))
    rejected = sum(1 for _, _, status in stats.historical if status == 429)
    sustained = (len(accepted) - 1) / (accepted[-1] - accepted[0]) if len(accepted) > 1 else 0.0
    emit(
        "backfill_request_rate",
        sustained,
        "req/s",
        baseline=3.0,
        target_min=2.8,
        max_in_any_second=stats.max_in_any_second(api_key),
        limit_per_second=3,
        requests=len(accepted),
        rejected_429=rejected,
        limiter="redis" if type(limiter).__name__ == "RedisRateLimiter" else "local",
        workers=2,
        seconds=seconds,
        failures=failures[:3],
    )


def bench_upsert(total: int = 200_000) -> None:
    from django.db import connection, transaction

    from history.models import Candle
    from history.services import candles as candle_service
    from history.services.candles import CandleRow, candles_upsert
    from subscriptions.models import Instrument

    if connection.vendor != "postgresql":
        emit("candle_upsert_rate", 0, "candles/s", skipped="needs PostgreSQL (DATABASE_URL=postgres://...)")
        return
    start = dt.datetime(2020, 1, 1, 9, 15, tzinfo=IST)
    per_instrument = 50_000
    rows = [
        CandleRow(start + dt.timedelta(minutes=i), 100.0 + i % 7, 101.0 + i % 7, 99.0, 100.5, 1000 + i, 10)
        for i in range(per_instrument)
    ]
    n_instruments = total // per_instrument

    def timed(fn) -> float:
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0

    with transaction.atomic():
        instruments = [
            Instrument.objects.create(
                instrument_token=900_000_000 + i, tradingsymbol=f"BENCHCANDLE{os.getpid()}-{i}", exchange="BENCH"
            )
            for i in range(n_instruments * 2)
        ]
        ours, theirs = instruments[:n_instruments], instruments[n_instruments:]

        def upsert(targets) -> None:
            for instrument in targets:
                candles_upsert(instrument_id=instrument.pk, interval="minute", rows=rows, is_mock=False)

        def bulk_create(targets) -> None:
            for instrument in targets:
                for i in range(0, len(rows), candle_service.UPSERT_BATCH):
                    Candle.objects.bulk_create(
                        [
                            Candle(
                                instrument_id=instrument.pk,
                                interval="minute",
                                timestamp=r.timestamp,
                                open=r.open,
                                high=r.high,
                                low=r.low,
                                close=r.close,
                                volume=r.volume,
                                oi=r.oi,
                                is_mock=False,
                            )
                            for r in rows[i : i + candle_service.UPSERT_BATCH]
                        ],
                        update_conflicts=True,
                        unique_fields=["instrument", "interval", "timestamp"],
                        update_fields=["open", "high", "low", "close", "volume", "oi", "is_mock"],
                    )

        fresh = timed(lambda: upsert(ours))
        fresh_baseline = timed(lambda: bulk_create(theirs))
        repeat = timed(lambda: upsert(ours))
        repeat_baseline = timed(lambda: bulk_create(theirs))
        n = n_instruments * per_instrument
        assert Candle.objects.filter(instrument__in=ours).count() == n
        transaction.set_rollback(True)
    emit(
        "candle_upsert_rate",
        n / fresh,
        "candles/s",
        baseline=n / fresh_baseline,
        target_min=50_000,
        candles=n,
        baseline_name="bulk_create(update_conflicts=True)",
    )
    emit(
        "candle_upsert_repeat_rate",
        n / repeat,
        "candles/s",
        baseline=n / repeat_baseline,
        candles=n,
        note="same rows again: changes nothing",
    )


def main() -> None:
    from django.db import DatabaseError

    bench_rate(float(os.environ.get("BENCH_BACKFILL_SECONDS", "10")))
    try:
        bench_upsert()
    except DatabaseError as exc:  # no database or not migrated: say so instead of a figure
        emit("candle_upsert_rate", 0, "candles/s", skipped=f"database not usable: {exc}"[:300])


if __name__ == "__main__":
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tickerproject.settings")
    django.setup()
    main()
