"""The ticker loop under load: the Kite simulator (a separate process) streams ~9,000
instruments in full mode at one tick per second each over six connections (two accounts) to the
ticker loop running in this process, exactly as `runticker` runs it (Kite client → columnar parser
→ market state → chain analytics → channel layer).

Figures (one JSON line each):
- ticker CPU (% of one core) at 1 tick/s per instrument, target ≤35%;
- tick-to-channel-layer latency p50/p99 (from a frame's arrival to the chain delta carrying it being
  handed to the channel layer), target p99 ≤100 ms, at the default cadence (CHAIN_STREAM_INTERVAL_MS,
  50 ms per chain);
- browser pacing under that load: each chain's group is read by a `ChainHub` (what a web process runs),
  which pushes to its websocket clients at most every CHAIN_PUBLISH_INTERVAL_MS (250 ms), folding the
  deltas in between; reported as pushes per chain per second and the shortest gap between two pushes;
- the same with Redis publishing on (a throwaway redis-server), when the binary is available; and the
  deployed topology: Redis publishing plus the Redis channel layer, with the chain hubs in a separate
  "web process" (`--web`, as uvicorn runs them), so the ticker's figure is its own;
- for comparison, a ticker that paces each chain to 250 ms itself (a tick then waits
  for its chain's next slot, so the interval bounds the latency from below);
- ingest through the simulator at 2 ticks/s per instrument (the simulator, which shares the cores,
  tends to run out first), and the loop's own highest sustained ingest rate: pre-packed Kite frames
  pushed through the columnar parser, market state and chain publishing as fast as one core allows;
- RSS of the ticker process (each scenario runs in a fresh process, as runticker does).

The latency figures depend on what else runs on the machine: the loop is one thread, and a busy
machine delays it (the CPU figure, process time over wall time, is robust to that; latency is not).

The workload is synthetic (`benchmarks.ticker_workload`, no database): its plan reaches the loop as the
`plan_loader` of the ticker's wiring (`tickerproject.ticker_wiring`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from typing import Any, TypedDict

import numpy as np

from benchmarks.common import emit
from benchmarks.ticker_workload import bench_instruments, bench_plan, free_port, start_simulator

WARMUP_S = 4.0
MEASURE_S = 20.0  # long enough that the VM's noise (±3 points of CPU over 8 s) settles


def _rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class _PushRecorder:
    """A websocket client as the hub sees it: records when each push reached it."""

    def __init__(self) -> None:
        self.at: list[float] = []

    def deliver(self, event: dict[str, Any]) -> None:
        self.at.append(time.monotonic())


async def _run_once(
    *,
    rate: float,
    stream_interval_s: float,
    redis_url: str | None,
    browser_interval_s: float = 0.25,
    redis_channel_layer: bool = False,
) -> dict[str, float]:
    from channels.layers import InMemoryChannelLayer

    from streaming.contract import chain_group
    from streaming.ticker.config import LoopConfig
    from streaming.ticker.runtime import tune_gc_for_streaming
    from streaming.web.chain_hub import ChainHub
    from tickerproject.ticker_wiring import build_ticker_loop

    specs = bench_instruments()
    plan = bench_plan(specs)
    child, port = start_simulator(rate)
    layer = _redis_layer(redis_url) if redis_channel_layer and redis_url else InMemoryChannelLayer(capacity=1000)
    redis = None
    if redis_url:
        import redis.asyncio as aioredis

        redis = aioredis.Redis.from_url(redis_url)
    config = LoopConfig(
        mode="live",
        ws_root=f"ws://127.0.0.1:{port}",
        stream_interval_s=stream_interval_s,
        greeks_interval_s=0.2,
        backfill_on_start=False,
        reload_check_interval_s=None,
    )
    loop = build_ticker_loop(
        config, plan_loader=lambda mode: (plan, set()), channel_layer=layer, redis=redis, use_redis=redis is not None
    )
    stop = asyncio.Event()
    task = asyncio.create_task(loop.run(stop))
    hubs: list[tuple[ChainHub, _PushRecorder]] = []
    web_process: subprocess.Popen[str] | None = None
    try:
        await asyncio.wait_for(loop.started.wait(), 30)
        tune_gc_for_streaming()  # as runticker does once started
        groups = [chain_group(underlying, expiry) for underlying, expiry in list(loop.chains)]
        if redis_channel_layer and redis_url:  # the hubs in their own process, as a web server runs them
            web_process = await asyncio.to_thread(_start_web, redis_url, browser_interval_s, groups)
        else:  # embedded: the hubs in this process, as `runticker --serve` runs them
            for group in groups:
                hub, recorder = ChainHub(layer, group, interval_s=browser_interval_s), _PushRecorder()
                await hub.join(recorder)
                hubs.append((hub, recorder))
        await asyncio.sleep(WARMUP_S)
        loop.pending_latency = []  # collect from here on
        ticks0, cpu0, wall0 = loop.state.ticks_applied, time.process_time(), time.monotonic()
        await asyncio.sleep(MEASURE_S)
        ticks1, cpu1, wall1 = loop.state.ticks_applied, time.process_time(), time.monotonic()
        latencies = np.array(loop.pending_latency) * 1000
        push_times = [recorder.at for _, recorder in hubs]
        if web_process is not None:
            import json

            web_process.send_signal(signal.SIGTERM)
            assert web_process.stdout is not None  # started with stdout=PIPE (_start_web)
            line = await asyncio.wait_for(asyncio.to_thread(web_process.stdout.readline), 30)
            push_times = json.loads(line)["pushes"]
        pushes = [np.array([t for t in times if wall0 <= t <= wall1]) for times in push_times]
        gaps = [np.diff(p) for p in pushes if len(p) > 1]
        return {
            "browser_pushes_per_chain_s": float(np.mean([len(p) for p in pushes]) / (wall1 - wall0)),
            "browser_min_gap_ms": float(min(g.min() for g in gaps) * 1000) if gaps else float("nan"),
            "cpu_percent": 100 * (cpu1 - cpu0) / (wall1 - wall0),
            "ticks_per_s": (ticks1 - ticks0) / (wall1 - wall0),
            "offered_per_s": rate * len(specs),
            "p50_ms": float(np.percentile(latencies, 50)) if len(latencies) else float("nan"),
            "p99_ms": float(np.percentile(latencies, 99)) if len(latencies) else float("nan"),
            "messages": float(len(latencies)),
            "rss_mb": _rss_mb(),
        }
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
        for hub, recorder in hubs:
            await hub.leave(recorder)
        if web_process is not None:
            try:
                web_process.wait(5)
            except subprocess.TimeoutExpired:
                web_process.kill()
                web_process.wait()
        child.send_signal(signal.SIGTERM)
        try:
            child.wait(10)
        except subprocess.TimeoutExpired:
            child.kill()


async def _max_ingest(*, seconds: float = 6.0, packets_per_frame: int = 250) -> dict[str, float]:
    """The loop's own capacity, without a simulator in the way: pre-packed Kite frames for all
    instruments go through the columnar parser and `_on_ticks` as fast as one core allows, with
    the flusher publishing chains at the default interval. Ticks/s here is where it falls behind."""
    from channels.layers import InMemoryChannelLayer

    from core.kite.columnar import parse_batch
    from core.kite.packer import pack_ticks
    from mocking.market import MockMarket
    from streaming.ticker.config import LoopConfig
    from tickerproject.ticker_wiring import build_ticker_loop

    specs = bench_instruments()
    plan = bench_plan(specs)
    market = MockMarket(seed=3, max_state=len(specs) + 100)
    market.set_instruments(specs)
    tokens = np.array([spec.instrument_token for spec in specs], dtype=np.int64)
    frames = []
    for step in range(4):  # a few different price sets, so chains really change
        batch = market.ticks(tokens, np.full(len(tokens), 2, dtype=np.int8), now=time.time() + step)
        for start in range(0, len(batch.ticks), packets_per_frame):
            frames.append(pack_ticks(batch.ticks[start : start + packets_per_frame]))
    loop = build_ticker_loop(
        LoopConfig(mode="live", backfill_on_start=False), channel_layer=InMemoryChannelLayer(), use_redis=False
    )
    loop.plan = plan
    loop.state.register(tokens)
    loop._rebuild_chains(list(plan.instruments.values()))
    interval = loop.config.stream_interval_s
    ticks = 0
    cpu0, wall0 = time.process_time(), time.monotonic()
    next_flush = wall0
    while time.monotonic() - wall0 < seconds:
        for frame in frames:
            batch = parse_batch(frame, received_at=time.time(), source="bench")
            loop._on_ticks(batch, 1, 0)
            ticks += len(batch)
            if time.monotonic() >= next_flush:
                await loop.flush()
                next_flush = time.monotonic() + interval
            await asyncio.sleep(0)
    wall = time.monotonic() - wall0
    return {"ticks_per_s": ticks / wall, "cpu_percent": 100 * (time.process_time() - cpu0) / wall}


# --- the web-process child: one ChainHub per chain on the Redis channel layer ----------------------
def _redis_layer(url: str) -> Any:
    from channels_redis.core import RedisChannelLayer

    return RedisChannelLayer(
        hosts=[{"address": url, "socket_timeout": 15.0}], prefix="tp:asgi", capacity=200, expiry=30
    )


def web(url: str, interval_s: float, groups: list[str]) -> None:
    """Join every chain group through a ChainHub (pushing at most every `interval_s`), until SIGTERM;
    then print, as one JSON line, each hub's push times."""
    import json

    from streaming.web.chain_hub import ChainHub

    async def main() -> None:
        layer = _redis_layer(url)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        members = []
        for group in groups:
            hub, recorder = ChainHub(layer, group, interval_s=interval_s), _PushRecorder()
            await hub.join(recorder)
            members.append((hub, recorder))
        print("ready", flush=True)
        await stop.wait()
        print(json.dumps({"cpu_s": time.process_time(), "pushes": [r.at for _, r in members]}), flush=True)
        with contextlib.suppress(Exception):
            async with asyncio.timeout(3):
                for hub, recorder in members:
                    await hub.leave(recorder)

    asyncio.run(main())


