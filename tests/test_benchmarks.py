"""Smoke runs of the benchmark scripts (tiny settings), so they can't rot unnoticed.

The Tracr comparison needs the optional `bench` extra; CI runs its --smoke mode separately.
"""

import pathlib
import runpy

import pytest

BENCH = pathlib.Path(__file__).resolve().parent.parent / "benchmarks"


def run(script: str, *args: str) -> int:
    namespace = runpy.run_path(str(BENCH / script))
    return namespace["main"](list(args))


def test_zoo_benchmark(capsys):
    assert run("zoo.py", "--programs", "length,sort", "--repeats", "1", "--batch", "8") == 0
    out = capsys.readouterr().out
    assert "length" in out and "sort" in out and "jax/numpy" in out


def test_exhaustive_benchmark(capsys):
    assert run("exhaustive.py", "--programs", "hist", "--max-len", "3", "--batch", "64") == 0
    line = [row for row in capsys.readouterr().out.splitlines() if row.startswith("hist")][0]
    assert line.split()[-1] == "0"  # no disagreements on any input


def test_selector_scaling_benchmark(capsys):
    assert run("selector_scaling.py", "--atoms", "2", "--values", "2", "--no-tracr") == 0
    out = capsys.readouterr().out
    assert "AND" in out and "OR" in out and "NOT-AND" in out


def test_selector_analysis_benchmark(capsys):
    assert run("selector_analysis.py", "--smoke") == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines() if line.startswith(("free", "program"))]
    assert {row[0] for row in rows} == {"free", "program"}
    # The correlated OR (copies of the token) fits one factored head on the program question.
    assert ["program", "OR", "copi", "3", "2"] == rows[-1][:5] and rows[-1][7] == "factored"


def test_scaling_benchmark(capsys):
    assert run("scaling.py", "--smoke") == 0
    out = capsys.readouterr().out
    rows = [line.split() for line in out.splitlines() if line.startswith(("length ", "hist "))]
    assert [(r[0], r[1], r[3]) for r in rows if r[1].isdigit()] == [
        ("length", "4", "yes"), ("length", "8", "yes"), ("hist", "4", "yes"), ("hist", "8", "yes")
    ]
    assert "growth exponent: rasp_lab" in out


def test_compare_tracr_builds_the_same_programs():
    """The two DSLs' builds agree on rasp_lab's side (Tracr's side needs the extra)."""
    namespace = runpy.run_path(str(BENCH / "compare_tracr.py"))
    from rasp_lab import rasp

    for name in namespace["PROGRAMS"]:
        program = namespace["build"]("rasp_lab", name, 5)
        for xs in namespace["inputs"](name, 5, 3):
            assert len(rasp.evaluate(program, xs)) == len(xs)


@pytest.mark.parametrize("script", ["zoo.py", "exhaustive.py", "selector_scaling.py", "selector_analysis.py", "scaling.py", "compare_tracr.py"])
def test_scripts_have_usage(script):
    text = (BENCH / script).read_text()
    assert text.startswith('"""') and "python benchmarks/" in text


def test_scaling_budget_stops_a_long_compile_and_skips_longer_lengths():
    namespace = runpy.run_path(str(BENCH / "scaling.py"))
    result = namespace["ours"]("sort", 8, 1, 1e-4)  # no compile finishes in 0.1 ms
    assert result == {"error": "over 0.0001 s", "over": True}
    with pytest.raises(namespace["OverBudget"]):
        with namespace["budget"](0.01):
            while True:
                pass
