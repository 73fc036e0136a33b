"""The RASP language, reachable both ways Tracr code spells it:

    from rasp_lab import rasp            # rasp.Map, rasp.tokens, rasp.evaluate, ...
    from rasp_lab.rasp import rasp       # Tracr's `from tracr.rasp import rasp`

Inside: expr.py (the expressions), evaluator.py (the reference evaluator), rewrite.py
(traversal and rebuilding), rasp.py (Tracr's module: expressions plus evaluator), and
causal_eval.py (Tracr's causal evaluator module).
"""

from rasp_lab.rasp import rasp as rasp
from rasp_lab.rasp.rasp import *  # noqa: F403  (the language's public names, as listed in its __all__)
from rasp_lab.rasp.rasp import __all__ as __all__
