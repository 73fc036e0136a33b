"""Random programs, compiled and run: the model must agree with the evaluator.

Hypothesis draws programs over every op the compiler handles (categorical and numerical
Maps in all four directions, SequenceMaps, numerical LinearSequenceMaps, categorical and
numerical Aggregates, categorical and numerical SelectorWidths, over comparisons, custom
predicates and `&` / `|` / `~` compositions; see random_programs.compiled_programs), a
maximum length up to 10 and a batch of inputs, run as one batch. A program is skipped
only when compiling raises ValidationError, and then `validate` must report an error for it
too. (The compiler's own check searches fewer inputs than `validate`: a program whose only
problem lies beyond that search compiles, and is compared on the inputs where the evaluator
is defined.) The regressions at the end are minimal reproductions of what this found.
Inputs run as one padded batch and, a few, as single rows; where the model is certified, a
numerical output's error must stay within its certified bound.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from random_programs import VOCAB, compiled_programs

import rasp_lab
from rasp_lab import rasp
from rasp_lab.evaluator import EvaluationError

TOKENS = sorted(VOCAB)
TOLERANCE = 1e-4

SETTINGS = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
)


@st.composite
def cases(draw, with_length: bool = True) -> tuple[rasp.SOp, int, list[list[Any]]]:
    program = draw(compiled_programs(with_length=with_length))
    max_seq_len = draw(st.integers(1, 10))
    token_lists = st.lists(st.sampled_from(TOKENS), min_size=1, max_size=max_seq_len)
    inputs = draw(st.lists(token_lists, min_size=5, max_size=10))
    inputs.append(draw(st.lists(st.sampled_from(TOKENS), min_size=max_seq_len, max_size=max_seq_len)))
    return program, max_seq_len, inputs


def same_value(got: Any, expected: Any) -> bool:
    if expected is None or got is None:
        return got is None and expected is None
    if isinstance(expected, float) or isinstance(got, float):
        return isinstance(got, int | float) and math.isclose(got, expected, rel_tol=TOLERANCE, abs_tol=TOLERANCE)
    return got == expected


def compile_or_skip(program: rasp.SOp, max_seq_len: int, causal: bool) -> rasp_lab.CompiledModel:
    """Compile; a program that raises ValidationError must be one `validate` reports an
    error for (and each problem found on a concrete input must fail there), and is skipped."""
    try:
        # Not certified exact is still compared (and held to agreement), with a warning.
        return rasp_lab.compile(program, VOCAB, max_seq_len, causal=causal, require_exact=False)
    except rasp_lab.ValidationError as err:
        assert err.problems and all(p.severity == "error" for p in err.problems), err
        errors = [p for p in rasp_lab.validate(program, VOCAB, max_seq_len, causal=causal) if p.severity == "error"]
        assert errors, f"compile raised ValidationError but validate() reports no error: {err}"
        for problem in err.problems:
            if problem.message.startswith("on input"):
                with pytest.raises(EvaluationError):
                    rasp.evaluate(program, list(problem.values[0]), causal=causal)
        assume(False)
        raise  # unreachable: assume(False) ends the example
    except rasp_lab.CompileError as err:
        # A refusal the value sets can't foresee (float32 can't separate a Map's inputs):
        # it must name an expression and say why.
        assert err.label and str(err).startswith(f"{err.label}: ") and len(str(err)) > len(err.label) + 20, err
        assume(False)
        raise  # unreachable


def check_against_evaluator(program: rasp.SOp, max_seq_len: int, inputs: list[list[Any]], causal: bool) -> None:
    model = compile_or_skip(program, max_seq_len, causal)
    runnable, expected = [], []
    for xs in inputs:
        try:
            out = rasp.evaluate(program, xs, causal=causal)
        except EvaluationError:
            continue  # undefined here (e.g. a categorical Aggregate whose values disagree)
        runnable.append(xs)
        expected.append(out)
    batch = model.run_batch(runnable)
    singles = [model.run(xs) for xs in runnable[:3]]  # one row at a time: another float32 order
    certificate = model.certificate
    numerical = model.output_location.encoding is rasp.Encoding.NUMERICAL
    for xs, g, e in [*zip(runnable, batch, expected, strict=True), *zip(runnable, singles, expected)]:
        assert len(g) == len(e), (xs, g, e)
        assert all(same_value(a, b) for a, b in zip(g, e, strict=True)), (
            f"program {program.label} (max_seq_len={max_seq_len}, causal={causal}) on {xs}: "
            f"compiled {g}, evaluated {e}"
        )
        if certificate.exact and numerical:
            bound = certificate.bound(model.output_location.label)
            for a, b in zip(g, e, strict=True):
                if b is not None:
                    assert abs(a - b) <= bound.at(b) + 1e-12, (program.label, xs, a, b, str(bound))


@pytest.mark.slow
@SETTINGS
@given(cases())
def test_compiled_equals_evaluated(case):
    program, max_seq_len, inputs = case
    check_against_evaluator(program, max_seq_len, inputs, causal=False)


# Without the primitive `length`: a causal model can't see the full length, so the compiler
# refuses it (see test_causal_length_agrees_with_the_causal_evaluator_or_is_refused).
@pytest.mark.slow
@SETTINGS
@given(cases(with_length=False))
def test_causal_compiled_equals_causal_evaluated(case):
    program, max_seq_len, inputs = case
    check_against_evaluator(program, max_seq_len, inputs, causal=True)


# ------------------------------------------------------------------ regressions
# Minimal reproductions of failures the random programs found.


def test_causal_length_agrees_with_the_causal_evaluator_or_is_refused():
    """The causal evaluator gives `length` the full length n at every position; a causal
    model sees only the prefix. Compiling must either agree or refuse the program."""
    for program in (rasp.length, rasp.numerical(rasp.length)):
        try:
            model = rasp_lab.compile(program, {"a", "b"}, 4, causal=True)
        except (rasp_lab.ValidationError, rasp_lab.CompileError) as err:
            assert "length" in str(err)
            continue
        xs = ["a", "b", "a"]
        assert model.run(xs) == rasp.evaluate(program, xs, causal=True), program.label


def test_selector_reading_an_sop_computed_from_none_able_sops_compiles():
    """A composition over SOps that are never None compiles, even when those SOps are
    computed (upstream, through other selectors) from SOps that can be None."""
    copy = rasp.Aggregate(rasp.Select(rasp.indices, rasp.indices, rasp.Comparison.EQ), rasp.tokens).named("copy")
    count = rasp.SelectorWidth(rasp.Select(copy, copy, rasp.Comparison.EQ)).named("count")  # never None
    selector = rasp.Select(count, rasp.indices, rasp.Comparison.EQ) | rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.LT)
    program = rasp.SelectorWidth(selector.named("sel")).named("out")
    model = rasp_lab.compile(program, {"a", "b", "c"}, 4)
    for xs in (["a"], ["a", "b", "a"], ["c", "b", "a", "a"]):
        assert model.run(xs) == rasp.evaluate(program, xs)


@dataclass(frozen=True)
class _Values:
    values: tuple

    def __call__(self, t):
        return self.values[t]


@pytest.mark.slow
def test_validate_and_compile_agree_on_a_mean_of_a_mean_of_a_mean():
    """The innermost mean takes too many values to enumerate. The Aggregate averaging it
    needs only its range; if the compiler can't do without the set, validate must say so."""
    vocab, max_seq_len = {0, 1, 2, 3, 4}, 10
    x = rasp.numerical(rasp.Map(_Values((0.0, 1.0, -1.5, 2.25, 3.125)), rasp.tokens))
    prevs = rasp.Select(rasp.indices, rasp.indices, rasp.Comparison.LEQ)
    a = rasp.numerical(rasp.Aggregate(rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.LEQ), x, default=0))
    b = rasp.numerical(rasp.Aggregate(prevs, a, default=0))
    c = rasp.numerical(rasp.Aggregate(prevs, b, default=0)).named("mean3")
    assert rasp_lab.value_sets(c, vocab, max_seq_len)[b] is None
    errors = [p for p in rasp_lab.validate(c, vocab, max_seq_len) if p.severity == "error"]
    if errors:
        with pytest.raises(rasp_lab.ValidationError):
            rasp_lab.compile(c, vocab, max_seq_len)
        return
    model = rasp_lab.compile(c, vocab, max_seq_len)
    xs = [0, 1, 2, 3, 4, 0, 1]
    assert all(same_value(g, e) for g, e in zip(model.run(xs), rasp.evaluate(c, xs), strict=True))
