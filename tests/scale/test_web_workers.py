"""Several ASGI web workers behind the Redis channel layer all deliver chain updates to their clients.

Two real `uvicorn tickerproject.asgi:application` processes share the test database (PostgreSQL, for
the user's session) and Redis (snapshot store and channel layer). Browser-like websocket clients sign
in with a session cookie on both workers; the test process, standing in for the ticker, stores a
snapshot and sends deltas to the chain's channel-layer group; every client on every worker must
see the snapshot and then each delta, in order, with the published values.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import connection
from django.test import Client
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from streaming.contract import chain_group
from streaming.snapshot_store import chain_key

pytestmark = [
    pytest.mark.redis,
    pytest.mark.postgres,  # the workers are other processes: they need a database server, not in-memory SQLite
    pytest.mark.integration,
    pytest.mark.django_db(transaction=True),  # committed rows: the workers see the user's session
    pytest.mark.timeout(30),
]

REPO = Path(__file__).resolve().parents[2]
UNDERLYING, EXPIRY = "NIFTY", "2030-01-29"
CLIENTS_PER_WORKER = 2
STARTUP_TIMEOUT_S = 20.0
MESSAGE_TIMEOUT_S = 5.0
# Longer than the channel layer's blocking receive (channels_redis BZPOPMIN, 5 s) and redis-py 8's default
# socket read timeout (5 s): with those equal, every websocket idle for 5 s was dropped.
QUIET_S = 6.5
UVICORN = [sys.executable, "-m", "uvicorn", "tickerproject.asgi:application", "--host", "127.0.0.1"]
UVICORN += ["--log-level", "warning", "--no-access-log"]


@dataclass
class Worker:
    port: int
    process: subprocess.Popen
    log_path: Path

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:] if self.log_path.exists() else ""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _test_database_url() -> str:
    """The database pytest-django created for this run, as a DATABASE_URL the workers can open."""
    db = connection.settings_dict
    credentials = quote(db["USER"] or "", safe="") + (f":{quote(db['PASSWORD'], safe='')}" if db["PASSWORD"] else "")
    return f"postgres://{credentials}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{quote(db['NAME'], safe='')}"


def _answers(worker: Worker) -> bool:
    try:
        with urllib.request.urlopen(f"{worker.origin}/api/health/", timeout=2):
            return True
    except urllib.error.HTTPError:
        return True  # a 503 is still a worker that serves requests
    except OSError:
        return False


def _stop(worker: Worker) -> None:
    if worker.process.poll() is None:
        worker.process.terminate()
        try:
            worker.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            worker.process.kill()
            worker.process.wait(timeout=5)


@pytest.fixture
def web_workers(transactional_db, tmp_path) -> Iterator[list[Worker]]:
    """Two uvicorn workers on free loopback ports, sharing the test database and Redis; always stopped."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tickerproject.settings",
        "DATABASE_URL": _test_database_url(),
        "REDIS_URL": settings.REDIS_URL,
        "SECRET_KEY": settings.SECRET_KEY,  # the same key signs and checks the session
        "PYTHONUNBUFFERED": "1",
    }
    workers: list[Worker] = []
    try:
        for index in range(2):
            port = _free_port()
            log_path = tmp_path / f"web-worker-{index}.log"
            with log_path.open("w") as log:
                process = subprocess.Popen(
                    [*UVICORN, "--port", str(port)],
                    cwd=REPO,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            workers.append(Worker(port, process, log_path))
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        for worker in workers:
            while not _answers(worker):
                if worker.process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"web worker on port {worker.port} did not start:\n{worker.log_tail()}")
                time.sleep(0.2)
        yield workers
    finally:
        for worker in workers:
            _stop(worker)


@pytest.fixture
def session_cookie(django_user_model) -> str:
    """A signed-in user's session cookie, stored (committed) in the shared database."""
    client = Client()
    client.force_login(django_user_model.objects.create_user("ws-viewer"))
    return f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"


def chain_payload(seq: int, *, ce_ltp: float) -> dict:
    side = {"instrument_token": 1, "tradingsymbol": "NIFTY30JAN26000CE", "ltp": ce_ltp, "oi": 1000, "volume": 10}
    return {
        "underlying": UNDERLYING,
        "expiry": EXPIRY,
        "seq": seq,
        "ts": time.time(),
        "source": "mock",
        "header": {"spot": 26010.0 + seq, "atm_strike": 26000.0},
        "rows": [{"strike": 26000.0, "CE": side, "PE": {**side, "tradingsymbol": "NIFTY30JAN26000PE", "ltp": 95.0}}],
    }


async def _next_message(ws: ClientConnection, worker: Worker) -> dict:
    try:
        return json.loads(await asyncio.wait_for(ws.recv(), MESSAGE_TIMEOUT_S))
    except TimeoutError:
        pytest.fail(f"a client of the worker on port {worker.port} got nothing in {MESSAGE_TIMEOUT_S} s")
    except ConnectionClosed as exc:
        pytest.fail(f"the worker on port {worker.port} closed a client's websocket ({exc}):\n{worker.log_tail()}")


def _summary(message: dict) -> tuple:
    """What the user sees of a chain message: kind, sequence, spot and the ATM call's last price."""
    chain, fields = message["chain"], message["side_fields"]
    strike, ce, _pe = chain["rows"][0]
    return message["type"], chain["seq"], chain["header"]["spot"], strike, ce[fields.index("ltp")]


async def test_every_client_on_every_worker_gets_each_chain_update(web_workers, session_cookie, redis_client):
    redis_client.set(chain_key(UNDERLYING, EXPIRY), json.dumps(chain_payload(1, ce_ltp=100.0)), ex=60)
    url_path = f"/ws/chain/{UNDERLYING}/{EXPIRY}/"

    async with contextlib.AsyncExitStack() as stack:
        clients: list[tuple[Worker, ClientConnection]] = []
        for worker in web_workers:
            for _ in range(CLIENTS_PER_WORKER):
                ws = await stack.enter_async_context(
                    connect(
                        f"ws://127.0.0.1:{worker.port}{url_path}",
                        origin=worker.origin,
                        additional_headers={"Cookie": session_cookie},
                        open_timeout=MESSAGE_TIMEOUT_S,
                    )
                )
                clients.append((worker, ws))

        # The snapshot on connect also proves the client joined the chain's group (joined before it is read).
        first = await asyncio.gather(*(_next_message(ws, worker) for worker, ws in clients))
        assert [_summary(m) for m in first] == [("snapshot", 1, 26011.0, 26000.0, 100.0)] * len(clients)

        layer = get_channel_layer()
        group = chain_group(UNDERLYING, EXPIRY)

        async def publish_delta(seq: int, ltp: float) -> list[tuple]:
            await layer.group_send(
                group, {"type": "chain.update", "kind": "delta", "chain": chain_payload(seq, ce_ltp=ltp)}
            )
            return [_summary(m) for m in await asyncio.gather(*(_next_message(ws, w) for w, ws in clients))]

        assert await publish_delta(2, 101.5) == [("delta", 2, 26012.0, 26000.0, 101.5)] * len(clients)
        # A quiet chain (market closed, an illiquid expiry): the clients must still be there afterwards.
        await asyncio.sleep(QUIET_S)
        assert await publish_delta(3, 99.25) == [("delta", 3, 26013.0, 26000.0, 99.25)] * len(clients)

    for worker in web_workers:
        assert "Traceback" not in worker.log_tail(), worker.log_tail()
