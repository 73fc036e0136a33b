"""The composition families the theory, the docs, the benchmarks and `viz` all measure: the
AND and the OR of m equalities `k_j == q_j`, over SOps that are independent (the digits of
a token) or correlated (Maps of one token)."""

from __future__ import annotations

from collections.abc import Sequence

from rasp_lab import rasp


class Digit:
    """token -> its i-th digit in base `base` (a Map that fingerprints by its parameters)."""

    def __init__(self, i: int, base: int) -> None:
        self.i, self.base = i, base

    def __call__(self, t: int) -> int:
        return (t // self.base**self.i) % self.base

    def __rasp_fingerprint__(self) -> str:
        return f"digit({self.i},{self.base})"


class Copy:
    """x -> x, as a named Map: an SOp equal to its input (correlated with it and its copies)."""

    def __call__(self, x: object) -> object:
        return x

    def __rasp_fingerprint__(self) -> str:
        return "copy"


def digits(m: int, base: int, prefix: str = "d", source: rasp.SOp = rasp.tokens) -> list[rasp.SOp]:
    """m SOps, the base-`base` digits of `source`: independent over the vocab range(base**m)."""
    return [rasp.Map(Digit(i, base), source).named(f"{prefix}{i}") for i in range(m)]


def copies(m: int, prefix: str, source: rasp.SOp = rasp.tokens) -> list[rasp.SOp]:
    """m named copies of `source`: perfectly correlated."""
    return [rasp.Map(Copy(), source, simplify=False).named(f"{prefix}{i}") for i in range(m)]


def equalities(keys: Sequence[rasp.SOp], queries: Sequence[rasp.SOp]) -> list[rasp.Selector]:
    if len(keys) != len(queries) or not keys:
        raise ValueError(
            f"need as many key SOps as query SOps (at least one), got {len(keys)} and {len(queries)}"
        )
    return [rasp.Select(k, q, rasp.Comparison.EQ) for k, q in zip(keys, queries)]


def and_of(atoms: Sequence[rasp.Selector]) -> rasp.Selector:
    selector = atoms[0]
    for atom in atoms[1:]:
        selector = rasp.SelectorAnd(selector, atom)
    return selector


def or_of(atoms: Sequence[rasp.Selector]) -> rasp.Selector:
    selector = atoms[0]
    for atom in atoms[1:]:
        selector = rasp.SelectorOr(selector, atom)
    return selector


def and_of_equalities(keys: Sequence[rasp.SOp], queries: Sequence[rasp.SOp]) -> rasp.Selector:
    """k_0 == q_0 & ... & k_{m-1} == q_{m-1}: one factored head of width sum |values|."""
    return and_of(equalities(keys, queries))


def or_of_equalities(keys: Sequence[rasp.SOp], queries: Sequence[rasp.SOp]) -> rasp.Selector:
    """k_0 == q_0 | ... | k_{m-1} == q_{m-1}: over independent two-valued SOps, any head
    needs QK rank >= 2^m - 1; over correlated ones, far less."""
    return or_of(equalities(keys, queries))
