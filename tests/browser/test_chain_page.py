"""The option chain page in a real browser against a real `runticker --mode mock --serve`.

Debian's Chromium (`scripts/ensure-chromium.sh` installs it) driven by Playwright for Python. The
screenshot is kept in test-artifacts/ for people to look at.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
USERNAME, PASSWORD = "chain-viewer", "a-long-browser-test-pass-31"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def manage(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, f"manage.py {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def ticker_server(tmp_path_factory) -> Iterator[str]:
    """A migrated, seeded SQLite database and `runticker --mode mock --serve` on a free port."""
    workdir = tmp_path_factory.mktemp("chain-browser")
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL", "CELERY_BROKER_URL")}
    # A 6-second OI window, so the build-up tags have history within the test (15 minutes by default).
    env.update(
        DEBUG="1",
        DATABASE_URL=f"sqlite:///{workdir / 'db.sqlite3'}",
        PYTHONUNBUFFERED="1",
        CHAIN_OI_WINDOW_MINUTES="0.1",
    )
    manage(env, "migrate", "--noinput")
    manage(env, "seed_demo")
    manage(
        env,
        "shell",
        "-c",
        f"from django.contrib.auth import get_user_model; get_user_model().objects.create_user({USERNAME!r}, "
        f"password={PASSWORD!r}, is_staff=True)",
    )
    port = free_port()
    log_path = workdir / "runticker.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "manage.py", "runticker", "--mode", "mock", "--serve", f"127.0.0.1:{port}"],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{base}/api/health/", timeout=2):
                    break
            except urllib.error.HTTPError:
                break  # answering at all is enough here
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"runticker did not start:\n{log_path.read_text()[-4000:]}")
                time.sleep(0.3)
        yield base
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        ARTIFACTS.mkdir(exist_ok=True)
        shutil.copy(log_path, ARTIFACTS / "chain-page-runticker.log")


@pytest.fixture
def page():
    if not CHROMIUM.exists():
        pytest.skip(f"Chromium not installed at {CHROMIUM} (scripts/ensure-chromium.sh installs it)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1366, "height": 768})
            page.errors = []
            page.on("pageerror", lambda error: page.errors.append(str(error)))
            yield page
        finally:
            browser.close()


def test_signed_in_user_sees_the_mock_chain_move(ticker_server, page):
    ARTIFACTS.mkdir(exist_ok=True)
    page.goto(f"{ticker_server}/chain/")
    assert "/login/" in page.url  # the page needs a signed-in user
    page.fill("#id_username", USERNAME)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/chain/**")

    page.wait_for_selector("tr.atm", timeout=15_000)
    atm_ltp = 'tr.atm td[data-side="CE"][data-field="ltp"]'
    first = page.inner_text(atm_ltp)
    assert first not in ("", "–")
    # Some visible cell of the chain changes within 5 s (the mock market ticks every 500 ms).
    before = page.inner_text("#rows")
    page.wait_for_function(
        "(before) => document.querySelector('#rows').innerText !== before", arg=before, timeout=5_000
    )

    assert page.inner_text("#source-badge") == "MOCK"
    assert page.inner_text("#conn-badge") == "connected"
    assert page.inner_text("#stale-badge").startswith("fresh")
    assert page.inner_text("#h-spot") not in ("", "–")
    assert page.inner_text("#h-tte") not in ("", "–")
    assert page.locator("#iv-chart canvas").count() == 1
    assert page.locator("#oi-chart canvas").count() == 1
    rows = page.locator("#rows tr").count()
    assert rows >= 21  # seed_demo subscribes ±20 strikes of the nearest NIFTY weekly

    # The trader figures: GEX, straddle and PCR charts; IVP from the mock IV history; build-up tags
    # that appear once the (test's 6-second) OI window has history; the header's figures move.
    for chart in ("#gex-chart", "#straddle-chart", "#pcr-chart"):
        assert page.locator(f"{chart} canvas").count() == 1
    for figure in ("#h-atm-iv", "#h-straddle", "#h-move", "#h-gex", "#h-walls"):
        assert page.inner_text(figure) not in ("", "–"), figure
    page.wait_for_function("document.getElementById('h-ivp').textContent !== '–'", timeout=15_000)
    assert 0 <= float(page.inner_text("#h-ivp")) <= 100
    assert page.locator("#term-strip a.current").count() == 1
    page.wait_for_selector('td[data-field="buildup"] span.tag', timeout=20_000)
    tags = page.eval_on_selector_all('td[data-field="buildup"] span.tag', "els => els.map(e => e.textContent)")
    assert set(tags) <= {"N", "LB", "SB", "SC", "LU"} and len(tags) >= 21
    figures = page.inner_text("#h-straddle") + page.inner_text("#h-gex")
    page.wait_for_function(
        "(b) => document.getElementById('h-straddle').textContent + document.getElementById('h-gex').textContent !== b",
        arg=figures,
        timeout=10_000,
    )
    points = page.evaluate("window.chainPage.chain.series.points.length")
    assert points >= 1
    page.screenshot(path=str(ARTIFACTS / "chain-page.png"), animations="disabled")

    # Another expiry without a reload: the URL, the table and the CSV link follow.
    page.evaluate("window.__noReload = 1")  # gone if the page reloaded
    bank = page.eval_on_selector_all("#underlying option", "os => os.map(o => o.value)")
    assert "BANKNIFTY" in bank, bank
    page.select_option("#underlying", "BANKNIFTY")
    page.wait_for_function(
        "document.querySelector('#chain').dataset.underlying === 'BANKNIFTY' && !!document.querySelector('tr.atm')",
        timeout=15_000,
    )
    assert page.evaluate("window.__noReload") == 1
    assert "underlying=BANKNIFTY" in page.url
    assert "/api/chains/BANKNIFTY/" in page.get_attribute("#csv-chain", "href")
    csv_text = page.evaluate("(url) => fetch(url).then(r => r.text())", page.get_attribute("#csv-chain", "href"))
    assert csv_text.startswith("ce_tradingsymbol,") and len(csv_text.splitlines()) >= 21
    page.screenshot(path=str(ARTIFACTS / "chain-page-banknifty.png"), animations="disabled")
    assert page.errors == []


def test_page_reconnects_by_itself_after_the_connection_drops(ticker_server, page):
    page.goto(f"{ticker_server}/login/")
    page.fill("#id_username", USERNAME)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_selector("tr.atm", timeout=15_000)
    # Drop the connection under the page (as a network blip or a web server restart would).
    page.evaluate("window.chainPage.socket.close(4000, 'test drop')")
    page.wait_for_function("document.getElementById('conn-badge').textContent === 'reconnecting'", timeout=5_000)
    page.wait_for_function("document.getElementById('conn-badge').textContent === 'connected'", timeout=15_000)
    before = page.inner_text("#rows")
    page.wait_for_function("(b) => document.querySelector('#rows').innerText !== b", arg=before, timeout=5_000)
    assert page.errors == []


def test_unknown_chain_closes_with_4404_in_the_browser_and_the_page_falls_back(ticker_server, page):
    page.goto(f"{ticker_server}/login/")
    page.fill("#id_username", USERNAME)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/chain/**")
    code, reason = page.evaluate(
        """() => new Promise((resolve) => {
            const ws = new WebSocket(`ws://${location.host}/ws/chain/NOSUCH/2030-01-01/`);
            ws.onclose = (event) => resolve([event.code, event.reason]);
        })"""
    )
    assert code == 4404
    assert "unknown chain NOSUCH 2030-01-01" in reason
    # An unknown choice in the URL falls back to a listed chain, so the page still shows data.
    page.goto(f"{ticker_server}/chain/?underlying=NOSUCH&expiry=2030-01-01")
    page.wait_for_selector("tr.atm", timeout=15_000)
    assert page.errors == []


def test_chain_subscribed_through_the_api_reaches_the_running_ticker(ticker_server):
    """Token login, subscribe-this-chain with ?wait=1, then the ticker streams the new chain."""

    def call(method: str, path: str, body: dict | None = None, token: str = "") -> dict:
        request = urllib.request.Request(
            f"{ticker_server}{path}",
            method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={"Content-Type": "application/json", **({"Authorization": f"Token {token}"} if token else {})},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())

    token = call("POST", "/api/auth/token/", {"username": USERNAME, "password": PASSWORD})["token"]
    chains = {c["underlying"]: c for c in call("GET", "/api/chains/", token=token)}
    nifty = chains["NIFTY"]
    idle = [e for e in nifty["expiries"] if e not in nifty["streaming"]]
    assert idle, nifty  # seed_demo streams only the nearest NIFTY weekly
    expiry = idle[0]
    result = call(
        "POST",
        "/api/subscriptions/subscribe-chain/?wait=1&timeout=15",
        {"underlying": "NIFTY", "expiry": expiry, "strikes_each_side": 2},
        token=token,
    )
    assert result["created"] == 10
    assert result["ticker_applied"] is True
    deadline = time.monotonic() + 15
    while True:
        try:
            snapshot = call("GET", f"/api/chains/NIFTY/{expiry}/", token=token)
            if len(snapshot["rows"]) == 5 and all(row.get("CE", {}).get("ltp") for row in snapshot["rows"]):
                break
        except urllib.error.HTTPError as exc:
            assert exc.code == 404
        assert time.monotonic() < deadline, "the new chain never streamed"
        time.sleep(0.3)
    assert snapshot["source"] == "mock"
    assert [row["strike"] for row in snapshot["rows"]] == sorted(result["strikes"])
