"""rasp_lab's pytest plugin, loaded automatically (entry point `rasp_lab`) wherever rasp_lab
is installed; disable it with `pytest -p no:rasp_lab`.

- `--rasp-exhaustive`: run the tests marked `@pytest.mark.rasp_exhaustive` (skipped
  otherwise), and turn on exhaustive mode, in which `assert_compiles_exactly` enumerates
  up to `rasp_lab.testing.EXHAUSTIVE_BUDGET` inputs instead of `DEFAULT_BUDGET`.
- the fixture `rasp_exhaustive`: True when the run has `--rasp-exhaustive`.

This module is imported by every pytest run in an environment with rasp_lab, so it imports
nothing heavy (no jax, no Hypothesis).
"""

from __future__ import annotations

import pytest

from rasp_lab import testing

OPTION = "--rasp-exhaustive"
MARKER = "rasp_exhaustive"
SKIP_REASON = f"slow RASP check marked {MARKER}: run pytest with {OPTION} to include it"

_previous_mode = pytest.StashKey[bool]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("rasp_lab", "rasp_lab property checks")
    group.addoption(
        OPTION,
        action="store_true",
        default=False,
        dest="rasp_exhaustive",
        help=f"run tests marked @pytest.mark.{MARKER} and let rasp_lab.testing.assert_compiles_exactly "
        f"enumerate up to {testing.EXHAUSTIVE_BUDGET} inputs (default {testing.DEFAULT_BUDGET})",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", f"{MARKER}: a slow exhaustive RASP check, skipped unless pytest runs with {OPTION}"
    )
    config.stash[_previous_mode] = testing.set_exhaustive_mode(bool(config.getoption("rasp_exhaustive")))


def pytest_unconfigure(config: pytest.Config) -> None:
    if _previous_mode in config.stash:
        testing.set_exhaustive_mode(config.stash[_previous_mode])


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("rasp_exhaustive"):
        return
    skip = pytest.mark.skip(reason=SKIP_REASON)
    for item in items:
        if item.get_closest_marker(MARKER) is not None:
            item.add_marker(skip)


@pytest.fixture
def rasp_exhaustive(request: pytest.FixtureRequest) -> bool:
    """Whether this run has --rasp-exhaustive (slow exhaustive checks on)."""
    return bool(request.config.getoption("rasp_exhaustive"))
