"""Pass: choose how every Aggregate's and SelectorWidth's selector becomes one head.

For each selector the composition analysis (rasp_lab.selectors) says which encodings fit
one head. The candidates, and what each costs beyond the head itself (residual dimensions
+ MLP hidden units, the documented cost):

- `factored`: the SOps' own one-hot blocks; costs 0.
- `product_keys` / `product_queries` / `product_both`: one joint one-hot over all of that
  side's SOps, built by product SOps (SequenceMaps whose MLP has one unit per tuple);
  costs the product SOps' value counts plus their hidden units.
- `multi_head` (SelectorWidth only, when the negated selector is a conjunction):
  `width(S) = length - width(~S)`, two factored heads, their decoders and a subtraction.

`auto` takes the cheapest candidate that fits (ties: the order above); a user may force a
strategy for every selector or per selector label. Heads are then built from the
analysis' weights; product SOps join the program as extra SOps to compute.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from rasp_lab import rasp
from rasp_lab.errors import CompileError
from rasp_lab.rasp.rewrite import rebuild, rewrite, topological
from rasp_lab.selectors import (
    ENCODINGS,
    HeadWeights,
    SelectorAnalysis,
    analyze,
    clean_everywhere,
    conjunction_weights,
    involved_sops,
    negate,
    shallow_equivalent,
)
from rasp_lab.selectors import is_conjunction as _is_conjunction
from rasp_lab.selectors.tables import selector_tables
from rasp_lab.value_sets import ValueSets, value_sets
from rasp_lab.values import sort_values

STRATEGIES = ("auto", *ENCODINGS, "multi_head")


@dataclass(frozen=True)
class HeadPlan:
    """The head for one Aggregate or SelectorWidth (`consumer`)."""

    consumer: str
    selector: str
    strategy: str
    weights: HeadWeights
    query_sops: tuple[str, ...]
    """The SOp holding each query block of `weights` (a product SOp for a joint block)."""
    key_sops: tuple[str, ...]
    costs: Mapping[str, int | None]
    """Every strategy's cost for this consumer (None: does not fit)."""


@dataclass(frozen=True)
class SelectorPlans:
    program: rasp.SOp
    """The program to compile (rewritten where multi_head was chosen; same labels)."""
    extra: tuple[rasp.SOp, ...]
    """Product SOps the heads read, to be computed alongside the program."""
    heads: Mapping[str, HeadPlan]
    value_sets: ValueSets | None = None
    """The value sets of `program` the plans were made with (without the products)."""


class _Pair:
    """(a, b) -> (a, b): starts a product tuple."""

    def __call__(self, a: Any, b: Any) -> tuple:
        return (a, b)

    def __rasp_fingerprint__(self) -> str:
        return "product-pair"


class _Extend:
    """(t, c) -> (*t, c): extends a product tuple by one SOp."""

    def __call__(self, t: tuple, c: Any) -> tuple:
        return (*t, c)

    def __rasp_fingerprint__(self) -> str:
        return "product-extend"


class _Round:
    """x -> round(x) as an int: a numerical count back to a categorical value."""

    def __call__(self, x: float) -> int:
        return int(round(x))

    def __rasp_fingerprint__(self) -> str:
        return "round-to-int"


def product_sop(sops: list[rasp.SOp]) -> rasp.SOp:
    """The tuple of `sops` (in order) at each position as one categorical SOp."""
    labels = [s.label for s in sops]
    product: rasp.SOp = rasp.SequenceMap(_Pair(), sops[0], sops[1]).named(f"product({labels[0]},{labels[1]})")
    for i, sop in enumerate(sops[2:], start=2):
        product = rasp.SequenceMap(_Extend(), product, sop).named(f"product({','.join(labels[: i + 1])})")
    return product


def plan_selectors(
    program: rasp.SOp, sets: ValueSets, strategy: str | Mapping[str, str] = "auto", *, causal: bool = False
) -> SelectorPlans:
    """Plan a head for every Aggregate and SelectorWidth of `program`."""
    _check_strategy(strategy)
    program = rewrite(program, _shallow_selectors)
    program = _rewrite_multi_head(program, sets, strategy, causal)
    if program is not sets.graph.output:
        sets = value_sets(program, sets.vocab, sets.max_seq_len, reuse=sets)
    products: dict[str, rasp.SOp] = {}
    heads: dict[str, HeadPlan] = {}
    for node in topological(program):
        if isinstance(node, (rasp.Aggregate, rasp.SelectorWidth)):
            heads[node.label] = _plan_head(
                node, sets, _forced(strategy, node.selector.label), products, causal
            )
    return SelectorPlans(program=program, extra=tuple(products.values()), heads=heads, value_sets=sets)


