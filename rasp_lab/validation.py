"""Find everything that would stop a program from compiling exactly, all at once.

`validate` never raises for a bad program: it returns one `Problem` per issue, each naming
the expression's label and the offending values. Bad arguments (a vocab that is not a
collection, a non-expression) raise at once. Checks are static (encodings, defaults, value
sets) and dynamic: the program is evaluated on every short input and on seeded random
longer ones, which turns "may happen" into a concrete input where it does.
"""

from __future__ import annotations

import itertools
import math
import numbers
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from rasp_lab import rasp
from rasp_lab.evaluator import EvaluationError, evaluate
from rasp_lab.graph import ProgramGraph, distinct_labels
from rasp_lab.value_sets import (
    ValueSets,
    WorkLimitError,
    check_vocab,
    check_work_limit,
    is_nan,
    max_values,
    value_sets,
)

SEARCH_BUDGET = 1500
"""How many inputs the dynamic check evaluates (all short ones, then random longer ones)."""


@dataclass(frozen=True)
class Problem:
    """One reason a program can't be compiled exactly (or, as a warning, may not be)."""

    label: str
    kind: str
    message: str
    values: tuple = ()
    severity: str = "error"

    def __str__(self) -> str:
        return f"[{self.severity}] {self.label}: {self.message}"


