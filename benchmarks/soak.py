"""Soak the full stack: `python -m benchmarks.soak --seconds N [--interval S]` (`make soak`).

The [ticker] benchmark load, as separate processes like a deployment: `manage.py runsimulator`
streaming the 9,004 instruments of `benchmarks.ticker_workload` (4 indices + 9,000 options) in full
mode at 1 tick/s each, `manage.py runticker --mode live` (2 accounts x 3 connections), an ASGI web
worker (uvicorn) with signed-in websocket viewers on every chain (`benchmarks.soak_viewers`,
`--viewers-per-chain`, default 1) and a Celery worker, on a PostgreSQL database created for the run (the server at
SOAK_POSTGRES_ADMIN_URL, default postgres://postgres@127.0.0.1:5432/postgres) and a private
redis-server. Process logs: test-artifacts/soak/.

Every `--interval` seconds one JSON line (`soak_sample`): ticks/s applied by the ticker, RSS (MB)
and CPU (% of one core) per process, reconnects, error lines in the logs. At the end, one line per
figure: mean ticks/s (baseline: the offered rate), RSS growth per process in MB per hour (least
squares over the samples after the first third of the run), final RSS, reconnects, errors.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.common import emit

ERROR_LINE = re.compile(r" ERROR |Traceback \(most recent call last\)|CRITICAL")
ACCOUNTS, CONNECTIONS, PER_CONNECTION = 2, 3, 3000


def seed(accounts: int = ACCOUNTS) -> dict[str, Any]:
    """Create the benchmark instruments, one full-mode subscription each, and `accounts` Kite accounts
    (run with Django set up, inside the soak's environment)."""
    import datetime as dt
    import secrets

    from django.utils import timezone

    from benchmarks.ticker_workload import bench_instruments
    from subscriptions.models import Instrument, Subscription, TradingAccount

    for n in range(accounts):
        TradingAccount.objects.create(
            label=f"Soak account {n + 1}",
            api_key=f"soakkey{n + 1}",
            api_secret=secrets.token_hex(16),
            access_token=secrets.token_hex(16),
            token_expires_at=timezone.now() + dt.timedelta(days=2),
            health=TradingAccount.Health.OK,
            max_connections=CONNECTIONS,
            instruments_per_connection=PER_CONNECTION,
        )
    specs = bench_instruments()
    rows = Instrument.objects.bulk_create(
        Instrument(
            instrument_token=s.instrument_token,
            exchange_token=s.instrument_token >> 8,
            tradingsymbol=s.tradingsymbol,
            name=s.underlying,
            underlying=s.underlying,
            strike=s.strike,
            expiry=s.expiry,
            instrument_type=s.instrument_type,
            tick_size=s.tick_size,
            lot_size=s.lot_size,
            segment=s.segment,
            exchange=s.exchange,
        )
        for s in specs
    )
    Subscription.objects.bulk_create(Subscription(instrument=row, mode=Subscription.Mode.FULL) for row in rows)
    chains = sorted({f"{s.underlying}/{s.expiry.isoformat()}" for s in specs if s.instrument_type in ("CE", "PE")})
    return {"instruments": len(rows), "chains": chains, "session_key": _viewer_session()}


def _viewer_session() -> str:
    """A signed-in session for the soak's websocket viewers (a plain user: the chain page needs no more)."""
    import secrets

    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model
    from django.contrib.sessions.backends.db import SessionStore

    user = get_user_model().objects.create_user("soak-viewer", password=secrets.token_urlsafe(24))
    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.create()
    assert session.session_key is not None  # create() saved it under a new key
    return session.session_key


def _proc_stat(pid: int) -> tuple[float, float]:
    """(RSS in MB, CPU seconds used) of a process, from /proc."""
    rss_kb = 0
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                rss_kb = int(line.split()[1])
                break
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return rss_kb / 1024, (int(fields[11]) + int(fields[12])) / ticks


def _slope_per_hour(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, MB) points, in MB per hour."""
    if len(points) < 2:
        return 0.0
    n = len(points)
    mean_t = sum(t for t, _ in points) / n
    mean_v = sum(v for _, v in points) / n
    var = sum((t - mean_t) ** 2 for t, _ in points)
    if var == 0:
        return 0.0
    return sum((t - mean_t) * (v - mean_v) for t, v in points) / var * 3600


def _count_errors(path: Path) -> int:
    if not path.exists():
        return 0
    return sum(1 for line in path.read_text(errors="replace").splitlines() if ERROR_LINE.search(line))


def run(
    seconds: float, interval: float, *, with_web: bool = True, with_worker: bool = True, viewers_per_chain: int = 1
) -> dict[str, Any]:
    from tests.faults.stack import REPO, Stack, free_port, postgres_reachable, wait_until

    admin_url = os.environ.get("SOAK_POSTGRES_ADMIN_URL", "postgres://postgres@127.0.0.1:5432/postgres")
    if not postgres_reachable(admin_url):
        raise SystemExit(f"the soak needs PostgreSQL at {admin_url} (set SOAK_POSTGRES_ADMIN_URL)")
    stack = Stack(case="soak", postgres_admin_url=admin_url, extra_env={"STATIC_MANIFEST": "0"})
    try:
        stack.redis.start()
        from tests.faults.stack import create_database

        stack.database_url = create_database(admin_url, stack.db_name)
        stack.manage(["migrate", "--noinput"], timeout=300)
        code = "import django, json; django.setup(); from benchmarks.soak import seed; print(json.dumps(seed()))"
        import subprocess

        seeded = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=stack.env(), capture_output=True, text=True)
        if seeded.returncode != 0:
            raise RuntimeError(f"seeding failed: {seeded.stderr[-1500:]}")
        seed_result = json.loads(seeded.stdout.strip().splitlines()[-1])
        offered = seed_result["instruments"]

        sim_port = free_port()
        argv = [sys.executable, "manage.py", "runsimulator", "--port", str(sim_port), "--rate", "1"]
        simulator = stack.start("simulator", argv)
        wait_until(lambda: "Kite simulator on" in simulator.log(), timeout=120, what="runsimulator listening")
        stack.extra_env.update(KITE_WS_ROOT=f"ws://127.0.0.1:{sim_port}", KITE_API_ROOT=f"http://127.0.0.1:{sim_port}")
        stack.start_ticker("ticker", "--mode", "live", "--no-backfill")
        viewers_summary: Path | None = None
        if with_web:
            web_port = free_port()
            argv = [sys.executable, "-m", "uvicorn", "tickerproject.asgi:application", "--port", str(web_port)]
            # As deployed (docker-compose, Dockerfile): no per-client compression.
            web = stack.start("web", [*argv, "--log-level", "warning", "--ws-per-message-deflate", "false"])
            wait_until(lambda: "Uvicorn running" in web.log() or _port_open(web_port), timeout=60, what="uvicorn")
        if with_worker:
            stack.start_worker("worker")
        wait_until(lambda: (stack.ticker_status() or {}).get("ticks_applied", 0) > 0, timeout=120, what="ticks")
        if with_web and viewers_per_chain > 0:
            # Browsers on every chain: the web worker's hubs join the chain groups, so the ticker's
            # group sends reach real members, as in a deployment with people watching.
            viewers_summary = stack.dir / "viewers.json"
            argv = [sys.executable, "-m", "benchmarks.soak_viewers", "--port", str(web_port)]
            argv += ["--cookie", f"sessionid={seed_result['session_key']}", "--summary", str(viewers_summary)]
            argv += ["--seconds", str(seconds + 60), "--per-chain", str(viewers_per_chain), *seed_result["chains"]]
            stack.start("viewers", argv)

        started = time.monotonic()
        samples: list[dict[str, Any]] = []
        last_cpu: dict[str, tuple[float, float]] = {}
        last_ticks: tuple[float, int] | None = None
        while True:
            now = time.monotonic()
            elapsed = now - started
            status = stack.ticker_status() or {}
            ticks = int(status.get("ticks_applied", 0))
            rate = (ticks - last_ticks[1]) / (now - last_ticks[0]) if last_ticks else 0.0
            last_ticks = (now, ticks)
            rss: dict[str, float | None] = {}
            cpu: dict[str, float | None] = {}
            for proc in stack.processes:
                if not proc.alive():
                    rss[proc.name] = None
                    continue
                mb, cpu_s = _proc_stat(proc.pid)
                rss[proc.name] = round(mb, 1)
                previous = last_cpu.get(proc.name)
                cpu[proc.name] = round(100 * (cpu_s - previous[1]) / (now - previous[0]), 1) if previous else None
                last_cpu[proc.name] = (now, cpu_s)
            reconnects = sum(int(c.get("reconnects", 0)) for c in status.get("connections", []))
            errors = {p.name: _count_errors(p.log_path) for p in stack.processes}
            sample = {"t": round(elapsed, 1), "ticks_per_s": rate, "rss": rss, "cpu": cpu}
            sample.update(reconnects=reconnects, errors=errors)
            samples.append(sample)
            if last_ticks and len(samples) > 1:
                emit("soak_sample", rate, "ticks/s", t=sample["t"], rss_mb=rss, cpu_percent=cpu, reconnects=reconnects,
                     errors=sum(errors.values()))  # fmt: skip
            if elapsed >= seconds:
                break
            time.sleep(max(min(interval, seconds - elapsed), 0.5))
        result = _summarise(samples, offered=offered, seconds=seconds, stack=stack)
        if viewers_summary is not None:
            result["viewers"] = _summarise_viewers(viewers_summary)
        return result
    finally:
        stack.close()


def _summarise(samples: list[dict[str, Any]], *, offered: int, seconds: float, stack: Any) -> dict[str, Any]:
    measured = samples[1:]
    mean_rate = sum(s["ticks_per_s"] for s in measured) / max(len(measured), 1)
    emit("soak_ticks_per_second", mean_rate, "ticks/s", baseline=offered, seconds=round(seconds))
    steady = [s for s in samples if s["t"] >= seconds / 3] or samples
    growth = {}
    for name in samples[-1]["rss"]:
        points = [(s["t"], s["rss"][name]) for s in steady if s["rss"].get(name) is not None]
        growth[name] = _slope_per_hour(points)
        emit(f"soak_rss_growth_{name}", growth[name], "MB/h", final_rss_mb=samples[-1]["rss"][name])
        cpus = [s["cpu"].get(name) for s in measured if s["cpu"].get(name) is not None]
        if cpus:
            emit(f"soak_cpu_{name}", sum(cpus) / len(cpus), "% of one core")
    emit("soak_reconnects", samples[-1]["reconnects"], "count")
    emit("soak_errors", sum(samples[-1]["errors"].values()), "log lines", by_process=samples[-1]["errors"])
    alive = {p.name: p.alive() for p in stack.processes}
    emit("soak_processes_alive", sum(alive.values()), "count", of=len(alive), alive=alive)
    return {"mean_ticks_per_s": mean_rate, "rss_growth_mb_per_h": growth, "samples": len(samples)}


def _port_open(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _summarise_viewers(path: Path) -> dict[str, Any]:
    """The websocket viewers' own figures (benchmarks.soak_viewers), as the browsers saw the stream."""
    try:
        found = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        emit("soak_viewers", 0, "clients", error=f"no summary: {exc}")
        return {}
    emit(
        "soak_viewer_messages_per_chain",
        found["messages_per_client_s"],
        "messages/s",
        target="<= 4 (CHAIN_PUBLISH_INTERVAL_MS = 250 ms)",
        min_gap_ms=found["min_gap_ms"],
        early_deltas=found["early_deltas"],
        deltas_early_below_ms=0.8 * found["pace_ms"],
        clients=found["clients"],
        seconds=found["seconds"],
    )
    emit("soak_viewer_seq_gaps", found["seq_gaps"], "count", messages=found["messages"], resyncs=found["resyncs"])
    emit("soak_viewer_disconnects", found["disconnects"], "count", connected_at_end=found["connected"])
    return found


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=600.0, help="how long to measure (after start-up)")
    parser.add_argument("--interval", type=float, default=None, help="seconds between samples (default: run/20)")
    parser.add_argument("--no-web", action="store_true", help="without the uvicorn web worker")
    parser.add_argument("--no-worker", action="store_true", help="without the Celery worker")
    parser.add_argument(
        "--viewers-per-chain", type=int, default=1, help="websocket clients per chain on the web worker (0: none)"
    )
    args = parser.parse_args(argv)
    interval = args.interval or min(max(args.seconds / 20, 2.0), 30.0)
    run(
        args.seconds,
        interval,
        with_web=not args.no_web,
        with_worker=not args.no_worker,
        viewers_per_chain=args.viewers_per_chain,
    )


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tickerproject.settings")
    import django

    django.setup()
    main()
