"""The option pricing engine: Black-Scholes-Merton prices, Greeks and implied volatility.

Pure numpy/scipy, no Django imports. Every function is vectorised: arguments broadcast against each
other (scalars, lists and arrays mix freely) and results are float arrays of the broadcast shape.

Conventions (what traders read on their screens):
- `t` in years (`time_to_expiry_years`), `rate` and `div_yield` continuously compounded, `vol` annual.
- `is_call` is a boolean (array): True for a call (CE), False for a put (PE).
- `greeks()` returns theta per calendar day (annual / 365), vega per one volatility point (x 0.01) and
  rho per one percentage point of rate (x 0.01).
- Black-76 on a forward `F` is the same call with `spot=F, div_yield=rate` (every output matches
  Black-76 except rho, which stays BSM's: spot and div_yield held fixed, not Black-76's -t*price).
- At or after expiry (t <= 0) the price is the payoff and the Greeks are their limits (delta a step,
  everything else 0); `implied_volatility` is NaN there.

`implied_volatility_and_greeks` does both in one pass (what chain analytics wants: IV from the
market price, then the Greeks at that IV), sharing the intermediate arrays; Greeks are NaN where the IV is.

`implied_volatility` solves on the normalised Black problem (Jaeckel's "Let's be rational" setting):
x = ln(F/K), s = vol*sqrt(t); an in-the-money option is mapped to its out-of-the-money twin via
put-call parity, so only b(x<=0, s) = e^(x/2) N(x/s + s/2) - e^(-x/2) N(x/s - s/2) is inverted. The
initial guess comes from a table of ln s over (|x|, ln(-ln(b/b_max))) interpolated bilinearly (built
once, lazily, by the same solver; asymptotic formulas outside it), and is refined by third-order
Householder steps (on ln b below the inflection point s_c = sqrt(2|x|), on b above it) inside a
per-element bracket with a bisection fallback, on the whole array at once; most options converge in
two steps. Accuracy: |IV error| <= 1e-6 wherever vega per point >= 1e-4 and the price recomputed from
the IV within 1e-8 (benchmarks/bench_greeks.py and tests/core/test_greeks.py check both).
"""

from __future__ import annotations

import functools
import math
from datetime import UTC, date, datetime, time, timedelta

import numpy as np
from numpy.typing import ArrayLike
from scipy.special import ndtr, ndtri

from core.calendar import EXPIRY_TIME as EXPIRY_TIME_IST
from core.calendar import IST, expiry_datetime

SECONDS_PER_YEAR = 365.0 * 86400.0
# 15:30 IST is 10:00 UTC (IST has no daylight saving).
_EXPIRY_OFFSET_S = 10 * 3600

_SQRT_2PI = math.sqrt(2.0 * math.pi)
_INV_SQRT_2PI = 1.0 / _SQRT_2PI
_LN_SQRT_2PI = math.log(_SQRT_2PI)
_TINY_S = 1e-300
_MAX_ITERATIONS = 60

__all__ = [
    "EXPIRY_TIME_IST",
    "IST",
    "bsm_price",
    "expiry_datetime",
    "expiry_epoch_seconds",
    "greeks",
    "implied_volatility",
    "implied_volatility_and_greeks",
    "time_to_expiry_years",
]


def _inputs(*numbers: object, is_call: object) -> tuple[list[np.ndarray], np.ndarray]:
    """Broadcast the numeric arguments and is_call together; floats and a bool array of one shape."""
    arrays = np.broadcast_arrays(*(np.asarray(a, dtype=np.float64) for a in numbers), np.asarray(is_call, dtype=bool))
    return [np.asarray(a, dtype=np.float64) for a in arrays[:-1]], np.asarray(arrays[-1], dtype=bool)


def _result(value: np.ndarray) -> np.ndarray:
    return np.asarray(value, dtype=np.float64)


