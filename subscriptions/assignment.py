"""Which account and connection streams which instrument: sticky, balanced, capacity-aware.

Pure: no Django. The reconciler (subscriptions/services/reconcile.py) feeds it plain data and persists
the result; the ticker loop diffs two plans (`diff_assignments`) to send only the changes on the wire.

Rules of `assign_instruments`:
- a connection never holds more than its account's `instruments_per_connection`, and an account never
  uses more than `max_connections` connections (Kite: 3000 and 3);
- sticky: an item keeps its (account, connection) while that account is still usable and the
  connection still exists with room for it (capacity changed → the items past the new limit move);
- new or displaced items go, one by one, to the least-filled connection (lowest used/capacity, ties
  to the first account and lowest connection index), so a fresh assignment is balanced;
- what does not fit anywhere is returned in `overflow`, in input order: never dropped silently;
- rebalance: when an account holds more than its fair share (its capacity times the overall fill) by over
  `rebalance_slack` of its capacity while another holds less by as much — typically an account that
  failed, lost its instruments to the others and came back with a new login — the newest items of the
  overfull accounts move to the least-filled connections of the underfull ones, just enough to bring
  them to their fair share. Smaller imbalances move nothing (each move is a brief gap in that
  instrument's ticks), so day-to-day changes stay sticky.
Callers pass items in priority order (the reconciler: oldest subscription first), which decides who
overflows when capacity runs out.
"""

from __future__ import annotations

import datetime as dt
import heapq
import math
from collections import defaultdict
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)

MODES = ("ltp", "quote", "full")


@dataclass(frozen=True, slots=True)
class AccountSlots:
    """An account as the assignment sees it: how many connections, how many instruments on each."""

    account_id: int
    max_connections: int
    instruments_per_connection: int

    @property
    def capacity(self) -> int:
        return self.max_connections * self.instruments_per_connection


@dataclass(frozen=True, slots=True, order=True)
class Placement:
    """Where one instrument streams: an account and one of its connections (0-based)."""

    account_id: int
    connection_index: int


@dataclass
class AssignmentResult(Generic[K]):
    """Output of `assign_instruments`. `placements` holds every placed item (kept or moved)."""

    placements: dict[K, Placement] = field(default_factory=dict)
    overflow: list[K] = field(default_factory=list)
    kept: int = 0
    moved: int = 0  # had a placement that could not be kept, or moved to rebalance the accounts
    placed_new: int = 0  # had no placement before
    rebalanced: int = 0  # of `moved`: kept places given up to even out the accounts

    def loads(self) -> dict[Placement, int]:
        """Instruments per (account, connection), only connections that hold something."""
        counts: dict[Placement, int] = {}
        for placement in self.placements.values():
            counts[placement] = counts.get(placement, 0) + 1
        return counts

    def account_loads(self) -> dict[int, int]:
        counts: dict[int, int] = {}
        for placement in self.placements.values():
            counts[placement.account_id] = counts.get(placement.account_id, 0) + 1
        return counts


def assign_instruments(
    *,
    items: Iterable[K],
    current: Mapping[K, Placement | None],
    accounts: Sequence[AccountSlots],
    rebalance_slack: float = 0.05,
) -> AssignmentResult[K]:
    """Place `items` on the connections of `accounts` (the usable ones only), keeping `current`
    placements where the rules allow. See the module docstring for the rules."""
    ordered = list(dict.fromkeys(items))  # input order, duplicates ignored
    caps: dict[Placement, int] = {}
    for account in accounts:
        if account.max_connections < 1 or account.instruments_per_connection < 1:
            continue
        for index in range(account.max_connections):
            caps[Placement(account.account_id, index)] = account.instruments_per_connection
    load = dict.fromkeys(caps, 0)
    result: AssignmentResult[K] = AssignmentResult()

    homeless: list[tuple[K, bool]] = []  # (item, had a placement before)
    for item in ordered:
        placement = current.get(item)
        if placement is not None and placement in caps and load[placement] < caps[placement]:
            load[placement] += 1
            result.placements[item] = placement
            result.kept += 1
        else:
            homeless.append((item, placement is not None))

    if homeless:
        # Heap of (fill ratio, connection index, account order, placement): least-filled first; ties
        # alternate between accounts so their totals stay even too.
        order = {account.account_id: n for n, account in enumerate(accounts)}
        heap = [(load[p] / caps[p], p.connection_index, order[p.account_id], p) for p in caps if load[p] < caps[p]]
        heapq.heapify(heap)
        for item, had_placement in homeless:
            if not heap:
                result.overflow.append(item)
                continue
            _, index, rank, placement = heapq.heappop(heap)
            load[placement] += 1
            result.placements[item] = placement
            if had_placement:
                result.moved += 1
            else:
                result.placed_new += 1
            if load[placement] < caps[placement]:
                heapq.heappush(heap, (load[placement] / caps[placement], index, rank, placement))
    _rebalance_accounts(result, ordered, current, caps, load, rebalance_slack)
    return result


