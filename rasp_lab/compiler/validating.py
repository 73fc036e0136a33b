"""Tracr's `compiler/validating.py` under Tracr's module path: `validate(program, test_input)`
lists what the compiler would refuse, as `TracrUnsupportedExpr(expr, reason)` records.

rasp_lab's check is stronger than Tracr's single-input one: it runs `rasp_lab.validate` over
every token of `test_input` and every length up to `len(test_input)` (static checks on the
value sets, and a search over inputs), so a problem on another input of those tokens and
lengths is reported too. Programs rasp_lab compiles and Tracr does not (a categorical
LinearSequenceMap, a numerical mean of any values) pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rasp_lab.graph import build_graph, distinct_labels
from rasp_lab.rasp import rasp
from rasp_lab.validation import validate as validate_program

__all__ = ["TracrUnsupportedExpr", "validate"]


@dataclass(frozen=True)
class TracrUnsupportedExpr:
    """An expression the compiler can't compile exactly, and why."""

    expr: rasp.RASPExpr
    reason: str


def validate(program: rasp.SOp, test_input: Sequence[Any]) -> list[TracrUnsupportedExpr]:
    """Every error-level problem of `program` on inputs over `test_input`'s tokens, of length
    1..len(test_input); empty when the compiler accepts it for those tokens and lengths."""
    if isinstance(test_input, str):
        test_input = list(test_input)
    if len(test_input) == 0:
        raise ValueError("validate() needs a non-empty test_input: its tokens and length set what is checked")
    program = distinct_labels(program)
    nodes = build_graph(program).nodes
    problems = validate_program(program, set(test_input), len(test_input))
    return [
        TracrUnsupportedExpr(expr=nodes.get(p.label, program), reason=f"{p.kind}: {p.message}")
        for p in problems
        if p.severity == "error"
    ]
