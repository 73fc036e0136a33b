"""A progress line for compiles that take a while, so a long compile is not a silent one.

`rasp_lab.compile(..., progress=None)` (the default) shows it on a terminal once a compile
has run for `DELAY` seconds; `progress=True` shows it anywhere (one line per stage when the
stream is not a terminal, e.g. a log or a notebook), `progress=False` never. The compiler
names each pass as it starts and reports counts inside the long ones (value-set inference
per SOp, selector planning per selector, the certificate per block).
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

DELAY = 2.0
"""Seconds a compile runs before the default (`progress=None`) starts showing progress."""

_WIDTH = 24


class Progress:
    """Reports the pipeline's stages on `stream`; cheap to call when it shows nothing."""

    def __init__(self, enabled: bool | None, what: str, stream: TextIO | None = None) -> None:
        if enabled is not None and not isinstance(enabled, bool):
            raise TypeError(
                f"progress must be True, False or None (show on a terminal after {DELAY:g} s), got {enabled!r}"
            )
        self.stream = sys.stderr if stream is None else stream
        self.terminal = bool(getattr(self.stream, "isatty", lambda: False)())
        self.enabled = enabled
        self.what = what
        self.start = time.perf_counter()
        self.stage_name = ""
        self.stage_start = self.start
        self.shown = False
        self.last_draw = 0.0
        self.last_text = ""

    def _showing(self, now: float) -> bool:
        if self.enabled is None:
            return self.terminal and now - self.start >= DELAY
        return self.enabled

    def stage(self, name: str) -> None:
        """A new pass starts."""
        now = time.perf_counter()
        if self.shown and not self.terminal and self.stage_name:
            self._line(f"{self.stage_name} done ({now - self.stage_start:.1f} s)")
        self.stage_name, self.stage_start = name, now
        self._draw(now, name)

    def step(self, done: int, total: int, detail: str = "") -> None:
        """`done` of `total` units of the current pass are finished."""
        now = time.perf_counter()
        if not self.terminal or now - self.last_draw < 0.1:
            return  # lines in a log only at stage boundaries; a terminal at most 10 times a second
        filled = _WIDTH * done // max(total, 1)
        bar = "#" * filled + "." * (_WIDTH - filled)
        self._draw(now, f"{self.stage_name} [{bar}] {done}/{total}" + (f" {detail}" if detail else ""))

    def close(self) -> None:
        """The compile ended (finished or raised): end the line, say how long it took."""
        if self.shown:
            now = time.perf_counter()
            if self.terminal:
                self.stream.write("\r" + " " * len(self.last_text) + "\r")
            self._line(f"done in {now - self.start:.1f} s")

    def _draw(self, now: float, text: str) -> None:
        if not self._showing(now):
            return
        self.last_draw = now
        self.shown = True
        if self.terminal:
            text = f"{self.what}: {text} ({now - self.start:.0f} s)"[:119]
            self.stream.write("\r" + text.ljust(len(self.last_text)))
            self.last_text = text
            self.stream.flush()
        else:
            self._line(text)

    def _line(self, text: str) -> None:
        self.stream.write(f"{self.what}: {text}\n")
        self.stream.flush()


class Silent(Progress):
    """A progress reporter that never shows anything (the passes' default)."""

    def __init__(self) -> None:
        super().__init__(False, "")
