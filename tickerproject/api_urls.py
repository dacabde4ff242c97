"""The REST API under /api/: routers, token login, the OpenAPI schema and its documentation UIs."""

from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView
from rest_framework.authtoken.views import ObtainAuthToken
from rest_framework.routers import DefaultRouter

from history.api import CandleViewSet
from streaming.api import ChainListView, ChainSnapshotView, HealthView
from subscriptions.api import AccountViewSet, InstrumentViewSet, SubscriptionViewSet
from tickerproject.api_throttling import ScopedRateThrottle


class TokenLoginView(ObtainAuthToken):
    """Exchange username and password for an API token (send it as `Authorization: Token <key>`)."""

    throttle_classes = [ScopedRateThrottle]
    throttle_scope = "login"


router = DefaultRouter()
router.register("instruments", InstrumentViewSet, basename="instrument")
router.register("subscriptions", SubscriptionViewSet, basename="subscription")
router.register("accounts", AccountViewSet, basename="account")
router.register("candles", CandleViewSet, basename="candle")

urlpatterns = [
    path("", include(router.urls)),
    path("chains/", ChainListView.as_view(), name="chain-list"),
    path("chains/<str:underlying>/<str:expiry>/", ChainSnapshotView.as_view(), name="chain-snapshot"),
    path("health/", HealthView.as_view(), name="health"),
    path("auth/token/", TokenLoginView.as_view(), name="api-token"),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    path("redoc/", SpectacularRedocView.as_view(url_name="schema"), name="redoc"),
]
