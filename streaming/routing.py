"""Websocket routes (the chain consumer comes with the [chain] issue)."""

websocket_urlpatterns: list = []
