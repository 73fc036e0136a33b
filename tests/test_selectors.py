"""Which selector compositions fit in one attention head?

The suite answers it the way THEORY.md argues it, and checks every answer independently of
the analysis that produced it:

1. A grid of compositions (1 to 3 atoms with `&`, `|`, `~`; every Comparison and two custom
   predicates; up to two key SOps and two query SOps among tokens, parity and indices).
   Each fitting encoding's weights are run as hard attention on every query tuple and every
   set of up to three key tuples; each refusal's witness (a broken rectangle, or a Farkas
   certificate whose constraint rows are rebuilt here and summed exactly) is checked
   against a pattern computed here from the predicates; theory implies monotonicity
   (factored => everything; a one-sided product => product_both), and ANDs of one-pair
   parts (after De Morgan) always fit factored.
2. A subset of the grid is compiled, with `auto` and with every forced strategy that fits,
   and run on every input; forcing a strategy that does not fit raises CompileError.
3. Growth laws: an AND of m equalities stays one factored head of width sum |V|; an OR of m
   equalities on two-valued SOps needs a product of 2^m and QK rank 2^m - 1.
4. The known cases of THEORY.md, by name.
5. Compiled heads' attention is within each head's reported leak bound of the Boolean
   pattern.
6. A 3x3-SOp composition with 6 values each, which needs the LP, is analysed in seconds.

Two regressions this suite found are pinned by name: width weights built from LP weights on
one block a side (wrong SelectorWidth outputs under `auto`), and multi_head refusing a
selector whose negation is a conjunction only after De Morgan.
"""

from __future__ import annotations

import functools
import itertools
import math
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np
import pytest
import scipy.optimize

import rasp_lab
from rasp_lab import rasp
from rasp_lab.selectors import (
    ENCODINGS,
    Block,
    FarkasCertificate,
    HeadWeights,
    Rectangle,
    SelectorAnalysis,
    analyze,
    clean_everywhere,
)

Comparison = rasp.Comparison
TOLERANCE = 1e-4
TIE = 1e-6  # logits closer than this count as equal in the hard-attention check

# ------------------------------------------------------------------------ the SOps


def _parity(t: int) -> int:
    return t % 2


def _is_zero(t: int) -> int:
    return 1 if t == 0 else 0


def _to_float(w: int) -> float:
    return float(w)


TOKENS = rasp.tokens
INDICES = rasp.indices
PARITY = rasp.Map(_parity, rasp.tokens).named("parity")
FLAG = rasp.numerical(rasp.Map(_is_zero, rasp.tokens).named("flag"))
POOL = (TOKENS, PARITY, INDICES)
VOCAB = (0, 1, 2)
MAX_SEQ_LEN = 3
VALUES: dict[str, tuple] = {"tokens": (0, 1, 2), "parity": (0, 1), "indices": (0, 1, 2)}
"""The value sets compile infers for POOL over VOCAB and MAX_SEQ_LEN (checked below)."""

ALL_INPUTS = [list(xs) for n in range(1, MAX_SEQ_LEN + 1) for xs in itertools.product(VOCAB, repeat=n)]


def same_parity(k: Any, q: Any) -> bool:
    return (k + q) % 2 == 0


def successor(k: Any, q: Any) -> bool:
    return k == q + 1


PREDICATES: tuple[Any, ...] = (*Comparison, same_parity, successor)
SYMBOL = {
    Comparison.EQ: "==",
    Comparison.LT: "<",
    Comparison.LEQ: "<=",
    Comparison.GT: ">",
    Comparison.GEQ: ">=",
    Comparison.NEQ: "!=",
    Comparison.TRUE: "TRUE",
    Comparison.FALSE: "FALSE",
    same_parity: "~2",
    successor: "=q+1",
}


class _Fn:
    """A named, picklable function of one value (so that SOps built in loops have stable labels)."""

    def __init__(self, name: str, f: Callable[[Any], Any]) -> None:
        self.name, self.f = name, f

    def __call__(self, x: Any) -> Any:
        return self.f(x)

    def __rasp_fingerprint__(self) -> str:
        return self.name


def named_map(name: str, f: Callable[[Any], Any], inner: rasp.SOp) -> rasp.SOp:
    return rasp.Map(_Fn(name, f), inner).named(name)


# ------------------------------------------------------- independent semantics of a head


def holds(selector: rasp.Selector, keys: Mapping[str, Any], queries: Mapping[str, Any]) -> bool:
    """The selector at one (key, query) pair given the SOps' values there (by label)."""
    if isinstance(selector, rasp.Select):
        return bool(selector.predicate(keys[selector.keys.label], queries[selector.queries.label]))
    if isinstance(selector, rasp.SelectorAnd):
        return holds(selector.fst, keys, queries) and holds(selector.snd, keys, queries)
    if isinstance(selector, rasp.SelectorOr):
        return holds(selector.fst, keys, queries) or holds(selector.snd, keys, queries)
    if isinstance(selector, rasp.SelectorNot):
        return not holds(selector.inner, keys, queries)
    raise TypeError(type(selector).__name__)


def brute_pattern(a: SelectorAnalysis) -> np.ndarray:
    """[n_query_tuples, n_key_tuples]: the selection, from the predicates themselves."""
    return np.array(
        [
            [holds(a.selector, dict(zip(a.key_sops, k)), dict(zip(a.query_sops, q))) for k in a.key_tuples]
            for q in a.query_tuples
        ],
        dtype=bool,
    )


def atoms(selector: rasp.Selector) -> list[rasp.Select]:
    if isinstance(selector, rasp.Select):
        return [selector]
    return [atom for child in selector.children for atom in atoms(child)]  # type: ignore[arg-type]


def pairs(selector: rasp.Selector) -> set[tuple[str, str]]:
    return {(atom.keys.label, atom.queries.label) for atom in atoms(selector)}


def nnf_conjuncts(selector: rasp.Selector, negated: bool = False) -> list[rasp.Selector]:
    """The top-level conjuncts after pushing negations down (De Morgan)."""
    if isinstance(selector, rasp.SelectorNot):
        return nnf_conjuncts(selector.inner, not negated)
    if isinstance(selector, rasp.SelectorAnd) and not negated:
        return nnf_conjuncts(selector.fst) + nnf_conjuncts(selector.snd)
    if isinstance(selector, rasp.SelectorOr) and negated:
        return nnf_conjuncts(selector.fst, True) + nnf_conjuncts(selector.snd, True)
    return [selector]


