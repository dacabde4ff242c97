"""Process-level settings for a long-running ticker (`runticker`, and the benchmark that mirrors it)."""

from __future__ import annotations

import gc

# The hot path builds thousands of short-lived dicts a second (chain rows); with CPython's default
# gen-0 threshold (700 allocations) the cyclic collector ran hundreds of times a second, each pass
# also walking the long-lived objects of start-up. Measured on the [ticker] benchmark: about three
# points of one core.
GC_THRESHOLDS = (50_000, 20, 20)


def tune_gc_for_streaming() -> None:
    """Freeze what start-up allocated (the collector no longer walks it) and collect young objects
    less often. Reference counting still frees almost everything at once; this only spaces out the
    search for cycles."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
