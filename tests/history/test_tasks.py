"""Tasks, their lock, the default schedule, the new-subscription hook and the embedded beat."""

import threading
import time

import pytest
from django.conf import settings

from history.models import BackfillRun, Candle
from history.tasks import BACKFILL_LOCK, backfill
from tests.subscriptions.factories import IndexFactory, SubscriptionFactory
from tickerproject.platform.locks import lock_is_held, task_lock


@pytest.fixture
def clean_locks():
    from django.core.cache import cache

    if settings.REDIS_URL:
        from tickerproject.platform.redis_client import sync_redis

        for key in sync_redis().scan_iter("tp:lock:*"):
            sync_redis().delete(key)
    cache.clear()
    yield
    cache.clear()


def test_lock_is_exclusive_and_released(clean_locks):
    with task_lock("job", timeout=30) as first:
        assert first
        assert lock_is_held("job")
        with task_lock("job", timeout=30) as second:
            assert not second
        assert lock_is_held("job")  # the loser did not free the winner's lock
    assert not lock_is_held("job")
    with task_lock("job", timeout=30) as again:
        assert again


def test_lock_expires_so_a_dead_holder_cannot_block_forever(clean_locks):
    with task_lock("short", timeout=1) as first:
        assert first
        time.sleep(1.3)
        with task_lock("short", timeout=30) as second:
            assert second


def test_lock_waits_when_asked(clean_locks):
    holder_done = threading.Event()

    def hold():
        with task_lock("waited", timeout=30):
            time.sleep(0.5)
        holder_done.set()

    t = threading.Thread(target=hold)
    t.start()
    time.sleep(0.1)
    with task_lock("waited", timeout=30, wait=5) as acquired:
        assert acquired and holder_done.is_set()
    t.join()


@pytest.mark.redis
def test_redis_lock_is_seen_by_other_processes(clean_locks, redis_client):
    with task_lock("cross", timeout=30) as acquired:
        assert acquired
        assert redis_client.exists("tp:lock:cross")  # visible to every process on this Redis


@pytest.mark.django_db
def test_backfill_task_skips_while_another_backfill_runs(clean_locks):
    with task_lock(BACKFILL_LOCK, timeout=30):
        result = backfill.apply(kwargs={"trigger": "test"}).get()
    run = BackfillRun.objects.get(pk=result["run_id"])
    assert run.status == BackfillRun.Status.SKIPPED
    assert "another backfill" in run.message


@pytest.mark.django_db
def test_backfill_task_without_live_account_writes_mock_candles(clean_locks, settings):
    settings.HISTORICAL_INTERVALS = ["day"]
    settings.HISTORICAL_DAYS = 10
    SubscriptionFactory(instrument=IndexFactory())
    result = backfill.apply(kwargs={"trigger": "test"}).get()
    assert result["status"] == BackfillRun.Status.SUCCEEDED
    assert result["candles"] > 0
    assert Candle.objects.filter(is_mock=True).count() == result["candles"]
    # idempotent: running it again fetches and writes nothing
    again = backfill.apply(kwargs={"trigger": "test"}).get()
    assert again["requests"] == 0 and again["candles"] == 0


@pytest.mark.django_db
def test_reconcile_task_calls_the_reconciler_and_respects_the_lock(clean_locks):
    from subscriptions.services.reconcile import last_reconcile_report
    from subscriptions.tasks import reconcile_subscriptions

    SubscriptionFactory()
    result = reconcile_subscriptions.apply().get()
    assert result["active"] == 1
    assert last_reconcile_report() is not None
    with task_lock("subscriptions.reconcile", timeout=30):
        assert reconcile_subscriptions.apply().get() == {"skipped": "another reconcile is running"}


@pytest.mark.django_db
def test_expiry_cleanup_deactivates_expired_and_drops_their_mock_candles(clean_locks):
    import datetime as dt

    from history.services.candles import CandleRow, candles_upsert
    from history.tasks import expiry_cleanup
    from subscriptions.models import Subscription
    from tests.subscriptions.factories import OptionFactory

    expired = OptionFactory(expiry=dt.date(2024, 1, 25))
    live = OptionFactory(strike=26100.0)
    for instrument in (expired, live):
        SubscriptionFactory(instrument=instrument)
        row = CandleRow(dt.datetime(2024, 1, 24, 4, 0, tzinfo=dt.UTC), 1, 2, 0.5, 1.5, 10)
        candles_upsert(instrument_id=instrument.pk, interval="day", rows=[row], is_mock=True)
    result = expiry_cleanup.apply().get()
    assert result == {"deactivated": 1, "mock_candles_dropped": 1}
    sub = Subscription.objects.get(instrument=expired)
    assert not sub.is_active and sub.deactivated_reason
    assert list(Candle.objects.values_list("instrument_id", flat=True)) == [live.pk]


@pytest.mark.django_db
def test_instrument_sync_without_account_is_skipped_with_a_reason(clean_locks):
    from subscriptions.tasks import instrument_sync

    result = instrument_sync.apply().get()
    assert "No active Kite account" in result["skipped"]


