"""/api/chains/ (list and snapshot) and /api/health/."""

from __future__ import annotations

import datetime as dt
import time

import pytest
from django.utils import timezone

from streaming import snapshot_store
from streaming import status as ticker_status
from tests.api_helpers import *  # noqa: F403
from tests.subscriptions.factories import AccountFactory, SubscriptionFactory, make_chain

pytestmark = pytest.mark.django_db

FUTURE = (timezone.now() + dt.timedelta(days=30)).date()


@pytest.fixture(autouse=True)
def _clean_state():
    snapshot_store._local.clear()
    ticker_status.publish_local(None)
    yield
    snapshot_store._local.clear()
    ticker_status.publish_local(None)


def snapshot(expiry: str) -> dict:
    return {
        "underlying": "NIFTY",
        "expiry": expiry,
        "seq": 12,
        "ts": time.time(),
        "source": "mock",
        "header": {"spot": 26010.0, "atm_strike": 26000.0},
        "rows": [{"strike": 26000.0, "CE": {"ltp": 101.0}, "PE": {"ltp": 95.0}}],
    }


def test_chain_list_shows_expiries_and_which_stream(user_client):
    make_chain(expiry=FUTURE, strikes=[26000.0])
    later = FUTURE + dt.timedelta(days=35)  # another month: make_chain symbols carry only YYMON
    make_chain(expiry=later, strikes=[26000.0])
    make_chain(expiry=dt.date(2020, 1, 30), strikes=[12000.0])  # expired: not offered
    snapshot_store.put_local_chain_snapshot("NIFTY", FUTURE.isoformat(), snapshot(FUTURE.isoformat()))
    body = user_client.get("/api/chains/").json()
    assert body == [
        {"underlying": "NIFTY", "expiries": [FUTURE.isoformat(), later.isoformat()], "streaming": [FUTURE.isoformat()]}
    ]


def test_chain_snapshot_is_the_published_payload(user_client, token_client):
    snapshot_store.put_local_chain_snapshot("NIFTY", "2030-01-29", snapshot("2030-01-29"))
    body = user_client.get("/api/chains/nifty/2030-01-29/").json()
    assert (body["seq"], body["source"], body["rows"][0]["CE"]["ltp"]) == (12, "mock", 101.0)
    assert token_client.get("/api/chains/NIFTY/2030-01-29/").status_code == 200


def test_chain_snapshot_errors(anon_client, user_client):
    snapshot_store.put_local_chain_snapshot("NIFTY", "2030-01-29", snapshot("2030-01-29"))
    assert anon_client.get("/api/chains/NIFTY/2030-01-29/").status_code == 401
    missing = user_client.get("/api/chains/NIFTY/2030-02-26/")
    assert missing.status_code == 404
    assert "No live data" in missing.json()["detail"]
    bad = user_client.get("/api/chains/NIFTY/soon/")
    assert bad.status_code == 400
    assert "expiry" in bad.json()


@pytest.mark.redis
def test_chain_snapshot_from_redis_written_by_another_process(user_client, redis_client):
    import json

    redis_client.set(snapshot_store.chain_key("NIFTY", "2030-01-29"), json.dumps(snapshot("2030-01-29")))
    assert user_client.get("/api/chains/NIFTY/2030-01-29/").json()["seq"] == 12


def test_health_without_a_ticker_is_degraded_but_up(anon_client):
    response = anon_client.get("/api/health/")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "degraded"
    assert body["checks"]["database"]["ok"] is True
    assert body["checks"]["ticker"] == {"ok": False, "detail": "no ticker has reported"}


def test_health_ok_with_a_ticking_ticker_and_everything_assigned(anon_client):
    account = AccountFactory(is_mock=True)
    SubscriptionFactory(account=account, connection_index=0)
    board = ticker_status.StatusBoard(ticker_id="t1")
    board.accounts[account.pk] = {"label": account.label, "mode": "mock"}
    board.set_connection(account_id=account.pk, label=account.label, connection_index=0, mode="mock", instruments=1)
    board.record_ticks(account.pk, 0, 5, at=time.time())
    ticker_status.publish_local(board.as_dict())
    body = anon_client.get("/api/health/").json()
    assert body["status"] == "ok", body
    assert "account" not in str(body).lower()  # anonymous callers learn nothing about accounts


def test_health_flags_unassigned_subscriptions_and_stale_ticks(anon_client):
    SubscriptionFactory(account=None)
    board = ticker_status.StatusBoard(ticker_id="t1")
    board.set_connection(account_id=1, label="a", connection_index=0, mode="mock", instruments=1)
    board.record_ticks(1, 0, 5, at=time.time() - 600)
    ticker_status.publish_local(board.as_dict())
    checks = anon_client.get("/api/health/").json()["checks"]
    assert checks["subscriptions"] == {"ok": False, "detail": "1 active not assigned"}
    assert checks["ticker"]["ok"] is False
    assert "s ago" in checks["ticker"]["detail"]


def test_health_is_503_when_the_database_is_down(anon_client, monkeypatch):
    from django.db import connection

    def broken_cursor(*args, **kwargs):
        raise ConnectionError("database unreachable")

    monkeypatch.setattr(connection, "cursor", broken_cursor)
    response = anon_client.get("/api/health/")
    assert response.status_code == 503
    assert response.json()["status"] == "down"


def test_chain_and_series_download_as_csv(user_client, token_client, client):
    payload = snapshot("2030-01-29")
    payload["rows"] = [
        {"strike": 26000.0, "CE": {"tradingsymbol": "NIFTY30JAN26000CE", "ltp": 101.0, "gex": 5.0, "buildup": "LB"},
         "PE": {"tradingsymbol": "NIFTY30JAN26000PE", "ltp": 95.0, "oi": None, "buildup": None}},
        {"strike": 26100.0, "PE": {"ltp": 140.0}},
    ]  # fmt: skip
    payload["series"] = {"fields": ["ts", "straddle"], "points": [[1895370300.0, 196.0], [1895370360.0, 197.5]]}
    snapshot_store.put_local_chain_snapshot("NIFTY", "2030-01-29", payload)
    response = user_client.get("/api/chains/nifty/2030-01-29/chain.csv")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    assert response["Content-Disposition"] == 'attachment; filename="NIFTY_2030-01-29_chain.csv"'
    lines = response.content.decode().splitlines()
    header = lines[0].split(",")
    assert header[0] == "ce_tradingsymbol" and header[header.index("strike") + 1] == "pe_tradingsymbol"
    first = dict(zip(header, lines[1].split(","), strict=True))
    assert (first["strike"], first["ce_ltp"], first["ce_gex"], first["ce_buildup"]) == ("26000.0", "101.0", "5.0", "LB")
    assert (first["pe_ltp"], first["pe_oi"], first["pe_buildup"]) == ("95.0", "", "")
    second = dict(zip(header, lines[2].split(","), strict=True))
    assert (second["ce_ltp"], second["pe_ltp"]) == ("", "140.0")
    series = token_client.get("/api/chains/NIFTY/2030-01-29/series.csv").content.decode().splitlines()
    # 1895370300 is 2030-01-23 09:15 IST.
    assert series == [
        "time_ist,ts,straddle",
        "2030-01-23 09:15,1895370300.0,196.0",
        "2030-01-23 09:16,1895370360.0,197.5",
    ]
    assert client.get("/api/chains/NIFTY/2030-01-29/chain.csv").status_code in (401, 403)
    assert user_client.get("/api/chains/NIFTY/2031-01-28/series.csv").status_code == 404