def structural_conjuncts(selector: rasp.Selector) -> list[rasp.Selector]:
    """Top-level `&` conjuncts, as written (no De Morgan)."""
    if isinstance(selector, rasp.SelectorAnd):
        return structural_conjuncts(selector.fst) + structural_conjuncts(selector.snd)
    return [selector]


def expected_blocks(a: SelectorAnalysis, encoding: str) -> tuple[list[tuple[str, ...]], list[tuple[str, ...]]]:
    q_joint = encoding in ("product_queries", "product_both") and len(a.query_sops) > 1
    k_joint = encoding in ("product_keys", "product_both") and len(a.key_sops) > 1
    q = [tuple(a.query_sops)] if q_joint else [(s,) for s in a.query_sops]
    k = [tuple(a.key_sops)] if k_joint else [(s,) for s in a.key_sops]
    return q, k


def expected_width(a: SelectorAnalysis, encoding: str) -> int:
    q, k = expected_blocks(a, encoding)
    return sum(math.prod(len(a.values[s]) for s in block) for block in q + k)


def block_value(block: Block, sops: Sequence[str], t: tuple) -> Any:
    if len(block.sops) == 1:
        return t[list(sops).index(block.sops[0])]
    return tuple(t[list(sops).index(s)] for s in block.sops)


def block_indices(blocks: Sequence[Block], sops: Sequence[str], tuples: Sequence[tuple]) -> list[np.ndarray]:
    out = []
    for block in blocks:
        position = {v: n for n, v in enumerate(block.values)}
        out.append(np.array([position[block_value(block, sops, t)] for t in tuples]))
    return out


def head_logits(w: HeadWeights, a: SelectorAnalysis) -> tuple[np.ndarray, np.ndarray]:
    """(logits [n_q, n_k], BOS score [n_q]) of the head over every query and key tuple."""
    qi = block_indices(w.query_blocks, a.query_sops, a.query_tuples)
    ki = block_indices(w.key_blocks, a.key_sops, a.key_tuples)
    logits = np.zeros((len(a.query_tuples), len(a.key_tuples)))
    for (j, i), table in w.tables.items():
        logits += np.asarray(table)[qi[j][:, None], ki[i][None, :]]
    for i, bias in w.key_bias.items():
        logits += np.asarray(bias)[ki[i]][None, :]
    bos = np.full(len(a.query_tuples), float(w.bos_const))
    for j, vec in w.bos_query.items():
        bos += np.asarray(vec)[qi[j]]
    return logits, bos


def hard_attention_failures(logits: np.ndarray, bos: np.ndarray, pattern: np.ndarray, largest: int = 3) -> list:
    """For every query and every set of up to `largest` keys present in a sequence (the empty
    set attends BOS by definition): the keys with the top logit if it beats BOS, else BOS,
    must be exactly the selected keys of the set (BOS if none). Returns the failures."""
    n_q, n_k = pattern.shape
    failures = []
    for size in range(1, min(largest, n_k) + 1):
        subsets = np.array(list(itertools.combinations(range(n_k), size)))  # [S, size]
        scores = logits[:, subsets]  # [n_q, S, size]
        wanted = pattern[:, subsets]
        top = scores.max(axis=-1)
        winners = scores >= top[..., None] - TIE
        keys_win = top > bos[:, None] + TIE
        bos_wins = top < bos[:, None] - TIE
        ok = np.where(wanted.any(-1), keys_win & (winners == wanted).all(-1), bos_wins)
        for q, s in zip(*np.nonzero(~ok)):
            failures.append((int(q), tuple(int(k) for k in subsets[s])))
    return failures


def rectangle_verified(r: Rectangle, a: SelectorAnalysis, pattern: np.ndarray) -> bool:
    """The named keys are selected for the query, the recombined key is not, and each of its
    coordinates comes from one of the named keys."""
    q = a.query_tuples.index(r.query)
    selected = all(pattern[q, a.key_tuples.index(k)] for k in r.selected)
    unselected = not pattern[q, a.key_tuples.index(r.unselected)]
    recombined = all(any(k[c] == r.unselected[c] for k in r.selected) for c in range(len(a.key_sops)))
    return len(a.key_sops) >= 2 and selected and unselected and recombined


def farkas_verified(cert: FarkasCertificate, a: SelectorAnalysis, encoding: str, pattern: np.ndarray) -> bool:
    """Rebuild the head's constraint rows (THEORY.md's LP, with every variable: tables for
    every (query block, key block), key biases, BOS terms per query block, a BOS constant and
    M(q)) for the rows the certificate names, and check they sum to 0 <= -(sum of weights)."""
    q_names, k_names = expected_blocks(a, encoding)
    q_blocks = [Block(s, tuple(itertools.product(*(a.values[x] for x in s))) if len(s) > 1 else a.values[s[0]]) for s in q_names]
    k_blocks = [Block(s, tuple(itertools.product(*(a.values[x] for x in s))) if len(s) > 1 else a.values[s[0]]) for s in k_names]

    def logit(qt: tuple, kt: tuple) -> list:
        qv = [block_value(b, a.query_sops, qt) for b in q_blocks]
        kv = [block_value(b, a.key_sops, kt) for b in k_blocks]
        terms: list = [("T", j, i, qv[j], kv[i]) for j in range(len(q_blocks)) for i in range(len(k_blocks))]
        return terms + [("u", i, kv[i]) for i in range(len(k_blocks))]

    def bos(qt: tuple) -> list:
        return [("v", j, block_value(b, a.query_sops, qt)) for j, b in enumerate(q_blocks)] + [("c",)]

    total: dict[Any, Any] = {}

    def add(terms: list, weight: Any) -> None:
        for term in terms:
            total[term] = total.get(term, 0) + weight

    q_of = {t: n for n, t in enumerate(a.query_tuples)}
    k_of = {t: n for n, t in enumerate(a.key_tuples)}
    positive = Fraction(0)
    for kind, qt, kt, weight in cert.inequalities:
        if weight < 0:
            return False
        positive += weight
        if kind == "unselected":
            if pattern[q_of[qt], k_of[kt]]:
                return False
            add(logit(qt, kt), weight)
            add(bos(qt), -weight)
        elif kind == "bos-below-selected":
            if not pattern[q_of[qt]].any():
                return False
            add(bos(qt), weight)
            add([("M", qt)], -weight)
        else:
            return False
    for qt, kt, weight in cert.equalities:
        if not pattern[q_of[qt], k_of[kt]]:
            return False
        add(logit(qt, kt), weight)
        add([("M", qt)], -weight)
    if cert.exact:
        return positive > 0 and all(v == 0 for v in total.values())
    return positive > 1e-9 and all(abs(float(v)) < 1e-6 for v in total.values())


