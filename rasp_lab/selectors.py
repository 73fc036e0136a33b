"""Which selector compositions fit in one attention head, with a certificate either way.

The head model (see docs/selector_composition.md): the residual holds one one-hot block per
categorical SOp (the *factored* encoding), or, on one side, one joint one-hot over all that
side's SOps (a *product* encoding). A head's logit is bilinear, so with blocks it is a sum of
tables `W_ji[q_j, k_i]` over query blocks j and key blocks i, plus key-only terms `u_i[k_i]`;
BOS scores `v0 + sum_j v_j[q_j]`. The head is right (Boolean, in the large-logit limit) iff,
for every query tuple q: all selected keys share one logit M(q); every unselected key scores
at least 1 below BOS; and M(q) is at least 1 above BOS when q selects anything.

`analyze` decides that exactly over the Cartesian product of the involved value sets:
conjunctions of single-pair groups fit without an LP (tables summed, BOS at m - 1/2); a
broken rectangle (for some q, selected key tuples whose coordinates recombine into an
unselected one) refutes the factored key side directly; otherwise a linear program (scipy's
HiGHS) finds max-margin weights, or its dual gives a Farkas certificate of impossibility.
`rank_lower_bound` bounds the QK rank any encoding needs, from an induced matching.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np
import scipy.optimize
import scipy.sparse

from rasp_lab import rasp
from rasp_lab.compiler.basis import sort_values
from rasp_lab.compiler.selector_tables import conjunct_pairs, selector_tables, truth
from rasp_lab.value_sets import ValueSets
from rasp_lab.value_sets import value_sets as infer_value_sets

__all__ = [
    "Atom",
    "Block",
    "HeadWeights",
    "Rectangle",
    "FarkasCertificate",
    "Fit",
    "SelectorAnalysis",
    "analyze",
    "ENCODINGS",
]

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

    def logits(self, q_index: Mapping[int, np.ndarray], k_index: Mapping[int, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
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
    """For one query tuple: `selected` key tuples whose coordinates recombine into
    `unselected`, which a factored (additively separable) key side can't leave out."""

    query: tuple
    selected: tuple[tuple, ...]
    unselected: tuple

    def __str__(self) -> str:
        return (
            f"query {self.query}: keys {' and '.join(map(str, self.selected))} are selected but "
            f"{self.unselected} (built from their coordinates) is not"
        )


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
    """How it was decided: 'conjunction', 'single-pair', 'lp', 'rectangle', 'farkas'."""


