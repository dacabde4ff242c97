"""The Kite parser against the installed kiteconnect: exact dicts, the columnar fast path, the packer,
and malformed input (fuzzed with hypothesis)."""

from __future__ import annotations

import base64
import json
import random
import struct
from datetime import datetime

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kiteconnect import KiteTicker

from core.kite import (
    MalformedCounter,
    frame_from_packets,
    pack_tick_dicts,
    pack_ticks,
    parse_batch,
    parse_binary,
    parse_columnar,
    parse_frame,
)
from core.kite.columnar import tick_dicts
from core.ticks import MODE_FULL, MODE_LTP, MODE_QUOTE, TICK_DTYPE

KITE = KiteTicker("api_key", "access_token")
LENGTHS = (8, 28, 32, 44, 184)
SEGMENTS = (1, 2, 3, 4, 5, 6, 7, 8, 9, 12)  # every segment, including cds/bcd/nco divisors and indices


def kiteconnect_parse(frame: bytes) -> list[dict]:
    return KITE._parse_binary(frame)


def random_packet(rng: random.Random, length: int, *, index_segment_for_index_layout: bool = False) -> bytes:
    segment = rng.choice(SEGMENTS)
    if index_segment_for_index_layout:  # as Kite sends them; kiteconnect itself goes by length alone
        segment = 9 if length in (28, 32) else rng.choice([s for s in SEGMENTS if s != 9 or length == 8])
    token = (rng.randrange(1, 1 << 24) << 8) | segment
    words = [token] + [rng.choice((0, rng.randrange(1 << 32), rng.randrange(1 << 20))) for _ in range(length // 4 - 1)]
    return struct.pack(f">{length // 4}I", *words)


def random_frame(rng: random.Random, *, unknown: bool = True, as_kite_sends: bool = False) -> bytes:
    packets = []
    for _ in range(rng.randrange(0, 12)):
        if unknown and rng.random() < 0.03:
            # Unknown lengths of at least 4 bytes: kiteconnect itself raises on shorter ones.
            packets.append(bytes(rng.randrange(256) for _ in range(rng.choice((4, 5, 12, 100)))))
        else:
            packets.append(random_packet(rng, rng.choice(LENGTHS), index_segment_for_index_layout=as_kite_sends))
    return frame_from_packets(packets)


def fixture_packet(kite_fixtures, name: str) -> bytes:
    return base64.b64decode((kite_fixtures / f"{name}.packet").read_text())


@pytest.mark.parametrize(("name", "length", "mode"), [("ticker_full", 184, "full"), ("ticker_quote", 44, "quote")])
def test_fixture_packets_parse_like_kiteconnect_and_hold_the_published_values(kite_fixtures, name, length, mode):
    packet = fixture_packet(kite_fixtures, name)
    assert len(packet) == length
    frame = frame_from_packets([packet])
    ticks = parse_binary(frame)
    assert ticks == kiteconnect_parse(frame)
    assert tick_dicts(parse_columnar(frame)) == ticks

    published = json.loads((kite_fixtures / f"{name}.json").read_text())
    (tick,) = ticks
    assert tick["mode"] == mode
    assert tick["instrument_token"] == published["instrument_token"]
    assert tick["last_price"] == published["last_price"]
    assert tick["volume_traded"] == published["volume"]
    assert tick["total_buy_quantity"] == published["buy_quantity"]
    assert tick["ohlc"] == {k: float(v) for k, v in published["ohlc"].items()}
    if mode == "full":
        assert tick["depth"]["buy"][0] == published["depth"]["buy"][0]
        assert tick["depth"]["sell"][4] == published["depth"]["sell"][4]
        expected_time = datetime.fromisoformat(published["last_trade_time"]).timestamp()
        assert tick["last_trade_time"] == datetime.fromtimestamp(expected_time)  # naive local, as kiteconnect


def test_parse_binary_equals_kiteconnect_on_ten_thousand_random_frames():
    rng = random.Random(20241224)
    seen_lengths: set[int] = set()
    seen_segments: set[int] = set()
    packets = 0
    for _ in range(10_000):
        frame = random_frame(rng)
        expected = kiteconnect_parse(frame)
        assert parse_binary(frame) == expected
        packets += len(expected)
        for tick in expected:
            seen_segments.add(tick["instrument_token"] & 0xFF)
            seen_lengths.add((tick["mode"], "ohlc" in tick, "depth" in tick, "volume_traded" in tick))
    assert packets > 40_000
    assert seen_segments == set(SEGMENTS)
    assert len(seen_lengths) == 5  # ltp, index quote, index full, quote, full


def layout(tick: dict) -> tuple:
    return (tick["mode"], "volume_traded" in tick)


def grouped_by_layout(ticks: list[dict]) -> list[dict]:
    """kiteconnect's list in the columnar path's order: by packet layout in order of first appearance,
    frame order within a layout."""
    first_seen = {key: i for i, key in reversed(list(enumerate(layout(t) for t in ticks)))}
    return sorted(ticks, key=lambda t: first_seen[layout(t)])


def test_columnar_path_equals_kiteconnect_on_ten_thousand_random_frames():
    rng = random.Random(7)
    for _ in range(10_000):
        frame = random_frame(rng)
        expected = kiteconnect_parse(frame)
        assert tick_dicts(parse_columnar(frame)) == grouped_by_layout(expected)
        assert tick_dicts(parse_frame(frame, keep_order=True)[0]) == expected


def test_columnar_uniform_full_frame_takes_the_zero_copy_path_and_matches():
    rng = random.Random(3)
    frame = frame_from_packets([random_packet(rng, 184) for _ in range(100)])
    ticks = parse_columnar(frame)
    assert ticks.dtype == TICK_DTYPE
    assert len(ticks) == 100
    assert (ticks["mode"] == MODE_FULL).all()
    assert tick_dicts(ticks) == kiteconnect_parse(frame)


def test_columnar_groups_by_length_keeping_frame_order_within_a_group():
    rng = random.Random(5)
    lengths = [8, 184, 44, 8, 32, 184, 28]
    packets = [random_packet(rng, n) for n in lengths]
    tokens = [struct.unpack(">I", p[:4])[0] for p in packets]
    frame = frame_from_packets(packets)
    ticks = parse_columnar(frame)
    assert ticks["instrument_token"].tolist() == [tokens[i] for i in (0, 3, 1, 5, 2, 4, 6)]
    assert ticks["mode"].tolist() == [MODE_LTP, MODE_LTP, MODE_FULL, MODE_FULL, MODE_QUOTE, MODE_FULL, MODE_QUOTE]
    ordered = parse_frame(frame, keep_order=True)[0]
    assert ordered["instrument_token"].tolist() == tokens


def test_index_packets_are_not_tradable_and_use_their_own_ohlc_order():
    token = (1000 << 8) | 9
    packet = struct.pack(">8I", token, 2_400_000, 2_410_000, 2_390_000, 2_395_000, 2_380_000, 20_000, 1_700_000_000)
    ticks = parse_columnar(frame_from_packets([packet]))
    row = ticks[0]
    assert not row["tradable"]
    assert (row["last_price"], row["high"], row["low"], row["open"], row["close"]) == (
        24000.0,
        24100.0,
        23900.0,
        23950.0,
        23800.0,
    )
    assert row["exchange_timestamp"] == 1_700_000_000
    assert np.isnan(row["average_traded_price"])


@pytest.mark.parametrize(("segment", "divisor"), [(1, 100), (2, 100), (3, 10_000_000), (6, 10_000), (12, 10_000)])
def test_price_divisor_follows_the_segment(segment, divisor):
    token = (77 << 8) | segment
    frame = frame_from_packets([struct.pack(">II", token, 123_456_789)])
    assert parse_binary(frame)[0]["last_price"] == 123_456_789 / divisor
    assert parse_columnar(frame)["last_price"][0] == 123_456_789 / divisor


def test_packer_round_trips_every_layout_through_kiteconnect():
    rng = random.Random(11)
    for _ in range(300):
        frame = random_frame(rng, unknown=False, as_kite_sends=True)
        dicts = kiteconnect_parse(frame)
        # Bytes differ only where clients read nothing (the index "change" word, depth padding).
        assert kiteconnect_parse(pack_tick_dicts(dicts)) == dicts
        assert kiteconnect_parse(pack_ticks(parse_frame(frame, keep_order=True)[0])) == dicts


def test_packer_reproduces_the_fixture_packets_byte_for_byte(kite_fixtures):
    for name in ("ticker_full", "ticker_quote"):
        frame = frame_from_packets([fixture_packet(kite_fixtures, name)])
        assert pack_tick_dicts(kiteconnect_parse(frame)) == frame
        assert pack_ticks(parse_columnar(frame)) == frame


def test_packer_honours_a_mode_override():
    rng = random.Random(12)
    ticks = parse_columnar(frame_from_packets([random_packet(rng, 184) for _ in range(4)]))
    frame = pack_ticks(ticks, modes=np.array([MODE_LTP, MODE_QUOTE, MODE_FULL, MODE_LTP], dtype=np.int8))
    parsed = kiteconnect_parse(frame)
    assert [t["mode"] for t in parsed] == ["ltp", "quote", "full", "ltp"]
    assert [t["last_price"] for t in parsed] == ticks["last_price"].tolist()


# --- malformed input --------------------------------------------------------------------------------


def ltp(token: int, price: int) -> bytes:
    return struct.pack(">II", (token << 8) | 1, price)


@pytest.mark.parametrize(
    ("frame", "kind", "kept"),
    [
        (b"", "empty", 0),
        (frame_from_packets([ltp(1, 100), ltp(2, 200)])[:-3], "length_past_end", 1),
        (struct.pack(">H", 3) + frame_from_packets([ltp(1, 100)])[2:] + b"\x00", "truncated", 1),
        (frame_from_packets([ltp(1, 100), b"\x01" * 13, ltp(2, 200)]), "unknown_length", 2),
        (frame_from_packets([ltp(1, 100)]) + b"\x07\x07", "trailing_bytes", 1),
    ],
)
def test_malformed_frames_keep_valid_packets_and_count_the_rest(frame, kind, kept, caplog):
    exact = MalformedCounter()
    fast = MalformedCounter()
    assert len(parse_binary(frame, exact)) == kept
    batch = parse_batch(frame, malformed=fast)
    assert len(batch) == kept
    assert batch.malformed == 1
    assert exact == {kind: 1}
    assert fast == {kind: 1}
    # Logged once per kind, however often it happens.
    caplog.clear()
    for _ in range(5):
        parse_columnar(frame, fast)
    assert fast[kind] == 6
    assert not [r for r in caplog.records if kind in r.getMessage()]


def test_heartbeat_is_not_malformed():
    counter = MalformedCounter()
    assert parse_binary(b"\x00", counter) == []
    assert len(parse_columnar(b"\x00", counter)) == 0
    assert not counter


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=600))
def test_arbitrary_bytes_never_raise(payload):
    counter = MalformedCounter()
    exact = parse_binary(payload, counter)
    fast = parse_columnar(payload, counter)
    assert tick_dicts(fast) == grouped_by_layout(exact)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.sampled_from(LENGTHS), min_size=1, max_size=8),
    st.integers(min_value=0, max_value=10_000),
    st.binary(min_size=1, max_size=40),
    st.integers(min_value=0, max_value=1),
)
def test_valid_packets_survive_damage_after_them(lengths, seed, garbage, cut):
    rng = random.Random(seed)
    packets = [random_packet(rng, n) for n in lengths]
    good = frame_from_packets(packets)
    # Damage: announce one more packet than there is and append garbage (or cut the last packet short).
    damaged = struct.pack(">H", len(packets) + 1) + good[2:] + garbage
    if cut:
        damaged = good[: len(good) - rng.randrange(1, len(packets[-1]) + 1)]
    counter = MalformedCounter()
    expected = kiteconnect_parse(good)
    kept = len(packets) - cut
    assert parse_binary(damaged, counter)[:kept] == expected[:kept]
    assert tick_dicts(parse_frame(damaged, keep_order=True)[0])[:kept] == expected[:kept]
    assert len(parse_columnar(damaged)) == kept
    assert sum(counter.values()) >= 1
