"""The chains the plan holds: planned option instruments grouped by (underlying, expiry) into `ChainSpec`s
(sorted strikes, the call and put token per strike, the underlying's spot token). No Django imports."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from core.calendar import expiry_datetime
from streaming.ticker.chain_analytics import expiry_buckets


class InstrumentLike(Protocol):
    instrument_token: int
    tradingsymbol: str
    underlying: str
    instrument_type: str
    strike: float
    expiry: dt.date | None
    segment: str


@dataclass(frozen=True)
class ChainSpec:
    underlying: str
    expiry: dt.date
    strikes: np.ndarray  # float64, ascending, unique
    ce_tokens: np.ndarray  # int64 per strike, 0 where the strike has no call in the plan
    pe_tokens: np.ndarray
    ce_symbols: tuple[str, ...]
    pe_symbols: tuple[str, ...]
    spot_token: int | None = None  # the index (or equity) the chain is written on, when planned

    @property
    def key(self) -> tuple[str, str]:
        return (self.underlying, self.expiry.isoformat())

    @property
    def tokens(self) -> np.ndarray:
        both = np.concatenate([self.ce_tokens, self.pe_tokens])
        return both[both > 0]

    @property
    def expires_at(self) -> dt.datetime:
        return expiry_datetime(self.expiry)


def build_chain_registry(instruments: Iterable[InstrumentLike]) -> dict[tuple[str, str], ChainSpec]:
    """Chains from planned instruments: every CE/PE with an expiry, grouped by (underlying, expiry).
    The spot token of an underlying is its index (segment INDICES) or else its equity."""
    options: dict[tuple[str, dt.date], list[InstrumentLike]] = {}
    spots: dict[str, tuple[int, int]] = {}  # underlying -> (preference, token)
    for inst in instruments:
        kind = inst.instrument_type
        if kind in ("CE", "PE") and inst.expiry is not None and inst.underlying:
            options.setdefault((inst.underlying.upper(), inst.expiry), []).append(inst)
        elif kind == "EQ" and inst.underlying:
            preference = 0 if inst.segment == "INDICES" else 1
            current = spots.get(inst.underlying.upper())
            if current is None or preference < current[0]:
                spots[inst.underlying.upper()] = (preference, int(inst.instrument_token))
    registry: dict[tuple[str, str], ChainSpec] = {}
    for (underlying, expiry), items in sorted(options.items()):
        strikes = np.array(sorted({float(i.strike) for i in items}), dtype=np.float64)
        index = {k: n for n, k in enumerate(strikes.tolist())}
        ce = np.zeros(len(strikes), dtype=np.int64)
        pe = np.zeros(len(strikes), dtype=np.int64)
        ce_sym = [""] * len(strikes)
        pe_sym = [""] * len(strikes)
        for inst in items:
            n = index[float(inst.strike)]
            if inst.instrument_type == "CE":
                ce[n], ce_sym[n] = int(inst.instrument_token), inst.tradingsymbol
            else:
                pe[n], pe_sym[n] = int(inst.instrument_token), inst.tradingsymbol
        spot = spots.get(underlying)
        spec = ChainSpec(
            underlying=underlying,
            expiry=expiry,
            strikes=strikes,
            ce_tokens=ce,
            pe_tokens=pe,
            ce_symbols=tuple(ce_sym),
            pe_symbols=tuple(pe_sym),
            spot_token=spot[1] if spot else None,
        )
        registry[spec.key] = spec
    return registry


def same_chain(a: ChainSpec, b: ChainSpec) -> bool:
    """Whether two specs stream the same instruments at the same strikes (a running book can stay)."""
    return (
        a.spot_token == b.spot_token
        and np.array_equal(a.strikes, b.strikes)
        and np.array_equal(a.ce_tokens, b.ce_tokens)
        and np.array_equal(a.pe_tokens, b.pe_tokens)
    )


class BucketedBook(Protocol):
    spec: ChainSpec
    iv_buckets: tuple[str, ...]
    iv_bucket: str | None
    term_structure: dict[str, list[Any]]


def assign_iv_buckets(books: Iterable[BucketedBook]) -> dict[str, bool]:
    """Per underlying: which books stand for the nearest weekly/monthly IV history, and one shared
    term-structure dict for its books' headers. Returns, per underlying, whether it lists weeklies."""
    by_underlying: dict[str, list[BucketedBook]] = {}
    for book in books:
        by_underlying.setdefault(book.spec.underlying, []).append(book)
    weeklies: dict[str, bool] = {}
    for underlying, group in by_underlying.items():
        buckets = expiry_buckets([b.spec.expiry for b in group])
        term: dict[str, list[Any]] = {}
        for book in group:
            book.iv_buckets = buckets[book.spec.expiry]
            book.iv_bucket = book.iv_buckets[0] if book.iv_buckets else None
            book.term_structure = term
        # An underlying lists weeklies when one of its expiries is not the last of its month.
        weeklies[underlying] = any((b.spec.expiry + dt.timedelta(days=7)).month == b.spec.expiry.month for b in group)
    return weeklies


__all__ = ["BucketedBook", "ChainSpec", "InstrumentLike", "assign_iv_buckets", "build_chain_registry", "same_chain"]
