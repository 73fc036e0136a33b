"""Deterministic fingerprints of the values and callables inside RASP expressions.

Labels of unnamed expressions are derived from these fingerprints, so they depend on what
a program computes and how it is built, never on how many objects the process made
before it. Two lambdas with the same code and the same captured values fingerprint alike
(they compute the same thing); captured values that differ give different fingerprints.
"""

from __future__ import annotations

import enum
import functools
import hashlib
import re
import types
from typing import Any

_MAX_DEPTH = 16
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


def digest(text: str, length: int = 8) -> str:
    """A short stable hex digest of `text` (sha256, not Python's salted hash)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]


def fingerprint(value: Any) -> str:
    """A canonical string for `value` that is equal across processes for equal programs."""
    return _fp(value, 0, set())


def element_fingerprint(value: Any) -> str:
    """What `fingerprint` writes for `value` as an element of a tuple, so that a nested
    fingerprint can be built one level at a time instead of by recursion."""
    return _fp(value, 1, set())


def _fp(value: Any, depth: int, seen: set[int]) -> str:
    if depth > _MAX_DEPTH:
        # A placeholder here would make different deep values collide; repr/identity keeps them apart.
        return _fallback(value)
    if value is None or isinstance(value, (bool, int, float, complex, str, bytes)):
        return f"{type(value).__name__}:{value!r}"
    if isinstance(value, enum.Enum):
        return f"enum:{type(value).__qualname__}.{value.name}"
    expr_fp = getattr(value, "_rasp_fingerprint", None)
    if isinstance(expr_fp, str):
        return f"expr:{expr_fp}"
    if id(value) in seen:
        return "<cycle>"
    seen = seen | {id(value)}
    if isinstance(value, (tuple, list)):
        inner = ",".join(_fp(v, depth + 1, seen) for v in value)
        return f"{type(value).__name__}({inner})"
    if isinstance(value, (set, frozenset)):
        inner = ",".join(sorted(_fp(v, depth + 1, seen) for v in value))
        return f"{type(value).__name__}{{{inner}}}"
    if isinstance(value, dict):
        items = sorted(f"{_fp(k, depth + 1, seen)}:{_fp(v, depth + 1, seen)}" for k, v in value.items())
        return "dict{" + ",".join(items) + "}"
    if isinstance(value, functools.partial):
        return (
            f"partial({_fp(value.func, depth + 1, seen)};{_fp(value.args, depth + 1, seen)};"
            f"{_fp(value.keywords, depth + 1, seen)})"
        )
    if isinstance(value, types.FunctionType):
        return _function_fp(value, depth, seen)
    if isinstance(value, types.MethodType):
        return f"method({_fp(value.__func__, depth + 1, seen)};{_fp(value.__self__, depth + 1, seen)})"
    bound_to = getattr(value, "__self__", None)
    if isinstance(value, (types.BuiltinFunctionType, types.MethodWrapperType)) and not (
        bound_to is None or isinstance(bound_to, types.ModuleType)
    ):
        # `table.get` computes something different for every `table`.
        return f"bound:{type(bound_to).__qualname__}.{value.__name__}({_fp(bound_to, depth + 1, seen)})"
    if isinstance(value, (types.BuiltinFunctionType, types.ModuleType, type)):
        module = getattr(value, "__module__", None) or getattr(value, "__name__", "")
        return f"named:{module}.{getattr(value, '__qualname__', getattr(value, '__name__', ''))}"
    if isinstance(value, types.CodeType):
        return _code_fp(value, depth, seen)
    custom = getattr(value, "__rasp_fingerprint__", None)
    if callable(custom):
        return f"{type(value).__qualname__}:{custom()}"
    if all(hasattr(value, a) for a in ("dtype", "shape", "tobytes", "tolist")):
        # Arrays: their repr elides the middle of large arrays, so hash the contents instead.
        if getattr(value.dtype, "hasobject", False):
            return f"array:{value.dtype}:{tuple(value.shape)}:{_fp(value.tolist(), depth + 1, seen)}"
        return f"array:{value.dtype}:{tuple(value.shape)}:{hashlib.sha256(value.tobytes()).hexdigest()}"
    state = getattr(value, "__dict__", None)
    if state is not None:
        return f"obj:{type(value).__module__}.{type(value).__qualname__}{_fp(dict(state), depth + 1, seen)}"
    return _fallback(value)


def _fallback(value: Any) -> str:
    text = repr(value)
    if _ADDRESS.search(text):
        # No stable description exists; identity keeps distinct objects distinct.
        return f"opaque:{type(value).__qualname__}@{id(value)}"
    return f"repr:{type(value).__qualname__}:{text}"


def _code_fp(code: types.CodeType, depth: int, seen: set[int]) -> str:
    consts = ",".join(_fp(c, depth + 1, seen) for c in code.co_consts)
    return f"code({code.co_code.hex()};{consts};{','.join(code.co_names)};{code.co_argcount})"


def _global_names(code: types.CodeType) -> list[str]:
    """Names `code` may read as globals, including from nested lambdas and comprehensions."""
    names = list(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names.extend(n for n in _global_names(const) if n not in names)
    return names


def _function_fp(func: types.FunctionType, depth: int, seen: set[int]) -> str:
    parts = [_code_fp(func.__code__, depth, seen)]
    if func.__defaults__:
        parts.append("defaults=" + _fp(func.__defaults__, depth + 1, seen))
    if func.__kwdefaults__:
        parts.append("kwdefaults=" + _fp(func.__kwdefaults__, depth + 1, seen))
    if func.__closure__:
        cells = []
        for cell in func.__closure__:
            try:
                cells.append(_fp(cell.cell_contents, depth + 1, seen))
            except ValueError:
                cells.append("<empty cell>")
        parts.append("closure=" + ",".join(cells))
    referenced = []
    for name in _global_names(func.__code__):
        if name in func.__globals__:
            referenced.append(f"{name}={_fp(func.__globals__[name], depth + 1, seen)}")
    if referenced:
        parts.append("globals=" + ",".join(referenced))
    return "fn(" + ";".join(parts) + ")"
