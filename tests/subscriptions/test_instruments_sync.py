"""Loading Kite's instruments CSV: bulk upsert, bad rows reported by line, delisting on a full dump."""

from __future__ import annotations

import datetime as dt
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from subscriptions.models import Instrument
from subscriptions.services.instruments import (
    COLUMNS,
    derive_underlying,
    instruments_sync_from_csv,
    instruments_sync_from_kite,
)
from tests.subscriptions.factories import AccountFactory

pytestmark = pytest.mark.django_db

HEADER = ",".join(COLUMNS)


def _csv(*rows: str) -> str:
    return "\n".join([HEADER, *rows]) + "\n"


def test_fixture_dump_loads_every_row(kite_fixtures):
    text = (kite_fixtures / "instruments_all.csv").read_text()
    report = instruments_sync_from_csv(text=text, full_dump=True)
    assert report.errors == []
    assert report.created == 99 == Instrument.objects.count()
    option = Instrument.objects.get(exchange="NFO", tradingsymbol="BANKNIFTY18JAN23500CE")
    assert option.instrument_token == 12073986
    assert option.expiry == dt.date(2018, 1, 25)
    assert option.strike == 23500.0 and option.lot_size == 40 and option.instrument_type == "CE"
    assert option.underlying == "BANKNIFTY"  # `name` is blank in this old dump: from the symbol's root
    assert Instrument.objects.get(tradingsymbol="ADANIPORTS17DEC490PE").underlying == "ADANIPORTS"
    equity = Instrument.objects.get(exchange="NSE", tradingsymbol="CENTRALBK-BE")
    assert equity.underlying == "CENTRALBK-BE" and equity.expiry is None


def test_second_load_updates_instead_of_duplicating(kite_fixtures):
    text = (kite_fixtures / "instruments_nse.csv").read_text()
    instruments_sync_from_csv(text=text, full_dump=False)
    changed = text.replace(
        "3813889,14898,CENTRALBK-BE,CENTRAL BANK OF INDIA,0.0", "3813889,14898,CENTRALBK-BE,CENTRAL BANK,12.5"
    )
    report = instruments_sync_from_csv(text=changed, full_dump=False)
    assert (report.created, report.updated) == (0, 99)
    assert Instrument.objects.count() == 99
    row = Instrument.objects.get(tradingsymbol="CENTRALBK-BE")
    assert (row.name, row.last_price) == ("CENTRAL BANK", 12.5)


def test_bad_rows_are_reported_by_line_and_good_rows_kept(kite_fixtures):
    good = (kite_fixtures / "instruments_nse.csv").read_text().strip().splitlines()
    broken = [
        "notanumber,1,BAD1,X,0,,0,0.05,1,EQ,NSE,NSE",  # line 101
        "11111,1,BAD2,X,0,2018-13-45,100,0.05,1,CE,NFO-OPT,NFO",  # line 102: bad date
        "22222,2,BAD3,X,0,,0,0.05,1,ZZ,NSE,NSE",  # line 103: unknown type
        "33333,3,BAD4,X,0",  # line 104: too few columns
        "44444,4,BAD5,X,0,,0,0.05,1,EQ,NSE,NSE,extra",  # line 105: too many
        "55555,5,BAD6,NIFTY,0,2030-01-01,0,0.05,75,PE,NFO-OPT,NFO",  # line 106: option without strike
        ",6,BAD7,X,0,,0,0.05,1,EQ,NSE,NSE",  # line 107: no token
        "66666,6,,X,0,,0,0.05,1,EQ,NSE,NSE",  # line 108: no tradingsymbol
        "77777,7,GOOD1,GOOD ONE,1.5,,0,0.05,1,EQ,NSE,NSE",  # line 109: fine
    ]
    report = instruments_sync_from_csv(text="\n".join(good + broken) + "\n", full_dump=False)
    lines = {line: reason for line, reason in report.errors}
    assert sorted(lines) == [101, 102, 103, 104, 105, 106, 107, 108]
    assert "instrument_token is not a number" in lines[101]
    assert "expiry" in lines[102]
    assert "instrument_type" in lines[103]
    assert "too few columns" in lines[104]
    assert "too many columns" in lines[105]
    assert "strike" in lines[106]
    assert "instrument_token is empty" in lines[107]
    assert "tradingsymbol is empty" in lines[108]
    assert report.created == 100
    assert Instrument.objects.filter(tradingsymbol="GOOD1").exists()
    assert not Instrument.objects.filter(tradingsymbol__startswith="BAD").exists()


def test_duplicate_rows_keep_the_last_and_report_the_first():
    text = _csv(
        "1001,1,ABC,ABC LTD,1,,0,0.05,1,EQ,NSE,NSE",
        "1002,2,ABC,ABC LIMITED,2,,0,0.05,1,EQ,NSE,NSE",
    )
    report = instruments_sync_from_csv(text=text, full_dump=False)
    assert report.errors == [(2, "duplicate of line 3 (NSE:ABC); line 3 kept")]
    assert Instrument.objects.get(tradingsymbol="ABC").instrument_token == 1002


