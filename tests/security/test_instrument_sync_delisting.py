"""A full instruments dump delists only what it proves absent: a malformed row still counts as present,
and a dump that would delist a large share of the live registry delists nothing unless told to."""

from __future__ import annotations

import logging

import pytest
from django.db import connections
from django.utils import timezone

from subscriptions.management.commands.syncinstruments import Command
from subscriptions.models import Instrument, Subscription
from subscriptions.services.instruments import instruments_sync_from_csv
from subscriptions.services.reconcile import reconcile_subscriptions
from subscriptions.tasks import instrument_sync
from tests.security.instrument_dumps import as_csv, dump_lines, equity_rows, serve_dump, symbol
from tests.subscriptions.factories import AccountFactory

pytestmark = pytest.mark.django_db


def _cells(row: str, **changes: str) -> str:
    cells = row.split(",")
    columns = ["token", "exchange_token", "symbol", "name", "last_price", "expiry", "strike", "tick", "lot"]
    for column, value in changes.items():
        cells[columns.index(column)] = value
    return ",".join(cells)


# Ways a real row gets damaged; each keeps the tradingsymbol or the token readable.
DAMAGE = [
    lambda row: _cells(row, token="12x"),
    lambda row: _cells(row, strike="nan"),
    lambda row: _cells(row, lot="-1"),
    lambda row: _cells(row, name="SOME, NAME WITH A COMMA"),  # shifts the exchange cell
    lambda row: ",".join(row.split(",")[:5]),  # truncated: no exchange at all
    lambda row: _cells(row, symbol=""),  # only the token says which instrument it is
    lambda row: _cells(row, expiry="2018-13-45"),
    lambda row: row.replace(",EQ,", ",ZZ,"),
    lambda row: row.rsplit(",", 1)[0] + ",",  # blank exchange
    lambda row: _cells(row, tick="-0.05"),
]


def _load_registry() -> tuple[str, list[str]]:
    header, rows = dump_lines()
    report = instruments_sync_from_csv(text=as_csv(header, rows), full_dump=True)
    assert report.errors == [] and report.created == len(rows) == 99
    return header, rows


def _damaged_dump(header: str, rows: list[str]) -> tuple[list[str], list[str], str]:
    """The dump with the first len(DAMAGE) equities damaged and the next one left out."""
    equities = equity_rows(rows)
    damaged = {row: damage(row) for row, damage in zip(equities, DAMAGE, strict=False)}
    dropped = equities[len(DAMAGE)]
    text = as_csv(header, [damaged.get(row, row) for row in rows if row != dropped])
    return [symbol(row) for row in damaged], [symbol(dropped)], text


def test_a_full_dump_keeps_instruments_whose_rows_are_malformed_listed():
    header, rows = _load_registry()
    damaged, dropped, text = _damaged_dump(header, rows)
    report = instruments_sync_from_csv(text=text, full_dump=True)
    assert len(report.errors) == len(DAMAGE)
    assert report.delisted == 1 and not report.delist_refused and not report.delisting_skipped
    delisted = set(Instrument.objects.filter(delisted_at__isnull=False).values_list("tradingsymbol", flat=True))
    assert delisted == set(dropped)
    assert not delisted & set(damaged)


def test_subscriptions_on_malformed_rows_stay_active_after_the_next_reconcile():
    header, rows = _load_registry()
    damaged, dropped, text = _damaged_dump(header, rows)
    for tradingsymbol in [*damaged[:4], *dropped]:
        Subscription.objects.create(instrument=Instrument.objects.get(tradingsymbol=tradingsymbol))
    instruments_sync_from_csv(text=text, full_dump=True)
    report = reconcile_subscriptions(now=timezone.now(), mode="live", notify=False)
    assert report.deactivated == {"delisted": 1}
    active = Subscription.objects.filter(is_active=True).values_list("instrument__tradingsymbol", flat=True)
    assert sorted(active) == sorted(damaged[:4])


def test_a_bad_row_that_names_no_instrument_stops_all_delisting():
    header, rows = _load_registry()
    gone = equity_rows(rows)[0]
    kept = [row for row in rows if row != gone]
    text = as_csv(header, [*kept, "garbage,1,,X,0,,0,0.05,1,EQ,NSE,NSE"])  # line 100: could be any instrument
    report = instruments_sync_from_csv(text=text, full_dump=True)
    assert report.errors == [(100, "tradingsymbol is empty")]
    assert report.delisted == 0
    assert "line(s) 100" in report.delisting_skipped and report.would_delist == [f"NSE:{symbol(gone)}"]
    assert not Instrument.objects.filter(delisted_at__isnull=False).exists()


