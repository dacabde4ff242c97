"""Strike arithmetic shared by the subscription planner and the ticker's chain analytics (plain numpy)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def nearest_strike(strikes: np.ndarray | Sequence[float], reference: float) -> float:
    """The strike nearest `reference`, the lower one on a tie, whatever the order of `strikes`.

    NaN when there are no strikes, the reference is not a finite number, or a strike is NaN.
    """
    strikes = np.asarray(strikes, dtype=np.float64)
    if not len(strikes) or not math.isfinite(reference):
        return math.nan
    distance = np.abs(strikes - reference)
    nearest = distance[np.argmin(distance)]
    if math.isnan(nearest):
        return math.nan
    return float(strikes[distance == nearest].min())
