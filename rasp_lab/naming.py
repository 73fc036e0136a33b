"""Every name rasp_lab gives a model's parts, in one place. The same layers go by four names:

- haiku parameter modules (Tracr's `params` contract): `haiku_prefix(0)` is
  "transformer/layer_0", with "/attn/query", "/attn/key", "/attn/value", "/attn/linear",
  "/mlp/linear_1", "/mlp/linear_2" below it; embeddings are TOKEN_EMBED and POS_EMBED;
- blocks, for the residual stream after each one (`ModelOutput.stream`, pictures):
  EMBED_BLOCK, then `block(0, "attn")` = "layer_0/attn", `block(0, "mlp")` = "layer_0/mlp";
- TransformerLens hooks and parameters: `tl(0, "hook_resid_pre")` = "blocks.0.hook_resid_pre";
- arrays in a model file: `file_array(0, "w_q")` = "layer_0.w_q", `head_array(0, 1, "w_qk")`
  = "layer_0.head_1.w_qk", `mlp_array(0, 2, "w_in")` = "layer_0.mlp_2.w_in".

Residual directions are named "sop:value" by rasp_lab/artifact.py.
"""

from __future__ import annotations

TOKEN_EMBED = "token_embed"
POS_EMBED = "pos_embed"
EMBED_BLOCK = "embed"


def haiku_layer(layer: int) -> str:
    """The haiku module name of one layer, inside the "transformer" module."""
    return f"layer_{layer}"


def haiku_prefix(layer: int) -> str:
    """The haiku parameter path of one layer's modules."""
    return f"transformer/{haiku_layer(layer)}"


def block(layer: int, part: str) -> str:
    """A block's name: `part` is "attn" or "mlp"."""
    return f"layer_{layer}/{part}"


def tl(layer: int, name: str) -> str:
    """A TransformerLens hook or parameter of one layer, e.g. "attn.hook_z", "mlp.W_in"."""
    return f"blocks.{layer}.{name}"


def file_layer(layer: int) -> str:
    """The prefix of one layer's arrays in a model file."""
    return f"layer_{layer}"


def file_array(layer: int, part: str) -> str:
    return f"{file_layer(layer)}.{part}"


def head_array(layer: int, head: int, part: str) -> str:
    return f"{file_layer(layer)}.head_{head}.{part}"


def mlp_array(layer: int, mlp: int, part: str) -> str:
    return f"{file_layer(layer)}.mlp_{mlp}.{part}"
