"""The compiled model as users and other tools see it.

- Tracr's attribute contract: a plain-numpy forward pass written from `params`,
  `model_config`, `residual_labels`, `input_encoder` and `output_encoder` alone (as
  TransformerLens' Tracr converter reads them) agrees with the evaluator;
- TransformerLens hook names in `apply(...).cache`;
- bad inputs and bad programs raise before anything runs, naming what is wrong;
- Tracr code runs after an import swap;
- padding in batches is invisible; None decodes as None;
- introspection (summary, parameter counts, where, heads), layer allocation, determinism.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
from rasp_lab.programs.registry import get

import rasp_lab
from rasp_lab import rasp
from rasp_lab.evaluator import EvaluationError

NUMERICAL_TOLERANCE = 1e-4

_MODELS: dict[tuple, rasp_lab.CompiledModel] = {}


def zoo_model(name: str) -> rasp_lab.CompiledModel:
    """A zoo program compiled at its registry settings (cached across tests)."""
    key = ("zoo", name)
    if key not in _MODELS:
        entry = get(name)
        _MODELS[key] = rasp_lab.compile(entry.build(), entry.vocab, entry.max_seq_len, causal=entry.causal)
    return _MODELS[key]


def same(got: Any, expected: Any) -> bool:
    if expected is None or got is None:
        return got is None and expected is None
    if isinstance(expected, float) or isinstance(got, float):
        return math.isclose(got, expected, rel_tol=NUMERICAL_TOLERANCE, abs_tol=NUMERICAL_TOLERANCE)
    return got == expected and isinstance(got, bool) == isinstance(expected, bool)


def assert_same(got: Sequence[Any], expected: Sequence[Any], context: Any = "") -> None:
    assert len(got) == len(expected), (context, got, expected)
    assert all(same(g, e) for g, e in zip(got, expected, strict=True)), (context, got, expected)


# ------------------------------------------------------------------ Tracr's attribute contract


def contract_forward(model: Any, tokens: Sequence[Any]) -> np.ndarray:
    """The final residual [seq, d_model] for `tokens` (BOS first), computed in float64 numpy
    from the Tracr attributes only, as TransformerLens' Tracr converter reads them:
    W_E, W_pos, per-layer W_Q/W_K/W_V [d_model, heads, key_size], W_O, logits scaled by
    1/sqrt(key_size), ReLU MLPs, no layer norm, a causal mask if the config says so."""
    params, config = model.params, model.model_config
    assert not config.layer_norm
    heads, key_size = config.num_heads, config.key_size
    ids = np.asarray(model.input_encoder.encode(list(tokens)))
    assert ids.tolist() == [model.input_encoder.encoding_map[t] for t in tokens]
    seq = len(ids)

    def p(name: str, part: str) -> np.ndarray:
        return np.asarray(params[name][part], dtype=np.float64)

    x = p("token_embed", "embeddings")[ids] + p("pos_embed", "embeddings")[:seq]  # [seq, d_model]
    d_model = x.shape[1]
    allowed = np.tril(np.ones((seq, seq), dtype=bool)) if config.causal else np.ones((seq, seq), dtype=bool)
    for layer in range(config.num_layers):
        prefix = f"transformer/layer_{layer}"

        def project(name: str, x: np.ndarray = x, prefix: str = prefix) -> np.ndarray:
            w = p(f"{prefix}/attn/{name}", "w").reshape(d_model, heads, key_size)  # W_Q / W_K / W_V
            b = p(f"{prefix}/attn/{name}", "b").reshape(heads, key_size)
            return np.einsum("sd,dhk->hsk", x, w) + b[:, None, :]  # [heads, seq, key_size]

        q, k, v = project("query"), project("key"), project("value")
        logits = np.einsum("hqk,hsk->hqs", q, k) / math.sqrt(key_size)  # [heads, query, key]
        logits = np.where(allowed[None], logits, -np.inf)
        logits -= logits.max(axis=-1, keepdims=True)
        pattern = np.exp(logits)
        pattern /= pattern.sum(axis=-1, keepdims=True)
        z = np.einsum("hqs,hsk->hqk", pattern, v)  # [heads, query, key_size]
        w_o = p(f"{prefix}/attn/linear", "w").reshape(heads, key_size, d_model)
        x = x + np.einsum("hqk,hkd->qd", z, w_o) + p(f"{prefix}/attn/linear", "b")
        hidden = np.maximum(0.0, x @ p(f"{prefix}/mlp/linear_1", "w") + p(f"{prefix}/mlp/linear_1", "b"))
        x = x + hidden @ p(f"{prefix}/mlp/linear_2", "w") + p(f"{prefix}/mlp/linear_2", "b")
    return x


def contract_decode(model: Any, output_label: str, residual: np.ndarray) -> list[Any]:
    """Decode every non-BOS position from the residual directions named `<label>:<value>`
    (argmax, mapped back through output_encoder.encoding_map), or, for a numerical output,
    the one direction named exactly `<label>`. An all-zero categorical block is None."""
    labels = list(model.residual_labels)
    encoding_map = model.output_encoder.encoding_map
    if encoding_map is None:
        return [float(v) for v in residual[1:, labels.index(output_label)]]
    columns = [i for i, name in enumerate(labels) if name.startswith(f"{output_label}:")]
    assert len(columns) == len(encoding_map), (columns, encoding_map)
    by_index = {index: value for value, index in encoding_map.items()}
    assert [labels[columns[i]] for i in range(len(columns))] == [f"{output_label}:{by_index[i]}" for i in range(len(columns))]
    block = residual[1:, columns]
    return [None if row.max() < 0.5 else by_index[int(np.argmax(row))] for row in block]


CONTRACT_PROGRAMS = ["sort", "hist", "reverse", "frac_prevs", "pair_balance", "shift_by", "count_distinct", "shuffle_dyck"]


def contract_inputs(name: str, short: int = 4, random_count: int = 40) -> list[list[Any]]:
    entry = get(name)
    tokens = sorted(entry.vocab, key=repr)
    out = [list(xs) for n in range(1, min(short, entry.max_seq_len) + 1) for xs in itertools.product(tokens, repeat=n)]
    rng = random.Random(name)
    out += [[rng.choice(tokens) for _ in range(rng.randint(1, entry.max_seq_len))] for _ in range(random_count)]
    return [xs for xs in out if entry.accepts(xs)]


@pytest.mark.parametrize("name", CONTRACT_PROGRAMS)
def test_attribute_contract_rebuilds_the_model(name: str) -> None:
    entry = get(name)
    program = entry.build()
    model = zoo_model(name)
    assert model.model_config.causal == entry.causal
    checked = 0
    for xs in contract_inputs(name):
        try:
            expected = rasp.evaluate(program, xs, causal=entry.causal)
        except EvaluationError:
            continue
        residual = contract_forward(model, [model.input_encoder.bos_token, *xs])
        assert_same(contract_decode(model, program.label, residual), expected, (name, xs))
        checked += 1
    assert checked >= 50


def test_contract_numerical_output_encoder_is_none() -> None:
    model = zoo_model("frac_prevs")
    assert model.output_encoder.encoding_map is None
    assert "frac_prevs" in model.residual_labels
    assert not any(label.startswith("frac_prevs:") for label in model.residual_labels)


def test_contract_params_have_one_shape_per_layer() -> None:
    model = zoo_model("sort")
    config, params = model.model_config, model.params
    d_model = len(model.residual_labels)
    width = config.num_heads * config.key_size
    assert params["token_embed"]["embeddings"].shape == (len(model.input_encoder.encoding_map), d_model)
    assert params["pos_embed"]["embeddings"].shape == (config.max_seq_len + 1, d_model)
    for layer in range(config.num_layers):
        p = f"transformer/layer_{layer}"
        for part in ("query", "key", "value"):
            assert params[f"{p}/attn/{part}"]["w"].shape == (d_model, width)
            assert params[f"{p}/attn/{part}"]["b"].shape == (width,)
        assert params[f"{p}/attn/linear"]["w"].shape == (width, d_model)
        assert params[f"{p}/mlp/linear_1"]["w"].shape == (d_model, config.mlp_hidden_size)
        assert params[f"{p}/mlp/linear_2"]["w"].shape == (config.mlp_hidden_size, d_model)
    assert f"transformer/layer_{config.num_layers}/attn/query" not in params
    encoder = model.input_encoder
    assert encoder.encoding_map[encoder.bos_token] != encoder.encoding_map[encoder.pad_token]
    assert set(encoder.encoding_map) == set(get("sort").vocab) | {encoder.bos_token, encoder.pad_token}


# ------------------------------------------------------------------ hook names


@pytest.mark.parametrize("name", ["sort", "frac_prevs"])
def test_cache_hook_names_and_shapes(name: str) -> None:
    model = zoo_model(name)
    xs = sorted(get(name).vocab, key=repr)[:3] * 2
    xs = xs[: get(name).max_seq_len]
    out = model.apply(["BOS", *xs])
    seq, d_model = len(xs) + 1, len(model.residual_labels)
    cache = out.cache
    assert cache["hook_embed"].shape == (seq, d_model)
    layers = model.model_config.num_layers
    for layer in range(layers):
        heads = model.model_config.layer_shapes[layer].num_heads
        for hook in ("hook_resid_pre", "hook_resid_mid", "hook_resid_post", "hook_attn_out", "hook_mlp_out"):
            assert cache[f"blocks.{layer}.{hook}"].shape == (seq, d_model), hook
        pattern = cache[f"blocks.{layer}.attn.hook_pattern"]
        assert pattern.shape == (heads, seq, seq)
        allowed = np.tril(np.ones((seq, seq))) if model.causal else np.ones((seq, seq))
        np.testing.assert_allclose(pattern.sum(axis=-1), 1.0, atol=1e-5)
        np.testing.assert_allclose((pattern * allowed).sum(axis=-1), 1.0, atol=1e-5)
        assert np.all(pattern[:, allowed == 0] == 0.0), "masked (future) keys get weight"
        pre, mid, post = (cache[f"blocks.{layer}.hook_resid_{h}"] for h in ("pre", "mid", "post"))
        np.testing.assert_allclose(mid, pre + cache[f"blocks.{layer}.hook_attn_out"], atol=1e-5)
        np.testing.assert_allclose(post, mid + cache[f"blocks.{layer}.hook_mlp_out"], atol=1e-5)
        if layer + 1 < layers:
            np.testing.assert_array_equal(post, cache[f"blocks.{layer + 1}.hook_resid_pre"])
    np.testing.assert_allclose(cache["blocks.0.hook_resid_pre"], cache["hook_embed"] + cache["hook_pos_embed"], atol=1e-6)
    final = list(out.stream.values())[-1]
    np.testing.assert_array_equal(cache[f"blocks.{layers - 1}.hook_resid_post"], final)
    assert f"blocks.{layers}.hook_resid_pre" not in cache


def test_pattern_rows_ignore_pad_keys() -> None:
    model = zoo_model("hist")
    ids = model.encode_batch([["a", "b", "c", "a"], ["b"]])
    _, patterns = model.forward(ids)
    pad = model.input_encoder.pad_encoding
    for pattern in patterns:  # [batch, heads, query, key]
        keys_ok = (ids != pad)[:, None, None, :]
        np.testing.assert_allclose((pattern * keys_ok).sum(axis=-1), 1.0, atol=1e-5)
        assert np.all(pattern[np.broadcast_to(~keys_ok, pattern.shape)] == 0.0)


# ------------------------------------------------------------------ bad input


@pytest.fixture
def guarded() -> rasp_lab.CompiledModel:
    """The `hist` model (vocab a, b, c; max_seq_len 6) whose forward pass fails the test if
    anything reaches it."""
    model = rasp_lab.compile(get("hist").build(), get("hist").vocab, get("hist").max_seq_len)

    def ran(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the forward pass ran on a bad input")

    model.forward = ran  # type: ignore[method-assign]
    return model


def test_out_of_vocabulary_token_names_token_and_position(guarded: rasp_lab.CompiledModel) -> None:
    with pytest.raises(ValueError, match=r"'z'.*position 2"):
        guarded.apply(["BOS", "a", "z", "b"])
    with pytest.raises(ValueError, match=r"'z'.*position"):
        guarded.run(["a", "z"])
    with pytest.raises(ValueError, match=r"\b7\b.*position"):
        guarded.run_batch([["a"], ["b", 7]])


def test_missing_bos(guarded: rasp_lab.CompiledModel) -> None:
    with pytest.raises(ValueError, match=r"BOS.*'a'.*position 0"):
        guarded.apply(["a", "b"])
    with pytest.raises(ValueError, match="BOS"):
        guarded.apply([])


def test_bos_in_the_middle(guarded: rasp_lab.CompiledModel) -> None:
    with pytest.raises(ValueError, match=r"BOS.*position 2"):
        guarded.apply(["BOS", "a", "BOS"])
    with pytest.raises(ValueError, match=r"BOS.*position"):
        guarded.run(["a", "BOS"])


def test_pad_followed_by_a_token(guarded: rasp_lab.CompiledModel) -> None:
    """A PAD before a real token would silently cut the output short (decoding stops at the
    first PAD, and the tokens after it are computed as if it were not there)."""
    with pytest.raises(ValueError, match=r"PAD.*position 2"):
        guarded.apply(["BOS", "a", "PAD", "b"])
    with pytest.raises(ValueError, match=r"PAD.*position"):
        guarded.run(["a", "PAD", "b"])


def test_too_long(guarded: rasp_lab.CompiledModel) -> None:
    with pytest.raises(ValueError, match=r"7.*max_seq_len 6"):
        guarded.apply(["BOS", *"abcabca"])
    with pytest.raises(ValueError, match="max_seq_len"):
        guarded.run_batch([["a"], list("abcabca")])


def test_forward_rejects_ids_out_of_range() -> None:
    model = zoo_model("hist")
    bos = model.input_encoder.bos_encoding
    n_tokens = len(model.input_encoder.encoding_map)
    with pytest.raises(ValueError, match=rf"out of range.*{n_tokens + 5}"):
        model.forward(np.array([[bos, 0, n_tokens + 5]]))
    with pytest.raises(ValueError, match=r"out of range.*-1"):
        model.forward(np.array([[bos, -1]]))
    with pytest.raises(ValueError, match="shape"):
        model.forward(np.array([bos, 0]))
    with pytest.raises(ValueError, match="max_seq_len"):
        model.forward(np.array([[bos] + [0] * 7]))


def test_categorical_aggregate_with_default_names_the_label() -> None:
    agg = rasp.Aggregate(rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.EQ), rasp.tokens, default="a")
    with pytest.raises(rasp_lab.ValidationError, match="agg_with_default") as err:
        rasp_lab.compile(agg.named("agg_with_default"), {"a", "b"}, 4)
    assert any(p.label == "agg_with_default" and p.kind == "default" for p in err.value.problems)


def test_numerical_aggregate_of_strings_names_the_label() -> None:
    strings = rasp.numerical(rasp.Map(lambda t: t + "!", rasp.tokens)).named("shouted")
    mean = rasp.numerical(rasp.Aggregate(rasp.Select(rasp.indices, rasp.indices, rasp.Comparison.LEQ), strings, default=0))
    with pytest.raises(rasp_lab.ValidationError, match="mean_of_strings") as err:
        rasp_lab.compile(mean.named("mean_of_strings"), {"a", "b"}, 4)
    labels = {p.label for p in err.value.problems}
    assert "mean_of_strings" in labels
    assert "'a!'" in str(err.value)


def test_mixed_values_aggregate_names_the_label_and_an_input() -> None:
    everything = rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.TRUE)
    agg = rasp.Aggregate(everything, rasp.tokens).named("mixes")
    with pytest.raises(rasp_lab.ValidationError, match=r"mixes.*on input") as err:
        rasp_lab.compile(agg, {"a", "b"}, 3)
    assert [p.kind for p in err.value.problems] == ["mixed-values"]


@pytest.mark.parametrize(
    ("vocab", "kwargs", "token"),
    [
        ({"a", "BOS"}, {}, "BOS"),
        ({"a", "PAD"}, {}, "PAD"),
        ({"a", "b"}, {"bos": "a"}, "a"),
        ({"a", "b"}, {"pad": "b"}, "b"),
        ({"a", "b"}, {"bos": "X", "pad": "X"}, "X"),
    ],
)
def test_bos_and_pad_must_not_collide(vocab: set, kwargs: dict, token: str) -> None:
    with pytest.raises(rasp_lab.CompileError, match=rf"'{token}'"):
        rasp_lab.compile(rasp.Map(lambda t: t, rasp.tokens), vocab, 3, **kwargs)


@pytest.mark.parametrize("leak", [0, 0.0, 1, 1.0, -1e-6, 1.5, float("nan"), "1e-6", None])
def test_leak_must_be_strictly_between_0_and_1(leak: Any) -> None:
    with pytest.raises(ValueError, match="leak"):
        rasp_lab.compile(rasp.tokens, {"a"}, 2, leak=leak)


@pytest.mark.parametrize(
    "program",
    [rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.EQ), "tokens", None, [rasp.tokens]],
    ids=["selector", "string", "none", "list"],
)
def test_program_must_be_an_sop(program: Any) -> None:
    with pytest.raises(TypeError, match="SOp"):
        rasp_lab.compile(program, {"a"}, 2)
    with pytest.raises(TypeError, match="SOp"):
        rasp_lab.compile_rasp_to_model(program, {"a"}, 2)


# ------------------------------------------------------------------ Tracr code, import swapped

TRACR_SNIPPET = '''
from rasp_lab import rasp
from rasp_lab.compiling import compile_rasp_to_model


def make_length():
    all_true_selector = rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.TRUE).named("all_true_selector")
    return rasp.SelectorWidth(all_true_selector).named("length")


def make_frac_prevs(bools):
    bools = rasp.numerical(bools)
    prevs = rasp.Select(rasp.indices, rasp.indices, rasp.Comparison.LEQ)
    return rasp.numerical(rasp.Aggregate(prevs, bools, default=0)).named("frac_prevs")


def make_sort_unique(vals, keys):
    smaller = rasp.Select(keys, keys, rasp.Comparison.LT).named("smaller")
    target_pos = rasp.SelectorWidth(smaller).named("target_pos")
    sel_new = rasp.Select(target_pos, rasp.indices, rasp.Comparison.EQ)
    return rasp.Aggregate(sel_new, vals).named("sort")


def make_sort(vals, keys, *, max_seq_len, min_key):
    keys = rasp.SequenceMap(lambda x, i: x + min_key * i / max_seq_len, keys, rasp.indices)
    return make_sort_unique(vals, keys)


results = {}
for name, program in [
    ("length", make_length()),
    ("frac_prevs", make_frac_prevs(rasp.tokens == 1)),
    ("sort", make_sort(rasp.tokens, rasp.tokens, max_seq_len=5, min_key=1)),
]:
    model = compile_rasp_to_model(program, vocab={1, 2, 3}, max_seq_len=5, compiler_bos="BOS")
    results[name] = {
        "bos": model.apply(["BOS", 1, 2, 3]).decoded,
        "repeats": model.apply(["BOS", 3, 1, 3, 1, 2]).decoded,
        "model": model,
    }
'''


def test_tracr_code_runs_after_the_import_swap() -> None:
    namespace: dict[str, Any] = {}
    exec(compile(TRACR_SNIPPET, "tracr_snippet", "exec"), namespace)
    results = namespace["results"]
    assert results["length"]["bos"] == ["BOS", 3, 3, 3]
    assert results["length"]["repeats"] == ["BOS", 5, 5, 5, 5, 5]
    frac = results["frac_prevs"]["bos"]
    assert frac[0] == "BOS"
    assert_same(frac[1:], [1.0, 1 / 2, 1 / 3])
    assert_same(results["frac_prevs"]["repeats"][1:], [0.0, 1 / 2, 1 / 3, 2 / 4, 2 / 5])
    assert results["sort"]["bos"] == ["BOS", 1, 2, 3]
    assert results["sort"]["repeats"] == ["BOS", 1, 1, 2, 3, 3]
    sort_model = results["sort"]["model"]
    assert sort_model.input_encoder.bos_token == "BOS"
    assert sort_model.output_encoder.encoding_map == {1: 0, 2: 1, 3: 2}
    assert results["frac_prevs"]["model"].output_encoder.encoding_map is None


# ------------------------------------------------------------------ padding


def _pad_programs() -> dict[str, tuple[rasp.SOp, set, int]]:
    later = rasp.Select(rasp.indices, rasp.indices, rasp.Comparison.GT)  # keys after the query
    not_before = rasp.Select(rasp.indices, rasp.indices, rasp.Comparison.GEQ)
    is_a = rasp.numerical(rasp.Map(lambda t: 1 if t == "a" else 0, rasp.tokens))
    everything = rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.TRUE)
    return {
        "width_of_later_indices": (rasp.SelectorWidth(later), {"a", "b"}, 7),
        "numerical_width_of_later": (rasp.numerical(rasp.SelectorWidth(not_before)), {"a", "b"}, 7),
        "mean_over_everything": (rasp.numerical(rasp.Aggregate(everything, is_a, default=0)), {"a", "b"}, 7),
        "mean_over_later": (rasp.numerical(rasp.Aggregate(later, is_a, default=0)), {"a", "b"}, 7),
        "reverse": (get("reverse").build(), set(get("reverse").vocab), 6),
    }


@pytest.mark.slow
@pytest.mark.parametrize("name", list(_pad_programs()))
def test_padding_is_invisible(name: str) -> None:
    program, vocab, n = _pad_programs()[name]
    model = rasp_lab.compile(program, vocab, n, require_exact=False)
    tokens = sorted(vocab)
    rng = random.Random(name)
    inputs = [[rng.choice(tokens) for _ in range(length)] for length in (1, n, 3, 2, n - 1, 5, 1, n)]
    batched = model.run_batch(inputs)
    ids = model.encode_batch(inputs)
    assert (ids == model.input_encoder.pad_encoding).any(), "the batch should contain pads"
    for xs, together in zip(inputs, batched, strict=True):
        alone = model.run(xs)
        expected = rasp.evaluate(program, xs)
        assert_same(together, alone, (name, xs, "batched vs alone"))
        assert_same(alone, expected, (name, xs, "alone vs evaluator"))


# ------------------------------------------------------------------ None


def test_none_decodes_as_none_exactly_where_the_evaluator_has_none() -> None:
    nxt = rasp.Map(lambda i: i + 1, rasp.indices)
    shifted = rasp.Aggregate(rasp.Select(rasp.indices, nxt, rasp.Comparison.EQ), rasp.tokens).named("next_token")
    no_b = rasp.Map(lambda t: None if t == "b" else t, rasp.tokens).named("no_b")
    both = rasp.SequenceMap(lambda x, y: x + y, shifted, no_b).named("both")
    matched = rasp.Aggregate(rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.LT), rasp.Map(lambda t: "x", rasp.tokens))
    vocab = {"a", "b", "c"}
    inputs = [list(xs) for n in range(1, 5) for xs in itertools.product(sorted(vocab), repeat=n)]
    for program in (shifted, no_b, both, matched.named("smaller_exists")):
        model = rasp_lab.compile(program, vocab, 4)
        expected = [rasp.evaluate(program, xs) for xs in inputs]
        assert any(None in e for e in expected) and any(v is not None for e in expected for v in e)
        got = model.run_batch(inputs)
        for xs, g, e in zip(inputs, got, expected, strict=True):
            assert [v is None for v in g] == [v is None for v in e], (program.label, xs, g, e)
            assert g == e, (program.label, xs)
        decoded = model.apply(["BOS", "a", "b", "c"]).decoded
        assert decoded == ["BOS", *rasp.evaluate(program, ["a", "b", "c"])]


# ------------------------------------------------------------------ introspection


def test_summary_and_parameter_counts() -> None:
    model = zoo_model("sort")
    text = model.summary()
    counts = model.parameter_counts()
    assert counts["nonzero"] <= counts["compact"] <= counts["padded"]
    assert counts["nonzero"] > 0
    padded = sum(a.size for group in model.params.values() for a in group.values())
    assert counts["padded"] == padded
    config = model.model_config
    assert f"{config.num_layers} layers" in text
    assert f"residual width {len(model.residual_labels)}" in text
    assert "heads" in text and "MLP width" in text
    for layer, shape in enumerate(config.layer_shapes):
        heads = {0: "no heads", 1: "1 head x size"}.get(shape.num_heads, f"{shape.num_heads} heads x size")
        assert f"layer {layer}: {heads}" in text
        assert (f"MLP width {shape.mlp_hidden}" if shape.mlp_hidden else "no MLP") in text
    assert str(counts["compact"]) in text and str(counts["nonzero"]) in text and "non-zero" in text


def test_where_gives_layer_and_directions() -> None:
    program = get("sort").build()
    model = zoo_model("sort")
    location = model.where("sort")
    assert location == model.where(program)
    assert location.head_layer == model.model_config.num_layers - 1
    labels = model.residual_labels
    assert [labels[i] for i in range(location.start, location.stop)] == [f"sort:{v}" for v in (1, 2, 3, 4)]
    assert location.values == (1, 2, 3, 4)
    width = model.where("target_pos")
    assert width.head_layer == width.mlp_layer  # a SelectorWidth: head then MLP, same layer
    assert model.where("tokens").head_layer is None and model.where("tokens").mlp_layer is None
    with pytest.raises(KeyError, match="not_an_sop"):
        model.where("not_an_sop")


@pytest.mark.parametrize("leak", [1e-6, 1e-3])
def test_heads_expose_selector_margin_coldness_and_leak(leak: float) -> None:
    entry = get("sort")
    model = rasp_lab.compile(entry.build(), entry.vocab, entry.max_seq_len, leak=leak)
    heads = model.heads
    assert {h.label for h in heads} == {"target_pos", "sort"}
    assert {h.selector for h in heads} == {"smaller", "sel_new"}
    for head in heads:
        assert head.margin > 0 and head.coldness > 0
        assert 0 < head.leak_bound <= model.leak * (1 + 1e-9) <= leak * (1 + 1e-9)
        assert head.leak_bound == pytest.approx((entry.max_seq_len + 1) * math.exp(-head.coldness * head.margin))
        assert head.layer == model.where(head.label).head_layer


# ------------------------------------------------------------------ layer allocation


def test_independent_blocks_share_a_layer() -> None:
    first = rasp.Aggregate(rasp.Select(rasp.indices, rasp.indices, rasp.Comparison.EQ), rasp.tokens).named("copy")
    same = rasp.Aggregate(rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.EQ), rasp.tokens).named("same")
    width = rasp.SelectorWidth(rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.LT)).named("smaller")
    pair = rasp.SequenceMap(lambda a, b: f"{a}{b}", first, same).named("pair")
    out = rasp.SequenceMap(lambda p, w: f"{p}{w}", pair, width).named("out")
    model = rasp_lab.compile(out, {"a", "b"}, 4)
    assert model.where("copy").head_layer == model.where("same").head_layer == 0
    assert model.where("smaller").head_layer == model.where("smaller").mlp_layer == 0
    assert model.where("pair").mlp_layer == 0
    assert model.where("out").mlp_layer == 1  # reads an MLP output: the next layer's MLP
    assert model.model_config.num_layers == 2
    assert model.model_config.layer_shapes[0].num_heads == 3
    assert model.run(["a", "b", "a"]) == rasp.evaluate(out, ["a", "b", "a"])


def _chain(depth: int) -> rasp.SOp:
    """`depth` Aggregates, each reading the previous one's output (a path of `depth` heads),
    plus a side branch of one head that must not add a layer."""
    sop: rasp.SOp = rasp.tokens
    for i in range(depth):
        sop = rasp.Aggregate(rasp.Select(rasp.indices, rasp.indices, rasp.Comparison.EQ), sop).named(f"hop{i}")
    side = rasp.Aggregate(rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.EQ), rasp.tokens).named("side")
    return rasp.Aggregate(rasp.Select(side, rasp.tokens, rasp.Comparison.EQ), sop).named("out")


@pytest.mark.parametrize("depth", [1, 3])
def test_num_layers_is_the_longest_dependency_path(depth: int) -> None:
    program = _chain(depth)
    model = rasp_lab.compile(program, {"a", "b"}, 3)
    assert [model.where(f"hop{i}").head_layer for i in range(depth)] == list(range(depth))
    assert model.where("side").head_layer == 0
    assert model.where("out").head_layer == depth
    assert model.model_config.num_layers == depth + 1
    for xs in (["a"], ["a", "b", "b"]):
        assert model.run(xs) == rasp.evaluate(program, xs)


def test_an_mlp_after_a_head_shares_its_layer() -> None:
    shifted = rasp.Aggregate(rasp.Select(rasp.indices, rasp.indices, rasp.Comparison.EQ), rasp.tokens).named("copy")
    upper = rasp.Map(str.upper, shifted).named("upper")
    again = rasp.Aggregate(rasp.Select(rasp.indices, rasp.indices, rasp.Comparison.EQ), upper).named("again")
    model = rasp_lab.compile(again, {"a", "b"}, 3)
    assert (model.where("copy").head_layer, model.where("upper").mlp_layer, model.where("again").head_layer) == (0, 0, 1)
    assert model.model_config.num_layers == 2
    assert model.run(["a", "b"]) == ["A", "B"]


# ------------------------------------------------------------------ determinism


@pytest.mark.parametrize("name", ["sort", "count_distinct"])
def test_compiling_twice_gives_identical_models(name: str) -> None:
    entry = get(name)
    first = rasp_lab.compile(entry.build(), entry.vocab, entry.max_seq_len)
    second = rasp_lab.compile(entry.build(), entry.vocab, entry.max_seq_len)
    assert first.residual_labels == second.residual_labels
    assert first.model_config == second.model_config
    assert first.params.keys() == second.params.keys()
    for group in first.params:
        assert first.params[group].keys() == second.params[group].keys()
        for part in first.params[group]:
            a, b = first.params[group][part], second.params[group][part]
            assert a.dtype == b.dtype and np.array_equal(a, b), (group, part)
    assert [h.label for h in first.heads] == [h.label for h in second.heads]


def test_summary_reads_as_english():
    program = rasp.Map(lambda t: t + 1, rasp.tokens).named("plus_one")
    text = rasp_lab.compile(program, vocab={1, 2}, max_seq_len=3).summary()
    assert "rasp_lab model for 'plus_one': 1 layer, " in text
    assert "  layer 0: no heads, MLP width " in text
    assert "0 heads" not in text and "1 layers" not in text
