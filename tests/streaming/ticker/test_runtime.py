"""Process settings of a long-running ticker."""

from __future__ import annotations

import gc

from streaming.ticker.runtime import GC_THRESHOLDS, tune_gc_for_streaming


def test_gc_is_spaced_out_and_start_up_objects_are_frozen():
    before = gc.get_threshold()
    try:
        tune_gc_for_streaming()
        assert gc.get_threshold() == GC_THRESHOLDS
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
