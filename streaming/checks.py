"""System checks of the streaming app (`manage.py check --deploy`)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Tags, Warning, register


@register(Tags.security, deploy=True)
def metrics_token_set(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    if settings.METRICS_TOKEN:
        return []
    return [
        Warning(
            "METRICS_TOKEN is not set: /metrics/ is readable by anyone who can reach the server.",
            hint="Set METRICS_TOKEN and give Prometheus the same value as a bearer token (docs/scaling.md), "
            "or block /metrics/ at the proxy.",
            id="streaming.W001",
        )
    ]
