from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("kite/", include("subscriptions.urls")),
    path("api/", include("tickerproject.api_urls")),
    path("", include("streaming.urls")),
]
