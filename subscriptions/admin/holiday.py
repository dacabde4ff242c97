"""The exchange holiday admin."""

from __future__ import annotations

from django.contrib import admin

from subscriptions.models import MarketHoliday


@admin.register(MarketHoliday)
class MarketHolidayAdmin(admin.ModelAdmin):
    list_display = ["date", "weekday", "exchange", "description"]
    list_filter = ["exchange"]
    search_fields = ["description"]
    date_hierarchy = "date"

    @admin.display(description="Weekday")
    def weekday(self, holiday: MarketHoliday) -> str:
        return f"{holiday.date:%A}"
