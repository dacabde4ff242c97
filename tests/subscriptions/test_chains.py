"""Subscribing an option chain: ATM from the index price, N strikes either side, skip what is subscribed."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core.exceptions import ValidationError

from subscriptions.models import Subscription
from subscriptions.services.chains import atm_strike, chain_plan, chain_subscribe, strikes_around
from tests.subscriptions.factories import IndexFactory, SubscriptionFactory, make_chain

EXPIRY = dt.date(2030, 1, 29)


def test_atm_is_the_nearest_strike_or_the_middle_without_a_spot():
    strikes = [100.0, 150.0, 200.0, 250.0]
    assert atm_strike(strikes=strikes, spot=181.0) == 200.0
    assert atm_strike(strikes=strikes, spot=175.0) == 150.0  # tie: the lower strike
    assert atm_strike(strikes=strikes, spot=None) == 150.0
    assert atm_strike(strikes=[100.0, 150.0, 200.0], spot=0) == 150.0
    assert strikes_around(strikes=strikes, atm=100.0, each_side=2) == [100.0, 150.0, 200.0]


@pytest.mark.django_db
def test_plan_centres_on_the_index_price_and_skips_active_subscriptions():
    IndexFactory(last_price=26040.0)
    chain = make_chain(expiry=EXPIRY)
    already = next(i for i in chain if i.strike == 26000.0 and i.instrument_type == "PE")
    SubscriptionFactory(instrument=already)
    plan = chain_plan(underlying="NIFTY", expiry=EXPIRY, strikes_each_side=2, mode="quote")
    assert plan.spot == 26040.0 and plan.atm_strike == 26000.0
    assert plan.strikes == [25800.0, 25900.0, 26000.0, 26100.0, 26200.0]
    assert plan.count == 9 and [i.tradingsymbol for i in plan.already_subscribed] == [already.tradingsymbol]
    assert Subscription.objects.count() == 1  # a plan writes nothing


@pytest.mark.django_db
def test_plan_falls_back_to_the_middle_strike_without_an_index_price():
    make_chain(expiry=EXPIRY, strikes=[100.0, 200.0, 300.0, 400.0, 500.0])
    plan = chain_plan(underlying="NIFTY", expiry=EXPIRY, strikes_each_side=0, mode="full")
    assert plan.spot is None and plan.atm_strike == 300.0 and plan.count == 2


@pytest.mark.django_db
def test_subscribe_saves_exactly_the_plan_and_is_idempotent():
    IndexFactory(last_price=26000.0)
    make_chain(expiry=EXPIRY)
    result = chain_subscribe(underlying="NIFTY", expiry=EXPIRY, strikes_each_side=3, mode="ltp")
    assert len(result.created) == 14
    rows = Subscription.objects.filter(is_active=True)
    assert rows.count() == 14 and set(rows.values_list("mode", flat=True)) == {"ltp"}
    assert sorted({s.instrument.strike for s in rows}) == [25700.0 + 100 * k for k in range(7)]
    again = chain_subscribe(underlying="NIFTY", expiry=EXPIRY, strikes_each_side=3, mode="ltp")
    assert again.created == [] and len(again.plan.already_subscribed) == 14


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"expiry": dt.date(2031, 1, 1)}, "expiry"),
        ({"underlying": "NOPE"}, "expiry"),
        ({"mode": "turbo"}, "mode"),
        ({"strikes_each_side": -1}, "strikes_each_side"),
    ],
)
def test_bad_input_raises_field_errors_and_saves_nothing(kwargs, field):
    make_chain(expiry=EXPIRY)
    arguments = {"underlying": "NIFTY", "expiry": EXPIRY, "strikes_each_side": 2, "mode": "full", **kwargs}
    with pytest.raises(ValidationError) as info:
        chain_subscribe(**arguments)
    assert field in info.value.message_dict
    assert not Subscription.objects.exists()
