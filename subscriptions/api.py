"""REST endpoints for instruments, subscriptions and accounts (thin: parse, call a service, answer)."""

from __future__ import annotations

import logging
from typing import Any

import django_filters
from django.db.models import Count, Q, QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response

from streaming.status import streaming_status_by_account
from subscriptions.models import Instrument, Subscription, TradingAccount
from subscriptions.serializers import (
    AccountStatusSerializer,
    ChainPlanSerializer,
    ChainSubscribeSerializer,
    InstrumentSerializer,
    SubscriptionSerializer,
)
from subscriptions.services import chains as chain_services
from subscriptions.services import subscriptions as subscription_services
from tickerproject.api_common import IsStaffOrReadOnly, StandardPagination, service_errors
from tickerproject.platform import reload_notifications as notifications

logger = logging.getLogger(__name__)

WAIT_PARAMETER = OpenApiParameter(
    "wait",
    OpenApiTypes.BOOL,
    description="Block until the running ticker has applied the change (at most `timeout` seconds, default 10); "
    "the answer then says `ticker_applied: true|false`.",
)
WAIT_MAX_SECONDS = 30.0


def requested_wait(request: Request) -> float | None:
    """The `?wait=1[&timeout=S]` option, checked before anything is written (bad values are a 400)."""
    if request.query_params.get("wait", "").lower() not in ("1", "true", "yes"):
        return None
    raw = request.query_params.get("timeout", "10")
    try:
        timeout = float(raw)
    except ValueError:
        timeout = -1.0
    if not 0 <= timeout <= WAIT_MAX_SECONDS:
        raise ValidationError({"timeout": f"Give seconds between 0 and {WAIT_MAX_SECONDS:g}, not {raw!r}."})
    return timeout


def wait_for_ticker(timeout: float | None, *, reason: str) -> dict[str, Any]:
    """After a committed change: with a requested wait, announce it and wait for the ticker's ack."""
    if timeout is None:
        return {}
    return {"ticker_applied": notifications.request_reload_and_wait(reason=reason, timeout=timeout)}


