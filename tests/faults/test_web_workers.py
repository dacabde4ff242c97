"""Several ASGI web workers on the Redis channel layer all deliver one ticker's chain updates."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import time

import pytest
import requests
from websockets.sync.client import connect

from tests.faults.stack import REPO, free_port, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def test_every_web_worker_delivers_the_tickers_chain_updates(make_stack):
    stack = make_stack(extra_env={"STATIC_MANIFEST": "0"})
    seed = stack.prepare(accounts=1, strikes=10)
    stack.start_ticker("ticker")
    ports = [free_port(), free_port()]
    for n, port in enumerate(ports):
        argv = [sys.executable, "-m", "uvicorn", "tickerproject.asgi:application", "--port", str(port)]
        stack.start(f"web-{n + 1}", argv)
    password = secrets.token_urlsafe(12)
    code = (
        "import django; django.setup()\n"
        "from django.contrib.auth import get_user_model\n"
        f"get_user_model().objects.create_user('watcher', password={password!r})\n"
    )
    created = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=stack.env(), capture_output=True, text=True)
    assert created.returncode == 0, created.stderr[-1500:]
    stack.wait_ticks_flowing(timeout=30)

    web = requests.Session()
    first = f"http://127.0.0.1:{ports[0]}"
    wait_until(lambda: web.get(f"{first}/login/", timeout=5).status_code == 200, timeout=20, what="web-1")
    signed_in = web.post(
        f"{first}/login/",
        data={"username": "watcher", "password": password, "csrfmiddlewaretoken": web.cookies["csrftoken"]},
        headers={"Referer": f"{first}/login/"},
        timeout=10,
    )
    assert signed_in.status_code == 200 and "sessionid" in web.cookies
    expiry = next(i["expiry"] for i in seed.instruments if i["expiry"])

    for port in ports:
        wait_until(lambda p=port: requests.get(f"http://127.0.0.1:{p}/login/", timeout=5).ok, timeout=20, what="web")
        with connect(
            f"ws://127.0.0.1:{port}/ws/chain/NIFTY/{expiry}/",
            origin=f"http://127.0.0.1:{port}",
            additional_headers={"Cookie": f"sessionid={web.cookies['sessionid']}"},
            open_timeout=10,
        ) as ws:
            snapshot = json.loads(ws.recv(timeout=10))
            assert snapshot["type"] == "snapshot"
            seqs = [snapshot["chain"]["seq"]]
            deadline = time.monotonic() + 10
            while len(seqs) < 4 and time.monotonic() < deadline:
                message = json.loads(ws.recv(timeout=10))
                if message["type"] == "delta":
                    seqs.append(message["chain"]["seq"])
            assert len(seqs) == 4, f"web worker on port {port} delivered {len(seqs) - 1} deltas in 10 s"
            assert seqs == sorted(seqs) and len(set(seqs)) == 4, seqs
    stack.assert_no_tracebacks()
