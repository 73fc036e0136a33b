"""`rasp-lab` (or `python -m rasp_lab`): the zoo, compiling, selectors and plots from a shell.

    rasp-lab list                                   the programs zoo
    rasp-lab run sort 3 1 2                         evaluate, compile, run: do they agree?
    rasp-lab run sort.npz "3 1 2"                   run a saved model
    rasp-lab compile sort --vocab 1,2,3,4 --max-seq-len 6 --out sort.npz
    rasp-lab explain "tokens==tokens & indices<indices" --vocab a,b --max-seq-len 8
    rasp-lab plot attention sort "3 1 2" --layer 1 --head 0 --out attention.png

Errors (unknown program, unknown token, bad vocabulary, a selector expression that does not
parse, a program that can't be compiled) go to stderr with exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

VIZ_HINT = "plotting needs matplotlib and rasp_lab.viz: pip install 'rasp-lab[viz]'"
MODEL_SUFFIXES = (".npz", ".safetensors")


class UsageError(ValueError):
    """Bad command-line input; the message says what and, where it helps, what to do."""


# ---------------------------------------------------------------------------- tokens and vocab


def split_words(args: Sequence[str]) -> list[str]:
    """Tokens given as separate arguments, or as one quoted string split on spaces."""
    return [word for arg in args for word in arg.split()]


def parse_tokens(words: Sequence[str], vocab: frozenset) -> list:
    """Map command-line words to vocabulary tokens by their printed form."""
    by_text = {str(token): token for token in vocab}
    unknown = [w for w in words if w not in by_text]
    if unknown:
        shown = " ".join(sorted(by_text))
        raise UsageError(f"unknown token(s) {unknown}; the vocabulary is: {shown}")
    return [by_text[w] for w in words]


_INT = re.compile(r"[+-]?\d+\Z")


def parse_vocab(text: str, like: frozenset | None = None) -> frozenset:
    """`a,b,c` (or `a b c`) -> tokens. Integers become ints; with `like` (a program's own
    vocabulary), tokens must be ints if all of its tokens are, and stay strings otherwise."""
    items = [item.strip() for item in (text.split(",") if "," in text else text.split())]
    if not items or any(not item for item in items):
        raise UsageError(f"bad vocab {text!r}: give tokens separated by commas, e.g. --vocab a,b,c")
    repeated = sorted({item for item in items if items.count(item) > 1})
    if repeated:
        raise UsageError(f"bad vocab {text!r}: {', '.join(repeated)} given more than once")
    wants_ints = (
        like is not None and bool(like) and all(isinstance(t, int) and not isinstance(t, bool) for t in like)
    )
    wants_strs = like is not None and bool(like) and all(isinstance(t, str) for t in like)
    if wants_ints:
        bad = [item for item in items if not _INT.match(item)]
        if bad:
            raise UsageError(
                f"bad vocab {text!r}: {bad} are not integers, and this program's tokens are integers"
            )
        return _distinct(text, items, [int(item) for item in items])
    if wants_strs:
        return frozenset(items)
    return _distinct(text, items, [int(item) if _INT.match(item) else item for item in items])


def _distinct(text: str, items: list[str], tokens: list) -> frozenset:
    """The tokens as a set, refusing words that read as one token (e.g. 1, 01 and +1)."""
    spellings: dict[Any, list[str]] = {}
    for item, token in zip(items, tokens):
        spellings.setdefault(token, []).append(item)
    same = [words for words in spellings.values() if len(words) > 1]
    if same:
        shown = "; ".join(" and ".join(words) for words in same)
        raise UsageError(f"bad vocab {text!r}: {shown} are the same token; give each token once")
    return frozenset(tokens)


def _zoo(name: str):
    from rasp_lab.programs import registry

    try:
        return registry.get(name)
    except KeyError as err:
        raise UsageError(err.args[0]) from None


def _is_model_file(name: str) -> bool:
    return name.endswith(MODEL_SUFFIXES)


# ---------------------------------------------------------------------------- list / run / compile


def _vocab_text(vocab: Any) -> str:
    from rasp_lab.values import sort_values

    return " ".join(str(t) for t in sort_values(vocab))


def _list(args: argparse.Namespace) -> int:
    """The zoo with each program's size as written (SOps) and as compiled at its registry
    settings (layers, parameters of the compact weights): compiling all of it takes seconds."""
    import rasp_lab
    from rasp_lab.graph import build_graph, distinct_labels
    from rasp_lab.programs import registry

    print(f"{'name':26} {'vocab':16} {'max_len':>7} {'SOps':>4} {'layers':>6} {'params':>9}  description")
    for name in registry.names():
        entry = registry.get(name)
        program = entry.build()
        sops = len(build_graph(distinct_labels(program)).sops())
        model = rasp_lab.compile(program, entry.vocab, entry.max_seq_len, causal=entry.causal)
        layers, params = len(model.weights.layers), model.parameter_counts()["compact"]
        causal = " (causal)" if entry.causal else ""
        print(
            f"{name:26} {_vocab_text(entry.vocab):16} {entry.max_seq_len:>7} {sops:>4} {layers:>6} "
            f"{params:>9,}  {entry.description}{causal}"
        )
    return 0


def _show_program(args: argparse.Namespace) -> int:
    from rasp_lab import rasp
    from rasp_lab.graph import build_graph, distinct_labels

    entry = _zoo(args.program)
    program = distinct_labels(entry.build())
    graph = build_graph(program)
    print(f"{entry.name}: {entry.description}")
    print(f"source:      {entry.source}")
    print(f"vocab:       {_vocab_text(entry.vocab)}")
    print(f"max_seq_len: {entry.max_seq_len}{', causal' if entry.causal else ''}")
    print("examples:")
    for tokens, output in entry.examples:
        print(f"  {' '.join(str(t) for t in tokens)}  ->  {output}")
    print(f"expressions ({len(graph.sops())} SOps, {len(graph.selectors())} selectors), inputs first:")
    for label in graph.order:
        expr = graph.nodes[label]
        reads = ", ".join(child.label for child in expr.children)
        kind = type(expr).__name__
        if isinstance(expr, rasp.SOp):
            kind += f" ({rasp.get_encoding(expr).value})"
        print(f"  {label:28} {kind}{f' of {reads}' if reads else ''}")
    return 0


def _run(args: argparse.Namespace) -> int:
    words = split_words(args.tokens)
    if _is_model_file(args.program):
        return _run_file(args.program, words)
    from rasp_lab import compile, evaluate

    name = args.program
    entry = _zoo(name)
    xs = parse_tokens(words, frozenset(entry.vocab)) if words else list(entry.examples[0][0])
    if len(xs) > entry.max_seq_len:
        raise UsageError(f"{len(xs)} tokens is longer than {name}'s max_seq_len {entry.max_seq_len}")
    program = entry.build()
    expected = evaluate(program, xs, causal=entry.causal)
    model = compile(program, entry.vocab, entry.max_seq_len, causal=entry.causal)
    got = model.run(xs)
    agree = len(got) == len(expected) and all(_same(a, b) for a, b in zip(got, expected))
    print(f"program:   {name} — {entry.description}")
    print(f"input:     {xs}")
    print(f"evaluated: {expected}")
    print(f"compiled:  {_show(got)}")
    print(f"agree:     {'yes' if agree else 'NO'}")
    print(model.summary())
    return 0 if agree else 1


def _load(path: str):
    """The model saved at `path`; a file that is not one exits 2 with a one-line message."""
    from rasp_lab import load
    from rasp_lab.model_file import ModelFileError

    try:
        return load(path)
    except (ModelFileError, OSError) as err:  # FileNotFoundError, and IsADirectoryError / PermissionError
        text = " ".join(str(err).split())
        raise _Exit(2, text if len(text) <= 500 else text[:497] + "...") from None


def _run_file(path: str, words: list[str]) -> int:
    model = _load(path)
    if not words:
        example = " ".join(sorted(map(str, model.vocab))[:3])
        raise UsageError(f"give the input tokens, e.g. rasp-lab run {path} {example}")
    xs = parse_tokens(words, model.vocab)
    if len(xs) > model.max_seq_len:
        raise UsageError(f"{len(xs)} tokens is longer than the model's max_seq_len {model.max_seq_len}")
    print(f"model:     {path} ({model.name})")
    print(f"input:     {xs}")
    print(f"compiled:  {_show(model.run(xs))}")
    return 0


def _same(got: object, expected: object) -> bool:
    if isinstance(expected, float) or isinstance(got, float):
        return got is not None and expected is not None and abs(float(got) - float(expected)) < 1e-4  # type: ignore[arg-type]
    return got == expected


def _show(values: list) -> list:
    return [round(v, 6) if isinstance(v, float) else v for v in values]


def _compile(args: argparse.Namespace) -> int:
    from rasp_lab import compile

    entry = _zoo(args.program)
    vocab = parse_vocab(args.vocab, like=entry.vocab) if args.vocab is not None else entry.vocab
    max_seq_len = args.max_seq_len if args.max_seq_len is not None else entry.max_seq_len
    if max_seq_len < 1:
        raise UsageError(f"--max-seq-len must be at least 1, got {max_seq_len}")
    causal = entry.causal if args.causal is None else args.causal
    if args.out is not None and not args.out.endswith(MODEL_SUFFIXES):
        raise UsageError(f"--out {args.out!r}: name the file *.npz or *.safetensors")
    model = compile(entry.build(max_seq_len=max_seq_len), vocab, max_seq_len, causal=causal, leak=args.leak)
    print(model.summary())
    if args.out is not None:
        path = model.save(args.out)
        print(f"saved to {path} (run it with: rasp-lab run {path} TOKENS...)")
    return 0


# ---------------------------------------------------------------------------- explain: selector expressions

OPERATORS = {"==": "EQ", "!=": "NEQ", "<=": "LEQ", ">=": "GEQ", "<": "LT", ">": "GT"}
MAX_NESTING = 100
"""Deepest nesting of ~ and parentheses `explain` parses (each level is a parser call)."""
MAX_ATOMS = 1000
"""Most atoms `explain` analyses in one selector."""
SOP_NAMES = ("tokens", "indices", "length")
CONSTANTS = {"true": "TRUE", "false": "FALSE"}


class SelectorSyntaxError(UsageError):
    """A selector expression that does not parse; `position` is the 0-based offending column."""

    def __init__(self, text: str, position: int, message: str) -> None:
        self.text, self.position = text, position
        start = max(0, position - _SHOWN // 2) if len(text) > _SHOWN else 0
        shown = text[start : start + _SHOWN]
        before, after = ("..." if start else ""), ("..." if start + _SHOWN < len(text) else "")
        caret = " " * (len(before) + position - start)
        super().__init__(
            f"can't parse selector at position {position}: {message}\n  {before}{shown}{after}\n  {caret}^"
        )


_SHOWN = 120
"""Characters of a long selector echoed around the position of a syntax error."""


@dataclass(frozen=True)
class _Token:
    kind: str  # "name", "op", "&", "|", "~", "(", ")", "end"
    text: str
    position: int


_TOKEN = re.compile(r"(?:(?P<name>[A-Za-z_]\w*)|(?P<op>==|!=|<=|>=|<|>)|(?P<sym>[&|~()]))")


def _tokenize(text: str) -> list[_Token]:
    out, position = [], 0
    while True:
        while position < len(text) and text[position].isspace():
            position += 1
        if position == len(text):
            return out + [_Token("end", "", position)]
        match = _TOKEN.match(text, position)
        if match is None:
            raise SelectorSyntaxError(text, position, f"unexpected character {text[position]!r}")
        start = match.start(match.lastgroup)  # type: ignore[arg-type]
        word = match.group(match.lastgroup)  # type: ignore[arg-type]
        kind = match.lastgroup if match.lastgroup != "sym" else word
        out.append(_Token(kind, word, start))  # type: ignore[arg-type]
        position = match.end()


class _Parser:
    """Recursive descent over

        expr    := conj ("|" conj)*
        conj    := unary ("&" unary)*
        unary   := "~" unary | "(" expr ")" | atom
        atom    := sop OP sop | "true" | "false"        (key SOp on the left, query SOp on the right)
        sop     := tokens | indices | length            OP := == != < <= > >=

    building rasp Selects; nothing is ever evaluated as Python."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokenize(text)
        self.at = 0
        self.depth = 0
        self.atoms = 0

    @property
    def next(self) -> _Token:
        return self.tokens[self.at]

    def fail(self, message: str, token: _Token | None = None) -> SelectorSyntaxError:
        token = token or self.next
        got = "the end of the expression" if token.kind == "end" else repr(token.text)
        return SelectorSyntaxError(self.text, token.position, f"{message}, got {got}")

    def take(self) -> _Token:
        token = self.next
        self.at += 1
        return token

    def parse(self):
        if self.next.kind == "end":
            raise self.fail("expected a selector such as tokens==tokens")
        selector = self.expr()
        if self.next.kind != "end":
            raise self.fail("expected &, | or the end of the expression")
        return selector

    def expr(self):
        selector = self.conj()
        while self.next.kind == "|":
            self.take()
            selector = selector | self.conj()
        return selector

    def conj(self):
        selector = self.unary()
        while self.next.kind == "&":
            self.take()
            selector = selector & self.unary()
        return selector

    def unary(self):
        if self.next.kind in ("~", "("):
            self.depth += 1
            if self.depth > MAX_NESTING:
                raise SelectorSyntaxError(
                    self.text,
                    self.next.position,
                    f"nested more than {MAX_NESTING} levels deep (~ and parentheses)",
                )
            selector = self._nested()
            self.depth -= 1
            return selector
        return self.atom()

    def _nested(self):
        if self.next.kind == "~":
            self.take()
            return ~self.unary()
        opening = self.take()
        selector = self.expr()
        if self.next.kind != ")":
            raise self.fail(f"expected ')' to close the '(' at position {opening.position}")
        self.take()
        return selector

    def atom(self):
        from rasp_lab import rasp

        token = self.next
        self.atoms += 1
        if self.atoms > MAX_ATOMS:
            raise SelectorSyntaxError(
                self.text,
                token.position,
                f"more than {MAX_ATOMS} atoms; explain analyses at most {MAX_ATOMS}",
            )
        if token.kind == "name" and token.text.lower() in CONSTANTS:
            self.take()
            return rasp.Select(rasp.indices, rasp.indices, rasp.Comparison[CONSTANTS[token.text.lower()]])
        keys = self.sop("a selector: SOp comparison SOp (e.g. tokens==tokens), true, false, ~ or (")
        if self.next.kind != "op":
            raise self.fail("expected a comparison (==, !=, <, <=, >, >=)")
        predicate = rasp.Comparison[OPERATORS[self.take().text]]
        queries = self.sop("an SOp (tokens, indices or length)")
        return rasp.Select(keys, queries, predicate)

    def sop(self, expected: str):
        from rasp_lab import rasp

        token = self.next
        if token.kind == "name" and token.text in SOP_NAMES:
            self.take()
            return getattr(rasp, token.text)
        if token.kind == "name":
            raise self.fail(f"unknown SOp (known: {', '.join(SOP_NAMES)})")
        raise self.fail(f"expected {expected}")


