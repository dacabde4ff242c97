"""The instrument admin: browse the dump, subscribe selected instruments."""

from __future__ import annotations

from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest

from subscriptions.admin.filters import DelistedFilter, OptionUnderlyingFilter
from subscriptions.models import Instrument, Subscription
from subscriptions.services.subscriptions import subscription_create


@admin.register(Instrument)
class InstrumentAdmin(admin.ModelAdmin):
    list_display = [
        "tradingsymbol",
        "exchange",
        "underlying",
        "instrument_type",
        "expiry",
        "strike",
        "lot_size",
        "tick_size",
        "last_price",
        "instrument_token",
        "delisted_at",
    ]
    list_filter = [OptionUnderlyingFilter, "instrument_type", "exchange", "segment", DelistedFilter, "expiry"]
    search_fields = ["tradingsymbol", "name", "underlying", "=instrument_token"]
    date_hierarchy = "expiry"
    list_per_page = 100
    readonly_fields = ["updated_at"]
    actions = ["subscribe_full", "subscribe_quote", "subscribe_ltp"]

    def _subscribe(self, request: HttpRequest, queryset: QuerySet[Instrument], mode: str) -> None:
        created, skipped = 0, 0
        for instrument in queryset:
            try:
                subscription_create(instrument=instrument, mode=mode)
            except ValidationError:  # already subscribed
                skipped += 1
            else:
                created += 1
        messages.info(request, f"{created} subscribed in {mode} mode; {skipped} already had an active subscription.")

    @admin.action(description="Subscribe selected (full)", permissions=["add"])
    def subscribe_full(self, request: HttpRequest, queryset: QuerySet[Instrument]) -> None:
        self._subscribe(request, queryset, Subscription.Mode.FULL)

    @admin.action(description="Subscribe selected (quote)", permissions=["add"])
    def subscribe_quote(self, request: HttpRequest, queryset: QuerySet[Instrument]) -> None:
        self._subscribe(request, queryset, Subscription.Mode.QUOTE)

    @admin.action(description="Subscribe selected (ltp)", permissions=["add"])
    def subscribe_ltp(self, request: HttpRequest, queryset: QuerySet[Instrument]) -> None:
        self._subscribe(request, queryset, Subscription.Mode.LTP)

    def get_actions(self, request: HttpRequest) -> dict:
        actions = super().get_actions(request)
        # subscribing needs the permission to add subscriptions, not instruments
        if not request.user.has_perm("subscriptions.add_subscription"):
            for name in ("subscribe_full", "subscribe_quote", "subscribe_ltp"):
                actions.pop(name, None)
        return actions
