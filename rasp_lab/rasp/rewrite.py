"""Rewriting a program: a copy with some nodes replaced, every other label kept.

Planning passes (selector_plans, discretiser_plans) change how a node is computed by
replacing it with an equivalent expression under the same label, and rasp_lab.graph gives
two different expressions of one name distinct labels; every node above a replaced one is
rebuilt on the new children.
"""

from __future__ import annotations

from collections.abc import Callable

from rasp_lab.rasp import expr as rasp


def topological(expr: rasp.RASPExpr) -> list[rasp.RASPExpr]:
    """Every distinct node under `expr` (by identity), children before parents."""
    order: list[rasp.RASPExpr] = []
    done: set[int] = set()
    stack: list[tuple[rasp.RASPExpr, bool]] = [(expr, False)]
    while stack:
        node, expanded = stack.pop()
        if id(node) in done:
            continue
        if expanded:
            done.add(id(node))
            order.append(node)
            continue
        stack.append((node, True))
        for child in reversed(node.children):
            if id(child) not in done:
                stack.append((child, False))
    return order


def rewrite(program: rasp.SOp, replace: Callable[[rasp.RASPExpr, tuple], rasp.RASPExpr | None]) -> rasp.SOp:
    """`program` with each node for which `replace(node, new_children)` returns an
    expression replaced by it (children first); `program` itself when nothing changes."""
    rebuilt: dict[int, rasp.RASPExpr] = {}
    for node in topological(program):
        children = tuple(rebuilt.get(id(c), c) for c in node.children)
        new = replace(node, children)
        if new is None and any(c is not o for c, o in zip(children, node.children)):
            new = rebuild(node, children)
        if new is not None:
            rebuilt[id(node)] = new
    return rebuilt.get(id(program), program)  # type: ignore[return-value]


def rebuild(node: rasp.RASPExpr, children: tuple) -> rasp.RASPExpr:
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
        raise TypeError(f"{node.label}: cannot rebuild a {type(node).__name__} on new children")
    annotations = dict(node._annotations)
    annotations["name"] = node.label
    return rasp.annotate(new, **annotations)
