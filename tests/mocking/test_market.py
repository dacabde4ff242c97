"""The mock market: Kite-shaped, reproducible, arbitrage-free quotes, a session that evolves, bounded state."""

from __future__ import annotations

import math
import struct
import threading
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.greeks import bsm_price, expiry_epoch_seconds
from core.ticks import MODE_FULL, MODE_LTP, MODE_QUOTE, TICK_DTYPE, TickBatch
from mocking.market import InstrumentSpec, MockMarket, SessionClock
from mocking.market.spec import KNOWN_UNDERLYINGS

IST = ZoneInfo("Asia/Kolkata")
EXPIRY = date(2026, 12, 1)  # a Tuesday
OPEN_TS = datetime(2026, 11, 24, 9, 15, tzinfo=IST).timestamp()  # a Tuesday session
NIFTY_INDEX = 256265
NIFTY_FUT = 13_000 * 256 + 2


def nifty_chain(expiry: date = EXPIRY, first_token: int = 10_000, strikes=None) -> list[InstrumentSpec]:
    specs = [
        InstrumentSpec(NIFTY_INDEX, "NIFTY 50", "NIFTY", "EQ", 0.0, None, 0.05, 1, "INDICES", "NSE"),
        InstrumentSpec(NIFTY_FUT, "NIFTY26DECFUT", "NIFTY", "FUT", 0.0, expiry, 0.1, 75, "NFO-FUT", "NFO"),
    ]
    token = first_token
    for strike in strikes if strikes is not None else range(25000, 27050, 50):
        for kind in ("CE", "PE"):
            token += 1
            specs.append(
                InstrumentSpec(
                    token * 256 + 2,
                    f"NIFTY26D01{strike}{kind}",
                    "NIFTY",
                    kind,
                    float(strike),
                    expiry,
                    0.05,
                    75,
                    "NFO-OPT",
                    "NFO",
                )
            )
    return specs


def pinned_clock(ts: float = OPEN_TS + 3600) -> SessionClock:
    return SessionClock(now_fn=lambda: ts)


@pytest.fixture
def chain() -> list[InstrumentSpec]:
    return nifty_chain()


@pytest.fixture
def market(chain) -> MockMarket:
    m = MockMarket(seed=42, clock=pinned_clock())
    m.set_instruments(chain)
    return m


def all_tokens(specs) -> np.ndarray:
    return np.array([s.instrument_token for s in specs], dtype=np.int64)


def run(market: MockMarket, specs, seconds: float, step: float = 1.0, start: float = OPEN_TS + 3600) -> TickBatch:
    tokens = all_tokens(specs)
    modes = np.full(len(tokens), MODE_FULL, dtype=np.int8)
    batch = None
    for i in range(round(seconds / step) + 1):
        batch = market.ticks(tokens, modes, now=start + i * step)
    return batch


def test_ticks_are_mock_one_row_per_known_token_in_request_order(market, chain):
    tokens = np.array([chain[5].instrument_token, 999_999, NIFTY_INDEX, chain[2].instrument_token], dtype=np.int64)
    batch = market.ticks(tokens, np.full(4, MODE_FULL, dtype=np.int8), now=OPEN_TS + 60)
    assert isinstance(batch, TickBatch) and batch.is_mock and batch.source == "mock"
    assert batch.ticks.dtype == TICK_DTYPE
    assert batch.ticks["instrument_token"].tolist() == [
        chain[5].instrument_token,
        NIFTY_INDEX,
        chain[2].instrument_token,
    ]
    assert batch.ticks["tradable"].tolist() == [True, False, True]
    assert (batch.ticks["exchange_timestamp"] == int(OPEN_TS + 60)).all()


def test_same_seed_gives_the_same_session_and_another_seed_does_not(chain):
    def session(seed):
        m = MockMarket(seed=seed, clock=pinned_clock())
        m.set_instruments(chain)
        return run(m, chain, 60).ticks

    a, b, c = session(7), session(7), session(8)
    assert a.tobytes() == b.tobytes()
    assert not np.array_equal(a["last_price"], c["last_price"])


