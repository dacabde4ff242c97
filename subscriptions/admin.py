"""The operator's admin: instruments, accounts (capacity, Kite login), subscriptions, holidays.

Secrets never appear: TradingAccount's form has write-only inputs and no list or message shows them.
The account and subscription lists also show the last reconcile report (what exceeds capacity, the load
per account and connection) and, when a ticker reports, its live status per account and connection.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Count, Q, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html

from streaming.status import ticker_status
from subscriptions import selectors
from subscriptions.forms import ChainSubscribeForm, TradingAccountAdminForm
from subscriptions.models import Instrument, MarketHoliday, Subscription, TradingAccount
from subscriptions.services.chains import chain_subscribe
from subscriptions.services.reconcile import last_reconcile_report
from subscriptions.services.subscriptions import (
    subscription_create,
    subscriptions_activate,
    subscriptions_deactivate,
)

logger = logging.getLogger(__name__)

OVERFLOW_SHOWN = 50  # overflowing subscriptions named on the list pages; the filter shows them all


class DelistedFilter(admin.SimpleListFilter):
    title = "listing"
    parameter_name = "listed"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", "Listed"), ("no", "Delisted")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() == "yes":
            return queryset.filter(delisted_at__isnull=True)
        if self.value() == "no":
            return queryset.filter(delisted_at__isnull=False)
        return queryset


class OptionUnderlyingFilter(admin.SimpleListFilter):
    """Only underlyings with options: a full dump has thousands of equities."""

    title = "underlying"
    parameter_name = "underlying"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(u, u) for u in selectors.option_underlyings()]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if not self.value():
            return queryset
        field = "underlying" if queryset.model is Instrument else "instrument__underlying"
        return queryset.filter(**{field: self.value()})


class AssignedFilter(admin.SimpleListFilter):
    title = "assignment"
    parameter_name = "assigned"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", "Assigned to an account"), ("no", "Unassigned")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() == "yes":
            return queryset.filter(account__isnull=False)
        if self.value() == "no":
            return queryset.filter(account__isnull=True)
        return queryset


class ReconcileOverflowFilter(admin.SimpleListFilter):
    """The subscriptions the last reconcile could not place: they exceed the usable capacity."""

    title = "last reconcile"
    parameter_name = "reconcile"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("overflow", "Over capacity (not streamed)")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() != "overflow":
            return queryset
        report = last_reconcile_report()
        return queryset.filter(pk__in=report.overflow_subscription_ids if report else [])


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


def _unassigned_context() -> dict[str, Any]:
    unassigned = selectors.unassigned_active_subscriptions().count()
    return {
        "unassigned_count": unassigned,
        "unassigned_url": reverse("admin:subscriptions_subscription_changelist") + "?is_active__exact=1&assigned=no",
    }


def _epoch_to_datetime(value: Any) -> dt.datetime | None:
    try:
        return dt.datetime.fromtimestamp(float(value), tz=dt.UTC) if value else None
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def _streaming_status() -> dict[str, Any] | None:
    """The running ticker's status shaped per account, each with its connections; None when no ticker
    reported recently (or the status cannot be read: it is advisory, the page renders without it)."""
    try:
        document = ticker_status()
    except Exception:
        logger.warning("could not read the ticker status", exc_info=True)
        return None
    if not document:
        return None
    accounts: dict[int, dict[str, Any]] = {}

    def entry(account_id: int, label: str = "", mode: str = "") -> dict[str, Any]:
        if account_id not in accounts:
            accounts[account_id] = {
                "account_id": account_id,
                "label": label or f"account {account_id}",
                "mode": mode,
                "health": "",
                "connections": [],
                "url": reverse("admin:subscriptions_tradingaccount_change", args=[account_id]),
            }
        return accounts[account_id]

    now = timezone.now()
    for account in document.get("accounts", []):
        row = entry(int(account["account_id"]), account.get("label", ""), account.get("mode", ""))
        row["health"] = account.get("health", "")
    for conn in document.get("connections", []):
        row = entry(int(conn["account_id"]), conn.get("label", ""), conn.get("mode", ""))
        last_tick = _epoch_to_datetime(conn.get("last_tick_at"))
        row["connections"].append(
            {
                "index": conn.get("connection_index"),
                "mode": conn.get("mode", ""),
                "state": conn.get("state", "unknown"),
                "instruments": conn.get("instruments", 0),
                "last_tick_at": last_tick,
                "last_tick_age": (now - last_tick).total_seconds() if last_tick else None,
                "ticks_per_second": conn.get("ticks_per_second", 0.0),
                "reconnects": conn.get("reconnects", 0),
                "last_error": conn.get("last_error", ""),
            }
        )
    return {
        "ticker_id": document.get("ticker_id", ""),
        "updated_at": _epoch_to_datetime(document.get("updated_at")),
        "accounts": sorted(accounts.values(), key=lambda a: (a["label"], a["account_id"])),
    }


def _reconcile_context() -> dict[str, Any]:
    """The last reconcile report (when, what overflows, the load per account and connection) and the
    live streaming status, for the account and subscription list pages."""
    report = last_reconcile_report()
    overflow: list[Subscription] = []
    if report is not None and report.overflow_subscription_ids:
        shown = report.overflow_subscription_ids[:OVERFLOW_SHOWN]
        by_pk = Subscription.objects.select_related("instrument").in_bulk(shown)
        overflow = [by_pk[pk] for pk in shown if pk in by_pk]
    changelist = reverse("admin:subscriptions_subscription_changelist")
    return {
        "reconcile_report": report,
        "reconcile_overflow": overflow,
        "reconcile_overflow_more": max((report.overflow_count if report else 0) - len(overflow), 0),
        "reconcile_overflow_url": f"{changelist}?{ReconcileOverflowFilter.parameter_name}=overflow",
        "streaming_status": _streaming_status(),
    }


def _list_context() -> dict[str, Any]:
    return {**_unassigned_context(), **_reconcile_context()}


@admin.register(TradingAccount)
class TradingAccountAdmin(admin.ModelAdmin):
    form = TradingAccountAdminForm
    change_form_template = "admin/subscriptions/tradingaccount/change_form.html"
    change_list_template = "admin/subscriptions/tradingaccount/change_list.html"
    list_display = [
        "label",
        "kite_user_id",
        "api_key",
        "is_mock",
        "is_active",
        "health_badge",
        "token_state",
        "capacity_display",
        "used_display",
        "free_display",
        "kite_login_link",
    ]
    list_filter = ["is_active", "is_mock", "health"]
    search_fields = ["label", "kite_user_id", "api_key"]
    readonly_fields = [
        "secret_state",
        "token_state",
        "token_expires_at",
        "health",
        "last_error",
        "health_changed_at",
        "capacity_display",
        "used_display",
        "free_display",
        "created_at",
        "updated_at",
    ]
    fieldsets = [
        (None, {"fields": ["label", "kite_user_id", "api_key", "is_mock", "is_active"]}),
        (
            "Secrets (write-only)",
            {"fields": ["secret_state", "new_api_secret", "new_access_token", "token_state", "token_expires_at"]},
        ),
        (
            "Capacity",
            {
                "fields": [
                    "max_connections",
                    "instruments_per_connection",
                    "capacity_display",
                    "used_display",
                    "free_display",
                ]
            },
        ),
        ("Health", {"fields": ["health", "last_error", "health_changed_at", "created_at", "updated_at"]}),
    ]
    actions = ["activate_accounts", "deactivate_accounts"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[TradingAccount]:
        return (
            super()
            .get_queryset(request)
            .annotate(used_count=Count("subscriptions", filter=Q(subscriptions__is_active=True)))
        )

    @admin.display(description="Capacity")
    def capacity_display(self, account: TradingAccount) -> str:
        return f"{account.capacity} ({account.max_connections} × {account.instruments_per_connection})"

    @admin.display(description="Used", ordering="used_count")
    def used_display(self, account: TradingAccount) -> int:
        return getattr(account, "used_count", None) or account.subscriptions.filter(is_active=True).count()

    @admin.display(description="Free")
    def free_display(self, account: TradingAccount) -> int:
        return max(account.capacity - self.used_display(account), 0)

    @admin.display(description="Kite")
    def kite_login_link(self, account: TradingAccount) -> str:
        if account.is_mock:
            return "—"
        return format_html('<a href="{}">Log in with Kite</a>', reverse("kite:login", args=[account.pk]))

    @admin.display(description="Health", ordering="health")
    def health_badge(self, account: TradingAccount) -> str:
        colours = {"ok": "#2e7d32", "auth_failed": "#c62828", "error": "#ef6c00"}
        return format_html(
            '<span style="color:{}">{}</span>', colours.get(account.health, "#666"), account.get_health_display()
        )

    @admin.display(description="api_secret")
    def secret_state(self, account: TradingAccount) -> str:
        if account.is_mock:
            return "not needed (mock account)"
        return "set (hidden)" if account.api_secret else "not set"

    @admin.display(description="Access token")
    def token_state(self, account: TradingAccount) -> str:
        if account.is_mock:
            return "not needed (mock)"
        if not account.access_token:
            return "none: log in with Kite"
        if account.token_expires_at and account.token_expires_at <= timezone.now():
            return "expired: log in with Kite"
        return "valid (hidden)"

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None) -> HttpResponse:
        return super().changelist_view(request, {**_list_context(), **(extra_context or {})})

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict | None = None
    ) -> HttpResponse:
        context = {**_unassigned_context(), **(extra_context or {})}
        account = self.get_object(request, object_id)
        if account is not None and not account.is_mock:
            context["kite_login_url"] = reverse("kite:login", args=[account.pk])
        return super().change_view(request, object_id, form_url, context)

    @admin.action(description="Activate selected accounts", permissions=["change"])
    def activate_accounts(self, request: HttpRequest, queryset: QuerySet[TradingAccount]) -> None:
        changed = 0
        for account in queryset.filter(is_active=False):
            account.is_active = True
            account.save(update_fields=["is_active", "updated_at"])
            changed += 1
        messages.success(request, f"{changed} account(s) activated.")

    @admin.action(description="Deactivate selected accounts", permissions=["change"])
    def deactivate_accounts(self, request: HttpRequest, queryset: QuerySet[TradingAccount]) -> None:
        changed = 0
        for account in queryset.filter(is_active=True):
            account.is_active = False
            account.save(update_fields=["is_active", "updated_at"])
            changed += 1
        messages.success(request, f"{changed} account(s) deactivated; the reconciler moves their instruments.")


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
        return super().changelist_view(request, {**_list_context(), **(extra_context or {})})

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


@admin.register(MarketHoliday)
class MarketHolidayAdmin(admin.ModelAdmin):
    list_display = ["date", "weekday", "exchange", "description"]
    list_filter = ["exchange"]
    search_fields = ["description"]
    date_hierarchy = "date"

    @admin.display(description="Weekday")
    def weekday(self, holiday: MarketHoliday) -> str:
        return f"{holiday.date:%A}"