def parse_selector(text: str):
    """A rasp selector from the small selector language (see _Parser); SelectorSyntaxError
    with the position of the first bad character otherwise."""
    return _Parser(text).parse()


def _explain(args: argparse.Namespace) -> int:
    from rasp_lab.selectors import analyze

    selector = parse_selector(args.selector)
    vocab = parse_vocab(args.vocab)
    if args.max_seq_len < 1:
        raise UsageError(f"--max-seq-len must be at least 1, got {args.max_seq_len}")
    try:
        analysis = analyze(selector, vocab=vocab, max_seq_len=args.max_seq_len, domain=args.domain)
        analysis.describe()  # decides every verdict here, so a bad comparison is reported below
    except TypeError as err:
        raise UsageError(
            f"can't compare these values ({err}); to compare tokens with indices or length, use an "
            f"integer vocabulary (e.g. --vocab 0,1,2)"
        ) from None
    print(f"selector:  {args.selector}")
    print(f"vocab:     {sorted(vocab, key=str)}, max_seq_len {args.max_seq_len}")
    print(analysis.describe())
    return 0


# ---------------------------------------------------------------------------- plot


def _viz():
    try:
        return importlib.import_module("rasp_lab.viz")
    except ImportError as err:
        raise _Exit(2, f"{VIZ_HINT} ({err})") from None


