"""The Celery app. The beat schedule lives in the database (django-celery-beat) and is created by
a data migration in `history`, so the operator can edit it in the admin."""

from __future__ import annotations

import os
from typing import Any

from celery import Celery
from celery.signals import setup_logging

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tickerproject.settings")

app = Celery("tickerproject")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@setup_logging.connect
def use_the_projects_logging(**kwargs: Any) -> None:
    """Workers and beat log through settings.LOGGING, whose handler masks credentials. Without a
    receiver of this signal Celery replaces the root handler with its own, which masks nothing."""
    from logging.config import dictConfig

    from django.conf import settings

    dictConfig(settings.LOGGING)
