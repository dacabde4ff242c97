"""DRF's rate throttles keyed on `tickerproject.client_address` instead of DRF's own guess.

DRF's `get_ident` believes a raw X-Forwarded-For from anyone (when NUM_PROXIES is unset), so a
client rotating that header was a new client on every request. These throttles count the same
client the sign-in lockout counts.
"""

from __future__ import annotations

from rest_framework import throttling
from rest_framework.request import Request

from tickerproject.client_address import client_address


class _ClientAddressIdent:
    def get_ident(self, request: Request) -> str:
        return client_address(request)


class AnonRateThrottle(_ClientAddressIdent, throttling.AnonRateThrottle):
    """Anonymous requests per client address (`API_THROTTLE_ANON`)."""


class UserRateThrottle(_ClientAddressIdent, throttling.UserRateThrottle):
    """Requests per signed-in user; anonymous ones per client address (`API_THROTTLE_USER`)."""


class ScopedRateThrottle(_ClientAddressIdent, throttling.ScopedRateThrottle):
    """Requests per view scope and user or client address (e.g. the token login's "login" scope)."""


__all__ = ["AnonRateThrottle", "ScopedRateThrottle", "UserRateThrottle"]
