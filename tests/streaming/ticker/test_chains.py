"""Chain registry and the chain book that turns market state into chain messages."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass

import numpy as np

from core import greeks as pricing
from core.ticks import MODE_FULL, MODE_LTP, TickBatch, empty_ticks
from streaming.ticker.chain_sides import side_dicts
from streaming.ticker.chains import ChainBook, build_chain_registry
from streaming.ticker.market_state import MarketState

EXPIRY = dt.date(2026, 12, 1)
NOW = dt.datetime(2026, 11, 24, 6, 0, tzinfo=dt.UTC).timestamp()


@dataclass
class Inst:
    instrument_token: int
    tradingsymbol: str
    underlying: str
    instrument_type: str
    strike: float
    expiry: dt.date | None
    segment: str


def _instruments():
    items = [Inst(256265, "NIFTY 50", "NIFTY", "EQ", 0.0, None, "INDICES")]
    for n, strike in enumerate(range(23800, 24201, 100)):
        items.append(Inst(1000 + 2 * n, f"NIFTY{strike}CE", "NIFTY", "CE", float(strike), EXPIRY, "NFO-OPT"))
        items.append(Inst(1001 + 2 * n, f"NIFTY{strike}PE", "NIFTY", "PE", float(strike), EXPIRY, "NFO-OPT"))
    items.append(Inst(5000, "BANKNIFTY X", "BANKNIFTY", "CE", 50000.0, EXPIRY, "NFO-OPT"))
    items.append(Inst(6000, "NIFTY FUT", "NIFTY", "FUT", 0.0, EXPIRY, "NFO-FUT"))
    return items


def _full_ticks(state_tokens, prices, oi, at):
    ticks = empty_ticks(len(state_tokens))
    ticks["instrument_token"] = state_tokens
    ticks["mode"] = MODE_FULL
    ticks["last_price"] = prices
    ticks["close"] = np.asarray(prices) - 1.0
    ticks["oi"] = oi
    ticks["volume_traded"] = 10_000
    ticks["bid_price"][:, 0] = np.asarray(prices) - 0.05
    ticks["ask_price"][:, 0] = np.asarray(prices) + 0.05
    return TickBatch(ticks=ticks, received_at=at, is_mock=True)


def _priced_batch(spec, spot, at, oi=1000):
    t = pricing.time_to_expiry_years(EXPIRY, dt.datetime.fromtimestamp(at, tz=dt.UTC))
    ce = np.round(pricing.bsm_price(spot, spec.strikes, t, 0.065, 0.0, 0.15, True), 2)
    pe = np.round(pricing.bsm_price(spot, spec.strikes, t, 0.065, 0.0, 0.15, False), 2)
    tokens = np.concatenate([[256265], spec.ce_tokens, spec.pe_tokens])
    prices = np.concatenate([[spot], ce, pe])
    return _full_ticks(tokens, prices, oi, at)


def test_registry_groups_options_by_underlying_and_expiry():
    registry = build_chain_registry(_instruments())
    assert set(registry) == {("NIFTY", "2026-12-01"), ("BANKNIFTY", "2026-12-01")}
    nifty = registry[("NIFTY", "2026-12-01")]
    assert nifty.strikes.tolist() == [23800.0, 23900.0, 24000.0, 24100.0, 24200.0]
    assert nifty.ce_tokens.tolist() == [1000, 1002, 1004, 1006, 1008]
    assert nifty.pe_symbols[2] == "NIFTY24000PE"
    assert nifty.spot_token == 256265
    assert registry[("BANKNIFTY", "2026-12-01")].spot_token is None
    assert registry[("BANKNIFTY", "2026-12-01")].pe_tokens.tolist() == [0]


def test_book_publishes_snapshot_then_only_changed_sides():
    spec = build_chain_registry(_instruments())[("NIFTY", "2026-12-01")]
    state = MarketState([256265, *spec.tokens.tolist()])
    book = ChainBook(spec=spec, greeks_interval_s=100.0)  # greeks (which move with time) stay put here
    book.bind(state)
    assert book.update(state, now=NOW, monotonic=1.0) is None  # nothing ticked yet

    state.apply(_priced_batch(spec, 24010.0, NOW))
    first = book.update(state, now=NOW, monotonic=1.0)
    assert first["seq"] == 1 and first["source"] == "mock"
    assert len(first["rows"]) == 5 and all("CE" in r and "PE" in r for r in first["rows"])
    header = first["header"]
    assert header["spot"] == 24010.0 and header["atm_strike"] == 24000.0
    assert abs(first["rows"][2]["CE"]["iv"] - 0.15) < 0.01
    assert first["rows"][2]["CE"]["change"] == 1.0
    json.dumps(book.snapshot)  # strictly JSON: no NaN
    assert book.update(state, now=NOW, monotonic=1.1) is None  # no tick, nothing to say

    # One put ticks (LTP only): the delta carries that side alone, the snapshot all of them.
    ticks = empty_ticks(1)
    ticks["instrument_token"] = spec.pe_tokens[0]
    ticks["mode"] = MODE_LTP
    ticks["last_price"] = 30.0
    state.apply(TickBatch(ticks=ticks, received_at=NOW + 1, is_mock=True))
    delta = book.update(state, now=NOW + 1, monotonic=2.0)
    assert delta["seq"] == 2
    assert [(r["strike"], sorted(k for k in r if k != "strike")) for r in delta["rows"]] == [(23800.0, ["PE"])]
    assert delta["rows"][0]["PE"]["ltp"] == 30.0
    assert book.snapshot["seq"] == 2 and len(book.snapshot["rows"]) == 5
    assert book.snapshot["rows"][0]["PE"]["ltp"] == 30.0


def test_greeks_are_throttled_per_chain():
    spec = build_chain_registry(_instruments())[("NIFTY", "2026-12-01")]
    state = MarketState([256265, *spec.tokens.tolist()])
    book = ChainBook(spec=spec, greeks_interval_s=10.0)
    book.bind(state)
    state.apply(_priced_batch(spec, 24010.0, NOW))
    book.update(state, now=NOW, monotonic=100.0)
    iv_before = book.snapshot["rows"][2]["CE"]["iv"]
    delta_before = book.snapshot["rows"][2]["CE"]["delta"]
    state.apply(_priced_batch(spec, 24300.0, NOW + 1))  # prices move a lot
    book.update(state, now=NOW + 1, monotonic=101.0)  # within the interval: greeks kept
    assert book.snapshot["rows"][2]["CE"]["iv"] == iv_before
    assert book.snapshot["header"]["spot"] == 24300.0
    book.update(state, now=NOW + 1, monotonic=111.0)  # nothing new ticked: no recompute either
    state.apply(_priced_batch(spec, 24300.0, NOW + 2))
    book.update(state, now=NOW + 2, monotonic=111.0)
    assert book.snapshot["rows"][2]["CE"]["delta"] > delta_before + 0.15


def test_chain_analytics_follow_the_greeks_interval_and_the_spot_every_message():
    spec = build_chain_registry(_instruments())[("NIFTY", "2026-12-01")]
    state = MarketState([256265, *spec.tokens.tolist()])
    book = ChainBook(spec=spec, greeks_interval_s=0.2)
    book.bind(state)
    state.apply(_priced_batch(spec, 24010.0, NOW, oi=1000))
    book.update(state, now=NOW, monotonic=10.0)
    assert book.snapshot["header"]["pcr_oi"] == 1.0
    batch = _priced_batch(spec, 24160.0, NOW + 0.05, oi=1000)
    batch.ticks["oi"][1 + len(spec.strikes) :] = 3000  # every put's OI triples
    state.apply(batch)
    book.update(state, now=NOW + 0.05, monotonic=10.05)  # 50 ms later: inside the interval
    header = book.snapshot["header"]
    assert header["spot"] == 24160.0 and header["atm_strike"] == 24200.0  # the spot and ATM move at once
    assert header["pcr_oi"] == 1.0  # PCR, max pain, forward: at the next recomputation
    batch = _priced_batch(spec, 24160.0, NOW + 0.25, oi=1000)
    batch.ticks["oi"][1 + len(spec.strikes) :] = 3000
    state.apply(batch)  # the same values tick again: the chain is due, now past the interval
    book.update(state, now=NOW + 0.25, monotonic=10.25)
    assert book.snapshot["header"]["pcr_oi"] == 3.0


def test_oi_change_against_previous_close():
    spec = build_chain_registry(_instruments())[("NIFTY", "2026-12-01")]
    state = MarketState([256265, *spec.tokens.tolist()])
    book = ChainBook(spec=spec, prev_close_oi={int(spec.ce_tokens[0]): 400.0})
    book.bind(state)
    state.apply(_priced_batch(spec, 24010.0, NOW, oi=1000))
    book.update(state, now=NOW, monotonic=1.0)
    state.apply(_priced_batch(spec, 24010.0, NOW + 5, oi=1300))
    book.update(state, now=NOW + 5, monotonic=2.0)
    rows = book.snapshot["rows"]
    assert rows[0]["CE"]["oi_change"] == 900  # against the known previous close
    assert rows[1]["CE"]["oi_change"] == 300  # against the first OI seen this session


def test_deltas_carry_quiet_sides_only_when_their_greeks_moved():
    spec = build_chain_registry(_instruments())[("NIFTY", "2026-12-01")]
    state = MarketState([256265, *spec.tokens.tolist()])
    book = ChainBook(spec=spec, greeks_interval_s=0.0)
    book.bind(state)
    state.apply(_priced_batch(spec, 24010.0, NOW))
    book.update(state, now=NOW, monotonic=1.0)

    def index_tick(spot, at):
        ticks = empty_ticks(1)
        ticks["instrument_token"] = 256265
        ticks["mode"] = MODE_LTP
        ticks["last_price"] = spot
        state.apply(TickBatch(ticks=ticks, received_at=at, is_mock=True))

    index_tick(24010.05, NOW)  # a tiny move of the index only: Greeks barely change
    small = book.update(state, now=NOW, monotonic=2.0)
    assert small is not None and small["rows"] == []  # header refreshed, no side re-sent
    assert small["header"]["spot"] == 24010.05
    index_tick(24150.0, NOW)  # a real move: every side's delta/gamma moves past the tolerance
    big = book.update(state, now=NOW, monotonic=3.0)
    assert len(big["rows"]) == 5 and all("CE" in r and "PE" in r for r in big["rows"])
    # The snapshot always holds what was last sent, and rows not in a delta are the same objects.
    assert book.snapshot["rows"][0]["CE"] is big["rows"][0]["CE"]


def test_mock_chain_counts_time_to_expiry_from_market_time_not_the_wall_clock():
    """At night the mock market plays a past session (SessionClock): its prices, and so the IVs the
    chain shows, hold only if time to expiry is counted from the ticks' market time."""
    from mocking.market.clock import SessionClock

    spec = build_chain_registry(_instruments())[("NIFTY", "2026-12-01")]
    wall = dt.datetime(2026, 11, 24, 23, 30, tzinfo=dt.UTC).timestamp()  # Wednesday 05:00 IST, market shut
    clock = SessionClock(now_fn=lambda: wall)
    market_time = clock.timestamp()  # the simulated Tuesday session
    assert wall - market_time > 12 * 3600
    state = MarketState([256265, *spec.tokens.tolist()])
    batch = _priced_batch(spec, 24010.0, market_time)  # priced at vol 0.15 at market time
    batch.ticks["exchange_timestamp"] = int(market_time)
    state.apply(TickBatch(ticks=batch.ticks, received_at=wall, is_mock=True))

    from_ticks = ChainBook(spec=spec)
    from_ticks.bind(state)
    from_ticks.update(state, now=wall, monotonic=1.0)
    from_clock = ChainBook(spec=spec)
    from_clock.bind(state)
    from_clock.update(state, now=wall, monotonic=1.0, market_now=market_time)

    expected_t = pricing.time_to_expiry_years(EXPIRY, dt.datetime.fromtimestamp(market_time, tz=dt.UTC))
    for book in (from_ticks, from_clock):
        header = book.snapshot["header"]
        assert header["time_to_expiry_years"] == round(expected_t, 6)
        atm = next(row for row in book.snapshot["rows"] if row["strike"] == 24000.0)
        assert abs(atm["CE"]["iv"] - 0.15) < 2e-3


