"""Historical candles."""

from __future__ import annotations

from django.db import models

from subscriptions.models import Instrument


class Candle(models.Model):
    class Interval(models.TextChoices):
        MINUTE = "minute"
        MINUTE3 = "3minute"
        MINUTE5 = "5minute"
        MINUTE10 = "10minute"
        MINUTE15 = "15minute"
        MINUTE30 = "30minute"
        MINUTE60 = "60minute"
        DAY = "day"

    instrument = models.ForeignKey(Instrument, on_delete=models.CASCADE, related_name="candles")
    interval = models.CharField(max_length=10, choices=Interval.choices)
    timestamp = models.DateTimeField()
    open = models.FloatField()
    high = models.FloatField()
    low = models.FloatField()
    close = models.FloatField()
    volume = models.BigIntegerField(default=0)
    oi = models.BigIntegerField(null=True, blank=True)
    is_mock = models.BooleanField(default=False)

    class Meta:
        ordering = ["instrument", "interval", "timestamp"]
        constraints = [
            models.UniqueConstraint(
                fields=["instrument", "interval", "timestamp"], name="candle_instrument_interval_ts_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.instrument_id} {self.interval} {self.timestamp:%Y-%m-%d %H:%M}"
