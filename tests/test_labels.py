"""Labels: deterministic, structural, stable across processes, distinct for distinct computations."""

import builtins
import functools
import json
import operator
import os
import re
import subprocess
import sys
import types

import numpy as np
import pytest

from rasp_lab import rasp
from rasp_lab.evaluator import topological

tokens, indices, length = rasp.tokens, rasp.indices, rasp.length

SCALE = 3
TABLE = {"a": 1, "b": 2}


def build_program():
    """A program touching every node kind, lambdas, closures, globals, and named nodes."""
    offset = 2
    vocab = frozenset({"a", "b", "c"})
    shifted = rasp.Map(lambda x: x + offset, indices)
    scaled = rasp.numerical(rasp.Map(lambda x: x * SCALE, shifted, simplify=False)).named("scaled")
    looked_up = rasp.Map(lambda t: TABLE.get(t, 0) if t in vocab else -1, tokens)
    by_table = rasp.Map({"a": 5, "b": 6}.get, tokens)
    combined = rasp.SequenceMap(lambda x, y: x - y, looked_up + by_table, indices)
    linear = rasp.numerical(rasp.LinearSequenceMap(scaled, combined, 0.5, -2))
    same = rasp.Select(tokens, tokens, rasp.Comparison.EQ)
    before = rasp.Select(indices, indices, rasp.Comparison.LEQ)
    custom = rasp.Select(indices, shifted, lambda k, q: k + 1 == q)
    sel = (same & before) | ~custom
    const_sel = rasp.ConstantSelector([[1, 0, 0], [1, 1, 0], [1, 1, 1]])
    width = rasp.SelectorWidth(sel)
    mean = rasp.numerical(rasp.Aggregate(before, linear, default=0))
    cat = rasp.Aggregate(const_sel & same, tokens, default="?").named("first")
    full = rasp.Full(1)
    const = rasp.ConstantSOp([1, 2, 3])
    dict_fn = rasp.Map(functools.partial(operator.mul, 4), const)
    arr = np.arange(2000)
    arr_fn = rasp.Map(lambda x: int(arr[x]), width)
    out = rasp.SequenceMap(lambda a, b: (a, b), mean + full + dict_fn, (cat == "a") | (arr_fn > 1) | length)
    return out.named("out")


def labels_of(expr):
    return [node.label for node in topological(expr)]


def test_same_program_built_twice_gets_the_same_labels():
    first, second = build_program(), build_program()
    assert first is not second
    assert labels_of(first) == labels_of(second)
    assert [n.unique_id for n in topological(first)] == [n.unique_id for n in topological(second)]


def test_the_program_builder_covers_every_node_kind():
    kinds = {type(node) for node in topological(build_program())}
    expected = {
        rasp.TokensType,
        rasp.IndicesType,
        rasp.LengthType,
        rasp.Map,
        rasp.SequenceMap,
        rasp.LinearSequenceMap,
        rasp.Full,
        rasp.ConstantSOp,
        rasp.Aggregate,
        rasp.SelectorWidth,
        rasp.Select,
        rasp.ConstantSelector,
        rasp.SelectorAnd,
        rasp.SelectorOr,
        rasp.SelectorNot,
    }
    assert kinds == expected


def test_labels_do_not_depend_on_how_many_nodes_were_made_before():
    before = labels_of(build_program())
    for i in range(50):
        rasp.Map(lambda x, i=i: x + i, tokens)
        rasp.Select(tokens, indices, rasp.Comparison.LT)
    assert labels_of(build_program()) == before


def test_labels_in_one_program_are_unique_per_distinct_computation():
    labels = labels_of(build_program())
    assert len(labels) == len(set(labels))


LABEL_SCRIPT = """
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("labels_under_test", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
print(json.dumps(module.labels_of(module.build_program())))
"""


