"""Pass: every SOp of the program -> the block that computes it, in named directions.

- categorical Map / SequenceMap -> lookup MLP (one hidden unit per input value or pair);
- numerical Map -> discretising MLP with per-threshold sharpness from the value set (a Map
  split by discretiser_plans: a one-hot discretiser, then a clamped read of its value);
- numerical LinearSequenceMap -> exact linear MLP (ReLU(x) - ReLU(-x));
- Aggregate -> Boolean head from the selector's plan: selected keys share the top logit,
  BOS one unit below, unselected keys at least one unit below BOS;
- SelectorWidth and `length` -> head that always attends BOS too, then a decoding MLP.

Conventions every block keeps: at the BOS position every SOp direction is 0 (hidden units
are silenced there and the BOS query attends only to BOS), so BOS is a neutral default:
a head that selects nothing reads 0 (numerical) or the empty one-hot, i.e. None.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rasp_lab import rasp
from rasp_lab.artifact import HeadBlock, MLPBlock, ValueInfo
from rasp_lab.compiler.basis import ONE, Direction, categorical_directions, matrix
from rasp_lab.compiler.discretiser_plans import CLAMP_TOLERANCE, DiscretiserPlans
from rasp_lab.compiler.selector_plans import HeadPlan, SelectorPlans
from rasp_lab.compiler.steps import clamped_steps, float32_estimate
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


def build_blocks(
    graph: ProgramGraph,
    sets: ValueSets,
    plans: SelectorPlans,
    discretisers: DiscretiserPlans,
    *,
    bos: Any,
    pad: Any,
    leak: float,
    causal: bool = False,
) -> BlockPlan:
    """Blocks for every SOp of `graph`; heads follow `plans`; `leak` bounds each head's
    misplaced attention; the Maps `discretisers` split read their one-hot through clamps."""
    return _Builder(graph, sets, plans, discretisers, bos=bos, pad=pad, leak=leak, causal=causal).run()


class _Builder:
    def __init__(
        self,
        graph: ProgramGraph,
        sets: ValueSets,
        plans: SelectorPlans,
        discretisers: DiscretiserPlans,
        *,
        bos: Any,
        pad: Any,
        leak: float,
        causal: bool,
    ) -> None:
        self.graph, self.sets, self.plans, self.discretisers = graph, sets, plans, discretisers
        self.causal = causal
        self.n = sets.max_seq_len
        self.n_pos = sets.max_seq_len + 1
        self.leak = leak
        self.bos, self.pad = bos, pad
        self.bos_dir = Direction(BOS_DIRECTION_NAME, bos, internal=True)
        self.nodes: dict[str, NodeBlock] = {}
        self.scratch: list[Direction] = []
        self.averaging_reads = _averaging_reads(graph, plans)
        self.exact: set[str] = {"tokens", "indices"}
        """SOps whose one-hots are exactly 0 or 1 in float32 (embedded, or looked up from
        such): their lookups need no margin below 0 for noise."""
        self._sets: dict[int, tuple[tuple[Direction, ...], frozenset[Direction]]] = {}

    # ------------------------------------------------------------------ helpers

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

    # ------------------------------------------------------------------ the pass

    def run(self) -> BlockPlan:
        self._embedding_nodes()
        for label in self.graph.order:
            expr = self.graph.nodes[label]
            if isinstance(expr, rasp.SOp) and label not in self.nodes:
                self.nodes[label] = self._build(label, expr)
        return BlockPlan(
            nodes=self.nodes,
            embedding=self._embedding(),
            output=self.graph.output.label,
            bos_direction=self.bos_dir,
            scratch=tuple(self.scratch),
            value_info={label: self._value_info(label, node) for label, node in self.nodes.items()},
        )

    def _value_info(self, label: str, node: NodeBlock) -> ValueInfo:
        values = self.sets.sets.get(label)
        nullable = values is not None and None in values
        if node.encoding is not rasp.Encoding.NUMERICAL:
            return ValueInfo(nullable=nullable)
        low, high = self.numeric_range(label)
        listed = None if values is None else tuple(sorted(float(v) for v in values if v is not None))
        return ValueInfo(nullable=nullable, values=listed, low=low, high=high)

    def _embedding_nodes(self) -> None:
        vocab = self.sets.vocab
        if self.bos in vocab or self.pad in vocab or self.bos == self.pad:
            raise CompileError(
                "tokens",
                f"BOS {self.bos!r} and PAD {self.pad!r} must be distinct and not in the vocab {sort_values(vocab)}",
            )
        self.nodes["tokens"] = NodeBlock(
            "tokens", rasp.Encoding.CATEGORICAL, categorical_directions("tokens", vocab), None, None, (), 0.0
        )
        self.nodes["indices"] = NodeBlock(
            "indices",
            rasp.Encoding.CATEGORICAL,
            categorical_directions("indices", range(self.n)),
            None,
            None,
            (),
            0.0,
        )

    def _embedding(self) -> Embedding:
        vocab = sort_values(self.sets.vocab)
        fulls = [
            self.graph.nodes[lbl] for lbl in self.graph.order if isinstance(self.graph.nodes[lbl], rasp.Full)
        ]
        consts = [
            self.graph.nodes[lbl]
            for lbl in self.graph.order
            if isinstance(self.graph.nodes[lbl], rasp.ConstantSOp)
        ]
        token_rows: list[dict[Direction, float]] = []
        for token in vocab:
            row = {ONE: 1.0, Direction("tokens", token): 1.0}
            for full in fulls:
                row.update(self._constant_entry(full, full.fill))
            token_rows.append(row)
        token_rows.append({self.bos_dir: 1.0})  # not ONE: no bias reaches the BOS position
        token_rows.append({})  # PAD writes nothing; heads mask it as a key
        position_rows: list[dict[Direction, float]] = [{}]
        for index in range(self.n):
            row = {Direction("indices", index): 1.0}
            for const in consts:
                if index < len(const.value):
                    row.update(self._constant_entry(const, const.value[index]))
            position_rows.append(row)
        return Embedding(
            tokens=(*vocab, self.bos, self.pad),
            bos=self.bos,
            pad=self.pad,
            token_rows=tuple(token_rows),
            position_rows=tuple(position_rows),
        )

    def _constant_entry(self, expr: rasp.SOp, value: Any) -> dict[Direction, float]:
        if value is None:
            return {}
        if rasp.is_numerical(expr):
            return {Direction(expr.label): float(value)}
        return {Direction(expr.label, value): 1.0}

    def _build(self, label: str, expr: rasp.SOp) -> NodeBlock:
        encoding = rasp.get_encoding(expr)
        if isinstance(expr, (rasp.Full, rasp.ConstantSOp)):
            self.exact.add(label)
            return NodeBlock(label, encoding, self.directions(label, encoding), None, None, (), 0.0)
        if (
            isinstance(expr, rasp.LinearSequenceMap)
            and rasp.is_numerical(expr)
            and rasp.is_numerical(expr.fst)
        ):
            return self._linear(label, expr)
        if isinstance(expr, rasp.SequenceMap):
            return self._sequence_map(label, expr, encoding)
        if isinstance(expr, rasp.Map):
            if rasp.is_numerical(expr.inner):
                return self._numerical_map(label, expr, encoding)
            noisy = self.node(expr.inner.label).error * self._largest_output(expr) > NOISY_ONE_HOT
            clean = label in self.averaging_reads and self.node(expr.inner.label).error > 0
            if label in self.discretisers.splits or clean or (encoding is rasp.Encoding.NUMERICAL and noisy):
                return self._clamped_read(label, expr, encoding)
            return self._categorical_map(label, expr, encoding)
        if isinstance(expr, rasp.Aggregate):
            return self._aggregate(label, expr, encoding)
        if isinstance(expr, rasp.SelectorWidth):
            return self._width(label, expr.selector, encoding)
        if isinstance(expr, rasp.LengthType):
            if self.causal:
                raise CompileError(
                    label,
                    "`length` counts every position, which a causal model can't see; use "
                    "SelectorWidth(Select(tokens, tokens, TRUE)), which counts the visible ones",
                )
            return self._width(label, None, encoding)
        raise CompileError(label, f"no block for {type(expr).__name__}")

    # ------------------------------------------------------------------ MLPs

    def _finish_mlp(
        self,
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

    def _output_entry(
        self, outputs: tuple[Direction, ...], encoding: rasp.Encoding, value: Any
    ) -> dict[Direction, float]:
        """The output directions for one function value; {} for None, and for a value outside
        the output's (sound) value set, which only unreachable input combinations produce."""
        if value is None:
            return {}
        if encoding is rasp.Encoding.NUMERICAL:
            return {outputs[0]: float(value)} if value != 0 else {}
        direction = Direction(outputs[0].name, value)
        return {direction: 1.0} if direction in self._direction_set(outputs) else {}

    def _direction_set(self, outputs: tuple[Direction, ...]) -> frozenset[Direction]:
        """`outputs` as a set, built once per tuple: a lookup per table entry, not a scan."""
        known = self._sets.get(id(outputs))
        if known is None or known[0] is not outputs:
            known = (outputs, frozenset(outputs))
            self._sets[id(outputs)] = known
        return known[1]

    def _categorical_map(self, label: str, expr: rasp.Map, encoding: rasp.Encoding) -> NodeBlock:
        inner = self.node(expr.inner.label)
        outputs = self.directions(label, encoding)
        w_in, w_out = [], []
        for direction in inner.directions:
            try:
                out = expr.f(direction.value)
            except Exception:
                continue  # the value is not reachable through this Map (validate reports it)
            entry = self._output_entry(outputs, encoding, out)
            if entry:
                # A noisy one-hot is read as ReLU(2 x - 1): 1 where the value is on; where it
                # is off the unit sits at -1, so the noise never reaches the other outputs (a
                # unit at 0 would pass it on). An exact one-hot needs no bias: ReLU(x).
                w_in.append({direction: 1.0} if inner.label in self.exact else {direction: 2.0, ONE: -1.0})
                w_out.append(entry)
        mlp = self._finish_mlp(
            label, "categorical_map", list(inner.directions), outputs, w_in, w_out, tolerance=0.25
        )
        if inner.label in self.exact:
            self.exact.add(label)
        error = 2 * inner.error * max([1.0] + [abs(v) for row in w_out for v in row.values()])
        return NodeBlock(label, encoding, outputs, None, mlp, (inner.label,), error)

    def _largest_output(self, expr: rasp.Map) -> float:
        """max(1, largest |f(v)|) over the inner SOp's values (1 for a categorical Map)."""
        if not rasp.is_numerical(expr):
            return 1.0
        largest = 1.0
        for direction in self.node(expr.inner.label).directions:
            try:
                out = expr.f(direction.value)
            except Exception:
                continue
            if isinstance(out, (int, float)):
                largest = max(largest, abs(float(out)))
        return largest

    def _clamped_read(self, label: str, expr: rasp.Map, encoding: rasp.Encoding) -> NodeBlock:
        """A Map of a categorical SOp whose one-hot is not clean (a split Map's, see
        discretiser_plans, or a numerical Map of any with error above NOISY_ONE_HOT): the
        output entry of f(v) times clamp(2 o_v - 1/2, 0, 1), summed over values v; exact
        while every o_v is within 1/4 of 0 or 1."""
        inner = self.node(expr.inner.label)
        if inner.error >= CLAMP_TOLERANCE:
            raise NeedsPrecision(label, inner.error, CLAMP_TOLERANCE)
        outputs = self.directions(label, encoding)
        w_in: list[dict[Direction, float]] = []
        w_out: list[dict[Direction, float]] = []
        for direction in inner.directions:
            try:
                entry = self._output_entry(outputs, encoding, expr.f(direction.value))
            except Exception:
                continue  # the value is not reachable through this Map (validate reports it)
            if entry:
                w_in += [{direction: 2.0, ONE: -0.5}, {direction: 2.0, ONE: -1.5}]
                w_out += [entry, {d: -v for d, v in entry.items()}]
        kind = "numerical_read" if encoding is rasp.Encoding.NUMERICAL else "clean_one_hot"
        mlp = self._finish_mlp(label, kind, list(inner.directions), outputs, w_in, w_out, CLAMP_TOLERANCE)
        return NodeBlock(label, encoding, outputs, None, mlp, (inner.label,), 0.0)

    def _sequence_map(self, label: str, expr: rasp.SequenceMap, encoding: rasp.Encoding) -> NodeBlock:
        fst, snd = self.node(expr.fst.label), self.node(expr.snd.label)
        outputs = self.directions(label, encoding)
        w_in, w_out = [], []
        if fst.label == snd.label:
            pairs = [((d,), (d.value, d.value)) for d in fst.directions]
        else:
            pairs = [((a, b), (a.value, b.value)) for a in fst.directions for b in snd.directions]
        # Clean (two clamping units per pair, exact while each input is within 1/8 of 0 or 1)
        # where a head that averages reads this SOp and its inputs carry error: such a head
        # multiplies a one-hot's error by its coldness in every logit.
        clean = (
            label in self.averaging_reads
            and (fst.error > 0 or snd.error > 0)
            and encoding is rasp.Encoding.CATEGORICAL
        )
        for dirs, args in pairs:
            try:
                out = expr.f(*args)
            except Exception:
                continue
            entry = self._output_entry(outputs, encoding, out)
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
            elif not {fst.label, snd.label} <= self.exact:
                # ReLU(2 x_a + 2 x_b - 3): 1 when both one-hots are on, -1 or less otherwise,
                # so noise never reaches the outputs of pairs that are off.
                w_in.append({**{d: 2.0 for d in dirs}, ONE: 1.0 - top})
                w_out.append(entry)
            else:  # exact one-hots: ReLU(x_a + x_b - 1), exactly 0 unless both are on
                w_in.append(
                    {**{d: 1.0 for d in dirs}, ONE: 1.0 - len(dirs)} if len(dirs) == 2 else {dirs[0]: 1.0}
                )
                w_out.append(entry)
        if not clean and {fst.label, snd.label} <= self.exact:
            self.exact.add(label)
        kind = "clean_sequence_map" if clean else "sequence_map"
        tolerance = 1 / 8 if clean else 0.25
        mlp = self._finish_mlp(
            label, kind, [*fst.directions, *snd.directions], outputs, w_in, w_out, tolerance=tolerance
        )
        if clean and max(fst.error, snd.error) >= tolerance:
            raise NeedsPrecision(label, max(fst.error, snd.error), tolerance)
        scale = max([1.0] + [abs(v) for row in w_out for v in row.values()])
        error = (
            0.0 if clean else 2 * (fst.error + snd.error) * scale
        )  # each active unit doubles its inputs' error
        return NodeBlock(
            label, encoding, outputs, None, mlp, tuple(dict.fromkeys([fst.label, snd.label])), error
        )

    def _linear(self, label: str, expr: rasp.LinearSequenceMap) -> NodeBlock:
        fst, snd = self.node(expr.fst.label), self.node(expr.snd.label)
        out = Direction(label)
        coefficients: dict[Direction, float] = {}
        for node, factor in ((fst, expr.fst_fac), (snd, expr.snd_fac)):
            coefficients[node.directions[0]] = coefficients.get(node.directions[0], 0.0) + float(factor)
        w_in, w_out = [], []
        for direction, factor in coefficients.items():
            w_in += [{direction: 1.0}, {direction: -1.0}]
            w_out += [{out: factor}, {out: -factor}]
        mlp = self._finish_mlp(label, "linear", list(coefficients), (out,), w_in, w_out, tolerance=math.inf)
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

    def _discretiser(
        self,
        label: str,
        kind: str,
        source: Direction,
        points: list[tuple[float, Any]],
        outputs: tuple[Direction, ...],
        encoding: rasp.Encoding,
    ) -> MLPBlock:
        """out(x) = g(v) for x within tolerance of each reachable input value v: clamped
        steps between neighbours whose outputs differ (rasp_lab/compiler/steps.py)."""
        steps = clamped_steps([(x, self._output_entry(outputs, encoding, g)) for x, g in points])
        w_in = [{source: u.slope, ONE: u.bias} if u.slope else {ONE: u.bias} for u in steps.units]
        w_out = [dict(u.out) for u in steps.units]
        mlp = self._finish_mlp(label, kind, [source], outputs, w_in, w_out, steps.tolerance)
        return dataclasses.replace(mlp, rounding=float32_estimate(steps, [x for x, _ in points]))

    def _numerical_map(self, label: str, expr: rasp.Map, encoding: rasp.Encoding) -> NodeBlock:
        inner = self.node(expr.inner.label)
        points = []
        for x in self.values(inner.label):
            try:
                points.append((float(x), expr.f(x)))
            except Exception:
                continue
        outputs = self.directions(label, encoding)
        if not points:
            raise CompileError(label, f"the Map raises on every value of {inner.label!r}")
        mlp = self._discretiser(label, "numerical_map", inner.directions[0], points, outputs, encoding)
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

    # ------------------------------------------------------------------ heads

    def _plan_qk(self, plan: HeadPlan) -> tuple[list[Direction], list[Direction], np.ndarray, list[str]]:
        """QK (table units) from the plan's weights, on the SOps' named directions: (query
        directions, key directions, [len(query), len(key)] array, SOps read); both sides
        start with ONE and BOS.

        Each block value is a feature of the residual: a value's own direction; for None
        ("no value"), `one` minus the SOp's one-hot, which is 1 exactly where the SOp has no
        value and 0 at BOS. Tuples of a product block that never occur have no direction
        and are skipped. The BOS query reads only BOS: its logit there beats every key's
        bias by at least 1. Tables are scattered as arrays: a 3,000-token table is one
        numpy operation, not nine million dictionary updates.
        """
        w = plan.weights

        def features(label: str, block_values: tuple) -> list[list[tuple[Direction, float]]]:
            known = self.node(label).directions
            known_set = frozenset(known)
            out: list[list[tuple[Direction, float]]] = []
            for v in block_values:
                if v is None:
                    out.append([(ONE, 1.0), *((d, -1.0) for d in known)])
                else:
                    d = Direction(label, v)
                    out.append([(d, 1.0)] if d in known_set else [])
            return out

        q_feats = [features(plan.query_sops[j], b.values) for j, b in enumerate(w.query_blocks)]
        k_feats = [features(plan.key_sops[i], b.values) for i, b in enumerate(w.key_blocks)]
        query = list(
            dict.fromkeys([ONE, self.bos_dir, *(d for feats in q_feats for f in feats for d, _ in f)])
        )
        key = list(dict.fromkeys([ONE, self.bos_dir, *(d for feats in k_feats for f in feats for d, _ in f)]))
        q_index = {d: n for n, d in enumerate(query)}
        k_index = {d: n for n, d in enumerate(key)}
        qk = np.zeros((len(query), len(key)))  # [query directions, key directions]

        def coo(
            feats: list[list[tuple[Direction, float]]], index: dict[Direction, int]
        ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            """(value position, direction index, coefficient) per feature entry."""
            rows = [(a, index[d], c) for a, f in enumerate(feats) for d, c in f]
            if not rows:
                return np.zeros(0, int), np.zeros(0, int), np.zeros(0)
            arr = np.array(rows, dtype=float)
            return arr[:, 0].astype(int), arr[:, 1].astype(int), arr[:, 2]

        def scatter(q: tuple, k: tuple, values: np.ndarray) -> None:
            """qk[q dirs, k dirs] += values[q positions, k positions] * coefficients."""
            (qa, qd, qc), (kb, kd, kc) = q, k
            if not len(qa) or not len(kb):
                return
            block = values[np.ix_(qa, kb)] * np.outer(qc, kc)  # [q entries, k entries]
            if len(set(qd.tolist())) == len(qd) and len(set(kd.tolist())) == len(kd):
                qk[np.ix_(qd, kd)] += block
            else:
                np.add.at(qk, (qd[:, None], kd[None, :]), block)

        q_coo = [coo(f, q_index) for f in q_feats]
        k_coo = [coo(f, k_index) for f in k_feats]
        one_q = (np.array([0]), np.array([q_index[ONE]]), np.array([1.0]))
        bos_k = (np.array([0]), np.array([k_index[self.bos_dir]]), np.array([1.0]))
        for (j, i), table in w.tables.items():
            scatter(q_coo[j], k_coo[i], np.asarray(table, dtype=float))
        for i, bias in w.key_bias.items():
            scatter(one_q, k_coo[i], np.asarray(bias, dtype=float)[None, :])
        for j, vec in w.bos_query.items():
            scatter(q_coo[j], bos_k, np.asarray(vec, dtype=float)[:, None])
        qk[q_index[ONE], k_index[self.bos_dir]] += w.bos_const
        # The BOS query has no ONE, so every other key scores 0 there: BOS wins by
        # BOS_QUERY_MARGIN margins, so the BOS position holds exactly 0 (see the constant).
        qk[q_index[self.bos_dir], k_index[self.bos_dir]] += BOS_QUERY_MARGIN * w.margin
        reads = list(dict.fromkeys([*plan.query_sops, *plan.key_sops]))
        return query, key, qk, reads

    def _aggregate(self, label: str, expr: rasp.Aggregate, encoding: rasp.Encoding) -> NodeBlock:
        plan = self.plans.heads[label]
        query, key, qk, reads = self._plan_qk(plan)
        sop = self.node(expr.sop.label)
        outputs = self.directions(label, encoding)
        if encoding is rasp.Encoding.NUMERICAL:
            value = sop.directions
            ov = {(sop.directions[0], outputs[0]): 1.0}
            low, high = self.numeric_range(sop.label)
            spread = max(high, 0.0) - min(low, 0.0)  # BOS contributes a 0
        else:
            out_values = {d.value for d in outputs}
            value = tuple(d for d in sop.directions if d.value in out_values)
            ov = {(d, Direction(label, d.value)): 1.0 for d in value}
            spread = 1.0
        # The leak moves a mean by up to leak * spread, and an output of 0 must stay within
        # 1e-4 however large the values are: the leak is a bound in value units.
        leak = self.leak / max(1.0, spread) if encoding is rasp.Encoding.NUMERICAL else self.leak
        head = self._head(
            label,
            expr.selector.label,
            query,
            key,
            qk,
            value,
            outputs,
            ov,
            margin=plan.weights.margin,
            leak=leak,
            strategy=plan.strategy,
        )
        error = sop.error + 2 * head.leak_bound * spread
        return NodeBlock(
            label, encoding, outputs, head, None, tuple(dict.fromkeys(reads + [sop.label])), error
        )

    def _head(
        self, label, selector, query, key, qk, value, output, ov, margin, leak=None, strategy=""
    ) -> HeadBlock:
        """A head from a QK array over (query, key) directions and named OV entries;
        directions whose QK row or column is all zero are dropped, so the head reads (and
        the model stores) only what it uses."""
        used_q = np.flatnonzero(np.any(qk != 0, axis=1))
        used_k = np.flatnonzero(np.any(qk != 0, axis=0))
        query_t = tuple(query[i] for i in used_q)
        key_t = tuple(key[i] for i in used_k)
        value_t = tuple(dict.fromkeys(value))
        coldness, bound = self.coldness(margin, leak if leak is not None else self.leak)
        return HeadBlock(
            label=label,
            selector=selector,
            query=query_t,
            key=key_t,
            w_qk=qk[np.ix_(used_q, used_k)],
            value=value_t,
            output=tuple(output),
            w_ov=matrix(value_t, tuple(output), ov),
            margin=margin,
            coldness=coldness,
            leak_bound=bound,
            strategy=strategy,
        )

    def _width(self, label: str, selector: rasp.Selector | None, encoding: rasp.Encoding) -> NodeBlock:
        """Attend to BOS and the selected keys alike and average ONE, which is 1 on every
        token but 0 on BOS: the result w/(w+1) decodes to the width w. The BOS query attends
        only BOS and reads 0, so the decoder stays silent there."""
        if selector is None:  # `length`: every key, BOS included, has the same logit
            query, key, reads = [ONE, self.bos_dir], [ONE, self.bos_dir], []
            entries = {
                (ONE, ONE): 1.0,
                (ONE, self.bos_dir): 1.0,
                (self.bos_dir, self.bos_dir): BOS_QUERY_MARGIN,
            }
            qk = matrix(query, key, entries)
            selector_label, strategy = "length", "length"
        else:
            plan = self.plans.heads[label]
            query, key, qk, reads = self._plan_qk(plan)
            selector_label, strategy = selector.label, plan.strategy
        scratch = Direction(f"{label}_selector_width_attn_output", internal=True)
        self.scratch.append(scratch)
        widths = [w for w in self.values(label) if isinstance(w, int)]
        shares = [w / (w + 1) for w in widths]
        gaps = [b - a for a, b in zip(shares, shares[1:])]
        leak = min([self.leak] + [g / 8 for g in gaps])
        head = self._head(
            label,
            selector_label,
            query,
            key,
            qk,
            (ONE,),
            (scratch,),
            {(ONE, scratch): 1.0},
            margin=1.0,
            leak=leak,
            strategy=strategy,
        )
        outputs = self.directions(label, encoding)
        mlp = self._discretiser(
            label,
            "selector_width",
            scratch,
            [(share, w) for share, w in zip(shares, widths)],
            outputs,
            encoding,
        )
        return NodeBlock(label, encoding, outputs, head, mlp, tuple(dict.fromkeys(reads)), mlp.rounding)


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
