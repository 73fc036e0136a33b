"""The RASP DSL: constructors, annotations, immutability, operator sugar, identity semantics."""

import copy
import operator
import pickle

import numpy as np
import pytest

from rasp_lab import evaluator, rasp

tokens, indices, length = rasp.tokens, rasp.indices, rasp.length


def select_all():
    return rasp.Select(indices, indices, rasp.Comparison.TRUE)


# --------------------------------------------------------------------------- public names


TRACR_NAMES = [
    "RASPExpr",
    "SOp",
    "Selector",
    "TokensType",
    "IndicesType",
    "LengthType",
    "tokens",
    "indices",
    "length",
    "Map",
    "SequenceMap",
    "LinearSequenceMap",
    "Full",
    "ConstantSOp",
    "Aggregate",
    "SelectorWidth",
    "Comparison",
    "Select",
    "ConstantSelector",
    "SelectorAnd",
    "SelectorOr",
    "SelectorNot",
    "Encoding",
    "numerical",
    "categorical",
    "is_numerical",
    "is_categorical",
    "get_encoding",
    "annotate",
    "evaluate",
    "Value",
    "NumericValue",
    "SelectorValue",
    "sop_not",
    "selector_and",
    "selector_or",
    "selector_not",
]


@pytest.mark.parametrize("name", TRACR_NAMES)
def test_tracr_public_name_exists(name):
    assert hasattr(rasp, name)


def test_all_lists_only_existing_names():
    missing = [name for name in rasp.__all__ if not hasattr(rasp, name)]
    assert missing == []


def test_evaluate_is_the_reference_evaluator():
    assert rasp.evaluate is evaluator.evaluate
    assert rasp.EvaluationError is evaluator.EvaluationError


def test_comparison_has_tracrs_members():
    assert [c.name for c in rasp.Comparison] == ["EQ", "LT", "LEQ", "GT", "GEQ", "NEQ", "TRUE", "FALSE"]


def test_tracr_library_style_program_runs():
    """Lines in the style of Tracr's lib.py, unchanged but for the import."""
    all_true = rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.TRUE).named("all_true_selector")
    my_length = rasp.SelectorWidth(all_true).named("length")
    opp_idx = (my_length - rasp.indices).named("opp_idx")
    opp_idx = (opp_idx - 1).named("opp_idx-1")
    reverse_selector = rasp.Select(rasp.indices, opp_idx, rasp.Comparison.EQ).named("reverse_selector")
    reverse = rasp.Aggregate(reverse_selector, rasp.tokens).named("reverse")
    assert reverse(list("hello")) == list("olleh")

    bools = rasp.numerical(rasp.tokens == "l")
    prevs = rasp.Select(rasp.indices, rasp.indices, rasp.Comparison.LEQ)
    frac_prevs = rasp.numerical(rasp.Aggregate(prevs, bools, default=0)).named("frac_prevs")
    assert frac_prevs(list("hello")) == [0, 0, 1 / 3, 2 / 4, 2 / 5]

    def shift_by(offset, /, sop):
        select_off_by_offset = rasp.Select(rasp.indices, rasp.indices, lambda k, q: q == k + offset)
        return rasp.Aggregate(select_off_by_offset, sop, default=None).named(f"shift_by({offset})")

    assert shift_by(1, rasp.tokens)([1, 2, 3]) == [None, 1, 2]
    assert shift_by(2, rasp.tokens)([1, 2, 3]) == [None, None, 1]

    hist = -1 * rasp.SelectorWidth(rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.EQ)).named("hist")
    assert hist(list("abac")) == [-2, -1, -2, -1]

    values = rasp.SequenceMap(
        lambda x, y: (*x, y) if isinstance(x, tuple) else (x, y), rasp.tokens, rasp.indices
    )
    nary = rasp.Map(lambda args: "".join(map(str, args)), values)
    assert nary(["a", "b"]) == ["a0", "b1"]


