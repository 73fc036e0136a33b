"""rasp_lab: compile RASP programs into the weights of real transformers, and check them."""

from rasp_lab import rasp
from rasp_lab.evaluator import EvaluationError, evaluate, trace

__all__ = ["rasp", "evaluate", "trace", "EvaluationError"]
__version__ = "0.1.0"
