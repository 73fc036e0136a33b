"""The docs as tests: Sybil runs the code blocks of README.md and docs/*.md.

The root conftest.py collects each document as a pytest file with one test per block, run in
order; blocks of one document share a namespace and a temporary working directory.

- ```python blocks run as Python.
- ```bash blocks: every `rasp-lab ...` / `python -m rasp_lab ...` command runs (with this
  interpreter, so no console script is needed) and must exit 0; `&&` separates commands on a
  line, `#` starts a comment. A block written as a session (`$ command` lines, each followed by
  its output) must print that output too. Any other command must match an entry of NOT_RUN,
  which says why it is shown but not run: a new kind of shell line fails until someone decides.
- `<!-- needs: module ... -->` as a page's first line (for every block) or on the line just
  above a block (for that block) skips it where a module is missing, except under CI (the CI
  environment variable set), which installs them all: there a missing module fails.
"""

import importlib
import os
import pathlib
import re
import shlex
import shutil
import subprocess
import sys
import tempfile

import pytest
from sybil import Sybil
from sybil.evaluators.python import PythonEvaluator
from sybil.parsers.markdown import CodeBlockParser

ROOT = pathlib.Path(__file__).resolve().parent.parent
NEEDS = re.compile(r"<!-- needs: ([\w. ]+) -->")

# Shell lines shown to the reader but not run by the docs test, each with the reason.
NOT_RUN = [
    (re.compile(r"python3? -m venv \S+"), "creates a virtual environment"),
    (re.compile(r"(\.|source) \S+/bin/activate"), "activates a virtual environment"),
    (re.compile(r"pip install .+"), "installs packages"),
    (re.compile(r"(python -m )?pytest( .+)?"), "runs the test suite, which runs these docs"),
    (
        re.compile(r"python benchmarks/\w+\.py( .+)?"),
        "runs a benchmark for minutes (tests/test_benchmarks.py runs each one small)",
    ),
]

# Documents whose blocks take more than about 5 s, left out of the default run like the other
# slow tests (seconds on a busy 2-core machine); the others (benchmarks.md 1 s, certificate.md
# 2 s, lesson_2 5 s) run by default.
SLOW_DOCUMENTS = {
    "README.md": "19 s, 13 s of them the command line block",
    "docs/lesson_1_first_program.md": "13 s",
    "docs/lesson_3_selector_compositions.md": "9 s",
    "docs/lesson_5_circuit_discovery.md": "needs torch; edge patching",
    "docs/property_checks.md": "14 s",
    "docs/selector_composition.md": "6 s",
}

COMMAND_TIMEOUT = 600


def _where(example, line: int) -> str:
    path = pathlib.Path(example.path)
    name = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path.name
    return f"{name}, line {line}"


def needed_modules(example) -> list[str]:
    """The modules named by the page's needs marker and by one right above this block."""
    text = example.document.text
    modules = []
    page = NEEDS.match(text)
    if page:
        modules += page.group(1).split()
    above = text[: example.start].rstrip("\n").rpartition("\n")[2]
    block = NEEDS.fullmatch(above.strip())
    if block:
        modules += block.group(1).split()
    return modules


def require_needed_modules(example) -> None:
    for module in needed_modules(example):
        if os.environ.get("CI"):
            importlib.import_module(module)
        else:
            reason = f"{_where(example, example.line)} needs {module}, which is not installed"
            pytest.importorskip(module, reason=reason)


_python = PythonEvaluator()


def evaluate_python(example) -> None:
    require_needed_modules(example)
    _python(example)


def shell_commands(source: str, first_line: int) -> list[tuple[int, str, list[str] | None]]:
    """(line number, command line, expected output or None) for each command of a bash block.

    In a session block (some line starts with `$ `) the lines after a command, up to the next
    `$ `, are its expected output; otherwise every non-blank line is a command.
    """
    lines = source.splitlines()
    session = any(line.startswith("$ ") for line in lines)
    commands: list[tuple[int, str, list[str] | None]] = []
    for number, line in enumerate(lines, start=first_line):
        if not session:
            if line.strip():
                commands.append((number, line, None))
        elif line.startswith("$ "):
            commands.append((number, line[2:], []))
        elif commands:
            commands[-1][2].append(line)
        elif line.strip():
            raise ValueError(f"line {number}: output before the first `$ ` command")
    return commands