@dataclass(frozen=True)
class SelectorAnalysis:
    selector: rasp.Selector
    atoms: tuple[Atom, ...]
    key_sops: tuple[str, ...]
    query_sops: tuple[str, ...]
    values: Mapping[str, tuple]
    pattern: np.ndarray = field(repr=False)
    """[n_query_tuples, n_key_tuples] bool: the selection over the Cartesian products."""
    query_tuples: tuple[tuple, ...] = field(repr=False)
    key_tuples: tuple[tuple, ...] = field(repr=False)
    fits: Mapping[str, Fit] = field(repr=False)
    rank_lower_bound: int = 0
    induced_matching: tuple[tuple[tuple, tuple], ...] = ()

    @property
    def fits_one_head(self) -> bool:
        return self.fits["factored"].fits

    @property
    def widths(self) -> dict[str, int | None]:
        return {name: (fit.width if fit.fits else None) for name, fit in self.fits.items()}

    @property
    def encoding(self) -> str:
        fitting = [fit for fit in self.fits.values() if fit.fits]
        return min(fitting, key=lambda f: (f.width, ENCODINGS.index(f.encoding))).encoding

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
        if not width:
            return fit.weights
        ctx = _Context(self.selector, self.key_sops, self.query_sops, self.values, self.key_tuples, self.query_tuples, self.pattern)
        q_blocks, k_blocks = ctx.blocks(fit.encoding)
        tables = fit.method.split()[-1] in ("conjunction", "single-pair")
        if tables or (len(q_blocks) == 1 and len(k_blocks) == 1):
            # Table weights (selected exactly 2 per group, BOS 1 below the top). LP weights,
            # even on one block a side, leave M(q) - BOS(q) free: use the pattern as the table.
            base = fit.weights if tables and fit.weights is not None else ctx._table_weights(q_blocks, k_blocks)
            # Tables are 2 per satisfied group; BOS one unit higher reaches the top, 2m.
            return HeadWeights(base.query_blocks, base.key_blocks, base.tables, base.key_bias, base.bos_query, base.bos_const + 1.0, base.margin)
        return _LinearProgram(ctx, q_blocks, k_blocks, width=True).feasible()

    def check(self) -> bool:
        """Verify every decision independently of the solver: weights realise the pattern
        with a positive margin; certificates combine the constraints to a contradiction."""
        for fit in self.fits.values():
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
        return _matching_holds(self)

    def describe(self) -> str:
        lines = [
            f"selector {self.selector.label!r}: {len(self.atoms)} atom(s) over key SOps {list(self.key_sops)} "
            f"and query SOps {list(self.query_sops)}",
            f"  {len(self.query_tuples)} query tuples x {len(self.key_tuples)} key tuples, "
            f"{int(self.pattern.sum())} selected pairs",
        ]
        factored = self.fits["factored"]
        if factored.fits:
            how = {
                "conjunction": "a conjunction: its tables add up, BOS at m - 1/2",
                "single-pair": "one key SOp and one query SOp: one table",
                "lp": "the LP found weights",
            }.get(factored.method, factored.method)
            lines.append(f"  fits one head with factored one-hots ({how}); width {factored.width}")
        else:
            lines.append(f"  does NOT fit one factored head: {factored.witness}")
            lines.append(f"  cheapest encoding that fits: {self.encoding} (width {self.widths[self.encoding]})")
        lines.append(
            "  widths: " + ", ".join(f"{k}={'-' if v is None else v}" for k, v in self.widths.items())
        )
        lines.append(
            f"  any encoding needs QK rank >= {self.rank_lower_bound} "
            f"(induced matching of {len(self.induced_matching)} unselected pairs)"
        )
        return "\n".join(lines)


# ---------------------------------------------------------------------------- analysis


def selector_atoms(selector: rasp.Selector) -> list[rasp.Selector]:
    """The Select / ConstantSelector leaves of a composition (not the selectors further up
    the program that its SOps are computed from), left to right, without repeats. Iterative,
    so a composition of thousands of atoms doesn't recurse."""
    found: list[rasp.Selector] = []
    seen: set[int] = set()
    stack: list[rasp.RASPExpr] = [selector]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, (rasp.Select, rasp.ConstantSelector)):
            found.append(node)
        else:
            stack.extend(reversed(node.children))
    return found


MAX_DEPTH = 200
"""Deepest selector composition handed to the compiler's (recursive) table builders; a
deeper one is first rebalanced (`&` / `|` chains, double negations)."""


def nesting_depth(selector: rasp.Selector) -> int:
    """How many selector levels `selector` nests (an atom is 1), without recursing."""
    depth: dict[int, int] = {}
    stack: list[tuple[rasp.RASPExpr, bool]] = [(selector, False)]
    while stack:
        node, expanded = stack.pop()
        if id(node) in depth:
            continue
        children = [c for c in node.children if isinstance(c, rasp.Selector)]
        if expanded or not children:
            depth[id(node)] = 1 + max((depth[id(c)] for c in children), default=0)
        else:
            stack.append((node, True))
            stack.extend((c, False) for c in children if id(c) not in depth)
    return depth[id(selector)]


def shallow_equivalent(selector: rasp.Selector) -> rasp.Selector:
    """`selector` itself if it nests at most MAX_DEPTH levels; else the same selection with
    `&` and `|` chains rebalanced and double negations dropped (same atoms, same order of
    conjuncts), or a ValueError naming the selector if it is still too deep."""
    depth = nesting_depth(selector)
    if depth <= MAX_DEPTH:
        return selector
    try:
        shallow = _rebalanced(selector)
    except RecursionError:
        shallow = None
    if shallow is None or nesting_depth(shallow) > MAX_DEPTH:
        raise ValueError(
            f"selector {selector.label!r} nests {depth} levels deep, and alternates &, | and ~ too "
            f"often to rebalance under {MAX_DEPTH} levels; write it with fewer nested levels"
        )
    return shallow


