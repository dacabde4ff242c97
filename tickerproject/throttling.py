"""Login throttling for every endpoint that checks a password: the admin's sign-in, the chain
page's and the API token login (`LOGIN_URL_NAMES`).

Failed sign-ins are counted in the cache (Redis when REDIS_URL, so every web worker sees the same
counts) per (client address, username) and per client address, the address being
`tickerproject.client_address` (X-Forwarded-For only from a trusted proxy). Past the limit, a POST
to any of them is answered 429 with Retry-After *before* the password is checked, until the window
ends:

- `LOGIN_THROTTLE_FAILURES` failures for one username from one address (default 5), so a guesser
  is stopped while the real user signing in from elsewhere is not locked out by a stranger;
- `LOGIN_THROTTLE_FAILURES_PER_ADDRESS` failures from one address over all usernames (default 20),
  which stops password spraying;
- both within `LOGIN_THROTTLE_WINDOW_S` seconds (default 900) of the first failure.

A successful sign-in clears the (address, username) count (the token login, which does not
fire `user_logged_in`, calls `login_success_record` itself). Failures are seen through Django's
`user_login_failed` signal, which every login path fires through `authenticate()`. The username is
read from the form, or from the JSON body the API may post. The token login is also rate limited by
DRF (scope "login", LOGIN_THROTTLE requests per minute, successful or not).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.contrib.auth.signals import user_logged_in, user_login_failed
from django.core.cache import cache
from django.http import HttpRequest, HttpResponse
from django.urls import reverse

from tickerproject.client_address import client_address
from tickerproject.platform.json_limits import loads_limited

log = logging.getLogger(__name__)

LOGIN_URL_NAMES = ("admin:login", "streaming:login", "api-token")
_KEY_PREFIX = "login-throttle:"


def _limits() -> tuple[int, int, int]:
    return (
        int(getattr(settings, "LOGIN_THROTTLE_FAILURES", 5)),
        int(getattr(settings, "LOGIN_THROTTLE_FAILURES_PER_ADDRESS", 20)),
        int(getattr(settings, "LOGIN_THROTTLE_WINDOW_S", 900)),
    )


def _digest(value: str) -> str:
    # Usernames are hashed so cache keys stay short and safe for any backend.
    return hashlib.sha256(value.strip().lower().encode()).hexdigest()[:32]


def _pair_key(address: str, username: str) -> str:
    return f"{_KEY_PREFIX}pair:{_digest(address + chr(0) + username)}"


def _address_key(address: str) -> str:
    return f"{_KEY_PREFIX}addr:{_digest(address)}"


def _bump(key: str, window_s: int) -> int:
    cache.add(key, 0, timeout=window_s)  # the window starts at the first failure
    try:
        return cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.set(key, 1, timeout=window_s)
        return 1


def login_failure_record(*, address: str, username: str) -> None:
    """Count one failed sign-in."""
    _, _, window_s = _limits()
    pair = _bump(_pair_key(address, username), window_s)
    total = _bump(_address_key(address), window_s)
    log.warning("failed sign-in for %r from %s (%d for this user, %d from there)", username, address, pair, total)


def login_success_record(*, address: str, username: str) -> None:
    cache.delete(_pair_key(address, username))


def login_is_blocked(*, address: str, username: str) -> bool:
    per_pair, per_address, _ = _limits()
    pair = cache.get(_pair_key(address, username)) or 0
    total = cache.get(_address_key(address)) or 0
    return pair >= per_pair or total >= per_address


def _on_login_failed(sender: Any, credentials: dict[str, Any], request: Any = None, **kwargs: Any) -> None:
    if request is None:
        return
    try:
        login_failure_record(address=client_address(request), username=str(credentials.get("username", "")))
    except Exception as exc:  # the cache (Redis) is down: sign-ins still work, unthrottled
        log.warning("could not count a failed sign-in: %s", exc)


def _on_logged_in(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    if request is None:
        return
    try:
        login_success_record(address=client_address(request), username=user.get_username())
    except Exception as exc:
        log.warning("could not clear the failed sign-in count: %s", exc)


user_login_failed.connect(_on_login_failed, dispatch_uid="tickerproject.throttling.failed")
user_logged_in.connect(_on_logged_in, dispatch_uid="tickerproject.throttling.success")


class LoginThrottleMiddleware:
    """Answers 429 to a sign-in POST from an address/username pair over the limit (see the module)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self._paths: set[str] | None = None

    def _login_paths(self) -> set[str]:
        if self._paths is None:
            paths = set()
            for name in LOGIN_URL_NAMES:
                try:
                    paths.add(reverse(name))
                except Exception:  # a URL conf without that login (e.g. in a test)
                    continue
            self._paths = paths
        return self._paths

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.method == "POST" and request.path in self._login_paths():
            username = _posted_username(request)
            address = client_address(request)
            try:
                blocked = login_is_blocked(address=address, username=username)
            except Exception as exc:  # fail open: a cache outage must not lock every operator out
                log.warning("login throttle unavailable, not checking: %s", exc)
                blocked = False
            if blocked:
                log.warning("sign-in refused for %r from %s: too many failed attempts", username, address)
                return _too_many(request)
        return self.get_response(request)


def _posted_username(request: HttpRequest) -> str:
    """The username a sign-in POST names, from a form or a JSON object; "" when there is none (the
    view then rejects the request itself, and the per-address count still applies)."""
    if request.content_type == "application/json":
        try:
            data = loads_limited(request.body or b"{}", settings.JSON_MAX_DEPTH)
        except (ValueError, UnicodeDecodeError):
            return ""
        username = data.get("username", "") if isinstance(data, dict) else ""
        return username if isinstance(username, str) else str(username)
    return request.POST.get("username", "")


def _too_many(request: HttpRequest) -> HttpResponse:
    _, _, window_s = _limits()
    message = f"Too many failed sign-ins. Try again in {max(window_s // 60, 1)} minutes."
    response = HttpResponse(message, status=429, content_type="text/plain; charset=utf-8")
    response["Retry-After"] = str(window_s)
    return response


__all__ = [
    "LoginThrottleMiddleware",
    "client_address",
    "login_failure_record",
    "login_is_blocked",
    "login_success_record",
]
