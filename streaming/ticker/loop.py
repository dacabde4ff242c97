"""The ticker loop: accounts → connections → market state → chain analytics → channel layer + Redis.

One asyncio loop does it all (`TickerLoop.run(stop_event)`):

- the plan (`subscriptions.services.reconcile.load_plan`) says which token streams on which account
  and connection in which mode; each (account, connection) gets a tick source (`streaming.ticker.sources`):
  a Kite WebSocket for an account in live mode, the in-process mock market otherwise. Mode per
  account: `auto` is live for a non-mock account with a valid token during NSE hours (09:15-15:30
  IST, Monday-Friday, not a MarketHoliday), mock otherwise; `live`/`mock` force it (mock accounts
  are always mock);
- the hot path (`_on_ticks`) writes a TickBatch into the numpy market state and wakes the flusher:
  no ORM, no per-tick Python;
- the flusher builds each chain's delta from the state (greeks at most every
  CHAIN_GREEKS_INTERVAL_MS per chain, messages at most every CHAIN_STREAM_INTERVAL_MS per chain,
  sent at once when the chain was quiet for longer than that), hands it to the channel layer (each
  web process paces it for browsers, at most every CHAIN_PUBLISH_INTERVAL_MS), and
  offers it with the latest ticks to the Redis writer (behind the circuit breaker);
- reloads (`streaming.ticker.reloader`: notifications after commit, a periodic check) reconcile, reload
  the plan and send only the difference on the wire; a token rejected by Kite marks the account
  `auth_failed` in the database (in a worker thread, off the hot path) and asks for a reload, which
  moves its instruments to healthy accounts;
- once per account per day at session start the history service backfills what is missing, holding
  the history backfill lock (history.tasks.BACKFILL_LOCK) so it never runs alongside a Celery backfill;
- every background task runs under the task supervisor; `stop_event` ends it all within 5 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import math
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from core.calendar import IST, TradingCalendar
from core.ticks import TickBatch
from streaming.contract import DELTA, SNAPSHOT
from streaming.status import StatusBoard, publish_local, publish_redis
from streaming.ticker.chains import ChainBook, ChainSpec, build_chain_registry
from streaming.ticker.leases import LocalLeases, RedisLeases
from streaming.ticker.market_state import MarketState
from streaming.ticker.publishers import ChannelPublisher, RedisPublisher, encode_chain_message, latest_records
from streaming.ticker.sources import KiteConnectionSource, MockConnectionSource
from streaming.ticker.supervisor import TaskSupervisor

log = logging.getLogger(__name__)

MODES = ("auto", "live", "mock")
# A lease lives 10 s in Redis; its holder stops streaming 2 s before that (checked every second), so
# a ticker that lost Redis has stopped before another one can take the account over.
LEASE_TTL_MS = 10_000
LEASE_SAFETY_MS = 2_000
LEASE_CHECK_S = 1.0


def is_market_open(now: dt.datetime, holidays: Iterable[dt.date] = ()) -> bool:
    """NSE derivatives hours: 09:15-15:30 IST, Monday to Friday, not on an exchange holiday."""
    return TradingCalendar(holidays).is_open(now)


def session_day(now: dt.datetime, holidays: Iterable[dt.date] = ()) -> dt.date:
    """The trading day whose session is running or last ran at `now` (IST): the one the mock market
    plays at night, and whose previous close OI change is counted against."""
    return TradingCalendar(holidays).last_session_day(now)


def account_mode(*, forced: str, is_mock: bool, has_valid_token: bool, market_open: bool) -> str:
    """'live' or 'mock' for one account (see the module docstring)."""
    if forced not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {forced!r}")
    if is_mock or forced == "mock":
        return "mock"
    if forced == "live":
        return "live"
    return "live" if has_valid_token and market_open else "mock"


@dataclass
class LoopConfig:
    mode: str = "auto"
    ws_root: str = "wss://ws.kite.trade"
    greeks_interval_s: float = 0.2
    stream_interval_s: float = 0.05
    mock_interval_s: float = 0.5
    rate: float = 0.065
    mock_seed: int = 1
    mock_max_state: int = 5000
    status_interval_s: float = 1.0
    reload_check_interval_s: float | None = 30.0
    backfill_on_start: bool = True
    stop_deadline_s: float = 4.0
    client_options: dict[str, Any] = field(default_factory=dict)  # e.g. silence_timeout for tests

    @classmethod
    def from_settings(cls, **overrides: Any) -> LoopConfig:
        from django.conf import settings

        values = {
            "mode": settings.TICKER_MODE,
            "ws_root": settings.KITE_WS_ROOT,
            "greeks_interval_s": settings.CHAIN_GREEKS_INTERVAL_MS / 1000,
            "stream_interval_s": settings.CHAIN_STREAM_INTERVAL_MS / 1000,
            "mock_interval_s": settings.MOCK_TICK_INTERVAL_MS / 1000,
            "rate": settings.RISK_FREE_RATE,
            "mock_seed": settings.MOCK_SEED,
            "mock_max_state": settings.MOCK_STATE_MAX_SIZE,
        }
        values.update(overrides)
        return cls(**values)


@dataclass
class _Chain:
    book: ChainBook
    next_publish_at: float = 0.0  # monotonic


class TickerLoop:
    """See the module docstring. Collaborators are injectable for tests; defaults come from the apps."""

    def __init__(
        self,
        config: LoopConfig | None = None,
        *,
        channel_layer: Any = None,
        redis: Any = None,  # redis.asyncio.Redis for publishing; None: settings.REDIS_URL or no Redis
        use_redis: bool | None = None,
        now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
        plan_loader: Callable[[str], tuple[Any, set[dt.date]]] | None = None,
        leases: Any = None,  # streaming.ticker.leases.Leases; default: Redis leases when REDIS_URL, else local
        ticker_id: str | None = None,  # the lease owner; default "host:pid"
        prev_close_loader: Callable[[list[int], dt.date], dict[int, float]] | None = None,
    ) -> None:
        """`plan_loader(mode) -> (plan, holidays)` runs in a worker thread; the default reconciles and
        reads the database (benchmarks pass a synthetic plan instead). `prev_close_loader(subscription
        ids, session day) -> {token: OI}` too; the default reads the day candles from history when the
        plan comes from the database, and knows nothing with a synthetic plan."""
        from django.conf import settings

        self.config = config or LoopConfig.from_settings()
        self.now = now
        self.plan_loader = plan_loader or _reconcile_and_load
        if prev_close_loader is None:
            prev_close_loader = _load_prev_close_oi if plan_loader is None else (lambda ids, day: {})
        self.prev_close_loader = prev_close_loader
        self.prev_close_oi: dict[int, float] = {}  # option token -> OI at the previous session's close
        self._prev_close_day: dt.date | None = None
        self._prev_close_asked: set[int] = set()  # subscription ids already looked up for that day
        self.ticker_id = ticker_id or f"{socket.gethostname()}:{os.getpid()}"
        self.state = MarketState(capacity=4096)
        self.chains: dict[tuple[str, str], _Chain] = {}
        self.sources: dict[tuple[int, int], Any] = {}
        self.account_modes: dict[int, str] = {}
        self.plan: Any = None
        self.holidays: set[dt.date] = set()
        self.board = StatusBoard(ticker_id=self.ticker_id)
        self.supervisor = TaskSupervisor()
        self.channel = ChannelPublisher(channel_layer)
        use_redis = bool(settings.REDIS_URL) if use_redis is None else use_redis
        if use_redis and redis is None:
            from tickerproject.platform.redis_client import async_redis

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
                from tickerproject.platform.redis_client import async_redis

                leases = RedisLeases(
                    async_redis(), owner=self.ticker_id, ttl_ms=LEASE_TTL_MS, safety_ms=LEASE_SAFETY_MS
                )
            else:
                leases = LocalLeases(owner=self.ticker_id)
        self.leases = leases
        self.market: Any = None  # the in-process MockMarket, created on first need
        self._market_tokens: set[int] = set()
        self._dirty = asyncio.Event()
        self._latest_seq = 0
        self._tokens_cache: tuple[Any, dict[Any, dict[int, str]]] | None = None
        self._tokens_of: dict[int, str] = {}  # account id -> access token in use (never logged)
        self._backfilled: set[tuple[int, dt.date]] = set()
        self._stop_backfill = threading.Event()
        self._reloader: Any = None
        self.reloads = 0
        self._unplaced = 0
        self._held_applied: set[int] = set()
        self.auth_failures = 0
        self.started = asyncio.Event()
        # Set to a list to collect every tick-to-channel latency (s): the benchmarks do. None in
        # runticker, where nothing drains it (the histogram in /metrics/ has the distribution).
        self.pending_latency: list[float] | None = None

    # --- lifecycle ------------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        """Run until `stop` is set; then stop every task within the configured deadline."""
        from streaming.ticker.reloader import SubscriptionReloader

        await self.perform_reload([])
        self._reloader = SubscriptionReloader(self.perform_reload, check_interval_s=self.config.reload_check_interval_s)
        self.supervisor.start("reloader", self._reloader.run)
        self.supervisor.start("flusher", self._flush_forever)
        self.supervisor.start("status", self._status_forever)
        self.supervisor.start("leases", self._leases_forever)
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
        self._stop_backfill.set()
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
        if self.plan is None:
            return "no plan"
        counts: dict[int, int] = {}
        for (account_id, _), source in self.sources.items():
            counts[account_id] = counts.get(account_id, 0) + len(source.subscriptions)
        parts = []
        for account_id, account in sorted(self.plan.accounts.items()):
            if account_id in self.account_modes:
                parts.append(
                    f"{account.label}: {self.account_modes[account_id]}, {counts.get(account_id, 0)} instruments, "
                    f"{sum(1 for a, _ in self.sources if a == account_id)} connection(s)"
                )
        unplaced = len(self.plan.unplaced())
        if unplaced:
            parts.append(f"{unplaced} subscription(s) not streamed (over capacity or no usable account)")
        return "; ".join(parts) or "no accounts streaming"

    # --- the hot path ---------------------------------------------------------------------------
    def _on_ticks(self, batch: TickBatch, account_id: int, connection_index: int) -> None:
        if batch.malformed:
            from streaming.status import MALFORMED_TOTAL

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
            encoded = None
            if encode:
                # A failure here is left to the publishers, which count and log it (and carry on).
                with contextlib.suppress(Exception):
                    encoded = encode_chain_message(delta)
            outgoing.append((book.snapshot, delta, SNAPSHOT if first else DELTA, oldest, encoded))
            if self.redis_publisher is not None:
                self.redis_publisher.offer_chain(snapshot=book.snapshot, delta=delta, encoded=encoded)
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
        from streaming.status import CHAIN_MESSAGES_TOTAL, TICK_TO_CHANNEL_SECONDS

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
        from streaming.status import TICKS_TOTAL

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
        from streaming.status import TICKS_TOTAL

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

    # --- reloads: plan → sources --------------------------------------------------------------------
    async def perform_reload(self, request_ids: list[str]) -> None:
        """Reconcile, load the plan, and move the running connections to it (only the difference)."""
        from asgiref.sync import sync_to_async

        plan, holidays = await sync_to_async(self.plan_loader, thread_sensitive=False)(self.config.mode)
        self.holidays = holidays
        await self._load_prev_close(plan)
        await self._sync_leases(plan)
        market_open = is_market_open(self.now(), holidays)
        self._apply_plan(plan, market_open=market_open)
        self.reloads += 1
        if self.config.backfill_on_start:
            self._backfill_new_sessions()

    async def _load_prev_close(self, plan: Any) -> None:
        """OI at the previous close for the plan's options not looked up yet this session (in a
        worker thread, off the hot path); a new session day starts over, and running chains move
        their OI-change base to it."""
        from asgiref.sync import sync_to_async

        day = session_day(self.now(), self.holidays)
        new_day = day != self._prev_close_day
        if new_day:
            self._prev_close_day = day
            self.prev_close_oi = {}
            self._prev_close_asked = set()
        wanted = [
            i.subscription_id
            for i in plan.instruments.values()
            if i.instrument_type in ("CE", "PE") and i.subscription_id not in self._prev_close_asked
        ]
        if wanted:
            try:
                found = await sync_to_async(self.prev_close_loader, thread_sensitive=False)(wanted, day)
            except Exception:
                log.exception("could not read the previous close OI; OI change counts from the first OI seen")
                found = {}
            self.prev_close_oi.update(found)
            self._prev_close_asked.update(wanted)
        if new_day:
            for chain in self.chains.values():
                chain.book.reset_prev_close_oi(self.prev_close_oi)

    def _apply_plan(self, plan: Any, *, market_open: bool) -> None:
        self.plan = plan
        self._unplaced = len(plan.unplaced())
        instruments = list(plan.instruments.values())
        self.state.register([i.instrument_token for i in instruments])
        self._rebuild_chains(instruments)
        # Only the accounts this ticker holds the lease of; another ticker streams the others.
        desired = {p: t for p, t in self._connection_tokens(plan).items() if self.leases.holds(p.account_id)}
        self._held_applied = {p.account_id for p in desired}
        modes = {
            account_id: account_mode(
                forced=self.config.mode,
                is_mock=account.is_mock,
                has_valid_token=account.has_valid_token,
                market_open=market_open,
            )
            for account_id, account in plan.accounts.items()
        }
        # Close what the plan no longer wants (or wants in another mode / with another token).
        for key, source in list(self.sources.items()):
            account_id, index = key
            placement_wanted = any(p.account_id == account_id and p.connection_index == index for p in desired)
            token_changed = (
                source.kind == "live"
                and account_id in plan.accounts
                and plan.accounts[account_id].access_token != self._tokens_of.get(account_id)
            )
            if not placement_wanted or modes.get(account_id) != source.kind:
                self._close_source(key)
            elif token_changed:
                source.update_token(plan.accounts[account_id].access_token)
        for account_id, account in plan.accounts.items():
            self._tokens_of[account_id] = account.access_token
        self.account_modes = {a: m for a, m in modes.items() if any(p.account_id == a for p in desired)}
        for account_id, mode in modes.items():
            account = plan.accounts[account_id]
            self.board.accounts[account_id] = {
                "label": account.label,
                "mode": mode,
                "health": account.health,
                "streaming": account_id in self.account_modes,
            }
        for placement, tokens in desired.items():
            key = (placement.account_id, placement.connection_index)
            mode = modes.get(placement.account_id, "mock")
            source = self.sources.get(key)
            if source is None:
                source = self._open_source(plan.accounts[placement.account_id], placement.connection_index, mode)
                if source is None:
                    continue
            current = source.subscriptions
            subscribe = {t: m for t, m in tokens.items() if current.get(t) != m}
            unsubscribe = [t for t in current if t not in tokens]
            if mode == "mock":
                self._ensure_mock_instruments([plan.instruments[t] for t in subscribe])
            if subscribe or unsubscribe:
                source.apply_diff(subscribe=subscribe, unsubscribe=unsubscribe)
            self.board.set_connection(
                account_id=placement.account_id,
                label=plan.accounts[placement.account_id].label,
                connection_index=placement.connection_index,
                mode=mode,
                instruments=len(tokens),
            )

    def _connection_tokens(self, plan: Any) -> dict[Any, dict[int, str]]:
        """`plan.connection_tokens()`, computed once per plan: it walks every instrument, and the
        lease check asks for it every second."""
        if self._tokens_cache is None or self._tokens_cache[0] is not plan:
            self._tokens_cache = (plan, plan.connection_tokens())
        return self._tokens_cache[1]

    async def _sync_leases(self, plan: Any) -> set[int]:
        wanted = {p.account_id for p in self._connection_tokens(plan)}
        return await self.leases.sync(wanted)

    async def _leases_forever(self) -> None:
        """Renew the leases every second; start or stop accounts when what this ticker holds changes
        (another ticker died, or this one could not renew in time)."""
        while True:
            await asyncio.sleep(LEASE_CHECK_S)
            if self.plan is None:
                continue
            held = await self._sync_leases(self.plan)
            wanted = {p.account_id for p in self._connection_tokens(self.plan)}
            if held & wanted != self._held_applied:
                log.info("ticker %s now streams accounts %s", self.ticker_id, sorted(held & wanted))
                self._apply_plan(self.plan, market_open=is_market_open(self.now(), self.holidays))
                if self.config.backfill_on_start:
                    self._backfill_new_sessions()

    def _rebuild_chains(self, instruments: list[Any]) -> None:
        registry = build_chain_registry(instruments)
        chains: dict[tuple[str, str], _Chain] = {}
        for key, spec in registry.items():
            existing = self.chains.get(key)
            if existing is not None and _same_spec(existing.book.spec, spec):
                chains[key] = existing
                continue
            book = ChainBook(
                spec=spec,
                rate=self.config.rate,
                greeks_interval_s=self.config.greeks_interval_s,
                prev_close_oi=self.prev_close_oi,
            )
            if existing is not None:
                book.seq = existing.book.seq  # keep numbering: consumers see a fresh snapshot, not a restart
            book.bind(self.state)
            chains[key] = _Chain(book=book)
        self.chains = chains
        self._dirty.set()

    def _open_source(self, account: Any, connection_index: int, mode: str) -> Any:
        key = (account.account_id, connection_index)

        def on_ticks(batch: TickBatch, a: int = account.account_id, c: int = connection_index) -> None:
            self._on_ticks(batch, a, c)

        if mode == "live":
            source = KiteConnectionSource(
                account_id=account.account_id,
                connection_index=connection_index,
                api_key=account.api_key,
                access_token=account.access_token,
                root=self.config.ws_root,
                on_ticks=on_ticks,
                on_auth_failure=self._on_auth_failure,
                **self.config.client_options,
            )
            run = source.client.run
        else:
            source = MockConnectionSource(
                account_id=account.account_id,
                connection_index=connection_index,
                market=self._mock_market(),
                on_ticks=on_ticks,
                interval_s=self.config.mock_interval_s,
            )
            run = source.run
        self.sources[key] = source
        self.supervisor.start(
            _task_name(key),
            run,
            context={"account": account.label, "connection": connection_index, "mode": mode},
        )
        log.info("account %s connection %d: streaming (%s)", account.label, connection_index, mode)
        return source

    def _close_source(self, key: tuple[int, int]) -> None:
        source = self.sources.pop(key)
        self.board.drop_connection(*key)
        name = _task_name(key)

        async def close() -> None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(source.close(), timeout=2.0)
            await self.supervisor.cancel(name, deadline_s=2.0)

        asyncio.get_running_loop().create_task(close(), name=f"close:{name}")

    def _mock_market(self) -> Any:
        if self.market is None:
            from mocking.market import MockMarket, SessionClock

            self.market = MockMarket(
                seed=self.config.mock_seed,
                max_state=max(self.config.mock_max_state, 10_000),
                rate=self.config.rate,
                clock=SessionClock(holidays=self.holidays),
            )
        return self.market

    def _ensure_mock_instruments(self, instruments: list[Any]) -> None:
        from mocking.market import InstrumentSpec

        new = [i for i in instruments if i.instrument_token not in self._market_tokens]
        if not new:
            return
        self._mock_market().set_instruments(InstrumentSpec.from_instrument(i) for i in new)
        self._market_tokens.update(i.instrument_token for i in new)

    # --- auth failures -------------------------------------------------------------------------------
    async def _on_auth_failure(self, source: KiteConnectionSource, error: Exception) -> None:
        """Mark the account auth_failed (in a worker thread) and reload, which moves its instruments."""
        from asgiref.sync import sync_to_async

        self.auth_failures += 1
        account_id = source.account_id
        log.error("account %s: the ticker rejected its token; moving its instruments", account_id)
        try:
            await sync_to_async(_mark_auth_failed, thread_sensitive=False)(account_id, str(error))
        except Exception:
            log.exception("could not record the auth failure of account %s", account_id)
        if self._reloader is not None:
            self._reloader.request("auth-failure")

    # --- history backfill once per account per day -------------------------------------------------
    def _backfill_new_sessions(self) -> None:
        today = self.now().astimezone(IST).date()
        for account_id in self.account_modes:
            if (account_id, today) in self._backfilled:
                continue
            self._backfilled.add((account_id, today))
            subscription_ids = [i.subscription_id for i in self.plan.instruments.values() if i.account_id == account_id]
            if subscription_ids:
                self.supervisor.start(
                    f"backfill:{account_id}:{today}",
                    lambda ids=subscription_ids, a=account_id, d=today: _backfill_in_thread(
                        a, d, ids, self._stop_backfill
                    ),
                    context={"account": account_id},
                )


def _task_name(key: tuple[int, int]) -> str:
    return f"source:{key[0]}/{key[1]}"


def _same_spec(a: ChainSpec, b: ChainSpec) -> bool:
    return (
        a.spot_token == b.spot_token
        and np.array_equal(a.strikes, b.strikes)
        and np.array_equal(a.ce_tokens, b.ce_tokens)
        and np.array_equal(a.pe_tokens, b.pe_tokens)
    )


# --- database work, run in worker threads (never on the event loop) ---------------------------------
def _reconcile_and_load(mode: str) -> tuple[Any, set[dt.date]]:
    from django.db import close_old_connections

    from subscriptions.models import MarketHoliday
    from subscriptions.services.reconcile import load_plan, reconcile_subscriptions

    close_old_connections()
    try:
        # The loop applies the result itself: no notification back to its own reloader.
        reconcile_subscriptions(mode=mode, notify=False)
        plan = load_plan()
        holidays = set(MarketHoliday.objects.filter(exchange="NSE").values_list("date", flat=True))
        return plan, holidays
    finally:
        close_old_connections()


def _load_prev_close_oi(subscription_ids: list[int], day: dt.date) -> dict[int, float]:
    """Instrument token -> the OI of its latest day candle before `day` (the previous close), for the
    subscriptions' instruments that have one. Mock candles count: in mock mode they are the history."""
    from django.db import close_old_connections
    from django.db.models import OuterRef, Subquery

    from history.models import Candle
    from subscriptions.models import Instrument

    before = dt.datetime.combine(day, dt.time(0, 0), tzinfo=IST)
    close_old_connections()
    try:
        found: dict[int, float] = {}
        for start in range(0, len(subscription_ids), 500):
            chunk = subscription_ids[start : start + 500]
            last_oi = (
                Candle.objects.filter(
                    instrument=OuterRef("pk"), interval=Candle.Interval.DAY, timestamp__lt=before, oi__isnull=False
                )
                .order_by("-timestamp")
                .values("oi")[:1]
            )
            rows = (
                Instrument.objects.filter(subscriptions__id__in=chunk)
                .annotate(prev_oi=Subquery(last_oi))
                .values_list("instrument_token", "prev_oi")
            )
            found.update({int(token): float(oi) for token, oi in rows if oi is not None})
        return found
    finally:
        close_old_connections()