def split_commands(line: str) -> list[list[str]]:
    """The argument lists of the `&&`-separated commands of one shell line, comment dropped."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    commands: list[list[str]] = [[]]
    for token in lexer:
        if token == "&&":
            commands.append([])
        elif set(token) <= set("();<>|&"):
            raise ValueError(f"shell operator {token!r} is not supported (only `&&` is)")
        else:
            commands[-1].append(token)
    return [argv for argv in commands if argv]


def rasp_lab_arguments(argv: list[str]) -> list[str] | None:
    """The CLI arguments when argv runs rasp_lab's command line, else None."""
    if argv[0] == "rasp-lab":
        return argv[1:]
    if argv[0] in ("python", "python3") and argv[1:3] == ["-m", "rasp_lab"]:
        return argv[3:]
    return None


def not_run_reason(argv: list[str]) -> str | None:
    command = shlex.join(argv)
    return next((why for pattern, why in NOT_RUN if pattern.fullmatch(command)), None)


def run_rasp_lab(arguments: list[str], workdir: str) -> subprocess.CompletedProcess:
    """Runs `python -m rasp_lab` from this checkout, whatever is installed."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    return subprocess.run(
        [sys.executable, "-m", "rasp_lab", *arguments],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
    )


def evaluate_bash(example) -> str | None:
    """Runs the block's rasp_lab commands; returns what went wrong, naming document and line."""
    require_needed_modules(example)
    workdir = example.namespace["__workdir__"]
    for number, line, expected in shell_commands(example.parsed, example.line + 1):
        where = _where(example, number)
        try:
            commands = split_commands(line)
        except ValueError as error:
            return f"{where}: `{line}`: {error}"
        for argv in commands:
            shown = shlex.join(argv)
            arguments = rasp_lab_arguments(argv)
            if arguments is None:
                if not_run_reason(argv) is None:
                    return (
                        f"{where}: `{shown}` is neither a rasp-lab command nor a line the docs "
                        "test may skip: run it or add a pattern to NOT_RUN in tests/docs_sybil.py"
                    )
                continue
            result = run_rasp_lab(arguments, workdir)
            if result.returncode != 0:
                return f"{where}: `{shown}` exited with {result.returncode}:\n{result.stderr}"
            if expected is not None:
                got = [out.rstrip() for out in result.stdout.rstrip("\n").splitlines()]
                want = [out.rstrip() for out in "\n".join(expected).rstrip("\n").splitlines()]
                if got != want:
                    return (
                        f"{where}: `{shown}` printed\n"
                        + "\n".join(got)
                        + "\nbut the block shows\n"
                        + "\n".join(want)
                    )
    return None


def setup(namespace: dict) -> None:
    """Gives a document's blocks a working directory of their own (for `--out sort.npz`)."""
    namespace["__name__"] = "docs"
    namespace["__cwd__"] = os.getcwd()
    namespace["__workdir__"] = tempfile.mkdtemp(prefix="rasp_lab_docs_")
    os.chdir(namespace["__workdir__"])


def teardown(namespace: dict) -> None:
    os.chdir(namespace["__cwd__"])
    shutil.rmtree(namespace["__workdir__"], ignore_errors=True)


DOCS = Sybil(
    parsers=[
        CodeBlockParser(language="python", evaluator=evaluate_python),
        CodeBlockParser(language="bash", evaluator=evaluate_bash),
    ],
    patterns=["README.md", "docs/*.md"],
    path=str(ROOT),
    setup=setup,
    teardown=teardown,
)


def mark_documents(items) -> None:
    """Marks the slow documents' blocks slow.

    A document's blocks share a namespace, so they must run in order in one process:
    `--dist loadfile` (pyproject.toml's addopts) keeps each file, a document included, on one
    pytest-xdist worker. (xdist_group marks under `--dist loadgroup` did not: pytest-xdist's
    workers read them before this conftest's hooks added them.)
    """
    for item in items:
        example = getattr(item, "example", None)
        if example is None or not DOCS.should_parse(pathlib.Path(example.path)):
            continue
        name = pathlib.Path(example.path).relative_to(ROOT).as_posix()
        if name in SLOW_DOCUMENTS:
            item.add_marker(pytest.mark.slow)
