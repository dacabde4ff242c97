"""Seed a fault-suite stack's database (run inside the stack's environment by `stack.seed_database`).

Accounts are real (non-mock) Kite accounts with random api_secret and access_token, registered in the
simulator by the harness; instruments are NIFTY's index and a chain of options on the next weekly
expiry, each with an active full-mode subscription. Each account's capacity is set so the
subscriptions spread over all accounts (each ticker of a pair then has something to stream).
"""

from __future__ import annotations

import datetime as dt
import math
import secrets
from typing import Any


def seed_stack(*, accounts: int = 2, strikes: int = 20, connections: int = 1) -> dict[str, Any]:
    from django.utils import timezone

    from mocking.simulator.build import sample_instruments
    from subscriptions.models import Instrument, Subscription, TradingAccount

    specs = sample_instruments(strikes=strikes, today=dt.date.today() + dt.timedelta(days=1))
    per_account = math.ceil(len(specs) / accounts)
    per_connection = math.ceil(per_account / connections)
    created_accounts = []
    for n in range(accounts):
        api_secret, access_token = secrets.token_hex(16), secrets.token_hex(16)
        account = TradingAccount.objects.create(
            label=f"Fault account {n + 1}",
            kite_user_id=f"FA{n + 1:04d}",
            api_key=f"faultkey{n + 1}",
            api_secret=api_secret,
            access_token=access_token,
            token_expires_at=timezone.now() + dt.timedelta(days=1),
            health=TradingAccount.Health.OK,
            max_connections=connections,
            instruments_per_connection=per_connection,
        )
        created_accounts.append(
            {
                "id": account.pk,
                "label": account.label,
                "api_key": account.api_key,
                "api_secret": api_secret,
                "access_token": access_token,
                "max_connections": connections,
            }
        )
    instruments = []
    for spec in specs:
        row = Instrument.objects.create(
            instrument_token=spec.instrument_token,
            exchange_token=spec.instrument_token >> 8,
            tradingsymbol=spec.tradingsymbol,
            name=spec.underlying,
            underlying=spec.underlying,
            strike=spec.strike,
            expiry=spec.expiry,
            instrument_type=spec.instrument_type,
            tick_size=spec.tick_size,
            lot_size=spec.lot_size,
            segment=spec.segment,
            exchange=spec.exchange,
        )
        Subscription.objects.create(instrument=row, mode=Subscription.Mode.FULL)
        instruments.append(
            {
                "instrument_token": spec.instrument_token,
                "tradingsymbol": spec.tradingsymbol,
                "underlying": spec.underlying,
                "instrument_type": spec.instrument_type,
                "strike": spec.strike,
                "expiry": spec.expiry.isoformat() if spec.expiry else None,
                "tick_size": spec.tick_size,
                "lot_size": spec.lot_size,
                "segment": spec.segment,
                "exchange": spec.exchange,
            }
        )
    return {"accounts": created_accounts, "instruments": instruments, "subscriptions": len(instruments)}


def deactivate_one_subscription() -> int:
    """Deactivate the last active subscription through the service layer (running tickers are told after
    commit); returns its instrument token."""
    from subscriptions.models import Subscription
    from subscriptions.services.subscriptions import subscription_deactivate

    subscription = Subscription.objects.filter(is_active=True).select_related("instrument").order_by("-pk").first()
    subscription_deactivate(subscription=subscription, reason="fault suite")
    return subscription.instrument.instrument_token
