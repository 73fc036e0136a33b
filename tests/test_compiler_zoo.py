"""Every zoo program, compiled, agrees with the reference evaluator.

- exhaustively at the registry's vocab / max_seq_len (every input while the count allows);
- on seeded random inputs up to length 16, with the program built for that length;
- under a causal mask, against the causal evaluator (also for programs that compute
  something else causally: the model must still agree with the causal semantics);
- the haiku forward against the numpy oracle (compact and padded parameters);
- every head's misplaced attention against the bound the compiler states for it.

Runtime is dominated by XLA compiles, one per (model, batch shape), ~0.4 s each: so every
batch a model sees in these tests has one shape, [rows, 1 + longest input] (inputs of all
lengths together, shorter ones padded with PAD, which the model masks exactly), and
compiled models are shared between tests. One batch per input length would cost ~6
compiles per model instead of 1 (about 80 s more for the exhaustive checks alone).
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pytest
from rasp_lab.programs import registry

import rasp_lab
from rasp_lab import rasp
from rasp_lab.evaluator import topological

NAMES = registry.names()
EXHAUSTIVE_BUDGET = 5000
"""Exhaustive checks take every input of length 1, 2, ... while the total stays within this."""
BATCH_ROWS = 512
NUMERICAL_TOLERANCE = 1e-4
"""Absolute tolerance for numerical outputs (scaled up for magnitudes above 1)."""
LONG = 16
LONG_INPUTS = 200
LONG_MAX_SEQ_LEN = {"paper_dyck2": 10, "paper_dyck3": 10}
"""Exceptions to LONG, for runtime only: Dyck-k matches positions by (depth, rank, token)
tuples, so its product one-hots grow ~cubically with max_seq_len (a residual of 5000-7000
dimensions and 30-50 s of compile + XLA time at 16, against ~5 s at 10)."""
LONG_VOCAB = {"sort_unique": frozenset(range(1, LONG + 1))}
"""sort_unique's precondition (distinct keys) caps inputs over its 5-token registry vocab at
length 5; to test long sorts it gets 16 tokens at max_seq_len 16."""

_MODELS: dict[tuple, rasp_lab.CompiledModel] = {}


def compiled(
    name: str, max_seq_len: int | None = None, causal: bool | None = None, leak: float | None = None
) -> rasp_lab.CompiledModel:
    """The zoo program compiled (cached): registry vocab / max_seq_len / causal by default;
    with `max_seq_len` the program is built for that length too."""
    entry = registry.get(name)
    n = entry.max_seq_len if max_seq_len is None else max_seq_len
    causal = entry.causal if causal is None else causal
    vocab = LONG_VOCAB.get(name, entry.vocab) if max_seq_len is not None else entry.vocab
    key = (name, n, causal, leak, max_seq_len is None)
    if key not in _MODELS:
        program = entry.build() if max_seq_len is None else entry.build(max_seq_len=n)
        kwargs = {} if leak is None else {"leak": leak}
        _MODELS[key] = rasp_lab.compile(program, vocab, n, causal=causal, **kwargs)
    return _MODELS[key]


# ------------------------------------------------------------------ comparing


def _sorted(values: Iterable[Any]) -> list[Any]:
    values = list(values)
    try:
        return sorted(values)
    except TypeError:
        return sorted(values, key=repr)


def _same(expected: Any, got: Any, numerical: bool) -> bool:
    if expected is None or got is None:
        return expected is None and got is None
    if numerical:
        return isinstance(got, float) and abs(got - float(expected)) <= NUMERICAL_TOLERANCE * max(1.0, abs(expected))
    return got == expected and isinstance(got, bool) == isinstance(expected, bool)


def _run_rows(model: rasp_lab.CompiledModel, inputs: list[list[Any]]) -> list[Any]:
    """run_batch's outputs; if some row can't be decoded, each row's output or its
    DecodingError (one forward pass on the same batch, decoded row by row)."""
    try:
        return model.run_batch(inputs)
    except rasp_lab.DecodingError:
        ids = model.encode_batch(inputs)
        residuals, _ = model.forward(ids)
        rows: list[Any] = []
        for row in range(len(inputs)):
            try:
                rows.append(model.decode(residuals[-1][row : row + 1], ids[row : row + 1])[0])
            except rasp_lab.DecodingError as err:
                rows.append(err)
        return rows


def check_agreement(
    model: rasp_lab.CompiledModel, batches: Iterable[list[list[Any]]], *, causal: bool
) -> tuple[int, int, list[tuple]]:
    """Run every batch through the model and the evaluator (the model's own program).
    Returns (inputs compared, inputs skipped because the evaluator has no value there,
    mismatches as (input, expected, got))."""
    numerical = rasp.is_numerical(model.program)
    compared = skipped = 0
    mismatches: list[tuple] = []
    seen: set[tuple] = set()
    for batch in batches:
        # The whole batch runs (its shape is what XLA compiled); rows are then compared
        # where the evaluator has a value, each distinct input once.
        for xs, got in zip(batch, _run_rows(model, batch), strict=True):
            if tuple(xs) in seen:
                continue
            seen.add(tuple(xs))
            try:
                want = rasp.evaluate(model.program, xs, causal=causal)
            except rasp_lab.EvaluationError:
                skipped += 1
                continue
            compared += 1
            ok = isinstance(got, list) and len(got) == len(want) and all(_same(e, g, numerical) for e, g in zip(want, got, strict=False))
            if not ok:
                mismatches.append((xs, want, got))
    return compared, skipped, mismatches


def assert_agrees(model: rasp_lab.CompiledModel, batches: Iterable[list[list[Any]]], *, causal: bool, what: str) -> int:
    compared, skipped, mismatches = check_agreement(model, batches, causal=causal)
    if mismatches:
        xs, want, got = mismatches[0]
        raise AssertionError(
            f"{what}: {len(mismatches)} of {compared} inputs disagree with rasp.evaluate(causal={causal}); "
            f"first: input {xs!r}, expected {want!r}, got {got!r}"
        )
    assert compared > skipped, f"{what}: only {compared} inputs compared, {skipped} have no defined value"
    return compared


def exhaustive_inputs(entry: registry.ZooProgram, budget: int = EXHAUSTIVE_BUDGET) -> list[list[Any]]:
    """Every accepted input of length 1, then 2, ..., max_seq_len, while the cumulative count
    stays within `budget` (a length that would exceed it, and longer ones, are left out)."""
    vocab = _sorted(entry.vocab)
    inputs: list[list[Any]] = []
    for length in range(1, entry.max_seq_len + 1):
        batch = [list(xs) for xs in itertools.product(vocab, repeat=length) if entry.accepts(list(xs))]
        if len(inputs) + len(batch) > budget:
            break
        inputs += batch
    return inputs


def batches_of(inputs: list[list[Any]], rows: int = BATCH_ROWS) -> list[list[list[Any]]]:
    """`inputs` in batches of one shape: each holds up to rows - 1 inputs plus copies of the
    longest input (so every batch pads to the same width), `min(rows, len(inputs) + 1)` rows."""
    longest = max(inputs, key=len)
    rows = min(rows, len(inputs) + 1)
    batches = []
    for start in range(0, len(inputs), rows - 1):
        batch = inputs[start : start + rows - 1]
        batches.append(batch + [longest] * (rows - len(batch)))
    return batches


def exhaustive_batches(entry: registry.ZooProgram) -> list[list[list[Any]]]:
    return batches_of(exhaustive_inputs(entry))


# ------------------------------------------------------------------ 1. exhaustive, registry settings


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_exhaustive_at_registry_settings(name: str) -> None:
    entry = registry.get(name)
    model = compiled(name)
    inputs = exhaustive_inputs(entry)
    lengths = {len(xs) for xs in inputs}
    assert lengths == set(range(1, len(lengths) + 1)) and len(lengths) >= min(4, entry.max_seq_len), lengths
    assert_agrees(model, batches_of(inputs), causal=entry.causal, what=f"{name} (max_seq_len {entry.max_seq_len})")


UNPADDED_NAMES = ("reverse", "frac_prevs", "paper_dyck1", "sort_composed")


@pytest.mark.slow
@pytest.mark.parametrize("name", UNPADDED_NAMES)
def test_exhaustive_one_batch_per_length(name: str) -> None:
    """The same check without PAD anywhere: one batch per input length (one XLA compile
    per length, so only for a few programs: a categorical, a causal numerical, a
    numerical-into-categorical and a product-encoded one)."""
    entry = registry.get(name)
    inputs = exhaustive_inputs(entry)
    by_length = [[xs for xs in inputs if len(xs) == n] for n in sorted({len(xs) for xs in inputs})]
    assert_agrees(compiled(name), by_length, causal=entry.causal, what=f"{name} (unpadded)")


# ------------------------------------------------------------------ 2. max_seq_len 16


def test_build_substitutes_max_seq_len_only_where_the_factory_takes_it() -> None:
    xs = [4, 3, 3, 2, 1, 4, 4, 2, 1, 1, 3, 2, 4, 1, 2, 3]
    text = list("abcbcbcbcaaaabbb")
    for name, tokens, expected in (("sort", xs, sorted(xs)), ("sort_freq", text, list("bbbbbbbaaaaacccc"))):
        entry = registry.get(name)
        assert entry.build(max_seq_len=None).label == entry.build().label
        assert rasp.evaluate(entry.build(max_seq_len=LONG), tokens) == expected
        # Built for the registry's 5, the tie-break key + i/5 collides on long inputs
        # (1 + 5/5 == 2 + 0/5): two values land in one slot.
        with pytest.raises(rasp_lab.EvaluationError, match="different values"):
            rasp.evaluate(entry.build(), tokens)
    for name in ("reverse", "hist", "paper_dyck1"):
        entry = registry.get(name)
        assert entry.build(max_seq_len=LONG).label == entry.build().label


def long_inputs(name: str, n: int, vocab: Sequence[Any], count: int = LONG_INPUTS) -> list[list[Any]]:
    """`count` seeded random inputs of lengths 1..n: a quarter at exactly n, a quarter at
    10..n, the rest uniform. Inputs meet the entry's precondition (its only precondition,
    distinct tokens, is met by sampling without replacement; lengths above the vocab size
    are then impossible and left out)."""
    entry = registry.get(name)
    rng = random.Random(f"{name}/{n}")
    longest = n if entry.precondition is None else min(n, len(vocab))
    inputs = []
    for i in range(count):
        if i % 4 == 0:
            length = longest
        elif i % 4 == 1:
            length = rng.randint(min(10, longest), longest)
        else:
            length = rng.randint(1, longest)
        if entry.precondition is None:
            xs = [rng.choice(vocab) for _ in range(length)]
        else:
            xs = rng.sample(list(vocab), length)
            assert entry.precondition(xs), f"{name}: extend long_inputs for this precondition"
        inputs.append(xs)
    return inputs


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_random_long_inputs(name: str) -> None:
    entry = registry.get(name)
    n = LONG_MAX_SEQ_LEN.get(name, LONG)
    model = compiled(name, max_seq_len=n)
    vocab = _sorted(LONG_VOCAB.get(name, entry.vocab))
    inputs = long_inputs(name, n, vocab)
    assert sum(len(xs) == n for xs in inputs) >= LONG_INPUTS // 4
    assert sum(len(xs) >= 10 for xs in inputs) >= LONG_INPUTS // 2
    # One padded batch: one XLA compile per model, and every shorter row runs next to PAD.
    compared = assert_agrees(model, [inputs], causal=entry.causal, what=f"{name} (max_seq_len {n})")
    assert compared >= LONG_INPUTS // 2


# ------------------------------------------------------------------ 3. causal

CAUSAL_NAMES = tuple(name for name in NAMES if registry.get(name).causal)
NOT_CAUSAL_SAFE = ("hist", "sort", "reverse", "count_distinct", "shuffle_dyck")
"""Programs whose causal meaning differs from their registry meaning; compiled causally they
must still agree with the causal evaluator."""


def test_registry_marks_some_programs_causal() -> None:
    assert {"frac_prevs", "pair_balance", "shift_by", "detect_pattern"} <= set(CAUSAL_NAMES)


@pytest.mark.parametrize("name", CAUSAL_NAMES)
def test_causal_entries_non_causal_too(name: str) -> None:
    """Causal entries run causally in test_exhaustive_at_registry_settings; here the same
    programs compiled without the mask agree with the non-causal evaluator."""
    entry = registry.get(name)
    model = compiled(name, causal=False)
    assert not model.causal
    assert_agrees(model, exhaustive_batches(entry), causal=False, what=f"{name} (non-causal)")


@pytest.mark.parametrize("name", NOT_CAUSAL_SAFE)
def test_causal_compile_of_non_causal_programs(name: str) -> None:
    entry = registry.get(name)
    assert not entry.causal
    model = compiled(name, causal=True)
    assert model.causal
    batches = exhaustive_batches(entry)
    # The causal meaning really differs on these inputs, so the check can tell them apart.
    differ = [xs for xs in batches[-1][:200] if _defined(model.program, xs, True) not in (None, _defined(model.program, xs, False))]
    assert differ, f"{name}: causal and non-causal evaluation agree on every input"
    assert_agrees(model, batches, causal=True, what=f"{name} (causal)")


def test_causal_compile_refuses_the_length_primitive() -> None:
    """`rasp.length` is the full length at every position, which a causal model can't see
    (compiled, it counted the visible keys: paper_dyck1 on '((' gave [0, 0], the causal
    evaluator [None, 0]); make_length's SelectorWidth counts the visible keys in both."""
    entry = registry.get("paper_dyck1")
    length_copy = rasp.Map(lambda n: n, rasp.length).named("length_copy")
    for program, vocab, n in ((entry.build(), entry.vocab, entry.max_seq_len), (length_copy, {"a", "b"}, 4)):
        assert any(isinstance(node, rasp.LengthType) for node in topological(program))
        with pytest.raises(rasp_lab.CompileError, match="causal"):
            rasp_lab.compile(program, vocab, n, causal=True)
    # Not causally: the length, as the evaluator has it.
    assert rasp_lab.compile(length_copy, {"a", "b"}, 4).run(["a", "b", "a"]) == [3, 3, 3]