def test_tracr_value_aliases_are_usable_in_annotations():
    def detect(sop: rasp.SOp, pattern: "list[rasp.Value]") -> rasp.SOp:
        return sop == pattern[0]

    assert detect(tokens, ["a"])(["a", "b"]) == [True, False]
    assert rasp.SelectorValue == list[list[bool]]


# ---------------------------------------------------------------------------- primitives


@pytest.mark.parametrize(
    "primitive, label, cls",
    [
        (rasp.tokens, "tokens", rasp.TokensType),
        (rasp.indices, "indices", rasp.IndicesType),
        (rasp.length, "length", rasp.LengthType),
    ],
)
def test_primitives(primitive, label, cls):
    assert isinstance(primitive, cls)
    assert primitive.label == label
    assert primitive.name == label
    assert primitive.children == ()
    assert rasp.is_categorical(primitive)
    assert repr(primitive) == f"{cls.__name__}({label!r})"


def test_primitive_values():
    assert tokens(["a", "b", "c"]) == ["a", "b", "c"]
    assert indices(["a", "b", "c"]) == [0, 1, 2]
    assert length(["a", "b", "c"]) == [3, 3, 3]


# -------------------------------------------------------------------------- constructors


def test_map_fields_and_children():
    f = abs
    m = rasp.Map(f, tokens)
    assert m.f is f and m.inner is tokens
    assert m.children == (tokens,)
    assert isinstance(m, rasp.SOp) and not isinstance(m, rasp.Selector)


def test_sequence_map_fields_and_children():
    sm = rasp.SequenceMap(operator.add, tokens, indices)
    assert sm.f is operator.add
    assert sm.fst is tokens and sm.snd is indices
    assert sm.children == (tokens, indices)
    assert sm([10, 20]) == [10, 21]


def test_linear_sequence_map_fields_and_values():
    lsm = rasp.LinearSequenceMap(tokens, indices, 2, -3)
    assert isinstance(lsm, rasp.SequenceMap)
    assert (lsm.fst_fac, lsm.snd_fac) == (2, -3)
    assert lsm.children == (tokens, indices)
    assert lsm([5, 5, 5]) == [10, 7, 4]
    assert lsm.f(1, 1) == -1


def test_linear_sequence_map_accepts_numpy_numbers():
    lsm = rasp.LinearSequenceMap(tokens, indices, np.int64(2), np.float32(0.5))
    assert lsm([1, 1]) == [2.0, 2.5]


@pytest.mark.parametrize("bad", [True, "2", None, [1]])
def test_linear_sequence_map_rejects_non_number_factors(bad):
    with pytest.raises(TypeError, match=r"LinearSequenceMap: snd_fac must be a number, got") as info:
        rasp.LinearSequenceMap(tokens, indices, 1, bad)
    assert repr(bad) in str(info.value)
    with pytest.raises(TypeError, match=r"fst_fac must be a number"):
        rasp.LinearSequenceMap(tokens, indices, bad, 1)


def test_full():
    full = rasp.Full(7)
    assert full.fill == 7
    assert full.children == ()
    assert full([1, 2, 3]) == [7, 7, 7]
    assert full([]) == []
    assert rasp.Full(None)([1, 2]) == [None, None]


def test_constant_sop():
    c = rasp.ConstantSOp([1, 2, 3])
    assert c.value == (1, 2, 3)
    assert c.check_length is True
    assert c.children == ()
    assert c(["a", "b", "c"]) == [1, 2, 3]
    assert rasp.ConstantSOp((4, 5), check_length=False).check_length is False


def test_constant_sop_copies_its_value():
    value = [1, 2]
    c = rasp.ConstantSOp(value)
    value.append(3)
    assert c.value == (1, 2)


def test_aggregate_fields_and_children():
    sel = select_all()
    agg = rasp.Aggregate(sel, tokens, default=0)
    assert agg.selector is sel and agg.sop is tokens and agg.default == 0
    assert agg.children == (sel, tokens)
    assert rasp.Aggregate(sel, tokens).default is None


def test_selector_width_fields():
    sel = select_all()
    width = rasp.SelectorWidth(sel)
    assert width.selector is sel
    assert width.children == (sel,)
    assert isinstance(width, rasp.SOp)


