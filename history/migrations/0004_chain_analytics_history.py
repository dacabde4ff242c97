"""The chain analytics' history (ATM IV samples, chains' intraday series) and its daily pruning job
(15:50 IST, after the close), added to the beat schedule like 0003's jobs."""

from django.db import migrations, models

PRUNE_JOB = "Chain history prune"


def add_prune_job(apps, schema_editor):
    CrontabSchedule = apps.get_model("django_celery_beat", "CrontabSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTasks = apps.get_model("django_celery_beat", "PeriodicTasks")
    if PeriodicTask.objects.filter(name=PRUNE_JOB).exists():
        return
    crontab, _ = CrontabSchedule.objects.get_or_create(
        minute="50", hour="15", day_of_week="*", day_of_month="*", month_of_year="*", timezone="Asia/Kolkata"
    )
    PeriodicTask.objects.create(
        name=PRUNE_JOB,
        task="history.chain_history_prune",
        crontab=crontab,
        enabled=True,
        description="Drop old intraday series and ATM IV minutes (each session's close stays).",
    )
    from django.utils import timezone

    PeriodicTasks.objects.update_or_create(ident=1, defaults={"last_update": timezone.now()})


def remove_prune_job(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=PRUNE_JOB).delete()


class Migration(migrations.Migration):

    dependencies = [
        ('history', '0003_default_beat_schedule'),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [
        migrations.CreateModel(
            name='AtmIvSample',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('underlying', models.CharField(max_length=32)),
                ('bucket', models.CharField(choices=[('weekly', 'Nearest weekly'), ('monthly', 'Nearest monthly')], max_length=8)),
                ('expiry', models.DateField()),
                ('session_day', models.DateField()),
                ('timestamp', models.DateTimeField()),
                ('atm_iv', models.FloatField()),
                ('is_mock', models.BooleanField(default=False)),
            ],
            options={
                'ordering': ['underlying', 'bucket', 'timestamp'],
                'indexes': [models.Index(fields=['underlying', 'bucket', 'session_day'], name='atm_iv_session_idx')],
                'constraints': [models.UniqueConstraint(fields=('underlying', 'bucket', 'timestamp'), name='atm_iv_sample_unique')],
            },
        ),
        migrations.CreateModel(
            name='ChainSeriesPoint',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('underlying', models.CharField(max_length=32)),
                ('expiry', models.DateField()),
                ('session_day', models.DateField()),
                ('timestamp', models.DateTimeField()),
                ('spot', models.FloatField(null=True)),
                ('forward', models.FloatField(null=True)),
                ('atm_strike', models.FloatField(null=True)),
                ('atm_iv', models.FloatField(null=True)),
                ('straddle', models.FloatField(null=True)),
                ('pcr_oi', models.FloatField(null=True)),
                ('ce_oi_change', models.FloatField(null=True)),
                ('pe_oi_change', models.FloatField(null=True)),
                ('net_gex', models.FloatField(null=True)),
                ('is_mock', models.BooleanField(default=False)),
            ],
            options={
                'ordering': ['underlying', 'expiry', 'timestamp'],
                'indexes': [models.Index(fields=['underlying', 'expiry', 'session_day'], name='chain_series_session_idx')],
                'constraints': [models.UniqueConstraint(fields=('underlying', 'expiry', 'timestamp'), name='chain_series_point_unique')],
            },
        ),
        migrations.RunPython(add_prune_job, remove_prune_job),
    ]
