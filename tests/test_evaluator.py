"""The reference semantics: every primitive on concrete inputs, selector algebra, causal mode, errors."""

import operator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rasp_lab import evaluate, rasp, trace
from rasp_lab.evaluator import EvaluationError, topological

tokens, indices, length = rasp.tokens, rasp.indices, rasp.length
Cmp = rasp.Comparison


def select(keys, queries, predicate):
    return rasp.Select(keys, queries, predicate)


# ---------------------------------------------------------------------------- primitives


def test_tokens_indices_length():
    xs = ["x", "y", "z", "x"]
    assert evaluate(tokens, xs) == xs
    assert evaluate(indices, xs) == [0, 1, 2, 3]
    assert evaluate(length, xs) == [4, 4, 4, 4]


def test_empty_input():
    assert evaluate(tokens, []) == []
    assert evaluate(length, []) == []
    assert evaluate(rasp.SelectorWidth(select(tokens, tokens, Cmp.TRUE)), []) == []
    assert evaluate(select(tokens, tokens, Cmp.TRUE), []) == []


def test_evaluate_and_calling_agree():
    program = rasp.SelectorWidth(select(tokens, tokens, Cmp.EQ))
    xs = [1, 2, 1, 1]
    assert evaluate(program, xs) == program(xs) == rasp.evaluate(program, xs) == [3, 1, 3, 3]


def test_evaluate_accepts_tuples_and_generators_and_does_not_mutate_input():
    xs = [3, 1]
    out = evaluate(tokens, xs)
    out.append(9)
    assert xs == [3, 1]
    assert evaluate(tokens + 1, (3, 1)) == [4, 2]
    assert evaluate(tokens + 1, (x for x in [3, 1])) == [4, 2]
    assert evaluate(tokens, range(3)) == [0, 1, 2]


def test_map():
    assert evaluate(rasp.Map(lambda x: x * x, tokens), [1, -2, 3]) == [1, 4, 9]
    assert evaluate(rasp.Map(str.upper, tokens), ["a", "b"]) == ["A", "B"]


def test_map_propagates_none_without_calling_f():
    calls = []

    def f(x):
        calls.append(x)
        return x + 1

    assert evaluate(rasp.Map(f, tokens), [1, None, 3]) == [2, None, 4]
    assert calls == [1, 3]


def test_map_may_produce_none():
    assert evaluate(rasp.Map(lambda x: None if x < 0 else x, tokens), [1, -1]) == [1, None]


def test_sequence_map():
    assert evaluate(rasp.SequenceMap(lambda x, y: f"{x}{y}", tokens, indices), ["a", "b"]) == ["a0", "b1"]


def test_sequence_map_propagates_none_without_calling_f():
    calls = []

    def f(x, y):
        calls.append((x, y))
        return x + y

    fst = rasp.Map(lambda x: None if x == 0 else x, tokens, simplify=False)
    assert evaluate(rasp.SequenceMap(f, fst, indices), [0, 5, 7]) == [None, 6, 9]
    assert evaluate(rasp.SequenceMap(f, indices, fst), [0, 5, 7]) == [None, 6, 9]
    assert calls == [(5, 1), (7, 2), (1, 5), (2, 7)]


def test_sequence_map_of_the_same_sop():
    assert evaluate(rasp.SequenceMap(operator.mul, tokens, tokens), [2, 3]) == [4, 9]


def test_linear_sequence_map():
    assert evaluate(rasp.LinearSequenceMap(tokens, indices, 3, -1), [1, 1, 1]) == [3, 2, 1]
    assert evaluate(rasp.LinearSequenceMap(tokens, indices, 0.5, 0.25), [2, 2]) == [1.0, 1.25]


def test_linear_sequence_map_propagates_none():
    fst = rasp.Map(lambda x: None if x == 0 else x, tokens)
    assert evaluate(rasp.LinearSequenceMap(fst, indices, 1, 1), [0, 2]) == [None, 3]


def test_full():
    assert evaluate(rasp.Full("z"), [1, 2, 3]) == ["z", "z", "z"]


def test_constant_sop():
    assert evaluate(rasp.ConstantSOp([7, 8, 9]), ["a", "b", "c"]) == [7, 8, 9]


