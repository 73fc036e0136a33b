"""Hypothesis strategies for RASP: random well-typed programs, inputs, and selectors.

    from rasp_lab.testing.strategies import programs, inputs, selectors

`programs()` draws programs over a small integer vocabulary (`VOCAB` unless you pass
another set of ints) that compile (some only with `require_exact=False`: their certified
error bound misses the tolerance): every function comes from a fixed family of frozen
dataclasses with drawn constants (so labels are structural and every example reproduces),
categorical Aggregates use selectors that can't make their selected positions disagree
(unless `allow_mixing=True`), and selectors that combine atoms with `|` or `~` read only
SOps that are never None (a head can only hold those). `inputs(vocab, max_seq_len)` draws
token lists; `selectors(sops)` draws selector compositions over SOps you give.

Hypothesis is a development dependency: `pip install "rasp-lab[dev]"` (or `pip install
hypothesis`) installs it.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

try:
    from hypothesis import strategies as st
except ImportError as err:  # pragma: no cover - exercised in a subprocess by the tests
    raise ImportError(
        "rasp_lab.testing.strategies needs Hypothesis, which is not installed: "
        'run `pip install "rasp-lab[dev]"` (or `pip install hypothesis`). '
        "The assertion helpers in rasp_lab.testing work without it."
    ) from err

from rasp_lab import rasp
from rasp_lab.values import sort_values

__all__ = [
    "VOCAB",
    "OPS",
    "programs",
    "inputs",
    "selectors",
    "PREDICATES",
]

VOCAB = frozenset({0, 1, 2, 3})
"""The default token vocabulary of `programs()` (any set of ints works)."""

COMPARISONS = list(rasp.Comparison)

# ------------------------------------------------------------------ function families
# Frozen dataclasses: equal constants give equal fingerprints, hence equal labels.


@dataclass(frozen=True)
class AddMod:
    """(x + c) mod m."""

    c: int
    m: int

    def __call__(self, x):
        return (x + self.c) % self.m


@dataclass(frozen=True)
class Threshold:
    """1 if x > c else 0."""

    c: int

    def __call__(self, x):
        return 1 if x > self.c else 0


@dataclass(frozen=True)
class Scale:
    """c * x."""

    c: int

    def __call__(self, x):
        return self.c * x


@dataclass(frozen=True)
class PairMod:
    """(x * y) or (x + y), mod m."""

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
"""Comparisons and custom integer predicates, as `programs()` draws them."""

SMALL_FLOATS = st.sampled_from([-2.5, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0, 3.0])
LARGE_FLOATS = st.sampled_from([0.0, 1.0, 2.25, 1000.0, 12345.5, 100000.0])
"""Values far apart in size: an output of 0 must stay within 1e-4 beside one of 1e5."""

_NAMES = st.sampled_from([None, None, None, None, "one", "w_selector_width_attn_output", "tokens:BOS"])
"""Mostly structural labels; sometimes names the compiler also uses for its own directions."""

# ------------------------------------------------------------------ knobs

OPS: dict[str, tuple[str, str]] = {
    "map": ("Map", "categorical"),  # categorical -> categorical
    "seqmap": ("SequenceMap", "categorical"),
    "width": ("SelectorWidth", "categorical"),
    "agg": ("Aggregate", "categorical"),
    "num_map": ("Map", "numerical"),  # categorical -> numerical
    "num_agg": ("Aggregate", "numerical"),
    "num_width": ("SelectorWidth", "numerical"),
    "num_num_map": ("Map", "numerical"),  # numerical -> numerical
    "num_cat_map": ("Map", "categorical"),  # numerical -> categorical
    "linear": ("LinearSequenceMap", "numerical"),
}
"""The steps `programs()` takes: name -> (expression type, encoding of the SOp it adds)."""

_NEEDS_NUMERICAL = {"num_num_map", "num_cat_map", "linear"}
_ENCODINGS = {"categorical", "numerical"}
_COMPOSITIONS = {"&", "|", "~"}


def _op_names(ops: Iterable[Any] | None, encodings: Iterable[str]) -> frozenset[str]:
    encodings = set(encodings)
    bad = encodings - _ENCODINGS
    if bad or not encodings:
        raise ValueError(
            f"encodings must be a non-empty subset of {sorted(_ENCODINGS)}, got {sorted(encodings)}"
        )
    if ops is None:
        types = {t for t, _ in OPS.values()}
    else:
        types = set()
        known = {t for t, _ in OPS.values()}
        for op in ops:
            name = op.__name__ if isinstance(op, type) else str(op)
            if name not in known:
                raise ValueError(f"unknown op {op!r}; programs() draws {sorted(known)} (as types or names)")
            types.add(name)
    chosen = frozenset(name for name, (t, enc) in OPS.items() if t in types and enc in encodings)
    if not chosen - _NEEDS_NUMERICAL:
        raise ValueError(
            f"no op can start a program with ops={sorted(types)} and encodings={sorted(encodings)}: "
            f"allow at least one op that reads tokens or indices"
        )
    return chosen


def _composition_kinds(compositions: bool | Iterable[str]) -> frozenset[str]:
    if compositions is True:
        return frozenset(_COMPOSITIONS)
    if compositions is False or compositions is None:
        return frozenset()
    kinds = frozenset(compositions)
    if kinds - _COMPOSITIONS:
        raise ValueError(
            f"compositions must be True, False or a subset of {sorted(_COMPOSITIONS)}, got {sorted(kinds)}"
        )
    return kinds


# ------------------------------------------------------------------ programs


class _Pools:
    """The SOps drawn so far, by encoding, and which categorical ones may be None."""

    def __init__(self) -> None:
        self.categorical: list[rasp.SOp] = [rasp.tokens, rasp.indices]
        self.numerical: list[rasp.SOp] = []
        self.nullable: set[str] = set()
        self.names: set[str] = set()
        self.last: rasp.SOp = rasp.tokens

    def never_none(self) -> list[rasp.SOp]:
        return [s for s in self.categorical if s.label not in self.nullable]

    def add(self, sop: rasp.SOp, nullable: bool = False, name: str | None = None) -> rasp.SOp:
        """Add `sop`, named `name` if given and not taken yet in this program."""
        if name is not None and name not in self.names:
            self.names.add(name)
            sop = sop.named(name)
        (self.numerical if rasp.is_numerical(sop) else self.categorical).append(sop)
        if nullable:
            self.nullable.add(sop.label)
        self.last = sop
        return sop


@dataclass(frozen=True)
class _Knobs:
    ops: frozenset[str]
    numerical: bool
    kinds: frozenset[str]
    depth: int
    allow_mixing: bool


def _pick(draw, pool: list[rasp.SOp]) -> rasp.SOp:
    """Half the time the newest SOp (so programs are chains, not mostly dead code)."""
    if draw(st.booleans()):
        return pool[-1]
    return draw(st.sampled_from(pool))


def _select(draw, pool: list[rasp.SOp]) -> rasp.Selector:
    return rasp.Select(_pick(draw, pool), _pick(draw, pool), draw(PREDICATES))


def _composed(
    draw, pools: _Pools, knobs: _Knobs, depth: int = 0, allow_none: bool | None = None
) -> rasp.Selector:
    """A Select, or `&` / `|` / `~` of selectors. A selector that reads SOps which can be
    None compiles only as a conjunction, so either it reads only never-None SOps, or it uses
    Selects, negated Selects (which select the None positions) and `&` alone."""
    if allow_none is None:
        allow_none = draw(st.booleans())
    pool = pools.categorical if allow_none else pools.never_none()
    kinds = ["select", "select"]
    kinds += ["and"] if "&" in knobs.kinds else []
    if not allow_none:
        kinds += ["or"] if "|" in knobs.kinds else []
        kinds += ["not"] if "~" in knobs.kinds else []
    if allow_none and "~" in knobs.kinds:
        kinds += ["not_select"]  # ~ of one atom stays a conjunction: it selects None keys
    kind = draw(st.sampled_from(kinds)) if depth < knobs.depth and len(kinds) > 2 else "select"
    if kind == "select":
        return _select(draw, pool)
    if kind == "not_select":
        return ~_select(draw, pool)
    if kind == "and":
        return _composed(draw, pools, knobs, depth + 1, allow_none) & _composed(
            draw, pools, knobs, depth + 1, allow_none
        )
    if kind == "or":
        return _composed(draw, pools, knobs, depth + 1, allow_none) | _composed(
            draw, pools, knobs, depth + 1, allow_none
        )
    return ~_composed(draw, pools, knobs, depth + 1, allow_none)


def _and_maybe(draw, pools: _Pools, knobs: _Knobs, base: rasp.Select) -> rasp.Selector:
    """`base`, or `base & (a random selector)`, keeping the whole compilable."""
    if "&" not in knobs.kinds or knobs.depth < 1 or not draw(st.booleans()):
        return base
    reads_none = bool({base.keys.label, base.queries.label} & pools.nullable)
    return base & _composed(draw, pools, knobs, 1, True if reads_none else None)


def _categorical_aggregate(draw, pools: _Pools, knobs: _Knobs) -> rasp.SOp:
    modes = ["by_index", "by_index", "by_value", "by_value"] + (["careless"] if knobs.allow_mixing else [])
    mode = draw(st.sampled_from(modes))
    if mode == "by_index":
        # Select(indices, target, EQ) picks at most one key: never mixes.
        selector = _and_maybe(
            draw, pools, knobs, rasp.Select(rasp.indices, _pick(draw, pools.categorical), rasp.Comparison.EQ)
        )
        source = _pick(draw, pools.categorical)
    elif mode == "by_value":
        # Keys selected by `key == query` (and anything else) all hold the same key value,
        # so the key or any Map of it agrees across them.
        key = _pick(draw, pools.categorical)
        selector = _and_maybe(
            draw, pools, knobs, rasp.Select(key, _pick(draw, pools.categorical), rasp.Comparison.EQ)
        )
        source = key if draw(st.booleans()) else rasp.Map(AddMod(draw(st.integers(0, 3)), 3), key)
    else:
        # May average different values: the program is then invalid on some inputs.
        selector = _composed(draw, pools, knobs)
        source = _pick(draw, pools.categorical)
    return rasp.Aggregate(selector, source)


def _step(draw, op: str, pools: _Pools, knobs: _Knobs) -> None:
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
        f = draw(
            st.one_of(
                st.builds(PairMod, st.integers(2, 5), st.booleans()), st.builds(PairDiff, st.integers(1, 4))
            )
        )
        fst, snd = _pick(draw, cat), _pick(draw, cat)
        pools.add(rasp.SequenceMap(f, fst, snd), nullable=bool({fst.label, snd.label} & pools.nullable))
    elif op == "width":
        pools.add(rasp.SelectorWidth(_composed(draw, pools, knobs)), name=draw(_NAMES))
    elif op == "num_width":
        pools.add(rasp.numerical(rasp.SelectorWidth(_composed(draw, pools, knobs))))
    elif op == "agg":
        pools.add(_categorical_aggregate(draw, pools, knobs), nullable=True)
    elif op == "num_map":
        # categorical -> numerical; the input must never be None (a numerical SOp can't be).
        f = draw(
            st.one_of(
                st.builds(Table, st.lists(SMALL_FLOATS, min_size=1, max_size=4).map(tuple)),
                st.builds(Table, st.lists(LARGE_FLOATS, min_size=1, max_size=4).map(tuple)),
                st.builds(Scale, st.integers(-2, 2)),
                st.builds(Threshold, st.integers(0, 3)),
            )
        )
        pools.add(rasp.numerical(rasp.Map(f, _pick(draw, pools.never_none()))), name=draw(_NAMES))
    elif op == "num_agg":
        if not pools.numerical:
            flag = rasp.numerical(
                rasp.Map(Threshold(draw(st.integers(0, 2))), _pick(draw, pools.never_none()))
            )
            pools.add(flag)
        source = _pick(draw, pools.numerical)
        pools.add(
            rasp.numerical(rasp.Aggregate(_composed(draw, pools, knobs), source, default=0)),
            name=draw(_NAMES),
        )
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
                st.builds(
                    Bucket,
                    st.lists(SMALL_FLOATS, min_size=1, max_size=3, unique=True).map(
                        lambda c: tuple(sorted(c))
                    ),
                ),
                st.builds(Step, SMALL_FLOATS, st.integers(-1, 2), st.integers(0, 3)),
            )
        )
        pools.add(rasp.Map(f, _pick(draw, pools.numerical)))
    else:  # linear
        fst, snd = _pick(draw, pools.numerical), _pick(draw, pools.numerical)
        fa, fb = draw(SMALL_FLOATS), draw(SMALL_FLOATS)
        pools.add(rasp.numerical(rasp.LinearSequenceMap(fst, snd, fa, fb)))


_START_ORDER = ["map", "seqmap", "width", "agg", "num_map", "num_agg", "num_width"]
_NUMERICAL_ORDER = ["num_num_map", "num_cat_map", "linear", "num_agg"]


@st.composite
def _programs(draw, min_ops: int, max_ops: int, knobs: _Knobs, with_length: bool) -> rasp.SOp:
    pools = _Pools()
    if with_length and draw(st.booleans()):
        pools.categorical.append(rasp.length)
        if knobs.numerical:
            # numerical(length) itself is refused: the model embeds length one-hot.
            pools.numerical.append(rasp.numerical(rasp.Map(lambda x: x, rasp.length)))
    for _ in range(draw(st.integers(min_ops, max_ops))):
        ops = [op for op in _START_ORDER if op in knobs.ops]
        if pools.numerical:
            ops += [op for op in _NUMERICAL_ORDER if op in knobs.ops]
        _step(draw, draw(st.sampled_from(ops)), pools, knobs)
    return pools.last


def programs(
    *,
    min_ops: int = 1,
    max_ops: int = 6,
    ops: Iterable[type | str] | None = None,
    encodings: Iterable[str] = ("categorical", "numerical"),
    compositions: bool | Iterable[str] = True,
    selector_depth: int = 2,
    with_length: bool = True,
    allow_mixing: bool = False,
) -> st.SearchStrategy[rasp.SOp]:
    """Random well-typed programs over an integer vocabulary (e.g. `VOCAB`); each draw is
    the last SOp of a chain of `min_ops..max_ops` steps, each reading earlier SOps.

    - `ops`: which expression types the steps add, as types or names (`rasp.Map`,
      `"SequenceMap"`, `rasp.LinearSequenceMap`, `rasp.Aggregate`, `rasp.SelectorWidth`);
      default all. (A numerical Aggregate drawn before any numerical SOp exists first adds a
      numerical Map flag to average.)
    - `encodings`: the encodings of the SOps the steps add ("categorical", "numerical").
    - `compositions`: whether selectors combine atoms with `&`, `|`, `~` (True, False, or a
      subset such as `{"&"}`); `selector_depth` bounds how deeply they nest.
    - `with_length`: whether the primitive `length` may be read (a causal model can't see
      the full length, so pass False to compile programs with `causal=True`).
    - `allow_mixing`: also draw categorical Aggregates whose selected positions may hold
      different values (such programs are invalid on some inputs; the compiler refuses
      them or the evaluator raises EvaluationError there).

    Functions and constants keep value sets small, so the programs compile for any
    `max_seq_len` up to about 10 over a vocabulary of a few small ints.
    """
    if not (1 <= min_ops <= max_ops):
        raise ValueError(f"need 1 <= min_ops <= max_ops, got min_ops={min_ops}, max_ops={max_ops}")
    if selector_depth < 0:
        raise ValueError(f"selector_depth must be >= 0, got {selector_depth}")
    encodings = set(encodings)
    knobs = _Knobs(
        _op_names(ops, encodings),
        "numerical" in encodings,
        _composition_kinds(compositions),
        selector_depth,
        allow_mixing,
    )
    return _programs(min_ops, max_ops, knobs, with_length)


# ------------------------------------------------------------------ inputs and selectors


def inputs(vocab: Collection[Any], max_seq_len: int, *, min_len: int = 1) -> st.SearchStrategy[list]:
    """Token lists (without BOS) over `vocab`, of length `min_len..max_seq_len`."""
    if not vocab:
        raise ValueError("vocab is empty")
    if not (0 <= min_len <= max_seq_len):
        raise ValueError(
            f"need 0 <= min_len <= max_seq_len, got min_len={min_len}, max_seq_len={max_seq_len}"
        )
    return st.lists(st.sampled_from(sort_values(vocab)), min_size=min_len, max_size=max_seq_len)


def selectors(
    keys: rasp.SOp | Sequence[rasp.SOp],
    queries: rasp.SOp | Sequence[rasp.SOp] | None = None,
    *,
    predicates: st.SearchStrategy | Sequence[Any] | None = None,
    compositions: bool | Iterable[str] = True,
    max_depth: int = 2,
) -> st.SearchStrategy[rasp.Selector]:
    """Selects over the given SOps (keys from `keys`, queries from `queries`, default the
    same SOps), combined with `&`, `|`, `~` up to `max_depth` levels deep.

    `predicates`: a strategy or a list to sample from (default: the six Comparisons plus
    TRUE and FALSE). Note that the compiler can put `|` and `~` in a head only when the
    SOps they read are never None (e.g. not the output of a categorical Aggregate)."""
    key_pool = [keys] if isinstance(keys, rasp.SOp) else list(keys)
    query_pool = (
        key_pool if queries is None else ([queries] if isinstance(queries, rasp.SOp) else list(queries))
    )
    if not key_pool or not query_pool:
        raise ValueError("selectors() needs at least one key SOp and one query SOp")
    for sop in key_pool + query_pool:
        if not isinstance(sop, rasp.SOp):
            raise TypeError(f"selectors() takes SOps, got {type(sop).__name__} {sop!r}")
    if predicates is None:
        predicates = st.sampled_from(COMPARISONS)
    elif not isinstance(predicates, st.SearchStrategy):
        predicates = st.sampled_from(list(predicates))
    kinds = [
        k
        for k, symbol in (("and", "&"), ("or", "|"), ("not", "~"))
        if symbol in _composition_kinds(compositions)
    ]

    @st.composite
    def draw_selector(draw, depth: int = 0) -> rasp.Selector:
        kind = (
            draw(st.sampled_from(["select", "select", *kinds])) if depth < max_depth and kinds else "select"
        )
        if kind == "select":
            return rasp.Select(
                draw(st.sampled_from(key_pool)), draw(st.sampled_from(query_pool)), draw(predicates)
            )
        if kind == "and":
            return draw(draw_selector(depth + 1)) & draw(draw_selector(depth + 1))
        if kind == "or":
            return draw(draw_selector(depth + 1)) | draw(draw_selector(depth + 1))
        return ~draw(draw_selector(depth + 1))

    return draw_selector()
