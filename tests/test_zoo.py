"""The programs zoo: registry entries, docstrings, and what every program computes.

Each program is checked against a plain-Python reference on random inputs (Hypothesis),
on its registry examples, and through its own doctests.
"""

from __future__ import annotations

import doctest
import inspect
import re
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from hypothesis import find, given, settings
from hypothesis import strategies as st
from rasp_lab.programs import compositions, rasp_paper, registry, tracr_library

import rasp_lab
from rasp_lab import rasp
from rasp_lab.evaluator import topological

FACTORY_MODULES = (tracr_library, rasp_paper, compositions)
DOCTEST_MODULES = (*FACTORY_MODULES, registry)
ZOO_NAMES = registry.names()


def evaluate(program: rasp.SOp, xs: Sequence[Any], causal: bool = False) -> list[Any]:
    return rasp.evaluate(program, list(xs), causal=causal)


def assert_matches(got: list[Any], expected: list[Any], context: Any = "") -> None:
    """Exact equality position by position; floats approximately; bools stay bools."""
    assert len(got) == len(expected), (context, got, expected)
    for position, (g, e) in enumerate(zip(got, expected, strict=True)):
        where = (context, position, got, expected)
        if e is None:
            assert g is None, where
        elif isinstance(e, float):
            assert isinstance(g, (int, float)) and not isinstance(g, bool), where
            assert g == pytest.approx(e), where
        else:
            assert g is not None and g == e, where
            assert isinstance(g, bool) == isinstance(e, bool), ("bool/int mismatch", *where)


# --------------------------------------------------------------- plain-Python references


def ref_length(xs):
    return [len(xs)] * len(xs)


def ref_reverse(xs):
    return list(reversed(xs))


def ref_hist(xs):
    return [xs.count(x) for x in xs]


def ref_sorted(xs):
    return sorted(xs)


def ref_sort_by_freq(xs):
    order = sorted(range(len(xs)), key=lambda i: (-xs.count(xs[i]), i))
    return [xs[i] for i in order]


def ref_stable_argsort(keys):
    return sorted(range(len(keys)), key=lambda i: (keys[i], i))


def ref_frac_prevs(xs, pred):
    return [sum(1 for x in xs[: i + 1] if pred(x)) / (i + 1) for i in range(len(xs))]


def ref_pair_balance(xs, open_token, close_token):
    return [
        (xs[: i + 1].count(open_token) - xs[: i + 1].count(close_token)) / (i + 1) for i in range(len(xs))
    ]


def shuffle_balanced(xs, pairs) -> bool:
    for open_token, close_token in pairs:
        depth = 0
        for x in xs:
            depth += (x == open_token) - (x == close_token)
            if depth < 0:
                return False
        if depth != 0:
            return False
    return True


def dyck_balanced(xs, pairs) -> bool:
    opener_of = {close: open_ for open_, close in pairs}
    openers = set(opener_of.values())
    stack = []
    for x in xs:
        if x in openers:
            stack.append(x)
        elif x in opener_of:
            if not stack or stack.pop() != opener_of[x]:
                return False
    return not stack


def ref_flag(ok: bool, n: int) -> list[int]:
    return [1 if ok else 0] * n


def ref_shift_by(xs, offset):
    return [xs[i - offset] if i >= offset else None for i in range(len(xs))]


def ref_detect_pattern(xs, pattern):
    m = len(pattern)
    return [None if i < m - 1 else list(xs[i - m + 1 : i + 1]) == list(pattern) for i in range(len(xs))]


def ref_count_less_freq(xs, n):
    return [sum(1 for y in xs if xs.count(y) <= n)] * len(xs)


def ref_count(xs, token):
    return [xs.count(token)] * len(xs)


def ref_double_hist(xs):
    return [len({y for y in xs if xs.count(y) == xs.count(x)}) for x in xs]


def ref_has_earlier_duplicate(xs):
    return [x in xs[:i] for i, x in enumerate(xs)]


def ref_is_last_instance(xs):
    return [x not in xs[i + 1 :] for i, x in enumerate(xs)]


def ref_count_earlier_different(xs):
    return [sum(1 for y in xs[:i] if y != x) for i, x in enumerate(xs)]


