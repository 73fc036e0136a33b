"""Tracr's `compiler/lib.py` under Tracr's module path: `from rasp_lab.compiler import lib`.

The programs themselves live in the zoo (programs/tracr_library.py, installed as
rasp_lab.programs.tracr_library), with every name Tracr's library has.
"""

from rasp_lab.programs.tracr_library import *  # noqa: F403  (Tracr's library names)
