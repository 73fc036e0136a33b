"""Save a compiled model to a file and load it back, without the RASP program.

    model.save("sort.npz")            # or rasp_lab.export.save(model, "sort.npz")
    model = rasp_lab.load("sort.npz")

The file holds arrays and one JSON string, never pickles:

- arrays (float64, the compact weights exactly as compiled):
      token_embed                     [n_tokens, d_model]
      pos_embed                       [max_seq_len + 1, d_model]
      layer_{l}.w_q / w_k / w_v       [d_model, heads, head_size]
      layer_{l}.w_o                   [heads, head_size, d_model]
      layer_{l}.w_1 / w_2             [d_model, mlp_hidden] / [mlp_hidden, d_model]
      layer_{l}.head_{i}.w_qk / w_ov  one head's tables in named directions
      layer_{l}.mlp_{j}.w_in / w_out  one MLP's weights in named directions
- metadata (JSON): the model config with per-layer shapes, the causal flag and leak, the
  residual directions with their values, the input encoding (tokens, BOS, PAD), every SOp's
  location (layers, directions), the output SOp, and every head and MLP block (label,
  selector, margin, coldness, leak bound, strategy, the directions it reads and writes).
  Values (tokens and direction values) may be str, int, float, bool, None, or tuples and
  frozensets of those; each is stored with a type tag, so 1, 1.0 and True stay apart.

A `.npz` file is a numpy archive (the metadata is array `__rasp_lab__`, a unicode scalar);
a `.safetensors` file (needs `pip install rasp-lab[export]`) holds the same arrays and the
metadata under the header key `rasp_lab`. The loaded model is a CompiledModel built from
these alone, so it runs and decodes with the same code as the original; what needs the
program (`program`, `value_sets`, `plan`) raises NotAvailable.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import zipfile
from typing import Any

import numpy as np

from rasp_lab import rasp
from rasp_lab.compiler.assemble import LayerWeights, Weights
from rasp_lab.compiler.basis import Direction, sort_values
from rasp_lab.compiler.blocks import HeadBlock, MLPBlock
from rasp_lab.compiler.layout import ResidualLayout, SOpLocation
from rasp_lab.compiler.model import CompiledModel, ModelConfig

FORMAT = "rasp_lab.model"
VERSION = 1
METADATA_KEY = "__rasp_lab__"
"""The array (in .npz) holding the JSON metadata."""
SAFETENSORS_METADATA_KEY = "rasp_lab"
"""The header metadata key (in .safetensors) holding the JSON metadata."""
SUFFIXES = (".npz", ".safetensors")


class ModelFileError(ValueError):
    """A file that is not a model written by `rasp_lab.save`, or a damaged one."""


# ---------------------------------------------------------------------------- values


def encode_value(value: Any) -> Any:
    """A JSON-able, type-tagged form of a token or direction value (None stays null)."""
    if value is None:
        return None
    if isinstance(value, bool | np.bool_):
        return ["bool", bool(value)]
    if isinstance(value, int | np.integer):
        return ["int", int(value)]
    if isinstance(value, float | np.floating):
        return ["float", repr(float(value))]  # repr round-trips exactly, inf and nan included
    if isinstance(value, str):
        return ["str", str(value)]
    if isinstance(value, tuple):
        return ["tuple", [encode_value(v) for v in value]]
    if isinstance(value, frozenset):
        return ["frozenset", sorted((encode_value(v) for v in value), key=json.dumps)]
    raise TypeError(
        f"can't save value {value!r} of type {type(value).__name__}: values must be str, int, float, "
        f"bool, None, or tuples / frozensets of those"
    )


def decode_value(data: Any) -> Any:
    """The value `encode_value` encoded; ModelFileError for anything it would not write."""
    if data is None:
        return None
    if not (isinstance(data, list) and len(data) == 2 and isinstance(data[0], str)):
        raise ModelFileError(f"bad value in metadata: {data!r} (expected null or [type, value])")
    tag, payload = data
    if tag == "bool" and isinstance(payload, bool):
        return payload
    if tag == "int" and isinstance(payload, int) and not isinstance(payload, bool):
        return payload
    if tag == "float" and isinstance(payload, str):
        try:
            return float(payload)
        except ValueError:
            pass
    elif tag == "str" and isinstance(payload, str):
        return payload
    elif tag == "tuple" and isinstance(payload, list):
        return tuple(decode_value(v) for v in payload)
    elif tag == "frozenset" and isinstance(payload, list):
        return frozenset(decode_value(v) for v in payload)
    raise ModelFileError(f"bad value in metadata: {data!r}")


# ---------------------------------------------------------------------------- model -> file


def to_arrays(model: CompiledModel) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The model as named float64 arrays plus JSON-able metadata (what `save` writes)."""
    layout, weights = model.layout, model.weights
    index = layout.index

    def where(directions: tuple[Direction, ...]) -> list[int]:
        return [index[d] for d in directions]

    arrays: dict[str, np.ndarray] = {"token_embed": weights.token_embed, "pos_embed": weights.pos_embed}
    layers = []
    for n, lw in enumerate(weights.layers):
        for part in ("w_q", "w_k", "w_v", "w_o", "w_1", "w_2"):
            arrays[f"layer_{n}.{part}"] = getattr(lw, part)
        heads = []
        for i, head in enumerate(lw.heads):
            arrays[f"layer_{n}.head_{i}.w_qk"] = head.w_qk
            arrays[f"layer_{n}.head_{i}.w_ov"] = head.w_ov
            heads.append(
                {
                    "label": head.label,
                    "selector": head.selector,
                    "margin": head.margin,
                    "coldness": head.coldness,
                    "leak_bound": head.leak_bound,
                    "strategy": head.strategy,
                    "query": where(head.query),
                    "key": where(head.key),
                    "value": where(head.value),
                    "output": where(head.output),
                }
            )
        mlps = []
        for j, mlp in enumerate(lw.mlps):
            arrays[f"layer_{n}.mlp_{j}.w_in"] = mlp.w_in
            arrays[f"layer_{n}.mlp_{j}.w_out"] = mlp.w_out
            mlps.append(
                {
                    "label": mlp.label,
                    "kind": mlp.kind,
                    "tolerance": mlp.tolerance,
                    "inputs": where(mlp.inputs),
                    "outputs": where(mlp.outputs),
                }
            )
        layers.append({"heads": heads, "mlps": mlps})
    encoder = model.input_encoder
    metadata = {
        "format": FORMAT,
        "version": VERSION,
        "name": model.name,
        "causal": model.causal,
        "leak": model.leak,
        "max_seq_len": model.max_seq_len,
        "model_config": _config(model.model_config),
        "vocab": [encode_value(v) for v in sort_values(model.vocab)],
        "tokens": [encode_value(t) for t in encoder.encoding_map],
        "bos": encode_value(encoder.bos_token),
        "pad": encode_value(encoder.pad_token),
        "output": model.output_location.label,
        "directions": [[d.name, encode_value(d.value)] for d in layout.directions],
        "residual_labels": list(model.residual_labels),
        "sops": [
            {
                "label": loc.label,
                "encoding": loc.encoding.value,
                "head_layer": loc.head_layer,
                "mlp_layer": loc.mlp_layer,
                "directions": where(loc.directions),
                "start": loc.start,
                "stop": loc.stop,
            }
            for loc in layout.sops.values()
        ],
        "layers": layers,
    }
    return {name: np.ascontiguousarray(a, dtype=np.float64) for name, a in arrays.items()}, metadata


