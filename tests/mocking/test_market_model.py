"""The model under the mock market: intraday seasonality, jumps and the implied-volatility surface."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from core.calendar import SESSION_SECONDS
from mocking.market.model import TRADING_SECONDS_PER_YEAR, gbm_log_return, intraday_variance_weight, surface_vol
from mocking.market.spec import KNOWN_UNDERLYINGS

NIFTY = KNOWN_UNDERLYINGS["NIFTY"]


def test_seasonality_is_a_u_shape_with_mean_one():
    u = np.linspace(0, 1, 2001)
    w = intraday_variance_weight(u)
    assert abs(w.mean() - 1.0) < 0.01
    midday = intraday_variance_weight(0.5)
    assert intraday_variance_weight(0.0) > 2 * midday and intraday_variance_weight(1.0) > 1.5 * midday


def test_the_path_is_busier_at_the_open_and_close_than_at_midday():
    profile = replace(NIFTY, jumps_per_day=0.0)
    rng = np.random.default_rng(0)

    def realised_var(fraction: float) -> float:
        return float(np.mean([gbm_log_return(rng, profile, 10.0, fraction, 1.0) ** 2 for _ in range(4000)]))

    expected_mid = profile.vol**2 * float(intraday_variance_weight(0.5)) * 10.0 / TRADING_SECONDS_PER_YEAR
    assert abs(realised_var(0.5) / expected_mid - 1) < 0.1
    assert realised_var(0.01) > 2 * realised_var(0.5)
    assert realised_var(0.99) > 1.5 * realised_var(0.5)


def test_jumps_happen_at_their_rate():
    profile = replace(NIFTY, vol=1e-4, jumps_per_day=20.0, jump_vol=0.01)
    rng = np.random.default_rng(1)
    steps = 2000
    dt = SESSION_SECONDS / 100  # 100 steps per session: 0.2 jumps per step expected
    returns = np.array([gbm_log_return(rng, profile, dt, 0.5, 1.0) for _ in range(steps)])
    jumps = np.abs(returns) > 0.001  # diffusion alone is ~1e-6 per step
    assert abs(jumps.sum() - steps * 0.2) < 4 * math.sqrt(steps * 0.2)
    calm = replace(profile, jumps_per_day=0.0)
    assert not (np.abs([gbm_log_return(rng, calm, dt, 0.5, 1.0) for _ in range(500)]) > 0.001).any()


def test_surface_has_put_skew_smile_and_term_structure():
    t = np.array([2 / 365, 30 / 365, 180 / 365])
    k = np.linspace(-0.1, 0.1, 21)
    vol = surface_vol(k[None, :], t[:, None], NIFTY.vol, NIFTY.skew, NIFTY.smile)
    atm = vol[:, 10]
    assert atm[0] > atm[1] > atm[2]  # short-dated richer
    assert (vol[:, 0] > atm).all()  # downside strikes carry more vol
    assert (np.diff(vol[1], 2) >= -1e-12).all()  # convex in strike: a smile around the skew
    assert (vol > 0).all()
