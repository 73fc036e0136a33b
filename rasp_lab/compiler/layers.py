"""Pass: place every block in a layer, as early as its inputs allow.

A layer is an attention sublayer then an MLP sublayer; sublayer 2l is layer l's attention,
2l + 1 its MLP. Each block goes to the first sublayer of its kind after everything it reads
is ready (longest-path scheduling), so the model has as few layers as the dependency graph
allows, and independent blocks share a layer side by side.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rasp_lab.compiler.blocks import BlockPlan

EMBEDDED = -1
"""The 'sublayer' of SOps written by the embeddings."""


@dataclass(frozen=True)
class Placement:
    """Where one SOp is computed: its head's and MLP's layer (None if it has none)."""

    label: str
    head_layer: int | None
    mlp_layer: int | None
    ready: int
    """The sublayer after which the SOp's directions hold its value (EMBEDDED for inputs)."""


@dataclass(frozen=True)
class LayerAllocation:
    placements: Mapping[str, Placement]
    num_layers: int

    def heads(self, layer: int) -> list[str]:
        return [p.label for p in self.placements.values() if p.head_layer == layer]

    def mlps(self, layer: int) -> list[str]:
        return [p.label for p in self.placements.values() if p.mlp_layer == layer]


def _first_at_or_after(sublayer: int, parity: int) -> int:
    return sublayer if sublayer % 2 == parity else sublayer + 1


def allocate_layers(plan: BlockPlan) -> LayerAllocation:
    placements: dict[str, Placement] = {}
    last = EMBEDDED
    for label, node in plan.nodes.items():
        inputs_ready = max([EMBEDDED] + [placements[r].ready for r in node.reads])
        head_sub = mlp_sub = None
        ready = EMBEDDED
        if node.head is not None:
            head_sub = ready = _first_at_or_after(inputs_ready + 1, 0)
        if node.mlp is not None:
            mlp_sub = ready = (
                head_sub + 1 if head_sub is not None else _first_at_or_after(inputs_ready + 1, 1)
            )
        placements[label] = Placement(
            label,
            head_layer=None if head_sub is None else head_sub // 2,
            mlp_layer=None if mlp_sub is None else mlp_sub // 2,
            ready=ready,
        )
        last = max(last, ready)
    return LayerAllocation(placements=placements, num_layers=max(1, last // 2 + 1))
