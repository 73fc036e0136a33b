"""A RASP program as a networkx graph keyed by label: the first compiler pass.

Labels are the residual stream's names, so two different expressions may not share one.
Distinct objects with the same label *and* the same structural fingerprint compute the
same thing (e.g. the same Map built twice) and are merged into one node.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import networkx as nx

from rasp_lab import rasp
from rasp_lab.evaluator import topological


class LabelCollisionError(ValueError):
    """Two different expressions in one program carry the same label."""

    def __init__(self, label: str, first: rasp.RASPExpr, second: rasp.RASPExpr) -> None:
        super().__init__(
            f"label {label!r} names two different expressions in one program: "
            f"{type(first).__name__} and {type(second).__name__} with different structure; "
            f"give them distinct names with .named(...)"
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


def build_graph(program: rasp.RASPExpr, extra: Iterable[rasp.RASPExpr] = ()) -> ProgramGraph:
    """The graph of `program` (plus `extra` expressions to compute alongside it, such as the
    compiler's product SOps); raises LabelCollisionError for ambiguous labels."""
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
