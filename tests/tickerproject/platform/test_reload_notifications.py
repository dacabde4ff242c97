"""Reload notifications and the blocking "is my change live yet?" wait."""

from __future__ import annotations

import threading
import time
import uuid

import pytest

from tickerproject.platform import reload_notifications as notifications
from tickerproject.platform.redis_client import sync_redis


def _fresh_id() -> str:
    return uuid.uuid4().hex


def _mark_later(request_id: str, delay: float) -> threading.Thread:
    thread = threading.Timer(delay, notifications.mark_applied, args=([request_id],))
    thread.start()
    return thread


@pytest.fixture
def embedded(settings):
    settings.REDIS_URL = ""


def test_wait_returns_true_when_the_reloader_acknowledges(embedded):
    request_id = _fresh_id()
    timer = _mark_later(request_id, 0.05)

    assert notifications.wait_until_applied(request_id, timeout=5) is True
    timer.join()


def test_wait_returns_false_on_timeout(embedded):
    started = time.monotonic()

    assert notifications.wait_until_applied(_fresh_id(), timeout=0.05) is False
    assert time.monotonic() - started < 5  # it returned instead of hanging


def test_an_acknowledgement_before_the_wait_still_counts(embedded):
    request_id = _fresh_id()
    notifications.mark_applied([request_id])

    assert notifications.wait_until_applied(request_id, timeout=0) is True


def test_other_requests_do_not_release_the_wait(embedded):
    timer = _mark_later(_fresh_id(), 0.01)

    assert notifications.wait_until_applied(_fresh_id(), timeout=0.1) is False
    timer.join()


def test_listeners_hear_notifications_and_a_broken_one_does_not_stop_the_others(embedded, caplog):
    heard: list[dict] = []

    def broken(message: dict) -> None:
        raise RuntimeError("listener bug")

    remove_broken = notifications.add_listener(broken)
    remove_good = notifications.add_listener(heard.append)
    try:
        request_id = notifications.notify_subscriptions_changed(reason="admin edit")
    finally:
        remove_broken()
        remove_good()

    assert [(m["reason"], m["request_id"]) for m in heard] == [("admin edit", request_id)]
    assert "reload listener failed" in caplog.text


def test_redis_down_loses_nothing_but_the_wait(settings, caplog):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    sync_redis.cache_clear()
    try:
        request_id = notifications.notify_subscriptions_changed(reason="edit while Redis is down")
        notifications.mark_applied([request_id])
        applied = notifications.wait_until_applied(request_id, timeout=0.2)
    finally:
        sync_redis.cache_clear()

    assert request_id
    assert applied is False
    assert "could not publish reload notification" in caplog.text
    assert "could not publish reload acknowledgements" in caplog.text


@pytest.mark.redis
def test_acknowledgements_travel_through_redis(redis_client):
    request_id = _fresh_id()
    timer = _mark_later(request_id, 0.1)

    assert notifications.wait_until_applied(request_id, timeout=5) is True
    timer.join()
    key = notifications.APPLIED_KEY_PREFIX + request_id
    assert 0 < redis_client.ttl(key) <= notifications.APPLIED_TTL_S


@pytest.mark.redis
def test_redis_wait_times_out_without_an_acknowledgement(redis_client):
    assert notifications.wait_until_applied(_fresh_id(), timeout=0.2) is False
