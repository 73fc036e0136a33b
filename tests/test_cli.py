"""The command line (rasp_lab/cli.py): `rasp-lab` and `python -m rasp_lab`.

Each test calls cli.main([...]) and reads stdout / stderr; one runs the installed console
script. Bad input gives exit code 2 and a message on stderr; --help works everywhere."""

from __future__ import annotations

import pathlib
import subprocess
import sys
import types

import pytest
from rasp_lab.programs import registry

import rasp_lab
from rasp_lab import cli, rasp
from rasp_lab.selectors import analyze


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# ------------------------------------------------------------------ list / run


def test_list_shows_every_zoo_program(capsys):
    code, out, err = run(capsys, "list")
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert [line.split()[0] for line in lines[1:]] == list(registry.names())  # after the header
    assert any(line.startswith("sort ") and "Tokens sorted ascending" in line for line in lines)


@pytest.mark.parametrize("tokens", [["3", "1", "2"], ["3 1 2"], ["3 1", "2"]])
def test_run_evaluates_compiles_and_agrees(capsys, tokens):
    code, out, err = run(capsys, "run", "sort", *tokens)
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert lines[1] == "input:     [3, 1, 2]"
    assert lines[2] == "evaluated: [1, 2, 3]"
    assert lines[3] == "compiled:  [1, 2, 3]"
    assert lines[4] == "agree:     yes"
    assert lines[5].startswith("rasp_lab model for 'sort': 3 layers")


def test_run_defaults_to_the_first_example_and_shows_numbers(capsys):
    code, out, _ = run(capsys, "run", "frac_prevs")
    entry = registry.get("frac_prevs")
    assert code == 0
    assert f"input:     {entry.examples[0][0]}" in out
    assert "agree:     yes" in out and "causal=True" in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["run", "nosuch", "1"], "unknown zoo program 'nosuch'. Known programs: length, reverse"),
        (["run", "srot", "1"], "unknown zoo program 'srot'; did you mean 'sort'? Known programs: length"),
        (["run", "sort", "3", "9"], "unknown token(s) ['9']; the vocabulary is: 1 2 3 4"),
        (["run", "sort", "1 2 3 4 1 2"], "6 tokens is longer than sort's max_seq_len 5"),
        (["run", "missing.npz", "1"], "no model file at 'missing.npz'"),
    ],
)
def test_run_errors(capsys, argv, message):
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == ""
    assert err.startswith("error: ") and message in err


# ------------------------------------------------------------------ compile, and running a saved model


def test_compile_prints_summary_and_saves(capsys, tmp_path):
    path = tmp_path / "sort.npz"
    code, out, err = run(capsys, "compile", "sort", "--vocab", "1,2,3,4,5", "--max-seq-len", "6", "--out", str(path))
    assert code == 0 and err == ""
    assert out.startswith("rasp_lab model for 'sort': 3 layers")
    assert "max_seq_len 6" in out and f"saved to {path}" in out
    model = rasp_lab.load(path)
    assert model.vocab == {1, 2, 3, 4, 5} and model.max_seq_len == 6
    assert model.run([5, 3, 1, 2, 4, 4]) == [1, 2, 3, 4, 4, 5]
    assert model.summary() in out

    code, out, err = run(capsys, "run", str(path), "5 3 1 2 4 4")
    assert code == 0 and err == ""
    assert out.splitlines()[1:] == ["input:     [5, 3, 1, 2, 4, 4]", "compiled:  [1, 2, 3, 4, 4, 5]"]
    code, _, err = run(capsys, "run", str(path), "7")
    assert code == 2 and "unknown token(s) ['7']" in err