def _start_web(url: str, interval_s: float, groups: list[str]) -> subprocess.Popen[str]:
    child = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.bench_ticker", "--web", url, str(interval_s), *groups],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert child.stdout is not None  # stdout=PIPE
    if "ready" not in child.stdout.readline():
        child.kill()
        raise RuntimeError("the web process did not start")
    return child


def _redis_server() -> tuple[subprocess.Popen, str] | None:
    binary = shutil.which("redis-server")
    if not binary:
        return None
    port = free_port()
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(0.3)
    return process, f"redis://127.0.0.1:{port}/0"


class _RunLabels(TypedDict):
    scenario: str
    stream_interval_ms: int


def _emit_run(label: str, result: dict[str, float], *, interval_ms: int) -> None:
    common: _RunLabels = {"scenario": label, "stream_interval_ms": interval_ms}
    emit(f"ticker_cpu_{label}", result["cpu_percent"], "% of one core", baseline=35.0, target="<= 35", **common)
    emit(
        f"ticker_latency_p99_{label}",
        result["p99_ms"],
        "ms",
        baseline=100.0,
        target="<= 100",
        p50_ms=round(result["p50_ms"], 2),
        messages=int(result["messages"]),
        **common,
    )
    emit(f"ticker_ingest_{label}", result["ticks_per_s"], "ticks/s", offered=round(result["offered_per_s"]), **common)
    emit(
        f"browser_pushes_per_chain_{label}",
        result["browser_pushes_per_chain_s"],
        "messages/s",
        target="<= 4 (one per CHAIN_PUBLISH_INTERVAL_MS = 250 ms)",
        min_gap_ms=round(result["browser_min_gap_ms"], 1),
        **common,
    )