def _defined(program: rasp.SOp, xs: list[Any], causal: bool) -> list[Any] | None:
    try:
        return rasp.evaluate(program, xs, causal=causal)
    except rasp_lab.EvaluationError:
        return None


# ------------------------------------------------------------------ 4. numpy oracle

ORACLE_NAMES = ("reverse", "pair_balance", "sort_freq", "frac_prevs", "paper_dyck1", "has_earlier_duplicate", "dedup", "shuffle_dyck")


def test_oracle_programs_have_layers_of_different_head_sizes() -> None:
    """Padded parameters differ from compact ones only where a layer's heads are narrower
    than the widest layer's; the oracle test needs such models to mean anything."""
    widths = {name: {lw.head_size for lw in compiled(name).weights.layers if lw.num_heads} for name in ORACLE_NAMES}
    assert sum(len(w) > 1 for w in widths.values()) >= 3, widths


@pytest.mark.parametrize("name", ORACLE_NAMES)
def test_haiku_forward_matches_numpy_oracle(name: str) -> None:
    model = compiled(name)
    # The first exhaustive batch: short inputs padded next to the longest (the shape the
    # model already ran in test_exhaustive_at_registry_settings).
    ids = model.encode_batch(exhaustive_batches(registry.get(name))[0])
    assert (ids == model.input_encoder.pad_encoding).any()
    residuals, patterns = model.forward(ids)
    compact_r, compact_p = model.forward_numpy(ids)
    padded_r, padded_p = model.forward_numpy(ids, padded=True)
    n_layers = len(model.weights.layers)
    assert len(residuals) == len(compact_r) == len(padded_r) == 2 * n_layers + 1
    assert len(patterns) == len(compact_p) == len(padded_p) == n_layers
    for i, (r, c, p) in enumerate(zip(residuals, compact_r, padded_r, strict=True)):
        assert r.shape == c.shape == p.shape == (*ids.shape, model.layout.width)
        assert c.dtype == p.dtype == np.float64, f"residual {i}: the oracle must run in float64"
        scale = max(1.0, float(np.abs(c).max()))
        assert np.abs(r - c).max() <= 1e-3 * scale, f"{name} residual {i}: haiku vs numpy {np.abs(r - c).max():.3g}"
        assert np.abs(p - c).max() <= 1e-9, f"{name} residual {i}: padded vs compact {np.abs(p - c).max():.3g}"
    for layer, (a, c, p) in enumerate(zip(patterns, compact_p, padded_p, strict=True)):
        heads = model.weights.layers[layer].num_heads
        assert a.shape == c.shape == (ids.shape[0], heads, ids.shape[1], ids.shape[1])
        if heads == 0:
            continue
        # Query rows at PAD positions carry no output (decode drops them): compare the rest.
        real = (ids != model.input_encoder.pad_encoding)[:, None, :, None]  # [batch, 1, query, 1]
        gap = float(np.abs(np.where(real, a - c, 0.0)).max())
        assert gap <= 1e-4, f"{name} layer {layer}: haiku vs numpy pattern {gap:.3g}"
        assert np.abs(p[:, :heads] - c).max() <= 1e-9, f"{name} layer {layer}: padded vs compact pattern"
        # PAD keys get no attention in either implementation.
        pad_keys = ids == model.input_encoder.pad_encoding  # [batch, key]
        assert np.abs(a * pad_keys[:, None, None, :]).max() == 0.0
    # The final residuals decode to the same outputs (numerical ones up to float32 rounding).
    numerical = rasp.is_numerical(model.program)
    decoded = [model.decode(r[-1], ids) for r in (residuals, compact_r, padded_r)]
    for rows in zip(*decoded, strict=True):
        assert all(_same(e, g, numerical) for other in rows[1:] for e, g in zip(rows[0], other, strict=True)), rows


