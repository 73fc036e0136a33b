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


# ------------------------------------------------------------------ programs for the compiler
#
# `compiled_programs` draws programs over every op the compiler handles, with categorical
# and numerical SOps mixed. Function families are frozen dataclasses so labels stay
# structural. Drawn programs are meant to be valid almost always: categorical Aggregates
# mostly use selectors that can't mix values, and compositions with `|` or `~` (which a
# head can only hold when no SOp they read is None) read only SOps that are never None.
# A few categorical Aggregates are drawn without care, so some programs are invalid (their
# selected values may disagree): the tests check those raise ValidationError.


@dataclass(frozen=True)
class Clip:
    """min(x, c): a categorical Map that merges values."""

    c: int

    def __call__(self, x):
        return min(x, self.c)


@dataclass(frozen=True)
class PairDiff:
    """|x - y| capped: a SequenceMap whose value set stays small."""

    cap: int

    def __call__(self, x, y):
        return min(abs(x - y), self.cap)


@dataclass(frozen=True)
class Within:
    """A custom predicate: |key - query| <= d."""

    d: int

    def __call__(self, key, query):
        return abs(key - query) <= self.d


@dataclass(frozen=True)
class ModEq:
    """A custom predicate: key and query agree mod m."""

    m: int

    def __call__(self, key, query):
        return key % self.m == query % self.m


@dataclass(frozen=True)
class Table:
    """A categorical -> numerical Map: values[x mod len(values)] (values may be negative)."""

    values: tuple

    def __call__(self, x):
        return self.values[x % len(self.values)]


@dataclass(frozen=True)
class Step:
    """A numerical -> numerical (or categorical) Map: `lo` up to the threshold, `hi` above."""

    threshold: float
    lo: float
    hi: float

    def __call__(self, x):
        return self.hi if x > self.threshold else self.lo


@dataclass(frozen=True)
class Bucket:
    """A numerical -> categorical Map: which of the sorted cut points x exceeds (0..len)."""

    cuts: tuple

    def __call__(self, x):
        return sum(1 for c in self.cuts if x > c)


@dataclass(frozen=True)
class Affine:
    """A numerical -> numerical Map a * x + b, rounded so outputs are exact floats."""

    a: float
    b: float

    def __call__(self, x):
        return round(self.a * x + self.b, 6)


@dataclass(frozen=True)
class Sign:
    """-1, 0 or 1 (as floats): a numerical -> numerical Map with a negative output."""

    def __call__(self, x):
        return float((x > 0) - (x < 0))


PREDICATES = st.one_of(
    st.sampled_from(COMPARISONS),
    st.builds(Parity, st.booleans()),
    st.builds(Within, st.integers(0, 2)),
    st.builds(ModEq, st.integers(2, 3)),
)
SMALL_FLOATS = st.sampled_from([-2.5, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0, 3.0])


class _Pools:
    """The SOps drawn so far, by encoding, and which categorical ones may be None."""

    def __init__(self) -> None:
        self.categorical: list[rasp.SOp] = [rasp.tokens, rasp.indices]
        self.numerical: list[rasp.SOp] = []
        self.nullable: set[str] = set()
        self.last: rasp.SOp = rasp.tokens

    def never_none(self) -> list[rasp.SOp]:
        return [s for s in self.categorical if s.label not in self.nullable]

    def add(self, sop: rasp.SOp, nullable: bool = False) -> rasp.SOp:
        (self.numerical if rasp.is_numerical(sop) else self.categorical).append(sop)
        if nullable:
            self.nullable.add(sop.label)
        self.last = sop
        return sop


def _pick(draw, pool: list[rasp.SOp]) -> rasp.SOp:
    """Half the time the newest SOp (so programs are chains, not mostly dead code)."""
    if draw(st.booleans()):
        return pool[-1]
    return draw(st.sampled_from(pool))


def _select(draw, pool: list[rasp.SOp]) -> rasp.Selector:
    return rasp.Select(_pick(draw, pool), _pick(draw, pool), draw(PREDICATES))


def _composed(draw, pools: _Pools, depth: int = 0, allow_none: bool | None = None) -> rasp.Selector:
    """A Select, or `&` / `|` / `~` of selectors. A selector that reads SOps which can be
    None compiles only as a conjunction (a head can't see None), so either it reads only
    never-None SOps, or it uses Selects and `&` alone."""
    if allow_none is None:
        allow_none = draw(st.booleans())
    pool = pools.categorical if allow_none else pools.never_none()
    kinds = ["select", "select", "and"] + ([] if allow_none else ["or", "not"])
    kind = draw(st.sampled_from(kinds)) if depth < 2 else "select"
    if kind == "select":
        return _select(draw, pool)
    if kind == "and":
        return _composed(draw, pools, depth + 1, allow_none) & _composed(draw, pools, depth + 1, allow_none)
    if kind == "or":
        return _composed(draw, pools, depth + 1, allow_none) | _composed(draw, pools, depth + 1, allow_none)
    return ~_composed(draw, pools, depth + 1, allow_none)


def _and_maybe(draw, pools: _Pools, base: rasp.Select) -> rasp.Selector:
    """`base`, or `base & (a random selector)`, keeping the whole compilable."""
    if not draw(st.booleans()):
        return base
    reads_none = bool({base.keys.label, base.queries.label} & pools.nullable)
    return base & _composed(draw, pools, 1, True if reads_none else None)


