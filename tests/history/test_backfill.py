"""The backfill service against the simulator's real REST endpoints (and against the mock source)."""

import datetime as dt
import logging
from zoneinfo import ZoneInfo

import pytest

from history.models import BackfillRun, Candle, CandleCoverage
from history.rate_limit import SAFETY_FACTOR, LocalRateLimiter
from history.services.backfill import HistoricalBootstrapper
from history.services.candle_sources import KiteCandleSource, MockCandleSource, RetryPolicy, SourceUnavailable
from mocking.simulator.rest import rest_stats
from mocking.simulator.server import start_simulator
from tests.history.sim import ACCESS_TOKEN, API_KEY, SessionCandleMarket, make_state
from tests.subscriptions.factories import IndexFactory, OptionFactory, SubscriptionFactory

IST = ZoneInfo("Asia/Kolkata")
NOW = dt.datetime(2024, 1, 31, 16, 0, tzinfo=IST)  # a Wednesday after the close
DAYS = 10
FAST = 20.0
WINDOW = (NOW - dt.timedelta(days=DAYS), NOW)
pytestmark = pytest.mark.django_db


@pytest.fixture
def subscribed():
    index = IndexFactory()
    option = OptionFactory(expiry=dt.date(2024, 2, 29))
    for instrument in (index, option):
        SubscriptionFactory(instrument=instrument)
    return [index, option]


@pytest.fixture
def sim(subscribed):
    # Faster than Kite's 3/s so the suite stays quick; the 429 test and the benchmark use Kite's limit.
    handle = start_simulator(make_state(subscribed, rate=FAST))
    yield handle
    handle.stop()


def kite_source(sim, *, rate=FAST * SAFETY_FACTOR, attempts=6, sleep=None):
    return KiteCandleSource(
        api_key=API_KEY,
        access_token=ACCESS_TOKEN,
        root=sim.http_url,
        limiter=LocalRateLimiter(rate),
        retry=RetryPolicy(attempts=attempts, base_delay=0.05, max_delay=0.5),
        **({"sleep": sleep} if sleep else {}),
    )


def bootstrapper(source, intervals=("minute", "day"), days=DAYS, batch_size=50):
    return HistoricalBootstrapper(source=source, intervals=intervals, days=days, batch_size=batch_size, now=NOW)


def expected_count(market, interval, start=WINDOW[0], end=WINDOW[1]):
    return len(market.timestamps(interval, start, end))


def test_backfill_from_kite_fills_every_interval_and_a_rerun_asks_nothing(sim, subscribed):
    market = sim.state.market
    run = bootstrapper(kite_source(sim)).run(trigger="test")
    assert run.status == BackfillRun.Status.SUCCEEDED, run.errors
    assert run.source == "kite"
    assert run.requests_planned == run.requests_done == 4  # 2 instruments x 2 intervals, one chunk each
    for instrument in subscribed:
        stored = Candle.objects.filter(instrument=instrument)
        assert stored.filter(interval="minute").count() == expected_count(market, "minute")
        assert stored.filter(interval="day").count() == expected_count(market, "day")
        assert not stored.filter(is_mock=True).exists()
    assert run.candles_written == Candle.objects.count()
    snapshot = list(Candle.objects.order_by("pk").values_list())
    served = len(rest_stats(sim.state).historical)

    again = bootstrapper(kite_source(sim)).run(trigger="test again")
    assert again.status == BackfillRun.Status.SUCCEEDED
    assert again.requests_planned == 0 and again.candles_written == 0
    assert len(rest_stats(sim.state).historical) == served
    assert list(Candle.objects.order_by("pk").values_list()) == snapshot


def test_windows_longer_than_kites_limit_are_chunked(sim, subscribed):
    run = bootstrapper(kite_source(sim), intervals=("60minute",), days=900).run()
    assert run.status == BackfillRun.Status.SUCCEEDED, run.errors
    assert run.requests_done == 2 * 3  # 900 days of hours = 3 requests of at most 400 days
    statuses = {s for _, _, s in rest_stats(sim.state).historical}
    assert statuses == {200}  # the simulator refuses >400 days, so no request was oversized
    start = NOW - dt.timedelta(days=900)
    assert Candle.objects.filter(instrument=subscribed[0]).count() == expected_count(
        sim.state.market, "60minute", start
    )


def test_429_is_retried_with_backoff_until_everything_arrives(sim, subscribed):
    # A client-side limit well above the server's (Kite's 3/s) provokes 429s; the retries must still get it all.
    sim.state.historical_rate_per_second = 2.0
    intervals = ("day", "60minute", "30minute", "15minute")
    source = kite_source(sim, rate=50.0)
    source.retry = RetryPolicy(attempts=10, base_delay=0.25, max_delay=1.0)
    run = bootstrapper(source, intervals=intervals).run()
    assert run.status == BackfillRun.Status.SUCCEEDED, run.errors
    codes = [s for _, _, s in rest_stats(sim.state).historical]
    assert 429 in codes
    assert run.retries == codes.count(429)
    assert codes.count(200) == run.requests_done == 8
    assert Candle.objects.filter(interval="15minute").count() == 2 * expected_count(sim.state.market, "15minute")


