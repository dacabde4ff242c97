"""The ticker loop in process: mock market → market state → chain deltas on the channel layer."""

from __future__ import annotations

import asyncio
import datetime as dt
import time

import pytest
from channels.layers import InMemoryChannelLayer

from streaming.contract import chain_group
from streaming.snapshot_store import get_chain_snapshot
from streaming.status import ticker_status
from streaming.ticker.loop import LoopConfig, account_mode, is_market_open
from tests.streaming.ticker.support import close_db_connections, make_account, make_chain
from tickerproject.ticker_wiring import build_ticker_loop

IST = dt.timezone(dt.timedelta(hours=5, minutes=30))


@pytest.mark.parametrize(
    ("moment", "holidays", "expected"),
    [
        (dt.datetime(2026, 11, 24, 9, 15, tzinfo=IST), (), True),  # Tuesday, the open
        (dt.datetime(2026, 11, 24, 9, 14, 59, tzinfo=IST), (), False),
        (dt.datetime(2026, 11, 24, 15, 29, 59, tzinfo=IST), (), True),
        (dt.datetime(2026, 11, 24, 15, 30, tzinfo=IST), (), False),  # the close
        (dt.datetime(2026, 11, 28, 11, 0, tzinfo=IST), (), False),  # Saturday
        (dt.datetime(2026, 11, 24, 11, 0, tzinfo=IST), (dt.date(2026, 11, 24),), False),  # holiday
        (dt.datetime(2026, 11, 24, 5, 0, tzinfo=dt.UTC), (), True),  # 10:30 IST given in UTC
    ],
)
def test_market_hours(moment, holidays, expected):
    assert is_market_open(moment, holidays) is expected


def test_account_mode_rules():
    open_ = {"has_valid_token": True, "market_open": True}
    assert account_mode(forced="auto", is_mock=False, **open_) == "live"
    assert account_mode(forced="auto", is_mock=False, has_valid_token=True, market_open=False) == "mock"
    assert account_mode(forced="auto", is_mock=False, has_valid_token=False, market_open=True) == "mock"
    assert account_mode(forced="auto", is_mock=True, **open_) == "mock"
    assert account_mode(forced="live", is_mock=False, has_valid_token=False, market_open=False) == "live"
    assert account_mode(forced="live", is_mock=True, **open_) == "mock"
    assert account_mode(forced="mock", is_mock=False, **open_) == "mock"
    with pytest.raises(ValueError):
        account_mode(forced="paper", is_mock=False, **open_)


async def _receive(layer, channel, within=5.0):
    return await asyncio.wait_for(layer.receive(channel), timeout=within)


@pytest.mark.django_db(transaction=True)
async def test_mock_mode_streams_chain_deltas_to_the_channel_layer():
    from asgiref.sync import sync_to_async

    def setup():
        make_account("Mock market", is_mock=True)
        return make_chain(strikes=7)

    instruments = await sync_to_async(setup)()
    expiry = next(i.expiry for i in instruments if i.expiry)
    layer = InMemoryChannelLayer()
    channel = await layer.new_channel()
    await layer.group_add(chain_group("NIFTY", expiry.isoformat()), channel)

    config = LoopConfig(
        mode="mock",
        mock_interval_s=0.1,
        stream_interval_s=0.1,
        backfill_on_start=False,
        reload_check_interval_s=None,
        status_interval_s=0.2,
    )
    loop = build_ticker_loop(config, channel_layer=layer, use_redis=False)
    stop = asyncio.Event()
    task = asyncio.create_task(loop.run(stop))
    try:
        first = await _receive(layer, channel)
        assert first["type"] == "chain.update"
        assert first["chain"]["source"] == "mock"
        seqs = [first["chain"]["seq"]]
        moved = False
        for _ in range(20):
            message = await _receive(layer, channel)
            assert message["kind"] == "delta"
            seqs.append(message["chain"]["seq"])
            moved = moved or any("CE" in row or "PE" in row for row in message["chain"]["rows"])
            if len(seqs) >= 4 and moved:
                break
        assert moved
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # numbered without gaps
        snapshot = get_chain_snapshot("NIFTY", expiry.isoformat())
        assert snapshot["seq"] == seqs[-1] or snapshot["seq"] > seqs[-1]
        assert len(snapshot["rows"]) == 7
        header = snapshot["header"]
        assert header["spot"] and header["atm_strike"] in {row["strike"] for row in snapshot["rows"]}
        ivs = [row["CE"]["iv"] for row in snapshot["rows"] if row["CE"]["iv"] is not None]
        assert ivs and all(0.01 < iv < 2 for iv in ivs)
        await asyncio.sleep(0.3)
        status = ticker_status()
        assert {c["mode"] for c in status["connections"]} == {"mock"}
        assert sum(c["instruments"] for c in status["connections"]) == 15
        assert all(c["ticks"] > 0 and c["last_tick_at"] for c in status["connections"])
        assert "Mock market: mock, 15 instruments" in loop.describe()
    finally:
        stop.set()
        started = time.monotonic()
        await asyncio.wait_for(task, timeout=6)
        await close_db_connections()
        assert time.monotonic() - started < 5


