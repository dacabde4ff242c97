"""Where candles come from: Kite's historical API (rate-limited per api_key, retried with backoff) or the
mock market, behind one `CandleSource` protocol; `default_source()` picks one as the bootstrapper does."""

from __future__ import annotations

import datetime as dt
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import requests
from django.conf import settings

from core.calendar import IST
from history.rate_limit import RateLimiter, historical_rate_limiter
from history.services.candles import CandleRow, candle_rows_from_kite, candle_rows_from_tuples
from subscriptions.models import Instrument

logger = logging.getLogger(__name__)

KITE_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"


class InstrumentRejected(Exception):
    """Kite refuses this instrument (unknown/expired token, bad parameters): give it up for this run."""


class BackfillCancelled(Exception):
    """Raised by an `on_progress` callback to end a run early (its caller is stopping): the run ends
    partial, and the next one continues where it stopped (coverage is recorded chunk by chunk)."""


class SourceUnavailable(Exception):
    """The source cannot serve anything (token rejected, retries exhausted): stop the run."""


class CandleSource(Protocol):
    name: str
    is_mock: bool

    def fetch(self, instrument: Instrument, interval: str, start: dt.datetime, end: dt.datetime) -> list[CandleRow]:
        """Candles with start <= timestamp < end."""
        ...


@dataclass
class RetryPolicy:
    attempts: int = 6
    base_delay: float = 0.5
    max_delay: float = 30.0

    def delay(self, attempt: int) -> float:
        """Exponential backoff with full jitter, so parallel workers do not retry in step."""
        return random.uniform(0, min(self.max_delay, self.base_delay * 2**attempt))


def _is_retryable(exc: Exception) -> bool:
    from kiteconnect import exceptions as kite_exceptions

    if isinstance(exc, requests.exceptions.RequestException):  # connection refused, reset, timeout
        return True
    if isinstance(exc, kite_exceptions.KiteException):
        code = getattr(exc, "code", 500) or 500
        return code == 429 or code >= 500
    return False


class KiteCandleSource:
    """Kite's historical API through `KiteConnect.historical_data`, rate limited and retried."""

    is_mock = False
    name = "kite"

    def __init__(
        self,
        *,
        api_key: str,
        access_token: str,
        root: str | None = None,
        limiter: RateLimiter | None = None,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        timeout: float = 15.0,
        on_token_rejected: Callable[[str], None] | None = None,
    ) -> None:
        self.api_key = api_key
        self.on_token_rejected = on_token_rejected
        # Imported here, not with the module: the kiteconnect package also loads its websocket ticker's
        # Twisted and autobahn (about 30 MB), which only a process that calls Kite's REST API needs.
        from kiteconnect import KiteConnect

        self.client = KiteConnect(api_key=api_key, root=root or settings.KITE_API_ROOT, timeout=timeout)
        self.client.set_access_token(access_token)
        self.limiter = limiter or historical_rate_limiter()
        self.retry = retry or RetryPolicy()
        self.sleep = sleep
        self.requests = 0
        self.retries = 0

    def fetch(self, instrument: Instrument, interval: str, start: dt.datetime, end: dt.datetime) -> list[CandleRow]:
        # Kite reads naive times as IST and includes `to`; our ranges are half-open.
        from_s = start.astimezone(IST).strftime(KITE_TIME_FORMAT)
        to_s = (end - dt.timedelta(seconds=1)).astimezone(IST).strftime(KITE_TIME_FORMAT)
        with_oi = instrument.instrument_type != Instrument.InstrumentType.EQ
        from kiteconnect import exceptions as kite_exceptions

        last_error: Exception | None = None
        for attempt in range(self.retry.attempts):
            self.limiter.acquire(self.api_key, timeout=120.0)
            self.requests += 1
            try:
                records = self.client.historical_data(
                    instrument.instrument_token, from_s, to_s, interval, continuous=False, oi=with_oi
                )
            except kite_exceptions.TokenException as exc:
                if self.on_token_rejected is not None:
                    self.on_token_rejected(str(exc))
                raise SourceUnavailable(f"Kite rejected the access token: {exc}") from exc
            except kite_exceptions.InputException as exc:
                raise InstrumentRejected(str(exc)) from exc
            except Exception as exc:
                if not _is_retryable(exc):
                    raise
                last_error = exc
                self.retries += 1
                delay = self.retry.delay(attempt)
                logger.info(
                    "historical %s %s: %s (attempt %d), retrying in %.2fs",
                    instrument.instrument_token,
                    interval,
                    type(exc).__name__,
                    attempt + 1,
                    delay,
                )
                self.sleep(delay)
                continue
            rows = candle_rows_from_kite(records)
            return [r for r in rows if start <= r.timestamp < end]
        raise SourceUnavailable(
            f"historical API still failing after {self.retry.attempts} attempts: {type(last_error).__name__}: "
            f"{last_error}"
        )


def instrument_spec(instrument: Instrument) -> Any:
    """The mock market's InstrumentSpec for an Instrument row."""
    from mocking.market import InstrumentSpec

    return InstrumentSpec.from_instrument(instrument)


class MockCandleSource:
    """Candles from the mock market (deterministic per seed, token, interval and time)."""

    is_mock = True
    name = "mock"

    def __init__(self, *, market: Any | None = None, seed: int | None = None) -> None:
        if market is None:
            from mocking.market import MockMarket

            market = MockMarket(seed=settings.MOCK_SEED if seed is None else seed)
        self.market = market
        self._known: set[int] = set()
        self.requests = 0
        self.retries = 0

    def fetch(self, instrument: Instrument, interval: str, start: dt.datetime, end: dt.datetime) -> list[CandleRow]:
        if instrument.instrument_token not in self._known:
            self.market.set_instruments([instrument_spec(instrument)])
            self._known.add(instrument.instrument_token)
        self.requests += 1
        rows = candle_rows_from_tuples(self.market.candles(instrument.instrument_token, interval, start, end))
        return [r for r in rows if start <= r.timestamp < end]


def default_source() -> CandleSource:
    """Kite with the best live account, or the mock market when there is none (or TICKER_MODE=mock)."""
    from subscriptions.selectors import active_account_with_token

    account = None if settings.TICKER_MODE == "mock" else active_account_with_token()
    if account is None:
        return MockCandleSource()

    def token_rejected(message: str) -> None:
        from subscriptions.models import TradingAccount
        from subscriptions.services.accounts import account_record_health

        account_record_health(
            account=account, health=TradingAccount.Health.AUTH_FAILED, error=f"historical API: {message}"
        )

    return KiteCandleSource(
        api_key=account.api_key, access_token=account.access_token, on_token_rejected=token_rejected
    )
