"""Named residual directions: every dimension of the residual stream is `sop:value`.

Blocks are written by saying which named input direction maps to which named output
direction; only the assembly pass turns names into indices.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from rasp_lab.artifact import INTERNAL_PREFIX, ONE, Direction, direction_labels
from rasp_lab.values import sort_values

__all__ = [
    "Direction",
    "ONE",
    "INTERNAL_PREFIX",
    "direction_labels",
    "sort_values",
    "categorical_directions",
    "matrix",
]


def categorical_directions(label: str, values: Iterable[Any]) -> tuple[Direction, ...]:
    """One direction per (non-None) value: None is the all-zero block."""
    return tuple(Direction(label, v) for v in sort_values(v for v in values if v is not None))


def matrix(
    rows: Sequence[Direction], cols: Sequence[Direction], entries: dict[tuple[Direction, Direction], float]
) -> np.ndarray:
    """A [len(rows), len(cols)] float64 array from named entries."""
    row_index = {d: i for i, d in enumerate(rows)}
    col_index = {d: j for j, d in enumerate(cols)}
    out = np.zeros((len(rows), len(cols)))  # [rows, cols]
    for (r, c), value in entries.items():
        out[row_index[r], col_index[c]] += value
    return out
