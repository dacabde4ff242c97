"""The trading account admin: capacity and load, health, write-only secrets and the Kite login link."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import Count, Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html

from subscriptions.admin.list_context import list_context, unassigned_context
from subscriptions.forms import TradingAccountAdminForm
from subscriptions.models import TradingAccount


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
        return super().changelist_view(request, {**list_context(), **(extra_context or {})})

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict | None = None
    ) -> HttpResponse:
        context = {**unassigned_context(), **(extra_context or {})}
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
