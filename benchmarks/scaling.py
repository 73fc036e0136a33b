"""How compile time and model size grow with max_seq_len, rasp_lab beside Tracr.

    python benchmarks/scaling.py                                  # N = 8 .. 128, Tracr if installed
    python benchmarks/scaling.py --lengths 8,16,32,64,128,256 --programs length,hist
    python benchmarks/scaling.py --smoke                          # tiny, for the test suite
    python benchmarks/scaling.py --budget 120                     # give up on a compile after 120 s

Both systems compile the same programs of Tracr's library (built as in compare_tracr.py),
alternating in one process. "warm" is the best of two compiles after a first one (imports and
jit done); rasp_lab compiles with require_exact=False so that every N gets a time, and the
`cert` column says whether the model's error certificate proved it exact (a default compile
refuses it otherwise). The last lines per program give each system's growth exponent: the
least-squares slope of log(time) over log(N), over the lengths both systems compiled. Ratios are Tracr's time over rasp_lab's, from
the same run (these machines are noisy; compare ratios, not seconds). A compile that runs past
`--budget` seconds is stopped and reported as "over"; that system skips the program's longer
lengths.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import pathlib
import runpy
import signal
import sys
import time
import warnings

HERE = pathlib.Path(__file__).resolve().parent
COMPARE = runpy.run_path(str(HERE / "compare_tracr.py"))
DEFAULT_PROGRAMS = ("length", "reverse", "hist", "sort_unique", "sort", "frac_prevs", "shuffle_dyck")


class OverBudget(Exception):
    pass


@contextlib.contextmanager
def budget(seconds: float):
    """Stop the code inside after `seconds` (both compilers run Python loops, which a signal
    interrupts)."""

    def stop(signum, frame):
        raise OverBudget()

    previous = signal.signal(signal.SIGALRM, stop)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _best(fn, repeats: int) -> tuple[float, object]:
    result, best = None, math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def _budgeted(once, repeats: int, seconds: float) -> tuple[float | None, object]:
    """(best time, model) of `repeats` compiles after a first one, or (None, an error
    row) when a compile runs past `seconds` or refuses (a refusal is a result here)."""
    try:
        with budget(seconds):
            once()
        with budget(seconds * repeats):
            return _best(once, repeats)
    except OverBudget:
        return None, {"error": f"over {seconds:g} s", "over": True}
    except Exception as err:
        return None, {"error": f"{type(err).__name__}: {str(err)[:60]}"}


def ours(name: str, n: int, repeats: int, seconds: float) -> dict:
    import rasp_lab

    vocab = set(COMPARE["VOCABS"][name])
    program = COMPARE["build"]("rasp_lab", name, n)

    def once():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return rasp_lab.compile(program, vocab, n, require_exact=False)

    taken, model = _budgeted(once, repeats, seconds)
    if taken is None:
        return model
    return {
        "seconds": taken,
        "certified": model.certificate.exact,
        "layers": len(model.weights.layers),
        "residual": model.layout.width,
        "nonzero": model.parameter_counts()["nonzero"],
    }


def tracr(name: str, n: int, repeats: int, seconds: float) -> dict | None:
    try:
        from tracr.compiler import compiling
    except ImportError:
        return None
    vocab = set(COMPARE["VOCABS"][name])
    program = COMPARE["build"]("tracr", name, n)

    def once():
        return compiling.compile_rasp_to_model(program, vocab, n, compiler_bos="BOS")

    taken, model = _budgeted(once, repeats, seconds)
    if taken is None:
        return model
    return {"seconds": taken, "layers": model.model_config.num_layers, "residual": len(model.residual_labels)}


def slope(points: list[tuple[int, float]]) -> float | None:
    """Least-squares slope of log(seconds) over log(N)."""
    pts = [(math.log(n), math.log(s)) for n, s in points if s > 0]
    if len(pts) < 2:
        return None
    mx = sum(x for x, _ in pts) / len(pts)
    my = sum(y for _, y in pts) / len(pts)
    var = sum((x - mx) ** 2 for x, _ in pts)
    return sum((x - mx) * (y - my) for x, y in pts) / var if var else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--programs", default=",".join(DEFAULT_PROGRAMS))
    parser.add_argument("--lengths", default="8,16,32,64,128")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--no-tracr", action="store_true")
    parser.add_argument("--budget", type=float, default=300.0, help="seconds one compile may take")
    parser.add_argument("--smoke", action="store_true", help="length and hist at N = 4, 8, rasp_lab only")
    args = parser.parse_args(argv)
    if args.smoke:
        args.programs, args.lengths, args.repeats, args.no_tracr = "length,hist", "4,8", 1, True
    programs = [p for p in args.programs.split(",") if p]
    unknown = [p for p in programs if p not in COMPARE["VOCABS"]]
    if unknown:
        parser.error(f"unknown programs {unknown}; choose from {sorted(COMPARE['VOCABS'])}")
    lengths = [int(n) for n in args.lengths.split(",")]
    print(
        f"{'program':12} {'N':>4} {'ours s':>8} {'cert':>5} {'layers':>6} {'resid':>6} {'tracr s':>8} {'tracr/ours':>10}"
    )
    for name in programs:
        mine: list[tuple[int, float]] = []
        theirs: list[tuple[int, float]] = []
        over = {"ours": False, "tracr": False}
        for n in lengths:
            a = (
                {"error": "skipped (shorter was over budget)"}
                if over["ours"]
                else ours(name, n, args.repeats, args.budget)
            )
            b = (
                None
                if args.no_tracr
                else ({"error": "skipped"} if over["tracr"] else tracr(name, n, args.repeats, args.budget))
            )
            over["ours"] = over["ours"] or bool(a.get("over"))
            over["tracr"] = over["tracr"] or bool(b and b.get("over"))
            if "error" in a:
                line = f"{name:12} {n:>4} {a['error']}"
            else:
                mine.append((n, a["seconds"]))
                line = f"{name:12} {n:>4} {a['seconds']:>8.3f} {'yes' if a['certified'] else 'no':>5} {a['layers']:>6} {a['residual']:>6}"
            if b and "seconds" in b:
                theirs.append((n, b["seconds"]))
                ratio = b["seconds"] / a["seconds"] if "seconds" in a else float("nan")
                line += f" {b['seconds']:>8.3f} {ratio:>10.2f}"
            elif b:
                line += f" {b['error']:>8}"
            print(line, flush=True)
        # Exponents over the lengths both systems compiled; ours over all of its own where
        # Tracr compiled fewer than two of them.
        both = {n for n, _ in mine} & {n for n, _ in theirs}
        if len(both) < 2:
            both = {n for n, _ in mine}
        ours_slope = slope([(n, t) for n, t in mine if n in both])
        tracr_slope = slope([(n, t) for n, t in theirs if n in both])
        summary = (
            f"{name:12} growth exponent: rasp_lab {ours_slope:.2f}"
            if ours_slope is not None
            else f"{name:12} growth exponent: -"
        )
        if tracr_slope is not None:
            summary += f", Tracr {tracr_slope:.2f}"
        print(summary, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
