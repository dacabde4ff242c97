"""Hostile or broken instruments dumps: every bad value is a line error naming the line, the field and
the reason, the good rows are saved, and a file that is not UTF-8 text is refused whole."""

from __future__ import annotations

import gzip

import pytest
from django.db import connections

from subscriptions.management.commands.syncinstruments import Command
from subscriptions.models import Instrument
from subscriptions.services.instruments import (
    InstrumentDumpUnreadable,
    instruments_sync_from_csv,
    instruments_sync_from_file,
)
from tests.security.instrument_dumps import DUMP, as_csv, dump_lines

pytestmark = pytest.mark.django_db

GOOD_ROWS = 99
# A real BANKNIFTY option row from the dump, with one cell replaced per case.
OPTION = "12073986,47164,BANKNIFTY18JAN23500CE,,2528.4,2018-01-25,23500.0,0.05,40,CE,NFO-OPT,NFO"
COLUMN = {"instrument_token": 0, "exchange_token": 1, "tradingsymbol": 2, "name": 3, "last_price": 4}
COLUMN |= {"expiry": 5, "strike": 6, "tick_size": 7, "lot_size": 8}


def _option(column: str, value: str, tradingsymbol: str = "BANKNIFTY30JAN23500CE") -> str:
    cells = OPTION.split(",")
    cells[COLUMN["tradingsymbol"]] = tradingsymbol
    cells[COLUMN[column]] = value
    return ",".join(cells)


def _run_command(monkeypatch: pytest.MonkeyPatch, *argv: str) -> int:
    """The command as `manage.py` runs it; its exit status."""
    monkeypatch.setattr(connections, "close_all", lambda: None)  # the test's transaction holds the connection
    try:
        Command().run_from_argv(["manage.py", "syncinstruments", "--skip-checks", *argv])
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def test_bad_values_are_line_errors_naming_the_field_and_the_good_rows_are_saved(tmp_path, capsys, monkeypatch):
    header, rows = dump_lines()
    bad = [
        _option("instrument_token", str(10**23), "BAD1"),  # line 101
        _option("strike", "1e300", "BAD2"),  # line 102
        _option("strike", "NaN", "BAD3"),  # line 103
        _option("lot_size", "-40", "BAD4"),  # line 104
    ]
    path = tmp_path / "instruments.csv"
    path.write_bytes(b"\xef\xbb\xbf" + as_csv(header, [*rows, *bad]).encode())  # UTF-8 with a BOM
    assert _run_command(monkeypatch, "--file", str(path)) == 0
    out, err = capsys.readouterr()
    assert f"{GOOD_ROWS} created" in out and "4 bad rows" in out
    assert [line for line in err.splitlines() if line.startswith("line ")] == [
        "line 101: instrument_token is out of range: '100000000000000000000000' (must be 1 to 4294967295)",
        "line 102: strike is out of range: '1e300' (must be from 0 to below 10,000,000)",
        "line 103: strike is not finite: 'NaN'",
        "line 104: lot_size is out of range: '-40' (must be 0 to 10000000)",
    ]
    assert Instrument.objects.count() == GOOD_ROWS
    assert not Instrument.objects.filter(tradingsymbol__startswith="BAD").exists()


@pytest.mark.parametrize(
    ("column", "value", "reason"),
    [
        ("instrument_token", str(10**23), "instrument_token is out of range"),
        ("instrument_token", str(2**32), "instrument_token is out of range"),  # fits the column, not a packet
        ("exchange_token", str(10**23), "exchange_token is out of range"),
        ("strike", "1e300", "strike is out of range"),
        ("strike", "10000000", "strike is out of range"),
        ("last_price", "1e300", "last_price is out of range"),
        ("tick_size", "1e300", "tick_size is out of range"),
        ("tick_size", "0", "tick_size of a CE must be positive"),
        ("lot_size", str(2**40), "lot_size is out of range"),
        ("lot_size", "0", "lot_size of a CE must be positive"),
        ("expiry", "20300129", "expiry is not a YYYY-MM-DD date"),
        ("expiry", "0001-01-01", "expiry is out of range"),
        ("name", "N" * 129, "name is longer than 128 characters (129)"),
        ("name", "N" * 65, "name is too long to be an underlying (65 characters)"),
    ],
)
def test_each_out_of_range_value_is_a_line_error(column, value, reason):
    header, rows = dump_lines()
    report = instruments_sync_from_csv(text=as_csv(header, [*rows, _option(column, value)]), full_dump=False)
    assert len(report.errors) == 1
    line, message = report.errors[0]
    assert line == GOOD_ROWS + 2 and message.startswith(reason)
    assert report.created == GOOD_ROWS == Instrument.objects.count()


def test_a_line_the_csv_reader_cannot_split_is_a_line_error_and_stops_delisting():
    header, rows = dump_lines()
    instruments_sync_from_csv(text=as_csv(header, rows), full_dump=True)
    huge = '1,1,"' + "X" * 200_000 + '",X,0,,0,0.05,1,EQ,NSE,NSE'  # past the csv module's field limit
    report = instruments_sync_from_csv(text=as_csv(header, [*rows[:50], huge, *rows[60:]]), full_dump=True)
    assert [(line, reason.split(":")[0]) for line, reason in report.errors] == [(52, "unreadable CSV line")]
    assert report.delisted == 0 and "line(s) 52" in report.delisting_skipped
    assert report.updated == GOOD_ROWS - 10


def _refused(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], path: str) -> str:
    assert _run_command(monkeypatch, "--file", path) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert Instrument.objects.count() == 0
    return err.strip()


def test_a_latin1_file_is_refused_whole_with_one_clear_line(tmp_path, capsys, monkeypatch):
    header, rows = dump_lines()
    latin1 = "7777777,30381,SOCIETE,SOCIÉTÉ GÉNÉRALE,0.0,,0.0,0.05,1,EQ,NSE,NSE"
    path = tmp_path / "latin1.csv"
    path.write_bytes(as_csv(header, [*rows, latin1]).encode("latin-1"))
    assert _refused(monkeypatch, capsys, str(path)) == (
        f"CommandError: {path} is not UTF-8 text (byte 0xc9 on line 101); nothing was synced"
    )
    with pytest.raises(InstrumentDumpUnreadable, match="line 101"):
        instruments_sync_from_file(path=path)


def test_a_compressed_dump_is_refused_whole_with_one_clear_line(tmp_path, capsys, monkeypatch):
    path = tmp_path / "instruments.csv.gz"
    path.write_bytes(gzip.compress(DUMP.read_bytes()))
    assert _refused(monkeypatch, capsys, str(path)) == (
        f"CommandError: {path} is not UTF-8 text (byte 0x8b on line 1); nothing was synced"
    )


def test_a_utf16_dump_is_refused_as_binary(tmp_path, capsys, monkeypatch):
    path = tmp_path / "instruments.csv"
    path.write_bytes(DUMP.read_text().encode("utf-16-le"))  # valid UTF-8 bytes, every other one NUL
    assert _refused(monkeypatch, capsys, str(path)) == (
        f"CommandError: {path} is binary, not a CSV (control byte 0x00 on line 1); nothing was synced"
    )
