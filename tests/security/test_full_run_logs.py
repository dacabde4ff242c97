"""A full run's logs hold no api_secret and no access token.

Real processes, logs captured whole: `manage.py runsimulator` (a subprocess, reading the accounts from
the database) and `manage.py runticker --mode live --serve` against a temporary PostgreSQL database
with two real (non-mock) accounts whose api_secret and access_token are random strings. While it
streams, an operator signs in to the admin and completes the Kite login callback (the simulator
issues a new access token), and one account's token is one the simulator does not know (a revoked
token: the ticker gets 403 and marks the account auth_failed). Then every byte any process wrote is
searched for every secret.
"""

from __future__ import annotations

import re
import secrets
import subprocess
import sys
import time
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from tests.faults.stack import REPO, Stack, free_port, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(150)]


def _django(stack: Stack, code: str) -> str:
    """Run Python with Django set up in the stack's environment; returns stdout."""
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()\n" + code],
        cwd=REPO,
        env=stack.env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr[-1500:]
    return result.stdout


def test_a_full_run_never_logs_an_api_secret_or_access_token(make_stack):
    stack = make_stack(extra_env={"STATIC_MANIFEST": "0", "TICKER_MODE": "live"})
    stack.redis.start()
    from tests.faults.stack import create_database, seed_database

    stack.database_url = create_database(stack.postgres_admin_url, stack.db_name, template=stack.template_db)
    seed = seed_database(stack.env(), accounts=2, strikes=10)
    good, revoked = seed.accounts
    secrets_seen = {a["api_secret"] for a in seed.accounts} | {a["access_token"] for a in seed.accounts}

    sim_port, web_port = free_port(), free_port()
    simulator = stack.start("simulator", [sys.executable, "manage.py", "runsimulator", "--port", str(sim_port)])
    wait_until(lambda: "Kite simulator on" in simulator.log(), timeout=30, what="runsimulator listening")
    stack.extra_env.update(KITE_WS_ROOT=f"ws://127.0.0.1:{sim_port}", KITE_API_ROOT=f"http://127.0.0.1:{sim_port}")

    # The simulator knows the seeded token; the account now carries another one: as good as revoked.
    unknown_token = secrets.token_hex(16)
    secrets_seen.add(unknown_token)
    _django(
        stack,
        "from subscriptions.models import TradingAccount\n"
        f"a = TradingAccount.objects.get(pk={revoked['id']}); a.access_token = {unknown_token!r}; a.save()\n",
    )
    password = secrets.token_urlsafe(16)
    _django(
        stack,
        "from django.contrib.auth import get_user_model\n"
        f"get_user_model().objects.create_superuser('ops', 'ops@example.com', {password!r})\n",
    )

    ticker = stack.start_ticker("ticker", "--mode", "live", "--no-backfill", "--serve", f"127.0.0.1:{web_port}")
    good_tokens = set(seed.tokens)
    stack.seed = seed
    stack.wait_ticks_flowing(tokens=good_tokens, share=0.4, timeout=40)
    time.sleep(3)  # stream for a few seconds

    base = f"http://127.0.0.1:{web_port}"
    web = requests.Session()
    wait_until(lambda: web.get(f"{base}/admin/login/", timeout=5).status_code == 200, timeout=20, what="the web app")
    signed_in = web.post(
        f"{base}/admin/login/?next=/admin/",
        data={"username": "ops", "password": password, "csrfmiddlewaretoken": web.cookies["csrftoken"]},
        headers={"Referer": f"{base}/admin/login/"},
        timeout=10,
    )
    assert signed_in.status_code == 200 and "/admin/login/" not in signed_in.url

    to_kite = web.get(f"{base}/kite/login/{good['id']}/", allow_redirects=False, timeout=10)
    assert to_kite.status_code == 302 and f"api_key={good['api_key']}" in to_kite.headers["Location"]
    # Kite appends our redirect_params (account, state) to the callback, as a real login would.
    redirect_params = parse_qs(parse_qs(urlsplit(to_kite.headers["Location"]).query)["redirect_params"][0])
    callback = web.get(
        f"{base}/kite/callback/",
        params={
            "account": good["id"],
            "state": redirect_params["state"][0],
            "request_token": secrets.token_hex(8),
            "status": "success",
            "action": "login",
        },
        timeout=15,
    )
    assert callback.status_code == 200
    assert "logged in to Kite" in callback.text, callback.text[-2000:]

    issued = (
        _django(
            stack,
            "from subscriptions.models import TradingAccount\n"
            f"print('TOKEN', TradingAccount.objects.get(pk={good['id']}).access_token)\n",
        )
        .split("TOKEN", 1)[1]
        .strip()
    )
    assert issued and issued != good["access_token"]
    secrets_seen.add(issued)

    def revoked_account_failed() -> bool:
        accounts = web.get(f"{base}/api/accounts/", timeout=10).json()["results"]
        return any(a["id"] == revoked["id"] and a["health"] == "auth_failed" for a in accounts)

    wait_until(revoked_account_failed, timeout=20, what="the account with the revoked token marked auth_failed")
    time.sleep(2)  # the reload after the new token, more ticks

    assert ticker.stop() == 0
    simulator.stop()
    logs = {proc.name: proc.log() for proc in stack.processes}
    logs["manage"] = (stack.dir / "manage.log").read_text() if (stack.dir / "manage.log").exists() else ""
    assert "connected to ws://127.0.0.1" in logs["ticker"]  # the run did stream (URL logged redacted)
    assert re.search(r"access_token=\*+", logs["ticker"])
    for name, text in logs.items():
        for secret in secrets_seen:
            assert secret not in text, f"a secret appears in the {name} log ({stack.dir})"