class _Exit(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def _model_for(name: str):
    """A saved model (a *.npz / *.safetensors path) or a zoo program compiled at its settings."""
    if _is_model_file(name):
        return _load(name)
    from rasp_lab import compile

    entry = _zoo(name)
    return compile(entry.build(), entry.vocab, entry.max_seq_len, causal=entry.causal)


def _input_for(model, words: list[str], name: str) -> list:
    xs = parse_tokens(words, model.vocab)
    if not 1 <= len(xs) <= model.max_seq_len:
        raise UsageError(f"give 1 to {model.max_seq_len} tokens for {name}, got {len(xs)}")
    return xs


def _int_or_name(text: str | None) -> int | str | None:
    """A layer or head given by number, or by name (a head's SOp label, a block name)."""
    if text is None:
        return None
    return int(text) if _INT.match(text) else text


def _plot(args: argparse.Namespace) -> int:
    viz = _viz()
    out = args.out or f"{args.kind}.png"
    if args.kind == "graph":
        viz.plot_program_graph(_model_for(args.program), out)
    elif args.kind == "attention":
        model = _model_for(args.program)
        xs = _input_for(model, split_words(args.tokens), args.program)
        viz.plot_attention(model, xs, args.layer, _int_or_name(args.head), out)
    elif args.kind == "qk":
        viz.plot_qk_table(_model_for(args.program), args.layer, _int_or_name(args.head), out)
    elif args.kind == "residual":
        model = _model_for(args.program)
        xs = _input_for(model, split_words(args.tokens), args.program)
        viz.plot_residual(model, xs, out, layer=_int_or_name(args.layer))
    elif args.kind == "growth":
        viz.plot_composition_growth(out)
    print(f"wrote {out}")
    return 0


# ---------------------------------------------------------------------------- the parser


def build_parser(prog: str = "rasp-lab") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Compile RASP programs into transformer weights, and look inside them.",
        epilog="Run `%(prog)s COMMAND --help` for each command's options.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    listing = sub.add_parser("list", help="list the programs zoo", description="List the programs zoo.")
    listing.set_defaults(handler=_list)

    show = sub.add_parser(
        "show",
        help="show one zoo program: source, vocab, examples, its expressions",
        description="Show one zoo program: its source, vocab, max_seq_len, worked examples and expressions.",
    )
    show.add_argument("program", help="a zoo program name (see `list`)")
    show.set_defaults(handler=_show_program)

    run = sub.add_parser(
        "run",
        help="evaluate and compile a zoo program, run both on tokens",
        description="Evaluate a zoo program with the reference evaluator, compile it, run the transformer "
        "on the same tokens and say whether they agree (exit 1 if not). With a saved model file "
        "(*.npz, *.safetensors) instead of a program name, just run the model.",
    )
    run.add_argument("program", help="a name from `list`, or a model file saved by `compile --out`")
    run.add_argument(
        "tokens",
        nargs="*",
        help="input tokens, as separate arguments or one quoted string "
        "(default: the program's first worked example)",
    )
    run.set_defaults(handler=_run)

    comp = sub.add_parser(
        "compile",
        help="compile a zoo program, print its summary, optionally save it",
        description="Compile a zoo program for a vocabulary and maximum length, print the model's summary, "
        "and save it with --out (load it back with rasp_lab.load, or run it with `run FILE TOKENS`).",
    )
    comp.add_argument("program", help="a name from `list`")
    comp.add_argument("--vocab", help="tokens separated by commas, e.g. a,b,c (default: the program's own)")
    comp.add_argument("--max-seq-len", type=int, help="the longest input (default: the program's own)")
    comp.add_argument(
        "--causal",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="compile with a causal mask (default: as the zoo entry says)",
    )
    comp.add_argument(
        "--leak", type=float, default=1e-6, help="bound on each head's attention leak (default 1e-6)"
    )
    comp.add_argument("--out", help="save the model here (*.npz, or *.safetensors with rasp-lab[export])")
    comp.set_defaults(handler=_compile)

    explain = sub.add_parser(
        "explain",
        help="analyze a selector composition: does it fit in one head?",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Analyze a selector written in a small language and say whether one attention head can "
        "compute it, which encoding is cheapest, and a QK rank lower bound.\n\n"
        "  atom:       SOP OP SOP, key SOp on the left, query SOp on the right, or true / false\n"
        "              (tokens<indices selects keys whose token is below the query's index)\n"
        "  SOP:        tokens, indices, length        OP: == != < <= > >=\n"
        "  combine:    a & b (and), a | b (or), ~a (not), parentheses; ~ binds tightest, then &, then |\n\n"
        'example: %(prog)s "tokens==tokens & indices<indices" --vocab a,b --max-seq-len 8',
    )
    explain.add_argument("selector", help='e.g. "(tokens<=tokens) | ~(indices==indices)"')
    explain.add_argument("--vocab", default="1,2,3", help="tokens separated by commas (default 1,2,3)")
    explain.add_argument("--max-seq-len", type=int, default=5, help="the longest input (default 5)")
    explain.add_argument(
        "--domain",
        choices=("program", "product"),
        default="program",
        help="program: only the (query, key) pairs some input realises (default); product: every combination of values",
    )
    explain.set_defaults(handler=_explain)

    plot = sub.add_parser(
        "plot",
        help="draw a program graph, attention, QK table, residual stream (needs rasp-lab[viz])",
        description=f"Draw a figure with rasp_lab.viz ({VIZ_HINT}). PROGRAM is a zoo name "
        "(compiled at its registry settings) or a saved model file.",
    )
    kinds = plot.add_subparsers(dest="kind", metavar="KIND", required=True)

    def kind(
        name: str,
        help: str,
        *,
        program: bool = True,
        tokens: bool = False,
        head: bool = False,
        layer: bool = False,
    ) -> argparse.ArgumentParser:
        p = kinds.add_parser(name, help=help, description=help[0].upper() + help[1:] + ".")
        if program:
            p.add_argument("program", help="a name from `list`, or a saved model file")
        if tokens:
            p.add_argument(
                "tokens", nargs="+", help="input tokens, as separate arguments or one quoted string"
            )
        if head:
            p.add_argument("--layer", type=int, required=True, help="the layer")
            p.add_argument(
                "--head", required=True, help="the head's index in its layer, or the label of its SOp"
            )
        if layer:
            p.add_argument(
                "--layer",
                default=None,
                help="only this layer (a number), or one block such as layer_0/attn (default: all)",
            )
        p.add_argument("--out", help=f"the image file to write (default: {name}.png)")
        return p

    kind("graph", "the program's computation graph (a saved model's as its weights wire it)")
    kind("attention", "one head's attention pattern on an input", tokens=True, head=True)
    kind("qk", "one head's query-key table", head=True)
    kind("residual", "the residual stream on an input, by named direction", tokens=True, layer=True)
    kind("growth", "how selector compositions grow per encoding", program=False)
    plot.set_defaults(handler=_plot)
    return parser


def main(argv: Sequence[str] | None = None, prog: str = "rasp-lab") -> int:
    """Run the command line; returns the exit code (0 ok, 1 the model disagrees, 2 bad input)."""
    parser = build_parser(prog)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help (0) or argparse's usage errors (2)
        return exit_.code if isinstance(exit_.code, int) else 0
    if args.command is None:
        parser.print_help()
        return 0
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return _guarded(handler, args)
    except BrokenPipeError:  # e.g. `rasp-lab list | head`: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


def _guarded(handler: Callable[[argparse.Namespace], int], args: Any) -> int:
    from rasp_lab import DecodingError
    from rasp_lab.compiler.model import NotAvailable

    try:
        return handler(args)
    except _Exit as err:
        print(f"error: {err}", file=sys.stderr)
        return err.code
    except DecodingError as err:
        print(f"error: the compiled model gave no clean answer: {err}", file=sys.stderr)
        return 1
    except (
        ValueError,
        FileNotFoundError,
        ModuleNotFoundError,
        NotAvailable,
    ) as err:  # every rasp_lab error is a ValueError
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
