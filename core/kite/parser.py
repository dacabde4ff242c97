"""The exact Kite ticker parser: binary frame → kiteconnect's tick dicts.

`parse_binary(payload)` returns what `kiteconnect.KiteTicker._parse_binary` returns for the same
well-formed frame (same keys and values, price divisors by segment, naive local-time datetimes from
`datetime.fromtimestamp`, `change` as a percentage). Unlike kiteconnect it never raises on malformed
input: the packets it can read are kept, the rest are counted by kind in a `MalformedCounter` (logged
once per kind). The ticker loop uses the columnar fast path (`columnar.py`); this module is the reference
the fast path is tested and benchmarked against.

Malformed kinds (`MALFORMED_KINDS`):
- ``empty``: a zero-length binary message (a 1-byte message is a heartbeat, not malformed);
- ``truncated``: the frame ends inside a packet's length header, i.e. it holds fewer packets than its
  count says;
- ``length_past_end``: a packet's length runs past the end of the frame (that packet and any after it
  are lost);
- ``unknown_length``: a packet length that is none of 8, 28, 32, 44, 184 (skipped, parsing goes on);
- ``trailing_bytes``: bytes left after the last packet the count announced.
Plain Python, no Django.
"""

from __future__ import annotations

import logging
import struct
from collections import Counter
from datetime import datetime
from typing import Any

log = logging.getLogger(__name__)

MODE_LTP = "ltp"
MODE_QUOTE = "quote"
MODE_FULL = "full"

KNOWN_LENGTHS = frozenset((8, 28, 32, 44, 184))
MALFORMED_KINDS = ("empty", "truncated", "length_past_end", "unknown_length", "trailing_bytes")

_U32 = struct.Struct(">I")
_INDEX_QUOTE = struct.Struct(">IIIIII")  # token, last, high, low, open, close (change word ignored)
_QUOTE = struct.Struct(">IIIIIIIIIII")  # token .. close
_FULL_EXTRA = struct.Struct(">IIIII")  # last trade time, oi, oi high, oi low, exchange timestamp
_DEPTH = struct.Struct(">IIH2x")


class MalformedCounter(Counter[str]):
    """Counts malformed input by kind and logs the first occurrence of each kind (then stays quiet)."""

    def __init__(self, logger: logging.Logger | None = None, label: str = "kite") -> None:
        super().__init__()
        self._logger = logger or log
        self._label = label

    def add(self, kind: str, detail: str = "", n: int = 1) -> None:
        if not self[kind]:
            self._logger.warning(
                "%s: malformed ticker input (%s) %s; counting further ones silently", self._label, kind, detail
            )
        self[kind] += n

    def as_dict(self) -> dict[str, int]:
        return {kind: self[kind] for kind in MALFORMED_KINDS if self[kind]} | {
            kind: n for kind, n in self.items() if kind not in MALFORMED_KINDS
        }


def split_packets(payload: bytes, malformed: MalformedCounter | None = None) -> tuple[list[int], list[int], int]:
    """Offsets and lengths of the readable packets of known length, and how many packets were bad.

    Loops over packet headers only (2 bytes each); packet bodies are left to the caller.
    """
    size = len(payload)
    if size == 0:
        if malformed is not None:
            malformed.add("empty")
        return [], [], 1
    if size < 2:  # a heartbeat
        return [], [], 0
    count = (payload[0] << 8) | payload[1]
    offsets: list[int] = []
    lengths: list[int] = []
    bad = 0
    j = 2
    for _ in range(count):
        if j + 2 > size:
            bad += 1
            if malformed is not None:
                malformed.add("truncated", f"(frame of {size} bytes ends inside a packet header)")
            return offsets, lengths, bad
        length = (payload[j] << 8) | payload[j + 1]
        if j + 2 + length > size:
            bad += 1
            if malformed is not None:
                malformed.add("length_past_end", f"(packet of {length} bytes at offset {j} in a {size}-byte frame)")
            return offsets, lengths, bad
        if length in KNOWN_LENGTHS:
            offsets.append(j + 2)
            lengths.append(length)
        else:
            bad += 1
            if malformed is not None:
                malformed.add("unknown_length", f"(packet length {length})")
        j += 2 + length
    if j < size:
        bad += 1
        if malformed is not None:
            malformed.add("trailing_bytes", f"({size - j} bytes after {count} packets)")
    return offsets, lengths, bad


