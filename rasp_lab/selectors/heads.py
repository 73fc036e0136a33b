"""The head model's pieces: blocks a head reads, its weights, and the two kinds of proof
that a composition does not fit (a broken rectangle, a Farkas certificate)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np

ENCODINGS = ("factored", "product_keys", "product_queries", "product_both")


@dataclass(frozen=True)
class Atom:
    """One `Select(keys, queries, predicate)` of the composition."""

    label: str
    key_sop: str
    query_sop: str
    predicate: Any


@dataclass(frozen=True)
class Block:
    """A one-hot block the head reads: one SOp, or the product of several (values are
    tuples in `sops` order then)."""

    sops: tuple[str, ...]
    values: tuple[Any, ...]

    @property
    def name(self) -> str:
        return self.sops[0] if len(self.sops) == 1 else f"product({','.join(self.sops)})"

    @property
    def width(self) -> int:
        return len(self.values)


@dataclass(frozen=True)
class HeadWeights:
    """A head's QK in table units over blocks: logit(q, k) = sum_ji tables[j, i][q_j, k_i]
    + sum_i key_bias[i][k_i]; BOS scores bos_const + sum_j bos_query[j][q_j]."""

    query_blocks: tuple[Block, ...]
    key_blocks: tuple[Block, ...]
    tables: Mapping[tuple[int, int], np.ndarray]  # (j, i) -> [|query block j|, |key block i|]
    key_bias: Mapping[int, np.ndarray]  # i -> [|key block i|]
    bos_query: Mapping[int, np.ndarray]  # j -> [|query block j|]
    bos_const: float
    margin: float

    def logits(
        self, q_index: Mapping[int, np.ndarray], k_index: Mapping[int, np.ndarray]
    ) -> tuple[np.ndarray, np.ndarray]:
        """(logits [n_q, n_k], bos [n_q]) for query/key tuples given as block value indices."""
        n_q = len(next(iter(q_index.values())))
        n_k = len(next(iter(k_index.values())))
        logits = np.zeros((n_q, n_k))
        for (j, i), table in self.tables.items():
            logits += table[q_index[j][:, None], k_index[i][None, :]]
        for i, bias in self.key_bias.items():
            logits += bias[k_index[i]][None, :]
        bos = np.full(n_q, self.bos_const)
        for j, vec in self.bos_query.items():
            bos += vec[q_index[j]]
        return logits, bos


@dataclass(frozen=True)
class Rectangle:
    """For one query tuple: two `selected` key tuples and the two `swapped` tuples that
    trade a set of their coordinates, at least one of them unselected. A factored key side
    scores a key as a sum over its SOps, so the swapped pair's logits add up to the
    selected pair's, 2 M(q): one of them reaches the top M(q), and an unselected key can't.
    Both swapped tuples must occur beside the query (in the program's domain, some input
    realises each pair)."""

    query: tuple
    selected: tuple[tuple, tuple]
    swapped: tuple[tuple, tuple]
    unselected: tuple
    """The first swapped tuple that is unselected."""

    def __str__(self) -> str:
        return (
            f"query {self.query}: keys {self.selected[0]} and {self.selected[1]} are selected, and "
            f"{self.unselected} (built from their coordinates, beside {self._other}) is not"
        )

    @property
    def _other(self) -> tuple:
        return self.swapped[1] if self.swapped[0] == self.unselected else self.swapped[0]


@dataclass(frozen=True)
class FarkasCertificate:
    """Non-negative weights on the head's inequalities (and any weights on its equalities)
    that sum the constraints to 0 <= -1: no weights can satisfy them all."""

    inequalities: tuple[tuple[str, tuple, tuple, Fraction], ...]
    """(kind, query tuple, key tuple or (), weight): kind 'unselected' (key <= BOS - 1) or
    'bos-below-selected' (BOS <= M(q) - 1)."""
    equalities: tuple[tuple[tuple, tuple, Fraction], ...]
    """(query tuple, key tuple, weight) for 'selected: logit = M(q)'."""
    exact: bool
    """True if verified in exact rational arithmetic."""

    def __str__(self) -> str:
        return (
            f"Farkas certificate combining {len(self.inequalities)} inequalities and "
            f"{len(self.equalities)} equalities ({'exact' if self.exact else 'floating point'})"
        )


@dataclass(frozen=True)
class Fit:
    """Whether one encoding fits, with weights (yes) or a certificate (no)."""

    encoding: str
    width: int
    fits: bool
    weights: HeadWeights | None = None
    witness: Rectangle | FarkasCertificate | None = None
    method: str = ""
    """How it was decided: 'conjunction', 'single-pair', 'lp', 'rectangle', 'farkas', or
    'stopped' (the LP hit its time limit: undecided, and `fits` is False)."""

    @property
    def decided(self) -> bool:
        return self.method != "stopped"
