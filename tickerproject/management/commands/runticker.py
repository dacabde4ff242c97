"""`manage.py runticker [--mode auto|live|mock] [--serve HOST:PORT]`: run the ticker loop.

With `--serve` the ASGI app (admin, API, chain page, websockets) runs under uvicorn in the SAME
process and event loop, so the in-memory channel layer of the embedded mode reaches browsers; in
embedded mode (no REDIS_URL) the periodic jobs then run in process too (history.scheduler). SIGTERM
or SIGINT stops everything within 5 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from history.scheduler import run_embedded_beat
from streaming.ticker.config import LoopConfig
from streaming.ticker.modes import MODES
from streaming.ticker.runtime import tune_gc_for_streaming
from tickerproject.platform.cli import host_port, listen_socket
from tickerproject.ticker_wiring import build_ticker_loop


class Command(BaseCommand):
    help = "Stream market data (live Kite or the mock market) into Redis and the channel layer."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--mode", choices=MODES, default=settings.TICKER_MODE)
        parser.add_argument(
            "--serve", metavar="HOST:PORT", type=host_port, help="also serve the web app in this process"
        )
        parser.add_argument(
            "--no-backfill", action="store_true", help="do not ask the history service to backfill at session start"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        # call_command(serve="...") skips argparse's type=, so the value is parsed here when it is a string.
        serve = options.get("serve")
        if isinstance(serve, str):
            serve = host_port(serve)
        config = LoopConfig.from_settings(mode=options["mode"], backfill_on_start=not options["no_backfill"])
        # Listening before anything starts: a busy port or unknown host ends the command in one line,
        # with no ticker, connection or scheduler thread to wind down.
        sock = listen_socket(*serve) if serve else None
        try:
            asyncio.run(self._main(config, serve, sock))
        finally:
            if sock is not None:
                sock.close()

    async def _main(self, config: LoopConfig, serve: tuple[str, int] | None, sock: socket.socket | None) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        ticker = build_ticker_loop(config)
        ticker_task = asyncio.create_task(ticker.run(stop), name="ticker")
        extra: list[asyncio.Task] = []
        server = None
        web: asyncio.Task | None = None
        if serve is not None and sock is not None:
            server = _make_server(*serve)
            web = asyncio.create_task(_serve_web(server, sock), name="uvicorn")
            extra.append(web)
            if not settings.REDIS_URL:
                # The periodic jobs (reconcile, expiry cleanup, instrument sync, backfill) without a broker.
                extra.append(asyncio.create_task(run_embedded_beat(stop), name="embedded-beat"))
        watched = {ticker_task} | ({web} if web else set())
        started = asyncio.create_task(ticker.started.wait())
        await asyncio.wait({started, *watched}, return_when=asyncio.FIRST_COMPLETED)
        if ticker_task.done():
            started.cancel()
            await self._wind_down(stop, server, ticker_task, extra, config)
            ticker_task.result()  # raises the start-up error
            return
        web_failed = web is not None and web.done()
        if not web_failed:
            tune_gc_for_streaming()  # once start-up's objects exist (see streaming/ticker/runtime.py)
            self.stdout.write(f"runticker ({config.mode}): {ticker.describe()}")
            if serve is not None:
                self.stdout.write(f"serving http://{serve[0]}:{serve[1]}/ in this process")
            stopping = asyncio.create_task(stop.wait())
            await asyncio.wait({stopping, *watched}, return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            web_failed = web is not None and web.done() and not stop.is_set()
        started.cancel()
        await self._wind_down(stop, server, ticker_task, extra, config)
        if web_failed and web is not None:
            raise CommandError(f"the web server stopped unexpectedly ({_outcome(web)}); the ticker was stopped too")
        self.stdout.write("runticker stopped")

    @staticmethod
    async def _wind_down(
        stop: asyncio.Event, server: Any, ticker_task: asyncio.Task, extra: list[asyncio.Task], config: LoopConfig
    ) -> None:
        """Stop the ticker, the web server and the embedded beat, and collect every task's outcome
        (so none is left for asyncio to report as never retrieved)."""
        stop.set()
        if server is not None:
            server.should_exit = True
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await asyncio.wait_for(ticker_task, timeout=config.stop_deadline_s + 0.5)
        if extra:
            _, pending = await asyncio.wait(extra, timeout=1.0)
            for task in pending:
                task.cancel()
            await asyncio.wait(extra)
            for task in extra:
                if not task.cancelled():
                    task.exception()


def _outcome(task: asyncio.Task) -> str:
    if task.cancelled():
        return "cancelled"
    exc = task.exception()
    return "it returned" if exc is None else f"{type(exc).__name__}: {exc}"


async def _serve_web(server: Any, sock: socket.socket) -> None:
    try:
        await server.serve(sockets=[sock])
    except SystemExit as exc:
        # uvicorn exits on a start-up failure (after logging why); a SystemExit inside a task would
        # escape the event loop past the ticker's shutdown, so it ends this task as an error instead.
        raise RuntimeError(f"uvicorn exited with status {exc.code}") from None


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
