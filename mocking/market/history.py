"""Mock historical candles from the same model as the live mock market (for when no Kite login exists).

Every candle is a pure function of (seed, instrument, day): the underlying's daily level follows a
mean-reverting log process around its profile level (a GBM locally, no drift over years), each trading
day's minute path is a seasonality-shaped Brownian bridge from the open to that day's close, and
derivatives are priced from it with the same IV surface as the live market. Coarser intervals are
aggregated from the minute candles, so every interval agrees with every other.

Candles cover market hours only (09:15-15:30 IST on trading days); options exist for 95 days before
their expiry. Rows are `(timestamp (aware IST), open, high, low, close, volume, oi or None)`.
"""

from __future__ import annotations

import functools
import math
from datetime import date, datetime, timedelta

import numpy as np
from scipy.signal import lfilter

from core.calendar import IST, SESSION_OPEN, TradingCalendar
from core.greeks import SECONDS_PER_YEAR, bsm_price, expiry_epoch_seconds
from mocking.market.book import round_to_tick
from mocking.market.model import TRADING_DAYS_PER_YEAR, intraday_variance_weight, surface_vol, vol_multiplier
from mocking.market.spec import (
    KIND_CE,
    KIND_EQ,
    KIND_FUT,
    KIND_INDEX,
    InstrumentSpec,
    UnderlyingProfile,
    plausible_profile,
    stable_hash,
)

INTERVAL_MINUTES = {
    "minute": 1,
    "3minute": 3,
    "5minute": 5,
    "10minute": 10,
    "15minute": 15,
    "30minute": 30,
    "60minute": 60,
    "day": 0,
}
MINUTES_PER_SESSION = 375
OPTION_LISTING_DAYS = 95
_MEAN_REVERSION = math.exp(-1.0 / 20.0)  # stationary spread ~2.6% for a 13% vol index
_WARMUP_YEARS = 4

Candle = tuple[datetime, float, float, float, float, int, int | None]


@functools.lru_cache(maxsize=256)
def _year_levels(seed: int, name: str, vol: float, year: int) -> np.ndarray:
    """Log deviation of the underlying from its profile level at the close of every day of `year`."""
    shocks = []
    for y in range(year - _WARMUP_YEARS, year + 1):
        rng = np.random.default_rng([seed, stable_hash("daily", name), y % 10_000])
        shocks.append(rng.standard_normal(366) * vol / math.sqrt(TRADING_DAYS_PER_YEAR))
    path = lfilter([1.0], [1.0, -_MEAN_REVERSION], np.concatenate(shocks))
    return path[-366:]


def _close_level(seed: int, name: str, vol: float, day: date) -> float:
    return float(_year_levels(seed, name, vol, day.year)[day.timetuple().tm_yday - 1])


def underlying_close(seed: int, profile: UnderlyingProfile, day: date) -> float:
    """The mock history's closing level of an underlying on `day`."""
    return profile.spot * math.exp(_close_level(seed, profile.name, profile.vol, day))


def _previous_day(day: date) -> date:
    day -= timedelta(days=1)
    return day


@functools.lru_cache(maxsize=4096)
def _minute_path(seed: int, name: str, vol: float, spot: float, day: date) -> tuple[np.ndarray, ...]:
    """Underlying minute candles (open, high, low, close arrays) and volume weights for one trading day."""
    close_log = math.log(spot) + _close_level(seed, name, vol, day)
    prev_log = math.log(spot) + _close_level(seed, name, vol, _previous_day(day))
    rng = np.random.default_rng([seed, stable_hash("intraday", name), day.toordinal()])
    sigma_day = vol / math.sqrt(TRADING_DAYS_PER_YEAR)
    open_log = prev_log + 0.5 * (close_log - prev_log) + rng.normal(0.0, 0.3 * sigma_day)
    fractions = (np.arange(MINUTES_PER_SESSION) + 0.5) / MINUTES_PER_SESSION
    var = intraday_variance_weight(fractions) * sigma_day**2 / MINUTES_PER_SESSION
    steps = rng.standard_normal(MINUTES_PER_SESSION) * np.sqrt(var)
    walk = np.cumsum(steps)
    # Brownian bridge: spread the miss in proportion to each minute's variance, so the shape survives.
    path = open_log + walk - np.cumsum(var) / var.sum() * (walk[-1] - (close_log - open_log))
    o = np.concatenate(([open_log], path[:-1]))
    c = path
    wiggle = np.abs(rng.standard_normal((2, MINUTES_PER_SESSION))) * np.sqrt(var) * 0.6
    h = np.maximum(o, c) + wiggle[0]
    lo = np.minimum(o, c) - wiggle[1]
    volume_weight = intraday_variance_weight(fractions) * rng.lognormal(0.0, 0.4, MINUTES_PER_SESSION)
    arrays = (np.exp(o), np.exp(h), np.exp(lo), np.exp(c), volume_weight)
    for a in arrays:
        a.flags.writeable = False  # cached: shared by every caller
    return arrays


