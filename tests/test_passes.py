"""The passes after blocks, each on its own: layer allocation, residual layout, assembly.
Each is run on the blocks of a small program and checked against what it promises."""

import numpy as np
import pytest

from rasp_lab import rasp
from rasp_lab.compiler.assemble import assemble
from rasp_lab.compiler.blocks import build_blocks
from rasp_lab.compiler.discretiser_plans import plan_discretisers
from rasp_lab.compiler.layers import EMBEDDED, allocate_layers
from rasp_lab.compiler.layout import residual_layout
from rasp_lab.compiler.selector_plans import plan_selectors
from rasp_lab.value_sets import value_sets

C = rasp.Comparison


def _program() -> rasp.SOp:
    """Two independent branches (a lookup and a width) and a head reading both."""
    parity = rasp.Map(lambda t: t % 2, rasp.tokens).named("parity")
    width = rasp.SelectorWidth(rasp.Select(rasp.tokens, rasp.tokens, C.LT)).named("smaller")
    same = rasp.Select(parity, parity, C.EQ).named("same_parity")
    flag = rasp.numerical(rasp.Map(lambda w: 1 if w > 0 else 0, width)).named("has_smaller")
    return rasp.numerical(rasp.Aggregate(same, flag, default=0)).named("share")


@pytest.fixture(scope="module")
def passes():
    program = _program()
    sets = value_sets(program, {0, 1, 2, 3}, 5)
    discretisers = plan_discretisers(program, sets)
    plans = plan_selectors(program, sets)
    blocks = build_blocks(sets, plans, discretisers, bos="BOS", pad="PAD", leak=1e-6)
    layers = allocate_layers(blocks)
    layout = residual_layout(blocks, layers)
    return blocks, layers, layout, assemble(blocks, layers, layout)


def test_layers_place_every_block_after_what_it_reads_and_no_later(passes):
    blocks, layers, _, _ = passes
    placements = layers.placements
    for label, node in blocks.nodes.items():
        p = placements[label]
        inputs_ready = max([EMBEDDED] + [placements[r].ready for r in node.reads])
        assert p.ready > inputs_ready or (node.head is None and node.mlp is None)
        if node.head is not None:  # the first attention sublayer after its inputs
            assert 2 * p.head_layer in (inputs_ready + 1, inputs_ready + 2)
        if node.mlp is not None and node.head is None:
            assert 2 * p.mlp_layer + 1 in (inputs_ready + 1, inputs_ready + 2)
    assert placements["parity"].mlp_layer == 0 and placements["smaller"].head_layer == 0  # side by side
    assert layers.heads(0) == ["smaller"] and set(layers.mlps(0)) == {"parity", "smaller"}
    assert layers.num_layers == max(p.ready for p in placements.values()) // 2 + 1


def test_layout_gives_each_sop_one_contiguous_span_of_its_directions(passes):
    blocks, _, layout, _ = passes
    seen = set()
    for label, node in blocks.nodes.items():
        location = layout.sops[label]
        span = layout.directions[location.start : location.stop]
        assert tuple(span) == tuple(location.directions) == tuple(node.directions), label
        assert all(layout.index[d] == location.start + i for i, d in enumerate(span))
        assert seen.isdisjoint(span)
        seen.update(span)
    assert len(set(layout.directions)) == len(layout.directions) == layout.width
    assert [str(d) for d in layout.sops["parity"].directions] == ["parity:0", "parity:1"]


def test_assembly_writes_each_block_into_its_layer_exactly(passes):
    blocks, layers, layout, weights = passes
    index = layout.index
    for label, node in blocks.nodes.items():
        p = layers.placements[label]
        if node.head is not None:
            lw = weights.layers[p.head_layer]
            (head,) = [h for h in lw.heads if h.label == label]
            i = lw.heads.index(head)
            q = [index[d] for d in head.query]
            k = [index[d] for d in head.key]
            qk = lw.w_q[:, i, :] @ lw.w_k[:, i, :].T  # [d_model, d_model]
            # W_Q W_K^T carries coldness * sqrt(head_size) (haiku divides by the latter); the
            # assembled head's coldness is the block's, rounded up to a dyadic scale.
            assembled = lw.heads[i]
            assert assembled.coldness >= head.coldness
            scale = assembled.coldness * np.sqrt(lw.head_size)
            np.testing.assert_allclose(qk[np.ix_(q, k)] / scale, head.w_qk, atol=1e-9)
        if node.mlp is not None:
            lw = weights.layers[p.mlp_layer]
            (mlp,) = [m for m in lw.mlps if m.label == label]
            assert mlp.w_in.shape[0] == len(mlp.inputs) and mlp.w_out.shape[1] == len(mlp.outputs)
    assert len(weights.layers) == layers.num_layers
    assert weights.token_embed.shape == (4 + 2, layout.width) and weights.pos_embed.shape == (
        5 + 1,
        layout.width,
    )
