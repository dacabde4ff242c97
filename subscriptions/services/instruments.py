"""The instrument registry: load Kite's instruments CSV and upsert it in bulk.

Every bad row is reported with its line number, the field and the reason; the good rows are still
saved. A dump that is not UTF-8 text (with or without a BOM) is refused whole: `InstrumentDumpUnreadable`,
nothing written.

On a FULL dump, instruments that are no longer in it get `delisted_at` (and lose it when they return).
Delisting is the one destructive step (the next reconcile deactivates their subscriptions), so an
instrument is delisted only when the dump proves it absent:

- A bad row is still present in the dump. It shields every listed instrument that shares its
  tradingsymbol cell (on any exchange: a row with a stray comma shifts its exchange cell, so that cell
  cannot be trusted) or its instrument_token cell (when that reads as a token).
- A bad row in which neither can be read (or a line the CSV reader cannot split) could be any
  instrument, so none can be shown absent: that sync delists nothing (`SyncReport.delisting_skipped`).
- Mass delisting: when the live instruments it would delist (contracts past their expiry leave every
  day and do not count) are more than `INSTRUMENT_SYNC_MAX_DELIST_SHARE` of the listed instruments
  and more than `MASS_DELIST_FLOOR`, the sync delists nothing unless `allow_mass_delist=True`; the
  good rows are saved either way and `SyncReport.delist_refused` says why.
"""

from __future__ import annotations

import csv
import datetime as dt
import functools
import io
import logging
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

from django.conf import settings
from django.db import models, transaction
from django.utils import timezone

from core.kite.limits import INSTRUMENT_COLUMNS
from subscriptions.models import IST, Instrument

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

# Bounds a row must meet. Tokens travel as uint32 in the ticker's binary packets, so a larger one could
# never stream (and 10**23 does not fit the BigInteger column). Prices and strikes of Indian
# instruments are far below 1e7; a bigger strike poisons the chain's max-pain and Greeks.
TOKEN_MAX = 2**32 - 1
PRICE_MAX = 1e7
TICK_SIZE_MAX = 1e4
LOT_SIZE_MAX = 10_000_000
EXPIRY_YEARS = (1990, 2100)
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
# Tab, LF and CR are text; any other C0 control byte means the file is not a CSV.
_BINARY_CHARS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")
# A registry this small has no meaningful share: losing 1 of 3 instruments is not a mass delisting.
MASS_DELIST_FLOOR = 10
WOULD_DELIST_SHOWN = 20


@dataclass
class SyncReport:
    created: int = 0
    updated: int = 0
    delisted: int = 0
    relisted: int = 0
    errors: list[tuple[int, str]] = field(default_factory=list)
    # Set when a full dump delisted nothing on purpose: why (one line for the operator).
    delist_refused: str = ""
    delisting_skipped: str = ""
    # "EXCHANGE:TRADINGSYMBOL" the full dump would have delisted had the guard let it, sorted.
    would_delist: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors and not self.delist_refused

    def summary(self) -> str:
        text = (
            f"{self.created} created, {self.updated} updated, {self.delisted} delisted, "
            f"{self.relisted} relisted, {len(self.errors)} bad rows"
        )
        if self.delist_refused:
            text += f", delisting refused ({len(self.would_delist)} withheld)"
        elif self.delisting_skipped:
            text += ", delisting skipped"
        return text


class RowError(ValueError):
    pass


class InstrumentDumpUnreadable(ValueError):
    """The dump is not UTF-8 text; nothing was synced."""


