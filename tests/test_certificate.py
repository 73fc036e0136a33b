"""The error certificate: sound (measured errors stay within it) and independent (the same
numbers from a model loaded from a file, which has no program).

Every zoo program is compiled, run on every input up to a small length as single rows and
as one padded batch, and the largest deviation of each SOp's directions from the float64
oracle's ideal values is compared with the certified bound.
"""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pytest

import rasp_lab
from programs import registry
from rasp_lab import rasp
from rasp_lab.certificate import Bound, CertificateWarning, certify


def _inputs(vocab, n, limit=600):
    tokens = sorted(vocab, key=repr)
    out = []
    for length in range(1, n + 1):
        for xs in itertools.product(tokens, repeat=length):
            out.append(list(xs))
            if len(out) >= limit:
                return out
    return out


def _deviation(model, residual, ids, label):
    """Largest |residual - ideal| over one SOp's directions at real positions; the ideal is
    the rounded one-hot (categorical) or the evaluator-free float64 oracle (numerical)."""
    loc = model.where(label)
    block = residual[:, :, loc.start : loc.stop]
    real = ids != model.input_encoder.pad_encoding
    if loc.encoding is rasp.Encoding.CATEGORICAL:
        ideal = np.clip(np.round(block), 0, 1)
        return float(np.abs(block - ideal)[real].max(initial=0.0))
    oracle = model.forward_numpy(ids)[0][-1][:, :, loc.start : loc.stop]
    return float(np.abs(block - oracle)[real].max(initial=0.0))


@pytest.mark.slow
@pytest.mark.parametrize("name", registry.names())
def test_zoo_certificate(name):
    z = registry.get(name)
    n = min(z.max_seq_len, 5)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CertificateWarning)  # every zoo program is certified
        model = rasp_lab.compile(z.build(n), z.vocab, n, causal=z.causal)
    cert = model.certificate
    assert cert.exact, cert.describe()
    inputs = [xs for xs in _inputs(z.vocab, n) if z.precondition is None or z.precondition(xs)]
    batch_ids = model.encode_batch(inputs)
    runs = [(batch_ids, model.forward(batch_ids)[0][-1])]
    for xs in inputs[:25]:
        ids = model.encode_batch([xs])
        runs.append((ids, model.forward(ids)[0][-1]))
    for label, sop in cert.sops.items():
        if not np.isfinite(sop.bound.absolute):
            continue
        worst = max(_deviation(model, residual, ids, label) for ids, residual in runs)
        allowed = sop.bound.absolute + sop.bound.relative * _largest(model, label)
        if sop.bound.total is not None:
            allowed = max(allowed, sop.bound.total)
        assert worst <= max(allowed, 1e-12) * 1.0001, (label, worst, sop.bound)


def _largest(model, label):
    info = model.value_info.get(label)
    if info is None or model.where(label).encoding is rasp.Encoding.CATEGORICAL:
        return 1.0
    return max(abs(info.low), abs(info.high), 1.0)


def test_loaded_model_gets_the_same_certificate(tmp_path):
    z = registry.get("frac_prevs")
    model = rasp_lab.compile(z.build(), z.vocab, z.max_seq_len)
    loaded = rasp_lab.load(model.save(tmp_path / "frac.npz"))
    assert loaded.certificate.exact
    assert loaded.certificate.sops == model.certificate.sops
    assert "exact" in loaded.summary()


def test_certificate_refuses_what_it_can_not_bound():
    width = rasp.SelectorWidth(rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.TRUE)).named("w")
    model = rasp_lab.compile(width, {0, 1}, 6)
    assert model.certificate.exact
    tight = certify(model, tolerance=1e-12)
    assert tight.sops["w"].bound == model.certificate.sops["w"].bound  # categorical: margin, not tolerance
    with pytest.raises(ValueError, match="tolerance"):
        certify(model, tolerance=0)


def test_bound_arithmetic():
    b = Bound(1e-6, 1e-7, 0.0)
    assert b.at(0) == 1e-6 and b.at(-10) == pytest.approx(2e-6) and b.at_bos == 0.0
    assert Bound(3.0).at_bos == 3.0


def test_a_tolerance_the_bound_can_not_meet_is_refused_or_warned():
    z = registry.get("frac_prevs")
    with pytest.raises(
        rasp_lab.CompileError, match=r"frac_prevs: NOT certified exact: .*within 1e-09 \* max\(1, \|v\|\)"
    ):
        rasp_lab.compile(z.build(), z.vocab, z.max_seq_len, tolerance=1e-9)
    with pytest.warns(CertificateWarning, match="frac_prevs"):
        model = rasp_lab.compile(z.build(), z.vocab, z.max_seq_len, tolerance=1e-9, require_exact=False)
    assert not model.certificate.exact and model.leak < 1e-6  # the compiler tried smaller leaks
    assert model.run(list("xyx")) == pytest.approx([1.0, 0.5, 2 / 3], abs=1e-6)
    loose = rasp_lab.compile(z.build(), z.vocab, z.max_seq_len, tolerance=1e-3)
    assert loose.certificate.exact and loose.certificate.tolerance == 1e-3


def _same_bounds(a, b):
    for label in a.sops:
        x, y = a.sops[label].bound, b.sops[label].bound
        for field in ("absolute", "relative", "bos", "total"):
            u, v = getattr(x, field) or 0.0, getattr(y, field) or 0.0
            assert u == pytest.approx(v, rel=1e-9, abs=1e-15), (label, field, x, y)
        assert x.nonzero == y.nonzero, label


@pytest.mark.parametrize("name", ["reverse", "sort"])
def test_pair_tables_are_bounded_case_by_case_as_row_by_row(name, monkeypatch):
    """A lookup MLP over two categorical SOps, bounded from its units' four cases (N^3), gets
    the bound the row-by-row enumeration (N^4) gives; reverse at N 256 needs the former."""
    import rasp_lab.certificate as certificate

    z = registry.get(name)
    n = min(z.max_seq_len, 8)
    model = rasp_lab.compile(z.build(n), z.vocab, n, causal=z.causal)
    row_by_row = certify(model)
    monkeypatch.setattr(certificate, "PAIR_TABLE_CELLS", 0)
    checker_calls = []
    original = certificate._Checker._pair_table_mlp
    monkeypatch.setattr(
        certificate._Checker,
        "_pair_table_mlp",
        lambda self, mlp, *rest: (checker_calls.append(mlp.label), original(self, mlp, *rest))[1],
    )
    case_by_case = certify(model)
    assert checker_calls, "no MLP of this program took the pair-table path"
    _same_bounds(row_by_row, case_by_case)


@pytest.mark.slow
@pytest.mark.parametrize("name", registry.names())
def test_every_zoo_bound_is_the_same_case_by_case(name, monkeypatch):
    import rasp_lab.certificate as certificate

    z = registry.get(name)
    n = min(z.max_seq_len, 5)
    model = rasp_lab.compile(z.build(n), z.vocab, n, causal=z.causal, require_exact=False)
    row_by_row = certify(model)
    monkeypatch.setattr(certificate, "PAIR_TABLE_CELLS", 0)
    _same_bounds(row_by_row, certify(model))
