"""rasp_lab.circuit.ground_truth_circuit: which heads and MLPs compute which SOp (no torch).

- a hand-written program's circuit, in full;
- for every zoo program: one component per head and MLP block of the model, what each
  reads and writes agrees with the non-zero rows and columns of the padded weights
  (`model.params`, the layout the TransformerLens export uses), edges run from a writer of
  the residual group to a later reader, every component leads to the unembedding, and the
  whole is JSON-serialisable;
- a model loaded from a file has the same circuit;
- importing rasp_lab, compiling and computing the circuit never imports torch.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from rasp_lab.programs import registry

import rasp_lab
from rasp_lab import rasp
from rasp_lab.circuit import RealHead, ground_truth_circuit, padding_heads, real_heads

_MODELS: dict[str, rasp_lab.CompiledModel] = {}


def compiled(name: str) -> rasp_lab.CompiledModel:
    if name not in _MODELS:
        entry = registry.get(name)
        _MODELS[name] = rasp_lab.compile(entry.build(), entry.vocab, entry.max_seq_len, causal=entry.causal)
    return _MODELS[name]


def frac_model() -> rasp_lab.CompiledModel:
    """The README's program: is_x (a numerical Map: an MLP), then frac_x (a numerical
    Aggregate: a head)."""
    is_x = rasp.numerical(rasp.Map(lambda t: 1 if t == "x" else 0, rasp.tokens)).named("is_x")
    so_far = rasp.Select(rasp.indices, rasp.indices, rasp.Comparison.LEQ).named("so_far")
    frac = rasp.numerical(rasp.Aggregate(so_far, is_x, default=0)).named("frac_x")
    return rasp_lab.compile(frac, vocab={"x", "a", "b"}, max_seq_len=4)


def test_readme_program_circuit() -> None:
    model = frac_model()
    gt = ground_truth_circuit(model)
    assert gt["program"] == gt["output"] == "frac_x"
    assert [(c["name"], c["sop"], c["kind"], c["layer"], c["head"], c["hook"]) for c in gt["components"]] == [
        ("m0", "is_x", "mlp", 0, None, "blocks.0.hook_mlp_out"),
        ("a1.h0", "frac_x", "attn", 1, 0, "blocks.1.attn.hook_z"),
    ]
    mlp, head = gt["components"]
    assert mlp["neurons"] == (0, model.weights.layers[0].mlp_hidden)
    assert mlp["reads"] == {"in": ("one", "tokens")}
    assert mlp["writes"] == ("is_x",)
    assert head["reads"]["q"] == ("one", "bos", "indices")
    assert head["reads"]["k"] == ("bos", "indices")
    assert head["reads"]["v"] == ("is_x",)
    assert head["writes"] == ("frac_x",)
    edges = {(e["src"], e["dst"], e["input"], e["via"]) for e in gt["edges"]}
    assert ("m0", "a1.h0", "v", "is_x") in edges
    assert ("embed", "a1.h0", "k", "indices") in edges
    assert ("embed", "a1.h0", "k", "bos") in edges
    assert ("a1.h0", "unembed", None, "frac_x") in edges
    assert ("embed", "m0", "in", "tokens") in edges
    assert gt["nodes"] == ["embed", "m0", "a1.h0", "unembed"]
    assert gt["hooks"] == ["blocks.0.hook_mlp_out", "blocks.1.attn.hook_z"]
    assert gt["sops"]["frac_x"]["heads"] == [(1, 0)] and gt["sops"]["frac_x"]["mlps"] == []
    assert gt["sops"]["is_x"]["heads"] == [] and gt["sops"]["is_x"]["mlps"] == [0]
    assert gt["sops"]["tokens"]["components"] == [] and gt["sops"]["is_x"]["encoding"] == "numerical"
    start, stop = gt["sops"]["frac_x"]["residual"]
    assert model.residual_labels[start:stop] == ["frac_x"]


def test_real_heads_and_padding_heads() -> None:
    """sort has one head in layers 1 and 2 and none in layer 0, which the export pads with a
    zero head; the README program's only head is frac_x's."""
    sort = compiled("sort")
    assert real_heads(sort) == [RealHead(1, 0, "target_pos"), RealHead(2, 0, "sort")]
    assert padding_heads(sort) == [(0, 0)]
    model = frac_model()
    assert real_heads(model) == [(1, 0, "frac_x")] and padding_heads(model) == [(0, 0)]
    heads = model.params["transformer/layer_0/attn/query"]["w"]
    assert heads.shape[1] == model.model_config.key_size and not heads.any()


def test_selector_width_is_a_head_then_an_mlp() -> None:
    gt = ground_truth_circuit(compiled("sort"))
    target = gt["sops"]["target_pos"]
    assert target["components"] == ["a1.h0", "m1"] and target["heads"] == [(1, 0)] and target["mlps"] == [1]
    scratch = "target_pos_selector_width_attn_output"
    edges = {(e["src"], e["dst"], e["input"], e["via"]) for e in gt["edges"]}
    assert ("a1.h0", "m1", "in", scratch) in edges
    assert ("m1", "a2.h0", "k", "target_pos") in edges


def _groups(model: rasp_lab.CompiledModel) -> list[str]:
    """The residual group of each residual dimension, as the circuit names them."""
    out = []
    owner = {}
    for label, location in model.layout.sops.items():
        for i in range(location.start, location.stop):
            owner[i] = label
    for i, label in enumerate(model.residual_labels):
        if i in owner:
            out.append(owner[i])
        elif label == "one":
            out.append("one")
        elif i == 1:
            out.append("bos")
        else:
            out.append(label)
    return out


def _nonzero_groups(groups: list[str], matrix: np.ndarray, axis: int) -> set[str]:
    """Groups of the residual dimensions (rows if axis=1 reduces columns) with a non-zero entry."""
    used = np.flatnonzero(np.abs(matrix).sum(axis=axis) > 0)
    return {groups[i] for i in used}


@pytest.mark.parametrize("name", registry.names())
def test_zoo_circuit_matches_weights(name: str) -> None:
    model = compiled(name)
    gt = ground_truth_circuit(model)
    json.dumps(gt)
    groups = _groups(model)
    params = model.params
    d_head = model.model_config.key_size

    # one component per head and MLP block, named and hooked as TransformerLens does
    blocks = [(layer, "attn", h.label) for layer, lw in enumerate(model.weights.layers) for h in lw.heads]
    blocks += [(layer, "mlp", m.label) for layer, lw in enumerate(model.weights.layers) for m in lw.mlps]
    assert sorted((c["layer"], c["kind"], c["sop"]) for c in gt["components"]) == sorted(blocks)
    for c in gt["components"]:
        assert c["sop"] in model.layout.sops
        location = model.layout.sops[c["sop"]]
        layer = c["layer"]
        p = f"transformer/layer_{layer}"
        if c["kind"] == "attn":
            assert c["name"] == f"a{layer}.h{c['head']}" and c["hook"] == f"blocks.{layer}.attn.hook_z"
            assert location.head_layer == layer
            cols = slice(c["head"] * d_head, (c["head"] + 1) * d_head)
            for role, ours in (("q", "query"), ("k", "key"), ("v", "value")):
                w = params[f"{p}/attn/{ours}"]["w"][:, cols]  # [d_model, d_head]
                assert _nonzero_groups(groups, w, axis=1) == set(c["reads"][role]), (c, role)
            w_o = params[f"{p}/attn/linear"]["w"][cols]  # [d_head, d_model]
            assert _nonzero_groups(groups, w_o, axis=0) == set(c["writes"]), c
        else:
            assert c["name"] == f"m{layer}" and c["hook"] == f"blocks.{layer}.hook_mlp_out"
            assert location.mlp_layer == layer
            cols = slice(*c["neurons"])
            w_in = params[f"{p}/mlp/linear_1"]["w"][:, cols]
            w_out = params[f"{p}/mlp/linear_2"]["w"][cols]
            assert _nonzero_groups(groups, w_in, axis=1) <= set(c["reads"]["in"]), c
            assert _nonzero_groups(groups, w_out, axis=0) == set(c["writes"]), c
    # the MLP blocks of a layer tile its neurons
    for layer, lw in enumerate(model.weights.layers):
        spans = sorted(c["neurons"] for c in gt["components"] if c["layer"] == layer and c["kind"] == "mlp")
        bounds = [0] + [b for _, b in spans]
        assert [a for a, _ in spans] == bounds[:-1] and bounds[-1] == lw.mlp_hidden

    # edges: from a writer of the group to a later reader; every component reaches the output
    by_name: dict[str, list[dict]] = {}
    for c in gt["components"]:
        by_name.setdefault(c["name"], []).append(c)
    order = {n: i for i, n in enumerate(gt["nodes"])}
    for e in gt["edges"]:
        assert order[e["src"]] < order[e["dst"]], e
        if e["src"] == "embed":
            assert not any(e["via"] in c["writes"] for c in gt["components"]), e
        else:
            assert any(e["via"] in c["writes"] for c in by_name[e["src"]]), e
        if e["dst"] == "unembed":
            assert e["via"] == gt["output"] and e["input"] is None
        else:
            assert any(e["via"] in c["reads"][e["input"]] for c in by_name[e["dst"]]), e
    reaches = {"unembed"}
    for e in sorted(gt["edges"], key=lambda e: -order[e["dst"]]):
        if e["dst"] in reaches:
            reaches.add(e["src"])
    assert set(gt["nodes"]) == reaches

    # per-SOp view agrees with the layout and the components
    for label, sop in gt["sops"].items():
        location = model.layout.sops[label]
        assert sop["residual"] == (location.start, location.stop)
        assert {layer for layer, _ in sop["heads"]} == ({location.head_layer} - {None})
        assert set(sop["mlps"]) == ({location.mlp_layer} - {None})
    assert set(gt["hooks"]) == {c["hook"] for c in gt["components"]}


def test_loaded_model_has_the_same_circuit(tmp_path) -> None:
    for name in ("sort", "frac_prevs", "count_distinct"):
        model = compiled(name)
        loaded = rasp_lab.load(model.save(tmp_path / f"{name}.npz"))
        assert loaded.is_loaded
        assert ground_truth_circuit(loaded) == ground_truth_circuit(model)


def test_circuit_never_imports_torch() -> None:
    code = textwrap.dedent(
        """
        import sys
        import rasp_lab
        from rasp_lab import circuit, rasp
        model = rasp_lab.compile(rasp.Map(lambda t: t, rasp.tokens).named("same"), {"a", "b"}, 3)
        assert circuit.ground_truth_circuit(model)["sops"]["same"]["mlps"] == [0]
        model.run(["a", "b"])
        bad = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "transformer_lens"))
        assert not bad, bad
        print("OK")
        """
    )
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "OK" in done.stdout