def _shallow_selectors(node: rasp.RASPExpr, children: tuple) -> rasp.RASPExpr | None:
    """A head over a selector nested deeper than the planners walk (a 2,000-atom `&` chain)
    reads the same selection rebalanced (rasp_lab.selectors.shallow_equivalent)."""
    if not isinstance(node, (rasp.Aggregate, rasp.SelectorWidth)):
        return None
    shallow = shallow_equivalent(children[0])
    if shallow is children[0]:
        return None
    return rebuild(node, (shallow, *children[1:]))


def _check_strategy(strategy: str | Mapping[str, str]) -> None:
    chosen = [strategy] if isinstance(strategy, str) else list(strategy.values())
    bad = [s for s in chosen if s not in STRATEGIES]
    if bad:
        raise ValueError(f"unknown selector strategy {bad}; choose from {list(STRATEGIES)}")


def _forced(strategy: str | Mapping[str, str], label: str) -> str:
    return strategy if isinstance(strategy, str) else strategy.get(label, "auto")


class _Verdicts:
    """One selector's program verdict (the pairs some input realises), with the free verdict
    (every combination of values) as the fallback: weights that fit only the program are used
    where they are also clean on every combination of their blocks' values, which is what the
    model's certificate checks (rasp_lab.selectors.clean_everywhere)."""

    def __init__(self, selector: rasp.Selector, sets: ValueSets, causal: bool) -> None:
        self.selector, self.sets = selector, sets
        self.given = {label: sets[label] for label in _involved(selector)}
        self.program = analyze(
            selector,
            value_sets=self.given,
            vocab=sets.vocab,
            max_seq_len=sets.max_seq_len,
            domain="program",
            causal=causal,
        )
        self._free: SelectorAnalysis | None = None

    @property
    def free(self) -> SelectorAnalysis:
        if self._free is None:
            self._free = analyze(self.selector, value_sets=self.given)
        return self._free

    def weights(self, encoding: str, *, width: bool) -> HeadWeights | None:
        if not self.program.fits[encoding].fits:
            return None
        weights = self.program.head_weights(encoding, width=width)
        if weights is not None and clean_everywhere(weights):
            return weights
        if self.free.fits[encoding].fits:
            return self.free.head_weights(encoding, width=width)
        return None

    def reason(self, encoding: str) -> str:
        fit = self.program.fits[encoding]
        if not fit.decided:
            return f"undecided: the LP stopped after {self.program.time_limit:g} s"
        if not fit.fits:
            return str(fit.witness)
        return "no weights for this head that are clean on every combination of its blocks' values"


def _involved(selector: rasp.Selector) -> set[str]:
    return set(involved_sops(selector))


def _values(label: str, sets: ValueSets) -> frozenset:
    if label == rasp.indices.label and label not in sets:
        return frozenset(range(sets.max_seq_len))
    values = sets[label]
    if values is None:
        raise CompileError(label, "takes too many values for a selector to read")
    return values


def _product_cost(sops: list[str], sets: ValueSets) -> int:
    """Residual dims + hidden units of the nested product SOps over `sops`."""
    if len(sops) < 2:
        return 0
    cost, size = 0, len([v for v in _values(sops[0], sets) if v is not None])
    for label in sops[1:]:
        size *= len([v for v in _values(label, sets) if v is not None])
        cost += 2 * size
    return cost


def _multi_head_cost(sets: ValueSets) -> int:
    """length and width(~S) heads' decoders and scratch, the subtraction, and its decoder."""
    n = sets.max_seq_len
    return 2 * (2 + 2 * n + 1) + (1 + 4) + 4 * n


def _rewrite_multi_head(
    program: rasp.SOp, sets: ValueSets, strategy: str | Mapping[str, str], causal: bool
) -> rasp.SOp:
    """Replace SelectorWidth(S) by length - SelectorWidth(~S) where that is chosen."""

    def replace(node: rasp.RASPExpr, children: tuple) -> rasp.RASPExpr | None:
        if isinstance(node, rasp.SelectorWidth) and _wants_multi_head(
            node, sets, _forced(strategy, node.selector.label), causal
        ):
            return _width_by_complement(node, children[0])
        return None

    return rewrite(program, replace)


def _wants_multi_head(node: rasp.SelectorWidth, sets: ValueSets, forced: str, causal: bool) -> bool:
    complement = negate(node.selector)
    possible = _is_conjunction(complement) and not _none_values(node.selector, sets)
    if forced == "multi_head":
        if not possible:
            raise CompileError(
                node.selector.label,
                "strategy 'multi_head' needs the negated selector to be a conjunction of selectors "
                "on one (key, query) pair each, over SOps that always have a value",
            )
        return True
    if forced != "auto" or not possible or _is_conjunction(node.selector):
        return False
    verdicts = _Verdicts(node.selector, sets, causal)
    cheapest = min(
        (c for c in _encoding_costs(verdicts, sets, width=True).values() if c is not None), default=None
    )
    return cheapest is None or _multi_head_cost(sets) < cheapest


