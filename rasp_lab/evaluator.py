"""The reference evaluator, which lives in the language package (rasp_lab/rasp/evaluator.py);
this module keeps its import path: `from rasp_lab.evaluator import evaluate, trace`."""

from rasp_lab.rasp.evaluator import EvaluationError, Trace, evaluate, trace
from rasp_lab.rasp.expr import is_nan
from rasp_lab.rasp.rewrite import topological

__all__ = ["EvaluationError", "Trace", "evaluate", "is_nan", "topological", "trace"]