def bsm_price(
    spot: ArrayLike,
    strike: ArrayLike,
    t: ArrayLike,
    rate: ArrayLike,
    div_yield: ArrayLike,
    vol: ArrayLike,
    is_call: ArrayLike,
) -> np.ndarray:
    """Black-Scholes-Merton price of European options; the payoff where t <= 0."""
    (spot, strike, t, rate, div_yield, vol), call = _inputs(spot, strike, t, rate, div_yield, vol, is_call=is_call)
    live = t > 0
    tt = np.where(live, t, 1.0)
    sqrt_t = np.sqrt(tt)
    s = np.maximum(vol * sqrt_t, _TINY_S)
    disc_spot = spot * np.exp(-div_yield * tt)
    disc_strike = strike * np.exp(-rate * tt)
    with np.errstate(divide="ignore", invalid="ignore"):
        d1 = (np.log(spot / strike) + (rate - div_yield) * tt) / s + 0.5 * s
    d2 = d1 - s
    sign = np.where(call, 1.0, -1.0)
    price = sign * (disc_spot * ndtr(sign * d1) - disc_strike * ndtr(sign * d2))
    payoff = np.maximum(sign * (spot - strike), 0.0)
    return _result(np.where(live, np.maximum(price, 0.0), payoff))


def _greeks_core(
    spot: np.ndarray,
    strike: np.ndarray,
    tt: np.ndarray,
    rate: np.ndarray,
    div_yield: np.ndarray,
    vol: np.ndarray,
    sign: np.ndarray,
    disc_spot: np.ndarray,
    disc_strike: np.ndarray,
    x: np.ndarray,
) -> dict[str, np.ndarray]:
    """Greeks of live options (t > 0) from shared pieces: discounted spot/strike and x = ln(F/K)."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        sqrt_t = np.sqrt(tt)
        s = np.maximum(vol * sqrt_t, _TINY_S)
        d1 = x / s + 0.5 * s
        d2 = d1 - s
        nd1 = ndtr(sign * d1)
        nd2 = ndtr(sign * d2)
        pdf1 = np.exp(-0.5 * d1 * d1) * _INV_SQRT_2PI
        spot_pdf = disc_spot * pdf1
        strike_nd2 = disc_strike * nd2
        spot_nd1 = disc_spot * nd1
        gamma = spot_pdf / (spot * spot * s)
        return {
            "price": np.maximum(sign * (spot_nd1 - strike_nd2), 0.0),
            "delta": sign * spot_nd1 / spot,
            "gamma": np.where(np.isfinite(gamma) | np.isnan(vol), gamma, 0.0),
            "theta": (-spot_pdf * vol / (2.0 * sqrt_t) + sign * (div_yield * spot_nd1 - rate * strike_nd2)) / 365.0,
            "vega": spot_pdf * sqrt_t * 0.01,
            "rho": sign * strike_nd2 * tt * 0.01,
        }


def greeks(
    spot: ArrayLike,
    strike: ArrayLike,
    t: ArrayLike,
    rate: ArrayLike,
    div_yield: ArrayLike,
    vol: ArrayLike,
    is_call: ArrayLike,
) -> dict[str, np.ndarray]:
    """Price and Greeks: keys price, delta, gamma, theta (per day), vega (per vol point), rho (per %)."""
    (spot, strike, t, rate, div_yield, vol), call = _inputs(spot, strike, t, rate, div_yield, vol, is_call=is_call)
    live = t > 0
    all_live = bool(live.all())
    tt = t if all_live else np.where(live, t, 1.0)
    sign = np.where(call, 1.0, -1.0)
    disc_spot = spot * np.exp(-div_yield * tt)
    disc_strike = strike * np.exp(-rate * tt)
    with np.errstate(divide="ignore", invalid="ignore"):
        x = np.log(spot / strike) + (rate - div_yield) * tt
    out = _greeks_core(spot, strike, tt, rate, div_yield, vol, sign, disc_spot, disc_strike, x)
    if all_live:
        return {k: _result(v) for k, v in out.items()}
    payoff = np.maximum(sign * (spot - strike), 0.0)
    expired_delta = np.where(call, (spot > strike).astype(np.float64), -(spot < strike).astype(np.float64))
    expired = {"price": payoff, "delta": expired_delta}
    return {k: _result(np.where(live, v, expired.get(k, 0.0))) for k, v in out.items()}


def _normalised_otm_call(x: np.ndarray, s: np.ndarray, ex_half: np.ndarray, ex_neg_half: np.ndarray) -> np.ndarray:
    """b(x, s) for x <= 0; `ex_half` = e^(x/2), `ex_neg_half` = e^(-x/2)."""
    h = x / s
    b: np.ndarray = ex_half * ndtr(h + 0.5 * s) - ex_neg_half * ndtr(h - 0.5 * s)
    return b


def _analytic_guess(x: np.ndarray, beta: np.ndarray, ex_half: np.ndarray, ex_neg_half: np.ndarray) -> np.ndarray:
    """A rough s for b(x, s) = beta from the small-s and large-s asymptotics (used outside the table)."""
    ax = -x
    s_c = np.sqrt(2.0 * ax)
    with np.errstate(all="ignore"):
        b_c = np.where(s_c > 0, _normalised_otm_call(x, np.maximum(s_c, _TINY_S), ex_half, ex_neg_half), 0.0)
        # Below the inflection point: ln b ~ -x^2/(2 s^2) - s^2/8 + 3 ln s - 2 ln|x| - ln sqrt(2 pi) (Mills ratio).
        ln_beta = np.log(beta)
        s_low = ax / np.sqrt(np.maximum(-2.0 * ln_beta, 1e-300))
        for _ in range(2):
            rhs = -ln_beta - _LN_SQRT_2PI + 3.0 * np.log(s_low) - 2.0 * np.log(ax) - 0.125 * s_low * s_low
            s_low = ax / np.sqrt(2.0 * np.maximum(rhs, 1e-300))
        # Above it: b_max - b ~ (e^(x/2) + e^(-x/2)) N(-s/2), exact at the money.
        s_high = -2.0 * ndtri(np.clip((ex_half - beta) / (ex_half + ex_neg_half), 1e-300, 0.5))
    s_low = np.where(np.isfinite(s_low) & (s_low > 0), np.minimum(s_low, s_c), 0.5 * s_c)
    s_high = np.where(np.isfinite(s_high), np.maximum(s_high, s_c), s_c + 1.0)
    return np.where(beta < b_c, s_low, s_high)


# The initial-guess table: ln s over a = |x| (square-root spaced, finer near the money) and
# u = ln(-ln(beta / b_max)), where ln s is smooth (linear in u far out of the money, sqrt-like at the money).
_TABLE_A_MAX = 3.0
_TABLE_U_MIN = -6.0
_TABLE_U_MAX = 6.5
_TABLE_NA = 129
_TABLE_NU = 513


@functools.cache
def _guess_table() -> np.ndarray:
    a = _TABLE_A_MAX * np.linspace(0.0, 1.0, _TABLE_NA) ** 2
    u = np.linspace(_TABLE_U_MIN, _TABLE_U_MAX, _TABLE_NU)
    aa, uu = np.meshgrid(a, u, indexing="ij")
    x = -aa.ravel()
    beta = np.exp(-np.exp(uu.ravel())) * np.exp(0.5 * x)
    eh, enh = np.exp(0.5 * x), np.exp(-0.5 * x)
    s = _householder(x, beta, _analytic_guess(x, beta, eh, enh), eh, enh, tolerance=1e-14)
    with np.errstate(divide="ignore"):
        ln_s = np.log(s)
    # At the money with time value below double precision b cannot be resolved; use b ~ s / sqrt(2 pi).
    ln_s = np.where(np.isfinite(ln_s), ln_s, np.log(beta * _SQRT_2PI))
    table = ln_s.reshape(_TABLE_NA, _TABLE_NU)
    table.flags.writeable = False
    return table


def _table_guess(x: np.ndarray, beta: np.ndarray, ex_half: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bilinear interpolation in the guess table; second value marks the elements the table covers."""
    table = _guess_table()
    with np.errstate(all="ignore"):
        fi = np.sqrt(-x / _TABLE_A_MAX) * (_TABLE_NA - 1)
        fj = (np.log(-np.log(beta / ex_half)) - _TABLE_U_MIN) * ((_TABLE_NU - 1) / (_TABLE_U_MAX - _TABLE_U_MIN))
    inside = (fi < _TABLE_NA - 1) & (fj >= 0) & (fj < _TABLE_NU - 1)
    fi = np.where(inside, fi, 0.0)
    fj = np.where(inside, fj, 0.0)
    i = fi.astype(np.intp)
    j = fj.astype(np.intp)
    wi = fi - i
    wj = fj - j
    flat = table.ravel()
    k = i * _TABLE_NU + j
    v00, v01, v10, v11 = flat[k], flat[k + 1], flat[k + _TABLE_NU], flat[k + _TABLE_NU + 1]
    ln_s = v00 + wj * (v01 - v00) + wi * (v10 - v00 + wj * (v11 - v10 - v01 + v00))
    return np.exp(ln_s), inside


