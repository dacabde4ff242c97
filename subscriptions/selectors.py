"""Reads: option chains, the underlying's spot, unassigned subscriptions, an account to call Kite with,
exchange holidays, what is subscribed."""

from __future__ import annotations

import datetime as dt
from typing import cast

from django.db.models import Q, QuerySet
from django.utils import timezone

from subscriptions.models import IST, Instrument, MarketHoliday, Subscription, TradingAccount

OPTION_TYPES = (Instrument.InstrumentType.CE, Instrument.InstrumentType.PE)


def option_underlyings() -> list[str]:
    """Underlyings that have live (not delisted) options, alphabetically."""
    return list(
        Instrument.objects.filter(instrument_type__in=OPTION_TYPES, delisted_at__isnull=True)
        .exclude(underlying="")
        .values_list("underlying", flat=True)
        .distinct()
        .order_by("underlying")
    )


def option_expiries(*, underlying: str, today: dt.date | None = None) -> list[dt.date]:
    """Expiries of an underlying's listed options, from today (IST) on, nearest first."""
    today = today or timezone.now().astimezone(IST).date()
    expiries = (
        Instrument.objects.filter(
            underlying=underlying,
            instrument_type__in=OPTION_TYPES,
            delisted_at__isnull=True,
            expiry__gte=today,
        )
        .values_list("expiry", flat=True)
        .distinct()
        .order_by("expiry")
    )
    # expiry__gte leaves out the NULL expiries the column allows.
    return list(cast("QuerySet[Instrument, dt.date]", expiries))


def chain_instruments(*, underlying: str, expiry: dt.date) -> QuerySet[Instrument]:
    """The listed CE/PE instruments of one chain, by strike."""
    return Instrument.objects.filter(
        underlying=underlying, expiry=expiry, instrument_type__in=OPTION_TYPES, delisted_at__isnull=True
    ).order_by("strike", "instrument_type")


def underlying_spot(*, underlying: str) -> float | None:
    """The last price of the underlying's index (or equity) instrument, if known and positive."""
    price = (
        Instrument.objects.filter(underlying=underlying, instrument_type=Instrument.InstrumentType.EQ, last_price__gt=0)
        .order_by("-segment")  # "INDICES" sorts after "BSE"/"NSE": prefer the index
        .values_list("last_price", flat=True)
        .first()
    )
    return float(price) if price else None


def unassigned_active_subscriptions() -> QuerySet[Subscription]:
    """Active subscriptions that no account streams (waiting for the reconciler, or over capacity)."""
    return Subscription.objects.filter(is_active=True, account__isnull=True)


def active_account_with_token(*, now: dt.datetime | None = None) -> TradingAccount | None:
    """An active, non-mock account whose Kite token is still valid (for REST calls like the dump)."""
    now = now or timezone.now()
    candidates = TradingAccount.objects.filter(is_active=True, is_mock=False).exclude(access_token="")
    candidates = candidates.filter(Q(token_expires_at__isnull=True) | Q(token_expires_at__gt=now))
    usable = [a for a in candidates.order_by("label") if a.health != TradingAccount.Health.AUTH_FAILED]
    usable.sort(key=lambda a: a.health != TradingAccount.Health.OK)  # healthy ones first, then by label
    return usable[0] if usable else None


def market_holiday_dates(*, exchange: str = "NSE") -> set[dt.date]:
    """The exchange's holidays, every one recorded."""
    return set(MarketHoliday.objects.filter(exchange=exchange).values_list("date", flat=True))


def subscribed_instrument_ids(*, subscription_ids: list[int]) -> list[int]:
    """The ids of the instruments these subscriptions are for."""
    return list(Instrument.objects.filter(subscriptions__id__in=subscription_ids).values_list("id", flat=True))
