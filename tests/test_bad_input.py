"""Bad input everywhere: colliding vocab tokens, NaN values, work that would take minutes,
and programs or selector expressions nested thousands of levels deep."""

from __future__ import annotations

import math
import subprocess
import sys
import time

import pytest
from rasp_lab.programs import registry

import rasp_lab
from rasp_lab import cli, rasp
from rasp_lab.evaluator import EvaluationError
from rasp_lab.selectors import analyze
from rasp_lab.value_sets import WORK_LIMIT, WorkLimitError


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# ------------------------------------------------------------- vocab tokens that collide


@pytest.mark.parametrize(
    "vocab, shown",
    [
        ([1, True], "1 == True"),
        ((0, False), "0 == False"),
        ([1, 1.0, 2], "1 == 1.0"),
        ([2, 1, True, 1.0], "1 == True == 1.0"),
        ([0.0, -0.0], "0.0 == -0.0"),
    ],
)
def test_value_sets_refuses_tokens_equal_under_eq_but_distinct(vocab, shown):
    with pytest.raises(ValueError, match="equal under == but distinct") as info:
        rasp_lab.value_sets(rasp.tokens, vocab, 3)
    assert shown in str(info.value)


def test_validate_and_compile_refuse_colliding_tokens():
    program = rasp.Map(lambda x: x, rasp.tokens)
    with pytest.raises(ValueError, match=r"vocab tokens 1 == True are equal"):
        rasp_lab.validate(program, [1, True, 2], 3)
    with pytest.raises(ValueError, match=r"vocab tokens 0 == False are equal"):
        rasp_lab.compile(program, [0, False, 2], 3)


def test_repeated_identical_tokens_and_an_already_collapsed_set_are_accepted():
    assert rasp_lab.value_sets(rasp.tokens, [1, 1, 2], 2)["tokens"] == frozenset({1, 2})
    # A set literal {1, True} is already {1} before rasp_lab sees it.
    collapsed = rasp_lab.value_sets(rasp.tokens, {1, True}, 2)["tokens"]  # noqa: B033 (the collapse is the point)
    assert collapsed == frozenset({1}) and [type(t) for t in collapsed] == [int]


def test_vocab_with_nan_is_refused():
    with pytest.raises(ValueError, match=r"vocab contains NaN \[nan\]"):
        rasp_lab.value_sets(rasp.tokens, [1.0, float("nan")], 3)


@pytest.mark.parametrize("argv", [["explain", "tokens==tokens", "--vocab", "1,01,2"], ["compile", "sort", "--vocab", "1,+1,2"]])
def test_cli_refuses_words_that_read_as_one_token(capsys, argv):
    code, out, err = run_cli(capsys, *argv)
    assert code == 2 and out == ""
    words = argv[-1].split(",")
    assert f"error: bad vocab '{argv[-1]}': {words[0]} and {words[1]} are the same token" in err


def test_cli_parse_vocab_keeps_distinct_strings_that_look_alike():
    assert cli.parse_vocab("a,A,01") == frozenset({"a", "A", 1})
    assert cli.parse_vocab("01,1", like=frozenset({"x"})) == frozenset({"01", "1"})


# ------------------------------------------------------------------------------ NaN


def _nan_on_two(x):
    return float("nan") if x == 2 else float(x)


def test_evaluate_raises_naming_the_map_that_returns_nan():
    program = rasp.numerical(rasp.Map(_nan_on_two, rasp.tokens)).named("halfway")
    with pytest.raises(EvaluationError) as info:
        rasp.evaluate(program, [1, 2, 3])
    assert info.value.label == program.label
    assert info.value.kind == "nan"
    assert str(info.value) == f"{program.label}: Map function returned NaN (nan) on 2 at position 1"
    assert rasp.evaluate(program, [1, 3]) == [1.0, 3.0]


def test_evaluate_raises_for_a_sequence_map_returning_nan():
    program = rasp.SequenceMap(lambda x, y: math.nan if x == y else x - y, rasp.tokens, rasp.indices).named("diff")
    with pytest.raises(EvaluationError, match=r"^diff: SequenceMap function returned NaN \(nan\) on \(1, 1\) at position 1$"):
        rasp.evaluate(program, [5, 1])
    assert rasp.evaluate(program, [5, 2]) == [5, 1]