class InstrumentFilter(django_filters.FilterSet):
    q = django_filters.CharFilter(method="search", label="Search tradingsymbol or name (contains, any case)")
    underlying = django_filters.CharFilter(field_name="underlying", lookup_expr="iexact")
    expiry = django_filters.DateFilter()
    expiry_from = django_filters.DateFilter(field_name="expiry", lookup_expr="gte")
    expiry_to = django_filters.DateFilter(field_name="expiry", lookup_expr="lte")
    instrument_type = django_filters.MultipleChoiceFilter(choices=Instrument.InstrumentType.choices)
    exchange = django_filters.CharFilter(lookup_expr="iexact")
    segment = django_filters.CharFilter(lookup_expr="iexact")
    strike_min = django_filters.NumberFilter(field_name="strike", lookup_expr="gte")
    strike_max = django_filters.NumberFilter(field_name="strike", lookup_expr="lte")
    listed = django_filters.BooleanFilter(field_name="delisted_at", lookup_expr="isnull", label="Not delisted")
    instrument_token = django_filters.NumberFilter()

    class Meta:
        model = Instrument
        fields: list[str] = []

    def search(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        value = value.strip()
        return queryset.filter(Q(tradingsymbol__icontains=value) | Q(name__icontains=value)) if value else queryset


class InstrumentViewSet(viewsets.ReadOnlyModelViewSet):
    """Instruments from Kite's dump; search with `q`, filter by underlying, expiry, type and more."""

    # `id` last: pages must not overlap where the model's ordering ties (e.g. CE and PE of a strike).
    queryset = Instrument.objects.order_by("underlying", "expiry", "strike", "instrument_type", "id")
    serializer_class = InstrumentSerializer
    filterset_class = InstrumentFilter
    pagination_class = StandardPagination
    permission_classes = [IsAuthenticated]


class SubscriptionFilter(django_filters.FilterSet):
    underlying = django_filters.CharFilter(field_name="instrument__underlying", lookup_expr="iexact")
    expiry = django_filters.DateFilter(field_name="instrument__expiry")
    instrument_type = django_filters.MultipleChoiceFilter(
        field_name="instrument__instrument_type", choices=Instrument.InstrumentType.choices
    )
    unassigned = django_filters.BooleanFilter(field_name="account", lookup_expr="isnull")

    class Meta:
        model = Subscription
        fields = ["is_active", "mode", "account", "instrument"]


@extend_schema_view(
    create=extend_schema(parameters=[WAIT_PARAMETER]),
    update=extend_schema(parameters=[WAIT_PARAMETER]),
    partial_update=extend_schema(parameters=[WAIT_PARAMETER]),
    destroy=extend_schema(parameters=[WAIT_PARAMETER]),
)
class SubscriptionViewSet(viewsets.ModelViewSet):
    """Subscriptions (what the ticker streams). Anyone signed in reads; staff create, change and delete.
    Changes reach the running ticker after commit; `?wait=1` blocks until it applied them."""

    queryset = Subscription.objects.select_related("instrument", "account").order_by(
        "-is_active",
        "instrument__underlying",
        "instrument__expiry",
        "instrument__strike",
        "instrument__instrument_type",
        "id",
    )
    serializer_class = SubscriptionSerializer
    filterset_class = SubscriptionFilter
    pagination_class = StandardPagination
    permission_classes = [IsStaffOrReadOnly]

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        wait = requested_wait(request)
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        with service_errors():
            subscription = subscription_services.subscription_create(
                instrument=data["instrument"],
                mode=data.get("mode", Subscription.Mode.FULL),
                is_active=data.get("is_active", True),
            )
        body = {**self.get_serializer(subscription).data, **wait_for_ticker(wait, reason="api: subscription added")}
        return Response(body, status=status.HTTP_201_CREATED)

    def update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        wait = requested_wait(request)
        subscription = self.get_object()
        serializer = self.get_serializer(subscription, data=request.data, partial=kwargs.pop("partial", False))
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        with service_errors():
            subscription = subscription_services.subscription_change(
                subscription=subscription, mode=data.get("mode"), is_active=data.get("is_active")
            )
        body = {
            **self.get_serializer(subscription).data,
            **wait_for_ticker(wait, reason="api: subscription changed"),
        }
        return Response(body)

    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        wait = requested_wait(request)
        subscription = self.get_object()
        subscription_services.subscription_delete(subscription=subscription)
        waited = wait_for_ticker(wait, reason="api: subscription deleted")
        return Response(waited, status=status.HTTP_200_OK) if waited else Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(
        request=ChainSubscribeSerializer,
        responses=ChainPlanSerializer,
        parameters=[WAIT_PARAMETER],
        description="Subscribe N strikes either side of the ATM strike of one option chain (CE and PE). "
        "With `preview: true` only report what would be added. Already-subscribed instruments are skipped.",
    )
    @action(detail=False, methods=["post"], url_path="subscribe-chain")
    def subscribe_chain(self, request: Request) -> Response:
        wait = requested_wait(request)
        form = ChainSubscribeSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        args = {k: form.validated_data[k] for k in ("underlying", "expiry", "strikes_each_side", "mode")}
        with service_errors():
            if form.validated_data["preview"]:
                plan = chain_services.chain_plan(**args)
                return Response({**ChainPlanSerializer(plan).data, "created": 0, "preview": True})
            result = chain_services.chain_subscribe(**args)
        body = {
            **ChainPlanSerializer(result.plan).data,
            "created": len(result.created),
            "preview": False,
            **wait_for_ticker(wait, reason=f"api: chain {args['underlying']} subscribed"),
        }
        return Response(body, status=status.HTTP_201_CREATED if result.created else status.HTTP_200_OK)


class AccountViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Trading accounts: health, token validity, capacity used and free, what the ticker streams.
    Never any secret (no api_key, api_secret or access token)."""

    serializer_class = AccountStatusSerializer
    pagination_class = StandardPagination
    permission_classes = [IsAuthenticated]
    filterset_fields = ["is_active", "is_mock", "health"]

    def get_queryset(self) -> QuerySet[TradingAccount]:
        return TradingAccount.objects.annotate(
            used=Count("subscriptions", filter=Q(subscriptions__is_active=True))
        ).order_by("label")

    def get_serializer_context(self) -> dict[str, Any]:
        return {**super().get_serializer_context(), "streaming_status": streaming_status_by_account()}
