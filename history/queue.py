"""Queue backfills from other parts of the system without waiting for them.

With a broker the task goes to Celery; embedded it runs on the embedded beat's worker threads
(history.scheduler), or, when none runs in this process, is left to the next scheduled backfill
(logged, never silent). Queuing never raises into the caller.
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings

logger = logging.getLogger(__name__)


def _enqueue(task: Any, args: tuple, kwargs: dict, *, key: str, what: str) -> bool:
    try:
        if settings.CELERY_TASK_ALWAYS_EAGER:
            from history.scheduler import current_beat

            beat = current_beat()
            if beat is None:
                logger.info("%s: no task runner in this process; the next scheduled backfill covers it", what)
                return False
            return beat.submit(task, args, kwargs, key=key) is not None
        task.apply_async(args, kwargs, retry=False)
        return True
    except Exception:
        logger.exception("%s: could not queue the backfill", what)
        return False


def backfill_enqueue(*, subscription_id: int) -> bool:
    """Queue the backfill of one subscription's instrument; True when queued."""
    from history.tasks import backfill_subscription

    return _enqueue(
        backfill_subscription,
        (subscription_id,),
        {},
        key=f"backfill_subscription:{subscription_id}",
        what=f"subscription {subscription_id}",
    )
