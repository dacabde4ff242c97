"""The mock market: one seeded model for underlyings, futures and options, producing Kite-shaped ticks.

Writers (`step`, `set_instruments`, `ticks` when it materialises or advances, `cleanup_expired`) hold a
lock and mutate the builder's arrays, then publish a new `MarketSnapshot` by swapping one reference.
Readers take `snapshot()` and see a consistent, read-only state without any lock.

Per-instrument state is bounded: at most `max_state` instruments are materialised; the least recently
requested one is evicted to make room (it starts afresh when requested again). Underlyings are few and
are kept for as long as an instrument refers to them, so the spot path never restarts.

`now` arguments are market time in epoch seconds (the SessionClock's time by default); a market time on
a new trading day, or more than five minutes earlier than the last step (a looping simulated session),
starts a new session: the last price becomes `close`, volume and day ranges reset, open interest carries
over. A time slightly earlier than the last step (another caller's clock) just reads the current state.
"""

from __future__ import annotations

import math
import threading
import time as _time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from types import MappingProxyType

import numpy as np

from core.calendar import IST, SESSION_SECONDS, TradingCalendar
from core.greeks import SECONDS_PER_YEAR, bsm_price, expiry_epoch_seconds
from core.ticks import DEPTH_LEVELS, MODE_FULL, MODE_LTP, MODE_QUOTE, TickBatch, empty_ticks
from mocking.market.clock import SessionClock
from mocking.market.history import Candle, mock_candles, underlying_close
from mocking.market.model import (
    TRADING_DAYS_PER_YEAR,
    gbm_log_return,
    intraday_variance_weight,
    surface_vol,
    vol_multiplier,
)
from mocking.market.spec import (
    KIND_CE,
    KIND_EQ,
    KIND_FUT,
    KIND_INDEX,
    KIND_PE,
    InstrumentSpec,
    UnderlyingProfile,
    plausible_profile,
    stable_hash,
)

_QUOTE_FIELDS = (
    "last_traded_quantity",
    "average_traded_price",
    "volume_traded",
    "total_buy_quantity",
    "total_sell_quantity",
    "open",
    "high",
    "low",
    "close",
)
_FULL_FIELDS = (
    "last_trade_time",
    "oi",
    "oi_day_high",
    "oi_day_low",
    "exchange_timestamp",
    "bid_quantity",
    "bid_price",
    "bid_orders",
    "ask_quantity",
    "ask_price",
    "ask_orders",
)
# Market time earlier than the last step by more than this is a new (replayed) session; a smaller step back
# (two callers with slightly different clocks) changes nothing.
REWIND_NEW_SESSION_S = 300.0
_FLOAT_FIELDS = {"last_price", "average_traded_price", "open", "high", "low", "close", "bid_price", "ask_price"}


def round_to_tick(price: np.ndarray, tick: np.ndarray) -> np.ndarray:
    """Nearest multiple of the tick size, without binary noise (0.15, not 0.15000000000000002)."""
    return np.round(np.round(price / tick) * tick, 6)


def _floor_to_tick(price: np.ndarray, tick: np.ndarray) -> np.ndarray:
    return np.round(np.floor(price / tick + 1e-9) * tick, 6)


def _ceil_to_tick(price: np.ndarray, tick: np.ndarray) -> np.ndarray:
    return np.round(np.ceil(price / tick - 1e-9) * tick, 6)


