"""Selector compositions: which fit one attention head, with a certificate either way.

The compiler imports this package; it imports nothing from the compiler. Modules:
`tables` (a selector as summed predicate tables), `algebra` (atoms, rebalancing, `~` pushed
through `&`/`|`), `domain` (the free and the program question's pairs), `heads` (blocks,
weights, certificates), `lp` (the linear program), `analysis` (`analyze`), `families`
(the AND/OR-of-m families).
"""

from rasp_lab.selectors.algebra import (
    MAX_DEPTH,
    involved_sops,
    is_conjunction,
    negate,
    nesting_depth,
    push_negations,
    selector_atoms,
    shallow_equivalent,
)
from rasp_lab.selectors.analysis import (
    RANK_SECONDS,
    SelectorAnalysis,
    analyze,
    atoms_of,
    clean_everywhere,
    conjunction_weights,
    induced_matching,
    qk_rank,
)
from rasp_lab.selectors.domain import Domain, Witness
from rasp_lab.selectors.heads import ENCODINGS, Atom, Block, FarkasCertificate, Fit, HeadWeights, Rectangle
from rasp_lab.selectors.lp import LP_TIME_LIMIT

__all__ = [
    "ENCODINGS",
    "LP_TIME_LIMIT",
    "MAX_DEPTH",
    "RANK_SECONDS",
    "Atom",
    "Block",
    "Domain",
    "FarkasCertificate",
    "Fit",
    "HeadWeights",
    "Rectangle",
    "SelectorAnalysis",
    "Witness",
    "analyze",
    "atoms_of",
    "clean_everywhere",
    "conjunction_weights",
    "induced_matching",
    "involved_sops",
    "is_conjunction",
    "negate",
    "nesting_depth",
    "push_negations",
    "qk_rank",
    "selector_atoms",
    "shallow_equivalent",
]
