"""REST endpoints for live data: option chain snapshots, the list of chains, health."""

from __future__ import annotations

import datetime as dt
import logging
import time
from typing import Any

from django.conf import settings
from django.db import connection
from django.http import HttpResponse
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from streaming.snapshot_store import get_chain_snapshot
from streaming.status import streaming_status_by_account
from streaming.web.chain_csv import chain_csv, export_filename, series_csv
from streaming.web.serializers import ChainListItemSerializer, ChainSnapshotSerializer, HealthSerializer
from subscriptions import selectors
from subscriptions.services.reconcile import last_reconcile_report

logger = logging.getLogger(__name__)

# A ticker whose newest tick is older than this (seconds) is reported as stale by the health check.
TICKER_STALE_AFTER_S = 60.0


class ChainListView(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(responses=ChainListItemSerializer(many=True), summary="Option chains: underlyings and expiries")
    def get(self, request: Request) -> Response:
        chains = []
        for underlying in selectors.option_underlyings():
            expiries = [e.isoformat() for e in selectors.option_expiries(underlying=underlying)]
            streaming = [e for e in expiries if get_chain_snapshot(underlying, e) is not None]
            chains.append({"underlying": underlying, "expiries": expiries, "streaming": streaming})
        return Response(chains)


class ChainSnapshotView(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(
        responses=ChainSnapshotSerializer,
        summary="The latest snapshot of one option chain",
        description="The same payload the websocket sends (docs/websocket.md). 404 when no ticker streams it.",
    )
    def get(self, request: Request, underlying: str, expiry: str) -> Response:
        return Response(_snapshot_or_404(underlying, expiry))


def _snapshot_or_404(underlying: str, expiry: str) -> dict[str, Any]:
    try:
        dt.date.fromisoformat(expiry)
    except ValueError as exc:
        raise ValidationError({"expiry": f"{expiry!r} is not a date: use YYYY-MM-DD."}) from exc
    snapshot = get_chain_snapshot(underlying.upper(), expiry)
    if snapshot is None:
        raise NotFound(f"No live data for {underlying.upper()} {expiry}: not subscribed, or no ticker running.")
    return snapshot


def _csv_response(text: str, filename: str) -> HttpResponse:
    response = HttpResponse(text, content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


class ChainCsvView(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(
        responses={(200, "text/csv"): str},
        summary="The latest snapshot of one option chain as CSV",
        description="One row per strike: ce_* fields, strike, pe_* fields (the side fields of docs/websocket.md).",
    )
    def get(self, request: Request, underlying: str, expiry: str) -> HttpResponse:
        snapshot = _snapshot_or_404(underlying, expiry)
        return _csv_response(chain_csv(snapshot), export_filename(snapshot, "chain"))


class ChainSeriesCsvView(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(
        responses={(200, "text/csv"): str},
        summary="One option chain's intraday series as CSV",
        description="One row per minute from the session's start: time (IST), then the series fields.",
    )
    def get(self, request: Request, underlying: str, expiry: str) -> HttpResponse:
        snapshot = _snapshot_or_404(underlying, expiry)
        return _csv_response(series_csv(snapshot), export_filename(snapshot, "series"))


def _check(ok: bool, detail: str) -> dict[str, Any]:
    return {"ok": ok, "detail": detail}


def health_checks() -> dict[str, dict[str, Any]]:
    checks: dict[str, dict[str, Any]] = {}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        checks["database"] = _check(True, connection.vendor)
    except Exception as exc:
        checks["database"] = _check(False, type(exc).__name__)
    if settings.REDIS_URL:
        try:
            from tickerproject.platform.redis_client import sync_redis

            sync_redis().ping()
            checks["redis"] = _check(True, "ping ok")
        except Exception as exc:
            checks["redis"] = _check(False, type(exc).__name__)
    if checks["database"]["ok"]:
        unassigned = selectors.unassigned_active_subscriptions().count()
        checks["subscriptions"] = _check(
            unassigned == 0,
            "every active subscription is assigned" if unassigned == 0 else f"{unassigned} active not assigned",
        )
    reports = list(streaming_status_by_account().values())
    last_ticks = [float(r["last_tick_at"]) for r in reports if r.get("last_tick_at")]
    if not reports:
        checks["ticker"] = _check(False, "no ticker has reported")
    elif not last_ticks:
        checks["ticker"] = _check(False, "no tick received yet")
    else:
        age = time.time() - max(last_ticks)
        checks["ticker"] = _check(age <= TICKER_STALE_AFTER_S, f"last tick {age:.1f} s ago")
    checks["reconcile"] = _reconcile_check()
    return checks


def _reconcile_check() -> dict[str, Any]:
    """The last reconcile report in one line: not ok while subscriptions exceed the usable capacity."""
    try:
        report = last_reconcile_report()
    except Exception as exc:  # the cache (Redis) may be down: the redis check reports that
        return _check(False, f"report unreadable: {type(exc).__name__}")
    if report is None:
        return _check(True, "the reconciler has not run yet")
    age = max(time.time() - report.at.timestamp(), 0.0)
    return _check(
        report.overflow_count == 0,
        f"last run {age:.0f} s ago: {report.assigned} of {report.active} active assigned, "
        f"capacity {report.capacity}, {report.overflow_count} over capacity (not streamed)",
    )


class HealthView(APIView):
    """Liveness for load balancers and people: 503 when the database or Redis is down."""

    permission_classes = [AllowAny]

    @extend_schema(responses={200: HealthSerializer, 503: HealthSerializer}, summary="Service health")
    def get(self, request: Request) -> Response:
        checks = health_checks()
        vital_ok = all(checks[name]["ok"] for name in ("database", "redis") if name in checks)
        overall = "down" if not vital_ok else ("ok" if all(c["ok"] for c in checks.values()) else "degraded")
        code = status.HTTP_200_OK if vital_ok else status.HTTP_503_SERVICE_UNAVAILABLE
        return Response({"status": overall, "checks": checks}, status=code)
