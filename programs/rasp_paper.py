"""Programs from the RASP paper, written afresh for rasp_lab.

Weiss, Goldberg and Yahav, "Thinking Like Transformers" (ICML 2021). Section 3 of the
paper builds length, reverse, histograms, sorting and the Dyck-k recognisers from
``select``, ``aggregate`` and ``selector_width``; the factories here compute the same
functions with this project's Tracr-style DSL. Booleans that a program outputs as a flag
are emitted as the integers 1/0.
"""

from __future__ import annotations

from collections.abc import Sequence

from rasp_lab import rasp

__all__ = [
    "make_paper_length",
    "make_paper_reverse",
    "make_histogram",
    "make_histogram_nobos",
    "make_double_histogram",
    "make_paper_sort",
    "make_sort_by_most_freq",
    "make_dyck",
    "make_dyck1",
    "make_dyck2",
    "make_dyck3",
]


def _first_position_indicator() -> rasp.SOp:
    """Numerical 1 at position 0 and 0 elsewhere."""
    return rasp.numerical(rasp.Map(lambda i: 1 if i == 0 else 0, rasp.indices)).named("is_position_0")


def make_paper_length() -> rasp.SOp:
    """The input length at every position, computed with a mean instead of a width.

    Every query averages the indicator "key is position 0" over all keys, which gives
    ``1/n``; a Map inverts it (rounded, so the result is an exact integer).

    Source: RASP paper, Section 3 ("length" from ``aggregate`` over an all-true selector).

    >>> make_paper_length()(list("abcde"))
    [5, 5, 5, 5, 5]
    >>> make_paper_length()(["a"])
    [1]
    """
    select_all = rasp.Select(rasp.indices, rasp.indices, rasp.Comparison.TRUE).named("select_all")
    inverse_length = rasp.numerical(rasp.Aggregate(select_all, _first_position_indicator(), default=0))
    inverse_length = inverse_length.named("inverse_length")
    # The guard only matters for the value-set analysis: an all-true selector never averages to 0.
    return rasp.Map(lambda x: round(1 / x) if x > 0 else 0, inverse_length).named("paper_length")


def make_paper_reverse(sop: rasp.SOp = rasp.tokens) -> rasp.SOp:
    """`sop` read back to front, with the length computed by ``make_paper_length``.

    ``opp_index = length - indices - 1``; the flip selector matches each key index with
    the query's opposite index.

    Source: RASP paper, Section 3 (reverse).

    >>> make_paper_reverse()(list("abc"))
    ['c', 'b', 'a']
    >>> make_paper_reverse()(["q"])
    ['q']
    """
    opp_index = rasp.SequenceMap(lambda n, i: n - i - 1, make_paper_length(), rasp.indices).named("opp_index")
    flip = rasp.Select(rasp.indices, opp_index, rasp.Comparison.EQ).named("flip")
    return rasp.Aggregate(flip, sop).named("paper_reverse")


def make_histogram() -> rasp.SOp:
    """How many times each position's token occurs in the input.

    ``selector_width(select(tokens, tokens, ==))``; in rasp_lab SelectorWidth is a
    primitive, so no BOS token appears in the program.

    Source: RASP paper, Section 3 (histogram).

    >>> make_histogram()(list("hello"))
    [1, 1, 2, 2, 1]
    >>> make_histogram()(["a"])
    [1]
    """
    same_token = rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.EQ).named("same_token")
    return rasp.SelectorWidth(same_token).named("histogram")