def test_constant_sop_without_length_check_truncates():
    assert evaluate(rasp.ConstantSOp([7, 8, 9], check_length=False), [0, 0]) == [7, 8]


# ------------------------------------------------------------------------------ selectors


def test_select_is_query_by_key_and_calls_predicate_with_key_then_query():
    calls = []

    def predicate(key, query):
        calls.append((key, query))
        return key < query

    sel = select(tokens, indices, predicate)
    assert evaluate(sel, [0, 2, 1]) == [
        [False, False, False],  # query 0: no key < 0
        [True, False, False],  # query 1: key 0
        [True, False, True],  # query 2: keys 0 and 1
    ]
    assert (0, 0) in calls and (2, 1) in calls and len(calls) == 9


@pytest.mark.parametrize(
    "comparison, expected",
    [
        (Cmp.EQ, [[True, False, False], [False, True, False], [False, False, True]]),
        (Cmp.NEQ, [[False, True, True], [True, False, True], [True, True, False]]),
        (Cmp.LT, [[False, False, False], [True, False, False], [True, True, False]]),
        (Cmp.LEQ, [[True, False, False], [True, True, False], [True, True, True]]),
        (Cmp.GT, [[False, True, True], [False, False, True], [False, False, False]]),
        (Cmp.GEQ, [[True, True, True], [False, True, True], [False, False, True]]),
        (Cmp.TRUE, [[True] * 3] * 3),
        (Cmp.FALSE, [[False] * 3] * 3),
    ],
)
def test_select_with_each_comparison(comparison, expected):
    assert evaluate(select(indices, indices, comparison), ["a", "b", "c"]) == expected


def test_select_never_selects_a_none_key_or_query_and_never_calls_the_predicate_on_none():
    calls = []

    def predicate(key, query):
        calls.append((key, query))
        return True

    maybe = rasp.Map(lambda x: None if x == "_" else x, tokens)
    sel = select(maybe, maybe, predicate)
    assert evaluate(sel, ["a", "_", "b"]) == [[True, False, True], [False, False, False], [True, False, True]]
    assert all(k is not None and q is not None for k, q in calls)
    assert evaluate(select(maybe, maybe, Cmp.TRUE), ["_", "a"]) == [[False, False], [False, True]]


def test_selector_not_selects_none_positions():
    """~ is the Boolean complement of the matrix, None positions included."""
    maybe = rasp.Map(lambda x: None if x == "_" else x, tokens)
    sel = ~select(maybe, maybe, Cmp.TRUE)
    assert evaluate(sel, ["_", "a"]) == [[True, True], [True, False]]


def test_predicate_result_is_coerced_to_bool():
    sel = select(tokens, tokens, lambda k, q: k * q)
    assert evaluate(sel, [0, 2]) == [[False, False], [False, True]]


def test_constant_selector():
    value = [[1, 0, 1], [0, 0, 0], [1, 1, 1]]
    assert evaluate(rasp.ConstantSelector(value), [5, 6, 7]) == [[bool(v) for v in row] for row in value]


def test_constant_selector_without_length_check_is_cropped():
    sel = rasp.ConstantSelector([[1, 0, 1], [0, 1, 0], [1, 1, 1]], check_length=False)
    assert evaluate(sel, [0, 0]) == [[True, False], [False, True]]


def test_selector_and_or_not():
    a = rasp.ConstantSelector([[1, 1], [0, 0]])
    b = rasp.ConstantSelector([[1, 0], [1, 0]])
    assert evaluate(a & b, [0, 0]) == [[True, False], [False, False]]
    assert evaluate(a | b, [0, 0]) == [[True, True], [True, False]]
    assert evaluate(~a, [0, 0]) == [[False, False], [True, True]]
    assert evaluate(~~a, [0, 0]) == [[True, True], [False, False]]


def test_selector_width_counts_selected_keys():
    sel = select(tokens, tokens, Cmp.EQ)
    assert evaluate(rasp.SelectorWidth(sel), ["a", "b", "a", "c", "a"]) == [3, 1, 3, 1, 3]
    assert evaluate(rasp.SelectorWidth(select(tokens, tokens, Cmp.FALSE)), [1, 2]) == [0, 0]
    assert evaluate(rasp.SelectorWidth(select(indices, indices, Cmp.LEQ)), [9, 9, 9]) == [1, 2, 3]