def decode_dump(*, raw: bytes, source: str = "the instruments dump") -> str:
    """UTF-8 (a BOM is dropped) → text; anything else raises `InstrumentDumpUnreadable` naming the line."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise InstrumentDumpUnreadable(
            f"{source} is not UTF-8 text (byte 0x{raw[exc.start]:02x} on line {line}); nothing was synced"
        ) from None
    binary = _BINARY_CHARS.search(text)
    if binary:
        line = text.count("\n", 0, binary.start()) + 1
        raise InstrumentDumpUnreadable(
            f"{source} is binary, not a CSV (control byte 0x{ord(binary.group()):02x} on line {line}); "
            "nothing was synced"
        )
    return text


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


def _int(row: dict[str, str], column: str, *, required: bool = True, minimum: int, maximum: int) -> int:
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
    if not minimum <= value <= maximum:
        raise RowError(f"{column} is out of range: {text!r} (must be {minimum} to {maximum})")
    return int(value)


def _float(row: dict[str, str], column: str, *, minimum: float, below: float) -> float:
    text = (row.get(column) or "").strip()
    if not text:
        return 0.0
    try:
        value = float(text)
    except ValueError:
        raise RowError(f"{column} is not a number: {text!r}") from None
    if not math.isfinite(value):
        raise RowError(f"{column} is not finite: {text!r}")
    if not minimum <= value < below:
        raise RowError(f"{column} is out of range: {text!r} (must be from {minimum:g} to below {below:,.0f})")
    return value


@functools.cache
def _char_limit(column: str) -> int:
    """The max_length of one of Instrument's CharFields."""
    model_field = Instrument._meta.get_field(column)
    if not isinstance(model_field, models.CharField) or model_field.max_length is None:
        raise TypeError(f"Instrument.{column} is not a CharField with a max_length")
    return model_field.max_length


def _max_length(column: str, value: str) -> None:
    limit = _char_limit(column)
    if len(value) > limit:
        raise RowError(f"{column} is longer than {limit} characters ({len(value)})")


def parse_row(row: dict[str, str]) -> Instrument:
    """One CSV row → an unsaved Instrument; raises RowError with the field and the reason."""
    if None in row:
        # csv.DictReader puts surplus cells, as a list, under the None key (which dict[str, str] cannot say).
        surplus = cast("dict[str | None, list[str]]", row)[None]
        raise RowError(f"too many columns ({len(COLUMNS) + len(surplus)}, expected {len(COLUMNS)})")
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
    for column, value in (
        ("tradingsymbol", tradingsymbol),
        ("name", name),
        ("segment", segment),
        ("exchange", exchange),
    ):
        _max_length(column, value)
    if instrument_type not in Instrument.InstrumentType.values:
        raise RowError(f"unknown instrument_type {instrument_type!r}")
    derivative = instrument_type in ("CE", "PE", "FUT")
    instrument_token = _int(row, "instrument_token", minimum=1, maximum=TOKEN_MAX)
    exchange_token = _int(row, "exchange_token", required=False, minimum=1, maximum=TOKEN_MAX)
    expiry_text = row["expiry"].strip()
    expiry = None
    if expiry_text:
        try:
            # fromisoformat alone also takes 20300129 and week dates; the dump only ever has YYYY-MM-DD.
            expiry = dt.date.fromisoformat(expiry_text) if _ISO_DATE.match(expiry_text) else None
        except ValueError:
            expiry = None
        if expiry is None:
            raise RowError(f"expiry is not a YYYY-MM-DD date: {expiry_text!r}")
        if not EXPIRY_YEARS[0] <= expiry.year <= EXPIRY_YEARS[1]:
            raise RowError(f"expiry is out of range: {expiry_text!r} (years {EXPIRY_YEARS[0]} to {EXPIRY_YEARS[1]})")
    if derivative and expiry is None:
        raise RowError(f"a {instrument_type} needs an expiry")
    strike = _float(row, "strike", minimum=0.0, below=PRICE_MAX)
    if instrument_type in ("CE", "PE") and strike <= 0:
        raise RowError(f"an option needs a positive strike, got {row['strike']!r}")
    # Indices carry tick_size and lot_size 0 in Kite's dump; a tradable contract cannot.
    tick_size = _float(row, "tick_size", minimum=0.0, below=TICK_SIZE_MAX)
    lot_size = _int(row, "lot_size", required=False, minimum=0, maximum=LOT_SIZE_MAX)
    if derivative and tick_size <= 0:
        raise RowError(f"tick_size of a {instrument_type} must be positive, got {row['tick_size']!r}")
    if derivative and lot_size <= 0:
        raise RowError(f"lot_size of a {instrument_type} must be positive, got {row['lot_size']!r}")
    # Futures can settle below zero (MCX crude, April 2020), so last_price may be negative.
    last_price = _float(row, "last_price", minimum=-PRICE_MAX, below=PRICE_MAX)
    underlying = derive_underlying(
        tradingsymbol=tradingsymbol, name=name, instrument_type=instrument_type, segment=segment
    )
    if len(underlying) > _char_limit("underlying"):
        raise RowError(f"name is too long to be an underlying ({len(underlying)} characters)")
    return Instrument(
        instrument_token=instrument_token,
        exchange_token=exchange_token,
        tradingsymbol=tradingsymbol,
        name=name,
        last_price=last_price,
        expiry=expiry,
        strike=strike,
        tick_size=tick_size,
        lot_size=lot_size,
        instrument_type=instrument_type,
        segment=segment,
        exchange=exchange,
        underlying=underlying,
        delisted_at=None,
    )