def make_histogram_nobos() -> rasp.SOp:
    """The histogram again, without SelectorWidth: a numerical mean and position 0.

    The paper's ``selector_width`` attends to a BOS position as well as the selected
    ones and inverts the resulting mean. Here position 0 plays the role of BOS: each
    query selects its same-token keys *or* key 0, and averages the indicator of
    position 0, getting ``1/m`` for m selected keys. m is the count when the query's
    token equals the first token (key 0 is then already a same-token key) and the count
    plus one otherwise, so the program subtracts that one back. Exact (rounded inverse).

    Source: RASP paper, Section 3 / Appendix (selector_width from aggregate), adapted
    to have no BOS.

    >>> make_histogram_nobos()(list("abab"))
    [2, 2, 2, 2]
    >>> make_histogram_nobos()(list("abbcc"))
    [1, 2, 2, 2, 2]
    >>> make_histogram_nobos()(["a"])
    [1]
    """
    same_token = rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.EQ).named("same_token")
    key_is_first = rasp.Select(rasp.indices, rasp.indices, lambda k, q: k == 0).named("key_is_first")
    with_anchor = (same_token | key_is_first).named("same_token_or_first")
    inverse = rasp.numerical(rasp.Aggregate(with_anchor, _first_position_indicator(), default=0))
    inverse = inverse.named("inverse_width")
    width = rasp.Map(lambda inv: round(1 / inv) if inv > 0 else 0, inverse).named("width_with_first")
    first_token = rasp.Aggregate(key_is_first, rasp.tokens).named("first_token")
    shares_first = rasp.SequenceMap(lambda t, f: t == f, rasp.tokens, first_token).named("shares_first")
    return rasp.SequenceMap(lambda w, same: w if same else w - 1, width, shares_first).named("histogram_nobos")


def make_double_histogram() -> rasp.SOp:
    """For each position: how many distinct tokens occur exactly as often as its token.

    Marks the first occurrence of every token (no earlier identical token), then counts
    the first occurrences whose histogram value equals the query's.

    Source: RASP paper, Section 3 (double histogram).

    >>> make_double_histogram()(list("aaabbccdef"))
    [1, 1, 1, 2, 2, 2, 2, 3, 3, 3]
    >>> make_double_histogram()(["a"])
    [1]
    """
    hist = make_histogram()
    same_token = rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.EQ)
    earlier = rasp.Select(rasp.indices, rasp.indices, rasp.Comparison.LT)
    n_earlier_same = rasp.SelectorWidth(same_token & earlier).named("n_earlier_same")
    is_first = (n_earlier_same == 0).named("is_first_occurrence")
    same_count = rasp.Select(hist, hist, rasp.Comparison.EQ).named("same_count")
    key_is_first = rasp.Select(is_first, is_first, lambda k, q: k).named("key_is_first_occurrence")
    return rasp.SelectorWidth(same_count & key_is_first).named("double_histogram")


def make_paper_sort(vals: rasp.SOp, keys: rasp.SOp) -> rasp.SOp:
    """`vals` stably sorted by `keys` (repeated keys keep their input order).

    The paper's sort counts, for each position, the positions that come before it in
    the order "smaller key, or same key and smaller index". Here that lexicographic
    order is one Select on (key, index) pairs, so no ``max_seq_len`` or key gap is
    needed. (``compositions.make_sort_composed`` writes the same selector with ``|``/``&``.)

    Source: RASP paper, Section 3 (sort).

    >>> make_paper_sort(rasp.tokens, rasp.tokens)(list("bcab"))
    ['a', 'b', 'b', 'c']
    >>> make_paper_sort(rasp.tokens, rasp.tokens)(["z"])
    ['z']
    """
    key_index = rasp.SequenceMap(lambda k, i: (k, i), keys, rasp.indices).named("key_index")
    before = rasp.Select(key_index, key_index, rasp.Comparison.LT).named("lexicographically_before")
    target_pos = rasp.SelectorWidth(before).named("target_pos")
    move = rasp.Select(target_pos, rasp.indices, rasp.Comparison.EQ).named("move")
    return rasp.Aggregate(move, vals).named("paper_sort")


