"""The chain websocket under fan-out, full stack on Redis.

A throwaway redis-server (or REDIS_URL when no redis-server binary is around), the ASGI app served
by uvicorn in its own process on the Redis channel layer (as `docker-compose`'s web service runs
it), 200 websocket clients in two client processes, all signed in and on one chain (41 strikes,
every side changing in every delta, like the mock market), and a publisher in this process that
does what the ticker's publishers do per update: write the chain snapshot to Redis, then
`group_send` the delta to the chain's group, every CHAIN_PUBLISH_INTERVAL_MS (250 ms).

Figures (one JSON line each):
- publish-to-client latency p50 / p99 / max over every delivered delta (from just before
  group_send to the client having the frame), target p99 ≤150 ms;
- delivery: the share of (client, update) pairs that reached the client, as the delta itself or
  folded into a fresh snapshot (target 1.0: every client receives each update);
- server CPU per delivered message (µs) and the server's CPU use (% of one core).

`python -m benchmarks.bench_chain_ws --clients N ...` is the client child process.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import emit

REPO = Path(__file__).resolve().parent.parent
CLIENTS = int(os.environ.get("BENCH_CHAIN_WS_CLIENTS", 200))
CLIENT_PROCESSES = 2
UPDATES_PER_SECOND = 4.0  # settings.CHAIN_PUBLISH_INTERVAL_MS default: 250 ms
MEASURE_S = float(os.environ.get("BENCH_CHAIN_WS_SECONDS", 10.0))
STRIKES = 41
UNDERLYING, EXPIRY = "NIFTY", "2030-01-29"
P99_TARGET_MS = 150.0
# The consumer's encoding puts these first: no need to parse 25 KB of JSON per frame to time it.
HEAD = re.compile(rb'"type":"(\w+)".*?"seq":(\d+),"ts":([0-9.]+)')


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def chain_payload(seq: int, rng: random.Random) -> dict[str, Any]:
    rows = []
    for n in range(STRIKES):
        strike = 25000.0 + 50 * n
        row: dict[str, Any] = {"strike": strike}
        for kind in ("CE", "PE"):
            ltp = round(max(0.05, (26000 - strike if kind == "CE" else strike - 26000) + 120 + rng.uniform(-5, 5)), 2)
            row[kind] = {
                "instrument_token": 10_000 + 2 * n + (kind == "PE"),
                "tradingsymbol": f"NIFTY30JAN{int(strike)}{kind}",
                "ltp": ltp,
                "change": round(rng.uniform(-20, 20), 2),
                "oi": rng.randrange(100_000, 6_000_000),
                "oi_change": rng.randrange(-50_000, 50_000),
                "oi_change_recent": rng.randrange(-5_000, 5_000),
                "volume": rng.randrange(10_000, 900_000),
                "iv": round(rng.uniform(0.1, 0.2), 5),
                "delta": round(rng.uniform(-1, 1), 4),
                "gamma": round(rng.uniform(0, 0.001), 6),
                "theta": round(rng.uniform(-20, -1), 3),
                "vega": round(rng.uniform(1, 15), 3),
                "bid": round(ltp - 0.05, 2),
                "ask": round(ltp + 0.05, 2),
                "updated_at": round(time.time(), 3),
            }
        rows.append(row)
    header = {
        "spot": 26010.5, "forward": 26040.2, "atm_strike": 26000.0, "pcr_oi": 1.07, "pcr_volume": 0.98,
        "max_pain": 26000.0, "time_to_expiry_years": 0.1, "expires_at": f"{EXPIRY}T15:30:00+05:30",
        "last_tick_at": time.time(), "oi_change_window_minutes": 15.0,
    }  # fmt: skip
    return {"underlying": UNDERLYING, "expiry": EXPIRY, "seq": seq, "ts": time.time(), "source": "mock",
            "header": header, "rows": rows}  # fmt: skip


# ---- client child process --------------------------------------------------------------------


async def run_clients(port: int, cookie: str, count: int, last_seq: int, deadline_s: float) -> dict[str, Any]:
    import websockets

    url = f"ws://127.0.0.1:{port}/ws/chain/{UNDERLYING}/{EXPIRY}/"
    headers = {"Cookie": cookie, "Origin": f"http://127.0.0.1:{port}"}
    latencies: list[float] = []
    seen: list[set[int]] = [set() for _ in range(count)]
    snapshots = [0] * count
    ready = asyncio.Event()
    connected = 0

    retries = 0

    async def open_with_retries() -> tuple[Any, bytes]:
        """Connect and read the first snapshot; retry with backoff like the page does (e.g. on 1013)."""
        nonlocal retries
        for attempt in range(8):
            ws = None
            try:
                ws = await websockets.connect(
                    url, additional_headers=headers, max_size=None, open_timeout=60, compression="deflate"
                )
                return ws, await ws.recv(decode=False)
            except (OSError, websockets.exceptions.WebSocketException):
                if ws is not None:
                    await ws.close()
                retries += 1
                await asyncio.sleep(0.25 * 2**attempt * random.uniform(0.75, 1.25))
        raise RuntimeError("could not connect after 8 attempts")

    async def one(i: int) -> None:
        nonlocal connected
        ws, first_frame = await open_with_retries()
        async with ws:
            first = HEAD.search(first_frame)
            covered = int(first.group(2)) if first else 0
            connected += 1
            if connected == count:
                ready.set()
            while covered < last_seq:
                text = await ws.recv(decode=False)  # bytes: no UTF-8 decoding of 12 KB per frame
                now = time.time()
                match = HEAD.search(text, 0, 400)
                if not match:
                    continue
                kind, seq, ts = match.group(1).decode(), int(match.group(2)), float(match.group(3))
                if kind == "delta":
                    latencies.append((now - ts) * 1000.0)
                    seen[i].add(seq)
                else:
                    snapshots[i] += 1
                    seen[i].update(range(covered + 1, seq + 1))
                covered = max(covered, seq)

    async def announce_ready() -> None:
        await ready.wait()
        print("READY", flush=True)

    announcer = asyncio.create_task(announce_ready())
    tasks = []
    for i in range(count):
        tasks.append(asyncio.create_task(one(i)))
        await asyncio.sleep(0.005)  # a browser-like trickle, not a connect storm
    done, pending = await asyncio.wait(tasks, timeout=deadline_s)
    for task in pending:
        task.cancel()
    announcer.cancel()
    errors = [repr(t.exception()) for t in done if t.exception() is not None]
    return {
        "latencies_ms": latencies,
        "seen": [sorted(s) for s in seen],
        "snapshots": snapshots,
        "errors": errors[:5],
        "connect_retries": retries,
    }


def client_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--cookie", required=True)
    parser.add_argument("--last-seq", type=int, required=True)
    parser.add_argument("--deadline", type=float, required=True)
    args = parser.parse_args(argv)
    started = time.process_time()
    result = asyncio.run(run_clients(args.port, args.cookie, args.clients, args.last_seq, args.deadline))
    result["cpu_s"] = time.process_time() - started
    print("RESULT " + json.dumps(result), flush=True)


# ---- orchestration ---------------------------------------------------------------------------


def start_redis() -> tuple[str, subprocess.Popen | None]:
    binary = shutil.which("redis-server")
    if binary is None:
        url = os.environ.get("REDIS_URL", "")
        if not url:
            raise RuntimeError("needs redis-server or REDIS_URL")
        return url, None
    port = free_port()
    process = subprocess.Popen(
        [binary, "--port", str(port), "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    import redis

    client = redis.Redis(port=port)
    for _ in range(100):
        try:
            client.ping()
            break
        except redis.ConnectionError:
            time.sleep(0.05)
    return f"redis://127.0.0.1:{port}/0", process


def manage(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    if done.returncode:
        raise RuntimeError(f"manage.py {args[0]} failed: {done.stderr[-2000:]}")
    return done.stdout


SESSION_SCRIPT = """
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model
from django.contrib.sessions.backends.db import SessionStore
user = get_user_model().objects.create_user("bench-viewer")
session = SessionStore()
session[SESSION_KEY] = str(user.pk)
session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
session[HASH_SESSION_KEY] = user.get_session_auth_hash()
session.create()
print("SESSION", session.session_key)
"""


async def publish(redis_url: str, updates: int, interval: float, rng: random.Random) -> None:
    import redis.asyncio as aioredis
    from channels_redis.core import RedisChannelLayer

    from streaming.contract import CHAIN, CHAIN_UPDATE, DELTA, KIND, chain_group
    from streaming.snapshot_store import chain_key

    layer = RedisChannelLayer(hosts=[redis_url], prefix="tp:asgi", capacity=200, expiry=30)
    store = aioredis.Redis.from_url(redis_url)
    group = chain_group(UNDERLYING, EXPIRY)
    start = time.monotonic()
    for n in range(updates):
        await asyncio.sleep(max(0.0, start + (n + 1) * interval - time.monotonic()))
        chain = chain_payload(n + 2, rng)  # the snapshot clients got first is seq 1
        await store.set(chain_key(UNDERLYING, EXPIRY), json.dumps(chain))
        chain["ts"] = time.time()
        await layer.group_send(group, {"type": CHAIN_UPDATE, KIND: DELTA, CHAIN: chain})
    await store.aclose()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100.0 * (len(ordered) - 1)))] if ordered else float("nan")


def wait_for_port(port: int, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"uvicorn did not start: {log.read_text()[-2000:]}") from None
            time.sleep(0.2)


def stop(process: subprocess.Popen | None) -> None:
    if process is not None and process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def run_scenario(
    *, name: str, deflate: bool, env: dict[str, str], session_key: str, redis_url: str, workdir: Path
) -> None:
    """One uvicorn server, CLIENTS clients offering permessage-deflate (as browsers do), one publisher."""
    rng = random.Random(6)
    import redis

    from streaming.contract import encode_browser_message
    from streaming.snapshot_store import chain_key

    redis.Redis.from_url(redis_url).set(chain_key(UNDERLYING, EXPIRY), json.dumps(chain_payload(1, rng)))
    port = free_port()
    log_path = workdir / f"server-{name}.log"
    server_log = log_path.open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "tickerproject.asgi:application", "--host", "127.0.0.1",
         "--port", str(port), "--log-level", "warning", "--no-access-log",
         "--ws-per-message-deflate", "true" if deflate else "false"],
        cwd=REPO, env=env, stdout=server_log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    clients: list[subprocess.Popen] = []
    try:
        wait_for_port(port, server, log_path)
        updates = int(MEASURE_S * UPDATES_PER_SECOND)
        last_seq = updates + 1
        for _ in range(CLIENT_PROCESSES):
            clients.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "benchmarks.bench_chain_ws",
                        "--clients",
                        str(CLIENTS // CLIENT_PROCESSES),
                        "--port",
                        str(port),
                        "--cookie",
                        f"sessionid={session_key}",
                        "--last-seq",
                        str(last_seq),
                        "--deadline",
                        str(MEASURE_S + 90),
                    ],
                    cwd=REPO,
                    env=env,
                    stdout=subprocess.PIPE,
                    text=True,
                )
            )
        for client in clients:
            assert client.stdout is not None  # started with stdout=PIPE
            line = client.stdout.readline()
            if not line.startswith("READY"):
                raise RuntimeError(
                    f"clients did not connect: {line[:1500]!r}\nserver log: {log_path.read_text()[-3000:]}"
                )
        time.sleep(0.5)

        cpu_before, wall_before = cpu_seconds(server.pid), time.monotonic()
        asyncio.run(publish(redis_url, updates, 1.0 / UPDATES_PER_SECOND, rng))
        results = []
        for client in clients:
            out, _ = client.communicate(timeout=MEASURE_S + 120)
            results.append(json.loads(out.split("RESULT ", 1)[1]))
        cpu_used, wall = cpu_seconds(server.pid) - cpu_before, time.monotonic() - wall_before
    finally:
        for process in [*clients, server]:
            stop(process)
        server_log.close()

    latencies = [v for r in results for v in r["latencies_ms"]]
    expected = set(range(2, last_seq + 1))
    pairs = sum(len(expected & set(seen)) for r in results for seen in r["seen"])
    snapshots = sum(sum(r["snapshots"]) for r in results)
    delivered = len(latencies) + snapshots
    extra = {"clients": CLIENTS, "updates": updates, "updates_per_s": UPDATES_PER_SECOND, "permessage_deflate": deflate}
    emit(f"{name}.latency_p99", percentile(latencies, 99), "ms", baseline=P99_TARGET_MS, **extra)
    emit(f"{name}.latency_p50", percentile(latencies, 50), "ms", **extra)
    emit(f"{name}.latency_max", max(latencies, default=float("nan")), "ms", **extra)
    errors = [e for r in results for e in r["errors"]]
    retries = sum(r["connect_retries"] for r in results)
    emit(f"{name}.delivery", pairs / (CLIENTS * updates), "fraction", baseline=1.0, snapshots_instead=snapshots,
         errors=errors, connect_retries=retries, **extra)  # fmt: skip
    frame = encode_browser_message("delta", chain_payload(2, rng))
    emit(f"{name}.server_cpu_per_message", cpu_used / max(delivered, 1) * 1e6, "us", delivered=delivered,
         frame_bytes=len(frame), **extra)  # fmt: skip
    emit(f"{name}.server_cpu", cpu_used / wall * 100.0, "% of one core", **extra)
    # The clients share the machine: their CPU (connects included) is part of what the latency shows.
    client_cpu = sum(r["cpu_s"] for r in results)
    emit(f"{name}.client_cpu_per_message", client_cpu / max(delivered, 1) * 1e6, "us", **extra)


def main() -> None:
    redis_url, redis_process = start_redis()
    workdir = Path(tempfile.mkdtemp(prefix="bench-chain-ws-"))
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "CELERY_BROKER_URL")}
    env.update(
        REDIS_URL=redis_url,
        DATABASE_URL=f"sqlite:///{workdir / 'db.sqlite3'}",
        DEBUG="0",
        SECRET_KEY=os.environ.get("SECRET_KEY") or "bench-only-secret-key-0123456789abcdefghijklmnop",
    )
    try:
        manage(env, "migrate", "--noinput")
        session_key = manage(env, "shell", "-c", SESSION_SCRIPT).split("SESSION", 1)[1].strip()
        common: dict[str, Any] = {"env": env, "session_key": session_key, "redis_url": redis_url, "workdir": workdir}
        # As deployed (docker-compose web, runticker --serve): no per-client compression.
        run_scenario(name="chain_ws", deflate=False, **common)
        # uvicorn's default: every client's stream compressed separately (zlib level 6).
        run_scenario(name="chain_ws_deflate", deflate=True, **common)
    finally:
        stop(redis_process)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    if "--clients" in sys.argv:
        client_main(sys.argv[1:])
    else:
        import django

        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tickerproject.settings")
        django.setup()
        main()
