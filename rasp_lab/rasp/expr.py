"""The RASP language's expressions: Tracr's public names and call signatures, with immutable
nodes (rasp_lab/rasp/rasp.py adds the evaluator, as Tracr's `rasp` module has it).

A Tracr program runs after `from rasp_lab import rasp`. What differs from Tracr, on purpose:

- nodes are immutable; `.named()`, `annotate()`, `numerical()` and `categorical()` return
  new nodes;
- an unnamed node's label is derived from its structure (kind, functions, constants,
  children), so building the same program twice gives the same labels, in any process;
- `numerical(x)` never returns a second node with x's label;
- SOps hash by identity, and `bool(sop == 1)` raises instead of being vacuously true;
- None is "no value": Maps and SequenceMaps propagate it without calling the function,
  and a selector atom never selects a None key or query.
"""

from __future__ import annotations

import enum
import logging
import numbers
import operator
import re
import types
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from rasp_lab.fingerprint import digest, element_fingerprint, fingerprint

__all__ = [
    "RASPExpr",
    "SOp",
    "Selector",
    "TokensType",
    "IndicesType",
    "LengthType",
    "tokens",
    "indices",
    "length",
    "Map",
    "SequenceMap",
    "LinearSequenceMap",
    "Full",
    "ConstantSOp",
    "Aggregate",
    "SelectorWidth",
    "Comparison",
    "Select",
    "ConstantSelector",
    "SelectorAnd",
    "SelectorOr",
    "SelectorNot",
    "Encoding",
    "numerical",
    "categorical",
    "is_numerical",
    "is_categorical",
    "get_encoding",
    "annotate",
    "is_nan",
    "comparison_operator",
    "Value",
    "NumericValue",
    "SelectorValue",
    "sop_not",
    "selector_and",
    "selector_or",
    "selector_not",
]

# Tracr's type aliases, which Tracr programs use in their signatures.
Value = None | int | float | str | bool
NumericValue = int | float
SelectorValue = list[list[bool]]

_log = logging.getLogger(__name__)

_evaluator: Callable[..., Any] | None = None
"""rasp_lab.rasp.evaluator.evaluate, set by that module when it loads: expressions are
callable (`program(xs)`) without this module importing the evaluator, which imports it."""


def set_evaluator(evaluate: Callable[..., Any]) -> None:
    """Make `expr(xs)` call `evaluate(expr, xs, causal=...)` (the evaluator does this)."""
    global _evaluator
    _evaluator = evaluate


def is_nan(value: Any) -> bool:
    """True for a NaN number (float, complex, Decimal or numpy), which is unequal to itself."""
    try:
        return isinstance(value, numbers.Number) and bool(value != value)
    except Exception:
        return False


_NAME = "name"
_ENCODING = "encoding"


class Encoding(enum.Enum):
    """How an SOp lives in the residual stream: one-hot per value, or one scalar direction."""

    CATEGORICAL = "categorical"
    NUMERICAL = "numerical"