@pytest.mark.django_db(serialized_rollback=True)
def test_default_schedule_is_in_the_database_in_ist():
    from django_celery_beat.models import PeriodicTask

    from tickerproject.celery import app

    jobs = {t.task: t for t in PeriodicTask.objects.select_related("crontab")}
    expected = {
        "subscriptions.reconcile": ("*", "*"),
        "subscriptions.expiry_cleanup": ("45", "15"),
        "subscriptions.instrument_sync": ("30", "8"),
        "history.backfill": ("0", "16"),
    }
    for task, (minute, hour) in expected.items():
        job = jobs[task]
        assert job.enabled
        assert (job.crontab.minute, job.crontab.hour) == (minute, hour)
        assert str(job.crontab.timezone) == "Asia/Kolkata"
        app.loader.import_default_modules()
        assert task in app.tasks, f"{task} is not a registered Celery task"


def _wait_until_completed(beat, key, timeout=20.0):
    """Wait on the runner's in-memory record, not the database: the in-memory SQLite test database
    (shared cache) refuses a read of a table another thread is writing, unlike the WAL file of `make run`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        outcomes = [outcome for name, outcome in beat.runner.completed if name == key]
        if outcomes:
            assert outcomes[0] == "ok", outcomes[0]
            return
        time.sleep(0.05)
    pytest.fail(f"{key} did not complete within {timeout}s (completed: {beat.runner.completed})")


@pytest.mark.django_db(transaction=True)
def test_new_subscription_is_backfilled_after_commit_on_the_embedded_beat(clean_locks, settings):
    from django_celery_beat.models import PeriodicTask

    from history.scheduler import EmbeddedBeat

    if not settings.CELERY_TASK_ALWAYS_EAGER:
        pytest.skip("embedded beat runs only without a broker")
    settings.HISTORICAL_INTERVALS = ["day"]
    settings.HISTORICAL_DAYS = 5
    PeriodicTask.objects.update(enabled=False)
    beat = EmbeddedBeat(max_interval=0.2).start()
    try:
        subscription = SubscriptionFactory(instrument=IndexFactory())
        _wait_until_completed(beat, f"backfill_subscription:{subscription.pk}")
        run = BackfillRun.objects.get(trigger=f"subscription {subscription.pk}")
        assert run.status == BackfillRun.Status.SUCCEEDED, run.errors
        assert Candle.objects.filter(instrument=subscription.instrument, is_mock=True).exists()
    finally:
        beat.stop()
    assert not beat.is_running


@pytest.mark.django_db(transaction=True)
def test_embedded_beat_runs_the_database_schedule(clean_locks, settings):
    from django_celery_beat.models import IntervalSchedule, PeriodicTask

    from history.scheduler import EmbeddedBeat
    from subscriptions.services.reconcile import last_reconcile_report

    if not settings.CELERY_TASK_ALWAYS_EAGER:
        pytest.skip("embedded beat runs only without a broker")
    PeriodicTask.objects.update(enabled=False)
    every_second, _ = IntervalSchedule.objects.get_or_create(every=1, period=IntervalSchedule.SECONDS)
    PeriodicTask.objects.create(name="test reconcile", task="subscriptions.reconcile", interval=every_second)
    SubscriptionFactory()
    beat = EmbeddedBeat(max_interval=0.2).start()
    try:
        _wait_until_completed(beat, "subscriptions.reconcile")
        assert last_reconcile_report() is not None
    finally:
        beat.stop()
    assert not beat.is_running
    assert PeriodicTask.objects.get(name="test reconcile").total_run_count >= 1


def test_runner_does_not_queue_a_task_that_is_still_running():
    from celery import shared_task

    from history.scheduler import TaskRunner

    release = threading.Event()

    @shared_task(name="tests.history.slow")
    def slow():
        release.wait(5)
        return "done"

    runner = TaskRunner(max_workers=2)
    first = runner.submit(slow)
    assert first is not None
    assert runner.submit(slow) is None
    release.set()
    assert first.result(timeout=5) == "done"
    assert runner.submit(slow) is not None
    runner.shutdown()


@pytest.mark.django_db(transaction=True)
async def test_run_embedded_beat_stops_with_the_event_and_reports_a_dead_thread(settings):
    import asyncio

    from history import scheduler

    if not settings.CELERY_TASK_ALWAYS_EAGER:
        pytest.skip("embedded beat runs only without a broker")
    stop = asyncio.Event()
    runner = asyncio.create_task(scheduler.run_embedded_beat(stop, max_interval=0.2))
    for _ in range(100):
        if scheduler.current_beat() is not None:
            break
        await asyncio.sleep(0.05)
    beat = scheduler.current_beat()
    assert beat is not None
    stop.set()
    await asyncio.wait_for(runner, timeout=10)
    assert scheduler.current_beat() is None and not beat.is_running

    stop = asyncio.Event()
    runner = asyncio.create_task(scheduler.run_embedded_beat(stop, max_interval=0.2))
    for _ in range(100):
        if scheduler.current_beat() is not None:
            break
        await asyncio.sleep(0.05)
    scheduler.current_beat().service.stop()  # the thread ends on its own, as if it had crashed
    with pytest.raises(RuntimeError, match="stopped unexpectedly"):
        await asyncio.wait_for(runner, timeout=10)
