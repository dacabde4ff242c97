"""At most one active subscription per instrument: enforced by the database, explained by the services."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from subscriptions.models import Subscription
from subscriptions.services.subscriptions import (
    subscription_activate,
    subscription_create,
    subscription_deactivate,
)
from tests.subscriptions.factories import AccountFactory, OptionFactory, SubscriptionFactory

pytestmark = pytest.mark.django_db


def test_database_refuses_a_second_active_subscription():
    instrument = OptionFactory()
    Subscription.objects.create(instrument=instrument, mode="full")
    with pytest.raises(IntegrityError), transaction.atomic():
        Subscription.objects.create(instrument=instrument, mode="ltp")
    assert Subscription.objects.filter(instrument=instrument).count() == 1


def test_inactive_duplicates_are_allowed_history():
    instrument = OptionFactory()
    Subscription.objects.create(instrument=instrument, is_active=False, deactivated_reason="expired")
    Subscription.objects.create(instrument=instrument, is_active=False, deactivated_reason="operator")
    Subscription.objects.create(instrument=instrument, is_active=True)
    assert Subscription.objects.filter(instrument=instrument).count() == 3


def test_service_gives_a_friendly_error_naming_the_instrument():
    instrument = OptionFactory(tradingsymbol="NIFTY30JAN26000CE")
    subscription_create(instrument=instrument, mode="full")
    with pytest.raises(ValidationError) as info:
        subscription_create(instrument=instrument, mode="quote")
    assert "NFO:NIFTY30JAN26000CE already has an active subscription" in str(info.value)
    assert "instrument" in info.value.message_dict
    assert Subscription.objects.filter(instrument=instrument).count() == 1


def test_service_rejects_an_unknown_mode():
    with pytest.raises(ValidationError) as info:
        subscription_create(instrument=OptionFactory(), mode="turbo")
    assert "mode" in info.value.message_dict
    assert not Subscription.objects.exists()


def test_activate_refuses_when_another_is_active_and_deactivate_releases_assignment():
    active = SubscriptionFactory(account=AccountFactory(), connection_index=1)
    old = SubscriptionFactory(instrument=active.instrument, is_active=False)
    with pytest.raises(ValidationError):
        subscription_activate(subscription=old)
    old.refresh_from_db()
    assert not old.is_active

    subscription_deactivate(subscription=active, reason="expired")
    active.refresh_from_db()
    assert (active.is_active, active.deactivated_reason, active.account, active.connection_index) == (
        False,
        "expired",
        None,
        None,
    )
    subscription_activate(subscription=old)
    old.refresh_from_db()
    assert old.is_active and old.deactivated_reason == ""
