"""Conflating a chain's deltas for websocket clients (pure: no Django, no I/O).

The ticker hands every chain's delta to the channel layer as soon as it is built (at most every
CHAIN_STREAM_INTERVAL_MS), so programs on the channel layer and on Redis pub/sub see ticks within
tens of milliseconds. People watching a chain do not need 20 screen updates a second, and every
message costs the web server a write per client; so each web process folds the deltas that arrive
within CHAIN_PUBLISH_INTERVAL_MS of the last one it pushed into a single delta (`merge_deltas`), and
`Conflator` decides, message by message, what to push now and what to hold.

Deltas carry absolute values (a changed side is sent whole, the header is sent whole), so folding
consecutive deltas is "newest value wins" per strike and side, and the result can be applied on top of
any state at or after the first folded delta's predecessor. A folded delta says which messages it
covers: `from_seq` (the first) to `seq` (the last). Deltas are folded only while their `seq` runs
unbroken; a gap (messages dropped on the way) or a restart (the ticker numbers from 1 again) pushes
what is held first, so a client still sees the gap and resynchronises (`chain_feed.ChainFeed`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from streaming.contract import DELTA, FROM_SEQ, SNAPSHOT, first_seq

SIDES = ("CE", "PE")


def merge_deltas(deltas: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One delta equivalent to applying `deltas` (consecutive, oldest first) one after another."""
    if not deltas:
        raise ValueError("nothing to merge")
    if len(deltas) == 1:
        return deltas[0]
    newest = deltas[-1]
    rows: dict[Any, dict[str, Any]] = {}
    copied: set[Any] = set()  # strikes whose row here is our own copy, not one of the ticker's
    for delta in deltas:
        for row in delta.get("rows", ()):
            strike = row["strike"]
            merged = rows.get(strike)
            if merged is None or all(row.get(side) is not None for side in SIDES):
                # First sight, or both sides replaced: share the ticker's row (nobody mutates it).
                rows[strike] = row
                copied.discard(strike)
                continue
            if strike not in copied:
                merged = rows[strike] = dict(merged)
                copied.add(strike)
            for side in SIDES:
                value = row.get(side)
                if value is not None:
                    merged[side] = value
    out = {
        "underlying": newest["underlying"],
        "expiry": newest["expiry"],
        "seq": newest["seq"],
        "ts": newest["ts"],
        FROM_SEQ: first_seq(deltas[0]),
    }
    for key, value in newest.items():
        if key not in out and key != "rows":
            out[key] = value
    out["rows"] = [rows[strike] for strike in sorted(rows)]
    return out


@dataclass
class Conflator:
    """Per chain and process: push a delta at once when the last push is at least `interval_s` old,
    otherwise hold it (folded with any others held) until `due_at`. Snapshots always go at once."""

    interval_s: float
    last_push_at: float = float("-inf")
    held: list[dict[str, Any]] = field(default_factory=list)
    folded: int = 0  # deltas that reached clients inside another (for status and tests)

    @property
    def due_at(self) -> float | None:
        """When what is held must be pushed (None: nothing held)."""
        return self.last_push_at + self.interval_s if self.held else None

    def offer(self, kind: str, chain: dict[str, Any], now: float) -> list[tuple[str, dict[str, Any]]]:
        """Take one event from the ticker; returns the (kind, chain) messages to push now, in order."""
        out: list[tuple[str, dict[str, Any]]] = []
        if kind == SNAPSHOT:
            held = self._take()
            if held is not None and int(held["seq"]) > int(chain.get("seq", 0)):
                out.append((DELTA, held))  # newer than the snapshot (a restarted ticker): keep order
            out.append((SNAPSHOT, chain))
            self.last_push_at = now
            return out
        if self.held and first_seq(chain) != int(self.held[-1]["seq"]) + 1:
            held = self._take()  # a gap or a restart: never fold across it
            if held is not None:
                out.append((DELTA, held))
                self.last_push_at = now
        if self.interval_s <= 0 or (not self.held and now - self.last_push_at >= self.interval_s):
            out.append((DELTA, chain))
            self.last_push_at = now
            return out
        self.held.append(chain)
        return out

    def due(self, now: float) -> list[tuple[str, dict[str, Any]]]:
        """What is held, when its time came (call at or after `due_at`)."""
        due_at = self.due_at  # None exactly when nothing is held
        if due_at is None or now < due_at:
            return []
        held = self._take()
        self.last_push_at = now
        return [(DELTA, held)] if held is not None else []

    def _take(self) -> dict[str, Any] | None:
        if not self.held:
            return None
        held, self.held = self.held, []
        self.folded += len(held) - 1
        return merge_deltas(held)
