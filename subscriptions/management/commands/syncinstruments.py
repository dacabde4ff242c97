"""`manage.py syncinstruments [--file PATH] [--partial]`: load Kite's instruments dump."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from subscriptions.services.instruments import (
    NoKiteAccount,
    instruments_sync_from_file,
    instruments_sync_from_kite,
)

MAX_ERRORS_SHOWN = 100


class Command(BaseCommand):
    help = "Upsert instruments from Kite's dump (downloaded with a logged-in account, or from --file)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--file", help="a CSV in Kite's instruments format instead of downloading it")
        parser.add_argument(
            "--partial",
            action="store_true",
            help="the file is not a full dump: do not mark instruments missing from it as delisted",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            if options["file"]:
                report = instruments_sync_from_file(path=options["file"], full_dump=not options["partial"])
            else:
                report = instruments_sync_from_kite()
        except (OSError, NoKiteAccount) as exc:
            raise CommandError(str(exc)) from exc
        for line, reason in report.errors[:MAX_ERRORS_SHOWN]:
            self.stderr.write(f"line {line}: {reason}")
        if len(report.errors) > MAX_ERRORS_SHOWN:
            self.stderr.write(f"... and {len(report.errors) - MAX_ERRORS_SHOWN} more bad rows")
        style = self.style.SUCCESS if report.ok else self.style.WARNING
        self.stdout.write(style(f"Instruments: {report.summary()}."))