def test_select_fields_and_children():
    sel = rasp.Select(tokens, indices, rasp.Comparison.LT)
    assert sel.keys is tokens and sel.queries is indices
    assert sel.predicate is rasp.Comparison.LT
    assert sel.children == (tokens, indices)
    assert isinstance(sel, rasp.Selector) and not isinstance(sel, rasp.SOp)


def test_constant_selector():
    sel = rasp.ConstantSelector([[1, 0], [True, False]])
    assert sel.value == ((True, False), (True, False))
    assert sel.check_length is True
    assert sel.children == ()
    assert sel([0, 0]) == [[True, False], [True, False]]


def test_constant_selector_accepts_numpy_bools():
    sel = rasp.ConstantSelector(np.eye(2, dtype=bool).tolist())
    assert sel.value == ((True, False), (False, True))
    assert rasp.ConstantSelector([[np.True_, np.False_]]).value == ((True, False),)


def test_selector_combinators_fields():
    a, b = select_all(), rasp.Select(tokens, tokens, rasp.Comparison.EQ)
    both = rasp.SelectorAnd(a, b)
    either = rasp.SelectorOr(a, b)
    neither = rasp.SelectorNot(a)
    assert both.fst is a and both.snd is b
    assert either.fst is a and either.snd is b
    assert both.children == (a, b) and either.children == (a, b)
    assert neither.inner is a and neither.children == (a,)


def test_tracr_functional_selector_forms():
    a, b = select_all(), rasp.Select(tokens, tokens, rasp.Comparison.EQ)
    assert isinstance(rasp.selector_and(a, b), rasp.SelectorAnd)
    assert isinstance(rasp.selector_or(a, b, simplify=False), rasp.SelectorOr)
    assert isinstance(rasp.selector_not(a), rasp.SelectorNot)
    assert rasp.selector_and(a, b).children == (a, b)
    assert rasp.sop_not(tokens)([True, False, 0]) == [False, True, True]


