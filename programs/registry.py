"""The programs zoo as data: one `ZooProgram` per program, for tests, docs and the CLI.

Each entry says how to build the program (factory and arguments), which inputs it is
meant for (a small vocabulary and maximum length, chosen so exhaustive checks stay
cheap), and a few worked examples, with None written wherever the output has no value.

>>> get("reverse").build()(["a", "b", "c"])
['c', 'b', 'a']
>>> len(ZOO) >= 25
True
"""

from __future__ import annotations

import difflib
import inspect
import types
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rasp_lab import rasp

from . import compositions, rasp_paper, tracr_library

__all__ = ["ZooProgram", "ZOO", "get", "names"]

Example = tuple[list[Any], list[Any]]


@dataclass(frozen=True, eq=False)
class ZooProgram:
    """One program of the zoo.

    name: registry key. factory: the ``make_*`` function; ``build()`` calls it with
    ``args`` and ``kwargs``. vocab: the input tokens (at most 6). max_seq_len: the longest
    input the program is meant for. examples: ``(input, expected output)`` pairs, checked
    with ``rasp.evaluate(program, input, causal=causal)``. source: where the program comes
    from. uses_compositions: whether the program contains ``&``/``|``/``~`` selectors.
    causal: the program computes the same thing under a causal mask, and its examples are
    evaluated causally. precondition: if set, only inputs it accepts are meaningful
    (e.g. distinct keys for ``sort_unique``); see ``accepts``.
    """

    name: str
    factory: Callable[..., rasp.SOp]
    vocab: frozenset[Any]
    max_seq_len: int
    examples: tuple[Example, ...]
    source: str
    description: str
    uses_compositions: bool
    causal: bool = False
    args: tuple[Any, ...] = ()
    kwargs: tuple[tuple[str, Any], ...] = ()
    precondition: Callable[[Sequence[Any]], bool] | None = None

    def build(self, max_seq_len: int | None = None) -> rasp.SOp:
        """The RASP program: ``factory(*args, **kwargs)``.

        With `max_seq_len`, a factory that takes a ``max_seq_len`` argument (e.g.
        ``make_sort``, ``make_sort_freq``) gets that value instead of the registry's, so
        the program is built for inputs up to that length; other factories are unaffected.
        """
        kwargs = dict(self.kwargs)
        if max_seq_len is not None and "max_seq_len" in inspect.signature(self.factory).parameters:
            kwargs["max_seq_len"] = max_seq_len
        return self.factory(*self.args, **kwargs)

    @property
    def module(self) -> str:
        """The module that defines the factory (e.g. ``rasp_lab.programs.rasp_paper``)."""
        return self.factory.__module__

    def accepts(self, xs: Sequence[Any]) -> bool:
        """Whether `xs` is an input the program is specified on."""
        if not 1 <= len(xs) <= self.max_seq_len or any(x not in self.vocab for x in xs):
            return False
        return self.precondition is None or bool(self.precondition(xs))


def _distinct(xs: Sequence[Any]) -> bool:
    return len(set(xs)) == len(xs)


def _twice_token_minus_index(x: int, y: int, z: int) -> int:
    return x + y - z


_ABC = frozenset("abc")
_PARENS = frozenset("()")
_PARENS_X = frozenset("()x")
_TWO_PAIRS_ROUND_SQUARE = frozenset("()[]")
_TWO_PAIRS_ROUND_CURLY = frozenset("(){}")
_THREE_PAIRS = frozenset("()[]{}")
_TRACR = "Tracr library (compiler/lib.py)"
_PAPER = "RASP paper (Weiss, Goldberg, Yahav 2021), Section 3"
_LAB = "rasp_lab (selector compositions)"
_T = rasp.tokens


def _ex(*pairs: tuple[str | list[Any], list[Any]]) -> tuple[Example, ...]:
    return tuple((list(inp), list(out)) for inp, out in pairs)


