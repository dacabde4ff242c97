from django.apps import AppConfig


class StreamingConfig(AppConfig):
    name = "streaming"

    def ready(self) -> None:
        from streaming import checks  # noqa: F401  (registers the deploy checks)