def test_live_chain_counts_time_to_expiry_from_the_wall_clock():
    spec = build_chain_registry(_instruments())[("NIFTY", "2026-12-01")]
    state = MarketState([256265, *spec.tokens.tolist()])
    batch = _priced_batch(spec, 24010.0, NOW)
    batch.ticks["exchange_timestamp"] = int(NOW - 3 * 3600)  # a stale exchange stamp changes nothing live
    state.apply(TickBatch(ticks=batch.ticks, received_at=NOW, is_mock=False))
    book = ChainBook(spec=spec)
    book.bind(state)
    book.update(state, now=NOW, monotonic=1.0, market_now=NOW - 3 * 3600)
    expected_t = pricing.time_to_expiry_years(EXPIRY, dt.datetime.fromtimestamp(NOW, tz=dt.UTC))
    assert book.snapshot["header"]["time_to_expiry_years"] == round(expected_t, 6)


# The per-field rounding the side objects used before their fields were rounded as one matrix: the
# reference the matrix path must equal.
def _rounded(values: np.ndarray, digits: int) -> list[float | None]:
    """Floats rounded for the wire, with None for NaN/inf (JSON has no NaN)."""
    values = np.asarray(values, dtype=np.float64)
    out = np.round(values, digits).tolist()
    bad = ~np.isfinite(values)
    if bad.any():
        for n in np.flatnonzero(bad).tolist():
            out[n] = None
    return out


