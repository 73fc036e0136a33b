"""The TransformerLens export (rasp_lab.tl_export) computes what the compiled model does.

For zoo programs of every kind (categorical and numerical outputs, causal and
bidirectional, selector compositions, SelectorWidth, deep Dyck), on every input up to a
budget (then seeded random ones): the HookedTransformer's logits decode to `model.run`'s
outputs, and run_with_cache's residuals (blocks.{l}.hook_resid_mid / hook_resid_post) and
attention patterns equal the haiku model's. Zero-ablating any ground-truth component (a
head's hook_z slice or an MLP block's neurons) changes the output on some input.

Runtime: our model runs once per program on one padded batch (one XLA compile); the
HookedTransformer runs once per input length (PAD is never fed to it: a bidirectional
HookedTransformer does not mask padding).

Without the tl extra these tests are skipped with a reason, except under CI (which installs
the extra), where a missing torch fails them.
"""

from __future__ import annotations

import itertools
import os
import random
import subprocess
import sys
import textwrap
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
from rasp_lab.programs import registry

import rasp_lab
from rasp_lab import circuit

if os.environ.get("CI"):  # CI installs the tl extra: a missing torch there is a failure, not a skip
    import torch

    from rasp_lab import tl_export
else:
    _EXTRA = 'the tl extra (pip install torch --index-url https://download.pytorch.org/whl/cpu, then pip install -e ".[tl]")'
    torch = pytest.importorskip("torch", reason=f"the TransformerLens export tests need {_EXTRA}")
    pytest.importorskip("transformer_lens", reason=f"the TransformerLens export tests need {_EXTRA}")
    from rasp_lab import tl_export

PROGRAMS = [
    "sort",  # categorical, bidirectional; SelectorWidth (head + MLP), sequence_map MLP
    "frac_prevs",  # numerical output, causal
    "pair_balance",  # numerical, causal, two heads in a layer
    "shift_by",  # categorical, causal
    "count_less_freq",  # categorical, SelectorWidth of a SelectorWidth
    "sort_composed",  # selector composition
    "count_distinct",  # selector composition, SelectorWidth
    "paper_hist_nobos",  # selector composition
    "shuffle_dyck",  # 7 layers, 4 heads a layer
]
BUDGET = 1500
"""Inputs per program: every input of length 1, 2, ... while the total stays within this,
then seeded random inputs of the longer lengths up to the same total."""
ATOL = 1e-4

_MODELS: dict[str, rasp_lab.CompiledModel] = {}
_TL: dict[str, Any] = {}


def compiled(name: str) -> rasp_lab.CompiledModel:
    if name not in _MODELS:
        entry = registry.get(name)
        _MODELS[name] = rasp_lab.compile(entry.build(), entry.vocab, entry.max_seq_len, causal=entry.causal)
    return _MODELS[name]


def exported(name: str):
    if name not in _TL:
        _TL[name] = tl_export.to_transformer_lens(compiled(name), device="cpu")
    return _TL[name]


