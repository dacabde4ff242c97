"""Kite Connect's ticker protocol: the exact parser (`parse_binary`, kiteconnect-compatible dicts), the
columnar numpy fast path (`parse_batch` → TickBatch) and the frame packer. Plain numpy/stdlib: the
websocket client that speaks the protocol belongs to the ticker process.
"""

from core.kite.columnar import parse_batch, parse_columnar, parse_frame
from core.kite.packer import frame_from_packets, pack_tick_dicts, pack_ticks
from core.kite.parser import MALFORMED_KINDS, MalformedCounter, parse_binary

__all__ = [
    "MALFORMED_KINDS",
    "MalformedCounter",
    "frame_from_packets",
    "pack_tick_dicts",
    "pack_ticks",
    "parse_batch",
    "parse_binary",
    "parse_columnar",
    "parse_frame",
]
