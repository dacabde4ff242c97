"""The client's address: the one answer the sign-in lockout, the API throttles and uvicorn share.

`X-Forwarded-For` is anyone's to write, so it is believed only when the connection comes from a
trusted proxy: an address or network in `settings.TRUSTED_PROXIES` (the `FORWARDED_ALLOW_IPS`
environment variable, empty by default: no proxy is trusted and the peer address is the client).
From a trusted peer the client is the right-most hop of `X-Forwarded-For` that is not itself a
trusted proxy (each proxy appends the address it saw, so everything left of that hop is the
client's own claim). This is uvicorn's `--proxy-headers` rule; `tickerproject.serve` hands uvicorn
the same list, so the address uvicorn puts in the ASGI scope and the one computed here agree (and
computing it again here is a no-op then: the peer is no longer a trusted proxy).
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# Cache keys hash the address; this only bounds what a trusted proxy's garbage can put into a log line.
_MAX_ADDRESS_CHARS = 64


def parse_trusted_proxies(entries: Iterable[str]) -> list[str]:
    """Normalise a list of proxy addresses and networks ("10.0.0.5", "172.16.0.0/12", "::1").

    Raises ImproperlyConfigured for "*" (it would let every client choose its own address) and for
    anything that is not an IP address or network, naming the entry."""
    networks: list[str] = []
    for raw in entries:
        entry = raw.strip()
        if not entry:
            continue
        if entry == "*":
            raise ImproperlyConfigured(
                "FORWARDED_ALLOW_IPS must list the reverse proxies' addresses or networks, not '*': "
                "with '*' every client can set its own address with X-Forwarded-For."
            )
        try:
            networks.append(str(ipaddress.ip_network(entry, strict=False)))
        except ValueError:
            raise ImproperlyConfigured(
                f"FORWARDED_ALLOW_IPS: {entry!r} is not an IP address or network (e.g. 10.0.0.5 or 10.0.0.0/8)."
            ) from None
    return networks


@functools.lru_cache(maxsize=8)
def _networks(entries: tuple[str, ...]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(entry, strict=False) for entry in entries)


def _is_trusted(host: str, networks: tuple[Network, ...]) -> bool:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return any(address in network for network in networks)


def _host_of(hop: str) -> str:
    """A forwarded hop without its port: "203.0.113.9:5123" and "[2001:db8::1]:443" are addresses too."""
    hop = hop.strip()
    if hop.startswith("["):
        end = hop.find("]")
        return hop[1:end] if end > 0 else hop
    if hop.count(":") == 1:
        return hop.split(":", 1)[0]
    return hop


def resolve_client_address(peer: str, forwarded_for: str | None, trusted: Iterable[str]) -> str:
    """The client's address given the connection's peer, its X-Forwarded-For and the trusted proxies."""
    if not peer:
        return "unknown"
    networks = _networks(tuple(trusted))
    if not forwarded_for or not _is_trusted(peer, networks):
        return peer
    hops = [_host_of(hop) for hop in forwarded_for.split(",") if hop.strip()]
    for host in reversed(hops):
        if not _is_trusted(host, networks):
            return host[:_MAX_ADDRESS_CHARS]
    # Every hop is a trusted proxy: the client is one of them, the first.
    return hops[0][:_MAX_ADDRESS_CHARS] if hops else peer


def client_address(request: Any) -> str:
    """The address of the client that sent `request` (a Django HttpRequest or a DRF Request)."""
    meta = request.META
    return resolve_client_address(
        str(meta.get("REMOTE_ADDR") or ""), meta.get("HTTP_X_FORWARDED_FOR"), settings.TRUSTED_PROXIES
    )


__all__ = ["client_address", "parse_trusted_proxies", "resolve_client_address"]
