"""/api/instruments/ (search and filters) and /api/accounts/ (status and capacity, never secrets)."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from streaming import status as ticker_status
from tests.api_helpers import *  # noqa: F403
from tests.subscriptions.factories import AccountFactory, IndexFactory, OptionFactory, SubscriptionFactory, make_chain

pytestmark = pytest.mark.django_db


def symbols(response) -> list[str]:
    assert response.status_code == 200, response.content
    return [row["tradingsymbol"] for row in response.json()["results"]]


@pytest.fixture
def instruments():
    IndexFactory()
    make_chain(underlying="NIFTY", expiry=dt.date(2030, 1, 29), strikes=[26000.0, 26100.0])
    make_chain(underlying="NIFTY", expiry=dt.date(2030, 2, 26), strikes=[26000.0])
    make_chain(underlying="BANKNIFTY", expiry=dt.date(2030, 1, 29), strikes=[59000.0])
    OptionFactory(
        underlying="NIFTY",
        name="NIFTY",
        tradingsymbol="NIFTYOLD",
        expiry=dt.date(2029, 12, 25),
        delisted_at=timezone.now(),
    )


def test_instruments_need_login(anon_client, instruments):
    assert anon_client.get("/api/instruments/").status_code == 401


def test_filters_by_underlying_expiry_and_type(user_client, instruments):
    got = symbols(
        user_client.get("/api/instruments/", {"underlying": "nifty", "expiry": "2030-01-29", "instrument_type": "CE"})
    )
    assert got == ["NIFTY30JAN26000CE", "NIFTY30JAN26100CE"]
    both = symbols(user_client.get("/api/instruments/", {"underlying": "BANKNIFTY", "instrument_type": ["CE", "PE"]}))
    assert sorted(both) == ["BANKNIFTY30JAN59000CE", "BANKNIFTY30JAN59000PE"]
    ranged = symbols(
        user_client.get("/api/instruments/", {"underlying": "NIFTY", "strike_min": 26050, "listed": "true"})
    )
    assert ranged == ["NIFTY30JAN26100CE", "NIFTY30JAN26100PE"]


def test_search_and_listed_filter(user_client, instruments):
    assert symbols(user_client.get("/api/instruments/", {"q": "nifty 50"})) == ["NIFTY 50"]
    assert "NIFTYOLD" in symbols(user_client.get("/api/instruments/", {"q": "old"}))
    assert symbols(user_client.get("/api/instruments/", {"q": "old", "listed": "true"})) == []


def test_bad_filter_values_are_field_errors(user_client, instruments):
    response = user_client.get("/api/instruments/", {"expiry": "next-week", "instrument_type": "XX"})
    assert response.status_code == 400
    assert set(response.json()) >= {"expiry", "instrument_type"}


def test_instrument_detail_and_no_writes(staff_client, instruments):
    index = staff_client.get("/api/instruments/", {"q": "NIFTY 50"}).json()["results"][0]
    detail = staff_client.get(f"/api/instruments/{index['id']}/").json()
    assert (detail["instrument_token"], detail["segment"]) == (256265, "INDICES")
    assert staff_client.post("/api/instruments/", {"tradingsymbol": "X"}, format="json").status_code == 405
    assert staff_client.delete(f"/api/instruments/{index['id']}/").status_code == 405


SECRET = "s3cr3t-api-secret-value"
TOKEN = "access-token-that-must-never-show"


@pytest.fixture
def accounts():
    live = AccountFactory(label="Zerodha A", access_token=TOKEN, health="ok", max_connections=2)
    mock = AccountFactory(label="Mock market", is_mock=True, api_secret="")
    for option in make_chain(strikes=[26000.0, 26100.0]):
        SubscriptionFactory(instrument=option, account=live, connection_index=0)
    SubscriptionFactory(account=live, is_active=False)
    return live, mock


def test_accounts_show_capacity_and_health_but_never_secrets(user_client, accounts):
    live, _ = accounts
    response = user_client.get("/api/accounts/")
    assert response.status_code == 200
    raw = response.content.decode()
    assert SECRET not in raw and TOKEN not in raw and live.api_key not in raw
    rows = {row["label"]: row for row in response.json()["results"]}
    assert rows["Zerodha A"]["capacity"] == 6000
    assert (rows["Zerodha A"]["used"], rows["Zerodha A"]["free"]) == (4, 5996)
    assert rows["Zerodha A"]["token_valid"] is True
    assert rows["Mock market"]["used"] == 0
    for row in rows.values():
        assert not {"api_key", "api_secret", "access_token"} & set(row)
    detail = user_client.get(f"/api/accounts/{live.pk}/")
    assert TOKEN not in detail.content.decode() and SECRET not in detail.content.decode()


def test_accounts_carry_what_the_ticker_reports(user_client, accounts):
    live, _ = accounts
    board = ticker_status.StatusBoard(ticker_id="t1")
    board.accounts[live.pk] = {"label": live.label, "mode": "live"}
    board.set_connection(account_id=live.pk, label=live.label, connection_index=0, mode="live", instruments=4)
    board.record_ticks(live.pk, 0, 10, at=timezone.now().timestamp())
    ticker_status.publish_local(board.as_dict())
    try:
        row = user_client.get(f"/api/accounts/{live.pk}/").json()
    finally:
        ticker_status.publish_local(None)
    assert row["streaming"]["mode"] == "live"
    assert row["streaming"]["instruments"] == 4
    assert row["streaming"]["connections"][0]["connection_index"] == 0


def test_accounts_are_read_only_and_need_login(anon_client, staff_client, accounts):
    assert anon_client.get("/api/accounts/").status_code == 401
    assert staff_client.post("/api/accounts/", {"label": "x"}, format="json").status_code == 405
    assert staff_client.patch(f"/api/accounts/{accounts[0].pk}/", {"label": "x"}, format="json").status_code == 405
