"""Named residual directions: every dimension of the residual stream is `sop:value`.

Blocks are written by saying which named input direction maps to which named output
direction; only the assembly pass turns names into indices.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Direction:
    """One residual dimension: `name:value` (categorical) or `name` (numerical, scalars).

    `internal` marks the compiler's own directions (the bias, the BOS marker, scratch): they
    never compare equal to an SOp's direction, so no user label can reach one of them (an
    SOp may be named "one")."""

    name: str
    value: Any = None
    internal: bool = False

    def __str__(self) -> str:
        return self.name if self.value is None else f"{self.name}:{self.value}"


ONE = Direction("one", internal=True)
"""1 at every token position, 0 at BOS: the bias direction."""

INTERNAL_PREFIX = "rasp_lab:"
"""Put before an internal direction's printed name when an SOp's direction prints the same."""


def direction_labels(directions: Sequence[Direction]) -> list[str]:
    """Printed names, unique: SOp directions print as `sop:value` (or `sop`); an internal
    direction prints as its name, prefixed with INTERNAL_PREFIX while that would repeat an
    SOp's printed name (a user may name an SOp "one")."""
    taken = {str(d) for d in directions if not d.internal}
    out = []
    for d in directions:
        text = str(d)
        if d.internal:
            while text in taken:
                text = INTERNAL_PREFIX + text
            taken.add(text)
        out.append(text)
    return out


def sort_values(values: Iterable[Any]) -> list[Any]:
    """A deterministic order for values of mixed types (numbers numerically, then by repr)."""

    def key(v: Any) -> tuple:
        if isinstance(v, bool):
            return (0, float(v), "")
        if isinstance(v, (int, float)):
            return (0, float(v), repr(v))
        return (1, 0.0, f"{type(v).__name__}:{v!r}")

    return sorted(values, key=key)


def categorical_directions(label: str, values: Iterable[Any]) -> tuple[Direction, ...]:
    """One direction per (non-None) value: None is the all-zero block."""
    return tuple(Direction(label, v) for v in sort_values(v for v in values if v is not None))


def matrix(rows: Sequence[Direction], cols: Sequence[Direction], entries: dict[tuple[Direction, Direction], float]) -> np.ndarray:
    """A [len(rows), len(cols)] float64 array from named entries."""
    row_index = {d: i for i, d in enumerate(rows)}
    col_index = {d: j for j, d in enumerate(cols)}
    out = np.zeros((len(rows), len(cols)))  # [rows, cols]
    for (r, c), value in entries.items():
        out[row_index[r], col_index[c]] += value
    return out
