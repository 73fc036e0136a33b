"""The compiler pipeline, in order: this function is the table of contents.

program -> value sets (and graph) -> validation -> discretiser plans -> selector plans
        -> blocks -> layers -> residual layout -> weights -> CompiledModel
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Iterable, Mapping
from typing import Any

from rasp_lab import rasp
from rasp_lab.certificate import DEFAULT_TOLERANCE, CertificateWarning, certify
from rasp_lab.compiler.assemble import assemble
from rasp_lab.compiler.blocks import NeedsPrecision, build_blocks
from rasp_lab.compiler.discretiser_plans import plan_discretisers
from rasp_lab.compiler.layers import allocate_layers
from rasp_lab.compiler.layout import residual_layout
from rasp_lab.compiler.model import CompiledModel
from rasp_lab.compiler.selector_plans import plan_selectors
from rasp_lab.errors import CompileError
from rasp_lab.graph import distinct_labels
from rasp_lab.progress import Progress
from rasp_lab.validation import ValidationError, check
from rasp_lab.value_sets import value_sets

COMPILER_BOS = "compiler_bos"
COMPILER_PAD = "compiler_pad"
"""Tracr's default BOS and PAD tokens, which `compile_rasp_to_model` keeps (`compile` uses
"BOS" and "PAD")."""

DEFAULT_LEAK = 1e-6
"""Default bound on the attention weight any head puts outside its intended keys."""

_PRECISION_STEPS = 4

COMPILE_SEARCH_BUDGET = 96
"""Inputs the compiler's validation evaluates (`validate` itself tries more). What it misses,
a categorical Aggregate averaging different values, the model reports as a DecodingError."""

COMPILE_SEARCH_CELLS = 100_000
"""Most evaluator cells (length^2 per selector, Aggregate and SelectorWidth) those inputs may
compute, about a tenth of a second: at large max_seq_len the check tries fewer long inputs
rather than costing more than the rest of the compile. `validate()` searches in full."""


def compile_rasp_to_model(
    program: rasp.SOp,
    vocab: Iterable[Any],
    max_seq_len: int,
    causal: bool = False,
    compiler_bos: Any = COMPILER_BOS,
    compiler_pad: Any = COMPILER_PAD,
    mlp_exactness: float = 100,
    *,
    leak: float = DEFAULT_LEAK,
    selector_strategy: str | Mapping[str, str] = "auto",
    tolerance: float = DEFAULT_TOLERANCE,
    work_limit: int | None = None,
    require_exact: bool = True,
    progress: bool | None = None,
) -> CompiledModel:
    """Compile `program` into a transformer that agrees with `rasp.evaluate` on every input
    over `vocab` of length 1..max_seq_len (Tracr's signature; `mlp_exactness` is accepted
    and unused: MLP sharpness is derived from the value sets instead).

    Raises ValidationError listing every problem `validate` finds, or CompileError naming
    the expression that can't be compiled. `selector_strategy` ("auto", an encoding,
    "multi_head", or a dict selector label -> one of those) chooses how selectors become
    heads (see rasp_lab/compiler/selector_plans.py). Every model is certified
    (rasp_lab.certificate): a numerical output within `tolerance * max(1, |v|)` of each
    value v, a categorical one decoded with a margin. The compiler lowers the heads' leak
    while that tightens the bound; if the sound bound still misses the tolerance it raises
    CompileError naming the output and the numbers, or, with `require_exact=False`, returns
    the model with a CertificateWarning (and `model.certificate.exact` False).
    `work_limit` bounds the value-set inference (rasp_lab.value_sets.WORK_LIMIT by default):
    above it, WorkLimitError says how much work it would be before starting. `progress`
    shows the passes as they run (rasp_lab/progress.py): None on a terminal after a few
    seconds, True always, False never.
    """
    del mlp_exactness
    if not isinstance(program, rasp.SOp):
        raise TypeError(
            f"compile takes an SOp (the program's output), got {type(program).__name__} {program!r}"
        )
    if not (isinstance(leak, float | int) and 0 < leak < 1):
        raise ValueError(f"leak must be a bound strictly between 0 and 1, got {leak!r}")
    program = distinct_labels(program)  # two different expressions of one name get labels apart
    shown = Progress(progress, f"compiling {program.label}")
    try:
        return _compile(
            program,
            vocab,
            max_seq_len,
            causal,
            compiler_bos,
            compiler_pad,
            leak,
            selector_strategy,
            tolerance,
            work_limit,
            require_exact,
            shown,
        )
    finally:
        shown.close()


def _compile(
    program: rasp.SOp,
    vocab: Iterable[Any],
    max_seq_len: int,
    causal: bool,
    compiler_bos: Any,
    compiler_pad: Any,
    leak: float,
    selector_strategy: str | Mapping[str, str],
    tolerance: float,
    work_limit: int | None,
    require_exact: bool,
    progress: Progress,
) -> CompiledModel:
    progress.stage("value sets")
    sets = value_sets(program, vocab, max_seq_len, work_limit=work_limit, progress=progress)
    progress.stage("validation")
    errors = [
        p
        for p in check(
            program, sets, causal=causal, budget=COMPILE_SEARCH_BUDGET, max_cells=COMPILE_SEARCH_CELLS
        )
        if p.severity == "error"
    ]
    if errors:
        raise ValidationError(errors)
    progress.stage("discretiser plans")
    discretisers = plan_discretisers(program, sets)
    if discretisers.program is not program:
        sets = value_sets(
            discretisers.program, vocab, max_seq_len, work_limit=work_limit, progress=progress, reuse=sets
        )
    progress.stage("selector plans")
    plans = plan_selectors(discretisers.program, sets, selector_strategy, causal=causal)
    if plans.program is not discretisers.program or plans.extra:
        sets = value_sets(
            plans.program,
            vocab,
            max_seq_len,
            extra=plans.extra,
            work_limit=work_limit,
            progress=progress,
            reuse=plans.value_sets,
        )
    target = float(leak)
    best: CompiledModel | None = None
    for _ in range(_PRECISION_STEPS):
        progress.stage(f"blocks (leak {target:.0e})")
        try:
            blocks = build_blocks(
                sets,
                plans,
                discretisers,
                bos=compiler_bos,
                pad=compiler_pad,
                leak=target,
                causal=causal,
            )
        except NeedsPrecision as need:
            target /= 100
            last = f"its input may be off by {need.error:.3g} (head leak plus float32 rounding) but must stay within {need.tolerance:.3g}"
            failing = need.label
            continue
        progress.stage("layers, layout and weights")
        layers = allocate_layers(blocks)
        layout = residual_layout(blocks, layers)
        weights = assemble(blocks, layers, layout)
        model = CompiledModel.from_compilation(
            program,
            dataclasses.replace(sets, state=None),
            blocks,
            layers,
            layout,
            weights,
            causal=causal,
            leak=target,
        )
        progress.stage("certificate")
        model.certificate = certify(model, tolerance=tolerance)
        if model.certificate.exact:
            return model
        if best is not None and not _better(model, best):
            break  # a smaller leak does not help: the bound is float32's, not the leak's
        best = model
        target /= 100
    if best is None:
        raise CompileError(failing, f"{last}, even with every head's leak down to {target * 100:.1e}")
    if require_exact:
        certificate = best.certificate
        raise CompileError(
            certificate.output,
            f"{certificate.describe()}, with every head's leak down to {best.leak:.1e}. Pass a looser "
            f"tolerance= (now {tolerance:g}), or require_exact=False to get this model anyway (it warns)",
        )
    warnings.warn(
        f"{best.certificate.describe()}. The model was checked against the evaluator by construction, "
        "not proven: its sound float32 bound is looser than the tolerance (see docs/certificate.md)",
        CertificateWarning,
        stacklevel=3,
    )
    return best


def _better(model: CompiledModel, best: CompiledModel) -> bool:
    """Whether a smaller leak at least halved the output's certified error."""
    new, old = (
        model.certificate.bound(model.certificate.output),
        best.certificate.bound(best.certificate.output),
    )
    return new.absolute < old.absolute / 2


def compile(  # noqa: A001  (the name users expect: rasp_lab.compile)
    program: rasp.SOp,
    vocab: Iterable[Any],
    max_seq_len: int,
    *,
    bos: Any = "BOS",
    pad: Any = "PAD",
    causal: bool = False,
    leak: float = DEFAULT_LEAK,
    selector_strategy: str | Mapping[str, str] = "auto",
    tolerance: float = DEFAULT_TOLERANCE,
    work_limit: int | None = None,
    require_exact: bool = True,
    progress: bool | None = None,
) -> CompiledModel:
    """Compile `program`; see compile_rasp_to_model."""
    return compile_rasp_to_model(
        program,
        vocab,
        max_seq_len,
        causal=causal,
        compiler_bos=bos,
        compiler_pad=pad,
        leak=leak,
        selector_strategy=selector_strategy,
        tolerance=tolerance,
        work_limit=work_limit,
        require_exact=require_exact,
        progress=progress,
    )
