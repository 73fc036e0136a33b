"""Programs whose natural form combines selectors with ``&``, ``|`` and ``~``.

Written for rasp_lab. Each program's key step is a composed selector (SelectorAnd,
SelectorOr, SelectorNot), which is what they exercise in the evaluator and compiler.
"""

from __future__ import annotations

from rasp_lab import rasp

__all__ = [
    "make_has_earlier_duplicate",
    "make_is_last_instance",
    "make_sort_composed",
    "make_count_earlier_different",
    "make_nearest_prev_equal",
    "make_count_distinct",
    "make_dedup",
]


def _same(sop: rasp.SOp) -> rasp.Selector:
    return rasp.Select(sop, sop, rasp.Comparison.EQ).named("same_value")


def _earlier() -> rasp.Selector:
    return rasp.Select(rasp.indices, rasp.indices, rasp.Comparison.LT).named("earlier")


def _earlier_same_count(sop: rasp.SOp) -> rasp.SOp:
    """How many earlier positions hold the same value (the occurrence number, from 0)."""
    return rasp.SelectorWidth(_same(sop) & _earlier()).named("n_earlier_same")


def make_has_earlier_duplicate(sop: rasp.SOp = rasp.tokens) -> rasp.SOp:
    """True where the same value already occurred at an earlier position.

    Selector: ``Select(sop, sop, EQ) & Select(indices, indices, LT)``.

    Source: rasp_lab (selector compositions).

    >>> make_has_earlier_duplicate()(list("abab"))
    [False, False, True, True]
    >>> make_has_earlier_duplicate()(["a"])
    [False]
    """
    return (_earlier_same_count(sop) > 0).named("has_earlier_duplicate")


def make_is_last_instance(sop: rasp.SOp = rasp.tokens) -> rasp.SOp:
    """True at the last occurrence of each value, False at the others.

    Selector: ``Select(sop, sop, EQ) & Select(indices, indices, GT)`` (a later key), whose
    width must be 0.

    Source: rasp_lab (selector compositions).

    >>> make_is_last_instance()(list("abca"))
    [False, True, True, True]
    >>> make_is_last_instance()(["a"])
    [True]
    """
    later = rasp.Select(rasp.indices, rasp.indices, rasp.Comparison.GT).named("later")
    n_later_same = rasp.SelectorWidth(_same(sop) & later).named("n_later_same")
    return (n_later_same == 0).named("is_last_instance")


def make_sort_composed(vals: rasp.SOp, keys: rasp.SOp) -> rasp.SOp:
    """`vals` stably sorted by `keys`, with the RASP paper's selector written as a composition.

    A key comes before the query when it is smaller, or equal and earlier:
    ``Select(keys, keys, LT) | (Select(keys, keys, EQ) & Select(indices, indices, LT))``.

    Source: RASP paper, Section 3 (sort), composed-selector form.

    >>> make_sort_composed(rasp.tokens, rasp.tokens)([3, 1, 2, 1])
    [1, 1, 2, 3]
    >>> make_sort_composed(rasp.indices, rasp.tokens)(list("bab"))
    [1, 0, 2]
    >>> make_sort_composed(rasp.tokens, rasp.tokens)([5])
    [5]
    """
    smaller = rasp.Select(keys, keys, rasp.Comparison.LT).named("smaller_key")
    tie = rasp.Select(keys, keys, rasp.Comparison.EQ).named("equal_key")
    before = (smaller | (tie & _earlier())).named("sorts_before")
    target_pos = rasp.SelectorWidth(before).named("target_pos")
    move = rasp.Select(target_pos, rasp.indices, rasp.Comparison.EQ).named("move")
    return rasp.Aggregate(move, vals).named("sort_composed")


def make_count_earlier_different(sop: rasp.SOp = rasp.tokens) -> rasp.SOp:
    """How many earlier positions hold a value different from this position's.

    Selector: ``~Select(sop, sop, EQ) & Select(indices, indices, LT)``.

    Source: rasp_lab (selector compositions).

    >>> make_count_earlier_different()(list("aaba"))
    [0, 0, 2, 1]
    >>> make_count_earlier_different()(["a"])
    [0]
    """
    different = (~_same(sop)).named("different_value")
    return rasp.SelectorWidth(different & _earlier()).named("count_earlier_different")


def make_nearest_prev_equal(sop: rasp.SOp = rasp.tokens) -> rasp.SOp:
    """The index of the nearest earlier position with the same value, None if there is none.

    Every position's occurrence number k (earlier equal values, a composed selector's
    width) identifies it among its equals; the previous occurrence is the equal value
    with occurrence number k - 1:
    ``Select(sop, sop, EQ) & Select(occurrence, occurrence, key == query - 1)``.

    Source: rasp_lab (selector compositions).

    >>> make_nearest_prev_equal()(list("abaab"))
    [None, None, 0, 2, 1]
    >>> make_nearest_prev_equal()(["a"])
    [None]
    """
    occurrence = _earlier_same_count(sop)
    previous = rasp.Select(occurrence, occurrence, lambda k, q: k == q - 1).named("previous_occurrence")
    return rasp.Aggregate(_same(sop) & previous, rasp.indices, default=None).named("nearest_prev_equal")


def make_count_distinct(sop: rasp.SOp = rasp.tokens) -> rasp.SOp:
    """The number of distinct values in the input, at every position.

    First occurrences are the positions with no earlier equal value (a composed selector);
    the result is the number of first occurrences.

    Source: rasp_lab (selector compositions).

    >>> make_count_distinct()(list("abacb"))
    [3, 3, 3, 3, 3]
    >>> make_count_distinct()(["a"])
    [1]
    """
    is_first = (_earlier_same_count(sop) == 0).named("is_first_occurrence")
    firsts = rasp.Select(is_first, is_first, lambda k, q: k).named("first_occurrences")
    return rasp.SelectorWidth(firsts).named("count_distinct")


def make_dedup(sop: rasp.SOp = rasp.tokens) -> rasp.SOp:
    """The distinct values in order of first appearance, packed to the front, then None.

    A first occurrence's slot is the number of earlier first occurrences; output slot i
    reads the first occurrence whose slot is i:
    ``Select(slot, indices, EQ) & Select(is_first, indices, key is True)``.

    Source: rasp_lab (selector compositions).

    >>> make_dedup()(list("abacb"))
    ['a', 'b', 'c', None, None]
    >>> make_dedup()(["a"])
    ['a']
    """
    is_first = (_earlier_same_count(sop) == 0).named("is_first_occurrence")
    key_is_first = rasp.Select(is_first, rasp.indices, lambda k, q: k).named("key_is_first_occurrence")
    firsts_before = rasp.Select(is_first, is_first, lambda k, q: k) & _earlier()
    slot = rasp.SelectorWidth(firsts_before).named("slot")
    target = rasp.Select(slot, rasp.indices, rasp.Comparison.EQ).named("target_slot")
    return rasp.Aggregate(target & key_is_first, sop, default=None).named("dedup")
