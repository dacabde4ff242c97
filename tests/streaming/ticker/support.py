"""Test data for the ticker loop tests: accounts, an index and option chains with subscriptions."""

from __future__ import annotations

import datetime as dt

from subscriptions.models import Instrument, Subscription, TradingAccount


def next_expiry(days: int = 7) -> dt.date:
    return dt.date.today() + dt.timedelta(days=days)


def make_chain(
    *,
    underlying: str = "NIFTY",
    index_token: int = 256265,
    spot: float = 24000.0,
    step: float = 50.0,
    strikes: int = 11,
    expiry: dt.date | None = None,
    first_exchange_token: int = 50_000,
    mode: str = "full",
    subscribe: bool = True,
) -> list[Instrument]:
    """The index (subscribed) and `strikes` CE/PE pairs around `spot` (NFO tokens end in byte 2)."""
    expiry = expiry or next_expiry()
    index, _ = Instrument.objects.get_or_create(
        exchange="NSE",
        tradingsymbol=f"{underlying} INDEX",
        defaults={
            "instrument_token": index_token,
            "segment": "INDICES",
            "underlying": underlying,
            "instrument_type": "EQ",
            "last_price": spot,
            "name": underlying,
        },
    )
    created = [index]
    first = spot - step * (strikes // 2)
    exchange_token = first_exchange_token
    for n in range(strikes):
        strike = first + step * n
        for kind in ("CE", "PE"):
            created.append(
                Instrument(
                    instrument_token=exchange_token * 256 + 2,
                    exchange_token=exchange_token,
                    tradingsymbol=f"{underlying}{expiry:%y%b}{int(strike)}{kind}".upper(),
                    name=underlying,
                    expiry=expiry,
                    strike=strike,
                    tick_size=0.05,
                    lot_size=75,
                    instrument_type=kind,
                    segment="NFO-OPT",
                    exchange="NFO",
                    underlying=underlying,
                )
            )
            exchange_token += 1
    Instrument.objects.bulk_create(created[1:])
    instruments = list(Instrument.objects.filter(underlying=underlying))
    if subscribe:
        existing = set(Subscription.objects.filter(is_active=True).values_list("instrument_id", flat=True))
        Subscription.objects.bulk_create(
            [Subscription(instrument=i, mode=mode) for i in instruments if i.pk not in existing]
        )
    return instruments


def make_account(
    label: str,
    *,
    is_mock: bool = False,
    api_key: str = "",
    access_token: str = "",
    max_connections: int = 3,
    instruments_per_connection: int = 3000,
) -> TradingAccount:
    return TradingAccount.objects.create(
        label=label,
        api_key=api_key or f"key-{label}",
        access_token=access_token,
        is_mock=is_mock,
        api_secret="secret" if not is_mock else "",
        max_connections=max_connections,
        instruments_per_connection=instruments_per_connection,
    )


def instrument_spec(instrument: Instrument):
    from mocking.market import InstrumentSpec

    return InstrumentSpec.from_instrument(instrument)


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RedisServer:
    """A throwaway `redis-server` on a free port that tests can stop and start again (an outage)."""

    def __init__(self) -> None:
        import shutil

        self.binary = shutil.which("redis-server")
        self.port = free_port()
        self.process = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        import subprocess
        import time

        import redis

        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        deadline = time.monotonic() + 5
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        client.close()

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(5)
            self.process = None


async def close_db_connections() -> None:
    """Close the connections that sync_to_async's worker thread opened (so the test database can be
    dropped at the end of the run)."""
    from asgiref.sync import sync_to_async
    from django.db import connections

    await sync_to_async(connections.close_all)()
