"""The pairs of (query tuple, key tuple) a head must get right: the two questions.

The *free* question asks about every combination of the involved SOps' values (the
Cartesian product of their value sets). The *program* question asks only about the pairs
some input up to `max_seq_len` realises: the query tuple at one position and the key tuple
at another (or the same) position of one input, the key no later than the query when the
model is causal. Real programs correlate their SOps (two Maps of `tokens`, `indices` and a
Map of it), so many product tuples never occur, and a head may fit the program where it
can't fit the product.

How the program's pairs are found, per involved SOp:
- *positional* SOps (computed from the token, index and length at their own position, no
  Aggregate or SelectorWidth below them) are evaluated on one probe input per (length,
  token): `[t] * n` gives the value at every (t, i, n). A pair at positions i != j can
  combine any token at i with any token at j; at i == j the token is shared. Exact.
- otherwise, when every input up to `max_seq_len` can be listed within a budget, each is
  evaluated (exact); else each non-positional SOp ranges over its whole value set,
  independently of everything else: a superset of the program's pairs, so a "fits"
  verdict stays sound and a "does not fit" one is not a proof for the program.
Tuples with a None coordinate are left out (the compiler refuses compositions over None-able
SOps unless they are conjunctions, which need no analysis).
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rasp_lab import rasp
from rasp_lab.evaluator import trace
from rasp_lab.values import sort_values

EXHAUSTIVE_INPUTS = 4096
"""Most inputs listed to find the pairs of non-positional SOps exactly."""

PROBE_WORK = 5_000_000
"""Most SOp evaluations at (token, index, length) states before the program question falls
back to every combination of values (a superset of its pairs: "fits" stays sound)."""


@dataclass(frozen=True)
class Witness:
    """An input and the positions in it where the query tuple and the key tuple occur."""

    input: tuple
    query_position: int
    key_position: int


@dataclass(frozen=True)
class Domain:
    """The query tuples, key tuples and the pairs among them that a head must get right."""

    question: str
    """'program' or 'free'."""
    exact: bool
    """Whether every pair marked realised occurs in some input (False: over-approximated)."""
    how: str
    query_sops: tuple[str, ...]
    key_sops: tuple[str, ...]
    query_tuples: tuple[tuple, ...]
    key_tuples: tuple[tuple, ...]
    realised: np.ndarray = field(repr=False)
    """[n_query_tuples, n_key_tuples] bool."""
    causal: bool = False
    _witness: Any = field(default=None, repr=False, compare=False)
    vocab_size: int = 0
    max_seq_len: int = 0

    @property
    def pairs(self) -> int:
        return int(self.realised.sum())

    def witness(self, query: tuple, key: tuple) -> Witness | None:
        """An input realising (query, key), or None (free question, or an over-approximated
        coordinate)."""
        return None if self._witness is None else self._witness(query, key)

    def describe(self) -> str:
        if self.question == "free":
            return "the free question: every combination of the involved SOps' values"
        inputs = f"inputs up to length {self.max_seq_len} over {self.vocab_size} tokens, {'causal' if self.causal else 'not causal'}"
        if self.exact:
            return f"the program question ({inputs}): the {self.pairs} (query, key) tuple pairs some input realises, exact; {self.how}"
        return (
            f"the program question ({inputs}): {self.pairs} (query, key) tuple pairs, a superset of those some input "
            f"realises (over-approximated); {self.how}"
        )


def free_domain(
    query_sops: tuple[str, ...], key_sops: tuple[str, ...], values: Mapping[str, tuple]
) -> Domain:
    query_tuples = tuple(itertools.product(*(values[s] for s in query_sops)))
    key_tuples = tuple(itertools.product(*(values[s] for s in key_sops)))
    return Domain(
        "free",
        True,
        "every combination of values",
        query_sops,
        key_sops,
        query_tuples,
        key_tuples,
        np.ones((len(query_tuples), len(key_tuples)), dtype=bool),
    )


def is_positional(sop: rasp.SOp) -> bool:
    """No Aggregate or SelectorWidth below `sop`: its value at a position depends only on
    that position's token, index and the length."""
    stack: list[rasp.RASPExpr] = [sop]
    seen: set[int] = set()
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, (rasp.Aggregate, rasp.SelectorWidth, rasp.Selector)):
            return False
        stack.extend(node.children)
    return True