def _chain(selector: rasp.Selector, kind: type) -> list[rasp.Selector]:
    """The operands of a chain of `kind` (SelectorAnd or SelectorOr), left to right."""
    parts: list[rasp.Selector] = []
    stack: list[rasp.Selector] = [selector]
    while stack:
        node = stack.pop()
        if type(node) is kind:
            stack.extend((node.snd, node.fst))  # type: ignore[attr-defined]
        else:
            parts.append(node)
    return parts


def _rebalanced(selector: rasp.Selector) -> rasp.Selector:
    while isinstance(selector, rasp.SelectorNot) and isinstance(selector.inner, rasp.SelectorNot):
        selector = selector.inner.inner
    if isinstance(selector, rasp.SelectorNot):
        return rasp.SelectorNot(_rebalanced(selector.inner))
    if isinstance(selector, (rasp.SelectorAnd, rasp.SelectorOr)):
        kind = type(selector)
        parts = [_rebalanced(part) for part in _chain(selector, kind)]
        while len(parts) > 1:
            paired = [kind(parts[i], parts[i + 1]) for i in range(0, len(parts) - 1, 2)]
            parts = paired + parts[len(parts) - len(parts) % 2 :]
        return parts[0]
    return selector


def involved_sops(selector: rasp.Selector) -> dict[str, rasp.SOp]:
    """label -> SOp for every SOp an atom of the composition reads."""
    sops: dict[str, rasp.SOp] = {}
    for atom in selector_atoms(selector):
        if isinstance(atom, rasp.Select):
            sops.setdefault(atom.keys.label, atom.keys)
            sops.setdefault(atom.queries.label, atom.queries)
        else:
            sops.setdefault(rasp.indices.label, rasp.indices)
    return sops


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
) -> SelectorAnalysis:
    """Decide which encodings let one head compute `selector`.

    Give either `vocab` and `max_seq_len` (value sets are inferred) or `value_sets`
    mapping each involved SOp (or its label) to its values.
    """
    if not isinstance(selector, rasp.Selector):
        raise TypeError(f"analyze() takes a selector, got {type(selector).__name__} {selector!r}")
    atoms = atoms_of(selector)
    key_sops = tuple(sorted({a.key_sop for a in atoms}))
    query_sops = tuple(sorted({a.query_sop for a in atoms}))
    values = _involved_values(selector, key_sops + query_sops, vocab, max_seq_len, value_sets)
    key_tuples = tuple(itertools.product(*(values[s] for s in key_sops)))
    query_tuples = tuple(itertools.product(*(values[s] for s in query_sops)))
    pattern = _pattern(selector, key_sops, query_sops, values, key_tuples, query_tuples)
    # The compiler's table builders recurse over the composition: give them a shallow copy.
    shallow = shallow_equivalent(selector)
    ctx = _Context(shallow, key_sops, query_sops, values, key_tuples, query_tuples, pattern)
    fits = {"factored": ctx.decide("factored", conjunct_pairs(shallow))}
    for encoding in ENCODINGS[1:]:
        # A product block can carry any sum of per-SOp tables, so what fits factored fits
        # every product encoding: expand the weights instead of solving again.
        if fits["factored"].fits:
            fits[encoding] = ctx.expanded(fits["factored"], encoding)
        else:
            fits[encoding] = ctx.decide(encoding)
    matching = induced_matching(pattern)
    return SelectorAnalysis(
        selector=selector,
        atoms=atoms,
        key_sops=key_sops,
        query_sops=query_sops,
        values=values,
        pattern=pattern,
        query_tuples=query_tuples,
        key_tuples=key_tuples,
        fits=fits,
        rank_lower_bound=max(0, len(matching) - 1),
        induced_matching=tuple((query_tuples[q], key_tuples[k]) for q, k in matching),
    )


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
    spread over the product grid and combined with numpy's Boolean algebra."""
    k_idx = {s: np.array([values[s].index(t[c]) for t in key_tuples]) for c, s in enumerate(key_sops)}
    q_idx = {s: np.array([values[s].index(t[c]) for t in query_tuples]) for c, s in enumerate(query_sops)}

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
    def __init__(self, selector, key_sops, query_sops, values, key_tuples, query_tuples, pattern) -> None:
        self.selector = selector
        self.key_sops, self.query_sops = key_sops, query_sops
        self.values = values
        self.key_tuples, self.query_tuples = key_tuples, query_tuples
        self.pattern = pattern

    def blocks(self, encoding: str) -> tuple[tuple[Block, ...], tuple[Block, ...]]:
        def side(sops: tuple[str, ...], joint: bool, tuples: tuple[tuple, ...]) -> tuple[Block, ...]:
            if joint and len(sops) > 1:
                return (Block(sops, tuples),)
            return tuple(Block((s,), self.values[s]) for s in sops)

        q_joint = encoding in ("product_queries", "product_both")
        k_joint = encoding in ("product_keys", "product_both")
        return side(self.query_sops, q_joint, self.query_tuples), side(self.key_sops, k_joint, self.key_tuples)

    def indices(self, blocks: tuple[Block, ...], sops: tuple[str, ...], tuples: tuple[tuple, ...]) -> dict[int, np.ndarray]:
        """Block -> [n_tuples] index of each tuple's value within that block."""
        out = {}
        for b, block in enumerate(blocks):
            position = {v: i for i, v in enumerate(block.values)}
            cols = [sops.index(s) for s in block.sops]
            if len(block.sops) == 1:
                out[b] = np.array([position[t[cols[0]]] for t in tuples])
            else:
                out[b] = np.array([position[tuple(t[c] for c in cols)] for t in tuples])
        return out

    def decide(self, encoding: str, conjuncts: list | None = None) -> Fit:
        q_blocks, k_blocks = self.blocks(encoding)
        width = sum(b.width for b in q_blocks) + sum(b.width for b in k_blocks)
        if encoding == "factored" and conjuncts is not None and all(len(pairs) == 1 for pairs in conjuncts):
            # Parts on one (key, query) pair fold into one table: that is the single-pair case.
            method = "single-pair" if len(set().union(*conjuncts)) == 1 else "conjunction"
            return Fit(encoding, width, True, conjunction_weights(self.selector, self.values), None, method)
        if len(k_blocks) > 1:
            rectangle = self._broken_rectangle()
            if rectangle is not None:
                return Fit(encoding, width, False, None, rectangle, "rectangle")
        if len(q_blocks) == 1 and len(k_blocks) == 1:
            return Fit(encoding, width, True, self._table_weights(q_blocks, k_blocks), None, "single-pair")
        weights, certificate = _solve(self, q_blocks, k_blocks)
        if weights is not None:
            return Fit(encoding, width, True, weights, None, "lp")
        return Fit(encoding, width, False, None, certificate, "farkas")

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

    def _table_weights(self, q_blocks, k_blocks) -> HeadWeights:
        """One block a side: the pattern itself is the table (x2), BOS at 1."""
        qi = self.indices(q_blocks, self.query_sops, self.query_tuples)[0]
        ki = self.indices(k_blocks, self.key_sops, self.key_tuples)[0]
        table = np.zeros((q_blocks[0].width, k_blocks[0].width))
        table[qi[:, None], ki[None, :]] = np.where(self.pattern, 2.0, 0.0)
        return HeadWeights(q_blocks, k_blocks, {(0, 0): table}, {}, {}, 1.0, 1.0)

    def _broken_rectangle(self) -> Rectangle | None:
        """A query whose selected key tuples are not a product set (needs >= 2 key SOps)."""
        for qi, q in enumerate(self.query_tuples):
            selected = [self.key_tuples[k] for k in np.flatnonzero(self.pattern[qi])]
            if len(selected) < 2:
                continue
            chosen = set(selected)
            projections = [sorted({t[c] for t in selected}, key=repr) for c in range(len(self.key_sops))]
            for candidate in itertools.product(*projections):
                if candidate in chosen:
                    continue
                sources = []
                for c, value in enumerate(candidate):
                    source = next(t for t in selected if t[c] == value)
                    if source not in sources:
                        sources.append(source)
                return Rectangle(query=q, selected=tuple(sources), unselected=candidate)
        return None