def ref_nearest_prev_equal(xs):
    out = []
    for i, x in enumerate(xs):
        earlier = [j for j in range(i) if xs[j] == x]
        out.append(earlier[-1] if earlier else None)
    return out


def ref_count_distinct(xs):
    return [len(set(xs))] * len(xs)


def ref_dedup(xs):
    firsts = [x for i, x in enumerate(xs) if x not in xs[:i]]
    return firsts + [None] * (len(xs) - len(firsts))


ROUND_SQUARE = ("()", "[]")
ROUND_CURLY = ("()", "{}")
THREE = ("()", "{}", "[]")

REFERENCES: dict[str, Callable[[list[Any]], list[Any]]] = {
    "length": ref_length,
    "reverse": ref_reverse,
    "pair_balance": lambda xs: ref_pair_balance(xs, "(", ")"),
    "shuffle_dyck": lambda xs: ref_flag(shuffle_balanced(xs, ROUND_SQUARE), len(xs)),
    "shuffle_dyck2": lambda xs: ref_flag(shuffle_balanced(xs, ROUND_CURLY), len(xs)),
    "shuffle_dyck3": lambda xs: ref_flag(shuffle_balanced(xs, THREE), len(xs)),
    "hist": ref_hist,
    "sort_unique": ref_sorted,
    "sort": ref_sorted,
    "sort_freq": ref_sort_by_freq,
    "frac_prevs": lambda xs: ref_frac_prevs(xs, lambda x: x == "x"),
    "shift_by": lambda xs: ref_shift_by(xs, 2),
    "detect_pattern": lambda xs: ref_detect_pattern(xs, "abc"),
    "count_less_freq": lambda xs: ref_count_less_freq(xs, 2),
    "count": lambda xs: ref_count(xs, "a"),
    "nary_sequencemap": lambda xs: [2 * x - i for i, x in enumerate(xs)],
    "paper_length": ref_length,
    "paper_reverse": ref_reverse,
    "paper_hist": ref_hist,
    "paper_hist_nobos": ref_hist,
    "paper_double_hist": ref_double_hist,
    "paper_sort": ref_sorted,
    "paper_sort_by_most_freq": ref_sort_by_freq,
    "paper_dyck1": lambda xs: ref_flag(dyck_balanced(xs, ("()",)), len(xs)),
    "paper_dyck2": lambda xs: ref_flag(dyck_balanced(xs, ("()", "[]")), len(xs)),
    "paper_dyck3": lambda xs: ref_flag(dyck_balanced(xs, ("()", "[]", "{}")), len(xs)),
    "has_earlier_duplicate": ref_has_earlier_duplicate,
    "is_last_instance": ref_is_last_instance,
    "sort_composed": ref_sorted,
    "count_earlier_different": ref_count_earlier_different,
    "nearest_prev_equal": ref_nearest_prev_equal,
    "count_distinct": ref_count_distinct,
    "dedup": ref_dedup,
}

# Programs whose construction depends on max_seq_len: tested only up to it. Others are also
# tested a little beyond their registry max_seq_len, since nothing in them depends on it.
LENGTH_BOUND = {"sort", "sort_freq"}
BEYOND = 2


# ------------------------------------------------------------------------ the registry

REQUIRED_NAMES = {
    "length", "reverse", "pair_balance", "shuffle_dyck", "shuffle_dyck2", "shuffle_dyck3", "hist",
    "sort_unique", "sort", "sort_freq", "frac_prevs", "shift_by", "detect_pattern", "count_less_freq",
    "count", "nary_sequencemap", "paper_hist", "paper_hist_nobos", "paper_double_hist", "paper_sort",
    "paper_sort_by_most_freq", "paper_dyck1", "paper_dyck2", "paper_dyck3", "paper_reverse",
}  # fmt: skip


def test_registry_size_and_required_names():
    assert len(registry.ZOO) >= 25
    assert REQUIRED_NAMES <= set(registry.ZOO)
    assert registry.names() == tuple(registry.ZOO)
    by_module = [e for e in registry.ZOO.values() if e.module == compositions.__name__]
    assert len(by_module) >= 5


