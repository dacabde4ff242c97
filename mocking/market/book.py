"""The market around the model price: prices on the tick grid, a five-level book, trades at its touch,
and the state a session opens with.

Each function writes the given `rows` of a TICK_DTYPE array in place and draws from the caller's random
generator in a fixed order, so a seeded market replays exactly.
"""

from __future__ import annotations

import math

import numpy as np

from core.calendar import SESSION_SECONDS
from core.ticks import DEPTH_LEVELS
from mocking.market.model import intraday_variance_weight
from mocking.market.spec import KIND_CE, KIND_EQ, KIND_FUT, KIND_INDEX, KIND_PE


def round_to_tick(price: np.ndarray, tick: np.ndarray | float) -> np.ndarray:
    """Nearest multiple of the tick size, without binary noise (0.15, not 0.15000000000000002)."""
    return np.round(np.round(price / tick) * tick, 6)


def floor_to_tick(price: np.ndarray, tick: np.ndarray) -> np.ndarray:
    return np.round(np.floor(price / tick + 1e-9) * tick, 6)


def ceil_to_tick(price: np.ndarray, tick: np.ndarray) -> np.ndarray:
    return np.round(np.ceil(price / tick - 1e-9) * tick, 6)


def trade_rate(kind: np.ndarray, m: np.ndarray, liquidity: np.ndarray, session_fraction: float) -> np.ndarray:
    """Trades per second: most near the money (`m`, the normalised moneyness) and at the open/close."""
    base = np.where((kind == KIND_CE) | (kind == KIND_PE), 0.02 + 0.5 * np.exp(-m * m), 0.8)
    season = float(intraday_variance_weight(session_fraction))
    return np.where(kind == KIND_INDEX, 0.0, base * liquidity * season)


def write_quotes(
    ticks: np.ndarray,
    rows: np.ndarray,
    *,
    theo: np.ndarray,
    m: np.ndarray,
    kind: np.ndarray,
    liquidity: np.ndarray,
    tick: np.ndarray,
    lot: np.ndarray,
    rng: np.random.Generator,
) -> None:
    """Bid and ask around the model price `theo`, five levels deep, and the book's total quantities.

    `m` is the normalised moneyness; an index has no book (NaN prices, zero quantities).
    """
    is_option = (kind == KIND_CE) | (kind == KIND_PE)
    # Spreads widen with distance from the money and for thinner underlyings; at least one tick.
    m2 = m * m
    frac = np.where(is_option, 0.0015 * (1.0 + 0.5 * m2 + 0.1 * m2 * m2) / np.sqrt(liquidity), 0.00003)
    half = np.maximum(theo * np.minimum(frac, 0.3), 0.5 * tick) + 0.5 * tick * (np.abs(m) > 3)
    bid = np.maximum(floor_to_tick(theo - half, tick), 0.0)
    ask = np.maximum(ceil_to_tick(theo + half, tick), np.round(bid + tick, 6))
    n = len(rows)
    gaps = np.cumsum(rng.integers(1, 3, size=(n, DEPTH_LEVELS)), axis=1) - 1  # in ticks, level 0 at the touch
    bid_px = np.round(bid[:, None] - gaps * tick[:, None], 6)
    ask_px = np.round(ask[:, None] + gaps * tick[:, None], 6)
    lots_scale = np.where(is_option, 1.0 + 40.0 * np.exp(-0.5 * m * m) * liquidity, 1.0 + 60.0 * liquidity)
    bid_qty = (rng.integers(1, 1 << 30, size=(n, DEPTH_LEVELS)) % np.ceil(lots_scale)[:, None] + 1) * lot[:, None]
    ask_qty = (rng.integers(1, 1 << 30, size=(n, DEPTH_LEVELS)) % np.ceil(lots_scale)[:, None] + 1) * lot[:, None]
    bid_live = bid_px > 0
    bid_qty = np.where(bid_live, bid_qty, 0)
    bid_px = np.where(bid_live, bid_px, 0.0)
    lots_b = bid_qty // lot[:, None]
    lots_a = ask_qty // lot[:, None]
    bid_orders = np.where(bid_live, 1 + rng.integers(0, 1 << 30, size=(n, DEPTH_LEVELS)) % np.maximum(lots_b, 1), 0)
    ask_orders = 1 + rng.integers(0, 1 << 30, size=(n, DEPTH_LEVELS)) % np.maximum(lots_a, 1)
    tradable = kind != KIND_INDEX
    ticks["bid_price"][rows] = np.where(tradable[:, None], bid_px, np.nan)
    ticks["ask_price"][rows] = np.where(tradable[:, None], ask_px, np.nan)
    ticks["bid_quantity"][rows] = np.where(tradable[:, None], bid_qty, 0)
    ticks["ask_quantity"][rows] = np.where(tradable[:, None], ask_qty, 0)
    ticks["bid_orders"][rows] = np.where(tradable[:, None], bid_orders, 0)
    ticks["ask_orders"][rows] = np.where(tradable[:, None], ask_orders, 0)
    depth_factor = rng.uniform(3.0, 9.0, size=(n, 2))
    ticks["total_buy_quantity"][rows] = np.where(tradable, bid_qty.sum(axis=1) * depth_factor[:, 0], 0).astype(np.int64)
    ticks["total_sell_quantity"][rows] = np.where(tradable, ask_qty.sum(axis=1) * depth_factor[:, 1], 0).astype(
        np.int64
    )


