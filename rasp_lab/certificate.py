"""The error certificate: a sound bound on how far every SOp's residual directions can be
from their ideal values, on every input up to max_seq_len, in float32.

The *ideal* network is the compiled one run with exact arithmetic and hard attention:
each head averages uniformly over the keys whose logit is the top one (BOS among them when
its logit is), and every SOp's directions hold its one-hot or its value exactly. The
certificate bounds the real model's distance from it, layer by layer, from these alone:

- the weights of every head and MLP block in named directions (rasp_lab.artifact),
- the residual layout (which directions hold which SOp),
- each SOp's values (categorical: its directions; numerical: `ValueInfo`),

never from the compiler's own intermediate objects, so it is a second opinion on the
compiler and works on a model loaded from a file. It re-derives every head's margin from its
table over every combination of its SOps' values (the free question: a superset of what
inputs realise, so the margin holds for the program), and every MLP's output over every
combination of its inputs' values.

Each bound adds: the errors upstream (through logits, via the coldness, and through the
value and MLP weights, keeping the cancellation of paired clamp units), the attention
weight that leaks past the margin, unequal weights among the attended keys, and float32
rounding bounded for any summation order (`gamma(k) = k u / (1 - k u)` times the sum of the
terms' sizes, u = 2^-24), so it holds whatever the batch shape. Assumptions, stated: XLA's
float32 exp is within EXP_ULPS units in the last place; a categorical Aggregate's attended
keys share one value (validation refuses programs where they may not, and the model raises
DecodingError otherwise).

"Exact" means: a categorical output decodes to its value with a margin (every direction
within 1/4 of its one-hot, with room for the decoder's sum of the others); a numerical
output is within `tolerance * max(1, |v|)` of its value v (1e-4 by default), for every
value v it can take.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse

from rasp_lab import rasp
from rasp_lab.artifact import (
    ONE,
    Direction,
    HeadBlock,
    LayerWeights,
    MLPBlock,
    ResidualLayout,
    ValueInfo,
    Weights,
)

U = 2.0**-24
"""float32's unit roundoff."""

EXP_ULPS = 4
"""Assumed accuracy of float32 exp in XLA's softmax, in units in the last place."""

DEFAULT_TOLERANCE = 1e-4
"""A numerical output must be within this times max(1, |v|) of its value v."""

MAX_COMBINATIONS = 400_000
"""Input value combinations one block's check may enumerate; beyond it, not certified."""

PAIR_TABLE_CELLS = 4_000_000
"""An MLP over two categorical SOps whose (combinations x hidden units) exceed this is
bounded case by case (see _Checker._pair_table_mlp) instead of as one array."""

_F32_EXP_ZERO = 104.0
"""exp(-x) is exactly 0 in float32 beyond this (it is below half the smallest subnormal,
1.4e-45, from x = 103.98), whatever the rounding of x within the bound's margin."""

_TIE = 1e-9
"""Relative difference below which two logits of the ideal network count as tied."""


class CertificateWarning(UserWarning):
    """A compiled model whose sound error bound is looser than the tolerance: it may still
    be exact (the bound is a worst case over every summation order), but it is not proven."""


def gamma(k: int) -> float:
    """Relative error bound of a float32 sum of k terms (or k roundings), any order."""
    return k * U / (1 - k * U)


@dataclass(frozen=True)
class Bound:
    """|model - ideal| <= absolute + relative * |v| in every direction of one SOp, at every
    position where its ideal value is v (v = 1 or 0 for a one-hot direction)."""

    absolute: float
    relative: float = 0.0
    bos: float | None = None
    """The error at the BOS position (which later heads read as their default), where
    every SOp's ideal value is 0; None: the same as `absolute`."""
    total: float | None = None
    """A one-hot's largest sum of errors over its directions at one position (BOS
    included); None: `absolute` times the number of directions."""
    nonzero: int | None = None
    """How many of a one-hot's directions can be non-zero at once in float32 (the others
    are exactly 0); None: all of them."""

    def at(self, value: float) -> float:
        return self.absolute + self.relative * abs(value)

    @property
    def at_bos(self) -> float:
        return self.absolute if self.bos is None else self.bos

    def __str__(self) -> str:
        return f"{self.absolute:.3g}" + (f" + {self.relative:.3g}|v|" if self.relative else "")


@dataclass(frozen=True)
class SOpCertificate:
    label: str
    encoding: rasp.Encoding
    bound: Bound
    tolerance_met: bool
    """Within the meaning of exact (see the module docstring)."""
    worst: str
    """Where the bound is tightest against the tolerance, in words."""


@dataclass(frozen=True)
class Certificate:
    output: str
    tolerance: float
    sops: Mapping[str, SOpCertificate]
    problems: tuple[str, ...] = field(default=())
    """Why something could not be certified (empty when every block was checked)."""

    @property
    def exact(self) -> bool:
        """The output is certified within tolerance on every input up to max_seq_len."""
        return not self.problems and self.sops[self.output].tolerance_met

    def bound(self, label: str) -> Bound:
        return self.sops[label].bound

    def describe(self) -> str:
        out = self.sops.get(self.output)
        if out is None:
            return f"not certified: {'; '.join(self.problems)}"
        meaning = (
            "decodes to its value with a margin"
            if out.encoding is rasp.Encoding.CATEGORICAL
            else f"within {self.tolerance:g} * max(1, |v|) of its value v"
        )
        verdict = "exact" if self.exact else "NOT certified exact"
        text = f"{verdict}: output {self.output!r} {meaning} on every input (certified error <= {out.bound}; {out.worst})"
        if self.problems:
            text += "; problems: " + "; ".join(self.problems)
        return text


def certify(model: Any, *, tolerance: float = DEFAULT_TOLERANCE) -> Certificate:
    """The certificate of a CompiledModel (compiled, or loaded from a file)."""
    return certify_parts(
        model.weights,
        model.layout,
        model.value_info,
        output=model.output_location.label,
        max_seq_len=model.max_seq_len,
        tolerance=tolerance,
    )


def certify_parts(
    weights: Weights,
    layout: ResidualLayout,
    value_info: Mapping[str, ValueInfo],
    *,
    output: str,
    max_seq_len: int,
    tolerance: float = DEFAULT_TOLERANCE,
) -> Certificate:
    """The certificate from the artifact's parts (see the module docstring)."""
    if not 0 < tolerance < 1:
        raise ValueError(f"tolerance must be strictly between 0 and 1, got {tolerance!r}")
    checker = _Checker(weights, layout, value_info, max_seq_len)
    checker.run()
    sops = {label: checker.judge(label, tolerance) for label in layout.sops}
    return Certificate(output=output, tolerance=tolerance, sops=sops, problems=tuple(checker.problems))


