"""The browser's compact chain encoding (pure)."""

from __future__ import annotations

import json

from streaming.contract import SIDE_FIELDS, compact_chain, encode_browser_message


def side(ltp: float) -> dict:
    return {name: None for name in SIDE_FIELDS} | {"instrument_token": 7, "tradingsymbol": "X", "ltp": ltp}


CHAIN = {
    "underlying": "NIFTY",
    "expiry": "2030-01-29",
    "seq": 4,
    "ts": 1.5,
    "source": "live",
    "header": {"spot": 1.0},
    "rows": [{"strike": 100.0, "CE": side(5.0)}, {"strike": 200.0, "CE": side(1.0), "PE": side(2.0)}],
}


def test_rows_become_positional_and_missing_sides_null():
    compact = compact_chain(CHAIN)
    assert compact["header"] == {"spot": 1.0}
    assert compact["rows"][0][0] == 100.0
    assert compact["rows"][0][2] is None
    assert dict(zip(SIDE_FIELDS, compact["rows"][1][2], strict=True)) == side(2.0)


def test_encoded_frame_starts_with_type_and_sequence_and_round_trips():
    text = encode_browser_message("delta", CHAIN)
    assert text.startswith('{"type":"delta","chain":{"underlying":"NIFTY","expiry":"2030-01-29","seq":4,"ts":1.5')
    message = json.loads(text)
    assert message["side_fields"] == list(SIDE_FIELDS)
    assert message["chain"]["rows"][1][1][SIDE_FIELDS.index("ltp")] == 1.0


def test_compact_frame_is_much_smaller_than_the_named_payload():
    rows = [{"strike": float(k), "CE": side(float(k)), "PE": side(float(k))} for k in range(40)]
    chain = {**CHAIN, "rows": rows}
    assert len(encode_browser_message("delta", chain)) < 0.6 * len(json.dumps({"type": "delta", "chain": chain}))


def test_nan_and_infinity_become_null():
    bad = {**CHAIN, "header": {"spot": float("nan"), "pcr_oi": float("inf")}}
    message = json.loads(encode_browser_message("snapshot", bad))
    assert message["chain"]["header"] == {"spot": None, "pcr_oi": None}
