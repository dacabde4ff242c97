"""`manage.py runschedule`: run the periodic jobs in this process (embedded beat), for setups without
a Celery worker and beat. `runticker --serve` does the same inside the ticker."""

from __future__ import annotations

import signal
import threading
from typing import Any

from django.core.management.base import BaseCommand

from history.scheduler import EmbeddedBeat


class Command(BaseCommand):
    help = "Run the django-celery-beat schedule in process until SIGINT/SIGTERM."

    def handle(self, *args: Any, **options: Any) -> None:
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        beat = EmbeddedBeat().start()
        self.stdout.write("Embedded beat running; Ctrl-C to stop.")
        stop.wait()
        beat.stop()
        self.stdout.write("Stopped.")