# ------------------------------------------------------------------------------------ internals


@dataclass
class _Owner:
    """The exact values one group of directions takes together at a token position: rows of
    `configs` ([n_configs, len(directions)]); at BOS every direction but BOS's own is 0."""

    directions: tuple[Direction, ...]
    configs: np.ndarray


class _Checker:
    def __init__(
        self, weights: Weights, layout: ResidualLayout, value_info: Mapping[str, ValueInfo], max_seq_len: int
    ) -> None:
        self.weights, self.layout, self.info = weights, layout, value_info
        self.n_pos = max_seq_len + 1
        self.owner_of: dict[Direction, str] = {}
        for label, loc in layout.sops.items():
            for d in loc.directions:
                self.owner_of[d] = label
        self.bound: dict[str, Bound] = {}
        self.scratch_values: dict[Direction, np.ndarray] = {}
        self.problems: list[str] = []
        self.bos_direction = next((d for d in layout.directions[1:2] if d.internal), None)

    # ---------------------------------------------------------------- values

    def _owner(self, d: Direction) -> str | Direction:
        """The SOp label owning `d`, or `d` itself for an internal direction."""
        return self.owner_of.get(d, d)

    def _group(self, label: str | Direction) -> _Owner:
        """Exact token-position values of the directions of `label` (an SOp, or an internal
        direction)."""
        if isinstance(label, str):
            loc = self.layout.sops[label]
            if loc.encoding is rasp.Encoding.NUMERICAL and label not in self.info:
                raise _NotCertified(f"no value set is known for the numerical SOp {label!r}")
            info = self.info.get(label, ValueInfo(nullable=True))
            if loc.encoding is rasp.Encoding.NUMERICAL:
                if info.values is not None:
                    values = np.array(info.values + (0.0,) if info.nullable else info.values, dtype=float)
                else:
                    values = np.array(
                        sorted(
                            {info.low, info.high, 0.0}
                            if info.low <= 0 <= info.high
                            else {info.low, info.high}
                        )
                    )
                return _Owner(loc.directions, values.reshape(-1, 1))
            k = len(loc.directions)
            rows = np.eye(k)
            if info.nullable or k == 0:
                rows = np.vstack([rows, np.zeros((1, k))])
            return _Owner(loc.directions, rows)
        d = label
        if d == ONE:
            return _Owner((d,), np.ones((1, 1)))
        if d == self.bos_direction:
            return _Owner((d,), np.zeros((1, 1)))
        values = self.scratch_values.get(d)
        if values is None:
            raise _NotCertified(f"direction {d} is read before anything writes it")
        return _Owner((d,), values.reshape(-1, 1))

    def _error(self, d: Direction) -> Bound:
        return self.bound.get(self._owner(d), Bound(0.0))

    def _combinations(self, directions: Sequence[Direction], what: str) -> tuple[np.ndarray, np.ndarray]:
        """(configs [n, len(directions)] at token positions, plus one all-zero row for BOS
        (BOS's own direction 1 there); errors [n + 1, len(directions)] at each)."""
        owners = list(dict.fromkeys(self._owner(d) for d in directions))
        groups = [self._group(o) for o in owners]
        count = math.prod(len(g.configs) for g in groups)
        if count > MAX_COMBINATIONS:
            raise _NotCertified(
                f"{what} reads {count} combinations of input values (more than {MAX_COMBINATIONS})"
            )
        column = {d: i for i, d in enumerate(directions)}
        configs = np.zeros((1, len(directions)))
        for g in groups:  # the product, first group slowest; groups own disjoint columns
            src = [j for j, d in enumerate(g.directions) if d in column]
            sub = np.zeros((len(g.configs), len(directions)))  # [group configs, inputs]
            sub[:, [column[g.directions[j]] for j in src]] = g.configs[:, src]
            configs = (configs[:, None, :] + sub[None, :, :]).reshape(-1, len(directions))
        configs = np.vstack([configs, np.zeros((1, len(directions)))])  # [combinations + BOS, inputs]
        if self.bos_direction in column:
            configs[count, column[self.bos_direction]] = 1.0
        errors = np.zeros_like(configs)
        for d, j in column.items():
            b = self._error(d)
            errors[:count, j] = b.absolute + b.relative * np.abs(configs[:count, j])
            errors[count, j] = b.at_bos
        return configs, errors

    # ---------------------------------------------------------------- the walk

    def run(self) -> None:
        for label, loc in self.layout.sops.items():
            if loc.head_layer is None and loc.mlp_layer is None:
                numerical = loc.encoding is rasp.Encoding.NUMERICAL
                self.bound[label] = Bound(
                    0.0, U if numerical else 0.0, 0.0
                )  # embedded: float32 rounding of constants
        for layer in self.weights.layers:
            for index, head in enumerate(layer.heads):
                self._guard(
                    head.label, lambda head=head, layer=layer, index=index: self._head(head, layer, index)
                )
            for mlp in layer.mlps:
                self._guard(mlp.label, lambda mlp=mlp: self._mlp(mlp))

    def _guard(self, label: str, step) -> None:
        try:
            step()
        except _NotCertified as err:
            self.problems.append(f"{label}: {err}")
            self.bound[label] = Bound(math.inf)

    def _head(self, head: HeadBlock, layer: LayerWeights, index: int) -> None:
        head_size = layer.head_size
        self._bos_with_keys, self._bos_margin, self._bos_size = True, 0.0, 0.0
        margin, delta_ties, table_size = self._margin(head)
        c = head.coldness
        # Logit error from upstream errors: per pair of direction blocks (one-hot: at most
        # one direction on), e_R * max column sum + e_S * max row sum + e_R e_S * sum.
        delta_in = 0.0
        rows = _blocks(head.query, self._owner)
        cols = _blocks(head.key, self._owner)
        w = np.abs(head.w_qk)
        for r_owner, r_idx in rows.items():
            e_r, s_r = self._block_error(r_owner, head.query, r_idx)
            for s_owner, s_idx in cols.items():
                e_s, s_s = self._block_error(s_owner, head.key, s_idx)
                sub = w[np.ix_(r_idx, s_idx)]
                if not sub.size:
                    continue
                # sum_rs |W_rs| (e_r |x_s| + |x_r| e_s + e_r e_s), one entry per block on.
                top = sub.max()
                delta_in += e_r * s_s * top + e_s * s_r * top + e_r * e_s * top
        # float32: each product of the logit's dot products is non-zero only for directions
        # that are non-zero; an exact block (error 0) has one such direction at a time.
        terms = self._terms(head.query) + self._terms(head.key) + min(head_size, self._terms(head.key)) + 4
        delta_f32 = gamma(terms) * table_size * 1.01
        exact = self._exact_logits(head, layer, index)
        if exact:
            # Every dot product is exact in float32; only the division by sqrt(head_size)
            # (and its float32 constant) rounds, the same way for equal dots.
            delta_f32 = gamma(2) * table_size
        delta = c * (delta_in + delta_f32 + delta_ties)
        exponent = c * margin - 2 * delta
        leak = min(1.0, (self.n_pos - 1) * math.exp(-exponent)) if exponent > 0 else 1.0
        bos_delta = c * (delta_in + gamma(terms) * self._bos_size * 1.01 + delta_ties)
        bos_exponent = c * self._bos_margin - 2 * bos_delta
        # float32's exp rounds below its smallest subnormal to exactly 0.
        if bos_exponent > _F32_EXP_ZERO:
            bos_leak = 0.0
        else:
            bos_leak = min(1.0, (self.n_pos - 1) * math.exp(-bos_exponent)) if bos_exponent > 0 else 1.0
        if leak >= 0.5:
            raise _NotCertified(
                f"its margin {margin:.3g} (x coldness {c:.3g}) does not survive its input error {delta:.3g}"
            )
        # Attended keys' weights differ by a factor up to exp(2 delta) (and softmax rounding):
        # a weighted mean then moves by at most half that, times the values' spread.
        skew = (math.expm1(2 * delta) + 2 * gamma(self.n_pos + EXP_ULPS + 2)) / 2
        if exact:
            skew = 0.0  # attended keys' logits are equal bit for bit: so are their weights
        # Exact values the head averages, per output direction: [configs, outputs].
        configs, _ = self._combinations(head.value, f"head {head.label}'s value")
        values = configs @ head.w_ov  # [configs, outputs]; the last row is BOS's
        # Unequal weights move a mean only within the spread of what is attended together:
        # the keys' values, and BOS's 0 only where BOS is attended beside keys (a width head).
        together = values if self._bos_with_keys else values[:-1]
        attended_spread = (
            (together.max(axis=0) - together.min(axis=0)) if len(together) else np.zeros(values.shape[1])
        )
        w_ov = np.abs(head.w_ov)
        # A value bounded away from 0 (all of one sign, |v| >= m > 0) has error
        # a + r|v| <= (a / m + r)|v|: relative, so it stays small where the output is 0.
        value_errors = [self._value_error(d, configs[:-1, j]) for j, d in enumerate(head.value)]
        value_abs = np.array([a for a, _ in value_errors]) @ w_ov  # [outputs]
        value_rel = np.array([r for _, r in value_errors]) @ w_ov
        low = np.minimum(values.min(axis=0), 0.0)
        high = np.maximum(values.max(axis=0), 0.0)
        spread = high - low
        big = np.maximum(np.abs(low), np.abs(high))
        same_sign = (low >= 0) | (high <= 0)
        # z @ W_O sums over the head's columns, but a column W_V leaves empty (or W_O ignores)
        # adds an exact 0: only the columns both use can round.
        ov_columns = int(
            np.count_nonzero(
                np.any(layer.w_v[:, index, :] != 0, axis=0) & np.any(layer.w_o[index] != 0, axis=1)
            )
        )
        f32 = gamma(self.n_pos + len(head.value) + ov_columns + len(head.output) + EXP_ULPS + 6)
        output_sop = self.owner_of.get(head.output[0]) if head.output else None
        averages = output_sop is None or self.layout.sops[output_sop].encoding is rasp.Encoding.NUMERICAL
        # Weights off by a factor within 1 +- 2 skew move a mean of values that share a sign
        # by at most 2 skew times the mean itself (relative: small where the mean is, as a
        # BOS share 1/(w+1) is), and any mean by at most skew times the attended spread.
        skew_rel = np.where(same_sign, 2 * skew, 0.0) if averages else np.zeros_like(spread)
        skew_abs = np.where(same_sign, 0.0, skew * attended_spread) if averages else np.zeros_like(spread)
        absolute = value_abs + leak * spread + skew_abs
        # Relative parts stay relative while the averaged values share a sign (then the
        # sum of |weight * value| is the output's own size, plus the leaked weight's).
        relative = np.where(same_sign, f32 + value_rel, 0.0) + skew_rel
        absolute = absolute + np.where(same_sign, (f32 + value_rel) * leak * big, (f32 + value_rel) * big)
        # At BOS the query attends BOS alone: no unequal weights, only the leak.
        value_bos = np.array([self._error(d).at_bos for d in head.value]) @ w_ov
        at_bos = value_bos + bos_leak * spread + (f32 + value_rel) * (bos_leak * big + value_bos)
        # A token query that attends BOS (the default) reads BOS's value and its error.
        absolute = np.maximum(absolute, value_bos + leak * spread + f32 * (leak * big + value_bos))
        # A one-hot output's errors summed over its directions: the values' own (each
        # output reads its own value direction), the leaked weight twice (taken from the
        # attended value, given to others), and rounding of what the head writes.
        value_total = max(
            [self._block_error(o, head.value, idx)[0] for o, idx in _blocks(head.value, self._owner).items()],
            default=0.0,
        )
        total = value_total * float(w_ov.max(initial=0.0)) + 2 * leak + f32 * (1 + 2 * leak + value_total)
        bound = Bound(float(absolute.max()), float(relative.max()), float(at_bos.max()), total)
        if head.output and head.output[0] not in self.owner_of:
            # A width head's scratch: the mean over BOS and the w selected keys, which all
            # carry one token value: (w * token + bos) / (w + 1).
            widths = self.info.get(head.label)
            counts = np.arange(self.n_pos) if widths is None or widths.values is None else None
            if counts is None:
                counts = np.array(widths.values)
            if not len(counts):
                counts = np.arange(self.n_pos)
            token_values = np.unique(values[:-1, 0])
            if len(token_values) != 1:
                raise _NotCertified("a width head whose keys carry different values")
            self.scratch_values[head.output[0]] = (counts * token_values[0] + values[-1, 0]) / (counts + 1.0)
            self.bound[self._owner(head.output[0])] = bound
        else:
            self.bound[head.label] = bound

    def _exact_logits(self, head: HeadBlock, layer: LayerWeights, index: int) -> bool:
        """Whether float32 computes every logit's dot product exactly (so keys whose
        logits tie in the table tie bit for bit): the head reads only exact one-hots, and
        its W_Q and W_K are float32 numbers on a grid fine and small enough that no sum
        they make needs rounding (see _on_grid)."""
        if not all(self._is_exact(d) for d in (*head.query, *head.key)):
            return False
        rows_q = _blocks(head.query, self._owner)
        rows_k = _blocks(head.key, self._owner)
        index_of = self.layout.index
        reach = []
        for side, rows, directions in ((layer.w_q, rows_q, head.query), (layer.w_k, rows_k, head.key)):
            w = side[:, index, :]  # [d_model, head_size]
            if not np.array_equal(w.astype(np.float32).astype(np.float64), w):
                return False
            # One direction per block is on: a column's largest |sum| is the blocks' largest
            # entries added up.
            largest = np.zeros(w.shape[1])
            for idx in rows.values():
                largest += np.abs(w[[index_of[directions[i]] for i in idx], :]).max(axis=0)
            grid = _grid(w)
            if grid is None or not _fits(largest, grid):
                return False
            reach.append((largest, grid))
        (q_size, q_grid), (k_size, k_grid) = reach
        return _fits(np.array([float(q_size @ k_size)]), q_grid + k_grid)

    def _is_exact(self, d: Direction) -> bool:
        """A direction whose value is exactly its ideal one everywhere (0 or 1 for a one-hot)."""
        owner = self._owner(d)
        if owner == ONE or owner == self.bos_direction:
            return True
        b = self._error(d)
        return (
            b.absolute == 0
            and b.at_bos == 0
            and b.relative == 0
            and (not isinstance(owner, str) or self.layout.sops[owner].encoding is rasp.Encoding.CATEGORICAL)
        )

    def _value_error(self, d: Direction, values: np.ndarray) -> tuple[float, float]:
        """(absolute, relative) error of one value direction over its token-position values."""
        b = self._error(d)
        if len(values) and (values.min() > 0 or values.max() < 0):
            return 0.0, b.relative + b.absolute / float(np.abs(values).min())
        return b.absolute, b.relative

    def _terms(self, directions: Sequence[Direction]) -> int:
        """How many of `directions` can be non-zero at once: one per exact block (a clean
        one-hot, ONE, BOS), all of a block that carries error."""
        total = 0
        for idx in _blocks(directions, self._owner).values():
            b = self._error(directions[idx[0]])
            if b.absolute == 0 and b.at_bos == 0:
                total += 1
            else:
                total += len(idx) if b.nonzero is None else min(len(idx), max(1, b.nonzero))
        return total

    def _block_error(
        self, owner: Any, directions: Sequence[Direction], idx: list[int]
    ) -> tuple[float, float]:
        """(largest sum of errors over one block of a head's QK directions at a position,
        largest exact size of an entry there)."""
        b = self._error(directions[idx[0]])
        if isinstance(owner, str) and self.layout.sops[owner].encoding is rasp.Encoding.NUMERICAL:
            info = self.info.get(owner, ValueInfo(nullable=False))
            size = max(1.0, abs(info.low), abs(info.high))
            return max(b.at(size), b.at_bos), size
        if b.total is not None:
            return b.total, 1.0
        return max(b.absolute, b.at_bos) * len(idx), 1.0

    def _margin(self, head: HeadBlock) -> tuple[float, float, float]:
        """(margin, tie slack, largest sum of |table entries| one (query, key) pair reads),
        over every combination of the query SOps' values (and the BOS query) and, per
        query, the key SOps' values, whose logits add up (a sum of per-block tables)."""
        q_configs, _ = self._combinations(head.query, f"head {head.label}'s query")
        table = head.w_qk  # [query directions, key directions]
        scale = max(1.0, float(np.abs(table).max(initial=0.0)))
        key_col = {d: j for j, d in enumerate(head.key)}
        bos_col = key_col.get(self.bos_direction) if self.bos_direction is not None else None
        if bos_col is not None:
            bos_logit = q_configs @ table[:, bos_col]  # [queries]
            size = np.abs(q_configs) @ np.abs(table[:, bos_col])
        else:
            bos_logit, size = np.zeros(len(q_configs)), np.zeros(len(q_configs))
        key_top = np.zeros(len(q_configs))
        key_gap = np.full(len(q_configs), np.inf)
        key_size = np.zeros(len(q_configs))
        owners = [o for o in dict.fromkeys(self._owner(d) for d in head.key) if o != self.bos_direction]
        for owner in owners:
            group = self._group(owner)
            cols = [key_col[d] for d in group.directions if d in key_col]
            picked = group.configs[
                :, [j for j, d in enumerate(group.directions) if d in key_col]
            ]  # [key configs, cols]
            # Configs are mostly one-hot rows: sparse products, not N^3 dense ones.
            sub = table[:, cols]
            logits = _sparse_product(q_configs, sub, picked)  # [queries, key configs]
            key_size += _sparse_product(np.abs(q_configs), np.abs(sub), np.abs(picked)).max(axis=1)
            top = logits.max(axis=1)
            below = np.where(logits < top[:, None] - _TIE * scale, logits, -np.inf).max(axis=1)
            key_top += top
            key_gap = np.minimum(key_gap, top - below)
        if not owners:  # no key reads anything: every key scores 0
            key_gap[:] = np.inf
        top = np.maximum(key_top, bos_logit)
        # Attended: the keys at the top (when they reach it) and BOS (when it does); all
        # else must sit `margin` below. Separable logits: the runner-up key config is the
        # top minus the smallest per-block gap.
        keys_at_top = key_top >= top - _TIE * scale
        bos_at_top = bos_logit >= top - _TIE * scale
        next_key = np.where(keys_at_top, key_top - key_gap, key_top)
        next_bos = np.where(bos_at_top, -np.inf, bos_logit)
        gaps = top - np.maximum(next_key, next_bos)  # [queries]; the last is the BOS query
        margin = float(gaps[:-1].min(initial=np.inf))
        self._bos_margin = float(gaps[-1])
        if not (margin > 0 and self._bos_margin > 0):
            raise _NotCertified("its logits leave no margin between the attended keys and the others")
        sizes = np.maximum(size, key_size)  # [queries]; the BOS query's apart
        largest = float(np.max(sizes[:-1], initial=0.0))
        self._bos_size = float(sizes[-1]) if len(sizes) else 0.0
        self._bos_with_keys = bool(np.any(keys_at_top & bos_at_top & (key_top > -np.inf)))
        return margin, _TIE * scale * (len(owners) + 1), largest

    def _mlp(self, mlp: MLPBlock) -> None:
        loc = self.layout.sops.get(mlp.label)
        if loc is None:
            raise _NotCertified("writes no SOp of the layout")
        if loc.encoding is rasp.Encoding.NUMERICAL and self._too_many_combinations(mlp.inputs):
            parts = self._separable_parts(mlp)
            if parts is not None:
                self._separable_mlp(mlp, parts)
                return
        table = self._pair_table(mlp)
        if table is not None:
            self._pair_table_mlp(mlp, loc.encoding, *table)
            return
        configs, errors = self._combinations(mlp.inputs, f"MLP {mlp.label}'s input")
        hidden = np.maximum(configs @ mlp.w_in, 0.0)
        if not errors.any() and _exact_mlp(configs, mlp, hidden):
            out = hidden @ mlp.w_out  # float32 computes it exactly: the ideal outputs
            total = np.zeros_like(out)
        else:
            out, total = _mlp_rows(mlp, configs, errors, np.count_nonzero(mlp.w_out, axis=0))
        self.bound[mlp.label] = _mlp_bound(loc.encoding, [(out[:-1], total[:-1])], out[-1], total[-1])

    def _input_owners(self, mlp: MLPBlock) -> tuple[list, list]:
        """(each input row's owner, None for ONE; the distinct owners, in order)."""
        owner_of_row = [None if d == ONE else self._owner(d) for d in mlp.inputs]
        return owner_of_row, list(dict.fromkeys(o for o in owner_of_row if o is not None))

    def _pair_table(self, mlp: MLPBlock) -> tuple[np.ndarray, np.ndarray, _Owner, _Owner] | None:
        """(each unit's input row from the first SOp, from the second) when the MLP is a
        lookup table over two categorical SOps too large to enumerate row by row: every unit
        reads one direction of each (a categorical SequenceMap's pair units)."""
        owner_of_row, owners = self._input_owners(mlp)
        if len(owners) != 2 or not all(
            isinstance(o, str) and self.layout.sops[o].encoding is rasp.Encoding.CATEGORICAL for o in owners
        ):
            return None
        groups = [self._group(o) for o in owners]
        if len(groups[0].configs) * len(groups[1].configs) * mlp.hidden < PAIR_TABLE_CELLS:
            return None
        picks = []
        for owner in owners:
            rows = np.array([o == owner for o in owner_of_row])
            reads = mlp.w_in[rows] != 0  # [this SOp's inputs, hidden]
            if not np.all(reads.sum(axis=0) == 1):
                return None
            picks.append(np.flatnonzero(rows)[reads.argmax(axis=0)])  # [hidden] input row
        return picks[0], picks[1], groups[0], groups[1]

    def _pair_table_mlp(
        self,
        mlp: MLPBlock,
        encoding: rasp.Encoding,
        row_a: np.ndarray,
        row_b: np.ndarray,
        group_a: _Owner,
        group_b: _Owner,
    ) -> None:
        """The bound of a pair-table MLP without its [configs, hidden] arrays, N^4 for a
        SequenceMap of two N-value SOps: a unit's terms depend only on whether its two
        directions are on (4 cases). A pair (a, b) of values sees case (1, 0) at the units
        of row a, (0, 1) at those of column b, (1, 1) at cell (a, b) and (0, 0) elsewhere,
        so its outputs and bounds are the all-off sums plus a row, a column and a cell
        correction: N^3 work. The terms are those of _mlp_rows, unit by unit."""
        w_in, w_out = mlp.w_in, mlp.w_out  # [inputs, hidden], [hidden, outputs]
        n_out = w_out.shape[1]
        index = {d: i for i, d in enumerate(mlp.inputs)}
        one = index.get(ONE)
        bias = w_in[one] if one is not None else np.zeros(mlp.hidden)
        wa = w_in[row_a, np.arange(mlp.hidden)]
        wb = w_in[row_b, np.arange(mlp.hidden)]
        k_in = np.count_nonzero(w_in, axis=0)
        k_out = np.count_nonzero(w_out, axis=0)
        bound_a, bound_b = self._error(mlp.inputs[row_a[0]]), self._error(mlp.inputs[row_b[0]])
        # Units reading the same two directions with the same weights move together (clamp
        # pairs): their on units' output weights add before the noise is taken.
        _, kind = np.unique(np.stack([row_a, row_b, wa, wb]), axis=1, return_inverse=True)
        kind = np.asarray(kind).reshape(-1)
        units, outputs = np.nonzero(w_out)  # one edge per (unit, output) weight
        weight = w_out[units, outputs]
        # The (direction a, direction b, output) an edge adds to; the same key for every
        # unit of one cell.
        cell = row_a[units].astype(np.int64) * len(mlp.inputs) + row_b[units]
        keys, edge_key = np.unique(cell * n_out + outputs, return_inverse=True)
        group_keys, edge_group = np.unique(
            kind[units].astype(np.int64) * n_out + outputs, return_inverse=True
        )
        group_first = np.zeros(len(group_keys), dtype=np.int64)
        group_first[edge_group] = np.arange(len(units))
        group_key = edge_key[group_first]  # [groups] -> key
        exact_inputs = all(
            b.absolute == 0 and b.relative == 0 and b.at_bos == 0 for b in (bound_a, bound_b)
        ) and all(self._error(d).at_bos == 0 for d in mlp.inputs)
        exact = exact_inputs and _exact_pair_table(wa, wb, bias, mlp)

        def case(p: int, q: int, e_a: float, e_b: float, one: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
            """(ideal output, bound) per key when every unit's directions are (p, q), read
            with errors (e_a, e_b), and ONE holds `one`: _mlp_rows' terms, unit by unit."""
            pre = wa * p + wb * q + bias * one
            noise = e_a * np.abs(wa) + e_b * np.abs(wb)
            f32_pre = gamma_array(k_in + 2) * (
                (p + e_a) * np.abs(wa) + (q + e_b) * np.abs(wb) + np.abs(bias) * one
            )
            radius = noise + f32_pre
            on, off = pre - radius >= 0, pre + radius <= 0
            straddle = ~on & ~off
            hidden = np.maximum(pre, 0.0)
            spread = on * f32_pre + straddle * radius
            reach = hidden + radius * ~off
            total = np.abs(weight) * (spread[units] + gamma_array(k_out + 2)[outputs] * reach[units])
            coefficient = np.bincount(edge_group, on[units] * weight, minlength=len(group_keys))
            linear = np.abs(coefficient) * noise[units][group_first]
            total_key = np.bincount(edge_key, total, minlength=len(keys))
            total_key += np.bincount(group_key, linear, minlength=len(keys))
            if exact:  # float32 computes it exactly: the ideal outputs
                total_key[:] = 0.0
            return np.bincount(edge_key, hidden[units] * weight, minlength=len(keys)), total_key

        values = {
            (p, q): case(
                p, q, bound_a.absolute + bound_a.relative * p, bound_b.absolute + bound_b.relative * q
            )
            for p in (0, 1)
            for q in (0, 1)
        }
        key_a = keys // n_out // len(mlp.inputs)
        key_b = keys // n_out % len(mlp.inputs)
        key_o = keys % n_out

        def spread_over(rows: np.ndarray, size: int, data: np.ndarray) -> np.ndarray:
            result = np.zeros((size, n_out))
            np.add.at(result, (rows, key_o), data)
            return result

        n_in = len(mlp.inputs)
        base = [spread_over(np.zeros(len(keys), dtype=np.int64), 1, v)[0] for v in values[0, 0]]
        row = [spread_over(key_a, n_in, v1 - v0) for v1, v0 in zip(values[1, 0], values[0, 0])]
        col = [spread_over(key_b, n_in, v1 - v0) for v1, v0 in zip(values[0, 1], values[0, 0])]
        cell_delta = [
            v11 - v10 - v01 + v00
            for v11, v10, v01, v00 in zip(values[1, 1], values[1, 0], values[0, 1], values[0, 0])
        ]
        inputs_a = [
            None if not c.any() else index[group_a.directions[int(np.argmax(c))]] for c in group_a.configs
        ]
        inputs_b = np.array(
            [-1 if not c.any() else index[group_b.directions[int(np.argmax(c))]] for c in group_b.configs]
        )
        on_b = inputs_b >= 0
        blocks = []
        order = np.argsort(key_a, kind="stable")
        starts = np.searchsorted(key_a[order], np.arange(n_in + 1))
        for a in inputs_a:
            out = base[0] + np.where(on_b[:, None], col[0][inputs_b], 0.0)  # [configs of b, outputs]
            total = base[1] + np.where(on_b[:, None], col[1][inputs_b], 0.0)
            if a is not None:
                out += row[0][a]
                total += row[1][a]
                here = order[starts[a] : starts[a + 1]]  # keys of row a's cells
                position = np.full(n_in, -1)
                position[inputs_b[on_b]] = np.flatnonzero(on_b)
                target = position[key_b[here]]
                keep = target >= 0
                np.add.at(out, (target[keep], key_o[here][keep]), cell_delta[0][here][keep])
                np.add.at(total, (target[keep], key_o[here][keep]), cell_delta[1][here][keep])
            blocks.append((out, total))
        # At BOS every direction but BOS's own holds 0, ONE included, with the SOps' errors there.
        bos_out, bos_total = case(0, 0, bound_a.at_bos, bound_b.at_bos, one=0.0)
        self.bound[mlp.label] = _mlp_bound(
            encoding,
            blocks,
            np.bincount(key_o, bos_out, minlength=n_out),
            np.bincount(key_o, bos_total, minlength=n_out),
        )

    def _too_many_combinations(self, directions: Sequence[Direction]) -> bool:
        owners = dict.fromkeys(self._owner(d) for d in directions if d != ONE and d != self.bos_direction)
        return math.prod(len(self._group(o).configs) for o in owners) > MAX_COMBINATIONS

    def _separable_parts(self, mlp: MLPBlock) -> list[np.ndarray] | None:
        """[units] masks, one per input SOp, when every unit reads one SOp besides ONE (a
        LinearSequenceMap's units read one mean each): the output is then a sum of one
        function per SOp, and so is its error bound, so the SOps' values need not be
        combined. None when a unit reads two SOps. Units reading only ONE join the first."""
        owner_of_row, owners = self._input_owners(mlp)
        if len(owners) < 2:
            return None
        reads = np.array([[o == owner for o in owner_of_row] for owner in owners])  # [owners, inputs]
        uses = (reads.astype(float) @ (mlp.w_in != 0).astype(float)) > 0  # [owners, hidden]
        if np.any(uses.sum(axis=0) > 1):
            return None
        uses[0] |= ~uses.any(axis=0)
        return list(uses)

    def _separable_mlp(self, mlp: MLPBlock, parts: list[np.ndarray]) -> None:
        """A numerical MLP's bound as the sum of its parts' bounds (see _separable_parts),
        each over its own SOp's values; float32's rounding of the output sum counts every
        unit of the whole MLP."""
        k_out = np.count_nonzero(mlp.w_out, axis=0)
        absolute = at_bos = bos_value = 0.0
        for units in parts:
            rows = np.flatnonzero(np.any(mlp.w_in[:, units] != 0, axis=1))
            sub = dataclasses.replace(
                mlp,
                inputs=tuple(mlp.inputs[i] for i in rows),
                w_in=mlp.w_in[np.ix_(rows, units)],
                w_out=mlp.w_out[units],
            )
            configs, errors = self._combinations(sub.inputs, f"MLP {mlp.label}'s input")
            out, total = _mlp_rows(sub, configs, errors, k_out)
            absolute += float(total[:-1, 0].max(initial=0.0))
            at_bos += float(total[-1, 0])
            bos_value += float(out[-1, 0])
        self.bound[mlp.label] = Bound(absolute, 0.0, at_bos + abs(bos_value))

    # ---------------------------------------------------------------- verdicts

    def judge(self, label: str, tolerance: float) -> SOpCertificate:
        loc = self.layout.sops[label]
        bound = self.bound.get(label, Bound(0.0))
        if not math.isfinite(bound.absolute):
            return SOpCertificate(label, loc.encoding, bound, False, "not certified")
        if loc.encoding is rasp.Encoding.CATEGORICAL:
            k = max(1, len(loc.directions))
            # The decoder wants the top entry >= 3/4 and the others' sum <= 1/4.
            used = bound.total if bound.total is not None else bound.absolute * k
            ok = bound.absolute < 0.25 and used <= 0.25
            worst = f"{k} directions, decoding margin {0.25 - used:.3g}"
            return SOpCertificate(label, loc.encoding, bound, bool(ok), worst)
        info = self.info.get(label, ValueInfo(nullable=False))
        values = np.array(info.values if info.values is not None else (info.low, info.high, 0.0), dtype=float)
        if info.values is not None and info.low <= 0 <= info.high:
            values = np.append(values, 0.0)  # BOS and no value read 0
        allowed = tolerance * np.maximum(1.0, np.abs(values))
        used = (bound.absolute + bound.relative * np.abs(values)) / allowed
        i = int(np.argmax(used)) if len(values) else 0
        worst = (
            f"tightest at value {values[i]:.6g}: {used[i]:.3g} of its tolerance"
            if len(values)
            else "no values"
        )
        return SOpCertificate(label, loc.encoding, bound, bool(np.all(used <= 1.0)), worst)


class _NotCertified(Exception):
    """A block the checker can't bound (the message says why)."""


def gamma_array(k: np.ndarray) -> np.ndarray:
    k = np.asarray(k, dtype=float)
    return k * U / (1 - k * U)


_MAX_GRID = 60


def _grid(values: np.ndarray) -> int | None:
    """The smallest m with every value an integer multiple of 2^-m (None: none up to 60)."""
    v = np.unique(np.abs(values[values != 0]))
    for m in range(_MAX_GRID + 1):
        scaled = v * 2.0**m
        if np.all(scaled == np.round(scaled)):
            return m
    return None


def _fits(sizes: np.ndarray, grid: int) -> bool:
    """Whether sums of multiples of 2^-grid up to `sizes` in size stay exact in float32: every
    partial sum is such a multiple below 2^24 * 2^-grid, which float32 holds exactly."""
    return bool(np.all(np.asarray(sizes) * 2.0**grid < 2.0**24))


def _exact_mlp(configs: np.ndarray, mlp: MLPBlock, hidden: np.ndarray) -> bool:
    """Whether float32 computes this MLP exactly on these exact inputs: float32 weights, and
    every product and partial sum on a grid float32 holds (see _fits)."""
    for w in (mlp.w_in, mlp.w_out):
        if not np.array_equal(w.astype(np.float32).astype(np.float64), w):
            return False
    for x, w in ((configs, mlp.w_in), (hidden, mlp.w_out)):
        if not np.array_equal(x.astype(np.float32).astype(np.float64), x):
            return False
        gx, gw = _grid(x), _grid(w)
        if gx is None or gw is None or not _fits(np.abs(x) @ np.abs(w), gx + gw):
            return False
    return True


def _sparse_product(left: np.ndarray, middle: np.ndarray, right: np.ndarray) -> np.ndarray:
    """left @ middle @ right.T ([n, a] @ [a, b] @ [b, m] -> [n, m]) with the outer two as
    sparse matrices (config rows hold a few non-zeros each)."""
    inner = scipy.sparse.csr_matrix(left) @ middle  # [n, b], dense
    return np.asarray((scipy.sparse.csr_matrix(right) @ inner.T).T)


def _exact_pair_table(wa: np.ndarray, wb: np.ndarray, bias: np.ndarray, mlp: MLPBlock) -> bool:
    """_exact_mlp for a pair table on exact one-hots, from per-unit sizes: every unit's
    pre-activation is at most |wa| + |wb| + |bias|, and every output sum at most the sum of
    all units' largest values times their weights (a bound over every pair of values)."""
    for w in (mlp.w_in, mlp.w_out):
        if not np.array_equal(w.astype(np.float32).astype(np.float64), w):
            return False
    g_in, g_out = _grid(mlp.w_in), _grid(mlp.w_out)
    if g_in is None or g_out is None:
        return False
    largest = np.abs(wa) + np.abs(wb) + np.abs(bias)  # [hidden]
    hidden = np.maximum.reduce([np.maximum(wa * p + wb * q + bias, 0.0) for p in (0, 1) for q in (0, 1)])
    return _fits(largest, g_in) and _fits(hidden @ np.abs(mlp.w_out), g_in + g_out)


def _reads_one_input(mlp: MLPBlock) -> np.ndarray:
    """[hidden] bool: units whose pre-activation is one input times its weight plus a bias
    (ONE times a constant): a two-term dot product."""
    reads = np.array([d != ONE for d in mlp.inputs], dtype=bool)
    one = np.array([d == ONE for d in mlp.inputs], dtype=bool)
    return (np.count_nonzero(mlp.w_in[reads], axis=0) == 1) & (np.count_nonzero(mlp.w_in[one], axis=0) <= 1)


def _two_term_rounding(mlp: MLPBlock, configs: np.ndarray, errors: np.ndarray, pre: np.ndarray) -> np.ndarray:
    """[configs, hidden]: float32's error in x*s + b (b = ONE's weight, and 1*b is exact),
    in any order, fused or not: at most u|x s| for the product (none when s is a power of
    two >= 1) and u|x s + b| for the sum (u(1+u) and u, both under gamma(1); gamma(2) keeps
    a margin). The generic bound, gamma(k)(|x s| + |b|), counts |b| in full: for a steep
    step x s and b nearly cancel, and it is many times this. x is the actual input: within
    `errors` of the config."""
    reads = np.array([d != ONE for d in mlp.inputs], dtype=bool)
    w = np.abs(mlp.w_in[reads])  # [inputs read, hidden]
    mantissa, _ = np.frexp(w.max(axis=0, initial=0.0))
    # x times a power of two >= 1 is exact in float32 (no underflow, and an overflow would
    # be inf, which no finite bound allows): then only the sum rounds.
    exact_product = (mantissa == 0.5) & (w.max(axis=0, initial=0.0) >= 1.0)  # [hidden]
    product = (np.abs(configs[:, reads]) + errors[:, reads]) @ w  # [configs, hidden]
    moved = errors[:, reads] @ w
    return gamma(2) * (np.where(exact_product[None, :], 0.0, product) + np.abs(pre) + moved)


def _linear_noise(mlp: MLPBlock, on: np.ndarray, errors: np.ndarray) -> np.ndarray:
    """[configs, outputs]: how far input errors move each output through the surely-on
    units, keeping their cancellation: units that read the inputs with the same weights
    (the two units of a clamp or a step; their biases differ) move together, so per output
    their weights add before taking the size. Groups are of (input weights, output) pairs:
    sum over groups of |sum of on units' output weights| * (errors @ |input weights|).
    Vectorised by sorting edges into groups (no dense edge x group matrix)."""
    w_in, w_out = mlp.w_in, mlp.w_out  # [inputs, hidden], [hidden, outputs]
    n_out = w_out.shape[1]
    reads = np.array([d != ONE for d in mlp.inputs], dtype=bool)
    units, outputs = np.nonzero(w_out)  # one edge per (unit, output) weight
    if not len(units):
        return np.zeros((len(on), n_out))
    # Units with equal input weights (bias aside) share a row id.
    _, unit_kind = np.unique(w_in[reads].T, axis=0, return_inverse=True)  # [hidden]
    unit_kind = np.asarray(unit_kind).reshape(-1)
    edge_key = unit_kind[units].astype(np.int64) * n_out + outputs  # [edges]
    order = np.argsort(edge_key, kind="stable")
    keys = edge_key[order]
    starts = np.flatnonzero(np.concatenate([[True], keys[1:] != keys[:-1]]))  # [groups]
    first_unit = units[order][starts]
    group_output = outputs[order][starts]
    weighted = on[:, units[order]] * w_out[units[order], outputs[order]][None, :]  # [configs, edges]
    coefficient = np.add.reduceat(weighted, starts, axis=1)  # [configs, groups]
    noise = errors[:, reads] @ np.abs(w_in[np.ix_(reads, first_unit)])  # [configs, groups]
    contribution = np.abs(coefficient) * noise  # [configs, groups]
    by_output = np.argsort(group_output, kind="stable")
    out_keys = group_output[by_output]
    out_starts = np.flatnonzero(np.concatenate([[True], out_keys[1:] != out_keys[:-1]]))
    result = np.zeros((len(on), n_out))
    result[:, out_keys[out_starts]] = np.add.reduceat(contribution[:, by_output], out_starts, axis=1)
    return result


def _mlp_rows(
    mlp: MLPBlock, configs: np.ndarray, errors: np.ndarray, k_out: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(ideal outputs, error bounds), both [configs, outputs], of an MLP on inputs within
    `errors` of `configs`; k_out: terms per output sum (the whole MLP's, for a part)."""
    w_in, w_out = mlp.w_in, mlp.w_out  # [inputs, hidden], [hidden, outputs]
    pre = configs @ w_in  # [n, hidden]
    k_in = np.count_nonzero(w_in, axis=0)  # terms per pre-activation
    noise = errors @ np.abs(w_in)  # input errors through the first layer
    f32_pre = gamma_array(k_in + 2) * ((np.abs(configs) + errors) @ np.abs(w_in))
    f32_pre = np.where(_reads_one_input(mlp)[None, :], _two_term_rounding(mlp, configs, errors, pre), f32_pre)
    radius = noise + f32_pre
    on = pre - radius >= 0
    off = pre + radius <= 0
    straddle = ~on & ~off
    hidden = np.maximum(pre, 0.0)
    out = hidden @ w_out  # [n, outputs], the ideal outputs
    # Surely-on units pass input noise linearly, so paired units' noise cancels.
    total = _linear_noise(mlp, on, errors)
    total += (on * f32_pre + straddle * radius) @ np.abs(w_out)
    total += gamma_array(k_out + 2)[None, :] * ((hidden + radius * ~off) @ np.abs(w_out))
    return out, total


def _mlp_bound(
    encoding: rasp.Encoding,
    blocks: Sequence[tuple[np.ndarray, np.ndarray]],
    bos_out: np.ndarray,
    bos_total: np.ndarray,
) -> Bound:
    """An MLP's bound from its ideal outputs and error bounds ([configs, outputs] blocks
    over the token-position configs, and the BOS row's [outputs])."""
    if encoding is rasp.Encoding.CATEGORICAL:
        absolute = at_bos = total_sum = 0.0
        nonzero = 0
        rows = [(out, total, False) for out, total in blocks] + [(bos_out[None, :], bos_total[None, :], True)]
        for out, total, is_bos in rows:
            ideal = np.clip(np.round(out), 0.0, 1.0)
            off_grid = np.abs(out - ideal).max(initial=0.0)
            if off_grid > 1e-6:
                raise _NotCertified(f"its ideal output is not a one-hot (off by {off_grid:.3g})")
            if (ideal.sum(axis=1) > 1).any():
                raise _NotCertified("its ideal output sets two values at once")
            err = total + np.abs(out - ideal)  # [configs, directions]
            # A direction whose ideal value is 0 and whose bound is 0 is exactly 0 (its units
            # are surely off, and sums of exact zeros are exact).
            nonzero = max(
                nonzero, int(np.count_nonzero((np.abs(out) > 0) | (err > 0), axis=1).max(initial=0))
            )
            total_sum = max(total_sum, float(err.sum(axis=1).max(initial=0.0)))
            if is_bos:
                at_bos = float(err.max(initial=0.0))
            else:
                absolute = max(absolute, float(err.max(initial=0.0)))
        return Bound(absolute, 0.0, at_bos, total_sum, nonzero)
    values = np.concatenate([out[:, 0] for out, _ in blocks]) if blocks else np.zeros(0)
    errors = np.concatenate([total[:, 0] for _, total in blocks]) if blocks else np.zeros(0)
    fitted = _fit(values, errors)
    return Bound(fitted.absolute, fitted.relative, float(bos_total[0] + abs(bos_out[0])))


def _blocks(directions: Sequence[Direction], owner) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for i, d in enumerate(directions):
        out.setdefault(owner(d), []).append(i)
    return out


def _fit(values: np.ndarray, errors: np.ndarray) -> Bound:
    """The smallest `absolute` for the best of a few `relative` slopes, so that
    errors <= absolute + relative * |values| (a value-aware bound: 0 stays tight beside 1e4)."""
    size = np.maximum(1.0, np.abs(values))
    candidates = []
    for relative in (0.0, 2.0**-22, 2.0**-20, 2.0**-17):
        absolute = max(0.0, float(np.max(errors - relative * np.abs(values), initial=0.0)))
        score = float(np.max((absolute + relative * np.abs(values)) / size, initial=0.0))
        candidates.append((score, relative, absolute))
    _, relative, absolute = min(candidates)
    return Bound(absolute, relative)
