"""MLP blocks, one builder per kind of SOp: lookups for categorical Maps and SequenceMaps,
clamped reads of noisy one-hots, exact linear MLPs, and discretisers for numerical Maps and
SelectorWidth. Each is a function of the BuildContext returning a NodeBlock (or an MLPBlock).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from rasp_lab import rasp
from rasp_lab.artifact import MLPBlock
from rasp_lab.compiler.basis import ONE, Direction, matrix
from rasp_lab.compiler.block_context import BuildContext, NeedsPrecision, NodeBlock
from rasp_lab.compiler.discretiser_plans import CLAMP_TOLERANCE
from rasp_lab.compiler.steps import clamped_steps, float32_estimate
from rasp_lab.errors import CompileError


def finish_mlp(
    ctx: BuildContext,
    label: str,
    kind: str,
    inputs: list[Direction],
    outputs: tuple[Direction, ...],
    w_in_entries: list[dict[Direction, float]],
    w_out_entries: list[dict[Direction, float]],
    tolerance: float,
) -> MLPBlock:
    """An MLP from named entries. Every input it reads is 0 at BOS (ONE included), so no
    unit fires there and the SOp it writes stays empty at BOS."""
    inputs_t = tuple(dict.fromkeys([ONE, *inputs]))
    hidden = len(w_in_entries)
    units = [Direction(f"{label}_hidden", j) for j in range(hidden)]
    w_in = matrix(
        inputs_t, units, {(d, units[j]): v for j, col in enumerate(w_in_entries) for d, v in col.items()}
    )
    w_out = matrix(
        units, outputs, {(units[j], d): v for j, row in enumerate(w_out_entries) for d, v in row.items()}
    )
    return MLPBlock(label, kind, inputs_t, outputs, w_in, w_out, tolerance)


def output_entry(
    ctx: BuildContext, outputs: tuple[Direction, ...], encoding: rasp.Encoding, value: Any
) -> dict[Direction, float]:
    """The output directions for one function value; {} for None, and for a value outside
    the output's (sound) value set, which only unreachable input combinations produce."""
    if value is None:
        return {}
    if encoding is rasp.Encoding.NUMERICAL:
        return {outputs[0]: float(value)} if value != 0 else {}
    direction = Direction(outputs[0].name, value)
    return {direction: 1.0} if direction in direction_set(ctx, outputs) else {}


def direction_set(ctx: BuildContext, outputs: tuple[Direction, ...]) -> frozenset[Direction]:
    """`outputs` as a set, built once per tuple: a lookup per table entry, not a scan."""
    known = ctx.direction_sets.get(id(outputs))
    if known is None or known[0] is not outputs:
        known = (outputs, frozenset(outputs))
        ctx.direction_sets[id(outputs)] = known
    return known[1]


def categorical_map(ctx: BuildContext, label: str, expr: rasp.Map, encoding: rasp.Encoding) -> NodeBlock:
    inner = ctx.node(expr.inner.label)
    outputs = ctx.directions(label, encoding)
    w_in, w_out = [], []
    for direction in inner.directions:
        try:
            out = expr.f(direction.value)
        except Exception:
            continue  # the value is not reachable through this Map (validate reports it)
        entry = output_entry(ctx, outputs, encoding, out)
        if entry:
            # A noisy one-hot is read as ReLU(2 x - 1): 1 where the value is on; where it
            # is off the unit sits at -1, so the noise never reaches the other outputs (a
            # unit at 0 would pass it on). An exact one-hot needs no bias: ReLU(x).
            w_in.append({direction: 1.0} if inner.label in ctx.exact else {direction: 2.0, ONE: -1.0})
            w_out.append(entry)
    # A lookup table from the input's one-hot: "categorical_map" when it writes a one-hot,
    # "numerical_lookup" when it writes one number (a numerical Map of a categorical SOp).
    kind = "categorical_map" if encoding is rasp.Encoding.CATEGORICAL else "numerical_lookup"
    mlp = finish_mlp(ctx, label, kind, list(inner.directions), outputs, w_in, w_out, tolerance=0.25)
    if inner.label in ctx.exact:
        ctx.exact.add(label)
    error = 2 * inner.error * max([1.0] + [abs(v) for row in w_out for v in row.values()])
    return NodeBlock(label, encoding, outputs, None, mlp, (inner.label,), error)


