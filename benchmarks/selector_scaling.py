"""How selector compositions scale: AND vs OR vs NOT-AND of m atoms, under each strategy.

    python benchmarks/selector_scaling.py [--atoms 1,2,3,4] [--values 2,3,4,6,8] [--max-vocab 256] [--no-tracr]

Atom i compares digit i of the token (base v) of a key and a query: tokens range over v^m
values, so the m digit SOps are independent with v values each. For SelectorWidth of each
composition and each strategy (auto, factored, product_keys, product_both, multi_head) it
reports residual width, non-zero parameters, layers and compile time ('-': the strategy
does not fit one head), and the analysis time. With Tracr installed (`.[bench]`), Tracr's
workaround is compiled too: a tuple SOp of the digits and one Select on it. Combinations
whose vocabulary would exceed --max-vocab are analysed from value sets only.
"""

from __future__ import annotations

import argparse
import sys
import time

import rasp_lab
from rasp_lab import rasp
from rasp_lab.selectors import analyze, families
from rasp_lab.selectors.families import Digit

STRATEGIES = ("auto", "factored", "product_keys", "product_both", "multi_head")


def compositions(m: int, v: int) -> tuple[dict, list]:
    """AND, OR and NOT-AND of the m equalities d_i == d_i over the digits of the token."""
    digits = families.digits(m, v)
    atoms = families.equalities(digits, digits)
    return {"AND": families.and_of(atoms), "OR": families.or_of(atoms), "NOT-AND": rasp.SelectorNot(families.and_of(atoms))}, digits


def ours(m: int, v: int, vocab_cap: int) -> list[dict]:
    rows = []
    selectors, digits = compositions(m, v)
    for name, selector in selectors.items():
        start = time.perf_counter()
        analysis = analyze(selector, value_sets={d.label: range(v) for d in digits})
        analysis.describe()  # every verdict and the rank band: the analysis is lazy
        analysis_s = time.perf_counter() - start
        row = {"m": m, "v": v, "composition": name, "analysis_s": analysis_s, "encoding": analysis.encoding}
        for strategy in STRATEGIES:
            row[strategy] = _compile(selector, m, v, strategy) if v**m <= vocab_cap else None
        rows.append(row)
    return rows


def _compile(selector, m: int, v: int, strategy: str) -> dict | None:
    program = rasp.SelectorWidth(selector).named("width")
    try:
        start = time.perf_counter()
        model = rasp_lab.compile(program, set(range(v**m)), 4, selector_strategy=strategy)
        seconds = time.perf_counter() - start
    except rasp_lab.CompileError:
        return None
    return {
        "residual": model.layout.width,
        "nonzero": model.parameter_counts()["nonzero"],
        "layers": len(model.weights.layers),
        "compile_s": seconds,
    }


def tracr_workaround(m: int, v: int) -> dict | None:
    """Tracr: the digits joined into one tuple SOp, then one Select on the tuples."""
    try:
        from tracr.compiler import compiling
        from tracr.rasp import rasp as trasp
    except ImportError:
        return None
    selectors: dict[str, dict] = {}
    for name, test in (("AND", all), ("OR", any), ("NOT-AND", lambda bits: not all(bits))):
        digits = [trasp.Map(Digit(i, v), trasp.tokens) for i in range(m)]
        joint = trasp.Map(lambda d: (d,), digits[0])
        for d in digits[1:]:
            joint = trasp.SequenceMap(lambda t, x: (*t, x), joint, d)
        select = trasp.Select(joint, joint, lambda k, q, test=test: test(a == b for a, b in zip(k, q)))
        program = trasp.SelectorWidth(select)
        start = time.perf_counter()
        try:
            model = compiling.compile_rasp_to_model(program, set(range(v**m)), 4, compiler_bos="BOS")
        except Exception as err:  # Tracr's own failures are results here
            selectors[name] = {"error": type(err).__name__}
            continue
        seconds = time.perf_counter() - start
        flat = [a for group in model.params.values() for a in group.values()]
        import numpy as np

        selectors[name] = {
            "residual": len(model.residual_labels),
            "nonzero": int(sum(np.count_nonzero(np.asarray(a)) for a in flat)),
            "layers": model.model_config.num_layers,
            "compile_s": seconds,
        }
    return selectors


def _cell(result: dict | None) -> str:
    if result is None:
        return "-"
    if "error" in result:
        return result["error"]
    return f"{result['residual']}/{result['nonzero']}/{result['layers']}L"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--atoms", default="1,2,3,4")
    parser.add_argument("--values", default="2,3,4,6,8")
    parser.add_argument("--max-vocab", type=int, default=256)
    parser.add_argument("--no-tracr", action="store_true")
    args = parser.parse_args(argv)
    print("cells: residual width / non-zero parameters / layers of SelectorWidth(composition), max_seq_len 4")
    header = f"{'m':>2} {'v':>2} {'composition':11} {'analysis s':>10} {'cheapest':>15} " + " ".join(f"{s:>16}" for s in STRATEGIES)
    if not args.no_tracr:
        header += f" {'tracr tuple':>16}"
    print(header)
    for m in [int(x) for x in args.atoms.split(",")]:
        for v in [int(x) for x in args.values.split(",")]:
            if v ** (2 * m) > 2_000_000:
                continue  # the analysis grid (query tuples x key tuples) would be too large
            tracr = None if args.no_tracr or v**m > args.max_vocab else tracr_workaround(m, v)
            for row in ours(m, v, args.max_vocab):
                line = (
                    f"{m:>2} {v:>2} {row['composition']:11} {row['analysis_s']:>10.3f} {row['encoding']:>15} "
                    + " ".join(f"{_cell(row[s]):>16}" for s in STRATEGIES)
                )
                if not args.no_tracr:
                    line += f" {_cell(tracr.get(row['composition']) if tracr else None):>16}"
                print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