class ValidationError(ValueError, NotImplementedError):
    """Raised by the compiler with every error-level problem `validate` found (also a
    NotImplementedError, as Tracr's compiler raises for programs it can't compile)."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems = tuple(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        count = f"{len(self.problems)} problem{'s' if len(self.problems) != 1 else ''}"
        super().__init__(f"the program can't be compiled exactly ({count}):\n{lines}")


def validate(
    program: rasp.RASPExpr,
    vocab: Iterable[Any],
    max_seq_len: int,
    *,
    causal: bool = False,
    work_limit: int | None = None,
) -> list[Problem]:
    """Every problem of `program` on inputs over `vocab` up to `max_seq_len`, errors first
    (`causal` evaluates the dynamic check causally, as a causal model would run).
    WorkLimitError, before the work starts, if value-set inference or the dynamic check would
    take more than `work_limit` steps (default WORK_LIMIT, about a minute)."""
    if not isinstance(program, rasp.RASPExpr):
        raise TypeError(f"validate() takes a RASP expression, got {type(program).__name__} {program!r}")
    vocab_set = check_vocab(vocab, max_seq_len)
    limit = check_work_limit(work_limit)
    program = distinct_labels(program)  # as compile does: problems name the labels it uses
    sets = value_sets(program, vocab_set, max_seq_len, work_limit=limit)
    steps = dynamic_work(sets.graph, len(vocab_set), max_seq_len, SEARCH_BUDGET)  # type: ignore[arg-type]
    if steps > limit:
        raise WorkLimitError(
            program.label,
            steps,
            limit,
            f"{SEARCH_BUDGET} evaluations on inputs up to length {max_seq_len}, each computing "
            f"length^2 cells per selector, Aggregate and SelectorWidth, two cells a step",
            work="checking the program on inputs",
        )
    return check(program, sets, causal=causal)


def dynamic_work(graph: ProgramGraph, vocab_size: int, max_seq_len: int, budget: int) -> int:
    """Work steps of the dynamic check: the cells it computes over the inputs
    `_search_inputs` yields (random lengths counted by their expectation), length^2 per
    selector, Aggregate and SelectorWidth (one per query and key) and length per other SOp;
    a cell takes about 0.15 microseconds, so two cells make one step of WORK_LIMIT."""
    square = sum(
        isinstance(e, (rasp.Selector, rasp.Aggregate, rasp.SelectorWidth)) for e in graph.nodes.values()
    )
    linear = len(graph.nodes) - square

    def cost(length: int) -> int:
        return square * length * length + linear * length

    used, length, cells = 0, 1, 0
    while length <= max_seq_len and used + vocab_size**length <= budget // 2:
        cells += vocab_size**length * cost(length)
        used += vocab_size**length
        length += 1
    if length <= max_seq_len:
        randoms = budget - used  # even ones at max_seq_len, odd ones uniform over the rest
        at_random = sum(cost(n) for n in range(length, max_seq_len + 1)) / (max_seq_len + 1 - length)
        cells += int((randoms + 1) // 2 * cost(max_seq_len) + randoms // 2 * at_random)
    return cells // 2


def check(
    program: rasp.RASPExpr,
    sets: ValueSets,
    *,
    causal: bool = False,
    budget: int = SEARCH_BUDGET,
    max_cells: int | None = None,
) -> list[Problem]:
    """`validate` for value sets already computed (the compiler's entry point); `budget`
    is how many inputs the dynamic check evaluates, `max_cells` (if given) caps the cells
    they compute (see dynamic_work): the compiler's check then costs the same at any length,
    trying fewer long inputs where each is dear."""
    checker = _Checker(sets, sets.graph)
    checker.static()
    checker.dynamic(program, sorted(sets.vocab, key=repr), sets.max_seq_len, causal, budget, max_cells)
    return sorted(checker.problems.values(), key=lambda p: (p.severity != "error", checker.rank(p.label)))


def _short(values: Iterable[Any], limit: int = 8) -> str:
    items = sorted(values, key=repr)
    shown = ", ".join(repr(v) for v in items[:limit])
    return f"{{{shown}{', ...' if len(items) > limit else ''}}}"


def contains_diagonal(selector: rasp.Selector, sets: ValueSets) -> bool:
    """True if every query position certainly selects itself (so never selects nothing).
    Iterative, children before parents, so long `&` / `|` chains don't recurse."""
    result: dict[int, bool] = {}
    stack: list[tuple[rasp.Selector, bool]] = [(selector, False)]
    while stack:
        node, expanded = stack.pop()
        if id(node) in result:
            continue
        if isinstance(node, (rasp.SelectorAnd, rasp.SelectorOr)) and not expanded:
            stack.append((node, True))
            stack.extend((child, False) for child in (node.snd, node.fst) if id(child) not in result)
            continue
        if isinstance(node, rasp.SelectorAnd):
            result[id(node)] = result[id(node.fst)] and result[id(node.snd)]
        elif isinstance(node, rasp.SelectorOr):
            result[id(node)] = result[id(node.fst)] or result[id(node.snd)]
        else:
            result[id(node)] = _atom_contains_diagonal(node, sets)
    return result[id(selector)]


def _atom_contains_diagonal(selector: rasp.Selector, sets: ValueSets) -> bool:
    if isinstance(selector, rasp.Select):
        keys, queries = sets[selector.keys], sets[selector.queries]
        if keys is None or queries is None or None in keys or None in queries:
            return False
        if selector.predicate is rasp.Comparison.TRUE:
            return True
        if selector.keys.label != selector.queries.label:
            return False
        try:
            return all(bool(selector.predicate(v, v)) for v in keys)
        except Exception:
            return False
    if isinstance(selector, rasp.ConstantSelector):
        n = sets.max_seq_len
        rows = selector.value
        return len(rows) >= n and all(len(rows[i]) > i and rows[i][i] for i in range(n))
    return False


class _Checker:
    def __init__(self, sets: ValueSets, graph: ProgramGraph) -> None:
        self.sets = sets
        self.graph = graph
        self.problems: dict[tuple[str, str], Problem] = {}

    def rank(self, label: str) -> int:
        return self.graph.order.index(label) if label in self.graph.nodes else -1

    def add(
        self, label: str, kind: str, message: str, values: Iterable[Any] = (), severity: str = "error"
    ) -> None:
        key = (label, kind)
        known = self.problems.get(key)
        if known is None or (severity == "error" and known.severity != "error"):
            self.problems[key] = Problem(label, kind, message, tuple(values), severity)

    # ------------------------------------------------------------------ static checks

    def static(self) -> None:
        for failure in self.sets.failures:
            expr = self.graph.nodes[failure.label]
            what = "predicate" if isinstance(expr, rasp.Select) else f"{type(expr).__name__} function"
            certainty = "on reachable values" if failure.exact else "on values it may receive"
            verb = "returned" if failure.kind == "nan" else "raised"
            self.add(
                failure.label,
                "nan" if failure.kind == "nan" else "function-raised",
                f"{what} {verb} {failure.error} {certainty} {failure.args!r}",
                failure.args,
                "error" if failure.exact else "warning",
            )
        for label in self.graph.order:
            expr = self.graph.nodes[label]
            if isinstance(expr, rasp.SOp):
                self._values(label, expr)
            if isinstance(expr, rasp.LinearSequenceMap):
                self._linear(label, expr)
            elif isinstance(expr, rasp.SequenceMap):
                self._sequence_map(label, expr)
            elif isinstance(expr, rasp.Map):
                self._map(label, expr)
            elif isinstance(expr, rasp.Aggregate):
                self._aggregate(label, expr)
            elif isinstance(expr, rasp.Select):
                self._select(label, expr)
            elif isinstance(expr, rasp.ConstantSOp):
                self._constant(label, len(expr.value), expr.check_length)
            elif isinstance(expr, (rasp.TokensType, rasp.IndicesType, rasp.LengthType)) and rasp.is_numerical(
                expr
            ):
                self.add(
                    label,
                    "numerical-input",
                    f"numerical({expr.name}): the compiled model embeds {expr.name} one-hot (categorical), so "
                    f"it has no numerical {expr.name} to read; use rasp.numerical(rasp.Map(lambda x: x, "
                    f"rasp.{expr.name})), which an MLP computes from the one-hot",
                )
            elif isinstance(expr, rasp.ConstantSelector):
                self._constant(
                    label, min([len(expr.value)] + [len(r) for r in expr.value]), expr.check_length
                )

    def _values(self, label: str, expr: rasp.SOp) -> None:
        values = self.sets[label]
        if values is None:
            if rasp.is_categorical(expr) or self._consumers_enumerate(label):
                what = (
                    "a one-hot block or lookup MLP would be too large"
                    if rasp.is_categorical(expr)
                    else "an MLP that reads it needs every value"
                )
                self.add(
                    label,
                    "too-many-values",
                    f"takes more than {max_values(expr):,} values (or more than value inference "
                    f"can enumerate in its work budget); {what}",
                )
            return
        # An Aggregate's NaN comes from its input, reported there (and a mean set is large).
        nans = [] if isinstance(expr, rasp.Aggregate) else [v for v in values if is_nan(v)]
        if nans:
            self.add(
                label,
                "nan",
                f"takes the value NaN {_short(nans)}, which equals nothing (not even itself)",
                nans,
            )
        if rasp.is_numerical(expr) and not isinstance(expr, rasp.Aggregate):
            # An Aggregate's values are its input's, checked (and named) by _aggregate.
            bad = [v for v in values if v is not None and not _is_finite_real(v)]
            if bad:
                self.add(
                    label,
                    "not-a-number",
                    f"numerical SOp takes non-numeric or non-finite values {_short(bad)}",
                    bad,
                )
            if None in values:
                self.add(
                    label,
                    "numerical-none",
                    "numerical SOp can have no value (None), which one scalar direction cannot encode",
                    (None,),
                )

    def _consumers_enumerate(self, label: str) -> bool:
        return any(
            isinstance(self.graph.nodes[user], (rasp.Map, rasp.Select))
            or (
                isinstance(self.graph.nodes[user], rasp.SequenceMap)
                and not isinstance(self.graph.nodes[user], rasp.LinearSequenceMap)
            )
            for user in self.graph.graph.successors(label)
        )

    def _map(self, label: str, expr: rasp.Map) -> None:
        inner = self.sets[expr.inner]
        out = self.sets[label]
        if (
            inner is not None
            and out is not None
            and None in out
            and None not in inner
            and rasp.is_categorical(expr)
        ):
            self.add(
                label,
                "map-returns-none",
                f"Map returns None on some reachable input from {_short(inner)}; the compiled model decodes those positions as None",
                (None,),
                severity="warning",
            )

    def _sequence_map(self, label: str, expr: rasp.SequenceMap) -> None:
        numerical = [c.label for c in expr.children if rasp.is_numerical(c)]
        if numerical:
            self.add(
                label,
                "encoding",
                f"SequenceMap reads numerical SOp(s) {numerical}; a SequenceMap compiles to a lookup over "
                f"categorical inputs (use LinearSequenceMap for a numerical sum, or categorical(...))",
                numerical,
            )

    def _linear(self, label: str, expr: rasp.LinearSequenceMap) -> None:
        encodings = {c.label: rasp.get_encoding(c).value for c in expr.children}
        kinds = set(encodings.values())
        if kinds == {"numerical"} and rasp.is_categorical(expr):
            self.add(
                label,
                "encoding",
                f"LinearSequenceMap of numerical inputs {encodings} must be numerical too",
                list(encodings),
            )
        elif len(kinds) > 1:
            self.add(
                label,
                "encoding",
                f"LinearSequenceMap mixes encodings {encodings}; make both inputs numerical (exact linear layer) or both categorical (lookup)",
                list(encodings),
            )

    def _select(self, label: str, expr: rasp.Select) -> None:
        numerical = [c.label for c in (expr.keys, expr.queries) if rasp.is_numerical(c)]
        if numerical:
            self.add(
                label,
                "encoding",
                f"Select compares numerical SOp(s) {numerical}; a head compares one-hot (categorical) values",
                numerical,
            )

    def _aggregate(self, label: str, expr: rasp.Aggregate) -> None:
        sop = expr.sop
        if rasp.get_encoding(sop) is not rasp.get_encoding(expr):
            self.add(
                label,
                "encoding",
                f"{rasp.get_encoding(expr).value} Aggregate of {rasp.get_encoding(sop).value} SOp {sop.label!r}; "
                f"an Aggregate keeps its input's encoding (wrap both in numerical(...) or categorical(...))",
                (sop.label,),
            )
            return
        never_empty = contains_diagonal(expr.selector, self.sets)
        values = self.sets[sop]
        if rasp.is_numerical(expr):
            if values is not None:
                bad = [v for v in values if not _is_finite_real(v)]
                if bad:
                    self.add(
                        label,
                        "not-averageable",
                        f"numerical Aggregate averages {sop.label!r}, which takes values a head cannot average {_short(bad)}",
                        bad,
                    )
            if expr.default is None and not never_empty:
                self.add(
                    label,
                    "default",
                    "numerical Aggregate with default None can select nothing; the compiled head then "
                    "outputs 0, not 'no value': use default=0",
                    (None,),
                )
            elif expr.default is not None and not (_is_finite_real(expr.default) and expr.default == 0):
                self.add(
                    label,
                    "default",
                    f"numerical Aggregate default {expr.default!r}: where nothing is selected the head reads BOS, which gives 0",
                    (expr.default,),
                )
        elif expr.default is not None:
            self.add(
                label,
                "default",
                f"categorical Aggregate default {expr.default!r}: where nothing is selected the head reads BOS, "
                f"which decodes as None; use default=None",
                (expr.default,),
            )

    def _constant(self, label: str, size: int, check_length: bool) -> None:
        n = self.sets.max_seq_len
        if size < n:
            self.add(
                label,
                "constant-length",
                f"has values for {size} positions but inputs may have {n}",
                (size, n),
            )
        elif check_length and n > 1:
            self.add(
                label,
                "constant-length",
                f"check_length=True: inputs shorter than {size} fail to evaluate (use check_length=False)",
                (size,),
                severity="warning",
            )

    # ----------------------------------------------------------------- dynamic checks

    def dynamic(
        self,
        program: rasp.RASPExpr,
        vocab: list,
        max_seq_len: int,
        causal: bool,
        budget: int,
        max_cells: int | None = None,
    ) -> None:
        square = sum(
            isinstance(e, (rasp.Selector, rasp.Aggregate, rasp.SelectorWidth))
            for e in self.graph.nodes.values()
        )
        linear = len(self.graph.nodes) - square
        cells = 0
        for xs in _search_inputs(vocab, max_seq_len, budget):
            cells += square * len(xs) ** 2 + linear * len(xs)
            if max_cells is not None and cells > max_cells:
                break
            try:
                evaluate(program, xs, causal=causal)
            except EvaluationError as err:
                kind = "mixed-values" if err.kind == "mixed-values" else err.kind
                message = f"on input {xs!r}: {str(err).split(': ', 1)[-1]}"
                if err.kind == "mixed-values":
                    message += " (the compiled head would average distinct one-hots)"
                self.add(err.label, kind, message, (tuple(xs),))


def _search_inputs(vocab: list, max_seq_len: int, budget: int) -> Iterator[list]:
    """All inputs of the lengths that fit half the budget, then seeded random longer ones."""
    used = 0
    length = 1
    while length <= max_seq_len and used + len(vocab) ** length <= budget // 2:
        for xs in itertools.product(vocab, repeat=length):
            yield list(xs)
        used += len(vocab) ** length
        length += 1
    if length > max_seq_len:
        return
    rng = random.Random(0)
    lengths = list(range(length, max_seq_len + 1))
    for i in range(budget - used):
        n = max_seq_len if i % 2 == 0 else rng.choice(lengths)
        yield [rng.choice(vocab) for _ in range(n)]


def _is_finite_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and math.isfinite(value)
