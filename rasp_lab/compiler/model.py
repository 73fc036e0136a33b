"""The compiled model users get: run it, look inside it, and read it as Tracr's models are read.

`CompiledModel.apply(["BOS", *tokens])` returns the decoded output (BOS first), the residual
stream after every block, every head's attention pattern, and a cache keyed by
TransformerLens hook names. `params`, `model_config`, `residual_labels`, `input_encoder` and
`output_encoder` keep Tracr's attribute contract; `params` is padded to one shape per layer
as that contract requires, while `apply` runs the compact per-layer weights.

Encoders and decoding are rasp_lab/compiler/encoding.py, what `apply` returns is
rasp_lab/compiler/outputs.py, every name of a part is rasp_lab/naming.py, and files are
rasp_lab/model_format.py. The model is built from its weights, residual layout and input
encoding only: the compiler
builds it that way (`CompiledModel.from_compilation`) and so does `rasp_lab.load` from a
saved file (rasp_lab/model_format.py), so both run and decode with the same code.
"""

from __future__ import annotations

import functools
import os
import pathlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import jax
import numpy as np

from rasp_lab import model_format, naming, rasp
from rasp_lab.artifact import HeadBlock, LayerWeights, ResidualLayout, SOpLocation, ValueInfo, Weights, pad
from rasp_lab.compiler.encoding import (
    CategoricalOutputEncoder,
    DecodingError,
    InputEncoder,
    NumericalOutputEncoder,
    decode_block,
)
from rasp_lab.compiler.forward import MASKED, LayerShape, attention_mask, haiku_forward, numpy_forward
from rasp_lab.compiler.layers import EMBEDDED, LayerAllocation, Placement
from rasp_lab.compiler.outputs import HeadInfo, ModelOutput

__all__ = [
    "CategoricalOutputEncoder",
    "CompiledModel",
    "DecodingError",
    "HeadInfo",
    "InputEncoder",
    "ModelConfig",
    "ModelOutput",
    "NotAvailable",
    "NumericalOutputEncoder",
]

if TYPE_CHECKING:
    from rasp_lab.compiler.blocks import BlockPlan
    from rasp_lab.value_sets import ValueSets


@dataclass(frozen=True)
class ModelConfig:
    """Tracr's config attributes, plus the compact per-layer shapes."""

    num_heads: int
    num_layers: int
    key_size: int
    mlp_hidden_size: int
    layer_norm: bool
    causal: bool
    max_seq_len: int
    vocab_size: int
    layer_shapes: tuple[LayerShape, ...]


class NotAvailable(AttributeError):
    """An attribute only a model compiled in this process has (the RASP program and what
    the compiler derived from it), asked of a model loaded from a file."""


@dataclass(frozen=True)
class Compilation:
    """What the compiler knew besides the weights: needed to compile, not to run or decode."""

    program: rasp.SOp
    value_sets: ValueSets
    plan: BlockPlan