@dataclass
class ParsedDump:
    instruments: list[Instrument]
    errors: list[tuple[int, str]]
    # What the bad rows still tell: they are in the dump, so these must not be delisted.
    shielded_symbols: set[str] = field(default_factory=set)
    shielded_tokens: set[int] = field(default_factory=set)
    # Bad lines that name no instrument at all.
    unidentified_lines: list[int] = field(default_factory=list)


def _bad_row_identity(row: dict[str, str | None]) -> tuple[str, int | None]:
    symbol = (row.get("tradingsymbol") or "").strip()
    token_text = (row.get("instrument_token") or "").strip()
    token = int(token_text) if token_text.isascii() and token_text.isdigit() and len(token_text) <= 10 else None
    return symbol, token if token and token <= TOKEN_MAX else None


def parse_csv(text: str) -> ParsedDump:
    """Parse a whole dump: the good rows, the bad ones as (line, reason) and what the bad rows identify.
    Duplicates: the last row wins."""
    errors: list[tuple[int, str]] = []
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    header = [h.strip() for h in (reader.fieldnames or [])]
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        return ParsedDump([], [(1, f"header lacks column(s): {', '.join(missing)}")])
    reader.fieldnames = header
    parsed = ParsedDump([], errors)
    by_key: dict[tuple[str, str], tuple[int, Instrument]] = {}
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:  # e.g. a cell past the csv module's field size limit
            # line_num still counts the lines before the failed record, so the record starts on the next.
            line = reader.line_num + 1
            errors.append((line, f"unreadable CSV line: {exc}"))
            parsed.unidentified_lines.append(line)
            continue
        line = reader.line_num
        if not any((v or "").strip() for k, v in row.items() if k is not None):
            continue  # blank line
        try:
            instrument = parse_row(row)
        except RowError as exc:
            errors.append((line, str(exc)))
            symbol, token = _bad_row_identity(row)
            if symbol:
                parsed.shielded_symbols.add(symbol)
            if token is not None:
                parsed.shielded_tokens.add(token)
            if not symbol and token is None:
                parsed.unidentified_lines.append(line)
            continue
        key = (instrument.exchange, instrument.tradingsymbol)
        if key in by_key:
            errors.append((by_key[key][0], f"duplicate of line {line} ({key[0]}:{key[1]}); line {line} kept"))
        by_key[key] = (line, instrument)
    parsed.instruments = [instrument for _, instrument in by_key.values()]
    return parsed


def _expired(expiry: dt.date | None, now: dt.datetime) -> bool:
    return expiry is not None and now >= dt.datetime.combine(expiry, dt.time(15, 30), tzinfo=IST)


