"""The docs test itself: README.md and docs/*.md run as Sybil documents (tests/docs_sybil.py,
collected by the root conftest.py); here, that the runner fails where the docs drift, that
every block is collected, and the docs' other checks (needs markers, selector tables)."""

import html
import importlib
import inspect
import os
import pathlib
import re
import runpy
import subprocess
from types import SimpleNamespace

import docs_sybil
import pytest
from sybil.example import SybilFailure

ROOT = docs_sybil.ROOT
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCED = re.compile(r"^```(\w*)\n.*?^```$", re.DOTALL | re.MULTILINE)


def run_document(tmp_path, text: str) -> None:
    """Evaluates a markdown text the way pytest runs a document: setup, blocks in order, teardown."""
    path = tmp_path / "page.md"
    path.write_text(text)
    document = docs_sybil.DOCS.parse(path)
    docs_sybil.setup(document.namespace)
    try:
        for example in document.examples():
            example.evaluate()
    finally:
        docs_sybil.teardown(document.namespace)


@pytest.fixture
def rasp_lab_calls(monkeypatch):
    """Records the rasp_lab commands a block would run, each succeeding with no output."""
    calls = []

    def fake_run(arguments, workdir):
        calls.append(arguments)
        return subprocess.CompletedProcess(arguments, 0, stdout="", stderr="")

    monkeypatch.setattr(docs_sybil, "run_rasp_lab", fake_run)
    return calls


# ------------------------------------------------------------------ collection


@pytest.mark.parametrize("document", DOCUMENTS, ids=[d.name for d in DOCUMENTS])
def test_every_python_and_bash_block_is_an_example(document):
    """A block in another language (```sh, ```console) would silently go unchecked."""
    languages = FENCED.findall(document.read_text())
    assert set(languages) <= {"python", "bash", "text", ""}, document.name
    examples = list(docs_sybil.DOCS.parse(document).examples())
    assert len(examples) == sum(language in ("python", "bash") for language in languages)
    assert docs_sybil.DOCS.should_parse(document)


def test_slow_documents_exist():
    """A renamed page would otherwise run in the default run without anyone deciding so."""
    for name in docs_sybil.SLOW_DOCUMENTS:
        assert (ROOT / name).is_file(), name


class FakeItem:
    def __init__(self, path=None):
        self.example = SimpleNamespace(path=str(path)) if path else None
        self.marks = []

    def add_marker(self, marker):
        self.marks.append((marker.mark.name, marker.mark.args))


def test_documents_stay_on_one_worker_and_slow_ones_are_marked():
    """A document's blocks share a namespace, so xdist must not split them across workers:
    `--dist loadfile` keeps a file on one worker (CI's slow run uses -n 2)."""
    import tomllib

    addopts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]["addopts"]
    assert "--dist loadfile" in addopts
    readme, lesson_2, other = (
        FakeItem(ROOT / "README.md"),
        FakeItem(ROOT / "docs" / "lesson_2_attention_heads.md"),
        FakeItem(),
    )
    docs_sybil.mark_documents([readme, lesson_2, other])
    assert readme.marks == [("slow", ())]
    assert lesson_2.marks == []
    assert other.marks == []


# ------------------------------------------------------------------ python blocks


def test_python_blocks_share_a_namespace_in_order(tmp_path):
    run_document(tmp_path, "```python\nx = 41\n```\n\ntext\n\n```python\nassert x + 1 == 42\n```\n")


def test_a_failing_python_block_names_the_document_line(tmp_path):
    with pytest.raises(ZeroDivisionError) as failure:
        run_document(tmp_path, "# Page\n\n```python\nx = 1\ny = x / 0\n```\n")
    entry = failure.traceback[-1]
    assert (pathlib.Path(str(entry.path)).name, entry.lineno + 1) == ("page.md", 5)


