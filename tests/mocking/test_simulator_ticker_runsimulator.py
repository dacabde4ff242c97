"""`manage.py runsimulator` and the state it builds from the database."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import websockets
from django.db import connection
from websockets.exceptions import InvalidStatus

from mocking.simulator.build import build_state_from_db
from tests.conftest import REPO_ROOT
from tests.subscriptions.factories import AccountFactory, IndexFactory, OptionFactory


def seed_accounts_and_instruments():
    live = AccountFactory(api_key="live_key", api_secret="live-secret", access_token="live-token", kite_user_id="ZX9")
    AccountFactory(api_key="mock_key", access_token="mock-token", is_mock=True)
    AccountFactory(api_key="no_token_key", api_secret="other-secret")
    index = IndexFactory()
    option = OptionFactory()
    OptionFactory(delisted_at="2030-01-01T00:00:00Z")
    return live, index, option


@pytest.mark.django_db
def test_state_from_the_database_holds_live_accounts_with_decrypted_secrets_and_live_instruments():
    _, index, option = seed_accounts_and_instruments()
    state = build_state_from_db(seed=7, ticks_per_second=2.5)
    assert set(state.accounts) == {"live_key", "no_token_key"}  # mock accounts never talk to Kite
    assert state.accounts["live_key"].api_secret == "live-secret"
    assert state.accounts["live_key"].user_id == "ZX9"
    assert state.is_authorised("live_key", "live-token")
    assert not state.accounts["no_token_key"].access_tokens
    assert state.ticks_per_second == 2.5
    specs = {spec.instrument_token: spec for spec in state.instruments}
    if not specs:
        pytest.skip("mocking.market is not available")
    assert set(specs) == {index.instrument_token, option.instrument_token}
    assert specs[option.instrument_token].strike == option.strike
    assert specs[option.instrument_token].expiry == option.expiry
    assert specs[index.instrument_token].segment == "INDICES"
    assert state.market is not None


async def _probe(ws_url: str, token: int) -> tuple[int, bytes]:
    status = 0
    try:
        await websockets.connect(f"{ws_url}?api_key=live_key&access_token=wrong")
    except InvalidStatus as exc:
        status = exc.response.status_code
    async with websockets.connect(f"{ws_url}?api_key=live_key&access_token=live-token") as ws:
        await ws.send(json.dumps({"a": "subscribe", "v": [token]}))
        while True:
            message = await asyncio.wait_for(ws.recv(), timeout=5)
            if isinstance(message, bytes) and len(message) > 1:
                return status, message


@pytest.mark.postgres
@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_runsimulator_serves_the_database_accounts_until_signalled(stop_signal):
    """Runs the command in a subprocess on the test database (PostgreSQL: a subprocess can reach it)."""
    _, index, _ = seed_accounts_and_instruments()
    db = connection.settings_dict
    env = os.environ | {
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}",
        "SECRET_KEY": os.environ.get("SECRET_KEY", "x"),
    }
    process = subprocess.Popen(
        [sys.executable, "manage.py", "runsimulator", "--port", "0", "--rate", "5"],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        banner = process.stdout.readline()
        assert "Kite simulator on ws://127.0.0.1:" in banner, process.stderr.read() if process.poll() else banner
        ws_url = banner.split(" on ", 1)[1].split(" ", 1)[0]
        status, frame = asyncio.run(_probe(ws_url, index.instrument_token))
        assert status == 403
        assert int.from_bytes(frame[:2], "big") >= 1
        started = time.monotonic()
        process.send_signal(stop_signal)
        process.wait(timeout=10)
        assert time.monotonic() - started < 5
        assert process.returncode in (0, -stop_signal, 128 + stop_signal)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert "live-token" not in process.stdout.read() + process.stderr.read()