# ------------------------------------------------------------------------------ aggregates


def test_numerical_aggregate_is_the_mean_over_selected_positions():
    prevs = select(indices, indices, Cmp.LEQ)
    mean = rasp.numerical(rasp.Aggregate(prevs, tokens, default=0))
    assert evaluate(mean, [1, 2, 4, 0]) == [1.0, 1.5, 7 / 3, 7 / 4]
    assert all(isinstance(v, float) for v in evaluate(mean, [1, 2]))


def test_numerical_aggregate_of_bools_is_a_fraction():
    mean = rasp.numerical(rasp.Aggregate(select(indices, indices, Cmp.TRUE), tokens == 1))
    assert evaluate(mean, [1, 0, 0, 1]) == [0.5, 0.5, 0.5, 0.5]


def test_numerical_aggregate_mean_is_exact():
    mean = rasp.numerical(rasp.Aggregate(select(indices, indices, Cmp.TRUE), tokens))
    assert evaluate(mean, [0.1, 0.2, 0.3]) == [0.2, 0.2, 0.2]


def test_numerical_aggregate_default_where_nothing_is_selected():
    mean = rasp.numerical(rasp.Aggregate(select(indices, indices, Cmp.LT), tokens, default=-1))
    assert evaluate(mean, [4, 2, 6]) == [-1, 4.0, 3.0]


def test_numerical_aggregate_of_none_is_none():
    maybe = rasp.Map(lambda x: None if x == 0 else x, tokens)
    mean = rasp.numerical(rasp.Aggregate(select(indices, indices, Cmp.LEQ), maybe, default=0))
    assert evaluate(mean, [2, 0, 4]) == [2.0, None, None]


def test_numerical_aggregate_of_non_numbers_names_the_aggregate_and_values():
    mean = rasp.numerical(rasp.Aggregate(select(indices, indices, Cmp.LEQ), tokens)).named("avg")
    with pytest.raises(EvaluationError) as info:
        evaluate(mean, [1, "x"])
    message = str(info.value)
    assert info.value.label == "avg"
    assert message.startswith("avg: ")
    assert "numerical Aggregate cannot average non-numbers [1, 'x']" in message
    assert "at query position 1" in message


def test_categorical_aggregate_is_the_shared_value():
    same = select(tokens, tokens, Cmp.EQ)
    agg = rasp.Aggregate(same, indices.named("idx") * 0 + 7)
    assert evaluate(agg, ["a", "b", "a"]) == [7, 7, 7]
    first = rasp.Aggregate(select(indices, indices, Cmp.EQ), tokens)
    assert evaluate(first, ["a", "b"]) == ["a", "b"]


def test_categorical_aggregate_moves_values():
    reverse = rasp.Aggregate(select(indices, length - indices - 1, Cmp.EQ), tokens)
    assert evaluate(reverse, list("abcd")) == list("dcba")


def test_categorical_aggregate_default_where_nothing_is_selected():
    prev = rasp.Aggregate(select(indices, indices + 0, lambda k, q: k == q - 1), tokens, default="^")
    assert evaluate(prev, ["a", "b", "c"]) == ["^", "a", "b"]
    assert evaluate(rasp.Aggregate(select(indices, indices, Cmp.FALSE), tokens), [1, 2]) == [None, None]


def test_categorical_aggregate_of_equal_values_of_different_types():
    agg = rasp.Aggregate(select(indices, indices, Cmp.TRUE), tokens)
    assert evaluate(agg, [1, 1.0]) == [1, 1]


def test_categorical_aggregate_of_all_none_is_none():
    nothing = rasp.Map(lambda x: None, tokens)
    agg = rasp.Aggregate(select(indices, indices, Cmp.TRUE), nothing, default="d")
    assert evaluate(agg, [1, 2, 3]) == [None, None, None]


def test_categorical_aggregate_disagreement_names_the_aggregate_and_values():
    agg = rasp.Aggregate(select(indices, indices, Cmp.LEQ), tokens).named("mixed")
    with pytest.raises(EvaluationError) as info:
        evaluate(agg, ["a", "a", "b"])
    err = info.value
    assert err.label == "mixed"
    message = str(err)
    assert message.startswith("mixed: categorical Aggregate selects different values ['a', 'a', 'b']")
    assert "(key positions [0, 1, 2]) at query position 2" in message
    assert "share one value" in message


