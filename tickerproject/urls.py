from django.contrib import admin
from django.urls import include, path

from streaming.web.metrics import metrics_view

urlpatterns = [
    path("admin/", admin.site.urls),
    path("kite/", include("subscriptions.urls")),
    path("api/", include("tickerproject.api_urls")),
    path("metrics/", metrics_view, name="metrics"),
    path("", include("streaming.web.urls")),
]
