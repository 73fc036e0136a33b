"""Head and MLP builders on their own (rasp_lab/compiler/head_blocks.py, mlp_blocks.py): a
block is read off its named weights and checked on every input value, without a model."""

import math

import numpy as np
import pytest

from rasp_lab import rasp
from rasp_lab.compiler import blocks, head_blocks, mlp_blocks
from rasp_lab.compiler.basis import ONE, Direction
from rasp_lab.compiler.block_context import BOS_QUERY_MARGIN, BuildContext
from rasp_lab.compiler.discretiser_plans import plan_discretisers
from rasp_lab.compiler.selector_plans import plan_selectors
from rasp_lab.value_sets import value_sets

C = rasp.Comparison
VOCAB = {0, 1, 2, 3}
N = 5


def context(program: rasp.SOp, leak: float = 1e-6) -> BuildContext:
    """The blocks pass's context for `program`, with every SOp below the output built."""
    sets = value_sets(program, VOCAB, N)
    discretisers = plan_discretisers(program, sets)
    plans = plan_selectors(discretisers.program, sets, "auto")
    assert plans.program is program and discretisers.program is program
    ctx = BuildContext(sets, plans, discretisers, bos="BOS", pad="PAD", leak=leak, causal=False)
    blocks._embedding_nodes(ctx)
    for label in sets.graph.order[:-1]:
        expr = sets.graph.nodes[label]
        if isinstance(expr, rasp.SOp) and label not in ctx.nodes:
            ctx.nodes[label] = blocks._build(ctx, label, expr)
    return ctx


def run_mlp(mlp, x: dict[Direction, float]) -> dict[Direction, float]:
    """The MLP on one residual row given by name: ReLU(x w_in) w_out, by output direction."""
    row = np.array([x.get(d, 0.0) for d in mlp.inputs])
    out = np.maximum(row @ mlp.w_in, 0.0) @ mlp.w_out
    return dict(zip(mlp.outputs, out))


@pytest.mark.parametrize(
    "f", [lambda t: t % 3, lambda t: None if t == 2 else t * t, lambda t: "even" if t % 2 == 0 else 7]
)
def test_a_categorical_map_mlp_is_exact_on_every_input_value(f):
    mapped = rasp.Map(f, rasp.tokens).named("mapped")
    ctx = context(mapped)
    node = mlp_blocks.categorical_map(ctx, "mapped", mapped, rasp.Encoding.CATEGORICAL)
    assert node.head is None and node.reads == ("tokens",) and node.error == 0
    for token in VOCAB:
        out = run_mlp(node.mlp, {ONE: 1.0, Direction("tokens", token): 1.0})
        want = f(token)
        assert {d.value: v for d, v in out.items() if v != 0} == ({} if want is None else {want: 1.0}), token
    assert not any(run_mlp(node.mlp, {Direction("BOS"): 1.0}).values())  # silent where ONE is 0 (BOS)


def test_a_numerical_map_mlp_hits_every_reachable_value():
    mean = rasp.numerical(
        rasp.Aggregate(
            rasp.Select(rasp.indices, rasp.indices, C.LEQ),
            rasp.numerical(rasp.Map(float, rasp.tokens)),
            default=0,
        )
    ).named("mean")
    squared = rasp.numerical(rasp.Map(lambda x: round(x * x, 3), mean)).named("squared")
    ctx = context(squared)
    node = mlp_blocks.numerical_map(ctx, "squared", squared, rasp.Encoding.NUMERICAL)
    (out_dir,) = node.directions
    values = sorted(v for v in ctx.sets["mean"] if v is not None)
    assert len(values) > 20
    for x in values:
        got = run_mlp(node.mlp, {ONE: 1.0, Direction("mean"): x})[out_dir]
        assert got == pytest.approx(round(x * x, 3), abs=1e-9), x
        # within the MLP's tolerance of x, the output does not move
        assert run_mlp(node.mlp, {ONE: 1.0, Direction("mean"): x + 0.9 * node.mlp.tolerance})[
            out_dir
        ] == pytest.approx(round(x * x, 3), abs=1e-9)


