"""Export a compiled model to TransformerLens (optional extra `tl`).

    pip install torch --index-url https://download.pytorch.org/whl/cpu   # CPU-only torch first
    pip install -e ".[tl]"             # torch >= 2.1, transformer-lens >= 2.0, < 4

(torch from PyPI is the CUDA build; the extra adds about 1.4 GB and 67 packages even so.)

`to_transformer_lens(model)` builds a `transformer_lens.HookedTransformer` from the Tracr
attribute contract (`params`, `model_config`, `input_encoder`, `output_location`), as
TransformerLens' own Tracr demo does: no layer norm, ReLU MLPs, causal or bidirectional
attention as compiled, logits divided by sqrt(d_head) (the compiler's W_Q already
compensates). The residual stream is the compiled model's, direction for direction, so
`run_with_cache(tokens)["blocks.{l}.hook_resid_post"]` equals the residual after layer l of
`model.apply`; the unembedding reads the output SOp's directions: one logit per output
value (in `model.output_encoder.encoding_map` order) for a categorical output, a single
column holding the value for a numerical one.

Input: token ids `model.input_encoder.encode(["BOS", *xs])` (or `to_tokens`), [batch, pos],
never PAD: a bidirectional HookedTransformer does not mask padding, so batch inputs of one
length together. A categorical output with no value at a position (None; BOS always)
shows as all logits near 0: `decode_logits` reads logits as `model.run` does.

`ground_truth_circuit` (which heads and MLPs compute which SOp, in TransformerLens hook
names) lives in rasp_lab.circuit and needs no torch; it is re-exported here.

TransformerLens 4 removed HookedTransformer (its TransformerBridge wraps Hugging Face
models only), so the extra pins transformer-lens < 4. `import rasp_lab` never imports torch;
importing this module without torch or transformer-lens raises ImportError saying what to
install.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from rasp_lab import naming
from rasp_lab.circuit import ground_truth_circuit

_INSTALL = (
    'install the TransformerLens extra: pip install "rasp-lab[tl]" (pip install -e ".[tl]" in a '
    "checkout). Install torch from PyTorch's CPU wheel index first (pip install torch --index-url "
    "https://download.pytorch.org/whl/cpu) on a machine without a GPU: from PyPI, pip pulls the "
    "multi-GB CUDA build"
)

try:
    import torch
except ImportError as err:  # pragma: no cover - exercised in environments without torch
    raise ImportError(f"rasp_lab.tl_export needs torch: {_INSTALL}") from err

try:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from transformer_lens import HookedTransformer, HookedTransformerConfig
except ImportError as err:  # pragma: no cover - exercised in environments without transformer_lens
    raise ImportError(
        f"rasp_lab.tl_export needs transformer-lens >= 2.0, < 4 (version 4 removed HookedTransformer): {_INSTALL}"
    ) from err

__all__ = [
    "to_transformer_lens",
    "to_tokens",
    "decode_logits",
    "ground_truth_circuit",
    "config",
    "state_dict",
    "unembedding",
]


def _shapes(model: Any) -> tuple[int, int, int, int]:
    """(layers, heads, d_head, d_mlp) of the padded parameters (`model.model_config`)."""
    c = model.model_config
    query = model.params["transformer/layer_0/attn/query"]["w"]  # [d_model, heads * d_head]
    mlp = model.params["transformer/layer_0/mlp/linear_1"]["w"]  # [d_model, d_mlp]
    if query.shape[1] != c.num_heads * c.key_size or mlp.shape[1] != c.mlp_hidden_size:
        raise ValueError(f"params do not have the padded shapes model_config states: {c}")
    return c.num_layers, c.num_heads, c.key_size, c.mlp_hidden_size


def unembedding(model: Any) -> np.ndarray:
    """[d_model, d_vocab_out]: reads the output SOp's directions (one column if numerical)."""
    location = model.output_location
    d_model = len(model.residual_labels)
    w_u = np.zeros((d_model, location.stop - location.start), dtype=np.float32)
    w_u[np.arange(location.start, location.stop), np.arange(location.stop - location.start)] = 1.0
    return w_u


