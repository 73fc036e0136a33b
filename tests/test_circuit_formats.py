"""rasp_lab.circuit_formats: the ground truth in ACDC's and InterpBench's formats, and verified.

Golden tests on the README's two-layer program (is_x, an MLP in layer 0; frac_x, a head in
layer 1) write every expected edge out; on zoo programs, every non-edge has a structural
reason and the witnesses found are checked against the circuit. The witnesses are
re-checked with TransformerLens hooks in tests/test_tl_export.py. No torch needed here.
"""

from __future__ import annotations

import pytest
from rasp_lab.programs import registry

import rasp_lab
from rasp_lab import rasp
from rasp_lab.circuit_formats import acdc_edges, interpbench_circuit, node_edges, verify_circuit


def frac_model() -> rasp_lab.CompiledModel:
    is_x = rasp.numerical(rasp.Map(lambda t: 1 if t == "x" else 0, rasp.tokens)).named("is_x")
    so_far = rasp.Select(rasp.indices, rasp.indices, rasp.Comparison.LEQ).named("so_far")
    frac = rasp.numerical(rasp.Aggregate(so_far, is_x, default=0)).named("frac_x")
    return rasp_lab.compile(frac, vocab={"x", "a", "b"}, max_seq_len=4)


H0 = (None, None, 0)
ALL = (None,)


def test_acdc_edges_golden() -> None:
    assert acdc_edges(frac_model()) == {
        ("blocks.0.hook_mlp_in", ALL, "blocks.0.hook_resid_pre", ALL): True,
        ("blocks.0.hook_mlp_out", ALL, "blocks.0.hook_mlp_in", ALL): True,
        ("blocks.1.hook_q_input", H0, "blocks.0.hook_resid_pre", ALL): True,
        ("blocks.1.attn.hook_q", H0, "blocks.1.hook_q_input", H0): True,
        ("blocks.1.attn.hook_result", H0, "blocks.1.attn.hook_q", H0): True,
        ("blocks.1.hook_k_input", H0, "blocks.0.hook_resid_pre", ALL): True,
        ("blocks.1.attn.hook_k", H0, "blocks.1.hook_k_input", H0): True,
        ("blocks.1.attn.hook_result", H0, "blocks.1.attn.hook_k", H0): True,
        ("blocks.1.hook_v_input", H0, "blocks.0.hook_mlp_out", ALL): True,
        ("blocks.1.attn.hook_v", H0, "blocks.1.hook_v_input", H0): True,
        ("blocks.1.attn.hook_result", H0, "blocks.1.attn.hook_v", H0): True,
        ("blocks.1.hook_resid_post", ALL, "blocks.1.attn.hook_result", H0): True,
    }


def test_acdc_edges_split_embeddings_without_internal_edges() -> None:
    """The token embedding writes `one`, BOS and the tokens; the position embedding the
    indices: the head's query and key read both (indices, and `one`/BOS), the MLP tokens."""
    assert acdc_edges(frac_model(), split_embeddings=True, internal=False) == {
        ("blocks.0.hook_mlp_in", ALL, "hook_embed", ALL): True,
        ("blocks.1.hook_q_input", H0, "hook_embed", ALL): True,
        ("blocks.1.hook_q_input", H0, "hook_pos_embed", ALL): True,
        ("blocks.1.hook_k_input", H0, "hook_embed", ALL): True,
        ("blocks.1.hook_k_input", H0, "hook_pos_embed", ALL): True,
        ("blocks.1.hook_v_input", H0, "blocks.0.hook_mlp_out", ALL): True,
        ("blocks.1.hook_resid_post", ALL, "blocks.1.attn.hook_result", H0): True,
    }


