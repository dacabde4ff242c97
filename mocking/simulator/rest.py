"""The simulator's REST side: the Kite Connect endpoints the project and the official client use.

Answers in Kite's shapes: JSON `{"status": "success", "data": ...}`, errors
`{"status": "error", "message": ..., "error_type": ...}` with Kite's status codes (400
InputException, 403 TokenException, 404 GeneralException, 429 NetworkException "Too many
requests"), and the instruments dump as CSV. Authentication is Kite's header
`Authorization: token api_key:access_token`, checked against the state's accounts.

Endpoints: GET /instruments[/EXCHANGE], GET /instruments/historical/TOKEN/INTERVAL (mock candles;
more days than Kite allows per request → 400; more than `state.historical_rate_per_second` requests
in any one second per api_key → 429), POST /session/token (checksum = sha256(api_key +
request_token + api_secret)), GET /user/profile, GET /quote, /quote/ltp, /quote/ohlc (`i=NSE:INFY`).
Every answer waits `state.faults.rest_delay_s` first.

Server-side counts for tests and benchmarks live in `rest_stats(state)`: every historical request
with its arrival time, api_key and status code.
"""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import hashlib
import io
import json
import re
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from core.calendar import IST
from core.kite.limits import INSTRUMENT_COLUMNS, MAX_DAYS_PER_REQUEST
from mocking.simulator.state import SimAccount, SimulatorState

# Kite's own published responses (kiteconnect-mocks), so a session looks like the real service's.
_FIXTURES = Path(__file__).resolve().parent / "kite_responses"
_HISTORICAL_PATH = re.compile(r"^/instruments/historical/(?P<token>[^/]+)/(?P<interval>[^/]+)/?$")


