"""Every python code block in docs/*.md runs, in order, in one namespace per page."""

import pathlib
import re

import pytest

DOCS = pathlib.Path(__file__).resolve().parent.parent / "docs"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)
PAGES = sorted(DOCS.glob("*.md"))


def test_there_are_pages_with_code():
    assert any(BLOCK.search(page.read_text()) for page in PAGES)


@pytest.mark.slow
@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_page_runs(page):
    namespace: dict = {"__name__": f"docs_{page.stem}"}
    for number, block in enumerate(BLOCK.findall(page.read_text()), start=1):
        code = compile(block, f"{page.name} block {number}", "exec")
        exec(code, namespace)


def test_selector_tables_are_up_to_date():
    """docs/selector_composition.md's tables are what the analysis decides today."""
    import runpy

    script = runpy.run_path(str(DOCS / "make_selector_tables.py"))
    page = DOCS / "selector_composition.md"
    assert script["render"](page.read_text()) == page.read_text()
