"""Candles and backfill runs in the admin: read-mostly, searchable, with the run's progress."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from history.models import BackfillRun, Candle, CandleCoverage


@admin.register(Candle)
class CandleAdmin(admin.ModelAdmin):
    list_display = ["instrument", "interval", "timestamp", "open", "high", "low", "close", "volume", "oi", "is_mock"]
    list_filter = ["interval", "is_mock", "instrument__underlying", "instrument__instrument_type"]
    search_fields = ["instrument__tradingsymbol", "instrument__underlying", "=instrument__instrument_token"]
    date_hierarchy = "timestamp"
    list_select_related = ["instrument"]
    raw_id_fields = ["instrument"]
    show_full_result_count = False  # counting millions of candles on every page is slow


@admin.register(CandleCoverage)
class CandleCoverageAdmin(admin.ModelAdmin):
    list_display = ["instrument", "interval", "start", "end", "is_mock"]
    list_filter = ["interval", "is_mock"]
    search_fields = ["instrument__tradingsymbol", "=instrument__instrument_token"]
    list_select_related = ["instrument"]
    raw_id_fields = ["instrument"]


@admin.register(BackfillRun)
class BackfillRunAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "status",
        "progress",
        "trigger",
        "source",
        "instruments_total",
        "requests_done",
        "requests_planned",
        "candles_written",
        "retries",
        "errors_count",
        "started_at",
        "finished_at",
    ]
    list_filter = ["status", "source", "created_at"]
    search_fields = ["trigger", "message"]
    readonly_fields = [f.name for f in BackfillRun._meta.fields] + ["progress"]
    actions = ["start_backfill"]

    @admin.display(description="progress")
    def progress(self, run: BackfillRun) -> str:
        return f"{run.progress_percent}%"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.action(description="Start a backfill of all subscribed instruments now")
    def start_backfill(self, request: HttpRequest, queryset: QuerySet[BackfillRun]) -> None:
        from history.tasks import backfill

        backfill.apply_async(kwargs={"trigger": f"admin {request.user}"})
        self.message_user(request, "Backfill queued; its progress appears in this list.", messages.SUCCESS)
