"""The latest state of every instrument the ticker streams, in numpy arrays.

One structured array of TICK_DTYPE rows plus per-row bookkeeping (when it last changed, a global
version counter). A token maps to a row through a sorted key array (`np.searchsorted`), so applying
a TickBatch is a handful of vectorised scatters, whatever its size: no per-tick Python.

A tick only overwrites the fields its mode carries: an LTP tick keeps the depth and OI a previous
full tick brought. Plain numpy: no Django imports.
"""

from __future__ import annotations

import numpy as np

from core.ticks import (
    LTP_FIELDS,
    MODE_FULL,
    MODE_LTP,
    MODE_QUOTE,
    QUOTE_FIELDS,
    TICK_FIELD_NAMES,
    TickBatch,
    empty_ticks,
)

_QUOTE_FIELDS = (
    *LTP_FIELDS,
    *QUOTE_FIELDS,
    "exchange_timestamp",  # index full packets carry it in their quote-sized layout
)
_FULL_FIELDS = TICK_FIELD_NAMES
FIELDS_BY_MODE = {
    MODE_LTP: ("instrument_token", "tradable", *LTP_FIELDS),
    MODE_QUOTE: ("instrument_token", "tradable", *_QUOTE_FIELDS),
    MODE_FULL: _FULL_FIELDS,
}


class MarketState:
    """Latest tick per instrument. Rows are never removed while the process runs (a token that
    leaves the plan keeps its last values, which is what a chain snapshot wants)."""

    def __init__(self, tokens: np.ndarray | list[int] | None = None, *, capacity: int = 1024) -> None:
        self.ticks = empty_ticks(capacity)
        self.updated_at = np.zeros(capacity, dtype=np.float64)  # epoch s the row last changed (batch received_at)
        self.version = np.zeros(capacity, dtype=np.int64)  # the state's `seq` when the row last changed
        self.is_mock = np.zeros(capacity, dtype=np.bool_)
        self.size = 0
        self.seq = 0  # +1 per applied batch
        self.ticks_applied = 0
        self.unknown_ticks = 0  # ticks for tokens that were never registered (ignored)
        self._keys = np.empty(0, dtype=np.int64)  # sorted tokens
        self._key_rows = np.empty(0, dtype=np.int64)  # row of each sorted token
        if tokens is not None:
            self.register(tokens)

    def __len__(self) -> int:
        return self.size

    def register(self, tokens: np.ndarray | list[int]) -> np.ndarray:
        """Give every new token a row; returns the rows of `tokens` (in their order)."""
        tokens = np.asarray(tokens, dtype=np.int64)
        new = np.setdiff1d(tokens, self._keys)
        if len(new):
            needed = self.size + len(new)
            if needed > len(self.ticks):
                self._grow(max(needed, 2 * len(self.ticks)))
            rows = np.arange(self.size, needed, dtype=np.int64)
            self.ticks["instrument_token"][rows] = new
            self.size = needed
            keys = np.concatenate([self._keys, new])
            key_rows = np.concatenate([self._key_rows, rows])
            order = np.argsort(keys, kind="stable")
            self._keys, self._key_rows = keys[order], key_rows[order]
        return self.rows_for(tokens)

    def rows_for(self, tokens: np.ndarray | list[int]) -> np.ndarray:
        """Row per token, -1 where the token has no row."""
        tokens = np.asarray(tokens, dtype=np.int64)
        if not len(self._keys):
            return np.full(len(tokens), -1, dtype=np.int64)
        pos = np.searchsorted(self._keys, tokens)
        pos_clipped = np.minimum(pos, len(self._keys) - 1)
        found = self._keys[pos_clipped] == tokens
        return np.where(found, self._key_rows[pos_clipped], -1)

    def apply(self, batch: TickBatch) -> np.ndarray:
        """Write a batch into the state; returns the (unique) rows that changed."""
        ticks = batch.ticks
        if not len(ticks):
            return np.empty(0, dtype=np.int64)
        rows = self.rows_for(ticks["instrument_token"])
        known = rows >= 0
        if not known.all():
            self.unknown_ticks += int((~known).sum())
            ticks, rows = ticks[known], rows[known]
            if not len(ticks):
                return np.empty(0, dtype=np.int64)
        if len(rows) > 1:
            # Keep the last tick per token in the batch (fancy assignment order is not guaranteed).
            rev_unique, rev_idx = np.unique(rows[::-1], return_index=True)
            if len(rev_unique) != len(rows):
                keep = np.sort(len(rows) - 1 - rev_idx)
                ticks, rows = ticks[keep], rows[keep]
        self.seq += 1
        modes = ticks["mode"]
        for mode, fields in FIELDS_BY_MODE.items():
            mask = modes == mode
            if not mask.any():
                continue
            if mask.all():
                sel_rows, sel = rows, ticks
            else:
                sel_rows, sel = rows[mask], ticks[mask]
            target = self.ticks
            for name in fields:
                target[name][sel_rows] = sel[name]
            target["mode"][sel_rows] = np.maximum(target["mode"][sel_rows], mode)
        self.updated_at[rows] = batch.received_at
        self.version[rows] = self.seq
        self.is_mock[rows] = batch.is_mock
        self.ticks_applied += len(rows)
        return rows

    def changed_since(self, rows: np.ndarray, seq: int) -> np.ndarray:
        """Boolean mask over `rows` (-1 allowed): which changed after state seq `seq`."""
        rows = np.asarray(rows, dtype=np.int64)
        valid = rows >= 0
        out = np.zeros(len(rows), dtype=np.bool_)
        out[valid] = self.version[rows[valid]] > seq
        return out

    def column(self, name: str, rows: np.ndarray, *, fill: float = np.nan) -> np.ndarray:
        """`ticks[name][rows]` with `fill` where the row is -1 (float result)."""
        rows = np.asarray(rows, dtype=np.int64)
        values = self.ticks[name][np.maximum(rows, 0)].astype(np.float64)
        if (rows < 0).any():
            values[rows < 0] = fill
        return values

    def latest(self, token: int) -> np.void | None:
        """The latest tick of one token (a copy), or None."""
        row = int(self.rows_for([token])[0])
        if row < 0 or self.version[row] == 0:
            return None
        return self.ticks[row].copy()

    def _grow(self, capacity: int) -> None:
        grown = empty_ticks(capacity)
        grown[: self.size] = self.ticks[: self.size]
        self.ticks = grown
        for name in ("updated_at", "version", "is_mock"):
            old = getattr(self, name)
            new = np.zeros(capacity, dtype=old.dtype)
            new[: self.size] = old[: self.size]
            setattr(self, name, new)


__all__ = ["FIELDS_BY_MODE", "MODE_FULL", "MODE_LTP", "MODE_QUOTE", "MarketState"]
