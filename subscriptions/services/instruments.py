"""The instrument registry: load Kite's instruments CSV and upsert it in bulk.

Every bad row is reported with its line number and the reason; the good rows are still saved. On a
FULL dump, instruments that are no longer in it get `delisted_at` (and lose it when they return).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import logging
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.db import transaction
from django.utils import timezone

from core.kite.limits import INSTRUMENT_COLUMNS
from subscriptions.models import Instrument

logger = logging.getLogger(__name__)

COLUMNS = INSTRUMENT_COLUMNS
UPDATE_FIELDS = [c for c in COLUMNS if c not in ("exchange", "tradingsymbol")] + [
    "underlying",
    "delisted_at",
    "updated_at",
]
# Kite's index tradingsymbols → the name their options carry.
INDEX_UNDERLYINGS = {
    "NIFTY 50": "NIFTY",
    "NIFTY BANK": "BANKNIFTY",
    "NIFTY FIN SERVICE": "FINNIFTY",
    "NIFTY MID SELECT": "MIDCPNIFTY",
    "SENSEX": "SENSEX",
    "BANKEX": "BANKEX",
}
BATCH_SIZE = 2000
# Derivative symbols: ROOT + YY + (3-letter month | weekly month code 1-9/O/N/D + DD) + ...
_MONTHS = "JAN|FEB|MAR|APR|MAY|JUN|JUL|AUG|SEP|OCT|NOV|DEC"
_DERIVATIVE_ROOT = re.compile(rf"^([A-Z&-][A-Z0-9&-]*?)\d{{2}}(?:{_MONTHS}|[1-9OND]\d{{2}})")


@dataclass
class SyncReport:
    created: int = 0
    updated: int = 0
    delisted: int = 0
    relisted: int = 0
    errors: list[tuple[int, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    def summary(self) -> str:
        return (
            f"{self.created} created, {self.updated} updated, {self.delisted} delisted, "
            f"{self.relisted} relisted, {len(self.errors)} bad rows"
        )


class RowError(ValueError):
    pass


def derive_underlying(*, tradingsymbol: str, name: str, instrument_type: str, segment: str) -> str:
    """The chain an instrument belongs to: NIFTY for NIFTY options and for the NIFTY 50 index."""
    if instrument_type in ("CE", "PE", "FUT"):
        if name.strip():
            return name.strip().upper()
        # Older dumps leave `name` blank for derivatives: take the root of the tradingsymbol.
        match = _DERIVATIVE_ROOT.match(tradingsymbol)
        return match.group(1) if match else tradingsymbol
    if segment == "INDICES" or tradingsymbol in INDEX_UNDERLYINGS:
        return INDEX_UNDERLYINGS.get(tradingsymbol, tradingsymbol)
    return tradingsymbol


# A csv.DictReader row: column → cell text, and the surplus cells of a too-long row as a list under None.
CsvRow = dict[str | None, Any]


def _int(row: CsvRow, column: str, *, required: bool = True) -> int:
    text = (row.get(column) or "").strip()
    if not text:
        if required:
            raise RowError(f"{column} is empty")
        return 0
    try:
        value = float(text)
    except ValueError:
        raise RowError(f"{column} is not a number: {text!r}") from None
    if not math.isfinite(value) or value != int(value):
        raise RowError(f"{column} is not an integer: {text!r}")
    return int(value)


def _float(row: CsvRow, column: str) -> float:
    text = (row.get(column) or "").strip()
    if not text:
        return 0.0
    try:
        value = float(text)
    except ValueError:
        raise RowError(f"{column} is not a number: {text!r}") from None
    if not math.isfinite(value):
        raise RowError(f"{column} is not finite: {text!r}")
    return value


def parse_row(row: CsvRow) -> Instrument:
    """One csv.DictReader row → an unsaved Instrument; raises RowError with the reason."""
    if None in row:  # csv.DictReader puts surplus cells under the None key
        raise RowError(f"too many columns ({len(COLUMNS) + len(row[None])}, expected {len(COLUMNS)})")
    missing = [c for c in COLUMNS if row.get(c) is None]
    if missing:
        raise RowError(f"too few columns (missing {', '.join(missing)})")
    tradingsymbol = row["tradingsymbol"].strip()
    exchange = row["exchange"].strip().upper()
    segment = row["segment"].strip().upper()
    instrument_type = row["instrument_type"].strip().upper()
    name = row["name"].strip()
    if not tradingsymbol:
        raise RowError("tradingsymbol is empty")
    if not exchange:
        raise RowError("exchange is empty")
    if not segment:
        raise RowError("segment is empty")
    if instrument_type not in Instrument.InstrumentType.values:
        raise RowError(f"unknown instrument_type {instrument_type!r}")
    instrument_token = _int(row, "instrument_token")
    if instrument_token <= 0:
        raise RowError(f"instrument_token must be positive: {instrument_token}")
    expiry_text = row["expiry"].strip()
    expiry = None
    if expiry_text:
        try:
            expiry = dt.date.fromisoformat(expiry_text)
        except ValueError:
            raise RowError(f"expiry is not a YYYY-MM-DD date: {expiry_text!r}") from None
    if instrument_type in ("CE", "PE", "FUT") and expiry is None:
        raise RowError(f"a {instrument_type} needs an expiry")
    strike = _float(row, "strike")
    if instrument_type in ("CE", "PE") and strike <= 0:
        raise RowError(f"an option needs a positive strike, got {row['strike']!r}")
    tick_size = _float(row, "tick_size")
    if tick_size < 0:
        raise RowError(f"tick_size is negative: {tick_size}")
    lot_size = _int(row, "lot_size", required=False)
    if lot_size < 0:
        raise RowError(f"lot_size is negative: {lot_size}")
    if len(tradingsymbol) > 64 or len(exchange) > 8 or len(segment) > 16:
        raise RowError("tradingsymbol, exchange or segment too long")
    return Instrument(
        instrument_token=instrument_token,
        exchange_token=_int(row, "exchange_token", required=False),
        tradingsymbol=tradingsymbol,
        name=name[:128],
        last_price=_float(row, "last_price"),
        expiry=expiry,
        strike=strike,
        tick_size=tick_size,
        lot_size=lot_size,
        instrument_type=instrument_type,
        segment=segment,
        exchange=exchange,
        underlying=derive_underlying(
            tradingsymbol=tradingsymbol, name=name, instrument_type=instrument_type, segment=segment
        )[:64],
        delisted_at=None,
    )


def parse_csv(text: str) -> tuple[list[Instrument], list[tuple[int, str]]]:
    """Parse a whole dump; returns (instruments, [(line, reason)]). Duplicates: the last row wins."""
    errors: list[tuple[int, str]] = []
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    header = [h.strip() for h in (reader.fieldnames or [])]
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        return [], [(1, f"header lacks column(s): {', '.join(missing)}")]
    reader.fieldnames = header
    by_key: dict[tuple[str, str], tuple[int, Instrument]] = {}
    for row in reader:
        line = reader.line_num
        if not any((v or "").strip() for k, v in row.items() if k is not None):
            continue  # blank line
        try:
            instrument = parse_row(row)
        except RowError as exc:
            errors.append((line, str(exc)))
            continue
        key = (instrument.exchange, instrument.tradingsymbol)
        if key in by_key:
            errors.append((by_key[key][0], f"duplicate of line {line} ({key[0]}:{key[1]}); line {line} kept"))
        by_key[key] = (line, instrument)
    return [instrument for _, instrument in by_key.values()], errors


def instruments_sync_from_csv(*, text: str, full_dump: bool, now: dt.datetime | None = None) -> SyncReport:
    """Upsert the instruments in `text` (Kite's CSV). With `full_dump`, mark the missing ones delisted."""
    now = now or timezone.now()
    instruments, errors = parse_csv(text)
    report = SyncReport(errors=errors)
    for instrument in instruments:
        instrument.updated_at = now
    keys = {(i.exchange, i.tradingsymbol) for i in instruments}
    with transaction.atomic():
        existing = {
            (exchange, symbol): delisted_at
            for exchange, symbol, delisted_at in Instrument.objects.values_list(
                "exchange", "tradingsymbol", "delisted_at"
            )
        }
        report.created = sum(1 for k in keys if k not in existing)
        report.updated = len(keys) - report.created
        report.relisted = sum(1 for k in keys if existing.get(k) is not None)
        for start in range(0, len(instruments), BATCH_SIZE):
            Instrument.objects.bulk_create(
                instruments[start : start + BATCH_SIZE],
                update_conflicts=True,
                unique_fields=["exchange", "tradingsymbol"],
                update_fields=UPDATE_FIELDS,
            )
        if full_dump and instruments:  # an empty or unreadable dump must not delist the registry
            gone = [k for k, delisted_at in existing.items() if k not in keys and delisted_at is None]
            gone_by_exchange: dict[str, list[str]] = {}
            for exchange, symbol in gone:
                gone_by_exchange.setdefault(exchange, []).append(symbol)
            for exchange, symbols in gone_by_exchange.items():
                for start in range(0, len(symbols), BATCH_SIZE):
                    report.delisted += Instrument.objects.filter(
                        exchange=exchange, tradingsymbol__in=symbols[start : start + BATCH_SIZE]
                    ).update(delisted_at=now, updated_at=now)
    logger.info("instrument sync: %s", report.summary())
    for line, reason in errors[:50]:
        logger.warning("instruments CSV line %d: %s", line, reason)
    return report


def instruments_sync_from_file(*, path: str | Path, full_dump: bool = True) -> SyncReport:
    """Sync from a CSV file on disk (`manage.py syncinstruments --file`)."""
    text = Path(path).read_text(encoding="utf-8")
    return instruments_sync_from_csv(text=text, full_dump=full_dump)


class NoKiteAccount(RuntimeError):
    pass


def instruments_sync_from_kite() -> SyncReport:
    """Download today's full dump from Kite with an active non-mock account and sync it."""
    from subscriptions.selectors import active_account_with_token
    from subscriptions.services.accounts import kite_client

    account = active_account_with_token()
    if account is None:
        raise NoKiteAccount("No active Kite account with a valid access token: log one in from the admin first.")
    client = kite_client(account=account)
    # The public `instruments()` parses the CSV itself and aborts on the first malformed row; fetch the
    # raw dump through the same client (auth, timeouts, error mapping) and parse it row by row here.
    raw = client._get("market.instruments.all")
    text = raw.decode("utf-8") if isinstance(raw, bytes) else str(raw)
    return instruments_sync_from_csv(text=text, full_dump=True)
