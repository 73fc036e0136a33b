"""Tracr's `rasp` module: the language's expressions (rasp_lab/rasp/expr.py) and its
evaluator (rasp_lab/rasp/evaluator.py) under one name, as Tracr has them.

    from rasp_lab.rasp import rasp      # Tracr: from tracr.rasp import rasp
    rasp.evaluate(rasp.Map(lambda x: x + 1, rasp.tokens), [1, 2])
"""

from rasp_lab.rasp.evaluator import EvaluationError, evaluate, trace
from rasp_lab.rasp.expr import *  # noqa: F403  (the expressions' public names, as listed in their __all__)
from rasp_lab.rasp.expr import __all__ as _expr_names

__all__ = [*_expr_names, "evaluate", "trace", "EvaluationError"]
