"""`manage.py runsimulator [--host 127.0.0.1] [--port 8765] [--rate R] [--seed N]`: serve the Kite
simulator (ticker WebSocket + REST) for the accounts and instruments in the database, until
SIGINT/SIGTERM."""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from mocking.simulator.build import build_state_from_db
from mocking.simulator.server import serve_forever


class Command(BaseCommand):
    help = "Serve a Kite-compatible simulator (ticker WebSocket + REST) on loopback until SIGINT/SIGTERM."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8765, help="0 picks a free port (printed)")
        parser.add_argument("--rate", type=float, default=1.0, help="ticks per second per subscribed token")
        parser.add_argument("--seed", type=int, default=settings.MOCK_SEED, help="the mock market's seed")

    def handle(self, *args, host: str, port: int, rate: float, seed: int, **options) -> None:
        if rate <= 0:
            self.stderr.write("--rate must be positive")
            raise SystemExit(2)
        state = build_state_from_db(seed=seed, ticks_per_second=rate)

        def announce(bound_port: int) -> None:
            self.stdout.write(
                f"Kite simulator on ws://{host}:{bound_port} (ticker) and http://{host}:{bound_port} (REST): "
                f"{len(state.accounts)} accounts, {len(state.instruments)} instruments, {rate:g} ticks/s per token. "
                "Point KITE_WS_ROOT / KITE_API_ROOT here. Ctrl-C stops it."
            )
            self.stdout.flush()

        serve_forever(state, host=host, port=port, on_listening=announce)
        self.stdout.write("Kite simulator stopped.")