def test_blocks_run_in_a_temporary_directory(tmp_path):
    """`model.save("frac.npz")` in the README must not write into the checkout."""
    before = pathlib.Path.cwd()
    run_document(
        tmp_path,
        "```python\nimport os, pathlib\npathlib.Path('f.txt').write_text('x')\n"
        "assert pathlib.Path.cwd() == pathlib.Path(__workdir__)\n```\n",
    )
    assert pathlib.Path.cwd() == before and not (before / "f.txt").exists()


# ------------------------------------------------------------------ needs markers


def test_needs_marker_above_a_block_skips_it_without_the_module(tmp_path, monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    text = "```python\nx = 1\n```\n\n<!-- needs: no_such_module_rl -->\n```python\nimport no_such_module_rl\n```\n"
    with pytest.raises(pytest.skip.Exception, match="page.md, line 6 needs no_such_module_rl"):
        run_document(tmp_path, text)


def test_needs_marker_fails_under_ci(tmp_path, monkeypatch):
    monkeypatch.setenv("CI", "true")
    with pytest.raises(ModuleNotFoundError, match="no_such_module_rl"):
        run_document(tmp_path, "<!-- needs: no_such_module_rl -->\n# Page\n\n```python\nx = 1\n```\n")


def test_needs_markers_name_the_tl_extras_modules():
    """Lesson 5 (its first line) and the README's two TransformerLens blocks need torch; a
    typo would run them without it (and fail), a marker elsewhere would hide a page."""
    tl = ["torch", "transformer_lens"]
    marked = {}
    for document in DOCUMENTS:
        for example in docs_sybil.DOCS.parse(document).examples():
            needs = docs_sybil.needed_modules(example)
            if needs:
                assert needs == tl, (document.name, example.line)
                marked[document.name] = marked.get(document.name, 0) + 1
    assert marked == {"README.md": 2, "lesson_5_circuit_discovery.md": 13}


# ------------------------------------------------------------------ bash blocks


def test_bash_block_runs_rasp_lab_commands_and_skips_allow_listed_lines(tmp_path, rasp_lab_calls):
    """The README's first block: the venv and install parts are shown, the CLI call runs."""
    first = (ROOT / "README.md").read_text().split("```bash\n", 1)[1].split("```", 1)[0]
    run_document(
        tmp_path,
        f"```bash\n{first}```\n\n```bash\nrasp-lab list   # the zoo (`python -m rasp_lab list` works too)\n"
        'python -m rasp_lab explain "tokens==tokens & indices<indices" --vocab a,b\n```\n',
    )
    assert rasp_lab_calls == [
        ["run", "sort", "3", "1", "2"],
        ["list"],
        ["explain", "tokens==tokens & indices<indices", "--vocab", "a,b"],
    ]


@pytest.mark.parametrize(
    "line",
    [
        "pip install -e '.[dev]'",
        "python3 -m venv .venv && . .venv/bin/activate",
        "pytest --rasp-exhaustive   # runs it",
        "python -m pytest -q",
        "python benchmarks/compare_tracr.py --json benchmarks/results/compare_tracr.json",
    ],
)
def test_allow_listed_lines_are_not_run(tmp_path, rasp_lab_calls, line):
    run_document(tmp_path, f"```bash\n{line}\n```\n")
    assert rasp_lab_calls == []


@pytest.mark.parametrize(
    ("line", "complaint"),
    [
        ("curl https://example.com", "`curl https://example.com` is neither a rasp-lab command"),
        ("pip install x && rm -rf build", "`rm -rf build` is neither"),
        ("python benchmarks/../setup.py", "is neither"),
        ("rasp-lab list | head", "shell operator '|' is not supported"),
    ],
)
def test_other_shell_lines_fail_naming_document_line_and_command(tmp_path, rasp_lab_calls, line, complaint):
    with pytest.raises(SybilFailure, match=re.escape("page.md, line 4: `")) as failure:
        run_document(tmp_path, f"# Page\n\n```bash\n{line}\n```\n")
    assert complaint in str(failure.value)
    assert rasp_lab_calls == []


def test_a_failing_command_fails_its_block(tmp_path):
    """Really run: `show` of an unknown program exits 2, which names document, line and command."""
    with pytest.raises(SybilFailure) as failure:
        run_document(tmp_path, "```bash\nrasp-lab show no_such_program   # a typo\n```\n")
    message = str(failure.value)
    assert "page.md, line 2: `rasp-lab show no_such_program` exited with 2" in message
    assert "no_such_program" in message.split("exited with 2", 1)[1]


def test_session_blocks_compare_the_output(tmp_path, monkeypatch):
    def fake_run(arguments, workdir):
        return subprocess.CompletedProcess(arguments, 0, stdout=" ".join(arguments) + "\n", stderr="")

    monkeypatch.setattr(docs_sybil, "run_rasp_lab", fake_run)
    run_document(tmp_path, "```bash\n$ rasp-lab run sort 1\nrun sort 1\n$ rasp-lab list\nlist\n```\n")
    with pytest.raises(
        SybilFailure, match=r"line 4: `rasp-lab list` printed\nlist\nbut the block shows\nlist all"
    ):
        run_document(tmp_path, "```bash\n$ rasp-lab run sort 1\nrun sort 1\n$ rasp-lab list\nlist all\n```\n")


def test_shell_commands_split_a_session_into_commands_and_output():
    source = "$ rasp-lab list\nsort  vocab\nhist  vocab\n\n$ rasp-lab show sort\n"
    assert docs_sybil.shell_commands(source, 10) == [
        (10, "rasp-lab list", ["sort  vocab", "hist  vocab", ""]),
        (14, "rasp-lab show sort", []),
    ]
    assert docs_sybil.shell_commands("rasp-lab list\n\nrasp-lab show sort\n", 3) == [
        (3, "rasp-lab list", None),
        (5, "rasp-lab show sort", None),
    ]


# ------------------------------------------------------------------ generated tables


def test_selector_tables_are_up_to_date():
    """docs/selector_composition.md's tables are what the analysis decides today."""
    script = runpy.run_path(str(ROOT / "docs" / "make_selector_tables.py"))
    page = ROOT / "docs" / "selector_composition.md"
    assert script["render"](page.read_text()) == page.read_text()


# ------------------------------------------------------------------ API reference


def page_text(path: pathlib.Path) -> str:
    return " ".join(html.unescape(re.sub(r"<[^>]+>", "", path.read_text())).split())


@pytest.mark.slow
def test_api_reference_builds_from_the_docstrings(tmp_path):
    """docs/build_api.py (CI runs it) writes a page per public module, showing its docstrings."""
    if os.environ.get("CI"):
        importlib.import_module("pdoc")
    else:
        pytest.importorskip("pdoc", reason="the docs extra")
    out = tmp_path / "api"
    modules = runpy.run_path(str(ROOT / "docs" / "build_api.py"))["build"](out)
    assert {
        "rasp_lab",
        "rasp_lab.compiling",
        "rasp_lab.selectors",
        "rasp_lab.testing",
        "rasp_lab.programs",
    } <= set(modules)
    for name in modules:
        assert (out / (name.replace(".", "/") + ".html")).is_file(), name
    assert (out / "index.html").is_file() and (out / "search.js").is_file()

    import rasp_lab
    from rasp_lab import compiling, selectors, testing

    for page, obj in [
        ("rasp_lab.html", rasp_lab),
        ("rasp_lab/compiling.html", compiling.compile),
        ("rasp_lab/selectors.html", selectors.analyze),
        ("rasp_lab/testing.html", testing.assert_compiles_exactly),
    ]:
        first_line = inspect.getdoc(obj).splitlines()[0].replace("`", "")
        assert first_line in page_text(out / page), (page, first_line)
