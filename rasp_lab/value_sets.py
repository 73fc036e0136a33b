"""The set of values every SOp of a program can take, for a vocabulary and a maximum length.

An SOp that depends only on the token, index and length at its own position is enumerated
over the joint (token, index, length) space, so its set is exact (a SequenceMap of two
such SOps is not the Cartesian product of their sets). Aggregates and SelectorWidths are
new "sources" whose sets are over-approximated (every mean of a multiset of input values,
every count 0..N); SOps downstream of them are enumerated jointly over their sources,
treating different sources as independent, which is sound but may be loose.

The compiler uses the sets to size one-hot blocks and discretising MLPs, the selector
analysis to build predicate tables, and `validate` to find bad values before compiling.
"""

from __future__ import annotations

import itertools
import math
import numbers
from collections.abc import Hashable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np

from rasp_lab import rasp
from rasp_lab.graph import ProgramGraph, build_graph, distinct_labels
from rasp_lab.progress import Progress, Silent
from rasp_lab.rasp.expr import is_nan
from rasp_lab.values import order_key

MAX_VALUES = 20_000
"""Largest value set of a categorical SOp (one residual direction per value); a larger one
is reported as not enumerable."""

MAX_NUMERICAL_VALUES = 200_000
"""Largest value set of a numerical SOp: one direction whatever its values, which only size
arrays of discretiser thresholds and certificate rows (shuffle_dyck's balances take 26,821
values at max_seq_len 128)."""


def max_values(expr: rasp.RASPExpr) -> int:
    """The largest value set enumerated for `expr` (see MAX_VALUES, MAX_NUMERICAL_VALUES)."""
    return MAX_NUMERICAL_VALUES if rasp.is_numerical(expr) else MAX_VALUES


MAX_ASSIGNMENTS = 400_000
"""Largest joint space enumerated for one SOp before falling back to its children's product."""

WORK_LIMIT = 200_000_000
"""Default `work_limit` of `value_sets` and `validate`: steps (a (token, index, length) state
walked for one SOp, one predicate call, or one cell the validator's evaluations compute)
allowed before refusing to start. A step takes 0.2-0.5 microseconds, so the default
refuses work that would take a minute or more."""

_SECONDS_PER_STEP = 0.4e-6


def _duration(seconds: float) -> str:
    for unit, size in (("years", 365 * 86400), ("days", 86400), ("hours", 3600), ("minutes", 60)):
        if seconds >= 2 * size:
            return f"{seconds / size:,.0f} {unit}"
    return f"{seconds:.0f} seconds"


class WorkLimitError(ValueError):
    """Value-set inference would take too long; says how much work and how to allow it."""

    def __init__(
        self, label: str, estimate: int, limit: int, detail: str, work: str = "value-set inference"
    ) -> None:
        super().__init__(
            f"{label}: {work} needs about {estimate:,} steps ({detail}), "
            f"over the work limit of {limit:,} (about {_duration(estimate * _SECONDS_PER_STEP)} of work); "
            f"use a smaller vocab or max_seq_len, or pass a larger work_limit= to "
            f"rasp_lab.value_sets() or rasp_lab.validate() to run it anyway"
        )
        self.label = label
        self.estimate = estimate
        self.limit = limit


@dataclass(frozen=True)
class Failure:
    """A function (Map, SequenceMap or predicate) that raised on values it can be given."""

    label: str
    args: tuple
    error: str
    exact: bool
    """True when the arguments certainly occur on some input; False if only possibly."""
    kind: str = "raised"
    """'raised' (the function raised `error`) or 'nan' (it returned NaN)."""


@dataclass(frozen=True)
class ValueSets(Mapping):
    """label -> frozenset of the values that SOp can take (None included where it can have
    no value); `None` in place of a set means too many values to enumerate."""

    vocab: frozenset
    max_seq_len: int
    sets: Mapping[str, frozenset | None]
    exact: frozenset
    """Labels whose set is exact (every value occurs on some input)."""
    failures: tuple[Failure, ...] = field(default=())
    graph: ProgramGraph | None = field(default=None, compare=False, repr=False)
    state: Any = field(default=None, compare=False, repr=False)
    """The inference's per-node results, which `value_sets(..., reuse=this)` carries over to
    the nodes a rewrite left untouched (None once dropped, e.g. in a compiled model)."""

    def __getitem__(self, key: str | rasp.RASPExpr) -> frozenset | None:
        label = key.label if isinstance(key, rasp.RASPExpr) else key
        return self.sets[label]

    def __iter__(self) -> Iterator[str]:
        return iter(self.sets)

    def __len__(self) -> int:
        return len(self.sets)

    def is_exact(self, key: str | rasp.RASPExpr) -> bool:
        label = key.label if isinstance(key, rasp.RASPExpr) else key
        return label in self.exact


