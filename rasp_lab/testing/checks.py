"""`assert_compiles_exactly`: a compiled model against the reference evaluator, with a
diagnosis of the first head or MLP where they part.

Inputs: every input of length 1..L (L from the exhaustive budget unless given), then seeded
random inputs of lengths L+1..max_seq_len, run through the jitted model in batches of one
shape. On the first input whose output differs, the input is run again alone and every SOp
the evaluator traces is decoded from the residual stream after each block, in layer order:
the first residual where some SOp departs from the evaluator's trace names the block (the
head or MLP that computes that SOp, or the sublayer that overwrote it).
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from rasp_lab import rasp
from rasp_lab.errors import CompileError
from rasp_lab.evaluator import EvaluationError, evaluate, trace
from rasp_lab.testing import exhaustive_length
from rasp_lab.validation import ValidationError
from rasp_lab.values import sort_values

if TYPE_CHECKING:
    from rasp_lab.compiler.layout import SOpLocation
    from rasp_lab.compiler.model import CompiledModel

_MAX_BATCH = 1024


@dataclass(frozen=True)
class CheckReport:
    """What `assert_compiles_exactly` checked (returned when the model agrees everywhere)."""

    program: str
    """The program's label."""
    inputs_checked: int
    """Inputs on which the model was compared with the evaluator."""
    exhaustive_up_to: int
    """Every input of length 1..exhaustive_up_to was among them."""
    random_inputs: int
    """Seeded random inputs (longer than exhaustive_up_to) among them."""
    skipped: int
    """Inputs skipped because the evaluator raised EvaluationError there."""
    max_error: float
    """Largest |model - evaluator| over numerical outputs (0.0 for a categorical output)."""

    def __str__(self) -> str:
        skipped = f", {self.skipped} skipped (evaluator error)" if self.skipped else ""
        return (
            f"{self.program}: {self.inputs_checked} inputs agree (all up to length {self.exhaustive_up_to}, "
            f"{self.random_inputs} random longer){skipped}; max numerical error {self.max_error:.2e}"
        )


class NotValid(ValidationError, AssertionError):
    """The program fails validation: a ValidationError (what compile raises) that pytest
    reports as a failed assertion, like every other way the check can fail."""


class NotCertified(CompileError, AssertionError):
    """The program can't be compiled, or its model can't be certified within the
    tolerance: a CompileError (what compile raises) that pytest reports as a failed
    assertion, like every other way the check can fail."""

    def __init__(self, error: CompileError) -> None:
        super().__init__(error.label, str(error).removeprefix(f"{error.label}: "))


class _Undecodable:
    """A categorical block holding no single value (DecodingError's message)."""

    def __init__(self, message: str) -> None:
        self.message = message

    def __repr__(self) -> str:
        return f"<no single value: {self.message}>"


def _inputs(
    tokens: list[Any], max_seq_len: int, up_to: int, samples: int, seed: int
) -> tuple[list[tuple], int]:
    """All inputs of length 1..up_to, then up to `samples` distinct random longer ones
    (the first of them of length max_seq_len)."""
    out = [xs for n in range(1, up_to + 1) for xs in itertools.product(tokens, repeat=n)]
    if up_to >= max_seq_len or samples <= 0:
        return out, 0
    rng = random.Random(seed)
    seen: set[tuple] = set()
    for i in range(samples):
        n = max_seq_len if i == 0 else rng.randint(up_to + 1, max_seq_len)
        seen.add(tuple(rng.choice(tokens) for _ in range(n)))
    randoms = sorted(seen, key=lambda xs: (len(xs), [tokens.index(t) for t in xs]))
    return out + randoms, len(randoms)


def _same(got: Any, expected: Any, numerical: bool, tolerance: float) -> bool:
    if isinstance(got, _Undecodable):
        return False
    if expected is None or got is None:
        return got is None and expected is None
    if numerical or isinstance(expected, float) or isinstance(got, float):
        try:
            return math.isclose(float(got), float(expected), rel_tol=tolerance, abs_tol=tolerance)
        except (TypeError, ValueError):
            return False
    return bool(got == expected)


