"""Writes to subscriptions: create, activate, deactivate.

The database enforces one active subscription per instrument; these services turn a violation into
a `ValidationError` that names the instrument, so forms and the API can show it as a field error.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from subscriptions.models import Instrument, Subscription

ONE_ACTIVE_CONSTRAINT = "one_active_subscription_per_instrument"


def _already_active_error(instrument: Instrument) -> ValidationError:
    return ValidationError(
        {"instrument": f"{instrument} already has an active subscription."}, code="already_subscribed"
    )


def subscription_create(
    *, instrument: Instrument, mode: str = Subscription.Mode.FULL, is_active: bool = True
) -> Subscription:
    """Create a subscription; raises ValidationError if the instrument already has an active one."""
    if mode not in Subscription.Mode.values:
        raise ValidationError({"mode": f"Unknown mode {mode!r}; choose one of {', '.join(Subscription.Mode.values)}."})
    if is_active and Subscription.objects.filter(instrument=instrument, is_active=True).exists():
        raise _already_active_error(instrument)
    try:
        with transaction.atomic():
            return Subscription.objects.create(instrument=instrument, mode=mode, is_active=is_active)
    except IntegrityError as exc:  # lost a race with another writer
        if ONE_ACTIVE_CONSTRAINT in str(exc) or "UNIQUE" in str(exc).upper():
            raise _already_active_error(instrument) from exc
        raise


def subscription_activate(*, subscription: Subscription) -> Subscription:
    """Activate one subscription; raises ValidationError if another one is active for its instrument."""
    if subscription.is_active:
        return subscription
    if (
        Subscription.objects.filter(instrument_id=subscription.instrument_id, is_active=True)
        .exclude(pk=subscription.pk)
        .exists()
    ):
        raise _already_active_error(subscription.instrument)
    subscription.is_active = True
    subscription.deactivated_reason = ""
    try:
        with transaction.atomic():
            subscription.save(update_fields=["is_active", "deactivated_reason", "updated_at"])
    except IntegrityError as exc:
        subscription.is_active = False
        raise _already_active_error(subscription.instrument) from exc
    return subscription


def subscription_deactivate(*, subscription: Subscription, reason: str = "deactivated by operator") -> Subscription:
    """Deactivate one subscription, recording why; its account assignment is released."""
    if not subscription.is_active:
        return subscription
    subscription.is_active = False
    subscription.deactivated_reason = reason[:255]
    subscription.account = None
    subscription.connection_index = None
    subscription.save(update_fields=["is_active", "deactivated_reason", "account", "connection_index", "updated_at"])
    return subscription


def subscriptions_activate(*, subscriptions: Iterable[Subscription]) -> tuple[int, list[str]]:
    """Activate many; returns (activated count, one error message per subscription that could not be)."""
    activated, errors = 0, []
    for subscription in subscriptions:
        if subscription.is_active:
            continue
        try:
            subscription_activate(subscription=subscription)
        except ValidationError as exc:
            errors.extend(exc.messages)
        else:
            activated += 1
    return activated, errors


def subscriptions_deactivate(*, subscriptions: Iterable[Subscription], reason: str = "deactivated by operator") -> int:
    """Deactivate many; returns how many changed."""
    count = 0
    for subscription in subscriptions:
        if subscription.is_active:
            subscription_deactivate(subscription=subscription, reason=reason)
            count += 1
    return count


def subscription_change(
    *, subscription: Subscription, mode: str | None = None, is_active: bool | None = None
) -> Subscription:
    """Change the mode and/or activate/deactivate one subscription (the API's update), all or nothing."""
    if mode is not None and mode not in Subscription.Mode.values:
        raise ValidationError({"mode": f"Unknown mode {mode!r}; choose one of {', '.join(Subscription.Mode.values)}."})
    with transaction.atomic():
        if mode is not None and mode != subscription.mode:
            subscription.mode = mode
            subscription.save(update_fields=["mode", "updated_at"])
        if is_active is True:
            subscription_activate(subscription=subscription)
        elif is_active is False:
            subscription_deactivate(subscription=subscription, reason="deactivated through the API")
    return subscription


def subscription_delete(*, subscription: Subscription) -> None:
    """Delete one subscription; the ticker hears about it after commit (signals.py)."""
    subscription.delete()
