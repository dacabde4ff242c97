"""Bad command-line input ends a management command with one clear line and a non-zero exit, and
leaves nothing behind: no backfill run stored, no server or ticker left running, no traceback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from history.models import BackfillRun, Candle
from history.services.backfill import HISTORY_MAX_DAYS
from tests.subscriptions.factories import IndexFactory, SubscriptionFactory

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A loopback port something else is listening on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        yield sock.getsockname()[1]


@pytest.fixture
def no_serving(monkeypatch: pytest.MonkeyPatch) -> None:
    """runsimulator fails the test instead of serving forever if it accepts a bad value."""

    def serve_forever(*args: object, **kwargs: object) -> None:
        raise AssertionError("runsimulator accepted the input and started serving")

    monkeypatch.setattr("mocking.management.commands.runsimulator.serve_forever", serve_forever)


# --- backfill ---------------------------------------------------------------------------------


@pytest.mark.django_db
def test_backfill_of_an_unknown_instrument_names_it_and_stores_nothing():
    SubscriptionFactory(instrument=IndexFactory())
    with pytest.raises(CommandError, match=r"--instrument: no instrument with id 999999$"):
        call_command("backfill", "--mock", "--no-progress", "--instrument", "999999")
    assert not BackfillRun.objects.exists() and not Candle.objects.exists()


@pytest.mark.django_db
def test_backfill_of_an_instrument_without_subscription_is_refused():
    instrument = IndexFactory()
    with pytest.raises(CommandError, match=rf"instrument {instrument.pk} \(NIFTY 50\) has no active subscription"):
        call_command("backfill", "--mock", "--no-progress", "--instrument", str(instrument.pk))
    assert not BackfillRun.objects.exists()


@pytest.mark.django_db
def test_backfill_by_instrument_token_points_to_the_id():
    instrument = IndexFactory()
    SubscriptionFactory(instrument=instrument)
    with pytest.raises(CommandError, match=rf"instrument token of id {instrument.pk}"):
        call_command("backfill", "--mock", "--no-progress", "--instrument", str(instrument.instrument_token))
    assert not BackfillRun.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("days", [99999999999, HISTORY_MAX_DAYS + 1])
def test_backfill_days_beyond_the_archive_are_refused_up_front(days):
    SubscriptionFactory(instrument=IndexFactory())
    with pytest.raises(CommandError, match=rf"^--days: must be between 1 and {HISTORY_MAX_DAYS}"):
        call_command("backfill", "--mock", "--no-progress", "--interval", "day", "--days", str(days))
    assert not BackfillRun.objects.exists() and not Candle.objects.exists()


# --- runsimulator -----------------------------------------------------------------------------


@pytest.mark.usefixtures("no_serving")
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--port", "70000"], r"argument --port: '70000' is not a port"),
        (["--port", "-1"], r"argument --port: '-1' is not a port"),
        (["--rate", "nan"], r"argument --rate: 'nan' is not a finite number above 0"),
        (["--rate", "inf"], r"argument --rate: 'inf' is not a finite number above 0"),
        (["--rate", "-2"], r"argument --rate: '-2' is not a finite number above 0"),
        (["--rate", "0"], r"argument --rate: '0' is not a finite number above 0"),
        (["--seed", "-1"], r"argument --seed: '-1' is negative"),
    ],
)
def test_runsimulator_rejects_bad_values(args, message):
    with pytest.raises(CommandError, match=message):
        call_command("runsimulator", *args)


@pytest.mark.usefixtures("no_serving")
@pytest.mark.parametrize(("options", "message"), [({"port": 70000}, "not a port"), ({"rate": float("nan")}, "finite")])
def test_runsimulator_checks_values_passed_as_keywords(options, message):
    with pytest.raises(CommandError, match=message):
        call_command("runsimulator", **options)


@pytest.mark.usefixtures("no_serving")
def test_runsimulator_on_an_unknown_host_is_one_line():
    with pytest.raises(CommandError, match=r"cannot listen on no-such-host\.invalid:0: unknown host"):
        call_command("runsimulator", "--host", "no-such-host.invalid", "--port", "0")


@pytest.mark.usefixtures("no_serving")
def test_runsimulator_on_a_busy_port_is_one_line(busy_port):
    with pytest.raises(CommandError, match=rf"cannot listen on 127\.0\.0\.1:{busy_port}: the port is already in use"):
        call_command("runsimulator", "--port", str(busy_port))


# --- real processes: what a person at the shell sees ---------------------------------------------


@pytest.fixture(scope="module")
def process_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """An embedded-mode environment on a migrated SQLite file, so the commands get as far as they can."""
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL", "DJANGO_SETTINGS_MODULE")}
    env.update(
        DATABASE_URL=f"sqlite:///{tmp_path_factory.mktemp('cli') / 'db.sqlite3'}",
        SECRET_KEY="command-input-test-" + "x" * 40,
        DEBUG="0",
        PYTHONUNBUFFERED="1",
    )
    migrated = _manage(env, "migrate", "--noinput")
    assert migrated.returncode == 0, migrated.stderr
    return env


def _manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=60
    )


def _assert_one_line_failure(result: subprocess.CompletedProcess, expected: str) -> None:
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "Traceback" not in output and "Task exception was never retrieved" not in output, output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and expected in lines[0], output


@pytest.mark.integration
def test_runsimulator_process_on_a_busy_port(process_env, busy_port):
    result = _manage(process_env, "runsimulator", "--port", str(busy_port))
    _assert_one_line_failure(
        result, f"CommandError: cannot listen on 127.0.0.1:{busy_port}: the port is already in use"
    )
    assert "Kite simulator on" not in result.stdout


@pytest.mark.integration
def test_runticker_process_serving_on_a_busy_port_starts_nothing(process_env, busy_port):
    result = _manage(process_env, "runticker", "--mode", "mock", "--no-backfill", "--serve", f"127.0.0.1:{busy_port}")
    _assert_one_line_failure(
        result, f"CommandError: cannot listen on 127.0.0.1:{busy_port}: the port is already in use"
    )
    assert "runticker (mock)" not in result.stdout


@pytest.mark.integration
def test_runticker_process_serving_on_an_unknown_host(process_env):
    result = _manage(
        process_env, "runticker", "--mode", "mock", "--no-backfill", "--serve", "no-such-host.invalid:8000"
    )
    _assert_one_line_failure(result, "CommandError: cannot listen on no-such-host.invalid:8000: unknown host")
