"""Tracr's API on rasp_lab, checked without Tracr installed: module paths, names and labels,
padded rows and the output fields of `apply`, and how refusals are raised."""

import logging

import numpy as np
import pytest

import rasp_lab
from rasp_lab.compiler import compiling, lib, validating
from rasp_lab.graph import distinct_labels
from rasp_lab.rasp import causal_eval, rasp


@pytest.fixture(scope="module")
def reverse():
    return compiling.compile_rasp_to_model(lib.make_reverse(rasp.tokens), {"a", "b", "c"}, 5)


def test_tracr_module_paths_reach_rasp_lab():
    import rasp_lab.rasp.rasp as by_path
    from rasp_lab import rasp as package

    assert rasp is by_path and package.Map is rasp.Map and package.evaluate is rasp.evaluate
    assert compiling.compile_rasp_to_model is rasp_lab.compile_rasp_to_model
    assert (compiling.COMPILER_BOS, compiling.COMPILER_PAD) == ("compiler_bos", "compiler_pad")
    assert lib.length.label == "length" and lib.length([1, 2, 3]) == [3, 3, 3]
    assert lib.shift_by(1, rasp.tokens)("abc") == [None, "a", "b"]
    assert lib.detect_pattern(rasp.tokens, "ab")("abab") == [None, True, False, True]


def test_causal_eval_sees_only_earlier_keys():
    width = rasp.SelectorWidth(rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.TRUE))
    assert causal_eval.evaluate(width, [5, 6, 7]) == [1, 2, 3]
    assert rasp.evaluate(width, [5, 6, 7]) == [3, 3, 3]


def test_padded_row_decodes_like_the_unpadded_one(reverse):
    bos, pad = compiling.COMPILER_BOS, compiling.COMPILER_PAD
    out = reverse.apply([bos, "a", "b", "c", pad, pad])
    assert out.decoded == [bos, "c", "b", "a", None, None]
    assert reverse.apply([bos, "a", "b", "c"]).decoded == [bos, "c", "b", "a"]
    for bad, message in (
        ([bos, pad, "a"], "needs at least one token before PAD"),
        ([bos, "a", pad, "b"], "PAD token 'compiler_pad' at position 2 is followed by token 'b'"),
    ):
        with pytest.raises(ValueError, match=message):
            reverse.apply(bad)
    with pytest.raises(ValueError, match="pass inputs without padding"):
        reverse.run(["a", pad])


def test_apply_returns_tracrs_fields_consistently(reverse):
    out = reverse.apply([compiling.COMPILER_BOS, "a", "b", "c", compiling.COMPILER_PAD])
    d = reverse.layout.width
    assert out.input_embeddings.shape == (1, 5, d) and out.transformer_output.shape == (1, 5, d)
    assert len(out.residuals) == len(out.layer_outputs) == 2 * len(reverse.weights.layers)
    running = out.input_embeddings.astype(np.float64)
    for residual, written in zip(out.residuals, out.layer_outputs):
        running = running + written
        np.testing.assert_allclose(residual, running, atol=1e-5)
    np.testing.assert_array_equal(out.transformer_output, out.residuals[-1])
    np.testing.assert_array_equal(out.residuals[-1][0], list(out.stream.values())[-1])
    for layer, logits in enumerate(out.attn_logits):
        heads = reverse.weights.layers[layer].num_heads
        assert logits.shape == (1, heads, 5, 5)
        if heads:
            weights = np.exp(logits - logits.max(axis=-1, keepdims=True))
            np.testing.assert_allclose(
                weights / weights.sum(-1, keepdims=True), out.attention[layer][None], atol=1e-4
            )
    values = reverse.output_encoder.decoding_map
    assert [values[i] for i in out.unembedded[0, 1:4]] == ["c", "b", "a"]
    assert reverse.output_encoder.decode(out.unembedded[0, 1:4]) == ["c", "b", "a"]
    assert reverse.output_encoder.encode(["a", "c"]) == [reverse.output_encoder.encoding_map[v] for v in "ac"]
    ids = reverse.input_encoder.encode([compiling.COMPILER_BOS, "a", "b"])
    assert reverse.input_encoder.decode(ids) == [compiling.COMPILER_BOS, "a", "b"]


def test_refusals_are_also_not_implemented_errors():
    with pytest.raises(
        NotImplementedError, match=r"numerical\(tokens\): the compiled model embeds tokens one-hot"
    ):
        compiling.compile_rasp_to_model(rasp.numerical(rasp.tokens), {1, 2}, 3)
    assert issubclass(rasp_lab.CompileError, NotImplementedError) and issubclass(
        rasp_lab.CompileError, ValueError
    )
    found = validating.validate(rasp.numerical(rasp.indices), [1, 2, 3])
    assert [(f.expr.label, f.reason.split(":")[0]) for f in found] == [
        ("indices_numerical", "numerical-input")
    ]
    assert validating.validate(lib.make_hist(), "abc") == []


def test_sequence_map_of_one_sop_twice_warns(caplog):
    with caplog.at_level(logging.WARNING):
        rasp.SequenceMap(lambda x, y: x + y, rasp.tokens, rasp.tokens)
    assert "both inputs are the same SOp" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        rasp.SequenceMap(lambda x, y: x + y, rasp.tokens, rasp.indices)
    assert caplog.text == ""


def test_names_and_copies_as_in_tracr():
    m = rasp.Map(lambda x: x, rasp.tokens)
    assert m.name == "map" and m.label.startswith("map_") and m.label != m.name
    named = m.named("foo")
    copy = named.copy()
    assert copy.name == "foo" and copy is not named and copy.unique_id == named.unique_id
    assert copy.named("bar").name == "bar" and named.name == "foo" and copy.name == "foo"


def _two_balances(first_pair: str, second_pair: str):
    """Two calls of one library function that names its intermediate SOps: the names repeat."""
    a = lib.make_pair_balance(rasp.tokens, *first_pair)
    b = lib.make_pair_balance(rasp.tokens, *second_pair)
    return rasp.numerical(rasp.LinearSequenceMap(a, b, 1, -1)).named("both")


def test_one_name_on_different_expressions_gets_deterministic_distinct_labels():
    program = _two_balances("()", "{}")
    labels = sorted(n.label for n in rasp_lab.build_graph(distinct_labels(program)).nodes.values())
    again = sorted(
        n.label for n in rasp_lab.build_graph(distinct_labels(_two_balances("()", "{}"))).nodes.values()
    )
    swapped = rasp_lab.build_graph(distinct_labels(_two_balances("{}", "()"))).nodes
    assert labels == again
    assert {label for label in labels if label.startswith("pair_balance")} <= set(swapped)
    assert "both" in labels and "tokens" in labels  # names given once stay exactly themselves
    balances = [label for label in labels if label.startswith("pair_balance_")]
    assert len(balances) == 2 and all(len(label) == len("pair_balance_") + 8 for label in balances)
    assert distinct_labels(lib.make_hist()) is not None
    hist = lib.make_hist()
    assert distinct_labels(hist) is hist  # nothing to do: the program itself


def test_a_program_with_repeated_names_compiles_exactly():
    program = _two_balances("()", "{}")
    model = rasp_lab.compile(program, vocab=set("(){}"), max_seq_len=4)
    rows = [list(w) for w in ("()", "{(})", ")", "{{}}", "(()")]
    for got, want in zip(model.run_batch(rows), [rasp.evaluate(program, row) for row in rows]):
        assert got == pytest.approx(want, abs=1e-4)
    assert any(d.startswith("pair_balance_") for d in model.residual_labels)
