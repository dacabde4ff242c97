import io

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from history.models import BackfillRun, Candle
from history.tasks import BACKFILL_LOCK
from tests.subscriptions.factories import IndexFactory, SubscriptionFactory
from tickerproject.platform.locks import task_lock

pytestmark = pytest.mark.django_db


@pytest.fixture
def subscribed_index():
    instrument = IndexFactory()
    SubscriptionFactory(instrument=instrument)
    return instrument


def test_backfill_command_reports_what_it_did(subscribed_index):
    out, err = io.StringIO(), io.StringIO()
    call_command("backfill", "--mock", "--interval", "day", "--days", "7", stdout=out, stderr=err)
    run = BackfillRun.objects.get()
    assert run.status == BackfillRun.Status.SUCCEEDED and run.trigger == "command"
    assert f"{run.candles_written} candles from mock" in out.getvalue()
    assert (
        Candle.objects.filter(instrument=subscribed_index, interval="day", is_mock=True).count() == run.candles_written
    )
    assert "backfill" in err.getvalue()  # the tqdm bar


def test_backfill_command_refuses_while_another_backfill_runs(subscribed_index):
    with task_lock(BACKFILL_LOCK, timeout=30), pytest.raises(CommandError, match="Another backfill is running"):
        call_command("backfill", "--mock", "--no-progress")


def test_backfill_command_rejects_bad_days():
    with pytest.raises(CommandError, match="--days"):
        call_command("backfill", "--days", "0")


def test_admin_lists_runs_with_progress_and_candles_with_search(admin_client, subscribed_index):
    call_command("backfill", "--mock", "--interval", "day", "--days", "7", "--no-progress", stdout=io.StringIO())
    page = admin_client.get(reverse("admin:history_backfillrun_changelist"))
    assert page.status_code == 200
    assert b"100%" in page.content and b"Succeeded" in page.content
    detail = admin_client.get(reverse("admin:history_backfillrun_change", args=[BackfillRun.objects.get().pk]))
    assert detail.status_code == 200
    candles = admin_client.get(reverse("admin:history_candle_changelist"), {"q": "NIFTY", "is_mock__exact": "1"})
    assert candles.status_code == 200
    assert b"NIFTY 50" in candles.content
    assert admin_client.get(reverse("admin:history_candle_changelist"), {"q": "NOSUCH"}).content.count(b"NIFTY 50") == 0