@pytest.mark.django_db(transaction=True)
async def test_deactivated_subscription_leaves_the_mock_stream():
    from asgiref.sync import sync_to_async

    from subscriptions.models import Subscription

    def setup():
        make_account("Mock market", is_mock=True, max_connections=1)
        make_chain(strikes=3)

    await sync_to_async(setup)()
    config = LoopConfig(mode="mock", mock_interval_s=0.1, backfill_on_start=False, reload_check_interval_s=None)
    loop = build_ticker_loop(config, channel_layer=InMemoryChannelLayer(), use_redis=False)
    stop = asyncio.Event()
    task = asyncio.create_task(loop.run(stop))
    try:
        await asyncio.wait_for(loop.started.wait(), 5)
        (source,) = loop.sources.values()
        assert len(source.subscriptions) == 7

        def deactivate():
            sub = Subscription.objects.filter(instrument__instrument_type="CE").first()
            sub.is_active = False
            sub.save()  # the signal notifies after commit; the reloader applies it
            return sub.instrument.instrument_token

        token = await sync_to_async(deactivate)()
        for _ in range(50):
            if token not in source.subscriptions:
                break
            await asyncio.sleep(0.1)
        assert token not in source.subscriptions
        assert len(source.subscriptions) == 6
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=6)
        await close_db_connections()


@pytest.mark.django_db(transaction=True)
async def test_session_start_asks_for_a_backfill_once_per_account_per_day(monkeypatch):
    from asgiref.sync import sync_to_async
    from django.core.cache import cache

    import history.services.backfill as backfill

    calls = []

    class Run:
        status = "succeeded"

    def fake_backfill_run(*, instrument_ids, trigger, on_progress=None, **kwargs):
        calls.append((sorted(instrument_ids), trigger))
        return Run()

    monkeypatch.setattr(backfill, "backfill_run", fake_backfill_run)
    cache.clear()

    def setup():
        make_account("Mock market", is_mock=True, max_connections=1)
        return sorted(i.pk for i in make_chain(strikes=2))

    instrument_ids = await sync_to_async(setup)()
    config = LoopConfig(mode="mock", backfill_on_start=True, reload_check_interval_s=None)
    loop = build_ticker_loop(config, channel_layer=InMemoryChannelLayer(), use_redis=False)
    stop = asyncio.Event()
    task = asyncio.create_task(loop.run(stop))
    try:
        await asyncio.wait_for(loop.started.wait(), 5)
        for _ in range(50):
            if calls:
                break
            await asyncio.sleep(0.1)
        await loop.perform_reload([])  # a reload later the same day asks for nothing more
        await asyncio.sleep(0.3)
        assert len(calls) == 1
        assert calls[0][0] == instrument_ids
        assert "session start" in calls[0][1]
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=6)
        await close_db_connections()


@pytest.mark.django_db
def test_a_session_backfill_stopped_early_ends_partial_and_is_asked_for_again_on_the_next_start(monkeypatch):
    import threading

    from django.core.cache import cache

    import history.services.backfill as backfill
    from history.services.session_backfill import session_backfill_run

    stop = threading.Event()
    seen = []

    class Run:
        status = "partial"

    def fake_backfill_run(*, instrument_ids, trigger, on_progress=None, **kwargs):
        on_progress(Run(), 1)  # still running
        stop.set()  # SIGTERM
        with pytest.raises(backfill.BackfillCancelled) as raised:  # the service ends the run partial
            on_progress(Run(), 1)
        seen.append(str(raised.value))
        return Run()

    monkeypatch.setattr(backfill, "backfill_run", fake_backfill_run)
    monkeypatch.setattr("history.services.session_backfill.time.sleep", lambda s: None)
    cache.clear()
    day = dt.date(2026, 12, 1)
    session_backfill_run(account_id=7, day=day, subscription_ids=[], stop=stop)
    assert seen == ["the ticker is stopping"]
    assert cache.add(f"ticker:backfill:7:{day.isoformat()}", 1)  # not marked done: the next start asks again


