"""Kite login for a trading account, and the account's secrets.

Flow: the operator presses "Log in with Kite" → `account_login_url` → Kite's login page → Kite
redirects to /kite/callback/ with a `request_token` → `account_complete_login` exchanges it for an
access token through `KiteConnect.generate_session` and stores it (encrypted). Nothing here logs or
returns a secret.
"""

from __future__ import annotations

import datetime as dt
import logging
from urllib.parse import urlencode

from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils import timezone
from kiteconnect import KiteConnect
from kiteconnect import exceptions as kite_exceptions

from subscriptions.models import TradingAccount

logger = logging.getLogger(__name__)


class KiteLoginError(Exception):
    """The token exchange failed; the message is safe to show (it carries no secret)."""


def kite_client(*, account: TradingAccount, with_token: bool = True) -> KiteConnect:
    """A REST client for the account, pointed at settings.KITE_API_ROOT (Kite or the simulator)."""
    client = KiteConnect(api_key=account.api_key, root=settings.KITE_API_ROOT)
    if with_token and account.access_token:
        client.set_access_token(account.access_token)
    return client


def account_login_url(*, account: TradingAccount) -> str:
    """Kite's login page for this account's api_key; Kite hands `account=<id>` back to the callback."""
    if account.is_mock:
        raise ValidationError("A mock account streams the mock market and needs no Kite login.")
    if not account.api_key:
        raise ValidationError({"api_key": "Set the account's api_key before logging in."})
    query = urlencode({"v": "3", "api_key": account.api_key, "redirect_params": urlencode({"account": account.pk})})
    return f"{settings.KITE_LOGIN_URL}?{query}"


def account_complete_login(
    *, account: TradingAccount, request_token: str, now: dt.datetime | None = None
) -> TradingAccount:
    """Exchange a request_token for an access token and store it; the account's health becomes ok.

    Raises KiteLoginError (and records the failure on the account) when Kite refuses the exchange.
    """
    if account.is_mock:
        raise KiteLoginError("A mock account needs no Kite login.")
    if not request_token:
        raise KiteLoginError("Kite did not send a request_token.")
    if not account.api_secret:
        raise KiteLoginError(f"Account {account.label!r} has no api_secret: set it in the admin first.")
    now = now or timezone.now()
    try:
        session = kite_client(account=account, with_token=False).generate_session(request_token, account.api_secret)
    except (kite_exceptions.KiteException, OSError, ValueError) as exc:
        # OSError covers requests' connection errors; the message never includes the secret or the token.
        reason = f"Kite login failed: {type(exc).__name__}: {exc}"
        auth = isinstance(exc, kite_exceptions.TokenException | kite_exceptions.InputException)
        account_record_health(
            account=account,
            health=TradingAccount.Health.AUTH_FAILED if auth else TradingAccount.Health.ERROR,
            error=reason,
            now=now,
        )
        logger.warning("login for account %s failed: %s", account.pk, type(exc).__name__)
        raise KiteLoginError(reason) from exc
    access_token = session.get("access_token") or ""
    if not access_token:
        raise KiteLoginError("Kite's session response had no access_token.")
    account.access_token = access_token
    account.kite_user_id = str(session.get("user_id") or account.kite_user_id)[:32]
    account.token_expires_at = TradingAccount.token_expiry_after(now)
    account.health = TradingAccount.Health.OK
    account.last_error = ""
    account.health_changed_at = now
    account.save(
        update_fields=[
            "access_token",
            "kite_user_id",
            "token_expires_at",
            "health",
            "last_error",
            "health_changed_at",
            "updated_at",
        ]
    )
    logger.info("account %s logged in to Kite as %s", account.pk, account.kite_user_id)
    return account


def account_record_health(
    *, account: TradingAccount, health: str, error: str = "", now: dt.datetime | None = None
) -> TradingAccount:
    """Record an account's health (ok / auth_failed / error) and the last error."""
    if health not in TradingAccount.Health.values:
        raise ValueError(f"unknown health {health!r}")
    changed = account.health != health
    account.health = health
    account.last_error = error[:2000]
    fields = ["health", "last_error", "updated_at"]
    if changed:
        account.health_changed_at = now or timezone.now()
        fields.append("health_changed_at")
    account.save(update_fields=fields)
    return account


def account_record_auth_failure(*, account_id: int, error: str) -> TradingAccount:
    """Record that Kite rejected the account's token (the ticker's report): the reconciler then moves
    its instruments to healthy accounts."""
    account = TradingAccount.objects.get(pk=account_id)
    return account_record_health(account=account, health=TradingAccount.Health.AUTH_FAILED, error=error)


def account_set_secrets(
    *, account: TradingAccount, api_secret: str | None = None, access_token: str | None = None, save: bool = True
) -> TradingAccount:
    """Replace the api_secret and/or access token; None or blank keeps the stored value.

    A token set by hand has no known expiry, so `token_expires_at` is cleared with it. With `save=False`
    the fields are only set, for a caller that saves the account itself (the admin form, on a new account).
    """
    fields = []
    if api_secret:
        account.api_secret = api_secret
        fields.append("api_secret")
    if access_token:
        account.access_token = access_token
        account.token_expires_at = None
        fields += ["access_token", "token_expires_at"]
    if fields and save:
        account.save(update_fields=[*fields, "updated_at"])
    return account
