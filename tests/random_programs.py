"""Hypothesis strategies for random well-typed RASP programs over a small integer vocabulary.

Functions come from fixed families with drawn constants, so every program is reproducible
from its Hypothesis example and every label is structural. The families and the compiler's
random programs live in rasp_lab.testing.strategies (shipped for users); `programs` here
draws evaluator-level programs for the value-set tests.
"""

from __future__ import annotations

from hypothesis import strategies as st

from rasp_lab import rasp
from rasp_lab.testing import strategies
from rasp_lab.testing.strategies import VOCAB, AddMod, PairMod, Parity, Threshold

COMPARISONS = list(rasp.Comparison)


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


def compiled_programs(max_ops: int = 8, min_ops: int = 1, with_length: bool = True):
    """A random program over VOCAB mixing categorical and numerical SOps (see
    rasp_lab.testing.strategies.programs); some categorical Aggregates are drawn without
    care, so some programs are invalid (their selected values may disagree): the tests check
    those raise ValidationError. `with_length`: the primitive `length` may be read."""
    return strategies.programs(min_ops=min_ops, max_ops=max_ops, with_length=with_length, allow_mixing=True)