@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
async def test_two_tickers_split_nothing_twice_and_take_over_on_stop(redis_client):
    from asgiref.sync import sync_to_async

    def setup():
        make_account("Mock A", is_mock=True, max_connections=1)
        make_account("Mock B", is_mock=True, max_connections=1)
        make_chain(strikes=3)

    await sync_to_async(setup)()
    config = LoopConfig(mode="mock", mock_interval_s=0.1, backfill_on_start=False, reload_check_interval_s=None)
    first = build_ticker_loop(config, channel_layer=InMemoryChannelLayer(), use_redis=False, ticker_id="first:1")
    second = build_ticker_loop(config, channel_layer=InMemoryChannelLayer(), use_redis=False, ticker_id="second:2")
    stop_first, stop_second = asyncio.Event(), asyncio.Event()
    task_first = asyncio.create_task(first.run(stop_first))
    await asyncio.wait_for(first.started.wait(), 5)
    task_second = asyncio.create_task(second.run(stop_second))
    try:
        await asyncio.wait_for(second.started.wait(), 5)
        await asyncio.sleep(1.5)
        assert len(first.sources) == 2 and not second.sources  # the first took both leases
        assert "no accounts streaming" in second.describe()
        stop_first.set()
        await asyncio.wait_for(task_first, 6)
        for _ in range(50):
            if len(second.sources) == 2:
                break
            await asyncio.sleep(0.1)
        assert len(second.sources) == 2
        owners = {
            key.decode(): value.decode()
            for key, value in ((k, redis_client.get(k)) for k in redis_client.keys("tp:lease:account:*"))
        }
        assert set(owners.values()) == {"second:2"}
    finally:
        stop_first.set()
        stop_second.set()
        await asyncio.wait_for(asyncio.gather(task_first, task_second, return_exceptions=True), 8)
        await close_db_connections()


async def test_flusher_ends_when_cancelled_as_a_send_completes():
    """A cancel that lands while a chain message is being sent ends the flusher (on Python 3.11
    `asyncio.wait_for` returned the finished send's result instead and swallowed it: the flusher
    then outlived the shutdown, "tasks still running 2.0s after cancel: ['flusher']")."""
    from tests.streaming.ticker.test_chains import NOW, _instruments, _priced_batch

    flusher: asyncio.Task | None = None
    sends = []

    class CancellingLayer:
        """A channel layer whose send completes at once (as the in-memory one does) and, at that very
        moment, the ticker is told to stop."""

        async def group_send(self, group, message):
            sends.append(group)
            flusher.cancel()

    loop = build_ticker_loop(
        LoopConfig(mode="mock", backfill_on_start=False, stream_interval_s=0.05),
        channel_layer=CancellingLayer(),
        use_redis=False,
    )
    instruments = _instruments()
    loop.state.register([i.instrument_token for i in instruments])
    loop._rebuild_chains(instruments)
    (spec,) = [c.book.spec for c in loop.chains.values() if c.book.spec.underlying == "NIFTY"]
    loop.state.apply(_priced_batch(spec, 24010.0, NOW))
    flusher = asyncio.create_task(loop._flush_forever())
    done, _ = await asyncio.wait({flusher}, timeout=2.0)
    if not done:
        flusher.cancel()  # a flusher that swallowed one cancel may swallow this one too; do not leak it
        for _ in range(3):
            await asyncio.sleep(0)
    assert sends, "the flusher sent nothing"
    assert flusher in done and flusher.cancelled()