def _none_values(selector: rasp.Selector, sets: ValueSets) -> list[str]:
    return [label for label in sorted(_involved(selector)) if None in _values(label, sets)]


def _width_by_complement(node: rasp.SelectorWidth, selector: rasp.Selector) -> rasp.SOp:
    # Every key, counted as a width, so that a causal model counts the keys it can see.
    everything = rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.TRUE)
    n = rasp.numerical(rasp.SelectorWidth(everything))
    others = rasp.numerical(rasp.SelectorWidth(negate(selector)))
    diff = rasp.numerical(rasp.LinearSequenceMap(n, others, 1, -1))
    if rasp.is_numerical(node):
        out: rasp.SOp = diff
    else:
        out = rasp.Map(_Round(), diff)
    annotations = dict(node._annotations)
    annotations["name"] = node.label
    return rasp.annotate(out, **annotations)  # type: ignore[return-value]


def _encoding_costs(verdicts: _Verdicts, sets: ValueSets, *, width: bool) -> dict[str, int | None]:
    costs: dict[str, int | None] = {}
    analysis = verdicts.program
    for encoding in ENCODINGS:
        if verdicts.weights(encoding, width=width) is None:
            costs[encoding] = None
            continue
        cost = 0
        if encoding in ("product_keys", "product_both"):
            cost += _product_cost(list(analysis.key_sops), sets)
        if encoding in ("product_queries", "product_both"):
            cost += _product_cost(list(analysis.query_sops), sets)
        costs[encoding] = cost
    return costs


def _plan_head(
    node: rasp.Aggregate | rasp.SelectorWidth,
    sets: ValueSets,
    forced: str,
    products: dict[str, rasp.SOp],
    causal: bool,
) -> HeadPlan:
    selector = node.selector
    width = isinstance(node, rasp.SelectorWidth)
    if _is_conjunction(selector) and forced in ("auto", "factored", "multi_head"):
        # The common case needs neither the product grid nor an LP.
        values = {
            label: tuple(sort_values(v for v in _values(label, sets) if v is not None))
            for label in _involved(selector)
        }
        nullable = frozenset(label for label in values if None in _values(label, sets))
        weights = conjunction_weights(selector, values, width=width, nullable=nullable)
        return HeadPlan(
            consumer=node.label,
            selector=selector.label,
            strategy="factored",
            weights=weights,
            query_sops=tuple(b.sops[0] for b in weights.query_blocks),
            key_sops=tuple(b.sops[0] for b in weights.key_blocks),
            costs={"factored": 0},
        )
    none_sops = _none_values(selector, sets)
    if none_sops and not _is_conjunction(selector):
        # None is an all-zero block: only plain tables keep "an atom never selects None".
        raise CompileError(
            selector.label,
            f"this composition reads {none_sops}, which can have no value (None); only conjunctions "
            f"of selectors on one (key, query) pair each compile over None-able SOps",
        )
    verdicts = _Verdicts(selector, sets, causal)
    costs = _encoding_costs(verdicts, sets, width=width)
    if none_sops:
        costs = {e: (c if e == "factored" else None) for e, c in costs.items()}
    if forced == "multi_head":
        forced = "auto"  # the rewrite already happened (SelectorWidth only); plan its heads
    if forced != "auto":
        if costs.get(forced) is None:
            raise CompileError(
                selector.label, f"strategy {forced!r} does not fit one head: {verdicts.reason(forced)}"
            )
        encoding = forced
    else:
        fitting = [(c, ENCODINGS.index(e), e) for e, c in costs.items() if c is not None]
        encoding = min(fitting)[2]
    if none_sops:
        _check_none(selector, sets)
    weights = verdicts.weights(encoding, width=width)
    if weights is None:  # ruled out above through costs
        raise CompileError(selector.label, f"no {encoding} weights")
    sides = []
    for blocks in (weights.query_blocks, weights.key_blocks):
        labels = []
        for block in blocks:
            if len(block.sops) == 1:
                labels.append(block.sops[0])
            else:
                graph_sops = involved_sops(selector)
                product = product_sop([graph_sops[label] for label in block.sops])
                products.setdefault(product.label, product)
                labels.append(product.label)
        sides.append(tuple(labels))
    return HeadPlan(
        consumer=node.label,
        selector=selector.label,
        strategy=encoding,
        weights=weights,
        query_sops=sides[0],
        key_sops=sides[1],
        costs={
            **costs,
            "multi_head": _multi_head_cost(sets) if width and _is_conjunction(negate(selector)) else None,
        },
    )


def _check_none(selector: rasp.Selector, sets: ValueSets) -> None:
    """A conjunction over None-able SOps: the None row of a group must select nothing."""
    selector_tables(selector, sets)
