"""The default periodic jobs, in the django-celery-beat tables so the operator can edit them in the admin.

Times are IST (Asia/Kolkata): reconcile subscriptions every minute, expiry cleanup 15:45 daily after
the close, instrument sync 08:30 daily (Kite publishes the dump after about 08:30), backfill 16:00 daily.
Existing tasks with the same names are left as the operator set them.
"""

from django.db import migrations

JOBS = [
    # name, task, crontab (minute, hour), description
    ("Reconcile subscriptions", "subscriptions.reconcile", ("*", "*"), "Assign active subscriptions to accounts."),
    ("Expiry cleanup", "subscriptions.expiry_cleanup", ("45", "15"), "Deactivate expired contracts; drop mock state."),
    ("Instrument sync", "subscriptions.instrument_sync", ("30", "8"), "Download Kite's instruments dump."),
    ("Historical backfill", "history.backfill", ("0", "16"), "Fetch missing candles for subscribed instruments."),
]


def create_schedule(apps, schema_editor):
    CrontabSchedule = apps.get_model("django_celery_beat", "CrontabSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTasks = apps.get_model("django_celery_beat", "PeriodicTasks")
    for name, task, (minute, hour), description in JOBS:
        if PeriodicTask.objects.filter(name=name).exists():
            continue
        crontab, _ = CrontabSchedule.objects.get_or_create(
            minute=minute,
            hour=hour,
            day_of_week="*",
            day_of_month="*",
            month_of_year="*",
            timezone="Asia/Kolkata",
        )
        PeriodicTask.objects.create(name=name, task=task, crontab=crontab, enabled=True, description=description)
    # Tell running beat schedulers that the schedule changed (what the admin's save does too).
    from django.utils import timezone

    PeriodicTasks.objects.update_or_create(ident=1, defaults={"last_update": timezone.now()})


def remove_schedule(apps, schema_editor):
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTask.objects.filter(name__in=[job[0] for job in JOBS]).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("history", "0002_backfill_progress"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create_schedule, remove_schedule)]