def matching_verified(a: SelectorAnalysis, pattern: np.ndarray) -> bool:
    q_of = {t: n for n, t in enumerate(a.query_tuples)}
    k_of = {t: n for n, t in enumerate(a.key_tuples)}
    pairs_ = [(q_of[q], k_of[k]) for q, k in a.induced_matching]
    if len({q for q, _ in pairs_}) != len(pairs_) or len({k for _, k in pairs_}) != len(pairs_):
        return False
    for s, (qs, ks) in enumerate(pairs_):
        if pattern[qs, ks] or any(not pattern[qs, kt] for t, (_, kt) in enumerate(pairs_) if t != s):
            return False
    return a.rank_lower_bound == max(0, len(pairs_) - 1)


def broken_rectangle_exists(a: SelectorAnalysis, pattern: np.ndarray) -> bool:
    """Some query's selected key tuples are not the product of their projections."""
    for row in pattern:
        chosen = {a.key_tuples[k] for k in np.flatnonzero(row)}
        if not chosen:
            continue
        projections = [{t[c] for t in chosen} for c in range(len(a.key_sops))]
        if len(chosen) != math.prod(len(p) for p in projections):
            return True
    return False


# ---------------------------------------------------------------------------- the grid

# A template is a formula over atom slots: ("atom", n), ("not", t), ("and" | "or", t, t).


def _maybe_not(t: tuple, negate: bool) -> tuple:
    return ("not", t) if negate else t


def templates() -> list[tuple]:
    out: list[tuple] = [("atom", 0), ("not", ("atom", 0))]
    for op in ("and", "or"):
        for n0, n1, nr in itertools.product((False, True), repeat=3):
            out.append(_maybe_not((op, _maybe_not(("atom", 0), n0), _maybe_not(("atom", 1), n1)), nr))
    for op1, op2 in itertools.product(("and", "or"), repeat=2):
        for n0, n1, n2, ni, nr in itertools.product((False, True), repeat=5):
            inner = _maybe_not((op1, _maybe_not(("atom", 0), n0), _maybe_not(("atom", 1), n1)), ni)
            out.append(_maybe_not((op2, inner, _maybe_not(("atom", 2), n2)), nr))
    return out


def slots(template: tuple) -> int:
    if template[0] == "atom":
        return template[1] + 1
    return max(slots(t) for t in template[1:])


_SELECTS: dict[tuple, rasp.Select] = {}


def select(keys: rasp.SOp, queries: rasp.SOp, predicate: Any) -> rasp.Select:
    """One Select object per (keys, queries, predicate), shared across the grid."""
    key = (keys.label, queries.label, predicate)
    if key not in _SELECTS:
        _SELECTS[key] = rasp.Select(keys, queries, predicate)
    return _SELECTS[key]


def build(template: tuple, leaves: Sequence[rasp.Select]) -> rasp.Selector:
    kind = template[0]
    if kind == "atom":
        return leaves[template[1]]
    if kind == "not":
        return ~build(template[1], leaves)
    fst, snd = build(template[1], leaves), build(template[2], leaves)
    return fst & snd if kind == "and" else fst | snd


def text(template: tuple, leaves: Sequence[tuple]) -> str:
    kind = template[0]
    if kind == "atom":
        k, q, p = leaves[template[1]]
        return f"{k}{SYMBOL[p]}{q}"
    if kind == "not":
        return f"~{text(template[1], leaves)}"
    return f"({text(template[1], leaves)}{'&' if kind == 'and' else '|'}{text(template[2], leaves)})"


@dataclass(frozen=True)
class Case:
    name: str
    selector: rasp.Selector


def grid(draws_per_template: int = 3, seed: int = 20240601) -> list[Case]:
    """Every template, each with `draws_per_template` seeded draws of atoms: the key SOps
    come from a pool of one or two of POOL, the query SOps likewise."""
    rng = random.Random(seed)
    cases: list[Case] = []
    for template in templates():
        for _ in range(draws_per_template):
            key_pool = rng.sample(POOL, rng.choice((1, 2, 2)))
            query_pool = rng.sample(POOL, rng.choice((1, 2, 2)))
            leaves = [
                (rng.choice(key_pool), rng.choice(query_pool), rng.choice(PREDICATES)) for _ in range(slots(template))
            ]
            selector = build(template, [select(*leaf) for leaf in leaves])
            name = text(template, [(k.label[0], q.label[0], p) for k, q, p in leaves])
            cases.append(Case(f"{len(cases):03d}:{name}", selector))
    return cases


GRID = grid()
_ANALYSES: dict[str, SelectorAnalysis] = {}


def analysis_of(case: Case) -> SelectorAnalysis:
    if case.name not in _ANALYSES:
        _ANALYSES[case.name] = analyze(case.selector, value_sets={s: VALUES[s.label] for s in POOL})
    return _ANALYSES[case.name]


def test_grid_value_sets_are_what_compile_infers() -> None:
    program = rasp.SequenceMap(lambda a, b: (a, b), rasp.SequenceMap(lambda a, b: (a, b), TOKENS, PARITY), INDICES)
    sets = rasp_lab.value_sets(program, VOCAB, MAX_SEQ_LEN)
    assert {s.label: tuple(sorted(sets[s.label])) for s in POOL} == VALUES


def test_grid_covers_every_predicate_shape_and_sop_combination() -> None:
    assert len(GRID) == 3 * 146
    used = {atom.predicate for case in GRID for atom in atoms(case.selector)}
    assert used == set(PREDICATES)
    sides = {(len({k for k, _ in pairs(c.selector)}), len({q for _, q in pairs(c.selector)})) for c in GRID}
    assert sides == {(1, 1), (1, 2), (2, 1), (2, 2)}
    assert {len(atoms(c.selector)) for c in GRID} == {1, 2, 3}


