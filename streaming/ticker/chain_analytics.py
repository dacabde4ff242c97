"""Option-chain analytics on whole arrays: forward, ATM, IV and Greeks, PCR, max pain, OI change.

Pure numpy on top of `core.greeks` (no Django). A chain is one (underlying, expiry): a sorted
array of strikes with a call and a put per strike (either side may be missing: its values are NaN).
Everything here takes and returns arrays so one call prices the whole chain at once.

The forward comes from put-call parity, F = K + e^{rT}(C - P), at the strikes nearest the spot
(median of a few, using mids when both quotes are there, else last prices); without a usable pair
it falls back to spot·e^{rT}. IV and Greeks use the spot with the dividend yield the forward
implies, q = r - ln(F/S)/T, so index futures basis and dividends are priced in, and delta stays a
sensitivity to the spot traders watch.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from core import greeks as pricing
from core.strikes import nearest_strike as atm_strike

PARITY_STRIKES = 3
GREEK_NAMES = ("iv", "delta", "gamma", "theta", "vega", "rho")


@dataclass(frozen=True)
class ChainAnalytics:
    spot: float  # NaN when neither the index nor a parity pair is known
    forward: float
    atm_strike: float
    pcr_oi: float
    pcr_volume: float
    max_pain: float
    time_to_expiry_years: float
    # Per strike, per side (arrays aligned with the chain's strikes); NaN where not computable.
    ce: dict[str, np.ndarray] = field(default_factory=dict)  # iv, delta, gamma, theta, vega, rho
    pe: dict[str, np.ndarray] = field(default_factory=dict)


def quote_mid(bid: np.ndarray, ask: np.ndarray, last: np.ndarray) -> np.ndarray:
    """Mid of bid/ask where both are positive and bid ≤ ask, else the last price."""
    bid, ask, last = (np.asarray(a, dtype=np.float64) for a in (bid, ask, last))
    ok = (bid > 0) & (ask > 0) & (ask >= bid)
    return np.where(ok, (bid + ask) / 2.0, last)


def implied_forward(
    strikes: np.ndarray, call: np.ndarray, put: np.ndarray, *, t: float, rate: float, near: float | None = None
) -> float:
    """Forward from put-call parity at the `PARITY_STRIKES` strikes nearest `near` (or the middle)."""
    strikes, call, put = (np.asarray(a, dtype=np.float64) for a in (strikes, call, put))
    ok = np.isfinite(call) & np.isfinite(put) & (call > 0) & (put > 0)
    if t <= 0 or not ok.any():
        return math.nan
    k, c, p = strikes[ok], call[ok], put[ok]
    ref = near if near is not None and math.isfinite(near) else None
    if ref is None:
        # No spot: start from the strike where calls and puts cost the same.
        ref = float(k[np.argmin(np.abs(c - p))])
    nearest = np.argsort(np.abs(k - ref), kind="stable")[:PARITY_STRIKES]
    forwards = k[nearest] + math.exp(rate * t) * (c[nearest] - p[nearest])
    forwards = forwards[forwards > 0]
    return float(np.median(forwards)) if len(forwards) else math.nan


def put_call_ratio(put: np.ndarray, call: np.ndarray) -> float:
    """Σput / Σcall over the known values; NaN when the call side sums to zero."""
    put_sum = float(np.nansum(np.asarray(put, dtype=np.float64)))
    call_sum = float(np.nansum(np.asarray(call, dtype=np.float64)))
    return put_sum / call_sum if call_sum > 0 else math.nan


def max_pain(strikes: np.ndarray, ce_oi: np.ndarray, pe_oi: np.ndarray) -> float:
    """The settlement strike at which option writers pay the least to holders (OI-weighted)."""
    strikes = np.asarray(strikes, dtype=np.float64)
    ce = np.nan_to_num(np.asarray(ce_oi, dtype=np.float64))
    pe = np.nan_to_num(np.asarray(pe_oi, dtype=np.float64))
    if not len(strikes) or (ce.sum() + pe.sum()) <= 0:
        return math.nan
    # Writers' payout at each candidate settlement K = strikes[j] (strikes ascending), in O(n) with
    # prefix sums rather than the n x n matrix: calls below K pay sum(ce_i * (K - k_i)) =
    # K * CE(<j) - CEK(<j); puts above K pay sum(pe_i * (k_i - K)) = PEK(>j) - K * PE(>j).
    order = np.argsort(strikes, kind="stable")
    k, ce, pe = strikes[order], ce[order], pe[order]
    ce_below = np.cumsum(ce) - ce
    ce_k_below = np.cumsum(ce * k) - ce * k
    pe_above = pe[::-1].cumsum()[::-1] - pe
    pe_k_above = (pe * k)[::-1].cumsum()[::-1] - pe * k
    payout = (k * ce_below - ce_k_below) + (pe_k_above - k * pe_above)
    strikes = k
    return float(strikes[np.argmin(payout)])


def compute_chain_analytics(
    *,
    strikes: np.ndarray,
    ce_price: np.ndarray,
    pe_price: np.ndarray,
    ce_mid: np.ndarray | None = None,
    pe_mid: np.ndarray | None = None,
    ce_oi: np.ndarray,
    pe_oi: np.ndarray,
    ce_volume: np.ndarray,
    pe_volume: np.ndarray,
    spot: float,
    t: float,
    rate: float,
    with_greeks: bool = True,
) -> ChainAnalytics:
    """All analytics of one chain. `*_price` are the option prices IV is implied from (last prices);
    `*_mid` (optional) the quote mids used for parity. Missing values are NaN."""
    strikes = np.asarray(strikes, dtype=np.float64)
    ce_price = np.asarray(ce_price, dtype=np.float64)
    pe_price = np.asarray(pe_price, dtype=np.float64)
    forward = implied_forward(
        strikes,
        ce_mid if ce_mid is not None else ce_price,
        pe_mid if pe_mid is not None else pe_price,
        t=t,
        rate=rate,
        near=spot,
    )
    has_spot = spot is not None and math.isfinite(spot) and spot > 0
    if not math.isfinite(forward) and has_spot:
        forward = spot * math.exp(rate * max(t, 0.0))
    if not has_spot and math.isfinite(forward):
        spot = forward * math.exp(-rate * max(t, 0.0))
    elif not has_spot:
        spot = math.nan
    # ATM as traders (and the chain-subscribe admin) read it: the strike nearest the spot.
    reference = spot if math.isfinite(spot) else forward
    result_sides: dict[str, dict[str, np.ndarray]] = {"ce": {}, "pe": {}}
    n = len(strikes)
    if with_greeks and n and t > 0 and math.isfinite(spot) and math.isfinite(forward):
        div_yield = rate - math.log(forward / spot) / t
        prices = np.concatenate([ce_price, pe_price])
        strikes2 = np.concatenate([strikes, strikes])
        is_call = np.concatenate([np.ones(n, dtype=bool), np.zeros(n, dtype=bool)])
        with np.errstate(invalid="ignore", divide="ignore"):
            # One pass: the IV solve and the Greeks at it share their intermediates.
            solved = pricing.implied_volatility_and_greeks(prices, spot, strikes2, t, rate, div_yield, is_call)
            values = {name: np.array(solved[name], dtype=np.float64) for name in GREEK_NAMES}
            # A price at its no-arbitrage floor solves to IV 0: it says nothing about volatility (nor
            # about the Greeks at it).
            unknown = ~(values["iv"] > 0)
            for arr in values.values():
                arr[unknown] = np.nan
        for name, arr in values.items():
            result_sides["ce"][name] = arr[:n]
            result_sides["pe"][name] = arr[n:]
    else:
        for side in ("ce", "pe"):
            for name in GREEK_NAMES:
                result_sides[side][name] = np.full(n, np.nan)
    return ChainAnalytics(
        spot=float(spot),
        forward=float(forward),
        atm_strike=atm_strike(strikes, reference),
        pcr_oi=put_call_ratio(pe_oi, ce_oi),
        pcr_volume=put_call_ratio(pe_volume, ce_volume),
        max_pain=max_pain(strikes, ce_oi, pe_oi),
        time_to_expiry_years=float(t),
        ce=result_sides["ce"],
        pe=result_sides["pe"],
    )


class OIHistory:
    """A ring buffer of a chain's OI snapshots, one at most every `interval_s`, to answer
    "OI change against N minutes ago" without storing every tick."""

    def __init__(self, *, interval_s: float = 60.0, max_age_s: float = 3600.0) -> None:
        self.interval_s = interval_s
        self._snapshots: deque[tuple[float, np.ndarray, np.ndarray]] = deque(
            maxlen=max(2, int(max_age_s / interval_s) + 2)
        )

    def record(self, ts: float, ce_oi: np.ndarray, pe_oi: np.ndarray) -> bool:
        """Keep a copy if the last snapshot is at least `interval_s` old; True when kept."""
        if self._snapshots and ts - self._snapshots[-1][0] < self.interval_s:
            return False
        self._snapshots.append((ts, np.array(ce_oi, dtype=np.float64), np.array(pe_oi, dtype=np.float64)))
        return True

    def at_or_before(self, ts: float) -> tuple[float, np.ndarray, np.ndarray] | None:
        """The newest snapshot taken at or before `ts` (None if the buffer does not reach back)."""
        for snap in reversed(self._snapshots):
            if snap[0] <= ts:
                return snap
        return None

    def change_since(
        self, now: float, minutes: float, ce_oi: np.ndarray, pe_oi: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Current OI minus the OI `minutes` ago (NaN when the history does not go back that far)."""
        snap = self.at_or_before(now - minutes * 60.0)
        if snap is None:
            nan = np.full(len(ce_oi), np.nan)
            return nan, nan.copy()
        return np.asarray(ce_oi, dtype=np.float64) - snap[1], np.asarray(pe_oi, dtype=np.float64) - snap[2]


__all__ = [
    "ChainAnalytics",
    "OIHistory",
    "atm_strike",
    "compute_chain_analytics",
    "implied_forward",
    "max_pain",
    "put_call_ratio",
    "quote_mid",
]
