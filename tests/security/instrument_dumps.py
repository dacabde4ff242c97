"""A real instruments dump for the sync tests, kept in the repository so they run on a clean clone.

`tests/kite_fixtures/instruments_all.csv` is the dump from Zerodha's public kiteconnect-mocks
repository (commit c7a8123): 74 NSE/BSE equities and 25 BANKNIFTY options that expired in 2018."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

DUMP = Path(__file__).resolve().parents[1] / "kite_fixtures" / "instruments_all.csv"


def dump_lines() -> tuple[str, list[str]]:
    """(header, rows) of the real dump; row i is on line i + 2 of a file written by `as_csv`."""
    header, *rows = DUMP.read_text(encoding="utf-8").strip().splitlines()
    return header, rows


def as_csv(header: str, rows: list[str]) -> str:
    return "\n".join([header, *rows]) + "\n"


def symbol(row: str) -> str:
    return row.split(",")[2]


def equity_rows(rows: list[str]) -> list[str]:
    return [row for row in rows if row.split(",")[9] == "EQ"]


@contextmanager
def serve_dump(body: bytes) -> Iterator[str]:
    """A local stand-in for Kite's /instruments endpoint; yields its API root."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/csv")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
