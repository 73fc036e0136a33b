"""Clamped steps: how one MLP turns a numerical value into a step function of it.

Shared by the discretising MLPs (rasp_lab.compiler.blocks) and by the pass that decides
where one such MLP is too wide for float32 (rasp_lab.compiler.discretiser_plans).

For reachable values v_0 < ... < v_k with outputs g(v_i) the MLP computes
g(v_0) + sum_i delta_i * step_i(x), with one step per threshold t_i = (v_{i-1} + v_i) / 2
where the output changes by delta_i. step_i(x) = clamp(L (x - t_i) + 1/2, 0, 1) =
ReLU(a) - ReLU(a - 1), a = L (x - t_i) + 1/2, with sharpness L the power of two at or
above 2 / (v_i - v_{i-1}): exact while x is within (v_i - v_{i-1}) / 4 of a reachable
value. A power of two makes the product L x exact in float32, so the certificate
bounds each pre-activation's rounding by its own size, not by |L x| + |bias|.

Far from its threshold both units of a step are of size L * |x - t_i|; only their
difference (0 or 1) reaches the output. Each step therefore faces the nearer end of the
value range: built from below (units large above t_i) when t_i is in the upper half, and
from above otherwise (step = 1 - clamp(L (t_i - x) + 1/2, 0, 1), units large below t_i),
which halves the largest unit and the number of large units at any x.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

F32_UNIT_ROUNDOFF = 2.0**-24
"""float32 rounds a result r to within |r| times this."""


@dataclass(frozen=True)
class Unit:
    """One hidden unit: ReLU(slope * x + bias * ONE), written to `out` with these weights."""

    slope: float
    bias: float
    out: Mapping[Hashable, float]


@dataclass(frozen=True)
class Steps:
    units: tuple[Unit, ...]
    """The constant unit (slope 0, bias 1) first, then two units per step."""
    tolerance: float
    """Largest error on x for which the output is still exact (inf: no step)."""


def clamped_steps(points: Sequence[tuple[float, Mapping[Hashable, float]]]) -> Steps:
    """Units computing out(x) = entry(v) for x near each reachable (v, entry) of `points`."""
    points = sorted(points, key=lambda p: p[0])
    lowest, highest = points[0][0], points[-1][0]
    constant = dict(points[0][1])
    pairs: list[Unit] = []
    tolerance = float("inf")
    for (x0, before), (x1, after) in zip(points, points[1:]):
        if before is after:
            continue  # one shared entry: the output does not change here
        delta = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in {**before, **after}}
        delta = {k: v for k, v in delta.items() if v != 0}
        if not delta:
            continue  # same output on both sides: no step, and no precision needed here
        gap = x1 - x0
        sharpness = _power_of_two_at_least(2.0 / gap)
        threshold = (x0 + x1) / 2
        if highest - threshold <= threshold - lowest:
            slope, bias = sharpness, _dyadic(-sharpness * threshold)
        else:  # from above: delta * step = delta - delta * clamp(L (t - x) + 1/2)
            for k, v in delta.items():
                constant[k] = constant.get(k, 0.0) + v
            delta = {k: -v for k, v in delta.items()}
            slope, bias = -sharpness, _dyadic(sharpness * threshold)
        # The dyadic bias moves the threshold by at most 1/512 of the gap.
        tolerance = min(tolerance, gap / 4 - abs(bias + slope * threshold) / sharpness)
        pairs.append(Unit(slope, bias + 0.5, delta))
        pairs.append(Unit(slope, bias - 0.5, {k: -v for k, v in delta.items()}))
    constant = {k: v for k, v in constant.items() if v != 0}
    return Steps((Unit(0.0, 1.0, constant), *pairs), tolerance)


def _dyadic(bias: float) -> float:
    """`bias` rounded to a power-of-two grid (at most 1/256, at least float32's spacing at
    its size) on which bias + 1/2 and bias - 1/2 are float32 numbers exactly: a step's two
    units then differ by exactly 1 wherever the input is exact."""
    size = abs(bias) + 0.5
    grid = 2.0 ** min(-1, max(-8, math.ceil(math.log2(size)) - 23))
    return round(bias / grid) * grid


def _power_of_two_at_least(x: float) -> float:
    """The power of two at or above x: float32 multiplies by it exactly (from 1 up, always),
    so a step's pre-activation rounds once, relative to its own size near the threshold."""
    return 2.0 ** math.ceil(math.log2(x))


def rounding_scale(steps: Steps, xs: Sequence[float]) -> float:
    """max over x in `xs` and over outputs of sum_j |unit_j(x) * out_j|.

    float32 rounds the output by up to about F32_UNIT_ROUNDOFF times this, times a factor
    that depends on the number of units and on the order the matmul sums them in, however
    small the output itself is: the units' large values cancel only in exact arithmetic.
    """
    keys = sorted({k for u in steps.units for k in u.out}, key=repr)
    if not keys or not len(xs):
        return 0.0
    column = {k: i for i, k in enumerate(keys)}
    slope = np.array([u.slope for u in steps.units])  # [units]
    bias = np.array([u.bias for u in steps.units])  # [units]
    out = np.zeros((len(steps.units), len(keys)))  # [units, outputs]
    for j, u in enumerate(steps.units):
        for k, v in u.out.items():
            out[j, column[k]] = abs(v)
    hidden = np.maximum(
        np.asarray(xs, dtype=float)[:, None] * slope[None, :] + bias[None, :], 0.0
    )  # [xs, units]
    return float((hidden @ out).max())


def float32_estimate(steps: Steps, xs: Sequence[float]) -> float:
    """float32's likely largest error in any output of the steps' MLP.

    Each output sums the k terms hidden_j * w_out_j of its units. Rounding errors in a sum
    grow like sqrt(k) unit roundoffs of the terms' total size (treating them as independent,
    the usual working estimate; the worst case, k - 1, is far from what is seen), and each
    term carries about 2 of its own (the pre-activation, the product):
    (sqrt(k) + 2) u S_out per output, S_out its rounding scale. On the programs in
    tests/test_discretiser_plans.py the measured errors are 80-320 times smaller, so
    decisions taken on it err on the safe side.
    """
    worst = 0.0
    for key in {k for u in steps.units for k in u.out}:
        units = tuple(Unit(u.slope, u.bias, {key: u.out[key]}) for u in steps.units if key in u.out)
        size = rounding_scale(Steps(units, steps.tolerance), xs)
        worst = max(worst, (math.sqrt(len(units)) + 2) * F32_UNIT_ROUNDOFF * size)
    return worst
