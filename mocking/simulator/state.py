"""The simulator's shared state: known accounts, the mock market it streams, and fault switches.

Plain Python (no Django): the `runsimulator` command builds it from the database, tests build it
directly. The ticker WebSocket (`ticker.py`) and the REST endpoints (`rest.py`) both read it.
"""

from __future__ import annotations

import secrets
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
        """Invalidate a token: new connections get 403; open ones are closed by the ticker."""
        for account in self.accounts.values():
            account.access_tokens.discard(access_token)
        self.faults.drop_all()
