"""rasp_lab: compile RASP programs into the weights of real transformers, and check them."""

import importlib
from typing import TYPE_CHECKING

from rasp_lab import rasp
from rasp_lab.errors import CompileError
from rasp_lab.evaluator import EvaluationError, evaluate, trace
from rasp_lab.graph import LabelCollisionError, ProgramGraph, build_graph
from rasp_lab.validation import Problem, ValidationError, validate
from rasp_lab.value_sets import ValueSets, WorkLimitError, value_sets

# Names that need jax / haiku / scipy load on first use, so that `import rasp_lab` (and the
# pytest plugin rasp_lab.testing.plugin, loaded by every pytest run where rasp_lab is
# installed) stays light. Add further jax-importing names here, not as eager imports.
_LAZY = {
    "CompiledModel": "rasp_lab.compiler.model",
    "DecodingError": "rasp_lab.compiler.model",
    "compile": "rasp_lab.compiling",
    "compile_rasp_to_model": "rasp_lab.compiling",
    "ModelFileError": "rasp_lab.export",
    "certify": "rasp_lab.certificate",
    "CertificateWarning": "rasp_lab.certificate",
    "load": "rasp_lab.export",
}

if TYPE_CHECKING:
    from rasp_lab.certificate import CertificateWarning, certify
    from rasp_lab.compiler.model import CompiledModel, DecodingError
    from rasp_lab.compiling import compile, compile_rasp_to_model
    from rasp_lab.export import ModelFileError, load


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'rasp_lab' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "rasp",
    "compile",
    "compile_rasp_to_model",
    "CompiledModel",
    "CompileError",
    "DecodingError",
    "load",
    "certify",
    "CertificateWarning",
    "ModelFileError",
    "evaluate",
    "trace",
    "EvaluationError",
    "build_graph",
    "ProgramGraph",
    "LabelCollisionError",
    "value_sets",
    "ValueSets",
    "WorkLimitError",
    "validate",
    "Problem",
    "ValidationError",
]
__version__ = "0.1.0"