def make_sort_by_most_freq() -> rasp.SOp:
    """The tokens sorted by decreasing frequency; equally frequent ones keep input order.

    Source: RASP paper, Section 3 (sort by most frequent token).

    >>> make_sort_by_most_freq()(list("abbcbc"))
    ['b', 'b', 'b', 'c', 'c', 'a']
    >>> make_sort_by_most_freq()(["a"])
    ['a']
    """
    neg_hist = rasp.Map(lambda h: -h, make_histogram()).named("neg_histogram")
    return make_paper_sort(rasp.tokens, neg_hist).named("sort_by_most_freq")


def make_dyck1() -> rasp.SOp:
    """1 at every position if the input is a balanced ``()`` string, else 0.

    The running balance (fraction of opens minus fraction of closes so far) must never
    go negative (a numerical mean over all positions detects that) and must be 0 at the
    last position. Tokens other than ``(`` and ``)`` are ignored.

    Source: RASP paper, Section 3 (Dyck-1).

    >>> make_dyck1()(list("(())"))
    [1, 1, 1, 1]
    >>> make_dyck1()(list("())("))
    [0, 0, 0, 0]
    >>> make_dyck1()(list("("))
    [0]
    """
    prevs = rasp.Select(rasp.indices, rasp.indices, rasp.Comparison.LEQ).named("prevs")
    is_open = rasp.numerical(rasp.Map(lambda t: 1 if t == "(" else 0, rasp.tokens)).named("is_open")
    is_close = rasp.numerical(rasp.Map(lambda t: 1 if t == ")" else 0, rasp.tokens)).named("is_close")
    frac_open = rasp.numerical(rasp.Aggregate(prevs, is_open, default=0)).named("frac_open")
    frac_close = rasp.numerical(rasp.Aggregate(prevs, is_close, default=0)).named("frac_close")
    balance = rasp.numerical(rasp.LinearSequenceMap(frac_open, frac_close, 1, -1)).named("balance")
    negative = rasp.numerical(rasp.Map(lambda b: 1 if b < 0 else 0, balance)).named("balance_negative")
    select_all = rasp.Select(rasp.indices, rasp.indices, rasp.Comparison.TRUE).named("select_all")
    frac_negative = rasp.numerical(rasp.Aggregate(select_all, negative, default=0)).named("frac_negative")
    select_last = rasp.Select(rasp.indices, rasp.length - 1, rasp.Comparison.EQ).named("select_last")
    end_balance = rasp.Aggregate(select_last, rasp.Map(lambda b: b == 0, balance)).named("ends_at_zero")
    has_negative = rasp.Map(lambda f: f > 0, frac_negative).named("has_negative")
    return rasp.SequenceMap(lambda neg, end: int(end and not neg), has_negative, end_balance).named("dyck1")