def test_evaluate_raises_for_a_numerical_mean_that_is_nan():
    signed_inf = rasp.numerical(rasp.Map(lambda x: math.inf if x == 1 else -math.inf, rasp.tokens))
    everything = rasp.Select(rasp.indices, rasp.indices, rasp.Comparison.TRUE)
    mean = rasp.numerical(rasp.Aggregate(everything, signed_inf, default=0)).named("mean")
    assert rasp.evaluate(mean, [1, 1]) == [math.inf, math.inf]
    with pytest.raises(EvaluationError, match=r"^mean: numerical Aggregate averages \[inf, -inf\] to NaN at query position 0$") as info:
        rasp.evaluate(mean, [1, 2])
    assert info.value.kind == "nan"
    problems = rasp_lab.validate(mean, [1, 2], 3)
    kinds = {(p.label, p.kind) for p in problems if p.severity == "error"}
    assert ("mean", "not-averageable") in kinds and ("mean", "nan") in kinds


def test_a_composed_map_stops_at_an_intermediate_nan():
    inner = rasp.Map(_nan_on_two, rasp.tokens)
    outer = rasp.Map(lambda x: 0 if x != x else x, inner)  # simplified into one composed Map
    assert outer.inner is rasp.tokens
    with pytest.raises(EvaluationError, match="returned NaN") as info:
        rasp.evaluate(outer, [1, 2])
    assert info.value.label == outer.label
    assert rasp.evaluate(outer, [1, 3]) == [1.0, 3.0]


def test_validate_names_the_label_and_the_input_of_a_nan():
    program = rasp.numerical(rasp.Map(_nan_on_two, rasp.tokens)).named("halfway")
    problems = rasp_lab.validate(program, [1, 2, 3], 3)
    assert [(p.label, p.kind, p.values, p.severity) for p in problems] == [(program.label, "nan", (2,), "error")]
    assert "Map function returned NaN (nan) on reachable values (2,)" in problems[0].message
    sets = rasp_lab.value_sets(program, [1, 2, 3], 3)
    assert sets[program] == frozenset({1.0, 3.0})  # NaN never enters a value set
    categorical = rasp.Map(_nan_on_two, rasp.tokens).named("cat")
    assert [(p.label, p.kind, p.values) for p in rasp_lab.validate(categorical, [1, 2], 2)] == [("cat", "nan", (2,))]


def test_none_stays_no_value_and_is_not_a_nan():
    program = rasp.Map(lambda x: None if x == 2 else x, rasp.tokens).named("gap")
    assert rasp.evaluate(program, [1, 2]) == [1, None]
    assert rasp_lab.value_sets(program, [1, 2], 2)["gap"] == frozenset({1, None})
    assert all(p.kind != "nan" for p in rasp_lab.validate(program, [1, 2], 2))


def test_compile_refuses_a_program_producing_nan():
    program = rasp.numerical(rasp.Map(_nan_on_two, rasp.tokens)).named("halfway")
    with pytest.raises(rasp_lab.ValidationError) as info:
        rasp_lab.compile(program, [1, 2, 3], 3)
    assert [(p.label, p.kind, p.values) for p in info.value.problems] == [(program.label, "nan", (2,))]


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: rasp.Full(float("nan")), r"Full: fill holds NaN \(\[nan\]\)"),
        (lambda: rasp.ConstantSOp([1.0, float("nan")]), r"ConstantSOp: value holds NaN at positions \[1\]"),
        (
            lambda: rasp.Aggregate(rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.EQ), rasp.tokens, default=math.nan),
            r"Aggregate: default holds NaN",
        ),
    ],
)
def test_nan_constants_are_refused_when_built(build, message):
    with pytest.raises(ValueError, match=message):
        build()


def test_infinite_values_reach_validate_instead_of_crashing_value_sets():
    big = rasp.numerical(rasp.Map(lambda x: math.inf if x == 2 else 1.0, rasp.tokens))
    select = rasp.Select(rasp.indices, rasp.indices, rasp.Comparison.LEQ)
    mean = rasp.numerical(rasp.Aggregate(select, big, default=0)).named("mean")
    sets = rasp_lab.value_sets(mean, [1, 2], 3)
    assert math.inf in sets["mean"] and 1.0 in sets["mean"]
    problems = rasp_lab.validate(mean, [1, 2], 3)
    assert ("mean", "not-averageable", (math.inf,)) in [(p.label, p.kind, p.values) for p in problems]


# ------------------------------------------------------------------------ the work limit


def test_compile_refuses_a_billion_positions_at_once():
    program = registry.get("sort").build(max_seq_len=10**9)
    start = time.perf_counter()
    with pytest.raises(WorkLimitError) as info:
        rasp_lab.compile(program, {1, 2, 3}, 10**9)
    assert time.perf_counter() - start < 0.5
    message = str(info.value)
    assert message.startswith("sort: value-set inference needs about ")
    assert "max_seq_len 1000000000" in message and "3 tokens" in message
    assert f"over the work limit of {WORK_LIMIT:,}" in message and "work_limit=" in message
    assert info.value.estimate > 10**17 and info.value.limit == WORK_LIMIT


