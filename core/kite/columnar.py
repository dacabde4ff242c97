"""The columnar fast path: binary ticker frame → `core.ticks` TICK_DTYPE array, with numpy.

What the ticker loop uses. Packets are grouped by length; each group becomes one big-endian uint32
matrix (zero-copy strided view of the frame when every packet has the same length, which is the usual
full-mode frame; otherwise one gather per length after a short loop over the 2-byte packet headers),
and every field is filled with one vectorised operation per group. No per-tick Python.

Values equal the exact parser's (`parser.parse_packet`): prices are `int / divisor` in float64 (the
same IEEE division Python does), times are epoch seconds. Rows are grouped by packet length (see
`parse_frame`; a token's packets keep their order). Malformed input is
counted by kind (see `parser.MALFORMED_KINDS`) and never raises.
Plain numpy, no Django.
"""

from __future__ import annotations

import time
from types import MappingProxyType
from typing import Any, cast

import numpy as np

from core.kite.parser import KNOWN_LENGTHS, MalformedCounter, split_packets, timestamp_or_none
from core.ticks import (
    DEPTH_LEVELS,
    MODE_FULL,
    MODE_LTP,
    MODE_NAMES,
    MODE_QUOTE,
    TICK_DTYPE,
    TICK_FIELD_NAMES,
    TickBatch,
    empty_ticks,
)

_PROTOTYPE = empty_ticks(4096)
_EMPTY = empty_ticks(0)


_PROTOTYPE_BYTES = _PROTOTYPE.view(np.uint8)


def _blank(n: int) -> np.ndarray:
    """n blank rows (NaN floats, zero ints): a plain byte copy of a prototype, much cheaper than filling."""
    if n > len(_PROTOTYPE):
        return empty_ticks(n)
    out = np.empty(n, dtype=TICK_DTYPE)
    out.view(np.uint8)[:] = _PROTOTYPE_BYTES[: n * TICK_DTYPE.itemsize]
    return out


_ITEMSIZE = TICK_DTYPE.itemsize
# A structured dtype always has fields; numpy's stubs type them as optional (a plain dtype has none).
_FIELDS = cast("MappingProxyType[str, tuple[np.dtype[Any], int] | tuple[np.dtype[Any], int, Any]]", TICK_DTYPE.fields)
# Runs of same-typed fields that sit next to each other in TICK_DTYPE: each is written with ONE strided
# (n, k) view instead of k field assignments (checked at import, so a change to TICK_DTYPE can't
# silently misplace values).
_BLOCKS = {
    "ohlc": ("open", "high", "low", "close"),
    "volumes": ("volume_traded", "total_buy_quantity", "total_sell_quantity"),
    "full_ints": ("last_trade_time", "oi", "oi_day_high", "oi_day_low", "exchange_timestamp"),
}


def _check_blocks() -> None:
    for names in _BLOCKS.values():
        base, offset = _FIELDS[names[0]][:2]
        for i, name in enumerate(names):
            dtype, field_offset = _FIELDS[name][:2]
            if dtype != base or field_offset != offset + i * base.itemsize:
                raise ImportError(f"TICK_DTYPE changed: {names} are no longer adjacent {base} fields")


_check_blocks()


class _RowWriter:
    """`writer[field] = values` writes into chosen rows only (for `keep_order`), one column at a time."""

    __slots__ = ("array", "rows")

    def __init__(self, array: np.ndarray, rows: np.ndarray) -> None:
        self.array = array
        self.rows = rows

    def __setitem__(self, name: str, values: np.ndarray | int) -> None:
        self.array[name][self.rows] = values


def _put_block(out: np.ndarray | _RowWriter, key: str, values: np.ndarray) -> None:
    """Write adjacent same-typed fields in one go: a strided (n, k) view of the whole array."""
    names = _BLOCKS[key]
    if isinstance(out, _RowWriter):
        for i, name in enumerate(names):
            out[name] = values[:, i]
        return
    base, offset = _FIELDS[names[0]][:2]
    view = np.ndarray((len(out), len(names)), dtype=base, buffer=out, offset=offset, strides=(_ITEMSIZE, base.itemsize))
    view[...] = values


_DIVISOR_BY_SEGMENT = np.full(256, 100.0)
_DIVISOR_BY_SEGMENT[3] = 10000000.0  # cds
_DIVISOR_BY_SEGMENT[6] = 10000.0  # bcd
_DIVISOR_BY_SEGMENT[12] = 10000.0  # nco


