"""The ticker loop: accounts → connections → market state → chain analytics → channel layer + Redis.

One asyncio loop does it all (`TickerLoop.run(stop_event)`):

- the plan (from the injected `plan_loader`, `streaming.ticker.dependencies`) says which token
  streams on which account and connection in which mode; each (account, connection) this ticker
  holds the lease of gets a tick source (`streaming.ticker.source_set`): a Kite WebSocket for an
  account in live mode, the in-process mock market otherwise (`streaming.ticker.modes` says which);
- the hot path (`_on_ticks`) writes a TickBatch into the numpy market state and wakes the flusher:
  no ORM, no per-tick Python;
- the flusher builds each chain's delta from the state (greeks at most every
  CHAIN_GREEKS_INTERVAL_MS per chain, messages at most every CHAIN_STREAM_INTERVAL_MS per chain,
  sent at once when the chain was quiet for longer than that), hands it to the channel layer (each
  web process paces it for browsers, at most every CHAIN_PUBLISH_INTERVAL_MS), and
  offers it with the latest ticks to the Redis writer (behind the circuit breaker);
- reloads (`streaming.ticker.reloader`: notifications after commit, a periodic check) reconcile, reload
  the plan and send only the difference on the wire; a token rejected by Kite is recorded as an
  auth failure (in a worker thread, off the hot path) and asks for a reload, which moves its
  instruments to healthy accounts;
- once per account per day at session start the injected session backfill fills what history is
  missing (`streaming.ticker.session`);
- every background task runs under the task supervisor; `stop_event` ends it all within 5 s.

Whatever touches the database or another app comes in through `TickerDependencies`, built by the
composition root (`tickerproject.ticker_wiring`).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
from asgiref.sync import sync_to_async

from core.calendar import IST
from core.ticks import TickBatch
from streaming.contract import DELTA, SNAPSHOT
from streaming.status import (
    CHAIN_MESSAGES_TOTAL,
    MALFORMED_TOTAL,
    TICK_TO_CHANNEL_SECONDS,
    TICKS_TOTAL,
    StatusBoard,
    publish_local,
    publish_redis,
)
from streaming.ticker.chain_history import sync_chain_history
from streaming.ticker.chain_registry import assign_iv_buckets, build_chain_registry, same_chain
from streaming.ticker.chains import ChainBook
from streaming.ticker.config import LoopConfig
from streaming.ticker.dependencies import TickerDependencies
from streaming.ticker.leases import LocalLeases, RedisLeases
from streaming.ticker.market_state import MarketState
from streaming.ticker.modes import MODES, account_mode, is_market_open, session_day
from streaming.ticker.publishers import ChannelPublisher, RedisPublisher, encode_chain_message, latest_records
from streaming.ticker.reloader import SubscriptionReloader
from streaming.ticker.session import PreviousCloseOI, SessionBackfills
from streaming.ticker.source_set import SourceSet
from streaming.ticker.sources import KiteConnectionSource
from streaming.ticker.supervisor import TaskSupervisor
from tickerproject.platform.redis_client import async_redis

log = logging.getLogger(__name__)

# A lease lives 10 s in Redis; its holder stops streaming 2 s before that (checked every second), so
# a ticker that lost Redis has stopped before another one can take the account over.
LEASE_TTL_MS = 10_000
LEASE_SAFETY_MS = 2_000
LEASE_CHECK_S = 1.0


@dataclass
class _Chain:
    book: ChainBook
    next_publish_at: float = 0.0  # monotonic


class TickerLoop:
    """See the module docstring. What it reads and writes outside streaming comes from `dependencies`."""

    def __init__(
        self,
        config: LoopConfig | None = None,
        *,
        dependencies: TickerDependencies,
        channel_layer: Any = None,
        redis: Any = None,  # redis.asyncio.Redis for publishing; None: settings.REDIS_URL or no Redis
        use_redis: bool | None = None,
        now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
        leases: Any = None,  # streaming.ticker.leases.Leases; default: Redis leases when REDIS_URL, else local
        ticker_id: str | None = None,  # the lease owner; default "host:pid"
    ) -> None:
        from django.conf import settings

        self.config = config or LoopConfig.from_settings()
        self.now = now
        self.dependencies = dependencies
        self.previous_close = PreviousCloseOI(dependencies.prev_close_loader)
        self.ticker_id = ticker_id or f"{socket.gethostname()}:{os.getpid()}"
        self.state = MarketState(capacity=4096)
        self.chains: dict[tuple[str, str], _Chain] = {}
        self.plan: Any = None
        self.holidays: set[dt.date] = set()
        self.board = StatusBoard(ticker_id=self.ticker_id)
        self.supervisor = TaskSupervisor()
        self.channel = ChannelPublisher(channel_layer)
        use_redis = bool(settings.REDIS_URL) if use_redis is None else use_redis
        if use_redis and redis is None:
            redis = async_redis()
        self.redis = redis if use_redis else None
        self.redis_publisher = (
            RedisPublisher(self.redis, snapshots=self._all_snapshots, all_latest=self._all_latest)
            if self.redis is not None
            else None
        )
        if leases is None:
            # Several tickers on one Redis split the accounts through leases; one process alone
            # (embedded) holds them all.
            if settings.REDIS_URL:
                leases = RedisLeases(
                    async_redis(), owner=self.ticker_id, ttl_ms=LEASE_TTL_MS, safety_ms=LEASE_SAFETY_MS
                )
            else:
                leases = LocalLeases(owner=self.ticker_id)
        self.leases = leases
        self.source_set = SourceSet(
            config=self.config,
            leases=leases,
            board=self.board,
            supervisor=self.supervisor,
            on_ticks=self._on_ticks,
            on_auth_failure=self._on_auth_failure,
            mock_market_factory=dependencies.mock_market_factory,
            mock_instrument_spec=dependencies.mock_instrument_spec,
        )
        self.backfills = SessionBackfills(dependencies.session_backfill, self.supervisor)
        self._dirty = asyncio.Event()
        self._latest_seq = 0
        self._reloader: Any = None
        self.reloads = 0
        self._unplaced = 0
        self.auth_failures = 0
        self.started = asyncio.Event()
        self._series_seeded: dict[tuple[str, str], dt.date] = {}  # chain -> session day its series was seeded for
        self._weeklies: dict[str, bool] = {}
        # Set to a list to collect every tick-to-channel latency (s): the benchmarks do. None in
        # runticker, where nothing drains it (the histogram in /metrics/ has the distribution).
        self.pending_latency: list[float] | None = None

    @property
    def sources(self) -> dict[tuple[int, int], Any]:
        return self.source_set.sources

    @property
    def account_modes(self) -> dict[int, str]:
        return self.source_set.account_modes

    @property
    def market(self) -> Any:
        """The in-process mock market, once a mock connection needed it."""
        return self.source_set.market

    @property
    def prev_close_oi(self) -> dict[int, float]:
        """Option token -> OI at the previous session's close."""
        return self.previous_close.by_token

    # --- lifecycle ------------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        """Run until `stop` is set; then stop every task within the configured deadline."""
        await self.perform_reload([])
        self._reloader = SubscriptionReloader(self.perform_reload, check_interval_s=self.config.reload_check_interval_s)
        self.supervisor.start("reloader", self._reloader.run)
        self.supervisor.start("flusher", self._flush_forever)
        self.supervisor.start("status", self._status_forever)
        self.supervisor.start("leases", self._leases_forever)
        self.supervisor.start("chain-history", self._chain_history_forever)
        if self.redis_publisher is not None:
            self.supervisor.start("redis-publisher", self.redis_publisher.run)
        self.started.set()
        log.info("ticker %s running: %s", self.ticker_id, self.describe())
        try:
            await stop.wait()
        finally:
            await self.shutdown()

    async def shutdown(self) -> None:
        deadline = self.config.stop_deadline_s
        self.backfills.stop.set()
        sources = list(self.sources.values())
        with contextlib.suppress(Exception):
            await asyncio.wait_for(
                asyncio.gather(*(s.close() for s in sources), return_exceptions=True), timeout=deadline / 2
            )
        await self.supervisor.stop(deadline_s=deadline / 2)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.leases.release_all(), timeout=0.5)
        if isinstance(self.leases, RedisLeases):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.leases.redis.aclose(), timeout=0.5)
        if self.redis_publisher is not None:
            with contextlib.suppress(Exception):
                await self.redis_publisher.breaker.aclose()
        if self.redis is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.redis.aclose(), timeout=0.5)
        log.info("ticker %s stopped", self.ticker_id)

    def describe(self) -> str:
        """One line per account: which it streams and in which mode (for the command's output)."""
        return "no plan" if self.plan is None else self.source_set.describe(self.plan)

    # --- the hot path ---------------------------------------------------------------------------
    def _on_ticks(self, batch: TickBatch, account_id: int, connection_index: int) -> None:
        if batch.malformed:
            MALFORMED_TOTAL.inc(batch.malformed)
        if not len(batch):
            return
        self.state.apply(batch)
        self.board.record_ticks(account_id, connection_index, len(batch), batch.received_at)
        self._dirty.set()

    # --- the flusher: chain deltas and latest ticks out -------------------------------------------
    async def _flush_forever(self) -> None:
        timeout: float | None = None
        while True:
            # asyncio.timeout, not wait_for (Python 3.11's wait_for can swallow a cancel, see publishers).
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._dirty.wait()
            self._dirty.clear()
            next_due = await self.flush()
            timeout = None if next_due is None else max(next_due - time.monotonic(), 0.0)

    async def flush(self, *, force: bool = False) -> float | None:
        """Publish every chain that changed and is due; returns when the next deferred one is due."""
        interval = self.config.stream_interval_s
        next_due: float | None = None
        # Mock chains count time to expiry on the mock market's clock (a simulated session at night).
        market_now = self.market.clock.timestamp() if self.market is not None else None
        outgoing: list[tuple[dict[str, Any], dict[str, Any], str, float | None, bytes | None]] = []
        # Each delta's JSON, once, for whichever of Redis pub/sub and the channel layer carries bytes.
        # (Not for a Redis that is down: nothing is kept for it then.)
        encode = self.channel.sends_encoded or (
            self.redis_publisher is not None and self.redis_publisher.breaker.state != "open"
        )
        for chain in list(self.chains.values()):
            book = chain.book
            if not force and not book.changed(self.state):
                continue
            monotonic = time.monotonic()
            if not force and monotonic < chain.next_publish_at:
                next_due = chain.next_publish_at if next_due is None else min(next_due, chain.next_publish_at)
                continue
            oldest = self._oldest_pending(book)
            first = book.snapshot is None
            delta = book.update(self.state, now=time.time(), monotonic=monotonic, force=True, market_now=market_now)
            chain.next_publish_at = monotonic + interval
            if delta is None:
                continue
            # update() stores the snapshot before it returns a delta.
            snapshot = cast("dict[str, Any]", book.snapshot)
            encoded = None
            if encode:
                # A failure here is left to the publishers, which count and log it (and carry on).
                with contextlib.suppress(Exception):
                    encoded = encode_chain_message(delta)
            outgoing.append((snapshot, delta, SNAPSHOT if first else DELTA, oldest, encoded))
            if self.redis_publisher is not None:
                self.redis_publisher.offer_chain(snapshot=snapshot, delta=delta, encoded=encoded)
        if outgoing:
            # All chains' sends at once: on the Redis channel layer each is a couple of round trips, and
            # one after another the last chain of a pass would wait for all the others.
            results = await asyncio.gather(
                *(
                    self.channel.publish(snapshot=snapshot, delta=delta, kind=kind, encoded=encoded)
                    for snapshot, delta, kind, _, encoded in outgoing
                )
            )
            sent_at = time.time()
            for (_, _, _, oldest, _), sent in zip(outgoing, results, strict=True):
                if sent:
                    self._observe_latency(oldest, sent_at)
        if self.redis_publisher is not None and self.state.seq > self._latest_seq:
            size = self.state.size
            rows = np.flatnonzero(self.state.version[:size] > self._latest_seq)
            self._latest_seq = self.state.seq
            self.redis_publisher.offer_latest(latest_records(self.state, rows))
        return next_due

    def _oldest_pending(self, book: ChainBook) -> float | None:
        rows = book._all_rows
        if not len(rows):
            return None
        pending = self.state.version[rows] > book.published_state_seq
        if not pending.any():
            return None
        return float(self.state.updated_at[rows[pending]].min())

    def _observe_latency(self, oldest: float | None, sent_at: float) -> None:
        CHAIN_MESSAGES_TOTAL.inc()
        if oldest:
            latency = max(sent_at - oldest, 0.0)
            TICK_TO_CHANNEL_SECONDS.observe(latency)
            if self.pending_latency is not None and len(self.pending_latency) < 1_000_000:
                self.pending_latency.append(latency)

    def _all_snapshots(self) -> list[dict[str, Any]]:
        return [c.book.snapshot for c in self.chains.values() if c.book.snapshot is not None]

    def _all_latest(self) -> dict[int, bytes]:
        rows = np.flatnonzero(self.state.version[: self.state.size] > 0)
        return latest_records(self.state, rows)

    # --- status ---------------------------------------------------------------------------------
    def status_document(self) -> dict[str, Any]:
        sources = {key: source.status() for key, source in self.sources.items()}
        self.board.extra = {
            "mode": self.config.mode,
            "ticks_applied": self.state.ticks_applied,
            "unknown_ticks": self.state.unknown_ticks,
            "chains": len(self.chains),
            "instruments": self.state.size,
            "reloads": self.reloads,
            "unplaced": self._unplaced,
            "channel_layer": {"sent": self.channel.sent, "failed": self.channel.failed},
            "redis": self.redis_publisher.status() if self.redis_publisher else None,
            "tasks": {
                name: {"state": s.state, "restarts": s.restarts, "last_error": s.last_error}
                for name, s in self.supervisor.status().items()
            },
        }
        TICKS_TOTAL.labels(mode=self.config.mode)  # make the series exist
        return self.board.as_dict(sources=sources)

    async def _status_forever(self) -> None:
        reported = 0
        while True:
            document = self.status_document()
            TICKS_TOTAL.labels(mode=self.config.mode).inc(self.state.ticks_applied - reported)
            reported = self.state.ticks_applied
            publish_local(document)
            if self.redis_publisher is not None and self.redis_publisher.breaker.allow():
                with contextlib.suppress(Exception):
                    await self.redis_publisher.breaker.call(publish_redis, self.redis, document)
            await asyncio.sleep(self.config.status_interval_s)

    # --- chain history: minute points out, stored series and IV history in -------------------------
    async def _chain_history_forever(self) -> None:
        await asyncio.sleep(min(2.0, self.config.chain_history_interval_s))
        while True:
            await self.sync_chain_history()
            await asyncio.sleep(self.config.chain_history_interval_s)

    async def sync_chain_history(self) -> None:
        """Hand the chains' new minute points to the recorder, then load what the database holds:
        a restarted ticker's earlier points of the session, and each bucket chain's IV history."""
        books = [chain.book for chain in self.chains.values()]
        await sync_chain_history(
            books,
            dependencies=self.dependencies,
            sessions=self.config.iv_history_sessions,
            seeded=self._series_seeded,
            weeklies=self._weeklies,
        )

    # --- reloads: plan → sources --------------------------------------------------------------------
    async def perform_reload(self, request_ids: list[str]) -> None:
        """Reconcile, load the plan, and move the running connections to it (only the difference)."""
        plan, holidays = await sync_to_async(self.dependencies.plan_loader, thread_sensitive=False)(self.config.mode)
        self.holidays = holidays
        await self._load_prev_close(plan)
        await self._sync_leases(plan)
        market_open = is_market_open(self.now(), holidays)
        self._apply_plan(plan, market_open=market_open)
        self.reloads += 1
        if self.config.backfill_on_start:
            self._backfill_new_sessions()

    async def _load_prev_close(self, plan: Any) -> None:
        """OI at the previous close for the plan's options not looked up yet this session; a new
        session day starts over, and running chains move their OI-change base to it."""
        if await self.previous_close.load(plan, session_day(self.now(), self.holidays)):
            for chain in self.chains.values():
                chain.book.reset_prev_close_oi(self.prev_close_oi)

    def _apply_plan(self, plan: Any, *, market_open: bool) -> None:
        self.plan = plan
        self._unplaced = len(plan.unplaced())
        instruments = list(plan.instruments.values())
        self.state.register([i.instrument_token for i in instruments])
        self._rebuild_chains(instruments)
        self.source_set.apply(plan, market_open=market_open, holidays=self.holidays)

    async def _sync_leases(self, plan: Any) -> set[int]:
        return await self.leases.sync(self.source_set.wanted_accounts(plan))

    async def _leases_forever(self) -> None:
        """Renew the leases every second; start or stop accounts when what this ticker holds changes
        (another ticker died, or this one could not renew in time)."""
        while True:
            await asyncio.sleep(LEASE_CHECK_S)
            if self.plan is None:
                continue
            held = await self._sync_leases(self.plan)
            wanted = self.source_set.wanted_accounts(self.plan)
            if held & wanted != self.source_set.held_applied:
                log.info("ticker %s now streams accounts %s", self.ticker_id, sorted(held & wanted))
                self._apply_plan(self.plan, market_open=is_market_open(self.now(), self.holidays))
                if self.config.backfill_on_start:
                    self._backfill_new_sessions()

    def _rebuild_chains(self, instruments: list[Any]) -> None:
        registry = build_chain_registry(instruments)
        chains: dict[tuple[str, str], _Chain] = {}
        for key, spec in registry.items():
            existing = self.chains.get(key)
            if existing is not None and same_chain(existing.book.spec, spec):
                chains[key] = existing
                continue
            book = ChainBook(
                spec=spec,
                rate=self.config.rate,
                greeks_interval_s=self.config.greeks_interval_s,
                oi_window_minutes=self.config.oi_window_minutes,
                prev_close_oi=self.prev_close_oi,
            )
            if existing is not None:
                book.seq = existing.book.seq  # keep numbering: consumers see a fresh snapshot, not a restart
            book.bind(self.state)
            chains[key] = _Chain(book=book)
        self.chains = chains
        self._assign_buckets()
        self._dirty.set()

    def _assign_buckets(self) -> None:
        self._weeklies = assign_iv_buckets([chain.book for chain in self.chains.values()])

    # --- auth failures -------------------------------------------------------------------------------
    async def _on_auth_failure(self, source: KiteConnectionSource, error: Exception) -> None:
        """Record the account's auth failure (in a worker thread) and reload, which moves its instruments."""
        self.auth_failures += 1
        account_id = source.account_id
        log.error("account %s: the ticker rejected its token; moving its instruments", account_id)
        try:
            record = sync_to_async(self.dependencies.record_auth_failure, thread_sensitive=False)
            await record(account_id=account_id, error=str(error))
        except Exception:
            log.exception("could not record the auth failure of account %s", account_id)
        if self._reloader is not None:
            self._reloader.request("auth-failure")

    # --- history backfill once per account per day -------------------------------------------------
    def _backfill_new_sessions(self) -> None:
        today = self.now().astimezone(IST).date()
        self.backfills.start_new(plan=self.plan, account_ids=self.account_modes, today=today)


__all__ = ["MODES", "LoopConfig", "TickerLoop", "account_mode", "is_market_open", "session_day"]