BAD_CONSTRUCTIONS = [
    (lambda: rasp.Map(3, tokens), r"Map: f must be callable, got int 3"),
    (lambda: rasp.Map(abs, 3), r"Map: inner must be a SOp, got int 3"),
    (lambda: rasp.Map(abs, select_all()), r"Map: inner must be a SOp, got Select"),
    (lambda: rasp.SequenceMap("f", tokens, tokens), r"SequenceMap: f must be callable, got str 'f'"),
    (lambda: rasp.SequenceMap(operator.add, [1], tokens), r"SequenceMap: fst must be a SOp, got list \[1\]"),
    (
        lambda: rasp.SequenceMap(operator.add, tokens, None),
        r"SequenceMap: snd must be a SOp, got NoneType None",
    ),
    (lambda: rasp.LinearSequenceMap(tokens, 5, 1, 1), r"LinearSequenceMap: snd must be a SOp, got int 5"),
    (lambda: rasp.Full(tokens), r"Full: fill must be a plain value, got TokensType\('tokens'\)"),
    (lambda: rasp.ConstantSOp("abc"), r"ConstantSOp: value must be a sequence of values, got 'abc'"),
    (lambda: rasp.ConstantSOp(5), r"ConstantSOp: value must be a sequence of values, got 5"),
    (lambda: rasp.ConstantSOp(tokens), r"ConstantSOp: value must be a sequence of values"),
    (lambda: rasp.ConstantSOp({1, 2}), r"ConstantSOp: value must be a sequence of values, got \{1, 2\}"),
    (lambda: rasp.Aggregate(tokens, tokens), r"Aggregate: selector must be a Selector, got TokensType"),
    (lambda: rasp.Aggregate(select_all(), select_all()), r"Aggregate: sop must be a SOp, got Select"),
    (
        lambda: rasp.Aggregate(select_all(), tokens, default=indices),
        r"Aggregate: default must be a plain value",
    ),
    (lambda: rasp.SelectorWidth(tokens), r"SelectorWidth: selector must be a Selector, got TokensType"),
    (lambda: rasp.Select([1], tokens, rasp.Comparison.EQ), r"Select: keys must be a SOp, got list \[1\]"),
    (lambda: rasp.Select(tokens, "q", rasp.Comparison.EQ), r"Select: queries must be a SOp, got str 'q'"),
    (
        lambda: rasp.Select(tokens, tokens, "EQ"),
        r"Select: predicate must be a Comparison or a callable\(key, query\) -> bool, got str 'EQ'",
    ),
    (
        lambda: rasp.Select(tokens, tokens, tokens),
        r"Select: predicate must be a Comparison or a callable.*got TokensType",
    ),
    (lambda: rasp.ConstantSelector(5), r"ConstantSelector: value must be a matrix of bools, got 5"),
    (lambda: rasp.ConstantSelector("ab"), r"ConstantSelector: value must be a matrix of bools, got 'ab'"),
    (
        lambda: rasp.ConstantSelector(["ab"]),
        r"ConstantSelector: value must be a matrix of bools, got \['ab'\]",
    ),
    (
        lambda: rasp.ConstantSelector([[1, "x"]]),
        r"ConstantSelector: value must be a matrix of bools, got \[\[1, 'x'\]\]",
    ),
    (lambda: rasp.ConstantSelector([[None]]), r"ConstantSelector: value must be a matrix of bools"),
    (
        lambda: rasp.ConstantSelector([[2]]),
        r"ConstantSelector: value must be a matrix of bools, got \[\[2\]\]",
    ),
    (lambda: rasp.SelectorAnd(select_all(), tokens), r"SelectorAnd: snd must be a Selector, got TokensType"),
    (lambda: rasp.SelectorOr(1, select_all()), r"SelectorOr: fst must be a Selector, got int 1"),
    (lambda: rasp.SelectorNot(tokens), r"SelectorNot: inner must be a Selector, got TokensType"),
    (lambda: select_all() & tokens, r"SelectorAnd: snd must be a Selector, got TokensType"),
    (lambda: select_all() | 1, r"SelectorOr: snd must be a Selector, got int 1"),
]


@pytest.mark.parametrize("build, message", BAD_CONSTRUCTIONS, ids=[m for _, m in BAD_CONSTRUCTIONS])
def test_constructor_rejects_wrong_types_with_a_message(build, message):
    with pytest.raises(TypeError, match=message):
        build()


# --------------------------------------------------------------------------- annotations


def test_default_annotations():
    m = rasp.Map(abs, tokens)
    assert dict(m.annotations) == {"encoding": rasp.Encoding.CATEGORICAL, "name": "map"}
    sel = select_all()
    assert dict(sel.annotations) == {"name": sel.name}


def test_named_returns_a_new_node_and_keeps_the_original():
    m = rasp.Map(abs, tokens)
    old_label = m.label
    named = m.named("absolute")
    assert named is not m
    assert type(named) is rasp.Map
    assert named.label == "absolute" and named.name == "absolute"
    assert named.annotations["name"] == "absolute"
    assert m.label == old_label
    assert named.f is m.f and named.inner is m.inner
    assert named([-1, 2]) == [1, 2]


def test_renaming_a_named_node():
    assert rasp.Map(abs, tokens).named("a").named("b").label == "b"


def test_named_primitive():
    t = tokens.named("input")
    assert t.label == "input"
    assert isinstance(t, rasp.TokensType)
    assert t(["x"]) == ["x"]
    assert tokens.label == "tokens"


def test_annotate_sets_arbitrary_keys_and_keeps_existing_ones():
    m = rasp.Map(abs, tokens).named("m")
    a = rasp.annotate(m, foo=1)
    b = a.annotate(bar="x")
    c = b.annotated(foo=2)
    assert a.annotations["foo"] == 1 and a.label == "m"
    assert dict(b.annotations) == {"encoding": rasp.Encoding.CATEGORICAL, "name": "m", "foo": 1, "bar": "x"}
    assert c.annotations["foo"] == 2 and c.annotations["bar"] == "x"
    assert "foo" not in m.annotations


