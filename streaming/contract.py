"""The chain wire contract: what the ticker sends about an option chain and how the web half reads it.

Pure (no Django, no I/O). Both halves import this module and neither imports the other, so a name
or rule of the wire is defined here and only here. docs/websocket.md describes every payload field.

Channel layer. Each chain has a group named `chain.{UNDERLYING}.{YYYY-MM-DD}` (`chain_group`; a
space in the underlying becomes `_`: a group name allows ASCII letters, digits, '.', '-', '_').
The ticker sends one event to that group per chain message:

    {"type": "chain.update", "kind": "snapshot" | "delta", "chain": <payload>}
    {"type": "chain.update", "kind": "snapshot" | "delta", "chain_json": <the payload's JSON>}

The first form is used in process (the in-memory layer hands the object over), the second on a layer
that serialises its messages (Redis): the payload's JSON, which is encoded once and is also what Redis
pub/sub carries. `chain_event_payload` reads either. An event is read-only once sent, because one
object reaches every receiver in the process. Channels dispatches an event of type `chain.update`
to a consumer method named `chain_update`. Here the group's only members are the web processes'
chain hubs, which read their channel themselves, so no consumer has that method.

Payload. It starts with `underlying`, `expiry`, `seq`, `ts`, in that order. A snapshot carries the
whole chain: every strike in `rows`, every side whole. A delta carries the `header` whole and only the
strikes with a changed side, each changed side whole and each unchanged one absent. Values are
absolute, so deltas applied in order (newest value wins per strike and side) give the ticker's state.

Sequence. The ticker numbers a chain's messages with `seq`, starting at 1 and adding 1 per message
(snapshot or delta). The snapshot it stores carries the `seq` of the newest delta folded into it and
is stored before that delta is sent. A delta that the web half folded from several carries
`from_seq` (the first message it covers) besides `seq` (the last); without `from_seq` it covers
`seq` alone (`first_seq`). A client holding `seq` N can apply a delta when
`from_seq <= N + 1 <= seq` (`covers_next`). A client must resync (take a fresh snapshot from the
snapshot store instead of the next delta) when:
- it has nothing yet;
- a delta starts after N + 1 (messages were dropped on the way);
- the ticker restarted and numbers from 1 again, which shows as a lower `seq` with a later `ts`
  (`restarted`).
Otherwise a delta whose `seq` is at most N is already in what the client has, and is skipped. A
snapshot is worth sending to a client only when its `seq` is above N or it comes from a restarted
ticker.

Browser frames. Browsers get the same content positionally (`encode_browser_message`). Each row is
`[strike, ce, pe]` and each side is an array of values in `SIDE_FIELDS` order, which is sent along
as `side_fields`. Key names are most of a named frame's bytes (a 41-strike delta is ~25 KB named,
~45% of that compact), and the web server compresses and writes every byte once per client, which
is what bounds fan-out.
"""

from __future__ import annotations

import json
import math
from typing import Any

import orjson

CHAIN_UPDATE = "chain.update"  # the event type; Channels would dispatch it to `chain_update`
KIND = "kind"  # event key: SNAPSHOT or DELTA
CHAIN = "chain"  # event key: the payload itself (in process)
CHAIN_JSON = "chain_json"  # event key: the payload's JSON (on a serialising channel layer)
SNAPSHOT = "snapshot"
DELTA = "delta"
FROM_SEQ = "from_seq"  # payload key of a folded delta: the first message it covers

# A side object's keys, in the order the ticker builds them and browsers receive their values.
SIDE_FIELDS = (
    "instrument_token", "tradingsymbol", "ltp", "change", "oi", "oi_change", "oi_change_recent", "volume",
    "iv", "delta", "gamma", "theta", "vega", "bid", "ask", "updated_at", "gex", "buildup",
)  # fmt: skip
# OI build-up tags of a side (`buildup`): neutral, long build-up, short build-up, short covering,
# long unwinding; null while the OI window has no history.
BUILDUP_TAGS = ("N", "LB", "SB", "SC", "LU")
# One point of a chain's intraday series (a snapshot's `series.points`, the header's `series_last`),
# one a minute of market time from the session's start.
SERIES_FIELDS = (
    "ts", "spot", "forward", "atm_strike", "atm_iv", "straddle", "pcr_oi", "ce_oi_change", "pe_oi_change", "net_gex",
)  # fmt: skip


def chain_group(underlying: str, expiry: str) -> str:
    """The channel-layer group of a chain."""
    return f"chain.{underlying.upper().replace(' ', '_')}.{expiry}"


def chain_event_payload(event: dict[str, Any]) -> dict[str, Any]:
    """The chain payload of a `chain.update` event, whichever form it travelled in. Raises ValueError
    (orjson's JSONDecodeError is one) for an event that carries neither, or JSON that is not an object."""
    chain = event.get(CHAIN)
    if chain is not None:
        return chain
    encoded = event.get(CHAIN_JSON)
    if not isinstance(encoded, bytes | bytearray | memoryview | str):
        raise ValueError(f"{CHAIN_UPDATE} event without a chain payload")
    payload = orjson.loads(encoded)
    if not isinstance(payload, dict):
        raise ValueError(f"{CHAIN_UPDATE} event whose {CHAIN_JSON} is not an object")
    return payload


def first_seq(chain: dict[str, Any]) -> int:
    """The first message a (possibly folded) delta covers."""
    return int(chain.get(FROM_SEQ, chain.get("seq", 0)))


def covers_next(chain: dict[str, Any], last_seq: int) -> bool:
    """Whether a delta applies on top of a client holding `last_seq` (it covers `last_seq` + 1)."""
    return first_seq(chain) <= last_seq + 1 <= int(chain.get("seq", 0))


def restarted(seq: int, ts: float, last_seq: int, last_ts: float) -> bool:
    """Whether a message (`seq`, `ts`) comes from a ticker that restarted after (`last_seq`, `last_ts`)."""
    return seq < last_seq and ts > last_ts


def _finite(value: Any) -> Any:
    """JSON has no NaN or infinity; the schema says null for what cannot be computed."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def _side(side: dict[str, Any] | None) -> list[Any] | None:
    if side is None:
        return None
    return [side.get(name) for name in SIDE_FIELDS]


def compact_chain(chain: dict[str, Any]) -> dict[str, Any]:
    """The chain payload with rows as `[strike, ce, pe]` (a side is null when absent or, in a
    delta, unchanged)."""
    compact = {key: value for key, value in chain.items() if key != "rows"}
    compact["rows"] = [[row["strike"], _side(row.get("CE")), _side(row.get("PE"))] for row in chain.get("rows", [])]
    return compact


def encode_browser_message(kind: str, chain: dict[str, Any]) -> str:
    """One websocket text frame: {"type": kind, "chain": compact chain, "side_fields": [...]}.
    `type` and the chain's `underlying`, `expiry`, `seq`, `ts` come first, in that order."""
    message = {"type": kind, "chain": compact_chain(chain), "side_fields": SIDE_FIELDS}
    try:
        return json.dumps(message, separators=(",", ":"), allow_nan=False)
    except ValueError:
        return json.dumps(_finite(message), separators=(",", ":"), allow_nan=False)


__all__ = [
    "BUILDUP_TAGS",
    "CHAIN",
    "CHAIN_JSON",
    "CHAIN_UPDATE",
    "DELTA",
    "FROM_SEQ",
    "KIND",
    "SERIES_FIELDS",
    "SIDE_FIELDS",
    "SNAPSHOT",
    "chain_event_payload",
    "chain_group",
    "compact_chain",
    "covers_next",
    "encode_browser_message",
    "first_seq",
    "restarted",
]
