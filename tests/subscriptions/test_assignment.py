"""The pure assignment: sticky, balanced, capacity-aware, overflow explicit; and the wire diff."""

from __future__ import annotations

import math
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from subscriptions.assignment import (
    AccountSlots,
    ConnectionOps,
    Placement,
    TokenAssignment,
    assign_instruments,
    diff_assignments,
)

A = AccountSlots(account_id=1, max_connections=3, instruments_per_connection=3000)
B = AccountSlots(account_id=2, max_connections=3, instruments_per_connection=3000)


def _check_limits(placements: dict, accounts: list[AccountSlots]) -> None:
    by_id = {account.account_id: account for account in accounts}
    loads: dict[Placement, int] = {}
    for placement in placements.values():
        account = by_id[placement.account_id]
        assert 0 <= placement.connection_index < account.max_connections
        loads[placement] = loads.get(placement, 0) + 1
    for placement, count in loads.items():
        assert count <= by_id[placement.account_id].instruments_per_connection


def test_fresh_assignment_is_balanced_across_every_connection():
    items = list(range(1, 9001))
    result = assign_instruments(items=items, current={}, accounts=[A, B])

    assert result.overflow == []
    assert len(result.placements) == 9000
    loads = result.loads()
    assert len(loads) == 6  # 2 accounts x 3 connections all used
    assert max(loads.values()) - min(loads.values()) <= 1
    assert result.account_loads() == {1: 4500, 2: 4500}
    assert result.placed_new == 9000 and result.kept == 0 and result.moved == 0
    _check_limits(result.placements, [A, B])


def test_balance_follows_capacity_when_accounts_differ():
    small = AccountSlots(account_id=3, max_connections=1, instruments_per_connection=1000)
    result = assign_instruments(items=range(4000), current={}, accounts=[A, small])

    loads = result.loads()
    # Every connection ends about equally full relative to its own limit.
    ratios = [loads[p] / (1000 if p.account_id == 3 else 3000) for p in loads]
    assert max(ratios) - min(ratios) < 0.01
    assert result.account_loads()[3] == 400


def test_reassigning_the_same_plan_moves_nothing():
    first = assign_instruments(items=range(5000), current={}, accounts=[A, B])
    second = assign_instruments(items=range(5000), current=first.placements, accounts=[A, B])

    assert second.placements == first.placements
    assert second.kept == 5000 and second.moved == 0 and second.placed_new == 0


def test_new_instruments_go_to_the_least_loaded_connection_and_old_ones_stay():
    current = {n: Placement(1, 0) for n in range(100)} | {n: Placement(2, 0) for n in range(100, 110)}
    accounts = [
        AccountSlots(account_id=1, max_connections=1, instruments_per_connection=3000),
        AccountSlots(account_id=2, max_connections=1, instruments_per_connection=3000),
    ]
    result = assign_instruments(items=range(200), current=current, accounts=accounts)

    assert all(result.placements[n] == current[n] for n in current)
    new_on_b = [n for n in range(110, 200) if result.placements[n] == Placement(2, 0)]
    assert len(new_on_b) == 90  # all new ones fill the emptier connection first
    assert result.kept == 110 and result.placed_new == 90


def test_failed_account_moves_only_its_instruments():
    first = assign_instruments(items=range(3000), current={}, accounts=[A, B])
    on_a = {n for n, p in first.placements.items() if p.account_id == 1}
    on_b = {n for n, p in first.placements.items() if p.account_id == 2}

    after = assign_instruments(items=range(3000), current=first.placements, accounts=[B])  # A auth_failed

    assert all(after.placements[n] == first.placements[n] for n in on_b)  # B's instruments did not move
    assert all(after.placements[n].account_id == 2 for n in on_a)  # A's instruments moved to B
    assert after.moved == len(on_a) and after.kept == len(on_b)
    assert after.overflow == []
    loads = after.loads()
    assert max(loads.values()) - min(loads.values()) <= 1  # spread over B's connections
    _check_limits(after.placements, [B])


def test_reduced_capacity_moves_only_the_excess():
    one_conn = AccountSlots(account_id=1, max_connections=1, instruments_per_connection=100)
    first = assign_instruments(items=range(100), current={}, accounts=[one_conn])
    shrunk = AccountSlots(account_id=1, max_connections=2, instruments_per_connection=60)

    after = assign_instruments(items=range(100), current=first.placements, accounts=[shrunk])

    assert after.kept == 60 and after.moved == 40
    assert all(after.placements[n] == Placement(1, 0) for n in range(60))  # the first 60 (input order) stay
    assert all(after.placements[n] == Placement(1, 1) for n in range(60, 100))
    _check_limits(after.placements, [shrunk])


