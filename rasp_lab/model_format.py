"""The model file format: a compiled model as arrays plus JSON metadata, and back.

Users call `model.save(path)` / `rasp_lab.load(path)` (or rasp_lab/export.py). This module
sits below the model: it reads and writes any object with the model's attributes, and
builds the class it is given, so the model can save itself without an import circle.

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
a `.safetensors` file (writing one needs `pip install rasp-lab[export]`; reading needs
nothing extra) holds the same arrays and the metadata under the header key `rasp_lab`.

`load` trusts nothing a file says: it reads with bounded work (rasp_lab/model_file.py) and
re-derives every claim (`from_arrays`), so a damaged or hostile file is a ModelFileError. The loaded model is a CompiledModel built from
these alone, so it runs and decodes with the same code as the original; what needs the
program (`program`, `value_sets`, `plan`) raises NotAvailable.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import pathlib
from typing import TYPE_CHECKING, Any

import numpy as np

from rasp_lab import naming, rasp
from rasp_lab.artifact import (
    Direction,
    HeadBlock,
    LayerWeights,
    MLPBlock,
    ResidualLayout,
    SOpLocation,
    ValueInfo,
    Weights,
)
from rasp_lab.model_file import (
    MAX_JSON_DEPTH,
    ModelFileError,
    NpzReader,
    SafetensorsReader,
    json_depth,
    parse_json,
    shape_text,
    shown,
)
from rasp_lab.values import sort_values

if TYPE_CHECKING:  # the model imports this module, never the other way round
    from rasp_lab.compiler.model import CompiledModel, ModelConfig

FORMAT = "rasp_lab.model"
VERSION = 1
METADATA_KEY = "__rasp_lab__"
"""The array (in .npz) holding the JSON metadata."""
SAFETENSORS_METADATA_KEY = "rasp_lab"
"""The header metadata key (in .safetensors) holding the JSON metadata."""
SUFFIXES = (".npz", ".safetensors")


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
        raise ModelFileError(f"bad value in metadata: {shown(data)} (expected null or [type, value])")
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
    raise ModelFileError(f"bad value in metadata: {shown(data)}")


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
            arrays[naming.file_array(n, part)] = getattr(lw, part)
        heads = []
        for i, head in enumerate(lw.heads):
            arrays[naming.head_array(n, i, "w_qk")] = head.w_qk
            arrays[naming.head_array(n, i, "w_ov")] = head.w_ov
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
            arrays[naming.mlp_array(n, j, "w_in")] = mlp.w_in
            arrays[naming.mlp_array(n, j, "w_out")] = mlp.w_out
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
        "value_info": {
            label: {
                "nullable": info.nullable,
                "values": None if info.values is None else [repr(float(v)) for v in info.values],
                "low": repr(float(info.low)),
                "high": repr(float(info.high)),
            }
            for label, info in model.value_info.items()
        },
    }
    return {name: np.ascontiguousarray(a, dtype=np.float64) for name, a in arrays.items()}, metadata


def _config(config: ModelConfig) -> dict[str, Any]:
    """The model config as JSON (per-layer shapes as [heads, head_size, mlp_hidden])."""
    fields = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
    fields["layer_shapes"] = [[s.num_heads, s.head_size, s.mlp_hidden] for s in config.layer_shapes]
    return fields


def save(model: CompiledModel, path: str | os.PathLike) -> pathlib.Path:
    """Write `model` to `path`: a numpy archive for `.npz`, safetensors for `.safetensors`."""
    if not all(hasattr(model, name) for name in ("layout", "weights", "input_encoder", "value_info")):
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

MAX_WEIGHT_BYTES = 2 * 2**30
"""What `load` may allocate for a model's weights (as float64) by default: the metadata's
shapes are checked against it before any array is read."""
MAX_LAYERS = 1024
MAX_DIRECTIONS = 65_536
"""Residual width limit: metadata naming more directions is refused before they are built."""


def load(
    path: str | os.PathLike, model_class: type[CompiledModel], *, max_bytes: int = MAX_WEIGHT_BYTES
) -> CompiledModel:
    """The model saved at `path` (by `save` / `CompiledModel.save`), ready to run.

    Everything the file claims is re-derived and checked (see `from_arrays`), and reading is
    bounded (see rasp_lab/model_file.py): the weights the metadata's shapes need must fit in
    `max_bytes`. Raises FileNotFoundError, or ModelFileError (a ValueError) saying what is
    wrong with a file that is not such a model."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no model file at {str(path)!r}")
    with path.open("rb") as f:
        head = f.read(4)
    if head.startswith(b"PK"):
        reader: Any = _read_npz
    elif path.suffix == ".safetensors":
        reader = _read_safetensors
    else:
        raise ModelFileError(
            f"{str(path)!r} is not a rasp_lab model file: expected a numpy .npz archive "
            f"(or a .safetensors file) written by rasp_lab.save"
        )
    try:
        arrays, metadata = reader(path, max_bytes)
        return from_arrays(arrays, metadata, model_class, source=str(path))
    except ModelFileError:
        raise
    except Exception as err:  # a damaged file must never surface as anything else
        raise ModelFileError(
            f"{str(path)!r}: unreadable model file ({type(err).__name__}: {shown(str(err), 200)})"
        ) from None


