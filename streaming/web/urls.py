"""Pages served by the streaming app: the option chain page and a sign-in page for it."""

from django.contrib.auth import views as auth_views
from django.urls import path
from django.views.generic import RedirectView

from streaming.web import views

app_name = "streaming"

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="streaming:chain", permanent=False), name="home"),
    path("chain/", views.chain_page, name="chain"),
    path(
        "login/",
        auth_views.LoginView.as_view(
            template_name="streaming/login.html", redirect_authenticated_user=True, next_page="streaming:chain"
        ),
        name="login",
    ),
    path("logout/", auth_views.LogoutView.as_view(next_page="streaming:login"), name="logout"),
]