def test_fewer_connections_moves_the_instruments_of_the_removed_connection():
    first = assign_instruments(items=range(30), current={}, accounts=[A])
    two = AccountSlots(account_id=1, max_connections=2, instruments_per_connection=3000)

    after = assign_instruments(items=range(30), current=first.placements, accounts=[two])

    moved = [n for n in range(30) if first.placements[n].connection_index == 2]
    assert after.moved == len(moved) == 10
    assert all(after.placements[n].connection_index in (0, 1) for n in range(30))
    assert all(after.placements[n] == first.placements[n] for n in range(30) if n not in moved)


def test_overflow_is_reported_in_input_order_and_nothing_is_dropped():
    small = AccountSlots(account_id=1, max_connections=2, instruments_per_connection=10)
    result = assign_instruments(items=range(25), current={}, accounts=[small])

    assert result.overflow == [20, 21, 22, 23, 24]
    assert set(result.placements) | set(result.overflow) == set(range(25))
    _check_limits(result.placements, [small])


def test_placed_instruments_keep_their_place_before_new_ones_get_capacity():
    small = AccountSlots(account_id=1, max_connections=1, instruments_per_connection=3)
    current = {"late": Placement(1, 0)}
    result = assign_instruments(items=["a", "b", "c", "late"], current=current, accounts=[small])

    assert result.placements["late"] == Placement(1, 0)
    assert result.overflow == ["c"]


def test_no_usable_account_overflows_everything():
    result = assign_instruments(items=[1, 2, 3], current={1: Placement(9, 0)}, accounts=[])

    assert result.placements == {} and result.overflow == [1, 2, 3]


RANDOM_CHANGES = given(
    capacities=st.lists(st.tuples(st.integers(1, 3), st.integers(1, 40)), min_size=0, max_size=4),
    count=st.integers(0, 300),
    rounds=st.integers(1, 4),
    seed=st.integers(0, 10_000),
)


def _random_rounds(capacities, count, rounds, seed):
    """Per round: the usable accounts (accounts fail and come back) and the active items."""
    rng = random.Random(seed)
    for _ in range(rounds):
        accounts = [
            AccountSlots(account_id=i + 1, max_connections=c, instruments_per_connection=n)
            for i, (c, n) in enumerate(capacities)
            if rng.random() > 0.25
        ]
        yield accounts, [n for n in range(count) if rng.random() > 0.1]


@settings(max_examples=60, deadline=None)
@RANDOM_CHANGES
def test_limits_hold_and_nothing_is_lost_across_random_changes(capacities, count, rounds, seed):
    """Without rebalancing (infinite slack) nothing moves unless its place became unusable or full."""
    placements: dict[int, Placement] = {}
    for accounts, items in _random_rounds(capacities, count, rounds, seed):
        result = assign_instruments(items=items, current=placements, accounts=accounts, rebalance_slack=math.inf)
        assert result.rebalanced == 0
        _check_limits(result.placements, accounts)
        assert set(result.placements).isdisjoint(result.overflow)
        assert set(result.placements) | set(result.overflow) == set(items)
        capacity = sum(a.capacity for a in accounts)
        assert len(result.overflow) == max(0, len(items) - capacity)
        # Sticky: whatever could stay (account usable, connection exists) and was not over a limit stayed.
        for item, placement in placements.items():
            if item in result.placements and result.placements[item] != placement:
                usable = {
                    (a.account_id, i): a.instruments_per_connection for a in accounts for i in range(a.max_connections)
                }
                key = (placement.account_id, placement.connection_index)
                assert key not in usable or result.loads()[placement] == usable[key]
        placements = result.placements


@settings(max_examples=80, deadline=None)
@RANDOM_CHANGES
def test_rebalancing_moves_only_what_evens_out_the_accounts(capacities, count, rounds, seed):
    placements: dict[int, Placement] = {}
    for accounts, items in _random_rounds(capacities, count, rounds, seed):
        result = assign_instruments(items=items, current=placements, accounts=accounts)
        _check_limits(result.placements, accounts)
        assert set(result.placements) | set(result.overflow) == set(items)
        assert len(result.overflow) == max(0, len(items) - sum(a.capacity for a in accounts))
        usable = {(a.account_id, i): a.instruments_per_connection for a in accounts for i in range(a.max_connections)}
        loads = result.loads()
        # Moves without a capacity reason are the rebalanced ones, and each changes account.
        unforced = [
            item
            for item, placement in placements.items()
            if item in result.placements
            and result.placements[item] != placement
            and (placement.account_id, placement.connection_index) in usable
            and loads.get(placement, 0) < usable[(placement.account_id, placement.connection_index)]
        ]
        assert len(unforced) == result.rebalanced
        assert all(result.placements[item].account_id != placements[item].account_id for item in unforced)
        # Afterwards no account is over its fair share by more than the slack while another is under by as much.
        by_account = result.account_loads()
        total_load, total_cap = sum(by_account.values()), sum(a.capacity for a in accounts)
        if total_load:
            over = [
                a
                for a in accounts
                if by_account.get(a.account_id, 0) > total_load * a.capacity / total_cap + max(1.0, 0.05 * a.capacity)
            ]
            under = [
                a
                for a in accounts
                if by_account.get(a.account_id, 0) < total_load * a.capacity / total_cap - max(1.0, 0.05 * a.capacity)
            ]
            assert not (over and under), (by_account, accounts)
        placements = result.placements


