"""Regenerate the tables in docs/selector_composition.md from the analysis itself.

    python docs/make_selector_tables.py          # rewrite the tables in place
    python docs/make_selector_tables.py --check  # exit 1 if the page is out of date

The tables sit between `<!-- tables:NAME -->` and `<!-- /tables:NAME -->` markers; the test
suite runs the check, so the page cannot drift from what rasp_lab decides.
"""

from __future__ import annotations

import pathlib
import re
import sys

from rasp_lab import rasp
from rasp_lab.selectors import ENCODINGS, FarkasCertificate, Rectangle, analyze
from rasp_lab.selectors.families import and_of_equalities, copies, digits, or_of_equalities

PAGE = pathlib.Path(__file__).resolve().parent / "selector_composition.md"
C = rasp.Comparison


def _sop(name: str) -> rasp.SOp:
    return rasp.Map(lambda x: x, rasp.tokens, simplify=False).named(name)


def known_cases() -> list[tuple[str, rasp.Selector, dict]]:
    k, k1, k2, q, q1, q2 = (_sop(n) for n in ("k", "k1", "k2", "q", "q1", "q2"))
    t, i = rasp.tokens, rasp.indices
    three = [0, 1, 2]
    vs = {name: three for name in ("k", "k1", "k2", "q", "q1", "q2", "tokens", "indices")}
    return [
        ("`k1 == q1`", rasp.Select(k1, q1, C.EQ), vs),
        ("`(k == q1) & (k < q2)` (one key SOp)", rasp.Select(k, q1, C.EQ) & rasp.Select(k, q2, C.LT), vs),
        ("`(tokens ==) & (indices <)`", rasp.Select(t, t, C.EQ) & rasp.Select(i, i, C.LT), vs),
        ("`(k1 == q1) & (k2 == q2)`", rasp.Select(k1, q1, C.EQ) & rasp.Select(k2, q2, C.EQ), vs),
        ("`(k == q1) \\| (k == q2)`", rasp.Select(k, q1, C.EQ) | rasp.Select(k, q2, C.EQ), vs),
        ("`(k <= q1) \\| (k >= q2)`", rasp.Select(k, q1, C.LEQ) | rasp.Select(k, q2, C.GEQ), vs),
        ("`(k1 == q) \\| (k2 == q)`", rasp.Select(k1, q, C.EQ) | rasp.Select(k2, q, C.EQ), vs),
        ("`(k1 == q1) \\| (k2 == q2)`", rasp.Select(k1, q1, C.EQ) | rasp.Select(k2, q2, C.EQ), vs),
        (
            "lexicographic sort: `(t <) \\| ((t ==) & (i <))`",
            rasp.Select(t, t, C.LT) | (rasp.Select(t, t, C.EQ) & rasp.Select(i, i, C.LT)),
            vs,
        ),
        (
            "XOR: `(k1 == q1) != (k2 == q2)`",
            (rasp.Select(k1, q1, C.EQ) & ~rasp.Select(k2, q2, C.EQ)) | (~rasp.Select(k1, q1, C.EQ) & rasp.Select(k2, q2, C.EQ)),
            vs,
        ),
        ("NAND: `~((k1 == q1) & (k2 == q2))`", ~(rasp.Select(k1, q1, C.EQ) & rasp.Select(k2, q2, C.EQ)), vs),
    ]


def _witness(analysis) -> str:
    w = analysis.witness
    if w is None:
        return "—"
    if isinstance(w, Rectangle):
        return "rectangle"
    if isinstance(w, FarkasCertificate):
        return f"Farkas ({len(w.inequalities)}+{len(w.equalities)} rows)"
    return type(w).__name__


def classification_table() -> str:
    header = "| composition (values {0,1,2}) | " + " | ".join(ENCODINGS) + " | cheapest | why not factored | QK rank ≥ |"
    lines = [header, "|" + "---|" * (len(ENCODINGS) + 4)]
    for name, selector, vs in known_cases():
        a = analyze(selector, value_sets=vs)
        if not a.check():
            raise AssertionError(f"analysis of {name} failed its own check")
        cells = [str(a.widths[e]) if a.widths[e] is not None else "✗" for e in ENCODINGS]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {a.encoding} | {_witness(a)} | {a.rank_lower_bound} |")
    return "\n".join(lines)


def growth_table(max_m: int = 4) -> str:
    lines = [
        "| m | AND: fits one factored head | AND width | OR: cheapest encoding | OR width | OR: QK rank ≥ (2^m − 1) |",
        "|---|---|---|---|---|---|",
    ]
    for m in range(1, max_m + 1):
        keys, queries = copies(m, "k"), copies(m, "q")
        conj, disj = and_of_equalities(keys, queries), or_of_equalities(keys, queries)
        vs = {s.label: [0, 1] for s in keys + queries}
        a_and, a_or = analyze(conj, value_sets=vs), analyze(disj, value_sets=vs)
        lines.append(
            f"| {m} | {'yes' if a_and.fits_one_head else 'no'} | {a_and.widths['factored']} | "
            f"{a_or.encoding} | {a_or.widths[a_or.encoding]} | {a_or.rank_lower_bound} |"
        )
    return "\n".join(lines)


def _band(a) -> str:
    lower, upper = a.band()
    return f"[{lower}{'+' if not a.rank_search_complete else ''}, {upper}]"


def band_table(max_m: int = 4) -> str:
    """The OR of m equalities k_j == q_j under both questions, max_seq_len 3."""
    lines = [
        "| m | free question (two values per SOp) | program: digits of the token (vocab 2^m) | program: copies of the token (vocab {0,1}) |",
        "|---|---|---|---|",
    ]
    for m in range(1, max_m + 1):
        keys, queries = copies(m, "k"), copies(m, "q")
        free = analyze(or_of_equalities(keys, queries), value_sets={s.label: [0, 1] for s in keys + queries})
        correlated = analyze(or_of_equalities(keys, queries), vocab={0, 1}, max_seq_len=3)
        independent = analyze(or_of_equalities(digits(m, 2, "k"), digits(m, 2, "q")), vocab=set(range(2**m)), max_seq_len=3)
        for a in (free, correlated, independent):
            if not a.check():
                raise AssertionError(f"analysis of the OR of {m} failed its own check")
        cells = [f"{a.encoding}, band {_band(a)}" for a in (free, independent, correlated)]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


TABLES = {"classification": classification_table, "growth": growth_table, "band": band_table}


def render(text: str) -> str:
    for name, make in TABLES.items():
        pattern = re.compile(rf"(<!-- tables:{name} -->\n).*?(<!-- /tables:{name} -->)", re.DOTALL)
        if not pattern.search(text):
            raise ValueError(f"{PAGE.name} has no <!-- tables:{name} --> section")
        text = pattern.sub(lambda m, make=make: m.group(1) + make() + "\n" + m.group(2), text)
    return text


def main(argv: list[str]) -> int:
    current = PAGE.read_text()
    fresh = render(current)
    if "--check" in argv:
        if fresh != current:
            print(f"{PAGE} is out of date: run python docs/make_selector_tables.py", file=sys.stderr)
            return 1
        return 0
    PAGE.write_text(fresh)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
