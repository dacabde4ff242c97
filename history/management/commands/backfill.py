"""`manage.py backfill`: fetch the missing candles of subscribed instruments now, with a progress bar."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from history.models import BackfillRun
from history.services.backfill import HistoricalBootstrapper, backfill_request_check
from history.services.candle_sources import MockCandleSource
from history.services.chunking import MAX_DAYS_PER_REQUEST
from history.tasks import BACKFILL_LOCK
from tickerproject.platform.locks import task_lock

OPTION_NAMES = {"instrument_ids": "--instrument", "days": "--days"}


class Command(BaseCommand):
    help = "Backfill historical candles for subscribed instruments (only what is missing)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--instrument", type=int, action="append", dest="instrument_ids", help="Instrument id")
        parser.add_argument("--interval", action="append", dest="intervals", choices=sorted(MAX_DAYS_PER_REQUEST))
        parser.add_argument("--days", type=int, help="How far back (default settings.HISTORICAL_DAYS)")
        parser.add_argument("--mock", action="store_true", help="Use the mock market even if a live account exists")
        parser.add_argument("--no-progress", action="store_true", help="No progress bar")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            backfill_request_check(instrument_ids=options["instrument_ids"], days=options["days"])
        except ValidationError as exc:
            raise CommandError(
                "; ".join(f"{OPTION_NAMES[field]}: {', '.join(errors)}" for field, errors in exc.message_dict.items())
            ) from None
        # tqdm redraws with carriage returns, so it writes to the raw stream under Django's OutputWrapper.
        stream = getattr(self.stderr, "_out", self.stderr)
        bar = None if options["no_progress"] else tqdm(total=0, unit="req", desc="backfill", file=stream)

        def on_progress(run: BackfillRun, advanced: int) -> None:
            if bar is None:
                return
            bar.total = run.requests_planned
            bar.update(advanced)
            bar.set_postfix(candles=run.candles_written, retries=run.retries, errors=run.errors_count, refresh=False)

        with task_lock(BACKFILL_LOCK, timeout=6 * 3600) as acquired:
            if not acquired:
                raise CommandError("Another backfill is running (see Backfill runs in the admin); try again later.")
            boot = HistoricalBootstrapper(
                source=MockCandleSource() if options["mock"] else None,
                intervals=options["intervals"],
                days=options["days"],
                on_progress=on_progress,
            )
            run = boot.run(instrument_ids=options["instrument_ids"], trigger="command")
        if bar is not None:
            bar.close()
        summary = (
            f"Backfill {run.pk} {run.get_status_display().lower()}: {run.candles_written} candles from {run.source}"
            f" in {run.requests_done} requests, {run.retries} retries, {run.errors_count} errors."
        )
        for error in run.errors[:10]:
            self.stderr.write(f"  {error.get('instrument') or '-'} {error.get('interval')}: {error.get('error')}")
        if run.status == BackfillRun.Status.FAILED:
            raise CommandError(f"{summary} {run.message}")
        self.stdout.write(self.style.SUCCESS(summary) if not run.errors_count else self.style.WARNING(summary))