def test_categorical_aggregate_disagreement_unnamed_label():
    agg = rasp.Aggregate(select(indices, indices, Cmp.TRUE), tokens)
    with pytest.raises(
        EvaluationError, match=rf"^{agg.label}: categorical Aggregate selects different values \[1, 2\]"
    ):
        evaluate(agg, [1, 2])


def test_categorical_aggregate_none_and_a_value_disagree():
    maybe = rasp.Map(lambda x: None if x == 0 else x, tokens)
    agg = rasp.Aggregate(select(indices, indices, Cmp.TRUE), maybe).named("half_none")
    with pytest.raises(
        EvaluationError, match=r"half_none: categorical Aggregate selects different values \[None, 3\]"
    ):
        evaluate(agg, [0, 3])
    with pytest.raises(EvaluationError, match=r"different values \[3, None\]"):
        evaluate(agg, [3, 0])


def test_aggregate_is_an_error_only_where_values_disagree():
    """A query whose selected positions agree is fine even if another query's disagree."""
    agg = rasp.Aggregate(select(indices, indices, Cmp.LEQ), tokens)
    assert evaluate(agg, ["a", "a"]) == ["a", "a"]
    with pytest.raises(EvaluationError, match="at query position 1"):
        evaluate(agg, ["a", "b"])


# --------------------------------------------------------------------------------- causal


def test_causal_restricts_aggregate_to_earlier_keys():
    agg = rasp.numerical(rasp.Aggregate(select(indices, indices, Cmp.TRUE), tokens, default=0))
    assert evaluate(agg, [2, 4, 6]) == [4.0, 4.0, 4.0]
    assert evaluate(agg, [2, 4, 6], causal=True) == [2.0, 3.0, 4.0]
    assert agg([2, 4, 6], causal=True) == [2.0, 3.0, 4.0]


def test_causal_restricts_selector_width():
    width = rasp.SelectorWidth(select(tokens, tokens, Cmp.EQ))
    assert evaluate(width, ["a", "b", "a", "a"]) == [3, 1, 3, 3]
    assert evaluate(width, ["a", "b", "a", "a"], causal=True) == [1, 1, 2, 3]


def test_causal_categorical_aggregate_ignores_later_disagreement():
    agg = rasp.Aggregate(select(indices, indices, Cmp.GEQ), tokens, default="-")
    with pytest.raises(EvaluationError):
        evaluate(agg, ["a", "b"])
    assert evaluate(agg, ["a", "b"], causal=True) == ["a", "b"]


def test_causal_default_where_only_later_keys_are_selected():
    nxt = rasp.Aggregate(select(indices, indices, lambda k, q: k == q + 1), tokens, default="$")
    assert evaluate(nxt, ["a", "b", "c"]) == ["b", "c", "$"]
    assert evaluate(nxt, ["a", "b", "c"], causal=True) == ["$", "$", "$"]


def test_causal_selector_on_its_own_is_lower_triangular():
    sel = select(tokens, tokens, Cmp.TRUE)
    assert evaluate(sel, [0, 0, 0], causal=True) == [
        [True, False, False],
        [True, True, False],
        [True, True, True],
    ]
    assert evaluate(sel, [0, 0, 0]) == [[True] * 3] * 3


def test_causal_does_not_change_maps():
    program = rasp.SequenceMap(operator.add, tokens, length)
    assert evaluate(program, [1, 2], causal=True) == evaluate(program, [1, 2]) == [3, 4]


# ---------------------------------------------------------------------------------- trace


def test_trace_records_every_node():
    sel = select(tokens, tokens, Cmp.EQ).named("same")
    width = rasp.SelectorWidth(sel).named("hist")
    program = (width + 1).named("out")
    values = trace(program, ["a", "b", "a"])
    assert set(values) == set(topological(program))
    assert values[program] == [3, 2, 3]
    assert values[width] == [2, 1, 2]
    assert values[sel] == [[True, False, True], [False, True, False], [True, False, True]]
    assert values.by_label() == {
        "tokens": ["a", "b", "a"],
        "same": values[sel],
        "hist": [2, 1, 2],
        "out": [3, 2, 3],
    }


