"""Instruments, Kite accounts, subscriptions and the exchange calendar."""

from __future__ import annotations

import datetime as dt

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone

from core.calendar import IST, expiry_datetime
from subscriptions.fields import EncryptedTextField

MAX_CONNECTIONS_PER_ACCOUNT = 3
MAX_INSTRUMENTS_PER_CONNECTION = 3000


class Instrument(models.Model):
    """One row of Kite's instruments dump. Kite reuses tokens after expiry, so the natural key
    is (exchange, tradingsymbol), not the token."""

    class InstrumentType(models.TextChoices):
        EQ = "EQ", "Equity / index"
        FUT = "FUT", "Future"
        CE = "CE", "Call option"
        PE = "PE", "Put option"

    instrument_token = models.BigIntegerField(db_index=True)
    exchange_token = models.BigIntegerField(default=0)
    tradingsymbol = models.CharField(max_length=64)
    name = models.CharField(max_length=128, blank=True)
    last_price = models.FloatField(default=0.0)
    expiry = models.DateField(null=True, blank=True)
    strike = models.FloatField(default=0.0)
    tick_size = models.FloatField(default=0.05)
    lot_size = models.IntegerField(default=1)
    instrument_type = models.CharField(max_length=8, choices=InstrumentType.choices, default="EQ")
    segment = models.CharField(max_length=16)
    exchange = models.CharField(max_length=8)
    # The chain this instrument belongs to, e.g. "NIFTY" for NIFTY options and for the NIFTY 50 index.
    underlying = models.CharField(max_length=64, blank=True, db_index=True)
    # Set when the instrument disappeared from Kite's dump; cleared if it comes back.
    delisted_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["underlying", "expiry", "strike", "instrument_type"]
        constraints = [
            models.UniqueConstraint(fields=["exchange", "tradingsymbol"], name="instrument_exchange_symbol_unique")
        ]
        indexes = [
            models.Index(fields=["underlying", "expiry", "strike", "instrument_type"], name="instrument_chain_idx"),
            models.Index(fields=["segment", "expiry"], name="instr_segment_expiry_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.exchange}:{self.tradingsymbol}"

    @property
    def is_option(self) -> bool:
        return self.instrument_type in (self.InstrumentType.CE, self.InstrumentType.PE)

    def is_expired(self, now: dt.datetime | None = None) -> bool:
        """Contracts expire at 15:30 IST on their expiry date."""
        if self.expiry is None:
            return False
        now = now or timezone.now()
        expires_at = expiry_datetime(self.expiry)
        return now >= expires_at


class TradingAccount(models.Model):
    """One Kite login. Secrets are encrypted at rest and never rendered or logged."""

    class Health(models.TextChoices):
        UNKNOWN = "unknown", "Unknown"
        OK = "ok", "OK"
        AUTH_FAILED = "auth_failed", "Authentication failed"
        ERROR = "error", "Error"

    label = models.CharField(max_length=64, unique=True)
    kite_user_id = models.CharField(max_length=32, blank=True)
    api_key = models.CharField(max_length=64)
    api_secret = EncryptedTextField(blank=True, default="")
    access_token = EncryptedTextField(blank=True, default="")
    token_expires_at = models.DateTimeField(null=True, blank=True)
    # A mock account streams the mock market and never talks to Kite.
    is_mock = models.BooleanField(default=False)
    is_active = models.BooleanField(default=True)
    health = models.CharField(max_length=16, choices=Health.choices, default=Health.UNKNOWN)
    last_error = models.TextField(blank=True, default="")
    health_changed_at = models.DateTimeField(null=True, blank=True)
    max_connections = models.PositiveSmallIntegerField(
        default=MAX_CONNECTIONS_PER_ACCOUNT,
        validators=[MinValueValidator(1), MaxValueValidator(MAX_CONNECTIONS_PER_ACCOUNT)],
    )
    instruments_per_connection = models.PositiveIntegerField(
        default=MAX_INSTRUMENTS_PER_CONNECTION,
        validators=[MinValueValidator(1), MaxValueValidator(MAX_INSTRUMENTS_PER_CONNECTION)],
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["label"]
        constraints = [
            models.CheckConstraint(
                condition=Q(max_connections__gte=1) & Q(max_connections__lte=MAX_CONNECTIONS_PER_ACCOUNT),
                name="account_connections_range",
            ),
            models.CheckConstraint(
                condition=Q(instruments_per_connection__gte=1)
                & Q(instruments_per_connection__lte=MAX_INSTRUMENTS_PER_CONNECTION),
                name="account_instruments_per_connection_range",
            ),
        ]

    def __str__(self) -> str:
        return self.label

    def __repr__(self) -> str:  # never the secrets
        return f"<TradingAccount {self.pk} {self.label!r} api_key={self.api_key!r}>"

    @property
    def capacity(self) -> int:
        return self.max_connections * self.instruments_per_connection

    def has_valid_token(self, now: dt.datetime | None = None) -> bool:
        if self.is_mock:
            return True
        if not self.access_token:
            return False
        now = now or timezone.now()
        return self.token_expires_at is None or self.token_expires_at > now

    @staticmethod
    def token_expiry_after(moment: dt.datetime) -> dt.datetime:
        """Kite access tokens die at 06:00 IST on the next day (or today, before 06:00)."""
        local = moment.astimezone(IST)
        six = local.replace(hour=6, minute=0, second=0, microsecond=0)
        if local >= six:
            six += dt.timedelta(days=1)
        return six.astimezone(dt.UTC)


class Subscription(models.Model):
    class Mode(models.TextChoices):
        LTP = "ltp", "LTP"
        QUOTE = "quote", "Quote"
        FULL = "full", "Full"

    instrument = models.ForeignKey(Instrument, on_delete=models.CASCADE, related_name="subscriptions")
    mode = models.CharField(max_length=8, choices=Mode.choices, default=Mode.FULL)
    is_active = models.BooleanField(default=True)
    # Written by the reconciler.
    account = models.ForeignKey(
        TradingAccount, null=True, blank=True, on_delete=models.SET_NULL, related_name="subscriptions"
    )
    connection_index = models.PositiveSmallIntegerField(null=True, blank=True)
    deactivated_reason = models.CharField(max_length=255, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-is_active", "instrument__underlying", "instrument__expiry", "instrument__strike"]
        constraints = [
            models.UniqueConstraint(
                fields=["instrument"],
                condition=Q(is_active=True),
                name="one_active_subscription_per_instrument",
                violation_error_message="This instrument already has an active subscription.",
            )
        ]
        indexes = [models.Index(fields=["is_active", "account"], name="sub_active_account_idx")]

    def __str__(self) -> str:
        state = "active" if self.is_active else "inactive"
        return f"{self.instrument} ({self.mode}, {state})"


class MarketHoliday(models.Model):
    exchange = models.CharField(max_length=8, default="NSE")
    date = models.DateField()
    description = models.CharField(max_length=128)

    class Meta:
        ordering = ["date"]
        constraints = [models.UniqueConstraint(fields=["exchange", "date"], name="holiday_exchange_date_unique")]

    def __str__(self) -> str:
        return f"{self.exchange} {self.date:%Y-%m-%d} {self.description}"