def test_an_account_back_from_a_failure_gets_its_share_again():
    first = assign_instruments(items=range(6000), current={}, accounts=[A, B])
    failed = assign_instruments(items=range(6000), current=first.placements, accounts=[B])  # A auth_failed
    assert failed.account_loads() == {2: 6000}

    back = assign_instruments(items=range(6000), current=failed.placements, accounts=[A, B])  # a new login

    assert back.account_loads() == {1: 3000, 2: 3000}
    assert back.rebalanced == back.moved == 3000 and back.kept == 3000
    moved = [n for n in range(6000) if back.placements[n] != failed.placements[n]]
    assert all(back.placements[n].account_id == 1 for n in moved)  # only from B to A
    for connection in range(3):  # the newest subscriptions (last in priority order) of each connection left
        was_here = [n for n in range(6000) if failed.placements[n] == Placement(2, connection)]
        left = [n for n in was_here if back.placements[n] != failed.placements[n]]
        stayed = [n for n in was_here if back.placements[n] == failed.placements[n]]
        assert left and stayed and min(left) > max(stayed)
    loads = back.loads()
    assert max(loads.values()) - min(loads.values()) <= 1  # and evenly over A's and B's connections
    _check_limits(back.placements, [A, B])
    # Once even, the next reconcile moves nothing.
    again = assign_instruments(items=range(6000), current=back.placements, accounts=[A, B])
    assert again.moved == 0 and again.placements == back.placements


def test_a_small_imbalance_moves_nothing():
    current = {n: Placement(2, n % 3) for n in range(800)}  # B holds 800, A nothing: within 5 % of 9,000
    result = assign_instruments(items=range(800), current=current, accounts=[A, B])

    assert result.moved == 0 and result.placements == current


# --- diff ---------------------------------------------------------------------------------------


def _ta(account: int, connection: int, mode: str = "full") -> TokenAssignment:
    return TokenAssignment(account_id=account, connection_index=connection, mode=mode)


def test_diff_of_identical_plans_is_empty():
    plan = {n: _ta(1, n % 3) for n in range(1000)}

    assert diff_assignments(plan, dict(plan)) == {}


def test_diff_holds_only_the_changes():
    old = {101: _ta(1, 0), 102: _ta(1, 0), 103: _ta(1, 1, "quote"), 104: _ta(2, 0), 105: _ta(2, 0)}
    new = {
        101: _ta(1, 0),  # unchanged
        # 102 removed
        103: _ta(1, 1, "ltp"),  # mode change only
        104: _ta(1, 2),  # moved account
        105: _ta(2, 0),  # unchanged
        106: _ta(2, 0, "quote"),  # added
        107: _ta(2, 0, "full"),  # added
    }

    ops = diff_assignments(old, new)

    assert ops == {
        Placement(1, 0): ConnectionOps(unsubscribe=[102]),
        Placement(1, 1): ConnectionOps(mode_changes={"ltp": [103]}),
        Placement(1, 2): ConnectionOps(subscribe={"full": [104]}),
        Placement(2, 0): ConnectionOps(unsubscribe=[104], subscribe={"quote": [106], "full": [107]}),
    }
    assert ops[Placement(2, 0)].subscribe_tokens == [106, 107]


def test_diff_after_failover_only_touches_the_failed_accounts_tokens():
    first = assign_instruments(items=range(600), current={}, accounts=[A, B])
    after = assign_instruments(items=range(600), current=first.placements, accounts=[B])
    old = {n: _ta(p.account_id, p.connection_index) for n, p in first.placements.items()}
    new = {n: _ta(p.account_id, p.connection_index) for n, p in after.placements.items()}

    ops = diff_assignments(old, new)

    moved = sorted(n for n, p in first.placements.items() if p.account_id == 1)
    assert sorted(t for key, op in ops.items() if key.account_id == 1 for t in op.unsubscribe) == moved
    assert sorted(t for key, op in ops.items() if key.account_id == 2 for t in op.subscribe_tokens) == moved
    assert all(not op.unsubscribe for key, op in ops.items() if key.account_id == 2)
