"""Helpers for benchmark modules: emit one JSON line per figure."""

from __future__ import annotations

import json
from typing import Any


def emit(name: str, value: float, unit: str, *, baseline: float | None = None, **extra: Any) -> dict[str, Any]:
    """Print one result line. `ratio` is value / baseline when a baseline is given."""
    record: dict[str, Any] = {"name": name, "value": round(float(value), 6), "unit": unit}
    if baseline is not None:
        record["baseline"] = round(float(baseline), 6)
        record["ratio"] = round(float(value) / float(baseline), 3) if baseline else None
    record.update(extra)
    print(json.dumps(record), flush=True)
    return record
