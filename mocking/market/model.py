"""The one model behind every mock price: the underlying's path and the implied-volatility surface.

Underlyings follow a GBM whose variance follows the intraday U-shape (busier at the open and close)
with occasional jumps; options are priced by Black-Scholes-Merton on the same spot with an IV surface
(skew and smile in normalised moneyness, richer short-dated vol for the term structure). Plain numpy.
"""

from __future__ import annotations

import math

import numpy as np

from core.calendar import SESSION_SECONDS
from core.greeks import bsm_price
from mocking.market.spec import KIND_CE, KIND_FUT, KIND_PE, UnderlyingProfile

TRADING_DAYS_PER_YEAR = 252.0
TRADING_SECONDS_PER_YEAR = TRADING_DAYS_PER_YEAR * SESSION_SECONDS
# A long gap (a restart, a new session) moves the price by at most one trading day's worth of variance.
MAX_STEP_SECONDS = float(SESSION_SECONDS)


def intraday_variance_weight(session_fraction: np.ndarray | float) -> np.ndarray:
    """Relative variance rate through the session (mean 1 over it): high at the open, dip at midday."""
    u = np.clip(np.asarray(session_fraction, dtype=np.float64), 0.0, 1.0)
    raw = 0.55 + 1.6 * np.exp(-u / 0.06) + 0.9 * np.exp(-(1.0 - u) / 0.08)
    return raw / _SEASONALITY_MEAN


_u = np.linspace(0.0, 1.0, 10_001)
_SEASONALITY_MEAN = float(np.mean(0.55 + 1.6 * np.exp(-_u / 0.06) + 0.9 * np.exp(-(1.0 - _u) / 0.08)))


def gbm_log_return(
    rng: np.random.Generator, profile: UnderlyingProfile, dt_seconds: float, session_fraction: float, vol_mult: float
) -> float:
    """One step of the log price: diffusion with intraday seasonality plus Poisson jumps."""
    dt = min(max(dt_seconds, 0.0), MAX_STEP_SECONDS)
    if dt == 0.0:
        return 0.0
    sigma = profile.vol * vol_mult
    var = sigma * sigma * float(intraday_variance_weight(session_fraction)) * dt / TRADING_SECONDS_PER_YEAR
    ret = -0.5 * var + math.sqrt(var) * float(rng.standard_normal())
    jumps = int(rng.poisson(profile.jumps_per_day * dt / SESSION_SECONDS))
    if jumps:
        ret += float(rng.normal(-0.2 * profile.jump_vol, profile.jump_vol, jumps).sum())
    return ret


def surface_vol(
    log_moneyness: np.ndarray,
    t_years: np.ndarray,
    base_vol: np.ndarray | float,
    skew: np.ndarray | float,
    smile: np.ndarray | float,
) -> np.ndarray:
    """Implied volatility at ln(K/F) and expiry: term structure on the ATM level, skew and smile around it.

    Short-dated options carry more vol (weekly event premium); the smile is a quadratic in the moneyness
    normalised by atm*sqrt(T), so it has the same shape in standard deviations for every expiry.
    """
    t = np.maximum(np.asarray(t_years, dtype=np.float64), 1.0 / (365.0 * 24.0))
    base = np.asarray(base_vol, dtype=np.float64)
    atm = base * (1.0 + 0.22 * np.exp(-t / 0.04) + 0.06 * np.exp(-t / 0.35))
    m = np.clip(np.asarray(log_moneyness, dtype=np.float64) / (atm * np.sqrt(t)), -8.0, 8.0)
    vol = atm * (1.0 + skew * m + smile * m * m)
    return np.clip(vol, 0.5 * atm, 4.0 * atm)


def vol_multiplier(log_return_since_open: float) -> float:
    """Vol rises when the market falls (leverage effect), bounded."""
    return float(np.clip(math.exp(-2.5 * log_return_since_open), 0.7, 1.6))


def option_model_prices(
    *,
    kind: np.ndarray,
    spot: np.ndarray,
    strike: np.ndarray,
    t_years: np.ndarray,
    rate: float,
    div: np.ndarray,
    base_vol: np.ndarray,
    skew: np.ndarray,
    smile: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per instrument: the model price, the implied volatility (NaN for non-options) and the normalised
    moneyness ln(K/F) / (atm vol sqrt(T)) (0 for non-options).

    An option is priced by BSM at its point on the surface, a future at the forward, anything else at spot.
    """
    forward = spot * np.exp((rate - div) * t_years)
    is_option = (kind == KIND_CE) | (kind == KIND_PE)
    with np.errstate(divide="ignore", invalid="ignore"):
        k = np.where(is_option, np.log(strike / forward), 0.0)
    vol = surface_vol(k, t_years, base_vol, skew, smile)
    theo = np.where(kind == KIND_FUT, forward, spot)
    if is_option.any():
        opt = np.flatnonzero(is_option)
        theo[opt] = bsm_price(spot[opt], strike[opt], t_years[opt], rate, div[opt], vol[opt], kind[opt] == KIND_CE)
    atm = surface_vol(np.zeros_like(t_years), t_years, base_vol, 0.0, 0.0)
    m = np.where(is_option, k / (atm * np.sqrt(np.maximum(t_years, 1e-6))), 0.0)
    return theo, np.where(is_option, vol, np.nan), m