def _mark_auth_failed(account_id: int, error: str) -> None:
    from django.db import close_old_connections

    from subscriptions.models import TradingAccount
    from subscriptions.services.accounts import account_record_health

    close_old_connections()
    try:
        account = TradingAccount.objects.get(pk=account_id)
        account_record_health(account=account, health=TradingAccount.Health.AUTH_FAILED, error=error)
    finally:
        close_old_connections()


async def _backfill_in_thread(
    account_id: int, day: dt.date, subscription_ids: list[int], stop: threading.Event
) -> None:
    """Run the session backfill in a daemon thread (so a stopping ticker never waits for it) and
    wait for it here, under the supervisor."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future = loop.create_future()

    def settle(error: BaseException | None) -> None:
        if not done.done():
            done.set_exception(error) if error is not None else done.set_result(None)

    def target() -> None:
        error: BaseException | None = None
        try:
            _backfill_session(account_id, day, subscription_ids, stop)
        except BaseException as exc:  # reported to the supervisor through the future
            error = exc
        with contextlib.suppress(RuntimeError):  # the loop may be gone when the ticker stopped
            loop.call_soon_threadsafe(settle, error)

    threading.Thread(target=target, name=f"session-backfill-{account_id}", daemon=True).start()
    try:
        await done
    except asyncio.CancelledError:
        stop.set()
        raise


# How long the session backfill waits between attempts at the history backfill lock.
BACKFILL_LOCK_POLL_S = 1.0
# The session backfill stops this long before the lock it holds would expire, so a Celery backfill can
# never start alongside it (the run is resumable: the next one continues where it stopped).
BACKFILL_LOCK_MARGIN_S = 60.0


@contextlib.contextmanager
def _history_backfill_lock(stop: threading.Event, *, account_id: int) -> Iterator[float]:
    """Hold the lock every history backfill holds (history.tasks.BACKFILL_LOCK, Celery's `backfill`
    and `backfill_subscription` included), waiting while another one runs: when it is released this
    run finds that work covered and fetches only the rest. Yields the monotonic time by which the
    holder must be done (the lock expires after that)."""
    from history.services.backfill import BackfillCancelled
    from history.tasks import BACKFILL_LOCK, BACKFILL_TIME_LIMIT
    from tickerproject.platform.locks import task_lock

    timeout = BACKFILL_TIME_LIMIT + 60
    waiting = False
    while True:
        if stop.is_set():
            raise BackfillCancelled("the ticker is stopping")
        with task_lock(BACKFILL_LOCK, timeout=timeout, wait=BACKFILL_LOCK_POLL_S) as acquired:
            if acquired:
                yield time.monotonic() + timeout - BACKFILL_LOCK_MARGIN_S
                return
        if not waiting:
            waiting = True
            log.info("session backfill for account %s waits for the backfill that is running", account_id)


def _backfill_session(account_id: int, day: dt.date, subscription_ids: list[int], stop: threading.Event) -> None:
    """Ask the history service for what is missing, once per account per day across tickers, never
    alongside another backfill (see `_history_backfill_lock`). It yields the CPU half the time (the
    ticker shares the process) and ends early when `stop` is set."""
    from django.core.cache import cache
    from django.db import close_old_connections

    from history.services.backfill import BackfillCancelled, backfill_run
    from subscriptions.models import Instrument

    close_old_connections()
    last = time.monotonic()
    must_end_by = math.inf
    cancelled = False

    def on_progress(run: Any, advanced: int) -> None:
        nonlocal last, cancelled
        if stop.is_set() or time.monotonic() >= must_end_by:
            cancelled = True
            # The run ends partial (resumable), logged without a traceback: a deliberate stop.
            raise BackfillCancelled(
                "the ticker is stopping" if stop.is_set() else "the history backfill lock is about to expire"
            )
        time.sleep(min(time.monotonic() - last, 0.5))  # a 50% duty cycle at most
        last = time.monotonic()

    key = f"ticker:backfill:{account_id}:{day.isoformat()}"
    try:
        if not cache.add(key, 1, timeout=36 * 3600):
            return
        try:
            ids = list(Instrument.objects.filter(subscriptions__id__in=subscription_ids).values_list("id", flat=True))
            with _history_backfill_lock(stop, account_id=account_id) as must_end_by:
                run = backfill_run(
                    instrument_ids=ids, trigger=f"ticker session start, account {account_id}", on_progress=on_progress
                )
        except BaseException:
            cache.delete(key)
            raise
        if run.status == "failed" or cancelled:  # broken or stopped early: the next start tries again
            cache.delete(key)
        log.info("session backfill for account %s: %s", account_id, run.status)
    finally:
        close_old_connections()


__all__ = ["LoopConfig", "TickerLoop", "account_mode", "is_market_open", "session_day"]
