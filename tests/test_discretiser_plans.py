"""Wide numerical Maps stay exact in float32 (rasp_lab/compiler/discretiser_plans.py).

The program below maps a running mean of six token values (202 possible means up to length
6) through a function that changes at almost every mean. As one MLP of clamped steps its
units reach 1e4 and float32 sums them with errors up to ~1e-3, depending on the batch's
shape; split into a one-hot discretiser and a clamped read it is exact.
"""

from __future__ import annotations

import itertools
import random

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rasp_lab.programs import registry

import rasp_lab
from rasp_lab import rasp
from rasp_lab.compiler import discretiser_plans
from rasp_lab.compiler.blocks import NOISY_ONE_HOT
from rasp_lab.compiler.steps import F32_UNIT_ROUNDOFF, clamped_steps, float32_estimate, rounding_scale
from rasp_lab.errors import CompileError
from rasp_lab.evaluator import topological
from rasp_lab.value_sets import value_sets

WEIGHTS = {"a": 0, "b": 1, "c": 3, "d": 7, "e": 12, "f": 20}
N = 6


def wiggle(v: float) -> float:
    return (round(v * 7) % 7) * 1.5


def wide_program() -> rasp.SOp:
    x = rasp.numerical(rasp.Map(lambda t: WEIGHTS[t], rasp.tokens)).named("weight")
    prefix = rasp.Select(rasp.indices, rasp.indices, rasp.Comparison.LEQ).named("prefix")
    mean = rasp.numerical(rasp.Aggregate(prefix, x, default=0)).named("mean")
    return rasp.numerical(rasp.Map(wiggle, mean)).named("wiggle")


def inputs() -> list[list[str]]:
    """Every input up to length 4, then 600 seeded random ones of lengths 5 and 6."""
    rng = random.Random(7)
    out = [list(xs) for n in range(1, 5) for xs in itertools.product(sorted(WEIGHTS), repeat=n)]
    return out + [[rng.choice(sorted(WEIGHTS)) for _ in range(rng.choice((5, 6)))] for _ in range(600)]


def worst_error(model: rasp_lab.CompiledModel, rows: list[list[str]]) -> float:
    """Largest |model - evaluator| over `rows`, run as ONE padded batch (float32 haiku)."""
    ids = model.encode_batch(rows)  # [rows, 1 + longest]
    residuals, _ = model.forward(ids)
    got = model.decode(residuals[-1], ids)
    worst = 0.0
    for xs, values in zip(rows, got, strict=True):
        want = rasp.evaluate(model.program, xs)
        worst = max(worst, max(abs(g - e) for g, e in zip(values, want, strict=True)))
    return worst


@pytest.fixture(scope="module")
def split_model() -> rasp_lab.CompiledModel:
    return rasp_lab.compile(wide_program(), set(WEIGHTS), N)


def test_wide_numerical_map_is_split_and_exact(split_model: rasp_lab.CompiledModel) -> None:
    node = split_model.plan.nodes["wiggle"]
    assert node.mlp is not None and node.mlp.kind == "numerical_read"
    values = split_model.plan.nodes["wiggle_values"]
    assert values.mlp is not None and values.mlp.kind == "numerical_map"
    assert {d.value for d in values.directions} == {k * 1.5 for k in range(7)}
    assert split_model.where(split_model.program).label == "wiggle"
    assert worst_error(split_model, inputs()) <= 1e-6


def test_split_agrees_in_the_numpy_forward(split_model: rasp_lab.CompiledModel) -> None:
    rows = inputs()[-200:]
    ids = split_model.encode_batch(rows)
    residuals, _ = split_model.forward_numpy(ids)
    got = split_model.decode(residuals[-1], ids)
    for xs, values in zip(rows, got, strict=True):
        assert values == pytest.approx(rasp.evaluate(split_model.program, xs), abs=1e-9), xs


