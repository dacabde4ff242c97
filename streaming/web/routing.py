"""Websocket routes."""

from django.urls import re_path

from streaming.web.consumers import ChainConsumer

# Both parts are validated by the consumer, so a wrong one gets a close code and a reason.
websocket_urlpatterns = [
    re_path(r"^ws/chain/(?P<underlying>[^/]+)/(?P<expiry>[^/]+)/$", ChainConsumer.as_asgi()),
]
