"""Pass: compile in two layers the Maps of numerical SOps that one MLP can't compute in float32.

A numerical -> numerical Map is one MLP of clamped steps (rasp_lab/compiler/steps.py),
exact in real arithmetic. But each step's two units grow as L * |x - t| away from its
threshold (L = 2 / gap between neighbouring input values) and cancel only in the sum, so
float32 rounds the output in proportion to the units' sizes, however small the output is:
with many steps, small gaps and large jumps the units reach 1e4 and outputs are off by 1e-3.
`steps.float32_estimate` estimates that error (a working estimate, not a worst case).

A Map whose one-layer estimate exceeds ONE_LAYER_ESTIMATE * max(1, max |output|) is split:

    numerical Map(f, x)  ->  numerical Map(value, categorical Map(f, x) named "<label>_values")

The categorical Map has one direction per output value, and each direction sums only the
steps at the edges of its own intervals; the outer Map reads that one-hot through clamps,
clamp(2 o - 1/2, 0, 1) per value, exact while each direction is within 1/4 of 0 or 1. That
costs one more MLP layer and a direction per output value.

A numerical -> categorical Map that a selector reads is split the same way (the outer Map
then writes a clean one-hot) when its one-hot's estimate exceeds SELECTOR_NOISE. When even
the one-hot's estimate reaches 1/4, no float32 MLP resolves the input's values and the Map
is refused with a CompileError.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from rasp_lab import rasp
from rasp_lab.compiler.steps import clamped_steps, float32_estimate
from rasp_lab.errors import CompileError
from rasp_lab.rasp.rewrite import rebuild, rewrite, topological
from rasp_lab.value_sets import ValueSets

ONE_LAYER_ESTIMATE = 1e-4
"""A one-layer discretiser is kept while its float32 estimate is at most this times
max(1, max |output|) (the relative tolerance rasp_lab.testing checks numerical outputs to),
and at most a quarter of the gap between its closest output values (what a discretiser
reading it tolerates)."""

SELECTOR_NOISE = 1e-5
"""A categorical Map that a selector reads is split when float32 may move its one-hot by
more than this: a head multiplies the noise by its coldness (16-30) in every logit, which
unbalances the selected keys' weights."""

CLAMP_TOLERANCE = 0.25
"""How far a one-hot direction may be from 0 or 1 for the clamped read to stay exact."""


@dataclass(frozen=True)
class SplitPlan:
    """One Map of a numerical SOp compiled as a categorical Map then a clamped read."""

    label: str
    values_label: str
    """The categorical SOp holding the Map's output value as a one-hot."""
    one_layer_estimate: float
    """float32's estimated error in the one-layer MLP's output (the reason for the split;
    for a categorical Map, its one-hot's, the same as float32_estimate)."""
    float32_estimate: float
    """How far float32 is estimated to move a direction of the categorical Map (< 1/4)."""


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
    """Split every discretising Map whose float32 error its readers can't absorb."""
    nodes = topological(program)
    labels = {node.label for node in nodes}
    keyed = {
        sop.label for node in nodes if isinstance(node, rasp.Select) for sop in (node.keys, node.queries)
    }
    splits: dict[str, SplitPlan] = {}

    averaged = _read_by_averaging_heads(nodes)
    clean_length: list[rasp.SOp] = []

    def replace(node: rasp.RASPExpr, children: tuple) -> rasp.RASPExpr | None:
        if isinstance(node, rasp.SelectorWidth) and not rasp.is_numerical(node) and node.label in averaged:
            return _clean_width(node, children, labels)
        if (
            isinstance(node, rasp.Select)
            and rasp.length.label in averaged
            and any(c is rasp.length for c in children[:2])
        ):
            # `length` is a width too, but a primitive (its label can't move to a raw
            # decoder): its Selects read a clamped copy instead.
            if not clean_length:
                clean_length.append(_clean_copy(rasp.length, labels))
            keys, queries = (clean_length[0] if c is rasp.length else c for c in children[:2])
            return rebuild(node, (keys, queries))
        if not (isinstance(node, rasp.Map) and rasp.is_numerical(node.inner)):
            return None
        plan = _split_plan(node, sets, labels, keyed)
        if plan is None:
            return None
        splits[plan.label] = plan
        values = rasp.categorical(rasp.Map(node.f, children[0], simplify=False)).named(plan.values_label)
        annotations = dict(node._annotations)
        annotations["name"] = node.label
        return rasp.annotate(rasp.Map(_Value(), values, simplify=False), **annotations)

    rewritten = rewrite(program, replace)
    return DiscretiserPlans(program=rewritten, splits=splits)


