"""Option-chain analytics on whole arrays: forward, ATM, IV and Greeks, PCR, max pain, OI change,
gamma exposure, OI build-up, straddle and expected move, ATM IV and its percentile/rank.

Pure numpy on top of `core.greeks` (no Django). A chain is one (underlying, expiry): a sorted
array of strikes with a call and a put per strike (either side may be missing: its values are NaN).
Everything here takes and returns arrays so one call prices the whole chain at once.

The forward comes from put-call parity, F = K + e^{rT}(C - P), at the strikes nearest the spot
(median of a few, using mids when both quotes are there, else last prices); without a usable pair
it falls back to spot·e^{rT}. IV and Greeks use the spot with the dividend yield the forward
implies, q = r - ln(F/S)/T, so index futures basis and dividends are priced in, and delta stays a
sensitivity to the spot traders watch. The ATM strike is the strike nearest that forward (the
synthetic future), not the spot: parity says that is where calls and puts cost the same.

Gamma exposure (GEX) uses the dealer-short convention: customers buy calls and sell puts, so dealers
are long call gamma and short put gamma: per strike, call GEX = +gamma x OI x S^2 x 0.01 and put
GEX = -gamma x OI x S^2 x 0.01 (rupees of delta the dealers must trade for a 1 % move of the spot).
Kite reports an option's OI in units (contracts x lot size), so "OI x lot size" is OI as it comes.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from core import greeks as pricing
from core.strikes import nearest_strike as atm_strike

PARITY_STRIKES = 3
GREEK_NAMES = ("iv", "delta", "gamma", "theta", "vega", "rho")
# OI build-up codes (per side per strike, over the OI window), int8; on the wire each code is the tag
# at its index in streaming.contract.BUILDUP_TAGS, and NO_BUILDUP (no history yet) is null.
NO_BUILDUP, NEUTRAL, LONG_BUILDUP, SHORT_BUILDUP, SHORT_COVERING, LONG_UNWINDING = -1, 0, 1, 2, 3, 4
# A move smaller than these (relative to the window's start) is noise: the side is neutral.
BUILDUP_PRICE_THRESHOLD = 0.01
BUILDUP_OI_THRESHOLD = 0.005
# The zero-gamma search: net GEX recomputed at hypothetical spots within this share of the spot.
ZERO_GAMMA_RANGE = 0.08
ZERO_GAMMA_POINTS = 81
IV_BUCKETS = ("weekly", "monthly")


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
    ce: dict[str, np.ndarray] = field(default_factory=dict)  # iv, delta, gamma, theta, vega, rho, gex
    pe: dict[str, np.ndarray] = field(default_factory=dict)
    atm_iv: float = math.nan  # interpolated at the forward from the out-of-the-money sides
    div_yield: float = math.nan  # the yield the forward implies (for the zero-gamma search)
    net_gex: float = math.nan
    gex_call_wall: float = math.nan  # strike with the largest positive net GEX
    gex_put_wall: float = math.nan  # strike with the most negative net GEX


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
    # ATM from the synthetic forward (parity's at-the-money), the spot only when no forward exists.
    reference = forward if math.isfinite(forward) else spot
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
    ce_gex, pe_gex = gamma_exposure(
        result_sides["ce"]["gamma"], ce_oi, result_sides["pe"]["gamma"], pe_oi, spot=float(spot)
    )
    result_sides["ce"]["gex"], result_sides["pe"]["gex"] = ce_gex, pe_gex
    net_by_strike = np.nan_to_num(ce_gex) + np.nan_to_num(pe_gex)
    call_wall, put_wall = gex_walls(strikes, net_by_strike)
    known_gex = np.isfinite(ce_gex).any() or np.isfinite(pe_gex).any()
    div_yield = rate - math.log(forward / spot) / t if t > 0 and forward > 0 and spot > 0 else math.nan
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
        atm_iv=atm_iv_at_forward(strikes, result_sides["ce"]["iv"], result_sides["pe"]["iv"], float(forward)),
        div_yield=div_yield,
        net_gex=float(net_by_strike.sum()) if known_gex else math.nan,
        gex_call_wall=call_wall,
        gex_put_wall=put_wall,
    )


def gamma_exposure(
    ce_gamma: np.ndarray, ce_oi: np.ndarray, pe_gamma: np.ndarray, pe_oi: np.ndarray, *, spot: float
) -> tuple[np.ndarray, np.ndarray]:
    """Per-strike call and put GEX (see the module docstring): calls positive, puts negative, NaN
    where the gamma or the OI is unknown."""
    scale = spot * spot * 0.01
    ce = np.asarray(ce_gamma, dtype=np.float64) * np.asarray(ce_oi, dtype=np.float64) * scale
    pe = -np.asarray(pe_gamma, dtype=np.float64) * np.asarray(pe_oi, dtype=np.float64) * scale
    return ce, pe


def gex_walls(strikes: np.ndarray, net_gex: np.ndarray) -> tuple[float, float]:
    """The strikes with the largest positive and the most negative net GEX (NaN when there is none)."""
    net = np.nan_to_num(np.asarray(net_gex, dtype=np.float64))
    if not len(net):
        return math.nan, math.nan
    top, bottom = int(np.argmax(net)), int(np.argmin(net))
    return (
        float(strikes[top]) if net[top] > 0 else math.nan,
        float(strikes[bottom]) if net[bottom] < 0 else math.nan,
    )


def net_gex_profile(
    levels: np.ndarray,
    strikes: np.ndarray,
    ce_iv: np.ndarray,
    ce_oi: np.ndarray,
    pe_iv: np.ndarray,
    pe_oi: np.ndarray,
    *,
    t: float,
    rate: float,
    div_yield: float,
) -> np.ndarray:
    """Net GEX of the chain if the spot stood at each of `levels` (each option keeping its IV and OI)."""
    k = np.concatenate([strikes, strikes])
    iv = np.concatenate([ce_iv, pe_iv])
    weight = np.concatenate([np.asarray(ce_oi, dtype=np.float64), -np.asarray(pe_oi, dtype=np.float64)])
    use = np.isfinite(iv) & (iv > 0) & np.isfinite(weight) & (weight != 0)
    k, iv, weight = k[use], iv[use], weight[use]
    levels = np.asarray(levels, dtype=np.float64)[:, None]
    if t <= 0 or not len(k):
        return np.zeros(len(levels))
    s = iv * math.sqrt(t)
    d1 = (np.log(levels / k) + (rate - div_yield) * t) / s + 0.5 * s
    gamma = math.exp(-div_yield * t) * np.exp(-0.5 * d1 * d1) / (math.sqrt(2.0 * math.pi) * levels * s)
    # gamma x OI x S^2 x 0.01 at S = the level: one factor of S cancels the 1/S in gamma.
    return (gamma * weight).sum(axis=1) * levels[:, 0] ** 2 * 0.01


def zero_gamma_level(
    strikes: np.ndarray,
    ce_iv: np.ndarray,
    ce_oi: np.ndarray,
    pe_iv: np.ndarray,
    pe_oi: np.ndarray,
    *,
    spot: float,
    t: float,
    rate: float,
    div_yield: float,
) -> float:
    """The gamma flip: the spot at which the chain's net GEX changes sign, the crossing nearest the
    spot within +-ZERO_GAMMA_RANGE (linear between grid points); NaN when there is none."""
    if not (math.isfinite(spot) and spot > 0 and t > 0 and math.isfinite(div_yield)):
        return math.nan
    levels = spot * (1.0 + np.linspace(-ZERO_GAMMA_RANGE, ZERO_GAMMA_RANGE, ZERO_GAMMA_POINTS))
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        net = net_gex_profile(levels, strikes, ce_iv, ce_oi, pe_iv, pe_oi, t=t, rate=rate, div_yield=div_yield)
    sign = np.sign(net)
    crossings = np.flatnonzero((sign[:-1] * sign[1:] < 0) | ((sign[:-1] != 0) & (sign[1:] == 0)))
    if not len(crossings):
        return math.nan
    i = int(crossings[np.argmin(np.abs(levels[crossings] - spot))])
    a, b = net[i], net[i + 1]
    return float(levels[i] + (levels[i + 1] - levels[i]) * a / (a - b))


def oi_buildup(
    price_now: np.ndarray,
    price_then: np.ndarray,
    oi_now: np.ndarray,
    oi_then: np.ndarray,
    *,
    price_threshold: float = BUILDUP_PRICE_THRESHOLD,
    oi_threshold: float = BUILDUP_OI_THRESHOLD,
) -> np.ndarray:
    """Build-up codes (int8): price up & OI up = long build-up, price down & OI up = short build-up,
    price up & OI down = short covering, price down & OI down = long unwinding; a relative move
    below its threshold (of either) is neutral; NO_BUILDUP where the window's start is unknown."""
    p1, p0, o1, o0 = (np.asarray(a, dtype=np.float64) for a in (price_now, price_then, oi_now, oi_then))
    known = np.isfinite(p1) & np.isfinite(p0) & (p0 > 0) & np.isfinite(o1) & np.isfinite(o0) & (o0 > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        dp = np.where(known, (p1 - p0) / p0, 0.0)
        do = np.where(known, (o1 - o0) / o0, 0.0)
    up, down = dp >= price_threshold, dp <= -price_threshold
    more, less = do >= oi_threshold, do <= -oi_threshold
    codes = np.full(len(p1), NEUTRAL, dtype=np.int8)
    codes[up & more] = LONG_BUILDUP
    codes[down & more] = SHORT_BUILDUP
    codes[up & less] = SHORT_COVERING
    codes[down & less] = LONG_UNWINDING
    codes[~known] = NO_BUILDUP
    return codes


def atm_iv_at_forward(strikes: np.ndarray, ce_iv: np.ndarray, pe_iv: np.ndarray, forward: float) -> float:
    """ATM IV: linear in strike between the out-of-the-money IVs either side of the forward (puts at
    strikes at or below it, calls at or above it); at a strike equal to the forward, the mean of both;
    NaN unless both sides have one."""
    strikes = np.asarray(strikes, dtype=np.float64)
    if not len(strikes) or not math.isfinite(forward):
        return math.nan
    ce_iv, pe_iv = np.asarray(ce_iv, dtype=np.float64), np.asarray(pe_iv, dtype=np.float64)
    below = np.flatnonzero((strikes <= forward) & np.isfinite(pe_iv) & (pe_iv > 0))
    above = np.flatnonzero((strikes >= forward) & np.isfinite(ce_iv) & (ce_iv > 0))
    if not len(below) or not len(above):
        return math.nan  # the forward outside the quoted strikes: no interpolation, no extrapolation
    lo, hi = below[-1], above[0]
    k0, k1, v0, v1 = strikes[lo], strikes[hi], pe_iv[lo], ce_iv[hi]
    if k1 == k0:
        return float((v0 + v1) / 2.0)
    return float(v0 + (v1 - v0) * (forward - k0) / (k1 - k0))


def straddle_premium(strikes: np.ndarray, ce_price: np.ndarray, pe_price: np.ndarray, atm: float) -> float:
    """Call + put at the ATM strike (NaN unless both are known)."""
    index = np.flatnonzero(np.asarray(strikes) == atm)
    if not len(index):
        return math.nan
    n = int(index[0])
    value = float(ce_price[n]) + float(pe_price[n])
    return value if math.isfinite(value) and value > 0 else math.nan


def expected_moves(*, forward: float, straddle: float, atm_iv: float, t: float) -> tuple[float, float]:
    """Expected move to expiry, two ways: the ATM straddle's premium (the break-evens of buying it:
    what the market charges for the move) and one standard deviation from the ATM IV, F x IV x sqrt(T)."""
    iv_move = forward * atm_iv * math.sqrt(t) if t > 0 and math.isfinite(atm_iv) else math.nan
    return straddle, iv_move


def iv_percentile(iv: float, closes: np.ndarray) -> float:
    """IVP: the share (in %) of past sessions' closing ATM IVs below `iv` (NaN without history)."""
    closes = np.asarray(closes, dtype=np.float64)
    if not len(closes) or not math.isfinite(iv):
        return math.nan
    return 100.0 * float(np.count_nonzero(closes < iv)) / len(closes)


def iv_rank(iv: float, closes: np.ndarray) -> float:
    """IVR: where `iv` sits (in %) between the lowest and highest closing ATM IV of the past sessions
    and today's (so 0 to 100); NaN without history, or when the range is empty."""
    closes = np.asarray(closes, dtype=np.float64)
    if not len(closes) or not math.isfinite(iv):
        return math.nan
    low, high = min(float(closes.min()), iv), max(float(closes.max()), iv)
    return 100.0 * (iv - low) / (high - low) if high > low else math.nan


def expiry_buckets(expiries: list[dt.date]) -> dict[dt.date, tuple[str, ...]]:
    """Which IV-history buckets each expiry of one underlying stands for: the nearest expiry is the
    "weekly", the nearest monthly (the last expiry of its month: a week later is another month) the
    "monthly"; one expiry may be both (the monthly week, or an underlying without weeklies)."""
    ordered = sorted(expiries)
    buckets: dict[dt.date, list[str]] = {e: [] for e in ordered}
    if ordered:
        buckets[ordered[0]].append("weekly")
        monthly = next((e for e in ordered if (e + dt.timedelta(days=7)).month != e.month), None)
        if monthly is not None:
            buckets[monthly].append("monthly")
    return {e: tuple(b) for e, b in buckets.items()}


class OIHistory:
    """A ring buffer of a chain's OI (and last prices) snapshots, one at most every `interval_s`, to
    answer "OI change against N minutes ago" and the OI build-up without storing every tick."""

    def __init__(self, *, interval_s: float = 60.0, max_age_s: float = 3600.0) -> None:
        self.interval_s = interval_s
        self._snapshots: deque[tuple[float, np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = deque(
            maxlen=max(2, int(max_age_s / interval_s) + 2)
        )

    def record(
        self,
        ts: float,
        ce_oi: np.ndarray,
        pe_oi: np.ndarray,
        ce_price: np.ndarray | None = None,
        pe_price: np.ndarray | None = None,
    ) -> bool:
        """Keep a copy if the last snapshot is at least `interval_s` old; True when kept."""
        if self._snapshots and ts - self._snapshots[-1][0] < self.interval_s:
            return False
        nan = np.full(len(ce_oi), np.nan)
        self._snapshots.append(
            (
                ts,
                np.array(ce_oi, dtype=np.float64),
                np.array(pe_oi, dtype=np.float64),
                nan if ce_price is None else np.array(ce_price, dtype=np.float64),
                nan if pe_price is None else np.array(pe_price, dtype=np.float64),
            )
        )
        return True

    def at_or_before(self, ts: float) -> tuple[float, np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
        """The newest snapshot (ts, ce_oi, pe_oi, ce_price, pe_price) taken at or before `ts` (None
        if the buffer does not reach back)."""
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
    "atm_iv_at_forward",
    "atm_strike",
    "compute_chain_analytics",
    "expected_moves",
    "expiry_buckets",
    "gamma_exposure",
    "gex_walls",
    "implied_forward",
    "iv_percentile",
    "iv_rank",
    "max_pain",
    "net_gex_profile",
    "oi_buildup",
    "put_call_ratio",
    "quote_mid",
    "straddle_premium",
    "zero_gamma_level",
]