def program_domain(
    selector: rasp.Selector,
    sops: Mapping[str, rasp.SOp],
    query_sops: tuple[str, ...],
    key_sops: tuple[str, ...],
    vocab: Iterable[Any],
    max_seq_len: int,
    values: Mapping[str, tuple],
    *,
    causal: bool = False,
) -> Domain:
    """The program question's domain (see the module docstring). `values` holds every
    involved SOp's non-None values (for over-approximated coordinates)."""
    vocab = tuple(sort_values(vocab))
    domain = _program_domain(selector, sops, query_sops, key_sops, vocab, max_seq_len, values, causal)
    return dataclasses.replace(domain, vocab_size=len(vocab), max_seq_len=max_seq_len)


def _program_domain(selector, sops, query_sops, key_sops, vocab, max_seq_len, values, causal) -> Domain:
    involved = tuple(dict.fromkeys(query_sops + key_sops))
    positional = {label for label in involved if is_positional(sops[label])}
    states = len(vocab) * max_seq_len * (max_seq_len + 1) // 2 * len(involved)
    if states > PROBE_WORK:
        # Too many positions to evaluate: every combination is a superset of the program's pairs.
        how = (
            f"{states:,} (token, index, length) evaluations exceed {PROBE_WORK:,}: every combination of "
            f"values taken instead"
        )
        return _every_combination(query_sops, key_sops, values, how, causal)
    inputs = sum(len(vocab) ** n for n in range(1, max_seq_len + 1))
    probes = _Probes(sops, tuple(sorted(positional)), vocab, max_seq_len, causal, values)
    if len(positional) == len(involved) and not probes.raised:
        return _positional(query_sops, key_sops, probes, vocab, max_seq_len, values, causal)
    if inputs <= EXHAUSTIVE_INPUTS:
        return _exhaustive(selector, query_sops, key_sops, vocab, max_seq_len, values, causal, inputs)
    if probes.raised:
        # Positions are not independent when an SOp raises on some: an input holding that
        # state raises as a whole. Every combination is a superset of what occurs.
        how = (
            f"{probes.raised!r} raises on some inputs and more than {EXHAUSTIVE_INPUTS} inputs would have to "
            f"be listed: every combination of values taken instead"
        )
        return _every_combination(query_sops, key_sops, values, how, causal)
    return _over_approximated(query_sops, key_sops, probes, vocab, max_seq_len, values, causal, positional)


def _order(tuples: Iterable[tuple], sops: tuple[str, ...], values: Mapping[str, tuple]) -> tuple[tuple, ...]:
    rank = {s: {v: n for n, v in enumerate(values[s])} for s in sops}
    return tuple(sorted(set(tuples), key=lambda t: tuple(rank[s][v] for s, v in zip(sops, t))))


def _usable(t: tuple, sops: tuple[str, ...], values: Mapping[str, tuple]) -> bool:
    """No None, and every value in the SOp's known set (a value outside it means the value
    sets given do not describe this program: its tuple can't be placed)."""
    return all(v is not None and v in values[s] for s, v in zip(sops, t))


