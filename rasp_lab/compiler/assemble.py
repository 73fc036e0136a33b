"""Pass: named blocks -> weight arrays on the residual stream.

Each layer is as wide as its own blocks need (its heads, its head size, its MLP width);
`pad` widens every layer to the largest for the fixed-shape layout other tools read.
Coldness, and the sqrt(head_size) that attention divides logits by, are folded into W_Q,
so a head's real logit gap is exactly coldness * margin.
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING

import numpy as np

from rasp_lab.artifact import HeadBlock, LayerWeights, MLPBlock, ResidualLayout, Weights, pad

if TYPE_CHECKING:
    from rasp_lab.compiler.blocks import BlockPlan
    from rasp_lab.compiler.layers import LayerAllocation

__all__ = ["assemble", "pad", "LayerWeights", "Weights"]


def _embed(layout: ResidualLayout, rows) -> np.ndarray:
    out = np.zeros((len(rows), layout.width))  # [n_rows, d_model]
    for i, row in enumerate(rows):
        for direction, value in row.items():
            out[i, layout.index[direction]] = value
    return out


def _selector_matrix(layout: ResidualLayout, directions) -> np.ndarray:
    """[d_model, len(directions)]: reads the named directions."""
    out = np.zeros((layout.width, len(directions)))
    for j, direction in enumerate(directions):
        out[layout.index[direction], j] = 1.0
    return out


SCALE_QUANTUM = 1 / 64
"""W_Q's factor coldness * sqrt(head_size) is rounded up to a multiple of this. With the
tables' small dyadic entries every W_Q entry is then exact in float32, and so is every
logit's dot product on clean one-hots: keys that tie in the table tie bit for bit in the
model, and a head averages them with exactly equal weights (rasp_lab/certificate.py)."""


def _dyadic_coldness(head: HeadBlock, head_size: int) -> HeadBlock:
    """The head with its coldness raised (by < 1/64 / sqrt(head_size)) so that
    coldness * sqrt(head_size) is a multiple of SCALE_QUANTUM; a colder head leaks less."""
    scale = math.ceil(head.coldness * math.sqrt(head_size) / SCALE_QUANTUM) * SCALE_QUANTUM
    coldness = max(head.coldness, scale / math.sqrt(head_size))
    # leak_bound = n * exp(-coldness * margin): the same n, a colder head.
    leak_bound = head.leak_bound * math.exp(-(coldness - head.coldness) * head.margin)
    return dataclasses.replace(head, coldness=coldness, leak_bound=leak_bound)


def _scale(head: HeadBlock, head_size: int) -> float:
    """coldness * sqrt(head_size), on the SCALE_QUANTUM grid (exact, whatever float64 did
    to coldness = scale / sqrt(head_size))."""
    return round(head.coldness * math.sqrt(head_size) / SCALE_QUANTUM) * SCALE_QUANTUM


def _head_matrices(layout: ResidualLayout, head: HeadBlock, head_size: int) -> tuple[np.ndarray, ...]:
    """W_Q, W_K, W_V [d_model, head_size] and W_O [head_size, d_model] for one head."""
    scale = _scale(head, head_size)
    e_q, e_k = _selector_matrix(layout, head.query), _selector_matrix(layout, head.key)
    if len(head.key) <= len(head.query):
        w_q, w_k = e_q @ head.w_qk * scale, e_k  # [d, |key|] each
    else:
        w_q, w_k = e_q * scale, e_k @ head.w_qk.T  # [d, |query|] each
    e_v, e_o = _selector_matrix(layout, head.value), _selector_matrix(layout, head.output)
    if len(head.value) <= len(head.output):
        w_v, w_o = e_v, head.w_ov @ e_o.T  # [d, |value|], [|value|, d]
    else:
        w_v, w_o = e_v @ head.w_ov, e_o.T  # [d, |output|], [|output|, d]
    return tuple(_pad_cols(m, head_size) for m in (w_q, w_k, w_v)) + (_pad_rows(w_o, head_size),)


def _pad_cols(m: np.ndarray, size: int) -> np.ndarray:
    return np.pad(m, ((0, 0), (0, size - m.shape[1])))


def _pad_rows(m: np.ndarray, size: int) -> np.ndarray:
    return np.pad(m, ((0, size - m.shape[0]), (0, 0)))


def _layer(layout: ResidualLayout, heads: list[HeadBlock], mlps: list[MLPBlock]) -> LayerWeights:
    d = layout.width
    head_size = max([1] + [max(h.key_size, h.value_size) for h in heads])
    heads = [_dyadic_coldness(h, head_size) for h in heads]
    per_head = [_head_matrices(layout, h, head_size) for h in heads]
    if per_head:
        w_q, w_k, w_v = (np.stack([m[i] for m in per_head], axis=1) for i in range(3))  # [d, H, hs]
        w_o = np.stack([m[3] for m in per_head], axis=0)  # [H, hs, d]
    else:
        w_q = w_k = w_v = np.zeros((d, 0, head_size))
        w_o = np.zeros((0, head_size, d))
    hidden = sum(m.hidden for m in mlps)
    w_1 = np.zeros((d, hidden))  # [d_model, mlp_hidden]
    w_2 = np.zeros((hidden, d))  # [mlp_hidden, d_model]
    offset = 0
    for mlp in mlps:
        cols = slice(offset, offset + mlp.hidden)
        w_1[[layout.index[x] for x in mlp.inputs], cols] = mlp.w_in
        w_2[cols, [layout.index[x] for x in mlp.outputs]] = mlp.w_out
        offset += mlp.hidden
    return LayerWeights(tuple(heads), tuple(mlps), w_q, w_k, w_v, w_o, w_1, w_2)


def assemble(plan: BlockPlan, layers: LayerAllocation, layout: ResidualLayout) -> Weights:
    emb = plan.embedding
    token_embed = _embed(layout, emb.token_rows)
    pos_embed = _embed(layout, emb.position_rows)
    built = []
    for layer in range(layers.num_layers):
        heads = [plan.nodes[label].head for label in layers.heads(layer)]
        mlps = [plan.nodes[label].mlp for label in layers.mlps(layer)]
        built.append(_layer(layout, heads, mlps))  # type: ignore[arg-type]
    return Weights(token_embed=token_embed, pos_embed=pos_embed, layers=tuple(built))
