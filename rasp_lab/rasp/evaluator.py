"""The reference semantics of RASP: what every compiled model is checked against.

- Map / SequenceMap apply their function position-wise; None ("no value") passes through
  without calling the function.
- A selector is a Boolean matrix `[query][key]`; an atom never selects a None key or query;
  `&`, `|`, `~` are the Boolean algebra of the matrices.
- Aggregate: numerical = mean over the selected positions; categorical = the single value
  the selected positions share (an EvaluationError naming the Aggregate if they disagree);
  `default` where nothing is selected.
- SelectorWidth: the number of selected positions.
- causal=True restricts every selector that an Aggregate or SelectorWidth reads (and a
  selector evaluated on its own) to keys at or before the query.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence, Set
from fractions import Fraction
from typing import Any

from rasp_lab.rasp import expr as rasp
from rasp_lab.rasp.expr import is_nan
from rasp_lab.rasp.rewrite import topological


class EvaluationError(ValueError):
    """An expression could not be evaluated on an input; names the expression and values."""

    def __init__(self, label: str, message: str, kind: str = "error") -> None:
        super().__init__(f"{label}: {message}")
        self.label = label
        self.kind = kind


def evaluate(expr: rasp.RASPExpr, xs: Sequence[Any], *, causal: bool = False) -> Any:
    """Evaluate `expr` on the input sequence `xs` (without BOS).

    Returns a list (one value per position) for an SOp, or a list of rows `[query][key]`
    of bools for a selector.
    """
    return trace(expr, xs, causal=causal)[expr]


class Trace(dict):
    """Values of every node of a program on one input, keyed by the node itself."""

    def by_label(self) -> dict[str, Any]:
        return {node.label: value for node, value in self.items()}


def trace(
    expr: rasp.RASPExpr,
    xs: Sequence[Any],
    *,
    causal: bool = False,
    interventions: Mapping[str, Sequence[Any]] | None = None,
) -> Trace:
    """Evaluate `expr` and every node under it on `xs`; a mapping node -> value.

    `interventions` maps SOp labels to the values (one per position) that SOp takes instead
    of its own, with everything downstream recomputed from them: the high-level side of an
    interchange intervention (rasp_lab.circuit_formats.verify_correspondence)."""
    if not isinstance(expr, rasp.RASPExpr):
        raise TypeError(f"evaluate() takes a RASP expression, got {type(expr).__name__} {expr!r}")
    if isinstance(xs, bytes):
        raise TypeError(
            f"evaluate() takes a sequence of tokens, got the bytes {xs!r}; decode them or pass a list"
        )
    if isinstance(xs, str):
        xs = list(xs)  # a string is its characters, as in Tracr: program("hello")
    if not isinstance(xs, Sequence):
        if isinstance(xs, (Set, Mapping)):
            # No order to read positions from: evaluating would silently pick an arbitrary one.
            raise TypeError(
                f"evaluate() takes a sequence of tokens, got the unordered {type(xs).__name__} {xs!r}"
            )
        try:
            xs = list(xs)
        except TypeError as err:
            raise TypeError(f"evaluate() takes a sequence of tokens, got {type(xs).__name__}") from err
    xs = list(xs)
    nodes = topological(expr)
    forced = _checked_interventions(nodes, interventions or {}, len(xs))
    values: dict[int, Any] = {}
    result = Trace()
    for node in nodes:
        value = forced[node.label] if node.label in forced else _evaluate_node(node, xs, values, causal)
        values[id(node)] = value
        result[node] = value
    if causal and isinstance(expr, rasp.Selector):
        result[expr] = _causal(result[expr])
    return result


def _checked_interventions(
    nodes: Sequence[rasp.RASPExpr], interventions: Mapping[str, Sequence[Any]], n: int
) -> dict[str, list]:
    """The interventions as lists, after checking each names an SOp of the program and gives
    one value per position."""
    sops = {node.label for node in nodes if isinstance(node, rasp.SOp)}
    out = {}
    for label, values in interventions.items():
        if label not in sops:
            raise KeyError(
                f"intervention on {label!r}: the program has no SOp of that label; its SOps are {sorted(sops)}"
            )
        values = list(values)
        if len(values) != n:
            raise ValueError(
                f"intervention on {label!r}: {len(values)} values {values!r} for an input of length {n}"
            )
        out[label] = values
    return out


def _causal(matrix: list[list[bool]]) -> list[list[bool]]:
    return [[sel and k <= q for k, sel in enumerate(row)] for q, row in enumerate(matrix)]


def _evaluate_node(node: rasp.RASPExpr, xs: list[Any], values: dict[int, Any], causal: bool) -> Any:
    n = len(xs)

    def of(child: rasp.RASPExpr) -> Any:
        return values[id(child)]

    if isinstance(node, rasp.TokensType):
        return list(xs)
    if isinstance(node, rasp.IndicesType):
        return list(range(n))
    if isinstance(node, rasp.LengthType):
        return [n] * n
    if isinstance(node, rasp.Map):
        return [_apply(node, node.f, (x,), i) for i, x in enumerate(of(node.inner))]
    if isinstance(node, rasp.SequenceMap):
        return [_apply(node, node.f, (x, y), i) for i, (x, y) in enumerate(zip(of(node.fst), of(node.snd)))]
    if isinstance(node, rasp.Full):
        return [node.fill] * n
    if isinstance(node, rasp.ConstantSOp):
        size = len(node.value)
        if node.check_length and size != n:
            raise EvaluationError(
                node.label,
                f"ConstantSOp has {size} values but the input has length {n} (Constant len {size} doesn't "
                f"match input len {n}; ConstantSOp(..., check_length=False) takes the first values, None past them)",
            )
        return list(node.value[:n]) + [None] * (n - size)  # no value past the constant's end
    if isinstance(node, rasp.Select):
        keys, queries = of(node.keys), of(node.queries)
        if isinstance(node.predicate, rasp.Comparison):
            # The common case without a call per cell through the enum; any exception falls
            # back to the general path, which names the offending pair.
            op = rasp.comparison_operator(node.predicate)
            try:
                return [[k is not None and q is not None and bool(op(k, q)) for k in keys] for q in queries]
            except Exception:  # noqa: BLE001 - re-raised with the pair below
                pass
        return [[_predicate(node, k, q) for k in keys] for q in queries]
    if isinstance(node, rasp.ConstantSelector):
        rows = node.value
        widths = sorted({len(r) for r in rows})
        if (
            (node.check_length and (len(rows) != n or any(w != n for w in widths)))
            or len(rows) < n
            or any(len(r) < n for r in rows[:n])
        ):
            cols = "/".join(str(w) for w in widths) or "0"
            raise EvaluationError(
                node.label, f"ConstantSelector is {len(rows)}x{cols} but the input has length {n}"
            )
        return [list(row[:n]) for row in rows[:n]]
    if isinstance(node, rasp.SelectorAnd):
        return [[a and b for a, b in zip(ra, rb)] for ra, rb in zip(of(node.fst), of(node.snd))]
    if isinstance(node, rasp.SelectorOr):
        return [[a or b for a, b in zip(ra, rb)] for ra, rb in zip(of(node.fst), of(node.snd))]
    if isinstance(node, rasp.SelectorNot):
        return [[not a for a in row] for row in of(node.inner)]
    if isinstance(node, rasp.SelectorWidth):
        matrix = of(node.selector)
        if causal:
            matrix = _causal(matrix)
        return [sum(row) for row in matrix]
    if isinstance(node, rasp.Aggregate):
        matrix = of(node.selector)
        if causal:
            matrix = _causal(matrix)
        return [_aggregate(node, row, of(node.sop), q) for q, row in enumerate(matrix)]
    raise TypeError(f"cannot evaluate {type(node).__name__} {node.label!r}: unknown expression type")


def _apply(node: rasp.RASPExpr, f: Any, args: tuple, position: int) -> Any:
    if any(a is None for a in args):
        return None
    shown = args[0] if len(args) == 1 else args
    try:
        value = f(*args)
    except Exception as err:
        raise EvaluationError(
            node.label,
            f"{type(node).__name__} function raised {type(err).__name__}({err}) on {shown!r} at position {position}",
            kind="function-raised",
        ) from err
    if is_nan(value):
        # NaN would pass for a value but equal nothing; None is the only "no value".
        raise EvaluationError(
            node.label,
            f"{type(node).__name__} function returned NaN ({value!r}) on {shown!r} at position {position}",
            kind="nan",
        )
    return value


def _predicate(node: rasp.Select, key: Any, query: Any) -> bool:
    if key is None or query is None:
        return False
    try:
        result = node.predicate(key, query)
    except Exception as err:
        raise EvaluationError(
            node.label,
            f"predicate raised {type(err).__name__}({err}) on key={key!r}, query={query!r}",
            kind="predicate-raised",
        ) from err
    return bool(result)


def exact_mean(values: list) -> float:
    """The mean rounded once from its exact value (order-independent): int / int division
    is already correctly rounded; other numbers go through Fractions (infinities, which
    have no Fraction, by float arithmetic: NaN if they cancel)."""
    if all(isinstance(v, int) for v in values):
        return sum(values) / len(values)
    if not all(math.isfinite(v) for v in values):
        return sum(float(v) for v in values) / len(values)
    return float(sum(Fraction(v) for v in values) / len(values))


def _aggregate(node: rasp.Aggregate, row: list[bool], sop_values: list[Any], query: int) -> Any:
    selected = [v for v, sel in zip(sop_values, row) if sel]
    if not selected:
        return node.default
    if rasp.is_numerical(node):
        if any(v is None for v in selected):
            return None
        if not all(isinstance(v, numbers.Real) for v in selected):
            raise EvaluationError(
                node.label,
                f"numerical Aggregate cannot average non-numbers {selected!r} at query position {query}",
                kind="not-averageable",
            )
        mean = exact_mean(selected)
        if is_nan(mean):
            raise EvaluationError(
                node.label,
                f"numerical Aggregate averages {selected!r} to NaN at query position {query}",
                kind="nan",
            )
        return mean
    first = selected[0]
    for value in selected[1:]:
        if (value is None) != (first is None) or not (value == first):
            positions = [k for k, sel in enumerate(row) if sel]
            raise EvaluationError(
                node.label,
                f"categorical Aggregate selects different values {selected!r} (key positions "
                f"{positions}) at query position {query}; a categorical Aggregate needs all "
                f"selected positions to share one value",
                kind="mixed-values",
            )
    return first


rasp.set_evaluator(evaluate)