def test_interpbench_circuit_golden() -> None:
    model = frac_model()
    component = interpbench_circuit(model, "component")
    assert component["nodes"] == ["embed", "pos_embed", "blocks.0.mlp", "blocks.1.attn[0]"]
    assert component["edges"] == [
        ("embed", "blocks.0.mlp"),
        ("embed", "blocks.1.attn[0]"),
        ("pos_embed", "blocks.1.attn[0]"),
        ("blocks.0.mlp", "blocks.1.attn[0]"),
    ]
    hooks = interpbench_circuit(model, "acdc_hooks")
    assert hooks["nodes"] == [
        "hook_embed",
        "hook_pos_embed",
        "blocks.0.hook_mlp_in",
        "blocks.0.hook_mlp_out",
        "blocks.1.hook_q_input[0]",
        "blocks.1.hook_k_input[0]",
        "blocks.1.hook_v_input[0]",
        "blocks.1.attn.hook_q[0]",
        "blocks.1.attn.hook_k[0]",
        "blocks.1.attn.hook_v[0]",
        "blocks.1.attn.hook_result[0]",
        "blocks.1.hook_resid_post",
    ]
    assert sorted(hooks["edges"]) == sorted(
        [
            ("hook_embed", "blocks.0.hook_mlp_in"),
            ("blocks.0.hook_mlp_in", "blocks.0.hook_mlp_out"),
            ("hook_embed", "blocks.1.hook_q_input[0]"),
            ("hook_pos_embed", "blocks.1.hook_q_input[0]"),
            ("hook_embed", "blocks.1.hook_k_input[0]"),
            ("hook_pos_embed", "blocks.1.hook_k_input[0]"),
            ("blocks.0.hook_mlp_out", "blocks.1.hook_v_input[0]"),
            ("blocks.1.hook_q_input[0]", "blocks.1.attn.hook_q[0]"),
            ("blocks.1.hook_k_input[0]", "blocks.1.attn.hook_k[0]"),
            ("blocks.1.hook_v_input[0]", "blocks.1.attn.hook_v[0]"),
            ("blocks.1.attn.hook_q[0]", "blocks.1.attn.hook_result[0]"),
            ("blocks.1.attn.hook_k[0]", "blocks.1.attn.hook_result[0]"),
            ("blocks.1.attn.hook_v[0]", "blocks.1.attn.hook_result[0]"),
            ("blocks.1.attn.hook_result[0]", "blocks.1.hook_resid_post"),
        ]
    )
    sp = interpbench_circuit(model, "sp_hooks")
    assert [n for n in hooks["nodes"] if ".attn.hook_" not in n or "result" in n] == sp["nodes"]
    assert ("blocks.1.hook_v_input[0]", "blocks.1.attn.hook_result[0]") in sp["edges"] and len(
        sp["edges"]
    ) == 11
    with pytest.raises(ValueError, match="unknown granularity 'matrix'; choose one of"):
        interpbench_circuit(model, "matrix")


def test_verify_circuit_golden() -> None:
    """Every length-1..4 input (120): zeroing any edge changes frac_x wherever an x occurs
    (90 inputs); resampling the query and key edges can't (they carry `one`, BOS and the
    indices, the same on every input of a length); the five non-edges have zero weights."""
    result = verify_circuit(frac_model())
    assert result["inputs"] == 120
    assert [
        (
            e["src"],
            e["dst"],
            e["input"],
            e["via"],
            e["zero"],
            e["zero_changes"],
            e["resample"],
            e["same_per_length"],
        )
        for e in result["edges"]
    ] == [
        ("embed", "m0", "in", ["one", "tokens"], ["x"], 90, (["a"], ["x"]), False),
        ("embed", "a1.h0", "q", ["one", "bos", "indices"], ["x"], 90, None, True),
        ("embed", "a1.h0", "k", ["bos", "indices"], ["x"], 90, None, True),
        ("m0", "a1.h0", "v", ["is_x"], ["x"], 90, (["a"], ["x"]), False),
        ("a1.h0", "unembed", None, ["frac_x"], ["x"], 90, (["a"], ["x"]), False),
    ]
    assert [e["resample_changes"] for e in result["edges"]] == [80, 0, 0, 80, 80]
    assert [(n["src"], n["dst"], n["input"], n["shared"]) for n in result["non_edges"]] == [
        ("m0", "a1.h0", "q", []),
        ("m0", "a1.h0", "k", []),
        ("embed", "a1.h0", "v", []),
        ("embed", "unembed", None, []),
        ("m0", "unembed", None, []),
    ]
    assert result["non_edges"][2]["reason"] == (
        "embed writes ['one', 'bos', 'tokens', 'indices'], a1.h0 v reads ['is_x']: no residual direction in "
        "common, so the weights connecting them multiply to exactly zero"
    )
    with pytest.raises(ValueError, match="max_inputs must be at least 1, got 0"):
        verify_circuit(frac_model(), max_inputs=0)


REDUNDANT = {
    # sort's last head selects exactly one key at every query: its BOS default never wins
    "sort": [("embed", "a2.h0", "k")],
    "count_distinct": [],
    # the MLP of layer 1 reads the bias direction `one` but computes the same without it
    "pair_balance": [("embed", "m1", "in")],
}
"""Edges no input shows are needed under zero ablation (found by verify_circuit)."""


@pytest.mark.parametrize("name", sorted(REDUNDANT))
def test_verify_circuit_on_zoo_programs(name: str) -> None:
    """Every node pair is an edge or has disjoint residual directions; edges with no zero
    witness are the known redundant ones, and every edge whose carried directions vary
    within a length has a resample witness."""
    entry = registry.get(name)
    model = rasp_lab.compile(entry.build(), entry.vocab, entry.max_seq_len, causal=entry.causal)
    result = verify_circuit(model, max_inputs=1000)
    assert result["inputs"] >= 500
    assert {(e["src"], e["dst"], e["input"]) for e in result["edges"]} == set(node_edges(model))
    assert all(n["shared"] == [] and n["reason"] for n in result["non_edges"])
    unwitnessed = [(e["src"], e["dst"], e["input"]) for e in result["edges"] if e["zero"] is None]
    assert unwitnessed == REDUNDANT[name]
    for e in result["edges"]:
        assert (e["resample"] is not None) != e["same_per_length"], e
        if e["zero"] is not None:
            assert len(e["zero"]) <= entry.max_seq_len and 0 < e["zero_changes"] <= result["inputs"]