@pytest.mark.parametrize("hash_seed", ["0", "12345"])
def test_labels_are_stable_across_processes(hash_seed):
    env = dict(os.environ, PYTHONHASHSEED=hash_seed)
    result = subprocess.run(
        [sys.executable, "-c", LABEL_SCRIPT, __file__],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == labels_of(build_program())


# ------------------------------------------------------------------------ label formats


@pytest.mark.parametrize(
    "expr, prefix",
    [
        (rasp.Map(abs, tokens), "map"),
        (rasp.SequenceMap(operator.add, tokens, indices), "sequence_map"),
        (rasp.LinearSequenceMap(tokens, indices, 1, 1), "linear_sequence_map"),
        (rasp.Full(0), "full"),
        (rasp.ConstantSOp([1]), "constant_sop"),
        (rasp.Aggregate(rasp.Select(tokens, tokens, rasp.Comparison.EQ), tokens), "aggregate"),
        (rasp.SelectorWidth(rasp.Select(tokens, tokens, rasp.Comparison.EQ)), "selector_width"),
        (rasp.Select(tokens, tokens, rasp.Comparison.EQ), "select"),
        (rasp.ConstantSelector([[True]]), "constant_selector"),
        (rasp.Select(tokens, tokens, rasp.Comparison.EQ) & rasp.ConstantSelector([[True]]), "selector_and"),
        (rasp.Select(tokens, tokens, rasp.Comparison.EQ) | rasp.ConstantSelector([[True]]), "selector_or"),
        (~rasp.ConstantSelector([[True]]), "selector_not"),
    ],
)
def test_unnamed_label_is_kind_and_structural_hash(expr, prefix):
    assert re.fullmatch(rf"{prefix}_[0-9a-f]{{8}}", expr.label)
    assert expr.name == expr.annotations["name"] == prefix  # Tracr's default name: the kind
    assert expr.unique_id.startswith(expr.label[len(prefix) + 1 :])


def test_named_label_is_the_name():
    m = rasp.Map(abs, tokens).named("absolute value")
    assert m.label == "absolute value"
    assert m.name == "absolute value"


def test_a_name_does_not_change_structure_but_changes_parents():
    a = rasp.Map(abs, tokens).named("a")
    b = rasp.Map(abs, tokens).named("b")
    assert a.unique_id == b.unique_id
    assert rasp.Map(str, a).label != rasp.Map(str, b).label
    assert rasp.Map(str, a).label == rasp.Map(str, rasp.Map(abs, tokens).named("a")).label


def test_unnamed_and_named_child_give_different_parent_labels():
    m = rasp.Map(abs, tokens)
    assert (
        rasp.SelectorWidth(rasp.Select(m, m, rasp.Comparison.EQ)).label
        != rasp.SelectorWidth(rasp.Select(m.named("m"), m.named("m"), rasp.Comparison.EQ)).label
    )


# --------------------------------------------------------------- distinct => distinct labels


def _closure_adding(k):
    return lambda x: x + k


def _closure_calling(f):
    return lambda x: f(x)


def _nested_constant(value, depth):
    for _ in range(depth):
        value = [value]
    return value


def _function_with_globals(value):
    """The same code under different module globals, as for two modules defining the same lambda."""
    code = (lambda x: [K + x for _ in range(1)][0]).__code__  # noqa: F821  (K comes from the globals below)
    return types.FunctionType(code, {"K": value, "__builtins__": builtins})


def _chain(depth, constant):
    f = _closure_adding(constant)
    for _ in range(depth):
        f = _closure_calling(f)
    return f


DISTINCT_PAIRS = {
    "different constant in code": (
        lambda: rasp.Map(lambda x: x + 1, tokens),
        lambda: rasp.Map(lambda x: x + 2, tokens),
    ),
    "different operator": (
        lambda: rasp.Map(lambda x: x + 1, tokens),
        lambda: rasp.Map(lambda x: x - 1, tokens),
    ),
    "closure constant": (
        lambda: rasp.Map(_closure_adding(1), tokens),
        lambda: rasp.Map(_closure_adding(2), tokens),
    ),
    "closure int vs float": (
        lambda: rasp.Map(_closure_adding(1), tokens),
        lambda: rasp.Map(_closure_adding(1.0), tokens),
    ),
    "closure int vs bool": (
        lambda: rasp.Map(_closure_adding(1), tokens),
        lambda: rasp.Map(_closure_adding(True), tokens),
    ),
    "default argument": (
        lambda: rasp.Map(lambda x, k=1: x + k, tokens),
        lambda: rasp.Map(lambda x, k=2: x + k, tokens),
    ),
    "partial argument": (
        lambda: rasp.Map(functools.partial(operator.add, 1), tokens),
        lambda: rasp.Map(functools.partial(operator.add, 2), tokens),
    ),
    "bound dict.get": (lambda: rasp.Map({1: 2}.get, tokens), lambda: rasp.Map({1: 3}.get, tokens)),
    "bound method-wrapper": (lambda: rasp.Map((5).__add__, tokens), lambda: rasp.Map((6).__add__, tokens)),
    "large numpy table": (
        lambda: rasp.Map(_closure_calling(np.zeros(3000).__getitem__), indices),
        lambda: rasp.Map(_closure_calling(np.where(np.arange(3000) == 1500, 1.0, 0.0).__getitem__), indices),
    ),
    "deeply nested captured constant": (
        lambda: rasp.Map(_closure_calling(_nested_constant(1, 12).__contains__), tokens),
        lambda: rasp.Map(_closure_calling(_nested_constant(2, 12).__contains__), tokens),
    ),
    "captured constant deeper than the fingerprint recursion": (
        lambda: rasp.Map(_closure_calling(_nested_constant(1, 40).__contains__), tokens),
        lambda: rasp.Map(_closure_calling(_nested_constant(2, 40).__contains__), tokens),
    ),
    "deep closure chain": (lambda: rasp.Map(_chain(10, 1), tokens), lambda: rasp.Map(_chain(10, 2), tokens)),
    "globals read in a comprehension": (
        lambda: rasp.Map(_function_with_globals(1), tokens),
        lambda: rasp.Map(_function_with_globals(2), tokens),
    ),
    "sugar constant": (lambda: tokens + 1, lambda: tokens + 2),
    "sugar reflected": (lambda: tokens - 1, lambda: 1 - tokens),
    "sugar op": (lambda: tokens < 1, lambda: tokens <= 1),
    "sugar and/or": (lambda: tokens & indices, lambda: tokens | indices),
    "map inner": (lambda: rasp.Map(abs, tokens), lambda: rasp.Map(abs, indices)),
    "map vs unsimplified map": (
        lambda: rasp.Map(abs, rasp.Map(abs, tokens)),
        lambda: rasp.Map(abs, rasp.Map(abs, tokens), simplify=False),
    ),
    "sequence map argument order": (
        lambda: rasp.SequenceMap(operator.sub, tokens, indices),
        lambda: rasp.SequenceMap(operator.sub, indices, tokens),
    ),
    "sequence map vs linear": (
        lambda: rasp.SequenceMap(operator.add, tokens, indices),
        lambda: rasp.LinearSequenceMap(tokens, indices, 1, 1),
    ),
    "linear factors": (
        lambda: rasp.LinearSequenceMap(tokens, indices, 1, 2),
        lambda: rasp.LinearSequenceMap(tokens, indices, 2, 1),
    ),
    "full fill": (lambda: rasp.Full(1), lambda: rasp.Full(1.0)),
    "full fill bool": (lambda: rasp.Full(1), lambda: rasp.Full(True)),
    "constant sop": (lambda: rasp.ConstantSOp([1, 2]), lambda: rasp.ConstantSOp([2, 1])),
    "constant sop check_length": (
        lambda: rasp.ConstantSOp([1, 2]),
        lambda: rasp.ConstantSOp([1, 2], check_length=False),
    ),
    "constant selector": (lambda: rasp.ConstantSelector([[1, 0]]), lambda: rasp.ConstantSelector([[0, 1]])),
    "select predicate": (
        lambda: rasp.Select(tokens, indices, rasp.Comparison.LT),
        lambda: rasp.Select(tokens, indices, rasp.Comparison.LEQ),
    ),
    "select keys/queries swapped": (
        lambda: rasp.Select(tokens, indices, rasp.Comparison.EQ),
        lambda: rasp.Select(indices, tokens, rasp.Comparison.EQ),
    ),
    "select custom predicate": (
        lambda: rasp.Select(tokens, indices, lambda k, q: k == q),
        lambda: rasp.Select(tokens, indices, lambda k, q: k != q),
    ),
    "selector and vs or": (
        lambda: rasp.ConstantSelector([[1]]) & rasp.ConstantSelector([[0]]),
        lambda: rasp.ConstantSelector([[1]]) | rasp.ConstantSelector([[0]]),
    ),
    "selector and order": (
        lambda: rasp.ConstantSelector([[1]]) & rasp.ConstantSelector([[0]]),
        lambda: rasp.ConstantSelector([[0]]) & rasp.ConstantSelector([[1]]),
    ),
    "aggregate default 0 vs None": (
        lambda: rasp.Aggregate(rasp.ConstantSelector([[1]]), tokens, default=0),
        lambda: rasp.Aggregate(rasp.ConstantSelector([[1]]), tokens),
    ),
    "aggregate default 0 vs False": (
        lambda: rasp.Aggregate(rasp.ConstantSelector([[1]]), tokens, default=0),
        lambda: rasp.Aggregate(rasp.ConstantSelector([[1]]), tokens, default=False),
    ),
    "aggregate sop": (
        lambda: rasp.Aggregate(rasp.ConstantSelector([[1]]), tokens),
        lambda: rasp.Aggregate(rasp.ConstantSelector([[1]]), indices),
    ),
    "encoding": (lambda: rasp.Map(abs, tokens), lambda: rasp.numerical(rasp.Map(abs, tokens))),
    "extra annotation": (lambda: rasp.Map(abs, tokens), lambda: rasp.Map(abs, tokens).annotate(note=1)),
    "width vs aggregate": (
        lambda: rasp.SelectorWidth(rasp.ConstantSelector([[1]])),
        lambda: rasp.Aggregate(rasp.ConstantSelector([[1]]), indices),
    ),
}


@pytest.mark.parametrize("name", list(DISTINCT_PAIRS))
def test_distinct_computations_get_distinct_labels(name):
    build_a, build_b = DISTINCT_PAIRS[name]
    a, b = build_a(), build_b()
    assert a.label != b.label
    assert a.unique_id != b.unique_id
    assert build_a().label == a.label and build_b().label == b.label


def test_distinct_pairs_really_compute_differently():
    """Guard the table above: pairs that claim different computations do differ somewhere."""
    assert rasp.Map(_function_with_globals(1), tokens)([1]) == [2]
    assert rasp.Map(_function_with_globals(2), tokens)([1]) == [3]
    assert rasp.Map(_chain(10, 1), tokens)([0]) == [1]
    assert rasp.Map(_chain(10, 2), tokens)([0]) == [2]


def test_lambdas_capturing_the_loop_variable_by_default_argument():
    labels = {rasp.Select(indices, indices, lambda k, q, o=o: q == k + o).label for o in range(5)}
    assert len(labels) == 5


def test_equal_computations_written_twice_share_a_label():
    assert rasp.Map(lambda x: x + 1, tokens).label == rasp.Map(lambda x: x + 1, tokens).label
    assert rasp.Map(_closure_adding(3), tokens).label == rasp.Map(_closure_adding(3), tokens).label
    assert (tokens + 1).label == (tokens + 1).label
    assert rasp.Map({1: 2}.get, tokens).label == rasp.Map({1: 2}.get, tokens).label
    assert rasp.Map(_chain(10, 1), tokens).label == rasp.Map(_chain(10, 1), tokens).label


def test_unordered_captured_values_do_not_depend_on_insertion_order():
    assert (
        rasp.Map(_closure_calling(frozenset({"x", "y", "z"}).__contains__), tokens).label
        == rasp.Map(_closure_calling(frozenset({"z", "y", "x"}).__contains__), tokens).label
    )
    assert rasp.Map({1: 2, 3: 4}.get, tokens).label == rasp.Map({3: 4, 1: 2}.get, tokens).label


# ---------------------------------------------------------------- numerical / categorical


def test_numerical_of_unnamed_node_gets_a_new_structural_label():
    m = rasp.Map(abs, tokens)
    num = rasp.numerical(m)
    assert num.label != m.label
    assert re.fullmatch(r"map_[0-9a-f]{8}", num.label)
    assert rasp.numerical(rasp.Map(abs, tokens)).label == num.label


def test_numerical_of_named_node_gets_a_suffix():
    m = rasp.Map(abs, tokens).named("m")
    assert rasp.numerical(m).label == "m_numerical"
    n = rasp.numerical(rasp.Map(abs, tokens)).named("n")
    assert rasp.categorical(n).label == "n_categorical"


@pytest.mark.parametrize("primitive", [tokens, indices, length])
def test_numerical_primitive_is_not_labelled_like_the_primitive(primitive):
    num = rasp.numerical(primitive)
    assert num is not primitive
    assert type(num) is type(primitive)
    assert num.label == f"{primitive.label}_numerical"
    assert rasp.categorical(num) is primitive
    assert num([5, 6]) == primitive([5, 6])


def test_numerical_never_yields_two_nodes_with_one_label():
    named = rasp.Map(abs, tokens).named("x")
    for sop in [tokens, indices, length, rasp.Map(abs, tokens), named, rasp.Full(1)]:
        num = rasp.numerical(sop)
        assert rasp.numerical(sop) is num
        assert rasp.annotate(sop, encoding=rasp.Encoding.NUMERICAL) is num
        assert num.label != sop.label
        assert rasp.categorical(num) is sop
        assert rasp.numerical(num) is num


def test_numerical_then_named_takes_the_name():
    assert rasp.numerical(rasp.Map(abs, tokens)).named("y").label == "y"
    assert rasp.numerical(rasp.Map(abs, tokens).named("y")).named("y").label == "y"


def test_encoding_is_part_of_the_parents_label():
    m = rasp.Map(abs, tokens).named("m")
    sel = rasp.ConstantSelector([[1]])
    assert rasp.Aggregate(sel, m).label != rasp.Aggregate(sel, rasp.numerical(m)).label
