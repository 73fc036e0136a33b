"""rasp_lab against Tracr on the same programs, in one run on one machine.

    pip install -e ".[bench]"                       # Tracr comes from the optional extra
    python benchmarks/compare_tracr.py [--lengths 5,10,16] [--programs a,b] [--json out.json]
    python benchmarks/compare_tracr.py --smoke      # one small program, a few seconds

Every program of Tracr's library is built once in each DSL (rasp_lab.programs.tracr_library
and tracr.compiler.lib, same semantics). For each program and max_seq_len, each system runs
in its own fresh subprocess and reports: the cold compile (its first compile in that
process), the warm compile (median of repeats), layers, heads, residual width, MLP width,
total and non-zero parameters, jitted forward throughput at batch 512, and misses against
rasp_lab's reference evaluator on the same seeded random inputs. The table prints ratios
rasp_lab / Tracr, which are what to compare across machines.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
from typing import Any

PROGRAMS = (
    "length",
    "reverse",
    "pair_balance",
    "shuffle_dyck",
    "shuffle_dyck2",
    "hist",
    "sort_unique",
    "sort",
    "sort_freq",
    "frac_prevs",
    "shift_by",
    "detect_pattern",
    "count_less_freq",
    "count",
    "nary_sequencemap",
)

VOCABS: dict[str, list] = {
    "length": ["a", "b", "c"],
    "reverse": ["a", "b", "c"],
    "pair_balance": ["(", ")", "x"],
    "shuffle_dyck": ["(", ")", "[", "]"],
    "shuffle_dyck2": ["(", ")", "{", "}"],
    "hist": ["a", "b", "c"],
    "sort_unique": [1, 2, 3, 4, 5],
    "sort": [1, 2, 3, 4],
    "sort_freq": ["a", "b", "c"],
    "frac_prevs": ["x", "y", "z"],
    "shift_by": ["a", "b", "c"],
    "detect_pattern": ["a", "b", "c"],
    "count_less_freq": ["a", "b", "c"],
    "count": ["a", "b", "c"],
    "nary_sequencemap": [0, 1, 2, 3],
}


def _twice_token_minus_index(x: int, y: int, z: int) -> int:
    return x + y - z


def build(system: str, name: str, n: int) -> Any:
    """The program `name` in `system`'s DSL ('rasp_lab' or 'tracr')."""
    if system == "rasp_lab":
        from rasp_lab.programs import tracr_library as lib

        from rasp_lab import rasp

        shift_by, detect_pattern = lib.shift_by, lib.detect_pattern
    else:
        from tracr.compiler import lib
        from tracr.rasp import rasp

        shift_by, detect_pattern = lib.shift_by, lib.detect_pattern
    t = rasp.tokens
    builders = {
        "length": lambda: lib.make_length(),
        "reverse": lambda: lib.make_reverse(t),
        "pair_balance": lambda: lib.make_pair_balance(t, "(", ")"),
        "shuffle_dyck": lambda: lib.make_shuffle_dyck(["()", "[]"]),
        "shuffle_dyck2": lambda: lib.make_shuffle_dyck2(),
        "hist": lambda: lib.make_hist(),
        "sort_unique": lambda: lib.make_sort_unique(t, t),
        "sort": lambda: lib.make_sort(t, t, max_seq_len=n, min_key=1),
        "sort_freq": lambda: lib.make_sort_freq(max_seq_len=n),
        "frac_prevs": lambda: lib.make_frac_prevs(rasp.numerical(rasp.Map(lambda x: x == "x", t))),
        "shift_by": lambda: shift_by(2, t),
        "detect_pattern": lambda: detect_pattern(t, "abc"),
        "count_less_freq": lambda: lib.make_count_less_freq(2),
        "count": lambda: lib.make_count(t, "a"),
        "nary_sequencemap": lambda: lib.make_nary_sequencemap(_twice_token_minus_index, t, t, rasp.indices),
    }
    return builders[name]()


