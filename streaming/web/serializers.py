"""API shapes of the live data: chain snapshots (docs/websocket.md), the chain list and health.

The chain payload is produced by the ticker and passed through as it is; these serializers describe
it for the OpenAPI schema."""

from __future__ import annotations

from rest_framework import serializers


class ChainSideSerializer(serializers.Serializer):
    instrument_token = serializers.IntegerField()
    tradingsymbol = serializers.CharField()
    ltp = serializers.FloatField(allow_null=True)
    change = serializers.FloatField(allow_null=True, help_text="LTP minus the previous close.")
    oi = serializers.IntegerField(allow_null=True)
    oi_change = serializers.IntegerField(allow_null=True, help_text="OI change since the previous close.")
    oi_change_recent = serializers.IntegerField(
        allow_null=True, required=False, help_text="OI change over the header's oi_change_window_minutes."
    )
    volume = serializers.IntegerField(allow_null=True)
    iv = serializers.FloatField(allow_null=True, help_text="Implied volatility as a fraction (0.132 = 13.2%).")
    delta = serializers.FloatField(allow_null=True)
    gamma = serializers.FloatField(allow_null=True)
    theta = serializers.FloatField(allow_null=True, help_text="Per calendar day.")
    vega = serializers.FloatField(allow_null=True, help_text="Per volatility point.")
    bid = serializers.FloatField(allow_null=True)
    ask = serializers.FloatField(allow_null=True)
    updated_at = serializers.FloatField(allow_null=True, help_text="Epoch seconds of the last tick.")
    gex = serializers.FloatField(
        allow_null=True, help_text="Gamma exposure, rupees per 1 % move: gamma x OI x spot^2 x 0.01, calls +, puts -."
    )
    buildup = serializers.ChoiceField(
        choices=["N", "LB", "SB", "SC", "LU"],
        allow_null=True,
        help_text="OI build-up over the OI window: neutral, long/short build-up, short covering, long unwinding.",
    )


class ChainRowSerializer(serializers.Serializer):
    strike = serializers.FloatField()
    CE = ChainSideSerializer(required=False)
    PE = ChainSideSerializer(required=False)


class ChainHeaderSerializer(serializers.Serializer):
    spot = serializers.FloatField(allow_null=True)
    forward = serializers.FloatField(allow_null=True)
    atm_strike = serializers.FloatField(allow_null=True)
    pcr_oi = serializers.FloatField(allow_null=True)
    pcr_volume = serializers.FloatField(allow_null=True)
    max_pain = serializers.FloatField(allow_null=True)
    time_to_expiry_years = serializers.FloatField(allow_null=True)
    expires_at = serializers.DateTimeField()
    last_tick_at = serializers.FloatField(allow_null=True)
    oi_change_window_minutes = serializers.FloatField()
    atm_iv = serializers.FloatField(allow_null=True, help_text="ATM IV interpolated at the forward (OTM sides).")
    iv_bucket = serializers.ChoiceField(choices=["weekly", "monthly"], allow_null=True)
    iv_percentile = serializers.FloatField(allow_null=True, help_text="% of the past sessions' closing ATM IVs below.")
    iv_rank = serializers.FloatField(allow_null=True, help_text="(IV - min) / (max - min) over the sessions, in %.")
    iv_history_sessions = serializers.IntegerField(help_text="How many past sessions IVP and IVR rest on.")
    straddle = serializers.FloatField(allow_null=True, help_text="ATM call + put (quote mids).")
    expected_move = serializers.FloatField(allow_null=True, help_text="To expiry, by the straddle's premium.")
    expected_move_iv = serializers.FloatField(allow_null=True, help_text="To expiry, one sigma: F x ATM IV x sqrt(T).")
    net_gex = serializers.FloatField(allow_null=True)
    zero_gamma = serializers.FloatField(allow_null=True, help_text="Spot at which net GEX changes sign.")
    gex_call_wall = serializers.FloatField(allow_null=True)
    gex_put_wall = serializers.FloatField(allow_null=True)
    ce_oi_change = serializers.FloatField(allow_null=True)
    pe_oi_change = serializers.FloatField(allow_null=True)
    term_structure = serializers.ListField(child=serializers.ListField(), help_text="[expiry, ATM IV, years] each.")
    series_last = serializers.ListField(allow_null=True, help_text="The newest point of `series`.")


class ChainSnapshotSerializer(serializers.Serializer):
    underlying = serializers.CharField()
    expiry = serializers.DateField()
    seq = serializers.IntegerField()
    ts = serializers.FloatField()
    # A field named like Field.source is fine: DRF's serializer metaclass moves declared fields out of
    # the class attributes. The stubs see a class attribute overriding Field.source (a str).
    source = serializers.ChoiceField(choices=["mock", "live"])  # type: ignore[assignment]
    header = ChainHeaderSerializer()
    rows = ChainRowSerializer(many=True)
    series = serializers.DictField(
        required=False, help_text='The session\'s minute points (snapshots only): {"fields": [...], "points": [[...]]}.'
    )


class ChainListItemSerializer(serializers.Serializer):
    underlying = serializers.CharField()
    expiries = serializers.ListField(child=serializers.DateField())
    streaming = serializers.ListField(
        child=serializers.DateField(), help_text="Expiries whose live snapshot exists right now."
    )


class HealthCheckSerializer(serializers.Serializer):
    ok = serializers.BooleanField()
    detail = serializers.CharField()


class HealthSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=["ok", "degraded", "down"])
    checks = serializers.DictField(child=HealthCheckSerializer())
