"""Compile every zoo program and measure it, as ratios taken in one run.

    python benchmarks/zoo.py [--max-seq-len N] [--batch B] [--programs a,b,...] [--json out.json]

For each program: compile time (with and without validation's dynamic check as a share),
layers, residual width, parameters (compact, padded, non-zero), and forward throughput of
the jitted haiku model against the plain-numpy forward pass on the same batch. Absolute
times drift on a shared machine; the ratios are what to compare across runs.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time

from rasp_lab.programs import registry

import rasp_lab


def _time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(name: str, max_seq_len: int | None, batch: int, repeats: int) -> dict:
    entry = registry.get(name)
    n = max_seq_len or entry.max_seq_len
    program = entry.build(max_seq_len=n) if max_seq_len else entry.build()
    compile_s = _time(lambda: rasp_lab.compile(program, entry.vocab, n, causal=entry.causal), repeats)
    model = rasp_lab.compile(program, entry.vocab, n, causal=entry.causal)
    rng = random.Random(0)
    vocab = sorted(entry.vocab, key=repr)
    inputs = [[rng.choice(vocab) for _ in range(n)] for _ in range(batch)]
    ids = model.encode_batch(inputs)
    model.forward(ids)  # jit once
    jax_s = _time(lambda: model.forward(ids), repeats)
    numpy_s = _time(lambda: model.forward_numpy(ids), max(1, repeats // 2))
    counts = model.parameter_counts()
    return {
        "program": name,
        "max_seq_len": n,
        "compile_ms": 1000 * compile_s,
        "layers": len(model.weights.layers),
        "residual": model.layout.width,
        "params_compact": counts["compact"],
        "params_padded": counts["padded"],
        "params_nonzero": counts["nonzero"],
        "compact_over_padded": counts["compact"] / counts["padded"],
        "jax_seq_per_s": batch / jax_s,
        "jax_over_numpy": numpy_s / jax_s,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-seq-len", type=int, default=None, help="compile at this length (default: each program's own)")
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--programs", default="", help="comma-separated names (default: the whole zoo)")
    parser.add_argument("--json", default="", help="also write the rows as JSON to this path")
    args = parser.parse_args(argv)
    names = [n for n in args.programs.split(",") if n] or registry.names()
    rows = [measure(name, args.max_seq_len, args.batch, args.repeats) for name in names]
    header = f"{'program':24} {'N':>3} {'compile ms':>10} {'L':>3} {'d':>5} {'params':>9} {'non-zero':>8} {'compact/padded':>14} {'seq/s':>9} {'jax/numpy':>9}"
    print(header)
    for r in rows:
        print(
            f"{r['program']:24} {r['max_seq_len']:>3} {r['compile_ms']:>10.1f} {r['layers']:>3} {r['residual']:>5} "
            f"{r['params_compact']:>9} {r['params_nonzero']:>8} {r['compact_over_padded']:>14.2f} "
            f"{r['jax_seq_per_s']:>9.0f} {r['jax_over_numpy']:>9.1f}x"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