def test_the_estimate_counts_states_walked_per_sop():
    n, vocab = 400, range(3000)
    with pytest.raises(WorkLimitError) as info:
        rasp_lab.value_sets(rasp.tokens, vocab, n)
    assert info.value.estimate == 3000 * n * (n + 1) // 2 == 240_600_000
    assert "1 SOp enumerated over 3000 tokens x 80,200 (index, length) pairs" in str(info.value)
    opposite = (rasp.length - rasp.indices).named("opposite")  # tokens, indices, length, opposite
    with pytest.raises(WorkLimitError) as info:
        rasp_lab.value_sets(opposite, [1, 2], 10, work_limit=100)
    assert info.value.estimate == 3 * 2 * 55 and info.value.limit == 100
    assert set(rasp_lab.value_sets(opposite, [1, 2], 10, work_limit=330)["opposite"]) == set(range(1, 11))


def test_a_three_thousand_token_predicate_table_counts_too():
    # A user's predicate may raise on some pair, so each of the 9 million pairs is tried.
    same = rasp.Select(rasp.tokens, rasp.tokens, lambda k, q: k[1:] == q[1:]).named("same")
    program = rasp.SelectorWidth(same).named("width")
    vocab = [f"t{i}" for i in range(3000)]
    with pytest.raises(WorkLimitError, match=r"'same' checks its predicate on 3,000 keys x 3,000 queries") as info:
        rasp_lab.validate(program, vocab, 10, work_limit=5_000_000)
    assert info.value.estimate == 3000 * 55 + 3000 * 3000
    # A Comparison of strings with strings can't raise: nothing to try, nothing charged.
    equal = rasp.SelectorWidth(rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.EQ).named("equal"))
    assert rasp_lab.validate(equal.named("width"), vocab, 10, work_limit=5_000_000) == []


def test_validate_estimates_its_evaluations_too():
    width = rasp.SelectorWidth(rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.EQ)).named("width")
    # Every input of length 1..3 over 2 tokens; 2 l^2 + l cells each (Select, width; tokens), two a step.
    cells = sum(2**length * (2 * length**2 + length) for length in (1, 2, 3))
    assert cells == 214
    with pytest.raises(WorkLimitError, match=r"^width: checking the program on inputs needs about 107 steps") as info:
        rasp_lab.validate(width, [1, 2], 3, work_limit=106)
    assert info.value.estimate == 107
    assert rasp_lab.validate(width, [1, 2], 3, work_limit=107) == []


def test_validate_refuses_minutes_of_evaluation_at_once():
    entry = registry.get("paper_dyck3")
    start = time.perf_counter()
    with pytest.raises(WorkLimitError, match="1500 evaluations on inputs up to length 256") as info:
        rasp_lab.validate(entry.build(max_seq_len=256), entry.vocab, 256)
    assert time.perf_counter() - start < 3
    assert info.value.estimate > 2 * WORK_LIMIT


