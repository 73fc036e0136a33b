"""rasp_lab.testing: the strategies draw programs that compile exactly, assert_compiles_exactly
catches broken models and names the block that broke, the strategies refuse to import
without Hypothesis (with an install hint), and the pytest plugin's option, marker and fixture."""

from __future__ import annotations

import copy
import subprocess
import sys
import textwrap
from importlib import metadata

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import rasp_lab
from rasp_lab import rasp
from rasp_lab import testing as rt
from rasp_lab.evaluator import topological
from rasp_lab.testing import assert_compiles_exactly
from rasp_lab.testing.strategies import VOCAB, inputs, programs, selectors

pytest_plugins = ["pytester"]

# derandomize: the same few programs every run. Exploring many random programs is
# test_compiler_random.py's job; here a rare program whose wide numerical MLP rounds
# differently in another batch shape must not make the suite flaky.
FEW = settings(
    max_examples=6, deadline=None, suppress_health_check=list(HealthCheck), database=None, derandomize=True
)


def nodes(program: rasp.RASPExpr) -> list[rasp.RASPExpr]:
    return topological(program)


# ------------------------------------------------------------------ strategies


@FEW
@given(programs(max_ops=5), st.integers(1, 5))
def test_drawn_programs_compile_exactly(program, max_seq_len):
    report = assert_compiles_exactly(program, VOCAB, max_seq_len, samples=20, require_exact=False)
    assert report.inputs_checked > 0 and report.skipped == 0


@FEW
@given(programs(max_ops=4, with_length=False, compositions=False), st.integers(1, 4))
def test_drawn_programs_compile_exactly_causal(program, max_seq_len):
    assert_compiles_exactly(program, VOCAB, max_seq_len, samples=10, causal=True, require_exact=False)


@settings(max_examples=30, deadline=None, database=None)
@given(programs(encodings=("categorical",), compositions=False, max_ops=6))
def test_knobs_restrict_encodings_and_compositions(program):
    for node in nodes(program):
        if isinstance(node, rasp.SOp):
            assert not rasp.is_numerical(node), node.label
        assert not isinstance(node, rasp.SelectorAnd | rasp.SelectorOr | rasp.SelectorNot)


@settings(max_examples=30, deadline=None, database=None)
@given(programs(ops=[rasp.Map, "SelectorWidth"], encodings=["numerical"], max_ops=4))
def test_knobs_restrict_ops(program):
    kinds = {type(n).__name__ for n in nodes(program) if isinstance(n, rasp.SOp)}
    assert kinds <= {"TokensType", "IndicesType", "LengthType", "Map", "SelectorWidth"}
    assert rasp.is_numerical(program) or program in (rasp.tokens,)


@settings(max_examples=100, deadline=None, database=None, derandomize=True)
@given(programs(max_ops=2))
def test_drawn_programs_never_read_numerical_length(program):
    """Validation refuses numerical(length) (the model embeds length one-hot): a numerical
    step reads length through a numerical Map of it instead."""
    assert not [n for n in nodes(program) if isinstance(n, rasp.LengthType) and rasp.is_numerical(n)]
    assert not [p for p in rasp_lab.validate(program, VOCAB, 3) if "length" in str(p)]


@settings(max_examples=60, deadline=None, database=None)
@given(programs(max_ops=6), inputs(VOCAB, 6))
def test_categorical_aggregates_never_mix_unless_allowed(program, xs):
    rasp.evaluate(program, xs)  # no EvaluationError: nothing averages different values


def test_mixing_knob_draws_mixing_aggregates():
    found = []

    @settings(max_examples=200, deadline=None, database=None)
    @given(
        programs(max_ops=3, allow_mixing=True, ops=["Aggregate"], encodings=["categorical"]), inputs(VOCAB, 5)
    )
    def search(program, xs):
        try:
            rasp.evaluate(program, xs)
        except rasp_lab.EvaluationError as err:
            found.append(err.kind)

    search()
    assert "mixed-values" in found


@settings(max_examples=40, deadline=None, database=None)
@given(st.data())
def test_inputs_and_selectors(data):
    vocab = data.draw(st.sampled_from([{"a", "b"}, {0, 1, 2}, {"x", 1}]))
    xs = data.draw(inputs(vocab, 4))
    assert 1 <= len(xs) <= 4 and set(xs) <= vocab
    pool = [rasp.indices, rasp.Map(lambda i: i % 2, rasp.indices)]
    selector = data.draw(selectors(pool, compositions=data.draw(st.booleans())))
    matrix = rasp.evaluate(selector, list(range(len(xs))))
    assert len(matrix) == len(xs) and all(len(row) == len(xs) for row in matrix)
    plain = data.draw(selectors(rasp.tokens, compositions=False, predicates=[rasp.Comparison.EQ]))
    assert isinstance(plain, rasp.Select) and plain.predicate is rasp.Comparison.EQ


