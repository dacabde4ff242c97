"""`manage.py runsimulator [--host 127.0.0.1] [--port 8765] [--rate R] [--seed N]`: serve the Kite
simulator (ticker WebSocket + REST) for the accounts and instruments in the database, until
SIGINT/SIGTERM."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from mocking.simulator.build import build_state_from_db
from mocking.simulator.server import serve_forever
from tickerproject.platform.cli import listen_socket, non_negative_int, port_or_zero, positive_float


class Command(BaseCommand):
    help = "Serve a Kite-compatible simulator (ticker WebSocket + REST) on loopback until SIGINT/SIGTERM."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=port_or_zero, default=8765, help="0 picks a free port (printed)")
        parser.add_argument("--rate", type=positive_float, default=1.0, help="ticks per second per subscribed token")
        parser.add_argument("--seed", type=non_negative_int, default=settings.MOCK_SEED, help="the mock market's seed")

    def handle(self, *args: Any, host: str, port: int, rate: float, seed: int, **options: Any) -> None:
        # call_command(port=..., rate=...) skips argparse's type=, so the values are checked again here.
        port, rate, seed = port_or_zero(port), positive_float(rate), non_negative_int(seed)
        # Bound before the state is built: a busy port or unknown host fails at once, in one line.
        sock = listen_socket(host, port)
        try:
            state = build_state_from_db(seed=seed, ticks_per_second=rate)
        except BaseException:
            sock.close()
            raise

        def announce(bound_port: int) -> None:
            self.stdout.write(
                f"Kite simulator on ws://{host}:{bound_port} (ticker) and http://{host}:{bound_port} (REST): "
                f"{len(state.accounts)} accounts, {len(state.instruments)} instruments, {rate:g} ticks/s per token. "
                "Point KITE_WS_ROOT / KITE_API_ROOT here. Ctrl-C stops it."
            )
            self.stdout.flush()

        serve_forever(state, sock, on_listening=announce)
        self.stdout.write("Kite simulator stopped.")
