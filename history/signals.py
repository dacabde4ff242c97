"""A new (or re-activated) subscription gets its history after its transaction commits."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models.signals import post_save
from django.dispatch import receiver

from history.queue import backfill_enqueue
from subscriptions.models import Subscription


@receiver(post_save, sender=Subscription, dispatch_uid="history.backfill_new_subscription")
def _backfill_new_subscription(sender: type, instance: Subscription, created: bool, **kwargs: Any) -> None:
    update_fields = kwargs.get("update_fields")
    activated = created or update_fields is None or "is_active" in update_fields
    if instance.is_active and activated and getattr(settings, "HISTORY_BACKFILL_ON_SUBSCRIBE", True):
        subscription_id = instance.pk
        transaction.on_commit(lambda: backfill_enqueue(subscription_id=subscription_id))
