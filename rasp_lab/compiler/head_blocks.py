"""Head blocks: a selector's plan (rasp_lab/compiler/selector_plans.py) becomes a Boolean
attention head: selected keys share the top logit, BOS one unit below, unselected keys at
least one unit below BOS. An Aggregate reads the head's output; a SelectorWidth (and
`length`) attends BOS too and decodes the share BOS got with a discretising MLP.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rasp_lab import rasp
from rasp_lab.artifact import HeadBlock
from rasp_lab.compiler.basis import ONE, Direction, matrix
from rasp_lab.compiler.block_context import BOS_QUERY_MARGIN, BuildContext, NodeBlock
from rasp_lab.compiler.mlp_blocks import discretiser
from rasp_lab.compiler.selector_plans import HeadPlan


@dataclass(frozen=True)
class QKPlan:
    """A head's QK table on named directions, before unused rows and columns are dropped."""

    query: tuple[Direction, ...]
    key: tuple[Direction, ...]
    table: np.ndarray
    """[len(query), len(key)] logits in table units (a margin apart), before coldness."""
    reads: tuple[str, ...]
    """Labels of the SOps the query and key sides read."""


def plan_qk(ctx: BuildContext, plan: HeadPlan) -> QKPlan:
    """QK (table units) from the plan's weights, on the SOps' named directions; both sides
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
        known = ctx.node(label).directions
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
    query = list(dict.fromkeys([ONE, ctx.bos_dir, *(d for feats in q_feats for f in feats for d, _ in f)]))
    key = list(dict.fromkeys([ONE, ctx.bos_dir, *(d for feats in k_feats for f in feats for d, _ in f)]))
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
    bos_k = (np.array([0]), np.array([k_index[ctx.bos_dir]]), np.array([1.0]))
    for (j, i), table in w.tables.items():
        scatter(q_coo[j], k_coo[i], np.asarray(table, dtype=float))
    for i, bias in w.key_bias.items():
        scatter(one_q, k_coo[i], np.asarray(bias, dtype=float)[None, :])
    for j, vec in w.bos_query.items():
        scatter(q_coo[j], bos_k, np.asarray(vec, dtype=float)[:, None])
    qk[q_index[ONE], k_index[ctx.bos_dir]] += w.bos_const
    # The BOS query has no ONE, so every other key scores 0 there: BOS wins by
    # BOS_QUERY_MARGIN margins, so the BOS position holds exactly 0 (see the constant).
    qk[q_index[ctx.bos_dir], k_index[ctx.bos_dir]] += BOS_QUERY_MARGIN * w.margin
    reads = tuple(dict.fromkeys([*plan.query_sops, *plan.key_sops]))
    return QKPlan(tuple(query), tuple(key), qk, reads)


def aggregate(ctx: BuildContext, label: str, expr: rasp.Aggregate, encoding: rasp.Encoding) -> NodeBlock:
    plan = ctx.plans.heads[label]
    qk = plan_qk(ctx, plan)
    sop = ctx.node(expr.sop.label)
    outputs = ctx.directions(label, encoding)
    if encoding is rasp.Encoding.NUMERICAL:
        value = sop.directions
        ov = {(sop.directions[0], outputs[0]): 1.0}
        low, high = ctx.numeric_range(sop.label)
        spread = max(high, 0.0) - min(low, 0.0)  # BOS contributes a 0
    else:
        out_values = {d.value for d in outputs}
        value = tuple(d for d in sop.directions if d.value in out_values)
        ov = {(d, Direction(label, d.value)): 1.0 for d in value}
        spread = 1.0
    # The leak moves a mean by up to leak * spread, and an output of 0 must stay within
    # 1e-4 however large the values are: the leak is a bound in value units.
    leak = ctx.leak / max(1.0, spread) if encoding is rasp.Encoding.NUMERICAL else ctx.leak
    built = head(
        ctx,
        label=label,
        selector=expr.selector.label,
        qk=qk,
        value=tuple(value),
        output=outputs,
        ov=ov,
        margin=plan.weights.margin,
        leak=leak,
        strategy=plan.strategy,
    )
    error = sop.error + 2 * built.leak_bound * spread
    return NodeBlock(
        label, encoding, outputs, built, None, tuple(dict.fromkeys([*qk.reads, sop.label])), error
    )


def head(
    ctx: BuildContext,
    *,
    label: str,
    selector: str,
    qk: QKPlan,
    value: tuple[Direction, ...],
    output: tuple[Direction, ...],
    ov: dict[tuple[Direction, Direction], float],
    margin: float,
    leak: float,
    strategy: str,
) -> HeadBlock:
    """A head from a QK array over (query, key) directions and named OV entries;
    directions whose QK row or column is all zero are dropped, so the head reads (and
    the model stores) only what it uses."""
    used_q = np.flatnonzero(np.any(qk.table != 0, axis=1))
    used_k = np.flatnonzero(np.any(qk.table != 0, axis=0))
    query_t = tuple(qk.query[i] for i in used_q)
    key_t = tuple(qk.key[i] for i in used_k)
    value_t = tuple(dict.fromkeys(value))
    coldness, bound = ctx.coldness(margin, leak)
    return HeadBlock(
        label=label,
        selector=selector,
        query=query_t,
        key=key_t,
        w_qk=qk.table[np.ix_(used_q, used_k)],
        value=value_t,
        output=tuple(output),
        w_ov=matrix(value_t, tuple(output), ov),
        margin=margin,
        coldness=coldness,
        leak_bound=bound,
        strategy=strategy,
    )


def width(
    ctx: BuildContext, label: str, selector: rasp.Selector | None, encoding: rasp.Encoding
) -> NodeBlock:
    """Attend to BOS and the selected keys alike and read BOS's share of the attention,
    1/(w+1), which decodes to the width w. The share is one product (BOS's weight times its
    exact 1; every other key adds an exact 0), so float32 rounds it relative to its own size
    and neighbouring widths stay apart up to thousands of positions; the complement
    w/(w+1), a sum of w weights, would round by about w units of 2^-24 and merge widths
    near 256. The BOS query attends only BOS and reads 1, as a width of 0 does."""
    if selector is None:  # `length`: every key, BOS included, has the same logit
        sides = (ONE, ctx.bos_dir)
        entries = {
            (ONE, ONE): 1.0,
            (ONE, ctx.bos_dir): 1.0,
            (ctx.bos_dir, ctx.bos_dir): BOS_QUERY_MARGIN,
        }
        qk = QKPlan(sides, sides, matrix(sides, sides, entries), ())
        selector_label, strategy = "length", "length"
    else:
        plan = ctx.plans.heads[label]
        qk = plan_qk(ctx, plan)
        selector_label, strategy = selector.label, plan.strategy
    scratch = Direction(f"{label}_selector_width_attn_output", internal=True)
    ctx.scratch.append(scratch)
    widths = [w for w in ctx.values(label) if isinstance(w, int)]
    shares = [1 / (w + 1) for w in widths]
    gaps = [abs(b - a) for a, b in zip(shares, shares[1:])]
    leak = min([ctx.leak] + [g / 8 for g in gaps])
    built = head(
        ctx,
        label=label,
        selector=selector_label,
        qk=qk,
        value=(ctx.bos_dir,),
        output=(scratch,),
        ov={(ctx.bos_dir, scratch): 1.0},
        margin=1.0,
        leak=leak,
        strategy=strategy,
    )
    outputs = ctx.directions(label, encoding)
    mlp = discretiser(
        ctx,
        label,
        "selector_width",
        scratch,
        [(share, w) for share, w in zip(shares, widths)],
        outputs,
        encoding,
    )
    return NodeBlock(label, encoding, outputs, built, mlp, qk.reads, mlp.rounding)
