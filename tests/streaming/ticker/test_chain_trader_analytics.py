"""GEX, the gamma flip, OI build-up, ATM IV, straddle, expected move, IVP/IVR and the forward's ATM,
each against a hand calculation on fixed inputs (pure: no database)."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pytest

from streaming.ticker.chain_analytics import (
    LONG_BUILDUP,
    LONG_UNWINDING,
    NEUTRAL,
    NO_BUILDUP,
    SHORT_BUILDUP,
    SHORT_COVERING,
    atm_iv_at_forward,
    compute_chain_analytics,
    expected_moves,
    expiry_buckets,
    gamma_exposure,
    gex_walls,
    iv_percentile,
    iv_rank,
    oi_buildup,
    straddle_premium,
    zero_gamma_level,
)


def test_gex_per_strike_signs_and_walls_by_hand():
    # spot 20,000: S^2 x 0.01 = 4,000,000.
    ce, pe = gamma_exposure(
        np.array([0.001, 0.002]), np.array([1000.0, 500.0]), np.array([0.0015, 0.0005]), np.array([2000.0, 100.0]),
        spot=20_000.0,
    )  # fmt: skip
    np.testing.assert_allclose(ce, [4_000_000.0, 4_000_000.0])  # 0.001 x 1000 x 4e6; 0.002 x 500 x 4e6
    np.testing.assert_allclose(pe, [-12_000_000.0, -200_000.0])  # -0.0015 x 2000 x 4e6; -0.0005 x 100 x 4e6
    net = ce + pe  # -8,000,000 and +3,800,000
    assert gex_walls(np.array([19_900.0, 20_000.0]), net) == (20_000.0, 19_900.0)
    assert all(math.isnan(w) for w in gex_walls(np.array([1.0, 2.0]), np.array([np.nan, 0.0])))


def test_zero_gamma_is_where_call_and_put_gamma_balance():
    # One call at 100 and one put at 110, equal OI and IV, r = q = 0: net GEX is zero where the two
    # gammas are equal, i.e. d1(S, 100) = -d1(S, 110): ln(S/100) + ln(S/110) = -s^2, s = IV sqrt(T),
    # so S = sqrt(100 x 110) x exp(-s^2 / 2) = 104.8809 x exp(-0.002) = 104.6713.
    strikes = np.array([100.0, 110.0])
    nan = np.nan
    flip = zero_gamma_level(
        strikes,
        np.array([0.2, nan]), np.array([1000.0, nan]),
        np.array([nan, 0.2]), np.array([nan, 1000.0]),
        spot=105.0, t=0.1, rate=0.0, div_yield=0.0,
    )  # fmt: skip
    assert flip == pytest.approx(math.sqrt(11_000.0) * math.exp(-0.002), abs=0.02)
    assert flip == pytest.approx(104.6713, abs=0.02)


def test_zero_gamma_nan_when_the_sign_never_changes():
    flip = zero_gamma_level(
        np.array([100.0]), np.array([0.2]), np.array([1000.0]), np.array([0.2]), np.array([0.0]),
        spot=100.0, t=0.1, rate=0.0, div_yield=0.0,
    )  # fmt: skip
    assert math.isnan(flip)


def test_oi_buildup_quadrants_thresholds_and_unknowns():
    # price then -> now, OI then -> now; thresholds 1 % (price) and 0.5 % (OI).
    price_then = np.array([100.0, 100.0, 100.0, 100.0, 100.0, 100.0, np.nan])
    price_now = np.array([105.0, 95.0, 103.0, 97.0, 100.5, 110.0, 90.0])
    oi_then = np.array([1000.0, 1000.0, 1000.0, 1000.0, 1000.0, 1000.0, 1000.0])
    oi_now = np.array([1100.0, 1200.0, 900.0, 950.0, 1300.0, 1003.0, 800.0])
    codes = oi_buildup(price_now, price_then, oi_now, oi_then)
    assert codes.tolist() == [
        LONG_BUILDUP,  # +5 %, +10 %
        SHORT_BUILDUP,  # -5 %, +20 %
        SHORT_COVERING,  # +3 %, -10 %
        LONG_UNWINDING,  # -3 %, -5 %
        NEUTRAL,  # +0.5 % price: noise
        NEUTRAL,  # +0.3 % OI: noise
        NO_BUILDUP,  # no price at the window's start
    ]


def test_atm_iv_interpolates_the_out_of_the_money_sides_at_the_forward():
    strikes = np.array([95.0, 100.0, 105.0, 110.0])
    ce_iv = np.array([0.30, 0.25, 0.18, 0.17])
    pe_iv = np.array([0.24, 0.20, 0.21, 0.22])
    # F = 103: put IV at 100 (0.20) and call IV at 105 (0.18): 0.20 + (0.18 - 0.20) x 3/5 = 0.188.
    assert atm_iv_at_forward(strikes, ce_iv, pe_iv, 103.0) == pytest.approx(0.188, abs=1e-12)
    # F on a strike: the mean of its call and put IVs, (0.18 + 0.21) / 2.
    assert atm_iv_at_forward(strikes, ce_iv, pe_iv, 105.0) == pytest.approx(0.195, abs=1e-12)
    # The call at 105 unknown: the next OTM call (110, 0.17) is used: 0.20 + (0.17 - 0.20) x 3/10 = 0.191.
    ce_iv[2] = np.nan
    assert atm_iv_at_forward(strikes, ce_iv, pe_iv, 103.0) == pytest.approx(0.191, abs=1e-12)


def test_straddle_and_expected_move_by_hand():
    strikes = np.array([23_950.0, 24_000.0, 24_050.0])
    assert straddle_premium(strikes, np.array([1.0, 150.0, 2.0]), np.array([3.0, 140.0, 4.0]), 24_000.0) == 290.0
    assert math.isnan(straddle_premium(strikes, np.array([1.0, np.nan, 2.0]), np.ones(3), 24_000.0))
    # 24,030 x 0.15 x sqrt(7 / 365) = 3,604.5 x 0.1384855 = 499.17
    by_straddle, by_iv = expected_moves(forward=24_030.0, straddle=290.0, atm_iv=0.15, t=7 / 365)
    assert by_straddle == 290.0
    assert by_iv == pytest.approx(499.17, abs=0.01)


def test_iv_percentile_and_rank_by_hand():
    closes = np.array([0.10, 0.12, 0.14, 0.16, 0.18, 0.20])
    assert iv_percentile(0.15, closes) == pytest.approx(50.0)  # 3 of 6 closes below
    assert iv_rank(0.15, closes) == pytest.approx(50.0)  # (0.15 - 0.10) / (0.20 - 0.10)
    assert iv_percentile(0.11, closes) == pytest.approx(100 / 6)  # 1 of 6
    assert iv_rank(0.11, closes) == pytest.approx(10.0)  # 0.01 / 0.10
    assert iv_percentile(0.22, closes) == 100.0 and iv_rank(0.22, closes) == 100.0  # a new high
    assert iv_percentile(0.08, closes) == 0.0 and iv_rank(0.08, closes) == 0.0  # a new low
    assert math.isnan(iv_percentile(0.15, np.array([]))) and math.isnan(iv_rank(0.15, np.array([])))


def test_atm_follows_the_synthetic_forward_not_the_spot():
    # r = 0: F = K + C - P at each of the three strikes = 24,020. The spot 23,945 is nearest 23,900,
    # the forward nearest 24,000.
    strikes = np.array([23_900.0, 24_000.0, 24_100.0])
    call = np.array([180.0, 120.0, 75.0])
    put = np.array([60.0, 100.0, 155.0])
    oi = np.full(3, 100.0)
    result = compute_chain_analytics(
        strikes=strikes, ce_price=call, pe_price=put, ce_oi=oi, pe_oi=oi, ce_volume=oi, pe_volume=oi,
        spot=23_945.0, t=0.02, rate=0.0,
    )  # fmt: skip
    assert result.forward == pytest.approx(24_020.0)
    assert result.atm_strike == 24_000.0


def test_expiry_buckets_nearest_weekly_and_monthly():
    tuesday = dt.date(2026, 11, 3)
    weeklies = [tuesday + dt.timedelta(weeks=n) for n in range(5)]  # Nov 3, 10, 17, 24; Dec 1
    buckets = expiry_buckets(weeklies)
    assert buckets[dt.date(2026, 11, 3)] == ("weekly",)
    assert buckets[dt.date(2026, 11, 24)] == ("monthly",)  # a week later is December
    assert buckets[dt.date(2026, 11, 10)] == ()
    # Monthly-only underlying: the nearest expiry is both.
    assert expiry_buckets([dt.date(2026, 11, 24), dt.date(2026, 12, 29)])[dt.date(2026, 11, 24)] == (
        "weekly",
        "monthly",
    )


def test_atm_iv_is_unknown_when_the_forward_is_outside_the_quoted_sides():
    strikes = np.array([95.0, 100.0])
    assert math.isnan(atm_iv_at_forward(strikes, np.array([0.2, 0.2]), np.array([0.2, 0.2]), 101.0))
