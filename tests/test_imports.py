"""rasp_lab's modules import one way: no import circle, lazy imports inside functions
included (a lazy import hides a circle from Python, not from a reader). Imports under
`if TYPE_CHECKING:` are for annotations only and do not count."""

import ast
import pathlib

import networkx as nx

ROOT = pathlib.Path(__file__).resolve().parent.parent

KNOWN_CIRCLES: set[frozenset[str]] = set()
"""Circles left to untangle (none now): each entry would name its modules."""


def _module_names() -> dict[str, pathlib.Path]:
    names = {}
    for path in (ROOT / "rasp_lab").rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names[".".join(parts)] = path
    return names


def _runtime_imports(tree: ast.AST) -> list[ast.AST]:
    """Import statements outside `if TYPE_CHECKING:` blocks."""
    found = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def import_graph() -> nx.DiGraph:
    modules = _module_names()
    graph = nx.DiGraph()
    graph.add_nodes_from(modules)
    for name, path in modules.items():
        for node in _runtime_imports(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif node.level == 0 and node.module:
                # `from pkg import sub` imports pkg and, if it is a module, pkg.sub
                targets = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            else:
                continue
            for target in targets:
                # a module importing the package it sits in is Python's own order of import
                if target in modules and target != name and not name.startswith(target + "."):
                    graph.add_edge(name, target)
    return graph


def test_the_graph_sees_lazy_imports():
    graph = import_graph()
    assert graph.has_edge("rasp_lab.compiler.model", "rasp_lab.model_format")
    assert graph.has_edge("rasp_lab.export", "rasp_lab.compiler.model")
    assert graph.has_edge("rasp_lab.compiler.model", "rasp_lab.certificate")  # imported inside a method


def test_no_import_circle():
    circles = {frozenset(cycle) for cycle in nx.simple_cycles(import_graph())}
    unexpected = circles - KNOWN_CIRCLES
    assert not unexpected, f"import circles: {sorted(sorted(c) for c in unexpected)}"
    assert KNOWN_CIRCLES <= circles, "a known circle is gone: take it off KNOWN_CIRCLES"


def test_the_model_file_format_sits_below_the_model():
    graph = import_graph()
    assert "rasp_lab.compiler.model" not in nx.descendants(graph, "rasp_lab.model_format")
    assert "rasp_lab.export" not in nx.descendants(graph, "rasp_lab.compiler.model")


def test_the_language_imports_nothing_above_it():
    graph = import_graph()
    language = {name for name in graph if name == "rasp_lab.rasp" or name.startswith("rasp_lab.rasp.")}
    below = {"rasp_lab.fingerprint"}
    for module in language:
        assert set(graph.successors(module)) <= language | below, module
    assert "rasp_lab.rasp.evaluator" not in nx.descendants(graph, "rasp_lab.rasp.expr")


def test_names_of_layers_are_written_in_one_module():
    """haiku keys, block names, TransformerLens hooks and file arrays: rasp_lab/naming.py."""
    import re

    pattern = re.compile(r'f"(?:transformer/layer_\{|layer_\{\w+\}[./]|blocks\.\{)')
    offenders = []
    for path in (ROOT / "rasp_lab").rglob("*.py"):
        if path.name == "naming.py":
            continue
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            if pattern.search(line) and "@" not in line:  # an error message naming a product is fine
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not offenders, "\n".join(offenders)