class FlakyMarket(SessionCandleMarket):
    """Raises (→ HTTP 500 from the simulator) on its first `failures` calls."""

    def __init__(self, failures):
        super().__init__()
        self.failures = failures

    def candles(self, token, interval, start, end):
        if self.failures > 0:
            self.failures -= 1
            raise RuntimeError("backend hiccup")
        return super().candles(token, interval, start, end)


def test_5xx_is_retried(sim, subscribed):
    sim.state.market = FlakyMarket(failures=2)
    run = bootstrapper(kite_source(sim), intervals=("day",)).run()
    assert run.status == BackfillRun.Status.SUCCEEDED
    assert run.retries == 2
    assert [s for _, _, s in rest_stats(sim.state).historical].count(500) == 2


def test_network_errors_are_retried_then_the_run_fails_clearly(subscribed):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    source = KiteCandleSource(
        api_key=API_KEY,
        access_token=ACCESS_TOKEN,
        root=f"http://127.0.0.1:{port}",
        limiter=LocalRateLimiter(100.0),
        retry=RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.02),
    )
    run = bootstrapper(source, intervals=("day",)).run()
    assert run.status == BackfillRun.Status.FAILED
    assert run.retries == 3
    assert "after 3 attempts" in run.message and "ConnectionError" in run.message
    assert ACCESS_TOKEN not in run.message


def test_rejected_token_stops_the_run_without_leaking_it(sim, subscribed):
    source = KiteCandleSource(
        api_key=API_KEY, access_token="expired-token", root=sim.http_url, limiter=LocalRateLimiter(3.0)
    )
    run = bootstrapper(source).run()
    assert run.status == BackfillRun.Status.FAILED
    assert "access token" in run.message
    assert "expired-token" not in str(run.errors) + run.message
    assert run.requests_done == 0


def test_instrument_kite_refuses_costs_one_error_not_one_per_chunk(sim, subscribed):
    unknown = OptionFactory(strike=99999.0, expiry=dt.date(2024, 3, 28))  # not in the simulator
    SubscriptionFactory(instrument=unknown)
    run = bootstrapper(kite_source(sim), intervals=("60minute", "day"), days=900).run()
    assert run.status == BackfillRun.Status.PARTIAL
    assert run.errors_count == 1
    assert run.errors[0]["instrument_id"] == unknown.pk and "invalid token" in run.errors[0]["error"]
    assert run.requests_done == run.requests_planned  # progress still reaches 100 %
    assert run.progress_percent == 100
    assert not Candle.objects.filter(instrument=unknown).exists()
    assert Candle.objects.filter(instrument=subscribed[0]).exists()


def test_expired_contracts_are_fetched_only_up_to_expiry_or_not_at_all(sim, subscribed):
    expired_in_window = OptionFactory(strike=21000.0, expiry=dt.date(2024, 1, 25))
    expired_long_ago = OptionFactory(strike=21100.0, expiry=dt.date(2023, 6, 29))
    for instrument in (expired_in_window, expired_long_ago):
        SubscriptionFactory(instrument=instrument)
    sim.state.instruments.append(__import__("tests.history.sim", fromlist=["spec_for"]).spec_for(expired_in_window))
    run = bootstrapper(kite_source(sim), intervals=("minute",)).run()
    assert run.status == BackfillRun.Status.SUCCEEDED, run.errors
    expiry_close = dt.datetime(2024, 1, 25, 15, 30, tzinfo=IST)
    calls = [c for c in sim.state.market.calls if c[0] == expired_in_window.instrument_token]
    assert len(calls) == 1 and calls[0][3] <= expiry_close + dt.timedelta(seconds=1)
    assert not any(c[0] == expired_long_ago.instrument_token for c in sim.state.market.calls)
    assert Candle.objects.filter(instrument=expired_in_window).latest("timestamp").timestamp < expiry_close


class EmptyMarket(SessionCandleMarket):
    def candles(self, token, interval, start, end):
        super().candles(token, interval, start, end)
        return []


def test_instrument_without_data_is_covered_and_not_asked_again(sim, subscribed):
    sim.state.market = EmptyMarket()
    run = bootstrapper(kite_source(sim), intervals=("minute",)).run()
    assert run.status == BackfillRun.Status.SUCCEEDED
    assert run.errors_count == 0 and run.empty_ranges == 2
    assert CandleCoverage.objects.count() == 2
    again = bootstrapper(kite_source(sim), intervals=("minute",)).run()
    assert again.requests_planned == 0


