"""A real Celery worker process on Redis runs the reconcile and backfill tasks against the test database
(PostgreSQL) and the simulator's REST API, with the shared Redis rate limiter."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from history.models import BackfillRun, Candle
from mocking.simulator.rest import rest_stats
from mocking.simulator.server import start_simulator
from subscriptions.models import Subscription, TradingAccount
from tests.history.sim import ACCESS_TOKEN, API_KEY, make_state
from tests.subscriptions.factories import IndexFactory, OptionFactory, SubscriptionFactory

REPO = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.redis, pytest.mark.postgres, pytest.mark.integration, pytest.mark.slow]


def _database_url() -> str:
    db = connection.settings_dict
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    return f"postgres://{db['USER']}{password}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


@pytest.fixture
def worker(redis_client, tmp_path):
    """`celery -A tickerproject worker --pool=solo` on the test database, until the test ends."""
    instruments = [IndexFactory(), OptionFactory()]
    sim = start_simulator(make_state(instruments, rate=3.0))
    env = {
        **os.environ,
        "DATABASE_URL": _database_url(),  # pytest-django's test_<name> database, where our rows are committed
        "REDIS_URL": settings.REDIS_URL,
        "SECRET_KEY": settings.SECRET_KEY,  # the worker decrypts the account's access token with it
        "KITE_API_ROOT": sim.http_url,
        "HISTORICAL_DAYS": "10",
        "HISTORICAL_INTERVALS": "day,60minute",
        "TICKER_MODE": "auto",
        "DEBUG": "0",
    }
    log = tmp_path / "worker.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "tickerproject",
                "worker",
                "--pool=solo",
                "--loglevel=INFO",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                "-Q",
                "celery",
                "-n",
                f"hist-test-{os.getpid()}@%h",
            ],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield {"sim": sim, "instruments": instruments, "log": log, "proc": proc}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        sim.stop()


def _wait_for(predicate, timeout, log):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(0.2)
    pytest.fail(f"timed out; worker log:\n{log.read_text()[-4000:]}")


@pytest.mark.django_db(transaction=True)
def test_worker_runs_reconcile_and_backfill(worker):
    from history.tasks import backfill
    from subscriptions.tasks import reconcile_subscriptions

    index, option = worker["instruments"]
    TradingAccount.objects.create(label="live", api_key=API_KEY, access_token=ACCESS_TOKEN, health="ok")
    # Creating the subscriptions queues their backfill after commit (the post_save hook); the worker runs it.
    subs = [SubscriptionFactory(instrument=index), SubscriptionFactory(instrument=option)]

    result = reconcile_subscriptions.apply_async().get(timeout=60)
    assert result["active"] == 2 and result["assigned"] == 2
    assert set(Subscription.objects.values_list("account__label", flat=True)) == {"live"}

    for sub in subs:
        run = _wait_for(
            lambda sub=sub: (
                BackfillRun.objects.filter(trigger=f"subscription {sub.pk}", finished_at__isnull=False)
                .exclude(status=BackfillRun.Status.SKIPPED)
                .first()
            ),
            90,
            worker["log"],
        )
        assert run.status == BackfillRun.Status.SUCCEEDED, (run.errors, run.message)
        assert run.source == "kite"
    assert Candle.objects.filter(instrument=index, interval="day", is_mock=False).exists()
    assert Candle.objects.filter(instrument=option, interval="60minute", is_mock=False).exists()

    # The scheduled backfill after them finds nothing missing: idempotent across processes.
    summary = backfill.apply_async(kwargs={"trigger": "integration"}).get(timeout=90)
    assert summary["status"] == BackfillRun.Status.SUCCEEDED
    assert summary["requests"] == 0 and summary["candles"] == 0

    stats = rest_stats(worker["sim"].state)
    assert stats.accepted_times(API_KEY), "the worker fetched through the simulator"
    assert stats.max_in_any_second(API_KEY) <= 3