def test_every_registry_entry_has_a_reference():
    assert set(REFERENCES) == set(registry.ZOO)


def test_get_unknown_lists_known_names():
    assert registry.get("reverse") is registry.ZOO["reverse"]
    with pytest.raises(KeyError) as info:
        registry.get("no_such_program")
    message = str(info.value)
    assert "no_such_program" in message
    for name in ("reverse", "sort", "dedup"):
        assert name in message


def test_zoo_is_read_only():
    with pytest.raises(TypeError):
        registry.ZOO["x"] = registry.ZOO["sort"]  # type: ignore[index]
    with pytest.raises(AttributeError):
        registry.ZOO["sort"].name = "other"  # type: ignore[misc]


@pytest.mark.parametrize("name", ZOO_NAMES)
def test_entry_metadata(name):
    entry = registry.get(name)
    assert entry.name == name
    assert 1 <= len(entry.vocab) <= 6
    assert 5 <= entry.max_seq_len <= 8
    assert entry.source and entry.description
    assert len(entry.examples) >= 2
    assert any(len(inp) == 1 for inp, _ in entry.examples), "needs a length-1 edge case"
    for inp, out in entry.examples:
        assert entry.accepts(inp), inp
        assert len(out) == len(inp)
    assert entry.factory.__name__.startswith("make_") or entry.factory.__name__ in ("shift_by", "detect_pattern")
    assert entry.module in {m.__name__ for m in FACTORY_MODULES}


@pytest.mark.parametrize("name", ZOO_NAMES)
def test_entry_builds_and_examples_pass(name):
    entry = registry.get(name)
    program = entry.build()
    assert isinstance(program, rasp.SOp)
    for inp, expected in entry.examples:
        assert_matches(evaluate(program, inp, causal=entry.causal), expected, (name, inp))
        # The registry's references agree with the hand-written examples too.
        assert_matches(REFERENCES[name](list(inp)), expected, (name, "reference", inp))


_AUTO_LABEL = re.compile(r"^[a-z_]+_[0-9a-f]{8}$")


@pytest.mark.parametrize("name", ZOO_NAMES)
def test_final_sop_is_named(name):
    program = registry.get(name).build()
    assert not _AUTO_LABEL.match(program.label), program.label
    assert program.label not in {"tokens", "indices", "length"} or name == "length"


@pytest.mark.parametrize("name", ZOO_NAMES)
def test_no_label_names_two_different_nodes(name):
    graph = rasp_lab.build_graph(registry.get(name).build())  # raises LabelCollisionError
    assert graph.order[-1] == registry.get(name).build().label


@pytest.mark.parametrize("name", ZOO_NAMES)
def test_uses_compositions_flag_is_truthful(name):
    entry = registry.get(name)
    composed = any(
        isinstance(node, (rasp.SelectorAnd, rasp.SelectorOr, rasp.SelectorNot))
        for node in topological(entry.build())
    )
    assert composed == entry.uses_compositions


@pytest.mark.parametrize("name", ZOO_NAMES)
def test_validates_without_errors(name):
    entry = registry.get(name)
    errors = [p for p in rasp_lab.validate(entry.build(), entry.vocab, entry.max_seq_len) if p.severity == "error"]
    assert errors == []


def test_numerical_outputs_are_marked():
    for name in ("pair_balance", "frac_prevs"):
        assert rasp.is_numerical(registry.get(name).build()), name
    for name in ("hist", "sort", "reverse", "paper_dyck1", "shuffle_dyck2"):
        assert rasp.is_categorical(registry.get(name).build()), name
    nodes = {n.label: n for n in topological(registry.get("shuffle_dyck").build())}
    assert rasp.is_numerical(nodes["has_neg"])


def test_accepts_respects_vocab_length_and_precondition():
    entry = registry.get("sort_unique")
    assert entry.accepts([3, 1, 2])
    assert not entry.accepts([3, 3])
    assert not entry.accepts([9])
    assert not entry.accepts([])
    assert not entry.accepts([1, 2, 3, 4, 5, 1])


# --------------------------------------------------------------------------- docstrings


@pytest.mark.parametrize("module", DOCTEST_MODULES, ids=lambda m: m.__name__.rsplit(".", 1)[-1])
def test_module_doctests(module):
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0


