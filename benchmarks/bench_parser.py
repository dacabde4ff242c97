"""Kite ticker parse throughput: our columnar fast path and exact dict parser against kiteconnect's
`KiteTicker._parse_binary`, side by side on the same full-mode frames of 100 packets (the target: the
columnar path at least 20x kiteconnect)."""

from __future__ import annotations

import random
import struct
import time
from collections.abc import Callable

from benchmarks.common import emit

PACKETS_PER_FRAME = 100
FRAMES = 200


def _frames(*, mixed: bool) -> list[bytes]:
    from core.kite.packer import frame_from_packets

    rng = random.Random(42)
    frames = []
    for _ in range(FRAMES):
        packets = []
        for i in range(PACKETS_PER_FRAME):
            if mixed and i % 10 == 0:  # an index among the options, as a chain subscription looks
                token = (rng.randrange(1, 1 << 16) << 8) | 9
                packets.append(struct.pack(">8I", token, *(rng.randrange(1 << 24) for _ in range(7))))
                continue
            token = (rng.randrange(1, 1 << 24) << 8) | 2
            packets.append(struct.pack(">46I", token, *(rng.randrange(1 << 24) for _ in range(45))))
        frames.append(frame_from_packets(packets))
    return frames


def _best_rates(
    parsers: dict[str, Callable[[bytes], object]], frames: list[bytes], rounds: int = 7
) -> dict[str, float]:
    """Best ticks/s of each parser over `rounds` passes, the parsers taking turns within every round so
    that load from elsewhere on the machine hits them alike."""
    best = dict.fromkeys(parsers, 0.0)
    ticks = len(frames) * PACKETS_PER_FRAME
    for _ in range(rounds):
        for name, parse in parsers.items():
            started = time.perf_counter()
            for frame in frames:
                parse(frame)
            best[name] = max(best[name], ticks / (time.perf_counter() - started))
    return best


def main() -> None:
    from kiteconnect import KiteTicker

    from core.kite import parse_binary, parse_columnar

    kite = KiteTicker("bench", "bench")
    for label, mixed in (("full100", False), ("full100_with_indices", True)):
        frames = _frames(mixed=mixed)
        rates = _best_rates(
            {"kiteconnect": kite._parse_binary, "columnar": parse_columnar, "exact": parse_binary}, frames
        )
        baseline, columnar, exact = rates["kiteconnect"], rates["columnar"], rates["exact"]
        emit(f"kite_parse_{label}_kiteconnect", baseline, "ticks/s")
        emit(f"kite_parse_{label}_columnar", columnar, "ticks/s", baseline=baseline, target_ratio=20)
        emit(f"kite_parse_{label}_exact_dicts", exact, "ticks/s", baseline=baseline)


if __name__ == "__main__":
    import os

    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tickerproject.settings")
    django.setup()
    main()