def _fill(array: np.ndarray, words: np.ndarray, length: int, rows: np.ndarray | None = None) -> None:
    """Fill blank TICK_DTYPE rows from an (n, length/4) big-endian word matrix: all of `array`, or `array[rows]`."""
    out = array if rows is None else _RowWriter(array, rows)
    w = words.astype(np.int64)
    tokens = w[:, 0]
    divisor = _DIVISOR_BY_SEGMENT[tokens & 0xFF]
    out["instrument_token"] = tokens
    out["tradable"] = (tokens & 0xFF) != 9
    if length == 8:
        out["mode"] = MODE_LTP
        out["last_price"] = w[:, 1] / divisor
        return
    if length in (28, 32):
        prices = w[:, (1, 4, 2, 3, 5)] / divisor[:, None]  # last, then open high low close (wire: h l o c)
        out["mode"] = MODE_QUOTE if length == 28 else MODE_FULL
        out["last_price"] = prices[:, 0]
        _put_block(out, "ohlc", prices[:, 1:])
        if length == 32:
            out["exchange_timestamp"] = w[:, 7]
        return
    out["mode"] = MODE_QUOTE if length == 44 else MODE_FULL
    prices = w[:, (1, 3, 7, 8, 9, 10)] / divisor[:, None]
    out["last_price"] = prices[:, 0]
    out["average_traded_price"] = prices[:, 1]
    _put_block(out, "ohlc", prices[:, 2:])
    out["last_traded_quantity"] = w[:, 2]
    _put_block(out, "volumes", w[:, 4:7])
    if length == 184:
        _put_block(out, "full_ints", w[:, 11:16])
        depth = w[:, 16:46].reshape(len(w), 2 * DEPTH_LEVELS, 3)
        depth_prices = depth[:, :, 1] / divisor[:, None]
        orders = depth[:, :, 2] >> 16  # >H then 2 bytes of padding
        out["bid_quantity"] = depth[:, :DEPTH_LEVELS, 0]
        out["ask_quantity"] = depth[:, DEPTH_LEVELS:, 0]
        out["bid_price"] = depth_prices[:, :DEPTH_LEVELS]
        out["ask_price"] = depth_prices[:, DEPTH_LEVELS:]
        out["bid_orders"] = orders[:, :DEPTH_LEVELS]
        out["ask_orders"] = orders[:, DEPTH_LEVELS:]


def _packet_groups(payload: bytes, count: int) -> dict[int, list[int]] | None:
    """Packet length → half byte offsets of its packets, when the frame is well formed; else None (the
    careful `split_packets` then finds what is readable and counts the rest). Reads the 2-byte headers
    only, with no checks per iteration: a frame that runs short raises IndexError, caught here."""
    groups: dict[int, list[int]] = {}
    j = 2
    try:
        for _ in range(count):
            length = (payload[j] << 8) | payload[j + 1]
            j += 2
            group = groups.get(length)
            if group is None:
                group = groups[length] = []
            group.append(j >> 1)  # offsets are even in a well-formed frame (lengths are multiples of 4)
            j += length
    except IndexError:
        return None
    if j != len(payload) or not KNOWN_LENGTHS.issuperset(groups):
        return None
    return groups


