"""Which selector compositions fit in one attention head, with a certificate either way.

The head model (see docs/selector_composition.md): the residual holds one one-hot block per
categorical SOp (the *factored* encoding), or, on one side, one joint one-hot over all that
side's SOps (a *product* encoding). A head's logit is bilinear, so with blocks it is a sum of
tables `W_ji[q_j, k_i]` over query blocks j and key blocks i, plus key-only terms `u_i[k_i]`;
BOS scores `v0 + sum_j v_j[q_j]`. The head is right (Boolean, in the large-logit limit) iff,
for every query tuple q: all selected keys share one logit M(q); every unselected key scores
at least 1 below BOS; and M(q) is at least 1 above BOS when q selects anything.

`analyze` answers that over a domain of (query tuple, key tuple) pairs (rasp_lab.selectors.
domain): the program question (pairs some input realises; the default given vocab and
max_seq_len) or the free question (every combination of values; given value_sets).
Conjunctions of single-pair groups fit without a grid or an LP (tables summed, BOS at
m - 1/2). Otherwise a broken rectangle refutes the factored key side directly, or a linear
program finds weights or a Farkas certificate. An induced matching of realised pairs bounds
the QK rank any encoding needs; with the rank of the head rasp_lab builds, that is the band.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterable, Iterator, Mapping
from functools import cached_property
from typing import Any

import numpy as np

from rasp_lab import rasp
from rasp_lab.graph import distinct_labels
from rasp_lab.selectors.algebra import involved_sops, is_conjunction, selector_atoms, shallow_equivalent
from rasp_lab.selectors.domain import Domain, check_witness, free_domain, program_domain
from rasp_lab.selectors.heads import ENCODINGS, Atom, Block, FarkasCertificate, Fit, HeadWeights, Rectangle
from rasp_lab.selectors.lp import LP_TIME_LIMIT, LinearProgram, LPStopped
from rasp_lab.selectors.tables import conjunct_pairs, selector_tables, truth
from rasp_lab.value_sets import ValueSets
from rasp_lab.value_sets import value_sets as infer_value_sets
from rasp_lab.values import sort_values

RANK_SECONDS = 2.0
"""Time the induced-matching search for the rank bound may take; past it the bound found so
far is reported as 'at least r (search stopped)'."""

RECTANGLE_CHECKS = 200_000
"""Pairs of selected keys the rectangle search tries before leaving the verdict to the LP."""

LP_ENTRIES = 20_000_000
"""Largest LP (realised pairs times the columns each row touches) built; past it the
encoding is left undecided (method 'stopped') instead of exhausting memory."""

CORNER_PAIRS = 20_000
"""Domains with more pairs are first tried on corners (see _Context.corners)."""

GRID_PAIRS = 1_000_000
"""Largest (query tuple, key tuple) grid a conjunction's rank search on the free question
walks; beyond it each group is searched alone (no grid)."""

QUESTIONS = {"program": "program", "product": "free", "free": "free"}


def atoms_of(selector: rasp.Selector) -> tuple[Atom, ...]:
    found = []
    for node in selector_atoms(selector):
        if isinstance(node, rasp.Select):
            found.append(Atom(node.label, node.keys.label, node.queries.label, node.predicate))
        elif isinstance(node, rasp.ConstantSelector):
            found.append(Atom(node.label, rasp.indices.label, rasp.indices.label, node.value))
    return tuple(found)


def analyze(
    selector: rasp.Selector,
    *,
    vocab: Iterable[Any] | None = None,
    max_seq_len: int | None = None,
    value_sets: Mapping[Any, Iterable[Any]] | ValueSets | None = None,
    domain: str | None = None,
    causal: bool = False,
    time_limit: float = LP_TIME_LIMIT,
    rank_seconds: float = RANK_SECONDS,
) -> SelectorAnalysis:
    """Decide which encodings let one head compute `selector`.

    `domain="program"` (the default given `vocab` and `max_seq_len`): only the (query,
    key) pairs some input up to `max_seq_len` realises must be right. `domain="product"`
    (the default given only `value_sets`): every combination of the value sets' values.
    `value_sets` maps each involved SOp (or its label) to its values; without it they are
    inferred from `vocab` and `max_seq_len`. An LP past `time_limit` seconds leaves that
    encoding undecided (method 'stopped'); the rank search stops after `rank_seconds`.
    """
    if not isinstance(selector, rasp.Selector):
        raise TypeError(f"analyze() takes a selector, got {type(selector).__name__} {selector!r}")
    if domain is None:
        domain = "program" if vocab is not None and max_seq_len is not None else "product"
    if not isinstance(domain, str) or domain not in QUESTIONS:
        raise ValueError(f"domain must be 'program' or 'product', got {domain!r}")
    for name, seconds in (("time_limit", time_limit), ("rank_seconds", rank_seconds)):
        if (
            isinstance(seconds, bool)
            or not isinstance(seconds, (int, float))
            or not 0 <= seconds < float("inf")
        ):
            raise ValueError(f"{name} must be a number of seconds >= 0, got {seconds!r}")
    selector = distinct_labels(selector)  # two different SOps under one name: labelled apart, as compile does
    question = QUESTIONS[domain]
    if question == "program" and (vocab is None or max_seq_len is None):
        raise TypeError("analyze(domain='program') needs vocab= and max_seq_len=: the program's inputs")
    atoms = atoms_of(selector)
    key_sops = tuple(sorted({a.key_sop for a in atoms}))
    query_sops = tuple(sorted({a.query_sop for a in atoms}))
    values = _involved_values(selector, key_sops + query_sops, vocab, max_seq_len, value_sets)
    return SelectorAnalysis(
        selector,
        atoms,
        key_sops,
        query_sops,
        values,
        question,
        vocab=vocab,
        max_seq_len=max_seq_len,
        causal=causal,
        time_limit=time_limit,
        rank_seconds=rank_seconds,
    )


class SelectorAnalysis:
    """The verdicts for one composition. Everything past the atoms is computed on first use:
    a conjunction's verdict needs neither the pairs' grid nor an LP."""

    def __init__(
        self,
        selector,
        atoms,
        key_sops,
        query_sops,
        values,
        question,
        *,
        vocab,
        max_seq_len,
        causal,
        time_limit,
        rank_seconds,
    ) -> None:
        self.selector: rasp.Selector = selector
        self.atoms: tuple[Atom, ...] = atoms
        self.key_sops: tuple[str, ...] = key_sops
        self.query_sops: tuple[str, ...] = query_sops
        self.values: Mapping[str, tuple] = values
        self.question: str = question
        """'program' or 'free': which pairs the verdicts are about."""
        self.vocab, self.max_seq_len, self.causal = vocab, max_seq_len, causal
        self.time_limit, self.rank_seconds = time_limit, rank_seconds
        # The compiler's table builders recurse over the composition: give them a shallow copy.
        self.shallow = shallow_equivalent(selector)
        self.conjunction = is_conjunction(self.shallow)

    # ---------------------------------------------------------------- the domain and grid

    @cached_property
    def domain(self) -> Domain:
        if self.question == "free":
            return free_domain(self.query_sops, self.key_sops, self.values)
        return program_domain(
            self.selector,
            involved_sops(self.selector),
            self.query_sops,
            self.key_sops,
            self.vocab,
            self.max_seq_len,
            self.values,
            causal=self.causal,
        )

    @property
    def query_tuples(self) -> tuple[tuple, ...]:
        return self.domain.query_tuples

    @property
    def key_tuples(self) -> tuple[tuple, ...]:
        return self.domain.key_tuples

    @property
    def realised(self) -> np.ndarray:
        """[n_q, n_k] bool: the pairs the verdicts are about."""
        return self.domain.realised

    @cached_property
    def pattern(self) -> np.ndarray:
        """[n_q, n_k] bool: the selection on every (query tuple, key tuple) of the domain."""
        return _pattern(
            self.shallow, self.key_sops, self.query_sops, self.values, self.key_tuples, self.query_tuples
        )

    @cached_property
    def _ctx(self) -> _Context:
        return _Context(
            self.shallow,
            self.key_sops,
            self.query_sops,
            self.values,
            self.domain,
            self.pattern,
            self.time_limit,
        )

    # --------------------------------------------------------------------------- verdicts

    @cached_property
    def fits(self) -> Mapping[str, Fit]:
        return _Fits(self)

    def _decide(self, encoding: str) -> Fit:
        if encoding == "factored" and self.conjunction:
            pairs = conjunct_pairs(self.shallow)
            method = "single-pair" if len(set().union(*pairs)) == 1 else "conjunction"
            width = sum(len(self.values[s]) for s in self.key_sops + self.query_sops)
            return Fit("factored", width, True, conjunction_weights(self.shallow, self.values), None, method)
        if encoding != "factored" and self.fits["factored"].fits:
            # A product block can carry any sum of per-SOp tables, so what fits factored fits
            # every product encoding: expand the weights instead of solving again.
            return self._ctx.expanded(self.fits["factored"], encoding)
        return self._ctx.decide(encoding)

    @property
    def fits_one_head(self) -> bool:
        return self.fits["factored"].fits

    def width_of(self, encoding: str) -> int:
        """The head's width (query plus key block widths) on `encoding`, fitting or not."""
        q_joint = encoding in ("product_queries", "product_both") and len(self.query_sops) > 1
        k_joint = encoding in ("product_keys", "product_both") and len(self.key_sops) > 1

        def side(sops: tuple[str, ...], joint: bool, tuples: str) -> int:
            if not joint:
                return sum(len(self.values[s]) for s in sops)
            if self.question == "free":
                return int(np.prod([len(self.values[s]) for s in sops]))
            return len(getattr(self.domain, tuples))

        return side(self.query_sops, q_joint, "query_tuples") + side(self.key_sops, k_joint, "key_tuples")

    @property
    def widths(self) -> dict[str, int | None]:
        if self.fits_one_head:  # every encoding fits: no need to expand weights to size them
            return {e: self.width_of(e) for e in ENCODINGS}
        return {name: (self.width_of(name) if fit.fits else None) for name, fit in self.fits.items()}

    @property
    def encoding(self) -> str:
        """Factored where it fits (it needs no product SOps: the compiler's choice too), else
        the narrowest encoding that fits."""
        if self.fits_one_head:
            return "factored"
        widths = self.widths
        fitting = [(w, ENCODINGS.index(e), e) for e, w in widths.items() if w is not None]
        return min(fitting)[2]

    @property
    def witness(self) -> Rectangle | FarkasCertificate | None:
        return self.fits["factored"].witness

    def weights(self, encoding: str | None = None) -> HeadWeights:
        fit = self.fits[encoding or self.encoding]
        if fit.weights is None:
            raise ValueError(f"{self.selector.label!r} does not fit the {fit.encoding} encoding")
        return fit.weights

    def head_weights(self, encoding: str | None = None, *, width: bool = False) -> HeadWeights | None:
        """Weights for a head on `encoding` (default: the cheapest that fits). With width=True,
        for a SelectorWidth head: BOS shares the selected keys' logit instead of sitting 1
        below it (a separate LP, None if that can't be met on this encoding)."""
        fit = self.fits[encoding or self.encoding]
        if not width or fit.weights is None:
            return fit.weights
        ctx = self._ctx
        q_blocks, k_blocks = ctx.blocks(fit.encoding)
        tables = fit.method.split()[-1] in ("conjunction", "single-pair")
        if tables or (len(q_blocks) == 1 and len(k_blocks) == 1):
            # Table weights (selected exactly 2 per group, BOS 1 below the top). LP weights,
            # even on one block a side, leave M(q) - BOS(q) free: use the pattern as the table.
            base = fit.weights if tables else ctx.table_weights(q_blocks, k_blocks)
            # Tables are 2 per satisfied group; BOS one unit higher reaches the top, 2m.
            return HeadWeights(
                base.query_blocks,
                base.key_blocks,
                base.tables,
                base.key_bias,
                base.bos_query,
                base.bos_const + 1.0,
                base.margin,
            )
        try:
            return ctx.program(q_blocks, k_blocks, width=True)[0].feasible()
        except LPStopped:
            return None

    # ------------------------------------------------------------------------- rank band

    @cached_property
    def _matching(self) -> tuple[list[tuple[tuple, tuple]], bool]:
        """(induced matching as tuple pairs, whether the search ran to its end)."""
        if self.conjunction and self.question == "free" and self.width_of("product_both") ** 2 > GRID_PAIRS:
            return _conjunction_matching(self, self.rank_seconds)
        deadline = time.monotonic() + self.rank_seconds
        best: list[tuple[int, int]] = []
        # Corners first: a matching among some tuples is one among all, and small grids
        # find the family's structure fast; then the whole grid while time remains.
        for rows, cols in [*self._ctx.corners(), (None, None)]:
            if rows is None:
                q_of, k_of = np.arange(len(self.query_tuples)), np.arange(len(self.key_tuples))
            else:
                q_of, k_of = np.flatnonzero(rows), np.flatnonzero(cols)
            sub = np.ix_(q_of, k_of)
            found, complete = induced_matching(self.pattern[sub], self.realised[sub], deadline=deadline)
            if len(found) > len(best):
                best = [(int(q_of[q]), int(k_of[k])) for q, k in found]
            if not complete:
                break
        return [(self.query_tuples[q], self.key_tuples[k]) for q, k in best], complete

    @property
    def induced_matching(self) -> tuple[tuple[tuple, tuple], ...]:
        """Unselected realised pairs (q_t, k_t) with every (q_s, k_t), s != t, realised and
        selected: any head's logit matrix restricted to them is, shifted by M(q), diagonal."""
        return tuple(self._matching[0])

    @property
    def rank_lower_bound(self) -> int:
        return max(0, len(self._matching[0]) - 1)

    @property
    def rank_search_complete(self) -> bool:
        return self._matching[1]

    def band(self, encoding: str | None = None, *, width: bool = False) -> tuple[int, int]:
        """[lower, upper]: the QK rank every head right on the domain needs (the induced
        matching), and the rank of the head rasp_lab builds on `encoding` (default the
        factored one where it fits, as the compiler prefers; else the narrowest): its QK over
        the blocks' directions, `one` and BOS."""
        encoding = encoding or self.encoding
        weights = self.head_weights(encoding, width=width)
        if weights is None:
            raise ValueError(f"{self.selector.label!r}: no {'width ' if width else ''}head on {encoding}")
        return self.rank_lower_bound, qk_rank(weights)

    # ----------------------------------------------------------------------- the checker

    def check(self) -> bool:
        """Verify every decision independently of the solver: weights realise the pattern
        on the domain's pairs with a positive margin; certificates combine realised
        constraints to a contradiction; on the program question (exact domain) every pair a
        certificate or the matching uses is re-evaluated with the evaluator on its witness
        input. Undecided encodings (a stopped LP) claim nothing and are skipped."""
        for fit in self.fits.values():
            if not fit.decided:
                continue
            if fit.fits:
                if fit.weights is None or not _realises(fit.weights, self):
                    return False
            elif isinstance(fit.witness, Rectangle):
                if not _rectangle_holds(fit.witness, self):
                    return False
            elif isinstance(fit.witness, FarkasCertificate):
                if not _certificate_holds(fit.witness, fit.encoding, self):
                    return False
            else:
                return False
        if not _matching_holds(self):
            return False
        if self.question == "program" and self.domain.exact:
            return self.witnesses_hold()
        return True

    def used_pairs(self) -> list[tuple[tuple, tuple, bool]]:
        """Every (query tuple, key tuple, selected) that a no-fit certificate or the rank
        bound relies on."""
        out: list[tuple[tuple, tuple, bool]] = []
        for fit in self.fits.values():
            w = fit.witness
            if isinstance(w, Rectangle):
                out += [(w.query, k, True) for k in w.selected]
                out += [(w.query, k, self._selected(w.query, k)) for k in w.swapped]
            elif isinstance(w, FarkasCertificate):
                out += [(q, k, False) for kind, q, k, _ in w.inequalities if kind == "unselected"]
                out += [(q, k, True) for q, k, _ in w.equalities]
        for s, (q, k) in enumerate(self.induced_matching):
            out.append((q, k, False))
            out += [(q2, k, True) for t, (q2, _) in enumerate(self.induced_matching) if t != s]
        return list(dict.fromkeys(out))

    def _selected(self, q: tuple, k: tuple) -> bool:
        return bool(truth(self.shallow, dict(zip(self.key_sops, k)), dict(zip(self.query_sops, q))))

    def witnesses_hold(self) -> bool:
        """Program question, exact domain: every pair in `used_pairs` occurs, selected or
        not as claimed, on an input the evaluator runs."""
        if self.question != "program" or not self.domain.exact:
            return False
        return all(check_witness(self.selector, self.domain, q, k, sel) for q, k, sel in self.used_pairs())

    # --------------------------------------------------------------------------- report

    def describe(self) -> str:
        lines = [
            f"selector {self.selector.label!r}: {len(self.atoms)} atom(s) over key SOps {list(self.key_sops)} "
            f"and query SOps {list(self.query_sops)}",
        ]
        if self.conjunction and self.question == "free":
            lines.append("  question: the free question: every combination of the involved SOps' values")
        else:
            lines.append(f"  question: {self.domain.describe()}")
            lines.append(
                f"  {len(self.query_tuples)} query tuples x {len(self.key_tuples)} key tuples, "
                f"{self.domain.pairs} pairs, {int((self.pattern & self.realised).sum())} selected"
            )
        factored = self.fits["factored"]
        if factored.fits:
            how = {
                "conjunction": "a conjunction: its tables add up, BOS at m - 1/2",
                "single-pair": "one key SOp and one query SOp: one table",
                "lp": "the LP found weights",
            }.get(factored.method, factored.method)
            lines.append(f"  fits one head with factored one-hots ({how}); width {factored.width}")
        elif not factored.decided:
            lines.append(f"  undecided for one factored head: the LP stopped after {self.time_limit:g} s")
            lines.append(
                f"  cheapest encoding that fits: {self.encoding} (width {self.widths[self.encoding]})"
            )
        else:
            proof = (
                ""
                if self.question == "free" or self.domain.exact
                else (" (on an over-approximated domain: not a proof for the program)")
            )
            lines.append(f"  does NOT fit one factored head{proof}: {factored.witness}")
            lines.append(
                f"  cheapest encoding that fits: {self.encoding} (width {self.widths[self.encoding]})"
            )
        lines.append(
            "  widths: " + ", ".join(f"{k}={'-' if v is None else v}" for k, v in self.widths.items())
        )
        lower, upper = self.band()
        stopped = "" if self.rank_search_complete else " (search stopped)"
        over = self.question == "program" and not self.domain.exact
        who = "any head right on these pairs needs" if over else "any head needs"
        lines.append(
            f"  QK rank band [{lower}, {upper}]: {who} at least {lower}{stopped} "
            f"(induced matching of {len(self.induced_matching)} unselected pairs); "
            f"the {self.encoding} head rasp_lab builds has rank {upper}"
        )
        return "\n".join(lines)