def _decode_rows(
    model: CompiledModel, residual: np.ndarray, ids: np.ndarray, location: SOpLocation
) -> list[list]:
    """Per row, per position: the decoded value, or _Undecodable where the block holds none."""
    from rasp_lab.compiler.model import DecodingError

    try:
        return model.decode(residual, ids, location)
    except DecodingError:
        pass
    rows = []
    for row in range(len(ids)):
        try:
            rows.append(model.decode(residual[row : row + 1], ids[row : row + 1], location)[0])
        except DecodingError:
            # Decode position by position: the bad positions become _Undecodable.
            n = int(np.sum(ids[row, 1:] != model.input_encoder.pad_encoding))
            values = []
            for p in range(1, n + 1):
                sub_ids = ids[row : row + 1, : p + 1]
                try:
                    values.append(model.decode(residual[row : row + 1, : p + 1], sub_ids, location)[0][-1])
                except DecodingError as err:
                    values.append(_Undecodable(str(err)))
            rows.append(values)
    return rows


def _encode(model: CompiledModel, batch: Sequence[tuple], rows: int, width: int) -> np.ndarray:
    """[rows, width] ids: BOS, the tokens, PAD; rows beyond the batch are empty inputs."""
    enc = model.input_encoder
    ids = np.full((rows, width), enc.pad_encoding, dtype=np.int32)
    ids[:, 0] = enc.bos_encoding
    for row, xs in enumerate(batch):
        ids[row, 1 : len(xs) + 1] = [enc.encoding_map[t] for t in xs]
    return ids