def test_a_mass_delisting_is_refused_and_the_good_rows_still_saved():
    header, rows = _load_registry()
    equities = equity_rows(rows)
    missing = equities[:30]  # 30 of 99 listed, none expired: 30 %
    changed = equities[30]
    kept = [row.replace(changed, _cells(changed, last_price="123.45")) for row in rows if row not in missing]
    new_row = "9990001,39063,NEWCO,NEW COMPANY,0.0,,0.0,0.05,1,EQ,NSE,NSE"
    report = instruments_sync_from_csv(text=as_csv(header, [*kept, new_row]), full_dump=True)
    assert report.delisted == 0
    assert report.delist_refused.startswith("Refused to delist 30 instruments: 30 of the 99 listed (30%)")
    assert "INSTRUMENT_SYNC_MAX_DELIST_SHARE=0.2" in report.delist_refused
    assert len(report.would_delist) == 30 and set(report.would_delist) == {
        f"{row.split(',')[11]}:{symbol(row)}" for row in missing
    }
    assert not Instrument.objects.filter(delisted_at__isnull=False).exists()
    assert Instrument.objects.get(tradingsymbol=symbol(changed)).last_price == 123.45
    assert (report.created, Instrument.objects.filter(tradingsymbol="NEWCO").count()) == (1, 1)

    report = instruments_sync_from_csv(text=as_csv(header, [*kept, new_row]), full_dump=True, allow_mass_delist=True)
    assert report.delisted == 30 and not report.delist_refused


def test_expired_contracts_leaving_do_not_count_towards_a_mass_delisting(settings):
    header, rows = _load_registry()
    options = [row for row in rows if row.split(",")[9] in ("CE", "PE")]  # all expired in 2018
    equities = equity_rows(rows)
    rollover = [row for row in rows if row not in options and row not in equities[:5]]
    report = instruments_sync_from_csv(text=as_csv(header, rollover), full_dump=True)
    assert (report.delisted, report.delist_refused) == (len(options) + 5, "")  # 30 gone, 5 of them live

    settings.INSTRUMENT_SYNC_MAX_DELIST_SHARE = 0.5
    half = [row for row in rollover if row not in equities[5:39]]  # 34 of 69 listed
    report = instruments_sync_from_csv(text=as_csv(header, half), full_dump=True)
    assert report.delisted == 34 and not report.delist_refused
    settings.INSTRUMENT_SYNC_MAX_DELIST_SHARE = 0.2
    report = instruments_sync_from_csv(text=as_csv(header, half[:-20]), full_dump=True)
    assert report.delisted == 0 and "20 of the 35 listed" in report.delist_refused


def _run_command(monkeypatch: pytest.MonkeyPatch, *argv: str) -> int:
    """The command as `manage.py` runs it; its exit status."""
    monkeypatch.setattr(connections, "close_all", lambda: None)  # the test's transaction holds the connection
    try:
        Command().run_from_argv(["manage.py", "syncinstruments", "--skip-checks", *argv])
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def test_the_command_refuses_a_mass_delisting_with_one_clear_line_and_a_failing_exit(tmp_path, capsys, monkeypatch):
    header, rows = _load_registry()
    missing = equity_rows(rows)[:25]
    path = tmp_path / "dump.csv"
    path.write_text(as_csv(header, [row for row in rows if row not in missing]))
    capsys.readouterr()

    assert _run_command(monkeypatch, "--file", str(path)) == 1
    out, err = capsys.readouterr()
    assert "74 updated, 0 delisted" in out
    first = sorted(f"{r.split(',')[11]}:{symbol(r)}" for r in missing)[:20]
    assert f"Would delist 25: {', '.join(first)} and 5 more" in err
    refusal = [line for line in err.splitlines() if line.startswith("CommandError:")]
    assert refusal == [
        "CommandError: Refused to delist 25 instruments: 25 of the 99 listed (25%) left the dump before their "
        "expiry, more than INSTRUMENT_SYNC_MAX_DELIST_SHARE=0.2; nothing was delisted, the good rows were saved. "
        "Check the dump; if the delisting is real, rerun with --allow-mass-delist."
    ]
    assert not Instrument.objects.filter(delisted_at__isnull=False).exists()

    assert _run_command(monkeypatch, "--file", str(path), "--allow-mass-delist") == 0
    assert "25 delisted" in capsys.readouterr().out
    assert Instrument.objects.filter(delisted_at__isnull=False).count() == 25


def test_the_beat_task_refuses_a_mass_delisting_and_logs_an_error(settings, caplog):
    from django.core.cache import cache

    cache.clear()  # no lock left by another test
    header, rows = _load_registry()
    missing = equity_rows(rows)[:40]
    AccountFactory(label="live", api_key="livekey", access_token="t-live", health="ok")
    body = as_csv(header, [row for row in rows if row not in missing]).encode()
    with serve_dump(body) as root, caplog.at_level(logging.ERROR, logger="subscriptions.tasks"):
        settings.KITE_API_ROOT = root
        result = instrument_sync.apply().get()
    assert result["refused"].startswith("Refused to delist 40 instruments")
    assert "0 delisted" in result["summary"]
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "Refused to delist 40 instruments" in errors[0]
    assert "--allow-mass-delist" in errors[0]
    assert not Instrument.objects.filter(delisted_at__isnull=False).exists()