def _read_npz(
    path: pathlib.Path, max_bytes: int = MAX_WEIGHT_BYTES
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    with NpzReader(path, METADATA_KEY) as archive:
        text = archive.metadata_text()
        if text is None:
            raise ModelFileError(
                f"{str(path)!r} has no rasp_lab metadata (array {METADATA_KEY!r}): it was not written by rasp_lab.save"
            )
        metadata = _parse(text, path)
        return _read_arrays(archive, metadata, str(path), max_bytes), metadata


def _read_safetensors(
    path: pathlib.Path, max_bytes: int = MAX_WEIGHT_BYTES
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    with SafetensorsReader(path, SAFETENSORS_METADATA_KEY) as archive:
        text = archive.metadata_text()
        if text is None:
            raise ModelFileError(
                f"{str(path)!r} has no rasp_lab metadata (header key {SAFETENSORS_METADATA_KEY!r}): "
                f"it was not written by rasp_lab.save"
            )
        metadata = _parse(text, path)
        return _read_arrays(archive, metadata, str(path), max_bytes), metadata


def _read_arrays(
    archive: Any, metadata: dict[str, Any], source: str, max_bytes: int
) -> dict[str, np.ndarray]:
    """The arrays the metadata names, each header checked (and the total size) before any data."""
    checked = _check_metadata(metadata, source)

    def declared(name: str) -> tuple[int, ...]:
        found = archive.header(name)
        if found is None:
            raise ModelFileError(f"{source}: array {name!r} is missing")
        return found[0]

    shapes = _shapes(checked, declared, source)
    needed = sum(math.prod(shape) for shape in shapes.values()) * 8
    if needed > max_bytes:
        raise ModelFileError(
            f"{source}: the metadata's shapes (residual width {checked.layout.width}, {len(checked.layers)} layers, "
            f"max_seq_len {checked.max_seq_len}) need {needed:,} bytes of weights, over the {max_bytes:,} byte limit"
        )
    for name, shape in shapes.items():
        _check_shape(name, declared(name), shape, source)
    return {name: archive.read(name) for name in shapes}


def _parse(text: str, path: pathlib.Path) -> dict[str, Any]:
    metadata = parse_json(text, f"{str(path)!r}: the rasp_lab metadata")
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
        raise ModelFileError(f"{str(path)!r}: the metadata does not describe a rasp_lab model")
    version = metadata.get("version")
    if version != VERSION:
        raise ModelFileError(
            f"{str(path)!r} is format version {shown(version)}; this rasp_lab reads version {VERSION}"
        )
    return metadata


def from_arrays(
    arrays: dict[str, np.ndarray],
    metadata: dict[str, Any],
    model_class: type[CompiledModel],
    source: str = "arrays",
) -> CompiledModel:
    """The model from `to_arrays`'s output, once everything it claims is re-derived and checked.

    Checked: the metadata's types and ranges; every SOp's start/stop against its directions
    (contiguous, no overlaps); the token order (sorted vocab, BOS, PAD); every array's shape,
    dtype and finiteness; each head's w_qk / w_ov against its layer's W_Q W_K^T / W_V W_O,
    and each MLP's w_in / w_out against its columns of the layer's w_1 / w_2. Anything that
    disagrees is a ModelFileError saying what and by how much, never a model that runs wrong.
    Arrays and metadata keys it does not use are ignored."""
    try:
        return _build(arrays, metadata, model_class, source)
    except ModelFileError:
        raise
    except KeyError as err:
        raise ModelFileError(f"{source}: missing {shown(err.args[0])} in the saved model") from None
    except Exception as err:  # e.g. RecursionError on hand-built metadata nested too deeply
        raise ModelFileError(
            f"{source}: malformed model file ({type(err).__name__}: {shown(str(err), 200)})"
        ) from None


@dataclasses.dataclass(frozen=True)
class _Metadata:
    """The metadata, type- and range-checked, with directions and values decoded."""

    layout: ResidualLayout
    tokens: list[Any]
    bos: Any
    pad: Any
    vocab: list[Any]
    max_seq_len: int
    layers: list[tuple[list[dict[str, Any]], list[dict[str, Any]]]]
    """Per layer: its heads' and its MLPs' fields, directions picked."""


def _check_metadata(meta: dict[str, Any], source: str) -> _Metadata:
    def fail(message: str) -> ModelFileError:
        return ModelFileError(f"{source}: {message}")

    def field(obj: Any, key: str, where: str = "") -> Any:
        if not isinstance(obj, dict):
            raise fail(f"{where or 'the metadata'} is {shown(obj)}, not a JSON object")
        if key not in obj:
            raise fail(f"missing {key!r} in the saved model" + (f" ({where})" if where else ""))
        return obj[key]

    def integer(obj: Any, key: str, where: str, low: int, high: int | None = None) -> int:
        value = field(obj, key, where)
        if not (
            isinstance(value, int)
            and not isinstance(value, bool)
            and low <= value
            and (high is None or value < high)
        ):
            bound = f"an integer >= {low}" if high is None else f"an integer in [{low}, {high})"
            raise fail(f"{where + ' ' if where else ''}{key} must be {bound}, got {shown(value)}")
        return value

    def real(obj: Any, key: str, where: str, ok: Any, rule: str) -> float:
        value = field(obj, key, where)
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if not (number and not (isinstance(value, float) and math.isnan(value)) and ok(value)):
            raise fail(f"{where + ' ' if where else ''}{key} must be {rule}, got {shown(value)}")
        return float(value) if isinstance(value, float) else value

    def text(obj: Any, key: str, where: str) -> str:
        value = field(obj, key, where)
        if not isinstance(value, str):
            raise fail(f"{where + ' ' if where else ''}{key} must be a string, got {shown(value)}")
        return value

    def listed(obj: Any, key: str, where: str = "") -> list:
        value = field(obj, key, where)
        if not isinstance(value, list):
            raise fail(f"{where + ' ' if where else ''}{key} must be a list, got {shown(value)}")
        return value

    depth = json_depth(meta)
    if depth > MAX_JSON_DEPTH:
        raise fail(f"the metadata is nested {depth} levels deep, over the {MAX_JSON_DEPTH} limit")
    text(meta, "name", "")
    if not isinstance(field(meta, "causal"), bool):
        raise fail(f"causal must be true or false, got {shown(meta['causal'])}")
    real(meta, "leak", "", lambda v: 0 < v < 1, "strictly between 0 and 1")
    max_seq_len = integer(meta, "max_seq_len", "", 1, 2**31)

    raw_directions = listed(meta, "directions")
    if not 1 <= len(raw_directions) <= MAX_DIRECTIONS:
        raise fail(f"{len(raw_directions):,} residual directions; a model has 1 to {MAX_DIRECTIONS:,}")
    d_model = len(raw_directions)
    for i, entry in enumerate(raw_directions):
        if not (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], str)):
            raise fail(f"residual direction {i} is {shown(entry)}, not [name, value]")

    layer_list = listed(meta, "layers")
    if not 1 <= len(layer_list) <= MAX_LAYERS:
        raise fail(f"the saved model has {len(layer_list)} layers; a model has 1 to {MAX_LAYERS}")
    num_layers = len(layer_list)
    config = meta.get("model_config")
    if config is not None and not isinstance(config, dict):
        raise fail(f"model_config is {shown(config)}, not a JSON object")
    if isinstance(config, dict) and "num_layers" in config and config["num_layers"] != num_layers:
        raise fail(
            f"the stored model config (num_layers = {shown(config['num_layers'])}) does not match the "
            f"{num_layers} layers the metadata describes"
        )

    def indices(values: Any, what: str) -> list[int]:
        if not isinstance(values, list):
            raise fail(f"{what} must be a list of direction indices, got {shown(values)}")
        if not all(isinstance(i, int) and not isinstance(i, bool) and 0 <= i < d_model for i in values):
            bad = next(
                i for i in values if not (isinstance(i, int) and not isinstance(i, bool) and 0 <= i < d_model)
            )
            raise fail(
                f"direction index out of range in {what}: {shown(bad)} (residual width {d_model}) in {shown(values)}"
            )
        if len(set(values)) != len(values):
            repeated = next(i for i in values if values.count(i) > 1)
            raise fail(f"{what} lists direction {repeated} more than once")
        return values

    raw_sops = listed(meta, "sops")
    spans: list[tuple[int, int, str]] = []
    sop_fields: dict[str, dict[str, Any]] = {}
    for n, s in enumerate(raw_sops):
        label = text(s, "label", f"SOp {n}")
        where = f"SOp {label!r}"
        if label in sop_fields:
            raise fail(f"two SOps are labelled {label!r}")
        encoding = text(s, "encoding", where)
        if encoding not in {e.value for e in rasp.Encoding}:
            raise fail(
                f"{where} has encoding {shown(encoding)}; expected one of {[e.value for e in rasp.Encoding]}"
            )
        for key in ("head_layer", "mlp_layer"):
            if field(s, key, where) is not None:
                integer(s, key, where, 0, num_layers)
        owned = indices(field(s, "directions", where), f"{where}'s directions")
        start = integer(s, "start", where, 0, d_model + 1)
        stop = integer(s, "stop", where, 0, d_model + 1)
        if start > stop:
            raise fail(f"{where} has start {start} > stop {stop}")
        if owned != list(range(start, stop)):
            raise fail(
                f"{where} claims directions {start}..{stop} (start {start}, stop {stop}) but lists {shown(owned)}: "
                f"an SOp's directions must be exactly residual directions [start, stop)"
            )
        misnamed = [i for i in owned if raw_directions[i][0] != label]
        if misnamed:
            raise fail(
                f"{where} claims directions {start}..{stop}, but direction {misnamed[0]} is named "
                f"{shown(raw_directions[misnamed[0]][0])}: an SOp's directions carry its label"
            )
        if encoding == rasp.Encoding.NUMERICAL.value and stop - start != 1:
            raise fail(
                f"{where} is numerical but has {stop - start} directions (start {start}, stop {stop}), not 1"
            )
        spans.append((start, stop, label))
        sop_fields[label] = s
    spans.sort()
    for (a_start, a_stop, a), (b_start, b_stop, b) in zip(spans, spans[1:]):
        if b_start < a_stop:
            raise fail(f"SOps {a!r} (directions {a_start}..{a_stop}) and {b!r} ({b_start}..{b_stop}) overlap")

    owned_indices = {i for start, stop, _ in spans for i in range(start, stop)}
    # The compiler's own directions (bias, BOS marker, scratch) are the ones no SOp owns.
    directions = tuple(
        Direction(name, decode_value(value), internal=i not in owned_indices)
        for i, (name, value) in enumerate(raw_directions)
    )
    index = {d: i for i, d in enumerate(directions)}
    if len(index) != d_model:
        repeated = next(d for d in directions if directions.count(d) > 1)
        raise fail(f"repeated residual directions: {shown(str(repeated))} appears more than once")
    sops = {
        label: SOpLocation(
            label=label,
            encoding=rasp.Encoding(s["encoding"]),
            head_layer=s["head_layer"],
            mlp_layer=s["mlp_layer"],
            directions=directions[s["start"] : s["stop"]],
            start=s["start"],
            stop=s["stop"],
        )
        for label, s in sop_fields.items()
    }
    layout = ResidualLayout(directions=directions, index=index, sops=sops)
    if "residual_labels" in meta and layout.labels != meta["residual_labels"]:
        raise fail("residual labels do not match the stored directions")
    output = text(meta, "output", "")
    if output not in sops:
        raise fail(f"the output SOp {shown(output)} is not among the saved SOps")

    vocab = [decode_value(v) for v in listed(meta, "vocab")]
    tokens = [decode_value(t) for t in listed(meta, "tokens")]
    bos, pad = decode_value(field(meta, "bos")), decode_value(field(meta, "pad"))
    if len(set(vocab)) != len(vocab):
        raise fail(f"the vocabulary {shown(vocab)} repeats a token")
    for name, token in (("BOS", bos), ("PAD", pad)):
        if token in set(vocab):
            raise fail(f"the {name} token {shown(token)} is also in the vocabulary")
    if bos == pad:
        raise fail(f"BOS and PAD are the same token {shown(bos)}")
    try:
        expected = sort_values(vocab) + [bos, pad]
    except (OverflowError, TypeError, ValueError) as err:
        raise fail(f"the vocabulary {shown(vocab)} can't be ordered ({err})") from None
    canonical = [json.dumps(encode_value(t)) for t in tokens]
    if canonical != [json.dumps(encode_value(t)) for t in expected] or len(set(tokens)) != len(tokens):
        raise fail(
            f"the token order {shown(tokens, 200)} is not the sorted vocabulary, then BOS, then PAD: {shown(expected, 200)}"
        )

    layers = []
    for n, layer in enumerate(layer_list):
        heads, mlps = [], []
        for i, h in enumerate(listed(layer, "heads", f"layer {n}")):
            where = f"layer {n} head {i}"
            label = text(h, "label", where)
            where = f"layer {n} head {i} ({label!r})"
            if label not in sops or sops[label].head_layer != n:
                raise fail(f"{where} computes no SOp the metadata places in layer {n}'s attention")
            head = {
                "label": label,
                "selector": text(h, "selector", where),
                "margin": real(h, "margin", where, lambda v: 0 < v < math.inf, "a finite number > 0"),
                "coldness": real(h, "coldness", where, lambda v: 0 < v < math.inf, "a finite number > 0"),
                "leak_bound": real(h, "leak_bound", where, lambda v: 0 <= v < 1, "in [0, 1)"),
                "strategy": text(h, "strategy", where),
            }
            for key in ("query", "key", "value", "output"):
                head[key] = tuple(directions[j] for j in indices(field(h, key, where), f"{where}'s {key}"))
            heads.append(head)
        for j, m in enumerate(listed(layer, "mlps", f"layer {n}")):
            where = f"layer {n} MLP {j}"
            label = text(m, "label", where)
            where = f"layer {n} MLP {j} ({label!r})"
            if label not in sops or sops[label].mlp_layer != n:
                raise fail(f"{where} computes no SOp the metadata places in layer {n}'s MLP")
            mlp = {
                "label": label,
                "kind": text(m, "kind", where),
                "tolerance": real(m, "tolerance", where, lambda v: v >= 0, "a number >= 0"),
            }
            for key in ("inputs", "outputs"):
                mlp[key] = tuple(directions[k] for k in indices(field(m, key, where), f"{where}'s {key}"))
            mlps.append(mlp)
        layers.append((heads, mlps))
    return _Metadata(layout, tokens, bos, pad, vocab, max_seq_len, layers)