@pytest.mark.django_db(transaction=True)
async def test_session_backfill_waits_for_a_running_celery_backfill_and_holds_its_lock(monkeypatch):
    """A Celery backfill holding history.tasks.BACKFILL_LOCK is not duplicated: the session backfill
    starts only once it is done, and holds that lock itself so the Celery task skips meanwhile."""
    import contextlib

    from asgiref.sync import sync_to_async
    from django.core.cache import cache

    import history.services.backfill as backfill
    import history.services.session_backfill as session_backfill
    from history.tasks import BACKFILL_LOCK
    from tickerproject.platform.locks import lock_is_held, task_lock

    calls = []

    class Run:
        status = "succeeded"

    def fake_backfill_run(*, instrument_ids, trigger, on_progress=None, **kwargs):
        calls.append(lock_is_held(BACKFILL_LOCK))
        return Run()

    monkeypatch.setattr(backfill, "backfill_run", fake_backfill_run)
    monkeypatch.setattr(session_backfill, "BACKFILL_LOCK_POLL_S", 0.1)
    await sync_to_async(cache.clear)()

    def setup():
        make_account("Mock market", is_mock=True, max_connections=1)
        make_chain(strikes=2)

    await sync_to_async(setup)()
    celery_backfill = contextlib.ExitStack()
    assert await sync_to_async(lambda: celery_backfill.enter_context(task_lock(BACKFILL_LOCK, timeout=60)))()
    config = LoopConfig(mode="mock", backfill_on_start=True, reload_check_interval_s=None)
    loop = build_ticker_loop(config, channel_layer=InMemoryChannelLayer(), use_redis=False)
    stop = asyncio.Event()
    task = asyncio.create_task(loop.run(stop))
    try:
        await asyncio.wait_for(loop.started.wait(), 5)
        await asyncio.sleep(1.0)
        assert calls == []  # not alongside the running backfill
        await sync_to_async(celery_backfill.close)()  # the Celery backfill finished
        for _ in range(50):
            if calls:
                break
            await asyncio.sleep(0.1)
        assert calls == [True]  # ran once, holding the lock Celery's backfill task takes
    finally:
        await sync_to_async(celery_backfill.close)()
        stop.set()
        await asyncio.wait_for(task, timeout=6)
        await close_db_connections()


@pytest.mark.django_db(transaction=True)
async def test_oi_change_counts_from_the_last_day_candle_before_the_session():
    """The previous close comes from history (the latest day candle before the session day); an option
    without one counts from the first OI seen, so its first OI change is 0."""
    from asgiref.sync import sync_to_async

    from core.calendar import TradingCalendar
    from history.models import Candle
    from streaming.ticker.loop import session_day

    day = session_day(dt.datetime.now(dt.UTC))
    previous = TradingCalendar().previous_trading_day(day)
    earlier = TradingCalendar().previous_trading_day(previous)

    def at(d, hour=0):
        return dt.datetime.combine(d, dt.time(hour, 0), tzinfo=IST)

    def setup():
        make_account("Mock market", is_mock=True, max_connections=1)
        instruments = make_chain(strikes=3)
        ce = sorted((i for i in instruments if i.instrument_type == "CE"), key=lambda i: i.strike)
        with_history, without = ce[0], ce[1]
        common = {"open": 1, "high": 1, "low": 1, "close": 1, "is_mock": True}
        Candle.objects.bulk_create(
            [
                Candle(instrument=with_history, interval="day", timestamp=at(earlier), oi=111, **common),
                Candle(instrument=with_history, interval="day", timestamp=at(previous), oi=5000, **common),
                Candle(instrument=with_history, interval="day", timestamp=at(day), oi=999_999, **common),
                Candle(instrument=with_history, interval="minute", timestamp=at(previous, 15), oi=7, **common),
                Candle(instrument=without, interval="minute", timestamp=at(previous, 15), oi=8, **common),
            ]
        )
        return with_history, without

    with_history, without = await sync_to_async(setup)()
    expiry = with_history.expiry.isoformat()
    layer = InMemoryChannelLayer()
    channel = await layer.new_channel()
    await layer.group_add(chain_group("NIFTY", expiry), channel)
    config = LoopConfig(
        mode="mock", mock_interval_s=0.1, stream_interval_s=0.1, backfill_on_start=False, reload_check_interval_s=None
    )
    loop = build_ticker_loop(config, channel_layer=layer, use_redis=False)
    stop = asyncio.Event()
    task = asyncio.create_task(loop.run(stop))
    try:
        await asyncio.wait_for(loop.started.wait(), 5)
        assert loop.prev_close_oi == {with_history.instrument_token: 5000.0}
        seen = {}
        for _ in range(40):
            message = await _receive(layer, channel)
            for row in message["chain"]["rows"]:
                side = row.get("CE")
                if side and side["oi"] is not None and side["instrument_token"] not in seen:
                    seen[side["instrument_token"]] = side
            if {with_history.instrument_token, without.instrument_token} <= seen.keys():
                break
        first_with, first_without = seen[with_history.instrument_token], seen[without.instrument_token]
        assert first_with["oi_change"] == first_with["oi"] - 5000
        assert first_without["oi_change"] == 0
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=6)
        await close_db_connections()


