"""JSON from clients, parsed with a nesting limit.

Python's json module recurses once per nesting level: `"[" * 5000` raises RecursionError, which is
not a ValueError, so code that catches parse errors as ValueError turned such a body into a 500 (or a
dead websocket consumer). Parsing here turns both "deeper than the recursion limit" and "deeper than
`JSON_MAX_DEPTH`" into `JSONTooDeep`, a ValueError, so callers handle it like any malformed JSON.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any


class JSONTooDeep(ValueError):
    """The document nests arrays/objects deeper than allowed."""

    def __init__(self, max_depth: int) -> None:
        super().__init__(f"JSON nested deeper than {max_depth} levels")
        self.max_depth = max_depth


def exceeds_depth(value: Any, max_depth: int) -> bool:
    """True when `value` (parsed JSON) nests lists/dicts more than `max_depth` levels ([] is 1 level).

    Iterative, so checking a deep document cannot itself overflow the stack."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        children: Iterable[Any]
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        depth += 1
        if depth > max_depth:
            return True
        stack.extend((child, depth) for child in children if isinstance(child, (dict, list)))
    return False


def check_depth(value: Any, max_depth: int) -> Any:
    """`value`, or JSONTooDeep when it nests deeper than `max_depth`."""
    if exceeds_depth(value, max_depth):
        raise JSONTooDeep(max_depth)
    return value


def loads_limited(text: str | bytes, max_depth: int) -> Any:
    """json.loads that raises ValueError (JSONTooDeep for nesting) for every malformed document."""
    try:
        value = json.loads(text)
    except RecursionError:
        raise JSONTooDeep(max_depth) from None
    return check_depth(value, max_depth)
