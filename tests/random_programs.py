"""Hypothesis strategies for random well-typed RASP programs over a small integer vocabulary.

Functions come from fixed families with drawn constants, so every program is reproducible
from its Hypothesis example and every label is structural.
"""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import strategies as st

from rasp_lab import rasp

VOCAB = frozenset({0, 1, 2, 3})
COMPARISONS = list(rasp.Comparison)


@dataclass(frozen=True)
class AddMod:
    c: int
    m: int

    def __call__(self, x):
        return (x + self.c) % self.m


@dataclass(frozen=True)
class Threshold:
    c: int

    def __call__(self, x):
        return 1 if x > self.c else 0


@dataclass(frozen=True)
class Scale:
    c: int

    def __call__(self, x):
        return self.c * x


@dataclass(frozen=True)
class PairMod:
    m: int
    mul: bool

    def __call__(self, x, y):
        return (x * y if self.mul else x + y) % self.m


@dataclass(frozen=True)
class Parity:
    """A custom (non-Comparison) predicate: key + query is even (or odd)."""

    odd: bool

    def __call__(self, key, query):
        return (key + query) % 2 == (1 if self.odd else 0)


def selectors(draw, pool: list[rasp.SOp], depth: int = 0) -> rasp.Selector:
    """A Select over categorical SOps of the pool, or a composition of such."""
    choice = draw(st.integers(0, 5)) if depth < 2 else 0
    if choice <= 2:
        keys = draw(st.sampled_from(pool))
        queries = draw(st.sampled_from(pool))
        predicate = draw(st.one_of(st.sampled_from(COMPARISONS), st.builds(Parity, st.booleans())))
        return rasp.Select(keys, queries, predicate)
    if choice == 3:
        return selectors(draw, pool, depth + 1) & selectors(draw, pool, depth + 1)
    if choice == 4:
        return selectors(draw, pool, depth + 1) | selectors(draw, pool, depth + 1)
    return ~selectors(draw, pool, depth + 1)


@st.composite
def programs(draw, max_ops: int = 5, numerical_ops: bool = True, compositions: bool = True) -> rasp.SOp:
    """A random program: a chain of ops, each reading earlier SOps; returns the last SOp.

    Categorical SOps stay small non-negative ints; numerical ones are 0/1 flags or their means.
    """
    categorical: list[rasp.SOp] = [rasp.tokens, rasp.indices]
    numerical: list[rasp.SOp] = []
    last: rasp.SOp = rasp.tokens
    for _ in range(draw(st.integers(1, max_ops))):
        op = draw(st.sampled_from(["map", "seqmap", "width", "agg", "num"] if numerical_ops else ["map", "seqmap", "width", "agg"]))
        sel_pool = categorical
        if op == "map":
            f = draw(st.one_of(st.builds(AddMod, st.integers(0, 3), st.integers(2, 5)), st.builds(Threshold, st.integers(0, 3))))
            last = rasp.Map(f, draw(st.sampled_from(categorical)))
            categorical.append(last)
        elif op == "seqmap":
            f = draw(st.builds(PairMod, st.integers(2, 5), st.booleans()))
            last = rasp.SequenceMap(f, draw(st.sampled_from(categorical)), draw(st.sampled_from(categorical)))
            categorical.append(last)
        elif op == "width":
            selector = selectors(draw, sel_pool, 0 if compositions else 2)
            last = rasp.SelectorWidth(selector)
            categorical.append(last)
        elif op == "agg":
            # Select on indices EQ a categorical SOp picks at most one key, so no mixing.
            source = draw(st.sampled_from(categorical))
            target = draw(st.sampled_from(categorical))
            last = rasp.Aggregate(rasp.Select(rasp.indices, target, rasp.Comparison.EQ), source)
            categorical.append(last)
        else:
            flag = rasp.numerical(rasp.Map(Threshold(draw(st.integers(0, 2))), draw(st.sampled_from(categorical))))
            selector = selectors(draw, sel_pool, 0 if compositions else 2)
            last = rasp.numerical(rasp.Aggregate(selector, flag, default=0))
            numerical.append(last)
    return last


inputs = st.lists(st.sampled_from(sorted(VOCAB)), min_size=1, max_size=6)
