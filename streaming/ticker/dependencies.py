"""What the ticker loop needs from the rest of the project, as callables the composition root injects.

The ticker process reads the plan and the previous close from the database, records an account's
auth failure, backfills history once per session and plays the mock market; none of that is
streaming's business, so `streaming.ticker` names only the shapes here and
`tickerproject.ticker_wiring` supplies the implementations. The first four and the chain history's
recorder and loader touch the database: the loop calls them in worker threads, never on the event loop.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol


class PlanLoader(Protocol):
    def __call__(self, mode: str, /) -> tuple[Any, set[dt.date]]:
        """Reconcile for `mode` and return (the plan to stream, the exchange holidays)."""
        ...


class PrevCloseLoader(Protocol):
    def __call__(self, *, subscription_ids: list[int], day: dt.date) -> dict[int, float]:
        """Instrument token -> open interest at the close of the session before `day`, where known."""
        ...


class AuthFailureRecorder(Protocol):
    def __call__(self, *, account_id: int, error: str) -> None:
        """Mark the account's token as rejected, so the next plan streams its instruments elsewhere."""
        ...


class SessionBackfill(Protocol):
    def __call__(self, *, account_id: int, day: dt.date, subscription_ids: list[int], stop: threading.Event) -> None:
        """Backfill what history is missing for these subscriptions, once per account and day; blocks,
        and ends early once `stop` is set."""
        ...


class ChainMinutesRecorder(Protocol):
    def __call__(self, *, minutes: list[dict[str, Any]]) -> None:
        """Persist chains' minute points: dicts with `underlying`, `expiry` (date), `is_mock`,
        `buckets` (the IV-history buckets the chain stands for) and the values of
        `streaming.contract.SERIES_FIELDS` (`ts` as `timestamp`)."""
        ...


@dataclass(frozen=True)
class ChainHistoryRequest:
    series: list[tuple[str, dt.date, dt.date]]  # (underlying, expiry, session day): stored minutes wanted
    closes: list[tuple[str, str, dt.date]]  # (underlying, bucket, session day): past sessions' closing ATM IVs
    sessions: int  # how many past sessions (N of IV percentile and rank)
    mock: bool  # the chains are mock: fill missing closes from the mock history first
    weeklies: dict[str, bool]  # underlying -> whether it lists weekly expiries


@dataclass(frozen=True)
class ChainHistory:
    series: dict[tuple[str, dt.date], list[tuple[Any, ...]]]  # (underlying, expiry) -> points, oldest first
    closes: dict[tuple[str, str], list[float]]  # (underlying, bucket) -> closing ATM IVs, oldest first


class ChainHistoryLoader(Protocol):
    def __call__(self, request: ChainHistoryRequest, /) -> ChainHistory:
        """What the database holds of the chains' series and IV history."""
        ...


def no_minutes_recorded(*, minutes: list[dict[str, Any]]) -> None:
    """A recorder for synthetic plans (the benchmarks): nothing is kept."""


def no_chain_history(request: ChainHistoryRequest, /) -> ChainHistory:
    return ChainHistory(series={}, closes={})


class MockClock(Protocol):
    def timestamp(self) -> float: ...


class MockMarket(Protocol):
    """The in-process market the mock sources step (`streaming.ticker.sources.MockConnectionSource`)."""

    @property
    def clock(self) -> MockClock: ...
    def set_instruments(self, specs: Iterable[Any]) -> None: ...
    def ticks(self, tokens: Any, modes: Any, *, now: float | None = None) -> Any: ...


class MockMarketFactory(Protocol):
    def __call__(self, *, seed: int, max_state: int, rate: float, holidays: set[dt.date]) -> MockMarket: ...


class MockInstrumentSpec(Protocol):
    def __call__(self, instrument: Any, /) -> Any:
        """What the mock market needs to know about one planned instrument."""
        ...


@dataclass(frozen=True)
class TickerDependencies:
    plan_loader: PlanLoader
    prev_close_loader: PrevCloseLoader
    record_auth_failure: AuthFailureRecorder
    session_backfill: SessionBackfill
    mock_market_factory: MockMarketFactory
    mock_instrument_spec: MockInstrumentSpec
    chain_minutes_recorder: ChainMinutesRecorder = no_minutes_recorded
    chain_history_loader: ChainHistoryLoader = no_chain_history


__all__ = [
    "AuthFailureRecorder",
    "ChainHistory",
    "ChainHistoryLoader",
    "ChainHistoryRequest",
    "ChainMinutesRecorder",
    "MockInstrumentSpec",
    "MockMarket",
    "MockMarketFactory",
    "PlanLoader",
    "PrevCloseLoader",
    "SessionBackfill",
    "TickerDependencies",
]
