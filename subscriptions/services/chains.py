"""Subscribe an option chain: N strikes either side of the at-the-money strike.

`chain_plan` computes what a subscription would add (a preview, writes nothing);
`chain_subscribe` recomputes the plan and saves it in one transaction. Both raise
`ValidationError` with field errors on bad input, so the admin form and the API can show them.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from core.strikes import nearest_strike
from subscriptions import selectors
from subscriptions.models import Instrument, Subscription

MAX_STRIKES_EACH_SIDE = 200


@dataclass(frozen=True)
class ChainPlan:
    underlying: str
    expiry: dt.date
    mode: str
    strikes_each_side: int
    spot: float | None  # None: no index price known, the ATM is the middle strike
    atm_strike: float
    strikes: list[float]
    to_add: list[Instrument] = field(default_factory=list)
    already_subscribed: list[Instrument] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.to_add)


@dataclass(frozen=True)
class ChainSubscribeResult:
    plan: ChainPlan
    created: list[Subscription]


def atm_strike(*, strikes: list[float], spot: float | None) -> float:
    """The strike nearest the spot (the lower one on a tie); the middle strike without a spot."""
    if not strikes:
        raise ValueError("no strikes")
    if spot is None or spot <= 0:
        ordered = sorted(strikes)
        return ordered[(len(ordered) - 1) // 2]
    return nearest_strike(strikes, spot)


def strikes_around(*, strikes: list[float], atm: float, each_side: int) -> list[float]:
    """`each_side` strikes below and above `atm`, plus `atm` itself (fewer at the chain's edges)."""
    ordered = sorted(set(strikes))
    centre = ordered.index(atm)
    return ordered[max(centre - each_side, 0) : centre + each_side + 1]


def chain_plan(*, underlying: str, expiry: dt.date, strikes_each_side: int, mode: str) -> ChainPlan:
    """What subscribing this chain would add. Writes nothing."""
    errors: dict[str, str] = {}
    if mode not in Subscription.Mode.values:
        errors["mode"] = f"Unknown mode {mode!r}; choose one of {', '.join(Subscription.Mode.values)}."
    if not 0 <= strikes_each_side <= MAX_STRIKES_EACH_SIDE:
        errors["strikes_each_side"] = f"Choose between 0 and {MAX_STRIKES_EACH_SIDE} strikes either side."
    instruments = list(selectors.chain_instruments(underlying=underlying, expiry=expiry))
    if not instruments:
        errors["expiry"] = f"No listed {underlying} options expire on {expiry:%Y-%m-%d}."
    if errors:
        raise ValidationError(errors)

    spot = selectors.underlying_spot(underlying=underlying)
    all_strikes = sorted({i.strike for i in instruments})
    atm = atm_strike(strikes=all_strikes, spot=spot)
    chosen = strikes_around(strikes=all_strikes, atm=atm, each_side=strikes_each_side)
    chosen_set = set(chosen)
    selected = [i for i in instruments if i.strike in chosen_set]
    active_ids = set(
        Subscription.objects.filter(instrument__in=selected, is_active=True).values_list("instrument_id", flat=True)
    )
    return ChainPlan(
        underlying=underlying,
        expiry=expiry,
        mode=mode,
        strikes_each_side=strikes_each_side,
        spot=spot,
        atm_strike=atm,
        strikes=chosen,
        to_add=[i for i in selected if i.pk not in active_ids],
        already_subscribed=[i for i in selected if i.pk in active_ids],
    )


def chain_subscribe(*, underlying: str, expiry: dt.date, strikes_each_side: int, mode: str) -> ChainSubscribeResult:
    """Subscribe the chain's instruments that have no active subscription yet, all or nothing."""
    with transaction.atomic():
        plan = chain_plan(underlying=underlying, expiry=expiry, strikes_each_side=strikes_each_side, mode=mode)
        try:
            with transaction.atomic():
                created = Subscription.objects.bulk_create(
                    [Subscription(instrument=i, mode=mode, is_active=True) for i in plan.to_add]
                )
        except IntegrityError as exc:  # another writer subscribed some of them since the plan was read
            raise ValidationError(
                "Some of these instruments were subscribed by someone else meanwhile; preview again.",
                code="already_subscribed",
            ) from exc
    if created:
        # bulk_create sends no post_save: tell the ticker once, after commit.
        from tickerproject.platform.reload_notifications import notify_subscriptions_changed

        transaction.on_commit(
            lambda: notify_subscriptions_changed(reason=f"chain {underlying} {expiry:%Y-%m-%d}: {len(created)} added")
        )
    return ChainSubscribeResult(plan=plan, created=created)