def check_vocab(vocab: Iterable[Any], max_seq_len: int) -> frozenset:
    """The vocabulary as a frozenset; TypeError/ValueError for arguments that can't work."""
    if isinstance(vocab, (str, bytes)) or not isinstance(vocab, Iterable):
        raise TypeError(f"vocab must be a collection of tokens (e.g. a set), got {vocab!r}")
    items = list(vocab)
    bad = [t for t in items if not isinstance(t, Hashable)]
    if bad:
        raise TypeError(f"vocab tokens must be hashable, got {bad!r}")
    if not items:
        raise ValueError("vocab is empty: a program needs at least one token")
    if any(t is None for t in items):
        raise ValueError("vocab contains None, which RASP reserves for 'no value'")
    nans = [t for t in items if is_nan(t)]
    if nans:
        raise ValueError(f"vocab contains NaN {nans!r}, which equals no token (not even itself)")
    collisions = colliding_tokens(items)
    if collisions:
        shown = "; ".join(" == ".join(repr(t) for t in group) for group in collisions)
        raise ValueError(
            f"vocab tokens {shown} are equal under == but distinct, so they would collapse into one "
            f"token; keep one of each"
        )
    if isinstance(max_seq_len, bool) or not isinstance(max_seq_len, int):
        raise TypeError(f"max_seq_len must be an int, got {max_seq_len!r}")
    if max_seq_len < 1:
        raise ValueError(f"max_seq_len must be at least 1, got {max_seq_len}")
    return frozenset(items)


def colliding_tokens(items: Iterable[Any]) -> list[tuple]:
    """Groups of tokens equal under == (and in hash) but of different type or repr, such as
    1, 1.0 and True, which a set would silently merge into one."""
    groups: dict[Any, list] = {}
    for item in items:
        group = groups.setdefault(item, [])
        if all(type(item) is not type(seen) or repr(item) != repr(seen) for seen in group):
            group.append(item)
    return [tuple(group) for group in groups.values() if len(group) > 1]


def check_work_limit(work_limit: int | None) -> int:
    """The work limit to use: WORK_LIMIT for None, else a positive int."""
    if work_limit is None:
        return WORK_LIMIT
    if isinstance(work_limit, bool) or not isinstance(work_limit, int):
        raise TypeError(f"work_limit must be an int (or None for {WORK_LIMIT:,}), got {work_limit!r}")
    if work_limit < 1:
        raise ValueError(f"work_limit must be at least 1, got {work_limit}")
    return work_limit


def value_sets(
    program: rasp.RASPExpr,
    vocab: Iterable[Any],
    max_seq_len: int,
    extra: Iterable[rasp.RASPExpr] = (),
    *,
    work_limit: int | None = None,
    progress: Progress | None = None,
    reuse: ValueSets | None = None,
) -> ValueSets:
    """The values every SOp of `program` (and of `extra`) can take on inputs over `vocab` of
    length 1..max_seq_len.

    Two different expressions under one name are labelled apart first (see
    rasp_lab.graph.distinct_labels); the sets are keyed by those labels.

    Raises WorkLimitError, before the work starts, when inference would take more than
    `work_limit` steps (default WORK_LIMIT, about a minute). `progress` is told of each SOp.

    `reuse`: the value sets of an earlier version of the program (same vocab and length).
    Every node that is the very same object there (a rewrite rebuilds only the nodes above
    what it replaced) keeps its results, so each node is inferred once per compile."""
    vocab_set = check_vocab(vocab, max_seq_len)
    limit = check_work_limit(work_limit)
    graph = build_graph(program if extra else distinct_labels(program), extra)
    inference = _Inference(graph, vocab_set, max_seq_len, limit)
    if (
        reuse is not None
        and reuse.state is not None
        and (reuse.vocab, reuse.max_seq_len) == (vocab_set, max_seq_len)
    ):
        inference.previous = reuse.state
    return inference.run(progress or Silent())


