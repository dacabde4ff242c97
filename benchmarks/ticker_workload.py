"""The ticker benchmark's workload: 9,004 synthetic instruments (4 indices + 9,000 options), their
plan on two accounts of three connections each, and the Kite simulator child process that streams them.

`python -m benchmarks.ticker_workload --simulate PORT RATE` is the simulator child process.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
from typing import Any

UNDERLYINGS = (  # name, index token (segment 9), spot, strike step
    ("NIFTY", 256265, 24000.0, 50.0),
    ("BANKNIFTY", 260105, 52000.0, 100.0),
    ("FINNIFTY", 257801, 23000.0, 50.0),
    ("MIDCPNIFTY", 288009, 12000.0, 25.0),
)
EXPIRIES = 3
STRIKES = 375  # per expiry: 4 underlyings x 3 expiries x 375 strikes x 2 = 9,000 options (+ 4 indices)
ACCOUNTS = 2
CONNECTIONS = 3


def bench_instruments() -> list[Any]:
    from mocking.market import InstrumentSpec

    today = dt.date.today()
    expiries = [today + dt.timedelta(days=7 * (n + 1)) for n in range(EXPIRIES)]
    specs = []
    exchange_token = 100_000
    for name, index_token, spot, step in UNDERLYINGS:
        specs.append(
            InstrumentSpec(
                instrument_token=index_token,
                tradingsymbol=f"{name} INDEX",
                underlying=name,
                instrument_type="EQ",
                segment="INDICES",
                exchange="NSE",
            )
        )
        for expiry in expiries:
            first = spot - step * (STRIKES // 2)
            for n in range(STRIKES):
                strike = first + step * n
                for kind in ("CE", "PE"):
                    specs.append(
                        InstrumentSpec(
                            instrument_token=exchange_token * 256 + 2,
                            tradingsymbol=f"{name}{expiry:%y%m%d}{int(strike)}{kind}",
                            underlying=name,
                            instrument_type=kind,
                            strike=strike,
                            expiry=expiry,
                            tick_size=0.05,
                            lot_size=75,
                            segment="NFO-OPT",
                            exchange="NFO",
                        )
                    )
                    exchange_token += 1
    return specs


def bench_plan(specs: list[Any]) -> Any:
    from subscriptions.assignment import Plan, PlannedAccount, PlannedInstrument

    per_connection = -(-len(specs) // (ACCOUNTS * CONNECTIONS))
    instruments = {}
    for n, spec in enumerate(specs):
        slot = n // per_connection
        instruments[spec.instrument_token] = PlannedInstrument(
            subscription_id=n + 1,
            instrument_token=spec.instrument_token,
            tradingsymbol=spec.tradingsymbol,
            exchange=spec.exchange,
            segment=spec.segment,
            underlying=spec.underlying,
            instrument_type=spec.instrument_type,
            strike=spec.strike,
            expiry=spec.expiry,
            tick_size=spec.tick_size,
            lot_size=spec.lot_size,
            mode="full",
            account_id=slot // CONNECTIONS + 1,
            connection_index=slot % CONNECTIONS,
        )
    accounts = {
        a: PlannedAccount(
            account_id=a,
            label=f"bench-{a}",
            api_key=f"bench-key-{a}",
            access_token=f"bench-token-{a}",
            is_mock=False,
            max_connections=CONNECTIONS,
            instruments_per_connection=3000,
            health="ok",
            has_valid_token=True,
        )
        for a in range(1, ACCOUNTS + 1)
    }
    return Plan(instruments=instruments, accounts=accounts)


# --- the simulator child process ------------------------------------------------------------------
def simulate(port: int, rate: float) -> None:
    from mocking.market import MockMarket
    from mocking.simulator.server import start_simulator
    from mocking.simulator.state import SimulatorState

    specs = bench_instruments()
    state = SimulatorState(ticks_per_second=rate)
    state.market = MockMarket(seed=11, max_state=len(specs) + 100)
    state.market.set_instruments(specs)
    for a in range(1, ACCOUNTS + 1):
        state.register_account(f"bench-key-{a}", "secret", f"bench-token-{a}")
    handle = start_simulator(state, port=port)
    print("ready", flush=True)
    stopped = False

    def stop(*_: Any) -> None:
        nonlocal stopped
        stopped = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    while not stopped:
        time.sleep(0.2)
    handle.stop()


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_simulator(rate: float) -> tuple[subprocess.Popen[str], int]:
    port = free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    child = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.ticker_workload", "--simulate", str(port), str(rate)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    assert child.stdout is not None  # stdout=PIPE
    line = child.stdout.readline()
    if "ready" not in line:
        child.kill()
        raise RuntimeError("the simulator did not start")
    return child, port


if __name__ == "__main__":
    if len(sys.argv) >= 4 and sys.argv[1] == "--simulate":
        simulate(int(sys.argv[2]), float(sys.argv[3]))
