"""The subscription admin: the list with its reconcile report, (de)activation, and subscribing a chain."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse

from subscriptions.admin.filters import AssignedFilter, OptionUnderlyingFilter, ReconcileOverflowFilter
from subscriptions.admin.list_context import list_context
from subscriptions.forms import ChainSubscribeForm
from subscriptions.models import Subscription
from subscriptions.services.chains import chain_subscribe
from subscriptions.services.subscriptions import subscriptions_activate, subscriptions_deactivate


@admin.register(Subscription)
class SubscriptionAdmin(admin.ModelAdmin):
    change_list_template = "admin/subscriptions/subscription/change_list.html"
    list_display = [
        "instrument",
        "underlying",
        "expiry",
        "strike",
        "option_type",
        "mode",
        "is_active",
        "account",
        "connection_index",
        "deactivated_reason",
        "updated_at",
    ]
    list_filter = [
        "is_active",
        "mode",
        AssignedFilter,
        ReconcileOverflowFilter,
        "account",
        OptionUnderlyingFilter,
        "instrument__instrument_type",
        "instrument__expiry",
    ]
    search_fields = ["instrument__tradingsymbol", "instrument__underlying", "=instrument__instrument_token"]
    list_select_related = ["instrument", "account"]
    raw_id_fields = ["instrument"]
    readonly_fields = ["account", "connection_index", "created_at", "updated_at"]
    fields = [
        "instrument",
        "mode",
        "is_active",
        "deactivated_reason",
        "account",
        "connection_index",
        "created_at",
        "updated_at",
    ]
    list_per_page = 100
    actions = ["activate_subscriptions", "deactivate_subscriptions"]

    @admin.display(description="Underlying", ordering="instrument__underlying")
    def underlying(self, subscription: Subscription) -> str:
        return subscription.instrument.underlying

    @admin.display(description="Expiry", ordering="instrument__expiry")
    def expiry(self, subscription: Subscription) -> Any:
        return subscription.instrument.expiry

    @admin.display(description="Strike", ordering="instrument__strike")
    def strike(self, subscription: Subscription) -> Any:
        return subscription.instrument.strike or "—"

    @admin.display(description="Type", ordering="instrument__instrument_type")
    def option_type(self, subscription: Subscription) -> str:
        return subscription.instrument.instrument_type

    @admin.action(description="Activate selected subscriptions", permissions=["change"])
    def activate_subscriptions(self, request: HttpRequest, queryset: QuerySet[Subscription]) -> None:
        activated, errors = subscriptions_activate(subscriptions=queryset.select_related("instrument"))
        if activated:
            messages.success(request, f"{activated} subscription(s) activated.")
        for error in errors[:20]:
            messages.error(request, error)
        if len(errors) > 20:
            messages.error(request, f"... and {len(errors) - 20} more could not be activated.")
        if not activated and not errors:
            messages.info(request, "The selected subscriptions were already active.")

    @admin.action(description="Deactivate selected subscriptions", permissions=["change"])
    def deactivate_subscriptions(self, request: HttpRequest, queryset: QuerySet[Subscription]) -> None:
        count = subscriptions_deactivate(subscriptions=queryset, reason=f"deactivated by {request.user}")
        messages.success(request, f"{count} subscription(s) deactivated.")

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None) -> HttpResponse:
        return super().changelist_view(request, {**list_context(), **(extra_context or {})})

    def get_urls(self) -> list[URLPattern]:
        custom = [
            path(
                "chain-subscribe/",
                self.admin_site.admin_view(self.chain_subscribe_view),
                name="subscriptions_subscription_chain_subscribe",
            )
        ]
        return custom + super().get_urls()

    def chain_subscribe_view(self, request: HttpRequest) -> HttpResponse:
        """Preview what subscribing a chain adds; save only when the operator confirms."""
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = ChainSubscribeForm(request.POST or None)
        plan = None
        preview_key = ""
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            preview_key = f"{data['underlying']}|{data['expiry']:%Y-%m-%d}|{data['strikes_each_side']}|{data['mode']}"
            # Confirm saves only what was previewed: changed inputs show a fresh preview first.
            if "confirm" in request.POST and request.POST.get("previewed") == preview_key:
                try:
                    result = chain_subscribe(
                        underlying=data["underlying"],
                        expiry=data["expiry"],
                        strikes_each_side=data["strikes_each_side"],
                        mode=data["mode"],
                    )
                except ValidationError as exc:
                    form.add_error(None, exc)
                else:
                    skipped = len(result.plan.already_subscribed)
                    messages.success(
                        request,
                        f"Subscribed {len(result.created)} {data['underlying']} {data['expiry']:%d %b %Y} options "
                        f"in {data['mode']} mode ({skipped} already subscribed, skipped).",
                    )
                    return HttpResponseRedirect(reverse("admin:subscriptions_subscription_changelist"))
            plan = form.plan
        context = {
            "preview_key": preview_key if plan is not None else "",
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": "Subscribe an option chain",
            "form": form,
            "plan": plan,
        }
        return TemplateResponse(request, "admin/subscriptions/chain_subscribe.html", context)
