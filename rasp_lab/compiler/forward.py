"""The transformer's forward pass, twice: in dm-haiku (the model) and in plain numpy (its
oracle). Both read the same parameter dict, keyed as Tracr's haiku models are:

    token_embed/embeddings                      [n_tokens, d_model]
    pos_embed/embeddings                        [max_seq_len + 1, d_model]
    transformer/layer_{l}/attn/{query,key,value} w: [d_model, heads * head_size], b: [heads * head_size]
    transformer/layer_{l}/attn/linear           w: [heads * head_size, d_model], b: [d_model]
    transformer/layer_{l}/mlp/linear_1          w: [d_model, hidden], b: [hidden]
    transformer/layer_{l}/mlp/linear_2          w: [hidden, d_model], b: [d_model]

Shapes are read from the arrays, so per-layer widths may differ. Activations:
residual [batch, seq, d_model]; attention pattern [batch, heads, query, key].
Only this module imports haiku.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np

from rasp_lab import naming

Params = Mapping[str, Mapping[str, np.ndarray]]

MASKED = -1e30
"""Logit given to masked keys (PAD, and future keys in a causal model)."""


@dataclass(frozen=True)
class LayerShape:
    num_heads: int
    head_size: int
    mlp_hidden: int


def attention_mask(token_ids, pad_id: int, causal: bool):
    """[batch, 1, query, key] boolean: True where a query may attend to a key."""
    xp = jnp if isinstance(token_ids, jax.Array) else np
    keys_ok = token_ids != pad_id  # [batch, seq]
    mask = keys_ok[:, None, None, :]
    if causal:
        seq = token_ids.shape[1]
        mask = mask & xp.tril(xp.ones((seq, seq), dtype=bool))[None, None]
    return mask


class _Attention(hk.Module):
    def __init__(self, num_heads: int, head_size: int, name: str = "attn") -> None:
        super().__init__(name=name)
        self.num_heads, self.head_size = num_heads, head_size

    def __call__(self, x, mask):
        batch, seq, d_model = x.shape
        heads, size = self.num_heads, self.head_size
        zeros = hk.initializers.Constant(0.0)

        def project(name: str):
            out = hk.Linear(heads * size, w_init=zeros, name=name)(x)  # [batch, seq, heads * size]
            return out.reshape(batch, seq, heads, size)

        q, k, v = project("query"), project("key"), project("value")
        logits = jnp.einsum("bqhd,bkhd->bhqk", q, k) / np.sqrt(size)  # [batch, heads, query, key]
        logits = jnp.where(mask, logits, MASKED)
        pattern = jax.nn.softmax(logits, axis=-1)  # [batch, heads, query, key]
        z = jnp.einsum("bhqk,bkhd->bqhd", pattern, v).reshape(batch, seq, heads * size)
        return hk.Linear(d_model, w_init=zeros, name="linear")(z), pattern


class _MLP(hk.Module):
    def __init__(self, hidden: int, name: str = "mlp") -> None:
        super().__init__(name=name)
        self.hidden = hidden

    def __call__(self, x):
        zeros = hk.initializers.Constant(0.0)
        h = jax.nn.relu(hk.Linear(self.hidden, w_init=zeros, name="linear_1")(x))  # [batch, seq, hidden]
        return hk.Linear(x.shape[-1], w_init=zeros, name="linear_2")(h)


class _Layer(hk.Module):
    def __init__(self, shape: LayerShape, name: str) -> None:
        super().__init__(name=name)
        self.shape = shape

    def __call__(self, x, mask):
        attn_out, pattern = _Attention(self.shape.num_heads, self.shape.head_size)(x, mask)
        x = x + attn_out
        after_attn = x
        x = x + _MLP(self.shape.mlp_hidden)(x)
        return x, after_attn, pattern


class _Transformer(hk.Module):
    def __init__(self, shapes: list[LayerShape], name: str = "transformer") -> None:
        super().__init__(name=name)
        self.shapes = shapes

    def __call__(self, x, mask):
        residuals, patterns = [x], []
        for layer, shape in enumerate(self.shapes):
            x, after_attn, pattern = _Layer(shape, name=naming.haiku_layer(layer))(x, mask)
            residuals += [after_attn, x]
            patterns.append(pattern)
        return residuals, patterns


def haiku_forward(
    shapes: list[LayerShape], n_tokens: int, d_model: int, max_positions: int, pad_id: int, causal: bool
):
    """A haiku-transformed function ids [batch, seq] -> (residuals, patterns).

    residuals: list of [batch, seq, d_model]: embeddings, then after each attention and MLP.
    patterns: list of [batch, heads, query, key], one per layer.
    """

    def forward(token_ids):
        zeros = hk.initializers.Constant(0.0)
        tokens = hk.Embed(n_tokens, d_model, w_init=zeros, name="token_embed")(token_ids)
        positions = jnp.arange(token_ids.shape[1])
        pos = hk.Embed(max_positions, d_model, w_init=zeros, name="pos_embed")(positions)
        x = tokens + pos[None]  # [batch, seq, d_model]
        return _Transformer(shapes)(x, attention_mask(token_ids, pad_id, causal))

    return hk.without_apply_rng(hk.transform(forward))


def numpy_forward(params: Params, shapes: list[LayerShape], token_ids: np.ndarray, pad_id: int, causal: bool):
    """The same forward pass in float64 numpy, written without haiku: the oracle."""
    params = {
        name: {k: np.asarray(v, dtype=np.float64) for k, v in group.items()} for name, group in params.items()
    }
    ids = np.asarray(token_ids)
    x = params["token_embed"]["embeddings"][ids] + params["pos_embed"]["embeddings"][: ids.shape[1]][None]
    mask = attention_mask(ids, pad_id, causal)
    residuals, patterns = [x], []
    for layer, shape in enumerate(shapes):
        p = naming.haiku_prefix(layer)
        batch, seq, _ = x.shape

        def project(name: str, x=x, p=p, shape=shape, batch=batch, seq=seq):
            out = x @ params[f"{p}/attn/{name}"]["w"] + params[f"{p}/attn/{name}"]["b"]
            return out.reshape(batch, seq, shape.num_heads, shape.head_size)

        q, k, v = project("query"), project("key"), project("value")
        logits = np.einsum("bqhd,bkhd->bhqk", q, k) / np.sqrt(shape.head_size)
        logits = np.where(mask, logits, MASKED)
        logits = logits - logits.max(axis=-1, keepdims=True)
        weights = np.exp(logits)
        pattern = weights / weights.sum(axis=-1, keepdims=True)
        z = np.einsum("bhqk,bkhd->bqhd", pattern, v).reshape(batch, seq, shape.num_heads * shape.head_size)
        x = x + z @ params[f"{p}/attn/linear"]["w"] + params[f"{p}/attn/linear"]["b"]
        residuals.append(x)
        h = np.maximum(0.0, x @ params[f"{p}/mlp/linear_1"]["w"] + params[f"{p}/mlp/linear_1"]["b"])
        x = x + h @ params[f"{p}/mlp/linear_2"]["w"] + params[f"{p}/mlp/linear_2"]["b"]
        residuals.append(x)
        patterns.append(pattern)
    return residuals, patterns
