"""Tracr's `causal_eval` module: evaluation in which a query sees only keys at or before it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rasp_lab.rasp import rasp

__all__ = ["evaluate"]


def evaluate(expr: rasp.RASPExpr, xs: Sequence[Any]) -> Any:
    """`expr` on input `xs` as a causal model computes it (`rasp.evaluate(..., causal=True)`)."""
    return rasp.evaluate(expr, xs, causal=True)
