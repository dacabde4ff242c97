"""A chain's sides on the wire: the market state's columns for a chain's rows, and the side objects
(docs/websocket.md) built from them, rounded as one matrix per side. Pure numpy: no Django imports."""

from __future__ import annotations

from typing import Any

import numpy as np

from streaming.contract import BUILDUP_TAGS, SIDE_FIELDS
from streaming.ticker.chain_analytics import quote_mid
from streaming.ticker.market_state import MarketState

_BUILDUP_WIRE: tuple[str | None, ...] = (*BUILDUP_TAGS, None)  # index = code; NO_BUILDUP (-1) is the last


def side_arrays(state: MarketState, rows: np.ndarray) -> dict[str, np.ndarray]:
    ltp = state.column("last_price", rows)
    bid = _depth(state, rows, "bid_price")
    ask = _depth(state, rows, "ask_price")
    ticked = np.zeros(len(rows), dtype=bool)
    valid = rows >= 0
    ticked[valid] = state.version[rows[valid]] > 0
    return {
        "ltp": ltp,
        "bid": bid,
        "ask": ask,
        "mid": quote_mid(bid, ask, ltp),
        "close": state.column("close", rows),
        "oi": np.where(ticked, state.column("oi", rows), np.nan),
        "volume": np.where(ticked, state.column("volume_traded", rows), np.nan),
        "updated_at": _updated_at(state, rows, ticked),
        "ticked": ticked,
    }


def side_dicts(
    symbols: tuple[str, ...],
    tokens: np.ndarray,
    arrays: dict[str, np.ndarray],
    greeks: dict[str, np.ndarray],
    oi_change: np.ndarray,
    oi_change_recent: np.ndarray,
    buildup: np.ndarray,
    index: np.ndarray,
) -> list[dict[str, Any]]:
    """Side objects (docs/websocket.md) for the strikes at `index` (all of which have this side)."""
    # All numeric fields as one float64 matrix (a row per field, in _SIDE_FIELDS order): rounding,
    # the NaN check and the conversion to Python numbers are then a few numpy calls per side
    # instead of a few per field. Each value equals per-field rounding
    # (tests/streaming/ticker/test_chains.py checks it).
    ltp = arrays["ltp"][index]
    close = arrays["close"][index]
    values = np.empty((len(_SIDE_FIELDS), len(index)), dtype=np.float64)
    values[0] = ltp
    with np.errstate(invalid="ignore"):
        values[1] = np.where(close > 0, ltp - close, np.nan)
    values[2] = arrays["oi"][index]
    values[3] = oi_change[index]
    values[4] = oi_change_recent[index]
    values[5] = arrays["volume"][index]
    for n, name in enumerate(("iv", "delta", "gamma", "theta", "vega"), start=6):
        values[n] = greeks[name][index]
    values[11] = arrays["bid"][index]
    values[12] = arrays["ask"][index]
    values[13] = arrays["updated_at"][index]
    values[14] = greeks["gex"][index]
    bad = ~np.isfinite(values)
    ints = np.where(bad[_SIDE_INTS], 0.0, values[_SIDE_INTS]).astype(np.int64).tolist()
    # np.round(x, d) is rint(x * 10**d) / 10**d: done here for all rows at once, each row with its
    # own 10**d (the integer rows were taken above).
    with np.errstate(invalid="ignore", over="ignore"):
        np.multiply(values, _SIDE_SCALE, out=values)
        np.rint(values, out=values)
        np.divide(values, _SIDE_SCALE, out=values)
    columns: list[list[Any]] = values.tolist()
    columns[_SIDE_INTS] = ints
    if bad.any():
        count = len(index)
        for field_no in np.flatnonzero(bad.any(axis=1)).tolist():
            field_bad = bad[field_no]
            if field_bad.all():  # e.g. the OI window before it has history: the whole row
                columns[field_no] = [None] * count
            else:
                column = columns[field_no]
                for n in np.flatnonzero(field_bad).tolist():
                    column[n] = None
    symbol_list = [symbols[n] for n in index.tolist()]
    tags = [_BUILDUP_WIRE[code] for code in buildup[index].astype(np.int64).tolist()]
    # A dict display per side (the keys in SIDE_FIELDS order, which a test checks): about
    # twice as fast as dict(zip(fields, values)) for the ~200 sides of a typical delta.
    return [
        {
            "instrument_token": token,
            "tradingsymbol": symbol,
            "ltp": last,
            "change": change,
            "oi": oi,
            "oi_change": oi_change_value,
            "oi_change_recent": oi_recent,
            "volume": volume,
            "iv": iv,
            "delta": delta,
            "gamma": gamma,
            "theta": theta,
            "vega": vega,
            "bid": bid,
            "ask": ask,
            "updated_at": updated_at,
            "gex": gex,
            "buildup": tag,
        }
        for (
            token,
            symbol,
            last,
            change,
            oi,
            oi_change_value,
            oi_recent,
            volume,
            iv,
            delta,
            gamma,
            theta,
            vega,
            bid,
            ask,
            updated_at,
            gex,
            tag,
        ) in zip(tokens[index].tolist(), symbol_list, *columns, tags, strict=True)
    ]


# The numeric fields of a side object (the wire's SIDE_FIELDS after token and symbol, before the
# build-up tag), in order: the rows of the matrix in side_dicts. Rows [lo, hi) are rounded to
# `digits`, and _SIDE_INTS are integers (truncated toward zero, as int() does).
_SIDE_FIELDS = SIDE_FIELDS[2:-1]
_SIDE_ROUNDING = ((0, 2, 2), (6, 7, 5), (7, 8, 4), (8, 9, 6), (9, 11, 3), (11, 13, 2), (13, 14, 3), (14, 15, 0))
_SIDE_INTS = slice(2, 6)
_SIDE_SCALE = np.ones((len(_SIDE_FIELDS), 1))  # a column: 10**digits per row of the matrix
for _lo, _hi, _digits in _SIDE_ROUNDING:
    _SIDE_SCALE[_lo:_hi] = 10.0**_digits


def differs(new: np.ndarray, old: np.ndarray | None) -> np.ndarray:
    """Elementwise "changed", with NaN equal to NaN."""
    if old is None:
        return np.isfinite(new)
    with np.errstate(invalid="ignore"):
        return (np.isnan(new) != np.isnan(old)) | ((new != old) & np.isfinite(new) & np.isfinite(old))


def _depth(state: MarketState, rows: np.ndarray, name: str) -> np.ndarray:
    """Best bid/ask (level 0); NaN where missing or zero (Kite sends 0 for an empty level)."""
    values = state.ticks[name][np.maximum(rows, 0), 0].astype(np.float64)
    values[(rows < 0) | ~(values > 0)] = np.nan
    return values


def _updated_at(state: MarketState, rows: np.ndarray, ticked: np.ndarray) -> np.ndarray:
    values = state.updated_at[np.maximum(rows, 0)].astype(np.float64)
    values[~ticked] = np.nan
    return values


__all__ = ["differs", "side_arrays", "side_dicts"]