def _run_in_child(**kwargs: Any) -> dict[str, float]:
    """One `_run_once` in a fresh process, as `runticker` is one process per ticker: a scenario must
    not inherit the heap (and the frozen GC generation) of the one before."""
    import json

    child = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_ticker", "--scenario", json.dumps(kwargs)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    lines = [line for line in child.stdout.splitlines() if line.startswith("{")]
    if child.returncode != 0 or not lines:
        raise RuntimeError(f"scenario {kwargs} failed: {child.stderr[-2000:]}")
    return json.loads(lines[-1])


def main() -> None:
    from django.conf import settings

    default_ms = settings.CHAIN_STREAM_INTERVAL_MS
    browser_s = settings.CHAIN_PUBLISH_INTERVAL_MS / 1000
    result = _run_in_child(rate=1.0, stream_interval_s=default_ms / 1000, redis_url=None, browser_interval_s=browser_s)
    _emit_run("9k_full_1tps", result, interval_ms=default_ms)
    # For comparison: a ticker that paces each chain to the browsers' 250 ms itself (no web-side folding).
    paced = _run_in_child(rate=1.0, stream_interval_s=browser_s, redis_url=None, browser_interval_s=browser_s)
    _emit_run("9k_full_1tps_ticker_paced_250ms", paced, interval_ms=round(browser_s * 1000))
    redis = _redis_server()
    if redis is not None:
        process, url = redis
        try:
            with_redis = _run_in_child(
                rate=1.0, stream_interval_s=default_ms / 1000, redis_url=url, browser_interval_s=browser_s
            )
            _emit_run("9k_full_1tps_redis", with_redis, interval_ms=default_ms)
            deployed = _run_in_child(
                rate=1.0,
                stream_interval_s=default_ms / 1000,
                redis_url=url,
                browser_interval_s=browser_s,
                redis_channel_layer=True,
            )
            _emit_run("9k_full_1tps_redis_channel_layer", deployed, interval_ms=default_ms)
        finally:
            process.kill()
            process.wait()
    # Through the simulator at twice the rate: the simulator (a second process on the same cores)
    # usually runs out first, which `limited_by` says.
    run = _run_in_child(rate=2.0, stream_interval_s=default_ms / 1000, redis_url=None)
    kept_up = run["ticks_per_s"] >= 0.95 * run["offered_per_s"]
    emit(
        "ticker_ingest_via_simulator_2tps",
        run["ticks_per_s"],
        "ticks/s",
        offered=round(run["offered_per_s"]),
        cpu_percent=round(run["cpu_percent"], 1),
        p99_ms=round(run["p99_ms"], 1),
        kept_up=kept_up,
        limited_by="" if kept_up else ("ticker" if run["cpu_percent"] > 90 else "simulator"),
    )
    capacity = asyncio.run(_max_ingest())
    emit(
        "ticker_max_sustained_ingest",
        capacity["ticks_per_s"],
        "ticks/s",
        cpu_percent=round(capacity["cpu_percent"], 1),
        note="columnar parse + market state + chain publishing at the default interval, flat out, no simulator",
    )
    emit("ticker_rss", result["rss_mb"], "MB", scenario="9k_full_1tps", note="the ticker process at the end of its run")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--scenario":
        import json

        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tickerproject.settings")
        import django

        django.setup()
        print(json.dumps(asyncio.run(_run_once(**json.loads(sys.argv[2])))), flush=True)
    elif len(sys.argv) >= 4 and sys.argv[1] == "--web":
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tickerproject.settings")
        import django

        django.setup()
        web(sys.argv[2], float(sys.argv[3]), sys.argv[4:])
    else:
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tickerproject.settings")
        import django

        django.setup()
        main()
