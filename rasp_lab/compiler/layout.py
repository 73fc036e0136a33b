"""Pass: the residual stream's directions, in order, and where every SOp lives in it.

Order: `one`, the BOS direction, tokens, indices, then every SOp in dependency order, then
scratch directions (SelectorWidth attention outputs). Each SOp's directions are contiguous.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rasp_lab.artifact import ONE, Direction, ResidualLayout, SOpLocation

if TYPE_CHECKING:
    from rasp_lab.compiler.blocks import BlockPlan
    from rasp_lab.compiler.layers import LayerAllocation

__all__ = ["residual_layout", "ResidualLayout", "SOpLocation"]


def residual_layout(plan: BlockPlan, layers: LayerAllocation) -> ResidualLayout:
    ordered: list[Direction] = [ONE, plan.bos_direction]
    seen = set(ordered)
    spans: dict[str, tuple[int, int]] = {}
    for label, node in plan.nodes.items():
        start = len(ordered)
        fresh = [d for d in node.directions if d not in seen]
        ordered += fresh
        seen.update(fresh)
        spans[label] = (start, len(ordered))
    ordered += list(plan.scratch)
    index = {d: i for i, d in enumerate(ordered)}
    if len(index) != len(ordered):
        raise ValueError("duplicate residual directions")  # a compiler bug, never user input
    sops = {
        label: SOpLocation(
            label=label,
            encoding=node.encoding,
            head_layer=layers.placements[label].head_layer,
            mlp_layer=layers.placements[label].mlp_layer,
            directions=node.directions,
            start=spans[label][0],
            stop=spans[label][1],
        )
        for label, node in plan.nodes.items()
    }
    return ResidualLayout(directions=tuple(ordered), index=index, sops=sops)