def inputs(name: str, n: int, count: int) -> list[list]:
    """Seeded random inputs of length n (distinct tokens for sort_unique, which needs them)."""
    rng = random.Random(1234)
    vocab = VOCABS[name]
    if name == "sort_unique":
        return [rng.sample(vocab, min(n, len(vocab))) for _ in range(count)]
    return [[rng.choice(vocab) for _ in range(n)] for _ in range(count)]


def _same(got: Any, expected: Any) -> bool:
    if expected is None or got is None:
        return expected is None and got is None
    if isinstance(expected, float) or isinstance(got, float):
        return abs(float(got) - float(expected)) <= 1e-3 * max(1.0, abs(float(expected)))
    return got == expected


# ------------------------------------------------------------------ one system, one process


def worker(system: str, name: str, n: int, repeats: int, batch: int, samples: int) -> dict:
    import jax
    import numpy as np

    from rasp_lab import rasp as reference_rasp

    vocab = set(VOCABS[name])
    if name == "sort_unique":
        n = min(n, len(vocab))
    program = build(system, name, n)
    if system == "rasp_lab":
        import rasp_lab
        import rasp_lab.compiling  # noqa: F401  (rasp_lab imports lazily; import before timing, as for Tracr)

        def compile_once():
            return rasp_lab.compile(program, vocab, n)
    else:
        from tracr.compiler import compiling

        def compile_once():
            return compiling.compile_rasp_to_model(program, vocab, n, compiler_bos="BOS")

    start = time.perf_counter()
    model = compile_once()
    cold = time.perf_counter() - start
    warm = statistics.median(_timed(compile_once) for _ in range(repeats))

    reference = build("rasp_lab", name, n)
    xs_all = inputs(name, n, samples)
    expected = [reference_rasp.evaluate(reference, xs) for xs in xs_all]
    if system == "rasp_lab":
        got = model.run_batch(xs_all)
        counts = model.parameter_counts()
        params_total, params_nonzero = counts["compact"], counts["nonzero"]
        shapes = model.model_config.layer_shapes
        layers, heads = len(shapes), sum(s.num_heads for s in shapes)
        mlp_width = sum(s.mlp_hidden for s in shapes)
        residual = model.layout.width
        ids = model.encode_batch([xs_all[i % len(xs_all)] for i in range(batch)])

        def forward():
            return jax.block_until_ready(model.forward_jax(ids))
    else:
        encode = model.input_encoder.encode
        ids = np.array([encode(["BOS", *xs_all[i % len(xs_all)]]) for i in range(batch)])
        jitted = jax.jit(model.forward)
        got = []
        checked = np.array([encode(["BOS", *xs]) for xs in xs_all])
        unembedded = np.asarray(jitted(model.params, checked).unembedded_output)
        for row in range(len(xs_all)):
            values = unembedded[row].tolist()
            decoded = model.output_encoder.decode(values) if model.output_encoder else values
            got.append(decoded[1:])
        flat = [a for group in model.params.values() for a in group.values()]
        params_total = int(sum(np.size(a) for a in flat))
        params_nonzero = int(sum(np.count_nonzero(np.asarray(a)) for a in flat))
        cfg = model.model_config
        layers = cfg.num_layers
        heads = _tracr_head_count(model)
        mlp_width = cfg.mlp_hidden_size * cfg.num_layers
        residual = len(model.residual_labels)

        def forward():
            return jax.block_until_ready(jitted(model.params, ids))

    forward()  # jit
    throughput = batch / statistics.median(_timed(forward) for _ in range(max(repeats, 25)))
    misses = sum(not all(_same(g, e) for g, e in zip(gs, es)) or len(gs) != len(es) for gs, es in zip(got, expected))
    return {
        "system": system,
        "program": name,
        "max_seq_len": n,
        "cold_s": cold,
        "warm_s": warm,
        "layers": layers,
        "heads": heads,
        "residual": residual,
        "mlp_width": mlp_width,
        "params": params_total,
        "params_nonzero": params_nonzero,
        "seq_per_s": throughput,
        "misses": misses,
        "checked": len(xs_all),
    }


