"""The option chain page (data arrives over the websocket; this only renders the frame)."""

from __future__ import annotations

from typing import TypedDict

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse_lazy

from subscriptions import selectors

LOGIN_URL = reverse_lazy("streaming:login")
DEFAULT_UNDERLYING = "NIFTY"


class ChainChoice(TypedDict):
    underlying: str
    expiries: list[str]  # ISO dates, nearest first


def available_chains() -> list[ChainChoice]:
    return [
        {"underlying": u, "expiries": [e.isoformat() for e in selectors.option_expiries(underlying=u)]}
        for u in selectors.option_underlyings()
    ]


@login_required(login_url=LOGIN_URL)
def chain_page(request: HttpRequest) -> HttpResponse:
    chains = [c for c in available_chains() if c["expiries"]]
    by_underlying = {c["underlying"]: c["expiries"] for c in chains}
    underlying = request.GET.get("underlying", "").upper()
    if underlying not in by_underlying:
        underlying = DEFAULT_UNDERLYING if DEFAULT_UNDERLYING in by_underlying else next(iter(by_underlying), "")
    expiries = by_underlying.get(underlying, [])
    expiry = request.GET.get("expiry", "")
    if expiry not in expiries:
        expiry = expiries[0] if expiries else ""
    context = {"chains": chains, "underlying": underlying, "expiry": expiry, "expiries": expiries}
    return render(request, "streaming/chain.html", context)