@dataclass(frozen=True)
class MarketSnapshot:
    """The whole mock market at one moment. Arrays are read-only; nothing here ever changes."""

    time: float  # market time, epoch seconds
    session_day: date | None
    tokens: np.ndarray  # sorted instrument tokens that have state
    rows: np.ndarray  # row of each token in `ticks` (same order as `tokens`)
    ticks: np.ndarray  # TICK_DTYPE, every materialised row in full mode
    theoretical: np.ndarray  # model (mid) price per row
    iv: np.ndarray  # model implied volatility per row (NaN for non-options)
    spot: np.ndarray  # the underlying's model spot per row
    underlying_spots: MappingProxyType  # name -> model spot
    specs: MappingProxyType  # token -> InstrumentSpec (every known instrument)

    def row_of(self, token: int) -> int | None:
        i = int(np.searchsorted(self.tokens, token))
        if i < len(self.tokens) and self.tokens[i] == token:
            return int(self.rows[i])
        return None

    def rows_of(self, tokens: np.ndarray) -> np.ndarray:
        """Rows for `tokens`, -1 where a token has no state."""
        tokens = np.asarray(tokens, dtype=np.int64)
        if len(self.tokens) == 0:
            return np.full(len(tokens), -1, dtype=np.int64)
        i = np.minimum(np.searchsorted(self.tokens, tokens), len(self.tokens) - 1)
        return np.where(self.tokens[i] == tokens, self.rows[i], -1)

    def tick(self, token: int) -> np.void | None:
        row = self.row_of(token)
        return None if row is None else self.ticks[row]

    def __len__(self) -> int:
        return len(self.tokens)


class _Underlying:
    def __init__(self, profile: UnderlyingProfile, seed: int) -> None:
        self.profile = profile
        self.rng = np.random.default_rng([seed, stable_hash("underlying", profile.name)])
        self.spot = profile.spot
        self.prev_close = profile.spot
        self.session_open = profile.spot
        self.vol_mult = 1.0

    def start_at(self, seed: int, day: date, calendar: TradingCalendar) -> None:
        """Begin where the mock history left off: the previous trading day's close."""
        self.prev_close = underlying_close(seed, self.profile, calendar.previous_trading_day(day))
        # The opening gap: about a third of a day's move (16 ~ sqrt(252)).
        self.spot = self.prev_close * math.exp(float(self.rng.normal(0.0, 0.3 * self.profile.vol / 16.0)))
        self.session_open = self.spot

    def new_session(self) -> None:
        self.prev_close = self.spot
        gap = float(self.rng.normal(0.0, 0.35 * self.profile.vol / math.sqrt(TRADING_DAYS_PER_YEAR)))
        self.spot *= math.exp(gap)
        self.session_open = self.spot
        self.vol_mult = 1.0

    def advance(self, dt: float, session_fraction: float) -> None:
        self.spot *= math.exp(gbm_log_return(self.rng, self.profile, dt, session_fraction, self.vol_mult))
        self.vol_mult = vol_multiplier(math.log(self.spot / self.session_open))


