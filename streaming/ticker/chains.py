"""Option chains the ticker streams: the registry built from the plan, and each chain's live book.

`build_chain_registry(instruments)` groups the planned option instruments by (underlying, expiry)
into `ChainSpec`s (sorted strikes, the call and put token per strike, the underlying's spot token).
`ChainBook` turns the market state into chain messages (docs/websocket.md): it recomputes the
analytics at most every `greeks_interval_s`, numbers messages (`seq`), and keeps the latest
snapshot so a delta carries only the sides that changed. Pure Python/numpy: no Django imports.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import numpy as np

from core import greeks as pricing
from core.calendar import expiry_datetime
from streaming.contract import BUILDUP_TAGS, SERIES_FIELDS, SIDE_FIELDS
from streaming.ticker.chain_analytics import (
    NO_BUILDUP,
    ChainAnalytics,
    OIHistory,
    atm_strike,
    compute_chain_analytics,
    expected_moves,
    iv_percentile,
    iv_rank,
    oi_buildup,
    quote_mid,
    straddle_premium,
    zero_gamma_level,
)
from streaming.ticker.chain_series import SessionSeries
from streaming.ticker.market_state import MarketState

SIDE_KEYS = ("CE", "PE")
# A side whose own data did not tick is re-sent when a Greek moved more than this (absolute, or 2%).
GREEK_TOLERANCE = {"iv": 5e-4, "delta": 5e-3, "gamma": 1e-5, "theta": 0.05, "vega": 0.05}
GREEK_RELATIVE_TOLERANCE = 0.02
_GREEK_ATOL = np.array(list(GREEK_TOLERANCE.values()))[:, None]  # a column: one row per Greek
# The gamma flip reprices the whole chain at ~80 hypothetical spots: a slow-moving level, so at most
# this often per chain (the rest of the analytics run at the Greeks cadence).
ZERO_GAMMA_INTERVAL_S = 5.0
_BUILDUP_WIRE: tuple[str | None, ...] = (*BUILDUP_TAGS, None)  # index = code; NO_BUILDUP (-1) is the last


class InstrumentLike(Protocol):
    instrument_token: int
    tradingsymbol: str
    underlying: str
    instrument_type: str
    strike: float
    expiry: dt.date | None
    segment: str


@dataclass(frozen=True)
class ChainSpec:
    underlying: str
    expiry: dt.date
    strikes: np.ndarray  # float64, ascending, unique
    ce_tokens: np.ndarray  # int64 per strike, 0 where the strike has no call in the plan
    pe_tokens: np.ndarray
    ce_symbols: tuple[str, ...]
    pe_symbols: tuple[str, ...]
    spot_token: int | None = None  # the index (or equity) the chain is written on, when planned

    @property
    def key(self) -> tuple[str, str]:
        return (self.underlying, self.expiry.isoformat())

    @property
    def tokens(self) -> np.ndarray:
        both = np.concatenate([self.ce_tokens, self.pe_tokens])
        return both[both > 0]

    @property
    def expires_at(self) -> dt.datetime:
        return expiry_datetime(self.expiry)


def build_chain_registry(instruments: Iterable[InstrumentLike]) -> dict[tuple[str, str], ChainSpec]:
    """Chains from planned instruments: every CE/PE with an expiry, grouped by (underlying, expiry).
    The spot token of an underlying is its index (segment INDICES) or else its equity."""
    options: dict[tuple[str, dt.date], list[InstrumentLike]] = {}
    spots: dict[str, tuple[int, int]] = {}  # underlying -> (preference, token)
    for inst in instruments:
        kind = inst.instrument_type
        if kind in ("CE", "PE") and inst.expiry is not None and inst.underlying:
            options.setdefault((inst.underlying.upper(), inst.expiry), []).append(inst)
        elif kind == "EQ" and inst.underlying:
            preference = 0 if inst.segment == "INDICES" else 1
            current = spots.get(inst.underlying.upper())
            if current is None or preference < current[0]:
                spots[inst.underlying.upper()] = (preference, int(inst.instrument_token))
    registry: dict[tuple[str, str], ChainSpec] = {}
    for (underlying, expiry), items in sorted(options.items()):
        strikes = np.array(sorted({float(i.strike) for i in items}), dtype=np.float64)
        index = {k: n for n, k in enumerate(strikes.tolist())}
        ce = np.zeros(len(strikes), dtype=np.int64)
        pe = np.zeros(len(strikes), dtype=np.int64)
        ce_sym = [""] * len(strikes)
        pe_sym = [""] * len(strikes)
        for inst in items:
            n = index[float(inst.strike)]
            if inst.instrument_type == "CE":
                ce[n], ce_sym[n] = int(inst.instrument_token), inst.tradingsymbol
            else:
                pe[n], pe_sym[n] = int(inst.instrument_token), inst.tradingsymbol
        spot = spots.get(underlying)
        spec = ChainSpec(
            underlying=underlying,
            expiry=expiry,
            strikes=strikes,
            ce_tokens=ce,
            pe_tokens=pe,
            ce_symbols=tuple(ce_sym),
            pe_symbols=tuple(pe_sym),
            spot_token=spot[1] if spot else None,
        )
        registry[spec.key] = spec
    return registry


def _rounded_scalar(value: float, digits: int) -> float | None:
    """One float rounded for the wire (None for NaN/inf); the header's seven values cost a numpy
    round trip each otherwise."""
    value = float(value)
    return round(value, digits) if math.isfinite(value) else None


@dataclass
class ChainBook:
    """The live view of one chain. `update()` decides whether there is something to publish and
    returns the delta (or None); `snapshot` is always the full, latest message."""

    spec: ChainSpec
    rate: float = 0.065
    greeks_interval_s: float = 0.2
    oi_window_minutes: float = 15.0
    prev_close_oi: dict[int, float] = field(default_factory=dict)  # token -> OI at the previous close
    seq: int = 0
    snapshot: dict[str, Any] | None = None
    analytics: ChainAnalytics | None = None
    greeks_computed_at: float = 0.0  # monotonic
    published_state_seq: int = 0  # the market state's seq the last message reflects
    _rows: dict[str, np.ndarray] = field(default_factory=dict)
    _spot_row: int = -1
    _oi_history: OIHistory = field(default_factory=lambda: OIHistory(interval_s=60.0, max_age_s=4 * 3600.0))
    _base_oi: np.ndarray | None = None
    _sent: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)  # side -> field -> values last sent
    # IV history: the bucket this chain stands for ("weekly"/"monthly", None: neither) and the past
    # sessions' closing ATM IVs of that bucket, set by the loop from what the history loader found.
    iv_bucket: str | None = None
    iv_buckets: tuple[str, ...] = ()
    iv_closes: np.ndarray = field(default_factory=lambda: np.empty(0))
    # The underlying's expiries -> [expiry, ATM IV, years to expiry]: one dict shared by the books of
    # an underlying (set by the loop), so each header carries the whole term structure.
    term_structure: dict[str, list[Any]] = field(default_factory=dict)
    series: SessionSeries = field(default_factory=SessionSeries)
    is_mock: bool = True
    market_ts: float = 0.0  # the market time of the last update (epoch s)
    zero_gamma: float = math.nan
    zero_gamma_at: float = -math.inf  # monotonic
    _series_payload: dict[str, Any] = field(default_factory=dict)
    _series_version: int = -1

    def set_iv_history(self, closes: list[float] | np.ndarray) -> None:
        self.iv_closes = np.sort(np.asarray(closes, dtype=np.float64))

    def reset_prev_close_oi(self, prev_close_oi: dict[int, float]) -> None:
        """A new session: count OI change against these closes (or the first OI seen from now on)."""
        self.prev_close_oi = prev_close_oi
        self._base_oi = None

    def bind(self, state: MarketState) -> None:
        """Resolve the chain's tokens to market-state rows (after the state registered them)."""
        self._rows = {"CE": state.rows_for(self.spec.ce_tokens), "PE": state.rows_for(self.spec.pe_tokens)}
        self._rows["CE"][self.spec.ce_tokens == 0] = -1
        self._rows["PE"][self.spec.pe_tokens == 0] = -1
        self._spot_row = int(state.rows_for([self.spec.spot_token])[0]) if self.spec.spot_token else -1
        self._all_rows = np.concatenate([self._rows["CE"], self._rows["PE"], [self._spot_row]])
        self._all_rows = self._all_rows[self._all_rows >= 0]

    def changed(self, state: MarketState) -> bool:
        """Whether any of the chain's instruments (or its spot) ticked since the last message."""
        if not len(self._all_rows):
            return False
        return bool(state.version[self._all_rows].max() > self.published_state_seq)

    def update(
        self,
        state: MarketState,
        *,
        now: float,
        monotonic: float,
        force: bool = False,
        market_now: float | None = None,
    ) -> dict[str, Any] | None:
        """Recompute (greeks at most every `greeks_interval_s`) and return a delta payload, or None
        when nothing visible changed. The snapshot is updated to include it. `force` builds the
        first snapshot of a chain even before any of its instruments ticked. `market_now` is the mock
        market's clock (epoch s): a mock chain's time to expiry counts from it (see `_market_time`)."""
        if not self.changed(state) and not (force and self.snapshot is None):
            return None
        spec = self.spec
        sides = self._sides_arrays(state)
        spot = float(state.ticks["last_price"][self._spot_row]) if self._spot_row >= 0 else math.nan
        is_mock = bool(state.is_mock[self._all_rows].any()) if len(self._all_rows) else True
        if is_mock:
            market_now = market_now if market_now is not None else self._market_time(state, now)
        else:
            market_now = now
        t = float(pricing.time_to_expiry_years(spec.expiry, dt.datetime.fromtimestamp(market_now, tz=dt.UTC)))
        previous = self.analytics
        if previous is None or monotonic - self.greeks_computed_at >= self.greeks_interval_s:
            analytics = compute_chain_analytics(
                strikes=spec.strikes,
                ce_price=sides["CE"]["ltp"],
                pe_price=sides["PE"]["ltp"],
                ce_mid=sides["CE"]["mid"],
                pe_mid=sides["PE"]["mid"],
                ce_oi=sides["CE"]["oi"],
                pe_oi=sides["PE"]["oi"],
                ce_volume=sides["CE"]["volume"],
                pe_volume=sides["PE"]["volume"],
                spot=spot,
                t=t,
                rate=self.rate,
            )
            self.greeks_computed_at = monotonic
        else:
            # Between recomputations (at most every `greeks_interval_s`) the chain analytics and Greeks
            # stay; the spot, the forward (the same basis) and the ATM strike that follows the forward
            # move with every message.
            live_spot = spot if math.isfinite(spot) and spot > 0 else previous.spot
            forward = previous.forward
            if math.isfinite(live_spot) and math.isfinite(previous.spot) and previous.spot > 0:
                forward = previous.forward * live_spot / previous.spot
            reference = forward if math.isfinite(forward) else live_spot
            analytics = replace(
                previous, spot=live_spot, forward=forward, atm_strike=atm_strike(spec.strikes, reference)
            )
        if monotonic - self.zero_gamma_at >= ZERO_GAMMA_INTERVAL_S and analytics is not previous:
            self.zero_gamma = zero_gamma_level(
                spec.strikes,
                analytics.ce["iv"],
                sides["CE"]["oi"],
                analytics.pe["iv"],
                sides["PE"]["oi"],
                spot=analytics.spot,
                t=t,
                rate=self.rate,
                div_yield=analytics.div_yield,
            )
            self.zero_gamma_at = monotonic
        self.analytics = analytics
        self.is_mock = is_mock
        self.market_ts = market_now
        self._oi_history.record(now, sides["CE"]["oi"], sides["PE"]["oi"], sides["CE"]["ltp"], sides["PE"]["ltp"])
        recent_ce, recent_pe = self._oi_history.change_since(
            now, self.oi_window_minutes, sides["CE"]["oi"], sides["PE"]["oi"]
        )
        window_start = self._oi_history.at_or_before(now - self.oi_window_minutes * 60.0)
        buildup: dict[str, np.ndarray] = {}
        for side in SIDE_KEYS:
            if window_start is None:
                buildup[side] = np.full(len(spec.strikes), float(NO_BUILDUP))
                continue
            _, ce_oi_then, pe_oi_then, ce_price_then, pe_price_then = window_start
            oi_then, price_then = (ce_oi_then, ce_price_then) if side == "CE" else (pe_oi_then, pe_price_then)
            codes = oi_buildup(sides[side]["ltp"], price_then, sides[side]["oi"], oi_then)
            buildup[side] = codes.astype(np.float64)
        base_ce, base_pe = self._base_oi_arrays(sides)
        inputs = {
            "CE": (spec.ce_symbols, spec.ce_tokens, analytics.ce, base_ce, recent_ce, buildup["CE"]),
            "PE": (spec.pe_symbols, spec.pe_tokens, analytics.pe, base_pe, recent_pe, buildup["PE"]),
        }
        snapshot = self.snapshot
        first = snapshot is None
        changed_sides: dict[str, dict[int, dict[str, Any]]] = {}
        for side in SIDE_KEYS:
            symbols, tokens, side_greeks, oi_change, recent, side_buildup = inputs[side]
            exists = tokens > 0
            if first:
                changed = exists
            else:
                # A side goes out when its own data ticked, when its Greeks moved past a tolerance
                # (the spot moves them all; tiny moves wait for the side's next tick), or when the
                # OI-window comparison rolled over.
                changed = exists & (
                    state.changed_since(self._rows[side], self.published_state_seq)
                    | self._greeks_moved(side, side_greeks)
                    | _differs(recent, self._sent.get(side, {}).get("oi_change_recent"))
                    | (side_buildup != self._sent.get(side, {}).get("buildup", side_buildup))
                )
            index = np.flatnonzero(changed)
            if len(index):
                dicts = self._side_dicts(
                    symbols, tokens, sides[side], side_greeks, oi_change, recent, side_buildup, index
                )
                changed_sides[side] = dict(zip(index.tolist(), dicts, strict=True))
                self._remember_sent(side, side_greeks, recent, side_buildup, index)
        last_tick_at = float(state.updated_at[self._all_rows].max()) if len(self._all_rows) else None
        header = {
            "spot": _rounded_scalar(analytics.spot, 2),
            "forward": _rounded_scalar(analytics.forward, 2),
            "atm_strike": _rounded_scalar(analytics.atm_strike, 2),
            "pcr_oi": _rounded_scalar(analytics.pcr_oi, 4),
            "pcr_volume": _rounded_scalar(analytics.pcr_volume, 4),
            "max_pain": _rounded_scalar(analytics.max_pain, 2),
            "time_to_expiry_years": _rounded_scalar(t, 6),
            "expires_at": spec.expires_at.isoformat(),
            "last_tick_at": last_tick_at,
            "oi_change_window_minutes": self.oi_window_minutes,
            **self._trader_header(
                analytics, sides, base_ce, base_pe, t, market_now, expiry_key=spec.expiry.isoformat()
            ),
        }
        rows, delta_rows = self._merge_rows(changed_sides.get("CE", {}), changed_sides.get("PE", {}))
        header_changed = snapshot is None or snapshot["header"] != header
        self.published_state_seq = state.seq
        if not delta_rows and not header_changed:
            return None
        self.seq += 1
        source = "mock" if is_mock else "live"
        common = {"underlying": spec.underlying, "expiry": spec.expiry.isoformat(), "seq": self.seq, "ts": now}
        self.snapshot = {**common, "source": source, "header": header, "rows": rows, "series": self._series_payload}
        return {**common, "source": source, "header": header, "rows": delta_rows}

    def _trader_header(
        self,
        analytics: ChainAnalytics,
        sides: dict[str, dict[str, np.ndarray]],
        ce_oi_change: np.ndarray,
        pe_oi_change: np.ndarray,
        t: float,
        market_now: float,
        *,
        expiry_key: str,
    ) -> dict[str, Any]:
        """The header's trader figures (docs/websocket.md): ATM IV and its percentile/rank, straddle
        and expected move, GEX, OI change totals, the term structure and the series' newest point."""
        strikes = self.spec.strikes
        straddle = straddle_premium(strikes, sides["CE"]["mid"], sides["PE"]["mid"], analytics.atm_strike)
        move, move_iv = expected_moves(forward=analytics.forward, straddle=straddle, atm_iv=analytics.atm_iv, t=t)
        ce_total = float(np.nansum(ce_oi_change)) if np.isfinite(ce_oi_change).any() else math.nan
        pe_total = float(np.nansum(pe_oi_change)) if np.isfinite(pe_oi_change).any() else math.nan
        self.term_structure[expiry_key] = [expiry_key, _rounded_scalar(analytics.atm_iv, 5), _rounded_scalar(t, 6)]
        if self.series.due(market_now):
            self.series.offer(
                market_now,
                (
                    _rounded_scalar(analytics.spot, 2),
                    _rounded_scalar(analytics.forward, 2),
                    _rounded_scalar(analytics.atm_strike, 2),
                    _rounded_scalar(analytics.atm_iv, 5),
                    _rounded_scalar(straddle, 2),
                    _rounded_scalar(analytics.pcr_oi, 4),
                    _rounded_scalar(ce_total, 0),
                    _rounded_scalar(pe_total, 0),
                    _rounded_scalar(analytics.net_gex, 0),
                ),
            )
        if self._series_version != self.series.version:
            self._series_payload = {"fields": SERIES_FIELDS, "points": self.series.points}
            self._series_version = self.series.version
        sessions = len(self.iv_closes)
        return {
            "atm_iv": _rounded_scalar(analytics.atm_iv, 5),
            "iv_bucket": self.iv_bucket,
            "iv_percentile": _rounded_scalar(iv_percentile(analytics.atm_iv, self.iv_closes), 1),
            "iv_rank": _rounded_scalar(iv_rank(analytics.atm_iv, self.iv_closes), 1),
            "iv_history_sessions": sessions if self.iv_bucket else 0,
            "straddle": _rounded_scalar(straddle, 2),
            "expected_move": _rounded_scalar(move, 2),
            "expected_move_iv": _rounded_scalar(move_iv, 2),
            "net_gex": _rounded_scalar(analytics.net_gex, 0),
            "zero_gamma": _rounded_scalar(self.zero_gamma, 2),
            "gex_call_wall": _rounded_scalar(analytics.gex_call_wall, 2),
            "gex_put_wall": _rounded_scalar(analytics.gex_put_wall, 2),
            "ce_oi_change": _rounded_scalar(ce_total, 0),
            "pe_oi_change": _rounded_scalar(pe_total, 0),
            "term_structure": [self.term_structure[key] for key in sorted(self.term_structure)],
            "series_last": self.series.points[-1] if self.series.points else None,
        }

    def _merge_rows(
        self, ce: dict[int, dict[str, Any]], pe: dict[int, dict[str, Any]]
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The new snapshot rows and the delta rows, given the changed side objects by strike index.

        Copy-on-write: unchanged row objects are shared with the previous snapshot (readers may still
        hold it), changed rows are new objects. A strike whose two sides both changed has one new
        row object, shared by the snapshot and the delta (nobody mutates a published row)."""
        strikes = self.spec.strikes.tolist()
        if self.snapshot is None:
            rows: list[dict[str, Any]] = [{"strike": k} for k in strikes]
        else:
            rows = list(self.snapshot["rows"])
        delta_rows: list[dict[str, Any]] = []
        for n in sorted(ce.keys() | pe.keys()):
            call, put = ce.get(n), pe.get(n)
            if call is not None and put is not None:
                row = rows[n] = {"strike": strikes[n], "CE": call, "PE": put}
                delta_rows.append(row)
                continue
            row = dict(rows[n])  # keeps the key order: strike, CE, PE
            if call is not None:
                row["CE"] = call
                delta_rows.append({"strike": strikes[n], "CE": call})
            else:
                row["PE"] = put
                delta_rows.append({"strike": strikes[n], "PE": put})
            rows[n] = row
        return rows, delta_rows

    def _market_time(self, state: MarketState, now: float) -> float:
        """A mock chain's market time when the caller has no clock: its newest exchange timestamp.
        The mock market plays a simulated session outside NSE hours (mocking.market.clock.SessionClock),
        so at night its prices are those of a past session and time to expiry must count from there,
        not from the wall clock. `now` until a tick carried a timestamp (ltp-mode ticks have none)."""
        if not len(self._all_rows):
            return now
        newest = int(state.ticks["exchange_timestamp"][self._all_rows].max())
        return float(newest) if newest > 0 else now

    def _greeks_moved(self, side: str, side_greeks: dict[str, np.ndarray]) -> np.ndarray:
        # All Greeks as one matrix (a row per Greek). `_remember_sent` records every Greek of a side
        # at once, so a side has sent all of them or none.
        new = np.stack([side_greeks[name] for name in GREEK_TOLERANCE])
        sent = self._sent.get(side)
        if not sent:
            return np.isfinite(new).any(axis=0)
        old = np.stack([sent[name] for name in GREEK_TOLERANCE])
        with np.errstate(invalid="ignore"):
            moved = (np.isnan(new) != np.isnan(old)) | (
                np.abs(new - old) > np.maximum(_GREEK_ATOL, GREEK_RELATIVE_TOLERANCE * np.abs(old))
            )
        return moved.any(axis=0)

    def _remember_sent(
        self,
        side: str,
        side_greeks: dict[str, np.ndarray],
        recent: np.ndarray,
        buildup: np.ndarray,
        index: np.ndarray,
    ) -> None:
        sent = self._sent.setdefault(side, {})
        n = len(self.spec.strikes)
        for name in (*GREEK_TOLERANCE, "oi_change_recent", "buildup"):
            if name not in sent:
                sent[name] = np.full(n, np.nan)
            if name == "oi_change_recent":
                source = recent
            elif name == "buildup":
                source = buildup
            else:
                source = side_greeks[name]
            sent[name][index] = source[index]

    def _sides_arrays(self, state: MarketState) -> dict[str, dict[str, np.ndarray]]:
        """`_side_arrays` of each side, gathered for both sides at once (half the numpy calls)."""
        ce_rows = self._rows["CE"]
        both = self._side_arrays(state, np.concatenate([ce_rows, self._rows["PE"]]))
        n = len(ce_rows)
        return {
            "CE": {name: values[:n] for name, values in both.items()},
            "PE": {name: values[n:] for name, values in both.items()},
        }

    def _side_arrays(self, state: MarketState, rows: np.ndarray) -> dict[str, np.ndarray]:
        ltp = state.column("last_price", rows)
        bid = _depth(state, rows, "bid_price")
        ask = _depth(state, rows, "ask_price")
        ticked = np.zeros(len(rows), dtype=bool)
        valid = rows >= 0
        ticked[valid] = state.version[rows[valid]] > 0
        return {
            "ltp": ltp,
            "bid": bid,
            "ask": ask,
            "mid": quote_mid(bid, ask, ltp),
            "close": state.column("close", rows),
            "oi": np.where(ticked, state.column("oi", rows), np.nan),
            "volume": np.where(ticked, state.column("volume_traded", rows), np.nan),
            "updated_at": _updated_at(state, rows, ticked),
            "ticked": ticked,
        }

    def _base_oi_arrays(self, sides: dict[str, dict[str, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
        """OI at the previous close: from `prev_close_oi` when known, else the first OI seen."""
        n = len(self.spec.strikes)
        if self._base_oi is None:
            self._base_oi = np.full(2 * n, np.nan)
            for k, token in enumerate(np.concatenate([self.spec.ce_tokens, self.spec.pe_tokens]).tolist()):
                if token in self.prev_close_oi:
                    self._base_oi[k] = self.prev_close_oi[token]
        current = np.concatenate([sides["CE"]["oi"], sides["PE"]["oi"]])
        fill = np.isnan(self._base_oi) & np.isfinite(current)
        self._base_oi[fill] = current[fill]
        return sides["CE"]["oi"] - self._base_oi[:n], sides["PE"]["oi"] - self._base_oi[n:]

    @staticmethod
    def _side_dicts(
        symbols: tuple[str, ...],
        tokens: np.ndarray,
        arrays: dict[str, np.ndarray],
        greeks: dict[str, np.ndarray],
        oi_change: np.ndarray,
        oi_change_recent: np.ndarray,
        buildup: np.ndarray,
        index: np.ndarray,
    ) -> list[dict[str, Any]]:
        """Side objects (docs/websocket.md) for the strikes at `index` (all of which have this side)."""
        # All numeric fields as one float64 matrix (a row per field, in _SIDE_FIELDS order): rounding,
        # the NaN check and the conversion to Python numbers are then a few numpy calls per side
        # instead of a few per field. Each value equals per-field rounding
        # (tests/streaming/ticker/test_chains.py checks it).
        ltp = arrays["ltp"][index]
        close = arrays["close"][index]
        values = np.empty((len(_SIDE_FIELDS), len(index)), dtype=np.float64)
        values[0] = ltp
        with np.errstate(invalid="ignore"):
            values[1] = np.where(close > 0, ltp - close, np.nan)
        values[2] = arrays["oi"][index]
        values[3] = oi_change[index]
        values[4] = oi_change_recent[index]
        values[5] = arrays["volume"][index]
        for n, name in enumerate(("iv", "delta", "gamma", "theta", "vega"), start=6):
            values[n] = greeks[name][index]
        values[11] = arrays["bid"][index]
        values[12] = arrays["ask"][index]
        values[13] = arrays["updated_at"][index]
        values[14] = greeks["gex"][index]
        bad = ~np.isfinite(values)
        ints = np.where(bad[_SIDE_INTS], 0.0, values[_SIDE_INTS]).astype(np.int64).tolist()
        # np.round(x, d) is rint(x * 10**d) / 10**d: done here for all rows at once, each row with its
        # own 10**d (the integer rows were taken above).
        with np.errstate(invalid="ignore", over="ignore"):
            np.multiply(values, _SIDE_SCALE, out=values)
            np.rint(values, out=values)
            np.divide(values, _SIDE_SCALE, out=values)
        columns: list[list[Any]] = values.tolist()
        columns[_SIDE_INTS] = ints
        if bad.any():
            count = len(index)
            for field_no in np.flatnonzero(bad.any(axis=1)).tolist():
                field_bad = bad[field_no]
                if field_bad.all():  # e.g. the OI window before it has history: the whole row
                    columns[field_no] = [None] * count
                else:
                    column = columns[field_no]
                    for n in np.flatnonzero(field_bad).tolist():
                        column[n] = None
        symbol_list = [symbols[n] for n in index.tolist()]
        tags = [_BUILDUP_WIRE[code] for code in buildup[index].astype(np.int64).tolist()]
        # A dict display per side (the keys in SIDE_FIELDS order, which a test checks): about
        # twice as fast as dict(zip(fields, values)) for the ~200 sides of a typical delta.
        return [
            {
                "instrument_token": token,
                "tradingsymbol": symbol,
                "ltp": last,
                "change": change,
                "oi": oi,
                "oi_change": oi_change_value,
                "oi_change_recent": oi_recent,
                "volume": volume,
                "iv": iv,
                "delta": delta,
                "gamma": gamma,
                "theta": theta,
                "vega": vega,
                "bid": bid,
                "ask": ask,
                "updated_at": updated_at,
                "gex": gex,
                "buildup": tag,
            }
            for (
                token,
                symbol,
                last,
                change,
                oi,
                oi_change_value,
                oi_recent,
                volume,
                iv,
                delta,
                gamma,
                theta,
                vega,
                bid,
                ask,
                updated_at,
                gex,
                tag,
            ) in zip(tokens[index].tolist(), symbol_list, *columns, tags, strict=True)
        ]


# The numeric fields of a side object (the wire's SIDE_FIELDS after token and symbol, before the
# build-up tag), in order: the rows of the matrix in _side_dicts. Rows [lo, hi) are rounded to
# `digits`, and _SIDE_INTS are integers (truncated toward zero, as int() does).
_SIDE_FIELDS = SIDE_FIELDS[2:-1]
_SIDE_ROUNDING = ((0, 2, 2), (6, 7, 5), (7, 8, 4), (8, 9, 6), (9, 11, 3), (11, 13, 2), (13, 14, 3), (14, 15, 0))
_SIDE_INTS = slice(2, 6)
_SIDE_SCALE = np.ones((len(_SIDE_FIELDS), 1))  # a column: 10**digits per row of the matrix
for _lo, _hi, _digits in _SIDE_ROUNDING:
    _SIDE_SCALE[_lo:_hi] = 10.0**_digits


def _differs(new: np.ndarray, old: np.ndarray | None) -> np.ndarray:
    """Elementwise "changed", with NaN equal to NaN."""
    if old is None:
        return np.isfinite(new)
    with np.errstate(invalid="ignore"):
        return (np.isnan(new) != np.isnan(old)) | ((new != old) & np.isfinite(new) & np.isfinite(old))


def _depth(state: MarketState, rows: np.ndarray, name: str) -> np.ndarray:
    """Best bid/ask (level 0); NaN where missing or zero (Kite sends 0 for an empty level)."""
    values = state.ticks[name][np.maximum(rows, 0), 0].astype(np.float64)
    values[(rows < 0) | ~(values > 0)] = np.nan
    return values


def _updated_at(state: MarketState, rows: np.ndarray, ticked: np.ndarray) -> np.ndarray:
    values = state.updated_at[np.maximum(rows, 0)].astype(np.float64)
    values[~ticked] = np.nan
    return values


__all__ = ["ChainBook", "ChainSpec", "build_chain_registry"]
