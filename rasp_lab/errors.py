"""Errors shared by the compiler and the selector analysis; imports nothing of rasp_lab, so
either side can raise them without importing the other."""

from __future__ import annotations


class CompileError(ValueError, NotImplementedError):
    """A program (or one expression of it) that can't be compiled; names the label. Also a
    NotImplementedError, which is what Tracr raises for a program it can't compile."""

    def __init__(self, label: str, message: str) -> None:
        super().__init__(f"{label}: {message}")
        self.label = label