def mock_candles(
    spec: InstrumentSpec,
    interval: str,
    start: datetime,
    end: datetime,
    *,
    seed: int,
    calendar: TradingCalendar | None = None,
    rate: float = 0.065,
    strikes: list[float] | None = None,
    profile: UnderlyingProfile | None = None,
) -> list[Candle]:
    """Candles of `spec` at `interval` with timestamps in [start, end] (aware datetimes).

    The underlying's `profile` defaults to `plausible_profile` of its name (and `strikes`, for an
    underlying the mock does not know).
    """
    if interval not in INTERVAL_MINUTES:
        raise ValueError(f"unknown interval {interval!r}; expected one of {', '.join(INTERVAL_MINUTES)}")
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("start and end must be timezone-aware")
    calendar = calendar or TradingCalendar()
    name = spec.underlying_key
    if profile is None:
        profile = plausible_profile(name, strikes or ([float(spec.strike)] if spec.is_option else None))
    kind = spec.kind
    tick = float(spec.tick_size) if spec.tick_size and spec.tick_size > 0 else 0.05
    lot = max(int(spec.lot_size or 1), 1)
    first_day = start.astimezone(IST).date()
    last_day = end.astimezone(IST).date()
    if spec.expiry is not None:
        last_day = min(last_day, spec.expiry)
        if spec.is_option:
            first_day = max(first_day, spec.expiry - timedelta(days=OPTION_LISTING_DAYS))
    step = INTERVAL_MINUTES[interval]
    out: list[Candle] = []
    expiry_s = expiry_epoch_seconds(spec.expiry) if spec.expiry else math.inf
    for day in calendar.trading_days(first_day, last_day):
        so, sh, sl, sc, vw = _minute_path(seed, name, profile.vol, profile.spot, day)
        opened = datetime.combine(day, SESSION_OPEN, tzinfo=IST)
        minute_s = opened.timestamp() + 60.0 * np.arange(MINUTES_PER_SESSION)
        o, h, lo, c = _instrument_prices(spec, kind, so, sh, sl, sc, minute_s, expiry_s, rate, profile)
        o, h, lo, c = (np.maximum(round_to_tick(a, tick), tick if kind != KIND_INDEX else 0.0) for a in (o, h, lo, c))
        h = np.maximum.reduce([h, o, c])
        lo = np.minimum.reduce([lo, o, c])
        volume, oi = _volume_and_oi(seed, spec, kind, day, vw, lot, profile.liquidity, so[0], minute_s, expiry_s)
        if step == 0:
            groups = [np.arange(MINUTES_PER_SESSION)]
            stamps = [datetime.combine(day, datetime.min.time(), tzinfo=IST)]
        else:
            groups = [np.arange(i, min(i + step, MINUTES_PER_SESSION)) for i in range(0, MINUTES_PER_SESSION, step)]
            stamps = [opened + timedelta(minutes=int(g[0])) for g in groups]
        for stamp, g in zip(stamps, groups, strict=True):
            if stamp < start or stamp > end:
                continue
            out.append(
                (
                    stamp,
                    float(o[g[0]]),
                    float(h[g].max()),
                    float(lo[g].min()),
                    float(c[g[-1]]),
                    int(volume[g].sum()),
                    None if oi is None else int(oi[g[-1]]),
                )
            )
    return out