def test_latencies_are_kept_only_when_asked_for_so_a_long_running_ticker_does_not_grow_a_list():
    loop = build_ticker_loop(LoopConfig(mode="mock", backfill_on_start=False), channel_layer=InMemoryChannelLayer())
    for _ in range(1000):
        loop._observe_latency(time.time() - 0.02, time.time())
    assert loop.pending_latency is None  # runticker: the /metrics/ histogram has them
    loop.pending_latency = []  # a benchmark collecting from here on
    loop._observe_latency(100.0, 100.05)
    assert loop.pending_latency == [pytest.approx(0.05)]


@pytest.mark.django_db(transaction=True)
async def test_mock_chain_gets_iv_history_and_its_series_survives_a_restart():
    from asgiref.sync import sync_to_async

    from history.models import AtmIvSample, ChainSeriesPoint

    def setup():
        make_account("Mock market", is_mock=True)
        return make_chain(strikes=21, spot=26000.0, step=100.0)  # around the mock NIFTY's level

    instruments = await sync_to_async(setup)()
    expiry = next(i.expiry for i in instruments if i.expiry).isoformat()
    config = LoopConfig(
        mode="mock",
        mock_interval_s=0.1,
        stream_interval_s=0.1,
        backfill_on_start=False,
        reload_check_interval_s=None,
        chain_history_interval_s=0.3,
        iv_history_sessions=30,
    )

    async def run_until(check, loop):
        stop = asyncio.Event()
        task = asyncio.create_task(loop.run(stop))
        try:
            for _ in range(100):
                await asyncio.sleep(0.1)
                snapshot = get_chain_snapshot("NIFTY", expiry)
                if snapshot is not None and check(snapshot):
                    return snapshot
            raise AssertionError(f"never got there: {snapshot and snapshot['header']}")
        finally:
            stop.set()
            await asyncio.wait_for(task, timeout=6)
            await close_db_connections()

    first = await run_until(
        lambda s: s["header"]["iv_history_sessions"] == 30 and s["header"]["iv_percentile"] is not None,
        build_ticker_loop(config, channel_layer=InMemoryChannelLayer(), use_redis=False),
    )
    header = first["header"]
    assert header["iv_bucket"] == "weekly" and 0 <= header["iv_percentile"] <= 100 and 0 <= header["iv_rank"] <= 100
    assert header["straddle"] > 0 and header["expected_move_iv"] > 0 and header["net_gex"] is not None
    point_ts = first["series"]["points"][0][0]
    stored = await sync_to_async(lambda: ChainSeriesPoint.objects.filter(underlying="NIFTY").count())()
    assert stored >= 1
    # 30 mock closes for the nearest weekly, and today's minute samples.
    closes = await sync_to_async(lambda: AtmIvSample.objects.filter(is_mock=True, bucket="weekly").count())()
    assert closes >= 31

    # A fresh ticker (a restart) takes the session's stored points back into the chain's series: an
    # earlier minute of the session, stored by "the ticker before", shows up in its snapshot.
    def store_earlier_minute():
        point = ChainSeriesPoint.objects.filter(underlying="NIFTY").earliest("timestamp")
        point.pk, point.straddle = None, -1.0
        point.timestamp -= dt.timedelta(minutes=10)
        point.save()

    await sync_to_async(store_earlier_minute)()
    second = await run_until(
        lambda s: any(p[0] == point_ts - 600 and p[5] == -1.0 for p in s["series"]["points"]),
        build_ticker_loop(config, channel_layer=InMemoryChannelLayer(), use_redis=False),
    )
    assert [p[0] for p in second["series"]["points"]][:2] == [point_ts - 600, point_ts]
