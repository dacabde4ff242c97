"""`manage.py runticker`: a real process serving the web app and streaming the mock market."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from django.core.management.base import CommandError

from tests.streaming.ticker.support import free_port
from tickerproject.platform.cli import host_port as parse_host_port

REPO = Path(__file__).resolve().parents[2]


def test_serve_argument_is_validated():
    assert parse_host_port("127.0.0.1:8000") == ("127.0.0.1", 8000)
    assert parse_host_port("[::1]:9000") == ("::1", 9000)
    for bad in ("8000", "host:", ":80", "h:99999", "h:port"):
        with pytest.raises(CommandError):
            parse_host_port(bad)


def _manage(env: dict, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.integration
@pytest.mark.slow
def test_runticker_serves_and_streams_mock_data_then_stops_on_sigterm(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL", "DJANGO_SETTINGS_MODULE")}
    env.update(
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
        SECRET_KEY="runticker-test-" + "x" * 40,
        DEBUG="1",
        MOCK_TICK_INTERVAL_MS="200",
        PYTHONUNBUFFERED="1",
    )
    assert _manage(env, "migrate", "--noinput").returncode == 0
    seeded = _manage(env, "seed_demo")
    assert seeded.returncode == 0, seeded.stderr
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "manage.py", "runticker", "--mode", "mock", "--serve", f"127.0.0.1:{port}", "--no-backfill"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output: list[str] = []
    try:
        deadline = time.monotonic() + 60
        while not any("runticker (mock):" in line for line in output):
            line = process.stdout.readline()
            assert line or process.poll() is None, "runticker exited:\n" + "".join(output)
            output.append(line)
            assert time.monotonic() < deadline, "".join(output)
        banner = next(line for line in output if "runticker (mock):" in line)
        assert re.search(r"Mock market: mock, \d+ instruments", banner), banner

        metrics = ""
        for _ in range(50):
            try:
                metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics/", timeout=2).read().decode()
            except OSError:
                time.sleep(0.2)
                continue
            rates = [float(v) for v in re.findall(r"^ticker_connection_ticks_per_second\{.*\} (\S+)$", metrics, re.M)]
            if rates and sum(rates) > 0 and "ticker_chain_messages_total" in metrics:
                break
            time.sleep(0.2)
        assert "ticker_up 1.0" in metrics
        assert sum(rates) > 0, metrics
        sent = float(re.search(r"^ticker_chain_messages_total (\S+)$", metrics, re.M).group(1))
        assert sent > 0
    finally:
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        try:
            rest, _ = process.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            rest, _ = process.communicate()
        output.append(rest or "")
        took = time.monotonic() - started
    assert process.returncode == 0, "".join(output)
    assert took < 5, f"took {took:.1f}s to stop"
    assert "runticker stopped" in "".join(output)
