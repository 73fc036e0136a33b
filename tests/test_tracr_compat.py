"""Tracr code runs unchanged on rasp_lab: Tracr's own tests and Tracr's own library.

Where Tracr is installed (`pip install -e ".[bench]"`; CI installs it), Tracr's test files
are run from the installed package against rasp_lab through tests/tracr_compat/tracr_shim.py,
which maps module names and nothing else (`tracr.X` is `rasp_lab.X`). A failure must be one
of ALLOWED, each a deliberate difference listed in the README's "What differs from Tracr,
and why"; an allowed test that passes is reported too, so the list stays exact.
"""

import importlib.util
import itertools
import os
import pathlib
import random
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

HERE = pathlib.Path(__file__).resolve().parent
SHIM = HERE / "tracr_compat"
sys.path.insert(0, str(SHIM))
import tracr_shim  # noqa: E402

TRACR = tracr_shim.tracr_dir()
pytestmark = pytest.mark.skipif(
    TRACR is None or importlib.util.find_spec("absl") is None,
    reason="Tracr is not installed (pip install -e '.[bench]')",
)

TEST_FILES = (
    "rasp/rasp_test.py",
    "rasp/causal_eval_test.py",
    "compiler/lib_test.py",
    "compiler/validating_test.py",
    "compiler/rasp_to_transformer_integration_test.py",
)
"""Tracr's tests of its language, library and compiler as a whole. The rest of Tracr's tests
exercise its internals (craft bases, its assembler), which rasp_lab does not have."""

_IDS = "structural ids: a node's unique_id is derived from what it computes, so a copy keeps it"
_EQ = "loud ==: `sop == x` builds a Map, and asking its truth value raises instead of being vacuously true"
_AND = "no selector_and merge: merging two Selects into one would change which None keys are selected"
_AGREE = "categorical Aggregates must agree: averaging different categorical values is an error, not a mean"
_MORE = "rasp_lab compiles it exactly: Tracr refuses it, but a categorical LinearSequenceMap is an MLP lookup, a numerical mean may average any values"

ALLOWED = {
    **{
        f"rasp_test::CopyTest::test_copy_changes_id_{kind}": _IDS
        for kind in (
            "aggregate",
            "indices",
            "length",
            "linear_sequence_map",
            "map",
            "select",
            "selector_and",
            "selector_not",
            "selector_or",
            "selector_width",
            "sequence_map",
            "tokens",
        )
    },
    "rasp_test::SOpTest::test_nested_elementwise_ops_results_in_only_one_map_object": _EQ,
    "rasp_test::SOpTest::test_nested_maps_result_in_two_map_objects_if_simplify_set_to_false": _EQ,
    "rasp_test::SelectorTest::test_selector_and_gets_simplified_when_keys_and_queries_match": _AND,
    "rasp_test::SelectorTest::test_selector_and_gets_simplified_when_keys_are_full": _AND,
    "rasp_test::SelectorTest::test_selector_and_gets_simplified_when_queries_are_full": _AND,
    "rasp_test::AggregateTest::test_aggregate_on_size_2_inputs3": _AGREE,
    "rasp_test::AggregateTest::test_aggregate_on_size_2_inputs4": _AGREE,
    "rasp_test::AggregateTest::test_aggregate_on_size_2_inputs5": _AGREE,
    **{
        f"{file}::{cls}::{test}_{case}": _MORE
        for file, cls, test in (
            ("validating_test", "ValidationEvaluatorTest", "test_unsupported_programs_fail_validation"),
            (
                "rasp_to_transformer_integration_test",
                "CompilerIntegrationTest",
                "test_unsupported_programs_raise_exception",
            ),
        )
        for case in ("categorical_LinearSequenceMap", "numerical_numerical_aggregate")
    },
}


@pytest.fixture(scope="module")
def tracr_results(tmp_path_factory):
    """Each of Tracr's tests by 'file::class::name' -> None (passed) or its failure message."""
    report = tmp_path_factory.mktemp("tracr") / "report.xml"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SHIM), os.environ.get("PYTHONPATH", "")])}
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-p",
        "tracr_shim",
        "-p",
        "no:cacheprovider",
        "-q",
        f"--junitxml={report}",
        "--rootdir",
        str(TRACR.parent),
        *(str(TRACR / f) for f in TEST_FILES),
    ]
    run = subprocess.run(command, cwd=report.parent, env=env, capture_output=True, text=True, timeout=1800)
    assert report.exists(), f"Tracr's tests did not run:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    results = {}
    for case in ET.parse(report).iter("testcase"):
        module = case.get("classname", "").split(".")
        key = f"{module[-2]}::{module[-1]}::{case.get('name')}"
        problems = case.findall("failure") + case.findall("error")
        skipped = case.findall("skipped")
        results[key] = (
            (problems[0].get("message") or "failed") if problems else ("skipped" if skipped else None)
        )
    return results


@pytest.mark.slow
def test_tracr_test_files_all_ran(tracr_results):
    files = {key.split("::")[0] for key in tracr_results}
    assert files == {pathlib.Path(f).stem for f in TEST_FILES}
    assert len(tracr_results) > 5000  # Tracr's parametrised tests, as collected from its files
    assert not [k for k, v in tracr_results.items() if v == "skipped"]


