"""Tick sources: the Kite connection and the mock market behind one interface; diffs only."""

from __future__ import annotations

import asyncio

import numpy as np

from core.ticks import MODE_FULL, MODE_LTP, TickBatch, empty_ticks
from streaming.ticker.sources import KiteConnectionSource, MockConnectionSource


class FakeClient:
    """Records what KiteTickerClient would put on the wire."""

    def __init__(self, **kwargs):
        self.kwargs = kwargs
        self.desired: dict[int, str] = {}
        self.sent: list[tuple] = []

    @property
    def subscriptions(self):
        return dict(self.desired)

    def subscribe(self, tokens, mode):
        self.desired.update(dict.fromkeys(tokens, mode))
        self.sent.append(("subscribe", mode, sorted(tokens)))

    def unsubscribe(self, tokens):
        for token in tokens:
            self.desired.pop(token, None)
        self.sent.append(("unsubscribe", sorted(tokens)))

    def set_mode(self, mode, tokens):
        self.desired.update(dict.fromkeys(tokens, mode))
        self.sent.append(("mode", mode, sorted(tokens)))


def test_kite_source_sends_only_the_difference():
    source = KiteConnectionSource(
        account_id=3,
        connection_index=1,
        api_key="k",
        access_token="t",
        root="ws://x",
        on_ticks=lambda batch: None,
        client_factory=FakeClient,
    )
    assert source.name == "account:3/conn:1"
    assert source.client.kwargs["source"] == "account:3/conn:1"
    source.apply_diff(subscribe={1: "full", 2: "full", 3: "ltp"}, unsubscribe=[])
    source.client.sent.clear()
    source.apply_diff(subscribe={2: "quote", 4: "full"}, unsubscribe=[1])
    assert source.client.sent == [("unsubscribe", [1]), ("mode", "quote", [2]), ("subscribe", "full", [4])]
    assert source.subscriptions == {2: "quote", 3: "ltp", 4: "full"}


class FakeMarket:
    def __init__(self):
        self.calls = []

    def ticks(self, tokens, modes, now=None):
        self.calls.append((tokens.tolist(), modes.tolist()))
        ticks = empty_ticks(len(tokens))
        ticks["instrument_token"] = tokens
        ticks["mode"] = modes
        ticks["last_price"] = 100.0
        return TickBatch(ticks=ticks, received_at=0.0, is_mock=True, source="mock")


async def test_mock_source_streams_its_tokens_in_their_modes_flagged_mock():
    market = FakeMarket()
    batches: list[TickBatch] = []
    source = MockConnectionSource(
        account_id=1, connection_index=0, market=market, on_ticks=batches.append, interval_s=0.02
    )
    assert source.emit_once() is None  # nothing subscribed, nothing asked of the market
    source.apply_diff(subscribe={11: "full", 12: "ltp"}, unsubscribe=[])
    task = source.start()
    await asyncio.sleep(0.1)
    source.apply_diff(subscribe={}, unsubscribe=[11])
    await asyncio.sleep(0.06)
    await source.close()
    assert task.done()
    assert len(batches) >= 3
    first, last = batches[0], batches[-1]
    assert first.is_mock and first.source == "account:1/conn:0/mock" and first.received_at > 0
    assert sorted(zip(first.ticks["instrument_token"].tolist(), first.ticks["mode"].tolist(), strict=True)) == [
        (11, MODE_FULL),
        (12, MODE_LTP),
    ]
    assert last.ticks["instrument_token"].tolist() == [12]
    assert source.status()["ticks"] == sum(len(b) for b in batches)


async def test_mock_source_survives_a_failing_step():
    class Flaky(FakeMarket):
        def ticks(self, tokens, modes, now=None):
            if not self.calls:
                self.calls.append("boom")
                raise RuntimeError("model blew up")
            return super().ticks(tokens, modes, now)

    batches = []
    source = MockConnectionSource(
        account_id=1, connection_index=0, market=Flaky(), on_ticks=batches.append, interval_s=0.01
    )
    source.apply_diff(subscribe={5: "quote"}, unsubscribe=[])
    source.start()
    await asyncio.sleep(0.08)
    await source.close()
    assert source.errors == 1 and "model blew up" in source.last_error
    assert batches and np.all(batches[-1].ticks["instrument_token"] == 5)
