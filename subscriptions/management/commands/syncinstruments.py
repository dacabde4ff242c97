"""`manage.py syncinstruments [--file PATH] [--partial] [--allow-mass-delist]`: load Kite's instruments dump."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from subscriptions.services.instruments import (
    WOULD_DELIST_SHOWN,
    InstrumentDumpUnreadable,
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
        parser.add_argument(
            "--allow-mass-delist",
            action="store_true",
            help="delist the instruments missing from the full dump even when they are more than "
            "INSTRUMENT_SYNC_MAX_DELIST_SHARE of the registry",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        allow = options["allow_mass_delist"]
        try:
            if options["file"]:
                report = instruments_sync_from_file(
                    path=options["file"], full_dump=not options["partial"], allow_mass_delist=allow
                )
            else:
                report = instruments_sync_from_kite(allow_mass_delist=allow)
        except (OSError, NoKiteAccount, InstrumentDumpUnreadable) as exc:
            raise CommandError(str(exc)) from exc
        for line, reason in report.errors[:MAX_ERRORS_SHOWN]:
            self.stderr.write(f"line {line}: {reason}")
        if len(report.errors) > MAX_ERRORS_SHOWN:
            self.stderr.write(f"... and {len(report.errors) - MAX_ERRORS_SHOWN} more bad rows")
        style = self.style.SUCCESS if report.ok else self.style.WARNING
        self.stdout.write(style(f"Instruments: {report.summary()}."))
        if report.delisting_skipped:
            self.stderr.write(f"{report.delisting_skipped}.")
        if report.delist_refused:
            shown = ", ".join(report.would_delist[:WOULD_DELIST_SHOWN])
            more = len(report.would_delist) - WOULD_DELIST_SHOWN
            self.stderr.write(
                f"Would delist {len(report.would_delist)}: {shown}" + (f" and {more} more" if more > 0 else "")
            )
            raise CommandError(
                f"{report.delist_refused}. Check the dump; if the delisting is real, rerun with --allow-mass-delist."
            )
