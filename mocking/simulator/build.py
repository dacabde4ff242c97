"""Build a SimulatorState: from the database (`runsimulator`) or a small sample (tests).

The database path reads non-mock TradingAccounts with their decrypted api_secret/access_token (they
stay in memory, never logged) and the live Instruments as `mocking.market.InstrumentSpec`s.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from mocking.market import InstrumentSpec, MockMarket
from mocking.simulator.state import SimulatorState

NIFTY_INDEX_TOKEN = 256265  # NSE's NIFTY 50 index token; segment byte 9 (indices)


def make_market(specs: Iterable[InstrumentSpec], *, seed: int) -> MockMarket:
    """A MockMarket holding `specs`."""
    specs = list(specs)
    # Room for every instrument: the simulator must not evict what a client may subscribe to.
    market = MockMarket(seed=seed, max_state=max(5000, len(specs)))
    market.set_instruments(specs)
    return market


def next_weekly_expiry(today: dt.date) -> dt.date:
    """The next Thursday on or after `today` (NIFTY's weekly expiry day before 2025's change)."""
    return today + dt.timedelta(days=(3 - today.weekday()) % 7)


def sample_instruments(*, strikes: int = 5, today: dt.date | None = None) -> list[InstrumentSpec]:
    """The NIFTY 50 index and `strikes` CE/PE pairs around 24,000 on the next weekly expiry (NFO tokens
    whose low byte is 2), as InstrumentSpecs."""
    spec = InstrumentSpec
    expiry = next_weekly_expiry(today or dt.date.today())
    specs = [
        spec(
            instrument_token=NIFTY_INDEX_TOKEN,
            tradingsymbol="NIFTY 50",
            underlying="NIFTY",
            instrument_type="EQ",
            strike=0.0,
            expiry=None,
            tick_size=0.05,
            lot_size=1,
            segment="INDICES",
            exchange="NSE",
        )
    ]
    first = 24000 - 50 * (strikes // 2)
    for i in range(strikes):
        strike = float(first + 50 * i)
        for j, kind in enumerate(("CE", "PE")):
            specs.append(
                spec(
                    instrument_token=((10_000 + 2 * i + j) << 8) | 2,
                    tradingsymbol=f"NIFTY{expiry:%y%b}{int(strike)}{kind}".upper(),
                    underlying="NIFTY",
                    instrument_type=kind,
                    strike=strike,
                    expiry=expiry,
                    tick_size=0.05,
                    lot_size=75,
                    segment="NFO-OPT",
                    exchange="NFO",
                )
            )
    return specs


def sample_state(*, seed: int = 20241224, ticks_per_second: float = 1.0, strikes: int = 5) -> SimulatorState:
    """A state with the sample instruments in a mock market and no accounts (tests register their own)."""
    specs = sample_instruments(strikes=strikes)
    return SimulatorState(market=make_market(specs, seed=seed), instruments=specs, ticks_per_second=ticks_per_second)


def build_state_from_db(*, seed: int, ticks_per_second: float = 1.0) -> SimulatorState:
    """A state holding every non-mock account with an access token and every live instrument."""
    from subscriptions.models import Instrument, TradingAccount

    state = SimulatorState(ticks_per_second=ticks_per_second)
    for account in TradingAccount.objects.filter(is_mock=False).order_by("id"):
        state.register_account(
            account.api_key,
            account.api_secret,
            account.access_token or None,
            user_id=account.kite_user_id or "AB1234",
        )
    state.instruments = [
        InstrumentSpec.from_instrument(row)
        for row in Instrument.objects.filter(delisted_at__isnull=True).order_by("id").iterator()
    ]
    state.market = make_market(state.instruments, seed=seed)
    return state