def _tracr_head_count(model) -> int:
    """Heads with any non-zero query weight (Tracr pads every layer to the same head count)."""
    import numpy as np

    cfg = model.model_config
    count = 0
    for layer in range(cfg.num_layers):
        w = np.asarray(model.params[f"transformer/layer_{layer}/attn/query"]["w"]).reshape(-1, cfg.num_heads, cfg.key_size)
        count += sum(1 for h in range(cfg.num_heads) if np.any(w[:, h, :]))
    return count


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


# ----------------------------------------------------------------------------- the driver


def run_worker(system: str, name: str, n: int, args: argparse.Namespace) -> dict:
    cmd = [
        sys.executable, __file__, "--worker", system, "--programs", name, "--lengths", str(n),
        "--repeats", str(args.repeats), "--batch", str(args.batch), "--samples", str(args.samples),
    ]
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800)
    if done.returncode != 0:
        return {"system": system, "program": name, "max_seq_len": n, "error": done.stderr.strip().splitlines()[-1:]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def table(rows: list[dict]) -> str:
    by_key: dict[tuple, dict[str, dict]] = {}
    for row in rows:
        by_key.setdefault((row["program"], row["max_seq_len"]), {})[row["system"]] = row
    head = (
        f"{'program':18} {'N':>3} | {'cold ×faster':>12} {'warm ×faster':>12} | {'layers':>7} {'heads':>7} "
        f"{'residual':>9} {'MLP':>11} {'params':>17} {'non-zero':>13} | {'thru ×':>7} | {'misses':>9}"
    )
    lines = [head, "-" * len(head)]
    for (program, n), pair in by_key.items():
        ours, theirs = pair.get("rasp_lab"), pair.get("tracr")
        if not ours or not theirs or "error" in ours or "error" in theirs:
            err = (ours or {}).get("error") or (theirs or {}).get("error")
            lines.append(f"{program:18} {n:>3} | error: {err}")
            continue

        def both(key: str, width: int, ours: dict = ours, theirs: dict = theirs) -> str:
            return f"{ours[key]}/{theirs[key]}".rjust(width)

        lines.append(
            f"{program:18} {n:>3} | {theirs['cold_s'] / ours['cold_s']:>12.1f} {theirs['warm_s'] / ours['warm_s']:>12.1f} | "
            f"{both('layers', 7)} {both('heads', 7)} {both('residual', 9)} {both('mlp_width', 11)} "
            f"{both('params', 17)} {both('params_nonzero', 13)} | {ours['seq_per_s'] / theirs['seq_per_s']:>7.2f} | "
            f"{ours['misses']}/{theirs['misses']}".rstrip()
        )
    lines.append("")
    lines.append("×faster: Tracr time / rasp_lab time. a/b: rasp_lab / Tracr. thru ×: rasp_lab seq/s / Tracr seq/s.")
    lines.append("misses: inputs (of the same seeded sample) where the model disagrees with the reference evaluator.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", default="5,10,16")
    parser.add_argument("--programs", default=",".join(PROGRAMS))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--json", default="")
    parser.add_argument("--smoke", action="store_true", help="one small program at N=5, few repeats")
    parser.add_argument("--worker", default="", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    names = [p for p in args.programs.split(",") if p]
    lengths = [int(n) for n in args.lengths.split(",") if n]
    if args.worker:
        print(json.dumps(worker(args.worker, names[0], lengths[0], args.repeats, args.batch, args.samples)))
        return 0
    if args.smoke:
        names, lengths, args.repeats, args.batch, args.samples = ["length"], [5], 1, 16, 20
    rows = []
    for name in names:
        for n in lengths:
            for system in ("rasp_lab", "tracr"):
                rows.append(run_worker(system, name, n, args))
                print(f"  measured {system} {name} N={n}", file=sys.stderr)
    print(table(rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)
    return 1 if any("error" in r for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