class MockMarket:
    """A seeded mock NSE session; see the module docstring for the threading and state rules."""

    def __init__(
        self, *, seed: int, clock: SessionClock | None = None, max_state: int = 5000, rate: float = 0.065
    ) -> None:
        if max_state < 1:
            raise ValueError("max_state must be at least 1")
        self.seed = int(seed)
        self.clock = clock or SessionClock()
        self.max_state = int(max_state)
        self.rate = float(rate)
        self._lock = threading.RLock()
        self._rng = np.random.default_rng([self.seed, stable_hash("market")])
        self._specs: dict[int, InstrumentSpec] = {}
        self._specs_view: MappingProxyType = MappingProxyType({})
        self._underlyings: dict[str, _Underlying] = {}
        self._und_slot: dict[str, int] = {}  # name -> index into _und_list (stable; slots are never reused)
        self._und_list: list[_Underlying] = []
        self._row_of: dict[int, int] = {}  # token -> row
        self._free_rows: list[int] = []
        self._next_row = 0
        self._use_counter = 0  # bumped per request; rows remember when they were last asked for (the LRU)
        self._time: float | None = None
        self._session_day: date | None = None
        cap = self.max_state
        self._ticks = empty_ticks(cap)
        self._kind = np.zeros(cap, dtype=np.int8)
        self._row_token = np.full(cap, -1, dtype=np.int64)  # -1: a free row
        self._last_used = np.zeros(cap, dtype=np.int64)
        self._und = np.zeros(cap, dtype=np.int64)  # the row's underlying slot
        self._strike = np.zeros(cap)
        self._expiry_s = np.zeros(cap)
        self._tick = np.full(cap, 0.05)
        self._lot = np.ones(cap, dtype=np.int64)
        self._turnover = np.zeros(cap)
        self._theo = np.full(cap, np.nan)
        self._iv = np.full(cap, np.nan)
        self._spot = np.full(cap, np.nan)
        self._m = np.zeros(cap)  # normalised moneyness: ln(K/F) / (atm vol sqrt(T))
        self._snapshot = self._build_snapshot()

    # ----------------------------------------------------------------------------------- instruments
    def set_instruments(self, specs: Iterable[InstrumentSpec]) -> None:
        """Add or replace instruments; an unknown underlying gets a plausible spot near its strikes."""
        specs = list(specs)
        with self._lock:
            for spec in specs:
                self._specs[int(spec.instrument_token)] = spec
            # Before the first step an underlying is (re)built from all its strikes so far; after it, only
            # a new underlying is, so a running spot path never restarts.
            keys = {spec.underlying_key for spec in specs}
            fresh = {k for k in keys if k not in self._underlyings or self._time is None}
            if fresh:
                strikes: dict[str, list[float]] = {}
                ticks: dict[str, float] = {}
                for spec in self._specs.values():
                    key = spec.underlying_key
                    if key not in fresh:
                        continue
                    if spec.is_option:
                        strikes.setdefault(key, []).append(float(spec.strike))
                    elif spec.kind in (KIND_EQ, KIND_INDEX):
                        ticks[key] = float(spec.tick_size)
                for key in fresh:
                    self._underlyings[key] = _Underlying(
                        plausible_profile(key, strikes.get(key), ticks.get(key, 0.05)), self.seed
                    )
                    if key in self._und_slot:
                        self._und_list[self._und_slot[key]] = self._underlyings[key]
                    else:
                        self._und_slot[key] = len(self._und_list)
                        self._und_list.append(self._underlyings[key])
            for spec in specs:
                row = self._row_of.get(int(spec.instrument_token))
                if row is not None:
                    self._set_static(row, spec)
            self._specs_view = MappingProxyType(dict(self._specs))
            self._publish()

    @property
    def specs(self) -> MappingProxyType:
        """Every known instrument by token (a read-only view as of the last change)."""
        return self._specs_view

    def _set_static(self, row: int, spec: InstrumentSpec) -> None:
        self._kind[row] = spec.kind
        self._und[row] = self._und_slot[spec.underlying_key]
        self._strike[row] = float(spec.strike or 0.0)
        self._expiry_s[row] = expiry_epoch_seconds(spec.expiry) if spec.expiry else np.inf
        self._tick[row] = float(spec.tick_size) if spec.tick_size and spec.tick_size > 0 else 0.05
        self._lot[row] = max(int(spec.lot_size or 1), 1)
        self._ticks["instrument_token"][row] = spec.instrument_token
        self._ticks["tradable"][row] = not spec.is_index

    def _allocate_row(self) -> int | None:
        """A free row, or the least recently used one not asked for in this request; None when full."""
        if self._free_rows:
            return self._free_rows.pop()
        if self._next_row < self.max_state:
            self._next_row += 1
            return self._next_row - 1
        age = np.where(self._row_token >= 0, self._last_used, np.iinfo(np.int64).max)
        row = int(np.argmin(age))
        if age[row] >= self._use_counter:
            return None
        del self._row_of[int(self._row_token[row])]
        self._row_token[row] = -1
        return row

    def _materialise(self, tokens: np.ndarray) -> bool:
        """Give state to known tokens that have none (True if any); evicts the least recently used."""
        self._use_counter += 1
        rows = self._snapshot.rows_of(tokens)  # the snapshot always matches the builder between calls
        self._last_used[rows[rows >= 0]] = self._use_counter
        new_rows: list[int] = []
        for token in dict.fromkeys(tokens[rows < 0].tolist()):
            spec = self._specs.get(token)
            if spec is None or token in self._row_of:
                continue
            row = self._allocate_row()
            if row is None:
                break
            self._row_of[token] = row
            self._row_token[row] = token
            self._last_used[row] = self._use_counter
            self._reset_row(row)
            self._set_static(row, spec)
            new_rows.append(row)
        if new_rows and self._time is not None:
            rows = np.asarray(new_rows, dtype=np.int64)
            self._reprice(rows, self._time)
            self._open_rows(rows, self._time)
        return bool(new_rows)

    def _used_rows(self) -> np.ndarray:
        return np.flatnonzero(self._row_token >= 0)

    def _und_params(self) -> dict[str, np.ndarray]:
        """Per-underlying-slot arrays, indexed by a row's `_und`."""
        unds = self._und_list
        return {
            "spot": np.array([u.spot for u in unds]),
            "vol": np.array([u.profile.vol * u.vol_mult for u in unds]),
            "div": np.array([u.profile.div_yield for u in unds]),
            "skew": np.array([u.profile.skew for u in unds]),
            "smile": np.array([u.profile.smile for u in unds]),
            "liquidity": np.array([u.profile.liquidity for u in unds]),
            "prev_close": np.array([u.prev_close for u in unds]),
        }

    def _reset_row(self, row: int) -> None:
        self._ticks[row] = empty_ticks(1)[0]
        self._turnover[row] = 0.0

    # ----------------------------------------------------------------------------------- the model
    def step(self, now: float | None = None) -> None:
        """Advance the model to market time `now` (epoch seconds; the clock's time by default)."""
        with self._lock:
            self._step(self.clock.timestamp() if now is None else float(now))
            self._publish()

    def _step(self, now: float) -> None:
        day = self.clock.calendar.last_session_day(datetime.fromtimestamp(now, IST))
        if self._time is None or day != self._session_day or now < self._time - REWIND_NEW_SESSION_S:
            first = self._time is None
            if not first and day != self._session_day:
                self._remove_expired(self.clock.calendar.session_open(day).timestamp())
            rows = self._used_rows()
            self._session_day = day
            self._time = now
            for und in self._underlyings.values():
                if first:
                    und.start_at(self.seed, day, self.clock.calendar)
                else:
                    und.new_session()
            previous_last = self._ticks["last_price"][rows].copy()
            self._reprice(rows, now)
            self._open_rows(rows, now, previous_last=None if first else previous_last)
            return
        dt = now - self._time
        self._time = now
        if dt <= 0:
            return
        rows = self._used_rows()
        fraction = self._session_fraction(now)
        for und in self._underlyings.values():
            und.advance(dt, fraction)
        self._reprice(rows, now)
        self._trade(rows, now, dt, fraction)

    def _session_fraction(self, now: float) -> float:
        opened = self.clock.calendar.session_open(self._session_day).timestamp()
        return min(max((now - opened) / SESSION_SECONDS, 0.0), 1.0)

    def _reprice(self, rows: np.ndarray, now: float) -> None:
        """Model prices, IVs and two-sided quotes for `rows` at market time `now`."""
        if len(rows) == 0:
            return
        params = self._und_params()
        slot = self._und[rows]
        spot = params["spot"][slot]
        base_vol = params["vol"][slot]
        div = params["div"][slot]
        skew = params["skew"][slot]
        smile = params["smile"][slot]
        liquidity = params["liquidity"][slot]
        kind = self._kind[rows]
        strike = self._strike[rows]
        tick = self._tick[rows]
        t = np.maximum(self._expiry_s[rows] - now, 0.0) / SECONDS_PER_YEAR
        t = np.where(np.isfinite(t), t, 0.0)
        forward = spot * np.exp((self.rate - div) * t)
        is_option = (kind == KIND_CE) | (kind == KIND_PE)
        with np.errstate(divide="ignore", invalid="ignore"):
            k = np.where(is_option, np.log(strike / forward), 0.0)
        vol = surface_vol(k, t, base_vol, skew, smile)
        theo = np.where(kind == KIND_FUT, forward, spot)
        if is_option.any():
            opt = np.flatnonzero(is_option)
            theo[opt] = bsm_price(spot[opt], strike[opt], t[opt], self.rate, div[opt], vol[opt], kind[opt] == KIND_CE)
        atm = surface_vol(np.zeros_like(t), t, base_vol, 0.0, 0.0)
        m = np.where(is_option, k / (atm * np.sqrt(np.maximum(t, 1e-6))), 0.0)
        self._theo[rows] = theo
        self._iv[rows] = np.where(is_option, vol, np.nan)
        self._spot[rows] = spot
        self._m[rows] = m

        # Spreads widen with distance from the money and for thinner underlyings; at least one tick.
        m2 = m * m
        frac = np.where(is_option, 0.0015 * (1.0 + 0.5 * m2 + 0.1 * m2 * m2) / np.sqrt(liquidity), 0.00003)
        half = np.maximum(theo * np.minimum(frac, 0.3), 0.5 * tick) + 0.5 * tick * (np.abs(m) > 3)
        bid = np.maximum(_floor_to_tick(theo - half, tick), 0.0)
        ask = np.maximum(_ceil_to_tick(theo + half, tick), np.round(bid + tick, 6))
        n = len(rows)
        rng = self._rng
        gaps = np.cumsum(rng.integers(1, 3, size=(n, DEPTH_LEVELS)), axis=1) - 1  # in ticks, level 0 at the touch
        bid_px = np.round(bid[:, None] - gaps * tick[:, None], 6)
        ask_px = np.round(ask[:, None] + gaps * tick[:, None], 6)
        lots_scale = np.where(is_option, 1.0 + 40.0 * np.exp(-0.5 * m * m) * liquidity, 1.0 + 60.0 * liquidity)
        lot = self._lot[rows]
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
        ticks = self._ticks
        ticks["bid_price"][rows] = np.where(tradable[:, None], bid_px, np.nan)
        ticks["ask_price"][rows] = np.where(tradable[:, None], ask_px, np.nan)
        ticks["bid_quantity"][rows] = np.where(tradable[:, None], bid_qty, 0)
        ticks["ask_quantity"][rows] = np.where(tradable[:, None], ask_qty, 0)
        ticks["bid_orders"][rows] = np.where(tradable[:, None], bid_orders, 0)
        ticks["ask_orders"][rows] = np.where(tradable[:, None], ask_orders, 0)
        depth_factor = rng.uniform(3.0, 9.0, size=(n, 2))
        ticks["total_buy_quantity"][rows] = np.where(tradable, bid_qty.sum(axis=1) * depth_factor[:, 0], 0).astype(
            np.int64
        )
        ticks["total_sell_quantity"][rows] = np.where(tradable, ask_qty.sum(axis=1) * depth_factor[:, 1], 0).astype(
            np.int64
        )
        # An index has no book: its value is the spot itself.
        idx = kind == KIND_INDEX
        if idx.any():
            ticks["last_price"][rows[idx]] = round_to_tick(spot[idx], tick[idx])
        ticks["exchange_timestamp"][rows] = int(now)

    def _trade_rate(self, rows: np.ndarray, fraction: float) -> np.ndarray:
        """Trades per second: most near the money and at the open/close."""
        kind = self._kind[rows]
        liquidity = self._und_params()["liquidity"][self._und[rows]]
        m = self._m[rows]
        base = np.where((kind == KIND_CE) | (kind == KIND_PE), 0.02 + 0.5 * np.exp(-m * m), 0.8)
        season = float(intraday_variance_weight(fraction))
        return np.where(kind == KIND_INDEX, 0.0, base * liquidity * season)

    def _open_rows(self, rows: np.ndarray, now: float, *, previous_last: np.ndarray | None = None) -> None:
        """Start of the session for `rows` (or their first appearance in it): close, open, OI, volume."""
        if len(rows) == 0:
            return
        ticks = self._ticks
        kind = self._kind[rows]
        tick = self._tick[rows]
        theo = self._theo[rows]
        lot = self._lot[rows]
        m = self._m[rows]
        day_key = self._session_day.toordinal() if self._session_day else 0
        n = len(rows)
        tokens = ticks["instrument_token"][rows]
        # Draws keyed by (seed, token, day): the same instrument opens the same way whenever it appears.
        draws = np.array(
            [np.random.default_rng([self.seed, int(tok) & 0x7FFFFFFF, day_key]).random(4) for tok in tokens]
        ).reshape(n, 4)
        last = np.where(kind == KIND_INDEX, round_to_tick(self._spot[rows], tick), round_to_tick(theo, tick))
        last = np.where((kind != KIND_INDEX) & (last < tick), tick, last)
        is_option = (kind == KIND_CE) | (kind == KIND_PE)
        new_session = previous_last is not None
        if new_session:
            prev_close = np.where(np.isfinite(previous_last), previous_last, last)
        else:
            # Index, stock and future closed where the underlying did; an option near its model price.
            spot_ratio = self._und_params()["prev_close"][self._und[rows]] / self._spot[rows]
            z = np.sqrt(-2.0 * np.log(np.maximum(draws[:, 0], 1e-12))) * np.cos(2 * np.pi * draws[:, 1])
            prev_close = np.where(is_option, last * np.exp(0.08 * z), last * spot_ratio)
            prev_close = np.maximum(round_to_tick(prev_close, tick), tick)
        ticks["close"][rows] = prev_close
        ticks["last_price"][rows] = last
        fraction = self._session_fraction(now) if self._session_day else 0.0
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
        rate = self._trade_rate(rows, fraction)
        expected_lots = rate * fraction * SESSION_SECONDS * 4.0
        volume = (np.round(expected_lots * (0.5 + draws[:, 2])) * lot).astype(np.int64)
        volume = np.where(kind == KIND_INDEX, 0, volume)
        ticks["volume_traded"][rows] = volume
        ticks["last_traded_quantity"][rows] = np.where(kind == KIND_INDEX, 0, lot)
        avg = np.round(0.5 * (ticks["high"][rows] + ticks["low"][rows]), 2)  # an average is in paise, not ticks
        ticks["average_traded_price"][rows] = np.where(kind == KIND_INDEX, np.nan, avg)
        self._turnover[rows] = volume * avg
        ticks["last_trade_time"][rows] = np.where(kind == KIND_INDEX, 0, int(now))
        ticks["exchange_timestamp"][rows] = int(now)

    def _trade(self, rows: np.ndarray, now: float, dt: float, fraction: float) -> None:
        """Random trades at the quotes over `dt` seconds: last price, volume, VWAP, day range and OI."""
        if len(rows) == 0:
            return
        ticks = self._ticks
        kind = self._kind[rows]
        rng = self._rng
        n = len(rows)
        # Trades over the step arrive as a Poisson count; each is a geometric number of lots (a stock trades
        # in shares, up to 50 at a time). Volume counts them all; the last print is one of them.
        trades = rng.poisson(self._trade_rate(rows, fraction) * dt)
        traded = trades > 0
        bid = ticks["bid_price"][rows, 0]
        ask = ticks["ask_price"][rows, 0]
        hit_bid = (rng.random(n) < 0.5) & (bid > 0)
        price = np.where(hit_bid, bid, ask)
        lot = self._lot[rows]
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
            self._turnover[t_rows] += p * q
            ticks["average_traded_price"][t_rows] = np.round(
                self._turnover[t_rows] / np.maximum(ticks["volume_traded"][t_rows], 1), 2
            )
            ticks["high"][t_rows] = np.maximum(ticks["high"][t_rows], p)
            ticks["low"][t_rows] = np.minimum(ticks["low"][t_rows], p)
            ticks["last_trade_time"][t_rows] = int(now)
            # Open interest builds near the money (new positions), and is closed out far from it.
            derivative = (kind[traded] == KIND_FUT) | (kind[traded] == KIND_CE) | (kind[traded] == KIND_PE)
            m = self._m[t_rows]
            build = np.exp(-0.5 * (m / 1.5) ** 2)
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

    # ----------------------------------------------------------------------------------- publishing
    def _build_snapshot(self) -> MarketSnapshot:
        rows = self._used_rows()
        tokens = self._row_token[rows]
        order = np.argsort(tokens, kind="stable")

        def frozen(a: np.ndarray) -> np.ndarray:
            c = a.copy()
            c.flags.writeable = False
            return c

        return MarketSnapshot(
            time=self._time if self._time is not None else float("nan"),
            session_day=self._session_day,
            tokens=frozen(tokens[order]),
            rows=frozen(rows[order]),
            ticks=frozen(self._ticks),
            theoretical=frozen(self._theo),
            iv=frozen(self._iv),
            spot=frozen(self._spot),
            underlying_spots=MappingProxyType({k: u.spot for k, u in self._underlyings.items()}),
            specs=self._specs_view,
        )

    def _publish(self) -> None:
        self._snapshot = self._build_snapshot()  # one reference swap: readers see old or new, never half

    def snapshot(self) -> MarketSnapshot:
        """The latest published state; immutable, safe to read from any thread without a lock."""
        return self._snapshot

    # ----------------------------------------------------------------------------------- ticks
    def ticks(self, tokens: np.ndarray, modes: np.ndarray, now: float | None = None) -> TickBatch:
        """Ticks for the known `tokens` (in request order; unknown tokens are skipped) in their `modes`.

        Advances the model to `now` (market epoch seconds; the clock's time by default) first.
        """
        tokens = np.asarray(tokens, dtype=np.int64).ravel()
        modes = np.broadcast_to(np.asarray(modes, dtype=np.int8), tokens.shape)
        if ((modes < MODE_LTP) | (modes > MODE_FULL)).any():
            raise ValueError("modes must be MODE_LTP, MODE_QUOTE or MODE_FULL")
        with self._lock:
            changed = self._materialise(tokens)
            target = self.clock.timestamp() if now is None else float(now)
            if self._time is None or target > self._time or self._session_changed(target):
                self._step(target)
                changed = True
            if changed:
                self._publish()
            snap = self._snapshot
        rows = snap.rows_of(tokens)
        keep = rows >= 0
        out = snap.ticks[rows[keep]].copy()
        out["mode"] = modes[keep]
        _blank_for_modes(out)
        return TickBatch(ticks=out, received_at=_time.time(), is_mock=True, source="mock")

    def _session_changed(self, now: float) -> bool:
        day = self.clock.calendar.last_session_day(datetime.fromtimestamp(now, IST))
        return day != self._session_day or (self._time is not None and now < self._time - REWIND_NEW_SESSION_S)

    def tick_dicts(self, tokens: np.ndarray, modes: np.ndarray, now: float | None = None) -> list[dict]:
        """Ticks as the kiteconnect Python client's KiteTicker delivers them, plus "is_mock": True."""
        return ticks_to_kite_dicts(self.ticks(tokens, modes, now).ticks)

    # ----------------------------------------------------------------------------------- housekeeping
    def cleanup_expired(self, now: datetime) -> int:
        """Forget contracts that expired (15:30 IST on their expiry day) before `now`; returns how many."""
        with self._lock:
            removed = self._remove_expired(now.timestamp())
            self._publish()
        return removed

    def _remove_expired(self, cutoff: float) -> int:
        """Drop contracts expiring at or before `cutoff` (epoch s); a new session does this by itself."""
        expired = [
            tok for tok, spec in self._specs.items() if spec.expiry and expiry_epoch_seconds(spec.expiry) <= cutoff
        ]
        for tok in expired:
            del self._specs[tok]
            row = self._row_of.pop(tok, None)
            if row is not None:
                self._reset_row(row)
                self._row_token[row] = -1
                self._free_rows.append(row)
        if expired:
            self._specs_view = MappingProxyType(dict(self._specs))
        used = {s.underlying_key for s in self._specs.values()}
        for name in [n for n in self._underlyings if n not in used]:
            del self._underlyings[name]  # its slot stays (rows hold slot numbers); it no longer steps
        return len(expired)

    def candles(
        self, spec_or_token: InstrumentSpec | int, interval: str, start: datetime, end: datetime
    ) -> list[Candle]:
        """Historical candles from the same model; see mocking.market.history.mock_candles."""
        spec = spec_or_token if isinstance(spec_or_token, InstrumentSpec) else self._specs.get(int(spec_or_token))
        if spec is None:
            return []
        return mock_candles(
            spec,
            interval,
            start,
            end,
            seed=self.seed,
            calendar=self.clock.calendar,
            rate=self.rate,
            profile=self._profile_for(spec),
        )

    def _profile_for(self, spec: InstrumentSpec) -> UnderlyingProfile:
        """The live model's profile for the spec's underlying, so history and live agree."""
        und = self._underlyings.get(spec.underlying_key)
        if und is not None:
            return und.profile
        strikes = [s.strike for s in self._specs.values() if s.is_option and s.underlying_key == spec.underlying_key]
        return plausible_profile(spec.underlying_key, strikes or ([spec.strike] if spec.is_option else None))

    def __len__(self) -> int:
        return len(self._row_of)


