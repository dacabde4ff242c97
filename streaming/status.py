"""What the running ticker is doing, per account and connection, for the admin, the API and metrics.

The ticker loop owns a `StatusBoard` and calls `record_ticks()` on the hot path (two additions and
an exponential rate estimate per batch: no per-tick work). Once a second it publishes a JSON
document: into Redis (`publish_redis`: `STATUS_KEY`, with a TTL so a dead ticker's status expires)
when REDIS_URL is set, and always into this process (`publish_local`), where `ticker_status()` (the
selector) reads it.

The ticker's Prometheus counters live here too: the ticker counts, the web half's `/metrics/` exposes
them (in the ticker's own process, and at zero in a web process of its own).
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import Counter, Histogram

log = logging.getLogger(__name__)

STATUS_KEY = "tp:ticker:status"
STATUS_TTL_S = 15
RATE_WINDOW_S = 5.0  # time constant of the ticks/s estimate

_local_status: dict[str, Any] | None = None

TICKS_TOTAL = Counter("ticker_ticks_total", "Ticks applied to the market state", ["mode"])
MALFORMED_TOTAL = Counter("ticker_malformed_packets_total", "Packets counted and skipped as malformed")
CHAIN_MESSAGES_TOTAL = Counter("ticker_chain_messages_total", "Chain deltas sent to the channel layer")
TICK_TO_CHANNEL_SECONDS = Histogram(
    "ticker_tick_to_channel_seconds",
    "From a tick's arrival to the chain delta carrying it being handed to the channel layer",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5),
)


@dataclass
class ConnectionStatus:
    account_id: int
    label: str
    connection_index: int
    mode: str  # live | mock
    instruments: int = 0
    ticks: int = 0
    last_tick_at: float | None = None
    ticks_per_second: float = 0.0
    _rate_at: float = 0.0

    def record(self, count: int, at: float) -> None:
        self.ticks += count
        if self._rate_at:
            elapsed = max(at - self._rate_at, 1e-6)
            alpha = 1.0 - math.exp(-elapsed / RATE_WINDOW_S)
            self.ticks_per_second += alpha * (count / elapsed - self.ticks_per_second)
        self._rate_at = at
        self.last_tick_at = at

    def decayed_rate(self, now: float) -> float:
        """The rate, decayed for the time since the last tick (a silent connection drops to 0)."""
        if not self._rate_at:
            return 0.0
        return self.ticks_per_second * math.exp(-max(now - self._rate_at, 0.0) / RATE_WINDOW_S)


@dataclass
class StatusBoard:
    started_at: float = field(default_factory=time.time)
    ticker_id: str = ""
    connections: dict[tuple[int, int], ConnectionStatus] = field(default_factory=dict)
    accounts: dict[int, dict[str, Any]] = field(default_factory=dict)  # id -> label, mode, health, error
    extra: dict[str, Any] = field(default_factory=dict)

    def set_connection(
        self, *, account_id: int, label: str, connection_index: int, mode: str, instruments: int
    ) -> ConnectionStatus:
        key = (account_id, connection_index)
        status = self.connections.get(key)
        if status is None:
            status = self.connections[key] = ConnectionStatus(account_id, label, connection_index, mode)
        status.mode, status.instruments, status.label = mode, instruments, label
        return status

    def drop_connection(self, account_id: int, connection_index: int) -> None:
        self.connections.pop((account_id, connection_index), None)

    def record_ticks(self, account_id: int, connection_index: int, count: int, at: float) -> None:
        status = self.connections.get((account_id, connection_index))
        if status is not None:
            status.record(count, at)

    def as_dict(self, *, sources: dict[tuple[int, int], dict[str, Any]] | None = None) -> dict[str, Any]:
        now = time.time()
        connections = []
        for key, conn in sorted(self.connections.items()):
            source = (sources or {}).get(key, {})
            connections.append(
                {
                    "account_id": conn.account_id,
                    "label": conn.label,
                    "connection_index": conn.connection_index,
                    "mode": conn.mode,
                    "state": source.get("state", "unknown"),
                    "instruments": conn.instruments,
                    "ticks": conn.ticks,
                    "ticks_per_second": round(conn.decayed_rate(now), 2),
                    "last_tick_at": conn.last_tick_at,
                    "reconnects": source.get("reconnects", 0),
                    "malformed": source.get("malformed", {}),
                    "last_error": source.get("last_error", ""),
                }
            )
        return {
            "ticker_id": self.ticker_id,
            "started_at": self.started_at,
            "updated_at": now,
            "accounts": [{"account_id": k, **v} for k, v in sorted(self.accounts.items())],
            "connections": connections,
            **self.extra,
        }


def publish_local(document: dict[str, Any]) -> None:
    global _local_status
    _local_status = document


async def publish_redis(redis: Any, document: dict[str, Any]) -> None:
    await redis.set(STATUS_KEY, json.dumps(document, default=str), ex=STATUS_TTL_S)


def ticker_status() -> dict[str, Any] | None:
    """The latest status of the running ticker (this process, else Redis), or None when no ticker
    reported in the last STATUS_TTL_S seconds."""
    if _local_status is not None and time.time() - _local_status.get("updated_at", 0) < STATUS_TTL_S:
        return _local_status
    from django.conf import settings

    if settings.REDIS_URL:
        try:
            from tickerproject.platform.redis_client import sync_redis

            raw = sync_redis().get(STATUS_KEY)
        except Exception as exc:
            log.warning("could not read the ticker status from Redis: %s", exc)
            return None
        if raw:
            return json.loads(raw)
    return None


def streaming_status_by_account() -> dict[int, dict[str, Any]]:
    """What the running ticker reports, per account id: mode, connections, instruments, ticks/s,
    last tick time (empty when no ticker reported recently)."""
    try:
        document = ticker_status()
    except Exception:  # status is advisory: the API must answer without it
        log.warning("could not read the ticker status", exc_info=True)
        return {}
    if not document:
        return {}
    by_account: dict[int, dict[str, Any]] = {}
    for account in document.get("accounts", []):
        by_account[int(account["account_id"])] = {
            "mode": account.get("mode"),
            "connections": [],
            "instruments": 0,
            "ticks_per_second": 0.0,
            "last_tick_at": None,
        }
    for conn in document.get("connections", []):
        entry = by_account.setdefault(
            int(conn["account_id"]),
            {
                "mode": conn.get("mode"),
                "connections": [],
                "instruments": 0,
                "ticks_per_second": 0.0,
                "last_tick_at": None,
            },
        )
        entry["connections"].append(
            {
                k: conn.get(k)
                for k in ("connection_index", "state", "instruments", "ticks_per_second", "last_tick_at", "reconnects")
            }
        )
        entry["instruments"] += int(conn.get("instruments") or 0)
        entry["ticks_per_second"] = round(entry["ticks_per_second"] + float(conn.get("ticks_per_second") or 0.0), 2)
        if conn.get("last_tick_at"):
            entry["last_tick_at"] = max(entry["last_tick_at"] or 0.0, float(conn["last_tick_at"]))
    return by_account


__all__ = [
    "CHAIN_MESSAGES_TOTAL",
    "MALFORMED_TOTAL",
    "STATUS_KEY",
    "TICKS_TOTAL",
    "TICK_TO_CHANNEL_SECONDS",
    "ConnectionStatus",
    "StatusBoard",
    "publish_local",
    "publish_redis",
    "streaming_status_by_account",
    "ticker_status",
]