def write_trades(
    ticks: np.ndarray,
    turnover: np.ndarray,
    rows: np.ndarray,
    *,
    kind: np.ndarray,
    lot: np.ndarray,
    m: np.ndarray,
    trade_rate: np.ndarray,
    rng: np.random.Generator,
    now: float,
    dt: float,
) -> None:
    """Random trades at the quotes over `dt` seconds: last price, volume, VWAP, day range and OI.

    `trade_rate` is trades per second per row; `turnover` (price x quantity so far) is updated with them.
    """
    n = len(rows)
    # Trades over the step arrive as a Poisson count; each is a geometric number of lots (a stock trades
    # in shares, up to 50 at a time). Volume counts them all; the last print is one of them.
    trades = rng.poisson(trade_rate * dt)
    traded = trades > 0
    bid = ticks["bid_price"][rows, 0]
    ask = ticks["ask_price"][rows, 0]
    hit_bid = (rng.random(n) < 0.5) & (bid > 0)
    price = np.where(hit_bid, bid, ask)
    size = np.where(kind == KIND_EQ, 1 + rng.integers(0, 50, size=n), 1)
    p_lots = 0.35
    last_lots = rng.geometric(p_lots, size=n) * size
    # A sum of k geometric(p) draws is k + NegativeBinomial(k, p).
    more = np.maximum(trades - 1, 1)
    lots = last_lots + np.where(trades > 1, (more + rng.negative_binomial(more, p_lots)) * size, 0)
    qty = lots * lot
    t_rows = rows[traded]
    if len(t_rows):
        p, q = price[traded], qty[traded]
        ticks["last_price"][t_rows] = p
        ticks["last_traded_quantity"][t_rows] = (last_lots * lot)[traded]
        ticks["volume_traded"][t_rows] += q
        turnover[t_rows] += p * q
        ticks["average_traded_price"][t_rows] = np.round(
            turnover[t_rows] / np.maximum(ticks["volume_traded"][t_rows], 1), 2
        )
        ticks["high"][t_rows] = np.maximum(ticks["high"][t_rows], p)
        ticks["low"][t_rows] = np.minimum(ticks["low"][t_rows], p)
        ticks["last_trade_time"][t_rows] = int(now)
        # Open interest builds near the money (new positions), and is closed out far from it.
        derivative = (kind[traded] == KIND_FUT) | (kind[traded] == KIND_CE) | (kind[traded] == KIND_PE)
        build = np.exp(-0.5 * (m[traded] / 1.5) ** 2)
        change_lots = np.round(lots[traded] * (rng.random(len(t_rows)) * 1.6 - 0.8 + 0.6 * build))
        oi = np.maximum(ticks["oi"][t_rows] + (change_lots * lot[traded]).astype(np.int64), 0)
        oi = np.where(derivative, oi, 0)
        ticks["oi"][t_rows] = oi
        ticks["oi_day_high"][t_rows] = np.maximum(ticks["oi_day_high"][t_rows], oi)
        ticks["oi_day_low"][t_rows] = np.minimum(ticks["oi_day_low"][t_rows], oi)
    # A quote that moved through a stale last print drags it along (the market did trade there).
    last = ticks["last_price"][rows]
    tradable = kind != KIND_INDEX
    stale = tradable & ~traded & ((last > ask) | ((last < bid) & (bid > 0)))
    if stale.any():
        s_rows = rows[stale]
        new_last = np.clip(last[stale], bid[stale], ask[stale])
        ticks["last_price"][s_rows] = new_last
        ticks["high"][s_rows] = np.maximum(ticks["high"][s_rows], new_last)
        ticks["low"][s_rows] = np.minimum(ticks["low"][s_rows], new_last)
    idx = rows[kind == KIND_INDEX]
    if len(idx):
        lp = ticks["last_price"][idx]
        ticks["high"][idx] = np.maximum(ticks["high"][idx], lp)
        ticks["low"][idx] = np.minimum(ticks["low"][idx], lp)


