"""The mock market: one step + full-mode ticks for a 5,000-instrument book, and mock history throughput.

No target; the figures show the mock keeps up with a ticker stepping every
MOCK_TICK_INTERVAL_MS (default 500 ms) for the largest state it keeps (MOCK_STATE_MAX_SIZE, 5000).
"""

from __future__ import annotations

import os
import time
from datetime import date, datetime, timedelta

import numpy as np

from benchmarks.common import emit
from core.calendar import IST
from core.ticks import MODE_FULL
from mocking.market import InstrumentSpec, MockMarket, SessionClock, mock_candles

STEPS = int(os.environ.get("BENCH_MOCK_STEPS", "40"))
OPEN = datetime(2026, 11, 24, 9, 15, tzinfo=IST)


def book(size: int = 5000) -> list[InstrumentSpec]:
    specs = [
        InstrumentSpec(256265, "NIFTY 50", "NIFTY", "EQ", 0.0, None, 0.05, 1, "INDICES", "NSE"),
        InstrumentSpec(260105, "NIFTY BANK", "BANKNIFTY", "EQ", 0.0, None, 0.05, 1, "INDICES", "NSE"),
    ]
    token = 100_000
    expiries = [date(2026, 11, 24) + timedelta(days=7 * i) for i in range(1, 40)]
    for expiry in expiries:
        for name, centre, step, lot in (("NIFTY", 26000, 50, 75), ("BANKNIFTY", 59000, 100, 35)):
            for k in range(-30, 31):
                for kind in ("CE", "PE"):
                    if len(specs) >= size:
                        return specs
                    token += 1
                    strike = float(centre + k * step)
                    specs.append(
                        InstrumentSpec(
                            token * 256 + 2,
                            f"{name}{expiry:%y%m%d}{int(strike)}{kind}",
                            name,
                            kind,
                            strike,
                            expiry,
                            0.05,
                            lot,
                            "NFO-OPT",
                            "NFO",
                        )
                    )
    return specs


def main() -> None:
    specs = book()
    market = MockMarket(seed=1, clock=SessionClock(now_fn=lambda: OPEN.timestamp()), max_state=len(specs))
    market.set_instruments(specs)
    tokens = np.array([s.instrument_token for s in specs], dtype=np.int64)
    modes = np.full(len(tokens), MODE_FULL, dtype=np.int8)
    t0 = OPEN.timestamp() + 3600
    market.ticks(tokens, modes, now=t0)
    times = []
    for i in range(1, STEPS + 1):
        started = time.perf_counter()
        batch = market.ticks(tokens, modes, now=t0 + 0.5 * i)
        times.append(time.perf_counter() - started)
    assert len(batch) == len(specs)
    step_ms = float(np.median(times)) * 1e3
    emit("mock_market.step_and_full_ticks_5000_median", step_ms, "ms", instruments=len(specs))
    emit("mock_market.full_ticks_per_second", len(specs) / (step_ms / 1e3), "ticks/s")

    option = specs[100]
    started = time.perf_counter()
    rows = mock_candles(option, "minute", OPEN - timedelta(days=60), OPEN, seed=1)
    elapsed = time.perf_counter() - started
    emit("mock_history.minute_candles_per_second", len(rows) / elapsed, "candles/s", candles=len(rows))


if __name__ == "__main__":
    main()