class _Probes:
    """Values of positional SOps at every (token, index, length): one probe input [t] * n
    per (length, token), evaluated by the reference evaluator."""

    def __init__(
        self,
        sops: Mapping[str, rasp.SOp],
        labels: tuple[str, ...],
        vocab: tuple,
        max_seq_len: int,
        causal: bool,
        known: Mapping[str, tuple],
    ) -> None:
        self.values: dict[tuple[int, Any], dict[str, list]] = {}
        self.raised: str | None = None
        """The label of an SOp that raised on a probe (then positions are not independent)."""
        for n in range(1, max_seq_len + 1):
            for t in vocab:
                row: dict[str, list] = {}
                for label in labels:
                    try:
                        row[label] = list(trace(sops[label], [t] * n, causal=causal)[sops[label]])
                    except Exception:  # noqa: BLE001 - the program raises there
                        row[label] = [None] * n
                        self.raised = self.raised or label
                        continue
                    outside = [v for v in row[label] if v is not None and v not in known[label]]
                    if outside:
                        raise ValueError(
                            f"SOp {label!r} takes the value {outside[0]!r} (token {t!r}, length {n}), which its "
                            f"value set {list(known[label])[:8]} leaves out: the value sets given do not "
                            f"describe this program"
                        )
                self.values[(n, t)] = row

    def tuple_at(self, labels: tuple[str, ...], n: int, t: Any, i: int) -> tuple:
        row = self.values[(n, t)]
        return tuple(row[label][i] for label in labels)


def _every_combination(query_sops, key_sops, values, how: str, causal: bool) -> Domain:
    """The program question over every combination of values: a superset of the program's
    pairs, used where listing what occurs would cost too much or is unsound."""
    free = free_domain(query_sops, key_sops, values)
    return Domain(
        "program", False, how, query_sops, key_sops, free.query_tuples, free.key_tuples, free.realised, causal
    )


def _positional(query_sops, key_sops, probes: _Probes, vocab, max_seq_len, values, causal) -> Domain:
    q_at: dict[tuple, list[tuple[int, int, Any]]] = {}
    k_at: dict[tuple, list[tuple[int, int, Any]]] = {}
    for n, t in probes.values:
        for i in range(n):
            q = probes.tuple_at(query_sops, n, t, i)
            k = probes.tuple_at(key_sops, n, t, i)
            if _usable(q, query_sops, values):
                q_at.setdefault(q, []).append((n, i, t))
            if _usable(k, key_sops, values):
                k_at.setdefault(k, []).append((n, i, t))
    query_tuples = _order(q_at, query_sops, values)
    key_tuples = _order(k_at, key_sops, values)
    q_index = {q: n for n, q in enumerate(query_tuples)}
    k_index = {k: n for n, k in enumerate(key_tuples)}
    realised = np.zeros((len(query_tuples), len(key_tuples)), dtype=bool)
    for n in range(1, max_seq_len + 1):
        q_occ = np.zeros((n, len(query_tuples)))  # [positions, query tuples]: occurs at i
        k_occ = np.zeros((n, len(key_tuples)))
        for t in vocab:
            for i in range(n):
                q = probes.tuple_at(query_sops, n, t, i)
                k = probes.tuple_at(key_sops, n, t, i)
                if q in q_index:
                    q_occ[i, q_index[q]] = 1
                if k in k_index:
                    k_occ[i, k_index[k]] = 1
                if q in q_index and k in k_index:
                    realised[q_index[q], k_index[k]] = True  # the same position
        # Distinct positions (j <= i when causal) hold independent tokens.
        apart = np.ones((n, n)) - np.eye(n)  # [query position, key position]
        if causal:
            apart = np.tril(apart)
        realised |= (q_occ.T @ apart @ k_occ) > 0
    scope = "positional SOps, evaluated at every (token, index, length)"

    def witness(query: tuple, key: tuple) -> Witness | None:
        for n, i, t in q_at.get(query, ()):
            for m, j, u in k_at.get(key, ()):
                if m != n or (causal and j > i) or (i == j and t != u):
                    continue
                xs = [t] * n
                xs[j] = u
                return Witness(tuple(xs), i, j)
        return None

    return Domain(
        "program", True, scope, query_sops, key_sops, query_tuples, key_tuples, realised, causal, witness
    )


