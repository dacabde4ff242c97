"""ASGI entry point: HTTP through Django, websockets through Channels (served by uvicorn)."""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tickerproject.settings")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402  (needs Django set up first)
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import re_path  # noqa: E402

from streaming.web.routing import websocket_urlpatterns  # noqa: E402
from tickerproject.websocket_security import SameOriginValidator, refuse_unrouted  # noqa: E402

# The catch-all websocket route. Channels routes ASGI apps through Django's re_path, whose stub only
# accepts a Django view (returning an HttpResponse), so it does not take an ASGI callable.
unrouted = re_path(r"", refuse_unrouted)  # type: ignore[arg-type]

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        # Origin first (a foreign page gets nothing, not even a session lookup); a path no route
        # matches ends at the catch-all, refused instead of raising.
        "websocket": SameOriginValidator(AuthMiddlewareStack(URLRouter([*websocket_urlpatterns, unrouted]))),
    }
)
