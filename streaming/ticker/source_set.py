"""The tick sources one ticker runs: the plan's connections it holds the lease of, each live or mock.

`SourceSet.apply(plan)` moves the running sources to a new plan with as little change as possible:
it closes what the plan no longer wants (or wants in another mode), hands a changed access token to
a live connection, opens what is new, and sends each connection only the difference in tokens. Mock
connections share one in-process mock market, made on first need by the injected factory.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import Callable
from typing import Any

from core.ticks import TickBatch
from streaming.status import StatusBoard
from streaming.ticker.config import LoopConfig
from streaming.ticker.dependencies import MockInstrumentSpec, MockMarket, MockMarketFactory
from streaming.ticker.leases import Leases
from streaming.ticker.modes import account_mode
from streaming.ticker.sources import KiteConnectionSource, MockConnectionSource
from streaming.ticker.supervisor import TaskSupervisor

log = logging.getLogger(__name__)

TicksHandler = Callable[[TickBatch, int, int], None]  # (batch, account id, connection index)
AuthFailureHandler = Callable[[KiteConnectionSource, Exception], Any]


class SourceSet:
    def __init__(
        self,
        *,
        config: LoopConfig,
        leases: Leases,
        board: StatusBoard,
        supervisor: TaskSupervisor,
        on_ticks: TicksHandler,
        on_auth_failure: AuthFailureHandler,
        mock_market_factory: MockMarketFactory,
        mock_instrument_spec: MockInstrumentSpec,
    ) -> None:
        self.config = config
        self.leases = leases
        self.board = board
        self.supervisor = supervisor
        self._on_ticks = on_ticks
        self._on_auth_failure = on_auth_failure
        self._mock_market_factory = mock_market_factory
        self._mock_instrument_spec = mock_instrument_spec
        self.sources: dict[tuple[int, int], Any] = {}
        self.account_modes: dict[int, str] = {}  # the accounts streaming here -> "live" | "mock"
        self.held_applied: set[int] = set()  # the leased accounts the last `apply` streamed
        self.market: MockMarket | None = None
        self._market_tokens: set[int] = set()
        self._tokens_cache: tuple[Any, dict[Any, dict[int, str]]] | None = None
        self._tokens_of: dict[int, str] = {}  # account id -> access token in use (never logged)

    def connection_tokens(self, plan: Any) -> dict[Any, dict[int, str]]:
        """`plan.connection_tokens()`, computed once per plan: it walks every instrument, and the
        lease check asks for it every second."""
        if self._tokens_cache is None or self._tokens_cache[0] is not plan:
            self._tokens_cache = (plan, plan.connection_tokens())
        return self._tokens_cache[1]

    def wanted_accounts(self, plan: Any) -> set[int]:
        return {p.account_id for p in self.connection_tokens(plan)}

    def apply(self, plan: Any, *, market_open: bool, holidays: set[dt.date]) -> None:
        # Only the accounts this ticker holds the lease of; another ticker streams the others.
        desired = {p: t for p, t in self.connection_tokens(plan).items() if self.leases.holds(p.account_id)}
        self.held_applied = {p.account_id for p in desired}
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
                self._close(key)
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
                source = self._open(plan.accounts[placement.account_id], placement.connection_index, mode, holidays)
                if source is None:
                    continue
            current = source.subscriptions
            subscribe = {t: m for t, m in tokens.items() if current.get(t) != m}
            unsubscribe = [t for t in current if t not in tokens]
            if mode == "mock":
                self._ensure_mock_instruments([plan.instruments[t] for t in subscribe], holidays)
            if subscribe or unsubscribe:
                source.apply_diff(subscribe=subscribe, unsubscribe=unsubscribe)
            self.board.set_connection(
                account_id=placement.account_id,
                label=plan.accounts[placement.account_id].label,
                connection_index=placement.connection_index,
                mode=mode,
                instruments=len(tokens),
            )

    def describe(self, plan: Any) -> str:
        """Per account streaming here: its mode, instruments and connections; then what is not streamed."""
        counts: dict[int, int] = {}
        for (account_id, _), source in self.sources.items():
            counts[account_id] = counts.get(account_id, 0) + len(source.subscriptions)
        parts = []
        for account_id, account in sorted(plan.accounts.items()):
            if account_id in self.account_modes:
                parts.append(
                    f"{account.label}: {self.account_modes[account_id]}, {counts.get(account_id, 0)} instruments, "
                    f"{sum(1 for a, _ in self.sources if a == account_id)} connection(s)"
                )
        unplaced = len(plan.unplaced())
        if unplaced:
            parts.append(f"{unplaced} subscription(s) not streamed (over capacity or no usable account)")
        return "; ".join(parts) or "no accounts streaming"

    def _open(self, account: Any, connection_index: int, mode: str, holidays: set[dt.date]) -> Any:
        key = (account.account_id, connection_index)
        handle = self._on_ticks

        def on_ticks(batch: TickBatch, a: int = account.account_id, c: int = connection_index) -> None:
            handle(batch, a, c)

        if mode == "live":
            source: Any = KiteConnectionSource(
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
                market=self._mock_market(holidays),
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

    def _close(self, key: tuple[int, int]) -> None:
        source = self.sources.pop(key)
        self.board.drop_connection(*key)
        name = _task_name(key)

        async def close() -> None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(source.close(), timeout=2.0)
            await self.supervisor.cancel(name, deadline_s=2.0)

        asyncio.get_running_loop().create_task(close(), name=f"close:{name}")

    def _mock_market(self, holidays: set[dt.date]) -> MockMarket:
        if self.market is None:
            self.market = self._mock_market_factory(
                seed=self.config.mock_seed,
                max_state=max(self.config.mock_max_state, 10_000),
                rate=self.config.rate,
                holidays=holidays,
            )
        return self.market

    def _ensure_mock_instruments(self, instruments: list[Any], holidays: set[dt.date]) -> None:
        new = [i for i in instruments if i.instrument_token not in self._market_tokens]
        if not new:
            return
        self._mock_market(holidays).set_instruments(self._mock_instrument_spec(i) for i in new)
        self._market_tokens.update(i.instrument_token for i in new)


def _task_name(key: tuple[int, int]) -> str:
    return f"source:{key[0]}/{key[1]}"


__all__ = ["SourceSet"]
