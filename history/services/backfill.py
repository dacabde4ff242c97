"""The historical bootstrapper: fill the candles missing for subscribed instruments.

For every subscribed instrument and each interval in settings.HISTORICAL_INTERVALS it fetches the
parts of the last settings.HISTORICAL_DAYS not yet covered (history.services.gaps), in chunks Kite
accepts (history.services.chunking), instruments in batches of settings.HISTORICAL_BOOTSTRAP_BATCH.
Every request goes through one rate limiter per api_key shared by all processes
(history.rate_limit); 429, 5xx and network errors are retried with exponential backoff. Progress
and the first errors are kept on a BackfillRun row (admin) and reported to an optional callback
(the `backfill` command's progress bar).

Resumable: each fetched chunk is recorded as coverage right after its candles are written, so a run
cut short (time limit, crash) continues where it stopped. Expired contracts are fetched only up to
their expiry; an instrument with no candles is covered all the same and not asked again; an
instrument Kite refuses (InputException) is given up after one error, not one per chunk.

With no live account (or TICKER_MODE=mock) candles come from the mock market, flagged is_mock; mock
coverage is ignored once a live account exists, so real candles replace the mock ones.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from core.calendar import expiry_datetime
from history.models import BackfillRun, CandleCoverage
from history.services.candle_sources import (
    BackfillCancelled,
    CandleSource,
    InstrumentRejected,
    default_source,
)
from history.services.candles import candles_upsert
from history.services.chunking import iter_chunks, max_span
from history.services.gaps import Gap, last_open_candle_start, merge_ranges, missing_ranges
from subscriptions.models import Instrument, MarketHoliday, Subscription

logger = logging.getLogger(__name__)


@dataclass
class WorkItem:
    instrument: Instrument
    interval: str
    gap: Gap
    chunks: list[tuple[dt.datetime, dt.datetime]] = field(default_factory=list)


def expiry_close(instrument: Instrument) -> dt.datetime | None:
    if instrument.expiry is None:
        return None
    return expiry_datetime(instrument.expiry)


def plan_work(
    *,
    instruments: Sequence[Instrument],
    intervals: Sequence[str],
    days: int,
    now: dt.datetime,
    coverage: dict[tuple[int, str], list[tuple[dt.datetime, dt.datetime]]],
    holidays: set[dt.date],
) -> list[WorkItem]:
    """What to fetch: per instrument and interval, the gaps of its window and their chunks."""
    items: list[WorkItem] = []
    window_start = now - dt.timedelta(days=days)
    for instrument in instruments:
        closes = expiry_close(instrument)
        window_end = min(now, closes) if closes else now
        if window_end <= window_start:
            continue  # expired before the window: nothing Kite still serves
        for interval in intervals:
            max_span(interval)  # unknown intervals fail loudly here, before any request
            covered = coverage.get((instrument.pk, interval), [])
            for gap in missing_ranges((window_start, window_end), covered, holidays=holidays, interval=interval):
                chunks = list(iter_chunks(gap.fetch_start, gap.fetch_end, interval))
                items.append(WorkItem(instrument, interval, gap, chunks))
    return items


def load_coverage(
    *, instrument_ids: Iterable[int], include_mock: bool
) -> dict[tuple[int, str], list[tuple[dt.datetime, dt.datetime]]]:
    coverage: dict[tuple[int, str], list[tuple[dt.datetime, dt.datetime]]] = defaultdict(list)
    rows = CandleCoverage.objects.filter(instrument_id__in=list(instrument_ids))
    if not include_mock:
        rows = rows.filter(is_mock=False)
    for instrument_id, interval, start, end in rows.values_list("instrument_id", "interval", "start", "end"):
        coverage[(instrument_id, interval)].append((start, end))
    return coverage


def coverage_record(*, instrument_id: int, interval: str, start: dt.datetime, end: dt.datetime, is_mock: bool) -> None:
    """Add a fetched range and merge it with the ranges it touches (same mock flag)."""
    if end <= start:
        return
    with transaction.atomic():
        touching = list(
            CandleCoverage.objects.select_for_update().filter(
                instrument_id=instrument_id, interval=interval, is_mock=is_mock, start__lte=end, end__gte=start
            )
        )
        merged = merge_ranges([(start, end), *((c.start, c.end) for c in touching)])
        CandleCoverage.objects.filter(pk__in=[c.pk for c in touching]).delete()
        CandleCoverage.objects.bulk_create(
            CandleCoverage(instrument_id=instrument_id, interval=interval, start=s, end=e, is_mock=is_mock)
            for s, e in merged
        )


def subscribed_instruments(*, instrument_ids: Iterable[int] | None = None) -> list[Instrument]:
    qs = Instrument.objects.filter(
        pk__in=Subscription.objects.filter(is_active=True).values("instrument_id"), delisted_at__isnull=True
    )
    if instrument_ids is not None:
        qs = qs.filter(pk__in=list(instrument_ids))
    return list(qs.order_by("pk"))


# Kite's archive reaches back "several years"; no contract this service follows (index options live
# for months) has candles older than 20 years, and the bound keeps `now - days` far inside datetime's range.
HISTORY_MAX_DAYS = 20 * 365

_MAX_ID = 2**63 - 1  # a BigAutoField; larger values cannot be an id (and overflow SQLite's integer)


def backfill_request_check(*, instrument_ids: Iterable[int] | None = None, days: int | None = None) -> None:
    """Raise ValidationError (field errors on `instrument_ids` and `days`) unless every id is a
    subscribed, listed instrument and `days` is within 1..HISTORY_MAX_DAYS; a backfill asked for an
    instrument it would skip would otherwise report success having done nothing."""
    errors: dict[str, list[str]] = {}
    if days is not None and not 1 <= days <= HISTORY_MAX_DAYS:
        errors["days"] = [f"must be between 1 and {HISTORY_MAX_DAYS} (20 years), got {days}"]
    if instrument_ids is not None:
        wanted = sorted(set(instrument_ids))
        valid = [pk for pk in wanted if 0 < pk <= _MAX_ID]
        subscribed = {x.pk for x in subscribed_instruments(instrument_ids=valid)}
        known = dict(Instrument.objects.filter(pk__in=valid).values_list("pk", "tradingsymbol"))
        by_token = dict(Instrument.objects.filter(instrument_token__in=valid).values_list("instrument_token", "pk"))
        messages = []
        for pk in wanted:
            if pk in subscribed:
                continue
            if pk in known:
                messages.append(f"instrument {pk} ({known[pk]}) has no active subscription or is delisted")
            elif pk in by_token:
                messages.append(f"no instrument with id {pk} (it is the instrument token of id {by_token[pk]})")
            else:
                messages.append(f"no instrument with id {pk}")
        if messages:
            errors["instrument_ids"] = messages
    if errors:
        raise ValidationError(errors)


ProgressCallback = Callable[[BackfillRun, int], None]


class HistoricalBootstrapper:
    """Runs one backfill and records it on a BackfillRun."""

    PROGRESS_SAVE_EVERY_S = 2.0

    def __init__(
        self,
        *,
        source: CandleSource | None = None,
        intervals: Sequence[str] | None = None,
        days: int | None = None,
        batch_size: int | None = None,
        now: dt.datetime | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> None:
        self.source = source or default_source()
        self.intervals = list(intervals or settings.HISTORICAL_INTERVALS)
        self.days = days if days is not None else settings.HISTORICAL_DAYS
        self.batch_size = max(1, batch_size or settings.HISTORICAL_BOOTSTRAP_BATCH)
        self.now = now
        self.on_progress = on_progress
        self._last_save = 0.0
        self._failed_instruments: set[int] = set()

    def run(self, *, instrument_ids: Iterable[int] | None = None, trigger: str = "", run: BackfillRun | None = None):
        """Backfill the subscribed instruments (or only `instrument_ids` among them); return the run."""
        now = self.now or timezone.now()
        run = run or BackfillRun.objects.create(trigger=trigger[:64])
        run.status = BackfillRun.Status.RUNNING
        run.source = self.source.name
        run.started_at = timezone.now()
        run.save(update_fields=["status", "source", "started_at"])
        try:
            self._run(run, now, instrument_ids)
        except SoftTimeLimitExceeded:
            # Coverage is recorded chunk by chunk, so the next run resumes from here.
            run.status = BackfillRun.Status.PARTIAL
            run.message = "stopped at the task's time limit; the next backfill continues where this one stopped"
        except BackfillCancelled as exc:  # asked to stop: not a failure, nothing to trace
            logger.info("backfill %s stopped early: %s", run.pk, exc)
            run.status = BackfillRun.Status.PARTIAL
            run.message = f"stopped early ({exc}); the next backfill continues where this one stopped"[:2000]
        except Exception as exc:
            logger.exception("backfill %s failed", run.pk)
            run.status = BackfillRun.Status.FAILED
            run.message = f"{type(exc).__name__}: {exc}"[:2000]
            self._add_error(run, None, "", str(run.message))
        else:
            run.status = BackfillRun.Status.PARTIAL if run.errors_count else BackfillRun.Status.SUCCEEDED
        finally:
            run.finished_at = timezone.now()
            run.save()
        return run

    def _run(self, run: BackfillRun, now: dt.datetime, instrument_ids: Iterable[int] | None) -> None:
        instruments = subscribed_instruments(instrument_ids=instrument_ids)
        holidays = set(MarketHoliday.objects.filter(exchange="NSE").values_list("date", flat=True))
        run.instruments_total = len(instruments)
        plans: list[list[WorkItem]] = []
        for i in range(0, len(instruments), self.batch_size):
            batch = instruments[i : i + self.batch_size]
            coverage = load_coverage(instrument_ids=[x.pk for x in batch], include_mock=self.source.is_mock)
            plans.append(
                plan_work(
                    instruments=batch,
                    intervals=self.intervals,
                    days=self.days,
                    now=now,
                    coverage=coverage,
                    holidays=holidays,
                )
            )
        run.requests_planned = sum(len(w.chunks) for items in plans for w in items)
        run.save(update_fields=["instruments_total", "requests_planned"])
        self._report(run, 0)
        for b, items in enumerate(plans):
            for item in items:
                self._fill(run, item, now)
            run.instruments_done = min(run.instruments_total, (b + 1) * self.batch_size)
            self._save_progress(run, force=True)
        run.instruments_done = run.instruments_total
        if not run.errors_count:
            run.message = (
                f"{run.candles_written} candles written from {run.source} in {run.requests_done} requests"
                f" ({run.empty_ranges} empty)"
            )

    def _fill(self, run: BackfillRun, item: WorkItem, now: dt.datetime) -> None:
        instrument = item.instrument
        open_candle = last_open_candle_start(now, item.interval)
        for index, (chunk_start, chunk_end) in enumerate(item.chunks):
            if instrument.pk in self._failed_instruments:
                run.requests_done += 1  # given up: count it as handled so progress reaches 100 %
                self._report(run, 1)
                continue
            retries_before = getattr(self.source, "retries", 0)
            try:
                rows = self.source.fetch(instrument, item.interval, chunk_start, chunk_end)
            except InstrumentRejected as exc:
                self._failed_instruments.add(instrument.pk)
                self._add_error(run, instrument, item.interval, f"rejected by {self.source.name}: {exc}")
                run.requests_done += 1
                self._report(run, 1)
                continue
            finally:
                run.retries += getattr(self.source, "retries", 0) - retries_before
            written = candles_upsert(
                instrument_id=instrument.pk, interval=item.interval, rows=rows, is_mock=self.source.is_mock
            )
            run.candles_written += written
            run.empty_ranges += 0 if rows else 1
            covered_from = item.gap.start if index == 0 else chunk_start
            covered_to = item.gap.end if index == len(item.chunks) - 1 else chunk_end
            coverage_record(
                instrument_id=instrument.pk,
                interval=item.interval,
                start=covered_from,
                end=min(covered_to, open_candle),
                is_mock=self.source.is_mock,
            )
            run.requests_done += 1
            self._report(run, 1)

    def _add_error(self, run: BackfillRun, instrument: Instrument | None, interval: str, message: str) -> None:
        run.errors_count += 1
        if len(run.errors) < BackfillRun.MAX_ERRORS_KEPT:
            run.errors.append(
                {
                    "instrument": str(instrument) if instrument else "",
                    "instrument_id": instrument.pk if instrument else None,
                    "interval": interval,
                    "error": message[:500],
                    "at": timezone.now().isoformat(),
                }
            )
        logger.warning("backfill %s: %s %s: %s", run.pk, instrument or "-", interval, message)

    def _report(self, run: BackfillRun, advanced: int) -> None:
        if self.on_progress is not None:
            self.on_progress(run, advanced)
        self._save_progress(run)

    def _save_progress(self, run: BackfillRun, *, force: bool = False) -> None:
        if force or time.monotonic() - self._last_save >= self.PROGRESS_SAVE_EVERY_S:
            self._last_save = time.monotonic()
            run.save(
                update_fields=[
                    "instruments_done",
                    "requests_done",
                    "retries",
                    "candles_written",
                    "empty_ranges",
                    "errors_count",
                    "errors",
                ]
            )


def backfill_run(
    *,
    instrument_ids: Iterable[int] | None = None,
    trigger: str = "",
    source: CandleSource | None = None,
    on_progress: ProgressCallback | None = None,
    now: dt.datetime | None = None,
) -> BackfillRun:
    """Backfill the subscribed instruments (all, or those in `instrument_ids`)."""
    return HistoricalBootstrapper(source=source, on_progress=on_progress, now=now).run(
        instrument_ids=instrument_ids, trigger=trigger
    )