def _shapes(meta: _Metadata, declared: Any, source: str) -> dict[str, tuple[int, ...]]:
    """Every array the model needs and its shape, from the metadata; an MLP's width (which
    the metadata does not hold) is the one its w_in declares (`declared(name)`)."""
    d_model = meta.layout.width
    shapes: dict[str, tuple[int, ...]] = {
        "token_embed": (len(meta.tokens), d_model),
        "pos_embed": (meta.max_seq_len + 1, d_model),
    }
    for n, (heads, mlps) in enumerate(meta.layers):
        head_size = max(
            [1]
            + [
                max(min(len(h["query"]), len(h["key"])), min(len(h["value"]), len(h["output"])))
                for h in heads
            ]
        )
        for i, h in enumerate(heads):
            shapes[naming.head_array(n, i, "w_qk")] = (len(h["query"]), len(h["key"]))
            shapes[naming.head_array(n, i, "w_ov")] = (len(h["value"]), len(h["output"]))
        hidden = 0
        for j, m in enumerate(mlps):
            name = naming.mlp_array(n, j, "w_in")
            got = declared(name)
            if len(got) != 2 or got[0] != len(m["inputs"]) or got[1].bit_length() > 48:
                raise ModelFileError(
                    f"{source}: array {name!r} has shape {shape_text(got)}, expected ({len(m['inputs'])}, width)"
                )
            shapes[name] = (len(m["inputs"]), got[1])
            shapes[naming.mlp_array(n, j, "w_out")] = (got[1], len(m["outputs"]))
            hidden += got[1]
        for part in ("w_q", "w_k", "w_v"):
            shapes[naming.file_array(n, part)] = (d_model, len(heads), head_size)
        shapes[naming.file_array(n, "w_o")] = (len(heads), head_size, d_model)
        shapes[naming.file_array(n, "w_1")] = (d_model, hidden)
        shapes[naming.file_array(n, "w_2")] = (hidden, d_model)
    return shapes