def _factories():
    """The make_* factories each zoo module defines (Tracr's shift_by and detect_pattern included)."""
    for module in FACTORY_MODULES:
        for name, obj in inspect.getmembers(module, inspect.isfunction):
            if obj.__module__ == module.__name__ and (name.startswith("make_") or name in ("shift_by", "detect_pattern")):
                if name == obj.__name__:  # not an alias such as make_shift_by
                    yield obj


def test_factory_count_and_exports():
    factories = list(_factories())
    assert len(factories) >= 28
    for module in FACTORY_MODULES:
        defined = {f.__name__ for f in factories if f.__module__ == module.__name__}
        aliases = {"make_shift_by", "make_detect_pattern", "length"} if module is tracr_library else set()
        assert defined | aliases == set(module.__all__), module.__name__


@pytest.mark.parametrize("factory", list(_factories()), ids=lambda f: f.__name__)
def test_factory_docstring(factory):
    doc = inspect.getdoc(factory)
    assert doc, factory.__name__
    assert "Source:" in doc
    assert any(word in doc for word in ("Tracr", "RASP paper", "rasp_lab"))
    examples = doctest.DocTestParser().get_examples(doc)
    assert examples, f"{factory.__name__} has no doctest example"
    assert any(factory.__name__ in ex.source for ex in examples)


def test_every_factory_is_in_the_registry():
    used = {entry.factory for entry in registry.ZOO.values()}
    general = {rasp_paper.make_dyck}  # covered through make_dyck2/3 and the tests below
    assert set(_factories()) - used == general


# ------------------------------------------------------------- properties (Hypothesis)


def _inputs(vocab, max_len, min_len=1):
    return st.lists(st.sampled_from(sorted(vocab, key=repr)), min_size=min_len, max_size=max_len)


def _draw_input(data, name):
    entry = registry.get(name)
    if name == "sort_unique":
        # Any distinct keys work, not only the registry vocabulary.
        return data.draw(st.lists(st.integers(-20, 20), min_size=1, max_size=entry.max_seq_len + BEYOND, unique=True))
    max_len = entry.max_seq_len if name in LENGTH_BOUND else entry.max_seq_len + BEYOND
    if name in DYCK_PAIRS:
        return data.draw(st.one_of(_inputs(entry.vocab, max_len), _dyck_words(DYCK_PAIRS[name], max_len)))
    return data.draw(_inputs(entry.vocab, max_len))


@st.composite
def _dyck_words(draw, pairs, max_len, filler=()):
    """Well-nested words, sometimes with one token changed or two neighbours swapped."""
    word: list[str] = []
    stack: list[str] = []
    target = draw(st.integers(1, max_len))
    while len(word) + len(stack) < target:
        if stack and draw(st.booleans()):
            word.append(stack.pop())
        elif len(word) + len(stack) + 2 <= target:
            open_token, close_token = draw(st.sampled_from(pairs))
            word.append(open_token)
            stack.append(close_token)
        elif filler:
            word.append(draw(st.sampled_from(filler)))
        else:
            break
    word.extend(reversed(stack))
    if not word:
        word = [pairs[0][0]]
    mutation = draw(st.sampled_from(["none", "replace", "swap"]))
    if mutation == "replace":
        tokens = sorted({t for pair in pairs for t in pair} | set(filler))
        word[draw(st.integers(0, len(word) - 1))] = draw(st.sampled_from(tokens))
    elif mutation == "swap" and len(word) >= 2:
        # Swapping neighbours turns "([])" into "([)]": balanced per type, badly nested.
        i = draw(st.integers(0, len(word) - 2))
        word[i], word[i + 1] = word[i + 1], word[i]
    return word


DYCK_PAIRS = {
    "shuffle_dyck": ROUND_SQUARE,
    "shuffle_dyck2": ROUND_CURLY,
    "shuffle_dyck3": THREE,
    "paper_dyck1": ("()",),
    "paper_dyck2": ("()", "[]"),
    "paper_dyck3": ("()", "[]", "{}"),
}


