"""The REST API under /api/: routers, token login, the OpenAPI schema and its documentation UIs."""

from typing import cast

from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView
from rest_framework.authtoken.models import Token
from rest_framework.authtoken.views import ObtainAuthToken
from rest_framework.parsers import BaseParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.routers import DefaultRouter
from rest_framework.settings import api_settings

from history.api import CandleViewSet
from streaming.web.api import ChainCsvView, ChainListView, ChainSeriesCsvView, ChainSnapshotView, HealthView
from subscriptions.api import AccountViewSet, InstrumentViewSet, SubscriptionViewSet
from tickerproject.api_throttling import ScopedRateThrottle
from tickerproject.client_address import client_address
from tickerproject.throttling import login_success_record


class TokenLoginView(ObtainAuthToken):
    """Exchange username and password for an API token (send it as `Authorization: Token <key>`).

    Guarded by the sign-in lockout (tickerproject.throttling) like the admin's and the chain page's
    sign-in, and rate limited per client address (scope "login")."""

    throttle_classes = [ScopedRateThrottle]
    throttle_scope = "login"
    # ObtainAuthToken names DRF's own parsers; the project's (nesting limit) apply here too.
    # (api_settings imports the classes on access; its stub types the setting as their dotted paths.)
    parser_classes = cast("list[type[BaseParser]]", api_settings.DEFAULT_PARSER_CLASSES)

    def post(self, request: Request, *args: object, **kwargs: object) -> Response:
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        user = serializer.validated_data["user"]
        token, _ = Token.objects.get_or_create(user=user)
        # No user_logged_in signal here (no session): clear the failed count as the other sign-ins do.
        login_success_record(address=client_address(request), username=user.get_username())
        return Response({"token": token.key})


router = DefaultRouter()
router.register("instruments", InstrumentViewSet, basename="instrument")
router.register("subscriptions", SubscriptionViewSet, basename="subscription")
router.register("accounts", AccountViewSet, basename="account")
router.register("candles", CandleViewSet, basename="candle")

urlpatterns = [
    path("", include(router.urls)),
    path("chains/", ChainListView.as_view(), name="chain-list"),
    path("chains/<str:underlying>/<str:expiry>/", ChainSnapshotView.as_view(), name="chain-snapshot"),
    path("chains/<str:underlying>/<str:expiry>/chain.csv", ChainCsvView.as_view(), name="chain-csv"),
    path("chains/<str:underlying>/<str:expiry>/series.csv", ChainSeriesCsvView.as_view(), name="chain-series-csv"),
    path("health/", HealthView.as_view(), name="health"),
    path("auth/token/", TokenLoginView.as_view(), name="api-token"),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    path("redoc/", SpectacularRedocView.as_view(url_name="schema"), name="redoc"),
]
