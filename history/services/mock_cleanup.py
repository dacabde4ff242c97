"""Drop mock history of contracts that have expired (it describes nothing that can still trade)."""

from __future__ import annotations

import datetime as dt

from django.db import transaction
from django.utils import timezone

from core.calendar import IST
from history.models import Candle, CandleCoverage


def mock_history_drop_expired(*, now: dt.datetime | None = None) -> int:
    """Delete mock candles and mock coverage of instruments whose expiry is before today (IST);
    returns the number of candles deleted. Live candles are kept."""
    today = (now or timezone.now()).astimezone(IST).date()
    with transaction.atomic():
        deleted, _ = Candle.objects.filter(is_mock=True, instrument__expiry__lt=today).delete()
        CandleCoverage.objects.filter(is_mock=True, instrument__expiry__lt=today).delete()
    return deleted
