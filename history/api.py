"""REST endpoint for stored candles (read only; the backfill service writes them)."""

from __future__ import annotations

import django_filters
from rest_framework import viewsets
from rest_framework.permissions import IsAuthenticated

from history.models import Candle
from history.serializers import CandleSerializer
from tickerproject.api_common import StandardPagination


class CandleFilter(django_filters.FilterSet):
    instrument_token = django_filters.NumberFilter(field_name="instrument__instrument_token")
    tradingsymbol = django_filters.CharFilter(field_name="instrument__tradingsymbol", lookup_expr="iexact")
    interval = django_filters.ChoiceFilter(choices=Candle.Interval.choices)
    start = django_filters.IsoDateTimeFilter(field_name="timestamp", lookup_expr="gte", label="From (inclusive)")
    end = django_filters.IsoDateTimeFilter(field_name="timestamp", lookup_expr="lt", label="To (exclusive)")

    class Meta:
        model = Candle
        fields = ["instrument", "is_mock"]


class CandleViewSet(viewsets.ReadOnlyModelViewSet):
    """Candles by instrument and interval, oldest first; filter by time range with `start` / `end` (ISO 8601)."""

    queryset = Candle.objects.all().order_by("instrument_id", "interval", "timestamp")
    serializer_class = CandleSerializer
    filterset_class = CandleFilter
    pagination_class = StandardPagination
    permission_classes = [IsAuthenticated]
