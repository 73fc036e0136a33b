"""A selector as a sum of predicate tables: what one Boolean head's QK can hold.

A selector over one key SOp and one query SOp (any Boolean combination of atoms on that
pair) folds into one 0/1 table. A conjunction of m such groups is the sum of their tables,
selected exactly where the sum reaches m; BOS then sits at m - 1/2. Anything else needs a
selector-composition analysis and is refused here with a CompileError naming the selector.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from rasp_lab import rasp
from rasp_lab.errors import CompileError
from rasp_lab.value_sets import ValueSets

Formula = Callable[[dict[str, Any], dict[str, Any]], bool]


@dataclass(frozen=True)
class Table:
    """One 0/1 table over (query value, key value) of one query SOp and one key SOp."""

    key_sop: str
    query_sop: str
    entries: dict[tuple[Any, Any], int]
    """(query value, key value) -> 1 for every selected pair; None stands for "no value"
    (a negated atom selects it), where the SOp can have none."""


@dataclass(frozen=True)
class SelectorTables:
    """Selected iff the tables sum to `top` (each table contributes 0 or 1)."""

    selector: str
    tables: tuple[Table, ...]

    @property
    def top(self) -> int:
        return len(self.tables)


def _conjuncts(selector: rasp.Selector) -> list[rasp.Selector]:
    if isinstance(selector, rasp.SelectorAnd):
        return _conjuncts(selector.fst) + _conjuncts(selector.snd)
    return [selector]


def _pairs(selector: rasp.Selector) -> set[tuple[str, str]]:
    """The (key SOp, query SOp) pairs the selector reads."""
    if isinstance(selector, rasp.Select):
        return {(selector.keys.label, selector.queries.label)}
    if isinstance(selector, rasp.ConstantSelector):
        return {(rasp.indices.label, rasp.indices.label)}
    return set().union(*(_pairs(c) for c in selector.children))  # type: ignore[arg-type]


def conjunct_pairs(selector: rasp.Selector) -> list[set[tuple[str, str]]]:
    """For each top-level conjunct, the (key SOp, query SOp) pairs it reads."""
    return [_pairs(c) for c in _conjuncts(selector)]


def truth(selector: rasp.Selector, keys: dict[str, Any], queries: dict[str, Any]) -> bool:
    """The selector's value for one key position and one query position, given the values
    of the SOps it reads there (by label), with the evaluator's None rule for atoms."""
    if isinstance(selector, rasp.Select):
        key, query = keys[selector.keys.label], queries[selector.queries.label]
        if key is None or query is None:
            return False
        return bool(selector.predicate(key, query))
    if isinstance(selector, rasp.ConstantSelector):
        key, query = keys[rasp.indices.label], queries[rasp.indices.label]
        if key is None or query is None:
            return False
        rows = selector.value
        return query < len(rows) and key < len(rows[query]) and bool(rows[query][key])
    if isinstance(selector, rasp.SelectorAnd):
        return truth(selector.fst, keys, queries) and truth(selector.snd, keys, queries)
    if isinstance(selector, rasp.SelectorOr):
        return truth(selector.fst, keys, queries) or truth(selector.snd, keys, queries)
    if isinstance(selector, rasp.SelectorNot):
        return not truth(selector.inner, keys, queries)
    raise CompileError(selector.label, f"unknown selector type {type(selector).__name__}")


def _group_table(
    label: str, group: list[rasp.Selector], pair: tuple[str, str], sets: ValueSets | Mapping[str, frozenset]
) -> Table:
    key_sop, query_sop = pair
    keys, queries = sop_values(key_sop, sets), sop_values(query_sop, sets)
    if keys is None or queries is None:
        raise CompileError(label, f"the values of {key_sop!r} or {query_sop!r} are too many to tabulate")

    def selected(k: Any, q: Any) -> bool:
        return all(truth(s, {key_sop: k}, {query_sop: q}) for s in group)

    key_values = [k for k in keys if k is not None]
    query_values = [q for q in queries if q is not None]
    fast = _comparison_pairs(group, key_values, query_values)
    if fast is not None:
        entries = dict.fromkeys(fast, 1)  # a lone atom never selects None
    else:
        entries = {(q, k): 1 for q in queries for k in keys if selected(k, q)}
    return Table(key_sop=key_sop, query_sop=query_sop, entries=entries)


def _comparison_pairs(group: list[rasp.Selector], keys: list, queries: list) -> list[tuple] | None:
    """Selected (query, key) pairs of a lone Comparison atom without calling it per pair:
    by hashing for EQ, by sorting numbers for the order comparisons; None otherwise."""
    if (
        len(group) != 1
        or not isinstance(group[0], rasp.Select)
        or not isinstance(group[0].predicate, rasp.Comparison)
    ):
        return None
    op = group[0].predicate
    if op is rasp.Comparison.TRUE:
        return [(q, k) for q in queries for k in keys]
    if op is rasp.Comparison.FALSE:
        return []
    if op is rasp.Comparison.EQ:
        present = set(keys)
        return [(q, q) for q in queries if q in present]
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (*keys, *queries)):
        return None
    k = np.array(keys, dtype=float)
    compare = {
        rasp.Comparison.LT: np.less,
        rasp.Comparison.LEQ: np.less_equal,
        rasp.Comparison.GT: np.greater,
        rasp.Comparison.GEQ: np.greater_equal,
        rasp.Comparison.NEQ: np.not_equal,
    }[op]
    hits = compare(
        k[None, :], np.array(queries, dtype=float)[:, None]
    )  # [queries, keys]: predicate(key, query)
    q_at, k_at = np.nonzero(hits)
    return list(zip([queries[i] for i in q_at.tolist()], [keys[i] for i in k_at.tolist()]))


def sop_values(label: str, sets: ValueSets | Mapping[str, frozenset]) -> frozenset | None:
    """The values of an SOp; `indices` is always in the residual, even if unused."""
    if label == rasp.indices.label and label not in sets:
        return frozenset(range(sets.max_seq_len))  # type: ignore[union-attr]
    return sets[label]


def selector_tables(selector: rasp.Selector, sets: ValueSets | Mapping[str, frozenset]) -> SelectorTables:
    """The selector as tables summing to `top`, or a CompileError if one head can't hold it."""
    groups: dict[tuple[str, str], list[rasp.Selector]] = {}
    for conjunct in _conjuncts(selector):
        pairs = _pairs(conjunct)
        if len(pairs) != 1:
            raise CompileError(
                selector.label,
                f"the composition {type(conjunct).__name__} {conjunct.label!r} mixes the SOp pairs "
                f"{sorted(pairs)}; only conjunctions of selectors on one (key, query) pair each fit "
                f"one head with this compiler",
            )
        groups.setdefault(pairs.pop(), []).append(conjunct)
    tables = tuple(_group_table(selector.label, group, pair, sets) for pair, group in groups.items())
    return SelectorTables(selector=selector.label, tables=tables)