def _config(config: ModelConfig) -> dict[str, Any]:
    """The model config as JSON (per-layer shapes as [heads, head_size, mlp_hidden])."""
    fields = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
    fields["layer_shapes"] = [[s.num_heads, s.head_size, s.mlp_hidden] for s in config.layer_shapes]
    return fields


def save(model: CompiledModel, path: str | os.PathLike) -> pathlib.Path:
    """Write `model` to `path`: a numpy archive for `.npz`, safetensors for `.safetensors`."""
    if not isinstance(model, CompiledModel):
        raise TypeError(f"save takes a CompiledModel, got {type(model).__name__}")
    path = pathlib.Path(path)
    if path.suffix not in SUFFIXES:
        raise ValueError(f"can't tell the format of {str(path)!r}: name the file *.npz or *.safetensors")
    arrays, metadata = to_arrays(model)
    text = json.dumps(metadata)
    if path.suffix == ".safetensors":
        safetensors_numpy = _safetensors()
        safetensors_numpy.save_file(arrays, str(path), metadata={SAFETENSORS_METADATA_KEY: text})
    else:
        with path.open("wb") as f:  # a file object, so numpy does not append a suffix
            np.savez_compressed(f, **arrays, **{METADATA_KEY: np.array(text)})
    return path


def _safetensors():
    try:
        import safetensors.numpy
    except ImportError:
        raise ModuleNotFoundError(
            "saving or loading .safetensors needs the safetensors package: pip install 'rasp-lab[export]' "
            "(or save to a .npz file, which needs nothing extra)"
        ) from None
    return safetensors.numpy


