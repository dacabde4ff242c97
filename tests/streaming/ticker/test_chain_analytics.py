"""Chain analytics on whole arrays (pure: no database)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from core import greeks as pricing
from core.strikes import nearest_strike
from streaming.ticker.chain_analytics import (
    OIHistory,
    atm_strike,
    compute_chain_analytics,
    implied_forward,
    max_pain,
    put_call_ratio,
    quote_mid,
)

RATE = 0.065


def _chain(spot=24000.0, t=10 / 365, q=0.012, vol=0.14, strikes=None):
    strikes = np.arange(23000.0, 25001.0, 50.0) if strikes is None else strikes
    vols = vol + 0.00002 * np.abs(strikes - spot)  # a smile
    ce = pricing.bsm_price(spot, strikes, t, RATE, q, vols, True)
    pe = pricing.bsm_price(spot, strikes, t, RATE, q, vols, False)
    return strikes, np.asarray(ce), np.asarray(pe), vols


def test_forward_from_put_call_parity_matches_the_model_forward():
    spot, t, q = 24000.0, 10 / 365, 0.012
    strikes, ce, pe, _ = _chain(spot, t, q)
    forward = implied_forward(strikes, ce, pe, t=t, rate=RATE, near=spot)
    assert forward == pytest.approx(spot * math.exp((RATE - q) * t), rel=1e-9)


def test_forward_found_without_spot():
    spot, t, q = 24000.0, 10 / 365, 0.0
    strikes, ce, pe, _ = _chain(spot, t, q)
    forward = implied_forward(strikes, ce, pe, t=t, rate=RATE, near=None)
    assert forward == pytest.approx(spot * math.exp(RATE * t), rel=1e-9)


def test_chain_analytics_recovers_the_smile_and_greeks():
    spot, t, q = 24010.0, 10 / 365, 0.012
    strikes, ce, pe, vols = _chain(spot, t, q)
    n = len(strikes)
    oi = np.full(n, 1000.0)
    result = compute_chain_analytics(
        strikes=strikes,
        ce_price=ce,
        pe_price=pe,
        ce_oi=oi,
        pe_oi=oi,
        ce_volume=oi,
        pe_volume=oi,
        spot=spot,
        t=t,
        rate=RATE,
    )
    assert result.forward == pytest.approx(spot * math.exp((RATE - q) * t), rel=1e-9)
    assert result.atm_strike == 24050.0  # nearest the forward, 24,044.9 (the spot 24,010 is nearest 24,000)
    np.testing.assert_allclose(result.ce["iv"], vols, atol=1e-6)
    np.testing.assert_allclose(result.pe["iv"], vols, atol=1e-6)
    expected = pricing.greeks(spot, strikes, t, RATE, q, vols, True)
    np.testing.assert_allclose(result.ce["delta"], expected["delta"], atol=1e-6)
    np.testing.assert_allclose(result.ce["gamma"], expected["gamma"], rtol=1e-5)
    assert (result.pe["delta"] < 0).all() and (result.ce["delta"] > 0).all()


def test_missing_prices_give_nan_not_errors():
    spot, t = 24000.0, 5 / 365
    strikes, ce, pe, _ = _chain(spot, t, 0.0)
    ce[::3] = np.nan
    pe[:5] = 0.0  # impossible price
    nan = np.full(len(strikes), np.nan)
    result = compute_chain_analytics(
        strikes=strikes,
        ce_price=ce,
        pe_price=pe,
        ce_oi=nan,
        pe_oi=nan,
        ce_volume=nan,
        pe_volume=nan,
        spot=spot,
        t=t,
        rate=RATE,
    )
    assert np.isnan(result.ce["iv"][::3]).all()
    assert np.isnan(result.pe["delta"][:5]).all()
    assert np.isfinite(result.ce["iv"][1])
    assert math.isnan(result.pcr_oi) and math.isnan(result.max_pain)


def test_spot_falls_back_to_forward_and_forward_to_spot():
    t = 10 / 365
    strikes, ce, pe, _ = _chain(24000.0, t, 0.0)
    nan = np.full(len(strikes), np.nan)
    no_spot = compute_chain_analytics(
        strikes=strikes,
        ce_price=ce,
        pe_price=pe,
        ce_oi=nan,
        pe_oi=nan,
        ce_volume=nan,
        pe_volume=nan,
        spot=math.nan,
        t=t,
        rate=RATE,
    )
    assert no_spot.spot == pytest.approx(24000.0, rel=1e-9)
    no_options = compute_chain_analytics(
        strikes=strikes,
        ce_price=nan,
        pe_price=nan,
        ce_oi=nan,
        pe_oi=nan,
        ce_volume=nan,
        pe_volume=nan,
        spot=24000.0,
        t=t,
        rate=RATE,
    )
    assert no_options.forward == pytest.approx(24000.0 * math.exp(RATE * t))
    assert no_options.atm_strike == 24050.0  # nearest the carried spot, 24,042.8


def test_pcr_and_max_pain():
    strikes = np.array([100.0, 110.0, 120.0])
    ce_oi = np.array([0.0, 0.0, 1000.0])
    pe_oi = np.array([1000.0, 0.0, 0.0])
    # Calls written at 120 and puts at 100: anything between costs writers nothing.
    assert max_pain(strikes, ce_oi, pe_oi) == 100.0
    assert max_pain(strikes, np.array([0, 1000.0, 0]), np.array([0, 1000.0, 0])) == 110.0
    assert max_pain(strikes, np.array([900.0, 0, 0]), np.array([0, 0, 100.0])) == 100.0
    assert put_call_ratio(np.array([30.0, np.nan]), np.array([10.0, 10.0])) == 1.5
    assert math.isnan(put_call_ratio(np.array([1.0]), np.array([0.0])))


def test_atm_and_mid():
    assert atm_strike(np.array([100.0, 110.0, 120.0]), 113.0) == 110.0
    assert math.isnan(atm_strike(np.array([100.0]), math.nan))
    mid = quote_mid(np.array([9.0, 0.0, 12.0]), np.array([11.0, 5.0, 11.0]), np.array([1.0, 2.0, 3.0]))
    assert mid.tolist() == [10.0, 2.0, 3.0]


def test_nearest_strike_takes_the_lower_strike_on_a_tie_in_any_order():
    assert nearest_strike(np.array([120.0, 110.0, 100.0]), 115.0) == 110.0
    assert nearest_strike([150.0, 250.0, 200.0, 100.0], 175.0) == 150.0
    assert nearest_strike([130.0, 100.0], 90.0) == 100.0
    assert math.isnan(nearest_strike([], 100.0))


def test_oi_history_change_against_n_minutes_ago():
    history = OIHistory(interval_s=60.0, max_age_s=3600.0)
    base = 1_000_000.0
    for minute in range(30):
        history.record(base + minute * 60, np.array([100.0 + minute]), np.array([200.0 - minute]))
    # Recording more often than the interval is ignored.
    assert not history.record(base + 29 * 60 + 10, np.array([0.0]), np.array([0.0]))
    ce, pe = history.change_since(base + 29 * 60, 15, np.array([129.0]), np.array([171.0]))
    assert ce.tolist() == [15.0] and pe.tolist() == [-15.0]
    ce, _ = history.change_since(base + 29 * 60, 120, np.array([129.0]), np.array([171.0]))
    assert np.isnan(ce).all()


def test_oi_history_is_bounded():
    history = OIHistory(interval_s=1.0, max_age_s=10.0)
    for second in range(1000):
        history.record(float(second), np.zeros(3), np.zeros(3))
    assert len(history._snapshots) <= 12


def test_iv_and_greeks_come_from_one_pass_and_floor_prices_give_nan_greeks(monkeypatch):
    """The chain is priced by `implied_volatility_and_greeks` (one solve shared with the Greeks), never
    by a separate IV solve then a Greeks pass; a price at its floor (IV 0) has no Greeks either."""
    spot, t, q = 24010.0, 10 / 365, 0.012
    strikes, ce, pe, vols = _chain(spot, t, q)
    ce = ce.copy()
    floor_k = 1  # a deep ITM call priced at its discounted intrinsic value solves to IV 0
    ce[floor_k] = spot * math.exp(-q * t) - strikes[floor_k] * math.exp(-RATE * t)
    calls = []
    one_pass = pricing.implied_volatility_and_greeks

    def spy(*args, **kwargs):
        calls.append(len(np.asarray(args[0])))
        return one_pass(*args, **kwargs)

    def forbidden(*args, **kwargs):
        raise AssertionError("the chain must not be priced in two passes")

    monkeypatch.setattr(pricing, "implied_volatility_and_greeks", spy)
    monkeypatch.setattr(pricing, "implied_volatility", forbidden)
    monkeypatch.setattr(pricing, "greeks", forbidden)
    oi = np.full(len(strikes), 1000.0)
    result = compute_chain_analytics(
        strikes=strikes,
        ce_price=ce,
        pe_price=pe,
        ce_oi=oi,
        pe_oi=oi,
        ce_volume=oi,
        pe_volume=oi,
        spot=spot,
        t=t,
        rate=RATE,
    )
    assert calls == [2 * len(strikes)]  # both sides of the whole chain in one call
    ok = np.arange(len(strikes)) != floor_k
    np.testing.assert_allclose(result.ce["iv"][ok][5:-5], vols[ok][5:-5], rtol=1e-6)
    for name in ("iv", "delta", "gamma", "theta", "vega", "rho"):
        assert math.isnan(result.ce[name][floor_k]), name
    assert np.isfinite(result.ce["delta"][ok][5:-5]).all()
