import datetime as dt
from zoneinfo import ZoneInfo

from history.services.gaps import Gap, last_open_candle_start, merge_ranges, missing_ranges, subtract_ranges

IST = ZoneInfo("Asia/Kolkata")


def ist(*args):
    return dt.datetime(*args, tzinfo=IST)


def test_merge_joins_overlapping_and_touching_ranges():
    a, b, c, d, e = (ist(2024, 1, 1, h) for h in (1, 2, 3, 4, 5))
    assert merge_ranges([(c, d), (a, b), (b, c), (d, d)]) == [(a, d)]
    assert merge_ranges([(a, b), (c, e), (d, e)]) == [(a, b), (c, e)]


def test_subtract_leaves_the_holes():
    a, b, c, d, e, f = (ist(2024, 1, 1, h) for h in range(1, 7))
    assert subtract_ranges((a, f), []) == [(a, f)]
    assert subtract_ranges((a, f), [(b, c), (d, e)]) == [(a, b), (c, d), (e, f)]
    assert subtract_ranges((b, e), [(a, c), (d, f)]) == [(c, d)]
    assert subtract_ranges((b, e), [(a, f)]) == []


def test_nothing_covered_yet_fetches_from_first_to_last_session_minute():
    # Saturday 6 Jan 2024 .. Wednesday 10 Jan 12:00: the first session is Monday's.
    window = (ist(2024, 1, 6, 12), ist(2024, 1, 10, 12))
    assert missing_ranges(window, []) == [Gap(window[0], window[1], ist(2024, 1, 8, 9, 15), ist(2024, 1, 10, 12))]


def test_fully_covered_window_has_no_gap():
    window = (ist(2024, 1, 8, 9), ist(2024, 1, 12, 16))
    assert missing_ranges(window, [(ist(2024, 1, 1), ist(2024, 1, 13))]) == []


def test_hole_without_trading_session_is_not_fetched():
    # Covered up to Friday's close and from Monday's open: the weekend needs no request.
    window = (ist(2024, 1, 8, 9, 15), ist(2024, 1, 16, 15, 30))
    covered = [(ist(2024, 1, 8, 9, 15), ist(2024, 1, 12, 15, 30)), (ist(2024, 1, 15, 9, 15), ist(2024, 1, 16, 15, 30))]
    assert missing_ranges(window, covered) == []


def test_holidays_are_not_sessions():
    window = (ist(2024, 1, 26, 0), ist(2024, 1, 27, 0))  # Republic Day, a Friday
    assert missing_ranges(window, [], holidays={dt.date(2024, 1, 26)}) == []
    assert len(missing_ranges(window, [])) == 1


def test_hole_in_the_middle_is_found_and_trimmed_to_its_sessions():
    window = (ist(2024, 1, 8, 9, 15), ist(2024, 1, 12, 15, 30))
    covered = [(ist(2024, 1, 8, 9, 15), ist(2024, 1, 9, 12, 0)), (ist(2024, 1, 11, 0, 0), ist(2024, 1, 12, 15, 30))]
    (gap,) = missing_ranges(window, covered)
    assert (gap.start, gap.end) == (ist(2024, 1, 9, 12, 0), ist(2024, 1, 11, 0, 0))
    assert (gap.fetch_start, gap.fetch_end) == (ist(2024, 1, 9, 12, 0), ist(2024, 1, 10, 15, 30))


def test_incremental_run_fetches_only_since_the_last_coverage():
    window = (ist(2024, 1, 1, 16), ist(2024, 1, 31, 16))
    covered = [(ist(2024, 1, 1, 16), ist(2024, 1, 30, 15, 31))]
    (gap,) = missing_ranges(window, covered)
    assert (gap.fetch_start, gap.fetch_end) == (ist(2024, 1, 31, 9, 15), ist(2024, 1, 31, 15, 30))


def test_open_candle_start_is_aligned_to_the_session_open():
    now = ist(2024, 1, 8, 10, 7, 30)
    assert last_open_candle_start(now, "minute") == ist(2024, 1, 8, 10, 7)
    assert last_open_candle_start(now, "5minute") == ist(2024, 1, 8, 10, 5)
    assert last_open_candle_start(now, "60minute") == ist(2024, 1, 8, 9, 15)
    assert last_open_candle_start(now, "day") == ist(2024, 1, 8, 0, 0)
    early = ist(2024, 1, 8, 8, 0)
    assert last_open_candle_start(early, "minute") == early
    after_close = ist(2024, 1, 8, 16, 0)
    assert last_open_candle_start(after_close, "day") == after_close
    assert last_open_candle_start(after_close, "60minute") == after_close


def test_day_candles_are_fetched_from_midnight():
    window = (ist(2024, 1, 7, 16), ist(2024, 1, 10, 16))  # Sunday 16:00 .. Wednesday
    (gap,) = missing_ranges(window, [], interval="day")
    assert gap.fetch_start == ist(2024, 1, 8, 0, 0)
    (late,) = missing_ranges((ist(2024, 1, 8, 5), window[1]), [], interval="day")
    assert late.fetch_start == ist(2024, 1, 8, 5)  # Monday's day candle is before this window
