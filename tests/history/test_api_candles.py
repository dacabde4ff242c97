"""/api/candles/: by instrument, interval and time range; read only."""

from __future__ import annotations

import datetime as dt

import pytest

from history.models import Candle
from tests.api_helpers import *  # noqa: F403
from tests.subscriptions.factories import IndexFactory

pytestmark = pytest.mark.django_db

T0 = dt.datetime(2030, 1, 2, 3, 45, tzinfo=dt.UTC)


@pytest.fixture
def candles():
    index = IndexFactory()
    rows = [
        Candle(
            instrument=index,
            interval="minute",
            timestamp=T0 + dt.timedelta(minutes=k),
            open=100 + k,
            high=101 + k,
            low=99 + k,
            close=100.5 + k,
            volume=10 * k,
        )
        for k in range(5)
    ]
    rows.append(Candle(instrument=index, interval="day", timestamp=T0, open=1, high=2, low=0.5, close=1.5, volume=9))
    Candle.objects.bulk_create(rows)
    return index


def test_candles_by_token_interval_and_range(user_client, candles):
    response = user_client.get(
        "/api/candles/",
        {
            "instrument_token": 256265,
            "interval": "minute",
            "start": "2030-01-02T03:46:00Z",
            "end": "2030-01-02T03:48:00Z",
        },
    )
    assert response.status_code == 200
    rows = response.json()["results"]
    assert [r["open"] for r in rows] == [101.0, 102.0]
    assert rows[0]["timestamp"].startswith("2030-01-02T03:46")
    day = user_client.get("/api/candles/", {"instrument": candles.pk, "interval": "day"}).json()
    assert day["count"] == 1


def test_candle_filters_reject_bad_values(user_client, candles):
    response = user_client.get("/api/candles/", {"interval": "fortnight", "start": "yesterday"})
    assert response.status_code == 400
    assert set(response.json()) >= {"interval", "start"}


def test_candles_need_login_and_are_read_only(anon_client, staff_client, candles):
    assert anon_client.get("/api/candles/").status_code == 401
    assert staff_client.post("/api/candles/", {}, format="json").status_code == 405