class _Inference:
    def __init__(
        self, graph: ProgramGraph, vocab: frozenset, max_seq_len: int, work_limit: int = WORK_LIMIT
    ) -> None:
        self.graph = graph
        self.vocab = vocab
        self.n = max_seq_len
        self.work_limit = work_limit
        self.work = 0
        self.sets: dict[str, frozenset | None] = {}
        self.exact: set[str] = set()
        self.sources: dict[str, frozenset[str]] = {}
        self.local: set[str] = set()
        self.cache: dict[str, dict[tuple, tuple[bool, Any]]] = {}
        self.failures: dict[tuple, Failure] = {}
        self.previous: _Inference | None = None
        self.inferred = 0
        """Nodes inferred here (not carried over from `previous`)."""
        self.tokens = sorted(vocab, key=order_key)
        self._plan_sources()
        self._charge_state_walks()

    def _states(self) -> Iterator[tuple]:
        """Every (token, index, length) a position can have; generated, not stored."""
        for length in range(1, self.n + 1):
            for index in range(length):
                for token in self.tokens:
                    yield token, index, length

    def _states_read_by(self, exprs: list[rasp.SOp]) -> Iterator[tuple]:
        """The (token, index, length) states that differ in what these leaves read: the
        token only if one is `tokens`, the index only if one is `indices` or a ConstantSOp,
        the length only if one is `length` (a fixed, valid stand-in for the rest)."""
        token = any(isinstance(e, rasp.TokensType) for e in exprs)
        index = any(isinstance(e, (rasp.IndicesType, rasp.ConstantSOp)) for e in exprs)
        length = any(isinstance(e, rasp.LengthType) for e in exprs)
        if token and index and length:
            yield from self._states()
            return
        tokens = self.tokens if token else self.tokens[:1]
        if index and length:
            places: Iterable[tuple[int, int]] = ((i, n) for n in range(1, self.n + 1) for i in range(n))
        elif index:
            places = ((i, i + 1) for i in range(self.n))
        elif length:
            places = ((0, n) for n in range(1, self.n + 1))
        else:
            places = ((0, 1),)
        for i, n in places:
            for t in tokens:
                yield t, i, n

    def _plan_sources(self) -> None:
        """Each SOp's sources and which SOps are local leaves, from the structure alone."""
        for label in self.graph.order:
            expr = self.graph.nodes[label]
            if isinstance(expr, (rasp.Map, rasp.SequenceMap)):
                self.sources[label] = frozenset().union(*(self.sources[c.label] for c in expr.children))
            elif isinstance(expr, rasp.SOp):
                self.sources[label] = frozenset([label])
                if not isinstance(expr, (rasp.Aggregate, rasp.SelectorWidth)):
                    self.local.add(label)

    def _charge_state_walks(self) -> None:
        """Refuse, before any work, inference that walks the (token, index, length) states
        too often: once for every SOp enumerated jointly over local leaves."""
        walkers = [
            label
            for label in self.graph.sops()
            if label in self.local
            or (
                isinstance(self.graph.nodes[label], (rasp.Map, rasp.SequenceMap))
                and not self._separable(self.graph.nodes[label])  # type: ignore[arg-type]
                and self.sources[label] & self.local
            )
        ]
        positions = self.n * (self.n + 1) // 2
        estimate = len(walkers) * len(self.tokens) * positions
        self._charge(
            estimate,
            f"{len(walkers)} SOp{'s' if len(walkers) != 1 else ''} enumerated over {len(self.tokens)} "
            f"tokens x {positions:,} (index, length) pairs for max_seq_len {self.n}",
        )

    def _charge(self, steps: int, detail: str) -> None:
        if self.work + steps > self.work_limit:
            raise WorkLimitError(self.graph.output.label, self.work + steps, self.work_limit, detail)
        self.work += steps

    def run(self, progress: Progress) -> ValueSets:
        for done, label in enumerate(self.graph.order):
            progress.step(done, len(self.graph.order), label)
            expr = self.graph.nodes[label]
            if self.previous is not None and self.previous.graph.nodes.get(label) is expr:
                self._carry(label, expr)
                continue
            if isinstance(expr, rasp.SOp):
                self.inferred += 1
                self.sets[label] = self._infer(label, expr)
            elif isinstance(expr, rasp.Select):
                self.inferred += 1
                self._check_predicate(expr)
        self.previous = None  # not kept alive through the result
        return ValueSets(
            vocab=self.vocab,
            max_seq_len=self.n,
            sets={label: self.sets[label] for label in self.graph.sops()},
            exact=frozenset(self.exact),
            failures=tuple(self.failures.values()),
            graph=self.graph,
            state=self,
        )

    def _carry(self, label: str, expr: rasp.RASPExpr) -> None:
        """The earlier inference's results for this very node (its whole subtree is the same
        objects, so they hold as they were)."""
        previous = self.previous
        assert previous is not None
        if isinstance(expr, rasp.SOp):
            self.sets[label] = previous.sets[label]
        if label in previous.exact:
            self.exact.add(label)
        if label in previous.cache:
            self.cache[label] = previous.cache[label]
        for key, failure in previous.failures.items():
            if failure.label == label:
                self.failures[key] = failure

    # -- sources: the independent quantities an SOp is a function of at its position:
    # local leaves (tokens, indices, length, Full, ConstantSOp: jointly one position's state)
    # and non-local SOps (Aggregate, SelectorWidth: treated as independent of everything).

    def _infer(self, label: str, expr: rasp.SOp) -> frozenset | None:
        if isinstance(expr, rasp.SelectorWidth):
            return frozenset(range(0, self.n + 1)) if self.n + 1 <= max_values(expr) else None
        if isinstance(expr, rasp.Aggregate):
            return self._aggregate(expr)
        return self._enumerate(label, expr)

    def _local_tuples(self, leaves: list[str]) -> list[tuple]:
        """The distinct joint values of these local leaves over every (token, index, length)."""
        exprs = [self.graph.nodes[leaf] for leaf in leaves]
        seen: dict[tuple, None] = {}
        for state in self._states_read_by(exprs):
            values = []
            for expr in exprs:
                ok, value = _leaf_value(expr, state)
                if not ok:
                    break
                values.append(value)
            else:
                seen.setdefault(tuple(values), None)
                if len(seen) > MAX_ASSIGNMENTS:
                    break  # too many to enumerate jointly: the caller falls back, so stop here
        return list(seen)

    def _separable(self, expr: rasp.SOp) -> bool:
        """Whether the children's values are jointly just the product of their sets: a Map,
        or a SequenceMap whose children share no source and not both read local leaves
        (local leaves are jointly constrained, e.g. index < length)."""
        if isinstance(expr, rasp.Map):
            return True
        if not isinstance(expr, rasp.SequenceMap) or expr.fst.label == expr.snd.label:
            return False
        fst, snd = self.sources[expr.fst.label], self.sources[expr.snd.label]
        return not (fst & snd) and not (fst & self.local and snd & self.local)

    def _enumerate(self, label: str, expr: rasp.SOp) -> frozenset | None:
        exact, results = self._joint_values(label, expr)
        if results is None:
            return None
        if exact:
            self.exact.add(label)
        return self._bounded(results, expr)

    def _joint_values(self, label: str, expr: rasp.SOp) -> tuple[bool, set | None]:
        """(exact?, values) from the children's sets where they are separable, else from
        the joint space of the SOp's sources (or, if that is too large, the children's)."""
        means = self._means_of_one_selection(expr)
        if means is not None:
            return False, means
        if self._separable(expr):
            exact = all(c.label in self.exact for c in expr.children)
            return exact, self._children_product(expr, exact)
        sources = sorted(self.sources[label])
        leaves = [s for s in sources if s in self.local]
        others = [s for s in sources if s not in self.local]
        domains: list[list] = [self._local_tuples(leaves)] if leaves else []
        for source in others:
            values = self.sets[source]
            if values is None:
                return False, None
            domains.append(sorted(values, key=order_key))
        if math.prod(len(d) for d in domains) > MAX_ASSIGNMENTS:
            return False, self._children_product(expr, False)
        exact = not others
        results: set = set()
        for assignment in itertools.product(*domains):
            env = dict(zip(leaves, assignment[0])) if leaves else {}
            env.update(zip(others, assignment[1:] if leaves else assignment))
            ok, value = self._pointwise(expr, env, exact)
            if ok:
                results.add(value)
        return exact, results

    def _means_of_one_selection(self, expr: rasp.SOp) -> set | None:
        """A SequenceMap of two numerical means over the same selection, such as a balance
        `opens - closes` of two running fractions: both divide by the same width w and sum
        the same keys, so only pairs of sums of w joint (fst, snd) key values occur, not the
        product of the two means' sets (whose differences grow as N^4: shuffle_dyck would
        be refused from max_seq_len 24). None where that structure is absent or too large;
        the caller then treats the means as independent."""
        if not isinstance(expr, rasp.SequenceMap) or not all(
            isinstance(c, rasp.Aggregate) and rasp.is_numerical(c) for c in expr.children
        ):
            return None
        fst, snd = expr.fst, expr.snd
        assert isinstance(fst, rasp.Aggregate) and isinstance(snd, rasp.Aggregate)
        if not _same_selection(fst.selector, snd.selector):
            return None
        sources = self.sources[fst.sop.label] | self.sources[snd.sop.label]
        if not sources <= self.local:
            return None
        leaves = sorted(sources)
        tuples = self._local_tuples(leaves)
        if len(tuples) > MAX_ASSIGNMENTS:
            return None
        joint: set[tuple] = set()
        for assignment in tuples:
            env = dict(zip(leaves, assignment))
            (ok_a, a), (ok_b, b) = self._pointwise(fst.sop, env, True), self._pointwise(snd.sop, env, True)
            if ok_a and ok_b:
                joint.add((a, b))
        values = [v for pair in joint for v in pair]
        if not all(isinstance(v, numbers.Real) and math.isfinite(v) for v in values):
            return None  # None, infinities or non-numbers: the per-mean rules handle them
        exact_ints = all(isinstance(v, int) for v in values)
        steps = {(int(a), int(b)) if exact_ints else (Fraction(a), Fraction(b)) for a, b in joint}
        # A linear map of integer sums is computed for every count at once, with the
        # evaluator's float operations: (s / count) * fst_fac + (t / count) * snd_fac.
        linear = exact_ints and isinstance(expr, rasp.LinearSequenceMap)
        limit = max_values(expr)
        results: set = set()
        ok, value = self._call(expr, (fst.default, snd.default), False)  # nothing selected
        if ok:
            results.add(value)
        pairs: set[tuple] = set()
        computed: list[np.ndarray] = []
        sums: set[tuple] = {(0, 0)}
        # When linear, the sums (s, t) as one int each: s * radix + t + offset, offset keeping
        # the second part in [0, radix) for every count up to N.
        offset = self.n * max((abs(b) for _, b in steps), default=0)
        radix = 2 * offset + 1
        codes = np.array([offset], dtype=np.int64)
        step_codes = np.array([a * radix + b for a, b in steps], dtype=np.int64)
        for count in range(1, self.n + 1):
            size = len(codes) if linear else len(sums)
            self._charge(size * len(steps), f"{expr.label!r} sums {count} keys of two means")
            if linear:
                codes = np.unique((codes[:, None] + step_codes[None, :]).reshape(-1))
                if len(codes) > MAX_ASSIGNMENTS:
                    return None
                s_sum, t_sum = np.divmod(codes, radix)
                # Exact ints, each division rounded once, as the evaluator's int / int.
                fst_mean = s_sum.astype(np.float64) / count
                snd_mean = (t_sum - offset).astype(np.float64) / count
                computed.append(np.unique(expr.fst_fac * fst_mean + expr.snd_fac * snd_mean))
                continue
            sums = {(s + a, t + b) for s, t in sums for a, b in steps}
            if len(sums) > MAX_ASSIGNMENTS:
                return None
            for s, t in sums:
                pairs.add((s / count, t / count) if exact_ints else (float(s / count), float(t / count)))
            if len(pairs) > MAX_ASSIGNMENTS:
                return None
        if linear:
            results.update(np.unique(np.concatenate(computed)).tolist())
            return results if len(results) <= limit else None
        for args in sorted(pairs):
            ok, value = self._call(expr, args, False)
            if ok:
                results.add(value)
                if len(results) > limit:
                    return None
        return results

    def _children_product(self, expr: rasp.SOp, exact: bool) -> set | None:
        """f over the product of the children's sets (exact for separable children; else a
        fallback when the joint space is too large)."""
        child_sets = [self.sets[c.label] for c in expr.children]
        if any(s is None for s in child_sets) or math.prod(len(s) for s in child_sets) > MAX_ASSIGNMENTS:
            return None
        results: set = set()
        for args in itertools.product(*[sorted(s, key=order_key) for s in child_sets]):
            ok, value = self._call(expr, args, exact)
            if ok:
                results.add(value)
        return results

    def _bounded(self, results: set, expr: rasp.SOp) -> frozenset | None:
        return frozenset(results) if len(results) <= max_values(expr) else None

    def _pointwise(self, expr: rasp.SOp, env: dict, exact: bool) -> tuple[bool, Any]:
        """The SOp's value at a position whose sources have the values in `env`, cached per
        node on the values of that node's own sources."""
        label = expr.label
        if label in env:
            return True, env[label]
        cache = self.cache.setdefault(label, {})
        key = tuple(env[s] for s in sorted(self.sources[label]))
        if key in cache:
            return cache[key]
        args = []
        result = None
        for child in expr.children:
            ok, value = self._pointwise(child, env, exact)  # type: ignore[arg-type]
            if not ok:
                result = (False, None)
                break
            args.append(value)
        if result is None:
            result = self._call(expr, tuple(args), exact)
        cache[key] = result
        return result

    def _call(self, expr: rasp.SOp, args: tuple, exact: bool) -> tuple[bool, Any]:
        if any(a is None for a in args):
            return True, None
        try:
            value = expr.f(*args)
            hash(value)
        except Exception as err:
            self._fail(expr.label, args, f"{type(err).__name__}({err})", exact)
            return False, None
        if is_nan(value):
            # NaN is not "no value" (None) and equals nothing: it never enters a value set.
            self._fail(expr.label, args, f"NaN ({value!r})", exact, kind="nan")
            return False, None
        return True, value

    def _fail(self, label: str, args: tuple, error: str, exact: bool, kind: str = "raised") -> None:
        key = (label, repr(args))
        known = self.failures.get(key)
        if known is None or (exact and not known.exact):
            self.failures[key] = Failure(label, args, error, exact, kind)

    # -- sources

    def _aggregate(self, expr: rasp.Aggregate) -> frozenset | None:
        inner = self.sets[expr.sop.label]
        if inner is None:
            return None
        out: set = {expr.default}
        values = [v for v in inner if v is not None]
        if None in inner:
            out.add(None)
        if rasp.is_categorical(expr):
            return self._bounded(out | set(values), expr)
        if not all(isinstance(v, numbers.Real) and not isinstance(v, complex) for v in values):
            # Not averageable; `validate` reports it. Keep the raw values so it can name them.
            return self._bounded(out | set(values), expr)
        finite = [v for v in values if math.isfinite(v)]
        # Infinities and NaN are not averageable either: kept raw for `validate` to name.
        out.update(v for v in values if not math.isfinite(v))
        means = mean_values(finite, self.n, max_values(expr))
        return None if means is None else self._bounded(out | means, expr)

    def _check_predicate(self, select: rasp.Select) -> None:
        keys, queries = self.sets.get(select.keys.label), self.sets.get(select.queries.label)
        if keys is None or queries is None:
            return
        if isinstance(select.predicate, rasp.Comparison) and _comparable(keys | queries):
            return  # a Comparison of numbers with numbers, or strings with strings, never raises
        exact = select.keys.label in self.exact and select.queries.label in self.exact
        key_values = [k for k in sorted(keys, key=order_key) if k is not None]
        query_values = [q for q in sorted(queries, key=order_key) if q is not None]
        self._charge(
            len(key_values) * len(query_values),
            f"{select.label!r} checks its predicate on {len(key_values):,} keys x {len(query_values):,} queries",
        )
        for key in key_values:
            for query in query_values:
                try:
                    select.predicate(key, query)
                except Exception as err:
                    self._fail(select.label, (key, query), f"{type(err).__name__}({err})", exact)