def _windows(payload: bytes, length: int, step: int) -> np.ndarray:
    """A zero-copy (rows, length/4) big-endian word view with one row per `step` bytes of the frame: a
    fancy index on its first axis copies whole packets at once."""
    return np.ndarray(
        ((len(payload) - length) // step + 1, length // 4), dtype=">u4", buffer=payload, offset=0, strides=(step, 4)
    )


def parse_frame(
    payload: bytes, malformed: MalformedCounter | None = None, *, keep_order: bool = False
) -> tuple[np.ndarray, int]:
    """A binary frame → (TICK_DTYPE array, number of malformed parts in the frame).

    Rows come grouped by packet length, groups in order of first appearance and frame order within a
    group, so a token's packets (one mode, one length per connection) keep their order. Kite frames
    hold one packet per token. `keep_order=True` keeps exact frame order at some cost.
    """
    size = len(payload)
    if size < 4:
        return _EMPTY.copy(), split_packets(payload, malformed)[2]
    count = (payload[0] << 8) | payload[1]
    length = (payload[2] << 8) | payload[3]
    if count and length in KNOWN_LENGTHS and 2 + count * (length + 2) == size:
        stride = length + 2
        headers = np.ndarray((count,), dtype=">u2", buffer=payload, offset=2, strides=(stride,))
        if count == 1 or (headers == length).all():
            words = np.ndarray((count, length // 4), dtype=">u4", buffer=payload, offset=4, strides=(stride, 4))
            out = _blank(count)
            _fill(out, words, length)
            return out, 0
    groups = None if keep_order else _packet_groups(payload, count)
    bad = 0
    step = 2
    if groups is None:
        # Damaged (or order wanted): the careful walk. Damage may put packets at odd offsets.
        offsets, lengths, bad = split_packets(payload, malformed)
        if not offsets:
            return _EMPTY.copy(), bad
        step = 1
        if keep_order:
            out = _blank(len(offsets))
            offsets_arr = np.asarray(offsets, dtype=np.int64)
            lengths_arr = np.asarray(lengths, dtype=np.int64)
            for length in dict.fromkeys(lengths):
                rows = np.flatnonzero(lengths_arr == length)
                _fill(out, _windows(payload, length, step)[offsets_arr[rows]], length, rows)
            return out, bad
        groups = {}
        for offset, length in zip(offsets, lengths, strict=True):
            groups.setdefault(length, []).append(offset)
    total = sum(len(starts) for starts in groups.values())
    out = _blank(total)
    first = 0
    for length, starts in groups.items():
        words = _windows(payload, length, step)[starts]
        _fill(out if len(starts) == total else out[first : first + len(starts)], words, length)
        first += len(starts)
    return out, bad


def parse_columnar(payload: bytes, malformed: MalformedCounter | None = None) -> np.ndarray:
    """A binary frame → TICK_DTYPE array (malformed parts counted in `malformed`, never raised)."""
    return parse_frame(payload, malformed)[0]


def parse_batch(
    payload: bytes,
    *,
    malformed: MalformedCounter | None = None,
    received_at: float | None = None,
    source: str = "",
) -> TickBatch:
    """A binary frame → TickBatch, as the client hands it to the ticker loop."""
    ticks, bad = parse_frame(payload, malformed)
    return TickBatch(
        ticks=ticks, received_at=time.time() if received_at is None else received_at, source=source, malformed=bad
    )


def tick_dicts(ticks: np.ndarray) -> list[dict[str, Any]]:
    """TICK_DTYPE rows → kiteconnect's tick dicts (what `parse_binary` gives for the same frame).

    Not for the hot path: for callers that want kiteconnect's shape, and for checking the fast path.
    The packet layout is told by the row itself: an index-layout packet (28/32 bytes) never sets
    `average_traded_price`, a tradable one always does (kiteconnect, too, goes by length, not segment).
    """
    out: list[dict[str, Any]] = []
    for row in ticks.tolist():
        record = dict(zip(TICK_FIELD_NAMES, row, strict=True))
        token, mode = record["instrument_token"], record["mode"]
        is_index = record["average_traded_price"] != record["average_traded_price"]  # NaN
        tick: dict[str, Any] = {
            "tradable": bool(record["tradable"]),
            "mode": MODE_NAMES[mode],
            "instrument_token": token,
            "last_price": record["last_price"],
        }
        if mode == MODE_LTP:
            out.append(tick)
            continue
        ohlc_order = ("high", "low", "open", "close") if is_index else ("open", "high", "low", "close")
        if not is_index:
            tick["last_traded_quantity"] = record["last_traded_quantity"]
            tick["average_traded_price"] = record["average_traded_price"]
            tick["volume_traded"] = record["volume_traded"]
            tick["total_buy_quantity"] = record["total_buy_quantity"]
            tick["total_sell_quantity"] = record["total_sell_quantity"]
        tick["ohlc"] = {key: record[key] for key in ohlc_order}
        close = tick["ohlc"]["close"]
        tick["change"] = (tick["last_price"] - close) * 100 / close if close != 0 else 0
        if mode == MODE_FULL:
            if not is_index:
                tick["last_trade_time"] = timestamp_or_none(record["last_trade_time"])
                tick["oi"] = record["oi"]
                tick["oi_day_high"] = record["oi_day_high"]
                tick["oi_day_low"] = record["oi_day_low"]
            tick["exchange_timestamp"] = timestamp_or_none(record["exchange_timestamp"])
            if not is_index:
                tick["depth"] = {
                    key: [
                        {"quantity": q, "price": p, "orders": o}
                        for q, p, o in zip(
                            record[f"{side}_quantity"].tolist(),
                            record[f"{side}_price"].tolist(),
                            record[f"{side}_orders"].tolist(),
                            strict=True,
                        )
                    ]
                    for key, side in (("buy", "bid"), ("sell", "ask"))
                }
        out.append(tick)
    return out


__all__ = ["TICK_DTYPE", "parse_batch", "parse_columnar", "parse_frame", "tick_dicts"]