def test_topological_puts_children_first_and_dedups_shared_nodes():
    shared = tokens + 1
    program = rasp.SequenceMap(operator.mul, shared, rasp.Map(abs, shared, simplify=False))
    order = topological(program)
    assert order[-1] is program
    assert sum(node is shared for node in order) == 1
    for position, node in enumerate(order):
        for child in node.children:
            assert any(child is earlier for earlier in order[:position])


def test_shared_subexpression_is_evaluated_once():
    calls = []

    def f(x):
        calls.append(x)
        return x

    shared = rasp.Map(f, tokens)
    evaluate(rasp.SequenceMap(operator.add, shared, shared), [1, 2])
    assert calls == [1, 2]


# ------------------------------------------------------------ selector algebra (Hypothesis)

ATOM_KEYS = {"tokens": tokens, "indices": indices}
PREDICATES = {
    "EQ": Cmp.EQ,
    "LT": Cmp.LT,
    "LEQ": Cmp.LEQ,
    "GT": Cmp.GT,
    "GEQ": Cmp.GEQ,
    "NEQ": Cmp.NEQ,
    "TRUE": Cmp.TRUE,
    "FALSE": Cmp.FALSE,
}
PLAIN_PREDICATES = {
    "EQ": operator.eq,
    "LT": operator.lt,
    "LEQ": operator.le,
    "GT": operator.gt,
    "GEQ": operator.ge,
    "NEQ": operator.ne,
    "TRUE": lambda k, q: True,
    "FALSE": lambda k, q: False,
}

atoms = st.tuples(
    st.just("select"),
    st.sampled_from(sorted(ATOM_KEYS)),
    st.sampled_from(sorted(ATOM_KEYS)),
    st.sampled_from(sorted(PREDICATES)),
)
selector_specs = st.recursive(
    atoms,
    lambda children: st.one_of(
        st.tuples(st.just("and"), children, children),
        st.tuples(st.just("or"), children, children),
        st.tuples(st.just("not"), children),
    ),
    max_leaves=6,
)
token_lists = st.lists(st.one_of(st.none(), st.integers(0, 3)), min_size=0, max_size=5)


def build_selector(spec):
    kind = spec[0]
    if kind == "select":
        _, keys, queries, predicate = spec
        return rasp.Select(ATOM_KEYS[keys], ATOM_KEYS[queries], PREDICATES[predicate])
    if kind == "and":
        return build_selector(spec[1]) & build_selector(spec[2])
    if kind == "or":
        return build_selector(spec[1]) | build_selector(spec[2])
    return ~build_selector(spec[1])


def plain_matrix(spec, xs):
    """The selection matrix [query][key] computed directly, without rasp_lab."""
    n = len(xs)
    kind = spec[0]
    if kind == "select":
        _, keys, queries, predicate = spec
        columns = {"tokens": list(xs), "indices": list(range(n))}
        key_values, query_values = columns[keys], columns[queries]
        return [
            [
                key_values[k] is not None
                and query_values[q] is not None
                and bool(PLAIN_PREDICATES[predicate](key_values[k], query_values[q]))
                for k in range(n)
            ]
            for q in range(n)
        ]
    if kind == "and":
        a, b = plain_matrix(spec[1], xs), plain_matrix(spec[2], xs)
        return [[a[q][k] and b[q][k] for k in range(n)] for q in range(n)]
    if kind == "or":
        a, b = plain_matrix(spec[1], xs), plain_matrix(spec[2], xs)
        return [[a[q][k] or b[q][k] for k in range(n)] for q in range(n)]
    a = plain_matrix(spec[1], xs)
    return [[not a[q][k] for k in range(n)] for q in range(n)]


@settings(max_examples=300, deadline=None)
@given(spec=selector_specs, xs=token_lists)
def test_selector_compositions_are_the_boolean_algebra_of_matrices(spec, xs):
    assert evaluate(build_selector(spec), xs) == plain_matrix(spec, xs)


