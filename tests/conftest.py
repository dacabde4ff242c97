"""Shared fixtures. Tests talk to real PostgreSQL and Redis when DATABASE_URL / REDIS_URL are set
(CI sets both); otherwise they use the embedded backends and skip, with a reason, what needs the
real servers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from django.conf import settings

# Test runs never need DEBUG, but settings require a SECRET_KEY with DEBUG off.
os.environ.setdefault("SECRET_KEY", "test-secret-key-not-for-production-" + "x" * 20)

REPO_ROOT = Path(__file__).resolve().parent.parent
# Zerodha's published mock responses and ticker packets (kiteconnect-mocks; see its README).
FIXTURES = REPO_ROOT / "tests" / "kite_fixtures"


def pytest_report_header(config: pytest.Config) -> list[str]:
    db = settings.DATABASES["default"]
    layer = settings.CHANNEL_LAYERS["default"]["BACKEND"]
    cache = settings.CACHES["default"]["BACKEND"]
    return [
        f"tickerproject: database={db['ENGINE'].rsplit('.', 1)[-1]} ({db.get('HOST') or db['NAME']})",
        f"tickerproject: cache={cache.rsplit('.', 1)[-1]} channel_layer={layer.rsplit('.', 1)[-1]}",
        f"tickerproject: redis={'yes ' + settings.REDIS_URL if settings.REDIS_URL else 'no (Redis tests skipped)'}",
    ]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    on_postgres = settings.DATABASES["default"]["ENGINE"].endswith("postgresql")
    for item in items:
        if item.get_closest_marker("redis") and not settings.REDIS_URL:
            item.add_marker(pytest.mark.skip(reason="needs Redis: REDIS_URL is not set"))
        if item.get_closest_marker("postgres") and not on_postgres:
            item.add_marker(pytest.mark.skip(reason="needs PostgreSQL: DATABASE_URL is not postgres://"))


@pytest.fixture
def kite_fixtures() -> Path:
    """Zerodha's published mock responses and ticker packets (`FIXTURES`)."""
    return FIXTURES


@pytest.fixture
def redis_client():
    """The configured Redis with its database emptied before and after the test."""
    if not settings.REDIS_URL:
        pytest.skip("needs Redis: REDIS_URL is not set")
    from tickerproject.platform.redis_client import sync_redis

    client = sync_redis()
    client.flushdb()
    yield client
    client.flushdb()


@pytest.fixture
def simulator():
    """A running Kite simulator (ticker WebSocket + REST) on a free loopback port, with a fresh state:
    the mock market holding `mocking.simulator.build.sample_instruments()`
    and one account: api_key "sim_key", api_secret "sim_secret", access_token "sim_token".
    Yields a `mocking.simulator.server.SimulatorHandle` (.port, .http_url, .ws_url, .state, .stop())."""
    from mocking.simulator.build import sample_state
    from mocking.simulator.server import start_simulator

    state = sample_state()
    state.register_account("sim_key", "sim_secret", "sim_token")
    handle = start_simulator(state)
    yield handle
    handle.stop()


@pytest.fixture(autouse=True)
def _static_files_without_collectstatic(settings):
    """Pages render in tests without `collectstatic`: the manifest storage (DEBUG off) is for deployments."""
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