def test_annotations_on_selectors():
    sel = select_all().annotate(note="x")
    assert sel.annotations["note"] == "x"
    assert rasp.annotate(sel, name="s").label == "s"


@pytest.mark.parametrize("bad", ["", 3, None])
def test_name_must_be_a_non_empty_string(bad):
    with pytest.raises(TypeError, match="a name must be a non-empty string, got " + repr(bad)):
        rasp.Map(abs, tokens).named(bad)


def test_annotate_rejects_non_expressions():
    with pytest.raises(TypeError, match=r"annotate: expr must be a RASPExpr, got int 3"):
        rasp.annotate(3, name="x")


def test_encoding_annotation_only_on_sops():
    sel = select_all().named("sel")
    with pytest.raises(TypeError, match=r"only SOps have an encoding; 'sel' is a Select"):
        rasp.annotate(sel, encoding=rasp.Encoding.NUMERICAL)
    with pytest.raises(TypeError, match=r"only SOps have an encoding; got Select"):
        rasp.get_encoding(sel)
    with pytest.raises(TypeError, match=r"numerical\(\) takes an SOp, got Select"):
        rasp.numerical(sel)
    with pytest.raises(TypeError, match=r"categorical\(\) takes an SOp, got int 3"):
        rasp.categorical(3)


def test_encoding_annotation_must_be_an_encoding():
    with pytest.raises(TypeError, match=r"encoding must be an Encoding, got 'numerical'"):
        rasp.annotate(tokens, encoding="numerical")


def test_numerical_and_categorical():
    m = rasp.Map(abs, tokens)
    num = rasp.numerical(m)
    assert rasp.is_numerical(num) and not rasp.is_categorical(num)
    assert rasp.get_encoding(num) is rasp.Encoding.NUMERICAL
    assert rasp.is_categorical(m)
    assert num is not m
    assert rasp.numerical(num) is num
    assert rasp.categorical(m) is m
    assert rasp.numerical(m) is num
    assert rasp.categorical(num) is m
    assert num.f is m.f and num.inner is m.inner


def test_annotate_with_encoding_is_numerical():
    m = rasp.Map(abs, tokens).named("m")
    assert rasp.annotate(m, encoding=rasp.Encoding.NUMERICAL) is rasp.numerical(m)
    both = rasp.annotate(m, encoding=rasp.Encoding.NUMERICAL, note=1)
    assert rasp.is_numerical(both) and both.annotations["note"] == 1
    assert both.label == "m_numerical"
    explicit = rasp.annotate(m, encoding=rasp.Encoding.NUMERICAL, name="n")
    assert explicit.label == "n" and rasp.is_numerical(explicit)


def test_annotations_survive_renaming_and_encoding():
    m = rasp.numerical(rasp.Map(abs, tokens)).annotate(foo=1).named("x")
    assert rasp.is_numerical(m) and m.annotations["foo"] == 1 and m.label == "x"


# --------------------------------------------------------------------------- immutability


@pytest.mark.parametrize(
    "expr, attr",
    [
        (rasp.Map(abs, tokens), "f"),
        (rasp.Map(abs, tokens), "inner"),
        (tokens, "label"),
        (select_all(), "predicate"),
        (rasp.Full(1), "fill"),
        (rasp.Aggregate(select_all(), tokens), "default"),
        (rasp.ConstantSOp([1]), "new_attribute"),
    ],
)
def test_nodes_are_immutable(expr, attr):
    before = expr.label
    with pytest.raises(AttributeError, match=r"is immutable; use \.named\(\.\.\.\), annotate"):
        setattr(expr, attr, 1)
    with pytest.raises(AttributeError, match=r"is immutable"):
        delattr(expr, attr)
    assert expr.label == before


def test_immutability_message_names_the_node():
    with pytest.raises(AttributeError, match=r"Map 'my_map' is immutable"):
        rasp.Map(abs, tokens).named("my_map").f = len