class RASPExpr:
    """Base of every RASP expression: immutable, labelled, callable on an input sequence."""

    __slots__ = ("_annotations", "_label", "_rasp_fingerprint", "_recoded")

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(
            f"{type(self).__name__} {getattr(self, '_label', '')!r} is immutable; use .named(...), "
            f"annotate(...), numerical(...) or categorical(...) to get a modified copy"
        )

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} {getattr(self, '_label', '')!r} is immutable")

    def _init(self, **fields: Any) -> None:
        for key, value in fields.items():
            object.__setattr__(self, key, value)
        object.__setattr__(self, "_annotations", types.MappingProxyType(self._default_annotations()))
        object.__setattr__(self, "_recoded", {})
        self._relabel()

    def _default_annotations(self) -> dict[str, Any]:
        return {}

    def _relabel(self) -> None:
        user = {k: v for k, v in self._annotations.items() if k != _NAME}
        structure = ";".join(
            [
                type(self).__name__,
                fingerprint(self._params()),
                ",".join(f"{c.label}#{c._rasp_fingerprint}" for c in self.children),
                fingerprint(user),
            ]
        )
        fp = digest(structure, 16)
        object.__setattr__(self, "_rasp_fingerprint", fp)
        name = self._annotations.get(_NAME)
        object.__setattr__(self, "_label", name if name is not None else f"{self._kind()}_{fp[:8]}")

    def _kind(self) -> str:
        return re.sub(r"(?<=[a-z])(?=[A-Z])", "_", type(self).__name__).lower()

    def _params(self) -> tuple:
        """The non-child parameters that determine what the node computes."""
        return ()

    def _with_annotations(self, annotations: Mapping[str, Any]) -> RASPExpr:
        clone = object.__new__(type(self))
        for slot in _all_slots(type(self)):
            object.__setattr__(clone, slot, object.__getattribute__(self, slot))
        object.__setattr__(clone, "_annotations", types.MappingProxyType(dict(annotations)))
        object.__setattr__(clone, "_recoded", {})
        clone._relabel()
        return clone

    @property
    def label(self) -> str:
        return self._label

    @property
    def name(self) -> str:
        """The name given with `.named()`, else the kind's default ("map", "select", ...), as
        in Tracr; `label` is the unique one the compiler uses (the name, or `<kind>_<id>`)."""
        name = self._annotations.get(_NAME)
        return name if name is not None else self._kind()

    def copy(self) -> RASPExpr:
        """A new node computing the same thing, with the same name (Tracr's `copy()`). Nodes
        are immutable, so renaming either one never renames the other; the copy's unique_id
        is the original's, since ids are structural."""
        return self._with_annotations(dict(self._annotations))

    @property
    def unique_id(self) -> str:
        """A structural id: equal for expressions built the same way, in any process."""
        return self._rasp_fingerprint

    @property
    def annotations(self) -> Mapping[str, Any]:
        shown = dict(self._annotations)
        shown[_NAME] = self.name
        return types.MappingProxyType(shown)

    @property
    def children(self) -> tuple[RASPExpr, ...]:
        return ()

    def named(self, name: str) -> RASPExpr:
        """A copy of this expression labelled `name`."""
        return annotate(self, name=name)

    def annotate(self, **kwargs: Any) -> RASPExpr:
        return annotate(self, **kwargs)

    def annotated(self, **kwargs: Any) -> RASPExpr:
        """Tracr's name for `annotate`."""
        return annotate(self, **kwargs)

    def __call__(self, xs: Sequence[Any], *, causal: bool = False) -> Any:
        if _evaluator is None:  # only if this module was imported without the package
            raise RuntimeError("the evaluator is not loaded: import rasp_lab.rasp")
        return _evaluator(self, xs, causal=causal)

    def __copy__(self) -> RASPExpr:
        return self

    def __deepcopy__(self, memo: dict) -> RASPExpr:
        return self

    def __reduce__(self):
        raise TypeError(f"RASP expressions are not picklable ({self.label!r})")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.label!r})"


def _all_slots(cls: type) -> list[str]:
    slots: list[str] = []
    for klass in cls.__mro__:
        for slot in getattr(klass, "__slots__", ()):
            if slot not in slots:
                slots.append(slot)
    return slots


def _check_expr(value: Any, expected: type, what: str, owner: str) -> None:
    if not isinstance(value, expected):
        raise TypeError(
            f"{owner}: {what} must be a {expected.__name__}, got {type(value).__name__} {value!r}"
        )


def _is_value_sequence(value: Any) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, (str, bytes, RASPExpr))


def _refuse_nan(owner: str, what: str, values: Sequence[Any]) -> None:
    """NaN is not a value RASP can hold: it equals nothing, so no one-hot or comparison sees
    it; None is "no value"."""
    nans = [(i, v) for i, v in enumerate(values) if is_nan(v)]
    if nans:
        where = "" if len(values) == 1 else f" at positions {[i for i, _ in nans]}"
        raise ValueError(f"{owner}: {what} holds NaN{where} ({values!r}); use None for 'no value'")