def test_compile_defaults_to_the_registry_settings(capsys):
    code, out, _ = run(capsys, "compile", "reverse")
    entry = registry.get("reverse")
    assert code == 0
    assert out.splitlines()[0].endswith(f"max_seq_len {entry.max_seq_len}, causal=False")
    code, out, _ = run(capsys, "compile", "hist", "--vocab", "x,y", "--max-seq-len", "3", "--causal")
    assert code == 0 and "max_seq_len 3, causal=True" in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["compile", "sort", "--vocab", "a,b"], "bad vocab 'a,b': ['a', 'b'] are not integers"),
        (["compile", "sort", "--vocab", "1,,2"], "bad vocab '1,,2': give tokens separated by commas"),
        (["compile", "hist", "--vocab", "a,b,a"], "bad vocab 'a,b,a': a given more than once"),
        (["compile", "sort", "--max-seq-len", "0"], "--max-seq-len must be at least 1"),
        (["compile", "sort", "--out", "model.pt"], "--out 'model.pt': name the file *.npz or *.safetensors"),
        (["compile", "sort", "--leak", "2"], "leak must be a bound strictly between 0 and 1"),
        (["compile", "nosuch"], "unknown zoo program 'nosuch'"),
    ],
)
def test_compile_errors(capsys, argv, message):
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == ""
    assert message in err


def test_parse_vocab_types():
    assert cli.parse_vocab("1, 2,3") == {1, 2, 3}
    assert cli.parse_vocab("a b c") == {"a", "b", "c"}
    assert cli.parse_vocab("a,1") == {"a", 1}
    assert cli.parse_vocab("1,2", like=frozenset("abc")) == {"1", "2"}
    assert cli.parse_vocab("-1,2", like=frozenset({3})) == {-1, 2}


# ------------------------------------------------------------------ explain


def test_explain_conjunction(capsys):
    code, out, err = run(capsys, "explain", "tokens==tokens & indices<indices", "--vocab", "a,b", "--max-seq-len", "8")
    assert code == 0 and err == ""
    selector = rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.EQ) & rasp.Select(
        rasp.indices, rasp.indices, rasp.Comparison.LT)
    expected = analyze(selector, vocab={"a", "b"}, max_seq_len=8)
    assert expected.fits_one_head
    assert out.splitlines()[0] == "selector:  tokens==tokens & indices<indices"
    assert out.rstrip("\n").endswith(expected.describe())
    assert "fits one head with factored one-hots (a conjunction" in out


def test_explain_or_not(capsys):
    """Free: a broken rectangle. Program: every pair an input realises is selected (the same
    position has the same token; other positions differ in index), so one head fits."""
    selector = rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.LEQ) | ~rasp.Select(
        rasp.indices, rasp.indices, rasp.Comparison.EQ)
    code, out, _ = run(capsys, "explain", "(tokens<=tokens) | ~(indices==indices)", "--domain", "product")
    expected = analyze(selector, vocab={1, 2, 3}, max_seq_len=5, domain="product")
    assert code == 0 and not expected.fits_one_head
    assert out.rstrip("\n").endswith(expected.describe())
    assert "does NOT fit one factored head" in out and "cheapest encoding that fits: product_both" in out
    code, out, _ = run(capsys, "explain", "(tokens<=tokens) | ~(indices==indices)")
    program = analyze(selector, vocab={1, 2, 3}, max_seq_len=5)  # the defaults
    assert code == 0 and program.fits_one_head and program.question == "program"
    assert out.rstrip("\n").endswith(program.describe())
    assert "the program question" in out and "fits one head with factored one-hots" in out


