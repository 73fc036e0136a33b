"""A non-editable install ships exactly the packages pyproject.toml lists: every package
folder must be listed, and the zoo must install as rasp_lab.programs, not as `programs`."""

import pathlib
import tomllib

ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_every_package_folder_is_listed():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    found = {
        ".".join(path.parent.relative_to(ROOT).parts)
        for path in (ROOT / "rasp_lab").rglob("__init__.py")
        if "__pycache__" not in path.parts
    }
    assert found <= listed, f"not shipped by a plain `pip install .`: {sorted(found - listed)}"
    assert config["package-dir"]["rasp_lab.programs"] == "programs"
    assert "programs" not in listed