def inputs_for(name: str) -> list[list[Any]]:
    entry = registry.get(name)
    vocab = sorted(entry.vocab, key=repr)
    out: list[list[Any]] = []
    rng = random.Random(f"tl-{name}")
    for n in range(1, entry.max_seq_len + 1):
        if len(out) + len(vocab) ** n <= BUDGET:
            out += [list(xs) for xs in itertools.product(vocab, repeat=n)]
        else:
            out += [[rng.choice(vocab) for _ in range(n)] for _ in range(BUDGET // entry.max_seq_len)]
    return [xs for xs in out if entry.accepts(xs)]


def by_length(inputs: Sequence[list[Any]]) -> dict[int, list[int]]:
    groups: dict[int, list[int]] = {}
    for row, xs in enumerate(inputs):
        groups.setdefault(len(xs), []).append(row)
    return groups


def same(expected: Any, got: Any, numerical: bool) -> bool:
    if expected is None or got is None:
        return expected is None and got is None
    if numerical:
        return abs(got - expected) <= ATOL
    return got == expected


@pytest.mark.parametrize("name", PROGRAMS)
def test_hooked_transformer_matches_compiled_model(name: str) -> None:
    model, tl_model = compiled(name), exported(name)
    inputs = inputs_for(name)
    assert len(inputs) >= 50
    ids = model.encode_batch(inputs)  # [rows, 1 + longest], padded with PAD
    residuals, patterns = model.forward(ids)
    expected = model.decode(residuals[-1], ids)
    numerical = model.output_encoder.encoding_map is None
    layers = model.model_config.num_layers
    compared = 0
    with torch.no_grad():
        for n, rows in by_length(inputs).items():
            tokens = tl_export.to_tokens(model, [inputs[r] for r in rows], device="cpu")
            assert np.array_equal(tokens.numpy(), ids[rows, : n + 1])
            logits, cache = tl_model.run_with_cache(tokens)
            assert logits.shape == (len(rows), n + 1, tl_model.cfg.d_vocab_out)
            # the logits are the output SOp's residual block
            out = model.output_location
            np.testing.assert_allclose(
                logits.numpy(), residuals[-1][rows, : n + 1, out.start : out.stop], atol=ATOL
            )
            got = tl_export.decode_logits(model, logits)
            for i, row in enumerate(rows):
                assert all(same(e, g, numerical) for e, g in zip(expected[row], got[i], strict=True)), (
                    name,
                    inputs[row],
                    expected[row],
                    got[i],
                )
            for layer in range(layers):
                for hook, ours in (
                    ("hook_resid_mid", residuals[2 * layer + 1]),
                    ("hook_resid_post", residuals[2 * layer + 2]),
                ):
                    np.testing.assert_allclose(
                        cache[f"blocks.{layer}.{hook}"].numpy(),
                        ours[rows, : n + 1],
                        atol=ATOL,
                        err_msg=f"{name} {hook} {layer}",
                    )
                heads = patterns[layer].shape[1]
                np.testing.assert_allclose(
                    cache[f"blocks.{layer}.attn.hook_pattern"][:, :heads].numpy(),
                    patterns[layer][rows, :, : n + 1, : n + 1],
                    atol=ATOL,
                )
            compared += len(rows)
    assert compared == len(inputs)


@pytest.mark.parametrize("name", ["sort", "frac_prevs", "count_distinct"])
def test_apply_cache_matches_run_with_cache(name: str) -> None:
    """model.apply(["BOS", *xs]).cache and the HookedTransformer's cache agree by hook name."""
    model, tl_model = compiled(name), exported(name)
    xs = inputs_for(name)[-1]
    out = model.apply([model.input_encoder.bos_token, *xs])
    tokens = torch.tensor([model.input_encoder.encode([model.input_encoder.bos_token, *xs])])
    with torch.no_grad():
        _, cache = tl_model.run_with_cache(tokens)
    # Not compared by name: hook_pattern (padded heads, compared above) and hook_embed, which
    # in model.apply's cache is token + position embedding (TransformerLens: token only;
    # their sum is blocks.0.hook_resid_pre, compared here).
    shared = [k for k in out.cache if k in cache and not k.endswith("hook_pattern") and k != "hook_embed"]
    assert f"blocks.{model.model_config.num_layers - 1}.hook_resid_post" in shared
    assert "blocks.0.hook_attn_out" in shared and "blocks.0.hook_mlp_out" in shared
    for key in shared:
        np.testing.assert_allclose(cache[key][0].numpy(), out.cache[key], atol=ATOL, err_msg=key)


def test_config_and_parameters() -> None:
    for name in ("sort", "frac_prevs"):
        model, tl_model = compiled(name), exported(name)
        cfg, mc = tl_model.cfg, model.model_config
        assert (cfg.n_layers, cfg.n_heads, cfg.d_head, cfg.d_mlp) == (
            mc.num_layers,
            mc.num_heads,
            mc.key_size,
            mc.mlp_hidden_size,
        )
        assert cfg.d_model == len(model.residual_labels)
        assert cfg.d_vocab == mc.vocab_size == len(model.input_encoder.encoding_map)
        assert cfg.n_ctx == model.max_seq_len + 1
        assert cfg.act_fn == "relu" and cfg.normalization_type is None
        assert cfg.attention_dir == ("causal" if model.causal else "bidirectional")
        assert not tl_model.training
        assert all(p.dtype == torch.float32 for p in tl_model.parameters())
        sd = tl_model.state_dict()
        np.testing.assert_array_equal(sd["embed.W_E"].numpy(), model.params["token_embed"]["embeddings"])
        np.testing.assert_array_equal(sd["pos_embed.W_pos"].numpy(), model.params["pos_embed"]["embeddings"])
        w_u = sd["unembed.W_U"].numpy()
        out = model.output_location
        if model.output_encoder.encoding_map is None:
            assert w_u.shape == (cfg.d_model, 1) and w_u[out.start, 0] == 1 and w_u.sum() == 1
        else:
            assert w_u.shape == (cfg.d_model, len(model.output_encoder.encoding_map))
            for value, j in model.output_encoder.encoding_map.items():
                assert model.residual_labels[int(np.argmax(w_u[:, j]))] == f"{out.label}:{value}"
        assert not sd["unembed.b_U"].any()


def test_to_tokens_rejects_mixed_lengths() -> None:
    model = compiled("sort")
    with pytest.raises(ValueError, match="one length"):
        tl_export.to_tokens(model, [["1"], ["1", "2"]])


def test_to_tokens_reads_printed_tokens_and_to_str_tokens_reverses_it() -> None:
    model = compiled("sort")  # integer tokens 1..4
    enc = model.input_encoder.encoding_map
    expected = [[enc["BOS"], enc[3], enc[1], enc[2]], [enc["BOS"], enc[4], enc[2], enc[1]]]
    for given in ([[3, 1, 2], [4, 2, 1]], ["3 1 2", "4 2 1"], [["3", "1", "2"], [4, "2", 1]]):
        assert tl_export.to_tokens(model, given).tolist() == expected, given
    tokens = tl_export.to_tokens(model, ["3 1 2", "4 2 1"])
    assert tl_export.to_str_tokens(model, tokens) == [["BOS", "3", "1", "2"], ["BOS", "4", "2", "1"]]
    assert tl_export.to_str_tokens(model, tokens[1]) == ["BOS", "4", "2", "1"]
    assert tl_export.to_str_tokens(model, [enc["PAD"]]) == ["PAD"]
    with pytest.raises(
        ValueError, match=r"unknown token '7' in input 1, position 2; the vocabulary is: 1 2 3 4"
    ):
        tl_export.to_tokens(model, ["3 1 2", "4 2 7"])
    with pytest.raises(TypeError, match=r"pass \['3 1 2'\]"):
        tl_export.to_tokens(model, "3 1 2")
    with pytest.raises(ValueError, match=r"token ids \[9\] are not in the vocabulary \(ids 0..5\)"):
        tl_export.to_str_tokens(model, [[enc["BOS"], 9]])


def _scale_head(layer: int, head: int, factor: float):
    def hook(act, hook):
        act[:, :, head] = act[:, :, head] * factor
        return act

    return (f"blocks.{layer}.attn.hook_z", hook)


def _cache_with_hooks(tl_model, tokens, hooks):
    with torch.no_grad(), tl_model.hooks(fwd_hooks=hooks):
        return tl_model.run_with_cache(tokens)[1]


def test_read_sop_reads_every_sop_and_flags_damage() -> None:
    """Clean: every SOp of the README's program reads as the evaluator computes it. Zeroing
    frac_x's head gives 0, a value frac_x can take (wrong, not damaged); scaling it by 0.9
    gives numbers frac_x never takes (damaged); halving sort's head leaves half a one-hot."""
    from rasp_lab import rasp

    is_x = rasp.numerical(rasp.Map(lambda t: 1 if t == "x" else 0, rasp.tokens)).named("is_x")
    so_far = rasp.Select(rasp.indices, rasp.indices, rasp.Comparison.LEQ).named("so_far")
    frac = rasp.numerical(rasp.Aggregate(so_far, is_x, default=0)).named("frac_x")
    model = rasp_lab.compile(frac, vocab={"x", "a", "b"}, max_seq_len=4)
    tl_model = tl_export.to_transformer_lens(model, device="cpu")
    inputs = [["x", "a", "x", "b"], ["a", "a", "x", "x"]]
    tokens = tl_export.to_tokens(model, inputs)
    with torch.no_grad():
        _, cache = tl_model.run_with_cache(tokens)
    for sop, hook in (
        (rasp.tokens, "blocks.0.hook_resid_pre"),
        (rasp.indices, "blocks.0.hook_resid_pre"),
        (is_x, "blocks.0.hook_resid_post"),
        (frac, "blocks.1.hook_resid_mid"),
    ):
        reading = tl_export.read_sop(model, cache, sop)
        assert reading.hook == hook == tl_export.sop_hook(model, sop.label)
        assert not reading.any_damaged
        for got, xs in zip(reading.values, inputs):
            assert got == pytest.approx(rasp.evaluate(sop, xs), abs=1e-5), (sop.label, got)
    zeroed = _cache_with_hooks(tl_model, tokens, [_scale_head(1, 0, 0.0)])
    scaled = _cache_with_hooks(tl_model, tokens, [_scale_head(1, 0, 0.9)])
    reading = tl_export.read_sop(model, zeroed, "frac_x")
    assert reading.values == [[0.0] * 4] * 2 and not reading.any_damaged
    reading = tl_export.read_sop(model, scaled, "frac_x")
    assert reading.damaged == [[True] * 4, [False, False, True, True]]  # 0.9 * 0 is still 0
    assert reading.values[0] == [None] * 4 and reading.values[1][2:] == [None, None]
    assert reading.values[1][:2] == pytest.approx([0.0, 0.0], abs=1e-6)
    assert tl_export.read_sop(model, scaled, "is_x").values == [[1.0, 0.0, 1.0, 0.0], [0.0, 0.0, 1.0, 1.0]]

    sort_model, sort_tl = compiled("sort"), exported("sort")
    tokens = tl_export.to_tokens(sort_model, ["3 1 2"])
    halved = _cache_with_hooks(sort_tl, tokens, [_scale_head(2, 0, 0.5)])
    no_mlp = _cache_with_hooks(sort_tl, tokens, [("blocks.1.hook_mlp_out", lambda act, hook: act * 0.0)])
    reading = tl_export.read_sop(sort_model, halved, "sort")
    assert reading.damaged == [[True, True, True]] and reading.values == [[None, None, None]]
    assert reading.block.shape == (1, 3, len(sort_model.where("sort").directions))
    # target_pos always has a value, so an empty block (its MLP zeroed) is damage; read after
    # the last layer it is still empty
    last = tl_export.read_sop(sort_model, no_mlp, "target_pos", hook="blocks.2.hook_resid_post")
    assert last.hook == "blocks.2.hook_resid_post" and last.damaged == [[True, True, True]]
    with pytest.raises(KeyError, match="'blocks.9.hook_resid_post' is not in the cache"):
        tl_export.read_sop(sort_model, no_mlp, "sort", hook="blocks.9.hook_resid_post")
    with pytest.raises(KeyError, match="'nope' is not an SOp of this model"):
        tl_export.read_sop(sort_model, no_mlp, "nope")
    with pytest.raises(ValueError, match=r"expected a residual \[batch, pos, \d+\], got shape \(3,\)"):
        tl_export.read_sop(sort_model, {"blocks.0.hook_resid_pre": np.zeros(3)}, "tokens")


def test_real_and_padding_heads() -> None:
    """shuffle_dyck exports 7 layers x 4 heads: 7 real heads, 21 all-zero padding heads."""
    model, tl_model = compiled("shuffle_dyck"), exported("shuffle_dyck")
    real = tl_export.real_heads(model)
    padding = tl_export.padding_heads(model)
    assert (len(real), len(padding), tl_model.cfg.n_layers * tl_model.cfg.n_heads) == (7, 21, 28)
    assert [(h.layer, h.head, h.sop) for h in real] == [
        (0, 0, "length"),
        (1, 0, "opens_()"),
        (1, 1, "closes_()"),
        (1, 2, "opens_[]"),
        (1, 3, "closes_[]"),
        (4, 0, "last_zero"),
        (5, 0, "has_neg"),
    ]
    assert sorted([(h.layer, h.head) for h in real] + padding) == [
        (lay, h) for lay in range(7) for h in range(4)
    ]
    sd = tl_model.state_dict()
    for layer, head in padding:
        for w in ("W_Q", "W_K", "W_V", "W_O"):
            assert not sd[f"blocks.{layer}.attn.{w}"][head].any(), (layer, head, w)
    for h in real:
        assert sd[f"blocks.{h.layer}.attn.W_O"][h.head].abs().sum() > 0, h
    gt = tl_export.ground_truth_circuit(model)
    assert {(c["layer"], c["head"], c["sop"]) for c in gt["components"] if c["kind"] == "attn"} == set(real)


@pytest.mark.parametrize("name", ["sort", "frac_prevs", "count_distinct"])
def test_circuit_discovery_export_has_the_same_outputs(name: str) -> None:
    """for_circuit_discovery turns on the three hooks ACDC asserts; logits and every residual
    equal the plain export's, and hook_result holds each head's own output."""
    model, plain = compiled(name), exported(name)
    tl_model = tl_export.to_transformer_lens(model, device="cpu", for_circuit_discovery=True)
    assert tl_model.cfg.use_attn_result and tl_model.cfg.use_split_qkv_input and tl_model.cfg.use_hook_mlp_in
    assert not (plain.cfg.use_attn_result or plain.cfg.use_split_qkv_input or plain.cfg.use_hook_mlp_in)
    n = registry.get(name).max_seq_len
    inputs = [xs for xs in inputs_for(name) if len(xs) == n][:100]
    tokens = tl_export.to_tokens(model, inputs)
    with torch.no_grad():
        logits, cache = tl_model.run_with_cache(tokens)
        plain_logits, plain_cache = plain.run_with_cache(tokens)
    np.testing.assert_allclose(logits.numpy(), plain_logits.numpy(), atol=1e-5)
    assert tl_export.decode_logits(model, logits) == tl_export.decode_logits(model, plain_logits)
    for layer in range(tl_model.cfg.n_layers):
        np.testing.assert_allclose(
            cache[f"blocks.{layer}.hook_resid_post"].numpy(),
            plain_cache[f"blocks.{layer}.hook_resid_post"].numpy(),
            atol=1e-5,
        )
        result = cache[f"blocks.{layer}.attn.hook_result"]  # [batch, pos, heads, d_model]
        assert result.shape == (len(inputs), n + 1, tl_model.cfg.n_heads, tl_model.cfg.d_model)
        with torch.no_grad():
            per_head = torch.einsum(
                "bphd,hdm->bphm", cache[f"blocks.{layer}.attn.hook_z"], tl_model.blocks[layer].attn.W_O
            )
        np.testing.assert_allclose(result.numpy(), per_head.numpy(), atol=1e-5)
        assert cache[f"blocks.{layer}.hook_q_input"].shape == result.shape
        np.testing.assert_allclose(
            cache[f"blocks.{layer}.hook_mlp_in"].numpy(), cache[f"blocks.{layer}.hook_resid_mid"].numpy()
        )


def test_ground_truth_circuit_is_reexported() -> None:
    assert tl_export.ground_truth_circuit is circuit.ground_truth_circuit


@pytest.mark.parametrize("name", ["sort", "pair_balance", "count_distinct"])
def test_every_ground_truth_component_matters(name: str) -> None:
    """Zero-ablating one component of the ground-truth circuit (a head's slice of hook_z, or
    an MLP block's neurons in mlp.hook_post) changes the logits on some input, and ablating
    every padding head and neuron (outside the circuit) changes nothing."""
    model, tl_model = compiled(name), exported(name)
    gt = tl_export.ground_truth_circuit(model)
    inputs = [xs for xs in inputs_for(name) if len(xs) == registry.get(name).max_seq_len][:200]
    tokens = tl_export.to_tokens(model, inputs)
    with torch.no_grad():
        clean = tl_model(tokens)
        for component in gt["components"]:
            layer = component["layer"]
            if component["kind"] == "attn":
                hook, index = component["hook"], (slice(None), slice(None), component["head"])
            else:
                hook = f"blocks.{layer}.mlp.hook_post"
                index = (slice(None), slice(None), slice(*component["neurons"]))

            def ablate(act, hook=None, index=index):
                act[index] = 0.0
                return act

            ablated = tl_model.run_with_hooks(tokens, fwd_hooks=[(hook, ablate)])
            assert (ablated - clean).abs().max() > 0.1, component

        def outside(act, hook):
            layer = int(hook.name.split(".")[1])
            used = [c for c in gt["components"] if c["layer"] == layer]
            if hook.name.endswith("hook_z"):
                heads = {c["head"] for c in used if c["kind"] == "attn"}
                for h in range(act.shape[2]):
                    if h not in heads:
                        act[:, :, h] = 0.0
            else:
                keep = torch.zeros(act.shape[-1], dtype=torch.bool)
                for c in used:
                    if c["kind"] == "mlp":
                        keep[slice(*c["neurons"])] = True
                act[..., ~keep] = 0.0
            return act

        hooks = [(lambda n: n.endswith("attn.hook_z") or n.endswith("mlp.hook_post"), outside)]
        np.testing.assert_array_equal(tl_model.run_with_hooks(tokens, fwd_hooks=hooks).numpy(), clean.numpy())


def test_import_without_torch_says_what_to_install() -> None:
    """With torch unimportable, `import rasp_lab` (and compiling, and the circuit) still
    work, and importing the export module raises ImportError naming the extra."""
    code = textwrap.dedent(
        """
        import sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name == "torch" or name.startswith("torch.") or name.startswith("transformer_lens"):
                    raise ImportError(f"blocked {name}")
        sys.meta_path.insert(0, Block())
        import rasp_lab
        from rasp_lab import circuit, rasp
        model = rasp_lab.compile(rasp.Map(lambda t: t, rasp.tokens).named("same"), {"a"}, 2)
        assert circuit.ground_truth_circuit(model)["output"] == "same"
        try:
            import rasp_lab.tl_export
        except ImportError as err:
            print("IMPORTERROR", err)
        """
    )
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "IMPORTERROR" in done.stdout
    assert "rasp-lab[tl]" in done.stdout and "--index-url https://download.pytorch.org/whl/cpu" in done.stdout


def _edge_hooks(model, cache, src: str, dst: str, role, delta_row=None):
    """Forward hooks that subtract `src`'s output from `dst`'s input `role` (zero ablation),
    or, with `delta_row`, replace row 0's copy of it by row `delta_row`'s (resampling)."""
    last = model.model_config.num_layers - 1
    if src == "embed":
        out = cache["blocks.0.hook_resid_pre"]
    elif src.startswith("a"):
        layer, head = (int(x) for x in src[1:].split(".h"))
        out = cache[f"blocks.{layer}.attn.hook_result"][:, :, head]
    else:
        out = cache[f"blocks.{int(src[1:])}.hook_mlp_out"]
    delta = -out if delta_row is None else (out[delta_row] - out[0])[None].expand_as(out) * _row0(out)
    if dst == "unembed":
        hook, index = f"blocks.{last}.hook_resid_post", (slice(None),)
    elif dst.startswith("a"):
        layer, head = (int(x) for x in dst[1:].split(".h"))
        hook, index = f"blocks.{layer}.hook_{role}_input", (slice(None), slice(None), head)
    else:
        hook, index = f"blocks.{int(dst[1:])}.hook_mlp_in", (slice(None),)

    def patch(act, hook):
        act[index] = act[index] + delta
        return act

    return [(hook, patch)]


def _row0(out):
    mask = torch.zeros(out.shape[0], *([1] * (out.ndim - 1)))
    mask[0] = 1.0
    return mask


@pytest.mark.parametrize("name", ["sort", "count_distinct"])
def test_verified_circuit_holds_in_transformer_lens(name: str) -> None:
    """verify_circuit's witnesses, replayed as TransformerLens edge patches (hook_result /
    hook_mlp_out / hook_resid_pre subtracted from hook_{q,k,v}_input / hook_mlp_in), change
    the output SOp; zero-ablating any non-edge leaves the logits exactly as they were."""
    from rasp_lab.circuit_formats import verify_circuit

    model = compiled(name)
    tl_model = tl_export.to_transformer_lens(model, device="cpu", for_circuit_discovery=True)
    result = verify_circuit(model, max_inputs=600)
    output, last = model.output_location.label, f"blocks.{model.model_config.num_layers - 1}.hook_resid_post"

    def reading(tokens, hooks):
        with torch.no_grad(), tl_model.hooks(fwd_hooks=hooks):
            logits, cache = tl_model.run_with_cache(tokens)
        r = tl_export.read_sop(model, cache, output, hook=last)
        return logits, cache, [(v, d) for v, d in zip(r.values[0], r.damaged[0])]

    checked = 0
    for e in result["edges"]:
        for kind in ("zero", "resample"):
            witness = e[kind]
            if witness is None:
                continue
            rows = [witness] if kind == "zero" else list(witness)
            tokens = tl_export.to_tokens(model, rows)
            _, cache, clean = reading(tokens, [])
            hooks = _edge_hooks(model, cache, e["src"], e["dst"], e["input"], None if kind == "zero" else 1)
            _, _, ablated = reading(tokens, hooks)
            assert ablated != clean, (kind, e)
            checked += 1
    assert checked >= 15
    inputs = [xs for xs in inputs_for(name) if len(xs) == registry.get(name).max_seq_len][:50]
    tokens = tl_export.to_tokens(model, inputs)
    clean_logits, cache, _ = reading(tokens, [])
    assert len(result["non_edges"]) >= 10
    for n in result["non_edges"]:
        logits, _, _ = reading(tokens, _edge_hooks(model, cache, n["src"], n["dst"], n["input"]))
        assert torch.equal(logits, clean_logits), n


@pytest.mark.parametrize("name", ["sort", "pair_balance", "detect_pattern"])
def test_iit_correspondence_holds_in_transformer_lens(name: str) -> None:
    """iit_correspondence's (hook, index) pairs, patched in the circuit-discovery export with
    the values of another input of the same length (the interchange interventions of
    InterpBench's SIIT), give what the program gives with that SOp's values swapped in."""
    from rasp_lab.circuit_formats import iit_correspondence
    from rasp_lab.evaluator import EvaluationError, trace

    model = compiled(name)
    tl_model = tl_export.to_transformer_lens(model, device="cpu", for_circuit_discovery=True)
    numerical = model.output_encoder.encoding_map is None
    inputs = [xs for xs in inputs_for(name) if len(xs) == registry.get(name).max_seq_len][:40]
    tokens = tl_export.to_tokens(model, inputs)
    with torch.no_grad():
        _, cache = tl_model.run_with_cache(tokens)
    changed = 0
    for label, hooks in iit_correspondence(model).items():

        def patch(act, hook, index):
            index = (...,) if index == (None,) else index
            act[index] = cache[hook.name].roll(1, dims=0)[index]
            return act

        fwd = [(h, lambda act, hook, index=index: patch(act, hook, index)) for h, index in hooks]
        with torch.no_grad(), tl_model.hooks(fwd_hooks=fwd):
            got = tl_export.decode_logits(model, tl_model(tokens))
        for row, base in enumerate(inputs):
            source = inputs[row - 1]
            try:
                swapped = trace(model.program, source, causal=model.causal).by_label()[label]
                want = trace(
                    model.program, base, causal=model.causal, interventions={label: swapped}
                ).by_label()[model.program.label]
            except EvaluationError:
                continue
            assert all(same(w, g, numerical) for w, g in zip(want, got[row])), (
                label,
                base,
                source,
                want,
                got[row],
            )
            changed += want != model.run(base)
    assert changed >= 10


@pytest.mark.parametrize("name", ["sort", "shuffle_dyck"])
def test_benchmark_formats_name_hooks_of_the_export(name: str) -> None:
    """Every hook that acdc_edges, interpbench_circuit's hook granularities and
    iit_correspondence name exists in the circuit-discovery export, and every index they
    give selects a non-empty part of its activation (head indices on the head axis, neuron
    ranges inside d_mlp): ACDC and InterpBench can't be installed here, so this is the check
    that their hook lookups would succeed."""
    from rasp_lab.circuit_formats import acdc_edges, iit_correspondence, interpbench_circuit

    model = compiled(name)
    tl_model = tl_export.to_transformer_lens(model, device="cpu", for_circuit_discovery=True)
    with torch.no_grad():
        _, cache = tl_model.run_with_cache(tl_export.to_tokens(model, [inputs_for(name)[-1]]))

    def check(hook: str, index: tuple) -> None:
        assert hook in tl_model.hook_dict, hook
        act = cache[hook]
        if index == (None,):
            return
        if len(index) == 3 and index[:2] == (None, None):  # ACDC's head index [:, :, h]
            assert act.ndim == 4 and index[2] < act.shape[2], (hook, index, act.shape)
            return
        assert act[index].numel() > 0, (hook, index, act.shape)

    edges = acdc_edges(model, split_embeddings=True)
    for child, child_index, parent, parent_index in edges:
        check(child, child_index)
        check(parent, parent_index)
    for granularity in ("acdc_hooks", "sp_hooks"):
        for node in interpbench_circuit(model, granularity)["nodes"]:
            hook, _, head = node.partition("[")
            check(hook, (None, None, int(head[:-1])) if head else (None,))
    for hooks in iit_correspondence(model).values():
        for hook, index in hooks:
            check(hook, index)
    parameters = dict(tl_model.named_parameters())
    for node in interpbench_circuit(model, "matrix")["nodes"]:
        matrix, _, head = node.partition("[")
        assert matrix in parameters, node
        if head:  # W_Q, W_K, W_V, W_O are [n_heads, ...]
            assert int(head[:-1]) < parameters[matrix].shape[0], node
    assert len(edges) >= 20