def test_strategy_arguments_are_checked():
    with pytest.raises(ValueError, match="unknown op"):
        programs(ops=["Select"])
    with pytest.raises(ValueError, match="encodings"):
        programs(encodings=["boolean"])
    with pytest.raises(ValueError, match="can start"):
        programs(ops=[rasp.LinearSequenceMap])
    with pytest.raises(ValueError, match="min_ops"):
        programs(min_ops=3, max_ops=2)
    with pytest.raises(ValueError, match="compositions"):
        programs(compositions={"^"})
    with pytest.raises(ValueError):
        inputs(set(), 3)
    with pytest.raises(TypeError):
        selectors([rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.EQ)])


def test_strategies_without_hypothesis_raise_an_import_error_with_the_fix():
    code = textwrap.dedent(
        """
        import sys
        sys.modules["hypothesis"] = None
        import rasp_lab.testing
        assert callable(rasp_lab.testing.assert_compiles_exactly)   # the helpers work without it
        try:
            import rasp_lab.testing.strategies
        except ImportError as err:
            print(err)
        else:
            raise SystemExit("imported without hypothesis")
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "pip install" in out.stdout and "rasp-lab[dev]" in out.stdout and "hypothesis" in out.stdout


# ------------------------------------------------------------------ assert_compiles_exactly


def frac_x() -> rasp.SOp:
    is_x = rasp.numerical(rasp.Map(lambda t: 1 if t == "x" else 0, rasp.tokens)).named("is_x")
    up_to = rasp.Select(rasp.indices, rasp.indices, rasp.Comparison.LEQ).named("up_to")
    return rasp.numerical(rasp.Aggregate(up_to, is_x, default=0)).named("frac_x")


def test_report_on_success():
    report = assert_compiles_exactly(frac_x(), {"x", "a", "b"}, 5)
    assert report.exhaustive_up_to == 5 and report.random_inputs == 0
    assert report.inputs_checked == 3 + 9 + 27 + 81 + 243 and report.skipped == 0
    assert 0 <= report.max_error < 1e-4
    assert "363 inputs agree" in str(report)

    report = assert_compiles_exactly(frac_x(), {"x", "a", "b"}, 9, exhaustive_up_to=2, samples=50, seed=3)
    assert report.exhaustive_up_to == 2 and report.inputs_checked == 12 + report.random_inputs
    assert 40 <= report.random_inputs <= 50


def test_exhaustive_bound_and_mode():
    assert rt.exhaustive_length(3, 8) == 7  # 3 + ... + 3**7 = 3279 <= 5000 < 3279 + 6561
    assert rt.exhaustive_length({0, 1, 2, 3}, 10) == 5
    assert rt.exhaustive_length(4, 3) == 3 and rt.exhaustive_length(6000, 4) == 0
    assert rt.exhaustive_length(4, 10, budget=rt.EXHAUSTIVE_BUDGET) == 8
    program = rasp.Map(lambda t: t == "a", rasp.tokens).named("is_a")
    assert assert_compiles_exactly(program, {"a", "b"}, 12, samples=0).exhaustive_up_to == 11
    previous = rt.set_exhaustive_mode(True)
    try:
        assert rt.exhaustive_mode() and rt.exhaustive_budget() == rt.EXHAUSTIVE_BUDGET
        report = assert_compiles_exactly(program, {"a", "b"}, 12, samples=0)
        assert report.exhaustive_up_to == 12 and report.inputs_checked == 2**13 - 2
    finally:
        rt.set_exhaustive_mode(previous)
    assert not rt.exhaustive_mode()


def test_inputs_where_the_evaluator_raises_are_skipped_and_counted():
    def double_but_not_3(t):
        if t == 3:
            raise ValueError("no 3s")
        return 2 * t

    model = rasp_lab.compile(rasp.Map(lambda t: 2 * t, rasp.tokens).named("double"), VOCAB, 3)
    spec = rasp.Map(double_but_not_3, rasp.tokens).named("double")
    report = assert_compiles_exactly(spec, VOCAB, 3, model=model)
    assert report.inputs_checked == 3 + 9 + 27 and report.skipped == 84 - 39  # those with a 3 are skipped


def test_model_arguments_are_checked():
    model = rasp_lab.compile(frac_x(), {"x", "a"}, 4)
    with pytest.raises(ValueError, match="causal"):
        assert_compiles_exactly(frac_x(), {"x", "a"}, 4, model=model, causal=True)
    with pytest.raises(ValueError, match="max_seq_len"):
        assert_compiles_exactly(frac_x(), {"x", "a"}, 5, model=model)
    with pytest.raises(ValueError, match="vocabulary"):
        assert_compiles_exactly(frac_x(), {"x", "a", "b"}, 4, model=model)


def mixed_aggregate() -> rasp.SOp:
    """A categorical Aggregate of indices over same-token keys: it averages different values."""
    same = rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.EQ)
    return rasp.Aggregate(same, rasp.indices).named("mixed")


def parity() -> rasp.SOp:
    """A Map of a running mean that compiles, but whose sound bound can't prove the output."""
    weights = {"a": 0, "b": 1, "c": 3, "d": 7, "e": 12, "f": 20}
    x = rasp.numerical(rasp.Map(lambda t: weights[t], rasp.tokens)).named("weight")
    prefix = rasp.Select(rasp.indices, rasp.indices, rasp.Comparison.LEQ)
    mean = rasp.numerical(rasp.Aggregate(prefix, x, default=0)).named("mean")
    return rasp.categorical(rasp.Map(lambda v: round(v * 7) % 2, mean)).named("parity")


def test_a_program_that_does_not_compile_exactly_fails_the_assertion():
    """Both are AssertionErrors (pytest shows a failed check) and keep compile's own types."""
    with pytest.raises(AssertionError) as info:
        assert_compiles_exactly(mixed_aggregate(), {"a", "b"}, 3)
    assert isinstance(info.value, rt.NotValid) and isinstance(info.value, rasp_lab.ValidationError)
    assert [p.label for p in info.value.problems] == ["mixed"]
    assert str(info.value).startswith(
        "the program can't be compiled exactly (1 problem):\n  - [error] mixed: "
    )

    with pytest.raises(AssertionError) as info:
        assert_compiles_exactly(parity(), "abcdef", 6)
    assert isinstance(info.value, rt.NotCertified) and isinstance(info.value, rasp_lab.CompileError)
    assert info.value.label == "parity"
    assert str(info.value).startswith("parity: NOT certified exact: output 'parity' decodes")


def test_pytest_reports_a_program_that_does_not_compile_as_a_failed_check(pytester):
    pytester.makepyfile(
        """
        from rasp_lab import rasp
        from rasp_lab.testing import assert_compiles_exactly

        def test_mixed():
            same = rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.EQ)
            assert_compiles_exactly(rasp.Aggregate(same, rasp.indices).named("mixed"), {"a", "b"}, 3)
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "E   *.NotValid: the program can't be compiled exactly (1 problem):",
            "E * - [[]error] mixed: on input *",
        ]
    )
    assert "rasp_lab/testing/checks.py" not in result.stdout.str()  # __tracebackhide__: the test's own line


# A program whose blocks sit in known places:
#   layer 0 MLP: 'before' and 'shift';  layer 1 head: 'prev';  layer 1 MLP: 'out'.


def shifted_program() -> rasp.SOp:
    shift = rasp.Map(lambda t: (t + 1) % 4, rasp.tokens).named("shift")
    before = rasp.Map(lambda i: i - 1, rasp.indices).named("before")
    prev = rasp.Aggregate(rasp.Select(rasp.indices, before, rasp.Comparison.EQ), shift).named("prev")
    return rasp.SequenceMap(lambda a, b: (a + (b or 0)) % 4, prev, shift).named("out")


@pytest.fixture(scope="module")
def shifted_model():
    model = rasp_lab.compile(shifted_program(), VOCAB, 4)
    where = {label: (loc.head_layer, loc.mlp_layer) for label, loc in model.layout.sops.items()}
    assert where == {
        "tokens": (None, None),
        "indices": (None, None),
        "before": (None, 0),
        "shift": (None, 0),
        "prev": (1, None),
        "out": (None, 1),
    }
    assert [m.label for m in model.weights.layers[0].mlps] == ["before", "shift"]
    return model


def corrupted(model: rasp_lab.CompiledModel, name: str, change) -> rasp_lab.CompiledModel:
    """A copy of `model` whose parameter `name`/w is changed in place by `change`."""
    broken = copy.copy(model)
    params = {group: dict(arrays) for group, arrays in model.compact_params.items()}
    w = np.array(params[name]["w"])
    change(w)
    params[name]["w"] = w
    broken.compact_params = params
    broken.__dict__.pop("_device_params", None)  # the device copy of the parameters
    return broken


def failure(model: rasp_lab.CompiledModel) -> str:
    with pytest.raises(AssertionError) as info:
        assert_compiles_exactly(shifted_program(), VOCAB, 4, model=model)
    return str(info.value)


def test_the_intact_model_passes(shifted_model):
    assert assert_compiles_exactly(shifted_program(), VOCAB, 4, model=shifted_model).inputs_checked == 340


def test_a_broken_mlp_is_named(shifted_model):
    mlp = shifted_model.weights.layers[0].mlps[1]
    start = shifted_model.weights.layers[0].mlps[0].hidden

    def rotate_outputs(w):  # the 'shift' MLP writes the next value's direction
        rows = w[start : start + mlp.hidden].copy()
        w[start : start + mlp.hidden] = np.roll(rows, 1, axis=0)

    message = failure(corrupted(shifted_model, "transformer/layer_0/mlp/linear_2", rotate_outputs))
    # Length 1 outputs None whatever 'shift' holds; the first input of length 2 fails.
    assert (
        "input: [0, 0]" in message and "position 1 (0-based, BOS not counted): expected 2, got 0" in message
    )
    assert "first departure from the evaluator: MLP 'shift' in layer 0\n" in message
    assert (
        "SOp 'shift' (categorical) at position 0: evaluator 1, residual after layer 0 MLP holds 0" in message
    )


def test_a_broken_head_is_named(shifted_model):
    def halve(w):
        w *= 0.5

    message = failure(corrupted(shifted_model, "transformer/layer_1/attn/linear", halve))
    assert "input: [0, 0]" in message  # length 1 has nothing to copy; the first length-2 input fails
    # The halved one-hot (0.5) reads as "off" in the lookup after it (ReLU(2 x - 1) = 0).
    assert "position 1 (0-based, BOS not counted): expected 2, got None" in message
    assert "first departure from the evaluator: head 'prev' in layer 1, head 0" in message
    assert "holds <no single value> (block {'prev:1': 0.5})" in message
    assert "SOp 'prev' (categorical) at position 1: evaluator 1" in message


def test_a_block_that_overwrites_an_earlier_sop_is_named(shifted_model):
    prev, shift = shifted_model.where("prev"), shifted_model.where("shift")

    def also_write_into_shift(w):  # head 'prev' adds its value to 'shift''s directions too
        w[:, shift.start : shift.stop] += w[:, prev.start : prev.stop]

    message = failure(corrupted(shifted_model, "transformer/layer_1/attn/linear", also_write_into_shift))
    assert (
        "first departure from the evaluator: layer 1 attention (head 'prev' (layer 1, head 0)) changed SOp 'shift'"
        in message
    )
    assert "which MLP 'shift' in layer 0 computed correctly" in message
    # It still decodes as the right value, but its block is twice the one-hot.
    assert "evaluator 1, residual after layer 1 attention holds 1 (block {'shift:1': 2.0})" in message


def test_a_mismatch_on_a_numerical_output_names_the_head():
    model = rasp_lab.compile(frac_x(), {"x", "a"}, 3)
    assert model.where("frac_x").head_layer == 1

    def skew(w):
        w *= 1.01

    skewed = corrupted(model, "transformer/layer_1/attn/linear", skew)
    with pytest.raises(AssertionError) as info:
        assert_compiles_exactly(frac_x(), {"x", "a"}, 3, model=skewed)
    message = str(info.value)
    assert "input: ['x']" in message and "expected 1, got 1.01" in message
    assert "first departure from the evaluator: head 'frac_x' in layer 1, head 0" in message
    # Within a looser tolerance it passes, and reports the error.
    report = assert_compiles_exactly(frac_x(), {"x", "a"}, 3, model=skewed, tolerance=0.02)
    assert 0.009 < report.max_error < 0.011


# ------------------------------------------------------------------ the pytest plugin


def test_the_plugin_is_registered_and_light():
    names = {ep.name: ep.value for ep in metadata.entry_points(group="pytest11")}
    assert names.get("rasp_lab") == "rasp_lab.testing.plugin"
    code = (
        "import sys, rasp_lab.testing.plugin\n"
        "heavy = sorted(m for m in ('jax', 'haiku', 'hypothesis', 'scipy') if m in sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr


INNER = """
import pytest
from rasp_lab import testing

@pytest.mark.rasp_exhaustive
def test_slow():
    pass

def test_mode(rasp_exhaustive):
    assert testing.exhaustive_mode() is rasp_exhaustive
    print(f"rasp_exhaustive={rasp_exhaustive}")
"""


def test_plugin_skips_marked_tests_unless_asked(pytester):
    pytester.makepyfile(INNER)
    result = pytester.runpytest("-p", "no:cacheprovider", "-s", "-rs")
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines(["*rasp_exhaustive=False*", "*SKIPPED*run pytest with --rasp-exhaustive*"])
    assert not rt.exhaustive_mode()


def test_plugin_runs_marked_tests_with_the_option(pytester):
    pytester.makepyfile(INNER)
    result = pytester.runpytest("-p", "no:cacheprovider", "-s", "--rasp-exhaustive", "--strict-markers")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*rasp_exhaustive=True*"])
    assert not rt.exhaustive_mode()  # restored when the inner session ended