def test_missing_header_column_is_one_clear_error_and_saves_nothing():
    report = instruments_sync_from_csv(text="instrument_token,tradingsymbol\n1,A\n", full_dump=True)
    assert report.errors and report.errors[0][0] == 1 and "exchange" in report.errors[0][1]
    assert Instrument.objects.count() == 0


def test_full_dump_delists_missing_and_relists_returning():
    first = _csv(
        "1001,1,AAA,A,0,,0,0.05,1,EQ,NSE,NSE",
        "1002,2,BBB,B,0,,0,0.05,1,EQ,NSE,NSE",
    )
    instruments_sync_from_csv(text=first, full_dump=True)
    second = _csv("1001,1,AAA,A,0,,0,0.05,1,EQ,NSE,NSE")
    report = instruments_sync_from_csv(text=second, full_dump=False)
    assert report.delisted == 0  # a partial file delists nothing
    report = instruments_sync_from_csv(text=second, full_dump=True)
    assert report.delisted == 1
    assert Instrument.objects.get(tradingsymbol="BBB").delisted_at is not None
    assert Instrument.objects.get(tradingsymbol="AAA").delisted_at is None
    report = instruments_sync_from_csv(text=first, full_dump=True)
    assert report.relisted == 1 and report.delisted == 0
    assert Instrument.objects.get(tradingsymbol="BBB").delisted_at is None


def test_an_empty_dump_never_delists_the_registry():
    instruments_sync_from_csv(text=_csv("1001,1,AAA,A,0,,0,0.05,1,EQ,NSE,NSE"), full_dump=True)
    report = instruments_sync_from_csv(text=HEADER + "\n", full_dump=True)
    assert report.delisted == 0
    assert Instrument.objects.get(tradingsymbol="AAA").delisted_at is None


@pytest.mark.parametrize(
    ("symbol", "name", "kind", "segment", "expected"),
    [
        ("NIFTY 50", "NIFTY 50", "EQ", "INDICES", "NIFTY"),
        ("NIFTY BANK", "NIFTY BANK", "EQ", "INDICES", "BANKNIFTY"),
        ("NIFTY FIN SERVICE", "", "EQ", "INDICES", "FINNIFTY"),
        ("NIFTY MID SELECT", "", "EQ", "INDICES", "MIDCPNIFTY"),
        ("SENSEX", "SENSEX", "EQ", "INDICES", "SENSEX"),
        ("NIFTY26DEC26000CE", "NIFTY", "CE", "NFO-OPT", "NIFTY"),
        ("BANKNIFTY26DECFUT", "BANKNIFTY", "FUT", "NFO-FUT", "BANKNIFTY"),
        ("INFY", "INFOSYS", "EQ", "NSE", "INFY"),
        ("NIFTY26D0126000PE", "", "PE", "NFO-OPT", "NIFTY"),
        ("M&M26DEC3000CE", "", "CE", "NFO-OPT", "M&M"),
    ],
)
def test_underlying_is_derived_like_the_chains_name_it(symbol, name, kind, segment, expected):
    assert derive_underlying(tradingsymbol=symbol, name=name, instrument_type=kind, segment=segment) == expected


def test_command_reports_bad_lines(tmp_path, capsys):
    path = tmp_path / "dump.csv"
    path.write_text(_csv("1001,1,AAA,A,0,,0,0.05,1,EQ,NSE,NSE", "x,1,BAD,A,0,,0,0.05,1,EQ,NSE,NSE"))
    call_command("syncinstruments", "--file", str(path))
    out, err = capsys.readouterr()
    assert "1 created" in out and "1 bad rows" in out
    assert "line 3: instrument_token is not a number" in err


def test_command_without_file_needs_a_logged_in_account():
    with pytest.raises(CommandError, match="No active Kite account"):
        call_command("syncinstruments")


class _DumpHandler(BaseHTTPRequestHandler):
    body = b""
    seen: list[dict] = []

    def do_GET(self) -> None:
        type(self).seen.append({"path": self.path, "authorization": self.headers.get("Authorization", "")})
        self.send_response(200)
        self.send_header("Content-Type", "text/csv")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args: object) -> None:
        pass


def test_sync_from_kite_downloads_the_dump_with_a_logged_in_account(kite_fixtures, settings):
    good = (kite_fixtures / "instruments_nse.csv").read_text().strip()
    _DumpHandler.body = (good + "\nbroken,1,BAD,X,0,,0,0.05,1,EQ,NSE,NSE\n").encode()
    _DumpHandler.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _DumpHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    settings.KITE_API_ROOT = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        AccountFactory(label="expired", api_key="old", access_token="t-old", token_expires_at=timezone.now())
        AccountFactory(label="mock", is_mock=True, access_token="t-mock")
        AccountFactory(label="live", api_key="livekey", access_token="t-live", health="ok")
        report = instruments_sync_from_kite()
    finally:
        server.shutdown()
        server.server_close()
    assert _DumpHandler.seen == [{"path": "/instruments", "authorization": "token livekey:t-live"}]
    assert report.created == 99 and report.errors == [(101, "instrument_token is not a number: 'broken'")]
