"""API shapes for instruments, subscriptions and accounts. Accounts never carry secrets."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from subscriptions.models import Instrument, Subscription, TradingAccount
from subscriptions.services.chains import MAX_STRIKES_EACH_SIDE


class InstrumentSerializer(serializers.ModelSerializer):
    class Meta:
        model = Instrument
        fields = [
            "id",
            "instrument_token",
            "exchange_token",
            "tradingsymbol",
            "name",
            "underlying",
            "exchange",
            "segment",
            "instrument_type",
            "expiry",
            "strike",
            "tick_size",
            "lot_size",
            "last_price",
            "delisted_at",
            "updated_at",
        ]
        read_only_fields = fields


class InstrumentBriefSerializer(serializers.ModelSerializer):
    class Meta:
        model = Instrument
        fields = [
            "id",
            "instrument_token",
            "tradingsymbol",
            "exchange",
            "underlying",
            "instrument_type",
            "expiry",
            "strike",
        ]
        read_only_fields = fields


class SubscriptionSerializer(serializers.ModelSerializer):
    instrument = serializers.PrimaryKeyRelatedField(queryset=Instrument.objects.all())
    instrument_detail = InstrumentBriefSerializer(source="instrument", read_only=True)
    account_label = serializers.CharField(source="account.label", read_only=True, default=None)

    class Meta:
        model = Subscription
        fields = [
            "id",
            "instrument",
            "instrument_detail",
            "mode",
            "is_active",
            "account",
            "account_label",
            "connection_index",
            "deactivated_reason",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["account", "connection_index", "deactivated_reason", "created_at", "updated_at"]
        # The one-active rule is enforced by the service with a field error naming the instrument.
        validators: list = []

    def validate_instrument(self, instrument: Instrument) -> Instrument:
        if self.instance is not None and instrument.pk != self.instance.instrument_id:
            raise serializers.ValidationError("A subscription's instrument cannot change; create a new one.")
        if self.instance is None and instrument.delisted_at is not None:
            raise serializers.ValidationError(f"{instrument} is delisted.")
        return instrument


class ChainSubscribeSerializer(serializers.Serializer):
    underlying = serializers.CharField(max_length=64)
    expiry = serializers.DateField()
    strikes_each_side = serializers.IntegerField(min_value=0, max_value=MAX_STRIKES_EACH_SIDE, default=10)
    mode = serializers.ChoiceField(choices=Subscription.Mode.choices, default=Subscription.Mode.FULL)
    preview = serializers.BooleanField(default=False, help_text="Only say what would be added; save nothing.")

    def validate_underlying(self, value: str) -> str:
        return value.strip().upper()


class ChainPlanSerializer(serializers.Serializer):
    underlying = serializers.CharField()
    expiry = serializers.DateField()
    mode = serializers.CharField()
    strikes_each_side = serializers.IntegerField()
    spot = serializers.FloatField(allow_null=True)
    atm_strike = serializers.FloatField()
    strikes = serializers.ListField(child=serializers.FloatField())
    count = serializers.IntegerField()
    to_add = serializers.SerializerMethodField()
    already_subscribed = serializers.SerializerMethodField()

    def get_to_add(self, plan: Any) -> list[str]:
        return [i.tradingsymbol for i in plan.to_add]

    def get_already_subscribed(self, plan: Any) -> list[str]:
        return [i.tradingsymbol for i in plan.already_subscribed]


class AccountStatusSerializer(serializers.ModelSerializer):
    """Status and capacity only: api_key, api_secret and access_token are never part of it."""

    capacity = serializers.IntegerField(read_only=True)
    used = serializers.IntegerField(read_only=True, help_text="Active subscriptions assigned to this account.")
    free = serializers.SerializerMethodField()
    token_valid = serializers.SerializerMethodField()
    streaming = serializers.SerializerMethodField(help_text="What the running ticker reports for this account.")

    class Meta:
        model = TradingAccount
        fields = [
            "id",
            "label",
            "kite_user_id",
            "is_mock",
            "is_active",
            "health",
            "last_error",
            "health_changed_at",
            "token_valid",
            "token_expires_at",
            "max_connections",
            "instruments_per_connection",
            "capacity",
            "used",
            "free",
            "streaming",
        ]
        read_only_fields = fields

    def get_free(self, account: TradingAccount) -> int:
        return max(account.capacity - getattr(account, "used", 0), 0)

    def get_token_valid(self, account: TradingAccount) -> bool:
        return account.has_valid_token()

    def get_streaming(self, account: TradingAccount) -> dict | None:
        return self.context.get("streaming_status", {}).get(account.pk)
