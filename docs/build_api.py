"""Builds rasp_lab's API reference from its docstrings with pdoc (the `docs` extra).

    python docs/build_api.py [OUT] [--strict]      # OUT defaults to build/api

Open OUT/index.html. pdoc given only `rasp_lab` would document just the submodules its
`__all__` names, so every public module (no `_` in its name) is passed instead. A module
whose optional dependencies are missing (rasp_lab.tl_export without torch) is left out with
a note; `--strict` (CI) fails instead.
"""

import argparse
import importlib
import pathlib
import pkgutil
import sys
import warnings

import pdoc
import pdoc.render

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # this checkout's rasp_lab, whatever is installed


def public_modules() -> list[str]:
    """rasp_lab and its public modules; rasp_lab.programs installs from programs/ (package-dir)."""
    import rasp_lab

    names = ["rasp_lab", "rasp_lab.programs"]
    for info in pkgutil.walk_packages(rasp_lab.__path__, "rasp_lab."):
        if info.name not in names and not any(part.startswith("_") for part in info.name.split(".")):
            names.append(info.name)
    return names


def build(out: pathlib.Path, strict: bool = False) -> list[str]:
    """Writes the reference into `out`; returns the modules it documents."""
    modules = []
    for name in public_modules():
        try:
            importlib.import_module(name)
        except ImportError as error:
            if strict:
                raise
            print(f"build_api: leaving out {name}: {error}", file=sys.stderr)
            continue
        modules.append(name)
    pdoc.render.configure(docformat="markdown", footer_text="rasp_lab API reference")
    with warnings.catch_warnings():
        # pdoc walks a package's submodules too, and warns that each listed one comes twice.
        warnings.filterwarnings("ignore", message="The module specification .* adds a module named")
        pdoc.pdoc(*modules, output_directory=out)
    return modules


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", type=pathlib.Path, default=ROOT / "build" / "api")
    parser.add_argument("--strict", action="store_true", help="fail when a module can't be imported")
    args = parser.parse_args(argv)
    modules = build(args.out, args.strict)
    print(f"{len(modules)} modules documented in {args.out}")


if __name__ == "__main__":
    main()
