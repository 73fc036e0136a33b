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

Helpers: `to_tokens` takes tokens as values or printed forms ("3 1 2"), `to_str_tokens`
reverses it; `read_sop(model, cache, sop)` decodes any SOp from a run_with_cache cache at
the residual hook after the block that writes it (`sop_hook`), flagging positions an
intervention left without a value the SOp can take. `real_heads` lists the heads the
compiler built, with their SOps; every other exported head (`padding_heads`) is all zeros,
there only because TransformerLens wants one head count for every layer.
`to_transformer_lens(model, for_circuit_discovery=True)` turns on the hooks ACDC-style edge
patching needs (CIRCUIT_DISCOVERY_FLAGS).

`ground_truth_circuit` (which heads and MLPs compute which SOp, in TransformerLens hook
names), `real_heads` and `padding_heads` live in rasp_lab.circuit and need no torch; they
are re-exported here.

TransformerLens 4 removed HookedTransformer (its TransformerBridge wraps Hugging Face
models only), so the extra pins transformer-lens < 4. `import rasp_lab` never imports torch;
importing this module without torch or transformer-lens raises ImportError saying what to
install.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from rasp_lab import naming, rasp
from rasp_lab.circuit import RealHead, ground_truth_circuit, padding_heads, real_heads

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
    "CIRCUIT_DISCOVERY_FLAGS",
    "RealHead",
    "SOpReading",
    "to_transformer_lens",
    "to_tokens",
    "to_str_tokens",
    "decode_logits",
    "read_sop",
    "sop_hook",
    "real_heads",
    "padding_heads",
    "ground_truth_circuit",
    "config",
    "state_dict",
    "unembedding",
]

CIRCUIT_DISCOVERY_FLAGS = ("use_attn_result", "use_split_qkv_input", "use_hook_mlp_in")
"""The HookedTransformerConfig flags ACDC-style edge patching needs: per-head outputs
(attn.hook_result), per-head query/key/value inputs (hook_q_input, ...) and the MLP input
(hook_mlp_in) as hooks of their own."""


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


def config(
    model: Any, device: str | None = None, *, for_circuit_discovery: bool = False
) -> HookedTransformerConfig:
    """The HookedTransformerConfig matching `model` (padded shapes); with
    `for_circuit_discovery`, every flag of CIRCUIT_DISCOVERY_FLAGS on."""
    layers, heads, d_head, d_mlp = _shapes(model)
    location = model.output_location
    kwargs: dict[str, Any] = {}
    if device is not None:
        kwargs["device"] = device
    if for_circuit_discovery:
        kwargs.update(dict.fromkeys(CIRCUIT_DISCOVERY_FLAGS, True))
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


def to_transformer_lens(
    model: Any, *, device: str | None = None, for_circuit_discovery: bool = False
) -> HookedTransformer:
    """A HookedTransformer computing exactly what `model` (a rasp_lab CompiledModel) does,
    in float32 and eval mode, on `device` (TransformerLens' default when None).

    `for_circuit_discovery=True` turns on use_attn_result, use_split_qkv_input and
    use_hook_mlp_in (which ACDC asserts), so each head's output and each head's and MLP's
    input has a hook to patch; the outputs are the same, the forward pass slower."""
    if model.model_config.layer_norm:
        raise ValueError("rasp_lab models have no layer norm; this one claims to")
    cfg = config(model, device, for_circuit_discovery=for_circuit_discovery)
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


def _token(model: Any, token: Any, row: int, position: int) -> Any:
    """A vocabulary token given as itself or as its printed form ("3" for 3), as the
    command line reads tokens."""
    vocab = model.vocab
    if token in vocab:
        return token
    by_text = {str(t): t for t in vocab}
    if isinstance(token, str) and token in by_text:
        return by_text[token]
    shown = " ".join(sorted(by_text))
    raise ValueError(
        f"unknown token {token!r} in input {row}, position {position}; the vocabulary is: {shown}"
    )


def to_tokens(
    model: Any, inputs: Sequence[Sequence[Any] | str], device: str | torch.device | None = None
) -> torch.Tensor:
    """[batch, 1 + length] token ids (BOS first) for a batch of inputs given without BOS, all
    of one length (a HookedTransformer does not mask PAD in bidirectional attention).

    Each input is a list of tokens, each the token itself or its printed form ("3" for the
    token 3), or one string of tokens separated by spaces ("3 1 2"): what `model.run` and
    the command line accept. `inputs` is always a batch: `[["x", "a"]]`, not `["x", "a"]`
    (which is two inputs of one token)."""
    if isinstance(inputs, str):
        raise TypeError(
            f"inputs must be a batch (a list of inputs), got the string {inputs!r}: pass [{inputs!r}]"
        )
    rows = [
        [_token(model, t, row, p) for p, t in enumerate(xs.split() if isinstance(xs, str) else xs)]
        for row, xs in enumerate(inputs)
    ]
    lengths = {len(xs) for xs in rows}
    if len(lengths) > 1:
        raise ValueError(
            f"inputs of different lengths {sorted(lengths)}: batch inputs of one length together"
        )
    bos = model.input_encoder.bos_token
    ids = [model.input_encoder.encode([bos, *xs]) for xs in rows]
    return torch.tensor(ids, dtype=torch.long, device=device)


