"""Collects README.md and docs/*.md as tests: tests/docs_sybil.py says how."""

import pathlib
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent / "tests"))

import docs_sybil  # noqa: E402

pytest_collect_file = docs_sybil.DOCS.pytest()


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items):
    """Runs before `-m "not slow"` deselects, so the slow documents' marks count."""
    docs_sybil.mark_documents(items)