def _rebalance_accounts(
    result: AssignmentResult[K],
    ordered: list[K],
    current: Mapping[K, Placement | None],
    caps: dict[Placement, int],
    load: dict[Placement, int],
    slack: float,
) -> None:
    """Move the newest items of overfull accounts to underfull ones (see the module docstring)."""
    account_cap: dict[int, int] = defaultdict(int)
    account_load: dict[int, int] = defaultdict(int)
    for placement, cap in caps.items():
        account_cap[placement.account_id] += cap
        account_load[placement.account_id] += load[placement]
    total_load, total_cap = sum(account_load.values()), sum(account_cap.values())
    if total_load == 0 or len(account_cap) < 2:
        return
    fair = {a: total_load * cap / total_cap for a, cap in account_cap.items()}
    margin = {a: max(1.0, slack * cap) for a, cap in account_cap.items()}
    excess = {a: account_load[a] - math.ceil(fair[a]) for a in account_cap if account_load[a] > fair[a] + margin[a]}
    room = {a: math.floor(fair[a]) - account_load[a] for a in account_cap if account_load[a] < fair[a] - margin[a]}
    if not excess or not room:
        return
    # The overfull accounts' items per connection, oldest first; the newest leave first, taken from
    # whichever of the account's connections is fullest at the time.
    held: dict[Placement, list[K]] = defaultdict(list)
    for item in ordered:
        held_at = result.placements.get(item)
        if held_at is not None and held_at.account_id in excess:
            held[held_at].append(item)
    leaving: list[tuple[K, Placement]] = []
    for account_id, count in excess.items():
        fullest = [(-load[p], p.connection_index, p) for p in held if p.account_id == account_id]
        heapq.heapify(fullest)
        for _ in range(count):
            _, index, placement = heapq.heappop(fullest)
            leaving.append((held[placement].pop(), placement))
            load[placement] -= 1
            if held[placement]:
                heapq.heappush(fullest, (-load[placement], index, placement))
    emptiest = [(load[p] / caps[p], p.connection_index, p) for p in caps if p.account_id in room and load[p] < caps[p]]
    heapq.heapify(emptiest)
    for item, source in leaving:
        while emptiest and room[emptiest[0][2].account_id] <= 0:
            heapq.heappop(emptiest)
        if not emptiest:  # the underfull accounts are full enough: the rest stay where they are
            load[source] += 1
            continue
        _, index, target = heapq.heappop(emptiest)
        load[target] += 1
        room[target.account_id] -= 1
        result.placements[item] = target
        if current.get(item) == source:  # it was streaming there: a real move
            result.kept -= 1
            result.moved += 1
            result.rebalanced += 1
        if load[target] < caps[target]:
            heapq.heappush(emptiest, (load[target] / caps[target], index, target))


# --- The plan the ticker loop streams, and the difference between two plans ----------------------


@dataclass(frozen=True, slots=True)
class PlannedInstrument:
    """One active subscription as the ticker loop needs it (no ORM objects on the hot path)."""

    subscription_id: int
    instrument_token: int
    tradingsymbol: str
    exchange: str
    segment: str
    underlying: str
    instrument_type: str  # EQ | FUT | CE | PE
    strike: float
    expiry: dt.date | None
    tick_size: float
    lot_size: int
    mode: str  # ltp | quote | full
    account_id: int | None  # None: not streamed (overflow, or no usable account)
    connection_index: int | None

    @property
    def placement(self) -> Placement | None:
        if self.account_id is None or self.connection_index is None:
            return None
        return Placement(self.account_id, self.connection_index)


