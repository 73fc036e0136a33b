"""Pass: rewrite selectors that one factored head can't hold into ones it can.

A selector that is a conjunction of groups, each on one (key SOp, query SOp) pair, is a
sum of tables (selector_tables.py). Any other composition is lowered to one `Select` on
product SOps: the tuple of all its key SOps against the tuple of all its query SOps, with
the composition evaluated on the tuples as the predicate. The product SOps are ordinary
SequenceMaps (an MLP building the joint one-hot), so the rest of the compiler needs nothing
new. Rewritten nodes keep their labels, so users find their SOps where they named them.
"""

from __future__ import annotations

from typing import Any

from rasp_lab import rasp
from rasp_lab.compiler.selector_tables import CompileError, conjunct_pairs, truth
from rasp_lab.evaluator import topological
from rasp_lab.fingerprint import fingerprint
from rasp_lab.value_sets import ValueSets


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


class JointPredicate:
    """The composition evaluated on product tuples: `(key tuple, query tuple) -> bool`."""

    def __init__(self, selector: rasp.Selector, keys: tuple[str, ...], queries: tuple[str, ...]) -> None:
        self.selector, self.keys, self.queries = selector, keys, queries

    def __call__(self, key: Any, query: Any) -> bool:
        key_values = dict(zip(self.keys, key if len(self.keys) > 1 else (key,)))
        query_values = dict(zip(self.queries, query if len(self.queries) > 1 else (query,)))
        return truth(self.selector, key_values, query_values)

    def __rasp_fingerprint__(self) -> str:
        return fingerprint((self.selector.unique_id, self.keys, self.queries))

    def __repr__(self) -> str:
        return f"JointPredicate({self.selector.label!r})"


def product_sop(sops: list[rasp.SOp]) -> rasp.SOp:
    """The tuple of `sops` at each position as one categorical SOp (or the SOp itself)."""
    if len(sops) == 1:
        return sops[0]
    labels = [s.label for s in sops]
    product: rasp.SOp = rasp.SequenceMap(_Pair(), sops[0], sops[1]).named(f"product({labels[0]},{labels[1]})")
    for i, sop in enumerate(sops[2:], start=2):
        product = rasp.SequenceMap(_Extend(), product, sop).named(f"product({','.join(labels[: i + 1])})")
    return product


def _sops_of(selector: rasp.Selector, side: str) -> list[rasp.SOp]:
    found: dict[str, rasp.SOp] = {}
    for node in topological(selector):
        if isinstance(node, rasp.Select):
            sop = node.keys if side == "keys" else node.queries
            found.setdefault(sop.label, sop)
        elif isinstance(node, rasp.ConstantSelector):
            found.setdefault(rasp.indices.label, rasp.indices)
    return [found[label] for label in sorted(found)]


def lower_selector(selector: rasp.Selector, sets: ValueSets) -> rasp.Selector:
    """`selector` if a sum of tables holds it, else one Select on product SOps."""
    if all(len(pairs) == 1 for pairs in conjunct_pairs(selector)):
        return selector
    keys, queries = _sops_of(selector, "keys"), _sops_of(selector, "queries")
    maybe_none = [s.label for s in (*keys, *queries) if s.label in sets and None in (sets[s.label] or ())]
    if maybe_none:
        raise CompileError(
            selector.label,
            f"this composition needs a product of {[s.label for s in keys]} x {[s.label for s in queries]}, "
            f"but {maybe_none} can have no value (None), which a product one-hot cannot carry",
        )
    predicate = JointPredicate(selector, tuple(k.label for k in keys), tuple(q.label for q in queries))
    return rasp.Select(product_sop(keys), product_sop(queries), predicate).named(f"{selector.label}_product")


def lower_program(program: rasp.SOp, sets: ValueSets) -> rasp.SOp:
    """`program` with every head-incompatible selector lowered; the same object if none is.
    `sets` are the original program's value sets (to refuse products of None-able SOps)."""
    rebuilt: dict[int, rasp.RASPExpr] = {}
    for node in topological(program):
        children = tuple(rebuilt.get(id(c), c) for c in node.children)
        changed = any(new is not old for new, old in zip(children, node.children))
        if isinstance(node, (rasp.Aggregate, rasp.SelectorWidth)):
            selector = children[0]
            lowered = lower_selector(selector, sets)  # type: ignore[arg-type]
            if lowered is not selector:
                children = (lowered, *children[1:])
                changed = True
        if changed:
            rebuilt[id(node)] = _rebuild(node, children)
    return rebuilt.get(id(program), program)  # type: ignore[return-value]


def _rebuild(node: rasp.RASPExpr, children: tuple) -> rasp.RASPExpr:
    """A copy of `node` on new children, with the same annotations and label."""
    if isinstance(node, rasp.LinearSequenceMap):
        new: rasp.RASPExpr = rasp.LinearSequenceMap(children[0], children[1], node.fst_fac, node.snd_fac)
    elif isinstance(node, rasp.SequenceMap):
        new = rasp.SequenceMap(node.f, children[0], children[1])
    elif isinstance(node, rasp.Map):
        new = rasp.Map(node.f, children[0], simplify=False)
    elif isinstance(node, rasp.Aggregate):
        new = rasp.Aggregate(children[0], children[1], default=node.default)
    elif isinstance(node, rasp.SelectorWidth):
        new = rasp.SelectorWidth(children[0])
    elif isinstance(node, rasp.Select):
        new = rasp.Select(children[0], children[1], node.predicate)
    elif isinstance(node, rasp.SelectorAnd):
        new = rasp.SelectorAnd(children[0], children[1])
    elif isinstance(node, rasp.SelectorOr):
        new = rasp.SelectorOr(children[0], children[1])
    elif isinstance(node, rasp.SelectorNot):
        new = rasp.SelectorNot(children[0])
    else:
        raise CompileError(node.label, f"cannot rebuild {type(node).__name__}")
    annotations = dict(node._annotations)
    annotations["name"] = node.label
    return rasp.annotate(new, **annotations)