def test_selector_language_builds_the_right_selects():
    s = cli.parse_selector("tokens<indices")
    assert isinstance(s, rasp.Select)
    assert (s.keys, s.queries, s.predicate) == (rasp.tokens, rasp.indices, rasp.Comparison.LT)  # key on the left
    for text, name in [("==", "EQ"), ("!=", "NEQ"), ("<", "LT"), ("<=", "LEQ"), (">", "GT"), (">=", "GEQ")]:
        assert cli.parse_selector(f"indices{text}length").predicate is rasp.Comparison[name]
    assert cli.parse_selector("true").predicate is rasp.Comparison.TRUE
    # ~ binds tightest, then &, then |: same labels as the expression built by hand
    a = rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.EQ)
    b = rasp.Select(rasp.indices, rasp.indices, rasp.Comparison.LT)
    c = rasp.Select(rasp.tokens, rasp.indices, rasp.Comparison.GT)
    parsed = cli.parse_selector("tokens==tokens | ~indices<indices & tokens>indices")
    assert parsed.label == (a | (~b & c)).label
    assert cli.parse_selector("((tokens==tokens | indices<indices)) & tokens>indices").label == ((a | b) & c).label
    assert cli.parse_selector("~~tokens==tokens").label == (~~a).label


@pytest.mark.parametrize(
    "text, position, message",
    [
        ("tokens = tokens", 7, "unexpected character '='"),
        ("tokens == ", 10, "expected an SOp (tokens, indices or length), got the end"),
        ("tokens<foo", 7, "unknown SOp (known: tokens, indices, length), got 'foo'"),
        ("(tokens<indices", 15, "expected ')' to close the '(' at position 0"),
        ("tokens<indices)", 14, "expected &, | or the end of the expression, got ')'"),
        ("tokens indices", 7, "expected a comparison (==, !=, <, <=, >, >=), got 'indices'"),
        ("tokens<indices & | x", 17, "expected a selector"),
        ("", 0, "expected a selector such as tokens==tokens"),
        ("__import__('os').system('true')", 11, "unexpected character \"'\""),
        ("tokens<indices; 1", 14, "unexpected character ';'"),
    ],
)
def test_parse_errors_show_the_position(capsys, text, position, message):
    with pytest.raises(cli.SelectorSyntaxError) as info:
        cli.parse_selector(text)
    assert info.value.position == position and message in str(info.value)
    code, out, err = run(capsys, "explain", text)
    assert code == 2 and out == ""
    assert f"can't parse selector at position {position}: {message}" in err
    caret = err.rstrip("\n").splitlines()[-1]
    assert caret == "  " + " " * position + "^"


def test_explain_mixed_types_error(capsys):
    code, _, err = run(capsys, "explain", "tokens<indices", "--vocab", "a,b")
    assert code == 2 and "use an integer vocabulary" in err


# ------------------------------------------------------------------ plot


def test_plot_without_viz_says_how_to_install(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "rasp_lab.viz", None)  # as if rasp_lab.viz / matplotlib were missing
    code, out, err = run(capsys, "plot", "qk", "sort", "--layer", "1", "--head", "0")
    assert code == 2 and out == ""
    assert "pip install 'rasp-lab[viz]'" in err


def test_plot_delegates_to_viz(capsys, monkeypatch, tmp_path):
    calls = []

    def record(name):
        return lambda *args, **kwargs: calls.append((name, args, kwargs))

    fake = types.ModuleType("rasp_lab.viz")
    for name in ("plot_program_graph", "plot_attention", "plot_qk_table", "plot_residual", "plot_composition_growth"):
        setattr(fake, name, record(name))
    monkeypatch.setitem(sys.modules, "rasp_lab.viz", fake)
    out_path = str(tmp_path / "a.png")

    assert run(capsys, "plot", "attention", "sort", "3 1 2", "--layer", "1", "--head", "0", "--out", out_path)[:2] == (
        0, f"wrote {out_path}\n")
    name, (model, tokens, layer, head, path), _ = calls[-1]
    assert (name, tokens, layer, head, path) == ("plot_attention", [3, 1, 2], 1, 0, out_path)
    assert isinstance(model, rasp_lab.CompiledModel) and model.name == "sort"

    assert run(capsys, "plot", "qk", "sort", "--layer", "2", "--head", "sort")[0] == 0
    assert calls[-1][0] == "plot_qk_table" and calls[-1][1][1:] == (2, "sort", "qk.png")
    assert run(capsys, "plot", "residual", "reverse", "a", "b", "--layer", "1")[0] == 0
    assert calls[-1][0] == "plot_residual" and calls[-1][1][1:] == (["a", "b"], "residual.png")
    assert calls[-1][2] == {"layer": 1}
    assert run(capsys, "plot", "graph", "sort")[0] == 0
    assert calls[-1][0] == "plot_program_graph" and calls[-1][1][0].name == "sort"
    assert run(capsys, "plot", "growth", "--out", out_path)[0] == 0
    assert calls[-1] == ("plot_composition_growth", (out_path,), {})

    code, _, err = run(capsys, "plot", "attention", "sort", "3 9", "--layer", "1", "--head", "0")
    assert code == 2 and "unknown token(s) ['9']" in err
    code, _, err = run(capsys, "plot", "graph", "missing.npz")
    assert code == 2 and "no model file at 'missing.npz'" in err