def _categorical_aggregate(draw, pools: _Pools) -> rasp.SOp:
    mode = draw(st.sampled_from(["by_index", "by_index", "by_value", "by_value", "careless"]))
    if mode == "by_index":
        # Select(indices, target, EQ) picks at most one key: never mixes.
        selector = _and_maybe(draw, pools, rasp.Select(rasp.indices, _pick(draw, pools.categorical), rasp.Comparison.EQ))
        source = _pick(draw, pools.categorical)
    elif mode == "by_value":
        # Keys selected by `source == query` (and anything else) all hold the same source
        # value, so the source or any Map of it agrees across them.
        key = _pick(draw, pools.categorical)
        selector = _and_maybe(draw, pools, rasp.Select(key, _pick(draw, pools.categorical), rasp.Comparison.EQ))
        source = key if draw(st.booleans()) else rasp.Map(AddMod(draw(st.integers(0, 3)), 3), key)
    else:
        selector = _composed(draw, pools)
        source = _pick(draw, pools.categorical)
    return rasp.Aggregate(selector, source)


@st.composite
def compiled_programs(draw, max_ops: int = 8, min_ops: int = 1, with_length: bool = True) -> rasp.SOp:
    """A random program over VOCAB mixing categorical and numerical SOps; returns the last.
    `with_length`: the primitive `length` (categorical and numerical) may be read."""
    pools = _Pools()
    if with_length and draw(st.booleans()):
        pools.categorical.append(rasp.length)
        pools.numerical.append(rasp.numerical(rasp.length))
    for _ in range(draw(st.integers(min_ops, max_ops))):
        ops = ["map", "seqmap", "width", "agg", "num_map", "num_agg", "num_width"]
        if pools.numerical:
            ops += ["num_num_map", "num_cat_map", "linear", "num_agg"]
        op = draw(st.sampled_from(ops))
        cat = pools.categorical
        if op == "map":
            f = draw(
                st.one_of(
                    st.builds(AddMod, st.integers(0, 3), st.integers(2, 5)),
                    st.builds(Threshold, st.integers(0, 3)),
                    st.builds(Clip, st.integers(1, 4)),
                )
            )
            inner = _pick(draw, cat)
            pools.add(rasp.Map(f, inner), nullable=inner.label in pools.nullable)
        elif op == "seqmap":
            f = draw(st.one_of(st.builds(PairMod, st.integers(2, 5), st.booleans()), st.builds(PairDiff, st.integers(1, 4))))
            fst, snd = _pick(draw, cat), _pick(draw, cat)
            pools.add(rasp.SequenceMap(f, fst, snd), nullable=bool({fst.label, snd.label} & pools.nullable))
        elif op == "width":
            pools.add(rasp.SelectorWidth(_composed(draw, pools)))
        elif op == "num_width":
            pools.add(rasp.numerical(rasp.SelectorWidth(_composed(draw, pools))))
        elif op == "agg":
            agg = _categorical_aggregate(draw, pools)
            pools.add(agg, nullable=True)
        elif op == "num_map":
            # categorical -> numerical; the input must never be None (a numerical SOp can't be).
            f = draw(
                st.one_of(
                    st.builds(Table, st.lists(SMALL_FLOATS, min_size=1, max_size=4).map(tuple)),
                    st.builds(Scale, st.integers(-2, 2)),
                    st.builds(Threshold, st.integers(0, 3)),
                )
            )
            pools.add(rasp.numerical(rasp.Map(f, _pick(draw, pools.never_none()))))
        elif op == "num_agg":
            if not pools.numerical:
                flag = rasp.numerical(rasp.Map(Threshold(draw(st.integers(0, 2))), _pick(draw, pools.never_none())))
                pools.add(flag)
            source = _pick(draw, pools.numerical)
            pools.add(rasp.numerical(rasp.Aggregate(_composed(draw, pools), source, default=0)))
        elif op == "num_num_map":
            f = draw(
                st.one_of(
                    st.builds(Step, SMALL_FLOATS, SMALL_FLOATS, SMALL_FLOATS),
                    st.builds(Affine, st.sampled_from([-2.0, -1.0, 0.5, 3.0]), SMALL_FLOATS),
                    st.just(Sign()),
                )
            )
            pools.add(rasp.numerical(rasp.Map(f, _pick(draw, pools.numerical))))
        elif op == "num_cat_map":
            f = draw(
                st.one_of(
                    st.builds(Bucket, st.lists(SMALL_FLOATS, min_size=1, max_size=3, unique=True).map(lambda c: tuple(sorted(c)))),
                    st.builds(Step, SMALL_FLOATS, st.integers(-1, 2), st.integers(0, 3)),
                )
            )
            pools.add(rasp.Map(f, _pick(draw, pools.numerical)))
        else:  # linear
            fst, snd = _pick(draw, pools.numerical), _pick(draw, pools.numerical)
            fa, fb = draw(SMALL_FLOATS), draw(SMALL_FLOATS)
            pools.add(rasp.numerical(rasp.LinearSequenceMap(fst, snd, fa, fb)))
    return pools.last
