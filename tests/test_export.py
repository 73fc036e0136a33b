"""Saved models (rasp_lab/export.py): a model loaded from .npz or .safetensors runs exactly
like the one that was saved, without the RASP program; damaged or foreign files are
refused with a message saying what is wrong."""

from __future__ import annotations

import itertools
import json
import random
import zipfile

import numpy as np
import pytest
from rasp_lab.programs.registry import get

import rasp_lab
from rasp_lab import export, rasp
from rasp_lab.compiler.model import NotAvailable

# categorical, numerical, causal, SelectorWidth, and selector-composition programs
ROUND_TRIP = {
    "sort": "npz",  # categorical, three layers
    "frac_prevs": "safetensors",  # numerical, causal
    "detect_pattern": "npz",  # causal, categorical with None
    "hist": "safetensors",  # SelectorWidth
    "has_earlier_duplicate": "npz",  # EQ & LT composition in one head
    "sort_composed": "safetensors",  # | and & composition
    "count_earlier_different": "npz",  # ~EQ & LT
}

_MODELS: dict[str, rasp_lab.CompiledModel] = {}


def compiled(name: str) -> rasp_lab.CompiledModel:
    if name not in _MODELS:
        entry = get(name)
        _MODELS[name] = rasp_lab.compile(entry.build(), entry.vocab, entry.max_seq_len, causal=entry.causal)
    return _MODELS[name]


def inputs(name: str, count: int = 300) -> list[list]:
    """Every input up to length 3, then seeded random ones up to max_seq_len, all accepted."""
    entry = get(name)
    vocab = sorted(entry.vocab, key=str)
    short = [list(xs) for n in range(1, 4) for xs in itertools.product(vocab, repeat=n)]
    rng = random.Random(name)
    longer = [[rng.choice(vocab) for _ in range(rng.randint(4, entry.max_seq_len))] for _ in range(count)]
    return [xs for xs in short + longer if entry.accepts(xs)]


@pytest.mark.slow
@pytest.mark.parametrize("name", list(ROUND_TRIP))
def test_round_trip_runs_exactly_like_the_original(name, tmp_path):
    model = compiled(name)
    path = model.save(tmp_path / f"{name}.{ROUND_TRIP[name]}")
    loaded = rasp_lab.load(path)

    assert isinstance(loaded, rasp_lab.CompiledModel) and loaded.is_loaded and not model.is_loaded
    assert loaded.residual_labels == model.residual_labels
    assert loaded.summary() == model.summary()
    assert loaded.heads == model.heads and loaded.heads  # every test program has heads
    assert loaded.model_config == model.model_config
    assert loaded.layers == model.layers
    assert (loaded.causal, loaded.max_seq_len, loaded.vocab, loaded.leak) == (
        model.causal, model.max_seq_len, model.vocab, model.leak)
    assert loaded.input_encoder.encoding_map == model.input_encoder.encoding_map
    assert (loaded.input_encoder.bos_token, loaded.input_encoder.pad_token) == ("BOS", "PAD")
    assert loaded.output_encoder.encoding_map == model.output_encoder.encoding_map
    assert loaded.output_location == model.output_location
    for label in model.layout.sops:
        assert loaded.where(label) == model.where(label)
    for group in (model.params, model.compact_params):
        other = loaded.params if group is model.params else loaded.compact_params
        assert other.keys() == group.keys()
        for key in group:
            for part, array in group[key].items():
                assert other[key][part].dtype == array.dtype
                np.testing.assert_array_equal(other[key][part], array)
    for mine, theirs in zip(model.weights.layers, loaded.weights.layers, strict=True):
        assert mine.heads == () or all(
            (a.label, a.query, a.key, a.strategy) == (b.label, b.query, b.key, b.strategy)
            and np.array_equal(a.w_qk, b.w_qk)
            for a, b in zip(mine.heads, theirs.heads, strict=True)
        )

    entry = get(name)
    xs = [list(example) for example, _ in entry.examples] + inputs(name)
    assert len(xs) > 100
    want = model.run_batch(xs)
    assert loaded.run_batch(xs) == want
    for (_, expected), got in zip(entry.examples, want):  # and the outputs are right, not just equal
        assert [round(v, 4) if isinstance(v, float) else v for v in got] == [
            round(v, 4) if isinstance(v, float) else v for v in expected]

    ids = model.encode_batch(xs)  # the shape run_batch used: no new compilation
    np.testing.assert_array_equal(loaded.encode_batch(xs), ids)
    for a, b in zip(loaded.forward(ids)[0], model.forward(ids)[0], strict=True):
        np.testing.assert_array_equal(a, b)
    for padded in (False, True):
        mine, theirs = loaded.forward_numpy(ids[:64], padded=padded), model.forward_numpy(ids[:64], padded=padded)
        for a, b in zip(mine[0] + mine[1], theirs[0] + theirs[1], strict=True):
            np.testing.assert_array_equal(a, b)
        assert loaded.decode(mine[0][-1], ids[:64]) == model.decode(theirs[0][-1], ids[:64])

    tokens = ["BOS", *xs[-1]]
    out, ref = loaded.apply(tokens), model.apply(tokens)
    assert out.decoded == ref.decoded
    assert out.cache.keys() == ref.cache.keys()
    for key in ref.cache:
        np.testing.assert_array_equal(out.cache[key], ref.cache[key])