@dataclass(frozen=True, slots=True)
class PlannedAccount:
    """An account the loop may connect with. `access_token` is clear text, in memory only: never log it
    (it is left out of repr)."""

    account_id: int
    label: str
    api_key: str
    access_token: str = field(repr=False)
    is_mock: bool
    max_connections: int
    instruments_per_connection: int
    health: str
    has_valid_token: bool


@dataclass(frozen=True, slots=True)
class TokenAssignment:
    """What `diff_assignments` compares per instrument token."""

    account_id: int
    connection_index: int
    mode: str


@dataclass(frozen=True)
class Plan:
    """A snapshot of what should stream: instruments by token, accounts by id."""

    instruments: Mapping[int, PlannedInstrument]
    accounts: Mapping[int, PlannedAccount]

    def assignments(self) -> dict[int, TokenAssignment]:
        """token → (account, connection, mode) for every placed instrument; feed two of these to
        `diff_assignments`."""
        return {
            token: TokenAssignment(item.account_id, item.connection_index, item.mode)
            for token, item in self.instruments.items()
            if item.account_id is not None and item.connection_index is not None
        }

    def connection_tokens(self) -> dict[Placement, dict[int, str]]:
        """(account, connection) → {token: mode}: the desired state of every connection."""
        out: dict[Placement, dict[int, str]] = {}
        for token, assignment in self.assignments().items():
            placement = Placement(assignment.account_id, assignment.connection_index)
            out.setdefault(placement, {})[token] = assignment.mode
        return out

    def unplaced(self) -> list[int]:
        """Tokens of active subscriptions that no connection streams (overflow or no usable account)."""
        return [token for token, item in self.instruments.items() if item.placement is None]


@dataclass
class ConnectionOps:
    """The wire requests for one (account, connection) that turn the old state into the new one.

    Send `unsubscribe` first (frees room under the per-connection limit), then for each mode in
    `subscribe` a subscribe request followed by a mode request for those tokens (Kite streams a token
    subscribed without a mode in quote mode), then `mode_changes` (tokens that stay on this connection
    but change mode). Token lists are sorted."""

    unsubscribe: list[int] = field(default_factory=list)
    subscribe: dict[str, list[int]] = field(default_factory=dict)
    mode_changes: dict[str, list[int]] = field(default_factory=dict)

    @property
    def subscribe_tokens(self) -> list[int]:
        return sorted(token for tokens in self.subscribe.values() for token in tokens)

    def is_empty(self) -> bool:
        return not (self.unsubscribe or self.subscribe or self.mode_changes)


def diff_assignments(
    old: Mapping[int, TokenAssignment], new: Mapping[int, TokenAssignment]
) -> dict[Placement, ConnectionOps]:
    """Per (account, connection) only what changed between two `Plan.assignments()`: a token that moves
    is unsubscribed on its old connection and subscribed on its new one; a token that stays with a new
    mode gets a mode change; unchanged tokens appear nowhere. Connections without changes are left out."""
    ops: dict[Placement, ConnectionOps] = {}

    def at(account_id: int, connection_index: int) -> ConnectionOps:
        key = Placement(account_id, connection_index)
        if key not in ops:
            ops[key] = ConnectionOps()
        return ops[key]

    before: TokenAssignment | None
    after: TokenAssignment | None
    for token, before in old.items():
        after = new.get(token)
        if after is None or (after.account_id, after.connection_index) != (before.account_id, before.connection_index):
            at(before.account_id, before.connection_index).unsubscribe.append(token)
    for token, after in new.items():
        before = old.get(token)
        if before is None or (after.account_id, after.connection_index) != (before.account_id, before.connection_index):
            at(after.account_id, after.connection_index).subscribe.setdefault(after.mode, []).append(token)
        elif after.mode != before.mode:
            at(after.account_id, after.connection_index).mode_changes.setdefault(after.mode, []).append(token)

    for connection_ops in ops.values():
        connection_ops.unsubscribe.sort()
        for tokens in (*connection_ops.subscribe.values(), *connection_ops.mode_changes.values()):
            tokens.sort()
    return {key: value for key, value in sorted(ops.items()) if not value.is_empty()}