def state_dict(model: Any) -> dict[str, np.ndarray]:
    """The compiled model's parameters under HookedTransformer's names and shapes (float32
    numpy arrays): embed.W_E, pos_embed.W_pos, blocks.{l}.attn.W_Q/W_K/W_V [heads, d_model,
    d_head], W_O [heads, d_head, d_model], b_Q/b_K/b_V [heads, d_head], b_O, blocks.{l}.mlp.W_in
    [d_model, d_mlp], b_in, W_out [d_mlp, d_model], b_out, unembed.W_U [d_model, d_vocab_out], b_U."""
    params = model.params
    layers, heads, d_head, d_mlp = _shapes(model)
    d_model = len(model.residual_labels)
    f32 = np.float32
    out: dict[str, np.ndarray] = {
        "embed.W_E": params["token_embed"]["embeddings"],
        "pos_embed.W_pos": params["pos_embed"]["embeddings"],
    }
    for layer in range(layers):
        p = naming.haiku_prefix(layer)
        for ours, theirs in (("query", "Q"), ("key", "K"), ("value", "V")):
            w = params[f"{p}/attn/{ours}"]["w"]  # [d_model, heads * d_head]
            b = params[f"{p}/attn/{ours}"]["b"]  # [heads * d_head]
            out[naming.tl(layer, f"attn.W_{theirs}")] = w.reshape(d_model, heads, d_head).transpose(1, 0, 2)
            out[naming.tl(layer, f"attn.b_{theirs}")] = b.reshape(heads, d_head)
        linear = params[f"{p}/attn/linear"]
        out[naming.tl(layer, "attn.W_O")] = linear["w"].reshape(heads, d_head, d_model)
        out[naming.tl(layer, "attn.b_O")] = linear["b"]
        out[naming.tl(layer, "mlp.W_in")] = params[f"{p}/mlp/linear_1"]["w"]
        out[naming.tl(layer, "mlp.b_in")] = params[f"{p}/mlp/linear_1"]["b"]
        out[naming.tl(layer, "mlp.W_out")] = params[f"{p}/mlp/linear_2"]["w"]
        out[naming.tl(layer, "mlp.b_out")] = params[f"{p}/mlp/linear_2"]["b"]
    w_u = unembedding(model)
    out["unembed.W_U"] = w_u
    out["unembed.b_U"] = np.zeros(w_u.shape[1], f32)
    return {name: np.ascontiguousarray(a, dtype=f32) for name, a in out.items()}


def config(model: Any, device: str | None = None) -> HookedTransformerConfig:
    """The HookedTransformerConfig matching `model` (padded shapes)."""
    layers, heads, d_head, d_mlp = _shapes(model)
    location = model.output_location
    kwargs: dict[str, Any] = {}
    if device is not None:
        kwargs["device"] = device
    return HookedTransformerConfig(
        n_layers=layers,
        d_model=len(model.residual_labels),
        d_head=d_head,
        n_heads=heads,
        d_mlp=d_mlp,
        d_vocab=len(model.input_encoder.encoding_map),
        d_vocab_out=location.stop - location.start,
        n_ctx=model.model_config.max_seq_len + 1,
        act_fn="relu",
        normalization_type=None,
        attention_dir="causal" if model.model_config.causal else "bidirectional",
        positional_embedding_type="standard",
        model_name=f"rasp_lab-{getattr(model, 'name', 'model')}",
        default_prepend_bos=False,
        dtype=torch.float32,
        **kwargs,
    )


def to_transformer_lens(model: Any, *, device: str | None = None) -> HookedTransformer:
    """A HookedTransformer computing exactly what `model` (a rasp_lab CompiledModel) does,
    in float32 and eval mode, on `device` (TransformerLens' default when None)."""
    if model.model_config.layer_norm:
        raise ValueError("rasp_lab models have no layer norm; this one claims to")
    cfg = config(model, device)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TL 3 deprecates HookedTransformer
        tl_model = HookedTransformer(cfg)
    ours = state_dict(model)
    full = tl_model.state_dict()
    missing = sorted(set(ours) - set(full))
    if missing:  # a TransformerLens whose parameter names differ
        raise RuntimeError(f"HookedTransformer has no parameters named {missing}")
    for name, array in ours.items():
        if tuple(full[name].shape) != array.shape:
            raise RuntimeError(
                f"{name}: HookedTransformer shape {tuple(full[name].shape)}, ours {array.shape}"
            )
        full[name] = torch.from_numpy(array).to(device=full[name].device, dtype=torch.float32)
    tl_model.load_state_dict(full, strict=True)
    tl_model.eval()
    return tl_model


def to_tokens(
    model: Any, inputs: Sequence[Sequence[Any]], device: str | torch.device | None = None
) -> torch.Tensor:
    """[batch, 1 + length] token ids (BOS first) for inputs given without BOS, all of one
    length (a HookedTransformer does not mask PAD in bidirectional attention)."""
    lengths = {len(xs) for xs in inputs}
    if len(lengths) > 1:
        raise ValueError(
            f"inputs of different lengths {sorted(lengths)}: batch inputs of one length together"
        )
    bos = model.input_encoder.bos_token
    ids = [model.input_encoder.encode([bos, *xs]) for xs in inputs]
    return torch.tensor(ids, dtype=torch.long, device=device)


def decode_logits(model: Any, logits: Any) -> list[list]:
    """Outputs per row (BOS position excluded) from HookedTransformer logits [batch, pos,
    d_vocab_out], as `model.run` reads its residual: a numerical output is its single
    logit; a categorical one is the argmax value, or None where every logit is below 0.5
    (the SOp has no value there)."""
    array = logits.detach().cpu().numpy() if isinstance(logits, torch.Tensor) else np.asarray(logits)
    body = array[:, 1:, :]
    if model.output_encoder.encoding_map is None:
        return [[float(v) for v in row[:, 0]] for row in body]
    values = model.output_location.values
    return [[values[int(p.argmax())] if p.max() >= 0.5 else None for p in row] for row in body]
