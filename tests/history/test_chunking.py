import datetime as dt
import itertools

import pytest

from history.services.chunking import MAX_DAYS_PER_REQUEST, chunk_range, max_span

UTC = dt.UTC
KITE_LIMITS = {
    "minute": 60,
    "3minute": 100,
    "5minute": 100,
    "10minute": 100,
    "15minute": 200,
    "30minute": 200,
    "60minute": 400,
    "day": 2000,
}


def test_limits_are_kites():
    assert MAX_DAYS_PER_REQUEST == KITE_LIMITS


@pytest.mark.parametrize("interval,days", sorted(KITE_LIMITS.items()))
def test_range_of_exactly_the_limit_is_one_request(interval, days):
    start = dt.datetime(2024, 1, 1, tzinfo=UTC)
    assert chunk_range(start, start + dt.timedelta(days=days), interval) == [(start, start + dt.timedelta(days=days))]


@pytest.mark.parametrize("interval,days", sorted(KITE_LIMITS.items()))
def test_one_second_over_the_limit_needs_a_second_request(interval, days):
    start = dt.datetime(2024, 1, 1, tzinfo=UTC)
    end = start + dt.timedelta(days=days, seconds=1)
    chunks = chunk_range(start, end, interval)
    assert chunks == [(start, start + dt.timedelta(days=days)), (start + dt.timedelta(days=days), end)]


@pytest.mark.parametrize("interval,days", sorted(KITE_LIMITS.items()))
def test_long_range_chunks_cover_it_without_overlap_or_hole(interval, days):
    start = dt.datetime(2020, 3, 5, 9, 15, tzinfo=UTC)
    end = start + dt.timedelta(days=days * 3 + 7, hours=5)
    chunks = chunk_range(start, end, interval)
    assert len(chunks) == 4
    assert chunks[0][0] == start and chunks[-1][1] == end
    for (_, a_end), (b_start, _) in itertools.pairwise(chunks):
        assert a_end == b_start
    assert all(e - s <= max_span(interval) for s, e in chunks)


def test_empty_range_needs_no_request():
    start = dt.datetime(2024, 1, 1, tzinfo=UTC)
    assert chunk_range(start, start, "minute") == []
    assert chunk_range(start, start - dt.timedelta(days=1), "day") == []


def test_unknown_interval_is_a_clear_error():
    start = dt.datetime(2024, 1, 1, tzinfo=UTC)
    with pytest.raises(ValueError, match="unknown interval '2minute'"):
        chunk_range(start, start + dt.timedelta(days=1), "2minute")
