import itertools
from fractions import Fraction

import pytest
from hypothesis import HealthCheck, given, settings
from random_programs import VOCAB, inputs, programs

import rasp_lab
from rasp_lab import rasp
from rasp_lab.evaluator import EvaluationError
from rasp_lab.value_sets import mean_values, value_sets


def all_inputs(vocab, max_len):
    for n in range(1, max_len + 1):
        yield from (list(xs) for xs in itertools.product(sorted(vocab), repeat=n))


def observed(program, vocab, max_len):
    """label -> set of values seen over every input (skipping inputs that raise)."""
    seen = {}
    for xs in all_inputs(vocab, max_len):
        try:
            values = rasp.trace(program, xs)
        except EvaluationError:
            continue
        for node, out in values.items():
            if isinstance(node, rasp.SOp):
                seen.setdefault(node.label, set()).update(out)
    return seen


def test_primitives():
    sets = value_sets(rasp.SequenceMap(lambda a, b: (a, b), rasp.tokens, rasp.length), {"a", "b"}, 3)
    assert sets[rasp.tokens] == {"a", "b"}
    assert sets["length"] == {1, 2, 3}
    assert sets.is_exact("tokens")


def test_indices_and_length_are_joint_not_product():
    # index < length always, so the pair (index, length) never has index >= length.
    diff = rasp.SequenceMap(lambda i, n: n - i, rasp.indices, rasp.length)
    sets = value_sets(diff, {0}, 4)
    assert sets[diff] == {1, 2, 3, 4}
    assert sets.is_exact(diff)


def test_sequence_map_of_same_local_sop_is_exact():
    # Product of independent sets would give {0..6}; jointly tokens - tokens is always 0.
    prog = rasp.SequenceMap(lambda a, b: a - b, rasp.tokens, rasp.Map(lambda t: t, rasp.tokens, simplify=False))
    sets = value_sets(prog, {0, 3, 6}, 3)
    assert sets[prog] == {0}


def test_selector_width_and_aggregate_sets():
    sel = rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.EQ)
    width = rasp.SelectorWidth(sel)
    agg = rasp.Aggregate(sel, rasp.tokens)
    sets = value_sets(rasp.SequenceMap(lambda a, b: (a, b), width, agg), {"x", "y"}, 4)
    assert sets[width] == {0, 1, 2, 3, 4}
    assert sets[agg] == {"x", "y", None}
    assert not sets.is_exact(width)


def test_numerical_mean_set_matches_evaluator_floats():
    flag = rasp.numerical(rasp.Map(lambda t: 1 if t == "x" else 0, rasp.tokens))
    frac = rasp.numerical(rasp.Aggregate(rasp.Select(rasp.indices, rasp.indices, rasp.Comparison.LEQ), flag, default=0))
    sets = value_sets(frac, {"x", "y"}, 5)
    expected = {0} | {k / n for n in range(1, 6) for k in range(n + 1)}
    assert sets[frac] == expected
    seen = observed(frac, {"x", "y"}, 5)
    assert seen[frac.label] <= sets[frac]


def test_mean_values_exact_rationals():
    assert mean_values([0, 1], 3) == {0.0, 1.0, 0.5, 1 / 3, 2 / 3}
    assert mean_values([], 3) == set()
    assert mean_values([0.1, 0.2], 2) == {0.1, 0.2, float((Fraction(0.1) + Fraction(0.2)) / 2)}


def _brute_means(values, max_count):
    """Every mean of a multiset of 1..max_count values, as the evaluator computes one."""
    base = sorted({Fraction(v) for v in values})
    return {
        float(sum(combo, Fraction(0)) / k)
        for k in range(1, max_count + 1)
        for combo in itertools.combinations_with_replacement(base, k)
    }


@pytest.mark.parametrize(
    "values",
    [
        [0.0, 1.0, -1.5, 2.25, 3.125],  # dyadic: summed as integers over a common denominator
        [0.1, 0.2, 0.7],  # common denominator 2**55: past float64's exact integers, so Fractions
        [0.5, 0.25, 3.0],  # small dyadic denominators (4): integer sums again
        [1, 2, 10**17],  # integers too large for float64 sums: exact Python ints
    ],
)
def test_mean_values_equal_the_evaluators_means(values):
    assert mean_values(values, 4) == _brute_means(values, 4)