# ------------------------------------------------------------------ 5. leak bound

LEAK_NAMES = (
    "reverse",
    "hist",
    "sort_unique",
    "frac_prevs",
    "shift_by",
    "paper_dyck1",
    "paper_double_hist",
    "paper_hist_nobos",
    "has_earlier_duplicate",
    "nearest_prev_equal",
    "sort_composed",
    "dedup",
)
F32_SLACK = 1e-6


def _selectors(model: rasp_lab.CompiledModel) -> dict[str, rasp.Selector]:
    """Every selector the model's heads may name: the original program's, and those of the
    graph the compiler built (which may add rewritten selectors)."""
    found: dict[str, rasp.Selector] = {}
    graph = getattr(model.value_sets, "graph", None)
    nodes = list(topological(model.program)) + list(getattr(graph, "nodes", {}).values())
    for node in nodes:
        if isinstance(node, rasp.Selector):
            found.setdefault(node.label, node)
    return found


def _sops(model: rasp_lab.CompiledModel) -> dict[str, rasp.SOp]:
    graph = getattr(model.value_sets, "graph", None)
    nodes = list(topological(model.program)) + list(getattr(graph, "nodes", {}).values())
    return {node.label: node for node in nodes if isinstance(node, rasp.SOp)}


def _selector_for(selectors: dict[str, rasp.Selector], label: str) -> rasp.Selector:
    if label in selectors:
        return selectors[label]
    # A lowered composition is a Select on product SOps named '<label>_product'; it selects
    # exactly what the original composition selects.
    base = label.removesuffix("_product")
    assert base in selectors, f"head selector {label!r} not found among {sorted(selectors)}"
    return selectors[base]


