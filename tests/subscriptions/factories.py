"""factory_boy factories for the subscriptions models."""

from __future__ import annotations

import datetime as dt

import factory

from subscriptions.models import Instrument, MarketHoliday, Subscription, TradingAccount


class IndexFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Instrument

    instrument_token = 256265
    exchange_token = 1001
    tradingsymbol = "NIFTY 50"
    name = "NIFTY 50"
    last_price = 26010.0
    segment = "INDICES"
    exchange = "NSE"
    instrument_type = "EQ"
    underlying = "NIFTY"
    lot_size = 0


class OptionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Instrument

    exchange_token = factory.Sequence(lambda n: 50000 + n)
    instrument_token = factory.LazyAttribute(lambda o: o.exchange_token * 256 + 2)
    name = "NIFTY"
    underlying = "NIFTY"
    expiry = dt.date(2030, 1, 29)
    strike = factory.Sequence(lambda n: 20000.0 + 50 * n)
    instrument_type = "CE"
    tradingsymbol = factory.LazyAttribute(lambda o: f"{o.name}30JAN{o.strike:g}{o.instrument_type}")
    segment = "NFO-OPT"
    exchange = "NFO"
    lot_size = 75
    tick_size = 0.05


class AccountFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = TradingAccount

    label = factory.Sequence(lambda n: f"Account {n}")
    api_key = factory.Sequence(lambda n: f"key{n}")
    api_secret = "s3cr3t-api-secret-value"


class SubscriptionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Subscription

    instrument = factory.SubFactory(OptionFactory)
    mode = "full"
    is_active = True


class HolidayFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = MarketHoliday

    exchange = "NSE"
    date = dt.date(2030, 1, 1)
    description = "Test holiday"


def make_chain(*, underlying: str = "NIFTY", expiry: dt.date = dt.date(2030, 1, 29), strikes=None) -> list[Instrument]:
    """CE and PE for each strike (default 25000..27000 step 100)."""
    strikes = strikes or [25000.0 + 100 * k for k in range(21)]
    return [
        OptionFactory(
            name=underlying,
            underlying=underlying,
            expiry=expiry,
            strike=strike,
            instrument_type=kind,
            tradingsymbol=f"{underlying}{expiry:%y%b}{strike:g}{kind}".upper(),
        )
        for strike in strikes
        for kind in ("CE", "PE")
    ]