def _blank_for_modes(ticks: np.ndarray) -> None:
    """Clear the fields a tick's mode does not carry (as the wire would)."""
    not_full = ticks["mode"] != MODE_FULL
    not_quote = ticks["mode"] == MODE_LTP
    for name, mask in ((n, not_full) for n in _FULL_FIELDS):
        if mask.any():
            ticks[name][mask] = np.nan if name in _FLOAT_FIELDS else 0
    for name in _QUOTE_FIELDS:
        if not_quote.any():
            ticks[name][not_quote] = np.nan if name in _FLOAT_FIELDS else 0
    # An index carries no trade fields in any mode, and its quote has no exchange timestamp.
    idx = ~ticks["tradable"]
    if idx.any():
        for name in ("last_traded_quantity", "volume_traded", "total_buy_quantity", "total_sell_quantity"):
            ticks[name][idx] = 0
        ticks["average_traded_price"][idx] = np.nan
        for name in ("last_trade_time", "oi", "oi_day_high", "oi_day_low"):
            ticks[name][idx] = 0


def ticks_to_kite_dicts(ticks: np.ndarray) -> list[dict]:
    """TICK_DTYPE rows -> the dicts kiteconnect's KiteTicker emits (same keys and value types)."""
    out: list[dict] = []
    for row in ticks:
        mode = int(row["mode"])
        tradable = bool(row["tradable"])
        d: dict = {
            "tradable": tradable,
            "mode": ("ltp", "quote", "full")[mode],
            "instrument_token": int(row["instrument_token"]),
            "last_price": float(row["last_price"]),
        }
        if mode >= MODE_QUOTE:
            if tradable:
                d["last_traded_quantity"] = int(row["last_traded_quantity"])
                d["average_traded_price"] = float(row["average_traded_price"])
                d["volume_traded"] = int(row["volume_traded"])
                d["total_buy_quantity"] = int(row["total_buy_quantity"])
                d["total_sell_quantity"] = int(row["total_sell_quantity"])
            d["ohlc"] = {
                "high": float(row["high"]),
                "low": float(row["low"]),
                "open": float(row["open"]),
                "close": float(row["close"]),
            }
            close = d["ohlc"]["close"]
            d["change"] = (d["last_price"] - close) * 100 / close if close != 0 else 0
        if mode == MODE_FULL:
            if tradable:
                d["last_trade_time"] = datetime.fromtimestamp(int(row["last_trade_time"]))
                d["oi"] = int(row["oi"])
                d["oi_day_high"] = int(row["oi_day_high"])
                d["oi_day_low"] = int(row["oi_day_low"])
            d["exchange_timestamp"] = datetime.fromtimestamp(int(row["exchange_timestamp"]))
            if tradable:
                d["depth"] = {
                    "buy": [
                        {
                            "quantity": int(row["bid_quantity"][i]),
                            "price": float(row["bid_price"][i]),
                            "orders": int(row["bid_orders"][i]),
                        }
                        for i in range(DEPTH_LEVELS)
                    ],
                    "sell": [
                        {
                            "quantity": int(row["ask_quantity"][i]),
                            "price": float(row["ask_price"][i]),
                            "orders": int(row["ask_orders"][i]),
                        }
                        for i in range(DEPTH_LEVELS)
                    ],
                }
        d["is_mock"] = True
        out.append(d)
    return out
