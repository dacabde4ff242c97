"""One channel-layer subscription per chain per process, fanned out to that process's websockets.

Without it every websocket consumer joins the chain's group itself, and each update is dispatched
through Channels once per consumer (a receive buffer, a task, a dispatch each); with 200 browsers on
a chain that was most of the web process's CPU per update. A hub joins the group once, receives each
update once and hands the same message to every local consumer's bounded send queue.

The hub is also where a chain's updates are paced for people: the ticker sends a delta as soon as it
has one (CHAIN_STREAM_INTERVAL_MS), and the hub pushes at most one message per CHAIN_PUBLISH_INTERVAL_MS
to its clients, folding the deltas in between into one (`streaming.web.chain_conflation`). A delta after a
quiet spell goes out at once; the folded one goes out when the interval since the last push is over.

Hubs live per event loop (tests run one loop each) and per chain group; the first consumer of a chain
starts its hub, the last one to leave stops it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from typing import Any, Protocol

from streaming.contract import CHAIN, CHAIN_UPDATE, DELTA, KIND, chain_event_payload
from streaming.web.chain_conflation import Conflator

logger = logging.getLogger(__name__)

# Re-join the group this often (seconds), well inside the channel layer's group expiry
# (settings.CHANNEL_GROUP_EXPIRY_S): the membership of a web process that died without leaving lapses
# soon, and one that Redis lost (a restart) comes back within this, even if no receive failed.
GROUP_REJOIN_S = 60.0
# After a channel-layer error (e.g. Redis restarting), wait this long before receiving again.
RETRY_AFTER_ERROR_S = 1.0


class ChainSubscriber(Protocol):
    def deliver(self, event: dict[str, Any]) -> None:
        """Take one group event without blocking (the consumer queues it for its socket)."""


_hubs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, ChainHub]] = weakref.WeakKeyDictionary()


class ChainHub:
    def __init__(self, layer: Any, group: str, *, interval_s: float = 0.0) -> None:
        self.layer = layer
        self.group = group
        self.members: set[ChainSubscriber] = set()
        self.channel: str | None = None
        self.task: asyncio.Task | None = None
        self.received = 0
        self.malformed = 0
        self.pushed = 0
        self.conflator = Conflator(interval_s=interval_s)
        self._timer: asyncio.TimerHandle | None = None
        self._lock = asyncio.Lock()

    async def join(self, member: ChainSubscriber) -> None:
        """Add a subscriber; the first one joins the group (raises if the channel layer cannot)."""
        async with self._lock:
            if self.task is None:
                # The layer's default prefix: channels-redis runs one receive loop per process for
                # its "specific" channels; a channel with another prefix would starve behind it.
                channel = await self.layer.new_channel()
                await self.layer.group_add(self.group, channel)
                self.channel = channel
                self.task = asyncio.create_task(self._run(), name=f"chain hub {self.group}")
            self.members.add(member)

    async def leave(self, member: ChainSubscriber) -> None:
        """Remove a subscriber; the last one out leaves the group and stops the hub."""
        async with self._lock:
            self.members.discard(member)
            if self.members or self.task is None:
                return
            task, channel, self.task, self.channel = self.task, self.channel, None, None
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self.conflator = Conflator(interval_s=self.conflator.interval_s)
            task.cancel()
            await asyncio.wait({task})  # not `await task`: that would also swallow a cancel of our own
            with contextlib.suppress(Exception):  # the group forgets us anyway after its expiry
                await self.layer.group_discard(self.group, channel)

    async def _run(self) -> None:
        # This task's own channel and identity: after `leave` it must stop, never carry on with
        # whatever `self.channel` is by then.
        me, channel = asyncio.current_task(), self.channel
        joined_at = time.monotonic()
        while self.task is me:
            try:
                if time.monotonic() - joined_at >= GROUP_REJOIN_S:
                    await self.layer.group_add(self.group, channel)
                    joined_at = time.monotonic()
                try:
                    # asyncio.timeout, not wait_for: Python 3.11's wait_for swallows a cancel that
                    # arrives as the receive completes (a page closed while updates stream), and the
                    # hub then outlived its last member.
                    async with asyncio.timeout(GROUP_REJOIN_S):
                        event = await self.layer.receive(channel)
                except TimeoutError:
                    continue
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis away: keep trying; re-join, a restarted Redis forgot the group
                logger.warning("chain hub %s: channel layer error %s: %s", self.group, type(exc).__name__, exc)
                await asyncio.sleep(RETRY_AFTER_ERROR_S)
                joined_at = float("-inf")
                continue
            if event.get("type") != CHAIN_UPDATE:
                continue
            try:
                chain = chain_event_payload(event)
            except ValueError as exc:  # counted and skipped; the next good one carries on
                self.malformed += 1
                if self.malformed == 1:
                    logger.warning("chain hub %s: skipping a malformed chain event: %s", self.group, exc)
                continue
            self.received += 1
            loop = asyncio.get_running_loop()
            self._push(self.conflator.offer(event.get(KIND, DELTA), chain, loop.time()))
            self._schedule(loop)

    def _schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        due_at = self.conflator.due_at
        if due_at is not None and self._timer is None:
            self._timer = loop.call_at(due_at, self._on_due)

    def _on_due(self) -> None:
        self._timer = None
        loop = asyncio.get_running_loop()
        self._push(self.conflator.due(loop.time()))
        self._schedule(loop)

    def _push(self, messages: list[tuple[str, dict[str, Any]]]) -> None:
        if messages:
            # Pace from when the push actually went out (folding a big chain takes a moment).
            self.conflator.last_push_at = asyncio.get_running_loop().time()
        for kind, chain in messages:
            self.pushed += 1
            event = {"type": CHAIN_UPDATE, KIND: kind, CHAIN: chain}
            for member in list(self.members):
                try:
                    member.deliver(event)
                except Exception:  # one broken subscriber must not starve the others
                    logger.exception("chain hub %s: a subscriber failed to take an update", self.group)


def chain_hub(layer: Any, group: str, *, interval_s: float = 0.0) -> ChainHub:
    """The hub of `group` on the running event loop (created on first use); it pushes to its
    subscribers at most every `interval_s` (0: every update as it comes)."""
    hubs = _hubs.setdefault(asyncio.get_running_loop(), {})
    hub = hubs.get(group)
    if hub is None or hub.layer is not layer:
        hub = hubs[group] = ChainHub(layer, group, interval_s=interval_s)
    hub.conflator.interval_s = interval_s
    return hub
