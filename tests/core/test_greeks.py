"""The pricing engine against closed forms, finite differences, parity and implied-volatility round trips."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import norm

from core.greeks import (
    bsm_price,
    greeks,
    implied_volatility,
    implied_volatility_and_greeks,
    time_to_expiry_years,
)

IST = ZoneInfo("Asia/Kolkata")
MINUTE = 1.0 / (365.0 * 24 * 60)


def test_price_matches_textbook_values():
    # Hull, Options Futures and Other Derivatives, example 15.6: S=42, K=40, r=10%, vol=20%, T=0.5.
    call, put = bsm_price(42.0, 40.0, 0.5, 0.10, 0.0, 0.20, [True, False])
    assert call == pytest.approx(4.7594, abs=5e-5)
    assert put == pytest.approx(0.8086, abs=5e-5)


def test_price_matches_closed_form_with_dividend_yield():
    s, k, t, r, q, v = 26000.0, 26500.0, 30 / 365, 0.065, 0.012, 0.14
    d1 = (math.log(s / k) + (r - q + v * v / 2) * t) / (v * math.sqrt(t))
    d2 = d1 - v * math.sqrt(t)
    call = s * math.exp(-q * t) * norm.cdf(d1) - k * math.exp(-r * t) * norm.cdf(d2)
    put = k * math.exp(-r * t) * norm.cdf(-d2) - s * math.exp(-q * t) * norm.cdf(-d1)
    got = bsm_price(s, k, t, r, q, v, np.array([True, False]))
    np.testing.assert_allclose(got, [call, put], rtol=1e-12)


def test_black76_is_bsm_on_the_forward():
    f, k, t, r, v = 26150.0, 26000.0, 0.1, 0.065, 0.15
    d1 = (math.log(f / k) + v * v * t / 2) / (v * math.sqrt(t))
    d2 = d1 - v * math.sqrt(t)
    black76_call = math.exp(-r * t) * (f * norm.cdf(d1) - k * norm.cdf(d2))
    assert bsm_price(f, k, t, r, r, v, True) == pytest.approx(black76_call, rel=1e-12)


def test_put_call_parity_holds_on_a_grid():
    s = 26000.0
    k = np.linspace(18000, 34000, 81)
    t, r, q = 0.2, 0.065, 0.012
    vol = 0.1 + 0.2 * np.abs(np.log(k / s))
    call = bsm_price(s, k, t, r, q, vol, True)
    put = bsm_price(s, k, t, r, q, vol, False)
    np.testing.assert_allclose(call - put, s * math.exp(-q * t) - k * math.exp(-r * t), atol=1e-8)


def test_greeks_match_closed_forms():
    s, k, t, r, q, v = 100.0, 95.0, 0.25, 0.05, 0.02, 0.3
    sq = math.sqrt(t)
    d1 = (math.log(s / k) + (r - q + v * v / 2) * t) / (v * sq)
    d2 = d1 - v * sq
    g = greeks(s, k, t, r, q, v, np.array([True, False]))
    call_theta = (
        -s * math.exp(-q * t) * norm.pdf(d1) * v / (2 * sq)
        - r * k * math.exp(-r * t) * norm.cdf(d2)
        + q * s * math.exp(-q * t) * norm.cdf(d1)
    )
    put_theta = (
        -s * math.exp(-q * t) * norm.pdf(d1) * v / (2 * sq)
        + r * k * math.exp(-r * t) * norm.cdf(-d2)
        - q * s * math.exp(-q * t) * norm.cdf(-d1)
    )
    np.testing.assert_allclose(g["delta"], [math.exp(-q * t) * norm.cdf(d1), -math.exp(-q * t) * norm.cdf(-d1)])
    np.testing.assert_allclose(g["gamma"], math.exp(-q * t) * norm.pdf(d1) / (s * v * sq))
    np.testing.assert_allclose(g["vega"], s * math.exp(-q * t) * norm.pdf(d1) * sq * 0.01)
    np.testing.assert_allclose(g["theta"], [call_theta / 365, put_theta / 365])
    np.testing.assert_allclose(
        g["rho"], [k * t * math.exp(-r * t) * norm.cdf(d2) * 0.01, -k * t * math.exp(-r * t) * norm.cdf(-d2) * 0.01]
    )


@pytest.mark.parametrize("is_call", [True, False])
@pytest.mark.parametrize("strike", [20000.0, 25000.0, 26000.0, 27000.0, 32000.0])
@pytest.mark.parametrize("t", [2 / 365, 30 / 365, 1.0])
def test_greeks_match_finite_differences(is_call, strike, t):
    s, r, q, v = 26000.0, 0.065, 0.012, 0.18

    def p(**kw):
        args = {"spot": s, "strike": strike, "t": t, "rate": r, "div_yield": q, "vol": v} | kw
        return float(bsm_price(is_call=is_call, **args))

    g = greeks(s, strike, t, r, q, v, is_call)
    hs, hv, ht, hr = s * 1e-4, 1e-5, 1e-6, 1e-6
    scale = max(float(g["price"]), 1.0)
    assert float(g["price"]) == pytest.approx(p(), abs=1e-9)
    assert float(g["delta"]) == pytest.approx((p(spot=s + hs) - p(spot=s - hs)) / (2 * hs), abs=1e-6)
    fd_gamma = (p(spot=s + hs) - 2 * p() + p(spot=s - hs)) / hs**2
    assert float(g["gamma"]) == pytest.approx(fd_gamma, rel=1e-3, abs=1e-9)
    assert float(g["vega"]) == pytest.approx((p(vol=v + hv) - p(vol=v - hv)) / (2 * hv) * 0.01, abs=1e-6 * scale)
    fd_theta = -(p(t=t + ht) - p(t=t - ht)) / (2 * ht) / 365
    assert float(g["theta"]) == pytest.approx(fd_theta, rel=1e-4, abs=1e-6 * scale)
    assert float(g["rho"]) == pytest.approx((p(rate=r + hr) - p(rate=r - hr)) / (2 * hr) * 0.01, abs=1e-6 * scale)


def test_expired_options_are_worth_their_payoff():
    g = greeks(
        26000.0, np.array([25000.0, 27000.0, 25000.0, 27000.0]), 0.0, 0.065, 0.0, 0.2, [True, True, False, False]
    )
    np.testing.assert_array_equal(g["price"], [1000.0, 0.0, 0.0, 1000.0])
    np.testing.assert_array_equal(g["delta"], [1.0, 0.0, 0.0, -1.0])
    assert not np.any(g["gamma"]) and not np.any(g["vega"]) and not np.any(g["theta"])


def test_broadcasting_keeps_the_shape():
    strikes = np.linspace(25000, 27000, 12).reshape(3, 4)
    out = bsm_price(26000.0, strikes, 0.1, 0.065, 0.0, 0.15, True)
    assert out.shape == (3, 4)
    assert implied_volatility(out, 26000.0, strikes, 0.1, 0.065, 0.0, True).shape == (3, 4)
    assert all(v.shape == (3, 4) for v in greeks(26000.0, strikes, 0.1, 0.065, 0.0, 0.15, True).values())


def _iv_grid():
    spot = 26000.0
    log_m = np.linspace(-1.2, 1.2, 49)  # deep out of and in the money
    t = np.array([1, 5, 15, 30, 60]) * MINUTE  # the last hour before expiry ...
    t = np.concatenate([t, np.array([1, 3, 7, 30, 91, 182, 365, 730]) / 365.0])  # ... to two years
    vol = np.array([0.03, 0.08, 0.15, 0.3, 0.6, 1.0, 2.0])
    k, tt, v, call = np.meshgrid(spot * np.exp(log_m), t, vol, [True, False], indexing="ij")
    return spot, k.ravel(), tt.ravel(), v.ravel(), call.ravel()


def test_implied_volatility_round_trips_over_the_grid():
    spot, k, t, vol, call = _iv_grid()
    r, q = 0.065, 0.012
    price = bsm_price(spot, k, t, r, q, vol, call)
    iv = implied_volatility(price, spot, k, t, r, q, call)
    vega = greeks(spot, k, t, r, q, vol, call)["vega"]
    identifiable = vega >= 1e-4
    assert identifiable.sum() > 2000
    assert not np.isnan(iv[identifiable]).any()
    assert np.max(np.abs(iv[identifiable] - vol[identifiable])) <= 1e-6
    solved = ~np.isnan(iv)
    # Prices with no time value left to invert are rare corners where vega is negligible.
    assert solved.mean() > 0.9
    repriced = bsm_price(spot, k[solved], t[solved], r, q, iv[solved], call[solved])
    assert np.max(np.abs(repriced - price[solved])) <= 1e-8


def test_implied_volatility_in_the_last_hour_before_expiry():
    spot = 26012.35
    k = np.arange(25700, 26350, 10, dtype=float)
    t = time_to_expiry_years(date(2026, 11, 24), datetime(2026, 11, 24, 14, 45, tzinfo=IST))
    assert t == pytest.approx(45 * MINUTE)
    vol = 0.12 + 0.3 * np.abs(np.log(k / spot))
    for call in (True, False):
        price = bsm_price(spot, k, t, 0.065, 0.0, vol, call)
        iv = implied_volatility(price, spot, k, t, 0.065, 0.0, call)
        vega = greeks(spot, k, t, 0.065, 0.0, vol, call)["vega"]
        ok = vega >= 1e-4
        assert ok.sum() >= 10
        np.testing.assert_allclose(iv[ok], vol[ok], atol=1e-6)


def test_impossible_prices_give_nan_not_errors():
    s, k, t, r, q = 26000.0, 25000.0, 0.1, 0.065, 0.0
    intrinsic_call = s - k * math.exp(-r * t)
    prices = np.array([intrinsic_call - 1.0, s + 1.0, -5.0, np.nan, np.inf])
    assert np.isnan(implied_volatility(prices, s, k, t, r, q, True)).all()
    put_upper = k * math.exp(-r * t)
    assert np.isnan(implied_volatility([put_upper + 0.01, -0.01], s, k, t, r, q, False)).all()
    good = float(bsm_price(s, k, t, r, q, 0.2, True))
    assert np.isnan(implied_volatility(good, s, k, [0.0, -0.1], r, q, True)).all()
    assert np.isnan(implied_volatility(good, [0.0, -1.0, np.nan], k, t, r, q, True)).all()
    assert np.isnan(implied_volatility(good, s, 0.0, t, r, q, True))


@settings(max_examples=300, deadline=None)
@given(
    log_m=st.floats(-0.6, 0.6),
    t=st.floats(1.0 / (365 * 24), 2.0),
    vol=st.floats(0.02, 1.5),
    rate=st.floats(-0.01, 0.12),
    div=st.floats(0.0, 0.05),
    is_call=st.booleans(),
)
def test_implied_volatility_inverts_price(log_m, t, vol, rate, div, is_call):
    spot = 1000.0
    strike = spot * math.exp(log_m)
    price = bsm_price(spot, strike, t, rate, div, vol, is_call)
    iv = implied_volatility(price, spot, strike, t, rate, div, is_call)
    vega = greeks(spot, strike, t, rate, div, vol, is_call)["vega"]
    if vega >= 1e-4:
        assert abs(float(iv) - vol) <= 1e-6
    if not np.isnan(iv):
        assert abs(float(bsm_price(spot, strike, t, rate, div, iv, is_call)) - float(price)) <= 1e-8


def test_time_to_expiry_counts_to_1530_ist():
    now = datetime(2026, 11, 24, 9, 30, tzinfo=IST)
    assert time_to_expiry_years(date(2026, 11, 24), now) == pytest.approx(6 / (365 * 24))
    assert time_to_expiry_years(date(2026, 12, 1), now) == pytest.approx((7 * 24 + 6) / (365 * 24))
    assert time_to_expiry_years(date(2026, 11, 23), now) == 0.0
    arr = time_to_expiry_years(np.array(["2026-11-24", "2026-12-01"], dtype="datetime64[D]"), now.astimezone(UTC))
    np.testing.assert_allclose(arr, [6 / (365 * 24), (7 * 24 + 6) / (365 * 24)])
    dates = time_to_expiry_years(np.array([date(2026, 11, 24)], dtype=object), now)
    np.testing.assert_allclose(dates, [6 / (365 * 24)])
    with pytest.raises(ValueError):
        time_to_expiry_years(date(2026, 11, 24), datetime(2026, 11, 24, 9, 30))


def test_iv_and_greeks_in_one_pass_match_the_separate_calls():
    spot, k, t, vol, call = _iv_grid()
    r, q = 0.065, 0.012
    price = bsm_price(spot, k, t, r, q, vol, call)
    price[::97] = -1.0  # impossible prices: NaN IV and NaN Greeks, never an exception
    both = implied_volatility_and_greeks(price, spot, k, t, r, q, call)
    iv = implied_volatility(price, spot, k, t, r, q, call)
    np.testing.assert_array_equal(both["iv"], iv)
    separate = greeks(spot, k, t, r, q, iv, call)
    for key in ("price", "delta", "gamma", "theta", "vega", "rho"):
        np.testing.assert_allclose(both[key], separate[key], rtol=1e-9, atol=1e-12, equal_nan=True, err_msg=key)
        assert np.isnan(both[key][::97]).all(), key
