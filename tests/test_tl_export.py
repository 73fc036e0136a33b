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
