import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from django.db import connection

from history.models import Candle
from history.services.candles import CandleRow, candle_rows_from_kite, candles_upsert
from tests.subscriptions.factories import OptionFactory

IST = ZoneInfo("Asia/Kolkata")
pytestmark = pytest.mark.django_db


def minute_rows(n, *, start=dt.datetime(2024, 1, 8, 9, 15, tzinfo=IST), price=100.0):
    return [
        CandleRow(start + dt.timedelta(minutes=i), price + i, price + i + 1, price + i - 1, price + i + 0.5, 10 * i, 5)
        for i in range(n)
    ]


def table():
    return list(
        Candle.objects.order_by("instrument_id", "interval", "timestamp").values_list(
            "instrument_id", "interval", "timestamp", "open", "high", "low", "close", "volume", "oi", "is_mock"
        )
    )


def test_repeated_upsert_changes_nothing():
    instrument = OptionFactory()
    rows = minute_rows(300)
    assert candles_upsert(instrument_id=instrument.pk, interval="minute", rows=rows, is_mock=False) == 300
    before = table()
    ids_before = set(Candle.objects.values_list("pk", flat=True))
    written_again = candles_upsert(instrument_id=instrument.pk, interval="minute", rows=rows, is_mock=False)
    assert table() == before
    assert set(Candle.objects.values_list("pk", flat=True)) == ids_before
    if connection.vendor == "postgresql":  # the conditional upsert touches no row at all
        assert written_again == 0


def test_upsert_updates_changed_candles_and_adds_new_ones():
    instrument = OptionFactory()
    candles_upsert(instrument_id=instrument.pk, interval="minute", rows=minute_rows(10), is_mock=True)
    revised = minute_rows(12, price=200.0)
    candles_upsert(instrument_id=instrument.pk, interval="minute", rows=revised, is_mock=False)
    stored = Candle.objects.filter(instrument=instrument).order_by("timestamp")
    assert stored.count() == 12
    assert [c.open for c in stored] == [r.open for r in revised]
    assert not stored.filter(is_mock=True).exists()  # live candles replaced the mock ones


def test_intervals_and_instruments_do_not_collide():
    a, b = OptionFactory(strike=25000), OptionFactory(strike=25100)
    rows = minute_rows(5)
    candles_upsert(instrument_id=a.pk, interval="minute", rows=rows, is_mock=False)
    candles_upsert(instrument_id=a.pk, interval="5minute", rows=rows, is_mock=False)
    candles_upsert(instrument_id=b.pk, interval="minute", rows=rows, is_mock=False)
    assert Candle.objects.count() == 15


def test_duplicate_timestamps_in_one_batch_keep_the_last():
    instrument = OptionFactory()
    rows = minute_rows(3)
    dup = CandleRow(rows[1].timestamp, 1, 2, 0.5, 1.5, 7, None)
    candles_upsert(instrument_id=instrument.pk, interval="minute", rows=[*rows, dup], is_mock=False)
    assert Candle.objects.count() == 3
    assert Candle.objects.get(timestamp=rows[1].timestamp).close == 1.5


def test_kite_records_round_trip_with_timezone(kite_fixtures):
    import json

    import dateutil.parser

    payload = json.loads((kite_fixtures / "historical_oi.json").read_text())["data"]["candles"]
    records = [
        {"date": dateutil.parser.parse(c[0]), "open": c[1], "high": c[2], "low": c[3], "close": c[4], "volume": c[5]}
        | ({"oi": c[6]} if len(c) > 6 else {})
        for c in payload
    ]
    instrument = OptionFactory()
    candles_upsert(instrument_id=instrument.pk, interval="minute", rows=candle_rows_from_kite(records), is_mock=False)
    first = Candle.objects.order_by("timestamp").first()
    assert first.timestamp == dt.datetime(2019, 12, 4, 3, 45, tzinfo=dt.UTC)  # 09:15 IST
    assert (first.open, first.volume, first.oi) == (payload[0][1], payload[0][5], payload[0][6])


def test_unknown_interval_is_refused():
    instrument = OptionFactory()
    with pytest.raises(ValueError, match="unknown interval"):
        candles_upsert(instrument_id=instrument.pk, interval="2minute", rows=minute_rows(1), is_mock=False)
