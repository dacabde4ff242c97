"""MarketState: vectorised latest-tick-per-instrument store."""

from __future__ import annotations

import numpy as np

from core.ticks import MODE_FULL, MODE_LTP, MODE_QUOTE, TickBatch, empty_ticks
from streaming.ticker.market_state import MarketState


def _batch(tokens, prices, *, mode=MODE_FULL, received_at=100.0, oi=None, is_mock=False) -> TickBatch:
    ticks = empty_ticks(len(tokens))
    ticks["instrument_token"] = tokens
    ticks["last_price"] = prices
    ticks["mode"] = mode
    if mode != MODE_LTP:
        ticks["volume_traded"] = 1000
        ticks["close"] = 50.0
    if mode == MODE_FULL:
        ticks["oi"] = oi if oi is not None else 500
        ticks["bid_price"][:, 0] = np.asarray(prices) - 0.05
        ticks["ask_price"][:, 0] = np.asarray(prices) + 0.05
    return TickBatch(ticks=ticks, received_at=received_at, is_mock=is_mock)


def test_apply_writes_latest_values_per_token():
    state = MarketState([11, 22, 33])
    changed = state.apply(_batch([22, 11], [10.5, 20.25], oi=[7, 8]))
    assert sorted(state.ticks["instrument_token"][changed].tolist()) == [11, 22]
    assert state.latest(22)["last_price"] == 10.5
    assert state.latest(11)["oi"] == 8
    assert state.latest(33) is None  # registered but never ticked


def test_ltp_tick_keeps_fields_a_full_tick_brought():
    state = MarketState([5])
    state.apply(_batch([5], [100.0], oi=[1234]))
    state.apply(_batch([5], [101.0], mode=MODE_LTP, received_at=101.0))
    tick = state.latest(5)
    assert tick["last_price"] == 101.0
    assert tick["oi"] == 1234
    assert tick["bid_price"][0] == 99.95
    assert state.updated_at[state.rows_for([5])[0]] == 101.0


def test_quote_tick_does_not_wipe_depth():
    state = MarketState([5])
    state.apply(_batch([5], [100.0]))
    state.apply(_batch([5], [102.0], mode=MODE_QUOTE))
    assert state.latest(5)["ask_price"][0] == 100.05


def test_last_tick_wins_within_a_batch():
    state = MarketState([1, 2])
    state.apply(_batch([1, 2, 1, 1], [1.0, 2.0, 3.0, 4.0]))
    assert state.latest(1)["last_price"] == 4.0
    assert state.latest(2)["last_price"] == 2.0


def test_unknown_tokens_are_counted_and_ignored():
    state = MarketState([1])
    changed = state.apply(_batch([1, 999], [1.0, 2.0]))
    assert len(changed) == 1
    assert state.unknown_ticks == 1
    assert state.rows_for([999])[0] == -1


def test_register_grows_and_keeps_existing_rows():
    state = MarketState([3, 1], capacity=2)
    state.apply(_batch([3], [30.0]))
    rows_before = state.rows_for([1, 3]).tolist()
    state.register(np.arange(100, 200))
    assert state.rows_for([1, 3]).tolist() == rows_before
    assert state.latest(3)["last_price"] == 30.0
    assert len(state) == 102
    assert (state.rows_for(np.arange(100, 200)) >= 0).all()


def test_changed_since_tracks_versions():
    state = MarketState([1, 2, 3])
    state.apply(_batch([1, 2], [1.0, 2.0]))
    seq = state.seq
    state.apply(_batch([2], [2.5]))
    mask = state.changed_since(state.rows_for([1, 2, 3, 4]), seq)
    assert mask.tolist() == [False, True, False, False]


def test_mock_flag_follows_the_batch():
    state = MarketState([1, 2])
    state.apply(_batch([1], [1.0], is_mock=True))
    state.apply(_batch([2], [1.0], is_mock=False))
    assert state.is_mock[state.rows_for([1, 2])].tolist() == [True, False]