def test_prices_sit_on_the_tick_and_are_never_negative(market, chain):
    tokens = all_tokens(chain)
    modes = np.full(len(tokens), MODE_FULL, dtype=np.int8)
    for t in np.arange(OPEN_TS, OPEN_TS + 600, 5.0):
        ticks = market.ticks(tokens, modes, now=float(t)).ticks
        tradable = ticks[ticks["tradable"]]
        ticksize = np.array([0.1 if tok == NIFTY_FUT else 0.05 for tok in tradable["instrument_token"]])
        for name in ("last_price", "open", "high", "low", "close"):
            assert (ticks[name] >= 0).all(), name
        prices = np.concatenate(
            [
                tradable[n].reshape(len(tradable), -1)
                for n in ("last_price", "open", "high", "low", "close", "bid_price", "ask_price")
            ],
            axis=1,
        )
        assert (prices >= 0).all()
        assert np.allclose(prices / ticksize[:, None], np.round(prices / ticksize[:, None]), atol=1e-6)
        assert (tradable["last_price"] > 0).all()
        bid, ask = tradable["bid_price"][:, 0], tradable["ask_price"][:, 0]
        assert (ask - bid >= ticksize - 1e-9).all()


def test_put_call_parity_holds_within_the_quoted_spread(market, chain):
    run(market, chain, 120, step=2.0)
    snap = market.snapshot()
    q = KNOWN_UNDERLYINGS["NIFTY"].div_yield
    t = (expiry_epoch_seconds(EXPIRY) - snap.time) / (365 * 86400)
    spot = snap.underlying_spots["NIFTY"]
    options = [s for s in chain if s.is_option]
    checked = 0
    for call, put in zip(options[::2], options[1::2], strict=True):
        c, p = snap.tick(call.instrument_token), snap.tick(put.instrument_token)
        parity = spot * math.exp(-q * t) - call.strike * math.exp(-market.rate * t)
        assert c["bid_price"][0] - p["ask_price"][0] <= parity + 1e-9
        assert parity <= c["ask_price"][0] - p["bid_price"][0] + 1e-9
        checked += 1
    assert checked == 41


