"""Seed the demo: an admin user, the mock account, NIFTY/BANKNIFTY indices and option chains, and
active subscriptions, so the first screen is full. Safe to run again: it only adds what is missing."""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass, field

from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from subscriptions import demo
from subscriptions.models import IST, Instrument, MarketHoliday, Subscription, TradingAccount
from subscriptions.selectors import option_expiries
from subscriptions.services.chains import chain_subscribe

MOCK_ACCOUNT_LABEL = "Mock market"
ADMIN_USERNAME = "admin"
FIRST_DEMO_EXCHANGE_TOKEN = 40000
SUBSCRIBED_STRIKES_EACH_SIDE = 20


@dataclass
class DemoSeedReport:
    admin_password: str | None = None  # only when the admin user was created now
    account_created: bool = False
    instruments_created: int = 0
    subscriptions_created: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(
            self.admin_password or self.account_created or self.instruments_created or self.subscriptions_created
        )


def _ensure_admin(report: DemoSeedReport) -> None:
    User = get_user_model()
    if User.objects.filter(is_superuser=True).exists():
        return
    password = secrets.token_urlsafe(12)
    User.objects.create_superuser(username=ADMIN_USERNAME, email="admin@example.com", password=password)
    report.admin_password = password


def _ensure_mock_account(report: DemoSeedReport) -> None:
    _, created = TradingAccount.objects.get_or_create(
        label=MOCK_ACCOUNT_LABEL, defaults={"api_key": "mock", "is_mock": True, "kite_user_id": "MOCK01"}
    )
    report.account_created = created


def _ensure_instruments(report: DemoSeedReport, *, today: dt.date) -> None:
    holidays = set(MarketHoliday.objects.filter(exchange="NSE").values_list("date", flat=True))
    existing = set(Instrument.objects.values_list("exchange", "tradingsymbol"))
    next_exchange_token = max(
        (Instrument.objects.filter(exchange="NFO").aggregate(m=Max("exchange_token"))["m"] or 0) + 1,
        FIRST_DEMO_EXCHANGE_TOKEN,
    )
    new: list[Instrument] = []
    for spec in demo.DEMO_UNDERLYINGS:
        index = demo.index_row(spec)
        if (index["exchange"], index["tradingsymbol"]) not in existing:
            new.append(Instrument(**index))
        for row in demo.option_rows(spec, today=today, holidays=holidays):
            if (row["exchange"], row["tradingsymbol"]) in existing:
                continue
            new.append(
                Instrument(
                    exchange_token=next_exchange_token,
                    instrument_token=demo.nfo_instrument_token(next_exchange_token),
                    **row,
                )
            )
            next_exchange_token += 1
    Instrument.objects.bulk_create(new, batch_size=1000)
    report.instruments_created = len(new)


def _ensure_subscriptions(report: DemoSeedReport, *, today: dt.date) -> None:
    for spec in demo.DEMO_UNDERLYINGS:
        index = Instrument.objects.filter(exchange="NSE", tradingsymbol=spec.index_symbol).first()
        if index and not Subscription.objects.filter(instrument=index, is_active=True).exists():
            Subscription.objects.create(instrument=index, mode=Subscription.Mode.FULL)
            report.subscriptions_created += 1
        expiries = option_expiries(underlying=spec.underlying, today=today + dt.timedelta(days=1))
        if not spec.weekly:
            holidays = set(MarketHoliday.objects.filter(exchange="NSE").values_list("date", flat=True))
            expiries = [e for e in expiries if demo.is_monthly_expiry(e, holidays)]
        if not expiries:
            report.notes.append(f"no {spec.underlying} expiry after {today} to subscribe")
            continue
        result = chain_subscribe(
            underlying=spec.underlying,
            expiry=expiries[0],
            strikes_each_side=SUBSCRIBED_STRIKES_EACH_SIDE,
            mode=Subscription.Mode.FULL,
        )
        report.subscriptions_created += len(result.created)


def demo_seed(*, today: dt.date | None = None) -> DemoSeedReport:
    """Add whatever part of the demo is missing; returns what changed (and the new admin password)."""
    today = today or timezone.now().astimezone(IST).date()
    report = DemoSeedReport()
    with transaction.atomic():
        _ensure_admin(report)
        _ensure_mock_account(report)
        _ensure_instruments(report, today=today)
        _ensure_subscriptions(report, today=today)
    return report
