"""List filters shared by the instrument, account and subscription admins."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from subscriptions import selectors
from subscriptions.models import Instrument
from subscriptions.services.reconcile import last_reconcile_report


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
