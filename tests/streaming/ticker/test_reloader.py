"""The reloader: bursts coalesced, queue bounded, rate limit honoured, failures retried, acks sent."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from django.conf import settings as django_settings

from streaming.ticker.reloader import SubscriptionReloader
from tickerproject.platform import reload_notifications as notifications

REPO_ROOT = Path(__file__).resolve().parents[3]


class Recorder:
    """A perform_reload callback that records each call (request ids, start time)."""

    def __init__(self, fail_times: int = 0, gate: asyncio.Event | None = None) -> None:
        self.calls: list[list[str]] = []
        self.started: list[float] = []
        self.fail_times = fail_times
        self.gate = gate
        self.event = asyncio.Event()

    async def __call__(self, request_ids: list[str]) -> None:
        self.started.append(time.monotonic())
        if self.gate is not None:
            await self.gate.wait()
        if self.fail_times > 0:
            self.fail_times -= 1
            raise RuntimeError("database is locked")
        self.calls.append(request_ids)
        self.event.set()

    async def wait_calls(self, n: int, within_s: float = 5.0) -> None:
        async with asyncio.timeout(within_s):
            while len(self.calls) < n:
                self.event.clear()
                await self.event.wait()


async def _run(reloader: SubscriptionReloader) -> asyncio.Task:
    task = asyncio.create_task(reloader.run())
    await asyncio.sleep(0)  # let it register its listener
    return task


async def _stop(task: asyncio.Task) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def _reloader(recorder: Recorder, **kwargs) -> SubscriptionReloader:
    kwargs.setdefault("min_interval_s", 0.2)
    kwargs.setdefault("check_interval_s", None)
    kwargs.setdefault("listen_redis", False)
    return SubscriptionReloader(recorder, **kwargs)


async def test_a_burst_of_100_notifications_becomes_one_or_two_reloads_and_every_request_is_acked():
    recorder = Recorder()
    acked: list[str] = []
    reloader = _reloader(recorder, ack=acked.extend)
    task = await _run(reloader)

    ids = [notifications.notify_subscriptions_changed(reason=f"edit {n}") for n in range(100)]
    async with asyncio.timeout(5):
        while sum(len(call) for call in recorder.calls) < 100:
            await recorder.wait_calls(len(recorder.calls) + 1)
    await asyncio.sleep(0.3)  # a needless extra reload would show up here
    await _stop(task)

    assert 1 <= len(recorder.calls) <= 2
    assert sorted(id_ for call in recorder.calls for id_ in call) == sorted(ids)
    assert sorted(acked) == sorted(ids)
    assert reloader.stats().requested == 100 and reloader.stats().dropped == 0


async def test_notifications_from_other_threads_reach_the_loop():
    recorder = Recorder()
    reloader = _reloader(recorder, ack=lambda ids: None)
    task = await _run(reloader)

    thread = threading.Thread(target=notifications.notify_subscriptions_changed, kwargs={"reason": "admin edit"})
    thread.start()
    thread.join()
    await recorder.wait_calls(1)
    await _stop(task)

    assert len(recorder.calls[0]) == 1


async def test_the_queue_is_bounded_but_a_reload_still_covers_the_dropped_requests(caplog):
    gate = asyncio.Event()
    recorder = Recorder(gate=gate)
    acked: list[str] = []
    reloader = _reloader(recorder, queue_max=10, min_interval_s=0.0, debounce_s=0, ack=acked.extend)
    task = await _run(reloader)

    reloader.request("first")
    await asyncio.sleep(0.01)  # the reload of "first" is now in progress, held at the gate
    accepted = [reloader.request(f"r{n}") for n in range(50)]

    assert accepted.count(True) == 10 and accepted.count(False) == 40
    assert reloader.stats().dropped == 40
    assert "reload queue full" in caplog.text

    gate.set()
    await recorder.wait_calls(2)
    await asyncio.sleep(0.05)
    await _stop(task)

    assert len(recorder.calls) == 2  # the one in progress, then one for everything that came meanwhile
    assert recorder.calls[1] == [f"r{n}" for n in range(10)]
    assert sorted(acked) == sorted(["first", *(f"r{n}" for n in range(10))])


async def test_reloads_are_rate_limited():
    recorder = Recorder()
    reloader = _reloader(recorder, min_interval_s=0.15, debounce_s=0, ack=lambda ids: None)
    task = await _run(reloader)

    for n in range(20):
        reloader.request(f"r{n}")
        await asyncio.sleep(0.03)
    async with asyncio.timeout(5):
        while sum(len(call) for call in recorder.calls) < 20:
            await recorder.wait_calls(len(recorder.calls) + 1)
    await _stop(task)

    gaps = [later - earlier for earlier, later in zip(recorder.started, recorder.started[1:], strict=False)]
    assert len(recorder.started) >= 2
    assert all(gap >= 0.15 for gap in gaps), gaps
    assert sorted(i for call in recorder.calls for i in call) == sorted(f"r{n}" for n in range(20))


async def test_a_failed_reload_is_retried_and_its_requests_acked_only_after_success(caplog):
    recorder = Recorder(fail_times=1)
    acked: list[str] = []
    reloader = _reloader(recorder, min_interval_s=0.05, ack=acked.extend)
    task = await _run(reloader)

    reloader.request("change-1")
    await recorder.wait_calls(1)
    await _stop(task)

    assert recorder.calls == [["change-1"]]
    assert acked == ["change-1"]
    stats = reloader.stats()
    assert stats.failures == 1 and stats.reloads == 1 and stats.last_error == ""
    assert "subscription reload failed" in caplog.text


async def test_periodic_check_reloads_only_when_something_changed():
    recorder = Recorder()
    answers = [False, True, False, False]

    async def has_changed() -> bool:
        return answers.pop(0) if answers else False

    reloader = _reloader(recorder, check_interval_s=0.03, min_interval_s=0, has_changed=has_changed)
    task = await _run(reloader)
    await recorder.wait_calls(1)
    await asyncio.sleep(0.15)
    await _stop(task)

    assert recorder.calls == [[]]  # one reload, for the one change, with no request ids


async def test_periodic_check_without_a_change_detector_reloads_every_interval():
    interval = 0.05
    recorder = Recorder()
    reloader = _reloader(recorder, check_interval_s=interval, min_interval_s=0)
    started = time.monotonic()
    task = await _run(reloader)
    await recorder.wait_calls(3)
    await _stop(task)

    # Each periodic reload waits a full quiet interval after the previous one (the first after the start);
    # the small allowance is for the event loop, which may fire a timer up to its clock resolution early.
    gaps = [later - earlier for earlier, later in zip([started, *recorder.started], recorder.started, strict=False)]
    assert all(gap >= interval - 1e-3 for gap in gaps), gaps
    assert recorder.calls[:3] == [[], [], []]  # periodic reloads carry no request ids


async def test_blocking_wait_returns_true_once_the_running_loop_applied_the_change():
    recorder = Recorder()
    reloader = _reloader(recorder, min_interval_s=0)
    task = await _run(reloader)

    applied = await asyncio.to_thread(notifications.request_reload_and_wait, reason="api edit", timeout=5)
    await _stop(task)

    assert applied is True
    assert len(recorder.calls) == 1


async def test_blocking_wait_returns_false_when_no_ticker_applies_it():
    applied = await asyncio.to_thread(notifications.request_reload_and_wait, reason="api edit", timeout=0.1)

    assert applied is False


@pytest.mark.redis
async def test_notifications_from_another_process_reach_the_reloader_and_its_ack_returns(redis_client):
    recorder = Recorder()
    reloader = _reloader(recorder, min_interval_s=0, listen_in_process=False, listen_redis=True)
    task = await _run(reloader)
    await asyncio.sleep(0.2)  # subscribed

    script = (
        "import django; django.setup();"
        "from tickerproject.platform.reload_notifications import request_reload_and_wait;"
        "print('applied' if request_reload_and_wait(reason='edit in the web process', timeout=10) else 'timeout')"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tickerproject.settings", "REDIS_URL": django_settings.REDIS_URL}
    env.setdefault("SECRET_KEY", "test-secret-key-for-a-subprocess-0123456789")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 30)
    await _stop(task)

    assert stdout.decode().strip() == "applied", stderr.decode()[-2000:]
    assert len(recorder.calls) == 1 and len(recorder.calls[0]) == 1
