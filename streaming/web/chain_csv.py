"""CSV exports of a chain payload (docs/websocket.md): the chain itself and its intraday series.

Pure (no Django): takes the stored snapshot, returns text. Times are IST, as traders read them.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from typing import Any

from core.calendar import IST
from streaming.contract import SIDE_FIELDS

# Per side, the side object's fields but the token (the symbol says which contract it is).
CSV_SIDE_FIELDS = tuple(name for name in SIDE_FIELDS if name != "instrument_token")


def _value(value: Any) -> Any:
    return "" if value is None else value


def chain_csv(chain: dict[str, Any]) -> str:
    """One row per strike: the call's fields (prefixed `ce_`), the strike, the put's (`pe_`)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(
        [*(f"ce_{name}" for name in CSV_SIDE_FIELDS), "strike", *(f"pe_{name}" for name in CSV_SIDE_FIELDS)]
    )
    for row in chain.get("rows", []):
        ce, pe = row.get("CE") or {}, row.get("PE") or {}
        writer.writerow(
            [
                *(_value(ce.get(name)) for name in CSV_SIDE_FIELDS),
                row["strike"],
                *(_value(pe.get(name)) for name in CSV_SIDE_FIELDS),
            ]
        )
    return out.getvalue()


def series_csv(chain: dict[str, Any]) -> str:
    """The session's minute points, `time_ist` first, then the series fields (`ts` as epoch seconds)."""
    series = chain.get("series") or {}
    fields = list(series.get("fields") or [])
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["time_ist", *fields])
    for point in series.get("points") or []:
        stamp = dt.datetime.fromtimestamp(float(point[0]), tz=IST).strftime("%Y-%m-%d %H:%M")
        writer.writerow([stamp, *(_value(v) for v in point)])
    return out.getvalue()


def export_filename(chain: dict[str, Any], what: str) -> str:
    """`NIFTY_2026-11-26_chain.csv`: safe in a Content-Disposition header (letters, digits, - and _)."""
    name = f"{chain.get('underlying', 'chain')}_{chain.get('expiry', '')}_{what}"
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name) + ".csv"


__all__ = ["CSV_SIDE_FIELDS", "chain_csv", "export_filename", "series_csv"]