def to_str_tokens(model: Any, tokens: Any) -> list:
    """The printed tokens of token ids, as TransformerLens' to_str_tokens gives them: a list
    of str for ids [pos], a list of such lists for ids [batch, pos]. BOS and PAD print as
    the model's BOS and PAD tokens."""
    array = tokens.detach().cpu().numpy() if isinstance(tokens, torch.Tensor) else np.asarray(tokens)
    if array.ndim not in (1, 2) or (array.size and not np.issubdtype(array.dtype, np.integer)):
        raise ValueError(
            f"token ids must be integers of shape [pos] or [batch, pos], got {array.dtype} {array.shape}"
        )
    table = model.input_encoder.decoding_map
    bad = sorted({int(i) for i in array.flat if int(i) not in table})
    if bad:
        raise ValueError(f"token ids {bad} are not in the vocabulary (ids 0..{len(table) - 1})")
    if array.ndim == 1:
        return [str(table[int(i)]) for i in array]
    return [[str(table[int(i)]) for i in row] for row in array]


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


def sop_hook(model: Any, sop: str | rasp.SOp) -> str:
    """The residual hook right after the block that writes `sop`: hook_resid_post of its MLP's
    layer, hook_resid_mid of its head's layer, or blocks.0.hook_resid_pre if it is embedded."""
    location = model.where(sop)
    if location.mlp_layer is not None:
        return naming.tl(location.mlp_layer, "hook_resid_post")
    if location.head_layer is not None:
        return naming.tl(location.head_layer, "hook_resid_mid")
    return naming.tl(0, "hook_resid_pre")


@dataclass(frozen=True)
class SOpReading:
    """One SOp read from a residual hook, per row and position (BOS excluded).

    `values[row][pos]` is the decoded value (None: no value there, or damaged);
    `damaged[row][pos]` is True where the block does not hold a value the SOp can take (a
    categorical block that is not one clean one-hot nor empty, an empty block of an SOp
    that always has a value, a number outside the SOp's values); `block` is the raw
    [batch, pos, directions] slice of the residual."""

    label: str
    hook: str
    values: list[list]
    damaged: list[list[bool]]
    block: np.ndarray

    @property
    def any_damaged(self) -> bool:
        return any(any(row) for row in self.damaged)


def read_sop(
    model: Any,
    cache: Mapping[str, Any],
    sop: str | rasp.SOp,
    *,
    hook: str | None = None,
    tolerance: float = 1e-3,
) -> SOpReading:
    """The value of `sop` at every position, read from a TransformerLens cache
    (`run_with_cache` output, or any mapping of hook names to [batch, pos, d_model] arrays).

    Reads the residual right after the block that writes the SOp (`sop_hook`), or `hook`.
    After an ablation or patch the block may hold no value the SOp can take: that position
    reads None and is flagged in `damaged` instead of raising, so interventions can be
    scanned. A numerical value counts as damaged when it is more than
    `tolerance * max(1, |v|)` from every value `v` the compiler found the SOp can take (or
    outside their range when there were too many to list; 0 stands for "no value")."""
    location = model.where(sop)
    name = hook or sop_hook(model, location.label)
    if name not in cache:
        near = sorted(k for k in cache if str(k).endswith(name.rsplit(".", 1)[-1]))[:4]
        raise KeyError(f"hook {name!r} is not in the cache (hooks of that kind there: {near})")
    residual = cache[name]
    array = residual.detach().cpu().numpy() if isinstance(residual, torch.Tensor) else np.asarray(residual)
    if array.ndim == 2:  # one row, as model.apply's cache holds it
        array = array[None]
    if array.ndim != 3 or array.shape[-1] != len(model.residual_labels):
        raise ValueError(
            f"{name}: expected a residual [batch, pos, {len(model.residual_labels)}], got shape {array.shape}"
        )
    block = array[:, 1:, location.start : location.stop].astype(np.float64)
    info = model.value_info.get(location.label)
    nullable = True if info is None else info.nullable
    if location.encoding is rasp.Encoding.NUMERICAL:
        v = block[..., 0]
        scale = tolerance * np.maximum(1.0, np.abs(v))
        damaged = ~np.isfinite(v)
        if info is not None and info.values is not None:
            listed = np.asarray(info.values + ((0.0,) if nullable else ()), dtype=np.float64)
            near = np.abs(v[..., None] - listed).min(axis=-1, initial=np.inf) <= scale
            damaged |= ~near
        elif info is not None and (info.low, info.high) != (0.0, 0.0):
            damaged |= (v < info.low - scale) | (v > info.high + scale)
        values = [[None if d else float(x) for x, d in zip(row, bad)] for row, bad in zip(v, damaged)]
    else:
        top = block.argmax(axis=-1)
        high = np.take_along_axis(block, top[..., None], axis=-1)[..., 0]
        rest = np.abs(block).sum(axis=-1) - np.abs(high)
        empty = (np.abs(block).sum(axis=-1) < 0.25) if block.shape[-1] else np.ones(top.shape, bool)
        clean = (high >= 0.75) & (rest <= 0.25)
        damaged = ~clean & ~(empty & nullable)
        table = location.values
        values = [
            [table[t] if c else None for t, c in zip(tops, cleans)]
            for tops, cleans in zip(top, clean & ~damaged)
        ]
    return SOpReading(location.label, name, values, damaged.tolist(), block)
