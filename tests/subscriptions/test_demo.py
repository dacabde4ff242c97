"""Demo data: Kite-format chains with the right expiries, and a seed command that is safe to rerun."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

from subscriptions import demo
from subscriptions.models import Instrument, Subscription, TradingAccount

HOLIDAYS = {dt.date(2027, 1, 26)}  # Republic Day, a Tuesday


def test_expiries_are_strictly_after_today_and_holiday_shifted():
    today = dt.date(2026, 11, 24)  # a Tuesday that is also a monthly expiry
    nifty, banknifty = demo.DEMO_UNDERLYINGS
    assert demo.expiries_for(nifty, today=today, holidays=HOLIDAYS) == [
        dt.date(2026, 12, 1),
        dt.date(2026, 12, 8),
        dt.date(2026, 12, 15),
        dt.date(2026, 12, 22),
        dt.date(2026, 12, 29),
        dt.date(2027, 1, 25),  # 26 Jan is a holiday: the Monday before
    ]
    assert demo.expiries_for(banknifty, today=today, holidays=HOLIDAYS) == [dt.date(2026, 12, 29), dt.date(2027, 1, 25)]
    # A Wednesday: the next Tuesday is six days away.
    assert demo.weekly_expiries(today=dt.date(2026, 11, 25), weeks=1, holidays=set()) == [dt.date(2026, 12, 1)]


def test_tradingsymbols_follow_kites_weekly_and_monthly_formats():
    symbol = demo.option_tradingsymbol
    assert symbol(name="NIFTY", expiry=dt.date(2025, 12, 30), strike=24000.0, option_type="CE", monthly=True) == (
        "NIFTY25DEC24000CE"
    )
    assert symbol(name="NIFTY", expiry=dt.date(2025, 12, 9), strike=24000.0, option_type="CE", monthly=False) == (
        "NIFTY25D0924000CE"
    )
    assert symbol(name="NIFTY", expiry=dt.date(2026, 10, 6), strike=25050.0, option_type="PE", monthly=False) == (
        "NIFTY26O0625050PE"
    )
    assert symbol(name="NIFTY", expiry=dt.date(2026, 3, 2), strike=25000.0, option_type="PE", monthly=False) == (
        "NIFTY2630225000PE"
    )


def test_rows_have_lot_sizes_steps_and_sane_prices():
    nifty = demo.DEMO_UNDERLYINGS[0]
    rows = demo.option_rows(nifty, today=dt.date(2026, 11, 24), holidays=HOLIDAYS)
    assert len(rows) == 6 * 81 * 2
    strikes = sorted({r["strike"] for r in rows})
    assert strikes[0] == 24000.0 and strikes[-1] == 28000.0 and strikes[1] - strikes[0] == 50
    assert {r["lot_size"] for r in rows} == {75} and {r["segment"] for r in rows} == {"NFO-OPT"}
    by_symbol = {r["tradingsymbol"]: r for r in rows}
    deep_itm_call, otm_call = by_symbol["NIFTY26D0124000CE"], by_symbol["NIFTY26D0128000CE"]
    assert deep_itm_call["last_price"] > 1900 and otm_call["last_price"] == 0.05
    assert all(round(r["last_price"] / 0.05, 6).is_integer() for r in rows)


@pytest.mark.django_db
def test_seed_demo_fills_the_first_screen_and_second_run_changes_nothing(capsys):
    call_command("seed_demo")
    first = capsys.readouterr().out
    password = re.search(r"admin / (\S+)", first).group(1)
    assert get_user_model().objects.get(username="admin").check_password(password)
    account = TradingAccount.objects.get(label="Mock market")
    assert account.is_mock and not account.api_secret
    index = Instrument.objects.get(tradingsymbol="NIFTY 50")
    assert (index.instrument_token, index.segment, index.underlying) == (256265, "INDICES", "NIFTY")
    assert Instrument.objects.get(tradingsymbol="NIFTY BANK").instrument_token == 260105
    options = Instrument.objects.filter(exchange="NFO")
    tokens = list(options.values_list("instrument_token", "exchange_token"))
    assert len({t for t, _ in tokens}) == len(tokens) and all(t == e * 256 + 2 for t, e in tokens)
    assert Subscription.objects.filter(is_active=True, mode="full").count() == 2 + 2 * 41 * 2
    nifty_subscribed = Subscription.objects.filter(instrument__underlying="NIFTY", instrument__exchange="NFO")
    assert nifty_subscribed.values("instrument__expiry").distinct().count() == 1

    counts = (Instrument.objects.count(), Subscription.objects.count(), get_user_model().objects.count())
    call_command("seed_demo")
    second = capsys.readouterr().out
    assert "nothing changed" in second and password not in second
    assert (Instrument.objects.count(), Subscription.objects.count(), get_user_model().objects.count()) == counts
