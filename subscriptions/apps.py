from django.apps import AppConfig


class SubscriptionsConfig(AppConfig):
    name = "subscriptions"
    verbose_name = "Subscriptions and accounts"

    def ready(self) -> None:
        from subscriptions import signals  # noqa: F401  (connects the reload notifications)
