"""Pass: every SOp of the program -> the block that computes it, in named directions.

- categorical Map / SequenceMap -> lookup MLP (one hidden unit per input value or pair);
- numerical Map -> discretising MLP with per-threshold sharpness from the value set (a Map
  split by discretiser_plans: a one-hot discretiser, then a clamped read of its value);
- numerical LinearSequenceMap -> exact linear MLP (ReLU(x) - ReLU(-x));
- Aggregate -> Boolean head from the selector's plan: selected keys share the top logit,
  BOS one unit below, unselected keys at least one unit below BOS;
- SelectorWidth and `length` -> head that always attends BOS too, then a decoding MLP.

The pass reads as: embedding, then each SOp in the program's order dispatched to a head
builder (rasp_lab/compiler/head_blocks.py) or an MLP builder (rasp_lab/compiler/mlp_blocks.py),
all plain functions of one BuildContext (rasp_lab/compiler/block_context.py).

Conventions every block keeps: at the BOS position every SOp direction is 0 (hidden units
are silenced there and the BOS query attends only to BOS), so BOS is a neutral default:
a head that selects nothing reads 0 (numerical) or the empty one-hot, i.e. None.
"""

from __future__ import annotations

from typing import Any

from rasp_lab import rasp
from rasp_lab.artifact import ValueInfo
from rasp_lab.compiler.basis import ONE, Direction, categorical_directions
from rasp_lab.compiler.block_context import (
    BOS_DIRECTION_NAME,
    BOS_QUERY_MARGIN,
    NOISY_ONE_HOT,
    BlockPlan,
    BuildContext,
    Embedding,
    NeedsPrecision,
    NodeBlock,
)
from rasp_lab.compiler.discretiser_plans import DiscretiserPlans
from rasp_lab.compiler.head_blocks import aggregate, width
from rasp_lab.compiler.mlp_blocks import (
    categorical_map,
    clamped_read,
    largest_output,
    linear,
    numerical_map,
    sequence_map,
)
from rasp_lab.compiler.selector_plans import SelectorPlans
from rasp_lab.errors import CompileError
from rasp_lab.value_sets import ValueSets
from rasp_lab.values import sort_values

__all__ = [
    "BOS_DIRECTION_NAME",
    "BOS_QUERY_MARGIN",
    "NOISY_ONE_HOT",
    "BlockPlan",
    "Embedding",
    "NeedsPrecision",
    "NodeBlock",
    "build_blocks",
]


def build_blocks(
    sets: ValueSets,
    plans: SelectorPlans,
    discretisers: DiscretiserPlans,
    *,
    bos: Any,
    pad: Any,
    leak: float,
    causal: bool = False,
) -> BlockPlan:
    """Blocks for every SOp of the program `sets` was inferred for (`sets.graph`); heads
    follow `plans`; `leak` bounds each head's misplaced attention; the Maps `discretisers`
    split read their one-hot through clamps."""
    graph = sets.graph
    ctx = BuildContext(sets, plans, discretisers, bos=bos, pad=pad, leak=leak, causal=causal)
    _embedding_nodes(ctx)
    for label in graph.order:
        expr = graph.nodes[label]
        if isinstance(expr, rasp.SOp) and label not in ctx.nodes:
            ctx.nodes[label] = _build(ctx, label, expr)
    return BlockPlan(
        nodes=ctx.nodes,
        embedding=_embedding(ctx),
        output=graph.output.label,
        bos_direction=ctx.bos_dir,
        scratch=tuple(ctx.scratch),
        value_info={label: _value_info(ctx, label, node) for label, node in ctx.nodes.items()},
    )


def _value_info(ctx: BuildContext, label: str, node: NodeBlock) -> ValueInfo:
    values = ctx.sets.sets.get(label)
    nullable = values is not None and None in values
    if node.encoding is not rasp.Encoding.NUMERICAL:
        return ValueInfo(nullable=nullable)
    low, high = ctx.numeric_range(label)
    listed = None if values is None else tuple(sorted(float(v) for v in values if v is not None))
    return ValueInfo(nullable=nullable, values=listed, low=low, high=high)


