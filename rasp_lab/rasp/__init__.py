"""The RASP language (rasp_lab/rasp/rasp.py), reachable both ways Tracr code spells it:

    from rasp_lab import rasp            # rasp.Map, rasp.tokens, ...
    from rasp_lab.rasp import rasp       # Tracr's `from tracr.rasp import rasp`

`rasp_lab.rasp.causal_eval` is Tracr's causal evaluator module.
"""

from rasp_lab.rasp import rasp as rasp
from rasp_lab.rasp.rasp import *  # noqa: F403  (the language's public names, as listed in its __all__)
from rasp_lab.rasp.rasp import __all__ as __all__
