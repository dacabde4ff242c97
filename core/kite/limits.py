"""Facts of Kite Connect's REST API that both our client side and the simulator honour (from Kite
Connect's documentation and its staff's forum answers). Plain Python, so the Django-free simulator can use them too."""

from __future__ import annotations

# Most days one historical request may span, per interval (a Kite staff forum answer, not the docs).
MAX_DAYS_PER_REQUEST: dict[str, int] = {
    "minute": 60,
    "3minute": 100,
    "5minute": 100,
    "10minute": 100,
    "15minute": 200,
    "30minute": 200,
    "60minute": 400,
    "day": 2000,
}

# The columns of the instruments dump (GET /instruments), in order.
INSTRUMENT_COLUMNS: tuple[str, ...] = (
    "instrument_token",
    "exchange_token",
    "tradingsymbol",
    "name",
    "last_price",
    "expiry",
    "strike",
    "tick_size",
    "lot_size",
    "instrument_type",
    "segment",
    "exchange",
)