def test_a_linear_mlp_is_exact_for_any_input():
    a = rasp.numerical(rasp.Map(float, rasp.tokens)).named("a")
    b = rasp.numerical(rasp.Map(lambda t: t / 2, rasp.indices)).named("b")
    combo = rasp.numerical(rasp.LinearSequenceMap(a, b, 3, -2)).named("combo")
    ctx = context(combo)
    node = mlp_blocks.linear(ctx, "combo", combo)
    for x, y in [(0.0, 0.0), (-7.5, 2.25), (1e4, -3e3)]:
        assert run_mlp(node.mlp, {Direction("a"): x, Direction("b"): y})[Direction("combo")] == pytest.approx(
            3 * x - 2 * y
        )


def _logit(head, query: dict[Direction, float], key: dict[Direction, float]) -> float:
    q = np.array([query.get(d, 0.0) for d in head.query])
    k = np.array([key.get(d, 0.0) for d in head.key])
    return float(q @ head.w_qk @ k)


@pytest.mark.parametrize("predicate", [C.LT, C.EQ, C.GEQ, C.NEQ])
def test_a_head_from_a_table_ranks_selected_bos_unselected(predicate):
    agg = rasp.numerical(
        rasp.Aggregate(
            rasp.Select(rasp.tokens, rasp.tokens, predicate),
            rasp.numerical(rasp.Map(float, rasp.tokens)),
            default=0,
        )
    ).named("agg")
    ctx = context(agg, leak=1e-6)
    node = head_blocks.aggregate(ctx, "agg", agg, rasp.Encoding.NUMERICAL)
    head = node.head
    bos = ctx.bos_dir
    margin = head.margin
    for q in VOCAB:
        query = {ONE: 1.0, Direction("tokens", q): 1.0}
        bos_logit = _logit(head, query, {bos: 1.0})
        for k in VOCAB:
            logit = _logit(head, query, {ONE: 1.0, Direction("tokens", k): 1.0})
            if predicate(k, q):
                assert logit == pytest.approx(bos_logit + margin), (q, k)  # selected: one margin above BOS
            else:
                assert logit <= bos_logit - margin + 1e-9, (q, k)  # unselected: a margin below BOS
    # the BOS query attends only BOS, by BOS_QUERY_MARGIN margins
    assert _logit(head, {bos: 1.0}, {bos: 1.0}) == pytest.approx(BOS_QUERY_MARGIN * margin)
    # leak: every misplaced key's weight together is at most n_pos * exp(-coldness * margin)
    assert head.leak_bound == pytest.approx((N + 1) * math.exp(-head.coldness * margin))
    assert head.leak_bound <= 1e-6 / 3  # the leak is in value units: values up to 3
    assert node.reads[0] == "tokens" and len(node.reads) == 2  # the selector's SOp, then the averaged one


def test_a_width_head_attends_bos_and_the_selected_keys_alike():
    width = rasp.SelectorWidth(rasp.Select(rasp.tokens, rasp.tokens, C.LEQ)).named("w")
    ctx = context(width)
    node = head_blocks.width(ctx, "w", width.selector, rasp.Encoding.CATEGORICAL)
    head, mlp = node.head, node.mlp
    bos = ctx.bos_dir
    for q in VOCAB:
        query = {ONE: 1.0, Direction("tokens", q): 1.0}
        bos_logit = _logit(head, query, {bos: 1.0})
        for k in VOCAB:
            logit = _logit(head, query, {ONE: 1.0, Direction("tokens", k): 1.0})
            assert (logit == pytest.approx(bos_logit)) == (k <= q), (q, k)
    (scratch,) = head.output
    assert scratch in ctx.scratch
    assert head.value == (bos,)  # BOS's own share of the attention is what is read
    for w in range(N + 1):  # the decoder: BOS's share, 1 / (w + 1), read back as w
        out = run_mlp(mlp, {ONE: 1.0, scratch: 1 / (w + 1)})
        assert {d.value for d, v in out.items() if v > 0.5} == {w}


def test_a_numerical_map_of_a_one_hot_is_a_numerical_lookup():
    weights = rasp.numerical(rasp.Map(lambda t: t * 1.5 - 2, rasp.tokens)).named("weights")
    ctx = context(weights)
    node = mlp_blocks.categorical_map(ctx, "weights", weights, rasp.Encoding.NUMERICAL)
    assert node.mlp.kind == "numerical_lookup" and node.directions == (Direction("weights"),)
    for token in VOCAB:
        assert (
            run_mlp(node.mlp, {ONE: 1.0, Direction("tokens", token): 1.0})[Direction("weights")]
            == token * 1.5 - 2
        )