def test_one_layer_version_is_off_in_float32(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the split, the same program is off by far more than 1e-6: what the split fixes."""
    monkeypatch.setattr(discretiser_plans, "ONE_LAYER_ESTIMATE", float("inf"))
    model = rasp_lab.compile(wide_program(), set(WEIGHTS), N, require_exact=False)
    assert model.plan.nodes["wiggle"].mlp.kind == "numerical_map"
    assert "wiggle_values" not in model.plan.nodes
    assert 1e-5 < worst_error(model, inputs()) <= model.plan.nodes["wiggle"].error


def test_plan_records_why_and_the_float32_estimate() -> None:
    program = wide_program()
    sets = value_sets(program, set(WEIGHTS), N)
    plans = discretiser_plans.plan_discretisers(program, sets)
    assert set(plans.splits) == {"wiggle"}
    plan = plans.splits["wiggle"]
    assert plan.values_label == "wiggle_values"
    assert plan.one_layer_estimate > discretiser_plans.ONE_LAYER_ESTIMATE * 9.0
    assert 0 < plan.float32_estimate < discretiser_plans.CLAMP_TOLERANCE
    assert plans.program.label == "wiggle" and plans.program is not program
    # the rewritten program computes the same function
    for xs in inputs()[:300]:
        assert rasp.evaluate(plans.program, xs) == rasp.evaluate(program, xs)


def test_no_zoo_program_is_split() -> None:
    """The zoo's numerical Maps are narrow: none pays the extra layer."""
    for name in registry.names():
        entry = registry.get(name)
        program = entry.build()
        plans = discretiser_plans.plan_discretisers(program, value_sets(program, entry.vocab, entry.max_seq_len))
        assert not plans.splits, name
        # The only rewrites: a categorical SelectorWidth read by a head that averages gets a
        # clamped clean-up over its decoder's one-hot ("<label>_raw"), and Selects there read
        # `length` through a clamped copy ("length_clean").
        before = {n.label for n in topological(program)}
        after = {n.label for n in topological(plans.program)}
        assert before <= after and all(label.endswith(("_raw", "_clean")) for label in after - before), name
        assert (plans.program is program) == (after == before), name


def test_values_label_avoids_existing_labels() -> None:
    taken = rasp.numerical(rasp.Map(lambda t: WEIGHTS[t], rasp.tokens)).named("wiggle_values")
    prefix = rasp.Select(rasp.indices, rasp.indices, rasp.Comparison.LEQ)
    mean = rasp.numerical(rasp.Aggregate(prefix, taken, default=0))
    program = rasp.numerical(rasp.Map(wiggle, mean)).named("wiggle")
    model = rasp_lab.compile(program, set(WEIGHTS), N, require_exact=False)
    assert "wiggle_values_" in model.plan.nodes and model.plan.nodes["wiggle_values"].mlp.kind == "numerical_lookup"
    assert worst_error(model, inputs()[:400]) <= 1e-6


def test_unresolvable_numerical_map_is_refused() -> None:
    """Values 1e-7 apart in the middle of a range of 2e7: a step between them has units of
    size 1e14 at either end, which no float32 MLP cancels; CompileError, not a wrong model."""
    spots = {"a": -1e7, "b": 0.0, "c": 1e-7, "d": 1e7}
    x = rasp.numerical(rasp.Map(lambda t: spots[t], rasp.tokens)).named("far")
    program = rasp.numerical(rasp.Map(lambda v: 1 if v <= 0 else 2, x)).named("pick")
    with pytest.raises(CompileError, match=r"pick.*float32 can't compute this Map of 'far' exactly"):
        rasp_lab.compile(program, set(spots), 2)


def test_a_small_gap_near_the_end_of_the_range_stays_one_layer() -> None:
    """The same gap at the low end: each step faces the nearer end, so units stay small."""
    spots = {"a": 0.0, "b": 1e-7, "c": 1e7}
    x = rasp.numerical(rasp.Map(lambda t: spots[t], rasp.tokens)).named("far")
    program = rasp.numerical(rasp.Map(lambda v: {0.0: 1, 1e-7: 2, 1e7: 3}[v], x)).named("pick")
    model = rasp_lab.compile(program, set(spots), 2, require_exact=False)
    assert model.plan.nodes["pick"].mlp.kind == "numerical_map"
    rows = [list(xs) for n in (1, 2) for xs in itertools.product(sorted(spots), repeat=n)]
    assert model.run_batch(rows) == [rasp.evaluate(program, xs) for xs in rows]


def test_clamped_steps_compute_the_step_function() -> None:
    points = [(0.0, 2.0), (0.5, 2.0), (1.0, -1.0), (3.0, 4.0), (3.25, 0.0)]
    steps = clamped_steps([(x, {"y": g}) for x, g in points])
    assert steps.tolerance == pytest.approx(0.25 / 4)
    assert len(steps.units) == 1 + 2 * 3  # no step between the two 2.0s
    for x, g in points:
        for dx in (-steps.tolerance, 0.0, steps.tolerance):
            h = [max(0.0, u.slope * (x + dx) + u.bias) for u in steps.units]
            assert sum(hj * u.out.get("y", 0.0) for hj, u in zip(h, steps.units)) == pytest.approx(g, abs=1e-9)
    # each step faces the nearer end: its units stay within L * (half the range) + 1/2
    for u in steps.units[1:]:
        largest = max(abs(u.slope * x + u.bias) for x in (0.0, 3.25) if u.slope * x + u.bias > 0)
        assert largest <= abs(u.slope) * 3.25 / 2 + 0.5 + 1e-9


def test_rounding_scale_by_hand() -> None:
    # One step at t = 1 (L = 1) from below, jump 3: at x = 2 the units are 1.5 and 0.5.
    steps = clamped_steps([(0.0, {"y": 0.0}), (2.0, {"y": 3.0})])
    assert rounding_scale(steps, [0.0, 2.0]) == pytest.approx(3 * 1.5 + 3 * 0.5)
    assert float32_estimate(steps, [0.0, 2.0]) == pytest.approx((2**0.5 + 2) * F32_UNIT_ROUNDOFF * 6.0)
    assert np.isclose(rounding_scale(steps, []), 0.0)


def test_split_model_saves_and_loads(split_model: rasp_lab.CompiledModel, tmp_path) -> None:
    path = tmp_path / "wiggle.npz"
    split_model.save(path)
    loaded = rasp_lab.load(path)
    rows = inputs()[-100:]
    assert loaded.run_batch(rows) == split_model.run_batch(rows)
    assert "wiggle (numerical_read)" in loaded.summary()


def test_noisy_one_hot_is_read_through_clamps() -> None:
    """A numerical -> categorical Map that alternates at every mean writes a one-hot off by
    ~1e-4 in float32 (within its estimate); a numerical Map of it reads through clamps, so
    the x100 output stays exact, while a categorical Map of it stays a lookup."""
    x = rasp.numerical(rasp.Map(lambda t: WEIGHTS[t], rasp.tokens)).named("weight")
    prefix = rasp.Select(rasp.indices, rasp.indices, rasp.Comparison.LEQ)
    mean = rasp.numerical(rasp.Aggregate(prefix, x, default=0)).named("mean")
    parity = rasp.categorical(rasp.Map(lambda v: round(v * 7) % 2, mean)).named("parity")
    scaled = rasp.numerical(rasp.Map(lambda c: c * 100.0, parity)).named("scaled")
    flipped = rasp.categorical(rasp.Map(lambda c: 1 - c, parity)).named("flipped")
    model = rasp_lab.compile(scaled, set(WEIGHTS), N, require_exact=False)
    node = model.plan.nodes["parity"]
    assert node.mlp.kind == "numerical_map" and node.error == node.mlp.rounding
    assert NOISY_ONE_HOT < node.error < discretiser_plans.CLAMP_TOLERANCE
    assert model.plan.nodes["scaled"].mlp.kind == "numerical_read"
    assert worst_error(model, inputs()) <= 1e-6
    rows = inputs()
    ids = model.encode_batch(rows)
    residuals, _ = model.forward(ids)
    loc = model.where(parity)
    one_hot = residuals[2 * loc.mlp_layer + 2][:, 1:, loc.start : loc.stop]  # [rows, positions, 2]
    real = ids[:, 1:] != model.input_encoder.encoding_map[model.input_encoder.pad_token]
    measured = np.abs(one_hot - np.round(one_hot))[real].max()
    assert 0 < measured <= node.error
    lookup = rasp_lab.compile(flipped, set(WEIGHTS), N, require_exact=False)
    assert lookup.plan.nodes["flipped"].mlp.kind == "categorical_map"
    assert lookup.run_batch(rows[:300]) == [rasp.evaluate(flipped, xs) for xs in rows[:300]]


@settings(max_examples=12, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(
    weights=st.lists(st.integers(-20, 20), min_size=3, max_size=6, unique=True),
    outputs=st.lists(st.integers(-50, 50), min_size=2, max_size=7),
    resolution=st.integers(2, 30),
    categorical_middle=st.booleans(),
    max_seq_len=st.integers(3, 7),
)
def test_random_maps_of_running_means_are_exact(weights, outputs, resolution, categorical_middle, max_seq_len):
    """Running means of random token weights, mapped through a random function of
    round(mean * resolution) (numerical, or categorical then numerical): exact to 1e-5 of
    the outputs on 400 inputs run as one padded batch, whatever the compiler chose."""
    vocab = [f"t{i}" for i in range(len(weights))]
    table = dict(zip(vocab, weights, strict=True))
    x = rasp.numerical(rasp.Map(lambda t: table[t], rasp.tokens)).named("w")
    prefix = rasp.Select(rasp.indices, rasp.indices, rasp.Comparison.LEQ).named("prefix")
    mean = rasp.numerical(rasp.Aggregate(prefix, x, default=0)).named("mean")

    def f(v: float) -> int:
        return outputs[round(v * resolution) % len(outputs)]

    if categorical_middle:
        middle = rasp.categorical(rasp.Map(f, mean)).named("middle")
        program = rasp.numerical(rasp.Map(lambda c: c / 4, middle)).named("out")
    else:
        program = rasp.numerical(rasp.Map(lambda v: f(v) / 4, mean)).named("out")
    model = rasp_lab.compile(program, set(vocab), max_seq_len)
    rng = random.Random(f"{weights}{outputs}{resolution}")
    rows = [[rng.choice(vocab) for _ in range(rng.randint(1, max_seq_len))] for _ in range(400)]
    assert worst_error(model, rows) <= 1e-5 * max(1, max(abs(o) for o in outputs) / 4)


def test_unresolvable_categorical_map_is_refused() -> None:
    """The same values as a numerical -> categorical Map: its one-hot can't be decoded."""
    spots = {"a": -1e7, "b": 0.0, "c": 1e-7, "d": 1e7}
    x = rasp.numerical(rasp.Map(lambda t: spots[t], rasp.tokens)).named("far")
    program = rasp.categorical(rasp.Map(lambda v: "low" if v <= 0 else "high", x)).named("side")
    with pytest.raises(CompileError, match=r"side.*float32 can't compute this Map of 'far'"):
        rasp_lab.compile(program, set(spots), 2)


def test_map_feeding_a_finer_discretiser_is_split() -> None:
    """Outputs 100 and 100.0001: a one-layer error well under 1e-4 of 100 would still blur
    them for the Map that reads them, so the Map is split (and the reader stays exact)."""
    bit = rasp.numerical(rasp.Map(lambda t: 1 if t == "x" else 0, rasp.tokens)).named("bit")
    prefix = rasp.Select(rasp.indices, rasp.indices, rasp.Comparison.LEQ)
    frac = rasp.numerical(rasp.Aggregate(prefix, bit, default=0)).named("frac")
    close = rasp.numerical(rasp.Map(lambda v: 0.0 if v < 0.4 else 100.0 if v < 0.9 else 100.0001, frac))
    which = rasp.categorical(rasp.Map(lambda v: "low" if v < 50 else "mid" if v < 100.00005 else "high", close.named("close")))
    program = which.named("which")
    sets = value_sets(program, {"x", "o"}, 3)
    plans = discretiser_plans.plan_discretisers(program, sets)
    assert set(plans.splits) == {"close"}
    assert 1e-4 / 4 < plans.splits["close"].one_layer_estimate < discretiser_plans.ONE_LAYER_ESTIMATE * 100
    model = rasp_lab.compile(program, {"x", "o"}, 3, require_exact=False)
    rows = [list(xs) for n in range(1, 4) for xs in itertools.product("xo", repeat=n)]
    assert model.run_batch(rows) == [rasp.evaluate(program, xs) for xs in rows]


def test_noisy_one_hot_read_by_a_selector_is_cleaned() -> None:
    """The alternating parity as a selector's key and query: a head multiplies its float32
    noise by the coldness in every logit, which unbalanced the selected keys' weights (the
    mean was off by 1e-2 before). Split, the head reads a clean one-hot."""
    x = rasp.numerical(rasp.Map(lambda t: WEIGHTS[t], rasp.tokens)).named("weight")
    prefix = rasp.Select(rasp.indices, rasp.indices, rasp.Comparison.LEQ)
    mean = rasp.numerical(rasp.Aggregate(prefix, x, default=0)).named("mean")
    parity = rasp.categorical(rasp.Map(lambda v: round(v * 7) % 2, mean)).named("parity")
    same = rasp.Select(parity, parity, rasp.Comparison.EQ).named("same")
    program = rasp.numerical(rasp.Aggregate(same, x, default=0)).named("out")
    plans = discretiser_plans.plan_discretisers(program, value_sets(program, set(WEIGHTS), N))
    assert set(plans.splits) == {"parity"}
    assert plans.splits["parity"].float32_estimate > discretiser_plans.SELECTOR_NOISE
    model = rasp_lab.compile(program, set(WEIGHTS), N, require_exact=False)
    assert model.plan.nodes["parity"].mlp.kind == "clean_one_hot" and model.plan.nodes["parity"].error == 0
    rows = inputs()
    assert worst_error(model, rows) <= model.plan.nodes["out"].error
    # the same parity read only by a Map is left as one MLP (decoding absorbs its noise),
    # though its sound bound (0.27: 240 large cancelling units summed in any order) can't
    # prove it, so compiling it needs require_exact=False
    with pytest.raises(CompileError, match="parity: NOT certified exact"):
        rasp_lab.compile(parity, set(WEIGHTS), N)
    alone = rasp_lab.compile(parity, set(WEIGHTS), N, require_exact=False)
    assert alone.plan.nodes["parity"].mlp.kind == "numerical_map"
    assert alone.run_batch(rows[:300]) == [rasp.evaluate(parity, xs) for xs in rows[:300]]