@pytest.mark.parametrize("case", GRID, ids=[c.name for c in GRID])
def test_grid_classification_is_verified(case: Case) -> None:
    a = analysis_of(case)
    assert a.check() is True

    pattern = brute_pattern(a)
    assert (pattern == a.pattern).all(), "the analysis' pattern differs from the predicates"
    assert set(a.key_sops) == {k for k, _ in pairs(case.selector)}
    assert set(a.query_sops) == {q for _, q in pairs(case.selector)}

    for encoding in ENCODINGS:
        fit = a.fits[encoding]
        assert fit.encoding == encoding
        assert fit.width == expected_width(a, encoding), (encoding, fit.width)
        if fit.fits:
            w = fit.weights
            assert w is not None and fit.witness is None
            q_blocks, k_blocks = expected_blocks(a, encoding)
            assert [b.sops for b in w.query_blocks] == q_blocks and [b.sops for b in w.key_blocks] == k_blocks
            logits, bos = head_logits(w, a)
            failures = hard_attention_failures(logits, bos, pattern)
            assert not failures, (encoding, fit.method, failures[:5])
            # Any encoding's logit matrix has rank >= the induced-matching bound.
            assert np.linalg.matrix_rank(logits, tol=1e-6) >= a.rank_lower_bound
            # A SelectorWidth head, if there is one on this encoding: BOS ties with the selected.
            width_weights = a.head_weights(encoding, width=True)
            if width_weights is not None:
                logits, bos = head_logits(width_weights, a)
                gap = logits - bos[:, None]
                assert (np.abs(gap[pattern]) <= TIE).all() and (gap[~pattern] < -TIE).all(), encoding
            else:
                assert fit.method.split()[-1] not in ("single-pair", "conjunction"), fit.method
        else:
            assert fit.weights is None
            if isinstance(fit.witness, Rectangle):
                assert fit.method == "rectangle"
                assert rectangle_verified(fit.witness, a, pattern), (encoding, str(fit.witness))
            else:
                assert isinstance(fit.witness, FarkasCertificate), (encoding, fit.witness)
                assert fit.method == "farkas"
                assert fit.witness.exact or a.check()
                assert farkas_verified(fit.witness, a, encoding, pattern), (encoding, str(fit.witness))

    fits = {e: a.fits[e].fits for e in ENCODINGS}
    # Monotonicity: a product block can carry any sum of per-SOp tables.
    if fits["factored"]:
        assert all(fits.values())
    if fits["product_keys"] or fits["product_queries"]:
        assert fits["product_both"]
    assert fits["product_both"]
    # One SOp on a side: the product encoding of that side is the factored one.
    if len(a.key_sops) == 1:
        assert fits["product_keys"] == fits["factored"] and fits["product_both"] == fits["product_queries"]
    if len(a.query_sops) == 1:
        assert fits["product_queries"] == fits["factored"] and fits["product_both"] == fits["product_keys"]
    # THEORY: the argmax of a key-separable sum is a product set.
    if broken_rectangle_exists(a, pattern):
        assert not fits["factored"] and not fits["product_queries"]
    # THEORY: an AND of parts on one (key, query) pair each (negations pushed down) fits.
    if all(len(pairs(c)) == 1 for c in nnf_conjuncts(case.selector)):
        assert fits["factored"]
    assert fits_one_head_consistent(a)
    assert matching_verified(a, pattern)


def fits_one_head_consistent(a: SelectorAnalysis) -> bool:
    cheapest = min((a.fits[e].width, ENCODINGS.index(e), e) for e in ENCODINGS if a.fits[e].fits)[2]
    widths_ok = a.widths == {e: (a.fits[e].width if a.fits[e].fits else None) for e in ENCODINGS}
    return a.fits_one_head == a.fits["factored"].fits and a.encoding == cheapest and widths_ok


SINGLE_PAIR = [c for c in GRID if len(pairs(c.selector)) == 1]
CONJUNCTIONS = [
    c
    for c in GRID
    if len(pairs(c.selector)) > 1 and all(len(pairs(part)) == 1 for part in structural_conjuncts(c.selector))
]


