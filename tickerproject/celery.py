"""The Celery app. The beat schedule lives in the database (django-celery-beat) and is created by
a data migration in `history`, so the operator can edit it in the admin."""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tickerproject.settings")

app = Celery("tickerproject")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