def _check_callable(value: Any, what: str, owner: str) -> None:
    if not callable(value):
        raise TypeError(f"{owner}: {what} must be callable, got {type(value).__name__} {value!r}")


# --------------------------------------------------------------------------------- SOps


class SOp(RASPExpr):
    """A sequence operation: one value per position. Operators build Maps/SequenceMaps."""

    __slots__ = ()

    def _default_annotations(self) -> dict[str, Any]:
        return {_ENCODING: Encoding.CATEGORICAL}

    __hash__ = object.__hash__

    def __bool__(self) -> bool:
        raise TypeError(
            f"SOp {self.label!r} has no truth value. Comparisons and arithmetic on SOps "
            f"build new SOps (e.g. `sop == 1` is a Map), they do not compare anything. "
            f"Use `is` for identity, or evaluate the program and compare the values."
        )

    def _binary(self, op: Callable[[Any, Any], Any], other: Any, reflected: bool = False) -> SOp:
        if isinstance(other, SOp):
            return SequenceMap(op, other, self) if reflected else SequenceMap(op, self, other)
        if isinstance(other, RASPExpr):
            raise TypeError(f"cannot combine SOp {self.label!r} with {type(other).__name__} {other.label!r}")
        return Map(_WithConstant(op, other, reflected), self)

    def __lt__(self, other: Any) -> SOp:
        return self._binary(operator.lt, other)

    def __le__(self, other: Any) -> SOp:
        return self._binary(operator.le, other)

    def __eq__(self, other: Any) -> SOp:  # type: ignore[override]
        return self._binary(operator.eq, other)

    def __ne__(self, other: Any) -> SOp:  # type: ignore[override]
        return self._binary(operator.ne, other)

    def __gt__(self, other: Any) -> SOp:
        return self._binary(operator.gt, other)

    def __ge__(self, other: Any) -> SOp:
        return self._binary(operator.ge, other)

    def __add__(self, other: Any) -> SOp:
        return self._binary(operator.add, other)

    def __radd__(self, other: Any) -> SOp:
        return self._binary(operator.add, other, reflected=True)

    def __sub__(self, other: Any) -> SOp:
        return self._binary(operator.sub, other)

    def __rsub__(self, other: Any) -> SOp:
        return self._binary(operator.sub, other, reflected=True)

    def __mul__(self, other: Any) -> SOp:
        return self._binary(operator.mul, other)

    def __rmul__(self, other: Any) -> SOp:
        return self._binary(operator.mul, other, reflected=True)

    def __truediv__(self, other: Any) -> SOp:
        return self._binary(operator.truediv, other)

    def __rtruediv__(self, other: Any) -> SOp:
        return self._binary(operator.truediv, other, reflected=True)

    def __invert__(self) -> SOp:
        return Map(operator.not_, self)

    def __and__(self, other: Any) -> SOp:
        return self._binary(_logical_and, other)

    def __rand__(self, other: Any) -> SOp:
        return self._binary(_logical_and, other, reflected=True)

    def __or__(self, other: Any) -> SOp:
        return self._binary(_logical_or, other)

    def __ror__(self, other: Any) -> SOp:
        return self._binary(_logical_or, other, reflected=True)


def _logical_and(x: Any, y: Any) -> Any:
    return x and y


def _logical_or(x: Any, y: Any) -> Any:
    return x or y


class _WithConstant:
    """`x -> op(x, c)` (or `op(c, x)` when reflected), with a readable, stable identity."""

    __slots__ = ("op", "constant", "reflected")

    def __init__(self, op: Callable[[Any, Any], Any], constant: Any, reflected: bool) -> None:
        self.op, self.constant, self.reflected = op, constant, reflected

    def __call__(self, x: Any) -> Any:
        return self.op(self.constant, x) if self.reflected else self.op(x, self.constant)

    def __rasp_fingerprint__(self) -> str:
        return fingerprint((self.op, self.constant, self.reflected))

    def __repr__(self) -> str:
        name = getattr(self.op, "__name__", repr(self.op))
        return f"{name}({self.constant!r}, x)" if self.reflected else f"{name}(x, {self.constant!r})"


