"""Tracr's `compiler/compiling.py` under Tracr's module path: `from rasp_lab.compiler import
compiling; compiling.compile_rasp_to_model(program, vocab, max_seq_len, compiler_bos=...)`.

The pipeline itself is rasp_lab/compiling.py.
"""

from rasp_lab.compiling import COMPILER_BOS, COMPILER_PAD, compile_rasp_to_model

__all__ = ["COMPILER_BOS", "COMPILER_PAD", "compile_rasp_to_model"]
