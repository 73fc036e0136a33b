"""rasp_lab: compile RASP programs into the weights of real transformers, and check them."""

from rasp_lab import rasp
from rasp_lab.compiler.model import CompiledModel, DecodingError
from rasp_lab.compiler.selector_tables import CompileError
from rasp_lab.compiling import compile, compile_rasp_to_model
from rasp_lab.evaluator import EvaluationError, evaluate, trace
from rasp_lab.graph import LabelCollisionError, ProgramGraph, build_graph
from rasp_lab.validation import Problem, ValidationError, validate
from rasp_lab.value_sets import ValueSets, value_sets

__all__ = [
    "rasp",
    "compile",
    "compile_rasp_to_model",
    "CompiledModel",
    "CompileError",
    "DecodingError",
    "evaluate",
    "trace",
    "EvaluationError",
    "build_graph",
    "ProgramGraph",
    "LabelCollisionError",
    "value_sets",
    "ValueSets",
    "validate",
    "Problem",
    "ValidationError",
]
__version__ = "0.1.0"