def test_quotes_come_from_one_model_with_a_skewed_surface(market, chain):
    run(market, chain, 10)
    snap = market.snapshot()
    options = [s for s in chain if s.is_option]
    rows = np.array([snap.row_of(s.instrument_token) for s in options])
    iv = snap.iv[rows]
    strikes = np.array([s.strike for s in options])
    # One vol per strike for the call and the put (parity), and a put skew: low strikes carry more vol.
    np.testing.assert_array_equal(iv[::2], iv[1::2])
    assert iv[0] > iv[len(iv) // 2] and iv[0] > iv[-1]
    mid = (snap.ticks["bid_price"][rows, 0] + snap.ticks["ask_price"][rows, 0]) / 2
    theo = snap.theoretical[rows]
    assert (np.abs(mid - theo) <= (snap.ticks["ask_price"][rows, 0] - snap.ticks["bid_price"][rows, 0])).all()
    expected = bsm_price(
        snap.spot[rows],
        strikes,
        (expiry_epoch_seconds(EXPIRY) - snap.time) / (365 * 86400),
        market.rate,
        KNOWN_UNDERLYINGS["NIFTY"].div_yield,
        iv,
        [s.instrument_type == "CE" for s in options],
    )
    np.testing.assert_allclose(theo, expected, rtol=1e-12)


def test_spreads_are_wider_relative_to_price_far_from_the_money(market, chain):
    run(market, chain, 10)
    snap = market.snapshot()
    spot = snap.underlying_spots["NIFTY"]
    otm = [
        s
        for s in chain
        if (s.instrument_type == "CE" and s.strike > spot) or (s.instrument_type == "PE" and s.strike < spot)
    ]
    otm.sort(key=lambda s: abs(math.log(s.strike / spot)))

    def rel_spread(spec):
        tick = snap.tick(spec.instrument_token)
        return (tick["ask_price"][0] - tick["bid_price"][0]) / ((tick["ask_price"][0] + tick["bid_price"][0]) / 2)

    near = np.mean([rel_spread(s) for s in otm[:4]])
    far = np.mean([rel_spread(s) for s in otm[-4:]])
    assert far > 3 * near


def test_full_mode_has_five_levels_of_depth(market, chain):
    ticks = run(market, chain, 5).ticks
    option = ticks[2]
    bids, asks = option["bid_price"], option["ask_price"]
    assert len(bids) == len(asks) == 5
    assert (np.diff(bids) < 0).all() and (np.diff(asks) > 0).all() and bids[0] < asks[0]
    for side in ("bid", "ask"):
        qty, orders = option[f"{side}_quantity"], option[f"{side}_orders"]
        assert (qty > 0).all() and (qty % 75 == 0).all()
        assert (orders >= 1).all() and (orders <= qty // 75).all()
    assert option["total_buy_quantity"] >= option["bid_quantity"].sum()
    assert option["total_sell_quantity"] >= option["ask_quantity"].sum()


def test_each_mode_carries_only_its_fields(market, chain):
    token = chain[10].instrument_token
    tokens = np.array([token, token, token, NIFTY_INDEX, NIFTY_INDEX], dtype=np.int64)
    modes = np.array([MODE_LTP, MODE_QUOTE, MODE_FULL, MODE_QUOTE, MODE_FULL], dtype=np.int8)
    ltp, quote, full, index_quote, index_full = market.ticks(tokens, modes, now=OPEN_TS + 100).ticks
    assert ltp["last_price"] > 0 and np.isnan(ltp["open"]) and ltp["volume_traded"] == 0
    assert quote["volume_traded"] > 0 and quote["close"] > 0 and quote["oi"] == 0 and np.isnan(quote["bid_price"]).all()
    assert quote["exchange_timestamp"] == 0
    assert full["oi"] > 0 and full["exchange_timestamp"] > 0 and (full["bid_price"] > 0).all()
    assert index_quote["high"] >= index_quote["low"] > 0 and index_quote["volume_traded"] == 0
    assert index_quote["exchange_timestamp"] == 0 and index_full["exchange_timestamp"] == int(OPEN_TS + 100)
    assert np.isnan(index_full["bid_price"]).all() and index_full["oi"] == 0
    with pytest.raises(ValueError):
        market.ticks(tokens[:1], np.array([3], dtype=np.int8), now=OPEN_TS + 101)


def test_ohlc_volume_and_average_price_follow_the_path(market, chain):
    tokens = all_tokens(chain)
    modes = np.full(len(tokens), MODE_FULL, dtype=np.int8)
    seen_high = np.full(len(tokens), -np.inf)
    seen_low = np.full(len(tokens), np.inf)
    prev_volume = None
    for t in np.arange(OPEN_TS, OPEN_TS + 900, 3.0):
        ticks = market.ticks(tokens, modes, now=float(t)).ticks
        last = ticks["last_price"]
        seen_high, seen_low = np.maximum(seen_high, last), np.minimum(seen_low, last)
        assert (ticks["high"] >= seen_high - 1e-9).all() and (ticks["low"] <= seen_low + 1e-9).all()
        assert (ticks["low"] <= ticks["open"]).all() and (ticks["open"] <= ticks["high"]).all()
        tradable = ticks["tradable"]
        avg = ticks["average_traded_price"][tradable]
        assert (avg >= ticks["low"][tradable] - 0.01).all() and (avg <= ticks["high"][tradable] + 0.01).all()
        if prev_volume is not None:
            assert (ticks["volume_traded"] >= prev_volume).all()
        prev_volume = ticks["volume_traded"]
        assert (ticks["last_trade_time"][tradable] <= ticks["exchange_timestamp"][tradable]).all()
        assert (ticks["oi_day_low"] <= ticks["oi"]).all() and (ticks["oi"] <= ticks["oi_day_high"]).all()
    assert prev_volume[~ticks["tradable"]].sum() == 0


def test_open_interest_and_volume_build_near_the_money(chain):
    m = MockMarket(seed=3, clock=pinned_clock())
    m.set_instruments(chain)
    start = run(m, chain, 0, start=OPEN_TS).ticks.copy()  # the open: no volume yet
    end = run(m, chain, 3600, step=10.0, start=OPEN_TS + 10).ticks
    assert m.snapshot().session_day == date(2026, 11, 24) and (start["volume_traded"] == 0).all()
    spot = m.snapshot().underlying_spots["NIFTY"]
    options = np.array([s.is_option for s in chain])
    strikes = np.array([s.strike for s in chain])
    distance = np.abs(np.log(np.where(options, strikes, spot) / spot))
    near = options & (distance < 0.01)
    far = options & (distance > 0.03)
    d_oi = end["oi"].astype(float) - start["oi"]
    d_volume = end["volume_traded"].astype(float) - start["volume_traded"]
    assert d_oi[near].mean() > 0
    assert d_oi[near].mean() > d_oi[far].mean()
    assert d_volume[near].mean() > 5 * d_volume[far].mean()
    assert end["oi"][near].mean() > end["oi"][far].mean()


def test_a_new_trading_day_starts_a_new_session(market, chain):
    day1 = run(market, chain, 30).ticks
    next_open = datetime(2026, 11, 25, 9, 15, tzinfo=IST).timestamp()
    day2 = market.ticks(all_tokens(chain), np.full(len(chain), MODE_FULL, dtype=np.int8), now=next_open).ticks
    np.testing.assert_array_equal(day2["close"], day1["last_price"])
    np.testing.assert_array_equal(day2["oi"], day1["oi"])
    assert (day2["volume_traded"] == 0).all()
    assert market.snapshot().session_day == date(2026, 11, 25)


def test_state_is_bounded_by_an_lru(chain):
    m = MockMarket(seed=1, clock=pinned_clock(), max_state=10)
    m.set_instruments(chain)
    tokens = [s.instrument_token for s in chain[:15]]
    for i, token in enumerate(tokens):
        m.ticks(np.array([token]), np.array([MODE_QUOTE], dtype=np.int8), now=OPEN_TS + i)
        if i == 8:
            m.ticks(np.array([tokens[0]]), np.array([MODE_QUOTE], dtype=np.int8), now=OPEN_TS + i)
    assert len(m) == 10 and len(m.snapshot()) == 10
    kept = set(m.snapshot().tokens.tolist())
    assert tokens[0] in kept  # used recently, so it survived
    assert tokens[1] not in kept and tokens[2] not in kept  # least recently used went first
    # An evicted instrument is still known and comes back when asked for.
    batch = m.ticks(np.array([tokens[1]]), np.array([MODE_QUOTE], dtype=np.int8), now=OPEN_TS + 20)
    assert len(batch) == 1 and batch.ticks["last_price"][0] > 0 and len(m) == 10


def test_expired_contracts_are_removed():
    expired = nifty_chain(expiry=date(2026, 11, 17), first_token=20_000, strikes=[26000])[2:]
    live = nifty_chain()
    m = MockMarket(seed=5, clock=pinned_clock())
    m.set_instruments(live + expired)
    tokens = all_tokens(live + expired)
    m.ticks(tokens, np.full(len(tokens), MODE_FULL, dtype=np.int8), now=OPEN_TS - 8 * 86400)
    assert len(m) == len(tokens)
    removed = m.cleanup_expired(datetime(2026, 11, 24, 9, 0, tzinfo=IST))
    assert removed == 2
    assert len(m) == len(live)
    assert not set(all_tokens(expired).tolist()) & set(m.snapshot().tokens.tolist())
    batch = m.ticks(tokens, np.full(len(tokens), MODE_FULL, dtype=np.int8), now=OPEN_TS)
    assert len(batch) == len(live)
    assert m.cleanup_expired(datetime(2026, 11, 24, 9, 0, tzinfo=IST)) == 0


def test_a_new_session_drops_what_expired_before_it():
    expiring = nifty_chain(expiry=date(2026, 11, 24), first_token=30_000, strikes=[26000])[2:]
    live = nifty_chain()
    m = MockMarket(seed=5, clock=pinned_clock())
    m.set_instruments(live + expiring)
    tokens = all_tokens(live + expiring)
    modes = np.full(len(tokens), MODE_QUOTE, dtype=np.int8)
    assert len(m.ticks(tokens, modes, now=OPEN_TS + 6 * 3600)) == len(tokens)  # 15:15 on expiry day: still live
    next_day = datetime(2026, 11, 25, 9, 15, tzinfo=IST).timestamp()
    assert len(m.ticks(tokens, modes, now=next_day)) == len(live)
    assert len(m) == len(live) and not set(all_tokens(expiring).tolist()) & set(m.specs)


def test_readers_see_consistent_snapshots_while_a_writer_steps(market, chain):
    tokens = all_tokens(chain)
    modes = np.full(len(tokens), MODE_FULL, dtype=np.int8)
    market.ticks(tokens, modes, now=OPEN_TS)
    options = [s for s in chain if s.is_option]
    option_tokens = np.array([s.instrument_token for s in options])
    strikes = np.array([s.strike for s in options])
    calls = np.array([s.instrument_type == "CE" for s in options])
    q = KNOWN_UNDERLYINGS["NIFTY"].div_yield
    errors: list[str] = []
    seen_times: set[float] = set()

    def writer():
        for i in range(1, 101):
            market.step(OPEN_TS + i)

    w = threading.Thread(target=writer)

    def reader():
        last_time = 0.0
        while w.is_alive():
            snap = market.snapshot()
            seen_times.add(snap.time)
            rows = snap.rows_of(option_tokens)
            # Every field of one snapshot belongs to the same step: the quotes were made from its spot.
            t_years = (expiry_epoch_seconds(EXPIRY) - snap.time) / (365 * 86400)
            expected = bsm_price(snap.underlying_spots["NIFTY"], strikes, t_years, market.rate, q, snap.iv[rows], calls)
            if not np.allclose(snap.theoretical[rows], expected, rtol=1e-12):
                errors.append("theoretical prices from another step")
            if (snap.ticks["exchange_timestamp"][rows] != int(snap.time)).any():
                errors.append("ticks from another step")
            if snap.time < last_time:
                errors.append("time went backwards")
            last_time = snap.time
            try:
                snap.ticks["last_price"][0] = -1.0
                errors.append("snapshot was writable")
            except ValueError:
                pass

    readers = [threading.Thread(target=reader) for _ in range(3)]
    w.start()
    for r in readers:
        r.start()
    w.join()
    for r in readers:
        r.join()
    assert not errors, errors[:3]
    assert market.snapshot().time == OPEN_TS + 100
    assert len(seen_times) >= 10  # the readers really did read while the writer was stepping


def test_an_unknown_underlying_gets_a_plausible_spot_near_its_strikes():
    specs = [
        InstrumentSpec(700_000 + i, f"ZETA26DEC{k}{t}", "ZETA", t, float(k), EXPIRY, 0.05, 500, "NFO-OPT", "NFO")
        for i, (k, t) in enumerate((k, t) for k in range(900, 1110, 10) for t in ("CE", "PE"))
    ]
    m = MockMarket(seed=9, clock=pinned_clock())
    m.set_instruments(specs)
    batch = m.ticks(all_tokens(specs), np.full(len(specs), MODE_FULL, dtype=np.int8), now=OPEN_TS + 30)
    assert len(batch) == len(specs)
    assert 900 < m.snapshot().underlying_spots["ZETA"] < 1100


def test_session_clock_is_real_in_market_hours_and_simulated_otherwise():
    in_hours = datetime(2026, 11, 24, 11, 0, tzinfo=IST).timestamp()
    clock = SessionClock(now_fn=lambda: in_hours)
    assert not clock.is_simulated and clock.now().timestamp() == in_hours

    wall = [datetime(2026, 11, 24, 22, 0, tzinfo=IST).timestamp()]
    night = SessionClock(now_fn=lambda: wall[0], simulated_speed=2.0)
    assert night.is_simulated
    first = night.now()
    assert first == datetime(2026, 11, 24, 9, 15, tzinfo=IST)  # the day's session replays from its open
    wall[0] += 60
    assert night.now() - first == timedelta(seconds=120)

    # Saturday morning, and a Monday holiday: the last real session is the previous Friday's.
    saturday = SessionClock(now_fn=lambda: datetime(2026, 11, 28, 8, 0, tzinfo=IST).timestamp())
    assert saturday.now().date() == date(2026, 11, 27)
    holiday = SessionClock(
        holidays={date(2026, 11, 30)}, now_fn=lambda: datetime(2026, 11, 30, 11, 0, tzinfo=IST).timestamp()
    )
    assert holiday.is_simulated and holiday.now().date() == date(2026, 11, 27)


def test_a_simulated_session_loops_and_the_market_follows(chain):
    wall = [datetime(2026, 11, 24, 20, 0, tzinfo=IST).timestamp()]
    clock = SessionClock(now_fn=lambda: wall[0], simulated_speed=600.0)
    m = MockMarket(seed=4, clock=clock)
    m.set_instruments(chain)
    tokens, modes = all_tokens(chain), np.full(len(chain), MODE_QUOTE, dtype=np.int8)
    first = m.ticks(tokens, modes).ticks.copy()
    wall[0] += 30  # 5 simulated hours later
    later = m.ticks(tokens, modes).ticks
    assert (later["volume_traded"] >= first["volume_traded"]).all()
    assert not np.array_equal(later["last_price"], first["last_price"])
    wall[0] += 15  # past the close: the session starts again from its open
    again = m.ticks(tokens, modes).ticks
    assert (again["volume_traded"] < later["volume_traded"]).all() or not again["tradable"].all()


# ----------------------------------------------------------------------------- Kite's client shape
def _encode(tick) -> bytes:
    """One packet the way Kite sends it (prices x100 for NSE/NFO), from a TICK_DTYPE row."""
    p = lambda v: round(float(v) * 100)  # noqa: E731
    token, mode = int(tick["instrument_token"]), int(tick["mode"])
    if mode == MODE_LTP:
        return struct.pack(">II", token, p(tick["last_price"]))
    if not tick["tradable"]:
        body = struct.pack(
            ">IIIIIII",
            token,
            p(tick["last_price"]),
            p(tick["high"]),
            p(tick["low"]),
            p(tick["open"]),
            p(tick["close"]),
            0,
        )
        return body + (struct.pack(">I", int(tick["exchange_timestamp"])) if mode == MODE_FULL else b"")
    body = struct.pack(
        ">IIIIIIIIIII",
        token,
        p(tick["last_price"]),
        int(tick["last_traded_quantity"]),
        p(tick["average_traded_price"]),
        int(tick["volume_traded"]),
        int(tick["total_buy_quantity"]),
        int(tick["total_sell_quantity"]),
        p(tick["open"]),
        p(tick["high"]),
        p(tick["low"]),
        p(tick["close"]),
    )
    if mode == MODE_QUOTE:
        return body
    body += struct.pack(
        ">IIIII",
        int(tick["last_trade_time"]),
        int(tick["oi"]),
        int(tick["oi_day_high"]),
        int(tick["oi_day_low"]),
        int(tick["exchange_timestamp"]),
    )
    for side in ("bid", "ask"):
        for i in range(5):
            body += struct.pack(
                ">IIHH",
                int(tick[f"{side}_quantity"][i]),
                p(tick[f"{side}_price"][i]),
                int(tick[f"{side}_orders"][i]),
                0,
            )
    return body


def test_tick_dicts_are_exactly_what_kiteconnect_parses(market, chain):
    kiteconnect = pytest.importorskip("kiteconnect")
    tokens = np.array(
        [
            NIFTY_INDEX,
            NIFTY_INDEX,
            NIFTY_INDEX,
            chain[4].instrument_token,
            chain[4].instrument_token,
            chain[4].instrument_token,
            NIFTY_FUT,
        ],
        dtype=np.int64,
    )
    modes = np.array([MODE_LTP, MODE_QUOTE, MODE_FULL, MODE_LTP, MODE_QUOTE, MODE_FULL, MODE_FULL], dtype=np.int8)
    batch = market.ticks(tokens, modes, now=OPEN_TS + 200)
    ours = market.tick_dicts(tokens, modes, now=OPEN_TS + 200)
    packets = [_encode(t) for t in batch.ticks]
    frame = struct.pack(">H", len(packets)) + b"".join(struct.pack(">H", len(p)) + p for p in packets)
    theirs = kiteconnect.KiteTicker("api_key", "access_token")._parse_binary(frame)
    assert all(d.pop("is_mock") is True for d in ours)
    assert ours == theirs


@settings(max_examples=12, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    steps=st.lists(st.floats(0.05, 900.0), min_size=1, max_size=12),
    start_minute=st.integers(0, 370),
)
def test_invariants_hold_for_any_seed_and_pace(seed, steps, start_minute):
    specs = nifty_chain()
    m = MockMarket(seed=seed, clock=pinned_clock())
    m.set_instruments(specs)
    tokens = all_tokens(specs)
    modes = np.full(len(tokens), MODE_FULL, dtype=np.int8)
    q = KNOWN_UNDERLYINGS["NIFTY"].div_yield
    now = OPEN_TS + 60 * start_minute
    for dt in [0.0, *steps]:
        now += dt
        ticks = m.ticks(tokens, modes, now=now).ticks
        snap = m.snapshot()
        tradable = ticks[ticks["tradable"]]
        assert (tradable["last_price"] > 0).all() and (tradable["bid_price"] >= 0).all()
        assert (tradable["ask_price"][:, 0] > tradable["bid_price"][:, 0]).all()
        assert (ticks["low"] <= ticks["last_price"]).all() and (ticks["last_price"] <= ticks["high"]).all()
        t = (expiry_epoch_seconds(EXPIRY) - snap.time) / (365 * 86400)
        parity = snap.underlying_spots["NIFTY"] * math.exp(-q * t) - np.array(
            [s.strike for s in specs[2::2]]
        ) * math.exp(-m.rate * t)
        calls, puts = ticks[2::2], ticks[3::2]
        assert (calls["bid_price"][:, 0] - puts["ask_price"][:, 0] <= parity + 1e-9).all()
        assert (parity <= calls["ask_price"][:, 0] - puts["bid_price"][:, 0] + 1e-9).all()
