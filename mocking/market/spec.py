"""What the mock market needs to know about an instrument, and the underlyings it knows by name.

Plain Python (no Django): the simulator builder and the ticker turn Instrument rows into InstrumentSpec.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from datetime import date
from typing import Any

INDEX_SEGMENT = "INDICES"
INDEX_SEGMENT_CODE = 9  # instrument_token & 0xff for indices

KIND_INDEX = 0
KIND_EQ = 1
KIND_FUT = 2
KIND_CE = 3
KIND_PE = 4


@dataclass(frozen=True)
class InstrumentSpec:
    instrument_token: int
    tradingsymbol: str
    underlying: str  # e.g. "NIFTY" for NIFTY options, futures and the NIFTY 50 index
    instrument_type: str  # "EQ" | "FUT" | "CE" | "PE" (an index is "EQ" with segment "INDICES")
    strike: float = 0.0
    expiry: date | None = None
    tick_size: float = 0.05
    lot_size: int = 1
    segment: str = "NSE"
    exchange: str = "NSE"

    @classmethod
    def from_instrument(cls, row: Any) -> InstrumentSpec:
        """The spec of anything shaped like Kite's instruments dump (an Instrument row, a planned instrument)."""
        return cls(
            instrument_token=int(row.instrument_token),
            tradingsymbol=row.tradingsymbol,
            underlying=row.underlying or getattr(row, "name", "") or row.tradingsymbol,
            instrument_type=row.instrument_type,
            strike=float(row.strike or 0.0),
            expiry=row.expiry,
            tick_size=float(row.tick_size or 0.05),
            lot_size=int(row.lot_size or 1),
            segment=row.segment,
            exchange=row.exchange,
        )

    @property
    def is_index(self) -> bool:
        return self.segment == INDEX_SEGMENT or (self.instrument_token & 0xFF) == INDEX_SEGMENT_CODE

    @property
    def is_option(self) -> bool:
        return self.instrument_type in ("CE", "PE")

    @property
    def kind(self) -> int:
        if self.is_index:
            return KIND_INDEX
        return {"FUT": KIND_FUT, "CE": KIND_CE, "PE": KIND_PE}.get(self.instrument_type, KIND_EQ)

    @property
    def underlying_key(self) -> str:
        return underlying_key(self.underlying or self.tradingsymbol)


@dataclass(frozen=True)
class UnderlyingProfile:
    """How an underlying moves: its starting level, annual volatility, dividend yield and smile."""

    name: str
    spot: float
    vol: float
    div_yield: float = 0.0
    tick_size: float = 0.05
    skew: float = -0.10  # d(vol)/vol per unit of normalised moneyness ln(K/F)/(atm vol sqrt(T))
    smile: float = 0.025
    jumps_per_day: float = 0.6
    jump_vol: float = 0.0025  # std dev of a jump in log price
    liquidity: float = 1.0


# Index names as NSE spells them in the instruments dump, mapped to the names their options carry.
_INDEX_ALIASES = {
    "NIFTY 50": "NIFTY",
    "NIFTY BANK": "BANKNIFTY",
    "NIFTY FIN SERVICE": "FINNIFTY",
    "NIFTY MID SELECT": "MIDCPNIFTY",
    "NIFTY NEXT 50": "NIFTYNXT50",
}

KNOWN_UNDERLYINGS = {
    p.name: p
    for p in (
        UnderlyingProfile("NIFTY", 26000.0, 0.13, 0.012, skew=-0.12, liquidity=3.0),
        UnderlyingProfile("BANKNIFTY", 59000.0, 0.16, 0.008, skew=-0.11, liquidity=2.5),
        UnderlyingProfile("FINNIFTY", 27500.0, 0.15, 0.008, skew=-0.10, liquidity=1.2),
        UnderlyingProfile("MIDCPNIFTY", 13500.0, 0.18, 0.006, skew=-0.09, liquidity=1.0),
        UnderlyingProfile("NIFTYNXT50", 70500.0, 0.17, 0.01, skew=-0.09, liquidity=0.6),
        UnderlyingProfile("SENSEX", 85000.0, 0.13, 0.012, skew=-0.12, liquidity=2.0),
        UnderlyingProfile("BANKEX", 66000.0, 0.16, 0.008, skew=-0.11, liquidity=1.0),
    )
}


def underlying_key(name: str) -> str:
    key = name.strip().upper()
    return _INDEX_ALIASES.get(key, key)


def stable_hash(*parts: object) -> int:
    """A hash that is the same in every process (unlike hash()), for seeding."""
    return zlib.crc32("|".join(str(p) for p in parts).encode())


def plausible_profile(name: str, strikes: list[float] | None = None, tick_size: float = 0.05) -> UnderlyingProfile:
    """The underlying's profile: a known index's fixed one, else one centred on its middle listed strike.

    Known indices keep a fixed level so their mock history does not depend on which instruments are
    loaded (update KNOWN_UNDERLYINGS when the real market moves far away). An unknown name gets a level
    from its strikes (or its name when it has none) and a volatility and smile derived from its name.
    """
    known = KNOWN_UNDERLYINGS.get(name)
    if known:
        return known
    ordered = sorted(float(s) for s in strikes or () if s and float(s) > 0)
    spot = ordered[len(ordered) // 2] if ordered else 0.0
    h = stable_hash("profile", name)
    if spot <= 0:
        spot = 50.0 + (h % 49_500) / 10.0
    vol = 0.18 + (h % 23) / 100.0
    return UnderlyingProfile(
        name=name,
        spot=spot,
        vol=vol,
        div_yield=0.005 + (h % 7) / 1000.0,
        tick_size=tick_size,
        skew=-0.05 - (h % 5) / 100.0,
        smile=0.03,
        jumps_per_day=1.0,
        jump_vol=0.004,
        liquidity=0.5,
    )
