"""The Kite login flow, mounted at /kite/."""

from django.urls import path

from subscriptions import views

app_name = "kite"

urlpatterns = [
    path("login/<int:account_id>/", views.kite_login, name="login"),
    path("callback/", views.kite_callback, name="callback"),
]
