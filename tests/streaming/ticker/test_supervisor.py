"""The task monitor: crashes are logged with context and restarted with capped backoff; clean stop."""

from __future__ import annotations

import asyncio
import logging

import pytest

from streaming.ticker.supervisor import TaskSupervisor


class RecordingSleep:
    """Stands in for asyncio.sleep: records the backoff delays, yields without waiting."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        await asyncio.sleep(0)


async def _until(predicate, within_s: float = 2.0) -> None:
    """Poll a condition the code under test offers no event for."""
    async with asyncio.timeout(within_s):
        while not predicate():  # noqa: ASYNC110
            await asyncio.sleep(0.001)


async def test_crashing_task_is_logged_with_context_and_restarted_with_growing_capped_backoff(caplog):
    sleep = RecordingSleep()
    supervisor = TaskSupervisor(initial_backoff_s=0.5, max_backoff_s=4.0, jitter=0, sleep=sleep)
    runs = 0
    healthy = asyncio.Event()

    async def flaky() -> None:
        nonlocal runs
        runs += 1
        if runs <= 5:
            raise ConnectionError(f"boom {runs}")
        healthy.set()
        await asyncio.Event().wait()  # then runs until cancelled

    with caplog.at_level(logging.ERROR):
        supervisor.start("conn A/0", flaky, context={"account": "A", "connection": 0})
        await asyncio.wait_for(healthy.wait(), 2)

    assert sleep.delays == [0.5, 1.0, 2.0, 4.0, 4.0]
    status = supervisor.status()["conn A/0"]
    assert status.state == "running" and status.restarts == 5
    assert status.last_error == "ConnectionError: boom 5"
    crash_logs = [r for r in caplog.records if "task conn A/0 crashed" in r.getMessage()]
    assert len(crash_logs) == 5
    assert "'account': 'A'" in crash_logs[0].getMessage() and crash_logs[0].exc_info is not None
    assert await supervisor.stop(deadline_s=1.0)
    assert supervisor.status()["conn A/0"].state == "stopped"


async def test_status_shows_restarting_between_attempts():
    gate = asyncio.Event()

    async def gated_sleep(delay: float) -> None:
        await gate.wait()

    supervisor = TaskSupervisor(jitter=0, sleep=gated_sleep)

    async def crash() -> None:
        raise ValueError("bad frame")

    supervisor.start("parser", crash)
    await _until(lambda: supervisor.status()["parser"].state == "restarting")
    status = supervisor.status()["parser"]
    assert status.next_restart_in_s == 0.5 and status.last_error == "ValueError: bad frame"
    await supervisor.stop(deadline_s=1.0)


async def test_gives_up_after_max_restarts_and_reports_failed(caplog):
    supervisor = TaskSupervisor(max_restarts=2, jitter=0, sleep=RecordingSleep())
    attempts = 0

    async def always_crashes() -> None:
        nonlocal attempts
        attempts += 1
        raise RuntimeError("cannot start")

    with caplog.at_level(logging.ERROR):
        task = supervisor.start("history", always_crashes)
        await asyncio.wait_for(task, 2)

    assert attempts == 3
    assert supervisor.status()["history"].state == "failed"
    assert "task history failed 3 times in a row; giving up" in caplog.text


async def test_a_task_that_returns_is_finished_or_restarted_when_asked():
    supervisor = TaskSupervisor(jitter=0, sleep=RecordingSleep())
    once_runs = 0
    loop_runs = 0

    async def once() -> None:
        nonlocal once_runs
        once_runs += 1

    async def periodic() -> None:
        nonlocal loop_runs
        loop_runs += 1

    await asyncio.wait_for(supervisor.start("once", once), 1)
    supervisor.start("periodic", periodic, restart_on_exit=True)
    await _until(lambda: loop_runs >= 3)

    assert once_runs == 1 and supervisor.status()["once"].state == "finished"
    assert supervisor.status()["periodic"].restarts >= 2
    await supervisor.stop(deadline_s=1.0)


async def test_backoff_resets_after_a_healthy_run():
    sleep = RecordingSleep()
    supervisor = TaskSupervisor(initial_backoff_s=1, max_backoff_s=60, healthy_after_s=0.02, jitter=0, sleep=sleep)
    runs = 0

    async def crashes_after_a_while() -> None:
        nonlocal runs
        runs += 1
        if runs in (1, 2):
            raise OSError("quick crash")
        if runs == 3:
            await asyncio.sleep(0.05)  # ran healthy long enough
            raise OSError("late crash")
        await asyncio.Event().wait()

    supervisor.start("feed", crashes_after_a_while)
    await _until(lambda: runs >= 4)

    assert sleep.delays == [1, 2, 1]
    await supervisor.stop(deadline_s=1.0)


async def test_stop_cancels_everything_within_the_deadline_and_names_stragglers(caplog):
    supervisor = TaskSupervisor()
    cleaned: list[str] = []

    async def polite(name: str) -> None:
        try:
            await asyncio.Event().wait()
        finally:
            cleaned.append(name)

    async def stubborn() -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            await asyncio.sleep(0.2)  # slow to clean up (the deadline protects the shutdown)

    supervisor.start("a", lambda: polite("a"))
    supervisor.start("b", lambda: polite("b"))
    await asyncio.sleep(0)
    assert await supervisor.stop(deadline_s=1.0)
    assert sorted(cleaned) == ["a", "b"]
    assert {s.state for s in supervisor.status().values()} == {"stopped"}

    stubborn_supervisor = TaskSupervisor()
    task = stubborn_supervisor.start("stubborn", stubborn)
    await asyncio.sleep(0)
    assert not await stubborn_supervisor.stop(deadline_s=0.05)
    assert "tasks still running" in caplog.text and "stubborn" in caplog.text
    await asyncio.wait_for(task, 1)  # it does end later, on its own


async def test_names_are_unique_while_running_and_cancel_one():
    supervisor = TaskSupervisor()

    async def forever() -> None:
        await asyncio.Event().wait()

    supervisor.start("conn", forever)
    with pytest.raises(ValueError, match="already supervised"):
        supervisor.start("conn", forever)
    await supervisor.cancel("conn")
    assert supervisor.names() == []
    supervisor.start("conn", forever)  # free again
    await supervisor.stop(deadline_s=1.0)