def _check_shape(name: str, got: tuple[int, ...], want: tuple[int, ...], source: str) -> None:
    if got == want:
        return
    if name.endswith(".w_q") and len(got) == 3 and got[1] != want[1]:
        layer = name.split(".")[0].removeprefix("layer_")
        raise ModelFileError(
            f"{source}: layer {layer} has {got[1]} heads in its arrays, {want[1]} in its metadata"
        )
    raise ModelFileError(f"{source}: array {name!r} has shape {shape_text(got)}, expected {shape_text(want)}")


def _build(
    arrays: dict[str, np.ndarray], meta: dict[str, Any], model_class: type[CompiledModel], source: str
) -> CompiledModel:
    checked = _check_metadata(meta, source)
    layout = checked.layout

    def declared(name: str) -> tuple[int, ...]:
        if name not in arrays:
            raise ModelFileError(f"{source}: array {name!r} is missing")
        return tuple(np.shape(arrays[name]))

    shapes = _shapes(checked, declared, source)
    weights: dict[str, np.ndarray] = {}
    rtol = 1e-9
    for name, shape in shapes.items():
        a = arrays.get(name)
        if a is None:
            raise ModelFileError(f"{source}: array {name!r} is missing")
        a = np.asarray(a)
        if a.dtype.hasobject or a.dtype.kind != "f" or a.dtype.itemsize not in (4, 8):
            raise ModelFileError(
                f"{source}: array {name!r} has dtype {a.dtype}; weights must be float64 or float32"
            )
        if a.dtype.itemsize == 4:
            rtol = 1e-5
        _check_shape(name, a.shape, shape, source)
        bad = ~np.isfinite(a)
        if bad.any():
            first = tuple(int(i) for i in np.argwhere(bad)[0])
            raise ModelFileError(
                f"{source}: array {name!r} has {int(bad.sum())} non-finite entries ({a[first]} at {first})"
            )
        weights[name] = np.asarray(a, dtype=np.float64)

    layers = []
    for n, (head_fields, mlp_fields) in enumerate(checked.layers):
        heads = tuple(
            HeadBlock(
                w_qk=weights[naming.head_array(n, i, "w_qk")],
                w_ov=weights[naming.head_array(n, i, "w_ov")],
                **h,
            )
            for i, h in enumerate(head_fields)
        )
        mlps = tuple(
            MLPBlock(
                w_in=weights[naming.mlp_array(n, j, "w_in")],
                w_out=weights[naming.mlp_array(n, j, "w_out")],
                **m,
            )
            for j, m in enumerate(mlp_fields)
        )
        lw = LayerWeights(
            heads,
            mlps,
            *(weights[naming.file_array(n, part)] for part in ("w_q", "w_k", "w_v", "w_o", "w_1", "w_2")),
        )
        _check_layer(n, lw, layout, rtol, source)
        layers.append(lw)
    model = model_class(
        Weights(token_embed=weights["token_embed"], pos_embed=weights["pos_embed"], layers=tuple(layers)),
        layout,
        tokens=checked.tokens,
        bos=checked.bos,
        pad=checked.pad,
        vocab=checked.vocab,
        max_seq_len=checked.max_seq_len,
        output=meta["output"],
        causal=meta["causal"],
        leak=meta["leak"],
        name=meta["name"],
        source=source,
        value_info=_value_info(meta.get("value_info"), layout, source),
    )
    # Certified now, from the file's weights and value sets alone (a model saved with
    # require_exact=False loads, and its certificate says it is not proven exact).
    model.certificate  # noqa: B018
    stored, derived = meta.get("model_config"), _config(model.model_config)
    for key, value in derived.items():  # keys this rasp_lab does not know are ignored
        if isinstance(stored, dict) and key in stored and stored[key] != value:
            raise ModelFileError(
                f"{source}: the stored model config ({key} = {shown(stored[key])}) does not match the arrays "
                f"({key} = {shown(value)})"
            )
    return model


