"""The one order rasp_lab puts values in (tokens, value sets, residual directions, sampled
inputs): numbers by value (bools as 0 and 1), then everything else by type name and repr.
Deterministic for values of mixed types, which `sorted` alone refuses."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

__all__ = ["order_key", "sort_values"]


def order_key(value: Any) -> tuple:
    """The sort key: `sorted(values, key=order_key)` is rasp_lab's order."""
    if isinstance(value, bool):
        return (0, float(value), "")
    if isinstance(value, (int, float)):
        return (0, float(value), repr(value))
    return (1, 0.0, f"{type(value).__name__}:{value!r}")


def sort_values(values: Iterable[Any]) -> list[Any]:
    """`values` in rasp_lab's order."""
    return sorted(values, key=order_key)