def test_annotations_mapping_is_read_only():
    m = rasp.Map(abs, tokens)
    with pytest.raises(TypeError):
        m.annotations["name"] = "x"
    with pytest.raises(TypeError):
        m._annotations["encoding"] = rasp.Encoding.NUMERICAL
    assert rasp.is_categorical(m)


def test_operator_sugar_does_not_modify_operands():
    m = rasp.Map(abs, tokens)
    label = m.label
    _ = m + 1, m == 2, ~m, m & tokens
    assert m.label == label and m.inner is tokens and m.f is abs


# ------------------------------------------------------------------------ operator sugar

XS = [3, 0, -2, 5]


@pytest.mark.parametrize(
    "build, expected",
    [
        (lambda t: t + 1, [4, 1, -1, 6]),
        (lambda t: 1 + t, [4, 1, -1, 6]),
        (lambda t: t - 1, [2, -1, -3, 4]),
        (lambda t: 1 - t, [-2, 1, 3, -4]),
        (lambda t: t * 2, [6, 0, -4, 10]),
        (lambda t: 2 * t, [6, 0, -4, 10]),
        (lambda t: t / 2, [1.5, 0.0, -1.0, 2.5]),
        (lambda t: 30 / (t + 10), [30 / 13, 3.0, 30 / 8, 2.0]),
        (lambda t: t < 3, [False, True, True, False]),
        (lambda t: t <= 3, [True, True, True, False]),
        (lambda t: t > 0, [True, False, False, True]),
        (lambda t: t >= 0, [True, True, False, True]),
        (lambda t: t == 0, [False, True, False, False]),
        (lambda t: t != 0, [True, False, True, True]),
        (lambda t: 3 < t, [False, False, False, True]),
        (lambda t: 0 == t, [False, True, False, False]),
        (lambda t: ~(t == 0), [True, False, True, True]),
        (lambda t: (t > 0) & True, [True, False, False, True]),
        (lambda t: (t > 0) | False, [True, False, False, True]),
        (lambda t: True & (t > 0), [True, False, False, True]),
        (lambda t: False | (t > 0), [True, False, False, True]),
        (lambda t: t & 7, [7, 0, 7, 7]),
        (lambda t: 7 & t, [3, 0, -2, 5]),
        (lambda t: t | 7, [3, 7, -2, 5]),
        (lambda t: 7 | t, [7, 7, 7, 7]),
    ],
)
def test_sugar_with_constants_builds_a_map(build, expected):
    expr = build(tokens)
    assert isinstance(expr, rasp.Map)
    assert expr.inner is tokens
    assert expr(XS) == expected


def test_reflected_ops_keep_operand_order():
    assert (10 - tokens)([1, 2]) == [9, 8]
    assert (tokens - 10)([1, 2]) == [-9, -8]
    assert (12 / tokens)([3, 4]) == [4.0, 3.0]
    assert ("a" + tokens)(["b", "c"]) == ["ab", "ac"]
    assert (tokens + "a")(["b", "c"]) == ["ba", "ca"]


@pytest.mark.parametrize(
    "build, expected",
    [
        (lambda a, b: a + b, [3, 1, 0, 8]),
        (lambda a, b: a - b, [3, -1, -4, 2]),
        (lambda a, b: a * b, [0, 0, -4, 15]),
        (lambda a, b: a < b, [False, True, True, False]),
        (lambda a, b: a <= b, [False, True, True, False]),
        (lambda a, b: a > b, [True, False, False, True]),
        (lambda a, b: a >= b, [True, False, False, True]),
        (lambda a, b: a == b, [False, False, False, False]),
        (lambda a, b: a != b, [True, True, True, True]),
        (lambda a, b: a & b, [0, 0, 2, 3]),
        (lambda a, b: a | b, [3, 1, -2, 5]),
    ],
)
def test_sugar_between_sops_builds_a_sequence_map(build, expected):
    expr = build(tokens, indices)
    assert isinstance(expr, rasp.SequenceMap)
    assert expr.fst is tokens and expr.snd is indices
    assert expr(XS) == expected


def test_sop_division_between_sops():
    assert (tokens / (indices + 1))([2, 4, 9]) == [2.0, 2.0, 3.0]


