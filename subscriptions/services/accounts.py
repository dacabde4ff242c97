"""Kite login for a trading account, and the account's secrets.

Flow: the operator presses "Log in with Kite" → `kite_login_state_issue` remembers a single-use nonce
in the operator's session → `account_login_url` → Kite's login page → Kite redirects to /kite/callback/
with a `request_token` and our `redirect_params` (account, state) → `kite_login_state_consume` checks
the nonce → `account_complete_login` exchanges the token for an access token through
`KiteConnect.generate_session` and stores it (encrypted). Nothing here logs or returns a secret.

The nonce exists because the callback is a GET any page can make a signed-in browser send: without it
another site could feed its own request_token to an account (login CSRF) or mark the account unhealthy.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import logging
import secrets
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from django.conf import settings
from django.contrib.sessions.backends.base import SessionBase
from django.core.exceptions import ValidationError
from django.utils import timezone

from subscriptions.models import TradingAccount

if TYPE_CHECKING:
    from kiteconnect import KiteConnect

logger = logging.getLogger(__name__)


# Pending "Log in with Kite" round trips in the operator's session: [{digest, account, user, expires}].
KITE_LOGIN_STATES_SESSION_KEY = "kite_login_states"
# Each visit to /kite/login/<id>/ (a GET any page can trigger) adds one; the oldest go first.
KITE_LOGIN_STATES_MAX_PENDING = 10

_START_AGAIN = "Nothing was changed; start again with “Log in with Kite” on the account's page."


class KiteLoginError(Exception):
    """The token exchange failed; the message is safe to show (it carries no secret)."""


class KiteLoginStateError(Exception):
    """A callback's state is missing, unknown, used, expired or bound to another account or user.

    The message is safe to show; `reason` is a short code for the log line.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"Kite login refused: {message} {_START_AGAIN}")
        self.reason = reason


def _state_digest(state: str) -> str:
    # Only a digest sits in the session, so a leaked session row cannot finish someone's login.
    return hashlib.sha256(state.encode()).hexdigest()


def _pending_states(session: SessionBase) -> list[dict[str, Any]]:
    pending = session.get(KITE_LOGIN_STATES_SESSION_KEY)
    return [entry for entry in pending if isinstance(entry, dict)] if isinstance(pending, list) else []


def kite_login_state_issue(
    *, session: SessionBase, account_id: int, user_id: int, now: dt.datetime | None = None
) -> str:
    """A fresh single-use nonce for one login round trip of `account_id` by `user_id`, kept in `session`.

    It expires after settings.KITE_LOGIN_STATE_TTL_S; logins of several accounts may be pending at once.
    """
    now_s = (now or timezone.now()).timestamp()
    state = secrets.token_urlsafe(32)
    pending = [entry for entry in _pending_states(session) if entry.get("expires", 0) > now_s]
    pending.append(
        {
            "digest": _state_digest(state),
            "account": account_id,
            "user": user_id,
            "expires": now_s + settings.KITE_LOGIN_STATE_TTL_S,
        }
    )
    session[KITE_LOGIN_STATES_SESSION_KEY] = pending[-KITE_LOGIN_STATES_MAX_PENDING:]
    return state


def kite_login_state_consume(
    *, session: SessionBase, state: str, account_id: int | None, user_id: int, now: dt.datetime | None = None
) -> None:
    """Accept a callback's `state` once: issued in this session, to this user, for this account, unexpired.

    Raises KiteLoginStateError otherwise. A matching state is removed (a replay is refused); a state
    presented with the wrong account or user stays pending, so a forged callback cannot cancel a real login.
    """
    if not state:
        raise KiteLoginStateError("missing", "the callback carried no login state, so no login started here sent it.")
    now_s = (now or timezone.now()).timestamp()
    digest = _state_digest(state)
    pending = _pending_states(session)
    match = None
    for entry in pending:  # compare with every entry so the time taken does not tell which one matched
        if hmac.compare_digest(str(entry.get("digest", "")), digest):
            match = entry
    live = [entry for entry in pending if entry.get("expires", 0) > now_s]
    if match is None or match.get("expires", 0) <= now_s:
        if len(live) != len(pending):
            session[KITE_LOGIN_STATES_SESSION_KEY] = live
        if match is None:
            raise KiteLoginStateError(
                "unknown", "the callback's login state was not issued to this browser session or was already used."
            )
        minutes = max(1, round(settings.KITE_LOGIN_STATE_TTL_S / 60))
        raise KiteLoginStateError("expired", f"the login was started more than {minutes} minutes ago and expired.")
    if match.get("user") != user_id:
        raise KiteLoginStateError("other_user", "the login was started by another user.")
    if account_id is None or match.get("account") != account_id:
        raise KiteLoginStateError("other_account", "the callback names another account than the login started for.")
    session[KITE_LOGIN_STATES_SESSION_KEY] = [entry for entry in live if entry is not match]


def kite_client(*, account: TradingAccount, with_token: bool = True) -> KiteConnect:
    """A REST client for the account, pointed at settings.KITE_API_ROOT (Kite or the simulator)."""
    # Imported here, not with the module: the kiteconnect package also loads its websocket ticker's
    # Twisted and autobahn (about 30 MB), which only a process that calls Kite's REST API needs.
    from kiteconnect import KiteConnect

    client = KiteConnect(api_key=account.api_key, root=settings.KITE_API_ROOT)
    if with_token and account.access_token:
        client.set_access_token(account.access_token)
    return client


def account_check_can_log_in(*, account: TradingAccount) -> None:
    """Raise ValidationError when the account cannot log in to Kite (a mock account, no api_key)."""
    if account.is_mock:
        raise ValidationError("A mock account streams the mock market and needs no Kite login.")
    if not account.api_key:
        raise ValidationError({"api_key": "Set the account's api_key before logging in."})


def account_login_url(*, account: TradingAccount, state: str) -> str:
    """Kite's login page for this account's api_key; Kite hands `account=<id>&state=<state>` back to the callback."""
    account_check_can_log_in(account=account)
    redirect_params = urlencode({"account": account.pk, "state": state})
    query = urlencode({"v": "3", "api_key": account.api_key, "redirect_params": redirect_params})
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
    from kiteconnect import exceptions as kite_exceptions

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
