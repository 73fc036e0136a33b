"""Property checks for your own RASP programs.

- `assert_compiles_exactly(program, vocab, max_seq_len)`: compile (or take a model) and check
  it against `rasp.evaluate` on every short input and seeded random longer ones; a mismatch
  raises AssertionError naming the input, the position, both values, and the first head or
  MLP where the residual stream departs from the evaluator; a program that does not compile
  exactly raises NotValid or NotCertified, AssertionErrors too (and the ValidationError or
  CompileError that compile raises).
- `rasp_lab.testing.strategies` (needs Hypothesis): random programs, inputs and selectors.
- `rasp_lab.testing.plugin`: the pytest plugin (`--rasp-exhaustive`, the `rasp_exhaustive`
  marker and fixture), loaded automatically where rasp_lab is installed.

Importing this package is light (no jax, no Hypothesis): the pytest plugin imports it in
every pytest run. The checks load the compiler on first use.
"""

from __future__ import annotations

import importlib
from collections.abc import Collection
from typing import TYPE_CHECKING, Any

DEFAULT_BUDGET = 5_000
"""Inputs `assert_compiles_exactly` enumerates at most (all inputs up to some length), normally."""

EXHAUSTIVE_BUDGET = 100_000
"""... and in exhaustive mode (`pytest --rasp-exhaustive`, or `set_exhaustive_mode(True)`)."""

_exhaustive = False


def exhaustive_mode() -> bool:
    """Whether slow exhaustive checks are on (set by `pytest --rasp-exhaustive`)."""
    return _exhaustive


def set_exhaustive_mode(on: bool) -> bool:
    """Turn exhaustive mode on or off; returns the previous setting."""
    global _exhaustive
    previous, _exhaustive = _exhaustive, bool(on)
    return previous


def exhaustive_budget(exhaustive: bool | None = None) -> int:
    """How many inputs to enumerate: EXHAUSTIVE_BUDGET in exhaustive mode (or when
    `exhaustive` is True), else DEFAULT_BUDGET."""
    on = exhaustive_mode() if exhaustive is None else exhaustive
    return EXHAUSTIVE_BUDGET if on else DEFAULT_BUDGET


def exhaustive_length(vocab: Collection[Any] | int, max_seq_len: int, budget: int | None = None) -> int:
    """The longest length L <= max_seq_len such that all inputs of lengths 1..L number at
    most `budget` (default `exhaustive_budget()`); 0 if not even length 1 fits."""
    size = vocab if isinstance(vocab, int) else len(vocab)
    budget = exhaustive_budget() if budget is None else budget
    total, length = 0, 0
    while length < max_seq_len:
        total += size ** (length + 1)
        if total > budget:
            break
        length += 1
    return length


_LAZY = {
    "assert_compiles_exactly": "rasp_lab.testing.checks",
    "CheckReport": "rasp_lab.testing.checks",
    "NotCertified": "rasp_lab.testing.checks",
    "NotValid": "rasp_lab.testing.checks",
}

if TYPE_CHECKING:
    from rasp_lab.testing.checks import CheckReport, NotCertified, NotValid, assert_compiles_exactly


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'rasp_lab.testing' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "assert_compiles_exactly",
    "CheckReport",
    "NotCertified",
    "NotValid",
    "exhaustive_mode",
    "set_exhaustive_mode",
    "exhaustive_budget",
    "exhaustive_length",
    "DEFAULT_BUDGET",
    "EXHAUSTIVE_BUDGET",
]
