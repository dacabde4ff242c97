"""API shape of stored candles."""

from __future__ import annotations

from rest_framework import serializers

from history.models import Candle


class CandleSerializer(serializers.ModelSerializer):
    class Meta:
        model = Candle
        fields = ["instrument", "interval", "timestamp", "open", "high", "low", "close", "volume", "oi", "is_mock"]
        read_only_fields = fields