def _read_by_averaging_heads(nodes: list[rasp.RASPExpr]) -> set[str]:
    """Labels of the SOps a numerical Aggregate's or a SelectorWidth's selector reads."""
    out: set[str] = set()
    for node in nodes:
        if isinstance(node, rasp.SelectorWidth) or (
            isinstance(node, rasp.Aggregate) and rasp.is_numerical(node)
        ):
            stack = [node.selector]
            while stack:
                selector = stack.pop()
                if isinstance(selector, rasp.Select):
                    out.update((selector.keys.label, selector.queries.label))
                else:
                    stack.extend(c for c in selector.children if isinstance(c, rasp.Selector))
    return out


def _clean_width(node: rasp.SelectorWidth, children: tuple, labels: set[str]) -> rasp.SOp:
    """A categorical SelectorWidth that a head which averages reads, as its decoder's
    one-hot ("<label>_raw") then a clamped clean-up under the original label: the decoder's
    float32 noise, multiplied by that head's coldness in every logit, would unbalance the
    attended keys' weights; the clean-up writes an exact one-hot."""
    raw_label = f"{node.label}_raw"
    while raw_label in labels:
        raw_label += "_"
    labels.add(raw_label)
    raw = rasp.categorical(rasp.SelectorWidth(children[0])).named(raw_label)
    annotations = dict(node._annotations)
    annotations["name"] = node.label
    return rasp.annotate(rasp.Map(_Value(), raw, simplify=False), **annotations)  # type: ignore[return-value]


def _clean_copy(sop: rasp.SOp, labels: set[str]) -> rasp.SOp:
    """`sop` read back through clamps as "<label>_clean" (an exact one-hot of the same values)."""
    label = f"{sop.label}_clean"
    while label in labels:
        label += "_"
    labels.add(label)
    return rasp.categorical(rasp.Map(_Value(), sop, simplify=False)).named(label)


def _split_plan(node: rasp.Map, sets: ValueSets, labels: set[str], keyed: set[str]) -> SplitPlan | None:
    if not rasp.is_numerical(node) and node.label not in keyed:
        return None  # Maps and decoding absorb a categorical Map's noise; heads would multiply it
    inputs, outputs = sets[node.inner.label], sets[node.label]
    if inputs is None or outputs is None or (rasp.is_numerical(node) and None in outputs):
        return None  # too many values (the blocks pass reports it), or numerical no-value outputs
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
    if rasp.is_numerical(node):
        one_layer = float32_estimate(clamped_steps([(x, {"out": float(g)}) for x, g in points]), xs)
        magnitude = max([1.0] + [abs(float(g)) for _, g in points])
        distinct = sorted({float(g) for _, g in points})
        closest = min((b - a for a, b in zip(distinct, distinct[1:])), default=math.inf)
        if one_layer <= min(ONE_LAYER_ESTIMATE * magnitude, closest / 4):
            return None  # within the check's tolerance, and a Map reading it tells its values apart
    estimate = float32_estimate(clamped_steps([(x, {g: 1.0}) for x, g in points]), xs)
    if not rasp.is_numerical(node):
        one_layer = estimate
        if estimate <= SELECTOR_NOISE:
            return None
    if estimate >= CLAMP_TOLERANCE:
        raise CompileError(
            node.label,
            f"float32 can't compute this Map of {node.inner.label!r} exactly: as one MLP its output may "
            f"be off by {one_layer:.3g}, and even as a one-hot over its {len({g for _, g in points})} "
            f"output values a direction may be off by {estimate:.3g} (>= {CLAMP_TOLERANCE}); "
            f"{len(points)} input values lie too close together for their range",
        )
    values_label = f"{node.label}_values"
    while values_label in labels:
        values_label += "_"
    labels.add(values_label)
    return SplitPlan(node.label, values_label, one_layer, estimate)