def largest_output(ctx: BuildContext, expr: rasp.Map) -> float:
    """max(1, largest |f(v)|) over the inner SOp's values (1 for a categorical Map)."""
    if not rasp.is_numerical(expr):
        return 1.0
    largest = 1.0
    for direction in ctx.node(expr.inner.label).directions:
        try:
            out = expr.f(direction.value)
        except Exception:
            continue
        if isinstance(out, (int, float)):
            largest = max(largest, abs(float(out)))
    return largest


def clamped_read(ctx: BuildContext, label: str, expr: rasp.Map, encoding: rasp.Encoding) -> NodeBlock:
    """A Map of a categorical SOp whose one-hot is not clean (a split Map's, see
    discretiser_plans, or a numerical Map of any with error above NOISY_ONE_HOT): the
    output entry of f(v) times clamp(2 o_v - 1/2, 0, 1), summed over values v; exact
    while every o_v is within 1/4 of 0 or 1."""
    inner = ctx.node(expr.inner.label)
    if inner.error >= CLAMP_TOLERANCE:
        raise NeedsPrecision(label, inner.error, CLAMP_TOLERANCE)
    outputs = ctx.directions(label, encoding)
    w_in: list[dict[Direction, float]] = []
    w_out: list[dict[Direction, float]] = []
    for direction in inner.directions:
        try:
            entry = output_entry(ctx, outputs, encoding, expr.f(direction.value))
        except Exception:
            continue  # the value is not reachable through this Map (validate reports it)
        if entry:
            w_in += [{direction: 2.0, ONE: -0.5}, {direction: 2.0, ONE: -1.5}]
            w_out += [entry, {d: -v for d, v in entry.items()}]
    kind = "numerical_read" if encoding is rasp.Encoding.NUMERICAL else "clean_one_hot"
    mlp = finish_mlp(ctx, label, kind, list(inner.directions), outputs, w_in, w_out, CLAMP_TOLERANCE)
    return NodeBlock(label, encoding, outputs, None, mlp, (inner.label,), 0.0)


def sequence_map(ctx: BuildContext, label: str, expr: rasp.SequenceMap, encoding: rasp.Encoding) -> NodeBlock:
    fst, snd = ctx.node(expr.fst.label), ctx.node(expr.snd.label)
    outputs = ctx.directions(label, encoding)
    w_in, w_out = [], []
    if fst.label == snd.label:
        pairs = [((d,), (d.value, d.value)) for d in fst.directions]
    else:
        pairs = [((a, b), (a.value, b.value)) for a in fst.directions for b in snd.directions]
    # Clean (two clamping units per pair, exact while each input is within 1/8 of 0 or 1)
    # where a head that averages reads this SOp and its inputs carry error: such a head
    # multiplies a one-hot's error by its coldness in every logit.
    clean = (
        label in ctx.averaging_reads
        and (fst.error > 0 or snd.error > 0)
        and encoding is rasp.Encoding.CATEGORICAL
    )
    for dirs, args in pairs:
        try:
            out = expr.f(*args)
        except Exception:
            continue
        entry = output_entry(ctx, outputs, encoding, out)
        if not entry:
            continue
        # 2 * (sum of the one-hots) is 2k when all k are on, at most 2k - 2 otherwise.
        top = 2.0 * len(dirs)
        if clean:
            w_in += [
                {**{d: 2.0 for d in dirs}, ONE: 1.5 - top},
                {**{d: 2.0 for d in dirs}, ONE: 0.5 - top},
            ]
            w_out += [entry, {d: -v for d, v in entry.items()}]
        elif not {fst.label, snd.label} <= ctx.exact:
            # ReLU(2 x_a + 2 x_b - 3): 1 when both one-hots are on, -1 or less otherwise,
            # so noise never reaches the outputs of pairs that are off.
            w_in.append({**{d: 2.0 for d in dirs}, ONE: 1.0 - top})
            w_out.append(entry)
        else:  # exact one-hots: ReLU(x_a + x_b - 1), exactly 0 unless both are on
            w_in.append(
                {**{d: 1.0 for d in dirs}, ONE: 1.0 - len(dirs)} if len(dirs) == 2 else {dirs[0]: 1.0}
            )
            w_out.append(entry)
    if not clean and {fst.label, snd.label} <= ctx.exact:
        ctx.exact.add(label)
    kind = "clean_sequence_map" if clean else "sequence_map"
    tolerance = 1 / 8 if clean else 0.25
    mlp = finish_mlp(
        ctx, label, kind, [*fst.directions, *snd.directions], outputs, w_in, w_out, tolerance=tolerance
    )
    if clean and max(fst.error, snd.error) >= tolerance:
        raise NeedsPrecision(label, max(fst.error, snd.error), tolerance)
    scale = max([1.0] + [abs(v) for row in w_out for v in row.values()])
    error = (
        0.0 if clean else 2 * (fst.error + snd.error) * scale
    )  # each active unit doubles its inputs' error
    return NodeBlock(label, encoding, outputs, None, mlp, tuple(dict.fromkeys([fst.label, snd.label])), error)


