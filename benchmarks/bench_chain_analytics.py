"""The chain analytics' cost per chain update: one `ChainBook.update` with every option ticked and the
analytics recomputed (the Greeks cadence), for the bench_ticker chain size (375 strikes) and a
typical subscribed chain (41 strikes); the trader figures alone (GEX, walls, ATM IV, build-up,
straddle, expected move, IVP/IVR); and the gamma flip, which runs at most every 5 s per chain.

No target of its own: the [ticker] CPU bar (bench_ticker) is what the per-update cost must fit in.
"""

from __future__ import annotations

import datetime as dt
import os
import time

import numpy as np

from benchmarks.common import emit
from core import greeks as pricing
from core.ticks import MODE_FULL, TickBatch, empty_ticks
from streaming.ticker.chain_analytics import (
    atm_iv_at_forward,
    expected_moves,
    gamma_exposure,
    gex_walls,
    iv_percentile,
    iv_rank,
    oi_buildup,
    straddle_premium,
    zero_gamma_level,
)
from streaming.ticker.chains import ChainBook, ChainSpec
from streaming.ticker.market_state import MarketState

REPEATS = int(os.environ.get("BENCH_CHAIN_ANALYTICS_REPEATS", "400"))
RATE, SPOT, EXPIRY = 0.065, 26000.0, dt.date(2026, 12, 8)
NOW = dt.datetime(2026, 12, 3, 6, 0, tzinfo=dt.UTC).timestamp()


def _spec(strikes: int) -> ChainSpec:
    ks = SPOT + 50.0 * (np.arange(strikes) - strikes // 2)
    return ChainSpec(
        underlying="NIFTY",
        expiry=EXPIRY,
        strikes=ks,
        ce_tokens=np.arange(1000, 1000 + strikes, dtype=np.int64) * 256 + 2,
        pe_tokens=np.arange(5000, 5000 + strikes, dtype=np.int64) * 256 + 2,
        ce_symbols=tuple(f"C{k}" for k in range(strikes)),
        pe_symbols=tuple(f"P{k}" for k in range(strikes)),
        spot_token=256265,
    )


def _batch(spec: ChainSpec, spot: float, at: float, rng: np.random.Generator) -> TickBatch:
    t = float(pricing.time_to_expiry_years(EXPIRY, dt.datetime.fromtimestamp(at, tz=dt.UTC)))
    vol = 0.13 + 0.1 * np.abs(np.log(spec.strikes / spot))
    ce = np.round(pricing.bsm_price(spot, spec.strikes, t, RATE, 0.012, vol, True), 2)
    pe = np.round(pricing.bsm_price(spot, spec.strikes, t, RATE, 0.012, vol, False), 2)
    tokens = np.concatenate([[256265], spec.ce_tokens, spec.pe_tokens])
    prices = np.maximum(np.concatenate([[spot], ce, pe]), 0.05)
    ticks = empty_ticks(len(tokens))
    ticks["instrument_token"] = tokens
    ticks["mode"] = MODE_FULL
    ticks["last_price"] = prices
    ticks["close"] = prices * 0.99
    ticks["oi"] = rng.integers(100_000, 5_000_000, len(tokens))
    ticks["volume_traded"] = rng.integers(1000, 100_000, len(tokens))
    ticks["bid_price"][:, 0] = prices - 0.05
    ticks["ask_price"][:, 0] = prices + 0.05
    return TickBatch(ticks=ticks, received_at=at, is_mock=False)


def _percentiles(samples: list[float]) -> tuple[float, float]:
    us = np.array(samples) * 1e6
    return float(np.percentile(us, 50)), float(np.percentile(us, 99))


def bench_update(strikes: int) -> None:
    rng = np.random.default_rng(strikes)
    spec = _spec(strikes)
    state = MarketState([256265, *spec.tokens.tolist()])
    book = ChainBook(spec=spec, greeks_interval_s=0.0)  # every update recomputes, as at the Greeks cadence
    book.bind(state)
    book.set_iv_history(rng.uniform(0.1, 0.2, 252))
    book.iv_bucket = "weekly"
    batches = [_batch(spec, SPOT * (1 + rng.normal(0, 0.001)), NOW + n, rng) for n in range(16)]
    samples = []
    for n in range(REPEATS):
        state.apply(batches[n % len(batches)])
        book.zero_gamma_at = float("inf")  # the flip has its own line below
        started = time.perf_counter()
        book.update(state, now=NOW + n, monotonic=float(n), market_now=NOW + n)
        samples.append(time.perf_counter() - started)
    p50, p99 = _percentiles(samples[10:])
    emit(f"chain_analytics.update_{strikes}_strikes_p50", p50, "us", strikes=strikes)
    emit(f"chain_analytics.update_{strikes}_strikes_p99", p99, "us", strikes=strikes)

    # The trader figures alone, on the same chain's arrays (what this issue added to each recompute).
    analytics = book.analytics
    assert analytics is not None
    k, ce, pe = spec.strikes, analytics.ce, analytics.pe
    oi_c, oi_p = rng.uniform(1e5, 5e6, strikes), rng.uniform(1e5, 5e6, strikes)
    px_c, px_p = rng.uniform(1, 500, strikes), rng.uniform(1, 500, strikes)
    closes = np.sort(rng.uniform(0.1, 0.2, 252))
    samples = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        ce_gex, pe_gex = gamma_exposure(ce["gamma"], oi_c, pe["gamma"], oi_p, spot=SPOT)
        gex_walls(k, np.nan_to_num(ce_gex) + np.nan_to_num(pe_gex))
        iv = atm_iv_at_forward(k, ce["iv"], pe["iv"], analytics.forward)
        oi_buildup(px_c, px_c * 1.01, oi_c, oi_c * 0.99)
        oi_buildup(px_p, px_p * 0.99, oi_p, oi_p * 1.01)
        straddle = straddle_premium(k, px_c, px_p, analytics.atm_strike)
        expected_moves(forward=analytics.forward, straddle=straddle, atm_iv=iv, t=0.01)
        iv_percentile(iv, closes)
        iv_rank(iv, closes)
        samples.append(time.perf_counter() - started)
    p50, p99 = _percentiles(samples[10:])
    emit(f"chain_analytics.trader_figures_{strikes}_strikes_p50", p50, "us", strikes=strikes)
    emit(f"chain_analytics.trader_figures_{strikes}_strikes_p99", p99, "us", strikes=strikes)

    samples = []
    for _ in range(max(REPEATS // 4, 20)):
        started = time.perf_counter()
        zero_gamma_level(k, ce["iv"], oi_c, pe["iv"], oi_p, spot=SPOT, t=0.01, rate=RATE, div_yield=analytics.div_yield)
        samples.append(time.perf_counter() - started)
    p50, p99 = _percentiles(samples[5:])
    emit(f"chain_analytics.zero_gamma_{strikes}_strikes_p50", p50, "us", strikes=strikes, every_s=5.0)
    emit(f"chain_analytics.zero_gamma_{strikes}_strikes_p99", p99, "us", strikes=strikes, every_s=5.0)


def main() -> None:
    for strikes in (41, 375):
        bench_update(strikes)


if __name__ == "__main__":
    main()