_PROGRAMS: list[ZooProgram] = [
    # ------------------------------------------------------------------ Tracr library
    ZooProgram(
        name="length",
        factory=tracr_library.make_length,
        vocab=_ABC,
        max_seq_len=6,
        examples=_ex(("abc", [3, 3, 3]), ("a", [1]), ("abcabc", [6] * 6)),
        source=_TRACR,
        description="The input length at every position (width of an all-true selector).",
        uses_compositions=False,
    ),
    ZooProgram(
        name="reverse",
        factory=tracr_library.make_reverse,
        args=(_T,),
        vocab=_ABC,
        max_seq_len=6,
        examples=_ex(("abc", list("cba")), ("a", ["a"]), ("aabc", list("cbaa"))),
        source=_TRACR,
        description="The tokens in reverse order.",
        uses_compositions=False,
    ),
    ZooProgram(
        name="pair_balance",
        factory=tracr_library.make_pair_balance,
        args=(_T, "(", ")"),
        vocab=_PARENS_X,
        max_seq_len=6,
        examples=_ex(
            ("(()", [1.0, 1.0, 1 / 3]),
            (")", [-1.0]),
            ("(x)", [1.0, 0.5, 0.0]),
        ),
        source=_TRACR,
        description="Running (#'(' - #')') / prefix length, numerical.",
        uses_compositions=False,
        causal=True,
    ),
    ZooProgram(
        name="shuffle_dyck",
        factory=tracr_library.make_shuffle_dyck,
        kwargs=(("pairs", ("()", "[]")),),
        vocab=_TWO_PAIRS_ROUND_SQUARE,
        max_seq_len=6,
        examples=_ex(("([)]", [1] * 4), ("(", [0]), ("][", [0, 0]), ("()[]", [1] * 4)),
        source=_TRACR,
        description="1 everywhere iff () and [] are each balanced (interleaving allowed).",
        uses_compositions=False,
    ),
    ZooProgram(
        name="shuffle_dyck2",
        factory=tracr_library.make_shuffle_dyck2,
        vocab=_TWO_PAIRS_ROUND_CURLY,
        max_seq_len=6,
        examples=_ex(("({)}", [1] * 4), ("(", [0]), ("}{", [0, 0]), ("(){}", [1] * 4)),
        source=_TRACR,
        description="Shuffle-Dyck-2 over () and {}: 1 everywhere iff balanced per type.",
        uses_compositions=False,
    ),
    ZooProgram(
        name="shuffle_dyck3",
        factory=tracr_library.make_shuffle_dyck3,
        vocab=_THREE_PAIRS,
        max_seq_len=5,
        examples=_ex(("([)]", [1] * 4), ("]", [0]), ("({[", [0, 0, 0]), ("{}", [1, 1])),
        source=_TRACR,
        description="Shuffle-Dyck-3 over (), {} and []: 1 everywhere iff balanced per type.",
        uses_compositions=False,
    ),
    ZooProgram(
        name="hist",
        factory=tracr_library.make_hist,
        vocab=_ABC,
        max_seq_len=6,
        examples=_ex(("abbccc", [1, 2, 2, 3, 3, 3]), ("a", [1]), ("abab", [2, 2, 2, 2])),
        source=_TRACR,
        description="How often each position's token occurs in the input.",
        uses_compositions=False,
    ),
    ZooProgram(
        name="sort_unique",
        factory=tracr_library.make_sort_unique,
        args=(_T, _T),
        vocab=frozenset({1, 2, 3, 4, 5}),
        max_seq_len=5,
        examples=_ex(([3, 1, 4, 2], [1, 2, 3, 4]), ([5], [5]), ([5, 4, 3, 2, 1], [1, 2, 3, 4, 5])),
        source=_TRACR,
        description="Tokens sorted ascending; keys (the tokens) must be distinct.",
        uses_compositions=False,
        precondition=_distinct,
    ),
    ZooProgram(
        name="sort",
        factory=tracr_library.make_sort,
        args=(_T, _T),
        kwargs=(("max_seq_len", 5), ("min_key", 1)),
        vocab=frozenset({1, 2, 3, 4}),
        max_seq_len=5,
        examples=_ex(([3, 1, 3, 2, 1], [1, 1, 2, 3, 3]), ([2], [2]), ([4, 4], [4, 4])),
        source=_TRACR,
        description="Tokens sorted ascending, repeats allowed (key + min_key*i/max_seq_len tie-break).",
        uses_compositions=False,
    ),
    ZooProgram(
        name="sort_freq",
        factory=tracr_library.make_sort_freq,
        kwargs=(("max_seq_len", 5),),
        vocab=_ABC,
        max_seq_len=5,
        examples=_ex(("abcbc", list("bcbca")), ("a", ["a"]), ("aab", list("aab"))),
        source=_TRACR,
        description="Tokens sorted by decreasing frequency, ties in input order.",
        uses_compositions=False,
    ),
    ZooProgram(
        name="frac_prevs",
        factory=tracr_library.make_frac_prevs,
        args=(_T == "x",),
        vocab=frozenset("xyz"),
        max_seq_len=6,
        examples=_ex(("xyxx", [1.0, 0.5, 2 / 3, 0.75]), ("y", [0.0]), ("zx", [0.0, 0.5])),
        source=_TRACR,
        description="Fraction of positions so far (inclusive) holding 'x', numerical.",
        uses_compositions=False,
        causal=True,
    ),
    ZooProgram(
        name="shift_by",
        factory=tracr_library.shift_by,
        args=(2, _T),
        vocab=_ABC,
        max_seq_len=6,
        examples=_ex(("abca", [None, None, "a", "b"]), ("a", [None]), ("cb", [None, None])),
        source=_TRACR,
        description="The token two positions to the left (None for the first two).",
        uses_compositions=False,
        causal=True,
    ),
    ZooProgram(
        name="detect_pattern",
        factory=tracr_library.detect_pattern,
        args=(_T, "abc"),
        vocab=_ABC,
        max_seq_len=6,
        examples=_ex(
            ("abcabc", [None, None, True, False, False, True]),
            ("a", [None]),
            ("cabc", [None, None, False, True]),
        ),
        source=_TRACR,
        description="True where 'abc' ends here, False elsewhere, None before position 2.",
        uses_compositions=False,
        causal=True,
    ),
    ZooProgram(
        name="count_less_freq",
        factory=tracr_library.make_count_less_freq,
        args=(2,),
        vocab=_ABC,
        max_seq_len=6,
        examples=_ex(("aaabbc", [3] * 6), ("a", [1]), ("aaa", [0, 0, 0]), ("aacbbc", [6] * 6)),
        source=_TRACR,
        description="Number of positions whose token occurs at most 2 times.",
        uses_compositions=False,
    ),
    ZooProgram(
        name="count",
        factory=tracr_library.make_count,
        args=(_T, "a"),
        vocab=_ABC,
        max_seq_len=6,
        examples=_ex(("abca", [2] * 4), ("b", [0]), ("a", [1])),
        source=_TRACR,
        description="Number of 'a' tokens, at every position.",
        uses_compositions=False,
    ),
    ZooProgram(
        name="nary_sequencemap",
        factory=tracr_library.make_nary_sequencemap,
        args=(_twice_token_minus_index, _T, _T, rasp.indices),
        vocab=frozenset({0, 1, 2, 3}),
        max_seq_len=5,
        examples=_ex(([1, 2, 3], [2, 3, 4]), ([0], [0]), ([3, 0, 0, 1], [6, -1, -2, -1])),
        source=_TRACR,
        description="token + token - index, via an n-ary SequenceMap of three SOps.",
        uses_compositions=False,
    ),
    # -------------------------------------------------------------------- RASP paper
    ZooProgram(
        name="paper_length",
        factory=rasp_paper.make_paper_length,
        vocab=_ABC,
        max_seq_len=6,
        examples=_ex(("abc", [3, 3, 3]), ("a", [1]), ("aaaaaa", [6] * 6)),
        source=_PAPER,
        description="Length as the inverse of a mean over an all-true selector.",
        uses_compositions=False,
    ),
    ZooProgram(
        name="paper_reverse",
        factory=rasp_paper.make_paper_reverse,
        args=(_T,),
        vocab=_ABC,
        max_seq_len=6,
        examples=_ex(("abc", list("cba")), ("b", ["b"]), ("abcc", list("ccba"))),
        source=_PAPER,
        description="The tokens in reverse order, with the paper's mean-based length.",
        uses_compositions=False,
    ),
    ZooProgram(
        name="paper_hist",
        factory=rasp_paper.make_histogram,
        vocab=_ABC,
        max_seq_len=6,
        examples=_ex(("abbccc", [1, 2, 2, 3, 3, 3]), ("c", [1]), ("cac", [2, 1, 2])),
        source=_PAPER,
        description="Histogram: how often each position's token occurs (SelectorWidth).",
        uses_compositions=False,
    ),
    ZooProgram(
        name="paper_hist_nobos",
        factory=rasp_paper.make_histogram_nobos,
        vocab=_ABC,
        max_seq_len=6,
        examples=_ex(("abab", [2, 2, 2, 2]), ("abbcc", [1, 2, 2, 2, 2]), ("a", [1]), ("baaa", [1, 3, 3, 3])),
        source=_PAPER,
        description="Histogram from a numerical mean, with position 0 standing in for BOS.",
        uses_compositions=True,
    ),
    ZooProgram(
        name="paper_double_hist",
        factory=rasp_paper.make_double_histogram,
        vocab=frozenset("abcd"),
        max_seq_len=6,
        examples=_ex(
            ("aabcdd", [2] * 6),
            ("aabcd", [1, 1, 3, 3, 3]),
            ("a", [1]),
            ("aaabbc", [1] * 6),
        ),
        source=_PAPER,
        description="Number of distinct tokens occurring as often as this position's token.",
        uses_compositions=True,
    ),
    ZooProgram(
        name="paper_sort",
        factory=rasp_paper.make_paper_sort,
        args=(_T, _T),
        vocab=frozenset("abcd"),
        max_seq_len=6,
        examples=_ex(("bcab", list("abbc")), ("d", ["d"]), ("ddcc", list("ccdd"))),
        source=_PAPER,
        description="Stable sort with a lexicographic (key, index) selector.",
        uses_compositions=False,
    ),
    ZooProgram(
        name="paper_sort_by_most_freq",
        factory=rasp_paper.make_sort_by_most_freq,
        vocab=_ABC,
        max_seq_len=6,
        examples=_ex(("abbcbc", list("bbbcca")), ("a", ["a"]), ("cab", list("cab"))),
        source=_PAPER,
        description="Tokens sorted by decreasing frequency, ties in input order.",
        uses_compositions=False,
    ),
    ZooProgram(
        name="paper_dyck1",
        factory=rasp_paper.make_dyck1,
        vocab=_PARENS,
        max_seq_len=8,
        examples=_ex(("(())", [1] * 4), ("())(", [0] * 4), ("(", [0]), ("()()()", [1] * 6)),
        source=_PAPER,
        description="Dyck-1: 1 everywhere iff the parentheses are balanced.",
        uses_compositions=False,
    ),
    ZooProgram(
        name="paper_dyck2",
        factory=rasp_paper.make_dyck2,
        vocab=_TWO_PAIRS_ROUND_SQUARE,
        max_seq_len=6,
        examples=_ex(("([]())", [1] * 6), ("(]", [0, 0]), (")", [0]), ("([)]", [0] * 4)),
        source=_PAPER,
        description="Dyck-2 over () and []: 1 everywhere iff well nested.",
        uses_compositions=True,
    ),
    ZooProgram(
        name="paper_dyck3",
        factory=rasp_paper.make_dyck3,
        vocab=_THREE_PAIRS,
        max_seq_len=5,
        examples=_ex(("{[]}", [1] * 4), ("{[}]", [0] * 4), ("{", [0]), ("()[]", [1] * 4)),
        source=_PAPER,
        description="Dyck-3 over (), [] and {}: 1 everywhere iff well nested.",
        uses_compositions=True,
    ),
    # ------------------------------------------------------------- compositions
    ZooProgram(
        name="has_earlier_duplicate",
        factory=compositions.make_has_earlier_duplicate,
        args=(_T,),
        vocab=_ABC,
        max_seq_len=6,
        examples=_ex(("abab", [False, False, True, True]), ("a", [False]), ("ccc", [False, True, True])),
        source=_LAB,
        description="True where an identical token occurred earlier (EQ & LT selectors).",
        uses_compositions=True,
    ),
    ZooProgram(
        name="is_last_instance",
        factory=compositions.make_is_last_instance,
        args=(_T,),
        vocab=_ABC,
        max_seq_len=6,
        examples=_ex(("abca", [False, True, True, True]), ("a", [True]), ("bb", [False, True])),
        source=_LAB,
        description="True at the last occurrence of each token (EQ & GT selectors).",
        uses_compositions=True,
    ),
    ZooProgram(
        name="sort_composed",
        factory=compositions.make_sort_composed,
        args=(_T, _T),
        vocab=frozenset({1, 2, 3, 4}),
        max_seq_len=6,
        examples=_ex(([3, 1, 2, 1], [1, 1, 2, 3]), ([4], [4]), ([2, 2, 2], [2, 2, 2])),
        source="RASP paper (Weiss, Goldberg, Yahav 2021), Section 3; selector as LT | (EQ & LT)",
        description="Stable sort with the paper's selector written with | and &.",
        uses_compositions=True,
    ),
    ZooProgram(
        name="count_earlier_different",
        factory=compositions.make_count_earlier_different,
        args=(_T,),
        vocab=_ABC,
        max_seq_len=6,
        examples=_ex(("aaba", [0, 0, 2, 1]), ("a", [0]), ("abc", [0, 1, 2])),
        source=_LAB,
        description="Number of earlier positions with a different token (~EQ & LT).",
        uses_compositions=True,
    ),
    ZooProgram(
        name="nearest_prev_equal",
        factory=compositions.make_nearest_prev_equal,
        args=(_T,),
        vocab=_ABC,
        max_seq_len=6,
        examples=_ex(("abaab", [None, None, 0, 2, 1]), ("a", [None]), ("cc", [None, 0])),
        source=_LAB,
        description="Index of the nearest earlier identical token, None if none.",
        uses_compositions=True,
    ),
    ZooProgram(
        name="count_distinct",
        factory=compositions.make_count_distinct,
        args=(_T,),
        vocab=_ABC,
        max_seq_len=6,
        examples=_ex(("abacb", [3] * 5), ("a", [1]), ("bbbb", [1] * 4)),
        source=_LAB,
        description="Number of distinct tokens, at every position.",
        uses_compositions=True,
    ),
    ZooProgram(
        name="dedup",
        factory=compositions.make_dedup,
        args=(_T,),
        vocab=_ABC,
        max_seq_len=6,
        examples=_ex(("abacb", ["a", "b", "c", None, None]), ("a", ["a"]), ("cc", ["c", None])),
        source=_LAB,
        description="Distinct tokens in order of first appearance, packed left, None-padded.",
        uses_compositions=True,
    ),
]


def _index(programs: list[ZooProgram]) -> Mapping[str, ZooProgram]:
    table: dict[str, ZooProgram] = {}
    for program in programs:
        if program.name in table:
            raise ValueError(f"duplicate zoo program name {program.name!r}")
        table[program.name] = program
    return types.MappingProxyType(table)


ZOO: Mapping[str, ZooProgram] = _index(_PROGRAMS)


def names() -> tuple[str, ...]:
    """The registered program names, in registry order."""
    return tuple(ZOO)


def get(name: str) -> ZooProgram:
    """The zoo entry called `name`; a KeyError listing the known names otherwise."""
    try:
        return ZOO[name]
    except KeyError:
        close = difflib.get_close_matches(str(name), names(), n=3, cutoff=0.6)
        hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else "."
        raise KeyError(f"unknown zoo program {name!r}{hint} Known programs: {', '.join(names())}") from None
