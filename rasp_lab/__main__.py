"""`python -m rasp_lab`: list the zoo, or evaluate, compile and run a zoo program on tokens.

    python -m rasp_lab list
    python -m rasp_lab run sort 3 1 2
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from rasp_lab import compile, evaluate
from rasp_lab.programs import registry


def parse_tokens(words: Sequence[str], vocab: frozenset) -> list:
    """Map command-line words to vocabulary tokens by their printed form."""
    by_text = {str(token): token for token in vocab}
    unknown = [w for w in words if w not in by_text]
    if unknown:
        shown = " ".join(sorted(by_text))
        raise ValueError(f"unknown token(s) {unknown}; this program's vocabulary is: {shown}")
    return [by_text[w] for w in words]


def _list() -> int:
    for name in registry.names():
        entry = registry.get(name)
        print(f"{name:28} {entry.description}")
    return 0


def _run(name: str, words: Sequence[str]) -> int:
    entry = registry.get(name)
    program = entry.build()
    xs = parse_tokens(words, frozenset(entry.vocab)) if words else list(entry.examples[0][0])
    if len(xs) > entry.max_seq_len:
        raise ValueError(f"{len(xs)} tokens is longer than {name}'s max_seq_len {entry.max_seq_len}")
    expected = evaluate(program, xs, causal=entry.causal)
    model = compile(program, entry.vocab, entry.max_seq_len, causal=entry.causal)
    got = model.run(xs)
    agree = all(_same(a, b) for a, b in zip(got, expected)) and len(got) == len(expected)
    print(f"program:   {name} — {entry.description}")
    print(f"input:     {xs}")
    print(f"evaluated: {expected}")
    print(f"compiled:  {_show(got)}")
    print(f"agree:     {'yes' if agree else 'NO'}")
    print(model.summary())
    return 0 if agree else 1


def _same(got: object, expected: object) -> bool:
    if isinstance(expected, float) or isinstance(got, float):
        return got is not None and expected is not None and abs(float(got) - float(expected)) < 1e-4  # type: ignore[arg-type]
    return got == expected


def _show(values: list) -> list:
    return [round(v, 6) if isinstance(v, float) else v for v in values]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rasp_lab", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("list", help="list the programs zoo")
    run = sub.add_parser("run", help="evaluate and compile a zoo program, run both on tokens (its first example if none are given)")
    run.add_argument("program", help="a name from `list`")
    run.add_argument("tokens", nargs="*", help="input tokens, e.g. 3 1 2")
    args = parser.parse_args(argv)
    try:
        if args.command == "run":
            return _run(args.program, args.tokens)
        if args.command == "list":
            return _list()
        return _run("sort", [])
    except (KeyError, ValueError) as err:
        print(f"error: {err.args[0] if isinstance(err, KeyError) else err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
