"""Each option chain's live book (the chains themselves come from `streaming.ticker.chain_registry`).

`ChainBook` turns the market state into chain messages (docs/websocket.md): it recomputes the
analytics at most every `greeks_interval_s`, numbers messages (`seq`), and keeps the latest
snapshot so a delta carries only the sides that changed. Pure Python/numpy: no Django imports.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from core import greeks as pricing
from streaming.contract import SERIES_FIELDS
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
    straddle_premium,
    zero_gamma_level,
)
from streaming.ticker.chain_registry import ChainSpec, build_chain_registry
from streaming.ticker.chain_series import SessionSeries
from streaming.ticker.chain_sides import differs, side_arrays, side_dicts
from streaming.ticker.market_state import MarketState

SIDE_KEYS = ("CE", "PE")
# A side whose own data did not tick is re-sent when a Greek moved more than this (absolute, or 2%).
GREEK_TOLERANCE = {"iv": 5e-4, "delta": 5e-3, "gamma": 1e-5, "theta": 0.05, "vega": 0.05}
GREEK_RELATIVE_TOLERANCE = 0.02
_GREEK_ATOL = np.array(list(GREEK_TOLERANCE.values()))[:, None]  # a column: one row per Greek
# The gamma flip reprices the whole chain at ~80 hypothetical spots: a slow-moving level, so at most
# this often per chain (the rest of the analytics run at the Greeks cadence).
ZERO_GAMMA_INTERVAL_S = 5.0


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
                    | differs(recent, self._sent.get(side, {}).get("oi_change_recent"))
                    | (side_buildup != self._sent.get(side, {}).get("buildup", side_buildup))
                )
            index = np.flatnonzero(changed)
            if len(index):
                dicts = side_dicts(symbols, tokens, sides[side], side_greeks, oi_change, recent, side_buildup, index)
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
        both = side_arrays(state, np.concatenate([ce_rows, self._rows["PE"]]))
        n = len(ce_rows)
        return {
            "CE": {name: values[:n] for name, values in both.items()},
            "PE": {name: values[n:] for name, values in both.items()},
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


__all__ = ["ChainBook", "ChainSpec", "build_chain_registry"]
