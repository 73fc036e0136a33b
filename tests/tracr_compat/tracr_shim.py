"""A name-only shim that runs Tracr code on rasp_lab: `tracr.X` is `rasp_lab.X`.

Loaded as a pytest plugin (`-p tracr_shim`) or imported, it installs an import hook before
anything imports Tracr. Every `tracr.<path>` module is rasp_lab's `rasp_lab.<path>`, the same
module object; nothing is renamed or adapted. Tracr's own test helpers (the test-case table,
the vector assertions and the basis type they use) are read from the installed Tracr package,
since they are part of Tracr's tests rather than of its API.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import pathlib
import sys
import types

TRACR_OWN = (
    "tracr.compiler.test_cases",
    "tracr.craft.tests_common",
    "tracr.craft.bases",
    "tracr.compiler.lib_tracr",
)
"""Tracr's test helpers, loaded from Tracr's files (their own imports go through the shim).
`tracr.compiler.lib_tracr` is Tracr's lib.py itself, under a name of its own."""


def tracr_dir() -> pathlib.Path | None:
    """The installed Tracr package's folder (found without importing it), or None."""
    spec = importlib.machinery.PathFinder.find_spec("tracr")
    if spec is None or not spec.submodule_search_locations:
        return None
    return pathlib.Path(list(spec.submodule_search_locations)[0])


class _Existing(importlib.abc.Loader):
    """Hands back an already imported rasp_lab module under Tracr's name."""

    def __init__(self, module: types.ModuleType) -> None:
        self.module = module

    def create_module(self, spec):
        return self.module

    def exec_module(self, module) -> None:
        pass


class TracrToRaspLab(importlib.abc.MetaPathFinder):
    def __init__(self, tracr_files: pathlib.Path | None) -> None:
        self.tracr_files = tracr_files

    def find_spec(self, name, path=None, target=None):
        if name != "tracr" and not name.startswith("tracr."):
            return None
        if name == "tracr":
            return importlib.machinery.ModuleSpec(name, _Existing(_package("tracr")), is_package=True)
        if name in TRACR_OWN or name.endswith("_test"):  # a helper, or one of Tracr's test files
            if self.tracr_files is None:
                raise ImportError(
                    f"{name} is one of Tracr's test helpers: install Tracr (pip install 'rasp-lab[bench]')"
                )
            relative = name.removeprefix("tracr.").replace(".", "/").replace("lib_tracr", "lib")
            return importlib.util.spec_from_file_location(name, self.tracr_files / f"{relative}.py")
        ours = "rasp_lab." + name.removeprefix("tracr.")
        try:
            module = importlib.import_module(ours)
        except ModuleNotFoundError as err:
            if err.name != ours:
                raise
            folder = (
                self.tracr_files / name.removeprefix("tracr.").replace(".", "/") if self.tracr_files else None
            )
            if folder is not None and folder.is_dir():  # a Tracr package without a rasp_lab counterpart
                return importlib.machinery.ModuleSpec(name, _Existing(_package(name)), is_package=True)
            raise ModuleNotFoundError(
                f"rasp_lab has no module {ours} (for Tracr's {name})", name=name
            ) from None
        if hasattr(module, "__path__"):
            return importlib.machinery.ModuleSpec(name, _Existing(_package(name, module)), is_package=True)
        return importlib.machinery.ModuleSpec(name, _Existing(module), is_package=False)


def _package(name: str, ours: types.ModuleType | None = None) -> types.ModuleType:
    """Tracr's package `name`: its submodules are found through the shim (so `from
    tracr.compiler import lib` finds rasp_lab.compiler.lib), its other names are rasp_lab's."""
    package = types.ModuleType(name, f"Tracr's {name} package, shimmed onto rasp_lab")
    package.__path__ = []

    def __getattr__(attr: str):
        if attr.startswith("__"):
            raise AttributeError(attr)
        try:
            return importlib.import_module(f"{name}.{attr}")
        except ModuleNotFoundError:
            if ours is not None and hasattr(ours, attr):
                return getattr(ours, attr)
            raise AttributeError(
                f"module {name!r} (rasp_lab's {getattr(ours, '__name__', None)}) has no attribute {attr!r}"
            ) from None

    package.__getattr__ = __getattr__
    return package


def install() -> None:
    """Put the shim in front of every other import hook (once); forget any Tracr already imported."""
    if any(isinstance(finder, TracrToRaspLab) for finder in sys.meta_path):
        return
    for name in [n for n in sys.modules if n == "tracr" or n.startswith("tracr.")]:
        del sys.modules[name]
    sys.meta_path.insert(0, TracrToRaspLab(tracr_dir()))


install()