def _instrument_prices(
    spec: InstrumentSpec,
    kind: int,
    so: np.ndarray,
    sh: np.ndarray,
    sl: np.ndarray,
    sc: np.ndarray,
    minute_s: np.ndarray,
    expiry_s: float,
    rate: float,
    profile: UnderlyingProfile,
) -> tuple[np.ndarray, ...]:
    if kind in (KIND_INDEX, KIND_EQ):
        return so, sh, sl, sc
    t = np.maximum(expiry_s - minute_s, 60.0) / SECONDS_PER_YEAR
    carry = np.exp((rate - profile.div_yield) * t)
    if kind == KIND_FUT:
        return so * carry, sh * carry, sl * carry, sc * carry
    is_call = kind == KIND_CE
    strike = float(spec.strike)

    def price(spot: np.ndarray) -> np.ndarray:
        vol = surface_vol(np.log(strike / (spot * carry)), t, profile.vol, profile.skew, profile.smile)
        return bsm_price(spot, strike, t, rate, profile.div_yield, vol, is_call)

    po, pc = price(so), price(sc)
    p_hi, p_lo = price(sh), price(sl)
    # A call is highest at the spot's high, a put at its low; max/min covers both without a branch.
    return po, np.maximum.reduce([p_hi, p_lo, po, pc]), np.minimum.reduce([p_hi, p_lo, po, pc]), pc


def _volume_and_oi(
    seed: int,
    spec: InstrumentSpec,
    kind: int,
    day: date,
    volume_weight: np.ndarray,
    lot: int,
    liquidity: float,
    spot_open: float,
    minute_s: np.ndarray,
    expiry_s: float,
) -> tuple[np.ndarray, np.ndarray | None]:
    if kind == KIND_INDEX:
        return np.zeros(MINUTES_PER_SESSION, dtype=np.int64), None
    rng = np.random.default_rng([seed, stable_hash("volume", spec.instrument_token), day.toordinal()])
    if kind == KIND_EQ:
        lots_per_min = 400.0 * liquidity
    else:
        strike = float(spec.strike or 0.0)
        moneyness = abs(math.log(strike / spot_open)) if spec.is_option and strike > 0 else 0.0
        near = math.exp(-0.5 * (moneyness / 0.03) ** 2)
        lots_per_min = (5.0 + 300.0 * near) * liquidity if spec.is_option else 150.0 * liquidity
    volume = (rng.poisson(lots_per_min * volume_weight) * lot).astype(np.int64)
    if kind == KIND_EQ:
        return volume, None
    # Open interest builds from listing towards expiry week and drifts within the day with the trading.
    days_left = max((expiry_s - minute_s[0]) / 86400.0, 0.0)
    life = math.exp(-days_left / 30.0)
    base_lots = (2_000 + 60_000 * life * (near if spec.is_option else 1.0)) * liquidity
    drift = np.cumsum(rng.normal(0.02, 0.5, MINUTES_PER_SESSION)) * lots_per_min * 0.05
    oi = np.maximum(np.round(base_lots + drift), 0).astype(np.int64) * lot
    return volume, oi


def mock_atm_iv_close(seed: int, profile: UnderlyingProfile, day: date, expiry: date) -> float:
    """The mock ATM IV (at the forward) of `expiry` at the close of `day`: the IV surface the options
    are priced on, scaled as the live mock market scales it (`vol_multiplier` of the day's move from
    the open), so a closing IV history compares like with like against the live mock chain."""
    so, _, _, sc, _ = _minute_path(seed, profile.name, profile.vol, profile.spot, day)
    closed = datetime.combine(day, SESSION_OPEN, tzinfo=IST) + timedelta(minutes=MINUTES_PER_SESSION)
    t = max(expiry_epoch_seconds(expiry) - closed.timestamp(), 60.0) / SECONDS_PER_YEAR
    base = profile.vol * vol_multiplier(math.log(float(sc[-1]) / float(so[0])))
    return float(surface_vol(np.array([0.0]), np.array([t]), base, profile.skew, profile.smile)[0])