def test_loaded_model_has_no_program_and_says_so(tmp_path):
    loaded = rasp_lab.load(compiled("sort").save(tmp_path / "sort.npz"))
    for attribute in ("program", "value_sets", "plan"):
        with pytest.raises(NotAvailable, match=f"'{attribute}' is not available on a model loaded from .*sort.npz"):
            getattr(loaded, attribute)
        assert not hasattr(loaded, attribute)  # NotAvailable is an AttributeError
    assert loaded.name == "sort" and repr(loaded).startswith("CompiledModel('sort'")
    assert loaded.source.endswith("sort.npz") and compiled("sort").source is None
    again = rasp_lab.load(loaded.save(tmp_path / "again.npz"))  # a loaded model saves too
    assert again.summary() == compiled("sort").summary()
    arrays, metadata = export.to_arrays(compiled("sort"))  # the same, without a file
    in_memory = rasp_lab.CompiledModel.from_arrays(arrays, json.loads(json.dumps(metadata)))
    assert in_memory.run([3, 1, 2]) == [1, 2, 3] and in_memory.source == "arrays"


def test_values_keep_their_types(tmp_path):
    """Tokens and values of several types (ints, bools, floats, tuples, None-free) survive:
    1, 1.0 and True stay distinct in the file."""
    for value in ["a", 3, -7, 2.5, float("inf"), True, False, (1, "x", (2.0, None)), frozenset({1, 2}), None]:
        decoded = export.decode_value(json.loads(json.dumps(export.encode_value(value))))
        assert decoded == value and type(decoded) is type(value)
    pairs = rasp.categorical(rasp.SequenceMap(lambda t, i: (t, i % 2 == 0), rasp.tokens, rasp.indices)).named("pairs")
    halves = rasp.categorical(rasp.Map(lambda t: t / 2, rasp.tokens)).named("halves")
    count = rasp.SelectorWidth(rasp.Select(pairs, pairs, rasp.Comparison.EQ)).named("count")
    both = rasp.categorical(rasp.SequenceMap(lambda c, h: (c, h, h > 1), count, halves)).named("both")
    model = rasp_lab.compile(both, {1, 2, 3}, 4)
    loaded = rasp_lab.load(model.save(tmp_path / "typed.npz"))
    values = [d.value for d in loaded.layout.directions]
    assert values == [d.value for d in model.layout.directions]
    assert [type(v) for v in values] == [type(d.value) for d in model.layout.directions]
    assert any(isinstance(v, tuple) and isinstance(v[1], bool) for v in values)  # pairs
    assert any(isinstance(v, float) for v in values)  # halves
    assert any(isinstance(v, tuple) and isinstance(v[1], float) and isinstance(v[2], bool) for v in values)
    xs = [list(x) for n in range(1, 5) for x in itertools.product([1, 2, 3], repeat=n)]
    assert loaded.run_batch(xs) == model.run_batch(xs) == [both(x) for x in xs]


def test_unsupported_value_is_refused_at_save():
    with pytest.raises(TypeError, match="can't save value .* of type list"):
        export.encode_value([1, 2])


# ------------------------------------------------------------------ bad files


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no model file at"):
        rasp_lab.load(tmp_path / "nothing.npz")


def test_not_a_model_file(tmp_path):
    text = tmp_path / "notes.npz"
    text.write_text("hello")
    with pytest.raises(rasp_lab.ModelFileError, match="is not a rasp_lab model file"):
        rasp_lab.load(text)
    broken = tmp_path / "broken.npz"
    broken.write_bytes(b"PK\x03\x04 truncated zip")
    with pytest.raises(rasp_lab.ModelFileError, match="not a readable .npz archive"):
        rasp_lab.load(broken)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not json header")
    with pytest.raises(rasp_lab.ModelFileError, match="not a readable .safetensors file"):
        rasp_lab.load(garbage)


