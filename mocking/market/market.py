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

import threading
import time as _time
from collections.abc import Iterable
from datetime import date, datetime
from types import MappingProxyType

import numpy as np

from core.calendar import IST, SESSION_SECONDS
from core.greeks import SECONDS_PER_YEAR, expiry_epoch_seconds
from core.ticks import MODE_FULL, MODE_LTP, TickBatch, empty_ticks
from mocking.market.book import round_to_tick, trade_rate, write_quotes, write_session_open, write_trades
from mocking.market.clock import SessionClock
from mocking.market.history import Candle, mock_candles
from mocking.market.kite_ticks import blank_for_modes, ticks_to_kite_dicts
from mocking.market.model import option_model_prices
from mocking.market.snapshot import MarketSnapshot
from mocking.market.spec import (
    KIND_EQ,
    KIND_INDEX,
    InstrumentSpec,
    UnderlyingProfile,
    plausible_profile,
    stable_hash,
)
from mocking.market.underlying import UnderlyingPath

# Market time earlier than the last step by more than this is a new (replayed) session; a smaller step back
# (two callers with slightly different clocks) changes nothing.
REWIND_NEW_SESSION_S = 300.0


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
        self._underlyings: dict[str, UnderlyingPath] = {}
        self._und_slot: dict[str, int] = {}  # name -> index into _und_list (stable; slots are never reused)
        self._und_list: list[UnderlyingPath] = []
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
                    self._underlyings[key] = UnderlyingPath(
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
        fraction = self._session_fraction(day, now)  # day == self._session_day here
        for und in self._underlyings.values():
            und.advance(dt, fraction)
        self._reprice(rows, now)
        self._trade(rows, now, dt, fraction)

    def _session_fraction(self, day: date, now: float) -> float:
        """How much of `day`'s session has gone by at `now` (0..1)."""
        opened = self.clock.calendar.session_open(day).timestamp()
        return min(max((now - opened) / SESSION_SECONDS, 0.0), 1.0)

    def _reprice(self, rows: np.ndarray, now: float) -> None:
        """Model prices, IVs and two-sided quotes for `rows` at market time `now`."""
        if len(rows) == 0:
            return
        params = self._und_params()
        slot = self._und[rows]
        spot = params["spot"][slot]
        kind = self._kind[rows]
        tick = self._tick[rows]
        t = np.maximum(self._expiry_s[rows] - now, 0.0) / SECONDS_PER_YEAR
        theo, iv, m = option_model_prices(
            kind=kind,
            spot=spot,
            strike=self._strike[rows],
            t_years=np.where(np.isfinite(t), t, 0.0),
            rate=self.rate,
            div=params["div"][slot],
            base_vol=params["vol"][slot],
            skew=params["skew"][slot],
            smile=params["smile"][slot],
        )
        self._theo[rows] = theo
        self._iv[rows] = iv
        self._spot[rows] = spot
        self._m[rows] = m
        write_quotes(
            self._ticks,
            rows,
            theo=theo,
            m=m,
            kind=kind,
            liquidity=params["liquidity"][slot],
            tick=tick,
            lot=self._lot[rows],
            rng=self._rng,
        )
        # An index has no book: its value is the spot itself.
        idx = kind == KIND_INDEX
        if idx.any():
            self._ticks["last_price"][rows[idx]] = round_to_tick(spot[idx], tick[idx])
        self._ticks["exchange_timestamp"][rows] = int(now)

    def _trade_rate(self, rows: np.ndarray, fraction: float) -> np.ndarray:
        liquidity = self._und_params()["liquidity"][self._und[rows]]
        return trade_rate(self._kind[rows], self._m[rows], liquidity, fraction)

    def _open_rows(self, rows: np.ndarray, now: float, *, previous_last: np.ndarray | None = None) -> None:
        """Start of the session for `rows` (or their first appearance in it): close, open, OI, volume."""
        if len(rows) == 0:
            return
        day_key = self._session_day.toordinal() if self._session_day else 0
        tokens = self._ticks["instrument_token"][rows]
        # Draws keyed by (seed, token, day): the same instrument opens the same way whenever it appears.
        draws = np.array(
            [np.random.default_rng([self.seed, int(tok) & 0x7FFFFFFF, day_key]).random(4) for tok in tokens]
        ).reshape(len(rows), 4)
        fraction = self._session_fraction(self._session_day, now) if self._session_day else 0.0
        write_session_open(
            self._ticks,
            self._turnover,
            rows,
            kind=self._kind[rows],
            tick=self._tick[rows],
            theo=self._theo[rows],
            spot=self._spot[rows],
            underlying_prev_close=self._und_params()["prev_close"][self._und[rows]],
            lot=self._lot[rows],
            m=self._m[rows],
            draws=draws,
            previous_last=previous_last,
            fraction=fraction,
            trade_rate=self._trade_rate(rows, fraction),
            now=now,
        )

    def _trade(self, rows: np.ndarray, now: float, dt: float, fraction: float) -> None:
        if len(rows) == 0:
            return
        write_trades(
            self._ticks,
            self._turnover,
            rows,
            kind=self._kind[rows],
            lot=self._lot[rows],
            m=self._m[rows],
            trade_rate=self._trade_rate(rows, fraction),
            rng=self._rng,
            now=now,
            dt=dt,
        )

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
        blank_for_modes(out)
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
