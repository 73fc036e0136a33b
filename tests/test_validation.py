import pytest

from rasp_lab import Problem, ValidationError, rasp, validate

EQ, LT, LEQ, TRUE = rasp.Comparison.EQ, rasp.Comparison.LT, rasp.Comparison.LEQ, rasp.Comparison.TRUE


def kinds(problems):
    return {(p.label, p.kind, p.severity) for p in problems}


def only(problems, kind):
    found = [p for p in problems if p.kind == kind]
    assert len(found) == 1, problems
    return found[0]


def test_valid_program_has_no_problems():
    flag = rasp.numerical(rasp.Map(lambda t: 1 if t == "x" else 0, rasp.tokens))
    frac = rasp.numerical(rasp.Aggregate(rasp.Select(rasp.indices, rasp.indices, LEQ), flag, default=0))
    assert validate(frac, {"x", "y"}, 6) == []


def test_map_that_raises_on_reachable_input():
    m = rasp.Map(lambda t: 10 // t, rasp.tokens).named("inv")
    p = only(validate(m, {0, 1, 2}, 3), "function-raised")
    assert (p.label, p.severity) == ("inv", "error")
    assert "ZeroDivisionError" in p.message and "(0,)" in p.message
    assert p.values == (0,)


def test_map_that_may_raise_on_over_approximated_input_is_a_warning():
    width = rasp.SelectorWidth(rasp.Select(rasp.tokens, rasp.tokens, TRUE))  # never 0 in practice
    m = rasp.Map(lambda w: 10 // w, width).named("inv")
    p = only(validate(m, {1, 2}, 3), "function-raised")
    assert p.severity == "warning" and "may receive" in p.message


def test_predicate_that_raises():
    sel = rasp.Select(rasp.tokens, rasp.tokens, lambda k, q: k / q > 1).named("ratio")
    problems = validate(rasp.SelectorWidth(sel), {0, 1}, 3)
    p = only(problems, "function-raised")
    assert p.label == "ratio" and "predicate raised ZeroDivisionError" in p.message


def test_sequence_map_of_numerical_input():
    num = rasp.numerical(rasp.Map(lambda t: t, rasp.tokens)).named("num")
    sm = rasp.SequenceMap(lambda a, b: a + b, num, rasp.indices).named("sum")
    p = only(validate(sm, {1, 2}, 3), "encoding")
    assert p.label == "sum" and "['num']" in p.message and "LinearSequenceMap" in p.message


def test_linear_sequence_map_mixed_encodings():
    num = rasp.numerical(rasp.Map(lambda t: t, rasp.tokens)).named("num")
    lsm = rasp.numerical(rasp.LinearSequenceMap(num, rasp.indices, 1, 1)).named("lin")
    p = only(validate(lsm, {1, 2}, 3), "encoding")
    assert p.label == "lin" and "mixes encodings" in p.message and "'num': 'numerical'" in p.message


def test_linear_sequence_map_numerical_inputs_categorical_output():
    a = rasp.numerical(rasp.Map(lambda t: t, rasp.tokens)).named("a")
    lsm = rasp.LinearSequenceMap(a, a, 1, 2).named("lin")
    p = only(validate(lsm, {1, 2}, 3), "encoding")
    assert "must be numerical too" in p.message


def test_select_on_numerical_sop():
    num = rasp.numerical(rasp.Map(lambda t: t, rasp.tokens)).named("num")
    sel = rasp.Select(num, rasp.tokens, EQ).named("sel")
    p = only(validate(rasp.SelectorWidth(sel), {1, 2}, 3), "encoding")
    assert p.label == "sel" and "['num']" in p.message


def test_aggregate_encoding_mismatch():
    agg = rasp.numerical(rasp.Aggregate(rasp.Select(rasp.indices, rasp.indices, EQ), rasp.tokens, default=0)).named("agg")
    p = only(validate(agg, {1, 2}, 3), "encoding")
    assert p.label == "agg" and "numerical Aggregate of categorical SOp 'tokens'" in p.message


def test_numerical_aggregate_of_strings():
    words = rasp.numerical(rasp.Map(lambda t: "big" if t > 1 else 0, rasp.tokens)).named("words")
    agg = rasp.numerical(rasp.Aggregate(rasp.Select(rasp.indices, rasp.indices, LEQ), words, default=0)).named("agg")
    problems = validate(agg, {1, 2}, 3)
    p = only(problems, "not-averageable")
    assert p.label == "agg" and "'big'" in p.message and "big" in p.values
    assert only(problems, "not-a-number").label == "words"


def test_numerical_sop_with_none():
    maybe = rasp.numerical(rasp.Map(lambda t: None if t == 1 else t, rasp.tokens)).named("maybe")
    p = only(validate(maybe, {1, 2}, 3), "numerical-none")
    assert p.label == "maybe" and "None" in p.message


def test_numerical_sop_with_nan():
    bad = rasp.numerical(rasp.Map(lambda t: float("inf") if t == 1 else t, rasp.tokens)).named("bad")
    p = only(validate(bad, {1, 2}, 3), "not-a-number")
    assert "inf" in p.message


def test_categorical_map_returning_none_is_a_warning():
    m = rasp.Map(lambda t: None if t == 1 else t, rasp.tokens).named("m")
    p = only(validate(m, {1, 2}, 3), "map-returns-none")
    assert p.severity == "warning" and p.label == "m"


def test_numerical_default_none_when_selector_may_be_empty():
    flag = rasp.numerical(rasp.Map(lambda t: 1, rasp.tokens))
    agg = rasp.numerical(rasp.Aggregate(rasp.Select(rasp.indices, rasp.indices, LT), flag)).named("agg")
    p = only(validate(agg, {1}, 3), "default")
    assert p.label == "agg" and "default None" in p.message and "default=0" in p.message


def test_numerical_default_none_is_fine_when_selector_contains_diagonal():
    flag = rasp.numerical(rasp.Map(lambda t: 1, rasp.tokens))
    agg = rasp.numerical(rasp.Aggregate(rasp.Select(rasp.indices, rasp.indices, LEQ), flag)).named("agg")
    assert validate(agg, {1}, 3) == []


def test_numerical_default_nonzero():
    flag = rasp.numerical(rasp.Map(lambda t: 1, rasp.tokens))
    agg = rasp.numerical(rasp.Aggregate(rasp.Select(rasp.indices, rasp.indices, LT), flag, default=5)).named("agg")
    p = only(validate(agg, {1}, 3), "default")
    assert "default 5" in p.message and p.values == (5,)


def test_categorical_default_not_none():
    agg = rasp.Aggregate(rasp.Select(rasp.indices, rasp.indices, EQ), rasp.tokens, default="z").named("agg")
    p = only(validate(agg, {"a"}, 3), "default")
    assert "default 'z'" in p.message and "None" in p.message


def test_categorical_aggregate_mixing_values_found_with_an_input():
    agg = rasp.Aggregate(rasp.Select(rasp.tokens, rasp.tokens, EQ), rasp.indices).named("agg")
    p = only(validate(agg, {"a", "b"}, 4), "mixed-values")
    assert p.label == "agg" and "different values" in p.message
    xs = list(p.values[0])
    assert len(xs) == 2 and xs[0] == xs[1]


def test_constant_sop_too_short():
    const = rasp.ConstantSOp([1, 2], check_length=False).named("c")
    p = only(validate(const, {1}, 4), "constant-length")
    assert p.severity == "error" and "2 positions" in p.message and "4" in p.message


def test_constant_sop_check_length_is_a_warning():
    const = rasp.ConstantSOp([1, 2, 3]).named("c")
    problems = validate(const, {1}, 3)
    warn = [p for p in problems if p.kind == "constant-length"]
    assert warn and warn[0].severity == "warning" and "check_length=True" in warn[0].message


def test_constant_selector_too_small():
    sel = rasp.ConstantSelector([[True, False], [False, True]], check_length=False).named("cs")
    problems = validate(rasp.SelectorWidth(sel), {1}, 3)
    assert ("cs", "constant-length", "error") in kinds(problems)


def test_too_many_values():
    big = rasp.Map(lambda t: t, rasp.tokens)
    assert validate(big, set(range(50)), 2) == []


def test_a_numerical_sop_may_take_more_values_than_a_one_hot(monkeypatch):
    import sys

    value_sets_module = sys.modules["rasp_lab.value_sets"]  # the package's value_sets is the function
    # 1,000 tokens x 21 positions: 21,000 values, past a one-hot's 20,000.
    pairs = rasp.SequenceMap(lambda t, i: t * 100 + i, rasp.tokens, rasp.indices).named("pairs")
    problems = validate(pairs, set(range(1000)), 21)
    assert [(p.label, p.kind, p.message) for p in problems] == [
        ("pairs", "too-many-values", "takes more than 20,000 values (or more than value inference can enumerate in its work budget); a one-hot block or lookup MLP would be too large")
    ]
    scaled = rasp.numerical(rasp.SequenceMap(lambda t, i: t * 100 + i, rasp.tokens, rasp.indices)).named("scaled")
    wide = rasp.numerical(rasp.Map(lambda x: x > 500, scaled)).named("wide")
    assert validate(wide, set(range(1000)), 21) == []
    monkeypatch.setattr(value_sets_module, "MAX_NUMERICAL_VALUES", 20_000)
    problems = validate(wide, set(range(1000)), 21)
    assert [(p.label, p.kind, p.message) for p in problems] == [
        ("scaled", "too-many-values", "takes more than 20,000 values (or more than value inference can enumerate in its work budget); an MLP that reads it needs every value")
    ]


def test_one_name_on_two_expressions_is_no_problem():
    a = rasp.Map(lambda t: t + 1, rasp.tokens).named("x")
    b = rasp.Map(lambda t: t + 2, rasp.tokens).named("x")
    assert validate(rasp.SequenceMap(lambda p, q: p + q, a, b), {1}, 2) == []
    bad = rasp.Aggregate(rasp.Select(rasp.indices, rasp.indices, EQ), b, default=7).named("x")
    problems = validate(rasp.SequenceMap(lambda p, q: p + q, a, bad), {1}, 2)
    assert [(p.label, p.kind) for p in problems] == [(f"x_{bad.unique_id[:8]}", "default")]  # the label compile uses


def test_every_problem_at_once_errors_first():
    raises = rasp.Map(lambda t: 1 // t, rasp.tokens).named("raises")
    none_map = rasp.Map(lambda t: None if t == 2 else t, rasp.tokens).named("none_map")
    bad_default = rasp.Aggregate(rasp.Select(rasp.indices, rasp.indices, EQ), rasp.tokens, default=7).named("bad_default")
    num = rasp.numerical(rasp.Map(lambda t: t, rasp.tokens)).named("num")
    sm = rasp.SequenceMap(lambda a, b: a, num, raises).named("sm")
    prog = rasp.SequenceMap(lambda a, b: (a, b), rasp.SequenceMap(lambda a, b: a, sm, none_map), bad_default)
    problems = validate(prog, {0, 1, 2}, 3)
    assert {("raises", "function-raised"), ("none_map", "map-returns-none"), ("bad_default", "default"), ("sm", "encoding")} <= {
        (p.label, p.kind) for p in problems
    }
    severities = [p.severity for p in problems]
    assert severities == sorted(severities, key=lambda s: s != "error")


def test_validation_error_lists_every_problem():
    problems = [Problem("a", "default", "bad default"), Problem("b", "encoding", "bad encoding")]
    err = ValidationError(problems)
    assert err.problems == tuple(problems)
    assert "2 problems" in str(err) and "a: bad default" in str(err) and "b: bad encoding" in str(err)


def test_bad_arguments_raise():
    with pytest.raises(TypeError, match="RASP expression"):
        validate(lambda x: x, {1}, 3)
    with pytest.raises(ValueError, match="empty"):
        validate(rasp.tokens, [], 3)


def test_a_comparison_of_strings_with_numbers_is_tried_pair_by_pair():
    # Numbers with numbers never raise, so those pairs are not tried; a str key and an int
    # query raise TypeError for LT, which validation reports with the pair.
    mixed = rasp.Select(rasp.tokens, rasp.indices, LT).named("mixed")
    problems = validate(rasp.SelectorWidth(mixed).named("w"), {"a"}, 2)
    raised = only(problems, "predicate-raised")
    assert raised.label == "mixed" and "TypeError" in raised.message and "'a'" in raised.message
    numeric = rasp.Select(rasp.tokens, rasp.indices, LT).named("numeric")
    assert validate(rasp.SelectorWidth(numeric).named("w"), {1, 2.5}, 2) == []