def make_dyck(pairs: Sequence[str]) -> rasp.SOp:
    """1 at every position if the input is a well-nested Dyck word over `pairs`, else 0.

    `pairs` lists two-character strings such as ``"()"``; other tokens are ignored.
    Unlike Shuffle-Dyck, types must nest: ``"([)]"`` is rejected. Steps:

    1. depth after each position = (mean of +1/-1/0 over the prefix) * (index + 1);
    2. the word is rejected if a depth is negative or the final depth is not 0;
    3. a closer at j of depth d (after it) matches the latest earlier position whose depth
       *before* it is d: that is the ``(count - 1)``-th such position, where count is the
       number of earlier positions with depth-before d (a SelectorWidth), and positions
       are identified by (depth-before, rank among equal depth-before);
    4. a closer whose match does not hold its opener rejects the word.

    Source: RASP paper, Section 3 (Dyck-k), written for rasp_lab.

    >>> make_dyck(["()", "[]"])(list("([])"))
    [1, 1, 1, 1]
    >>> make_dyck(["()", "[]"])(list("([)]"))
    [0, 0, 0, 0]
    """
    if len(pairs) < 1:
        raise ValueError("make_dyck needs at least one pair")
    for pair in pairs:
        if len(pair) != 2:
            raise ValueError(f"each pair must have exactly two tokens, got {pair!r}")
    opener_of = {pair[1]: pair[0] for pair in pairs}
    openers = frozenset(pair[0] for pair in pairs)

    delta = rasp.Map(lambda t: 1 if t in openers else (-1 if t in opener_of else 0), rasp.tokens).named("delta")
    prevs = rasp.Select(rasp.indices, rasp.indices, rasp.Comparison.LEQ).named("prevs")
    mean_delta = rasp.numerical(rasp.Aggregate(prevs, rasp.numerical(delta), default=0)).named("mean_delta")
    # A SequenceMap reads categorical inputs: read the mean back into a one-hot first.
    mean_delta_cat = rasp.categorical(rasp.Map(lambda m: m, mean_delta)).named("mean_delta_categorical")
    depth = rasp.SequenceMap(lambda m, i: round(m * (i + 1)), mean_delta_cat, rasp.indices).named("depth")
    depth_before = rasp.SequenceMap(lambda d, s: d - s, depth, delta).named("depth_before")

    earlier = rasp.Select(rasp.indices, rasp.indices, rasp.Comparison.LT).named("earlier")
    same_depth_before = rasp.Select(depth_before, depth_before, rasp.Comparison.EQ)
    rank = rasp.SelectorWidth(same_depth_before & earlier).named("depth_rank")
    reopens = rasp.Select(depth_before, depth, rasp.Comparison.EQ)
    n_candidates = rasp.SelectorWidth(reopens & earlier).named("n_candidates")

    key = rasp.SequenceMap(lambda d, r: (d, r), depth_before, rank).named("position_key")
    key = rasp.SequenceMap(lambda dr, t: (*dr, t), key, rasp.tokens).named("position_key_token")
    wanted_opener = rasp.Map(lambda t: opener_of.get(t, ""), rasp.tokens).named("wanted_opener")
    query = rasp.SequenceMap(lambda d, c: (d, c - 1), depth, n_candidates).named("match_key")
    query = rasp.SequenceMap(lambda dc, o: (*dc, o), query, wanted_opener).named("match_key_token")
    matched = rasp.SelectorWidth(rasp.Select(key, query, rasp.Comparison.EQ)).named("matched")

    is_closer = rasp.Map(lambda t: t in opener_of, rasp.tokens).named("is_closer")
    unmatched = rasp.SequenceMap(lambda c, m: c and m == 0, is_closer, matched).named("unmatched_closer")
    bad = rasp.SequenceMap(lambda u, d: u or d < 0, unmatched, depth).named("bad_position")
    n_bad = rasp.SelectorWidth(rasp.Select(bad, bad, lambda k, q: k)).named("n_bad")
    select_last = rasp.Select(rasp.indices, rasp.length - 1, rasp.Comparison.EQ).named("select_last")
    final_depth = rasp.Aggregate(select_last, depth).named("final_depth")
    return rasp.SequenceMap(lambda nb, fd: int(nb == 0 and fd == 0), n_bad, final_depth).named("dyck")


def make_dyck2() -> rasp.SOp:
    """Dyck-2 over ``()`` and ``[]``: 1 at every position if well nested, else 0.

    Source: RASP paper, Section 3 (Dyck-2).

    >>> make_dyck2()(list("([]())"))
    [1, 1, 1, 1, 1, 1]
    >>> make_dyck2()(list("(]"))
    [0, 0]
    >>> make_dyck2()(list(")"))
    [0]
    """
    return make_dyck(["()", "[]"]).named("dyck2")


def make_dyck3() -> rasp.SOp:
    """Dyck-3 over ``()``, ``[]`` and ``{}``: 1 at every position if well nested, else 0.

    Source: RASP paper, Section 3 (Dyck-3 is the paper's Dyck-k with k = 3).

    >>> make_dyck3()(list("{[]}"))
    [1, 1, 1, 1]
    >>> make_dyck3()(list("{[}]"))
    [0, 0, 0, 0]
    >>> make_dyck3()(list("{"))
    [0]
    """
    return make_dyck(["()", "[]", "{}"]).named("dyck3")
