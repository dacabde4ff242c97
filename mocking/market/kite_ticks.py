"""The mock's ticks as the wire carries them: only the fields a tick's mode has, and kiteconnect's dicts."""

from __future__ import annotations

from typing import Any

import numpy as np

from core.kite.columnar import tick_dicts
from core.ticks import FLOAT_FIELDS, FULL_FIELDS, MODE_FULL, MODE_LTP, QUOTE_FIELDS


def blank_for_modes(ticks: np.ndarray) -> None:
    """Clear the fields a tick's mode does not carry (as the wire would)."""
    not_full = ticks["mode"] != MODE_FULL
    not_quote = ticks["mode"] == MODE_LTP
    for name, mask in ((n, not_full) for n in FULL_FIELDS):
        if mask.any():
            ticks[name][mask] = np.nan if name in FLOAT_FIELDS else 0
    for name in QUOTE_FIELDS:
        if not_quote.any():
            ticks[name][not_quote] = np.nan if name in FLOAT_FIELDS else 0
    # An index carries no trade fields in any mode, and its quote has no exchange timestamp.
    idx = ~ticks["tradable"]
    if idx.any():
        for name in ("last_traded_quantity", "volume_traded", "total_buy_quantity", "total_sell_quantity"):
            ticks[name][idx] = 0
        ticks["average_traded_price"][idx] = np.nan
        for name in ("last_trade_time", "oi", "oi_day_high", "oi_day_low"):
            ticks[name][idx] = 0


def ticks_to_kite_dicts(ticks: np.ndarray) -> list[dict[str, Any]]:
    """TICK_DTYPE rows -> the dicts kiteconnect's KiteTicker emits, each with "is_mock": True.

    The rows must be blanked for their modes (`blank_for_modes`): an index row's average price is NaN,
    which is how the decoder tells an index packet from a tradable one.
    """
    return [{**tick, "is_mock": True} for tick in tick_dicts(ticks)]