@pytest.mark.slow
def test_tracr_tests_pass_except_deliberate_differences(tracr_results):
    unexpected = {k: v for k, v in tracr_results.items() if v is not None and k not in ALLOWED}
    assert not unexpected, "Tracr tests failing on rasp_lab:\n" + "\n".join(
        f"{k}: {v[:300]}" for k, v in unexpected.items()
    )


@pytest.mark.slow
def test_every_allowed_difference_still_differs(tracr_results):
    missing = sorted(k for k in ALLOWED if k not in tracr_results)
    assert not missing, f"allow-list entries naming no Tracr test: {missing}"
    passing = sorted(k for k in ALLOWED if tracr_results[k] is None)
    assert not passing, f"these pass now; take them off the allow-list: {passing}"


def test_the_readme_lists_every_deliberate_difference():
    readme = (HERE.parent / "README.md").read_text()
    section = readme[readme.index("## What differs from Tracr, and why") :]
    for reason in sorted(set(ALLOWED.values())):
        topic = reason.split(":")[0]
        assert topic in section, f"README's differences table does not mention {topic!r}"


# ---------------------------------------------------------------------------- Tracr's lib.py


def _tracr_lib():
    """Tracr's own compiler/lib.py, loaded from the installed package through the shim."""
    tracr_shim.install()
    import tracr.compiler.lib_tracr as lib  # Tracr's file, whose `from tracr.rasp import rasp` is rasp_lab's
    from tracr.rasp import rasp

    return lib, rasp


def _programs(n: int):
    lib, rasp = _tracr_lib()
    t = rasp.tokens
    abc = ["a", "b", "c"]
    return {
        "length": (lib.make_length(), abc),
        "reverse": (lib.make_reverse(t), abc),
        "pair_balance": (lib.make_pair_balance(t, "(", ")"), ["(", ")", "x"]),
        "shuffle_dyck_2_pairs": (lib.make_shuffle_dyck(["()", "{}"]), list("(){}")),
        "shuffle_dyck_3_pairs": (lib.make_shuffle_dyck(["()", "{}", "[]"]), list("(){}[]")),
        "shuffle_dyck2": (lib.make_shuffle_dyck2(), list("(){}")),
        "hist": (lib.make_hist(), abc),
        "sort_unique": (lib.make_sort_unique(t, t), list(range(1, n + 3))),
        "sort": (lib.make_sort(t, t, max_seq_len=n, min_key=1), [1, 2, 3, 4]),
        "sort_freq": (lib.make_sort_freq(max_seq_len=n), abc),
        "frac_prevs": (lib.make_frac_prevs(rasp.numerical(rasp.Map(lambda x: x == "x", t))), ["x", "y"]),
        "shift_by": (lib.shift_by(2, t), abc),
        "detect_pattern": (lib.detect_pattern(t, "abc"), abc),
        "count_less_freq": (lib.make_count_less_freq(2), abc),
        "count": (lib.make_count(t, "a"), abc),
        "nary_sequencemap": (
            lib.make_nary_sequencemap(lambda x, y, z: x + y - z, t, t, rasp.indices),
            [0, 1, 2],
        ),
        "module_length": (lib.length, abc),
    }


LIBRARY = [
    "count", "count_less_freq", "detect_pattern", "frac_prevs", "hist", "length", "module_length",
    "nary_sequencemap", "pair_balance", "reverse", "shift_by", "shuffle_dyck2", "shuffle_dyck_2_pairs",
    "shuffle_dyck_3_pairs", "sort", "sort_freq", "sort_unique",
]  # fmt: skip


def test_the_library_list_is_every_program():
    assert sorted(_programs(10)) == LIBRARY


def _inputs(name: str, vocab: list, n: int, count: int) -> list[list]:
    rng = random.Random(f"{name}/{n}")
    rows = []
    for length in itertools.chain([1, n, n], (rng.randint(1, n) for _ in range(count))):
        if name == "sort_unique":  # its precondition: distinct keys
            rows.append(rng.sample(vocab, length))
        else:
            rows.append([rng.choice(vocab) for _ in range(length)])
    return rows


@pytest.mark.slow
@pytest.mark.parametrize("n", [10, 12])
@pytest.mark.parametrize("name", LIBRARY)
def test_tracr_library_compiles_exactly(name, n):
    import rasp_lab
    from rasp_lab.rasp import rasp as ours

    program, vocab = _programs(n)[name]
    model = rasp_lab.compile(program, vocab=vocab, max_seq_len=n)  # raises unless certified exact
    assert model.certificate.exact
    rows = _inputs(name, vocab, n, 60)
    expected = [ours.evaluate(program, row) for row in rows]
    batched = model.run_batch(rows)
    singles = [model.run(row) for row in rows[:8]]
    for row, want, got in zip(rows, expected, batched):
        assert got == pytest.approx(want, abs=1e-4), (row, want, got)
    for want, got in zip(expected, singles):
        assert got == pytest.approx(want, abs=1e-4)