def _comparable(values: Iterable[Any]) -> bool:
    """Whether every non-None value is a real number, or every one a string."""
    present = [v for v in values if v is not None]
    return all(isinstance(v, numbers.Real) for v in present) or all(isinstance(v, str) for v in present)


def _same_selection(a: rasp.Selector, b: rasp.Selector) -> bool:
    """Whether two selectors select the same keys for every query of every input: one node,
    or two Selects of the same keys and queries by the same predicate."""
    if a.label == b.label:
        return True
    return (
        isinstance(a, rasp.Select)
        and isinstance(b, rasp.Select)
        and a.keys.label == b.keys.label
        and a.queries.label == b.queries.label
        and a.predicate is b.predicate
    )


def _leaf_value(expr: rasp.SOp, state: tuple) -> tuple[bool, Any]:
    """A local leaf's value at a position in `state` = (token, index, length)."""
    token, index, length = state
    if isinstance(expr, rasp.TokensType):
        return True, token
    if isinstance(expr, rasp.IndicesType):
        return True, index
    if isinstance(expr, rasp.LengthType):
        return True, length
    if isinstance(expr, rasp.Full):
        return True, expr.fill
    if isinstance(expr, rasp.ConstantSOp):
        return (True, expr.value[index]) if index < len(expr.value) else (False, None)
    raise TypeError(f"no value-set rule for {type(expr).__name__} {expr.label!r}")