def attended_sets(model: rasp_lab.CompiledModel, head: Any, xs: list[Any], selectors, sops) -> list[set[int]]:
    """For each query row (0 = BOS), the key positions the head should attend exactly."""
    n = len(xs)
    keys_seen = [range(q + 1) if model.causal else range(n + 1) for q in range(n + 1)]
    if head.selector == "length":  # rasp.length: every key (BOS included) alike; BOS row: BOS
        return [{0}] + [set(keys_seen[q]) for q in range(1, n + 1)]
    matrix = rasp.evaluate(_selector_for(selectors, head.selector), xs, causal=model.causal)
    width = isinstance(sops.get(head.label), rasp.SelectorWidth)
    rows = [{0}]
    for q in range(n):
        selected = {k + 1 for k in range(n) if matrix[q][k]}
        rows.append({0} | selected if width else (selected or {0}))
    return rows


@pytest.mark.parametrize("name", LEAK_NAMES)
def test_attention_outside_the_attended_set_is_within_the_leak_bound(name: str) -> None:
    model = compiled(name)
    assert model.heads, f"{name}: no heads"
    selectors, sops = _selectors(model), _sops(model)
    batch = exhaustive_batches(registry.get(name))[-1]  # the longest inputs, in an already compiled shape
    ids = model.encode_batch(batch)
    _, patterns = model.forward(ids)
    for row, xs in enumerate(batch):
        for head in model.heads:
            pattern = patterns[head.layer][row, head.index]  # [query, key]
            for q, attended in enumerate(attended_sets(model, head, xs, selectors, sops)):
                outside = [k for k in range(len(xs) + 1) if k not in attended]
                leak = float(pattern[q, outside].sum())
                assert leak <= head.leak_bound + F32_SLACK, (
                    f"{name}: head {head.label} (selector {head.selector}) puts {leak:.3g} outside "
                    f"{sorted(attended)} at query {q} on {xs!r}; bound {head.leak_bound:.3g}"
                )
                # The attended set itself gets the rest, split evenly (float32 logits of
                # magnitude ~50 are only good to ~4e-6, hence the looser slack here).
                inside = pattern[q, sorted(attended)]
                assert np.abs(inside - 1.0 / len(attended)).max() <= head.leak_bound + 1e-5, (name, head.label, q, xs)
    assert all(head.leak_bound <= model.leak * (1 + 1e-9) for head in model.heads)