def test_boolean_sugar_between_sops():
    a = tokens == "a"
    b = indices < 2
    xs = ["a", "b", "a", "a"]
    assert (a & b)(xs) == [True, False, False, False]
    assert (a | b)(xs) == [True, True, True, True]
    assert (~a)(xs) == [False, True, False, False]
    assert isinstance(~a, rasp.Map) and (~a).inner is tokens


def test_sop_sugar_rejects_selectors():
    sel = select_all().named("sel")
    with pytest.raises(TypeError, match=r"cannot combine SOp 'tokens' with Select 'sel'"):
        tokens + sel
    with pytest.raises(TypeError, match=r"cannot combine SOp 'tokens' with Select 'sel'"):
        tokens & sel
    with pytest.raises(TypeError, match=r"cannot combine SOp 'tokens' with Select 'sel'"):
        _ = tokens == sel


def test_selector_sugar():
    a = rasp.Select(tokens, tokens, rasp.Comparison.EQ)
    b = rasp.Select(indices, indices, rasp.Comparison.LEQ)
    both, either, neither = a & b, a | b, ~a
    assert isinstance(both, rasp.SelectorAnd) and both.children == (a, b)
    assert isinstance(either, rasp.SelectorOr) and either.children == (a, b)
    assert isinstance(neither, rasp.SelectorNot) and neither.inner is a
    xs = [1, 2, 1]
    assert both(xs) == [[True, False, False], [False, True, False], [True, False, True]]
    assert either(xs) == [[True, False, True], [True, True, False], [True, True, True]]
    assert neither(xs) == [[False, True, False], [True, False, True], [False, True, False]]


def test_bool_of_an_sop_raises_and_explains_the_sugar():
    with pytest.raises(TypeError) as info:
        bool(tokens == 1)
    message = str(info.value)
    assert "has no truth value" in message
    assert "`sop == 1` is a Map" in message
    assert "Use `is` for identity" in message
    assert (tokens == 1).label in message


def test_if_on_an_sop_raises():
    with pytest.raises(TypeError, match=r"SOp 'tokens' has no truth value"):
        if tokens:
            pass
    with pytest.raises(TypeError, match=r"no truth value"):
        _ = tokens and indices


# ---------------------------------------------------------------------------- Comparison


COMPARISON_TABLE = [
    (rasp.Comparison.EQ, [(1, 1, True), (1, 2, False), ("a", "a", True)]),
    (rasp.Comparison.NEQ, [(1, 1, False), (1, 2, True)]),
    (rasp.Comparison.LT, [(1, 2, True), (2, 1, False), (2, 2, False)]),
    (rasp.Comparison.LEQ, [(1, 2, True), (2, 1, False), (2, 2, True)]),
    (rasp.Comparison.GT, [(1, 2, False), (2, 1, True), (2, 2, False)]),
    (rasp.Comparison.GEQ, [(1, 2, False), (2, 1, True), (2, 2, True)]),
    (rasp.Comparison.TRUE, [(1, 2, True), ("a", 0, True)]),
    (rasp.Comparison.FALSE, [(1, 2, False), (1, 1, False)]),
]


@pytest.mark.parametrize("comparison, cases", COMPARISON_TABLE, ids=[c.name for c, _ in COMPARISON_TABLE])
def test_comparison_is_called_as_key_query(comparison, cases):
    for key, query, expected in cases:
        result = comparison(key, query)
        assert result is expected, (comparison, key, query)


def test_comparison_lt_selects_keys_before_the_query():
    sel = rasp.Select(indices, indices, rasp.Comparison.LT)
    assert sel([0, 0, 0]) == [[False, False, False], [True, False, False], [True, True, False]]


@pytest.mark.parametrize("comparison", list(rasp.Comparison))
def test_comparison_rejects_none(comparison):
    with pytest.raises(ValueError, match=rf"Comparison\.{comparison.name} got None \(key=None, query=1\)"):
        comparison(None, 1)
    with pytest.raises(ValueError, match=r"key=1, query=None"):
        comparison(1, None)


