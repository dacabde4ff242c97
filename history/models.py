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


class CandleCoverage(models.Model):
    """A range of time already fetched for one instrument and interval, with or without candles in it
    (illiquid contracts have empty minutes; asking again would only burn the rate limit). The
    backfill fetches the window minus these ranges. Mock coverage does not count once a live account
    exists, so real candles then replace mock ones."""

    instrument = models.ForeignKey(Instrument, on_delete=models.CASCADE, related_name="candle_coverage")
    interval = models.CharField(max_length=10, choices=Candle.Interval.choices)
    start = models.DateTimeField()
    end = models.DateTimeField()
    is_mock = models.BooleanField(default=False)

    class Meta:
        ordering = ["instrument", "interval", "start"]
        indexes = [models.Index(fields=["instrument", "interval", "is_mock"], name="coverage_lookup_idx")]

    def __str__(self) -> str:
        return f"{self.instrument_id} {self.interval} {self.start:%Y-%m-%d %H:%M}..{self.end:%Y-%m-%d %H:%M}"


class BackfillRun(models.Model):
    """One backfill, with its progress, counters and the first errors (shown in the admin)."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        PARTIAL = "partial", "Finished with errors"
        FAILED = "failed", "Failed"
        SKIPPED = "skipped", "Skipped (another backfill was running)"

    MAX_ERRORS_KEPT = 50

    status = models.CharField(max_length=12, choices=Status.choices, default=Status.PENDING, db_index=True)
    trigger = models.CharField(max_length=64, blank=True, default="", help_text="schedule, command, subscription N")
    source = models.CharField(max_length=16, blank=True, default="", help_text="kite or mock")
    instruments_total = models.PositiveIntegerField(default=0)
    instruments_done = models.PositiveIntegerField(default=0)
    requests_planned = models.PositiveIntegerField(default=0)
    requests_done = models.PositiveIntegerField(default=0)
    retries = models.PositiveIntegerField(default=0)
    candles_written = models.PositiveBigIntegerField(default=0)
    empty_ranges = models.PositiveIntegerField(default=0)
    errors_count = models.PositiveIntegerField(default=0)
    errors = models.JSONField(default=list, blank=True)
    message = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"backfill {self.pk} {self.status} {self.progress_percent}%"

    @property
    def progress_percent(self) -> int:
        if not self.requests_planned:
            return 100 if self.status in (self.Status.SUCCEEDED, self.Status.PARTIAL) else 0
        return min(100, round(100 * self.requests_done / self.requests_planned))


class AtmIvSample(models.Model):
    """The ATM IV (at the forward) of an underlying's nearest weekly or monthly expiry: one a minute
    while a ticker streams that chain, and one per past session from the mock history when no live
    history exists. A session's close is its latest sample; IV percentile and rank compare today's
    ATM IV with the closes of the last sessions (`history.selectors.atm_iv_closes`)."""

    class Bucket(models.TextChoices):
        WEEKLY = "weekly", "Nearest weekly"
        MONTHLY = "monthly", "Nearest monthly"

    underlying = models.CharField(max_length=32)
    bucket = models.CharField(max_length=8, choices=Bucket.choices)
    expiry = models.DateField()
    session_day = models.DateField()
    timestamp = models.DateTimeField()
    atm_iv = models.FloatField()
    is_mock = models.BooleanField(default=False)

    class Meta:
        ordering = ["underlying", "bucket", "timestamp"]
        constraints = [
            models.UniqueConstraint(fields=["underlying", "bucket", "timestamp"], name="atm_iv_sample_unique")
        ]
        indexes = [models.Index(fields=["underlying", "bucket", "session_day"], name="atm_iv_session_idx")]

    def __str__(self) -> str:
        return f"{self.underlying} {self.bucket} {self.timestamp:%Y-%m-%d %H:%M} {self.atm_iv:.4f}"


class ChainSeriesPoint(models.Model):
    """One minute of a chain's intraday series (streaming.contract.SERIES_FIELDS), so a ticker that
    restarts mid-session, and a page opened in the afternoon, still have the morning."""

    underlying = models.CharField(max_length=32)
    expiry = models.DateField()
    session_day = models.DateField()
    timestamp = models.DateTimeField()
    spot = models.FloatField(null=True)
    forward = models.FloatField(null=True)
    atm_strike = models.FloatField(null=True)
    atm_iv = models.FloatField(null=True)
    straddle = models.FloatField(null=True)
    pcr_oi = models.FloatField(null=True)
    ce_oi_change = models.FloatField(null=True)
    pe_oi_change = models.FloatField(null=True)
    net_gex = models.FloatField(null=True)
    is_mock = models.BooleanField(default=False)

    class Meta:
        ordering = ["underlying", "expiry", "timestamp"]
        constraints = [
            models.UniqueConstraint(fields=["underlying", "expiry", "timestamp"], name="chain_series_point_unique")
        ]
        indexes = [models.Index(fields=["underlying", "expiry", "session_day"], name="chain_series_session_idx")]

    def __str__(self) -> str:
        return f"{self.underlying} {self.expiry} {self.timestamp:%Y-%m-%d %H:%M}"