@pytest.mark.parametrize("name", ZOO_NAMES)
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_program_matches_reference(name, data):
    entry = registry.get(name)
    program = _PROGRAMS[name]
    xs = _draw_input(data, name)
    assert_matches(evaluate(program, xs, causal=entry.causal), REFERENCES[name](xs), (name, xs))


_PROGRAMS = {name: registry.get(name).build() for name in ZOO_NAMES}


@pytest.mark.parametrize("name", [n for n in ZOO_NAMES if registry.get(n).causal])
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_causal_entries_agree_with_full_attention(name, data):
    xs = _draw_input(data, name)
    program = _PROGRAMS[name]
    assert_matches(evaluate(program, xs, causal=True), evaluate(program, xs, causal=False), (name, xs))


def test_causal_matters_for_a_non_causal_program():
    # The flag is meaningful: a program that looks ahead differs under a causal mask.
    program = registry.get("reverse").build()
    assert evaluate(program, list("abc")) == list("cba")
    assert evaluate(program, list("abc"), causal=True) != list("cba")


# ----------------------------------------------- properties of the general factories


@settings(max_examples=80, deadline=None)
@given(xs=_inputs("abc", 8), offset=st.integers(0, 4))
def test_shift_by_any_offset(xs, offset):
    assert_matches(evaluate(tracr_library.shift_by(offset, rasp.tokens), xs), ref_shift_by(xs, offset))


@settings(max_examples=80, deadline=None)
@given(xs=_inputs("ab", 8), pattern=st.lists(st.sampled_from("ab"), min_size=1, max_size=3))
def test_detect_pattern_any_pattern(xs, pattern):
    program = tracr_library.detect_pattern(rasp.tokens, pattern)
    assert_matches(evaluate(program, xs), ref_detect_pattern(xs, pattern))


def test_detect_pattern_rejects_empty_pattern():
    with pytest.raises(ValueError):
        tracr_library.detect_pattern(rasp.tokens, [])


@settings(max_examples=60, deadline=None)
@given(xs=_inputs("abcd", 8), n=st.integers(0, 4))
def test_count_less_freq_any_n(xs, n):
    assert_matches(evaluate(tracr_library.make_count_less_freq(n), xs), ref_count_less_freq(xs, n))


@settings(max_examples=60, deadline=None)
@given(xs=_inputs("abc", 8), token=st.sampled_from("abcd"))
def test_count_any_token(xs, token):
    assert_matches(evaluate(tracr_library.make_count(rasp.tokens, token), xs), ref_count(xs, token))


@settings(max_examples=60, deadline=None)
@given(xs=st.lists(st.integers(0, 9), min_size=1, max_size=8))
def test_sort_is_a_stable_sort_for_its_max_seq_len(xs):
    by_value = tracr_library.make_sort(rasp.tokens, rasp.tokens, max_seq_len=8, min_key=1)
    by_position = tracr_library.make_sort(rasp.indices, rasp.tokens, max_seq_len=8, min_key=1)
    assert_matches(evaluate(by_value, xs), sorted(xs))
    assert_matches(evaluate(by_position, xs), ref_stable_argsort(xs))


@settings(max_examples=60, deadline=None)
@given(xs=st.lists(st.sampled_from([0.0, 0.5, 1.5, 2.0]), min_size=1, max_size=6))
def test_sort_with_fractional_key_gap(xs):
    program = tracr_library.make_sort(rasp.indices, rasp.tokens, max_seq_len=6, min_key=0.5)
    assert_matches(evaluate(program, xs), ref_stable_argsort(xs))


@settings(max_examples=60, deadline=None)
@given(xs=st.lists(st.integers(0, 3), min_size=1, max_size=8))
def test_sort_freq_for_its_max_seq_len(xs):
    assert_matches(evaluate(tracr_library.make_sort_freq(max_seq_len=8), xs), ref_sort_by_freq(xs))