def mean_values(values: Iterable[Any], max_count: int, limit: int = MAX_NUMERICAL_VALUES) -> set | None:
    """Every float `mean` of a multiset of 1..max_count of `values`, computed as the
    evaluator does (exact rational mean, then rounded once); None past `limit` sums or means,
    or past `limit` * `_WORK_PER_VALUE` big-integer additions without reaching them."""
    numbers = list(values)
    # Exact values: ints as they are, floats as the Fractions they equal.
    base = sorted(
        {int(v) for v in numbers}
        if all(isinstance(v, int) for v in numbers)
        else {Fraction(v) for v in numbers}
    )
    if not base:
        return set()
    # Over a common denominator every sum is an integer, and Python's int / int rounds the
    # exact quotient once, as Fraction -> float does (floats are dyadic: `scale` is a power of 2).
    scale = math.lcm(*(b.denominator for b in base)) if isinstance(base[0], Fraction) else 1
    scaled = [int(b * scale) for b in base]
    if max(abs(scaled[0]), abs(scaled[-1])) * max_count < 2**52 and scale * max_count < 2**52:
        # Small enough for int64 sums and one float64 division: vectorised.
        return _integer_means(np.array(scaled, dtype=np.int64), max_count, limit, scale)
    means: set = set()
    sums = {0}
    work = 0
    for count in range(1, max_count + 1):
        grown: set = set()
        for s in sums:
            grown.update([s + v for v in scaled])
            work += len(scaled)
            if len(grown) > limit or work > limit * _WORK_PER_VALUE:
                return None
        sums = grown
        denominator = scale * count
        means.update(s / denominator for s in sums)
        if len(means) > limit:
            return None
    return means


_WORK_PER_VALUE = 200
"""mean_values' budget of big-integer additions per value it may return (40 million, some
seconds, at the numerical limit): sums that collide often could otherwise take
len(sums) x len(values) additions per count, hours for a mean of a mean."""


def _integer_means(base: np.ndarray, max_count: int, limit: int, scale: int = 1) -> set | None:
    """mean_values for integers (the values times `scale`, their common denominator),
    vectorised: each sum and scale * count is exact in float64, so one float64 division
    rounds the exact rational once, as Python's int / int and Fraction -> float do."""
    means: list[np.ndarray] = []
    sums = np.zeros(1, dtype=np.int64)
    total = 0
    for count in range(1, max_count + 1):
        sums = np.unique((sums[:, None] + base[None, :]).reshape(-1))
        if len(sums) > limit:
            return None
        means.append(sums.astype(np.float64) / (scale * count))  # sums are distinct: so are these
        total += len(means[-1])
        if total > 4 * limit:
            means = [np.unique(np.concatenate(means))]
            total = len(means[0])
            if total > limit:
                return None
    result = np.unique(np.concatenate(means)) if means else np.zeros(0)
    return set(result.tolist()) if len(result) <= limit else None
