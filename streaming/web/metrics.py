"""Prometheus metrics: `/metrics/` (text exposition format).

With METRICS_TOKEN set, a scrape needs `Authorization: Bearer <METRICS_TOKEN>` (or a signed-in staff
session); without it the endpoint is open, which `check --deploy` warns about: the figures carry no
secret, but they name the accounts and show how busy each one is.

Counters and the latency histogram (`streaming.status`) are updated by the ticker loop in its own
process. The per connection gauges come from the ticker's status document
(`streaming.status.ticker_status`) at scrape time, so a web process scraping on its own (ticker in
another process, REDIS_URL set) still reports them.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterator

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

# Importing streaming.status also registers the ticker's counters, so every scrape lists them.
from streaming.status import ticker_status

CHAIN_WS_BAD_MESSAGES_TOTAL = Counter(
    "chain_ws_bad_messages_total",
    "Chain websocket client messages answered with an error and skipped",
    ["reason"],  # binary | too_large | too_deep | not_json | not_object | unknown_action
)


class TickerStatusCollector(Collector):
    def collect(self) -> Iterator[Metric]:
        status = ticker_status() or {}
        labels = ["account", "connection", "mode"]
        rate = GaugeMetricFamily("ticker_connection_ticks_per_second", "Ticks per second", labels=labels)
        instruments = GaugeMetricFamily("ticker_connection_instruments", "Instruments subscribed", labels=labels)
        reconnects = GaugeMetricFamily("ticker_connection_reconnects", "Reconnects since start", labels=labels)
        last_tick = GaugeMetricFamily(
            "ticker_connection_last_tick_timestamp", "Epoch s of the last tick", labels=labels
        )
        up = GaugeMetricFamily("ticker_connection_up", "1 when the connection streams", labels=labels)
        for conn in status.get("connections", []):
            key = [conn["label"], str(conn["connection_index"]), conn["mode"]]
            rate.add_metric(key, conn["ticks_per_second"])
            instruments.add_metric(key, conn["instruments"])
            reconnects.add_metric(key, conn["reconnects"])
            last_tick.add_metric(key, conn["last_tick_at"] or 0)
            up.add_metric(key, 1.0 if conn["state"] in ("connected", "streaming") else 0.0)
        yield from (rate, instruments, reconnects, last_tick, up)
        alive = GaugeMetricFamily("ticker_up", "1 when a ticker reported its status recently")
        alive.add_metric([], 1.0 if status else 0.0)
        yield alive


_collector = TickerStatusCollector()
try:
    REGISTRY.register(_collector)
except ValueError:  # already registered (module reloaded in tests)
    pass


def scrape_allowed(request: HttpRequest) -> bool:
    """Open without METRICS_TOKEN; otherwise the bearer token or a staff session."""
    token = settings.METRICS_TOKEN
    if not token:
        return True
    user = getattr(request, "user", None)
    if user is not None and user.is_active and user.is_staff:
        return True
    scheme, _, offered = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(offered.strip().encode(), token.encode())


def metrics_view(request: HttpRequest) -> HttpResponse:
    if not scrape_allowed(request):
        response = HttpResponse("metrics need 'Authorization: Bearer <METRICS_TOKEN>'\n", status=401)
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    return HttpResponse(generate_latest(REGISTRY), content_type=CONTENT_TYPE_LATEST)
