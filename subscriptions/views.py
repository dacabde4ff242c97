"""The "Log in with Kite" flow for a trading account (staff only)."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.admin.views.decorators import staff_member_required
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, redirect
from django.urls import reverse
from django.views.decorators.http import require_GET

from subscriptions.models import TradingAccount
from subscriptions.services.accounts import KiteLoginError, account_complete_login, account_login_url

SESSION_KEY = "kite_login_account_id"


def _account_page(account_id: int | None) -> str:
    if account_id is None:
        return reverse("admin:subscriptions_tradingaccount_changelist")
    return reverse("admin:subscriptions_tradingaccount_change", args=[account_id])


@require_GET
@staff_member_required
def kite_login(request: HttpRequest, account_id: int) -> HttpResponse:
    """Send the operator to Kite's login page for this account."""
    account = get_object_or_404(TradingAccount, pk=account_id)
    try:
        url = account_login_url(account=account)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
        return redirect(_account_page(account.pk))
    # Kite echoes redirect_params back; the session is the fallback if an app's redirect drops them.
    request.session[SESSION_KEY] = account.pk
    return HttpResponseRedirect(url)


@require_GET
@staff_member_required
def kite_callback(request: HttpRequest) -> HttpResponse:
    """Kite redirects here with `request_token` and `status`; store the exchanged access token."""
    raw_id = request.GET.get("account") or request.session.get(SESSION_KEY)
    try:
        account_id = int(raw_id) if raw_id is not None else None
    except (TypeError, ValueError):
        account_id = None
    if account_id is None:
        messages.error(request, "Kite's callback did not say which account logged in; start again from the account.")
        return redirect(_account_page(None))
    account = get_object_or_404(TradingAccount, pk=account_id)
    status = request.GET.get("status", "")
    request_token = request.GET.get("request_token", "")
    if status != "success" or not request_token:
        messages.error(request, f"Kite login for {account.label} did not succeed (status {status or 'missing'}).")
        return redirect(_account_page(account.pk))
    try:
        account_complete_login(account=account, request_token=request_token)
    except KiteLoginError as exc:
        messages.error(request, f"{account.label}: {exc}")
    else:
        request.session.pop(SESSION_KEY, None)
        messages.success(
            request,
            f"{account.label} logged in to Kite as {account.kite_user_id}; "
            f"the token is valid until {account.token_expires_at:%Y-%m-%d %H:%M} UTC.",
        )
    return redirect(_account_page(account.pk))