def _value_info(data: Any, layout: ResidualLayout, source: str) -> dict[str, ValueInfo]:
    """Each SOp's values as the certificate reads them (absent in older files: then the
    loaded model is not certified, and says so)."""
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ModelFileError(f"{source}: value_info must be an object, got {shown(data)}")

    def number(text: Any, where: str) -> float:
        try:
            value = float(text) if isinstance(text, str) else math.nan
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            raise ModelFileError(f"{source}: value_info of {where} holds {shown(text)}, not a finite number")
        return value

    out = {}
    for label, entry in data.items():
        if (
            label not in layout.sops
            or not isinstance(entry, dict)
            or not isinstance(entry.get("nullable"), bool)
        ):
            raise ModelFileError(f"{source}: bad value_info entry {shown(label)}: {shown(entry)}")
        values = entry.get("values")
        if values is not None and not isinstance(values, list):
            raise ModelFileError(f"{source}: value_info of {label!r} lists {shown(values)}")
        listed = None if values is None else tuple(number(v, repr(label)) for v in values)
        low, high = number(entry.get("low"), repr(label)), number(entry.get("high"), repr(label))
        if low > high or (listed and (min(listed) < low or max(listed) > high)):
            raise ModelFileError(
                f"{source}: value_info of {label!r} has range {low}..{high} not covering its values"
            )
        out[label] = ValueInfo(nullable=entry["nullable"], values=listed, low=low, high=high)
    return out