def assert_compiles_exactly(
    program: rasp.SOp,
    vocab: Collection[Any],
    max_seq_len: int,
    *,
    exhaustive_up_to: int | None = None,
    samples: int = 200,
    seed: int = 0,
    causal: bool = False,
    tolerance: float = 1e-4,
    model: CompiledModel | None = None,
    single_rows: int = 64,
    require_exact: bool = True,
) -> CheckReport:
    """Check that the compiled `program` (or the given `model`) agrees with `rasp.evaluate`.

    Compares every input over `vocab` of length 1..`exhaustive_up_to` (default: the longest
    length whose inputs number at most `rasp_lab.testing.exhaustive_budget()`, 5000, or
    100000 in exhaustive mode) and `samples` seeded random inputs up to `max_seq_len`.
    Numerical outputs agree within `tolerance` (relative or absolute); categorical ones
    exactly (None where the evaluator gives None). Inputs where the evaluator raises
    EvaluationError are skipped and counted.

    Raises AssertionError on the first input where the model differs, naming the input, the
    position, the expected and actual values, and the first block (head or MLP, by layer
    and label) after which the residual stream departs from the evaluator's trace. When
    `program` does not compile exactly it raises NotValid (a ValidationError) or
    NotCertified (a CompileError, also when the certificate misses the tolerance), both
    AssertionErrors too, so pytest shows a failed check. Returns a CheckReport.

    Inputs run as padded batches of mixed lengths and, `single_rows` of them spread over
    the list, one row at a time (float32 results may depend on the batch shape). Where the
    model compiled here is certified (`model.certificate.exact`), a numerical output's
    measured error must also stay within the certified bound.

    `require_exact=False` compiles a model whose certificate misses the tolerance anyway
    (rasp_lab.compile's option) and checks it against the evaluator all the same.

    `model` may be compiled from a different program that should compute the same function
    (the diagnosis then compares the SOps whose labels both share).
    """
    __tracebackhide__ = True  # pytest shows the failing assertion, not this toolkit's frames
    if not isinstance(program, rasp.SOp):
        raise TypeError(
            f"assert_compiles_exactly takes an SOp (the program's output), got {type(program).__name__}"
        )
    tokens = sort_values(set(vocab))
    if not tokens:
        raise ValueError("vocab is empty")
    if not (isinstance(max_seq_len, int) and max_seq_len >= 1):
        raise ValueError(f"max_seq_len must be a positive int, got {max_seq_len!r}")
    if not tolerance >= 0:
        raise ValueError(f"tolerance must be >= 0, got {tolerance!r}")
    compiled_here = model is None
    if model is None:
        from rasp_lab.compiling import compile as compile_program

        try:
            model = compile_program(program, tokens, max_seq_len, causal=causal, require_exact=require_exact)
        except ValidationError as err:
            raise NotValid(err.problems) from None
        except CompileError as err:
            raise NotCertified(err) from None
    else:
        if model.causal != causal:
            raise ValueError(
                f"the model was compiled with causal={model.causal}; pass causal={model.causal} to check it"
            )
        if max_seq_len > model.max_seq_len:
            raise ValueError(f"max_seq_len {max_seq_len} exceeds the model's max_seq_len {model.max_seq_len}")
        unknown = [t for t in tokens if t not in model.input_encoder.encoding_map]
        if unknown:
            raise ValueError(
                f"tokens {unknown} are not in the model's vocabulary {sorted(model.vocab, key=repr)}"
            )
    up_to = exhaustive_length(len(tokens), max_seq_len) if exhaustive_up_to is None else exhaustive_up_to
    up_to = max(0, min(int(up_to), max_seq_len))
    candidates, n_random = _inputs(tokens, max_seq_len, up_to, samples, seed)

    checked: list[tuple] = []
    expected: list[list] = []
    skipped = skipped_random = 0
    for i, xs in enumerate(candidates):
        try:
            expected.append(evaluate(program, list(xs), causal=causal))
        except EvaluationError:
            skipped += 1
            skipped_random += i >= len(candidates) - n_random
            continue
        checked.append(xs)

    location = model.output_location
    numerical = location.encoding is rasp.Encoding.NUMERICAL
    # A model compiled here is held to its certificate too; a given model may have been
    # changed after compiling (its certificate then speaks of the weights it was built with).
    certificate = model.certificate
    bound = certificate.bound(location.label) if certificate.exact and compiled_here else None
    max_error = 0.0

    def compare(start: int, batch: list[tuple], ids: np.ndarray) -> None:
        nonlocal max_error
        residuals, _ = model.forward(ids)
        got_rows = _decode_rows(model, residuals[-1], ids, location)
        for row, xs in enumerate(batch):
            want, got = expected[start + row], got_rows[row]
            for position, (g, e) in enumerate(zip(got, want, strict=True)):
                if not _same(g, e, numerical, tolerance):
                    rerun = ([r[row : row + 1] for r in residuals], ids[row : row + 1])
                    raise AssertionError(
                        _mismatch_message(
                            model,
                            program,
                            list(xs),
                            position,
                            want,
                            got,
                            causal,
                            tolerance,
                            start + row,
                            rerun,
                        )
                    )
                if numerical and e is not None and g is not None:
                    error = abs(float(g) - float(e))
                    max_error = max(max_error, error)
                    if bound is not None and error > bound.at(float(e)) * (1 + 1e-6) + 1e-12:
                        raise AssertionError(
                            f"{location.label}: input {list(xs)}, position {position + 1}: the model is off by "
                            f"{error:.3g} from the evaluator's {e!r}, above its certified bound {bound} "
                            f"({bound.at(float(e)):.3g} there): the certificate is unsound here"
                        )

    if checked:
        # Padded batches of mixed lengths, then single rows: float32 sums in a different
        # order for each batch shape, and the answer must not depend on it.
        rows = min(_MAX_BATCH, 1 << (len(checked) - 1).bit_length())
        width = max(len(xs) for xs in checked) + 1
        for start in range(0, len(checked), rows):
            batch = checked[start : start + rows]
            compare(start, batch, _encode(model, batch, rows, width))
        step = max(1, len(checked) // single_rows) if single_rows else len(checked) + 1
        for start in range(0, len(checked), step):
            xs = checked[start]
            compare(start, [xs], _encode(model, [xs], 1, len(xs) + 1))
    return CheckReport(
        program=program.label,
        inputs_checked=len(checked),
        exhaustive_up_to=up_to,
        random_inputs=n_random - skipped_random,
        skipped=skipped,
        max_error=max_error,
    )


# ------------------------------------------------------------------ diagnosis


def _show(values: list) -> str:
    return "[" + ", ".join(_short(v) for v in values) + "]"


def _short(value: Any) -> str:
    if isinstance(value, _Undecodable):
        return "<no single value>"
    if isinstance(value, float):
        return f"{round(value, 6) + 0.0:.7g}"  # 6 decimals: float32 noise such as 1e-7 shows as 0
    return repr(value)


def _ready_residual(location: SOpLocation) -> int:
    """Index in forward's residual list after which the SOp holds its value."""
    if location.mlp_layer is not None:
        return 2 * location.mlp_layer + 2
    if location.head_layer is not None:
        return 2 * location.head_layer + 1
    return 0


def _sublayer(residual: int) -> str:
    if residual == 0:
        return "the embedding"
    layer, part = divmod(residual - 1, 2)
    return f"layer {layer} {'attention' if part == 0 else 'MLP'}"


def _blocks_in(model: CompiledModel, residual: int) -> list[str]:
    if residual == 0:
        return []
    layer, part = divmod(residual - 1, 2)
    lw = model.weights.layers[layer]
    if part == 0:
        return [f"head {h.label!r} (layer {layer}, head {i})" for i, h in enumerate(lw.heads)]
    return [f"MLP {m.label!r} (layer {layer})" for m in lw.mlps]


def _computing_block(model: CompiledModel, location: SOpLocation) -> str:
    """The block after which `location`'s SOp holds its value, by layer and label."""
    label = location.label
    if location.mlp_layer is not None:
        text = f"MLP {label!r} in layer {location.mlp_layer}"
        if location.head_layer is not None:
            heads = [
                i for i, h in enumerate(model.weights.layers[location.head_layer].heads) if h.label == label
            ]
            index = f", head {heads[0]}" if heads else ""
            text += (
                f" (it reads scratch directions written by head {label!r} in layer {location.head_layer}{index}: "
                f"the fault is in one of the two)"
            )
        return text
    if location.head_layer is not None:
        heads = [i for i, h in enumerate(model.weights.layers[location.head_layer].heads) if h.label == label]
        index = f", head {heads[0]}" if heads else ""
        return f"head {label!r} in layer {location.head_layer}{index}"
    return "the embedding (token_embed / pos_embed)"


CATEGORICAL_SLACK = 0.25
"""How far (per direction) a categorical block may be from the one-hot of the evaluator's
value before the diagnosis calls it departed (decoding itself accepts >= 0.75 / <= 0.25)."""


def _departures(
    model: CompiledModel,
    residual: np.ndarray,
    ids: np.ndarray,
    loc: SOpLocation,
    want: list,
    tolerance: float,
) -> tuple[list[int], list]:
    """Positions where the residual's block for `loc` departs from the evaluator's values,
    and the decoded values. A categorical block departs when it is not (within
    CATEGORICAL_SLACK per direction) the one-hot of the expected value (all zero for None)."""
    got = _decode_rows(model, residual, ids, loc)[0]
    if loc.encoding is rasp.Encoding.NUMERICAL:
        return [p for p, (g, e) in enumerate(zip(got, want)) if not _same(g, e, True, tolerance)], got
    block = residual[0, 1 : len(want) + 1, loc.start : loc.stop]  # [positions, directions]
    bad = []
    for p, e in enumerate(want):
        target = np.zeros(block.shape[1])
        if e is not None:
            hits = [j for j, v in enumerate(loc.values) if v == e and (v is None) == (e is None)]
            if not hits:
                bad.append(p)  # the evaluator's value has no direction in the model
                continue
            target[hits[0]] = 1.0
        if (
            not _same(got[p], e, False, tolerance)
            or np.abs(block[p] - target).max(initial=0.0) > CATEGORICAL_SLACK
        ):
            bad.append(p)
    return bad, got


def _block_text(residual: np.ndarray, loc: SOpLocation, position: int) -> str:
    row = residual[0, position + 1, loc.start : loc.stop]
    shown = {str(d): round(float(v), 3) for d, v in zip(loc.directions, row) if abs(v) > 1e-3}
    return str(shown)


def _first_departure(
    model: CompiledModel,
    program: rasp.SOp,
    xs: list,
    causal: bool,
    tolerance: float,
    residuals: list[np.ndarray],
    ids: np.ndarray,
) -> str:
    """Where the residual stream (`residuals`, [1, seq, d_model] each, from the run that
    failed on `xs`) first departs from the evaluator's trace on `xs`."""
    values = trace(program, xs, causal=causal)
    by_label = {node.label: value for node, value in values.items() if isinstance(node, rasp.SOp)}
    locations = sorted(
        (loc for label, loc in model.layout.sops.items() if label in by_label), key=_ready_residual
    )
    if not any(loc.label == model.output_location.label for loc in locations):
        return (
            f"no diagnosis: the model's output SOp {model.output_location.label!r} is not a node of the program "
            f"{program.label!r}"
        )
    for r, residual in enumerate(residuals):
        departed = []
        for loc in locations:
            if _ready_residual(loc) > r:
                continue
            want = by_label[loc.label]
            bad, got = _departures(model, residual, ids, loc, want, tolerance)
            if bad:
                departed.append((loc, bad, got, want))
        if not departed:
            continue
        loc, bad, got, want = departed[0]
        p = bad[0]
        numerical = loc.encoding is rasp.Encoding.NUMERICAL
        if _ready_residual(loc) == r:
            where = f"first departure from the evaluator: {_computing_block(model, loc)}"
        else:
            blocks = ", ".join(_blocks_in(model, r)) or "no blocks"
            where = (
                f"first departure from the evaluator: {_sublayer(r)} ({blocks}) changed SOp {loc.label!r}, "
                f"which {_computing_block(model, loc)} computed correctly"
            )
        value = _short(got[p])
        if not numerical:
            value += f" (block {_block_text(residual, loc, p)})"
        lines = [
            where,
            f"  SOp {loc.label!r} ({'numerical' if numerical else 'categorical'}) at position {p}: "
            f"evaluator {_short(want[p])}, residual after {_sublayer(r)} holds {value}",
            f"  evaluator trace: {_show(want)}",
            f"  model, after {_sublayer(r)}: {_show(got)}",
        ]
        others = [d[0].label for d in departed[1:]]
        if others:
            lines.append(f"  also departing there: {', '.join(repr(o) for o in others)}")
        return "\n".join(lines)
    return "no diagnosis: every SOp holds the evaluator's value after every block (within tolerance)"


def _mismatch_message(
    model: CompiledModel,
    program: rasp.SOp,
    xs: list,
    position: int,
    want: list,
    got: list,
    causal: bool,
    tolerance: float,
    index: int,
    rerun: tuple[list[np.ndarray], np.ndarray],
) -> str:
    alone_ids = model.encode_batch([xs])
    alone = _decode_rows(model, model.forward(alone_ids)[0][-1], alone_ids, model.output_location)[0]
    numerical = model.output_location.encoding is rasp.Encoding.NUMERICAL
    lines = [
        f"compiled model disagrees with rasp.evaluate on program {program.label!r} "
        f"(max_seq_len={model.max_seq_len}, causal={causal}, tolerance={tolerance:g})",
        f"input: {xs!r}",
        f"position {position} (0-based, BOS not counted): expected {_short(want[position])}, got {_short(got[position])}",
        f"  expected: {_show(want)}",
        f"  got:      {_show(got)}",
        _first_departure(model, program, xs, causal, tolerance, *rerun),
        f"({index} inputs agreed before this one; reproduce with model.apply([{model.input_encoder.bos_token!r}, *{xs!r}]))",
    ]
    if all(_same(g, e, numerical, tolerance) for g, e in zip(alone, want)):
        lines.append(
            f"note: run alone (a batch of one), this input gives {_show(alone)}, which agrees: the output depends on "
            f"the batch it runs in (float32 rounding in the jitted forward pass), so the model is exact only up to "
            f"that rounding here"
        )
    return "\n".join(lines)