def _ints(values: np.ndarray) -> list[int | None]:
    values = np.asarray(values, dtype=np.float64)
    bad = ~np.isfinite(values)
    # Truncation toward zero, as int() does; non-finite entries become None below.
    out: list[int | None] = np.where(bad, 0.0, values).astype(np.int64).tolist()
    if bad.any():
        for n in np.flatnonzero(bad).tolist():
            out[n] = None
    return out


def test_side_objects_are_each_field_rounded_on_its_own_with_none_for_nan():
    # side_dicts rounds all fields as one matrix; each value must be what _rounded/_ints give.

    rng = np.random.default_rng(7)
    n = 9

    def column():
        values = rng.normal(0, 1, n) * 10.0 ** rng.integers(-6, 8, n)
        values[[1, 4]] = np.nan
        values[5] = np.inf
        values[6] = -np.inf
        values[7] = 2.675  # a half-way case for 2 digits
        return values

    arrays = {name: column() for name in ("ltp", "bid", "ask", "mid", "oi", "volume", "updated_at")}
    arrays["close"] = np.where(rng.random(n) > 0.3, column(), 0.0)
    greeks = {name: column() for name in ("iv", "delta", "gamma", "theta", "vega", "gex")}
    oi_change, recent = column(), column()
    buildup = np.array([-1, 0, 1, 2, 3, 4, 0, 1, 2], dtype=np.float64)
    tokens = np.arange(100, 100 + n, dtype=np.int64)
    symbols = tuple(f"S{k}" for k in range(n))
    index = np.array([0, 1, 3, 5, 6, 7, 8])
    sides = side_dicts(symbols, tokens, arrays, greeks, oi_change, recent, buildup, index)

    close = arrays["close"][index]
    with np.errstate(invalid="ignore"):
        change = np.where(close > 0, arrays["ltp"][index] - close, np.nan)
    expected = {
        "instrument_token": tokens[index].tolist(),
        "tradingsymbol": [symbols[k] for k in index.tolist()],
        "ltp": _rounded(arrays["ltp"][index], 2),
        "change": _rounded(change, 2),
        "oi": _ints(arrays["oi"][index]),
        "oi_change": _ints(oi_change[index]),
        "oi_change_recent": _ints(recent[index]),
        "volume": _ints(arrays["volume"][index]),
        "iv": _rounded(greeks["iv"][index], 5),
        "delta": _rounded(greeks["delta"][index], 4),
        "gamma": _rounded(greeks["gamma"][index], 6),
        "theta": _rounded(greeks["theta"][index], 3),
        "vega": _rounded(greeks["vega"][index], 3),
        "bid": _rounded(arrays["bid"][index], 2),
        "ask": _rounded(arrays["ask"][index], 2),
        "updated_at": _rounded(arrays["updated_at"][index], 3),
        "gex": _rounded(greeks["gex"][index], 0),
        "buildup": [None, "N", "SB", "LU", "N", "LB", "SB"],  # codes -1, 0, 2, 4, 0, 1, 2
    }
    assert [list(side) for side in sides] == [list(expected)] * len(index)  # wire order
    for k, side in enumerate(sides):
        for name, values in expected.items():
            assert side[name] == values[k] and type(side[name]) is type(values[k]), (name, k)
    assert sides[1]["ltp"] is None and sides[3]["oi"] is None and sides[4]["iv"] is None  # NaN, inf, -inf


