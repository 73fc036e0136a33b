"""Pass: compile in two layers the numerical Maps that one MLP can't compute in float32.

A numerical -> numerical Map is one MLP of clamped steps (rasp_lab/compiler/steps.py),
exact in real arithmetic. But each step's two units grow as L * |x - t| away from its
threshold (L = 2 / gap between neighbouring input values) and cancel only in the sum, so
float32 rounds the output by about F32_UNIT_ROUNDOFF times the MLP's *rounding scale*
S = max over inputs of sum_j |hidden_j * w_out_j|, however small the output is. With many
steps, small gaps and large jumps, S reaches 1e5 and outputs are off by 1e-3.

A Map whose S exceeds ONE_LAYER_SCALE * max(1, max |output|) is split:

    numerical Map(f, x)  ->  numerical Map(value, categorical Map(f, x) named "<label>_values")

The categorical Map has one direction per output value, and each direction sums only the
steps at the edges of its own intervals (a few large units, not all of them); the outer
Map reads that one-hot through clamps, clamp(2 o - 1/2, 0, 1) per value, exact while each
direction is within 1/4 of 0 or 1. That costs one more MLP layer and a direction per output
value. The split is refused with a CompileError when float32 could move a direction of the
categorical Map by 1/4 (FLOAT32_BOUND_FACTOR below).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from rasp_lab import rasp
from rasp_lab.compiler.rewrite import rewrite
from rasp_lab.compiler.selector_tables import CompileError
from rasp_lab.compiler.steps import F32_UNIT_ROUNDOFF, Steps, Unit, clamped_steps, rounding_scale
from rasp_lab.evaluator import topological
from rasp_lab.value_sets import ValueSets

ONE_LAYER_SCALE = 2.0**10
"""A one-layer discretiser is kept while S <= this * max(1, max |output|): float32 then
keeps the output within about 2^-14 (6e-5) of that magnitude."""

CLAMP_TOLERANCE = 0.25
"""How far a one-hot direction may be from 0 or 1 for the clamped read to stay exact."""


@dataclass(frozen=True)
class SplitPlan:
    """One numerical Map compiled as a categorical Map then a clamped read."""

    label: str
    values_label: str
    """The categorical SOp holding the Map's output value as a one-hot."""
    one_layer_scale: float
    """The one-layer MLP's rounding scale S (the reason for the split)."""
    float32_bound: float
    """Bound on how far float32 moves any direction of the categorical Map (< 1/4)."""


@dataclass(frozen=True)
class DiscretiserPlans:
    program: rasp.SOp
    """The program to compile (split Maps rewritten; every original label kept)."""
    splits: Mapping[str, SplitPlan]
    """Label of each split Map (now the clamped read) -> its plan."""


class _Value:
    """v -> v: the outer Map of a split, reading the output value back from its one-hot."""

    def __call__(self, v: Any) -> Any:
        return v

    def __rasp_fingerprint__(self) -> str:
        return "read-value"


def plan_discretisers(program: rasp.SOp, sets: ValueSets) -> DiscretiserPlans:
    """Split every numerical -> numerical Map whose one-layer rounding scale is too large."""
    labels = {node.label for node in topological(program)}
    splits: dict[str, SplitPlan] = {}

    def replace(node: rasp.RASPExpr, children: tuple) -> rasp.RASPExpr | None:
        if not (isinstance(node, rasp.Map) and rasp.is_numerical(node) and rasp.is_numerical(node.inner)):
            return None
        plan = _split_plan(node, sets, labels)
        if plan is None:
            return None
        splits[plan.label] = plan
        values = rasp.categorical(rasp.Map(node.f, children[0], simplify=False)).named(plan.values_label)
        annotations = dict(node._annotations)
        annotations["name"] = node.label
        return rasp.annotate(rasp.Map(_Value(), values, simplify=False), **annotations)

    rewritten = rewrite(program, replace)
    return DiscretiserPlans(program=rewritten, splits=splits)


def _split_plan(node: rasp.Map, sets: ValueSets, labels: set[str]) -> SplitPlan | None:
    inputs, outputs = sets[node.inner.label], sets[node.label]
    if inputs is None or outputs is None or None in outputs:
        return None  # too many values (the blocks pass reports it), or no-value outputs
    points = []
    for x in inputs:
        if x is None:
            continue
        try:
            g = node.f(x)
        except Exception:
            continue
        if g is not None:
            points.append((float(x), g))
    if len(points) < 2:
        return None
    xs = [x for x, _ in points]
    one_layer = rounding_scale(clamped_steps([(x, {"out": float(g)}) for x, g in points]), xs)
    magnitude = max([1.0] + [abs(float(g)) for _, g in points])
    if one_layer <= ONE_LAYER_SCALE * magnitude:
        return None
    one_hot = clamped_steps([(x, {g: 1.0}) for x, g in points])
    bound = float32_bound(one_hot, xs)
    if bound >= CLAMP_TOLERANCE:
        raise CompileError(
            node.label,
            f"float32 can't compute this numerical Map exactly: one MLP's rounding scale is {one_layer:.3g} "
            f"and even as a one-hot over its {len(set(g for _, g in points))} output values a direction "
            f"may be off by {bound:.3g} (>= {CLAMP_TOLERANCE}); the input {node.inner.label!r} has "
            f"{len(points)} values too close together for its range",
        )
    values_label = f"{node.label}_values"
    while values_label in labels:
        values_label += "_"
    labels.add(values_label)
    return SplitPlan(node.label, values_label, one_layer, bound)


def float32_bound(steps: Steps, xs: list[float]) -> float:
    """Bound on float32's error in any output of the steps' MLP. A sum of k terms in any
    order is off by at most (k - 1) u times the sum of their sizes (u = F32_UNIT_ROUNDOFF);
    each term itself by at most 3 u of its size (the pre-activation's product and sum, then
    the product with w_out): (k + 2) u S_out per output, S_out its own rounding scale."""
    worst = 0.0
    for key in {k for u in steps.units for k in u.out}:
        units = tuple(Unit(u.slope, u.bias, {key: u.out[key]}) for u in steps.units if key in u.out)
        worst = max(worst, (len(units) + 2) * F32_UNIT_ROUNDOFF * rounding_scale(Steps(units, steps.tolerance), xs))
    return worst