def divisor_for(instrument_token: int) -> float:
    segment = instrument_token & 0xFF
    if segment == 3:  # cds
        return 10000000.0
    if segment in (6, 12):  # bcd, nco
        return 10000.0
    return 100.0


def timestamp_or_none(value: int) -> datetime | None:
    try:
        return datetime.fromtimestamp(value)
    except Exception:  # kiteconnect answers None for an out-of-range timestamp
        return None


def _change(last_price: float, close: float) -> float:
    if close != 0:
        return (last_price - close) * 100 / close
    return 0


def parse_packet(payload: bytes, offset: int, length: int) -> dict[str, Any]:
    """One packet of known length at `offset` → kiteconnect's tick dict."""
    (token,) = _U32.unpack_from(payload, offset)
    divisor = divisor_for(token)
    tradable = (token & 0xFF) != 9
    if length == 8:
        return {
            "tradable": tradable,
            "mode": MODE_LTP,
            "instrument_token": token,
            "last_price": _U32.unpack_from(payload, offset + 4)[0] / divisor,
        }
    if length in (28, 32):
        _, last, high, low, open_, close = _INDEX_QUOTE.unpack_from(payload, offset)
        tick: dict[str, Any] = {
            "tradable": tradable,
            "mode": MODE_QUOTE if length == 28 else MODE_FULL,
            "instrument_token": token,
            "last_price": last / divisor,
            "ohlc": {"high": high / divisor, "low": low / divisor, "open": open_ / divisor, "close": close / divisor},
        }
        tick["change"] = _change(tick["last_price"], tick["ohlc"]["close"])
        if length == 32:
            tick["exchange_timestamp"] = timestamp_or_none(_U32.unpack_from(payload, offset + 28)[0])
        return tick
    _, last, qty, avg, volume, buy_qty, sell_qty, open_, high, low, close = _QUOTE.unpack_from(payload, offset)
    tick = {
        "tradable": tradable,
        "mode": MODE_QUOTE if length == 44 else MODE_FULL,
        "instrument_token": token,
        "last_price": last / divisor,
        "last_traded_quantity": qty,
        "average_traded_price": avg / divisor,
        "volume_traded": volume,
        "total_buy_quantity": buy_qty,
        "total_sell_quantity": sell_qty,
        "ohlc": {"open": open_ / divisor, "high": high / divisor, "low": low / divisor, "close": close / divisor},
    }
    tick["change"] = _change(tick["last_price"], tick["ohlc"]["close"])
    if length == 184:
        last_trade_time, oi, oi_high, oi_low, exchange_ts = _FULL_EXTRA.unpack_from(payload, offset + 44)
        tick["last_trade_time"] = timestamp_or_none(last_trade_time)
        tick["oi"] = oi
        tick["oi_day_high"] = oi_high
        tick["oi_day_low"] = oi_low
        tick["exchange_timestamp"] = timestamp_or_none(exchange_ts)
        depth: dict[str, list[dict[str, Any]]] = {"buy": [], "sell": []}
        for i in range(10):
            quantity, price, orders = _DEPTH.unpack_from(payload, offset + 64 + 12 * i)
            depth["sell" if i >= 5 else "buy"].append(
                {"quantity": quantity, "price": price / divisor, "orders": orders}
            )
        tick["depth"] = depth
    return tick


def parse_binary(payload: bytes, malformed: MalformedCounter | None = None) -> list[dict[str, Any]]:
    """A binary ticker frame → kiteconnect's list of tick dicts; malformed parts counted, never raised."""
    offsets, lengths, _ = split_packets(payload, malformed)
    return [parse_packet(payload, offset, length) for offset, length in zip(offsets, lengths, strict=True)]
