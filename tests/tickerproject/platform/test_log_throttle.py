"""Repeated log lines of one kind (channels-redis's "over capacity" on every send) are held back and counted."""

from __future__ import annotations

import logging

from tickerproject.platform.log_throttle import ThrottleRepeatsFilter

OVER = "%s of %s channels over capacity in group %s"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def record(group: str, msg: str = OVER) -> logging.LogRecord:
    return logging.LogRecord("channels_redis.core", logging.INFO, __file__, 1, msg, (1, 2, group), None)


def test_first_line_of_a_kind_passes_then_one_per_interval_saying_how_many_were_held_back():
    clock = Clock()
    throttle = ThrottleRepeatsFilter(interval_s=60, clock=clock)
    assert throttle.filter(record("chain.NIFTY.2026-12-29"))
    passed = 0
    for _ in range(70 * 59):  # a minute of sends, 70 a second
        clock.now += 1 / 70
        passed += throttle.filter(record("chain.NIFTY.2026-12-29"))
    assert passed == 0
    clock.now += 1.5
    summary = record("chain.NIFTY.2026-12-29")
    assert throttle.filter(summary)
    assert summary.getMessage() == (
        "1 of 2 channels over capacity in group chain.NIFTY.2026-12-29 (4130 similar suppressed in the last 61 s)"
    )
    clock.now += 61
    quiet_again = record("chain.NIFTY.2026-12-29")
    assert throttle.filter(quiet_again) and "suppressed" not in quiet_again.getMessage()


def test_each_group_and_each_message_is_its_own_kind():
    throttle = ThrottleRepeatsFilter(interval_s=60, clock=Clock())
    assert throttle.filter(record("chain.NIFTY.2026-12-29"))
    assert throttle.filter(record("chain.BANKNIFTY.2026-12-29"))
    assert throttle.filter(record("chain.NIFTY.2026-12-29", msg="something else about %s %s %s"))
    assert not throttle.filter(record("chain.BANKNIFTY.2026-12-29"))


def test_without_per_argument_kinds_lines_with_any_argument_share_one_interval():
    # For lines about client input: the argument is whatever a client sent.
    clock = Clock()
    throttle = ThrottleRepeatsFilter(interval_s=60, clock=clock, per_argument=False)
    assert throttle.filter(record("/ws/a/"))
    assert not throttle.filter(record("/ws/b/"))
    assert throttle.filter(record("/ws/a/", msg="something else about %s %s %s"))
    clock.now += 60
    assert throttle.filter(record("/ws/c/"))


def test_a_record_with_an_unhashable_argument_always_passes():
    throttle = ThrottleRepeatsFilter(interval_s=60, clock=Clock())
    odd = logging.LogRecord("x", logging.INFO, __file__, 1, "%s %s", (1, [2]), None)
    assert throttle.filter(odd) and throttle.filter(odd)


def test_the_projects_logging_throttles_channels_redis_over_capacity_lines(caplog):
    # tickerproject.settings.LOGGING attaches the filter to the channels_redis.core logger.
    logger = logging.getLogger("channels_redis.core")
    with caplog.at_level(logging.INFO, logger="channels_redis.core"):
        for _ in range(100):
            logger.info(OVER, 1, 1, "chain.FINNIFTY.2026-12-29")
    assert [r.getMessage() for r in caplog.records if r.name == "channels_redis.core"] == [
        "1 of 1 channels over capacity in group chain.FINNIFTY.2026-12-29"
    ]
