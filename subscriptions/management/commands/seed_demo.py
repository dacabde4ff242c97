"""`manage.py seed_demo`: demo data for a fresh database; running it again changes nothing."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from subscriptions.services.demo import ADMIN_USERNAME, demo_seed


class Command(BaseCommand):
    help = "Create the admin user, the mock account, NIFTY/BANKNIFTY option chains and active subscriptions."

    def handle(self, *args: Any, **options: Any) -> None:
        report = demo_seed()
        if report.admin_password:
            # Printed once, on creation: it is not stored anywhere in clear.
            self.stdout.write(self.style.WARNING(f"Admin user created: {ADMIN_USERNAME} / {report.admin_password}"))
            self.stdout.write("Write the password down now; it will not be shown again.")
        if report.account_created:
            self.stdout.write("Mock trading account created.")
        for note in report.notes:
            self.stdout.write(note)
        if report.changed:
            self.stdout.write(
                self.style.SUCCESS(
                    f"Demo data: {report.instruments_created} instruments and "
                    f"{report.subscriptions_created} subscriptions added."
                )
            )
        else:
            self.stdout.write("Demo data already present: nothing changed.")
