"""How fast a compiled model can be verified on every input, as sequences per second.

    python benchmarks/exhaustive.py [--programs sort,hist] [--max-len 6] [--batch 4096]

For each program: every sequence over its vocabulary of each length 1..L is run through the
jitted haiku model in padded batches and through the plain-numpy forward pass of the same
weights, decoded, and compared with the reference evaluator. Prints sequences/s for both
passes and their ratio (measured in the same run), and the number of disagreements (0).
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time

import numpy as np
from rasp_lab.programs import registry

import rasp_lab
from rasp_lab import rasp


def all_inputs(vocab: list, max_len: int) -> list[list]:
    return [list(xs) for n in range(1, max_len + 1) for xs in itertools.product(vocab, repeat=n)]


def measure(name: str, max_len: int, batch: int) -> dict:
    entry = registry.get(name)
    n = max(max_len, entry.max_seq_len)
    program = entry.build(max_seq_len=n)
    model = rasp_lab.compile(program, entry.vocab, n, causal=entry.causal)
    inputs = [xs for xs in all_inputs(sorted(entry.vocab, key=repr), max_len) if entry.precondition is None or entry.precondition(xs)]
    longest = max(len(xs) for xs in inputs)
    chunks = [inputs[i : i + batch] for i in range(0, len(inputs), batch)]
    for chunk in chunks:  # one shape: pad the last chunk and every row to `longest`
        chunk += [inputs[-1]] * (batch - len(chunk))
    encoded = []
    for chunk in chunks:
        ids = model.encode_batch(chunk)
        if ids.shape[1] < longest + 1:
            pad = model.input_encoder.pad_encoding
            ids = np.pad(ids, ((0, 0), (0, longest + 1 - ids.shape[1])), constant_values=pad)
        encoded.append(ids)
    model.forward(encoded[0])  # jit once, outside the timing

    start = time.perf_counter()
    got = []
    for ids in encoded:
        residuals, _ = model.forward(ids)
        got += model.decode(residuals[-1], ids)
    jax_s = time.perf_counter() - start

    start = time.perf_counter()
    for ids in encoded[: max(1, len(encoded) // 4)]:
        residuals, _ = model.forward_numpy(ids)
        model.decode(residuals[-1], ids)
    numpy_s = (time.perf_counter() - start) * len(encoded) / max(1, len(encoded) // 4)

    misses = 0
    for xs, out in zip(inputs, got):
        expected = rasp.evaluate(program, xs, causal=entry.causal)
        if any(
            (e is None) != (g is None) or (e is not None and (abs(float(g) - float(e)) > 1e-4 if isinstance(e, float) else g != e))
            for g, e in zip(out, expected)
        ):
            misses += 1
    total = len(encoded) * batch
    return {
        "program": name,
        "inputs": len(inputs),
        "jax_seq_per_s": total / jax_s,
        "numpy_seq_per_s": total / numpy_s,
        "ratio": numpy_s / jax_s,
        "misses": misses,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--programs", default="sort,hist,frac_prevs,shuffle_dyck2")
    parser.add_argument("--max-len", type=int, default=6)
    parser.add_argument("--batch", type=int, default=4096)
    args = parser.parse_args(argv)
    print(f"{'program':16} {'inputs':>8} {'jax seq/s':>11} {'numpy seq/s':>12} {'jax/numpy':>10} {'misses':>7}")
    failed = False
    for name in [p for p in args.programs.split(",") if p]:
        r = measure(name, args.max_len, args.batch)
        failed |= r["misses"] > 0
        print(
            f"{r['program']:16} {r['inputs']:>8} {r['jax_seq_per_s']:>11.0f} {r['numpy_seq_per_s']:>12.0f} "
            f"{r['ratio']:>9.1f}x {r['misses']:>7}"
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