class _Composed:
    """`x -> fn(...f2(f1(x)))`, passing None through (the result of simplifying Map of Map).

    Flat, with its fingerprint built once per link, so a chain of thousands of Maps neither
    recurses when called nor when labelled."""

    __slots__ = ("functions", "_fingerprint")

    _INLINE = 4096
    """Longest fingerprint kept as text; longer ones (long chains) are hashed to stay small."""

    def __init__(self, outer: Callable[[Any], Any], inner: Callable[[Any], Any]) -> None:
        if isinstance(inner, _Composed):
            functions = (*inner.functions, outer)
            inner_fp = f"_Composed:{inner._fingerprint}"
        else:
            functions = (inner, outer)
            inner_fp = element_fingerprint(inner)
        # The text `fingerprint((outer, inner))` gives, without re-walking the inner links.
        text = f"tuple({element_fingerprint(outer)},{inner_fp})"
        object.__setattr__(self, "functions", functions)
        object.__setattr__(
            self, "_fingerprint", text if len(text) <= self._INLINE else f"sha256:{digest(text, 64)}"
        )

    def __call__(self, x: Any) -> Any:
        y = self.functions[0](x)
        for previous, f in zip(self.functions, self.functions[1:]):
            if y is None:
                return None
            if is_nan(y):
                raise ValueError(f"{previous!r} returned NaN ({y!r}) before {f!r}")
            y = f(y)
        return y

    def __rasp_fingerprint__(self) -> str:
        return self._fingerprint

    def __repr__(self) -> str:
        return " ∘ ".join(repr(f) for f in reversed(self.functions))


class _Primitive(SOp):
    """An input SOp with a fixed label."""

    __slots__ = ()
    _fixed_label = ""

    def __init__(self) -> None:
        self._init()

    def _relabel(self) -> None:
        super()._relabel()
        if _NAME not in self._annotations:
            label = self._fixed_label
            encoding = self._annotations[_ENCODING]
            if encoding is not Encoding.CATEGORICAL:
                # numerical(tokens) is another node, so it must not be labelled "tokens" too.
                label = f"{label}_{encoding.value}"
            object.__setattr__(self, "_label", label)

    def _kind(self) -> str:
        return self._fixed_label


class TokensType(_Primitive):
    """The input token at each position."""

    __slots__ = ()
    _fixed_label = "tokens"


class IndicesType(_Primitive):
    """The position index 0..n-1 at each position."""

    __slots__ = ()
    _fixed_label = "indices"


class LengthType(_Primitive):
    """The sequence length n, at every position."""

    __slots__ = ()
    _fixed_label = "length"


tokens = TokensType()
indices = IndicesType()
length = LengthType()


class Map(SOp):
    """`f` applied to `inner` at each position. Simplifies Map-of-unnamed-Map into one Map."""

    __slots__ = ("f", "inner")

    def __init__(self, f: Callable[[Any], Any], inner: SOp, simplify: bool = True) -> None:
        _check_callable(f, "f", "Map")
        _check_expr(inner, SOp, "inner", "Map")
        if simplify and isinstance(inner, Map) and _NAME not in inner._annotations:
            f, inner = _Composed(f, inner.f), inner.inner
        self._init(f=f, inner=inner)

    def _params(self) -> tuple:
        return (self.f,)

    @property
    def children(self) -> tuple[RASPExpr, ...]:
        return (self.inner,)


