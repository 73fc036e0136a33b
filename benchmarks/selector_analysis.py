"""How long the selector analysis takes at realistic sizes, on both questions.

    python benchmarks/selector_analysis.py          # the issue's sizes (about a minute)
    python benchmarks/selector_analysis.py --smoke  # small sizes, for the test suite

Rows: the AND and the OR of m equalities k_j == q_j over SOps with v values each, on the
free question (value sets given: every combination) and, where the vocabulary allows, the
program question (the SOps are digits of the token, or copies of it: independent or
correlated). Each row decides every encoding and the rank band (`describe()`), so the time
is the whole analysis; the ratio column is each row's time over the first row's, measured
in the same run. `stopped` marks a rank search cut by its time budget (RANK_SECONDS).
"""

from __future__ import annotations

import argparse
import sys
import time

from rasp_lab import rasp
from rasp_lab.selectors import RANK_SECONDS, analyze, families

FULL = [("AND", 2, 8), ("AND", 2, 64), ("AND", 4, 16), ("OR", 2, 8), ("OR", 2, 16), ("OR", 2, 32), ("OR", 3, 12)]
SMOKE = [("AND", 2, 4), ("AND", 3, 4), ("OR", 2, 4), ("OR", 3, 2)]
PROGRAM = [("OR", "digits", 2, 2, 4), ("OR", "digits", 3, 2, 4), ("OR", "copies", 3, 2, 4), ("OR", "copies", 4, 2, 4), ("OR", "digits", 2, 4, 4)]
PROGRAM_SMOKE = [("OR", "digits", 2, 2, 3), ("OR", "copies", 3, 2, 3)]


def family(op: str, keys: list, queries: list) -> rasp.Selector:
    return (families.and_of_equalities if op == "AND" else families.or_of_equalities)(keys, queries)


def timed(selector: rasp.Selector, **kwargs) -> tuple[float, object]:
    start = time.perf_counter()
    analysis = analyze(selector, **kwargs)
    analysis.describe()
    return time.perf_counter() - start, analysis


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="small sizes only (the test suite runs this)")
    args = parser.parse_args(argv)
    print(f"rank search budget: {RANK_SECONDS:g} s per analysis")
    print(f"{'question':8} {'family':6} {'sops':>4} {'m':>2} {'v':>3} {'seconds':>8} {'ratio':>7} {'encoding':>15} {'band':>12}")
    base = None
    for op, m, v in SMOKE if args.smoke else FULL:
        keys, queries = families.copies(m, "k"), families.copies(m, "q")
        seconds, a = timed(family(op, keys, queries), value_sets={s.label: range(v) for s in keys + queries})
        base = base or seconds
        lower, upper = a.band()
        band = f"[{lower}{'+' if not a.rank_search_complete else ''}, {upper}]"
        print(f"{'free':8} {op:6} {'any':>4} {m:>2} {v:>3} {seconds:>8.2f} {seconds / base:>7.1f} {a.encoding:>15} {band:>12}", flush=True)
    for op, kind, m, base_v, n in PROGRAM_SMOKE if args.smoke else PROGRAM:
        if kind == "digits":
            keys, queries = families.digits(m, base_v, "k"), families.digits(m, base_v, "q")
            vocab = set(range(base_v**m))
        else:
            keys, queries = families.copies(m, "k"), families.copies(m, "q")
            vocab = set(range(base_v))
        seconds, a = timed(family(op, keys, queries), vocab=vocab, max_seq_len=n)
        lower, upper = a.band()
        band = f"[{lower}{'+' if not a.rank_search_complete else ''}, {upper}]"
        print(f"{'program':8} {op:6} {kind[:4]:>4} {m:>2} {base_v:>3} {seconds:>8.2f} {seconds / base:>7.1f} {a.encoding:>15} {band:>12}", flush=True)
    print("band: [QK rank any head needs (+: search stopped, at least this), rank of the head rasp_lab builds]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
