"""The program question: one head for the pairs a program's inputs realise, not every
combination of values.

Compositions over Maps of tokens and of indices (correlated on purpose) are analysed under
both questions. The program's pairs are cross-checked by brute force (every input up to
max_seq_len through the evaluator); every program "fits" is compiled and must be one factored
head that agrees with the evaluator on every input; every program "does not fit" certificate
is re-evaluated on its witness inputs; the rank band holds for every compiled head.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import rasp_lab
from rasp_lab import rasp
from rasp_lab.selectors import (
    ENCODINGS,
    FarkasCertificate,
    Rectangle,
    SelectorAnalysis,
    analyze,
    clean_everywhere,
    involved_sops,
    qk_rank,
)
from rasp_lab.selectors.families import copies, digits, or_of_equalities

C = rasp.Comparison
VOCAB = (0, 1, 2)
MAX_SEQ_LEN = 4
ALL_INPUTS = [list(xs) for n in range(1, MAX_SEQ_LEN + 1) for xs in itertools.product(VOCAB, repeat=n)]


class Fn:
    """A named, fingerprintable function for Maps."""

    def __init__(self, name: str, f: Callable[[Any], Any]) -> None:
        self.name, self.f = name, f

    def __call__(self, x: Any) -> Any:
        return self.f(x)

    def __rasp_fingerprint__(self) -> str:
        return self.name


def named_map(name: str, f: Callable[[Any], Any], inner: rasp.SOp) -> rasp.SOp:
    return rasp.Map(Fn(name, f), inner).named(name)


T, IDX = rasp.tokens, rasp.indices
POOL = [
    T,
    IDX,
    named_map("tpar", lambda t: t % 2, T),
    named_map("tshift", lambda t: (t + 1) % 3, T),
    named_map("ipar", lambda i: i % 2, IDX),
    named_map("imin", lambda i: min(i, 2), IDX),
]
PREDICATES = [C.EQ, C.NEQ, C.LT, C.LEQ, C.GT, C.GEQ, C.TRUE]


def random_selector(rng: random.Random, depth: int = 0) -> rasp.Selector:
    r = rng.random()
    if depth >= 2 or r < 0.35:
        return rasp.Select(rng.choice(POOL), rng.choice(POOL), rng.choice(PREDICATES))
    if r < 0.45:
        return ~random_selector(rng, depth + 1)
    a, b = random_selector(rng, depth + 1), random_selector(rng, depth + 1)
    return (a & b) if rng.random() < 0.5 else (a | b)


def grid(n: int = 90, seed: int = 11) -> list[rasp.Selector]:
    rng = random.Random(seed)
    return [random_selector(rng) for _ in range(n)]


GRID = grid()
_CACHE: dict[tuple[str, str, bool], SelectorAnalysis] = {}


def analysis(selector: rasp.Selector, domain: str, causal: bool = False) -> SelectorAnalysis:
    key = (selector.label, domain, causal)
    if key not in _CACHE:
        _CACHE[key] = analyze(selector, vocab=set(VOCAB), max_seq_len=MAX_SEQ_LEN, domain=domain, causal=causal)
    return _CACHE[key]


def brute_force_pairs(
    selector: rasp.Selector, a: SelectorAnalysis, causal: bool, inputs: list[list] = ALL_INPUTS
) -> set[tuple[tuple, tuple]]:
    """Every (query tuple, key tuple) at positions (i, j) of some input, j <= i when causal:
    each involved SOp evaluated on its own, on every input."""
    sops = involved_sops(selector)
    pairs = set()
    for xs in inputs:
        values = {label: rasp.evaluate(sops[label], xs, causal=causal) for label in set(a.query_sops + a.key_sops)}
        for i in range(len(xs)):
            for j in range(i + 1 if causal else len(xs)):
                q = tuple(values[s][i] for s in a.query_sops)
                k = tuple(values[s][j] for s in a.key_sops)
                pairs.add((q, k))
    return pairs


def assert_rows_close(got: list[list], expected: list[list]) -> None:
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        assert g == pytest.approx(e, abs=1e-4), (g, e)


def realised_pairs(a: SelectorAnalysis) -> set[tuple[tuple, tuple]]:
    return {(a.query_tuples[q], a.key_tuples[k]) for q, k in zip(*np.nonzero(a.realised))}


# ------------------------------------------------------------------------ the example


def test_the_issue_example_is_one_factored_head_for_the_program():
    tpar = named_map("tpar", lambda t: t % 2, T)
    selector = rasp.Select(T, T, C.EQ) | rasp.Select(tpar, T, C.NEQ)
    free = analyze(selector, vocab={0, 1}, max_seq_len=5, domain="product")
    program = analyze(selector, vocab={0, 1}, max_seq_len=5)
    assert not free.fits_one_head and isinstance(free.witness, Rectangle)
    assert program.question == "program" and program.domain.exact and program.fits_one_head
    assert "the program question" in program.describe() and "the free question" in free.describe()
    assert program.check() and free.check()
    assert program.band() == (program.rank_lower_bound, qk_rank(program.head_weights("factored")))
    # Every key is selected at every realised pair: a program fact the product hides.
    assert program.pattern[program.realised].all()
    mean = rasp.numerical(rasp.Aggregate(selector, rasp.numerical(rasp.Map(float, T)), default=0)).named("mean")
    model = rasp_lab.compile(mean, {0, 1}, 5)
    assert [h.strategy for layer in model.weights.layers for h in layer.heads] == ["factored"]
    forced = rasp_lab.compile(mean, {0, 1}, 5, selector_strategy="product_keys")
    assert len(model.weights.layers) < len(forced.weights.layers)
    inputs = [list(xs) for n in range(1, 6) for xs in itertools.product((0, 1), repeat=n)]
    expected = [mean(xs) for xs in inputs]
    assert_rows_close(model.run_batch(inputs), expected)
    assert_rows_close([model.run(xs) for xs in inputs], expected)
    assert model.certificate.exact


# --------------------------------------------------------------- the grid, both questions


@pytest.mark.parametrize("causal", [False, True])
def test_program_pairs_are_exactly_the_brute_force_pairs(causal: bool):
    for selector in GRID[:45]:
        a = analysis(selector, "program", causal)
        assert a.domain.exact
        assert realised_pairs(a) == brute_force_pairs(selector, a, causal), selector.label


@pytest.mark.parametrize("index", range(len(GRID)))
def test_both_questions_are_checked_and_the_program_verdict_only_adds(index: int):
    selector = GRID[index]
    free, program = analysis(selector, "product"), analysis(selector, "program")
    assert free.check() and program.check()
    for encoding in ENCODINGS:
        if free.fits[encoding].fits:
            assert program.fits[encoding].fits, encoding
    # The program's verdicts hold on its pairs: the weights realise the selection there.
    if not program.fits_one_head:
        # A refusal for the program is witnessed: its pairs occur on inputs the evaluator runs.
        assert program.witnesses_hold(), program.describe()
        assert isinstance(program.witness, (Rectangle, FarkasCertificate))
    lower, upper = program.band()
    assert 0 <= lower <= upper
    # A matching among realised pairs is one among all pairs: it bounds the free question too.
    pairs = program.induced_matching
    for s, (_, k) in enumerate(pairs):
        assert all(free.pattern[free.query_tuples.index(q2), free.key_tuples.index(k)] == (s != t) for t, (q2, _) in enumerate(pairs))


def test_the_grid_has_both_kinds_of_disagreement():
    """The suite is only an answer if it has cases where the questions differ."""
    differ = [s for s in GRID if not analysis(s, "product").fits_one_head and analysis(s, "program").fits_one_head]
    refused = [s for s in GRID if not analysis(s, "program").fits_one_head]
    assert len(differ) >= 5 and len(refused) >= 5, (len(differ), len(refused))


def program_only() -> list[int]:
    """Grid cases one head fits for the program but not for the product (computed when the
    test runs, not while collecting)."""
    return [i for i, s in enumerate(GRID) if not analysis(s, "product").fits_one_head and analysis(s, "program").fits_one_head]


@pytest.mark.slow
def test_every_program_fit_compiles_to_one_factored_head():
    cases = program_only()
    assert len(cases) >= 5
    for index in cases:
        _compiles_to_one_factored_head(GRID[index])


def _compiles_to_one_factored_head(selector: rasp.Selector) -> None:
    program = analysis(selector, "program")
    assert clean_everywhere(program.head_weights("factored"))
    mean = rasp.numerical(rasp.Aggregate(selector, rasp.numerical(rasp.Map(float, T)), default=0)).named("mean")
    width = rasp.SelectorWidth(selector).named("width")
    both = rasp.numerical(rasp.LinearSequenceMap(mean, rasp.numerical(rasp.Map(float, width)), 1, 1)).named("both")
    model = rasp_lab.compile(both, set(VOCAB), MAX_SEQ_LEN)
    heads = {h.label: h for layer in model.weights.layers for h in layer.heads}
    assert heads["mean"].strategy == "factored"
    assert_rows_close(model.run_batch(ALL_INPUTS), [both(xs) for xs in ALL_INPUTS])
    for xs in ALL_INPUTS[:: len(ALL_INPUTS) // 20]:
        assert model.run(xs) == pytest.approx(both(xs), abs=1e-4)
    lower, upper = program.band()
    assert lower <= np.linalg.matrix_rank(heads["mean"].w_qk) <= upper


# ----------------------------------------------------------------------- the band


def test_or_of_m_equalities_band_on_independent_and_correlated_sops():
    """Independent: the digits of a token (every combination occurs at two positions):
    lower = 2^m - 1, as on the free question. Correlated: m copies of the token: the
    selection is token equality, one factored head of small rank."""
    for m in (1, 2, 3):
        vocab = set(range(2**m))
        keys, queries = digits(m, 2, "k"), digits(m, 2, "q")
        independent = analyze(or_of_equalities(keys, queries), vocab=vocab, max_seq_len=3)
        assert independent.domain.exact and independent.rank_lower_bound == 2**m - 1
        lower, upper = independent.band()
        selector = or_of_equalities(keys, queries)
        mean = rasp.numerical(rasp.Aggregate(selector, rasp.numerical(rasp.Map(float, T)), default=0)).named("mean")
        model = rasp_lab.compile(mean, vocab, 3)
        head = next(h for layer in model.weights.layers for h in layer.heads if h.label == "mean")
        assert lower <= np.linalg.matrix_rank(head.w_qk) <= upper
        if m == 3:
            inputs = [list(xs) for n in range(1, 4) for xs in itertools.product(sorted(vocab), repeat=n)]
            assert_rows_close(model.run_batch(inputs), [mean(xs) for xs in inputs])
        correlated = analyze(or_of_equalities(copies(m, "k"), copies(m, "q")), vocab={0, 1}, max_seq_len=3)
        assert correlated.fits_one_head and correlated.rank_lower_bound <= 1
        c_lower, c_upper = correlated.band()
        assert c_upper <= 2 * m + 2 and c_lower <= c_upper
        if m >= 2:
            free = analyze(or_of_equalities(copies(m, "k"), copies(m, "q")), value_sets={f"{p}{j}": [0, 1] for p in "kq" for j in range(m)})
            assert not free.fits_one_head and free.rank_lower_bound == 2**m - 1


# ------------------------------------------------------ scope: how the pairs were found


def test_sops_computed_by_attention_are_listed_exhaustively_when_small():
    counts = rasp.SelectorWidth(rasp.Select(T, T, C.EQ)).named("counts")
    selector = rasp.Select(counts, T, C.LT) | rasp.Select(T, counts, C.EQ)
    a = analyze(selector, vocab={0, 1}, max_seq_len=4)
    assert a.domain.exact and "inputs evaluated" in a.domain.how
    assert a.check()
    inputs = [list(xs) for n in range(1, 5) for xs in itertools.product((0, 1), repeat=n)]
    assert realised_pairs(a) == brute_force_pairs(selector, a, False, inputs)


def test_large_inputs_over_approximate_and_say_so():
    counts = rasp.SelectorWidth(rasp.Select(T, T, C.EQ)).named("counts")
    selector = rasp.Select(counts, T, C.LT) | rasp.Select(T, counts, C.EQ)
    a = analyze(selector, vocab=set(range(6)), max_seq_len=6)
    assert not a.domain.exact and "over-approximated" in a.describe()
    assert a.check()
    if not a.fits_one_head:
        assert not a.witnesses_hold()  # not a proof for the program
        assert "not a proof for the program" in a.describe()


def test_a_stopped_lp_is_undecided_and_the_compiler_still_builds_a_head():
    q1 = named_map("q_one", lambda i: i % 3, IDX)
    q2 = named_map("q_two", lambda i: (i + 1) % 3, IDX)
    selector = rasp.Select(T, q1, C.EQ) | rasp.Select(T, q2, C.EQ)
    decided = analyze(selector, vocab=set(VOCAB), max_seq_len=MAX_SEQ_LEN, domain="product")
    assert decided.fits["factored"].method == "lp"
    stopped = analyze(selector, vocab=set(VOCAB), max_seq_len=MAX_SEQ_LEN, domain="product", time_limit=0.0)
    fit = stopped.fits["factored"]
    assert not fit.fits and not fit.decided and fit.method == "stopped"
    assert "undecided" in stopped.describe()
    assert stopped.check()  # nothing claimed, nothing to refute


# ------------------------------------------------------------------- the package's home


def test_the_selector_package_imports_nothing_from_the_compiler():
    import ast
    import pathlib
    import subprocess
    import sys

    code = (
        "import sys\n"
        "import rasp_lab.selectors, rasp_lab.selectors.families\n"
        "bad = sorted(m for m in sys.modules if m.startswith('rasp_lab.compiler') or m in ('jax', 'haiku'))\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    errors = pathlib.Path(rasp_lab.__file__).parent / "errors.py"
    imports = [n for n in ast.walk(ast.parse(errors.read_text())) if isinstance(n, (ast.Import, ast.ImportFrom))]
    assert [getattr(n, "module", None) for n in imports] == ["__future__"]


# ------------------------------------------------------- hostile use (an outside review)


class RaisesAtZeroZero:
    """(token, index) -> 10 t + i, raising at (0, 0): inputs starting with 0 raise."""

    def __call__(self, t: int, i: int) -> int:
        if t == 0 and i == 0:
            raise ValueError("no value at (0, 0)")
        return 10 * t + i

    def __rasp_fingerprint__(self) -> str:
        return "raises-at-0-0"


def test_an_sop_that_raises_somewhere_is_not_probed_as_if_positions_were_independent():
    """A probe [t] * n raises as a whole, so its positions can't vouch for mixed inputs: the
    domain is listed input by input instead, and the weights are right on every pair."""
    s = rasp.SequenceMap(RaisesAtZeroZero(), T, IDX).named("s")
    selector = rasp.Select(T, s, C.EQ) | rasp.Select(s, s, C.LEQ)
    a = analyze(selector, vocab={0, 1}, max_seq_len=2)
    assert a.domain.exact and "inputs evaluated" in a.domain.how
    inputs = [[1], [1, 0], [1, 1]]  # every input that evaluates ([0] and [0, x] raise)
    assert realised_pairs(a) == brute_force_pairs(selector, a, False, inputs)
    assert a.check()


def test_check_returns_false_rather_than_raising_on_a_witness_that_raises():
    a = analyze(rasp.Select(T, T, C.EQ) | rasp.Select(named_map("tpar", lambda t: t % 2, T), IDX, C.LT), vocab={0, 1, 2}, max_seq_len=3)
    from rasp_lab.selectors.domain import check_witness

    class Boom:
        def __call__(self, x: int) -> int:
            raise ZeroDivisionError

        def __rasp_fingerprint__(self) -> str:
            return "boom"

    boom = rasp.Select(rasp.Map(Boom(), T).named("boom"), T, C.EQ)
    q, k = a.query_tuples[0], a.key_tuples[0]
    assert check_witness(boom, a.domain, q, k, True) is False


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"domain": ["program"]}, "domain must be 'program' or 'product'"),
        ({"time_limit": -1}, "time_limit must be a number of seconds >= 0"),
        ({"time_limit": float("nan")}, "time_limit must be a number of seconds >= 0"),
        ({"time_limit": "x"}, "time_limit must be a number of seconds >= 0"),
        ({"rank_seconds": None}, "rank_seconds must be a number of seconds >= 0"),
    ],
)
def test_bad_arguments_are_refused_with_a_message(kwargs: dict, message: str):
    with pytest.raises(ValueError, match=message):
        analyze(rasp.Select(T, T, C.EQ) | rasp.Select(IDX, IDX, C.LT), vocab={0, 1}, max_seq_len=3, **kwargs)


def test_two_sops_under_one_name_are_labelled_apart_as_compile_labels_them():
    first = rasp.Map(Fn("a", lambda t: t % 2), T).named("dup")
    second = rasp.Map(Fn("b", lambda t: (t + 1) % 2), T).named("dup")
    selector = rasp.Select(first, T, C.EQ) | rasp.Select(second, T, C.EQ)
    a = analyze(selector, vocab={0, 1}, max_seq_len=3)
    keys = a.key_sops
    assert len(keys) == 2 and all(k.startswith("dup_") for k in keys)
    assert set(keys) == {f"dup_{first.unique_id[:8]}", f"dup_{second.unique_id[:8]}"}
    model = rasp_lab.compile(rasp.SelectorWidth(selector).named("w"), vocab={0, 1}, max_seq_len=3)
    assert {label for label in model.layout.sops} >= set(keys)


def test_value_sets_that_leave_out_a_value_the_program_takes_are_refused():
    tpar = named_map("tpar", lambda t: t % 2, T)
    selector = rasp.Select(T, T, C.EQ) | rasp.Select(tpar, T, C.NEQ)
    with pytest.raises(ValueError, match="'tokens' takes the value 2"):
        analyze(selector, vocab={0, 1, 2}, max_seq_len=3, value_sets={"tokens": {0, 1}, "tpar": {0, 1}}, domain="program").describe()


def test_describe_names_the_inputs_and_an_over_approximation_as_a_superset():
    counts = rasp.SelectorWidth(rasp.Select(T, T, C.EQ)).named("counts")
    over = analyze(rasp.Select(counts, T, C.LT) | rasp.Select(T, counts, C.EQ), vocab=set(range(6)), max_seq_len=6)
    text = over.describe()
    assert "inputs up to length 6 over 6 tokens, not causal" in text
    assert "a superset of those some input realises" in text and "any head right on these pairs needs" in text


def test_an_lp_too_large_to_build_is_undecided_not_an_allocation(monkeypatch: pytest.MonkeyPatch):
    import rasp_lab.selectors.analysis as analysis_module

    monkeypatch.setattr(analysis_module, "LP_ENTRIES", 10)
    q1 = named_map("q_one", lambda i: i % 3, IDX)
    q2 = named_map("q_two", lambda i: (i + 1) % 3, IDX)
    a = analyze(rasp.Select(T, q1, C.EQ) | rasp.Select(T, q2, C.EQ), vocab=set(VOCAB), max_seq_len=MAX_SEQ_LEN, domain="product")
    assert a.fits["factored"].method == "stopped" and not a.fits["factored"].decided
    assert a.fits["product_both"].fits  # one table: no LP
    assert a.check()
