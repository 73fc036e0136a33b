"""A RASP program as a networkx graph keyed by label: the first compiler pass.

Labels are the residual stream's names, so two different expressions may not share one.
Distinct objects with the same label *and* the same structural fingerprint compute the
same thing (e.g. the same Map built twice) and are merged into one node. Two *different*
expressions under one name (normal in Tracr code: a library function that names its
intermediate SOps, called twice) are given distinct labels first, by `distinct_labels`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import networkx as nx

from rasp_lab import rasp
from rasp_lab.rasp.rewrite import rebuild, rewrite, topological


class LabelCollisionError(ValueError):
    """Two different expressions in one program carry the same label."""

    def __init__(self, label: str, first: rasp.RASPExpr, second: rasp.RASPExpr) -> None:
        super().__init__(
            f"label {label!r} names two different expressions in one program: "
            f"{type(first).__name__} and {type(second).__name__} with different structure; "
            f"build the graph of distinct_labels(program), which labels them apart as compile does, "
            f"or give them distinct names with .named(...)"
        )
        self.label = label
        self.exprs = (first, second)


@dataclass(frozen=True)
class ProgramGraph:
    """The program's nodes by label, in dependency order.

    `graph` has an edge child -> parent for every use; `order` lists labels children first.
    """

    output: rasp.RASPExpr
    graph: nx.DiGraph
    nodes: Mapping[str, rasp.RASPExpr]
    order: tuple[str, ...]

    def expr(self, label: str) -> rasp.RASPExpr:
        return self.nodes[label]

    def sops(self) -> tuple[str, ...]:
        return tuple(label for label in self.order if isinstance(self.nodes[label], rasp.SOp))

    def selectors(self) -> tuple[str, ...]:
        return tuple(label for label in self.order if isinstance(self.nodes[label], rasp.Selector))


def distinct_labels(program: rasp.RASPExpr) -> rasp.RASPExpr:
    """`program` with every name that labels two or more different expressions made distinct.

    The rule: each such expression is relabelled `<name>_<id>`, where `<id>` is the first 8
    hex digits of its own structural unique_id (longer if that label is taken). So the
    labels are deterministic (the same program gives the same labels in any process, whatever
    order it was built in), a name given to one expression only stays exactly that name, and
    residual directions read as e.g. `opens_3fa2b1c0:1`. Returns `program` itself when every
    label is already unambiguous."""
    if not isinstance(program, rasp.RASPExpr):
        raise TypeError(f"expected a RASP expression, got {type(program).__name__} {program!r}")
    ids: dict[str, set[str]] = {}
    for expr in topological(program):
        ids.setdefault(expr.label, set()).add(expr.unique_id)
    shared = {label for label, found in ids.items() if len(found) > 1}
    if not shared:
        return program
    taken = set(ids)
    new_labels: dict[tuple[str, str], str] = {}
    for label in sorted(shared):
        for unique_id in sorted(ids[label]):
            width = 8
            while f"{label}_{unique_id[:width]}" in taken and width < len(unique_id):
                width += 4
            new = f"{label}_{unique_id[:width]}"
            taken.add(new)
            new_labels[(label, unique_id)] = new

    def relabel(node: rasp.RASPExpr, children: tuple) -> rasp.RASPExpr | None:
        new = new_labels.get((node.label, node.unique_id))
        if new is None:
            return None
        changed = any(c is not o for c, o in zip(children, node.children))
        return (rebuild(node, children) if changed else node).named(new)

    return rewrite(program, relabel)


def build_graph(program: rasp.RASPExpr, extra: Iterable[rasp.RASPExpr] = ()) -> ProgramGraph:
    """The graph of `program` (plus `extra` expressions to compute alongside it, such as the
    compiler's product SOps). Call `distinct_labels` on a program first if two different
    expressions in it may share a name: here that is a LabelCollisionError."""
    if not isinstance(program, rasp.RASPExpr):
        raise TypeError(f"expected a RASP expression, got {type(program).__name__} {program!r}")
    nodes: dict[str, rasp.RASPExpr] = {}
    order: list[str] = []
    graph = nx.DiGraph()
    seen: set[int] = set()
    exprs = []
    for root in (*extra, program):  # extras first: the program's heads read them
        for expr in topological(root):
            if id(expr) not in seen:
                seen.add(id(expr))
                exprs.append(expr)
    for expr in exprs:
        label = expr.label
        known = nodes.get(label)
        if known is None:
            nodes[label] = expr
            order.append(label)
            graph.add_node(label)
        elif known is not expr and known.unique_id != expr.unique_id:
            raise LabelCollisionError(label, known, expr)
        for child in expr.children:
            graph.add_edge(child.label, label)
    return ProgramGraph(output=program, graph=graph, nodes=nodes, order=tuple(order))