def _exhaustive(selector, query_sops, key_sops, vocab, max_seq_len, values, causal, count) -> Domain:
    found: dict[tuple[tuple, tuple], Witness] = {}
    for n in range(1, max_seq_len + 1):
        for xs in itertools.product(vocab, repeat=n):
            try:
                by_label = trace(selector, list(xs), causal=causal).by_label()
            except Exception:  # noqa: BLE001 - an input the program raises on has no pairs
                continue
            qs = [tuple(by_label[s][i] for s in query_sops) for i in range(n)]
            ks = [tuple(by_label[s][j] for s in key_sops) for j in range(n)]
            for i, q in enumerate(qs):
                if not _usable(q, query_sops, values):
                    continue
                for j in range(i + 1 if causal else n):
                    if (q, ks[j]) not in found and _usable(ks[j], key_sops, values):
                        found[(q, ks[j])] = Witness(tuple(xs), i, j)
    query_tuples = _order((q for q, _ in found), query_sops, values)
    key_tuples = _order((k for _, k in found), key_sops, values)
    q_index = {q: n for n, q in enumerate(query_tuples)}
    k_index = {k: n for n, k in enumerate(key_tuples)}
    realised = np.zeros((len(query_tuples), len(key_tuples)), dtype=bool)
    for q, k in found:
        realised[q_index[q], k_index[k]] = True
    scope = f"all {count} inputs evaluated"
    return Domain(
        "program",
        True,
        scope,
        query_sops,
        key_sops,
        query_tuples,
        key_tuples,
        realised,
        causal,
        lambda q, k: found.get((q, k)),
    )


def _over_approximated(
    query_sops, key_sops, probes: _Probes, vocab, max_seq_len, values, causal, positional
) -> Domain:
    """Positional coordinates as realised; every other coordinate free over its values."""
    q_pos = tuple(s for s in query_sops if s in positional)
    k_pos = tuple(s for s in key_sops if s in positional)
    inner = _positional(q_pos, k_pos, probes, vocab, max_seq_len, values, causal)

    def side(
        sops_: tuple[str, ...], pos: tuple[str, ...], inner_tuples: tuple[tuple, ...]
    ) -> tuple[list[tuple], list[int]]:
        free = [s for s in sops_ if s not in positional]
        tuples, owner = [], []
        for p, part in enumerate(inner_tuples):
            for combo in itertools.product(*(values[s] for s in free)):
                lookup = dict(zip(pos, part)) | dict(zip(free, combo))
                tuples.append(tuple(lookup[s] for s in sops_))
                owner.append(p)
        return tuples, owner

    q_list, q_owner = side(query_sops, q_pos, inner.query_tuples)
    k_list, k_owner = side(key_sops, k_pos, inner.key_tuples)
    query_tuples = _order(q_list, query_sops, values)
    key_tuples = _order(k_list, key_sops, values)
    q_owner_of = dict(zip(q_list, q_owner))
    k_owner_of = dict(zip(k_list, k_owner))
    q_rows = np.array([q_owner_of[t] for t in query_tuples], dtype=int)
    k_cols = np.array([k_owner_of[t] for t in key_tuples], dtype=int)
    realised = inner.realised[q_rows[:, None], k_cols[None, :]]
    free = sorted(set(query_sops + key_sops) - positional)
    scope = (
        f"{', '.join(map(repr, free))} computed by attention, taken over every value independently "
        f"(more than {EXHAUSTIVE_INPUTS} inputs to list)"
    )
    return Domain(
        "program", False, scope, query_sops, key_sops, query_tuples, key_tuples, realised, causal, None
    )


def check_witness(selector: rasp.Selector, domain: Domain, query: tuple, key: tuple, selected: bool) -> bool:
    """Re-evaluate a witness with the evaluator: the tuples occur at its positions, and the
    selector selects (or not) the key there as `selected` says."""
    w = domain.witness(query, key)
    if w is None:
        return False
    try:
        values = trace(selector, list(w.input), causal=domain.causal)
    except Exception:  # noqa: BLE001 - an input the program raises on witnesses nothing
        return False
    by_label = values.by_label()
    got_q = tuple(by_label[s][w.query_position] for s in domain.query_sops)
    got_k = tuple(by_label[s][w.key_position] for s in domain.key_sops)
    matrix = values[selector]
    return got_q == query and got_k == key and bool(matrix[w.query_position][w.key_position]) == selected
