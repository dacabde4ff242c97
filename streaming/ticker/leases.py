"""Account leases: with several `runticker` processes, each account is streamed by exactly one.

A lease is a Redis key `tp:lease:account:{id}` holding the owner's id, set with `SET NX PX ttl`
and renewed by its owner every `ttl / 3`. Renew and release are compare-and-set Lua scripts, so a
process can only extend or drop its own lease. A process that cannot renew (it died, or lost Redis)
stops streaming the account once its *local* deadline passes, which is earlier than the key's
expiry on the server (`safety_ms`), so two processes never stream one account at the same time.
Others take over within `ttl` plus one acquisition interval.

If Redis loses its data (a restart without persistence), every lease key vanishes while its owner still
holds the lease locally. An `epoch` key tells the tickers that saw it happen: holders re-create their own
keys at once (streaming goes on), and for one lease time nobody takes an account it did not hold, so an
owner that is still alive re-asserts its lease before anyone else can take it.

Embedded mode (no Redis) has one ticker process: `LocalLeases` grants everything.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import Protocol

logger = logging.getLogger(__name__)

KEY_PREFIX = "tp:lease:account:"
EPOCH_KEY = "tp:lease:epoch"

# Extend our own lease; re-create it if it vanished (Redis lost its data while we held it locally).
_RENEW = """
local owner = redis.call('get', KEYS[1])
if owner == ARGV[1] then
  return redis.call('pexpire', KEYS[1], ARGV[2])
end
if not owner then
  redis.call('set', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 2
end
return 0
"""
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('del', KEYS[1])
end
return 0
"""


class Leases(Protocol):
    owner: str

    async def sync(self, wanted: Iterable[int]) -> set[int]: ...
    def holds(self, account_id: int) -> bool: ...
    async def release_all(self) -> None: ...


class RedisLeases:
    """Leases on Redis. Call `sync(wanted)` every `acquire_interval_s`: it renews what it holds,
    tries to take what it wants and does not hold, and returns the accounts it may stream now."""

    def __init__(
        self,
        redis,  # redis.asyncio.Redis
        *,
        owner: str,
        ttl_ms: int = 10_000,
        safety_ms: int = 1_000,
        clock=time.monotonic,
    ) -> None:
        if safety_ms >= ttl_ms:
            raise ValueError("safety_ms must be smaller than ttl_ms")
        self.redis = redis
        self.owner = owner
        self.ttl_ms = ttl_ms
        self.safety_ms = safety_ms
        self._clock = clock
        self._deadlines: dict[int, float] = {}  # account id -> local monotonic deadline
        self._epoch: bytes | None = None  # the Redis data generation this ticker last saw
        self._no_new_until = 0.0  # after a data loss: take no account we did not hold before this
        self._renew = redis.register_script(_RENEW)
        self._release = redis.register_script(_RELEASE)

    def holds(self, account_id: int) -> bool:
        deadline = self._deadlines.get(account_id)
        return deadline is not None and self._clock() < deadline

    def held(self) -> set[int]:
        return {account_id for account_id in self._deadlines if self.holds(account_id)}

    async def _check_epoch(self) -> None:
        try:
            epoch = await self.redis.get(EPOCH_KEY)
            if epoch is None:
                await self.redis.set(EPOCH_KEY, f"{self.owner}:{time.time()}", nx=True)
                epoch = await self.redis.get(EPOCH_KEY)
        except Exception as exc:
            logger.warning("lease epoch check failed: %s", exc)
            return
        if self._epoch is not None and epoch != self._epoch:
            self._no_new_until = self._clock() + self.ttl_ms / 1000
            logger.warning(
                "Redis lost the lease keys: re-asserting held leases, taking no other account for %.0f s",
                self.ttl_ms / 1000,
            )
        self._epoch = epoch

    async def sync(self, wanted: Iterable[int]) -> set[int]:
        wanted = set(wanted)
        await self._check_epoch()
        for account_id in list(self._deadlines):
            if account_id not in wanted:
                await self.release(account_id)
        for account_id in wanted:
            started = self._clock()
            try:
                if account_id in self._deadlines:
                    ok = bool(await self._renew(keys=[KEY_PREFIX + str(account_id)], args=[self.owner, self.ttl_ms]))
                elif started < self._no_new_until:
                    continue
                else:
                    ok = bool(await self.redis.set(KEY_PREFIX + str(account_id), self.owner, nx=True, px=self.ttl_ms))
            except Exception as exc:  # Redis down: keep what we hold until the local deadline passes
                logger.warning("lease sync for account %s failed: %s", account_id, exc)
                continue
            if ok:
                # Measured from before the request: the server's expiry is at least this late.
                self._deadlines[account_id] = started + (self.ttl_ms - self.safety_ms) / 1000
            elif account_id in self._deadlines:
                logger.warning("lease for account %s was lost to another ticker", account_id)
                del self._deadlines[account_id]
        for account_id in list(self._deadlines):
            if not self.holds(account_id):
                logger.warning("lease for account %s expired locally (could not renew)", account_id)
                del self._deadlines[account_id]
        return self.held()

    async def release(self, account_id: int) -> None:
        self._deadlines.pop(account_id, None)
        try:
            await self._release(keys=[KEY_PREFIX + str(account_id)], args=[self.owner])
        except Exception as exc:
            logger.warning("could not release lease for account %s: %s", account_id, exc)

    async def release_all(self) -> None:
        for account_id in list(self._deadlines):
            await self.release(account_id)

    async def owners(self, account_ids: Iterable[int]) -> dict[int, str | None]:
        """Who holds each account's lease now (for status pages)."""
        ids = list(account_ids)
        if not ids:
            return {}
        values = await self.redis.mget([KEY_PREFIX + str(i) for i in ids])
        return {i: (v.decode() if isinstance(v, bytes) else v) for i, v in zip(ids, values, strict=True)}


class LocalLeases:
    """One ticker process (embedded mode): every wanted account is granted."""

    def __init__(self, *, owner: str) -> None:
        self.owner = owner
        self._held: set[int] = set()

    async def sync(self, wanted: Iterable[int]) -> set[int]:
        self._held = set(wanted)
        return set(self._held)

    def holds(self, account_id: int) -> bool:
        return account_id in self._held

    def held(self) -> set[int]:
        return set(self._held)

    async def release_all(self) -> None:
        self._held.clear()