@pytest.fixture
def no_lp(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the LP was called")

    monkeypatch.setattr(scipy.optimize, "linprog", refuse)


@pytest.mark.parametrize("case", SINGLE_PAIR, ids=[c.name for c in SINGLE_PAIR])
def test_one_key_sop_and_one_query_sop_always_fit_as_one_table(case: Case, no_lp: None) -> None:
    a = analyze(case.selector, value_sets={s: VALUES[s.label] for s in POOL})
    factored = a.fits["factored"]
    assert factored.fits and factored.method == "single-pair", factored.method
    assert all(a.fits[e].fits for e in ENCODINGS)
    assert a.check()


@pytest.mark.parametrize("case", CONJUNCTIONS, ids=[c.name for c in CONJUNCTIONS])
def test_conjunctions_of_one_pair_parts_fit_without_the_lp(case: Case, no_lp: None) -> None:
    a = analyze(case.selector, value_sets={s: VALUES[s.label] for s in POOL})
    factored = a.fits["factored"]
    assert factored.fits and factored.method == "conjunction", factored.method
    assert factored.width == sum(len(VALUES[s]) for s in (*a.key_sops, *a.query_sops))
    assert all(a.fits[e].fits for e in ENCODINGS)
    assert a.check()


def test_grid_summary_every_outcome_occurs() -> None:
    """The grid as a table: how often each encoding is the cheapest, and how refusals are
    certified. Every outcome occurs, so each branch above is exercised."""
    cheapest: dict[str, int] = {}
    methods: dict[str, int] = {}
    for case in GRID:
        a = analysis_of(case)
        cheapest[a.encoding] = cheapest.get(a.encoding, 0) + 1
        for fit in a.fits.values():
            key = fit.method.split()[-1]
            methods[key] = methods.get(key, 0) + 1
    print("\ncheapest encoding:", cheapest, "\nmethods:", methods)
    assert set(cheapest) == set(ENCODINGS)
    assert {"single-pair", "conjunction", "lp", "rectangle", "farkas"} <= set(methods)
    assert len(SINGLE_PAIR) >= 30 and len(CONJUNCTIONS) >= 10


# ---------------------------------------------------------------- compile and run


def compiled_subset(seed: int = 7) -> list[int]:
    """40 grid cases, drawn (seeded) per outcome so that every encoding gets compiled:
    factored by one table, by a conjunction and by the LP; factored for a mean but not for a
    width (BOS must tie with the selected keys); and each product encoding."""

    def outcome(case: Case) -> tuple[str, str]:
        a = analysis_of(case)
        if a.fits_one_head and "factored" not in width_strategies(a, case.selector):
            return ("factored", "not for a width")
        return (a.encoding, a.fits["factored"].method if a.fits_one_head else "")

    quota = {
        ("factored", "single-pair"): 5,
        ("factored", "conjunction"): 6,
        ("factored", "lp"): 6,
        ("factored", "not for a width"): 4,
        ("product_keys", ""): 7,
        ("product_queries", ""): 6,
        ("product_both", ""): 6,
    }
    rng = random.Random(seed)
    chosen: list[int] = []
    for key, n in quota.items():
        chosen += rng.sample([i for i, case in enumerate(GRID) if outcome(case) == key], n)
    return sorted(chosen)


@dataclass(frozen=True)
class Program:
    """SelectorWidth and a numerical mean of FLAG over one composition, as one program; the
    two heads read copies of the selector under their own labels so that a strategy can be
    forced on each."""

    width_selector: rasp.Selector
    mean_selector: rasp.Selector
    width: rasp.SOp
    mean: rasp.SOp
    output: rasp.SOp


def program_for(selector: rasp.Selector, tag: str) -> Program:
    width_selector = selector.named(f"w{tag}")
    mean_selector = selector.named(f"a{tag}")
    width = rasp.SelectorWidth(width_selector).named("width")
    mean = rasp.numerical(rasp.Aggregate(mean_selector, FLAG, default=0)).named("mean")
    as_float = rasp.numerical(rasp.Map(_to_float, width)).named("width_float")
    output = rasp.numerical(rasp.LinearSequenceMap(mean, as_float, 1, 1)).named("output")
    return Program(width_selector, mean_selector, width, mean, output)


def width_strategies(a: SelectorAnalysis, selector: rasp.Selector) -> list[str]:
    """Strategies a SelectorWidth head of `selector` can be compiled with: encodings with
    width weights (BOS tied with the selected keys), and the complement rewrite when the
    negation is a conjunction of one-pair parts."""
    fitting = [e for e in ENCODINGS if a.fits[e].fits and a.head_weights(e, width=True) is not None]
    negation_is_conjunction = all(len(pairs(c)) == 1 for c in nnf_conjuncts(selector, negated=True))
    return fitting + (["multi_head"] if negation_is_conjunction else [])


def signature(a: SelectorAnalysis, strategy: str) -> tuple:
    """What the head reads: a product strategy on a side with one SOp is the factored head."""
    if strategy not in ENCODINGS:
        return (strategy,)
    q, k = expected_blocks(a, strategy)
    return (tuple(q), tuple(k))


def distinct(a: SelectorAnalysis, strategies: list[str], skip: str | None = None) -> list[str]:
    seen = {signature(a, skip)} if skip else set()
    out = []
    for s in strategies:
        if signature(a, s) not in seen:
            seen.add(signature(a, s))
            out.append(s)
    return out


def same_value(got: Any, expected: Any) -> bool:
    if isinstance(expected, float) or isinstance(got, float):
        return math.isclose(got, expected, rel_tol=TOLERANCE, abs_tol=TOLERANCE)
    return got == expected and type(got) is type(expected)


def exact_attention(model: rasp_lab.CompiledModel, head_label: str, selector_label: str, xs: list) -> np.ndarray:
    """[n + 1, n + 1]: a Boolean head's attention in the large-logit limit (BOS first).
    Aggregate: uniform over the selected keys, or all on BOS if none; SelectorWidth (and
    `length`): uniform over BOS and the selected keys; the BOS query attends BOS."""
    n = len(xs)
    graph = model.value_sets.graph
    width_head = selector_label == "length" or isinstance(graph.expr(head_label), rasp.SelectorWidth)
    if selector_label == "length":
        selected = np.ones((n, n), dtype=bool)
    else:
        selected = np.array(rasp.evaluate(graph.expr(selector_label), xs), dtype=bool).reshape(n, n)
    out = np.zeros((n + 1, n + 1))
    out[0, 0] = 1.0
    for q in range(n):
        row = np.concatenate([[width_head or not selected[q].any()], selected[q]]).astype(float)
        out[q + 1] = row / row.sum()
    return out


def attention_excess(model: rasp_lab.CompiledModel, patterns: Mapping[int, np.ndarray], xs: list) -> list:
    """Heads whose attention on `xs` (layer -> [heads, query, key], BOS first, maybe padded)
    is further than their leak bound (+1e-6 float slack) from the Boolean pattern."""
    bad = []
    n = len(xs)
    for head in model.heads:
        got = np.asarray(patterns[head.layer][head.index])
        want = exact_attention(model, head.label, head.selector, xs)
        excess = float(np.abs(got[: n + 1, : n + 1] - want).max())
        padding = float(np.abs(got[: n + 1, n + 1 :]).max()) if got.shape[1] > n + 1 else 0.0
        if max(excess, padding) > head.leak_bound + 1e-6:
            bad.append((head.label, head.selector, excess, padding, head.leak_bound))
    return bad


def compile_and_compare(p: Program, strategy: str | Mapping[str, str]) -> tuple[rasp_lab.CompiledModel, list]:
    """Compile; run every input in one padded batch (one jit); compare width, mean and
    output with the evaluator and every head's attention with its Boolean pattern."""
    model = rasp_lab.compile(p.output, VOCAB, MAX_SEQ_LEN, selector_strategy=strategy)
    ids = model.encode_batch(ALL_INPUTS)
    residuals, patterns = model.forward(ids)
    mismatches = []
    for sop in (p.width, p.mean, p.output):
        got = model.decode(residuals[-1], ids, model.where(sop.label))
        for xs, values in zip(ALL_INPUTS, got, strict=True):
            expected = rasp.evaluate(sop, xs)
            if not all(same_value(g, e) for g, e in zip(values, expected, strict=True)):
                mismatches.append((sop.label, xs, values, expected))
    for row, xs in enumerate(ALL_INPUTS):
        for head in attention_excess(model, {layer: pat[row] for layer, pat in enumerate(patterns)}, xs):
            mismatches.append(("attention", xs, head))
    return model, mismatches


def head_strategies(model: rasp_lab.CompiledModel) -> dict[str, str]:
    """'width' and 'mean' -> the strategy their head was built with ('multi_head' when the
    width became length - width(~S))."""
    heads = {h.label: h.strategy for layer in model.weights.layers for h in layer.heads}
    return {"width": heads.get("width", "multi_head"), "mean": heads["mean"]}


_PROGRAM_ANALYSES: dict[str, SelectorAnalysis] = {}


def program_analysis_of(case: Case) -> SelectorAnalysis:
    """The program question: only the (query, key) pairs some input up to MAX_SEQ_LEN realises."""
    if case.name not in _PROGRAM_ANALYSES:
        _PROGRAM_ANALYSES[case.name] = analyze(case.selector, vocab=VOCAB, max_seq_len=MAX_SEQ_LEN)
    return _PROGRAM_ANALYSES[case.name]


def buildable(case: Case, encoding: str, *, width: bool) -> bool:
    """What the compiler may build on `encoding`: the program verdict's weights where they are
    clean on every combination of their blocks' values, else the free verdict's."""
    program, free = program_analysis_of(case), analysis_of(case)
    if program.fits[encoding].fits:
        weights = program.head_weights(encoding, width=width)
        if weights is not None and clean_everywhere(weights):
            return True
    return free.fits[encoding].fits and free.head_weights(encoding, width=width) is not None


@functools.cache
def compiled_cases() -> tuple[int, ...]:
    """The subset, chosen when the first test needs it (not while collecting: choosing
    analyses every grid case)."""
    return tuple(compiled_subset())


@pytest.mark.slow
@pytest.mark.parametrize("slot", range(40), ids=lambda slot: f"subset{slot:02d}")
def test_compiled_compositions_agree_with_the_evaluator(slot: int) -> None:
    """`auto`, then every other strategy that fits each head (zipped into as few models as
    possible), on every input of length 1..3: zero mismatches, attention included."""
    assert len(compiled_cases()) == 40
    index = compiled_cases()[slot]
    case = GRID[index]
    a = analysis_of(case)
    p = program_for(case.selector, str(index))
    w_label, a_label = p.width_selector.label, p.mean_selector.label
    complement = [s for s in width_strategies(a, case.selector) if s == "multi_head"]
    width_fits = [e for e in ENCODINGS if buildable(case, e, width=True)] + complement
    mean_fits = [e for e in ENCODINGS if buildable(case, e, width=False)]
    assert set(e for e in ENCODINGS if a.fits[e].fits) <= set(mean_fits)  # the program verdict only adds

    model, mismatches = compile_and_compare(p, "auto")
    assert not mismatches, ("auto", len(mismatches), mismatches[:4])
    auto = head_strategies(model)
    assert auto["mean"] in mean_fits and auto["width"] in width_fits, auto
    if "factored" in mean_fits:
        assert auto["mean"] == "factored"
    if "factored" in width_fits:
        assert auto["width"] == "factored"

    width_rest = distinct(a, width_fits, skip=auto["width"])
    mean_rest = distinct(a, mean_fits, skip=auto["mean"])
    for n in range(max(len(width_rest), len(mean_rest))):
        strategy = {
            w_label: width_rest[n % len(width_rest)] if width_rest else auto["width"],
            a_label: mean_rest[n % len(mean_rest)] if mean_rest else auto["mean"],
        }
        model, mismatches = compile_and_compare(p, strategy)
        assert not mismatches, (strategy, len(mismatches), mismatches[:4])
        assert head_strategies(model) == {"width": strategy[w_label], "mean": strategy[a_label]}
        heads_on_selector = [h for h in model.heads if h.selector in (w_label, a_label)]
        assert len(heads_on_selector) == (1 if strategy[w_label] == "multi_head" else 2)

    # Forcing what does not fit is refused, naming the selector.
    for strategy in ("factored", "product_keys", "product_queries", "product_both", "multi_head"):
        for label, fits in ((w_label, strategy in width_fits), (a_label, strategy in mean_fits + ["multi_head"])):
            if fits:
                continue
            with pytest.raises(rasp_lab.CompileError) as raised:
                rasp_lab.compile(p.output, VOCAB, MAX_SEQ_LEN, selector_strategy={label: strategy})
            assert raised.value.label == label and label in str(raised.value)


# ------------------------------------------------------------------- growth laws


def _shift(i: int, mod: int) -> Callable[[Any], Any]:
    return lambda x: (x + i) % mod


def and_of_equalities(m: int) -> tuple[rasp.Selector, list[rasp.SOp], list[rasp.SOp]]:
    keys = [named_map(f"k{i}", _shift(i, 3), TOKENS) for i in range(m)]
    queries = [named_map(f"q{i}", _shift(i, 3), INDICES) for i in range(m)]
    selector: rasp.Selector = rasp.Select(keys[0], queries[0], Comparison.EQ)
    for k, q in zip(keys[1:], queries[1:]):
        selector = selector & rasp.Select(k, q, Comparison.EQ)
    return selector.named(f"and{m}"), keys, queries


def _bit_sops(m: int) -> tuple[list[rasp.SOp], list[rasp.SOp]]:
    """m two-valued key SOps and m two-valued query SOps, all distinct, read from tokens,
    indices and length so that every tuple of them occurs (a product SOp has 2^m values)."""
    keys = [
        named_map("kb0", lambda t: t % 2, TOKENS),
        named_map("kb1", lambda i: i % 2, INDICES),
        named_map("kb2", lambda n: n % 2, rasp.length),
    ]
    queries = [
        named_map("qb0", lambda t: int(t == 1), TOKENS),
        named_map("qb1", lambda i: int(i == 1), INDICES),
        named_map("qb2", lambda n: int(n == 2), rasp.length),
    ]
    return keys[:m], queries[:m]


def or_of_equalities(keys: Sequence[rasp.SOp], queries: Sequence[rasp.SOp]) -> rasp.Selector:
    selector: rasp.Selector = rasp.Select(keys[0], queries[0], Comparison.EQ)
    for k, q in zip(keys[1:], queries[1:]):
        selector = selector | rasp.Select(k, q, Comparison.EQ)
    return selector.named(f"or{len(keys)}")


def test_and_of_m_equalities_is_one_factored_head_of_linear_width() -> None:
    residual_widths = []
    for m in range(1, 5):
        selector, keys, queries = and_of_equalities(m)
        a = analyze(selector, vocab=VOCAB, max_seq_len=MAX_SEQ_LEN)
        assert a.fits_one_head and a.encoding == "factored"
        assert a.fits["factored"].method == ("single-pair" if m == 1 else "conjunction")
        assert a.widths["factored"] == sum(len(a.values[s.label]) for s in keys + queries) == 6 * m
        assert a.rank_lower_bound <= 2 * m + 1  # THEORY: an AND needs only 2m + 1
        mean = rasp.numerical(rasp.Aggregate(selector, FLAG, default=0)).named(f"mean_and{m}")
        model = rasp_lab.compile(mean, VOCAB, MAX_SEQ_LEN)
        assert [(h.label, h.selector) for h in model.heads] == [(mean.label, selector.label)]
        got = model.run_batch(ALL_INPUTS)
        bad = [xs for xs, g in zip(ALL_INPUTS, got) if not all(map(same_value, g, mean(xs)))]
        assert not bad, (m, bad[:3])
        residual_widths.append(model.layout.width)
    steps = np.diff(residual_widths)
    print("\nAND_m residual widths:", residual_widths)
    assert (steps == steps[0]).all() and steps[0] == 6, residual_widths  # linear: |V_k| + |V_q| per atom


def test_or_of_m_equalities_needs_exponential_width() -> None:
    rows = []
    for m in range(1, 5):
        keys = [named_map(f"key_bit{i}", _shift(i, 2), TOKENS) for i in range(m)]
        queries = [named_map(f"query_bit{i}", _shift(i, 2), INDICES) for i in range(m)]
        a = analyze(or_of_equalities(keys, queries), value_sets={s: (0, 1) for s in keys + queries})
        assert a.check()
        if m == 1:
            assert all(a.fits[e].fits for e in ENCODINGS) and a.encoding == "factored"
        else:
            assert not a.fits_one_head
            assert isinstance(a.witness, Rectangle) and rectangle_verified(a.witness, a, brute_pattern(a))
            q_blocks, k_blocks = expected_blocks(a, a.encoding)
            products = [b for b in q_blocks + k_blocks if len(b) > 1]
            assert products, a.encoding
            assert a.widths[a.encoding] >= sum(2 ** len(b) for b in products) >= 2**m
        # Unselected exactly at the complement key: a permutation, so rank >= 2^m - 1 for
        # any encoding.
        assert len(a.induced_matching) == 2**m and a.rank_lower_bound == 2**m - 1
        assert all(k == tuple(1 - v for v in q) for q, k in a.induced_matching)
        rows.append((m, a.encoding, a.widths[a.encoding], a.rank_lower_bound))
    print("\nOR_m (m, cheapest encoding, its width, QK rank >=):", rows)
    assert [r[2] for r in rows] == [4, 8, 16, 32]


def test_or_of_m_equalities_compiles_to_growing_models() -> None:
    """SelectorWidth(OR_m): with `auto` the model grows with m; forced onto product_both the
    head reads product SOps of exactly 2^m values a side."""
    auto_sizes, product_sizes = [], []
    for m in range(1, 4):
        keys, queries = _bit_sops(m)
        selector = or_of_equalities(keys, queries)
        width = rasp.SelectorWidth(selector).named(f"width_or{m}")
        for strategy, sizes in (("auto", auto_sizes), ("product_both", product_sizes)):
            if strategy == "product_both" and m == 1:
                continue
            model = rasp_lab.compile(width, VOCAB, MAX_SEQ_LEN, selector_strategy=strategy)
            assert model.run_batch(ALL_INPUTS) == [width(xs) for xs in ALL_INPUTS], (m, strategy)
            heads = [h.strategy for layer in model.weights.layers for h in layer.heads]
            sizes.append((model.layout.width, model.parameter_counts()["compact"], heads))
            if strategy == "product_both":
                for side in (keys, queries):
                    product = f"product({','.join(s.label for s in sorted(side, key=lambda s: s.label))})"
                    assert len(model.where(product).directions) == 2**m
    print("\nSelectorWidth(OR_m) (residual width, parameters, head strategies): auto", auto_sizes, "product_both", product_sizes)
    for sizes in (auto_sizes, product_sizes):
        assert all(a[0] < b[0] and a[1] < b[1] for a, b in zip(sizes, sizes[1:])), sizes


# --------------------------------------------------------------------- known cases


Select = rasp.Select
Q1 = named_map("q_one", _shift(0, 3), INDICES)
Q2 = named_map("q_two", _shift(1, 3), INDICES)
K1 = named_map("k_one", _parity, TOKENS)
K2 = named_map("k_two", lambda t: t // 2, TOKENS)
KNOWN_VALUES = {TOKENS: (0, 1, 2), INDICES: (0, 1, 2), Q1: (0, 1, 2), Q2: (0, 1, 2), K1: (0, 1), K2: (0, 1)}
"""What compile infers for these SOps over VOCAB and MAX_SEQ_LEN."""


def known(selector: rasp.Selector) -> SelectorAnalysis:
    """Analyse, check, and compile SelectorWidth(selector) with `auto`: the model must agree
    with the evaluator on every input."""
    a = analyze(selector, value_sets={s: KNOWN_VALUES[s] for s in involved(selector)})
    assert a.check()
    width = rasp.SelectorWidth(selector)
    model = rasp_lab.compile(width, VOCAB, MAX_SEQ_LEN)
    assert model.run_batch(ALL_INPUTS) == [width(xs) for xs in ALL_INPUTS]
    return a


def involved(selector: rasp.Selector) -> set[rasp.SOp]:
    return {sop for atom in atoms(selector) for sop in (atom.keys, atom.queries)}


def test_known_value_sets_are_what_compile_infers() -> None:
    sops = list(KNOWN_VALUES)
    program = sops[0]
    for sop in sops[1:]:
        program = rasp.SequenceMap(lambda a, b: (a, b), program, sop)
    sets = rasp_lab.value_sets(program, VOCAB, MAX_SEQ_LEN)
    assert {s.label: tuple(sorted(sets[s.label])) for s in sops} == {s.label: v for s, v in KNOWN_VALUES.items()}


def test_same_token_and_earlier_index_is_a_conjunction() -> None:
    a = known(Select(TOKENS, TOKENS, Comparison.EQ) & Select(INDICES, INDICES, Comparison.LT))
    assert a.fits_one_head and a.fits["factored"].method == "conjunction"
    assert a.widths["factored"] == 12


def test_key_equals_either_query_fits_factored_by_lp() -> None:
    a = known(Select(TOKENS, Q1, Comparison.EQ) | Select(TOKENS, Q2, Comparison.EQ))
    assert a.fits_one_head and a.fits["factored"].method == "lp"
    assert a.widths["factored"] == 9


def test_interval_complement_needs_a_product_of_queries() -> None:
    a = known(Select(TOKENS, Q1, Comparison.LEQ) | Select(TOKENS, Q2, Comparison.GEQ))
    assert not a.fits["factored"].fits and not a.fits["product_keys"].fits
    assert isinstance(a.witness, FarkasCertificate) and a.witness.exact  # one key SOp: no rectangle
    assert farkas_verified(a.witness, a, "factored", brute_pattern(a))
    assert a.fits["product_queries"].fits and a.encoding == "product_queries"
    assert a.widths["product_queries"] == 3 * 3 + 3


def test_lexicographic_sort_selector_has_a_broken_rectangle() -> None:
    smaller = Select(TOKENS, TOKENS, Comparison.LT)
    tie_earlier = Select(TOKENS, TOKENS, Comparison.EQ) & Select(INDICES, INDICES, Comparison.LT)
    a = known(smaller | tie_earlier)
    assert not a.fits_one_head
    assert isinstance(a.witness, Rectangle) and rectangle_verified(a.witness, a, brute_pattern(a))
    assert [e for e in ENCODINGS if a.fits[e].fits] == ["product_both"]


@pytest.mark.parametrize("kind", ["xor", "nand"])
def test_xor_and_nand_across_sops_need_both_products(kind: str) -> None:
    first, second = Select(K1, Q1, Comparison.EQ), Select(K2, Q2, Comparison.EQ)
    a = known((first & ~second) | (~first & second) if kind == "xor" else ~(first & second))
    assert [e for e in ENCODINGS if a.fits[e].fits] == ["product_both"]
    for e in ("factored", "product_keys", "product_queries"):
        witness = a.fits[e].witness
        if isinstance(witness, Rectangle):
            assert rectangle_verified(witness, a, brute_pattern(a))
        else:
            assert isinstance(witness, FarkasCertificate) and farkas_verified(witness, a, e, brute_pattern(a))


# Regressions found by this suite (fixed in rasp_lab).


def test_width_weights_after_the_lp_on_one_block_a_side_tie_bos_with_the_selected() -> None:
    """Factored fits (by the LP) but a SelectorWidth head does not, so `auto` builds it on
    product_queries, one block a side. Its width weights used to be the LP's weights with
    BOS raised by 1 (right only for 0/2 tables): 16 of 39 inputs decoded wrong widths."""
    parity_ne = [Select(PARITY, TOKENS, Comparison.NEQ), Select(PARITY, INDICES, Comparison.NEQ)]
    selector = ~((parity_ne[0] & parity_ne[1]) & parity_ne[0])
    a = analyze(selector, value_sets={s: VALUES[s.label] for s in POOL})
    assert a.fits_one_head and a.fits["factored"].method == "lp"
    assert a.head_weights("factored", width=True) is None
    logits, bos = head_logits(a.head_weights("product_queries", width=True), a)
    gap = logits - bos[:, None]
    assert (np.abs(gap[a.pattern]) <= TIE).all() and (gap[~a.pattern] < -TIE).all()
    width = rasp.SelectorWidth(selector)
    model = rasp_lab.compile(width, VOCAB, MAX_SEQ_LEN)
    assert [h.strategy for layer in model.weights.layers for h in layer.heads] == ["product_queries"]
    assert model.run_batch(ALL_INPUTS) == [width(xs) for xs in ALL_INPUTS]


def test_width_by_complement_when_the_negation_is_a_conjunction_after_de_morgan() -> None:
    """~(~(~A | B) & C) negates to A & ~B & C only once the inner negations are pushed down;
    multi_head used to refuse it."""
    a_, b_, c_ = Select(INDICES, PARITY, Comparison.TRUE), Select(TOKENS, PARITY, Comparison.NEQ), Select(INDICES, PARITY, same_parity)
    selector = ~(~(~a_ | b_) & c_)
    width = rasp.SelectorWidth(selector)
    model = rasp_lab.compile(width, VOCAB, MAX_SEQ_LEN, selector_strategy="multi_head")
    assert model.run_batch(ALL_INPUTS) == [width(xs) for xs in ALL_INPUTS]
    assert selector.label not in [h.selector for h in model.heads]


# -------------------------------------------------------- large-logit approximation


def leak_models() -> list[tuple[str, rasp.Selector, str]]:
    """From the compiled subset: the first composition whose SelectorWidth head can be built
    with each strategy (a product only where that side has two SOps)."""
    chosen = []
    for strategy in ("factored", "product_keys", "product_queries", "product_both", "multi_head"):
        for index in compiled_cases():
            a = analysis_of(GRID[index])
            if strategy not in width_strategies(a, GRID[index].selector):
                continue
            if strategy in ("product_keys", "product_both") and len(a.key_sops) < 2:
                continue
            if strategy in ("product_queries", "product_both") and len(a.query_sops) < 2:
                continue
            chosen.append((GRID[index].name, GRID[index].selector, strategy))
            break
    return chosen


def test_attention_is_within_the_leak_bound_of_the_boolean_pattern() -> None:
    """model.apply on every input of the longest length, one model per width strategy (the
    mean head compiled with auto): every head, BOS row included, is within its leak bound."""
    chosen = leak_models()
    assert [s for _, _, s in chosen] == ["factored", "product_keys", "product_queries", "product_both", "multi_head"]
    longest = [list(xs) for xs in itertools.product(VOCAB, repeat=MAX_SEQ_LEN)]
    for n, (name, selector, strategy) in enumerate(chosen):
        p = program_for(selector, f"leak{n}")
        model = rasp_lab.compile(p.output, VOCAB, MAX_SEQ_LEN, selector_strategy={p.width_selector.label: strategy})
        assert len(model.heads) >= 2 and all(0 < h.leak_bound <= 1e-6 for h in model.heads)
        for xs in longest:
            out = model.apply(["BOS", *xs])
            assert out.decoded[1:] == pytest.approx(p.output(xs), abs=TOLERANCE)
            bad = attention_excess(model, out.attention, xs)
            assert not bad, (name, strategy, xs, bad)


# --------------------------------------------------------------------------- speed


def test_three_by_three_sops_with_six_values_needs_the_lp_and_is_fast() -> None:
    six = tuple(range(6))
    keys = [named_map(f"key{i}", _shift(i, 6), TOKENS) for i in range(3)]
    queries = [named_map(f"query{i}", _shift(i, 6), INDICES) for i in range(3)]
    selector = ~(
        Select(keys[0], queries[0], Comparison.NEQ)
        | Select(keys[1], queries[1], Comparison.NEQ)
        | Select(keys[2], queries[2], Comparison.GT)
    )
    start = time.perf_counter()
    a = analyze(selector, value_sets={s: six for s in keys + queries})
    elapsed = time.perf_counter() - start
    print(f"\n3x3 SOps, 6 values each ({len(a.query_tuples)} x {len(a.key_tuples)} pairs): analysed in {elapsed:.2f} s")
    assert a.fits_one_head and a.fits["factored"].method == "lp"
    assert a.widths["factored"] == 36
    assert a.check()
    assert elapsed < 10.0