def _householder(
    x: np.ndarray,
    beta: np.ndarray,
    s: np.ndarray,
    ex_half: np.ndarray,
    ex_neg_half: np.ndarray,
    *,
    tolerance: float = 1e-9,
) -> np.ndarray:
    """Refine s until b(x, s) = beta: third-order Householder steps inside a shrinking bracket.

    Below the inflection point s_c = sqrt(2|x|) the steps work on ln b (close to linear in 1/s^2
    there), above it on b itself. A step leaving the bracket is replaced by bisection. An element is
    done once its step is below `tolerance` relative to s (the error after a third-order step is of
    the order of the step cubed) or its bracket has collapsed.
    """
    out = s.copy()
    idx = np.arange(x.size)
    lo = np.zeros_like(s)
    hi = np.full_like(s, np.inf)
    x2 = x * x
    with np.errstate(all="ignore"):
        ln_beta = np.log(beta)
        for _ in range(_MAX_ITERATIONS):
            h = x / s
            b = ex_half * ndtr(h + 0.5 * s) - ex_neg_half * ndtr(h - 0.5 * s)
            too_low = b < beta
            lo = np.where(too_low, s, lo)
            hi = np.where(too_low, hi, s)
            s2 = s * s
            log_form = s2 < -2.0 * x
            b1 = np.exp(-0.5 * h * h - 0.125 * s2) * _INV_SQRT_2PI  # first derivative of b in s
            h2 = x2 / (s2 * s) - 0.25 * s  # second derivative / first
            h3 = h2 * h2 - 3.0 * x2 / (s2 * s2) - 0.25  # third derivative / first
            if log_form.any():
                q = b1 / b
                nu = np.where(log_form, (ln_beta - np.log(b)) / q, (beta - b) / b1)
                g2 = np.where(log_form, h2 - q, h2)
                g3 = np.where(log_form, h3 - 3.0 * q * h2 + 2.0 * q * q, h3)
            else:
                nu, g2, g3 = (beta - b) / b1, h2, h3
            step = nu * (1.0 + 0.5 * g2 * nu) / (1.0 + g2 * nu + g3 * nu * nu / 6.0)
            s_new = s + step
            exact = b == beta
            converged = (np.abs(step) <= tolerance * s) | exact
            bad = ~((s_new > lo) & (s_new < hi)) & ~converged
            if bad.any():
                bisect = np.where(np.isfinite(hi), 0.5 * (lo + hi), 2.0 * s)
                s_new = np.where(bad, bisect, s_new)
            s_new = np.where(exact, s, s_new)
            done = converged | (hi - lo <= 1e-15 * hi) & np.isfinite(hi)
            out[idx] = s_new
            if done.all():
                break
            if done.any():
                keep = ~done
                idx, x, x2, beta, ln_beta = idx[keep], x[keep], x2[keep], beta[keep], ln_beta[keep]
                ex_half, ex_neg_half = ex_half[keep], ex_neg_half[keep]
                lo, hi, s_new = lo[keep], hi[keep], s_new[keep]
            s = s_new
    return out