class KiteError(Exception):
    def __init__(self, status: int, error_type: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.error_type = error_type
        self.message = message


@dataclass
class RestStats:
    """What the server saw: (monotonic arrival time, api_key, status) per historical request."""

    historical: list[tuple[float, str, int]] = field(default_factory=list)
    windows: dict[str, deque] = field(default_factory=dict)

    def accepted_times(self, api_key: str | None = None) -> list[float]:
        return [t for t, key, status in self.historical if status == 200 and (api_key is None or key == api_key)]

    def max_in_any_second(self, api_key: str | None = None) -> int:
        """The most accepted requests whose arrivals fit in one second (a sliding window)."""
        times = sorted(self.accepted_times(api_key))
        best, lo = 0, 0
        for hi, t in enumerate(times):
            while t - times[lo] >= 1.0:
                lo += 1
            best = max(best, hi - lo + 1)
        return best


def rest_stats(state: SimulatorState) -> RestStats:
    return state.extra.setdefault("rest_stats", RestStats())


def _session_template() -> dict[str, Any]:
    try:
        return json.loads((_FIXTURES / "generate_session.json").read_text())["data"]
    except (OSError, ValueError, KeyError):
        return {"user_type": "individual", "broker": "ZERODHA", "exchanges": ["NSE", "NFO"], "meta": {}}


def _profile_template() -> dict[str, Any]:
    try:
        return json.loads((_FIXTURES / "profile.json").read_text())["data"]
    except (OSError, ValueError, KeyError):
        return {"user_type": "individual", "broker": "ZERODHA", "exchanges": ["NSE", "NFO"], "meta": {}}


async def _send(send: Callable, status: int, body: bytes, content_type: str) -> None:
    headers = [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _send_json(send: Callable, status: int, payload: dict[str, Any]) -> None:
    await _send(send, status, json.dumps(payload, default=str).encode(), "application/json")


async def _read_body(receive: Callable) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    return b"".join(chunks)


def _headers(scope: dict[str, Any]) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}


def _authorise(state: SimulatorState, headers: dict[str, str]) -> SimAccount:
    value = headers.get("authorization", "")
    scheme, _, credentials = value.partition(" ")
    api_key, _, access_token = credentials.partition(":")
    if scheme.lower() != "token" or not state.is_authorised(api_key, access_token):
        raise KiteError(403, "TokenException", "Incorrect `api_key` or `access_token`.")
    return state.accounts[api_key]


def _parse_kite_time(value: str, name: str) -> dt.datetime:
    for fmt in ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d+%H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d"):
        try:
            return dt.datetime.strptime(value, fmt).replace(tzinfo=IST)
        except ValueError:
            continue
    raise KiteError(400, "InputException", f"invalid {name} date")


def _kite_timestamp(value: dt.datetime) -> str:
    return value.astimezone(IST).strftime("%Y-%m-%dT%H:%M:%S%z")


def _kite_local_time(value: dt.datetime | None) -> str | None:
    """Kite's REST times are IST wall-clock strings; tick dicts carry naive local (process zone) times,
    as the official client builds them, which `astimezone` reads as local."""
    if value is None:
        return None
    return value.astimezone(IST).strftime("%Y-%m-%d %H:%M:%S")


def _specs_by_token(state: SimulatorState) -> dict[int, Any]:
    return {int(s.instrument_token): s for s in state.instruments}


def _specs_by_symbol(state: SimulatorState) -> dict[str, Any]:
    return {f"{s.exchange}:{s.tradingsymbol}": s for s in state.instruments}


def _check_rate(state: SimulatorState, api_key: str, now: float) -> bool:
    window = rest_stats(state).windows.setdefault(api_key, deque())
    while window and now - window[0] >= 1.0:
        window.popleft()
    if len(window) >= int(state.historical_rate_per_second):
        return False
    window.append(now)
    return True


def _historical(state: SimulatorState, account: SimAccount, path_match: re.Match, query: dict[str, list[str]]) -> Any:
    arrived = time.monotonic()
    stats = rest_stats(state)
    if not _check_rate(state, account.api_key, arrived):
        stats.historical.append((arrived, account.api_key, 429))
        raise KiteError(429, "NetworkException", "Too many requests")
    try:
        data = _historical_candles(state, path_match, query)
    except KiteError as exc:
        stats.historical.append((arrived, account.api_key, exc.status))
        raise
    except Exception:
        stats.historical.append((arrived, account.api_key, 500))
        raise
    stats.historical.append((arrived, account.api_key, 200))
    return data


def _historical_candles(state: SimulatorState, path_match: re.Match, query: dict[str, list[str]]) -> Any:
    interval = path_match["interval"]
    if interval not in MAX_DAYS_PER_REQUEST:
        raise KiteError(400, "InputException", "invalid interval")
    try:
        token = int(path_match["token"])
    except ValueError:
        raise KiteError(400, "InputException", "invalid token") from None
    start = _parse_kite_time((query.get("from") or [""])[0], "from")
    end = _parse_kite_time((query.get("to") or [""])[0], "to")
    if end < start:
        raise KiteError(400, "InputException", "invalid to date: to date is before from date")
    if (end - start).days > MAX_DAYS_PER_REQUEST[interval]:
        raise KiteError(400, "InputException", f"interval exceeds max limit: {MAX_DAYS_PER_REQUEST[interval]} days")
    if token not in _specs_by_token(state) or state.market is None:
        raise KiteError(400, "InputException", "invalid token")
    with_oi = (query.get("oi") or ["0"])[0] in ("1", "true")
    # Kite includes `to`; the mock market's range is half-open.
    rows = state.market.candles(token, interval, start, end + dt.timedelta(seconds=1))
    candles = []
    for ts, o, h, low, c, volume, *rest in rows:
        if not start <= ts <= end:
            continue
        candle = [_kite_timestamp(ts), o, h, low, c, int(volume)]
        if with_oi:
            candle.append(int(rest[0] or 0) if rest else 0)
        candles.append(candle)
    return {"candles": candles}


def _instruments_csv(state: SimulatorState, exchange: str | None) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(INSTRUMENT_COLUMNS)
    for s in state.instruments:
        if exchange and s.exchange != exchange:
            continue
        writer.writerow(
            [
                s.instrument_token,
                int(s.instrument_token) >> 8,
                s.tradingsymbol,
                s.underlying,
                0.0,
                s.expiry.isoformat() if s.expiry else "",
                s.strike,
                s.tick_size,
                s.lot_size,
                s.instrument_type,
                s.segment,
                s.exchange,
            ]
        )
    return out.getvalue().encode()


def _session_token(state: SimulatorState, form: dict[str, list[str]]) -> dict[str, Any]:
    api_key = (form.get("api_key") or [""])[0]
    request_token = (form.get("request_token") or [""])[0]
    checksum = (form.get("checksum") or [""])[0]
    if not api_key or not request_token or not checksum:
        raise KiteError(400, "InputException", "Missing api_key, request_token or checksum")
    account = state.accounts.get(api_key)
    if account is None:
        raise KiteError(403, "TokenException", "Invalid `api_key`.")
    expected = hashlib.sha256((api_key + request_token + account.api_secret).encode()).hexdigest()
    if checksum != expected:
        raise KiteError(403, "TokenException", "Invalid `checksum`.")
    access_token = state.issue_token(api_key)
    data = _session_template()
    data.update(
        {
            "user_id": account.user_id,
            "user_name": account.user_name,
            "api_key": api_key,
            "access_token": access_token,
            "public_token": hashlib.sha256(access_token.encode()).hexdigest()[:32],
            "login_time": dt.datetime.now(IST).strftime("%Y-%m-%d %H:%M:%S"),
        }
    )
    return data


def _quotes(state: SimulatorState, kind: str, query: dict[str, list[str]]) -> dict[str, Any]:
    wanted = query.get("i") or []
    limit = 500 if kind == "quote" else 1000
    if not wanted:
        raise KiteError(400, "InputException", "No instruments specified")
    if len(wanted) > limit:
        raise KiteError(400, "InputException", f"Too many instruments: at most {limit}")
    by_symbol = _specs_by_symbol(state)
    found = [(key, by_symbol[key]) for key in wanted if key in by_symbol]
    if not found or state.market is None:
        return {}
    import numpy as np

    tokens = np.array([int(spec.instrument_token) for _, spec in found], dtype=np.int64)
    modes = np.full(len(tokens), 2, dtype=np.int8)  # MODE_FULL: every field, the REST quote carries them all
    ticks = state.market.tick_dicts(tokens, modes)
    data: dict[str, Any] = {}
    for (key, _), tick in zip(found, ticks, strict=True):
        entry: dict[str, Any] = {"instrument_token": tick["instrument_token"], "last_price": tick["last_price"]}
        if kind in ("quote", "ohlc"):
            entry["ohlc"] = dict(tick.get("ohlc") or {})
        if kind == "quote":
            close = entry["ohlc"].get("close") or 0
            ts = tick.get("exchange_timestamp")
            ltt = tick.get("last_trade_time")
            entry.update(
                {
                    "timestamp": _kite_local_time(ts),
                    "last_trade_time": _kite_local_time(ltt),
                    "last_quantity": tick.get("last_traded_quantity", 0),
                    "buy_quantity": tick.get("total_buy_quantity", 0),
                    "sell_quantity": tick.get("total_sell_quantity", 0),
                    "volume": tick.get("volume_traded", 0),
                    "average_price": tick.get("average_traded_price", 0),
                    "oi": tick.get("oi", 0),
                    "oi_day_high": tick.get("oi_day_high", 0),
                    "oi_day_low": tick.get("oi_day_low", 0),
                    "net_change": round(tick["last_price"] - close, 2) if close else 0,
                    "lower_circuit_limit": round(close * 0.9, 2),
                    "upper_circuit_limit": round(close * 1.1, 2),
                    "depth": tick.get("depth") or {"buy": [], "sell": []},
                }
            )
        data[key] = entry
    return data


async def handle_http(scope: dict[str, Any], receive: Callable, send: Callable, state: SimulatorState) -> None:
    """Serve one HTTP request in Kite's REST dialect."""
    method = scope.get("method", "GET").upper()
    path = scope.get("path", "/")
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
    headers = _headers(scope)
    body = await _read_body(receive) if method in ("POST", "PUT") else b""
    if state.faults.rest_delay_s:
        await asyncio.sleep(state.faults.rest_delay_s)
    try:
        if path.rstrip("/") == "/instruments" or (
            path.startswith("/instruments/") and not path.startswith("/instruments/historical/")
        ):
            if method != "GET":
                raise KiteError(405, "InputException", "Method not allowed")
            exchange = path.rstrip("/").split("/")[2] if path.rstrip("/").count("/") >= 2 else None
            await _send(send, 200, _instruments_csv(state, exchange), "text/csv")
            return
        if path.rstrip("/") == "/session/token" and method == "POST":
            data = _session_token(state, parse_qs(body.decode("utf-8"), keep_blank_values=True))
        else:
            account = _authorise(state, headers)
            historical = _HISTORICAL_PATH.match(path)
            if historical and method == "GET":
                data = _historical(state, account, historical, query)
            elif path.rstrip("/") == "/user/profile" and method == "GET":
                data = _profile_template()
                data.update({"user_id": account.user_id, "user_name": account.user_name})
            elif path.rstrip("/") in ("/quote", "/quote/ltp", "/quote/ohlc") and method == "GET":
                kind = {"/quote": "quote", "/quote/ltp": "ltp", "/quote/ohlc": "ohlc"}[path.rstrip("/")]
                data = _quotes(state, kind, query)
            else:
                raise KiteError(404, "GeneralException", f"Route not found: {method} {path}")
    except KiteError as exc:
        await _send_json(send, exc.status, {"status": "error", "message": exc.message, "error_type": exc.error_type})
        return
    except Exception as exc:  # a bug in the simulator must answer, not hang the client
        await _send_json(send, 500, {"status": "error", "message": str(exc), "error_type": "GeneralException"})
        return
    await _send_json(send, 200, {"status": "success", "data": data})