def test_comparison_repr():
    assert repr(rasp.Comparison.LEQ) == "Comparison.LEQ"


def test_custom_callable_predicate():
    sel = rasp.Select(indices, indices, lambda key, query: key == query + 1)
    assert sel([0, 0, 0]) == [[False, True, False], [False, False, True], [False, False, False]]

    class Divides:
        def __call__(self, key, query):
            return query % key == 0

    div = rasp.Select(tokens, tokens, Divides())
    assert div([2, 4, 3]) == [[True, False, False], [True, True, False], [False, False, True]]


# ----------------------------------------------------------------------- Map simplification


def test_map_of_unnamed_map_is_composed():
    inner = rasp.Map(lambda x: x + 1, tokens)
    outer = rasp.Map(lambda x: x * 10, inner)
    assert outer.inner is tokens
    assert outer([1, 2]) == [20, 30]
    assert inner([1, 2]) == [2, 3]


def test_sugar_chains_compose_into_one_map():
    expr = ((tokens + 1) * 2) - 3
    assert isinstance(expr, rasp.Map) and expr.inner is tokens
    assert expr([0, 5]) == [-1, 9]


def test_map_of_named_map_is_not_composed():
    inner = rasp.Map(lambda x: x + 1, tokens).named("plus_one")
    outer = rasp.Map(lambda x: x * 10, inner)
    assert outer.inner is inner
    assert outer([1, 2]) == [20, 30]


def test_map_simplify_false_keeps_the_inner_map():
    inner = rasp.Map(lambda x: x + 1, tokens)
    outer = rasp.Map(lambda x: x * 10, inner, simplify=False)
    assert outer.inner is inner
    assert outer([1]) == [20]


def test_composed_map_passes_none_through_without_calling_the_outer_function():
    calls = []

    def outer_f(x):
        calls.append(x)
        return x * 2

    inner = rasp.Map(lambda x: None if x == 0 else x, tokens)
    outer = rasp.Map(outer_f, inner)
    assert outer.inner is tokens
    assert outer([0, 3]) == [None, 6]
    assert calls == [3]


def test_map_over_sequence_map_is_not_composed():
    sm = tokens + indices
    m = rasp.Map(abs, sm)
    assert m.inner is sm


# ------------------------------------------------------------------------------ identity


def test_sops_hash_by_identity():
    a = rasp.Map(abs, tokens)
    b = rasp.Map(abs, tokens)
    assert a.label == b.label
    assert hash(a) == object.__hash__(a)
    assert hash(a) != hash(b)
    assert len({a, b, a}) == 2


def test_sops_and_selectors_as_dict_keys():
    a, b = rasp.Map(abs, tokens), rasp.Map(abs, tokens)
    s1, s2 = select_all(), select_all()
    d = {a: 1, b: 2, s1: 3, s2: 4, tokens: 5}
    assert d[a] == 1 and d[b] == 2 and d[s1] == 3 and d[s2] == 4 and d[tokens] == 5
    assert a in d and tokens in {tokens}
    assert rasp.Map(abs, tokens) not in d


def test_equality_sugar_does_not_affect_identity():
    assert tokens is tokens
    assert isinstance(tokens == tokens, rasp.SequenceMap)
    assert select_all() != select_all()


@pytest.mark.parametrize(
    "expr", [tokens, rasp.Map(abs, tokens), select_all(), rasp.ConstantSOp([1]), rasp.Full(1)]
)
def test_copy_and_deepcopy_return_self(expr):
    assert copy.copy(expr) is expr
    assert copy.deepcopy(expr) is expr
    assert copy.deepcopy({"x": [expr]})["x"][0] is expr


def test_pickling_raises_naming_the_node():
    with pytest.raises(TypeError, match=r"RASP expressions are not picklable \('tokens'\)"):
        pickle.dumps(tokens)


def test_repr_shows_type_and_label():
    assert repr(rasp.Map(abs, tokens).named("m")) == "Map('m')"
    assert repr(select_all().named("s")) == "Select('s')"