class SequenceMap(SOp):
    """`f(fst, snd)` at each position."""

    __slots__ = ("f", "fst", "snd")

    def __init__(self, f: Callable[[Any, Any], Any], fst: SOp, snd: SOp) -> None:
        owner = type(self).__name__
        _check_callable(f, "f", owner)
        _check_expr(fst, SOp, "fst", owner)
        _check_expr(snd, SOp, "snd", owner)
        if fst is snd:
            _log.warning(
                "%s(%r, %r): both inputs are the same SOp; a Map of it computes the same with one "
                "input (and, compiled, a smaller MLP)",
                owner,
                fst.label,
                snd.label,
            )
        self._init(f=f, fst=fst, snd=snd)

    def _params(self) -> tuple:
        return (self.f,)

    @property
    def children(self) -> tuple[RASPExpr, ...]:
        return (self.fst, self.snd)


class _Linear:
    """`fst_fac * x + snd_fac * y`."""

    __slots__ = ("fst_fac", "snd_fac")

    def __init__(self, fst_fac: float, snd_fac: float) -> None:
        self.fst_fac, self.snd_fac = fst_fac, snd_fac

    def __call__(self, x: Any, y: Any) -> Any:
        return self.fst_fac * x + self.snd_fac * y

    def __rasp_fingerprint__(self) -> str:
        return fingerprint((self.fst_fac, self.snd_fac))

    def __repr__(self) -> str:
        return f"{self.fst_fac!r}*x + {self.snd_fac!r}*y"


class LinearSequenceMap(SequenceMap):
    """`fst_fac * fst + snd_fac * snd`; compiles to an exact linear layer when numerical."""

    __slots__ = ("fst_fac", "snd_fac")

    def __init__(self, fst: SOp, snd: SOp, fst_fac: float, snd_fac: float) -> None:
        for what, fac in (("fst_fac", fst_fac), ("snd_fac", snd_fac)):
            if isinstance(fac, bool) or not isinstance(fac, numbers.Real):
                raise TypeError(f"LinearSequenceMap: {what} must be a number, got {fac!r}")
        object.__setattr__(self, "fst_fac", fst_fac)
        object.__setattr__(self, "snd_fac", snd_fac)
        super().__init__(_Linear(fst_fac, snd_fac), fst, snd)


class Full(SOp):
    """The same value at every position."""

    __slots__ = ("fill",)

    def __init__(self, fill: Any) -> None:
        if isinstance(fill, RASPExpr):
            raise TypeError(f"Full: fill must be a plain value, got {fill!r}")
        _refuse_nan("Full", "fill", [fill])
        self._init(fill=fill)

    def _params(self) -> tuple:
        return (self.fill,)


class ConstantSOp(SOp):
    """A fixed value per position (`value[i]` at position i)."""

    __slots__ = ("value", "check_length")

    def __init__(self, value: Sequence[Any], check_length: bool = True) -> None:
        if not _is_value_sequence(value):
            raise TypeError(f"ConstantSOp: value must be a sequence of values, got {value!r}")
        _refuse_nan("ConstantSOp", "value", value)
        self._init(value=tuple(value), check_length=bool(check_length))

    def _params(self) -> tuple:
        return (self.value, self.check_length)


class Selector(RASPExpr):
    """A Boolean matrix over (query position, key position). `&`, `|`, `~` compose."""

    __slots__ = ()

    def __and__(self, other: Selector) -> SelectorAnd:
        return SelectorAnd(self, other)

    def __or__(self, other: Selector) -> SelectorOr:
        return SelectorOr(self, other)

    def __invert__(self) -> SelectorNot:
        return SelectorNot(self)


class Aggregate(SOp):
    """Per query: mean of `sop` over selected keys (numerical) or their one shared value
    (categorical); `default` where nothing is selected."""

    __slots__ = ("selector", "sop", "default")

    def __init__(self, selector: Selector, sop: SOp, default: Any = None) -> None:
        _check_expr(selector, Selector, "selector", "Aggregate")
        _check_expr(sop, SOp, "sop", "Aggregate")
        if isinstance(default, RASPExpr):
            raise TypeError(f"Aggregate: default must be a plain value, got {default!r}")
        _refuse_nan("Aggregate", "default", [default])
        self._init(selector=selector, sop=sop, default=default)

    def _params(self) -> tuple:
        return (self.default,)

    @property
    def children(self) -> tuple[RASPExpr, ...]:
        return (self.selector, self.sop)