def _check_layer(n: int, lw: LayerWeights, layout: ResidualLayout, rtol: float, source: str) -> None:
    """Each head's tables and each MLP's weights, placed as the compiler places them
    (rasp_lab/compiler/assemble.py), must give the layer's weights."""
    index, labels = layout.index, layout.labels
    for i, head in enumerate(lw.heads):
        where = f"{source}: layer {n} head {i} ({head.label!r})"
        scale = head.coldness * math.sqrt(lw.head_size)
        query, key = [index[d] for d in head.query], [index[d] for d in head.key]
        if not _same_factors(
            lw.w_q[:, i, :], lw.w_k[:, i, :], query, key, head.w_qk, scale, len(key) <= len(query), rtol
        ):
            _check_product(
                lw.w_q[:, i, :],
                lw.w_k[:, i, :],
                query,
                key,
                head.w_qk * scale,
                rtol,
                labels,
                f"{where}: its w_qk (times coldness * sqrt(head_size) = {scale:.6g}) disagrees with "
                f"layer_{n}.w_q @ layer_{n}.w_k^T",
            )
        value, output = [index[d] for d in head.value], [index[d] for d in head.output]
        if not _same_factors(
            lw.w_v[:, i, :], lw.w_o[i].T, value, output, head.w_ov, 1.0, len(value) > len(output), rtol
        ):
            _check_product(
                lw.w_v[:, i, :],
                lw.w_o[i].T,
                value,
                output,
                head.w_ov,
                rtol,
                labels,
                f"{where}: its w_ov disagrees with layer_{n}.w_v @ layer_{n}.w_o",
            )
    offset = 0
    for j, mlp in enumerate(lw.mlps):
        where = f"{source}: layer {n} MLP {j} ({mlp.label!r})"
        cols = slice(offset, offset + mlp.hidden)
        want = np.zeros((layout.width, mlp.hidden))
        want[[index[d] for d in mlp.inputs], :] = mlp.w_in
        _check_equal(
            lw.w_1[:, cols],
            want,
            rtol,
            f"{where}: its w_in disagrees with layer_{n}.w_1",
            lambda r, c, offset=offset: f"direction {labels[r]!r}, hidden unit {offset + c}",
        )
        want = np.zeros((mlp.hidden, layout.width))
        want[:, [index[d] for d in mlp.outputs]] = mlp.w_out
        _check_equal(
            lw.w_2[cols],
            want,
            rtol,
            f"{where}: its w_out disagrees with layer_{n}.w_2",
            lambda r, c, offset=offset: f"hidden unit {offset + r}, direction {labels[c]!r}",
        )
        offset += mlp.hidden