class _Fits(Mapping):
    """encoding -> Fit, each decided on first access."""

    def __init__(self, analysis: SelectorAnalysis) -> None:
        self._analysis = analysis
        self._done: dict[str, Fit] = {}

    def __getitem__(self, encoding: str) -> Fit:
        if encoding not in ENCODINGS:
            raise KeyError(encoding)
        if encoding not in self._done:
            self._done[encoding] = self._analysis._decide(encoding)
        return self._done[encoding]

    def __iter__(self) -> Iterator[str]:
        return iter(ENCODINGS)

    def __len__(self) -> int:
        return len(ENCODINGS)


def _involved_values(selector, labels, vocab, max_seq_len, value_sets) -> dict[str, tuple]:
    if value_sets is None:
        if vocab is None or max_seq_len is None:
            raise TypeError("analyze() needs vocab= and max_seq_len=, or value_sets=")
        sops = involved_sops(selector)
        inferred: dict[str, frozenset] = {}
        for label in labels:
            sets = infer_value_sets(sops[label], vocab, max_seq_len)
            inferred[label] = sets[label]
        given: Mapping[str, Iterable[Any]] = inferred
    else:
        given = {(k.label if isinstance(k, rasp.RASPExpr) else k): v for k, v in value_sets.items()}
    out = {}
    for label in labels:
        if label not in given or given[label] is None:
            raise ValueError(f"no value set for SOp {label!r} (needed by selector {selector.label!r})")
        vals = tuple(sort_values(v for v in given[label] if v is not None))
        if not vals:
            raise ValueError(f"SOp {label!r} has no values")
        out[label] = vals
    return out


