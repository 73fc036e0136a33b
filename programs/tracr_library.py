"""Tracr's program library, written afresh for rasp_lab.

Every factory keeps the name, signature and semantics of the function of the same name in
Tracr's ``compiler/lib.py`` (DeepMind, 2023); the bodies are this project's own. Each
returns a RASP SOp whose final node is named; numerical SOps are marked with
``rasp.numerical`` exactly where Tracr computes a numerical mean or a numerical MLP.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from rasp_lab import rasp

__all__ = [
    "make_length",
    "make_reverse",
    "make_hist",
    "make_sort_unique",
    "make_sort",
    "make_sort_freq",
    "make_frac_prevs",
    "make_pair_balance",
    "make_shuffle_dyck",
    "make_shuffle_dyck2",
    "make_shuffle_dyck3",
    "shift_by",
    "detect_pattern",
    "make_shift_by",
    "make_detect_pattern",
    "length",
    "make_count_less_freq",
    "make_count",
    "make_nary_sequencemap",
]


def make_length() -> rasp.SOp:
    """The length of the input, at every position.

    Computed as the width of a selector that selects every key (Select with
    ``Comparison.TRUE``), so it needs no BOS-free primitive.

    Source: Tracr library, ``make_length``.

    >>> make_length()(list("abcd"))
    [4, 4, 4, 4]
    >>> make_length()(["x"])
    [1]
    """
    all_true = rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.TRUE).named("all_true_selector")
    return rasp.SelectorWidth(all_true).named("length")


def make_reverse(sop: rasp.SOp = rasp.tokens) -> rasp.SOp:
    """`sop` read back to front: position i gets ``sop[n - 1 - i]``.

    The opposite index ``length - indices - 1`` is built with two Maps/SequenceMaps and
    used as the query of an EQ selector over the indices.

    Source: Tracr library, ``make_reverse``.

    >>> make_reverse()(list("abc"))
    ['c', 'b', 'a']
    >>> make_reverse()(["z"])
    ['z']
    """
    length = make_length()
    opp_idx = (length - rasp.indices).named("opp_idx")
    opp_idx = (opp_idx - 1).named("opp_idx-1")
    reverse_selector = rasp.Select(rasp.indices, opp_idx, rasp.Comparison.EQ).named("reverse_selector")
    return rasp.Aggregate(reverse_selector, sop).named("reverse")


def make_hist() -> rasp.SOp:
    """How many times the token at each position occurs in the whole input.

    Source: Tracr library, ``make_hist`` (the RASP paper's histogram).

    >>> make_hist()(list("abbccc"))
    [1, 2, 2, 3, 3, 3]
    >>> make_hist()(["a"])
    [1]
    """
    same_tok = rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.EQ).named("same_tok")
    return rasp.SelectorWidth(same_tok).named("hist")


def make_sort_unique(vals: rasp.SOp, keys: rasp.SOp) -> rasp.SOp:
    """`vals` reordered by increasing `keys`; the keys must be pairwise distinct.

    Each position's target slot is the number of strictly smaller keys (a SelectorWidth),
    and each output slot i reads the value whose target is i.

    Source: Tracr library, ``make_sort_unique``.

    >>> make_sort_unique(rasp.tokens, rasp.tokens)([3, 1, 4, 2])
    [1, 2, 3, 4]
    >>> make_sort_unique(rasp.tokens, rasp.tokens)([7])
    [7]
    """
    smaller = rasp.Select(keys, keys, rasp.Comparison.LT).named("smaller")
    target_pos = rasp.SelectorWidth(smaller).named("target_pos")
    sel_new = rasp.Select(target_pos, rasp.indices, rasp.Comparison.EQ).named("sel_new")
    return rasp.Aggregate(sel_new, vals).named("sort")


def make_sort(vals: rasp.SOp, keys: rasp.SOp, *, max_seq_len: int, min_key: float) -> rasp.SOp:
    """`vals` stably sorted by `keys`, which may repeat.

    Ties are broken by position: the key at index i becomes
    ``key + min_key * i / max_seq_len``, which keeps keys distinct as long as ``min_key``
    is at most the smallest gap between two distinct keys and the input is no longer than
    ``max_seq_len``; then ``make_sort_unique`` does the rest.

    Source: Tracr library, ``make_sort``.

    >>> make_sort(rasp.tokens, rasp.tokens, max_seq_len=5, min_key=1)([3, 1, 3, 2, 1])
    [1, 1, 2, 3, 3]
    >>> make_sort(rasp.tokens, rasp.tokens, max_seq_len=5, min_key=1)([2])
    [2]
    """
    tie_broken = rasp.SequenceMap(lambda x, i: x + min_key * i / max_seq_len, keys, rasp.indices).named("keys")
    return make_sort_unique(vals, tie_broken)


def make_sort_freq(max_seq_len: int) -> rasp.SOp:
    """The tokens sorted by decreasing frequency (ties keep their input order).

    Sorts the tokens by the key ``-hist`` with ``make_sort(..., min_key=1)``.

    Source: Tracr library, ``make_sort_freq``.

    >>> make_sort_freq(max_seq_len=5)(list("abcbc"))
    ['b', 'c', 'b', 'c', 'a']
    >>> make_sort_freq(max_seq_len=5)(list("a"))
    ['a']
    """
    neg_hist = (-1 * make_hist()).named("neg_hist")
    return make_sort(rasp.tokens, neg_hist, max_seq_len=max_seq_len, min_key=1).named("sort_freq")


def make_frac_prevs(bools: rasp.SOp) -> rasp.SOp:
    """The fraction of positions up to and including each one where `bools` is true.

    A numerical mean over the selector ``key_index <= query_index``.

    Source: Tracr library, ``make_frac_prevs``.

    >>> make_frac_prevs(rasp.tokens == "x")(list("xyxx"))
    [1.0, 0.5, 0.6666666666666666, 0.75]
    >>> make_frac_prevs(rasp.tokens == "x")(list("y"))
    [0.0]
    """
    bools = rasp.numerical(bools)
    prevs = rasp.Select(rasp.indices, rasp.indices, rasp.Comparison.LEQ).named("prevs")
    return rasp.numerical(rasp.Aggregate(prevs, bools, default=0)).named("frac_prevs")


def make_pair_balance(sop: rasp.SOp, open_token: Any, close_token: Any) -> rasp.SOp:
    """Running balance of an open/close pair, as a fraction of the prefix length.

    At position i: (#open - #close among positions 0..i) / (i + 1), numerical.

    Source: Tracr library, ``make_pair_balance``.

    >>> make_pair_balance(rasp.tokens, "(", ")")(list("(()"))
    [1.0, 1.0, 0.3333333333333333]
    >>> make_pair_balance(rasp.tokens, "(", ")")(list(")"))
    [-1.0]
    """
    # The pair is part of every intermediate name, so that several balances can live in
    # one program (make_shuffle_dyck) without two different nodes sharing a label.
    pair = f"{open_token}{close_token}"
    bools_open = rasp.numerical(sop == open_token).named(f"bools_open_{pair}")
    opens = rasp.numerical(make_frac_prevs(bools_open)).named(f"opens_{pair}")
    bools_close = rasp.numerical(sop == close_token).named(f"bools_close_{pair}")
    closes = rasp.numerical(make_frac_prevs(bools_close)).named(f"closes_{pair}")
    pair_balance = rasp.numerical(rasp.LinearSequenceMap(opens, closes, 1, -1))
    return pair_balance.named("pair_balance")


def make_shuffle_dyck(pairs: Sequence[str]) -> rasp.SOp:
    """1 at every position if the input is in Shuffle-Dyck over `pairs`, else 0.

    `pairs` lists two-character strings such as ``"()"``. Shuffle-Dyck-k asks that every
    pair type be balanced on its own (never more closes than opens in a prefix, equal
    counts at the end); different types may interleave freely. Other tokens are ignored.
    The per-pair balances come from ``make_pair_balance``; "some balance was negative" is
    a numerical mean over all positions.

    Source: Tracr library, ``make_shuffle_dyck``.

    >>> make_shuffle_dyck(["()", "{}"])(list("({)}"))
    [1, 1, 1, 1]
    >>> make_shuffle_dyck(["()"])(list(")("))
    [0, 0]
    """
    if len(pairs) < 1:
        raise ValueError("make_shuffle_dyck needs at least one pair")
    balances = []
    for pair in pairs:
        if len(pair) != 2:
            raise ValueError(f"each pair must have exactly two tokens, got {pair!r}")
        open_token, close_token = pair
        balances.append(make_pair_balance(rasp.tokens, open_token, close_token).named(f"balance_{pair}"))

    any_negative = balances[0] < 0
    for balance in balances[1:]:
        any_negative = any_negative | (balance < 0)
    any_negative = rasp.numerical(rasp.Map(lambda x: x, any_negative)).named("any_negative")
    select_all = rasp.Select(rasp.indices, rasp.indices, rasp.Comparison.TRUE).named("select_all")
    has_neg = rasp.numerical(rasp.Aggregate(select_all, any_negative, default=0)).named("has_neg")

    all_zero = balances[0] == 0
    for balance in balances[1:]:
        all_zero = all_zero & (balance == 0)
    select_last = rasp.Select(rasp.indices, make_length() - 1, rasp.Comparison.EQ).named("select_last")
    last_zero = rasp.Aggregate(select_last, all_zero).named("last_zero")

    not_has_neg = (~has_neg).named("not_has_neg")
    return rasp.SequenceMap(lambda a, b: int(bool(a and b)), last_zero, not_has_neg).named("shuffle_dyck")


def make_shuffle_dyck2() -> rasp.SOp:
    """Shuffle-Dyck-2 over ``()`` and ``{}``: 1 everywhere if balanced per type, else 0.

    Source: Tracr library, ``make_shuffle_dyck2``.

    >>> make_shuffle_dyck2()(list("({})"))
    [1, 1, 1, 1]
    >>> make_shuffle_dyck2()(list("("))
    [0]
    """
    return make_shuffle_dyck(pairs=["()", "{}"]).named("shuffle_dyck2")


def make_shuffle_dyck3() -> rasp.SOp:
    """Shuffle-Dyck-3 over ``()``, ``{}`` and ``[]``: 1 everywhere if balanced per type.

    Source: Tracr library, ``make_shuffle_dyck3``.

    >>> make_shuffle_dyck3()(list("([)]"))
    [1, 1, 1, 1]
    >>> make_shuffle_dyck3()(list("]"))
    [0]
    """
    return make_shuffle_dyck(pairs=["()", "{}", "[]"]).named("shuffle_dyck3")


def shift_by(offset: int, /, sop: rasp.SOp) -> rasp.SOp:
    """`sop` shifted right by `offset`: position i gets ``sop[i - offset]``, None if absent.

    Source: Tracr library, ``shift_by``.

    >>> shift_by(1, rasp.tokens)(list("abc"))
    [None, 'a', 'b']
    >>> shift_by(2, rasp.tokens)(list("a"))
    [None]
    """
    select_off_by_offset = rasp.Select(rasp.indices, rasp.indices, lambda k, q: q == k + offset)
    return rasp.Aggregate(select_off_by_offset, sop, default=None).named(f"shift_by({offset})")


def detect_pattern(sop: rasp.SOp, pattern: Sequence[Any]) -> rasp.SOp:
    """True where `pattern` ends at this position of `sop`, False where it does not.

    The first ``len(pattern) - 1`` positions have no complete window and are None. One
    equality detector per pattern element, shifted into place with ``shift_by`` and
    combined with ``&``.

    Source: Tracr library, ``detect_pattern``.

    >>> detect_pattern(rasp.tokens, "abc")(list("abcabc"))
    [None, None, True, False, False, True]
    >>> detect_pattern(rasp.tokens, "ab")(list("a"))
    [None]
    """
    if len(pattern) < 1:
        raise ValueError(f"the pattern must have at least one element, got {pattern!r}")
    detectors = []
    for shift, element in enumerate(reversed(pattern)):
        detector = sop == element
        if shift != 0:
            detector = shift_by(shift, detector)
        detectors.append(detector)
    detected = detectors.pop()
    while detectors:
        detected = detected & detectors.pop()
    return detected.named(f"detect_pattern({pattern})")


def make_count_less_freq(n: int) -> rasp.SOp:
    """At every position: how many positions hold a token that occurs at most `n` times.

    (Tracr's docstring says "fewer than n"; its selector, kept here, tests ``hist <= n``.)

    Source: Tracr library, ``make_count_less_freq``.

    >>> make_count_less_freq(2)(list("aaabbc"))
    [3, 3, 3, 3, 3, 3]
    >>> make_count_less_freq(1)(list("aa"))
    [0, 0]
    """
    hist = make_hist().named("hist")
    select_less = rasp.Select(hist, hist, lambda k, q: k <= n).named("select_less")
    return rasp.SelectorWidth(select_less).named("count_less_freq")


def make_count(sop: rasp.SOp, token: Any) -> rasp.SOp:
    """At every position: how many positions of `sop` equal `token`.

    Source: Tracr library, ``make_count``.

    >>> make_count(rasp.tokens, "a")(list("abca"))
    [2, 2, 2, 2]
    >>> make_count(rasp.tokens, "a")(list("b"))
    [0]
    """
    return rasp.SelectorWidth(rasp.Select(sop, sop, lambda k, q: k == token)).named(f"count_{token}")


def make_nary_sequencemap(f: Callable[..., Any], *sops: rasp.SOp) -> rasp.SOp:
    """``f(sops[0][i], sops[1][i], ...)`` at each position, from binary SequenceMaps.

    The arguments are gathered into a tuple-valued SOp one SequenceMap at a time, then a
    single Map applies `f` to the tuple.

    Source: Tracr library, ``make_nary_sequencemap``.

    >>> make_nary_sequencemap(lambda x, y, z: x + y - z, rasp.tokens, rasp.tokens, rasp.indices)([1, 2, 3])
    [2, 3, 4]
    >>> make_nary_sequencemap(lambda x: x * 10, rasp.tokens)([4])
    [40]
    """
    if not sops:
        raise ValueError("make_nary_sequencemap needs at least one SOp")
    values = rasp.Map(lambda x: (x,), sops[0]).named("nary_args_1")
    for count, sop in enumerate(sops[1:], start=2):
        values = rasp.SequenceMap(lambda acc, y: (*acc, y), values, sop).named(f"nary_args_{count}")
    return rasp.Map(lambda args: f(*args), values).named("nary_sequencemap")


make_shift_by = shift_by
"""`shift_by` under the name earlier rasp_lab releases gave it."""
make_detect_pattern = detect_pattern
"""`detect_pattern` under the name earlier rasp_lab releases gave it."""
length = make_length()
"""Tracr's module-level `length` SOp (named "length")."""