def conjunction_weights(
    selector: rasp.Selector, values: Mapping[str, tuple], *, width: bool = False, nullable: frozenset = frozenset()
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
        for (q, k), bit in table.entries.items():
            arr[q_index[q], k_index[k]] = 2.0 * bit
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

        def coordinate(value: Any, cols: list[int] = cols, joint: bool = len(nb.sops) > 1, single: bool = len(ob.sops) == 1) -> Any:
            if not joint:
                return value
            picked = tuple(value[c] for c in cols)
            return picked[0] if single else picked

        owner[o] = n
        sub[o] = np.array([position[coordinate(v)] for v in nb.values])
    return owner, sub


# ------------------------------------------------------------------------------- the LP


def _solve(ctx: _Context, q_blocks, k_blocks) -> tuple[HeadWeights | None, FarkasCertificate | None]:
    lp = _LinearProgram(ctx, q_blocks, k_blocks)
    weights = lp.feasible()
    if weights is not None:
        return weights, None
    return None, lp.certificate()


class _LinearProgram:
    """Unknowns x = [tables, key biases, BOS-query terms, BOS const, M(q)...]; rows:
    selected (logit - M(q) = 0), unselected (logit - BOS <= -1), bos-below (BOS - M(q) <= -1)."""

    def __init__(self, ctx: _Context, q_blocks, k_blocks, width: bool = False) -> None:
        self.ctx, self.q_blocks, self.k_blocks = ctx, q_blocks, k_blocks
        self.width = width
        self.q_idx = ctx.indices(q_blocks, ctx.query_sops, ctx.query_tuples)
        self.k_idx = ctx.indices(k_blocks, ctx.key_sops, ctx.key_tuples)
        offset = 0
        self.table_off: dict[tuple[int, int], int] = {}
        for j, qb in enumerate(q_blocks):
            for i, kb in enumerate(k_blocks):
                self.table_off[(j, i)] = offset
                offset += qb.width * kb.width
        self.bias_off: dict[int, int] = {}
        for i, kb in enumerate(k_blocks):
            self.bias_off[i] = offset
            offset += kb.width
        self.bos_off: dict[int, int] = {}
        for j, qb in enumerate(q_blocks):
            self.bos_off[j] = offset
            offset += qb.width
        self.bos_const = offset
        offset += 1
        self.n_weights = offset
        self.m_off = offset
        offset += len(ctx.query_tuples)
        self.n_vars = offset
        self._build()

    def _logit_cols(self, q: int, k: int) -> list[int]:
        cols = []
        for (j, i), off in self.table_off.items():
            cols.append(off + self.q_idx[j][q] * self.k_blocks[i].width + self.k_idx[i][k])
        for i, off in self.bias_off.items():
            cols.append(off + self.k_idx[i][k])
        return cols

    def _bos_cols(self, q: int) -> list[int]:
        return [off + self.q_idx[j][q] for j, off in self.bos_off.items()] + [self.bos_const]

    def _build(self) -> None:
        """The constraint rows, built as whole [n_q, n_k] index grids (no Python loop over pairs)."""
        pattern = self.ctx.pattern
        n_q, n_k = pattern.shape
        logit_cols = [
            off + self.q_idx[j][:, None] * self.k_blocks[i].width + self.k_idx[i][None, :]
            for (j, i), off in self.table_off.items()
        ] + [np.broadcast_to(off + self.k_idx[i][None, :], (n_q, n_k)) for i, off in self.bias_off.items()]
        bos_cols = [off + self.q_idx[j] for j, off in self.bos_off.items()] + [np.full(n_q, self.bos_const)]
        m_cols = self.m_off + np.arange(n_q)

        sel_q, sel_k = np.nonzero(pattern)
        n_eq = len(sel_q)
        eq_rows = np.concatenate([np.arange(n_eq)] * (len(logit_cols) + 1))
        eq_cols = np.concatenate([c[sel_q, sel_k] for c in logit_cols] + [m_cols[sel_q]])
        eq_vals = np.concatenate([np.ones(n_eq)] * len(logit_cols) + [-np.ones(n_eq)])
        self.eq_meta = list(zip(sel_q.tolist(), sel_k.tolist()))

        has_selected = np.flatnonzero(pattern.any(axis=1))
        if self.width:
            # SelectorWidth heads attend BOS alongside the selected keys: BOS(q) = M(q).
            rows = n_eq + np.arange(len(has_selected))
            eq_rows = np.concatenate([eq_rows] + [rows] * (len(bos_cols) + 1))
            eq_cols = np.concatenate([eq_cols] + [c[has_selected] for c in bos_cols] + [m_cols[has_selected]])
            eq_vals = np.concatenate([eq_vals] + [np.ones(len(rows))] * len(bos_cols) + [-np.ones(len(rows))])
            self.eq_meta += [(q, -1) for q in has_selected.tolist()]
            n_eq += len(rows)
            has_selected = has_selected[:0]

        un_q, un_k = np.nonzero(~pattern)
        n_un = len(un_q)
        n_bb = len(has_selected)
        un_rows = np.arange(n_un)
        bb_rows = n_un + np.arange(n_bb)
        ub_rows = np.concatenate(
            [un_rows] * (len(logit_cols) + len(bos_cols)) + [bb_rows] * (len(bos_cols) + 1)
        )
        ub_cols = np.concatenate(
            [c[un_q, un_k] for c in logit_cols]
            + [c[un_q] for c in bos_cols]
            + [c[has_selected] for c in bos_cols]
            + [m_cols[has_selected]]
        )
        ub_vals = np.concatenate(
            [np.ones(n_un)] * len(logit_cols)
            + [-np.ones(n_un)] * len(bos_cols)
            + [np.ones(n_bb)] * len(bos_cols)
            + [-np.ones(n_bb)]
        )
        self.ub_meta = [("unselected", q, k) for q, k in zip(un_q.tolist(), un_k.tolist())] + [
            ("bos-below-selected", q, -1) for q in has_selected.tolist()
        ]
        self.A_eq = scipy.sparse.csr_matrix((eq_vals, (eq_rows, eq_cols)), shape=(n_eq, self.n_vars))
        self.A_ub = scipy.sparse.csr_matrix((ub_vals, (ub_rows, ub_cols)), shape=(n_un + n_bb, self.n_vars))

    def feasible(self) -> HeadWeights | None:
        """Weights meeting every constraint with margin 1 (free variables: exact decision)."""
        n_eq = self.A_eq.shape[0]
        result = scipy.optimize.linprog(
            np.zeros(self.n_vars),
            A_ub=self.A_ub,
            b_ub=-np.ones(self.A_ub.shape[0]),
            A_eq=self.A_eq if n_eq else None,
            b_eq=np.zeros(n_eq) if n_eq else None,
            bounds=[(None, None)] * self.n_vars,
            method="highs-ds",
        )
        if result.status != 0:
            return None
        return self._weights(result.x[: self.n_vars])

    def _weights(self, x: np.ndarray) -> HeadWeights:
        tables = {
            (j, i): x[off : off + self.q_blocks[j].width * self.k_blocks[i].width].reshape(
                self.q_blocks[j].width, self.k_blocks[i].width
            )
            for (j, i), off in self.table_off.items()
        }
        bias = {i: x[off : off + self.k_blocks[i].width] for i, off in self.bias_off.items()}
        bos = {j: x[off : off + self.q_blocks[j].width] for j, off in self.bos_off.items()}
        return HeadWeights(self.q_blocks, self.k_blocks, tables, bias, bos, float(x[self.bos_const]), 1.0)

    def certificate(self) -> FarkasCertificate | None:
        """z >= 0 on the inequalities and y on the equalities with A_ub^T z + A_eq^T y = 0 and
        sum z = 1: the constraints (all homogeneous but their margin of 1) then sum to 0 <= -1."""
        n_ub, n_eq = self.A_ub.shape[0], self.A_eq.shape[0]
        # Variables [z (n_ub, >= 0), y (n_eq, free)]; A_ub^T z + A_eq^T y = 0; sum z = 1.
        a = scipy.sparse.vstack(
            [
                scipy.sparse.hstack([self.A_ub.T, self.A_eq.T]) if n_eq else self.A_ub.T,
                scipy.sparse.hstack([scipy.sparse.csr_matrix(np.ones((1, n_ub))), scipy.sparse.csr_matrix((1, n_eq))])
                if n_eq
                else scipy.sparse.csr_matrix(np.ones((1, n_ub))),
            ]
        ).tocsr()
        b = np.zeros(a.shape[0])
        b[-1] = 1.0
        cost = np.concatenate([np.ones(n_ub), np.zeros(n_eq)])  # prefer sparse certificates
        bounds = [(0, None)] * n_ub + [(None, None)] * n_eq
        result = scipy.optimize.linprog(cost, A_eq=a, b_eq=b, bounds=bounds, method="highs")
        if result.status != 0:
            return None
        z, y = result.x[:n_ub], result.x[n_ub:]
        return self._rationalise(z, y)

    def _rationalise(self, z: np.ndarray, y: np.ndarray) -> FarkasCertificate:
        ctx = self.ctx
        zr = [Fraction(float(v)).limit_denominator(10**6) if v > 1e-12 else Fraction(0) for v in z]
        yr = [Fraction(float(v)).limit_denominator(10**6) if abs(v) > 1e-12 else Fraction(0) for v in y]
        exact = _combination_is_zero(self.A_ub, self.A_eq, zr, yr)
        inequalities = tuple(
            (kind, ctx.query_tuples[q], ctx.key_tuples[k] if k >= 0 else (), weight)
            for (kind, q, k), weight in zip(self.ub_meta, zr)
            if weight != 0
        )
        equalities = tuple(
            (ctx.query_tuples[q], ctx.key_tuples[k], weight) for (q, k), weight in zip(self.eq_meta, yr) if weight != 0 and k >= 0
        )
        return FarkasCertificate(inequalities, equalities, exact)


def _combination_is_zero(a_ub, a_eq, z: list[Fraction], y: list[Fraction]) -> bool:
    if any(v < 0 for v in z) or sum(z) <= 0:
        return False
    total: dict[int, Fraction] = {}
    for matrix, weights in ((a_ub.tocoo(), z), (a_eq.tocoo(), y)):
        for r, c, v in zip(matrix.row, matrix.col, matrix.data):
            if weights[r]:
                total[c] = total.get(c, Fraction(0)) + weights[r] * Fraction(float(v))
    return all(v == 0 for v in total.values())


# ------------------------------------------------------------------------ verification


def _realises(weights: HeadWeights, a: SelectorAnalysis, tol: float = 1e-6) -> bool:
    ctx = _Context(a.selector, a.key_sops, a.query_sops, a.values, a.key_tuples, a.query_tuples, a.pattern)
    q_idx = ctx.indices(weights.query_blocks, a.query_sops, a.query_tuples)
    k_idx = ctx.indices(weights.key_blocks, a.key_sops, a.key_tuples)
    logits, bos = weights.logits(q_idx, k_idx)
    margin = weights.margin - tol
    for q in range(a.pattern.shape[0]):
        sel = a.pattern[q]
        if sel.any():
            top = logits[q, sel]
            if top.max() - top.min() > tol or top.min() < bos[q] + margin:
                return False
        if (~sel).any() and logits[q, ~sel].max() > bos[q] - margin:
            return False
    return True


def _rectangle_holds(r: Rectangle, a: SelectorAnalysis) -> bool:
    q = a.query_tuples.index(r.query)
    selected = all(a.pattern[q, a.key_tuples.index(k)] for k in r.selected)
    unselected = not a.pattern[q, a.key_tuples.index(r.unselected)]
    coords_from_sources = all(any(k[c] == r.unselected[c] for k in r.selected) for c in range(len(a.key_sops)))
    return selected and unselected and coords_from_sources and len(a.key_sops) > 1


def _certificate_holds(cert: FarkasCertificate, encoding: str, a: SelectorAnalysis) -> bool:
    """Rebuild the constraint rows named in the certificate and sum them exactly."""
    ctx = _Context(a.selector, a.key_sops, a.query_sops, a.values, a.key_tuples, a.query_tuples, a.pattern)
    q_blocks, k_blocks = ctx.blocks(encoding)
    lp = _LinearProgram(ctx, q_blocks, k_blocks)
    total: dict[Any, Fraction] = {}
    q_of = {t: i for i, t in enumerate(a.query_tuples)}
    k_of = {t: i for i, t in enumerate(a.key_tuples)}

    def add(cols: list[int], weight: Fraction) -> None:
        for c in cols:
            total[c] = total.get(c, Fraction(0)) + weight

    for kind, qt, kt, weight in cert.inequalities:
        q = q_of[qt]
        if weight < 0:
            return False
        if kind == "unselected":
            if a.pattern[q, k_of[kt]]:
                return False
            add(lp._logit_cols(q, k_of[kt]), weight)
            add(lp._bos_cols(q), -weight)
        elif kind == "bos-below-selected":
            if not a.pattern[q].any():
                return False
            add(lp._bos_cols(q), weight)
            add([lp.m_off + q], -weight)
        else:
            return False
    for qt, kt, weight in cert.equalities:
        q, k = q_of[qt], k_of[kt]
        if not a.pattern[q, k]:
            return False
        add(lp._logit_cols(q, k), weight)
        add([lp.m_off + q], -weight)
    positive = sum(w for _, _, _, w in cert.inequalities)
    return positive > 0 and all(v == 0 for v in total.values()) if cert.exact else positive > 0 and all(
        abs(float(v)) < 1e-6 for v in total.values()
    )


def induced_matching(pattern: np.ndarray, restarts: int = 8) -> list[tuple[int, int]]:
    """Unselected pairs (q_t, k_t) with every (q_s, k_t), s != t, selected: a greedy search
    (rows with few unselected keys first, then seeded shuffles), keeping the largest."""
    unselected = [(q, k) for q, k in zip(*np.nonzero(~pattern))]
    if not unselected:
        return []
    per_row = (~pattern).sum(axis=1)
    orders = [sorted(unselected, key=lambda p: (per_row[p[0]], p))]
    rng = np.random.default_rng(0)
    for _ in range(restarts):
        orders.append([unselected[i] for i in rng.permutation(len(unselected))])
    best: list[tuple[int, int]] = []
    for order in orders:
        chosen: list[tuple[int, int]] = []
        rows, cols = set(), set()
        for q, k in order:
            if q in rows or k in cols:
                continue
            if all(pattern[q2, k] and pattern[q, k2] for q2, k2 in chosen):
                chosen.append((q, k))
                rows.add(q), cols.add(k)
        if len(chosen) > len(best):
            best = chosen
    return [(int(q), int(k)) for q, k in best]


def _matching_holds(a: SelectorAnalysis) -> bool:
    q_of = {t: i for i, t in enumerate(a.query_tuples)}
    k_of = {t: i for i, t in enumerate(a.key_tuples)}
    pairs = [(q_of[q], k_of[k]) for q, k in a.induced_matching]
    for s, (qs, ks) in enumerate(pairs):
        if a.pattern[qs, ks]:
            return False
        for t, (_, kt) in enumerate(pairs):
            if s != t and not a.pattern[qs, kt]:
                return False
    return a.rank_lower_bound == max(0, len(pairs) - 1)