def _solve_normalised(x: np.ndarray, beta: np.ndarray) -> np.ndarray:
    """Invert b(x, s) = beta for s, elementwise; x <= 0 and 0 < beta < e^(x/2)."""
    ex_half = np.exp(0.5 * x)
    ex_neg_half = np.exp(-0.5 * x)
    s, inside = _table_guess(x, beta, ex_half)
    if not inside.all():
        out = ~inside
        s[out] = _analytic_guess(x[out], beta[out], ex_half[out], ex_neg_half[out])
    return _householder(x, beta, s, ex_half, ex_neg_half)


def _implied_volatility_parts(
    price: ArrayLike,
    spot: ArrayLike,
    strike: ArrayLike,
    t: ArrayLike,
    rate: ArrayLike,
    div_yield: ArrayLike,
    is_call: ArrayLike,
) -> tuple[np.ndarray, tuple[int, ...], tuple[np.ndarray, ...]]:
    (price, spot, strike, t, rate, div_yield), call = _inputs(price, spot, strike, t, rate, div_yield, is_call=is_call)
    shape = spot.shape
    price, spot, strike, t, rate, div_yield, call = (a.ravel() for a in (price, spot, strike, t, rate, div_yield, call))
    result = np.full(price.shape, np.nan)
    with np.errstate(all="ignore"):
        ok = np.isfinite(price) & np.isfinite(rate) & np.isfinite(div_yield) & (t > 0) & (spot > 0) & (strike > 0)
        ok &= (t < np.inf) & (spot < np.inf) & (strike < np.inf)
        tt = np.where(ok, t, 1.0)
        disc_spot = spot * np.exp(-div_yield * tt)
        disc_strike = strike * np.exp(-rate * tt)
        x = np.log(disc_spot / disc_strike)  # ln(F/K)
        sign = np.where(call, 1.0, -1.0)
        intrinsic = np.maximum(sign * (disc_spot - disc_strike), 0.0)
        beta = (price - intrinsic) / np.sqrt(disc_spot * disc_strike)  # time value over D sqrt(F K)
        xm = -np.abs(x)
        solvable = ok & (beta > 0) & (beta < np.exp(0.5 * xm))
        result[ok & (beta == 0)] = 0.0
        if solvable.all():
            result = _solve_normalised(xm, beta) / np.sqrt(tt)
        elif solvable.any():
            result[solvable] = _solve_normalised(xm[solvable], beta[solvable]) / np.sqrt(tt[solvable])
    parts = (spot, strike, tt, rate, div_yield, sign, disc_spot, disc_strike, x)
    return result, shape, parts


