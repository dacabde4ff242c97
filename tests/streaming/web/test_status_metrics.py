"""The ticker's status board, its selector, and the Prometheus endpoint."""

from __future__ import annotations

import time

import pytest

from streaming.status import StatusBoard, publish_local, ticker_status


def test_status_board_counts_ticks_and_rates():
    board = StatusBoard(ticker_id="t1")
    board.set_connection(account_id=1, label="A", connection_index=0, mode="live", instruments=1500)
    now = time.time()
    for n in range(50):
        board.record_ticks(1, 0, 100, now - 5 + n * 0.1)  # 1,000 ticks/s for 5 s
    board.record_ticks(9, 9, 100, now)  # an unknown connection is ignored
    document = board.as_dict(sources={(1, 0): {"state": "connected", "reconnects": 2}})
    (conn,) = document["connections"]
    assert conn["ticks"] == 5000 and conn["instruments"] == 1500
    assert conn["state"] == "connected" and conn["reconnects"] == 2
    assert 500 < conn["ticks_per_second"] <= 1000
    assert conn["last_tick_at"] == pytest.approx(now - 0.1)


def test_rate_decays_when_a_connection_goes_silent():
    board = StatusBoard()
    status = board.set_connection(account_id=1, label="A", connection_index=0, mode="mock", instruments=1)
    for n in range(20):
        status.record(10, 1000.0 + n)
    assert status.decayed_rate(1019.0) > 5
    assert status.decayed_rate(1019.0 + 60) < 0.01


def test_selector_reads_the_local_status_and_expires_it():
    publish_local({"ticker_id": "x", "updated_at": time.time(), "connections": []})
    assert ticker_status()["ticker_id"] == "x"
    publish_local({"ticker_id": "old", "updated_at": time.time() - 3600, "connections": []})
    assert ticker_status() is None or ticker_status()["ticker_id"] != "old"


def test_metrics_endpoint_reports_connections(client):
    publish_local(
        {
            "ticker_id": "x",
            "updated_at": time.time(),
            "connections": [
                {
                    "label": "Mock market",
                    "connection_index": 0,
                    "mode": "mock",
                    "ticks_per_second": 42.0,
                    "instruments": 7,
                    "reconnects": 1,
                    "last_tick_at": 5.0,
                    "state": "connected",
                }
            ],
        }
    )
    response = client.get("/metrics/")
    assert response.status_code == 200
    body = response.content.decode()
    assert 'ticker_connection_ticks_per_second{account="Mock market",connection="0",mode="mock"} 42.0' in body
    assert 'ticker_connection_up{account="Mock market",connection="0",mode="mock"} 1.0' in body
    assert "ticker_up 1.0" in body
    assert "ticker_tick_to_channel_seconds_bucket" in body


@pytest.mark.django_db
def test_metrics_need_the_bearer_token_when_one_is_set(client, settings, django_user_model):
    settings.METRICS_TOKEN = "s3cret-metrics-token"
    refused = client.get("/metrics/")
    assert refused.status_code == 401
    assert refused["WWW-Authenticate"].startswith("Bearer")
    assert b"ticker_up" not in refused.content
    assert client.get("/metrics/", HTTP_AUTHORIZATION="Bearer wrong-token").status_code == 401
    assert client.get("/metrics/", HTTP_AUTHORIZATION="Basic s3cret-metrics-token").status_code == 401
    scraped = client.get("/metrics/", HTTP_AUTHORIZATION="Bearer s3cret-metrics-token")
    assert scraped.status_code == 200 and b"ticker_up" in scraped.content
    # A signed-in operator can look too; an ordinary user cannot.
    client.force_login(django_user_model.objects.create_user("trader"))
    assert client.get("/metrics/").status_code == 401
    client.force_login(django_user_model.objects.create_user("operator", is_staff=True))
    assert client.get("/metrics/").status_code == 200
