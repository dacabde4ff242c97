"""Build Kite ticker binary frames: the inverse of the parser.

The simulator packs the mock market's TickBatch with `pack_ticks` (vectorised: one big-endian uint32
matrix per packet length, scattered into one buffer); tests build frames from kiteconnect-style tick
dicts with `pack_tick_dicts` or from raw packets with `frame_from_packets`.

Layouts (Kite Connect's WebSocket documentation): all integers big-endian unsigned; a frame is `>H`
packet count, then per packet `>H` length and the packet. Packet lengths: 8 ltp, 28/32 index
quote/full, 44/184 quote/full. Plain numpy, no Django.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import numpy as np

from core.ticks import DEPTH_LEVELS, MODE_CODES, MODE_FULL, MODE_LTP, MODE_QUOTE, empty_ticks

SEGMENT_CDS = 3
SEGMENT_BCD = 6
SEGMENT_INDICES = 9
SEGMENT_NCO = 12

LEN_LTP = 8
LEN_INDEX_QUOTE = 28
LEN_INDEX_FULL = 32
LEN_QUOTE = 44
LEN_FULL = 184
PACKET_LENGTHS = (LEN_LTP, LEN_INDEX_QUOTE, LEN_INDEX_FULL, LEN_QUOTE, LEN_FULL)

_U32_MAX = 0xFFFFFFFF


def segment_divisors(tokens: np.ndarray) -> np.ndarray:
    """Price divisor per instrument token, as kiteconnect chooses it from `token & 0xff`."""
    segment = np.asarray(tokens, dtype=np.int64) & 0xFF
    divisor = np.full(segment.shape, 100.0)
    divisor[segment == SEGMENT_CDS] = 10_000_000.0
    divisor[(segment == SEGMENT_BCD) | (segment == SEGMENT_NCO)] = 10_000.0
    return divisor


def packet_lengths(tokens: np.ndarray, modes: np.ndarray) -> np.ndarray:
    """The packet length Kite uses for each (token, mode): indices have their own short layouts."""
    is_index = (np.asarray(tokens, dtype=np.int64) & 0xFF) == SEGMENT_INDICES
    modes = np.asarray(modes)
    lengths = np.full(modes.shape, LEN_LTP, dtype=np.int64)
    lengths[(modes == MODE_QUOTE) & is_index] = LEN_INDEX_QUOTE
    lengths[(modes == MODE_FULL) & is_index] = LEN_INDEX_FULL
    lengths[(modes == MODE_QUOTE) & ~is_index] = LEN_QUOTE
    lengths[(modes == MODE_FULL) & ~is_index] = LEN_FULL
    return lengths


def _u32(values: np.ndarray) -> np.ndarray:
    """Clip to the unsigned 32-bit range (NaN → 0) so a wild value cannot wrap into a plausible one."""
    values = np.nan_to_num(np.asarray(values, dtype=np.float64), nan=0.0, posinf=_U32_MAX, neginf=0.0)
    clipped: np.ndarray = np.clip(np.rint(values), 0, _U32_MAX).astype(np.uint32)
    return clipped


def _price(values: np.ndarray, divisor: np.ndarray) -> np.ndarray:
    divisor = divisor.reshape(divisor.shape + (1,) * (np.ndim(values) - 1))
    return _u32(np.asarray(values, dtype=np.float64) * divisor)


def _words(ticks: np.ndarray, length: int) -> np.ndarray:
    """Packets of one length as an (n, length/4) uint32 matrix (native order; swapped when written)."""
    n = len(ticks)
    words = np.zeros((n, length // 4), dtype=np.uint32)
    tokens = ticks["instrument_token"]
    divisor = segment_divisors(tokens)
    words[:, 0] = _u32(tokens)
    words[:, 1] = _price(ticks["last_price"], divisor)
    if length in (LEN_INDEX_QUOTE, LEN_INDEX_FULL):
        words[:, 2] = _price(ticks["high"], divisor)
        words[:, 3] = _price(ticks["low"], divisor)
        words[:, 4] = _price(ticks["open"], divisor)
        words[:, 5] = _price(ticks["close"], divisor)
        # Price change (last - close) in paise; clients ignore it and recompute. Two's complement.
        change = np.nan_to_num((ticks["last_price"] - ticks["close"]) * divisor)
        words[:, 6] = np.rint(change).astype(np.int64).astype(np.uint32)
        if length == LEN_INDEX_FULL:
            words[:, 7] = _u32(ticks["exchange_timestamp"])
    elif length in (LEN_QUOTE, LEN_FULL):
        words[:, 2] = _u32(ticks["last_traded_quantity"])
        words[:, 3] = _price(ticks["average_traded_price"], divisor)
        words[:, 4] = _u32(ticks["volume_traded"])
        words[:, 5] = _u32(ticks["total_buy_quantity"])
        words[:, 6] = _u32(ticks["total_sell_quantity"])
        words[:, 7] = _price(ticks["open"], divisor)
        words[:, 8] = _price(ticks["high"], divisor)
        words[:, 9] = _price(ticks["low"], divisor)
        words[:, 10] = _price(ticks["close"], divisor)
        if length == LEN_FULL:
            words[:, 11] = _u32(ticks["last_trade_time"])
            words[:, 12] = _u32(ticks["oi"])
            words[:, 13] = _u32(ticks["oi_day_high"])
            words[:, 14] = _u32(ticks["oi_day_low"])
            words[:, 15] = _u32(ticks["exchange_timestamp"])
            depth = words[:, 16:].reshape(n, 2 * DEPTH_LEVELS, 3)
            for side, first in (("bid", 0), ("ask", DEPTH_LEVELS)):
                block = depth[:, first : first + DEPTH_LEVELS]
                block[:, :, 0] = _u32(ticks[f"{side}_quantity"])
                block[:, :, 1] = _price(ticks[f"{side}_price"], divisor)
                # orders is a >H followed by 2 bytes of padding: the high half of a big-endian word.
                orders = np.clip(ticks[f"{side}_orders"].astype(np.int64), 0, 0xFFFF).astype(np.uint32)
                block[:, :, 2] = orders << 16
    return words


def pack_ticks(ticks: np.ndarray, modes: np.ndarray | None = None) -> bytes:
    """One binary frame holding every row of `ticks` (TICK_DTYPE), in row order.

    `modes` overrides the rows' own `mode` field (the simulator streams each token in the mode the
    connection asked for).
    """
    n = len(ticks)
    if n > 0xFFFF:
        raise ValueError(f"a frame holds at most 65535 packets, got {n}")
    modes = ticks["mode"] if modes is None else np.asarray(modes)
    lengths = packet_lengths(ticks["instrument_token"], modes)
    starts = np.zeros(n, dtype=np.int64)  # offset of each packet's body in the frame
    if n:
        starts[0] = 4
        np.cumsum(lengths[:-1] + 2, out=starts[1:])
        starts[1:] += 4
    total = 2 + int(lengths.sum()) + 2 * n
    buffer = np.zeros(total, dtype=np.uint8)
    buffer[0:2] = np.array([n], dtype=">u2").view(np.uint8)
    if n:
        headers = lengths.astype(">u2").view(np.uint8).reshape(n, 2)
        buffer[(starts - 2)[:, None] + np.arange(2)] = headers
    for length in np.unique(lengths):
        rows = np.flatnonzero(lengths == length)
        body = _words(ticks[rows], int(length)).astype(">u4").view(np.uint8).reshape(len(rows), int(length))
        buffer[starts[rows][:, None] + np.arange(int(length))] = body
    return buffer.tobytes()


def frame_from_packets(packets: Sequence[bytes]) -> bytes:
    """Wrap bare packets in a frame: `>H` count, then `>H` length + bytes for each."""
    parts = [struct.pack(">H", len(packets))]
    for packet in packets:
        parts.append(struct.pack(">H", len(packet)))
        parts.append(packet)
    return b"".join(parts)


def _epoch(value: Any) -> int:
    if value is None:
        return 0
    if isinstance(value, datetime):
        return int(value.timestamp())  # naive datetimes are local time, as kiteconnect made them
    return int(value)


def tick_dicts_to_array(ticks: Iterable[dict[str, Any]]) -> np.ndarray:
    """kiteconnect-style tick dicts (keys of `KiteTicker._parse_binary`) → a TICK_DTYPE array."""
    rows = list(ticks)
    out = empty_ticks(len(rows))
    for i, tick in enumerate(rows):
        mode = tick.get("mode", "quote")
        code = MODE_CODES[mode] if isinstance(mode, str) else int(mode)
        row = out[i]
        row["instrument_token"] = tick["instrument_token"]
        row["mode"] = code
        row["tradable"] = tick.get("tradable", True)
        row["last_price"] = tick.get("last_price", np.nan)
        ohlc = tick.get("ohlc") or {}
        for key in ("open", "high", "low", "close"):
            row[key] = ohlc.get(key, np.nan)
        for key in ("last_traded_quantity", "volume_traded", "total_buy_quantity", "total_sell_quantity"):
            row[key] = tick.get(key, 0)
        row["average_traded_price"] = tick.get("average_traded_price", np.nan)
        for key in ("oi", "oi_day_high", "oi_day_low"):
            row[key] = tick.get(key, 0)
        row["last_trade_time"] = _epoch(tick.get("last_trade_time"))
        row["exchange_timestamp"] = _epoch(tick.get("exchange_timestamp"))
        depth = tick.get("depth") or {}
        for side, key in (("bid", "buy"), ("ask", "sell")):
            for level, entry in enumerate((depth.get(key) or [])[:DEPTH_LEVELS]):
                row[f"{side}_quantity"][level] = entry["quantity"]
                row[f"{side}_price"][level] = entry["price"]
                row[f"{side}_orders"][level] = entry["orders"]
    return out


def pack_tick_dicts(ticks: Iterable[dict[str, Any]]) -> bytes:
    """One frame from kiteconnect-style tick dicts (mode "ltp" | "quote" | "full")."""
    return pack_ticks(tick_dicts_to_array(ticks))


__all__ = [
    "LEN_FULL",
    "LEN_INDEX_FULL",
    "LEN_INDEX_QUOTE",
    "LEN_LTP",
    "LEN_QUOTE",
    "MODE_FULL",
    "MODE_LTP",
    "MODE_QUOTE",
    "PACKET_LENGTHS",
    "frame_from_packets",
    "pack_tick_dicts",
    "pack_ticks",
    "packet_lengths",
    "segment_divisors",
    "tick_dicts_to_array",
]
