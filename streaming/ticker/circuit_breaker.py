"""A circuit breaker for calls to Redis (or anything async that can hang or fail).

closed ──N consecutive failures──▶ open ──reset time passes──▶ half-open ──probe ok──▶ closed
                                    ▲                                      │
                                    └───────────── probe fails ────────────┘

While open, `call()` raises `CircuitOpenError` at once, so a Redis outage never stalls the ticker loop;
in half-open exactly one call goes through as the probe and the others are refused. Every call that does
go through is bounded by `call_timeout_s` (a timeout counts as a failure). `on_close` runs when the
breaker closes again after being open: the publisher uses it to re-send the full state Redis missed.

Usage:
    breaker = CircuitBreaker(name="redis", on_close=publisher.resync)
    try:
        await breaker.call(redis.set, key, value)
    except CircuitOpenError:
        ...  # skipped: Redis is down; the data is re-sent on recovery
    except Exception:
        ...  # this call failed (already counted)
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from django.conf import settings

logger = logging.getLogger(__name__)

T = TypeVar("T")
BreakerState = Literal["closed", "open", "half_open"]
Hook = Callable[[], Awaitable[Any] | Any]


class CircuitOpenError(Exception):
    """Refused without trying: the breaker is open (or a half-open probe is already in flight)."""


@dataclass(frozen=True)
class BreakerStatus:
    name: str
    state: BreakerState
    consecutive_failures: int
    failures: int
    successes: int
    rejected: int
    opened: int  # times it opened
    last_error: str
    opened_at: float | None  # time.monotonic() of the last opening


class CircuitBreaker:
    def __init__(
        self,
        *,
        name: str = "redis",
        failure_threshold: int | None = None,
        reset_timeout_s: float | None = None,
        call_timeout_s: float = 2.0,
        on_open: Hook | None = None,
        on_close: Hook | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`failure_threshold` defaults to settings.REDIS_BREAKER_FAILURES, `reset_timeout_s` to
        settings.REDIS_BREAKER_RESET_S. Hooks may be sync or async; async ones run as background tasks so
        the caller is never held up by them."""
        self.name = name
        self.failure_threshold = max(1, failure_threshold or settings.REDIS_BREAKER_FAILURES)
        self.reset_timeout_s = settings.REDIS_BREAKER_RESET_S if reset_timeout_s is None else reset_timeout_s
        self.call_timeout_s = call_timeout_s
        self.on_open = on_open
        self.on_close = on_close
        self._clock = clock
        self._state: BreakerState = "closed"
        self._consecutive_failures = 0
        self._opened_at: float | None = None
        self._probe_in_flight = False
        self._failures = 0
        self._successes = 0
        self._rejected = 0
        self._opened = 0
        self._last_error = ""
        self._hook_tasks: set[asyncio.Task] = set()

    @property
    def state(self) -> BreakerState:
        """The current state; an open breaker whose reset time has passed reads as half-open."""
        if self._state == "open" and self._opened_at is not None:
            if self._clock() - self._opened_at >= self.reset_timeout_s:
                return "half_open"
        return self._state

    def allow(self) -> bool:
        """Would a call go through right now? (Does not reserve the half-open probe.)"""
        state = self.state
        return state == "closed" or (state == "half_open" and not self._probe_in_flight)

    def status(self) -> BreakerStatus:
        return BreakerStatus(
            name=self.name,
            state=self.state,
            consecutive_failures=self._consecutive_failures,
            failures=self._failures,
            successes=self._successes,
            rejected=self._rejected,
            opened=self._opened,
            last_error=self._last_error,
            opened_at=self._opened_at,
        )

    async def call(self, func: Callable[..., Awaitable[T]], /, *args: Any, **kwargs: Any) -> T:
        """Run `await func(*args, **kwargs)` through the breaker.

        Raises CircuitOpenError at once when open (or when another call is the half-open probe);
        otherwise returns the result or re-raises the call's exception (asyncio.TimeoutError after
        `call_timeout_s`), counting it as a failure."""
        state = self.state
        probe = False
        if state == "open" or (state == "half_open" and self._probe_in_flight):
            self._rejected += 1
            raise CircuitOpenError(f"circuit {self.name!r} is open")
        if state == "half_open":
            probe = True
            self._probe_in_flight = True
        try:
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancel that lands as the call ends.
            async with asyncio.timeout(self.call_timeout_s):
                result = await func(*args, **kwargs)
        except Exception as exc:
            self.record_failure(exc)
            raise
        finally:
            if probe:
                self._probe_in_flight = False
        self.record_success()
        return result

    def record_success(self) -> None:
        """Count a success (for callers that talk to the service without `call`)."""
        self._successes += 1
        self._consecutive_failures = 0
        if self._state != "closed":
            self._state = "closed"
            self._opened_at = None
            logger.info("circuit %s closed: the service answers again", self.name)
            self._run_hook(self.on_close, "on_close")

    def record_failure(self, exc: BaseException | None = None) -> None:
        """Count a failure; opens the breaker at the threshold, or again after a failed probe."""
        self._failures += 1
        self._consecutive_failures += 1
        self._last_error = f"{type(exc).__name__}: {exc}" if exc is not None else "failure"
        was = self.state
        if was == "half_open" or (was == "closed" and self._consecutive_failures >= self.failure_threshold):
            self._state = "open"
            self._opened_at = self._clock()
            if was == "closed":
                self._opened += 1
                logger.warning(
                    "circuit %s opened after %d consecutive failures (last: %s); retrying in %.1fs",
                    self.name,
                    self._consecutive_failures,
                    self._last_error,
                    self.reset_timeout_s,
                )
                self._run_hook(self.on_open, "on_open")
            else:
                logger.info("circuit %s probe failed (%s); staying open", self.name, self._last_error)

    def _run_hook(self, hook: Hook | None, label: str) -> None:
        if hook is None:
            return
        try:
            outcome = hook()
        except Exception:
            logger.exception("circuit %s %s hook failed", self.name, label)
            return
        if inspect.isawaitable(outcome):
            task = asyncio.ensure_future(outcome)
            self._hook_tasks.add(task)
            task.add_done_callback(self._hook_done)

    def _hook_done(self, task: asyncio.Task) -> None:
        self._hook_tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("circuit %s hook failed", self.name, exc_info=task.exception())

    async def aclose(self) -> None:
        """Cancel hooks still running (for shutdown)."""
        for task in list(self._hook_tasks):
            task.cancel()
        if self._hook_tasks:
            await asyncio.gather(*self._hook_tasks, return_exceptions=True)
