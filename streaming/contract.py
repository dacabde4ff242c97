"""The browser's wire format for chain messages (pure: no Django).

The ticker's chain payload (docs/websocket.md) names every field of every side; a 41-strike delta
is ~25 KB, most of it repeated key names. Browsers get the same content positionally: each row is
`[strike, ce, pe]` and each side is an array of values in `SIDE_FIELDS` order (sent along as
`side_fields`). That is ~45% of the bytes, and every byte saved is saved once per client
(the web server compresses each client's stream separately), which is what bounds fan-out.
"""

from __future__ import annotations

import json
import math
from typing import Any

from streaming.ticker.chains import SIDE_OBJECT_FIELDS

SIDE_FIELDS = SIDE_OBJECT_FIELDS  # one list: the side object ChainBook builds, in this order


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
