"""The one lock every history backfill holds (Celery's tasks, the command, the ticker's session
backfill), so two never fetch the same candles at once."""

from __future__ import annotations

from django.conf import settings

BACKFILL_LOCK = "history.backfill"
BACKFILL_TIME_LIMIT = settings.CELERY_TASK_TIME_LIMIT
BACKFILL_SOFT_TIME_LIMIT = settings.CELERY_TASK_SOFT_TIME_LIMIT