def instruments_sync_from_csv(
    *,
    text: str,
    full_dump: bool,
    allow_mass_delist: bool = False,
    max_delist_share: float | None = None,
    now: dt.datetime | None = None,
) -> SyncReport:
    """Upsert the instruments in `text` (Kite's CSV). With `full_dump`, mark the ones it proves missing
    delisted, unless that is a mass delisting (see the module docstring) and not `allow_mass_delist`.
    `max_delist_share` defaults to settings.INSTRUMENT_SYNC_MAX_DELIST_SHARE."""
    now = now or timezone.now()
    share_limit = settings.INSTRUMENT_SYNC_MAX_DELIST_SHARE if max_delist_share is None else max_delist_share
    parsed = parse_csv(text)
    instruments, errors = parsed.instruments, parsed.errors
    report = SyncReport(errors=errors)
    for instrument in instruments:
        instrument.updated_at = now
    keys = {(i.exchange, i.tradingsymbol) for i in instruments}
    with transaction.atomic():
        existing = {
            (exchange, symbol): (token, expiry, delisted_at)
            for exchange, symbol, token, expiry, delisted_at in Instrument.objects.values_list(
                "exchange", "tradingsymbol", "instrument_token", "expiry", "delisted_at"
            )
        }
        report.created = sum(1 for k in keys if k not in existing)
        report.updated = len(keys) - report.created
        report.relisted = sum(1 for k in keys if k in existing and existing[k][2] is not None)
        for start in range(0, len(instruments), BATCH_SIZE):
            Instrument.objects.bulk_create(
                instruments[start : start + BATCH_SIZE],
                update_conflicts=True,
                unique_fields=["exchange", "tradingsymbol"],
                update_fields=UPDATE_FIELDS,
            )
        if full_dump and instruments:  # an empty or unreadable dump must not delist the registry
            gone = sorted(
                (exchange, symbol, expiry)
                for (exchange, symbol), (token, expiry, delisted_at) in existing.items()
                if delisted_at is None
                and (exchange, symbol) not in keys
                and symbol not in parsed.shielded_symbols
                and token not in parsed.shielded_tokens
            )
            listed = sum(1 for _, _, delisted_at in existing.values() if delisted_at is None)
            unexpected = sum(1 for _, _, expiry in gone if not _expired(expiry, now))
            if parsed.unidentified_lines:
                lines = ", ".join(str(line) for line in parsed.unidentified_lines[:10])
                report.delisting_skipped = (
                    f"Delisting skipped: bad line(s) {lines} name no instrument, so none can be shown absent"
                )
                report.would_delist = [f"{exchange}:{symbol}" for exchange, symbol, _ in gone]
            elif unexpected > MASS_DELIST_FLOOR and unexpected > share_limit * listed and not allow_mass_delist:
                report.would_delist = [f"{exchange}:{symbol}" for exchange, symbol, _ in gone]
                report.delist_refused = (
                    f"Refused to delist {len(gone)} instruments: {unexpected} of the {listed} listed "
                    f"({unexpected / listed:.0%}) left the dump before their expiry, more than "
                    f"INSTRUMENT_SYNC_MAX_DELIST_SHARE={share_limit:g}; nothing was delisted, the good rows were saved"
                )
            else:
                report.delisted = _delist(keys=[(exchange, symbol) for exchange, symbol, _ in gone], now=now)
    logger.info("instrument sync: %s", report.summary())
    for line, reason in errors[:50]:
        logger.warning("instruments CSV line %d: %s", line, reason)
    if report.delisting_skipped:
        logger.warning("instrument sync: %s", report.delisting_skipped)
    return report


def _delist(*, keys: list[tuple[str, str]], now: dt.datetime) -> int:
    by_exchange: dict[str, list[str]] = {}
    for exchange, symbol in keys:
        by_exchange.setdefault(exchange, []).append(symbol)
    delisted = 0
    for exchange, symbols in by_exchange.items():
        for start in range(0, len(symbols), BATCH_SIZE):
            delisted += Instrument.objects.filter(
                exchange=exchange, tradingsymbol__in=symbols[start : start + BATCH_SIZE], delisted_at__isnull=True
            ).update(delisted_at=now, updated_at=now)
    return delisted


def instruments_sync_from_file(
    *, path: str | Path, full_dump: bool = True, allow_mass_delist: bool = False
) -> SyncReport:
    """Sync from a CSV file on disk (`manage.py syncinstruments --file`); a file that is not UTF-8 text
    raises `InstrumentDumpUnreadable` before anything is written."""
    text = decode_dump(raw=Path(path).read_bytes(), source=str(path))
    return instruments_sync_from_csv(text=text, full_dump=full_dump, allow_mass_delist=allow_mass_delist)


class NoKiteAccount(RuntimeError):
    pass


def instruments_sync_from_kite(*, allow_mass_delist: bool = False) -> SyncReport:
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
    raw_bytes = raw if isinstance(raw, bytes) else str(raw).encode("utf-8")
    text = decode_dump(raw=raw_bytes, source="Kite's instruments dump")
    return instruments_sync_from_csv(text=text, full_dump=True, allow_mass_delist=allow_mass_delist)