def _pattern(selector, key_sops, query_sops, values, key_tuples, query_tuples) -> np.ndarray:
    """[n_q, n_k] bool selection: each atom tabulated over its value pair once, then
    spread over the tuples and combined with numpy's Boolean algebra."""
    k_idx = {
        s: np.array([values[s].index(t[c]) for t in key_tuples], dtype=int) for c, s in enumerate(key_sops)
    }
    q_idx = {
        s: np.array([values[s].index(t[c]) for t in query_tuples], dtype=int)
        for c, s in enumerate(query_sops)
    }

    def atom_grid(node: rasp.Selector) -> np.ndarray:
        ks = node.keys.label if isinstance(node, rasp.Select) else rasp.indices.label
        qs = node.queries.label if isinstance(node, rasp.Select) else rasp.indices.label
        table = np.array(
            [[truth(node, {ks: k}, {qs: q}) for k in values[ks]] for q in values[qs]], dtype=bool
        )  # [|values of qs|, |values of ks|]
        return table[q_idx[qs][:, None], k_idx[ks][None, :]]

    # Children before parents with an explicit stack, so long chains don't recurse.
    grids: dict[int, np.ndarray] = {}
    stack: list[tuple[rasp.Selector, bool]] = [(selector, False)]
    while stack:
        node, expanded = stack.pop()
        if id(node) in grids:
            continue
        if isinstance(node, (rasp.Select, rasp.ConstantSelector)):
            grids[id(node)] = atom_grid(node)
        elif not isinstance(node, (rasp.SelectorAnd, rasp.SelectorOr, rasp.SelectorNot)):
            raise TypeError(f"unknown selector type {type(node).__name__} {node.label!r}")
        elif not expanded:
            stack.append((node, True))
            stack.extend((child, False) for child in reversed(node.children) if id(child) not in grids)
        elif isinstance(node, rasp.SelectorAnd):
            grids[id(node)] = grids[id(node.fst)] & grids[id(node.snd)]
        elif isinstance(node, rasp.SelectorOr):
            grids[id(node)] = grids[id(node.fst)] | grids[id(node.snd)]
        else:
            grids[id(node)] = ~grids[id(node.inner)]  # type: ignore[attr-defined]
    return grids[id(selector)]