def test_the_default_admits_the_zoo_at_its_sizes_and_at_256():
    for name in registry.names():
        entry = registry.get(name)
        rasp_lab.value_sets(entry.build(), entry.vocab, entry.max_seq_len, work_limit=WORK_LIMIT // 500)
    for name in ("paper_dyck3", "sort", "paper_dyck2"):  # the most work at 256: 1.1-1.6 million steps
        entry = registry.get(name)
        rasp_lab.value_sets(entry.build(max_seq_len=256), entry.vocab, 256, work_limit=WORK_LIMIT // 50)


@pytest.mark.parametrize(
    "max_seq_len, error, message",
    [(0, ValueError, "at least 1, got 0"), (-3, ValueError, "at least 1"), (True, TypeError, "must be an int, got True"), (2.0, TypeError, "got 2.0")],
)
def test_max_seq_len_must_be_a_positive_int(max_seq_len, error, message):
    with pytest.raises(error, match=message):
        rasp_lab.value_sets(rasp.tokens, [1], max_seq_len)


@pytest.mark.parametrize("limit, error", [(0, ValueError), (True, TypeError), (1.5, TypeError)])
def test_work_limit_must_be_a_positive_int(limit, error):
    with pytest.raises(error, match="work_limit"):
        rasp_lab.value_sets(rasp.tokens, [1], 2, work_limit=limit)


def test_cli_explain_reports_the_work_limit(capsys):
    code, out, err = run_cli(capsys, "explain", "tokens==tokens", "--max-seq-len", "1000000000")
    assert code == 2 and out == ""
    assert err.startswith("error: tokens: value-set inference needs about ")


# ------------------------------------------------------------------- deep and long inputs


def _chain_of_maps(count: int, **kwargs) -> rasp.SOp:
    sop = rasp.tokens
    for _ in range(count):
        sop = rasp.Map(lambda x: x + 1, sop, **kwargs)
    return sop


@pytest.mark.parametrize("simplify", [True, False])
def test_a_chain_of_3000_maps_is_labelled_evaluated_and_analysed(simplify):
    program = _chain_of_maps(3000, simplify=simplify)
    assert program.label == _chain_of_maps(3000, simplify=simplify).label  # structural, stable
    assert rasp.evaluate(program, [1, 2]) == [3001, 3002]
    graph = rasp_lab.build_graph(program)
    assert len(graph.order) == (2 if simplify else 3001)
    assert rasp_lab.value_sets(program, [1, 2], 3)[program] == frozenset({3001, 3002})
    assert rasp_lab.validate(program, [1, 2], 3) == []


def test_a_composed_chain_differs_from_a_shorter_one():
    assert _chain_of_maps(3000).label != _chain_of_maps(2999).label
    assert _chain_of_maps(3).label != _chain_of_maps(2).label


def _and_chain(count: int) -> rasp.Selector:
    selector = rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.EQ)
    for i in range(count - 1):
        selector = selector & rasp.Select(rasp.indices, rasp.indices, rasp.Comparison.LEQ if i % 2 else rasp.Comparison.GEQ)
    return selector


def test_a_2000_atom_conjunction_is_evaluated_and_analysed():
    selector = _and_chain(2000)  # tokens equal and key index == query index
    assert rasp.evaluate(selector, [1, 1, 2]) == [[True, False, False], [False, True, False], [False, False, True]]
    width = rasp.SelectorWidth(selector).named("width")
    assert rasp_lab.value_sets(width, [1, 2], 3)["width"] == frozenset(range(4))
    assert len(rasp_lab.build_graph(width).selectors()) == 3 + 1999  # atoms merge by label; every & is new
    ones = rasp.numerical(rasp.Map(lambda x: 1, rasp.tokens))
    mean = rasp.numerical(rasp.Aggregate(selector, ones, default=0)).named("mean")
    assert rasp_lab.validate(mean, [1, 2], 3) == []
    analysis = analyze(selector, vocab=[1, 2], max_seq_len=3)
    assert len(analysis.atoms) == 2000 and analysis.fits_one_head
    assert analysis.check()


def test_a_5000_fold_negation_is_analysed():
    selector = rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.LT)
    for _ in range(5001):
        selector = ~selector
    assert rasp.evaluate(selector, [1, 2]) == [[True, True], [False, True]]
    analysis = analyze(selector, vocab=[1, 2, 3], max_seq_len=3)
    assert analysis.fits_one_head and analysis.check()
    assert analysis.pattern.tolist() == [[not k < q for k in (1, 2, 3)] for q in (1, 2, 3)]


def test_a_deeply_alternating_selector_is_refused_clearly():
    a = rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.EQ)
    b = rasp.Select(rasp.indices, rasp.indices, rasp.Comparison.LT)
    selector = a
    for i in range(3000):
        selector = ~(selector & b) if i % 2 else (selector | a)
    assert len(rasp.evaluate(selector, [1, 2])) == 2
    with pytest.raises(ValueError, match=rf"selector {selector.label!r} nests 4501 levels deep"):
        analyze(selector, vocab=[1, 2], max_seq_len=2)


@pytest.mark.parametrize(
    "text, message",
    [
        ("(" * 5000 + "tokens==tokens" + ")" * 5000, "position 100: nested more than 100 levels deep"),
        ("~" * 5000 + "tokens==tokens", "position 100: nested more than 100 levels deep"),
        (" & ".join(["tokens==tokens"] * 2000), "position 17000: more than 1000 atoms"),
    ],
)
def test_cli_explain_refuses_deep_or_long_selectors(capsys, text, message):
    code, out, err = run_cli(capsys, "explain", text)
    assert code == 2 and out == ""
    assert err.startswith(f"error: can't parse selector at {message}")
    assert "Traceback" not in err and len(err) < 600


def test_cli_explain_still_takes_moderate_nesting(capsys):
    code, out, _ = run_cli(capsys, "explain", "~" * 99 + "(tokens<tokens)")
    assert code == 0 and "fits one head" in out


def test_cli_explain_deep_input_in_a_subprocess_has_no_traceback():
    done = subprocess.run(
        [sys.executable, "-m", "rasp_lab", "explain", "(" * 5000 + "tokens==tokens" + ")" * 5000],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert "nested more than 100 levels deep" in done.stderr and "Traceback" not in done.stderr