# ---------------------------------------------------------------------------- file -> model


def load(path: str | os.PathLike) -> CompiledModel:
    """The model saved at `path` (by `save` / `CompiledModel.save`), ready to run.

    Raises FileNotFoundError, or ModelFileError (a ValueError) saying what is wrong with a
    file that is not such a model."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no model file at {str(path)!r}")
    with path.open("rb") as f:
        head = f.read(4)
    if head.startswith(b"PK"):
        arrays, metadata = _read_npz(path)
    elif path.suffix == ".safetensors":
        arrays, metadata = _read_safetensors(path)
    else:
        raise ModelFileError(
            f"{str(path)!r} is not a rasp_lab model file: expected a numpy .npz archive "
            f"(or a .safetensors file) written by rasp_lab.save"
        )
    return from_arrays(arrays, metadata, source=str(path))


def _read_npz(path: pathlib.Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as err:
        raise ModelFileError(f"{str(path)!r} is not a readable .npz archive: {err}") from None
    if METADATA_KEY not in arrays:
        raise ModelFileError(
            f"{str(path)!r} has no rasp_lab metadata (array {METADATA_KEY!r}): it was not written by rasp_lab.save"
        )
    text = arrays.pop(METADATA_KEY)
    if text.shape != () or text.dtype.kind != "U":
        raise ModelFileError(f"{str(path)!r}: array {METADATA_KEY!r} is not a JSON string")
    return arrays, _parse(str(text), path)


def _read_safetensors(path: pathlib.Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    safetensors_numpy = _safetensors()
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="numpy") as f:
            header = f.metadata() or {}
        arrays = safetensors_numpy.load_file(str(path))
    except Exception as err:  # safetensors raises its own SafetensorError for a bad header
        raise ModelFileError(f"{str(path)!r} is not a readable .safetensors file: {err}") from None
    if SAFETENSORS_METADATA_KEY not in header:
        raise ModelFileError(
            f"{str(path)!r} has no rasp_lab metadata (header key {SAFETENSORS_METADATA_KEY!r}): "
            f"it was not written by rasp_lab.save"
        )
    return arrays, _parse(header[SAFETENSORS_METADATA_KEY], path)


def _parse(text: str, path: pathlib.Path) -> dict[str, Any]:
    try:
        metadata = json.loads(text)
    except json.JSONDecodeError as err:
        raise ModelFileError(f"{str(path)!r}: the rasp_lab metadata is not valid JSON ({err})") from None
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
        raise ModelFileError(f"{str(path)!r}: the metadata does not describe a rasp_lab model")
    version = metadata.get("version")
    if version != VERSION:
        raise ModelFileError(
            f"{str(path)!r} is format version {version!r}; this rasp_lab reads version {VERSION}"
        )
    return metadata


def from_arrays(arrays: dict[str, np.ndarray], metadata: dict[str, Any], source: str = "arrays") -> CompiledModel:
    """The model from `to_arrays`'s output; ModelFileError naming what is missing or inconsistent."""
    try:
        return _build(arrays, metadata, source)
    except ModelFileError:
        raise
    except KeyError as err:
        raise ModelFileError(f"{source}: missing {err.args[0]!r} in the saved model") from None
    except (TypeError, ValueError, IndexError, AttributeError) as err:
        raise ModelFileError(f"{source}: malformed model file ({type(err).__name__}: {err})") from None