def test_mean_values_gives_up_on_work_not_only_on_size():
    """1e-300 beside the integers 1..200 leaves no common denominator that fits int64, so
    the sums are big integers. They collide often: about 22,000 distinct sums of up to 10
    values give 6,401 means, but cost about 15 million additions. Within a limit of 30,000
    values the work budget (200 additions per value) runs out first: "too many" (None); a
    limit of 50,000 allows the work."""
    values = [1e-300] + [float(k) for k in range(1, 201)]
    assert mean_values(values, 10, limit=30_000) is None
    assert len(mean_values(values, 10, limit=50_000)) == 6_401
    assert len(mean_values(values, 2, limit=30_000)) == 401  # 1..200, the halves between, and 1e-300


def test_map_none_is_in_the_set():
    m = rasp.Map(lambda t: None if t == 0 else t, rasp.tokens)
    after = rasp.Map(lambda v: v * 2, m, simplify=False)
    sets = value_sets(after, {0, 1}, 2)
    assert sets[m] == {None, 1}
    assert sets[after] == {None, 2}


def test_failures_recorded_exact_and_possible():
    exact = rasp.Map(lambda t: 1 // t, rasp.tokens)
    sets = value_sets(exact, {0, 1}, 2)
    assert [(f.label, f.args, f.exact) for f in sets.failures] == [(exact.label, (0,), True)]
    width = rasp.SelectorWidth(rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.EQ))
    maybe = rasp.Map(lambda w: 1 // w, width)
    sets = value_sets(maybe, {0, 1}, 2)
    assert [(f.label, f.args, f.exact) for f in sets.failures] == [(maybe.label, (0,), False)]


def test_bad_arguments():
    with pytest.raises(ValueError, match="empty"):
        value_sets(rasp.tokens, set(), 3)
    with pytest.raises(ValueError, match="None"):
        value_sets(rasp.tokens, {None, 1}, 3)
    with pytest.raises(TypeError, match="collection"):
        value_sets(rasp.tokens, "abc", 3)
    with pytest.raises(TypeError, match="hashable"):
        value_sets(rasp.tokens, [[1]], 3)
    with pytest.raises(ValueError, match="at least 1"):
        value_sets(rasp.tokens, {1}, 0)
    with pytest.raises(TypeError, match="max_seq_len must be an int"):
        value_sets(rasp.tokens, {1}, 2.5)
    with pytest.raises(TypeError, match="RASP expression"):
        value_sets("tokens", {1}, 3)


def test_one_name_on_two_expressions_gets_two_labels():
    a = rasp.Map(lambda t: t + 1, rasp.tokens).named("x")
    b = rasp.Map(lambda t: t + 2, rasp.tokens).named("x")
    sets = value_sets(rasp.SequenceMap(lambda p, q: p + q, a, b).named("sum"), {1}, 2)
    assert sets[f"x_{a.unique_id[:8]}"] == frozenset({2})
    assert sets[f"x_{b.unique_id[:8]}"] == frozenset({3})
    assert sets["sum"] == frozenset({5}) and "x" not in sets.sets
    with pytest.raises(rasp_lab.LabelCollisionError, match="'x'"):  # the graph itself still refuses them
        rasp_lab.build_graph(rasp.SequenceMap(lambda p, q: p + q, a, b))


def test_equal_structures_merge():
    a = rasp.Map(lambda t: t + 1, rasp.tokens)
    b = rasp.Map(lambda t: t + 1, rasp.tokens)
    assert a is not b and a.label == b.label
    graph = rasp_lab.build_graph(rasp.SequenceMap(lambda p, q: p + q, a, b))
    assert len([label for label in graph.order if label == a.label]) == 1


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(programs(), inputs)
def test_value_sets_are_sound(program, xs):
    sets = value_sets(program, VOCAB, 6)
    try:
        values = rasp.trace(program, xs)
    except EvaluationError:
        return
    for node, out in values.items():
        if isinstance(node, rasp.SOp) and sets[node] is not None:
            assert set(out) <= sets[node], node.label


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(programs(numerical_ops=False))
def test_exact_sets_are_attained(program):
    vocab, max_len = {0, 1, 2}, 3
    sets = value_sets(program, vocab, max_len)
    seen = observed(program, vocab, max_len)
    for label in sets.exact:
        assert seen.get(label, set()) == sets[label], label


def test_reuse_carries_over_the_nodes_a_rewrite_left_untouched():
    a = rasp.Map(lambda t: t + 1, rasp.tokens).named("a")
    b = rasp.SequenceMap(lambda x, i: x * i, a, rasp.indices).named("b")
    first = value_sets(b, {1, 2}, 3)
    assert first.state.inferred == 4  # tokens, indices, a, b
    bigger = rasp.Map(lambda x: x % 3, b).named("c")
    again = value_sets(bigger, {1, 2}, 3, reuse=first)
    assert again.state.inferred == 1  # only c
    fresh = value_sets(bigger, {1, 2}, 3)
    assert dict(again.sets) == dict(fresh.sets) and again.exact == fresh.exact
    assert value_sets(bigger, {1, 2, 3}, 3, reuse=first).state.inferred == 5  # another vocab: nothing reused


def test_a_compile_infers_each_node_once(monkeypatch):
    """Planning passes rewrite the program (a split Map, a multi-head width); the value sets
    of what they left untouched are carried over, not inferred again."""
    import collections
    import importlib

    module = importlib.import_module("rasp_lab.value_sets")  # the module, not the function

    counts: collections.Counter = collections.Counter()
    infer, check = module._Inference._infer, module._Inference._check_predicate

    def counting_infer(self, label, expr):
        counts[(label, expr.unique_id)] += 1  # a node, not a label: a rewrite may replace a node under its label
        return infer(self, label, expr)

    def counting_check(self, select):
        counts[(select.label, select.unique_id)] += 1
        return check(self, select)

    monkeypatch.setattr(module._Inference, "_infer", counting_infer)
    monkeypatch.setattr(module._Inference, "_check_predicate", counting_check)
    keys = rasp.Map(lambda t: t % 2, rasp.tokens).named("keys")
    selector = rasp.Select(keys, keys, rasp.Comparison.EQ) | rasp.Select(rasp.indices, rasp.indices, rasp.Comparison.LT)
    width = rasp.SelectorWidth(selector).named("width")
    rasp_lab.compile(width, {0, 1, 2}, 4, selector_strategy="multi_head")
    assert counts and max(counts.values()) == 1, counts.most_common(3)
    assert len({label for label, _ in counts if label == "width"}) == 1 and sum(1 for label, _ in counts if label == "width") == 2


def _running_fraction(flag_token):
    flag = rasp.numerical(rasp.Map(lambda t: 1 if t == flag_token else 0, rasp.tokens))
    prefix = rasp.Select(rasp.indices, rasp.indices, rasp.Comparison.LEQ)  # a new node per call
    return rasp.numerical(rasp.Aggregate(prefix, flag, default=0))


def test_a_balance_of_two_means_over_one_selection_sums_the_same_keys():
    # opens and closes divide by the same width and sum the same keys: (A - B) / w with
    # A + B <= w, not every difference of two fractions with unrelated denominators.
    opens, closes = _running_fraction("("), _running_fraction(")")
    balance = rasp.numerical(rasp.LinearSequenceMap(opens, closes, 1, -1)).named("balance")
    vocab, n = {"(", ")", "x"}, 6
    sets = value_sets(balance, vocab, n)
    reachable = {
        a / w - b / w for w in range(1, n + 1) for a in range(w + 1) for b in range(w + 1 - a)
    }
    assert sets[balance] == reachable | {0}
    assert observed(balance, vocab, n)["balance"] == reachable  # every one of them occurs
    unrelated = {a - b for a in sets[opens] for b in sets[closes]}
    assert len(unrelated) > 2 * len(sets[balance])


def test_means_over_different_selections_stay_independent():
    opens = _running_fraction("(")
    later = rasp.numerical(
        rasp.Aggregate(
            rasp.Select(rasp.indices, rasp.indices, rasp.Comparison.GEQ),
            rasp.numerical(rasp.Map(lambda t: 1 if t == ")" else 0, rasp.tokens)),
            default=0,
        )
    )
    balance = rasp.numerical(rasp.LinearSequenceMap(opens, later, 1, -1)).named("balance")
    vocab, n = {"(", ")"}, 4
    sets = value_sets(balance, vocab, n)
    assert sets[balance] == {a - b for a in sets[opens] for b in sets[later]}
    assert observed(balance, vocab, n)["balance"] <= sets[balance]


def test_shuffle_dyck_value_sets_grow_as_n_squared():
    from programs.tracr_library import make_shuffle_dyck

    program = make_shuffle_dyck(["()", "{}"])
    sizes = {n: len(value_sets(program, set("(){}x"), n)["balance_()"]) for n in (16, 32, 64)}
    # Four times N: about 16 times the values (float rounding adds some), where the product
    # of the two means' sets would grow 256 times.
    assert sizes[16] < 400 and sizes[64] < 32 * sizes[16]