def implied_volatility(
    price: ArrayLike,
    spot: ArrayLike,
    strike: ArrayLike,
    t: ArrayLike,
    rate: ArrayLike,
    div_yield: ArrayLike,
    is_call: ArrayLike,
) -> np.ndarray:
    """Annual volatility that reprices each option; NaN outside the no-arbitrage bounds or where t <= 0.

    Never raises for bad numbers: non-finite or non-positive inputs give NaN. A price exactly at the
    lower bound (the discounted intrinsic value) gives 0.
    """
    result, shape, _parts = _implied_volatility_parts(price, spot, strike, t, rate, div_yield, is_call)
    return result.reshape(shape)


def implied_volatility_and_greeks(
    price: ArrayLike,
    spot: ArrayLike,
    strike: ArrayLike,
    t: ArrayLike,
    rate: ArrayLike,
    div_yield: ArrayLike,
    is_call: ArrayLike,
) -> dict[str, np.ndarray]:
    """`implied_volatility` and `greeks` at it in one pass (shared intermediates): keys iv + greeks' keys.

    Where the IV is NaN every Greek is NaN too.
    """
    iv, shape, parts = _implied_volatility_parts(price, spot, strike, t, rate, div_yield, is_call)
    spot, strike, tt, rate, div_yield, sign, disc_spot, disc_strike, x = parts
    out = _greeks_core(spot, strike, tt, rate, div_yield, iv, sign, disc_spot, disc_strike, x)
    out["iv"] = iv
    return {k: _result(v).reshape(shape) for k, v in out.items()}


def time_to_expiry_years(expiry: date | ArrayLike, now: datetime) -> float | np.ndarray:
    """Years (of 365 days) from `now` (aware) to 15:30 IST on `expiry`; 0 once expired.

    `expiry` is a date, or an array of dates / datetime64 values (the date part is used).
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    now_s = now.timestamp()
    if isinstance(expiry, datetime):
        expiry = expiry.date()
    if isinstance(expiry, date):
        expires_at = datetime.combine(expiry, time(10, 0), tzinfo=UTC).timestamp()
        return max(expires_at - now_s, 0.0) / SECONDS_PER_YEAR
    days = np.asarray(expiry).astype("datetime64[D]")
    expiries_at = days.astype("datetime64[s]").astype(np.int64).astype(np.float64) + _EXPIRY_OFFSET_S
    return np.maximum(expiries_at - now_s, 0.0) / SECONDS_PER_YEAR


def expiry_epoch_seconds(expiry: date) -> float:
    """Epoch seconds of 15:30 IST on `expiry`."""
    return (datetime.combine(expiry, time(0, 0), tzinfo=UTC) + timedelta(seconds=_EXPIRY_OFFSET_S)).timestamp()
