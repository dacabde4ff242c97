"""One group membership per chain per process, fanned out to the local websocket consumers."""

from __future__ import annotations

import asyncio

from channels.layers import InMemoryChannelLayer

from streaming.web import chain_hub
from streaming.web.chain_hub import chain_hub as hub_for

GROUP = "chain.NIFTY.2030-01-29"


class Member:
    def __init__(self, *, broken: bool = False) -> None:
        self.events: list[dict] = []
        self.broken = broken

    def deliver(self, event: dict) -> None:
        if self.broken:
            raise RuntimeError("socket gone")
        self.events.append(event)


def update(seq: int) -> dict:
    return {"type": "chain.update", "kind": "delta", "chain": {"seq": seq}}


async def settle(until, within: float = 2.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not until():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def test_members_share_one_group_membership_and_each_gets_every_update_once():
    layer = InMemoryChannelLayer()
    hub = hub_for(layer, GROUP)
    first, second = Member(), Member()
    await hub.join(first)
    await hub.join(second)
    assert hub_for(layer, GROUP) is hub
    assert len(layer.groups[GROUP]) == 1
    for seq in (1, 2, 3):
        await layer.group_send(GROUP, update(seq))
    await settle(lambda: len(first.events) == 3 and len(second.events) == 3)
    assert [e["chain"]["seq"] for e in first.events] == [1, 2, 3]
    assert first.events[0] is second.events[0]  # one message object, not a copy per member
    await hub.leave(first)
    await hub.leave(second)


async def test_last_member_out_leaves_the_group_and_stops():
    layer = InMemoryChannelLayer()
    hub = hub_for(layer, GROUP)
    member = Member()
    await hub.join(member)
    task = hub.task
    await hub.leave(member)
    assert task.cancelled() or task.done()
    assert not layer.groups.get(GROUP)
    await hub.join(member)  # a later consumer starts it again
    await layer.group_send(GROUP, update(9))
    await settle(lambda: member.events)
    await hub.leave(member)


async def test_a_broken_member_does_not_starve_the_others():
    layer = InMemoryChannelLayer()
    hub = hub_for(layer, GROUP)
    good, bad = Member(), Member(broken=True)
    await hub.join(bad)
    await hub.join(good)
    await layer.group_send(GROUP, update(1))
    await layer.group_send(GROUP, update(2))
    await settle(lambda: len(good.events) == 2)
    await hub.leave(bad)
    await hub.leave(good)


async def test_channel_layer_errors_are_survived_and_the_group_rejoined(monkeypatch):
    monkeypatch.setattr(chain_hub, "RETRY_AFTER_ERROR_S", 0.01)
    layer = InMemoryChannelLayer()
    real_receive = layer.receive
    failures = [ConnectionError("redis restarting")]

    async def flaky_receive(channel: str) -> dict:
        if failures:
            layer.groups.pop(GROUP, None)  # the restarted Redis forgot the group too
            raise failures.pop()
        return await real_receive(channel)

    monkeypatch.setattr(layer, "receive", flaky_receive)
    hub = hub_for(layer, GROUP)
    member = Member()
    await hub.join(member)
    await settle(lambda: not failures and GROUP in layer.groups)
    await layer.group_send(GROUP, update(5))
    await settle(lambda: member.events)
    await hub.leave(member)


async def test_join_fails_cleanly_when_the_group_cannot_be_joined(monkeypatch):
    layer = InMemoryChannelLayer()

    async def refuse(group: str, channel: str) -> None:
        raise ConnectionError("Too many connections")

    monkeypatch.setattr(layer, "group_add", refuse)
    hub = hub_for(layer, GROUP)
    member = Member()
    try:
        await hub.join(member)
    except ConnectionError:
        pass
    else:
        raise AssertionError("join should have failed")
    assert hub.task is None and member not in hub.members


async def test_leaving_as_an_update_arrives_always_stops_the_hub():
    """A page closed while the ticker streams: the hub's receive completes in the same turn as its
    cancel. Python 3.11's wait_for then swallowed the cancel and the hub kept looping on a channel of
    None, so the next page on that chain never got an update."""
    layer = InMemoryChannelLayer()
    hub = hub_for(layer, GROUP)
    for seq in range(50):
        member = Member()
        await hub.join(member)
        task = hub.task
        await asyncio.sleep(0)  # the hub is waiting in receive()
        await layer.send(hub.channel, update(seq))  # wakes it...
        async with asyncio.timeout(2):
            await hub.leave(member)  # ...in the same turn as the cancel
        await asyncio.sleep(0)
        assert task.done(), f"round {seq}: the hub's task outlived its last member"
    fresh = Member()
    await hub.join(fresh)
    await layer.group_send(GROUP, update(99))
    await settle(lambda: fresh.events)
    await hub.leave(fresh)


async def test_an_update_that_travelled_as_json_reaches_members_as_the_payload_and_a_bad_one_is_skipped():
    import orjson

    layer = InMemoryChannelLayer()
    hub = hub_for(layer, GROUP)
    member = Member()
    await hub.join(member)
    await layer.group_send(GROUP, {"type": "chain.update", "kind": "delta", "chain_json": orjson.dumps({"seq": 1})})
    await layer.group_send(GROUP, {"type": "chain.update", "kind": "delta", "chain_json": b"{truncated"})
    await layer.group_send(GROUP, update(2))
    await settle(lambda: len(member.events) == 2)
    assert [e["chain"] for e in member.events] == [{"seq": 1}, {"seq": 2}]
    assert (hub.received, hub.malformed) == (2, 1)
    await hub.leave(member)