def test_without_live_account_mock_candles_are_flagged_and_live_ones_replace_them(sim, subscribed):
    mock_market = SessionCandleMarket()
    mock_run = bootstrapper(MockCandleSource(market=mock_market), intervals=("day",)).run()
    assert mock_run.source == "mock" and mock_run.status == BackfillRun.Status.SUCCEEDED
    assert Candle.objects.count() == 2 * expected_count(mock_market, "day")
    assert not Candle.objects.filter(is_mock=False).exists()
    # a later mock run has nothing to do; a live run does not trust mock coverage and replaces the candles
    assert bootstrapper(MockCandleSource(market=mock_market), intervals=("day",)).run().requests_planned == 0
    live = bootstrapper(kite_source(sim), intervals=("day",)).run()
    assert live.requests_done == 2
    assert not Candle.objects.filter(is_mock=True).exists()


class FailingAfter:
    """A source that dies after `n` successful chunks, like a worker killed mid-run."""

    is_mock = False
    name = "kite"

    def __init__(self, inner, n):
        self.inner, self.n, self.retries = inner, n, 0

    def fetch(self, *args):
        if self.n == 0:
            raise SourceUnavailable("worker lost")
        self.n -= 1
        return self.inner.fetch(*args)


def test_an_interrupted_backfill_resumes_where_it_stopped(sim, subscribed):
    first = bootstrapper(FailingAfter(kite_source(sim), 2), intervals=("minute", "day")).run()
    assert first.status == BackfillRun.Status.FAILED and first.requests_done == 2
    resumed = bootstrapper(kite_source(sim), intervals=("minute", "day")).run()
    assert resumed.status == BackfillRun.Status.SUCCEEDED
    assert resumed.requests_planned == 2
    market = sim.state.market
    assert Candle.objects.count() == 2 * (expected_count(market, "minute") + expected_count(market, "day"))


def test_coverage_stops_before_the_candle_still_forming(sim, subscribed):
    during_session = dt.datetime(2024, 1, 31, 10, 7, 30, tzinfo=IST)
    boot = HistoricalBootstrapper(source=kite_source(sim), intervals=("minute",), days=3, now=during_session)
    boot.run()
    ends = set(CandleCoverage.objects.values_list("end", flat=True))
    assert ends == {dt.datetime(2024, 1, 31, 10, 7, tzinfo=IST)}


def test_progress_callback_sees_every_request(sim, subscribed):
    seen = []
    boot = HistoricalBootstrapper(
        source=kite_source(sim),
        intervals=("day",),
        days=DAYS,
        now=NOW,
        batch_size=1,
        on_progress=lambda run, n: seen.append((n, run.requests_done, run.requests_planned)),
    )
    run = boot.run()
    assert sum(n for n, _, _ in seen) == run.requests_done == 2
    assert seen[-1][1:] == (2, 2)
    assert BackfillRun.objects.get(pk=run.pk).instruments_done == 2


def test_a_caller_that_stops_the_run_early_gets_a_partial_run_without_an_error_and_the_next_run_resumes(
    sim, subscribed, caplog
):
    from history.services.candle_sources import BackfillCancelled

    def stop_after_first_request(run, advanced):
        if run.requests_done >= 1:
            raise BackfillCancelled("the ticker is stopping")

    boot = HistoricalBootstrapper(
        source=kite_source(sim),
        intervals=("day",),
        days=DAYS,
        now=NOW,
        batch_size=1,
        on_progress=stop_after_first_request,
    )
    with caplog.at_level(logging.INFO, logger="history.services.backfill"):
        run = boot.run()
    assert run.status == BackfillRun.Status.PARTIAL and run.requests_done == 1
    assert "stopped early (the ticker is stopping)" in run.message and run.errors_count == 0
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info]
    assert bootstrapper(kite_source(sim), intervals=("day",)).run().requests_planned == 1  # only the rest


def test_default_source_marks_the_account_auth_failed_when_kite_rejects_its_token(sim, subscribed, settings):
    from history.services.candle_sources import default_source
    from subscriptions.models import TradingAccount

    settings.KITE_API_ROOT = sim.http_url
    account = TradingAccount.objects.create(label="live", api_key=API_KEY, access_token="revoked", health="ok")
    source = default_source()
    assert isinstance(source, KiteCandleSource)
    source.limiter = LocalRateLimiter(FAST)
    run = bootstrapper(source, intervals=("day",)).run()
    assert run.status == BackfillRun.Status.FAILED
    account.refresh_from_db()
    assert account.health == TradingAccount.Health.AUTH_FAILED
    assert "historical API" in account.last_error and "revoked" not in account.last_error


def test_default_source_is_the_mock_market_without_a_live_account(subscribed):
    from history.services.candle_sources import default_source

    assert isinstance(default_source(), MockCandleSource)


def test_soft_time_limit_ends_the_run_as_partial_and_the_next_run_resumes(sim, subscribed):
    from celery.exceptions import SoftTimeLimitExceeded

    class TimeLimited(FailingAfter):
        def fetch(self, *args):
            if self.n == 0:
                raise SoftTimeLimitExceeded()
            return super().fetch(*args)

    first = bootstrapper(TimeLimited(kite_source(sim), 1), intervals=("day",)).run()
    assert first.status == BackfillRun.Status.PARTIAL and "time limit" in first.message
    assert bootstrapper(kite_source(sim), intervals=("day",)).run().requests_planned == 1