def _build(arrays: dict[str, np.ndarray], meta: dict[str, Any], source: str) -> CompiledModel:
    def array(name: str, shape: tuple[int, ...]) -> np.ndarray:
        if name not in arrays:
            raise ModelFileError(f"{source}: array {name!r} is missing")
        a = np.asarray(arrays[name], dtype=np.float64)
        if a.shape != shape:
            raise ModelFileError(f"{source}: array {name!r} has shape {a.shape}, expected {shape}")
        return a

    directions = tuple(Direction(str(name), decode_value(value)) for name, value in meta["directions"])
    d_model = len(directions)

    def pick(indices: list[int]) -> tuple[Direction, ...]:
        if not all(isinstance(i, int) and 0 <= i < d_model for i in indices):
            raise ModelFileError(f"{source}: direction index out of range in {indices}")
        return tuple(directions[i] for i in indices)

    index = {d: i for i, d in enumerate(directions)}
    if len(index) != d_model:
        raise ModelFileError(f"{source}: repeated residual directions")
    sops = {}
    for s in meta["sops"]:
        sops[s["label"]] = SOpLocation(
            label=s["label"],
            encoding=rasp.Encoding(s["encoding"]),
            head_layer=s["head_layer"],
            mlp_layer=s["mlp_layer"],
            directions=pick(s["directions"]),
            start=int(s["start"]),
            stop=int(s["stop"]),
        )
    layout = ResidualLayout(directions=directions, index=index, sops=sops)
    if "residual_labels" in meta and layout.labels != meta["residual_labels"]:
        raise ModelFileError(f"{source}: residual labels do not match the stored directions")

    tokens = [decode_value(t) for t in meta["tokens"]]
    max_seq_len = int(meta["max_seq_len"])
    layers = []
    for n, lm in enumerate(meta["layers"]):
        p = f"layer_{n}"
        if f"{p}.w_q" not in arrays:
            raise ModelFileError(f"{source}: array {p + '.w_q'!r} is missing")
        _, num_heads, head_size = np.shape(arrays[f"{p}.w_q"])
        hidden = np.shape(arrays[f"{p}.w_1"])[1] if f"{p}.w_1" in arrays else 0
        if num_heads != len(lm["heads"]):
            raise ModelFileError(f"{source}: layer {n} has {num_heads} heads in its arrays, {len(lm['heads'])} in its metadata")
        heads = []
        for i, h in enumerate(lm["heads"]):
            query, key, value, output = (pick(h[k]) for k in ("query", "key", "value", "output"))
            heads.append(
                HeadBlock(
                    label=h["label"],
                    selector=h["selector"],
                    query=query,
                    key=key,
                    w_qk=array(f"{p}.head_{i}.w_qk", (len(query), len(key))),
                    value=value,
                    output=output,
                    w_ov=array(f"{p}.head_{i}.w_ov", (len(value), len(output))),
                    margin=h["margin"],
                    coldness=h["coldness"],
                    leak_bound=h["leak_bound"],
                    strategy=h["strategy"],
                )
            )
        mlps = []
        for j, m in enumerate(lm["mlps"]):
            inputs, outputs = pick(m["inputs"]), pick(m["outputs"])
            w_in = arrays.get(f"{p}.mlp_{j}.w_in")
            width = np.shape(w_in)[1] if w_in is not None and np.ndim(w_in) == 2 else 0
            mlps.append(
                MLPBlock(
                    label=m["label"],
                    kind=m["kind"],
                    inputs=inputs,
                    outputs=outputs,
                    w_in=array(f"{p}.mlp_{j}.w_in", (len(inputs), width)),
                    w_out=array(f"{p}.mlp_{j}.w_out", (width, len(outputs))),
                    tolerance=m["tolerance"],
                )
            )
        if sum(m.hidden for m in mlps) != hidden:
            raise ModelFileError(f"{source}: layer {n}'s MLP width {hidden} is not the sum of its MLP blocks'")
        layers.append(
            LayerWeights(
                heads=tuple(heads),
                mlps=tuple(mlps),
                w_q=array(f"{p}.w_q", (d_model, num_heads, head_size)),
                w_k=array(f"{p}.w_k", (d_model, num_heads, head_size)),
                w_v=array(f"{p}.w_v", (d_model, num_heads, head_size)),
                w_o=array(f"{p}.w_o", (num_heads, head_size, d_model)),
                w_1=array(f"{p}.w_1", (d_model, hidden)),
                w_2=array(f"{p}.w_2", (hidden, d_model)),
            )
        )
    if not layers:
        raise ModelFileError(f"{source}: the saved model has no layers")
    weights = Weights(
        token_embed=array("token_embed", (len(tokens), d_model)),
        pos_embed=array("pos_embed", (max_seq_len + 1, d_model)),
        layers=tuple(layers),
    )
    model = CompiledModel(
        weights,
        layout,
        tokens=tokens,
        bos=decode_value(meta["bos"]),
        pad=decode_value(meta["pad"]),
        vocab=[decode_value(v) for v in meta["vocab"]],
        max_seq_len=max_seq_len,
        output=meta["output"],
        causal=bool(meta["causal"]),
        leak=meta["leak"],
        name=meta["name"],
        source=source,
    )
    stored, derived = meta.get("model_config"), _config(model.model_config)
    if stored is not None and stored != derived:
        raise ModelFileError(f"{source}: the stored model config {stored} does not match the arrays ({derived})")
    return model
