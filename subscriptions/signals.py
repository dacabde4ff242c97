"""Edits to subscriptions and accounts (admin, API, shell) reach the running ticker after commit."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from subscriptions.models import Subscription, TradingAccount
from tickerproject.platform.reload_notifications import notify_subscriptions_changed


@receiver(post_save, sender=Subscription)
@receiver(post_delete, sender=Subscription)
@receiver(post_save, sender=TradingAccount)
@receiver(post_delete, sender=TradingAccount)
def _announce_change(sender: type, instance: Any, **kwargs: Any) -> None:
    reason = f"{sender.__name__.lower()} {instance.pk} {'deleted' if 'created' not in kwargs else 'saved'}"
    transaction.on_commit(lambda: notify_subscriptions_changed(reason=reason))
