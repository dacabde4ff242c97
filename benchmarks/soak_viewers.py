"""Browser-like websocket clients for the soak (`benchmarks.soak` starts them as their own process).

`python -m benchmarks.soak_viewers --port P --cookie C --summary PATH --seconds S [--per-chain N] CHAIN ...`
with each CHAIN as UNDERLYING/YYYY-MM-DD. Every client opens /ws/chain/<chain>/ as the chain page does
and counts what a person watching would notice: messages a second, the shortest gap between two
deltas, seq continuity (a delta must take the client from its seq to a later one: a folded delta's
`from_seq` is at most the client's seq + 1), snapshots after the first (resyncs) and disconnects. The
summary (JSON) is rewritten every few seconds, so the soak can read it whenever it stops.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

SUMMARY_EVERY_S = 5.0


@dataclass
class ViewerStats:
    clients: int = 0
    connected: int = 0
    messages: int = 0
    snapshots: int = 0
    resyncs: int = 0  # a snapshot after the first one on a connection
    seq_gaps: int = 0  # a delta that does not continue from the client's seq
    disconnects: int = 0
    min_gap_ms: float = math.inf  # between two consecutive deltas
    # Deltas that arrived less than 80 % of the pace after the one before: the server pushes at most
    # one per pace (CHAIN_PUBLISH_INTERVAL_MS), so these are delivery jitter (a late message followed by
    # an on-time one); a hub that pushed too often would show many.
    early_deltas: int = 0
    pace_ms: float = 250.0
    started_at: float = 0.0

    def summary(self) -> dict[str, float | int | None]:
        elapsed = max(time.monotonic() - self.started_at, 1e-9)
        out = asdict(self)
        out.pop("started_at")
        out["min_gap_ms"] = None if math.isinf(self.min_gap_ms) else round(self.min_gap_ms, 1)
        out["seconds"] = round(elapsed, 1)
        out["messages_per_client_s"] = self.messages / elapsed / max(self.clients, 1)
        return out


async def watch(url: str, headers: dict[str, str], stats: ViewerStats, deadline: float) -> None:
    import websockets

    while time.monotonic() < deadline:
        try:
            async with websockets.connect(url, additional_headers=headers, max_size=None, compression=None) as ws:
                stats.connected += 1
                seq: int | None = None
                last_at: float | None = None
                try:
                    while time.monotonic() < deadline:
                        try:
                            raw = await asyncio.wait_for(ws.recv(), max(deadline - time.monotonic(), 0.01))
                        except TimeoutError:
                            break
                        message = json.loads(raw)
                        kind = message.get("type")
                        if kind not in ("snapshot", "delta"):
                            continue
                        now = time.monotonic()
                        if kind == "delta" and last_at is not None:
                            gap_ms = (now - last_at) * 1000
                            stats.min_gap_ms = min(stats.min_gap_ms, gap_ms)
                            stats.early_deltas += gap_ms < 0.8 * stats.pace_ms
                        # The pace is between deltas: a resync's snapshot goes out right before the
                        # delta it caught up to (docs/websocket.md).
                        last_at = now if kind == "delta" else None
                        stats.messages += 1
                        chain = message["chain"]
                        if kind == "snapshot":
                            stats.snapshots += 1
                            stats.resyncs += seq is not None
                        elif seq is None or not (chain.get("from_seq", chain["seq"]) <= seq + 1 <= chain["seq"]):
                            stats.seq_gaps += 1
                        seq = chain["seq"]
                finally:
                    stats.connected -= 1
        except Exception:  # refused, dropped: count it and come back, as the page does
            stats.disconnects += 1
            await asyncio.sleep(1.0)


async def run(args: argparse.Namespace) -> None:
    headers = {"Cookie": args.cookie, "Origin": f"http://127.0.0.1:{args.port}"}
    stats = ViewerStats(started_at=time.monotonic(), pace_ms=args.pace_ms)
    deadline = time.monotonic() + args.seconds
    summary_path = Path(args.summary)
    tasks = []
    for chain in args.chains:
        for _ in range(args.per_chain):
            stats.clients += 1
            url = f"ws://127.0.0.1:{args.port}/ws/chain/{chain}/"
            tasks.append(asyncio.create_task(watch(url, headers, stats, deadline)))
    while time.monotonic() < deadline:
        await asyncio.sleep(min(SUMMARY_EVERY_S, max(deadline - time.monotonic(), 0.0)))
        write_summary(summary_path, stats)
    await asyncio.gather(*tasks, return_exceptions=True)
    write_summary(summary_path, stats)


def write_summary(path: Path, stats: ViewerStats) -> None:
    """Replace the summary file at once (the soak may read it at any moment): a few hundred bytes."""
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(stats.summary()))
    partial.replace(path)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--cookie", required=True, help="e.g. sessionid=...")
    parser.add_argument("--summary", required=True, help="where to write the JSON summary")
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--per-chain", type=int, default=1)
    parser.add_argument("--pace-ms", type=float, default=250.0, help="the server's CHAIN_PUBLISH_INTERVAL_MS")
    parser.add_argument("chains", nargs="+", help="UNDERLYING/YYYY-MM-DD")
    asyncio.run(run(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