def _same_factors(
    left: np.ndarray,
    right: np.ndarray,
    rows: list[int],
    cols: list[int],
    table: np.ndarray,
    scale: float,
    table_on_left: bool,
    rtol: float,
) -> bool:
    """Whether (left, right) [d_model, head_size] are exactly the compiler's factors of
    `table` * `scale` placed at (rows, cols): the table on the smaller side, one-hot directions
    on the other, the scale on the left. A cheap first test (no d_model^2 product); a file
    that factors differently gets the product test."""
    want_left, want_right = np.zeros_like(left), np.zeros_like(right)
    if min(len(rows), len(cols)) > left.shape[1]:
        return False
    if table_on_left:
        want_left[rows, : len(cols)] = table * scale
        want_right[cols, range(len(cols))] = 1.0
    else:
        want_left[rows, range(len(rows))] = scale
        want_right[cols, : len(rows)] = table.T
    tolerance = rtol * max(1.0, scale * float(np.abs(table).max(initial=0.0)))
    return all(
        np.abs(got - want).max(initial=0.0) <= tolerance
        for got, want in ((left, want_left), (right, want_right))
    )


def _check_product(
    left: np.ndarray,
    right: np.ndarray,
    rows: list[int],
    cols: list[int],
    table: np.ndarray,
    rtol: float,
    labels: list[str],
    what: str,
) -> None:
    """left @ right^T ([d_model, d_model]) must be `table` at (rows, cols) and 0 elsewhere;
    computed only over the rows either side can reach, not all d_model^2 entries."""
    r = sorted(set(np.flatnonzero(np.any(left != 0, axis=1)).tolist()) | set(rows))
    c = sorted(set(np.flatnonzero(np.any(right != 0, axis=1)).tolist()) | set(cols))
    at_r, at_c = {x: k for k, x in enumerate(r)}, {x: k for k, x in enumerate(c)}
    want = np.zeros((len(r), len(c)))
    want[np.ix_([at_r[x] for x in rows], [at_c[x] for x in cols])] = table
    _check_equal(
        left[r] @ right[c].T,
        want,
        rtol,
        what,
        lambda a, b: f"directions ({labels[r[a]]!r}, {labels[c[b]]!r})",
    )


def _check_equal(got: np.ndarray, want: np.ndarray, rtol: float, what: str, at: Any) -> None:
    if got.size == 0:
        return
    off = np.abs(got - want)
    worst = np.unravel_index(int(np.argmax(off)), off.shape)
    tolerance = rtol * max(1.0, float(np.abs(want).max()))
    if off[worst] > tolerance:
        raise ModelFileError(
            f"{what}: at {at(*worst)} the layer has {got[worst]:.10g}, the table gives {want[worst]:.10g} "
            f"(off by {off[worst]:.3g}, tolerance {tolerance:.3g})"
        )