def write_session_open(
    ticks: np.ndarray,
    turnover: np.ndarray,
    rows: np.ndarray,
    *,
    kind: np.ndarray,
    tick: np.ndarray,
    theo: np.ndarray,
    spot: np.ndarray,
    underlying_prev_close: np.ndarray,
    lot: np.ndarray,
    m: np.ndarray,
    draws: np.ndarray,
    previous_last: np.ndarray | None,
    fraction: float,
    trade_rate: np.ndarray,
    now: float,
) -> None:
    """The state of `rows` at a session's start, or as if they had traded since it began: close, open,
    day range, OI, volume and VWAP, at the session `fraction` (0..1) that has gone by.

    `draws` are four uniform draws per row; `previous_last` (a new session) carries the last prices
    into the close and keeps the open interest, without it (a first appearance) both are made up.
    """
    last = np.where(kind == KIND_INDEX, round_to_tick(spot, tick), round_to_tick(theo, tick))
    last = np.where((kind != KIND_INDEX) & (last < tick), tick, last)
    is_option = (kind == KIND_CE) | (kind == KIND_PE)
    new_session = previous_last is not None
    if previous_last is not None:
        prev_close = np.where(np.isfinite(previous_last), previous_last, last)
    else:
        # Index, stock and future closed where the underlying did; an option near its model price.
        spot_ratio = underlying_prev_close / spot
        z = np.sqrt(-2.0 * np.log(np.maximum(draws[:, 0], 1e-12))) * np.cos(2 * np.pi * draws[:, 1])
        prev_close = np.where(is_option, last * np.exp(0.08 * z), last * spot_ratio)
        prev_close = np.maximum(round_to_tick(prev_close, tick), tick)
    ticks["close"][rows] = prev_close
    ticks["last_price"][rows] = last
    # Open, high and low as if the session had run so far (only the last print is known to us).
    spread = np.where(is_option, 0.04, 0.004) * math.sqrt(max(fraction, 0.02))
    o = np.maximum(round_to_tick(last * (1 + spread * (draws[:, 2] - 0.5)), tick), tick)
    ticks["open"][rows] = o
    ticks["high"][rows] = np.maximum(np.maximum(o, last), round_to_tick(last * (1 + spread * draws[:, 3]), tick))
    ticks["low"][rows] = np.maximum(
        np.minimum(np.minimum(o, last), round_to_tick(last * (1 - spread * draws[:, 2]), tick)), tick
    )
    if new_session:
        oi = ticks["oi"][rows]
    else:
        oi_lots = np.where(
            kind == KIND_FUT, 60_000, np.where(is_option, 2_000 + 60_000 * np.exp(-0.5 * (m / 1.2) ** 2), 0)
        )
        oi = (np.round(oi_lots * (0.5 + draws[:, 3])) * lot).astype(np.int64)
    ticks["oi"][rows] = oi
    ticks["oi_day_high"][rows] = oi
    ticks["oi_day_low"][rows] = oi
    expected_lots = trade_rate * fraction * SESSION_SECONDS * 4.0
    volume = (np.round(expected_lots * (0.5 + draws[:, 2])) * lot).astype(np.int64)
    volume = np.where(kind == KIND_INDEX, 0, volume)
    ticks["volume_traded"][rows] = volume
    ticks["last_traded_quantity"][rows] = np.where(kind == KIND_INDEX, 0, lot)
    avg = np.round(0.5 * (ticks["high"][rows] + ticks["low"][rows]), 2)  # an average is in paise, not ticks
    ticks["average_traded_price"][rows] = np.where(kind == KIND_INDEX, np.nan, avg)
    turnover[rows] = volume * avg
    ticks["last_trade_time"][rows] = np.where(kind == KIND_INDEX, 0, int(now))
    ticks["exchange_timestamp"][rows] = int(now)