def test_plot_graph_of_a_saved_model(capsys, tmp_path):
    """The help says PROGRAM may be a saved model file: its graph is read from the weights."""
    model_path, out_path = tmp_path / "sort.npz", tmp_path / "graph.png"
    assert run(capsys, "compile", "sort", "--out", str(model_path))[0] == 0
    code, out, err = run(capsys, "plot", "graph", str(model_path), "--out", str(out_path))
    assert (code, out, err) == (0, f"wrote {out_path}\n", "")
    data = out_path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


# ------------------------------------------------------------------ help and usage


@pytest.mark.parametrize(
    "argv",
    [[], ["list"], ["run"], ["compile"], ["explain"], ["plot"], ["plot", "graph"], ["plot", "attention"],
     ["plot", "qk"], ["plot", "residual"], ["plot", "growth"]],
)
def test_help_everywhere(capsys, argv):
    code, out, _ = run(capsys, *argv, "--help")
    assert code == 0
    assert out.startswith(f"usage: rasp-lab {' '.join(argv)}".rstrip())
    assert "-h, --help" in out


def test_usage_errors_exit_2(capsys):
    code, out, err = run(capsys, "run")
    assert code == 2 and "the following arguments are required: program" in err
    code, out, err = run(capsys, "frobnicate")
    assert code == 2 and "invalid choice: 'frobnicate'" in err
    code, out, _ = run(capsys)
    assert code == 0 and out.startswith("usage: rasp-lab")


def test_installed_console_script():
    script = pathlib.Path(sys.executable).parent / "rasp-lab"
    assert script.exists(), "rasp-lab is not installed: pip install -e ."
    done = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: rasp-lab")
    for command in ("list", "run", "compile", "explain", "plot"):
        assert command in done.stdout


def test_list_has_vocab_length_and_size_columns(capsys):
    code, out, err = run(capsys, "list")
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert lines[0].split()[:6] == ["name", "vocab", "max_len", "SOps", "layers", "params"]
    sort = next(line for line in lines if line.startswith("sort "))
    # vocab 1..4, max_seq_len 5, 5 SOps; compiled: 3 layers, 7,837 parameters
    assert sort.split()[1:9] == ["1", "2", "3", "4", "5", "5", "3", "7,837"]
    entry = registry.get("sort")
    model = rasp_lab.compile(entry.build(), entry.vocab, entry.max_seq_len)
    assert (len(model.weights.layers), model.parameter_counts()["compact"]) == (3, 7837)


def test_show_a_zoo_program(capsys):
    code, out, err = run(capsys, "show", "sort")
    assert code == 0 and err == ""
    assert out.startswith("sort: ") and "vocab:       1 2 3 4" in out and "max_seq_len: 5" in out
    assert "examples:\n  " in out and "  sort                         Aggregate (categorical) of " in out
    code, out, err = run(capsys, "show", "srot")
    assert code == 2 and "did you mean 'sort'?" in err