class SelectorWidth(SOp):
    """The number of keys each query selects."""

    __slots__ = ("selector",)

    def __init__(self, selector: Selector) -> None:
        _check_expr(selector, Selector, "selector", "SelectorWidth")
        self._init(selector=selector)

    @property
    def children(self) -> tuple[RASPExpr, ...]:
        return (self.selector,)


# ---------------------------------------------------------------------------- Selectors


class Comparison(enum.Enum):
    """Select predicates, called as `predicate(key, query)` (so LT selects key < query)."""

    EQ = "EQ"
    LT = "LT"
    LEQ = "LEQ"
    GT = "GT"
    GEQ = "GEQ"
    NEQ = "NEQ"
    TRUE = "TRUE"
    FALSE = "FALSE"

    def __call__(self, key: Any, query: Any) -> bool:
        if key is None or query is None:
            raise ValueError(f"Comparison.{self.name} got None (key={key!r}, query={query!r})")
        return bool(_COMPARISONS[self](key, query))

    def __repr__(self) -> str:
        return f"Comparison.{self.name}"


_COMPARISONS: dict[Comparison, Callable[[Any, Any], Any]] = {
    Comparison.EQ: operator.eq,
    Comparison.LT: operator.lt,
    Comparison.LEQ: operator.le,
    Comparison.GT: operator.gt,
    Comparison.GEQ: operator.ge,
    Comparison.NEQ: operator.ne,
    Comparison.TRUE: lambda key, query: True,
    Comparison.FALSE: lambda key, query: False,
}


def comparison_operator(comparison: Comparison) -> Callable[[Any, Any], Any]:
    """The plain function behind a Comparison (no None check: callers handle None)."""
    return _COMPARISONS[comparison]


class Select(Selector):
    """Query position q selects key position k when `predicate(keys[k], queries[q])`."""

    __slots__ = ("keys", "queries", "predicate")

    def __init__(self, keys: SOp, queries: SOp, predicate: Comparison | Callable[[Any, Any], bool]) -> None:
        _check_expr(keys, SOp, "keys", "Select")
        _check_expr(queries, SOp, "queries", "Select")
        if isinstance(predicate, RASPExpr) or not callable(predicate):
            raise TypeError(
                f"Select: predicate must be a Comparison or a callable(key, query) -> bool, "
                f"got {type(predicate).__name__} {predicate!r}"
            )
        self._init(keys=keys, queries=queries, predicate=predicate)

    def _params(self) -> tuple:
        return (self.predicate,)

    @property
    def children(self) -> tuple[RASPExpr, ...]:
        return (self.keys, self.queries)


class ConstantSelector(Selector):
    """A fixed selection matrix, `value[q][k]`."""

    __slots__ = ("value", "check_length")

    def __init__(self, value: Sequence[Sequence[bool]], check_length: bool = True) -> None:
        rows = value if _is_value_sequence(value) else None
        if (
            rows is None
            or not all(_is_value_sequence(row) for row in rows)
            or not all(isinstance(v, bool) or v in (0, 1) for row in rows for v in row)
        ):
            raise TypeError(f"ConstantSelector: value must be a matrix of bools, got {value!r}")
        self._init(value=tuple(tuple(bool(v) for v in row) for row in rows), check_length=bool(check_length))

    def _params(self) -> tuple:
        return (self.value, self.check_length)


class _SelectorPair(Selector):
    __slots__ = ("fst", "snd")

    def __init__(self, fst: Selector, snd: Selector) -> None:
        owner = type(self).__name__
        _check_expr(fst, Selector, "fst", owner)
        _check_expr(snd, Selector, "snd", owner)
        self._init(fst=fst, snd=snd)

    @property
    def children(self) -> tuple[RASPExpr, ...]:
        return (self.fst, self.snd)


class SelectorAnd(_SelectorPair):
    """Selected where both are."""

    __slots__ = ()


class SelectorOr(_SelectorPair):
    """Selected where either is."""

    __slots__ = ()