class _Context:
    def __init__(
        self, selector, key_sops, query_sops, values, domain: Domain, pattern, time_limit: float
    ) -> None:
        self.selector = selector
        self.key_sops, self.query_sops = key_sops, query_sops
        self.values = values
        self.domain = domain
        self.key_tuples, self.query_tuples = domain.key_tuples, domain.query_tuples
        self.pattern, self.realised = pattern, domain.realised
        self.time_limit = time_limit

    def blocks(self, encoding: str) -> tuple[tuple[Block, ...], tuple[Block, ...]]:
        """A product block holds the domain's tuples of its side (on the program question,
        only the tuples that occur)."""

        def side(sops: tuple[str, ...], joint: bool, tuples: tuple[tuple, ...]) -> tuple[Block, ...]:
            if joint and len(sops) > 1:
                return (Block(sops, tuples),)
            return tuple(Block((s,), self.values[s]) for s in sops)

        q_joint = encoding in ("product_queries", "product_both")
        k_joint = encoding in ("product_keys", "product_both")
        return side(self.query_sops, q_joint, self.query_tuples), side(
            self.key_sops, k_joint, self.key_tuples
        )

    def indices(
        self, blocks: tuple[Block, ...], sops: tuple[str, ...], tuples: tuple[tuple, ...]
    ) -> dict[int, np.ndarray]:
        """Block -> [n_tuples] index of each tuple's value within that block."""
        out = {}
        for b, block in enumerate(blocks):
            position = {v: i for i, v in enumerate(block.values)}
            cols = [sops.index(s) for s in block.sops]
            if len(block.sops) == 1:
                out[b] = np.array([position[t[cols[0]]] for t in tuples], dtype=int)
            else:
                out[b] = np.array([position[tuple(t[c] for c in cols)] for t in tuples], dtype=int)
        return out

    def corners(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Ever larger corners of a large domain: the tuples whose values all lie among the
        first 2, 3, 4, 6, 8, ... values of each SOp -> (query tuple mask [n_q], key tuple
        mask [n_k]). Nothing for a domain of at most CORNER_PAIRS pairs."""
        if self.domain.pairs <= CORNER_PAIRS:
            return
        rank = {s: {v: n for n, v in enumerate(vals)} for s, vals in self.values.items()}
        q_top = np.array(
            [max((rank[s][v] for s, v in zip(self.query_sops, t)), default=0) for t in self.query_tuples]
        )
        k_top = np.array(
            [max((rank[s][v] for s, v in zip(self.key_sops, t)), default=0) for t in self.key_tuples]
        )
        largest = max(int(q_top.max(initial=0)), int(k_top.max(initial=0))) + 1
        size = 2
        while size < largest:
            rows, cols = q_top < size, k_top < size
            if (self.realised[rows][:, cols]).sum() > CORNER_PAIRS * 4:
                return
            yield rows, cols
            size = size + 1 if size < 4 else size * 3 // 2

    def program(
        self, q_blocks, k_blocks, *, width: bool = False, rows=None, cols=None, deadline: float | None = None
    ) -> tuple[LinearProgram, tuple[tuple, ...], tuple[tuple, ...]]:
        """The LP over the domain, or over the query tuples `rows` and key tuples `cols`
        (bool masks) only; with the tuples its rows are indexed by. Raises LPStopped when
        the LP would be too large to build, or the deadline has passed."""
        q_rows = np.arange(len(self.query_tuples)) if rows is None else np.flatnonzero(rows)
        k_cols = np.arange(len(self.key_tuples)) if cols is None else np.flatnonzero(cols)
        sub = np.ix_(q_rows, k_cols)
        pairs = int(self.realised[sub].sum())
        if pairs * (len(q_blocks) * len(k_blocks) + len(k_blocks) + len(q_blocks) + 2) > LP_ENTRIES:
            raise LPStopped
        q_tuples = tuple(self.query_tuples[i] for i in q_rows)
        k_tuples = tuple(self.key_tuples[i] for i in k_cols)
        left = self.time_limit if deadline is None else deadline - time.monotonic()
        if left <= 0:
            raise LPStopped
        lp = LinearProgram(
            self.pattern[sub],
            self.realised[sub],
            q_blocks,
            k_blocks,
            self.indices(q_blocks, self.query_sops, q_tuples),
            self.indices(k_blocks, self.key_sops, k_tuples),
            width=width,
            time_limit=left,
        )
        return lp, q_tuples, k_tuples

    def decide(self, encoding: str) -> Fit:
        q_blocks, k_blocks = self.blocks(encoding)
        width = sum(b.width for b in q_blocks) + sum(b.width for b in k_blocks)
        if len(k_blocks) > 1:
            rectangle = self._broken_rectangle()
            if rectangle is not None:
                return Fit(encoding, width, False, None, rectangle, "rectangle")
        if len(q_blocks) == 1 and len(k_blocks) == 1:
            return Fit(encoding, width, True, self.table_weights(q_blocks, k_blocks), None, "single-pair")
        deadline = time.monotonic() + self.time_limit
        try:
            for rows, cols in self.corners():
                # A corner's rows are some of the full LP's rows: infeasible there, infeasible
                # everywhere, and its Farkas certificate is one for the whole domain.
                small, q_sub, k_sub = self.program(
                    q_blocks, k_blocks, rows=rows, cols=cols, deadline=deadline
                )
                if small.feasible() is None:
                    return Fit(encoding, width, False, None, small.certificate(q_sub, k_sub), "farkas")
            lp, _, _ = self.program(q_blocks, k_blocks, deadline=deadline)
            weights = lp.feasible()
            if weights is not None:
                if self.domain.question == "program":
                    # Among the weights that fit, prefer sparse ones: they leave an SOp the
                    # others determine unread, so the head is also clean off the domain.
                    weights = lp.feasible(sparse=True) or weights
                return Fit(encoding, width, True, weights, None, "lp")
            return Fit(
                encoding, width, False, None, lp.certificate(self.query_tuples, self.key_tuples), "farkas"
            )
        except LPStopped:
            return Fit(encoding, width, False, None, None, "stopped")

    def expanded(self, fit: Fit, encoding: str) -> Fit:
        """`fit`'s weights re-expressed on the (coarser) blocks of `encoding`: a product
        block's entry is the sum of the per-SOp entries of its tuple's coordinates."""
        q_blocks, k_blocks = self.blocks(encoding)
        width = sum(b.width for b in q_blocks) + sum(b.width for b in k_blocks)
        old = fit.weights
        if old is None:
            raise ValueError("only a fitting encoding can be expanded")
        q_owner, q_sub = _coarsen(old.query_blocks, q_blocks)
        k_owner, k_sub = _coarsen(old.key_blocks, k_blocks)
        tables: dict[tuple[int, int], np.ndarray] = {}
        for (j, i), table in old.tables.items():
            key = (q_owner[j], k_owner[i])
            tables[key] = tables.get(key, 0.0) + table[q_sub[j][:, None], k_sub[i][None, :]]
        bias: dict[int, np.ndarray] = {}
        for i, vec in old.key_bias.items():
            bias[k_owner[i]] = bias.get(k_owner[i], 0.0) + vec[k_sub[i]]
        bos: dict[int, np.ndarray] = {}
        for j, vec in old.bos_query.items():
            bos[q_owner[j]] = bos.get(q_owner[j], 0.0) + vec[q_sub[j]]
        weights = HeadWeights(q_blocks, k_blocks, tables, bias, bos, old.bos_const, old.margin)
        return Fit(encoding, width, True, weights, None, f"expanded from {fit.method}")

    def table_weights(self, q_blocks, k_blocks) -> HeadWeights:
        """One block a side: the selection itself is the table (x2), BOS at 1. It is the
        selector's truth on every tuple pair, so it is right off the domain too."""
        qi = self.indices(q_blocks, self.query_sops, self.query_tuples)[0]
        ki = self.indices(k_blocks, self.key_sops, self.key_tuples)[0]
        table = np.zeros((q_blocks[0].width, k_blocks[0].width))
        table[qi[:, None], ki[None, :]] = np.where(self.pattern, 2.0, 0.0)
        return HeadWeights(q_blocks, k_blocks, {(0, 0): table}, {}, {}, 1.0, 1.0)

    def _broken_rectangle(self) -> Rectangle | None:
        """Two selected keys of one query and the two tuples that swap some of their
        coordinates, both beside the query, one unselected (needs >= 2 key SOps)."""
        checks = 0
        m = len(self.key_sops)
        for qi, q in enumerate(self.query_tuples):
            row = self.realised[qi]
            beside = {self.key_tuples[k]: bool(self.pattern[qi, k]) for k in np.flatnonzero(row)}
            selected = [self.key_tuples[k] for k in np.flatnonzero(self.pattern[qi] & row)]
            for a, b in itertools.combinations(selected, 2):
                checks += 1
                if checks > RECTANGLE_CHECKS:
                    return None
                differ = [c for c in range(m) if a[c] != b[c]]
                for r in range(len(differ) - 1):
                    for rest in itertools.combinations(differ[1:], r):
                        swap = {differ[0], *rest}
                        s1 = tuple(b[c] if c in swap else a[c] for c in range(m))
                        s2 = tuple(a[c] if c in swap else b[c] for c in range(m))
                        if s1 in beside and s2 in beside and not (beside[s1] and beside[s2]):
                            unselected = s1 if not beside[s1] else s2
                            return Rectangle(
                                query=q, selected=(a, b), swapped=(s1, s2), unselected=unselected
                            )
        return None


def conjunction_weights(
    selector: rasp.Selector,
    values: Mapping[str, tuple],
    *,
    width: bool = False,
    nullable: frozenset = frozenset(),
) -> HeadWeights:
    """Weights for a conjunction of groups, each on one (key SOp, query SOp) pair, on the
    factored blocks, with no grid and no LP: each group's 0/1 table doubled and added up,
    so a key scores 2m exactly when all m groups hold; BOS at 2m - 1 (2m for a width head).
    `values` maps each involved SOp label to its (non-None) values; `nullable` names SOps
    that can be None: their blocks end with a None value, selected as the evaluator selects
    it (never by an atom, always by its negation)."""
    # A nullable SOp's block gets a None value: the head reads it as `one` minus the SOp's
    # one-hot (see rasp_lab/compiler/blocks.py), so a negated atom selects None as `~` does.
    domain = {label: (*vals, None) if label in nullable else tuple(vals) for label, vals in values.items()}
    tables = selector_tables(selector, {label: frozenset(vals) for label, vals in domain.items()})
    query_sops = sorted({t.query_sop for t in tables.tables})
    key_sops = sorted({t.key_sop for t in tables.tables})
    q_blocks = tuple(Block((label,), domain[label]) for label in query_sops)
    k_blocks = tuple(Block((label,), domain[label]) for label in key_sops)
    out: dict[tuple[int, int], np.ndarray] = {}
    bias: dict[int, np.ndarray] = {}
    for table in tables.tables:
        j, i = query_sops.index(table.query_sop), key_sops.index(table.key_sop)
        q_index = {v: n for n, v in enumerate(q_blocks[j].values)}
        k_index = {v: n for n, v in enumerate(k_blocks[i].values)}
        arr = np.zeros((q_blocks[j].width, k_blocks[i].width))  # [|query values|, |key values|]
        if table.entries:
            pairs = table.entries.keys()
            rows = np.fromiter((q_index[q] for q, _ in pairs), dtype=np.int64, count=len(pairs))
            cols = np.fromiter((k_index[k] for _, k in pairs), dtype=np.int64, count=len(pairs))
            arr[rows, cols] = 2.0 * np.fromiter(table.entries.values(), dtype=float, count=len(pairs))
        if (arr == arr[:1]).all():
            # The same for every query (e.g. TRUE): a key-only bias, not a dense table.
            bias[i] = bias.get(i, 0.0) + arr[0]
        else:
            out[(j, i)] = out.get((j, i), 0.0) + arr
    bos = 2.0 * tables.top - (0.0 if width else 1.0)
    return HeadWeights(q_blocks, k_blocks, out, bias, {}, bos, 1.0)


def _coarsen(old: tuple[Block, ...], new: tuple[Block, ...]) -> tuple[dict[int, int], dict[int, np.ndarray]]:
    """For each old block: the new block containing its SOps, and, for every value of that
    new block, the index of the old block's value (its coordinate) -> [new block width]."""
    owner: dict[int, int] = {}
    sub: dict[int, np.ndarray] = {}
    for o, ob in enumerate(old):
        n = next(n for n, nb in enumerate(new) if set(ob.sops) <= set(nb.sops))
        nb = new[n]
        position = {v: i for i, v in enumerate(ob.values)}
        cols = [nb.sops.index(s) for s in ob.sops]

        def coordinate(
            value: Any,
            cols: list[int] = cols,
            joint: bool = len(nb.sops) > 1,
            single: bool = len(ob.sops) == 1,
        ) -> Any:
            if not joint:
                return value
            picked = tuple(value[c] for c in cols)
            return picked[0] if single else picked

        owner[o] = n
        sub[o] = np.array([position[coordinate(v)] for v in nb.values], dtype=int)
    return owner, sub


def qk_rank(weights: HeadWeights) -> int:
    """The rank of the QK matrix rasp_lab compiles from `weights`: rows are the query
    blocks' values, `one` and the BOS query; columns the key blocks' values and BOS."""
    q_off = np.cumsum([0] + [b.width for b in weights.query_blocks])
    k_off = np.cumsum([0] + [b.width for b in weights.key_blocks])
    one, bos_q, bos_k = q_off[-1], q_off[-1] + 1, k_off[-1]
    matrix = np.zeros((q_off[-1] + 2, k_off[-1] + 1))  # [query directions, key directions]
    for (j, i), table in weights.tables.items():
        matrix[q_off[j] : q_off[j + 1], k_off[i] : k_off[i + 1]] += table
    for i, bias in weights.key_bias.items():
        matrix[one, k_off[i] : k_off[i + 1]] += bias
    for j, vec in weights.bos_query.items():
        matrix[q_off[j] : q_off[j + 1], bos_k] += vec
    matrix[one, bos_k] += weights.bos_const
    matrix[bos_q, bos_k] = 1.0  # the BOS query's own score (any non-zero entry)
    return int(np.linalg.matrix_rank(matrix))


CLEAN_CHECK_PAIRS = 4_000_000
"""Most (query, key) block-value combinations `clean_everywhere` scores before giving up."""


def clean_everywhere(weights: HeadWeights, tol: float = 1e-6) -> bool:
    """Whether `weights` score every combination of their blocks' values (not only the
    domain's pairs) cleanly: each key's logit, and BOS's, sits at its query's top or at
    least the margin below it. A compiled model's certificate checks exactly that, so a
    head right only on the program's pairs is compiled only if it is also clean."""
    q_sizes = [b.width for b in weights.query_blocks]
    k_sizes = [b.width for b in weights.key_blocks]
    n_q, n_k = int(np.prod(q_sizes)), int(np.prod(k_sizes))
    if n_q * n_k > CLEAN_CHECK_PAIRS:
        return False
    q_idx = {j: g.ravel() for j, g in enumerate(np.indices(q_sizes))} if q_sizes else {}
    k_idx = {i: g.ravel() for i, g in enumerate(np.indices(k_sizes))} if k_sizes else {}
    if not q_idx or not k_idx:
        return True
    logits, bos = weights.logits(q_idx, k_idx)  # [n_q, n_k], [n_q]
    scores = np.concatenate([logits, bos[:, None]], axis=1)
    top = scores.max(axis=1, keepdims=True)
    at_top = scores >= top - tol
    below = scores <= top - weights.margin + tol
    return bool((at_top | below).all())


# ------------------------------------------------------------------------ verification


def _realises(weights: HeadWeights, a: SelectorAnalysis, tol: float = 1e-6) -> bool:
    ctx = a._ctx
    q_idx = ctx.indices(weights.query_blocks, a.query_sops, a.query_tuples)
    k_idx = ctx.indices(weights.key_blocks, a.key_sops, a.key_tuples)
    logits, bos = weights.logits(q_idx, k_idx)
    margin = weights.margin - tol
    pattern, realised = a.pattern, a.realised
    for q in range(pattern.shape[0]):
        sel = pattern[q] & realised[q]
        unsel = ~pattern[q] & realised[q]
        if sel.any():
            top = logits[q, sel]
            if top.max() - top.min() > tol or top.min() < bos[q] + margin:
                return False
        if unsel.any() and logits[q, unsel].max() > bos[q] - margin:
            return False
    return True


def _pair_state(a: SelectorAnalysis, q: tuple, k: tuple) -> tuple[bool, bool] | None:
    """(realised, selected) for a tuple pair of the domain, None if either tuple is not in it."""
    try:
        qi, ki = a.query_tuples.index(q), a.key_tuples.index(k)
    except ValueError:
        return None
    return bool(a.realised[qi, ki]), bool(a.pattern[qi, ki])


def _rectangle_holds(r: Rectangle, a: SelectorAnalysis) -> bool:
    states = [_pair_state(a, r.query, k) for k in (*r.selected, *r.swapped)]
    if any(s is None or not s[0] for s in states):
        return False
    (k1, k2), (s1, s2) = r.selected, r.swapped
    swaps = all(
        {s1[c], s2[c]} == {k1[c], k2[c]}
        and s1[c] in (k1[c], k2[c])
        and s2[c] == (k2[c] if s1[c] == k1[c] else k1[c])
        for c in range(len(k1))
    )
    selected = states[0][1] and states[1][1]  # type: ignore[index]
    unselected = r.unselected in r.swapped and not states[2 + r.swapped.index(r.unselected)][1]  # type: ignore[index]
    return swaps and selected and unselected and len(a.key_sops) > 1


def _certificate_holds(cert: FarkasCertificate, encoding: str, a: SelectorAnalysis) -> bool:
    """Rebuild the constraint rows named in the certificate and sum them exactly."""
    from fractions import Fraction

    ctx = a._ctx
    q_blocks, k_blocks = ctx.blocks(encoding)
    # Only the rows and columns the certificate names: its LP is small however large the domain.
    q_all = {t: i for i, t in enumerate(a.query_tuples)}
    k_all = {t: i for i, t in enumerate(a.key_tuples)}
    named_q = {qt for _, qt, _, _ in cert.inequalities} | {qt for qt, _, _ in cert.equalities}
    named_k = {kt for kind, _, kt, _ in cert.inequalities if kind == "unselected"} | {
        kt for _, kt, _ in cert.equalities
    }
    if any(t not in q_all for t in named_q) or any(t not in k_all for t in named_k):
        return False
    rows = np.zeros(len(a.query_tuples), dtype=bool)
    rows[[q_all[t] for t in named_q]] = True
    cols = np.zeros(len(a.key_tuples), dtype=bool)
    cols[[k_all[t] for t in named_k]] = True
    lp, q_sub, k_sub = ctx.program(q_blocks, k_blocks, rows=rows, cols=cols)
    total: dict[Any, Fraction] = {}
    q_of = {t: i for i, t in enumerate(q_sub)}
    k_of = {t: i for i, t in enumerate(k_sub)}
    pattern, realised = (
        a.pattern[np.ix_(np.flatnonzero(rows), np.flatnonzero(cols))],
        a.realised[np.ix_(np.flatnonzero(rows), np.flatnonzero(cols))],
    )

    def add(cols: list[int], weight: Fraction) -> None:
        for c in cols:
            total[c] = total.get(c, Fraction(0)) + weight

    for kind, qt, kt, weight in cert.inequalities:
        q = q_of[qt]
        if weight < 0:
            return False
        if kind == "unselected":
            k = k_of[kt]
            if pattern[q, k] or not realised[q, k]:
                return False
            add(lp.logit_cols(q, k), weight)
            add(lp.bos_cols(q), -weight)
        elif kind == "bos-below-selected":
            if not (a.pattern[q_all[qt]] & a.realised[q_all[qt]]).any():
                return False
            add(lp.bos_cols(q), weight)
            add([lp.m_off + q], -weight)
        else:
            return False
    for qt, kt, weight in cert.equalities:
        q, k = q_of[qt], k_of[kt]
        if not (pattern[q, k] and realised[q, k]):
            return False
        add(lp.logit_cols(q, k), weight)
        add([lp.m_off + q], -weight)
    positive = sum(w for _, _, _, w in cert.inequalities)
    if cert.exact:
        return positive > 0 and all(v == 0 for v in total.values())
    return positive > 0 and all(abs(float(v)) < 1e-6 for v in total.values())


def induced_matching(
    pattern: np.ndarray,
    realised: np.ndarray | None = None,
    *,
    restarts: int = 8,
    deadline: float | None = None,
) -> tuple[list[tuple[int, int]], bool]:
    """Unselected pairs (q_t, k_t) with every (q_s, k_t), s != t, selected (all realised): a
    greedy search (rows with few unselected keys first, then seeded shuffles), keeping the
    largest. Returns (pairs, whether every order ran before `deadline`)."""
    if realised is None:
        realised = np.ones_like(pattern, dtype=bool)
    on = pattern & realised  # [n_q, n_k]: selected and realised
    off = ~pattern & realised
    un_q, un_k = np.nonzero(off)
    if not len(un_q):
        return [], True
    per_row = off.sum(axis=1)
    first = np.lexsort((un_k, un_q, per_row[un_q]))  # rows with few unselected keys first
    rng = np.random.default_rng(0)
    orders = itertools.chain([first], (rng.permutation(len(un_q)) for _ in range(restarts)))
    best: list[tuple[int, int]] = []
    complete = True
    for order in orders:
        chosen_q: list[int] = []
        chosen_k: list[int] = []
        rows, cols = set(), set()
        for n, (q, k) in enumerate(zip(un_q[order].tolist(), un_k[order].tolist())):
            if deadline is not None and n % 256 == 0 and time.monotonic() > deadline:
                complete = False
                break
            if q in rows or k in cols:
                continue
            if on[chosen_q, k].all() and on[q, chosen_k].all():
                chosen_q.append(int(q))
                chosen_k.append(int(k))
                rows.add(q), cols.add(k)
        if len(chosen_q) > len(best):
            best = list(zip(chosen_q, chosen_k))
        if not complete:
            break
    return [(int(q), int(k)) for q, k in best], complete


def _conjunction_matching(a: SelectorAnalysis, seconds: float) -> tuple[list[tuple[tuple, tuple]], bool]:
    """A conjunction on the free question, without its grid: each group's own table, with
    every other group held at a selected pair of values. The logits restricted to that
    slice are the group's pattern, so its induced matching bounds the rank as well. Groups
    that share an SOp can't be held apart: then no bound is searched (reported as stopped)."""
    tables = selector_tables(a.shallow, {label: frozenset(v) for label, v in a.values.items()}).tables
    q_reads, k_reads = [t.query_sop for t in tables], [t.key_sop for t in tables]
    if len(set(q_reads)) < len(q_reads) or len(set(k_reads)) < len(k_reads):
        return [], False
    held_q: dict[str, Any] = {}
    held_k: dict[str, Any] = {}
    for table in tables:
        if not table.entries:
            return [], True  # a group that never holds: the selector selects nothing
        held_q[table.query_sop], held_k[table.key_sop] = sort_values(table.entries)[0]
    best: list[tuple[tuple, tuple]] = []
    complete = True
    deadline = time.monotonic() + seconds
    for table in tables:
        qs, ks = a.values[table.query_sop], a.values[table.key_sop]
        grid = np.array([[(q, k) in table.entries for k in ks] for q in qs], dtype=bool)  # [|qs|, |ks|]
        found, done = induced_matching(grid, deadline=deadline)
        complete &= done
        if len(found) > len(best):

            def full(sops: tuple[str, ...], own: str, value: Any, held: dict[str, Any]) -> tuple:
                return tuple(value if s == own else held[s] for s in sops)

            best = [
                (
                    full(a.query_sops, table.query_sop, qs[q], held_q),
                    full(a.key_sops, table.key_sop, ks[k], held_k),
                )
                for q, k in found
            ]
    return best, complete


def _matching_holds(a: SelectorAnalysis) -> bool:
    pairs = a.induced_matching
    for s, (qs, ks) in enumerate(pairs):
        if a._selected(qs, ks):
            return False
        for t, (_, kt) in enumerate(pairs):
            if s != t and not a._selected(qs, kt):
                return False
    if a.question == "program":  # on the free question every pair is in the domain
        for qs, _ in pairs:
            for _, kt in pairs:
                state = _pair_state(a, qs, kt)
                if state is None or not state[0]:
                    return False
    return a.rank_lower_bound == max(0, len(pairs) - 1)
