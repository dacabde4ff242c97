"""The "Log in with Kite" flow for a trading account (staff only)."""

from __future__ import annotations

import logging

from django.contrib import messages
from django.contrib.admin.views.decorators import staff_member_required
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, redirect
from django.urls import reverse
from django.views.decorators.http import require_GET

from subscriptions.models import TradingAccount
from subscriptions.services.accounts import (
    KiteLoginError,
    KiteLoginStateError,
    account_check_can_log_in,
    account_complete_login,
    account_login_url,
    kite_login_state_consume,
    kite_login_state_issue,
)

logger = logging.getLogger(__name__)


def _staff_user_id(request: HttpRequest) -> int:
    """The signed-in user's id: these views are behind staff_member_required, so there is one."""
    user_id = request.user.pk
    assert user_id is not None, "staff_member_required lets only signed-in staff through"
    return user_id


def _account_page(account_id: int | None) -> str:
    if account_id is None:
        return reverse("admin:subscriptions_tradingaccount_changelist")
    return reverse("admin:subscriptions_tradingaccount_change", args=[account_id])


@require_GET
@staff_member_required
def kite_login(request: HttpRequest, account_id: int) -> HttpResponse:
    """Send the operator to Kite's login page for this account, with a single-use state for the callback."""
    account = get_object_or_404(TradingAccount, pk=account_id)
    try:
        account_check_can_log_in(account=account)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
        return redirect(_account_page(account.pk))
    state = kite_login_state_issue(session=request.session, account_id=account.pk, user_id=_staff_user_id(request))
    return HttpResponseRedirect(account_login_url(account=account, state=state))


@require_GET
@staff_member_required
def kite_callback(request: HttpRequest) -> HttpResponse:
    """Kite redirects here with `request_token`, `status` and our redirect_params (account, state).

    The state is checked before anything else: a callback this session's user did not start for this
    account changes nothing.
    """
    try:
        account_id: int | None = int(request.GET.get("account", ""))
    except ValueError:
        account_id = None
    try:
        kite_login_state_consume(
            session=request.session,
            state=request.GET.get("state", ""),
            account_id=account_id,
            user_id=_staff_user_id(request),
        )
    except KiteLoginStateError as exc:
        logger.warning("Kite callback refused (%s) for account %s, user %s", exc.reason, account_id, request.user.pk)
        messages.error(request, str(exc))
        return redirect(_account_page(account_id))
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
        messages.success(
            request,
            f"{account.label} logged in to Kite as {account.kite_user_id}; "
            f"the token is valid until {account.token_expires_at:%Y-%m-%d %H:%M} UTC.",
        )
    return redirect(_account_page(account.pk))
