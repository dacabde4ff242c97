"""Folding a chain's deltas for websocket clients (pure)."""

from __future__ import annotations

import pytest

from streaming.web.chain_conflation import Conflator, merge_deltas


def side(ltp: float, iv: float = 0.13) -> dict:
    return {"ltp": ltp, "iv": iv, "oi": 1000}


def delta(seq: int, rows: list[dict], *, spot: float = 26000.0, ts: float | None = None) -> dict:
    return {
        "underlying": "NIFTY",
        "expiry": "2026-12-29",
        "seq": seq,
        "ts": ts if ts is not None else 1000.0 + seq,
        "source": "live",
        "header": {"spot": spot},
        "rows": rows,
    }


def apply(state: dict, message: dict) -> dict:
    """What the browser does with a delta (streaming/static/streaming/chain.js applyDelta)."""
    rows = {k: dict(v) for k, v in state["rows"].items()}
    for row in message["rows"]:
        current = rows.setdefault(row["strike"], {"CE": None, "PE": None})
        for name in ("CE", "PE"):
            if row.get(name) is not None:
                current[name] = row[name]
    return {"rows": rows, "header": message["header"], "seq": message["seq"], "source": message["source"]}


def test_merging_is_the_same_as_applying_each_delta_in_turn():
    deltas = [
        delta(5, [{"strike": 100.0, "CE": side(10.0), "PE": None}, {"strike": 200.0, "CE": None, "PE": side(3.0)}]),
        delta(6, [{"strike": 100.0, "CE": None, "PE": side(7.5)}], spot=26010.0),
        delta(
            7,
            [{"strike": 100.0, "CE": side(10.5), "PE": None}, {"strike": 50.0, "CE": side(60.0), "PE": None}],
            spot=26020.0,
        ),
    ]
    start = {"rows": {100.0: {"CE": side(9.0), "PE": side(7.0)}}, "header": {}, "seq": 4, "source": "live"}
    one_by_one = start
    for d in deltas:
        one_by_one = apply(one_by_one, d)
    merged = merge_deltas(deltas)
    assert apply(start, merged) == one_by_one
    assert (merged["from_seq"], merged["seq"], merged["ts"]) == (5, 7, deltas[-1]["ts"])
    assert [row["strike"] for row in merged["rows"]] == [50.0, 100.0, 200.0]
    assert list(merged)[:4] == ["underlying", "expiry", "seq", "ts"]
    assert merged["header"] == {"spot": 26020.0}  # the newest header
    # The ticker's messages are shared between clients: merging never changes them.
    assert deltas[0]["rows"][0] == {"strike": 100.0, "CE": side(10.0), "PE": None}


def test_a_single_delta_is_passed_through_untouched():
    d = delta(3, [{"strike": 100.0, "CE": side(1.0), "PE": None}])
    assert merge_deltas([d]) is d
    with pytest.raises(ValueError):
        merge_deltas([])


def test_a_delta_after_a_quiet_spell_goes_at_once_then_the_rest_is_paced():
    c = Conflator(interval_s=0.25)
    assert c.offer("delta", delta(1, []), now=10.0) == [("delta", delta(1, [], ts=1001.0))]
    # Three more inside the interval: held, folded into one.
    for n, now in ((2, 10.05), (3, 10.10), (4, 10.20)):
        assert c.offer("delta", delta(n, [{"strike": 100.0, "CE": side(float(n)), "PE": None}]), now=now) == []
    assert c.due_at == pytest.approx(10.25)
    assert c.due(10.24) == []
    [(kind, pushed)] = c.due(10.25)
    assert kind == "delta"
    assert (pushed["from_seq"], pushed["seq"]) == (2, 4)
    assert pushed["rows"] == [{"strike": 100.0, "CE": side(4.0), "PE": None}]
    assert c.folded == 2
    assert c.due_at is None
    # The next one within the interval of that push waits again.
    assert c.offer("delta", delta(5, []), now=10.30) == []
    assert c.due_at == pytest.approx(10.50)


def test_deltas_are_never_folded_across_a_gap():
    c = Conflator(interval_s=0.25)
    c.offer("delta", delta(1, []), now=0.0)
    assert c.offer("delta", delta(2, []), now=0.1) == []
    # Message 3 was lost on the way: what is held goes first, alone, so the client sees the gap.
    out = c.offer("delta", delta(4, []), now=0.12)
    assert [(k, m["seq"], m.get("from_seq", m["seq"])) for k, m in out] == [("delta", 2, 2)]
    assert c.due_at == pytest.approx(0.37)
    [(_, held)] = c.due(0.37)
    assert held["seq"] == 4 and held.get("from_seq", 4) == 4


def test_a_snapshot_goes_at_once_and_replaces_older_held_deltas():
    c = Conflator(interval_s=0.25)
    c.offer("delta", delta(1, []), now=0.0)
    c.offer("delta", delta(2, []), now=0.1)
    out = c.offer("snapshot", delta(3, []), now=0.15)
    assert [(k, m["seq"]) for k, m in out] == [("snapshot", 3)]
    assert c.due_at is None


def test_a_restarted_ticker_is_not_folded_into_the_old_one():
    c = Conflator(interval_s=0.25)
    c.offer("delta", delta(500, []), now=0.0)
    c.offer("delta", delta(501, []), now=0.1)
    out = c.offer("snapshot", delta(1, [], ts=5000.0), now=0.2)
    assert [(k, m["seq"]) for k, m in out] == [("delta", 501), ("snapshot", 1)]


def test_interval_zero_pushes_every_delta():
    c = Conflator(interval_s=0.0)
    for n in range(1, 6):
        assert [m["seq"] for _, m in c.offer("delta", delta(n, []), now=1.0)] == [n]
