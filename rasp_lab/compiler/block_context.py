"""The blocks pass's shared pieces: what a block is (NodeBlock, Embedding, BlockPlan), the
constants every block keeps, and the context head and MLP builders read (BuildContext).

Head builders (head_blocks.py) and MLP builders (mlp_blocks.py) are plain functions of a
BuildContext; blocks.py dispatches each SOp to one of them, in the program's order.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from rasp_lab import rasp
from rasp_lab.artifact import HeadBlock, MLPBlock, ValueInfo
from rasp_lab.compiler.basis import Direction, categorical_directions
from rasp_lab.compiler.discretiser_plans import DiscretiserPlans
from rasp_lab.compiler.selector_plans import SelectorPlans
from rasp_lab.errors import CompileError
from rasp_lab.graph import ProgramGraph
from rasp_lab.value_sets import ValueSets
from rasp_lab.values import sort_values

BOS_DIRECTION_NAME = "tokens"

BOS_QUERY_MARGIN = 8.0
"""How many margins BOS beats every other key by at the BOS query. There the weight left
for other keys is exp(-8 ln(n / leak)), below float32's smallest number, so it rounds to
exactly 0: every head writes exactly 0 at BOS, every MLP reads exact zeros there and stays
silent, and nothing at BOS carries error into the heads that read it as their default."""


NOISY_ONE_HOT = 1e-7
"""A numerical Map reads a categorical SOp through clamps (exact) rather than linearly when
the SOp's error estimate times the Map's largest |value| exceeds this: a linear read passes
the error on times the values, and an output of 0 must stay within 1e-4 even when other
outputs are 1e4. (The estimate is the compiler's; the certificate's sound bound is up to a
few hundred times larger, hence the margin below 1e-4.)"""


@dataclass(frozen=True)
class NodeBlock:
    """How one SOp is computed: from the embedding, by a head, an MLP, or a head then an MLP."""

    label: str
    encoding: rasp.Encoding
    directions: tuple[Direction, ...]
    head: HeadBlock | None
    mlp: MLPBlock | None
    reads: tuple[str, ...]
    """Labels of the SOps whose directions the blocks read."""
    error: float
    """Bound on how far any of `directions` is from its exact value (0 for exact)."""


@dataclass(frozen=True)
class Embedding:
    """What each token and each position writes into the residual stream."""

    tokens: tuple[Any, ...]
    """Token ids in order: vocab (sorted), then BOS, then PAD."""
    bos: Any
    pad: Any
    token_rows: tuple[dict[Direction, float], ...]
    position_rows: tuple[dict[Direction, float], ...]
    """Position 0 is BOS; position p >= 1 holds input index p - 1."""


@dataclass(frozen=True)
class BlockPlan:
    """The output of the blocks pass."""

    nodes: Mapping[str, NodeBlock]
    embedding: Embedding
    output: str
    bos_direction: Direction
    scratch: tuple[Direction, ...] = field(default=())
    """Directions that hold no SOp (SelectorWidth's attention output)."""
    value_info: Mapping[str, ValueInfo] = field(default_factory=dict)
    """Every SOp's values, as the certificate reads them (rasp_lab/certificate.py)."""


class NeedsPrecision(Exception):
    """A block's tolerance is below its input's error bound: compile with a smaller leak."""

    def __init__(self, label: str, error: float, tolerance: float) -> None:
        super().__init__(f"{label}: input error {error:.3g} exceeds tolerance {tolerance:.3g}")
        self.label, self.error, self.tolerance = label, error, tolerance


@dataclass(frozen=True)
class BuildContext:
    """What every block builder reads: the value sets (and through them the program's graph)
    and plans, the leak and BOS/PAD tokens; and, filled in as the pass goes, the blocks built
    so far (`nodes`), the scratch directions, and which SOps are exact one-hots (`exact`)."""

    sets: ValueSets
    plans: SelectorPlans
    discretisers: DiscretiserPlans
    bos: Any
    pad: Any
    leak: float
    causal: bool
    nodes: dict[str, NodeBlock] = field(default_factory=dict)
    scratch: list[Direction] = field(default_factory=list)
    exact: set[str] = field(default_factory=lambda: {"tokens", "indices"})
    """SOps whose one-hots are exactly 0 or 1 in float32 (embedded, or looked up from
    such): their lookups need no margin below 0 for noise."""
    direction_sets: dict[int, tuple[tuple[Direction, ...], frozenset[Direction]]] = field(
        default_factory=dict
    )

    @property
    def graph(self) -> ProgramGraph:
        return self.sets.graph

    @functools.cached_property
    def averaging_reads(self) -> frozenset[str]:
        return _averaging_reads(self.graph, self.plans)

    @property
    def n(self) -> int:
        return self.sets.max_seq_len

    @property
    def n_pos(self) -> int:
        """Positions a model runs on: max_seq_len plus BOS."""
        return self.sets.max_seq_len + 1

    @functools.cached_property
    def bos_dir(self) -> Direction:
        return Direction(BOS_DIRECTION_NAME, self.bos, internal=True)

    def values(self, label: str) -> list[Any]:
        values = self.sets[label]
        if values is None:
            raise CompileError(label, "takes too many values to compile")
        return sort_values(v for v in values if v is not None)

    def directions(self, label: str, encoding: rasp.Encoding) -> tuple[Direction, ...]:
        if encoding is rasp.Encoding.NUMERICAL:
            return (Direction(label),)
        return categorical_directions(label, self.values(label))

    def numeric_range(self, label: str) -> tuple[float, float]:
        """Bounds on a numerical SOp's values, also where its value set is too large to list:
        a mean stays within its input's range (and 0, BOS's value); a linear map is an
        interval sum."""
        values = self.sets[label]
        if values is not None:
            numbers = [float(v) for v in values if v is not None]
            return (min(numbers), max(numbers)) if numbers else (0.0, 0.0)
        expr = self.graph.nodes[label]
        if isinstance(expr, rasp.Aggregate):
            low, high = self.numeric_range(expr.sop.label)
            default = float(expr.default or 0)
            return min(low, 0.0, default), max(high, 0.0, default)
        if isinstance(expr, rasp.LinearSequenceMap):
            ends = []
            for child, factor in ((expr.fst, expr.fst_fac), (expr.snd, expr.snd_fac)):
                low, high = self.numeric_range(child.label)
                ends.append(sorted((factor * low, factor * high)))
            return ends[0][0] + ends[1][0], ends[0][1] + ends[1][1]
        raise CompileError(label, "takes too many values to compile")

    def node(self, label: str) -> NodeBlock:
        return self.nodes[label]

    def coldness(self, margin: float, leak: float) -> tuple[float, float]:
        """Coldness so that n_pos * exp(-coldness * margin) <= leak; returns it and the bound."""
        coldness = math.nextafter(math.log(self.n_pos / leak) / margin, math.inf) * (1 + 1e-12)
        return coldness, self.n_pos * math.exp(-coldness * margin)


def _averaging_reads(graph: ProgramGraph, plans: SelectorPlans) -> frozenset[str]:
    """SOps read by the query or key side of a head that averages (a numerical Aggregate or
    a SelectorWidth): their error moves the attended keys' weights apart."""
    out: set[str] = set()
    for consumer, plan in plans.heads.items():
        expr = graph.nodes.get(consumer)
        if isinstance(expr, rasp.SelectorWidth) or (
            isinstance(expr, rasp.Aggregate) and rasp.is_numerical(expr)
        ):
            out.update(plan.query_sops, plan.key_sops)
    return frozenset(out)
