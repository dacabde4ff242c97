from django.apps import AppConfig


class HistoryConfig(AppConfig):
    name = "history"
    verbose_name = "History and schedule"

    def ready(self) -> None:
        from history import signals  # noqa: F401  (backfill for new subscriptions after commit)
