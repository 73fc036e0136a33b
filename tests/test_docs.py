"""Every python code block in docs/*.md runs, in order, in one namespace per page.

A page whose first line is `<!-- needs: module ... -->` (lesson 5 needs torch and
transformer_lens) is skipped with a reason where those modules are missing, except under CI,
which installs them: there a missing module fails the page.
"""

import importlib
import os
import pathlib
import re

import pytest

DOCS = pathlib.Path(__file__).resolve().parent.parent / "docs"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)
NEEDS = re.compile(r"\A<!-- needs: ([\w. ]+) -->")
PAGES = sorted(DOCS.glob("*.md"))


def test_there_are_pages_with_code():
    assert any(BLOCK.search(page.read_text()) for page in PAGES)


@pytest.mark.slow
@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_page_runs(page):
    text = page.read_text()
    needs = NEEDS.match(text)
    for module in needs.group(1).split() if needs else []:
        if os.environ.get("CI"):
            importlib.import_module(module)
        else:
            pytest.importorskip(module, reason=f"{page.name} needs {module} (the tl extra)")
    namespace: dict = {"__name__": f"docs_{page.stem}"}
    for number, block in enumerate(BLOCK.findall(text), start=1):
        code = compile(block, f"{page.name} block {number}", "exec")
        exec(code, namespace)


def test_needs_marker_names_the_lessons_modules():
    """Lesson 5's marker is what test_page_runs reads (a typo would run it without torch)."""
    page = DOCS / "lesson_5_circuit_discovery.md"
    assert NEEDS.match(page.read_text()).group(1).split() == ["torch", "transformer_lens"]
    assert not any(NEEDS.match(p.read_text()) for p in PAGES if p != page)


def test_selector_tables_are_up_to_date():
    """docs/selector_composition.md's tables are what the analysis decides today."""
    import runpy

    script = runpy.run_path(str(DOCS / "make_selector_tables.py"))
    page = DOCS / "selector_composition.md"
    assert script["render"](page.read_text()) == page.read_text()
