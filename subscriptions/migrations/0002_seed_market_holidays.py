"""NSE trading holidays (weekdays only) for 2026 and 2027. Operators correct them in the admin.

Dates that follow the lunar calendar, and all of 2027 (NSE publishes that list in December), say
"provisional": check them against NSE's circular and edit them in the admin.
"""

import datetime as dt

from django.db import migrations

NSE_HOLIDAYS = [
    (dt.date(2026, 1, 26), "Republic Day"),
    (dt.date(2026, 3, 3), "Holi (provisional)"),
    (dt.date(2026, 3, 26), "Shri Ram Navami (provisional)"),
    (dt.date(2026, 3, 31), "Shri Mahavir Jayanti (provisional)"),
    (dt.date(2026, 4, 3), "Good Friday"),
    (dt.date(2026, 4, 14), "Dr. Baba Saheb Ambedkar Jayanti"),
    (dt.date(2026, 5, 1), "Maharashtra Day"),
    (dt.date(2026, 5, 28), "Bakri Id (provisional)"),
    (dt.date(2026, 6, 26), "Muharram (provisional)"),
    (dt.date(2026, 9, 14), "Ganesh Chaturthi (provisional)"),
    (dt.date(2026, 10, 2), "Mahatma Gandhi Jayanti"),
    (dt.date(2026, 10, 20), "Dussehra (provisional)"),
    (dt.date(2026, 11, 10), "Diwali Balipratipada (provisional)"),
    (dt.date(2026, 11, 24), "Prakash Gurpurb Sri Guru Nanak Dev (provisional)"),
    (dt.date(2026, 12, 25), "Christmas"),
    (dt.date(2027, 1, 26), "Republic Day (provisional)"),
    (dt.date(2027, 3, 22), "Holi (provisional)"),
    (dt.date(2027, 3, 26), "Good Friday (provisional)"),
    (dt.date(2027, 4, 14), "Dr. Baba Saheb Ambedkar Jayanti (provisional)"),
    (dt.date(2027, 4, 15), "Shri Ram Navami (provisional)"),
    (dt.date(2027, 5, 17), "Bakri Id (provisional)"),
    (dt.date(2027, 6, 16), "Muharram (provisional)"),
    (dt.date(2027, 10, 29), "Diwali Laxmi Pujan (provisional)"),
]


def seed(apps, schema_editor):
    MarketHoliday = apps.get_model("subscriptions", "MarketHoliday")
    for date, description in NSE_HOLIDAYS:
        MarketHoliday.objects.get_or_create(exchange="NSE", date=date, defaults={"description": description})


def unseed(apps, schema_editor):
    MarketHoliday = apps.get_model("subscriptions", "MarketHoliday")
    MarketHoliday.objects.filter(exchange="NSE", date__in=[d for d, _ in NSE_HOLIDAYS]).delete()


class Migration(migrations.Migration):
    dependencies = [("subscriptions", "0001_initial")]

    operations = [migrations.RunPython(seed, unseed)]
