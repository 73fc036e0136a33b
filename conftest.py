"""Collects README.md and docs/*.md as tests: tests/docs_sybil.py says how."""

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent / "tests"))

import docs_sybil  # noqa: E402

pytest_collect_file = docs_sybil.DOCS.pytest()


def pytest_itemcollected(item):
    """Marks each document's slow blocks as they are collected, before `-m "not slow"`
    deselects."""
    docs_sybil.mark_documents([item])
