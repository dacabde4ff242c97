"""The ticker's composition: the apps' reads and writes handed to `streaming.ticker` as callables.

`runticker`, the tests and the benchmarks all build their `TickerLoop` here, so there is one wiring.
The database callables run on worker threads (the loop never calls them on its event loop); each
starts and ends with `close_old_connections`, as a thread Django does not manage must.
"""

from __future__ import annotations

import datetime as dt
import functools
import threading
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

from django.db import close_old_connections

from history.selectors import atm_iv_closes, chain_series_points, previous_close_oi
from history.services.chain_history import ChainMinute, atm_iv_backfill_mock, chain_minutes_record
from history.services.session_backfill import session_backfill_run
from mocking.market import InstrumentSpec, MockMarket, SessionClock
from streaming.ticker.config import LoopConfig
from streaming.ticker.dependencies import (
    ChainHistory,
    ChainHistoryRequest,
    PlanLoader,
    TickerDependencies,
    no_chain_history,
    no_minutes_recorded,
)
from streaming.ticker.loop import TickerLoop
from subscriptions.assignment import Plan
from subscriptions.selectors import market_holiday_dates
from subscriptions.services.accounts import account_record_auth_failure
from subscriptions.services.reconcile import load_plan, reconcile_subscriptions

P = ParamSpec("P")
R = TypeVar("R")


def _on_own_connection(function: Callable[P, R]) -> Callable[P, R]:
    @functools.wraps(function)
    def call(*args: P.args, **kwargs: P.kwargs) -> R:
        close_old_connections()
        try:
            return function(*args, **kwargs)
        finally:
            close_old_connections()

    return call


@_on_own_connection
def reconcile_and_load_plan(mode: str) -> tuple[Plan, set[dt.date]]:
    """Reconcile for `mode`, then the plan and the NSE holidays."""
    # The loop applies the result itself: no notification back to its own reloader.
    reconcile_subscriptions(mode=mode, notify=False)
    return load_plan(), market_holiday_dates(exchange="NSE")


@_on_own_connection
def _previous_close_oi(*, subscription_ids: list[int], day: dt.date) -> dict[int, float]:
    return previous_close_oi(subscription_ids=subscription_ids, day=day)


@_on_own_connection
def _record_auth_failure(*, account_id: int, error: str) -> None:
    account_record_auth_failure(account_id=account_id, error=error)


@_on_own_connection
def _session_backfill(*, account_id: int, day: dt.date, subscription_ids: list[int], stop: threading.Event) -> None:
    session_backfill_run(account_id=account_id, day=day, subscription_ids=subscription_ids, stop=stop)


@_on_own_connection
def _record_chain_minutes(*, minutes: list[dict[str, Any]]) -> None:
    chain_minutes_record(minutes=[ChainMinute(**minute) for minute in minutes])


@_on_own_connection
def _load_chain_history(request: ChainHistoryRequest) -> ChainHistory:
    """The stored series and IV closes the ticker asks for; mock chains first get the closes the mock
    history implies for sessions that have none (a fresh install shows a percentile at once)."""
    from django.conf import settings

    series = {
        (underlying, expiry): chain_series_points(underlying=underlying, expiry=expiry, session_day=day)
        for underlying, expiry, day in request.series
    }
    closes: dict[tuple[str, str], list[float]] = {}
    holidays = market_holiday_dates(exchange="NSE") if request.mock and request.closes else set()
    for underlying, bucket, day in request.closes:
        if request.mock:
            atm_iv_backfill_mock(
                underlying=underlying,
                bucket=bucket,
                before_day=day,
                sessions=request.sessions,
                weeklies=request.weeklies.get(underlying, False),
                holidays=holidays,
                seed=settings.MOCK_SEED,
            )
        closes[(underlying, bucket)] = atm_iv_closes(
            underlying=underlying, bucket=bucket, before_day=day, sessions=request.sessions
        )
    return ChainHistory(series=series, closes=closes)


def _no_previous_close(*, subscription_ids: list[int], day: dt.date) -> dict[int, float]:
    return {}


def mock_market(*, seed: int, max_state: int, rate: float, holidays: set[dt.date]) -> MockMarket:
    """The in-process mock market, playing a simulated session outside NSE hours."""
    return MockMarket(seed=seed, max_state=max_state, rate=rate, clock=SessionClock(holidays=holidays))


def ticker_dependencies(*, plan_loader: PlanLoader | None = None) -> TickerDependencies:
    """Everything the ticker reads and writes outside streaming. A given `plan_loader` (a synthetic
    plan: the benchmarks) comes with no previous close and no chain history, which only the database
    knows (and keeps)."""
    return TickerDependencies(
        plan_loader=plan_loader or reconcile_and_load_plan,
        prev_close_loader=_previous_close_oi if plan_loader is None else _no_previous_close,
        record_auth_failure=_record_auth_failure,
        session_backfill=_session_backfill,
        mock_market_factory=mock_market,
        mock_instrument_spec=InstrumentSpec.from_instrument,
        chain_minutes_recorder=_record_chain_minutes if plan_loader is None else no_minutes_recorded,
        chain_history_loader=_load_chain_history if plan_loader is None else no_chain_history,
    )


def build_ticker_loop(
    config: LoopConfig | None = None, *, plan_loader: PlanLoader | None = None, **options: Any
) -> TickerLoop:
    """A `TickerLoop` wired to the apps; `options` are `TickerLoop`'s own (channel layer, Redis, leases...)."""
    return TickerLoop(config, dependencies=ticker_dependencies(plan_loader=plan_loader), **options)


__all__ = ["build_ticker_loop", "mock_market", "reconcile_and_load_plan", "ticker_dependencies"]