@settings(max_examples=200, deadline=None)
@given(spec=selector_specs, xs=token_lists)
def test_selector_width_and_aggregate_read_the_matrix(spec, xs):
    sel = build_selector(spec)
    matrix = plain_matrix(spec, xs)
    causal = [[matrix[q][k] and k <= q for k in range(len(xs))] for q in range(len(xs))]
    assert evaluate(rasp.SelectorWidth(sel), xs) == [sum(row) for row in matrix]
    assert evaluate(rasp.SelectorWidth(sel), xs, causal=True) == [sum(row) for row in causal]
    assert evaluate(sel, xs, causal=True) == causal

    mean = rasp.numerical(rasp.Aggregate(sel, indices, default=-1))

    def plain_mean(rows):
        return [sum(k for k in range(len(xs)) if row[k]) / sum(row) if any(row) else -1 for row in rows]

    assert evaluate(mean, xs) == pytest.approx(plain_mean(matrix))
    assert evaluate(mean, xs, causal=True) == pytest.approx(plain_mean(causal))


# ----------------------------------------------------------------------------- error paths


def test_map_that_raises_names_label_value_and_position():
    program = rasp.Map(lambda x: 10 // x, tokens).named("tenth")
    with pytest.raises(EvaluationError) as info:
        evaluate(program, [5, 2, 0, 1])
    err = info.value
    assert err.label == "tenth"
    assert str(err) == (
        "tenth: Map function raised ZeroDivisionError(integer division or modulo by zero) on 0 at position 2"
    )
    assert isinstance(err.__cause__, ZeroDivisionError)
    assert isinstance(err, ValueError)


def test_unnamed_map_that_raises_names_its_structural_label():
    program = rasp.Map(lambda x: x.upper(), tokens)
    with pytest.raises(
        EvaluationError,
        match=rf"^{program.label}: Map function raised AttributeError\(.*\) on 3 at position 1$",
    ):
        evaluate(program, ["a", 3])


def test_sequence_map_that_raises_names_label_values_and_position():
    program = rasp.SequenceMap(lambda x, y: x / y, tokens, indices).named("ratio")
    with pytest.raises(EvaluationError) as info:
        evaluate(program, [4, 2])
    assert str(info.value) == (
        "ratio: SequenceMap function raised ZeroDivisionError(division by zero) on (4, 0) at position 0"
    )


def test_linear_sequence_map_that_raises_names_its_type():
    program = rasp.LinearSequenceMap(tokens, indices, 1, 1).named("lin")
    with pytest.raises(
        EvaluationError,
        match=r"^lin: LinearSequenceMap function raised TypeError\(.*\) on \('a', 0\) at position 0",
    ):
        evaluate(program, ["a"])


def test_error_in_a_deep_node_names_that_node_not_the_root():
    bad = rasp.Map(lambda x: 1 / x, tokens).named("inverse")
    program = rasp.SelectorWidth(rasp.Select(bad, bad, Cmp.EQ)).named("root")
    with pytest.raises(EvaluationError) as info:
        evaluate(program, [1, 0])
    assert info.value.label == "inverse"
    assert "on 0 at position 1" in str(info.value)


def test_predicate_that_raises_names_label_key_and_query():
    sel = rasp.Select(tokens, indices, lambda k, q: k < q).named("mixed_compare")
    with pytest.raises(EvaluationError) as info:
        evaluate(rasp.SelectorWidth(sel), ["a", "b"])
    err = info.value
    assert err.label == "mixed_compare"
    message = str(err)
    assert message.startswith("mixed_compare: predicate raised TypeError(")
    assert message.endswith("on key='a', query=0")
    assert isinstance(err.__cause__, TypeError)


def test_comparison_predicate_that_raises():
    sel = rasp.Select(tokens, indices, Cmp.LT).named("lt")
    with pytest.raises(EvaluationError, match=r"^lt: predicate raised TypeError\(.*\) on key='x', query=0$"):
        evaluate(sel, ["x"])


def test_constant_sop_length_mismatch():
    const = rasp.ConstantSOp([1, 2, 3]).named("three")
    with pytest.raises(EvaluationError) as info:
        evaluate(const, [0, 0])
    assert info.value.label == "three"
    assert str(info.value).startswith("three: ConstantSOp has 3 values but the input has length 2 (")
    assert "Constant len 3 doesn't match input len 2" in str(info.value)  # Tracr's words, which its tests match
    with pytest.raises(EvaluationError, match=r"^three: ConstantSOp has 3 values but the input has length 4 \("):
        evaluate(const, [0, 0, 0, 0])


def test_constant_sop_without_length_check_has_no_value_past_its_end():
    const = rasp.ConstantSOp([1, 2], check_length=False)
    assert evaluate(const, [0, 0, 0]) == [1, 2, None]
    assert evaluate(const, [0]) == [1]
    assert evaluate(rasp.Map(lambda x: x + 1, const), [0, 0, 0]) == [2, 3, None]


def test_constant_selector_length_mismatch():
    sel = rasp.ConstantSelector([[1, 0], [0, 1]]).named("eye")
    with pytest.raises(EvaluationError) as info:
        evaluate(sel, [0, 0, 0])
    assert info.value.label == "eye"
    assert str(info.value) == "eye: ConstantSelector is 2x2 but the input has length 3"
    with pytest.raises(EvaluationError, match=r"^eye: ConstantSelector is 2x2 but the input has length 1$"):
        evaluate(rasp.SelectorWidth(sel), [0])


def test_constant_selector_with_wrong_width_is_a_mismatch():
    sel = rasp.ConstantSelector([[1, 0, 1], [0, 1, 0]]).named("wide")
    with pytest.raises(EvaluationError, match=r"^wide: ConstantSelector is 2x3 but the input has length 2$"):
        evaluate(sel, [0, 0])
    ragged = rasp.ConstantSelector([[1, 0], [0]]).named("ragged")
    with pytest.raises(
        EvaluationError, match=r"^ragged: ConstantSelector is 2x1/2 but the input has length 2$"
    ):
        evaluate(ragged, [0, 0])


def test_constant_selector_too_small_even_without_length_check():
    sel = rasp.ConstantSelector([[1, 1], [1]], check_length=False).named("short_row")
    with pytest.raises(
        EvaluationError, match=r"^short_row: ConstantSelector is 2x1/2 but the input has length 2$"
    ):
        evaluate(sel, [0, 0])
    assert evaluate(sel, [0]) == [[True]]


def test_a_string_input_is_its_characters_as_in_tracr():
    assert evaluate(tokens, "abc") == ["a", "b", "c"]
    assert (tokens + "x")("hi") == ["hx", "ix"]
    assert rasp.SelectorWidth(rasp.Select(tokens, tokens, Cmp.EQ))("hello") == [1, 1, 2, 2, 1]
    assert evaluate(tokens, "") == evaluate(tokens, [])


def test_bytes_are_not_tokens():
    with pytest.raises(TypeError, match=r"got the bytes b'abc'; decode them or pass a list"):
        evaluate(tokens, b"abc")


@pytest.mark.parametrize("value, type_name", [(5, "int"), (None, "NoneType"), (3.5, "float")])
def test_evaluating_on_a_non_sequence_is_an_error(value, type_name):
    with pytest.raises(TypeError, match=rf"^evaluate\(\) takes a sequence of tokens, got {type_name}$"):
        evaluate(tokens, value)


@pytest.mark.parametrize("value", [{3, 1, 2}, frozenset({1}), {"a": 1}])
def test_evaluating_on_an_unordered_collection_is_an_error(value):
    with pytest.raises(TypeError, match=rf"got the unordered {type(value).__name__}"):
        evaluate(tokens, value)


@pytest.mark.parametrize("value", [3, "tokens", [tokens], None, lambda xs: xs])
def test_evaluating_a_non_expression_is_an_error(value):
    with pytest.raises(
        TypeError, match=rf"^evaluate\(\) takes a RASP expression, got {type(value).__name__} "
    ):
        evaluate(value, [1, 2])
    with pytest.raises(TypeError, match=r"takes a RASP expression"):
        trace(value, [1, 2])


def test_evaluating_an_unknown_expression_type_is_an_error():
    class Mystery(rasp.SOp):
        __slots__ = ()

        def __init__(self):
            self._init()

    node = Mystery().named("mystery")
    with pytest.raises(TypeError, match=r"^cannot evaluate Mystery 'mystery': unknown expression type$"):
        evaluate(node, [1])
