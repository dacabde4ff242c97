"""Websocket handshakes the project refuses before any consumer runs: foreign origins, unrouted paths.

Origin rule (`SameOriginValidator`). The chain websocket authenticates with the session cookie, which
a browser sends with a handshake started by any page, so the Origin header is what stops another site
(or another port on the same host: a different origin to the browser) from reading the stream with
the user's session. A handshake is accepted when its Origin

- names the request's own host and port (`Origin: http://127.0.0.1:8000` with `Host: 127.0.0.1:8000`;
  the scheme is not compared, so a TLS-terminating proxy that forwards plain `ws` still matches, and a
  port left out means the default one on both sides), and that host is one of ALLOWED_HOSTS (Django
  checks Host for HTTP; Channels does not for websockets); or
- is one of WEBSOCKET_ALLOWED_ORIGINS or CSRF_TRUSTED_ORIGINS (scheme, host and port all compared;
  `https://*.example.com` allows the subdomains of example.com, as for CSRF).

Channels' AllowedHostsOriginValidator, used before, compared host names only: with `localhost` in
ALLOWED_HOSTS, a page on `http://localhost:9999` could open the stream of a site on `127.0.0.1:8000`.

A handshake without an Origin (or with `Origin: null`: sandboxed frames, file:// pages) is refused.
Browsers always send Origin on websocket handshakes, so this only concerns programs; they sign in
for a session cookie anyway and can send `Origin` equal to the URL they connect to, as
benchmarks/soak_viewers.py does. Refusing keeps one rule ("the origin must be known") instead of
trusting the absence of a header.

Refusals are a `websocket.close` before accept: the server answers the handshake with HTTP 403. They
are logged at WARNING, at most one line a minute per kind (a flood of handshakes cannot flood the log);
a misconfigured proxy that rewrites Host shows up there.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.http.request import split_domain_port, validate_host
from django.utils.http import is_same_domain

from tickerproject.platform.log_throttle import ThrottleRepeatsFilter

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

CLOSE_NO_ROUTE = 4404

logger = logging.getLogger(__name__)
# Whoever opens handshakes chooses the path and the Origin: one line a minute per kind of refusal.
REFUSAL_LOG_THROTTLE = ThrottleRepeatsFilter(interval_s=60.0, per_argument=False)
logger.addFilter(REFUSAL_LOG_THROTTLE)

_DEFAULT_PORTS = {"http": 80, "ws": 80, "https": 443, "wss": 443}


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return value.decode("latin-1")
    return None


def _host_port(hostname: str | None, port: int | None, scheme: str) -> tuple[str, int | None] | None:
    """(host, port) with a scheme's default port written as None, as browsers leave it out."""
    if not hostname:
        return None
    if port is not None and port == _DEFAULT_PORTS.get(scheme):
        port = None
    return hostname.lower().rstrip("."), port


def _parse_origin(origin: str) -> tuple[str, str, int | None] | None:
    """(scheme, host, port or None for the scheme's default) or None for a malformed Origin."""
    try:
        parts = urlsplit(origin.strip().rstrip("/"))
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or parts.path or parts.query or parts.fragment:
        return None
    host_port = _host_port(parts.hostname, port, scheme)
    return None if host_port is None else (scheme, *host_port)


def _allowed_hosts() -> list[str]:
    # As Django's HttpRequest.get_host: with DEBUG and no ALLOWED_HOSTS, local names are allowed.
    if settings.DEBUG and not settings.ALLOWED_HOSTS:
        return [".localhost", "127.0.0.1", "[::1]"]
    return list(settings.ALLOWED_HOSTS)


def _same_origin(origin: tuple[str, str, int | None], scope: Scope) -> bool:
    host = _header(scope, b"host")
    if not host:
        return False
    domain, _ = split_domain_port(host)
    if not domain or not validate_host(domain, _allowed_hosts()):
        return False
    try:
        parts = urlsplit(f"//{host}")
        port = parts.port
    except ValueError:
        return False
    own = _host_port(parts.hostname, port, str(scope.get("scheme") or "ws"))
    return own is not None and own == origin[1:]


def _allow_listed(origin: tuple[str, str, int | None]) -> bool:
    scheme, host, port = origin
    for entry in (*settings.WEBSOCKET_ALLOWED_ORIGINS, *getattr(settings, "CSRF_TRUSTED_ORIGINS", ())):
        wildcard = "://*." in entry
        allowed = _parse_origin(entry.replace("://*.", "://", 1) if wildcard else entry)
        if allowed is None or allowed[0] != scheme or allowed[2] != port:
            continue
        if (is_same_domain(host, "." + allowed[1])) if wildcard else host == allowed[1]:
            return True
    return False


def origin_allowed(scope: Scope) -> bool:
    """Whether a websocket handshake's Origin may connect (the rules are in the module docstring)."""
    raw = _header(scope, b"origin")
    origin = _parse_origin(raw) if raw else None
    return origin is not None and (_same_origin(origin, scope) or _allow_listed(origin))


async def refuse_handshake(scope: Scope, receive: Receive, send: Send, *, code: int = 1008) -> None:
    """Answer a websocket handshake with a refusal (HTTP 403), before any accept."""
    message = await receive()
    if message["type"] == "websocket.connect":
        await send({"type": "websocket.close", "code": code})


class SameOriginValidator:
    """ASGI middleware: websocket handshakes from an origin other than the site's own (or an
    allow-listed one) are refused before they reach the application."""

    def __init__(self, application: ASGIApp) -> None:
        self.application = application

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "websocket":
            raise ValueError("SameOriginValidator only guards websocket connections")
        if origin_allowed(scope):
            await self.application(scope, receive, send)
            return
        logger.warning(
            "websocket refused: origin %.100r is not allowed for host %.100r (path %.100r)",
            _header(scope, b"origin"),
            _header(scope, b"host"),
            scope.get("path"),
        )
        await refuse_handshake(scope, receive, send)


async def refuse_unrouted(scope: Scope, receive: Receive, send: Send) -> None:
    """The last websocket route: a path no route matches is refused (HTTP 403) instead of Channels'
    ValueError, which the server answered with a 500 and a logged traceback per attempt."""
    logger.warning("websocket refused: no route for path %.100r", scope.get("path"))
    await refuse_handshake(scope, receive, send, code=CLOSE_NO_ROUTE)
