"""Programs compiled at long max_seq_len (256 for SelectorWidth, 64 for shuffle_dyck) are
certified exact and agree with the evaluator on single rows at full length.

Why these lengths: a SelectorWidth decoder separates 1/(w+1) from 1/(w+2), which at w = 255
differ by 1.5e-5, and shuffle_dyck's balances are fractions whose value sets used to grow
as N^4 (refused from N = 24)."""

from __future__ import annotations

import random

import numpy as np
import pytest

import rasp_lab
from programs import tracr_library as lib
from rasp_lab import rasp


def _agrees(model, program, xs):
    assert model.run(xs) == rasp.evaluate(program, xs), xs


def test_length_and_hist_at_256_are_certified_and_exact_on_single_rows():
    rng = random.Random(0)
    for program in (lib.make_length(), lib.make_hist()):
        model = rasp_lab.compile(program, {"a", "b", "c"}, 256)
        assert model.certificate.exact, model.certificate.describe()
        for n in (1, 2, 129, 255, 256):
            _agrees(model, program, [rng.choice("abc") for _ in range(n)])


@pytest.mark.slow
def test_sort_at_256_is_certified_and_exact_on_single_rows():
    program = lib.make_sort(rasp.tokens, rasp.tokens, max_seq_len=256, min_key=1)
    model = rasp_lab.compile(program, {1, 2, 3, 4}, 256)
    assert model.certificate.exact, model.certificate.describe()
    rng = random.Random(1)
    for n in (1, 3, 256):
        xs = [rng.choice([1, 2, 3, 4]) for _ in range(n)]
        out = model.run(xs)
        assert out == rasp.evaluate(program, xs) == sorted(xs)


def _dyck(rng, n, balanced):
    """A word over ()[] of length n: balanced per pair type when asked (n even)."""
    if not balanced:
        return [rng.choice("()[]") for _ in range(n)]
    word, open_ = [], []
    while len(word) + len(open_) < n:
        if open_ and (rng.random() < 0.5 or len(word) + 2 * len(open_) >= n):
            word.append(")" if open_.pop(rng.randrange(len(open_))) == "(" else "]")
        else:
            open_.append(rng.choice("(["))
            word.append(open_[-1])
    word += [")" if o == "(" else "]" for o in reversed(open_)]
    return word


@pytest.fixture(scope="module")
def dyck():
    program = lib.make_shuffle_dyck(["()", "[]"])
    return program, rasp_lab.compile(program, set("()[]"), 64)


def test_shuffle_dyck_at_64_is_certified_and_exact(dyck):
    program, model = dyck
    assert model.certificate.exact, model.certificate.describe()
    rng = random.Random(2)
    words = [_dyck(rng, 64, True), _dyck(rng, 64, True), _dyck(rng, 63, False), list("(" * 32 + ")" * 32)]
    words.append(list("(" * 32 + ")" * 31 + "]"))  # the last close of the wrong type
    words.append(list(")" + "(" * 32 + ")" * 31))  # balanced counts, negative at the start
    results = [rasp.evaluate(program, w) for w in words]
    assert [r[0] for r in results] == [1, 1, 0, 1, 0, 0]
    for word in words:
        _agrees(model, program, word)


@pytest.mark.slow
def test_shuffle_dyck_balances_stay_within_their_certified_bound(dyck):
    program, model = dyck
    rng = random.Random(3)
    words = [_dyck(rng, 64, True) for _ in range(4)] + [
        _dyck(rng, rng.randrange(1, 65), False) for _ in range(4)
    ]
    for label in ("balance_()", "balance_[]"):
        bound = model.certificate.sops[label].bound
        loc = model.where(label)
        for word in words:
            ids = model.encode_batch([word])
            residual = model.forward(ids)[0][-1][0, 1 : len(word) + 1, loc.start]
            trace = rasp.trace(program, word)
            ideal = np.array(next(v for node, v in trace.items() if node.label == label), dtype=float)
            assert np.all(np.abs(residual - ideal) <= bound.absolute + bound.relative * np.abs(ideal)), label
