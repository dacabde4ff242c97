"""What one websocket client of a chain should be sent next (pure: no Django, no I/O).

The ticker numbers every chain message (`seq`, +1 per message, see docs/websocket.md). A client
must see an unbroken run of deltas on top of the snapshot it got; when it cannot (it fell behind
and messages were dropped, it connected between two deltas, the ticker restarted), it gets a fresh
snapshot instead of a backlog. `ChainFeed` keeps the per-client position and says, message by
message, whether to forward it, skip it or fetch a fresh snapshot first.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

from streaming.contract import SNAPSHOT, covers_next, restarted


class Decision(Enum):
    SEND = "send"  # forward the message as it is
    SKIP = "skip"  # already contained in what the client has
    RESYNC = "resync"  # the client has a gap: send a fresh snapshot (then this message if it follows)


@dataclass
class ChainFeed:
    """Per-client position in one chain's message stream."""

    last_seq: int | None = None
    last_ts: float = 0.0
    snapshots_sent: int = 0
    deltas_sent: int = 0
    resyncs: int = 0

    def on_delta(self, chain: dict[str, Any]) -> Decision:
        """A delta covers messages `from_seq`..`seq` (one message unless the web process folded several,
        see chain_conflation); it can go to a client whose next message falls inside that range."""
        seq, ts = int(chain.get("seq", 0)), float(chain.get("ts") or 0.0)
        if self.last_seq is None:
            return Decision.RESYNC
        if covers_next(chain, self.last_seq):
            return Decision.SEND
        if seq <= self.last_seq:
            # Either already folded into the snapshot the client got, or the ticker restarted.
            return Decision.RESYNC if restarted(seq, ts, self.last_seq, self.last_ts) else Decision.SKIP
        return Decision.RESYNC

    def on_snapshot(self, chain: dict[str, Any], *, forced: bool = False) -> bool:
        """Whether a snapshot is worth sending: newer than what the client has (or forced)."""
        if forced or self.last_seq is None:
            return True
        seq, ts = int(chain.get("seq", 0)), float(chain.get("ts") or 0.0)
        return seq > self.last_seq or restarted(seq, ts, self.last_seq, self.last_ts)

    def sent(self, chain: dict[str, Any], *, kind: str) -> None:
        self.last_seq = int(chain.get("seq", 0))
        self.last_ts = float(chain.get("ts") or 0.0)
        if kind == SNAPSHOT:
            self.snapshots_sent += 1
        else:
            self.deltas_sent += 1
