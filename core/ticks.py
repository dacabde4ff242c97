"""The columnar tick batch: what every tick source (the Kite client, the mock market) produces and
the ticker loop consumes. One numpy structured array per batch, no per-tick Python objects.

Fields missing for a packet's mode are NaN (floats) or 0 (ints); `mode` says which are valid.
Prices are already divided by the segment's divisor. Times are epoch seconds (UTC).
Plain numpy: no Django imports.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np

MODE_LTP = 0
MODE_QUOTE = 1
MODE_FULL = 2
MODE_NAMES = ("ltp", "quote", "full")
MODE_CODES = {name: code for code, name in enumerate(MODE_NAMES)}

DEPTH_LEVELS = 5

# The fields each subscription mode adds to the one below it (what a Kite packet of that mode carries).
LTP_FIELDS = ("last_price",)
QUOTE_FIELDS = (
    "last_traded_quantity",
    "average_traded_price",
    "volume_traded",
    "total_buy_quantity",
    "total_sell_quantity",
    "open",
    "high",
    "low",
    "close",
)
FULL_FIELDS = (
    "last_trade_time",
    "oi",
    "oi_day_high",
    "oi_day_low",
    "exchange_timestamp",
    "bid_quantity",
    "bid_price",
    "bid_orders",
    "ask_quantity",
    "ask_price",
    "ask_orders",
)

TICK_DTYPE = np.dtype(
    [
        ("instrument_token", np.int64),
        ("mode", np.int8),
        ("tradable", np.bool_),
        ("last_price", np.float64),
        ("last_traded_quantity", np.int64),
        ("average_traded_price", np.float64),
        ("volume_traded", np.int64),
        ("total_buy_quantity", np.int64),
        ("total_sell_quantity", np.int64),
        ("open", np.float64),
        ("high", np.float64),
        ("low", np.float64),
        ("close", np.float64),
        ("last_trade_time", np.int64),  # epoch s, 0 when absent
        ("oi", np.int64),
        ("oi_day_high", np.int64),
        ("oi_day_low", np.int64),
        ("exchange_timestamp", np.int64),  # epoch s, 0 when absent
        ("bid_quantity", np.int64, (DEPTH_LEVELS,)),
        ("bid_price", np.float64, (DEPTH_LEVELS,)),
        ("bid_orders", np.int32, (DEPTH_LEVELS,)),
        ("ask_quantity", np.int64, (DEPTH_LEVELS,)),
        ("ask_price", np.float64, (DEPTH_LEVELS,)),
        ("ask_orders", np.int32, (DEPTH_LEVELS,)),
    ]
)
# TICK_DTYPE's field names, in order. numpy's stubs type `dtype.names` as optional (a plain dtype has none).
TICK_FIELD_NAMES = cast("tuple[str, ...]", TICK_DTYPE.names)


FLOAT_FIELDS = frozenset(name for name in TICK_FIELD_NAMES if TICK_DTYPE[name].base.kind == "f")


def empty_ticks(n: int) -> np.ndarray:
    """An array of `n` ticks with float fields NaN and int fields 0."""
    ticks = np.zeros(n, dtype=TICK_DTYPE)
    for name in FLOAT_FIELDS:
        ticks[name] = np.nan
    return ticks


@dataclass(frozen=True, slots=True)
class TickBatch:
    """Ticks that arrived together (one websocket frame, or one mock-market step)."""

    ticks: np.ndarray  # dtype TICK_DTYPE
    received_at: float  # time.time() when the frame arrived / the step was made
    is_mock: bool = False
    source: str = ""  # e.g. "account:3/conn:0" or "mock"
    malformed: int = 0  # packets in the frame that were counted and skipped
    extra: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.ticks)
