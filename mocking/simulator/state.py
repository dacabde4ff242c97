"""The simulator's shared state: known accounts, the mock market it streams, and fault switches.

Plain Python (no Django): the `runsimulator` command builds it from the database, tests build it
directly. The ticker WebSocket (`ticker.py`) and the REST endpoints (`rest.py`) both read it.
"""

from __future__ import annotations

import itertools
import secrets
import time
from dataclasses import dataclass, field
from typing import Any


@dataclass
class SimAccount:
    api_key: str
    api_secret: str
    user_id: str = "AB1234"
    user_name: str = "Simulated User"
    access_tokens: set[str] = field(default_factory=set)


@dataclass
class Faults:
    """Switches tests flip while the simulator runs."""

    stall: bool = False  # keep connections open but send nothing at all (no heartbeats)
    malformed: bool = False  # mix malformed frames into the stream
    rest_delay_s: float = 0.0  # delay every REST answer
    drop_generation: int = 0  # bumped by drop_all(); live connections close when it changes

    def drop_all(self) -> None:
        self.drop_generation += 1


@dataclass
class SimConnection:
    """One ticker WebSocket as the simulator sees it: what the client asked for and what it was sent.

    Tests assert on these (e.g. "after the reconnect the client re-subscribed token X in full mode").
    """

    id: int
    api_key: str
    access_token: str
    modes: dict[int, str] = field(default_factory=dict)  # subscribed token → "ltp" | "quote" | "full"
    requests: list[dict[str, Any]] = field(default_factory=list)  # every JSON request, in order
    opened_at: float = field(default_factory=time.time)
    closed_at: float | None = None
    close_reason: str = ""
    frames_sent: int = 0
    ticks_sent: int = 0
    heartbeats_sent: int = 0
    malformed_sent: int = 0
    errors_sent: list[str] = field(default_factory=list)


_connection_ids = itertools.count(1)


@dataclass
class SimulatorState:
    accounts: dict[str, SimAccount] = field(default_factory=dict)
    faults: Faults = field(default_factory=Faults)
    # The mock market (mocking.market.MockMarket) and its instrument specs; set by the builder.
    market: Any = None
    instruments: list[Any] = field(default_factory=list)
    ticks_per_second: float = 1.0  # per subscribed token
    max_connections_per_key: int = 3
    max_tokens_per_connection: int = 3000
    historical_rate_per_second: float = 3.0
    extra: dict[str, Any] = field(default_factory=dict)
    heartbeat_interval_s: float = 1.0  # a 1-byte message after this long with nothing else sent
    frame_interval_s: float = 0.1  # how often a connection packs the ticks that are due into a frame
    connections: dict[int, SimConnection] = field(default_factory=dict)  # open ticker connections
    closed_connections: list[SimConnection] = field(default_factory=list)
    rejected_upgrades: int = 0  # ticker upgrades answered 403 (bad api_key/access_token)

    def open_connection(self, api_key: str, access_token: str) -> SimConnection:
        connection = SimConnection(id=next(_connection_ids), api_key=api_key, access_token=access_token)
        self.connections[connection.id] = connection
        return connection

    def close_connection(self, connection: SimConnection, reason: str = "") -> None:
        if self.connections.pop(connection.id, None) is not None:
            connection.closed_at = time.time()
            connection.close_reason = connection.close_reason or reason
            self.closed_connections.append(connection)

    def live_connections(self, api_key: str | None = None) -> list[SimConnection]:
        return [c for c in list(self.connections.values()) if api_key is None or c.api_key == api_key]

    def subscribed(self, api_key: str | None = None) -> dict[int, str]:
        """Token → mode over the open connections (of one api_key, or all)."""
        modes: dict[int, str] = {}
        for connection in self.live_connections(api_key):
            modes.update(connection.modes)
        return modes

    def register_account(
        self, api_key: str, api_secret: str, access_token: str | None = None, user_id: str = "AB1234"
    ) -> SimAccount:
        account = self.accounts.get(api_key) or SimAccount(api_key=api_key, api_secret=api_secret, user_id=user_id)
        account.api_secret = api_secret
        if access_token:
            account.access_tokens.add(access_token)
        self.accounts[api_key] = account
        return account

    def issue_token(self, api_key: str) -> str:
        token = secrets.token_hex(16)
        self.accounts[api_key].access_tokens.add(token)
        return token

    def is_authorised(self, api_key: str, access_token: str) -> bool:
        account = self.accounts.get(api_key)
        return bool(account and access_token in account.access_tokens)

    def revoke_token(self, access_token: str) -> None:
        """Invalidate a token: new connections get 403; open ones using it are closed by the ticker
        (only those: other accounts' connections stay up, as on Kite)."""
        for account in self.accounts.values():
            account.access_tokens.discard(access_token)