def linear(ctx: BuildContext, label: str, expr: rasp.LinearSequenceMap) -> NodeBlock:
    fst, snd = ctx.node(expr.fst.label), ctx.node(expr.snd.label)
    out = Direction(label)
    coefficients: dict[Direction, float] = {}
    for node, factor in ((fst, expr.fst_fac), (snd, expr.snd_fac)):
        coefficients[node.directions[0]] = coefficients.get(node.directions[0], 0.0) + float(factor)
    w_in, w_out = [], []
    for direction, factor in coefficients.items():
        w_in += [{direction: 1.0}, {direction: -1.0}]
        w_out += [{out: factor}, {out: -factor}]
    mlp = finish_mlp(ctx, label, "linear", list(coefficients), (out,), w_in, w_out, tolerance=math.inf)
    error = abs(expr.fst_fac) * fst.error + abs(expr.snd_fac) * snd.error
    return NodeBlock(
        label,
        rasp.Encoding.NUMERICAL,
        (out,),
        None,
        mlp,
        tuple(dict.fromkeys([fst.label, snd.label])),
        error,
    )


def discretiser(
    ctx: BuildContext,
    label: str,
    kind: str,
    source: Direction,
    points: list[tuple[float, Any]],
    outputs: tuple[Direction, ...],
    encoding: rasp.Encoding,
) -> MLPBlock:
    """out(x) = g(v) for x within tolerance of each reachable input value v: clamped
    steps between neighbours whose outputs differ (rasp_lab/compiler/steps.py)."""
    entries: dict[tuple[type, Any], dict[Direction, float]] = {}  # one per output value, shared

    def entry(g: Any) -> dict[Direction, float]:
        key = (type(g), g)
        if key not in entries:
            entries[key] = output_entry(ctx, outputs, encoding, g)
        return entries[key]

    steps = clamped_steps([(x, entry(g)) for x, g in points])
    w_in = [{source: u.slope, ONE: u.bias} if u.slope else {ONE: u.bias} for u in steps.units]
    w_out = [dict(u.out) for u in steps.units]
    mlp = finish_mlp(ctx, label, kind, [source], outputs, w_in, w_out, steps.tolerance)
    return dataclasses.replace(mlp, rounding=float32_estimate(steps, [x for x, _ in points]))


def numerical_map(ctx: BuildContext, label: str, expr: rasp.Map, encoding: rasp.Encoding) -> NodeBlock:
    inner = ctx.node(expr.inner.label)
    points = []
    for x in ctx.values(inner.label):
        try:
            points.append((float(x), expr.f(x)))
        except Exception:
            continue
    outputs = ctx.directions(label, encoding)
    if not points:
        raise CompileError(label, f"the Map raises on every value of {inner.label!r}")
    mlp = discretiser(ctx, label, "numerical_map", inner.directions[0], points, outputs, encoding)
    if inner.error > mlp.tolerance:
        raise NeedsPrecision(label, inner.error, mlp.tolerance)
    if encoding is rasp.Encoding.CATEGORICAL and mlp.rounding >= CLAMP_TOLERANCE:
        raise CompileError(
            label,
            f"float32 can't compute this Map of {inner.label!r}: its one-hot may be off by "
            f"{mlp.rounding:.3g} (>= {CLAMP_TOLERANCE}); {len(points)} input values lie too close "
            "together for their range",
        )
    return NodeBlock(label, encoding, outputs, None, mlp, (inner.label,), mlp.rounding)