def test_foreign_archives(tmp_path):
    plain = tmp_path / "plain.npz"
    np.savez(plain, x=np.zeros(3))
    with pytest.raises(rasp_lab.ModelFileError, match="has no rasp_lab metadata .* not written by rasp_lab.save"):
        rasp_lab.load(plain)
    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, __rasp_lab__=np.array([{"a": 1}], dtype=object))
    with pytest.raises(rasp_lab.ModelFileError, match="not a readable .npz archive"):
        rasp_lab.load(pickled)  # never unpickles
    from safetensors.numpy import save_file

    foreign = tmp_path / "foreign.safetensors"
    save_file({"x": np.zeros(3)}, str(foreign))
    with pytest.raises(rasp_lab.ModelFileError, match="has no rasp_lab metadata"):
        rasp_lab.load(foreign)


def _rewrite(path, tmp_path, change):
    """A copy of the .npz at `path` with `change(arrays, metadata)` applied."""
    with np.load(path) as archive:
        arrays = {k: archive[k] for k in archive.files}
    metadata = json.loads(str(arrays.pop(export.METADATA_KEY)))
    change(arrays, metadata)
    out = tmp_path / "changed.npz"
    np.savez(out, **arrays, **{export.METADATA_KEY: np.array(json.dumps(metadata))})
    return out


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda a, m: m.update(version=99), "format version 99; this rasp_lab reads version 1"),
        (lambda a, m: m.update(format="other"), "does not describe a rasp_lab model"),
        (lambda a, m: a.pop("layer_1.w_q"), "array 'layer_1.w_q' is missing"),
        (lambda a, m: a.update(token_embed=a["token_embed"][:-1]), "array 'token_embed' has shape"),
        (lambda a, m: m.pop("tokens"), "missing 'tokens' in the saved model"),
        (lambda a, m: m["directions"].pop(), "residual labels do not match|has shape"),
        (lambda a, m: m["model_config"].update(num_layers=7), "stored model config .* does not match"),
        (lambda a, m: m["layers"][1]["heads"].pop(), "layer 1 has 1 heads in its arrays, 0 in its metadata"),
        (lambda a, m: m.update(bos=["list", []]), "bad value in metadata"),
        (lambda a, m: m["sops"][0].update(directions=[10_000]), "direction index out of range"),
    ],
)
def test_damaged_files(tmp_path, change, message):
    path = compiled("sort").save(tmp_path / "sort.npz")
    with pytest.raises(rasp_lab.ModelFileError, match=message):
        rasp_lab.load(_rewrite(path, tmp_path, change))


def test_bad_json_metadata(tmp_path):
    out = tmp_path / "bad.npz"
    np.savez(out, **{export.METADATA_KEY: np.array("{not json")})
    with pytest.raises(rasp_lab.ModelFileError, match="metadata is not valid JSON"):
        rasp_lab.load(out)


def test_save_checks_its_arguments(tmp_path, monkeypatch):
    model = compiled("sort")
    with pytest.raises(ValueError, match=r"name the file \*.npz or \*.safetensors"):
        model.save(tmp_path / "model.pt")
    with pytest.raises(TypeError, match="save takes a CompiledModel"):
        export.save("sort", tmp_path / "x.npz")
    assert not list(tmp_path.iterdir())
    monkeypatch.setitem(__import__("sys").modules, "safetensors", None)
    monkeypatch.setitem(__import__("sys").modules, "safetensors.numpy", None)
    with pytest.raises(ModuleNotFoundError, match=r"pip install 'rasp-lab\[export\]'"):
        model.save(tmp_path / "model.safetensors")


def test_npz_file_is_plain_arrays(tmp_path):
    """The archive holds the compact weights under documented names, and no object arrays."""
    model = compiled("sort")
    path = model.save(tmp_path / "sort.npz")
    with zipfile.ZipFile(path) as archive:
        names = sorted(n.removesuffix(".npy") for n in archive.namelist())
    assert "token_embed" in names and "layer_0.w_1" in names and "layer_2.head_0.w_qk" in names
    with np.load(path, allow_pickle=False) as archive:
        assert all(archive[n].dtype != object for n in archive.files)
        np.testing.assert_array_equal(archive["layer_2.w_q"], model.weights.layers[2].w_q)
        metadata = json.loads(str(archive[export.METADATA_KEY]))
    assert metadata["model_config"]["layer_shapes"] == [[s.num_heads, s.head_size, s.mlp_hidden]
                                                        for s in model.model_config.layer_shapes]
    assert metadata["output"] == "sort" and metadata["causal"] is False
    assert metadata["bos"] == ["str", "BOS"]
