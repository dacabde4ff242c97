"""An immutable view of the whole mock market at one moment, readable from any thread without a lock."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from types import MappingProxyType

import numpy as np


@dataclass(frozen=True)
class MarketSnapshot:
    """The whole mock market at one moment. Arrays are read-only; nothing here ever changes."""

    time: float  # market time, epoch seconds
    session_day: date | None
    tokens: np.ndarray  # sorted instrument tokens that have state
    rows: np.ndarray  # row of each token in `ticks` (same order as `tokens`)
    ticks: np.ndarray  # TICK_DTYPE, every materialised row in full mode
    theoretical: np.ndarray  # model (mid) price per row
    iv: np.ndarray  # model implied volatility per row (NaN for non-options)
    spot: np.ndarray  # the underlying's model spot per row
    underlying_spots: MappingProxyType  # name -> model spot
    specs: MappingProxyType  # token -> InstrumentSpec (every known instrument)

    def row_of(self, token: int) -> int | None:
        i = int(np.searchsorted(self.tokens, token))
        if i < len(self.tokens) and self.tokens[i] == token:
            return int(self.rows[i])
        return None

    def rows_of(self, tokens: np.ndarray) -> np.ndarray:
        """Rows for `tokens`, -1 where a token has no state."""
        tokens = np.asarray(tokens, dtype=np.int64)
        if len(self.tokens) == 0:
            return np.full(len(tokens), -1, dtype=np.int64)
        i = np.minimum(np.searchsorted(self.tokens, tokens), len(self.tokens) - 1)
        return np.where(self.tokens[i] == tokens, self.rows[i], -1)

    def tick(self, token: int) -> np.void | None:
        row = self.row_of(token)
        return None if row is None else self.ticks[row]

    def __len__(self) -> int:
        return len(self.tokens)