@pytest.mark.parametrize(
    "factory", [rasp_paper.make_paper_sort, compositions.make_sort_composed], ids=lambda f: f.__name__
)
@settings(max_examples=60, deadline=None)
@given(xs=_inputs("abcd", 9))
def test_lexicographic_sorts_are_stable_at_any_length(factory, xs):
    assert_matches(evaluate(factory(rasp.tokens, rasp.tokens), xs), sorted(xs))
    assert_matches(evaluate(factory(rasp.indices, rasp.tokens), xs), ref_stable_argsort(xs))
    # Sorting by a derived key: descending token order, ties by position.
    descending = rasp.Map(lambda t: -ord(t), rasp.tokens)
    expected = [xs[i] for i in sorted(range(len(xs)), key=lambda i: (-ord(xs[i]), i))]
    assert_matches(evaluate(factory(rasp.tokens, descending), xs), expected)


@settings(max_examples=60, deadline=None)
@given(xs=_inputs("xyz", 8), target=st.sampled_from("xyz"))
def test_frac_prevs_any_predicate(xs, target):
    program = tracr_library.make_frac_prevs(rasp.tokens == target)
    assert rasp.is_numerical(program)
    assert_matches(evaluate(program, xs), ref_frac_prevs(xs, lambda x: x == target))


@settings(max_examples=60, deadline=None)
@given(xs=_inputs("ab()", 8))
def test_pair_balance_other_tokens(xs):
    program = tracr_library.make_pair_balance(rasp.tokens, "a", "b")
    assert rasp.is_numerical(program)
    assert_matches(evaluate(program, xs), ref_pair_balance(xs, "a", "b"))


@settings(max_examples=40, deadline=None)
@given(xs=st.lists(st.integers(0, 5), min_size=1, max_size=6), arity=st.integers(1, 4))
def test_nary_sequencemap_any_arity(xs, arity):
    sops = [rasp.tokens, rasp.indices, rasp.tokens, rasp.indices][:arity]
    program = tracr_library.make_nary_sequencemap(lambda *args: tuple(args), *sops)
    expected = [tuple((x, i, x, i)[:arity]) for i, x in enumerate(xs)]
    assert_matches(evaluate(program, xs), expected)


def test_general_factories_reject_bad_arguments():
    with pytest.raises(ValueError):
        tracr_library.make_shuffle_dyck([])
    with pytest.raises(ValueError):
        tracr_library.make_shuffle_dyck(["(", ")"])
    with pytest.raises(ValueError):
        rasp_paper.make_dyck([])
    with pytest.raises(ValueError):
        tracr_library.make_nary_sequencemap(lambda: 0)


GENERAL_PAIRS = ("ab", "cd")


@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_general_dyck_with_filler_tokens(data):
    xs = data.draw(st.one_of(_inputs("abcdx", 9), _dyck_words(GENERAL_PAIRS, 9, filler=("x",))))
    program = rasp_paper.make_dyck(GENERAL_PAIRS)
    assert_matches(evaluate(program, xs), ref_flag(dyck_balanced(xs, GENERAL_PAIRS), len(xs)), xs)


@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_general_shuffle_dyck_with_filler_tokens(data):
    xs = data.draw(st.one_of(_inputs("abcdx", 9), _dyck_words(GENERAL_PAIRS, 9, filler=("x",))))
    program = tracr_library.make_shuffle_dyck(list(GENERAL_PAIRS))
    assert_matches(evaluate(program, xs), ref_flag(shuffle_balanced(xs, GENERAL_PAIRS), len(xs)), xs)


def test_dyck_and_shuffle_dyck_differ_on_crossing_pairs():
    crossing = list("([)]")
    assert evaluate(registry.get("shuffle_dyck").build(), crossing) == [1] * 4
    assert evaluate(registry.get("paper_dyck2").build(), crossing) == [0] * 4


def test_dyck_generator_produces_both_classes():
    # Guard against a vacuous Dyck property: the strategy reaches long balanced words and
    # long unbalanced ones.
    settings_ = settings(max_examples=500, database=None)
    balanced = find(_dyck_words(THREE, 6), lambda w: len(w) >= 4 and dyck_balanced(w, THREE), settings=settings_)
    unbalanced = find(
        _dyck_words(THREE, 6), lambda w: len(w) >= 4 and shuffle_balanced(w, THREE) and not dyck_balanced(w, THREE),
        settings=settings_,
    )
    assert dyck_balanced(balanced, THREE) and not dyck_balanced(unbalanced, THREE)