class SelectorNot(Selector):
    """Selected where `inner` is not."""

    __slots__ = ("inner",)

    def __init__(self, inner: Selector) -> None:
        _check_expr(inner, Selector, "inner", "SelectorNot")
        self._init(inner=inner)

    @property
    def children(self) -> tuple[RASPExpr, ...]:
        return (self.inner,)


# Tracr's functional forms. `simplify` is accepted for Tracr's signatures but the composite
# is kept: merging two Selects into one predicate would change what None keys select.


def sop_not(sop: SOp) -> SOp:
    return Map(operator.not_, sop)


def selector_not(inner: Selector, simplify: bool = True) -> Selector:
    return SelectorNot(inner)


def selector_and(fst: Selector, snd: Selector, simplify: bool = True) -> Selector:
    return SelectorAnd(fst, snd)


def selector_or(fst: Selector, snd: Selector, simplify: bool = True) -> Selector:
    return SelectorOr(fst, snd)


# ------------------------------------------------------------------------- Annotations


def annotate(expr: RASPExpr, **kwargs: Any) -> RASPExpr:
    """A copy of `expr` with these annotations set (`name=` sets the label)."""
    _check_expr(expr, RASPExpr, "expr", "annotate")
    if _NAME in kwargs:
        name = kwargs[_NAME]
        if not isinstance(name, str) or not name:
            raise TypeError(f"a name must be a non-empty string, got {name!r}")
    if _ENCODING in kwargs:
        if not isinstance(expr, SOp):
            raise TypeError(f"only SOps have an encoding; {expr.label!r} is a {type(expr).__name__}")
        if not isinstance(kwargs[_ENCODING], Encoding):
            raise TypeError(f"encoding must be an Encoding, got {kwargs[_ENCODING]!r}")
        if _NAME not in kwargs:
            # Tracr spells numerical(x) as annotate(x, encoding=...): same node, same label rule.
            expr = _with_encoding(expr, kwargs[_ENCODING], "annotate")
            kwargs = {k: v for k, v in kwargs.items() if k != _ENCODING}
            if not kwargs:
                return expr
    merged = dict(expr._annotations)
    merged.update(kwargs)
    return expr._with_annotations(merged)


def _with_encoding(sop: SOp, encoding: Encoding, caller: str) -> SOp:
    if not isinstance(sop, SOp):
        raise TypeError(f"{caller}() takes an SOp, got {type(sop).__name__} {sop!r}")
    if get_encoding(sop) is encoding:
        return sop
    if encoding in sop._recoded:
        return sop._recoded[encoding]
    annotations = dict(sop._annotations)
    annotations[_ENCODING] = encoding
    if _NAME in annotations:
        # Keep one label per node: the re-encoded copy must not reuse the original's name.
        annotations[_NAME] = f"{annotations[_NAME]}_{encoding.value}"
    recoded = sop._with_annotations(annotations)
    sop._recoded[encoding] = recoded  # one copy per source node, so one node per label
    recoded._recoded[get_encoding(sop)] = sop  # and converting back gives the source again
    return recoded  # type: ignore[return-value]


def numerical(sop: SOp) -> SOp:
    """`sop` encoded as one scalar direction (a copy unless it already is)."""
    return _with_encoding(sop, Encoding.NUMERICAL, "numerical")


def categorical(sop: SOp) -> SOp:
    """`sop` encoded one-hot over its values (a copy unless it already is)."""
    return _with_encoding(sop, Encoding.CATEGORICAL, "categorical")


def get_encoding(sop: RASPExpr) -> Encoding:
    if not isinstance(sop, SOp):
        raise TypeError(f"only SOps have an encoding; got {type(sop).__name__} {sop!r}")
    return sop._annotations[_ENCODING]


def is_numerical(sop: RASPExpr) -> bool:
    return get_encoding(sop) is Encoding.NUMERICAL


def is_categorical(sop: RASPExpr) -> bool:
    return get_encoding(sop) is Encoding.CATEGORICAL
