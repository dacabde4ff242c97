"""`manage.py runticker [--mode auto|live|mock] [--serve HOST:PORT]`: run the ticker loop.

With `--serve` the ASGI app (admin, API, chain page, websockets) runs under uvicorn in the SAME
process and event loop, so the in-memory channel layer of the embedded mode reaches browsers; in
embedded mode (no REDIS_URL) the periodic jobs then run in process too (history.scheduler). SIGTERM
or SIGINT stops everything within 5 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from streaming.runtime import tune_gc_for_streaming
from streaming.ticker_loop import MODES, LoopConfig, TickerLoop

log = logging.getLogger(__name__)


def parse_host_port(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise CommandError(f"--serve expects HOST:PORT, e.g. 127.0.0.1:8000 (got {value!r})")
    return host.strip("[]"), int(port)


class Command(BaseCommand):
    help = "Stream market data (live Kite or the mock market) into Redis and the channel layer."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--mode", choices=MODES, default=settings.TICKER_MODE)
        parser.add_argument("--serve", metavar="HOST:PORT", help="also serve the web app in this process")
        parser.add_argument(
            "--no-backfill", action="store_true", help="do not ask the history service to backfill at session start"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        serve = parse_host_port(options["serve"]) if options.get("serve") else None
        config = LoopConfig.from_settings(mode=options["mode"], backfill_on_start=not options["no_backfill"])
        asyncio.run(self._main(config, serve))

    async def _main(self, config: LoopConfig, serve: tuple[str, int] | None) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        ticker = TickerLoop(config)
        ticker_task = asyncio.create_task(ticker.run(stop), name="ticker")
        extra: list[asyncio.Task] = []
        server = None
        if serve is not None:
            server = _make_server(*serve)
            extra.append(asyncio.create_task(server.serve(), name="uvicorn"))
            if not settings.REDIS_URL:
                extra.append(asyncio.create_task(_embedded_beat(stop), name="embedded-beat"))
        started = asyncio.create_task(ticker.started.wait())
        await asyncio.wait({started, ticker_task}, return_when=asyncio.FIRST_COMPLETED)
        if ticker_task.done():
            started.cancel()
            ticker_task.result()  # raises the start-up error
            return
        tune_gc_for_streaming()  # once start-up's objects exist (see streaming/runtime.py)
        self.stdout.write(f"runticker ({config.mode}): {ticker.describe()}")
        if serve is not None:
            self.stdout.write(f"serving http://{serve[0]}:{serve[1]}/ in this process")
        await stop.wait()
        if server is not None:
            server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(ticker_task, timeout=config.stop_deadline_s + 0.5)
        if extra:
            _, pending = await asyncio.wait(extra, timeout=1.0)
            for task in pending:
                task.cancel()
        self.stdout.write("runticker stopped")


def _make_server(host: str, port: int) -> Any:
    import uvicorn

    from tickerproject.serve import APP, uvicorn_options

    class _Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self):  # the command owns SIGINT/SIGTERM and stops the server itself
            yield

    # The same options as the Dockerfile's web process (trusted proxies, no per-client compression).
    config = uvicorn.Config(app=APP, host=host, port=port, log_level="info", **uvicorn_options())
    return _Server(config)


async def _embedded_beat(stop: asyncio.Event) -> None:
    """The periodic jobs (reconcile, expiry cleanup, instrument sync, backfill) without a broker."""
    try:
        from history.scheduler import run_embedded_beat
    except ImportError:
        log.warning("history.scheduler is not available: periodic jobs do not run in embedded mode")
        return
    await run_embedded_beat(stop)