def _embedding_nodes(ctx: BuildContext) -> None:
    vocab = ctx.sets.vocab
    if ctx.bos in vocab or ctx.pad in vocab or ctx.bos == ctx.pad:
        raise CompileError(
            "tokens",
            f"BOS {ctx.bos!r} and PAD {ctx.pad!r} must be distinct and not in the vocab {sort_values(vocab)}",
        )
    ctx.nodes["tokens"] = NodeBlock(
        "tokens", rasp.Encoding.CATEGORICAL, categorical_directions("tokens", vocab), None, None, (), 0.0
    )
    ctx.nodes["indices"] = NodeBlock(
        "indices",
        rasp.Encoding.CATEGORICAL,
        categorical_directions("indices", range(ctx.n)),
        None,
        None,
        (),
        0.0,
    )


def _embedding(ctx: BuildContext) -> Embedding:
    vocab = sort_values(ctx.sets.vocab)
    fulls = [ctx.graph.nodes[lbl] for lbl in ctx.graph.order if isinstance(ctx.graph.nodes[lbl], rasp.Full)]
    consts = [
        ctx.graph.nodes[lbl] for lbl in ctx.graph.order if isinstance(ctx.graph.nodes[lbl], rasp.ConstantSOp)
    ]
    token_rows: list[dict[Direction, float]] = []
    for token in vocab:
        row = {ONE: 1.0, Direction("tokens", token): 1.0}
        for full in fulls:
            row.update(_constant_entry(ctx, full, full.fill))
        token_rows.append(row)
    token_rows.append({ctx.bos_dir: 1.0})  # not ONE: no bias reaches the BOS position
    token_rows.append({})  # PAD writes nothing; heads mask it as a key
    position_rows: list[dict[Direction, float]] = [{}]
    for index in range(ctx.n):
        row = {Direction("indices", index): 1.0}
        for const in consts:
            if index < len(const.value):
                row.update(_constant_entry(ctx, const, const.value[index]))
        position_rows.append(row)
    return Embedding(
        tokens=(*vocab, ctx.bos, ctx.pad),
        bos=ctx.bos,
        pad=ctx.pad,
        token_rows=tuple(token_rows),
        position_rows=tuple(position_rows),
    )


def _constant_entry(ctx: BuildContext, expr: rasp.SOp, value: Any) -> dict[Direction, float]:
    if value is None:
        return {}
    if rasp.is_numerical(expr):
        return {Direction(expr.label): float(value)}
    return {Direction(expr.label, value): 1.0}


def _build(ctx: BuildContext, label: str, expr: rasp.SOp) -> NodeBlock:
    encoding = rasp.get_encoding(expr)
    if isinstance(expr, (rasp.Full, rasp.ConstantSOp)):
        ctx.exact.add(label)
        return NodeBlock(label, encoding, ctx.directions(label, encoding), None, None, (), 0.0)
    if isinstance(expr, rasp.LinearSequenceMap) and rasp.is_numerical(expr) and rasp.is_numerical(expr.fst):
        return linear(ctx, label, expr)
    if isinstance(expr, rasp.SequenceMap):
        return sequence_map(ctx, label, expr, encoding)
    if isinstance(expr, rasp.Map):
        if rasp.is_numerical(expr.inner):
            return numerical_map(ctx, label, expr, encoding)
        noisy = ctx.node(expr.inner.label).error * largest_output(ctx, expr) > NOISY_ONE_HOT
        clean = label in ctx.averaging_reads and ctx.node(expr.inner.label).error > 0
        if label in ctx.discretisers.splits or clean or (encoding is rasp.Encoding.NUMERICAL and noisy):
            return clamped_read(ctx, label, expr, encoding)
        return categorical_map(ctx, label, expr, encoding)
    if isinstance(expr, rasp.Aggregate):
        return aggregate(ctx, label, expr, encoding)
    if isinstance(expr, rasp.SelectorWidth):
        return width(ctx, label, expr.selector, encoding)
    if isinstance(expr, rasp.LengthType):
        if ctx.causal:
            raise CompileError(
                label,
                "`length` counts every position, which a causal model can't see; use "
                "SelectorWidth(Select(tokens, tokens, TRUE)), which counts the visible ones",
            )
        return width(ctx, label, None, encoding)
    raise CompileError(label, f"no block for {type(expr).__name__}")