class CompiledModel:
    """A compiled RASP program: real transformer weights plus everything needed to read them.

    Built from the weights (which carry each head's and MLP's named blocks), the residual
    layout and the input encoding alone, so `rasp_lab.load` builds the same object from a
    file and a loaded model runs, decodes and describes itself with this same code. A model
    compiled in this process also has `program`, `value_sets` and `plan`; a loaded one
    raises `NotAvailable` (an AttributeError) for them.
    """

    def __init__(
        self,
        weights: Weights,
        layout: ResidualLayout,
        *,
        tokens: Sequence[Any],
        bos: Any,
        pad: Any,
        vocab: Iterable[Any],
        max_seq_len: int,
        output: str,
        causal: bool,
        leak: float,
        name: str,
        layers: LayerAllocation | None = None,
        compilation: Compilation | None = None,
        source: str | None = None,
        value_info: Mapping[str, ValueInfo] | None = None,
    ) -> None:
        """`tokens`: the token ids' order (vocab sorted, then BOS, then PAD); `output`: the
        label of the output SOp in `layout.sops`; `name`: the program's label; `source`:
        the file a loaded model came from (None when compiled here); `value_info`: each
        SOp's values as the certificate reads them (rasp_lab/certificate.py)."""
        if output not in layout.sops:
            raise ValueError(f"output SOp {output!r} is not in the residual layout")
        self.weights = weights
        self.layout = layout
        self.layers = layers if layers is not None else _allocation_from(layout, len(weights.layers))
        self.causal = bool(causal)
        self.leak = leak
        self.name = name
        self.source = source
        self.max_seq_len = max_seq_len
        self.vocab = frozenset(vocab)
        self._compilation = compilation
        self.value_info: Mapping[str, ValueInfo] = dict(value_info or {})
        self.input_encoder = InputEncoder(tokens, bos, pad, max_seq_len)
        self.output_location = layout.sops[output]
        if self.output_location.encoding is rasp.Encoding.NUMERICAL:
            self.output_encoder: Any = NumericalOutputEncoder()
        else:
            self.output_encoder = CategoricalOutputEncoder(self.output_location.values)
        self.residual_labels = layout.labels
        self._shapes = tuple(LayerShape(lw.num_heads, lw.head_size, lw.mlp_hidden) for lw in weights.layers)
        self.model_config = ModelConfig(
            num_heads=max(1, max(s.num_heads for s in self._shapes)),
            num_layers=len(weights.layers),
            key_size=max(s.head_size for s in self._shapes),
            mlp_hidden_size=max(1, max(s.mlp_hidden for s in self._shapes)),
            layer_norm=False,
            causal=self.causal,
            max_seq_len=max_seq_len,
            vocab_size=len(tokens),
            layer_shapes=self._shapes,
        )
        self.compact_params = _params(weights)
        self._transformed = haiku_forward(
            list(self._shapes),
            n_tokens=len(tokens),
            d_model=layout.width,
            max_positions=max_seq_len + 1,
            pad_id=self.input_encoder.pad_encoding,
            causal=self.causal,
        )
        self._jitted = jax.jit(self._transformed.apply)

    @classmethod
    def from_compilation(
        cls,
        program: rasp.SOp,
        sets: ValueSets,
        plan: BlockPlan,
        layers: LayerAllocation,
        layout: ResidualLayout,
        weights: Weights,
        *,
        causal: bool,
        leak: float,
    ) -> CompiledModel:
        """The compiler's passes' results -> the model (what `rasp_lab.compile` returns)."""
        emb = plan.embedding
        return cls(
            weights,
            layout,
            tokens=emb.tokens,
            bos=emb.bos,
            pad=emb.pad,
            vocab=sets.vocab,
            max_seq_len=sets.max_seq_len,
            output=plan.output,
            causal=causal,
            leak=leak,
            name=program.label,
            layers=layers,
            compilation=Compilation(program, sets, plan),
            value_info=plan.value_info,
        )

    @classmethod
    def from_arrays(
        cls, arrays: Mapping[str, np.ndarray], metadata: Mapping[str, Any], source: str = "arrays"
    ) -> CompiledModel:
        """The model from named arrays and JSON metadata, as `rasp_lab.export.to_arrays`
        makes them and `rasp_lab.load` reads them from a file (see rasp_lab/model_format.py)."""
        return model_format.from_arrays(dict(arrays), dict(metadata), cls, source=source)

    # ------------------------------------------------------------------ compiler-only attributes

    def _compiled(self, attribute: str) -> Any:
        if self._compilation is None:
            raise NotAvailable(
                f"{attribute!r} is not available on a model loaded from {self.source or 'arrays'}: "
                f"it needs the RASP program, which a saved model does not hold (compile the program "
                f"to get it); running, decoding, params, heads, where() and summary() work as usual"
            )
        return getattr(self._compilation, attribute)

    @property
    def program(self) -> rasp.SOp:
        """The RASP program (compiled models only)."""
        return self._compiled("program")

    @property
    def value_sets(self) -> ValueSets:
        """The value sets the compiler used (compiled models only)."""
        return self._compiled("value_sets")

    @property
    def plan(self) -> BlockPlan:
        """The compiler's blocks, by SOp label (compiled models only)."""
        return self._compiled("plan")

    @functools.cached_property
    def certificate(self):
        """The error certificate (rasp_lab.certificate): a sound bound on every SOp's
        float32 error over every input up to max_seq_len, re-derived from the weights."""
        from rasp_lab.certificate import certify

        return certify(self)

    @property
    def is_loaded(self) -> bool:
        """Whether this model came from a file (no program, value_sets or plan)."""
        return self._compilation is None

    def save(self, path: str | os.PathLike) -> pathlib.Path:
        """Write the model to `path` (.npz, or .safetensors if safetensors is installed);
        `rasp_lab.load(path)` gives back a model that runs exactly like this one."""
        return model_format.save(self, path)

    # ------------------------------------------------------------------ introspection

    @functools.cached_property
    def _padded(self) -> Weights:
        return pad(self.weights)

    @property
    def params(self) -> dict[str, dict[str, np.ndarray]]:
        """Tracr-layout parameters, every layer padded to the largest shape (built on first use)."""
        return self._padded_params

    @functools.cached_property
    def _padded_params(self) -> dict[str, dict[str, np.ndarray]]:
        return _params(self._padded)

    @property
    def _padded_shapes(self) -> list[LayerShape]:
        return [LayerShape(lw.num_heads, lw.head_size, lw.mlp_hidden) for lw in self._padded.layers]

    @property
    def heads(self) -> list[HeadInfo]:
        out = []
        for layer, lw in enumerate(self.weights.layers):
            for index, head in enumerate(lw.heads):
                out.append(_head_info(layer, index, head))
        return out

    def where(self, sop: str | rasp.SOp) -> SOpLocation:
        """The layer that computes `sop` and the residual directions that hold it."""
        label = sop.label if isinstance(sop, rasp.RASPExpr) else sop
        if label not in self.layout.sops:
            raise KeyError(f"{label!r} is not an SOp of this model; known: {sorted(self.layout.sops)}")
        return self.layout.sops[label]

    def parameter_counts(self) -> dict[str, int]:
        compact = sum(a.size for group in self.compact_params.values() for a in group.values())
        padded = sum(a.size for group in self.params.values() for a in group.values())
        nonzero = sum(
            int(np.count_nonzero(a)) for group in self.compact_params.values() for a in group.values()
        )
        return {"compact": compact, "padded": padded, "nonzero": nonzero}

    def summary(self) -> str:
        counts = self.parameter_counts()
        layers = len(self.weights.layers)
        lines = [
            f"rasp_lab model for {self.name!r}: {layers} layer{'s' if layers != 1 else ''}, "
            f"residual width {self.layout.width}, max_seq_len {self.max_seq_len}, causal={self.causal}",
            f"parameters: {counts['compact']} (compact), {counts['padded']} (padded to one shape per layer), "
            f"{counts['nonzero']} non-zero",
            self.certificate.describe(),
        ]
        for layer, lw in enumerate(self.weights.layers):
            heads = (
                f"{lw.num_heads} head{'s' if lw.num_heads != 1 else ''} x size {lw.head_size}"
                if lw.num_heads
                else "no heads"
            )
            mlp = f"MLP width {lw.mlp_hidden}" if lw.mlp_hidden else "no MLP"
            lines.append(f"  layer {layer}: {heads}, {mlp}")
            for head in lw.heads:
                lines.append(
                    f"    head {head.label} <- {head.selector}: margin {head.margin}, "
                    f"coldness {head.coldness:.2f}, leak <= {head.leak_bound:.2e}"
                )
            for mlp in lw.mlps:
                lines.append(f"    mlp  {mlp.label} ({mlp.kind}): {mlp.hidden} hidden")
        return "\n".join(lines)

    # ------------------------------------------------------------------ running

    def encode_batch(self, inputs: Sequence[Sequence[Any]]) -> np.ndarray:
        """[batch, 1 + longest] ids for inputs given without BOS, padded with PAD."""
        longest = max((len(x) for x in inputs), default=0)
        pad_id = self.input_encoder.pad_encoding
        ids = np.full((len(inputs), longest + 1), pad_id, dtype=np.int32)
        for row, xs in enumerate(inputs):
            ids[row, : len(xs) + 1] = self.input_encoder.encode([self.input_encoder.bos_token, *xs])
        return ids

    @functools.cached_property
    def _device_params(self):
        """The compact parameters as device arrays, put once (not copied on every call)."""
        return jax.device_put(self.compact_params)

    def forward_jax(self, ids: np.ndarray):
        """Jitted haiku forward on ids [batch, seq]: (residuals, patterns) as jax arrays
        (asynchronous; for throughput, without copying the results to the host)."""
        ids = np.asarray(ids, dtype=np.int32)
        self._check_ids(ids)
        with jax.default_matmul_precision("highest"):
            return self._jitted(self._device_params, ids)

    def forward(self, ids: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Jitted haiku forward on ids [batch, seq]: (residuals, patterns) as numpy arrays."""
        residuals, patterns = self.forward_jax(ids)
        return [np.asarray(r) for r in residuals], [np.asarray(p) for p in patterns]

    def forward_numpy(self, ids: np.ndarray, *, padded: bool = False):
        """The same forward pass in float64 numpy (the oracle)."""
        ids = np.asarray(ids)
        self._check_ids(ids)
        params = self.params if padded else self.compact_params
        shapes = self._padded_shapes if padded else list(self._shapes)
        return numpy_forward(params, shapes, ids, self.input_encoder.pad_encoding, self.causal)

    def _check_ids(self, ids: np.ndarray) -> None:
        if ids.ndim != 2:
            raise ValueError(f"token ids must be a [batch, seq] array, got shape {ids.shape}")
        if ids.shape[1] > self.max_seq_len + 1:
            raise ValueError(
                f"sequence length {ids.shape[1]} (with BOS) exceeds max_seq_len + 1 = {self.max_seq_len + 1}"
            )
        bad = ids[(ids < 0) | (ids >= len(self.input_encoder.encoding_map))]
        if bad.size:
            raise ValueError(f"token ids out of range: {sorted(set(bad.tolist()))}")

    def decode(
        self, residual: np.ndarray, ids: np.ndarray, location: SOpLocation | None = None
    ) -> list[list]:
        """Decoded values per row and position (BOS and PAD positions excluded); see
        rasp_lab/compiler/encoding.py `decode_block`."""
        return decode_block(
            residual,
            ids,
            location or self.output_location,
            self.input_encoder.pad_encoding,
            self.input_encoder.bos_encoding,
        )

    def run_batch(self, inputs: Sequence[Sequence[Any]]) -> list[list]:
        """Decoded outputs for inputs given without BOS (one list per input)."""
        if not inputs:
            return []
        ids = self.encode_batch(inputs)
        residuals, _ = self.forward(ids)
        return self.decode(residuals[-1], ids)

    def run(self, xs: Sequence[Any]) -> list:
        """Decoded output for one input given without BOS."""
        return self.run_batch([list(xs)])[0]

    def apply(self, inputs: Sequence[Any]) -> ModelOutput:
        """Run on `[BOS, *tokens]`, or on `[BOS, *tokens, PAD, ...]` as Tracr runs a padded row
        (PAD positions are masked as keys and decode to None); everything a user may want to
        look at."""
        ids = np.asarray([self.input_encoder.encode(inputs, allow_padding=True)], dtype=np.int32)
        residuals, patterns = self.forward(ids)
        values = self.decode(residuals[-1], ids)[0]
        decoded = [self.input_encoder.bos_token] + values + [None] * (ids.shape[1] - 1 - len(values))
        names = ["embed"] + [
            naming.block(layer, part) for layer in range(len(patterns)) for part in ("attn", "mlp")
        ]
        by_block = {name: r[0] for name, r in zip(names, residuals)}
        attention = {layer: p[0] for layer, p in enumerate(patterns)}
        token_embed = np.asarray(self.compact_params["token_embed"]["embeddings"])[ids[0]]
        pos_embed = np.asarray(self.compact_params["pos_embed"]["embeddings"])[: ids.shape[1]]
        # As in TransformerLens: token and position embeddings apart; their sum is resid_pre.
        cache: dict[str, np.ndarray] = {"hook_embed": token_embed, "hook_pos_embed": pos_embed}
        for layer, pattern in enumerate(patterns):
            pre, mid, post = residuals[2 * layer][0], residuals[2 * layer + 1][0], residuals[2 * layer + 2][0]
            cache[naming.tl(layer, "hook_resid_pre")] = pre
            cache[naming.tl(layer, "attn.hook_pattern")] = pattern[0]
            cache[naming.tl(layer, "hook_attn_out")] = mid - pre
            cache[naming.tl(layer, "hook_resid_mid")] = mid
            cache[naming.tl(layer, "hook_mlp_out")] = post - mid
            cache[naming.tl(layer, "hook_resid_post")] = post
        stream = [np.asarray(r) for r in residuals]  # each [1, seq, d_model]
        return ModelOutput(
            decoded=decoded,
            stream=by_block,
            attention=attention,
            cache=cache,
            residual_labels=self.residual_labels,
            unembedded=self._unembedded(stream[-1]),
            layer_outputs=[after - before for before, after in zip(stream, stream[1:])],
            residuals=stream[1:],
            attn_logits=[self._attn_logits(layer, stream[2 * layer], ids) for layer in range(len(patterns))],
            transformer_output=stream[-1],
            input_embeddings=stream[0],
        )

    def _unembedded(self, final: np.ndarray) -> np.ndarray:
        """[1, seq]: the output block read out per position (index or value)."""
        location = self.output_location
        block = final[..., location.start : location.stop]  # [1, seq, len(directions)]
        if location.encoding is rasp.Encoding.NUMERICAL:
            return block[..., 0].astype(float)
        return np.where(block.max(axis=-1, initial=0.0) >= 0.5, block.argmax(axis=-1), -1)

    def _attn_logits(self, layer: int, before: np.ndarray, ids: np.ndarray) -> np.ndarray:
        """[1, heads, query, key] logits of `layer`'s heads on the residual `before` it."""
        lw = self.weights.layers[layer]
        x = before.astype(np.float64)  # [1, seq, d_model]
        q = np.einsum("bsd,dhk->bshk", x, lw.w_q)  # [1, seq, heads, head_size]
        k = np.einsum("bsd,dhk->bshk", x, lw.w_k)
        logits = np.einsum("bqhd,bkhd->bhqk", q, k) / np.sqrt(max(lw.head_size, 1))
        mask = attention_mask(ids, self.input_encoder.pad_encoding, self.causal)  # [1, 1, query, key]
        return np.where(mask, logits, MASKED)

    def __call__(self, inputs: Sequence[Any]) -> ModelOutput:
        return self.apply(inputs)

    def __repr__(self) -> str:
        return f"CompiledModel({self.name!r}, layers={len(self.weights.layers)}, d_model={self.layout.width})"


def _head_info(layer: int, index: int, head: HeadBlock) -> HeadInfo:
    return HeadInfo(
        layer, index, head.label, head.selector, head.margin, head.coldness, head.leak_bound, head.strategy
    )


def _allocation_from(layout: ResidualLayout, num_layers: int) -> LayerAllocation:
    """The layer allocation, recovered from where the layout says each SOp is computed."""
    placements = {}
    for label, location in layout.sops.items():
        if location.mlp_layer is not None:
            ready = 2 * location.mlp_layer + 1
        elif location.head_layer is not None:
            ready = 2 * location.head_layer
        else:
            ready = EMBEDDED
        placements[label] = Placement(label, location.head_layer, location.mlp_layer, ready)
    return LayerAllocation(placements=placements, num_layers=num_layers)


def _params(weights: Weights) -> dict[str, dict[str, np.ndarray]]:
    """Tracr/haiku-keyed parameters (float32), shapes as in forward.py's glossary."""
    f32 = np.float32
    params: dict[str, dict[str, np.ndarray]] = {
        "token_embed": {"embeddings": weights.token_embed.astype(f32)},
        "pos_embed": {"embeddings": weights.pos_embed.astype(f32)},
    }
    for layer, lw in enumerate(weights.layers):
        params.update(_layer_params(layer, lw, weights.d_model))
    return params


def _layer_params(layer: int, lw: LayerWeights, d_model: int) -> dict[str, dict[str, np.ndarray]]:
    f32 = np.float32
    p = naming.haiku_prefix(layer)
    width = lw.num_heads * lw.head_size

    def flat(w: np.ndarray) -> np.ndarray:
        return w.reshape(d_model, width).astype(f32)  # [d_model, heads * head_size]

    return {
        f"{p}/attn/query": {"w": flat(lw.w_q), "b": np.zeros(width, f32)},
        f"{p}/attn/key": {"w": flat(lw.w_k), "b": np.zeros(width, f32)},
        f"{p}/attn/value": {"w": flat(lw.w_v), "b": np.zeros(width, f32)},
        f"{p}/attn/linear": {"w": lw.w_o.reshape(width, d_model).astype(f32), "b": np.zeros(d_model, f32)},
        f"{p}/mlp/linear_1": {"w": lw.w_1.astype(f32), "b": np.zeros(lw.mlp_hidden, f32)},
        f"{p}/mlp/linear_2": {"w": lw.w_2.astype(f32), "b": np.zeros(d_model, f32)},
    }
