"""Command-line input shared by the management commands: argparse `type=` parsers and the listening
socket a serving command opens before it starts anything else.

Each parser raises `ArgumentError`, which argparse reports as its usual one-line "argument --x: ..."
error, and which is also a `CommandError`, so a command may call the parser itself in `handle`.
"""

from __future__ import annotations

import argparse
import errno
import math
import socket

from django.core.management.base import CommandError


class ArgumentError(CommandError, argparse.ArgumentTypeError):
    """A bad command-line value: argparse prints it after the option's name; called directly it ends
    the command like any CommandError (one line, exit status 1)."""


def _int(value: str | int) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ArgumentError(f"{value!r} is not a whole number") from None


def port(value: str | int) -> int:
    """A TCP port to listen on, 1-65535."""
    number = _int(value)
    if not 0 < number < 65536:
        raise ArgumentError(f"{value!r} is not a port (1-65535)")
    return number


def port_or_zero(value: str | int) -> int:
    """A TCP port, or 0 for any free one."""
    number = _int(value)
    if not 0 <= number < 65536:
        raise ArgumentError(f"{value!r} is not a port (1-65535, or 0 for any free port)")
    return number


def host_port(value: str) -> tuple[str, int]:
    """`HOST:PORT` (an IPv6 host in brackets: `[::1]:8000`) as (host, port)."""
    host, sep, number = str(value).rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not number.isdigit() or not 0 < int(number) < 65536:
        raise ArgumentError(f"expected HOST:PORT with a port of 1-65535, e.g. 127.0.0.1:8000 (got {value!r})")
    return host, int(number)


def non_negative_int(value: str | int) -> int:
    number = _int(value)
    if number < 0:
        raise ArgumentError(f"{value!r} is negative")
    return number


def positive_float(value: str | float) -> float:
    """A finite number above zero (rejects nan and inf, which float() accepts)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ArgumentError(f"{value!r} is not a number") from None
    if not math.isfinite(number) or number <= 0:
        raise ArgumentError(f"{value!r} is not a finite number above 0")
    return number


def listen_socket(host: str, port: int, *, backlog: int = 128) -> socket.socket:
    """A non-blocking TCP socket listening on host:port (port 0: any free one), opened up front so
    that a busy port or an unknown host ends a command before it starts serving or streaming."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except (socket.gaierror, UnicodeError) as exc:
        raise CommandError(f"cannot listen on {host}:{port}: unknown host ({exc})") from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(backlog)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        reason = "the port is already in use" if exc.errno == errno.EADDRINUSE else exc.strerror or str(exc)
        raise CommandError(f"cannot listen on {host}:{port}: {reason}") from None
    return sock