def test_trader_figures_in_the_header_and_sides():
    spec = build_chain_registry(_instruments())[("NIFTY", "2026-12-01")]
    state = MarketState([256265, *spec.tokens.tolist()])
    book = ChainBook(spec=spec, greeks_interval_s=0.2, oi_window_minutes=15.0)
    book.iv_bucket = "weekly"
    book.set_iv_history([0.20, 0.10, 0.18, 0.12, 0.16, 0.14])
    book.bind(state)
    state.apply(_priced_batch(spec, 24010.0, NOW, oi=1000))
    book.update(state, now=NOW, monotonic=10.0)
    snap = book.snapshot
    header = snap["header"]
    atm = next(r for r in snap["rows"] if r["strike"] == header["atm_strike"])
    # Every option priced at IV 0.15: the ATM IV, 3 of the 6 closes below it, (0.15 - 0.10) / 0.10.
    assert abs(header["atm_iv"] - 0.15) < 2e-3
    assert header["iv_percentile"] == 50.0 and abs(header["iv_rank"] - 50.0) < 3.0
    assert header["iv_history_sessions"] == 6 and header["iv_bucket"] == "weekly"
    # Quotes are LTP +- 0.05: the straddle is the two LTPs at the forward's ATM strike.
    assert header["straddle"] == round(atm["CE"]["ltp"] + atm["PE"]["ltp"], 2)
    assert header["expected_move"] == header["straddle"]
    t = header["time_to_expiry_years"]
    assert abs(header["expected_move_iv"] - header["forward"] * header["atm_iv"] * t**0.5) < 0.5
    # GEX: gamma x OI x S^2 x 0.01, calls +, puts -; the header's net is their sum.
    spot = header["spot"]
    for row in snap["rows"]:
        assert abs(row["CE"]["gex"] - row["CE"]["gamma"] * 1000 * spot**2 * 0.01) <= 0.01 * abs(row["CE"]["gex"]) + 1
        assert row["PE"]["gex"] <= 0
    net = sum(r["CE"]["gex"] + r["PE"]["gex"] for r in snap["rows"])
    assert abs(header["net_gex"] - net) <= len(snap["rows"]) * 2
    assert header["term_structure"] == [["2026-12-01", header["atm_iv"], header["time_to_expiry_years"]]]
    assert [p[0] for p in snap["series"]["points"]] == [NOW - NOW % 60]
    assert all(r["CE"]["buildup"] is None for r in snap["rows"])  # no OI window yet

    # 15 minutes later the spot is up 2 % and every OI up 10 %: calls long build-up, puts short build-up.
    later = NOW + 15 * 60 + 1
    state.apply(_priced_batch(spec, 24490.0, later, oi=1100))
    book.update(state, now=later, monotonic=20.0)
    rows = book.snapshot["rows"]
    assert {r["CE"]["buildup"] for r in rows} == {"LB"} and {r["PE"]["buildup"] for r in rows} == {"SB"}
    assert book.snapshot["header"]["ce_oi_change"] == 5 * 100  # against the first OI seen (no previous close)
    assert len(book.snapshot["series"]["points"]) == 2
    assert book.snapshot["header"]["series_last"] == book.snapshot["series"]["points"][-1]
    assert [p[0] for p in book.series.drain()] == [NOW - NOW % 60, later - later % 60]
