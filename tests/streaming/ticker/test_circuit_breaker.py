"""The circuit breaker: closed → open → half-open → closed, fast refusals, bounded calls, recovery hook."""

from __future__ import annotations

import asyncio
import logging

import pytest

from streaming.ticker.circuit_breaker import CircuitBreaker, CircuitOpenError


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Flaky:
    """An async service that fails while `down` is set."""

    def __init__(self) -> None:
        self.down = False
        self.calls = 0

    async def __call__(self, value: str = "ok") -> str:
        self.calls += 1
        if self.down:
            raise ConnectionError("connection refused")
        return value


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


async def test_opens_after_n_consecutive_failures_and_then_refuses_without_calling(clock, caplog):
    service = Flaky()
    breaker = CircuitBreaker(name="redis", failure_threshold=3, reset_timeout_s=5, clock=clock)
    service.down = True

    for _ in range(3):
        with pytest.raises(ConnectionError):
            await breaker.call(service)
    assert breaker.state == "open"
    assert "circuit redis opened after 3 consecutive failures" in caplog.text

    with pytest.raises(CircuitOpenError):
        await breaker.call(service)
    assert service.calls == 3  # refused without touching the service
    status = breaker.status()
    assert (status.failures, status.rejected, status.opened) == (3, 1, 1)
    assert "ConnectionError: connection refused" in status.last_error


async def test_a_success_resets_the_failure_count(clock):
    service = Flaky()
    breaker = CircuitBreaker(failure_threshold=3, reset_timeout_s=5, clock=clock)

    for down in (True, True, False, True, True):
        service.down = down
        try:
            await breaker.call(service)
        except ConnectionError:
            pass
    assert breaker.state == "closed"


async def test_half_open_probe_success_closes_and_runs_on_close(clock):
    service = Flaky()
    resyncs: list[str] = []

    async def resync() -> None:
        resyncs.append("resync")

    breaker = CircuitBreaker(failure_threshold=1, reset_timeout_s=5, clock=clock, on_close=resync)
    service.down = True
    with pytest.raises(ConnectionError):
        await breaker.call(service)
    assert breaker.state == "open"

    clock.now += 4.9
    with pytest.raises(CircuitOpenError):
        await breaker.call(service)
    clock.now += 0.2
    assert breaker.state == "half_open" and breaker.allow()

    service.down = False
    assert await breaker.call(service, "back") == "back"
    assert breaker.state == "closed"
    await asyncio.sleep(0)  # the async hook runs as a task
    assert resyncs == ["resync"]


async def test_half_open_probe_failure_reopens_for_another_reset_period(clock):
    service = Flaky()
    breaker = CircuitBreaker(failure_threshold=2, reset_timeout_s=5, clock=clock)
    service.down = True
    for _ in range(2):
        with pytest.raises(ConnectionError):
            await breaker.call(service)

    clock.now += 5
    with pytest.raises(ConnectionError):
        await breaker.call(service)  # the probe
    assert breaker.state == "open"
    clock.now += 4
    assert breaker.state == "open"
    clock.now += 1
    assert breaker.state == "half_open"
    assert breaker.status().opened == 1  # re-opening after a probe is the same outage


async def test_only_one_probe_at_a_time_in_half_open(clock):
    release = asyncio.Event()

    async def slow() -> str:
        await release.wait()
        return "ok"

    breaker = CircuitBreaker(failure_threshold=1, reset_timeout_s=5, clock=clock)
    breaker.record_failure(ConnectionError("down"))
    clock.now += 5

    probe = asyncio.create_task(breaker.call(slow))
    await asyncio.sleep(0)
    with pytest.raises(CircuitOpenError):
        await breaker.call(slow)
    release.set()
    assert await probe == "ok"
    assert breaker.state == "closed"


async def test_a_hanging_call_is_cut_off_and_counts_as_a_failure(clock):
    async def hang() -> None:
        await asyncio.sleep(60)

    breaker = CircuitBreaker(failure_threshold=1, reset_timeout_s=5, call_timeout_s=0.05, clock=clock)

    with pytest.raises(TimeoutError):
        await breaker.call(hang)
    assert breaker.state == "open"


async def test_hook_errors_are_logged_not_raised(clock, caplog):
    def broken_hook() -> None:
        raise RuntimeError("hook exploded")

    breaker = CircuitBreaker(failure_threshold=1, reset_timeout_s=0, clock=clock, on_open=broken_hook)
    with caplog.at_level(logging.ERROR):
        breaker.record_failure(ConnectionError("down"))
    assert breaker.state == "half_open"  # reset time 0: probe allowed at once
    assert "on_open hook failed" in caplog.text


async def test_defaults_come_from_settings(settings):
    settings.REDIS_BREAKER_FAILURES = 7
    settings.REDIS_BREAKER_RESET_S = 2.5

    breaker = CircuitBreaker()

    assert (breaker.failure_threshold, breaker.reset_timeout_s) == (7, 2.5)