def test_leak_parameter_sets_coldness_and_looser_models_stay_exact() -> None:
    name = "paper_dyck1"  # numerical means feeding a discretising MLP, categorical output
    entry = registry.get(name)
    loose, tight = compiled(name, leak=1e-3), compiled(name, leak=1e-9)
    assert loose.leak > tight.leak
    loose_heads = {h.label: h for h in loose.heads}
    tight_heads = {h.label: h for h in tight.heads}
    assert loose_heads.keys() == tight_heads.keys() and loose_heads
    for label, head in loose_heads.items():
        assert head.coldness < tight_heads[label].coldness, label
        assert head.leak_bound <= 1e-3 * (1 + 1e-9) and tight_heads[label].leak_bound <= 1e-9 * (1 + 1e-9)
        assert head.leak_bound > tight_heads[label].leak_bound
    assert_agrees(loose, exhaustive_batches(entry), causal=entry.causal, what=f"{name} at leak 1e-3")


def test_loose_numerical_model_stays_within_its_error_bound() -> None:
    """A numerical output at leak 1e-3 is off by up to ~1e-3; the plan's error bound for the
    output SOp covers what the model computes on every input."""
    name = "pair_balance"
    entry = registry.get(name)
    model = compiled(name, leak=1e-3)
    bound = model.plan.nodes[model.plan.output].error
    assert 0 < bound < 0.1
    worst = 0.0
    for batch in exhaustive_batches(entry):
        got = model.run_batch(batch)
        for xs, values in zip(batch, got, strict=True):
            want = rasp.evaluate(model.program, xs, causal=model.causal)
            worst = max(worst, max(abs(g - e) for g, e in zip(values, want, strict=True)))
    assert worst <= bound + F32_SLACK, (worst, bound)
    assert not math.isclose(worst, 0.0, abs_tol=1e-7), "leak 1e-3 should be visible in the output"
