"""The ground-truth circuit in circuit-discovery benchmark formats, and verified edge by edge.

`ground_truth_circuit` (rasp_lab/circuit.py) lists edges per residual group ("via"); the
benchmarks want one edge per pair of graph nodes. Here the circuit becomes:

- `acdc_edges(model)`: ACDC's edge dictionary. We follow the graph ACDC builds over a
  HookedTransformer with use_attn_result, use_split_qkv_input and use_hook_mlp_in on
  (TLACDCCorrespondence.setup_from_model) and the layout of ACDC's own Tracr ground truths:
  keys are `(child_hook, child_index, parent_hook, parent_index)`, values True. Parents are
  `blocks.0.hook_resid_pre` (the embedding; `split_embeddings=True` gives `hook_embed` and
  `hook_pos_embed` as ACDC's `use_pos_embed` does), `blocks.L.attn.hook_result` and
  `blocks.L.hook_mlp_out`; children are `blocks.L.hook_{q,k,v}_input`,
  `blocks.L.hook_mlp_in` and `blocks.{last}.hook_resid_post`. A head's index is
  `(None, None, h)`, every other node's `(None,)`: the tuples ACDC's TorchIndex holds, so
  no ACDC import is needed. With `internal=True` (the default, as in ACDC's Tracr ground
  truths) each head in the circuit also has its edges hook_{q,k,v}_input -> attn.hook_{q,k,v}
  -> attn.hook_result, and each MLP hook_mlp_in -> hook_mlp_out; ACDC itself never prunes
  those (they are its placeholder and direct-computation edges).
- `interpbench_circuit(model, granularity)`: nodes and (parent, child) edges named as
  InterpBench prints them: "component" (`embed`, `pos_embed`, `blocks.L.attn[h]`,
  `blocks.L.mlp`; no output node), "matrix" (`embed.W_E`, `pos_embed.W_pos`,
  `blocks.L.attn.W_{Q,K,V,O}[h]` with Q, K and V feeding O, `blocks.L.mlp.W_in` feeding
  `W_out`; no output node), "acdc_hooks" (`hook_embed`, `blocks.L.hook_q_input[h]`,
  `blocks.L.attn.hook_q[h]`, `blocks.L.attn.hook_result[h]`, `blocks.L.hook_mlp_in`, ...,
  `blocks.{last}.hook_resid_post`) and "sp_hooks" (the same without attn.hook_q/k/v).

Both follow the weights, not the RASP graph: a head whose query reads the bias direction
`one` or the BOS direction has an edge from the token embedding, which ACDC's Tracr ground
truths include and InterpBench's RASP-derived ones leave out. Whether the token or the
position embedding feeds an edge is read off `token_embed` and `pos_embed`.

`iit_correspondence(model)` is the high-level -> low-level map that InterpBench's
interchange-intervention training reads: each of the program's SOps -> the (hook, index)
pairs of the head or MLP units computing it. `verify_correspondence(model)` runs interchange
interventions on both sides (the model with those hooks taken from another input, the
evaluator with that SOp's values taken from it) and counts agreements.

`verify_circuit(model)` checks the circuit against the model itself (float64 numpy, the
compact weights): each edge of the node graph comes with an input on which zero-ablating
that one edge changes the decoded output, and a pair of inputs on which resample-ablating it
(the parent's output on the second input, fed to that one child) does; each pair of nodes
that is not an edge comes with its structural reason (the residual directions the parent
writes and the child reads are disjoint, so the weights connecting them multiply to exactly
zero). No torch needed.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Sequence
from typing import Any

import numpy as np

from rasp_lab import naming, rasp
from rasp_lab.circuit import _groups, ground_truth_circuit

__all__ = [
    "GRANULARITIES",
    "acdc_edges",
    "iit_correspondence",
    "interpbench_circuit",
    "node_edges",
    "verify_circuit",
    "verify_correspondence",
]

GRANULARITIES = ("component", "matrix", "acdc_hooks", "sp_hooks")
_ROLES = ("q", "k", "v")


def node_edges(model: Any) -> dict[tuple[str, str, str | None], list[str]]:
    """The circuit's edges between nodes (`ground_truth_circuit`'s names: "embed", "a1.h0",
    "m0", "unembed"), keyed (src, dst, input), each with the residual groups it carries."""
    out: dict[tuple[str, str, str | None], list[str]] = {}
    for e in ground_truth_circuit(model)["edges"]:
        out.setdefault((e["src"], e["dst"], e["input"]), []).append(e["via"])
    return out


def _embedding_groups(model: Any) -> tuple[set[str], set[str]]:
    """Residual groups the token embedding writes, and those the position embedding writes."""
    group = _groups(model)
    directions = model.layout.directions
    token = np.flatnonzero(np.abs(model.weights.token_embed).sum(axis=0))
    pos = np.flatnonzero(np.abs(model.weights.pos_embed).sum(axis=0))
    return {group[directions[i]] for i in token}, {group[directions[i]] for i in pos}


def _split_embed(model: Any, vias: Sequence[str]) -> list[str]:
    """Which embeddings ("embed", "pos_embed") write the groups `vias`."""
    token, pos = _embedding_groups(model)
    out = []
    if any(v in token for v in vias):
        out.append("embed")
    if any(v in pos for v in vias):
        out.append("pos_embed")
    return out


def _parse(name: str) -> tuple[str, int, int | None]:
    """("attn", layer, head) for "a{layer}.h{head}", ("mlp", layer, None) for "m{layer}"."""
    if name.startswith("a"):
        layer, head = name[1:].split(".h")
        return "attn", int(layer), int(head)
    return "mlp", int(name[1:]), None


def _acdc_parent(node: str) -> tuple[str, tuple]:
    """A head's or MLP's output node in ACDC's graph."""
    kind, layer, head = _parse(node)
    if kind == "attn":
        return naming.tl(layer, "attn.hook_result"), (None, None, head)
    return naming.tl(layer, "hook_mlp_out"), (None,)


def _acdc_child(model: Any, node: str, role: str | None) -> tuple[str, tuple]:
    if node == "unembed":
        return naming.tl(len(model.weights.layers) - 1, "hook_resid_post"), (None,)
    kind, layer, head = _parse(node)
    if kind == "attn":
        return naming.tl(layer, f"hook_{role}_input"), (None, None, head)
    return naming.tl(layer, "hook_mlp_in"), (None,)


def acdc_edges(
    model: Any, *, split_embeddings: bool = False, internal: bool = True
) -> dict[tuple[str, tuple, str, tuple], bool]:
    """The circuit as ACDC's edge dictionary (see the module docstring for the conventions)."""
    out: dict[tuple[str, tuple, str, tuple], bool] = {}
    embed_hooks = {"embed": "hook_embed", "pos_embed": "hook_pos_embed"}
    for (src, dst, role), vias in node_edges(model).items():
        child = _acdc_child(model, dst, role)
        if src == "embed":
            sources = _split_embed(model, vias) if split_embeddings else ["embed"]
            parents = [
                (embed_hooks[s], (None,)) if split_embeddings else (naming.tl(0, "hook_resid_pre"), (None,))
                for s in sources
            ]
        else:
            parents = [_acdc_parent(src)]
        for parent in parents:
            out[(*child, *parent)] = True
        if internal and dst != "unembed":
            kind, layer, head = _parse(dst)
            if kind == "attn":
                index = (None, None, head)
                result = naming.tl(layer, "attn.hook_result")
                out[(result, index, naming.tl(layer, f"attn.hook_{role}"), index)] = True
                out[(naming.tl(layer, f"attn.hook_{role}"), index, *child)] = True
            else:
                out[(naming.tl(layer, "hook_mlp_out"), (None,), *child)] = True
    return out


def interpbench_circuit(model: Any, granularity: str = "component") -> dict[str, list]:
    """The circuit as InterpBench names it: {"nodes": [...], "edges": [(parent, child), ...]},
    both in graph order, at `granularity` "component", "matrix", "acdc_hooks" or "sp_hooks"."""
    if granularity not in GRANULARITIES:
        raise ValueError(f"unknown granularity {granularity!r}; choose one of {list(GRANULARITIES)}")
    edges: dict[tuple[str, str], None] = {}
    last = naming.tl(len(model.weights.layers) - 1, "hook_resid_post")
    embeds = {
        "component": {"embed": "embed", "pos_embed": "pos_embed"},
        "matrix": {"embed": "embed.W_E", "pos_embed": "pos_embed.W_pos"},
    }.get(granularity, {"embed": "hook_embed", "pos_embed": "hook_pos_embed"})

    def name(node: str, port: str | None) -> str:
        """A node's name; `port` is "out", or the input role ("q", "k", "v", "in", None)."""
        if node in embeds:
            return embeds[node]
        if node == "unembed":
            return last
        kind, layer, head = _parse(node)
        if granularity == "component":
            return naming.tl(layer, f"attn[{head}]" if kind == "attn" else "mlp")
        if granularity == "matrix":
            if kind == "mlp":
                return naming.tl(layer, "mlp.W_out" if port == "out" else "mlp.W_in")
            return naming.tl(layer, f"attn.W_{'O' if port == 'out' else port.upper()}[{head}]")
        if kind == "mlp":
            return naming.tl(layer, "hook_mlp_out" if port == "out" else "hook_mlp_in")
        if port == "out":
            return naming.tl(layer, f"attn.hook_result[{head}]")
        return naming.tl(layer, f"hook_{port}_input[{head}]")

    without_output = granularity in ("component", "matrix")
    for (src, dst, role), vias in node_edges(model).items():
        if without_output and dst == "unembed":
            continue
        sources = _split_embed(model, vias) if src == "embed" else [src]
        for s in sources:
            edges[(name(s, "out"), name(dst, role))] = None
        if granularity == "component" or dst == "unembed":
            continue
        kind, layer, head = _parse(dst)
        if kind == "mlp":
            edges[(name(dst, "in"), name(dst, "out"))] = None
        elif granularity == "acdc_hooks":
            inner = naming.tl(layer, f"attn.hook_{role}[{head}]")
            edges[(name(dst, role), inner)] = None
            edges[(inner, name(dst, "out"))] = None
        else:
            edges[(name(dst, role), name(dst, "out"))] = None
    nodes = sorted(dict.fromkeys(n for edge in edges for n in edge), key=_node_rank)
    return {"granularity": granularity, "nodes": nodes, "edges": list(edges)}


_STAGES = (
    "attn[",
    "attn.W_Q",
    "attn.W_K",
    "attn.W_V",
    "hook_q_input",
    "hook_k_input",
    "hook_v_input",
    "attn.hook_q",
    "attn.hook_k",
    "attn.hook_v",
)
_LATER = (
    "attn.hook_result",
    "attn.W_O",
    "mlp",
    "mlp.W_in",
    "mlp.W_out",
    "hook_mlp_in",
    "hook_mlp_out",
    "hook_resid_post",
)


def _node_rank(name: str) -> tuple:
    """Graph order: embeddings, then layer by layer (head inputs, heads, MLP), output last."""
    if not name.startswith("blocks."):
        return (-1, 0 if name in ("embed", "embed.W_E", "hook_embed") else 1, 0)
    _, layer, rest = name.split(".", 2)
    head = int(rest[rest.index("[") + 1 : -1]) if rest.endswith("]") else 0
    part = rest.split("[")[0]
    stages = [*_STAGES, *_LATER]
    stage = next(i for i, s in enumerate(stages) if part == s or (s == "attn[" and part == "attn"))
    return (int(layer), stage, head)


# ------------------------------------------------------------------ verification


def _graph(model: Any) -> tuple[list[str], list[tuple[str, str, str | None]]]:
    """Every node of the model's graph (embed, real heads, MLP layers, unembed) and every
    (src, dst, input) a later node could read from an earlier one."""
    nodes = ["embed"]
    order: list[tuple[str, int, int]] = [("embed", -1, 0)]
    for layer, lw in enumerate(model.weights.layers):
        for index in range(len(lw.heads)):
            nodes.append(f"a{layer}.h{index}")
            order.append((nodes[-1], layer, 0))
        if lw.mlps:
            nodes.append(f"m{layer}")
            order.append((nodes[-1], layer, 1))
    pairs = []
    for dst, d_layer, d_part in order[1:]:
        roles = _ROLES if d_part == 0 else ("in",)
        for role in roles:
            for src, s_layer, s_part in order:
                if (s_layer, s_part) < (d_layer, d_part):
                    pairs.append((src, dst, role))
    for src, _, _ in order:
        pairs.append((src, "unembed", None))
    return nodes + ["unembed"], pairs


def _writes(model: Any, node: str) -> np.ndarray:
    """[d_model] bool: the residual dimensions `node` can write."""
    if node == "embed":
        w = np.abs(model.weights.token_embed).sum(axis=0) + np.abs(model.weights.pos_embed).sum(axis=0)
        return w > 0
    kind, layer, head = _parse(node)
    lw = model.weights.layers[layer]
    if kind == "attn":
        return np.abs(lw.w_o[head]).sum(axis=0) > 0
    return np.abs(lw.w_2).sum(axis=0) > 0


def _reads(model: Any, node: str, role: str | None) -> np.ndarray:
    """[d_model] bool: the residual dimensions `node`'s input `role` reads."""
    if node == "unembed":
        out = np.zeros(model.layout.width, bool)
        out[model.output_location.start : model.output_location.stop] = True
        return out
    kind, layer, head = _parse(node)
    lw = model.weights.layers[layer]
    if kind == "attn":
        w = {"q": lw.w_q, "k": lw.w_k, "v": lw.w_v}[role][:, head, :]
        return np.abs(w).sum(axis=1) > 0
    return np.abs(lw.w_1).sum(axis=1) > 0


class _Forward:
    """The model's forward pass in float64 numpy over one batch of same-length inputs, with
    one edge's input replaced: dst's input `role` gets residual + delta."""

    def __init__(self, model: Any, ids: np.ndarray) -> None:
        self.model = model
        w = model.weights
        self.embed = w.token_embed[ids].astype(np.float64) + w.pos_embed[: ids.shape[1]][None]
        seq = ids.shape[1]
        self.mask = np.tril(np.ones((seq, seq), bool)) if model.causal else np.ones((seq, seq), bool)
        self.outputs: dict[str, np.ndarray] = {}
        self.hidden: dict[int, np.ndarray] = {}
        self.layer_inputs: list[np.ndarray] = []  # [batch, seq, d_model] before each layer, then the final
        self.final = self.run(record=True)

    def _heads(
        self, lw: Any, x: np.ndarray, patch: tuple | None, layer: int, swap: dict[str, Any]
    ) -> list[np.ndarray]:
        outs = []
        for h in range(len(lw.heads)):
            if f"a{layer}.h{h}" in swap:
                outs.append(swap[f"a{layer}.h{h}"])
                continue
            inputs = {}
            for role in _ROLES:
                if patch is not None and patch[0] == f"a{layer}.h{h}" and patch[1] == role:
                    inputs[role] = x + patch[2]
                else:
                    inputs[role] = x
            q = inputs["q"] @ lw.w_q[:, h, :]
            k = inputs["k"] @ lw.w_k[:, h, :]
            v = inputs["v"] @ lw.w_v[:, h, :]
            logits = np.einsum("bqd,bkd->bqk", q, k) / np.sqrt(lw.head_size)
            logits = np.where(self.mask[None], logits, -np.inf)
            logits -= logits.max(axis=-1, keepdims=True)
            pattern = np.exp(logits)
            pattern /= pattern.sum(axis=-1, keepdims=True)
            outs.append(np.einsum("bqk,bkd->bqd", pattern, v) @ lw.w_o[h])
        return outs

    def run(
        self, patch: tuple | None = None, record: bool = False, swap: dict[str, Any] | None = None
    ) -> np.ndarray:
        """The final residual; `patch` = (dst, role, delta [batch, seq, d_model]) adds delta
        to one node's input; `swap` replaces outputs: a head's ("a{l}.h{h}": [batch, seq,
        d_model]) or an MLP layer's hidden units ("m{l}": [(start, stop, [batch, seq,
        stop - start]), ...])."""
        swap = swap or {}
        layers = self.model.weights.layers
        # Layers before the first patched or swapped node compute what the clean run did.
        touched = [*swap, patch[0]] if patch is not None else list(swap)
        first = min((len(layers) if n == "unembed" else _parse(n)[1] for n in touched), default=0)
        first = 0 if record else first
        x = self.embed if first == 0 else self.layer_inputs[first]
        if record:
            self.outputs["embed"] = x
        for layer in range(first, len(layers)):
            lw = layers[layer]
            if record:
                self.layer_inputs.append(x)
            heads = self._heads(lw, x, patch, layer, swap)
            if record:
                for h, out in enumerate(heads):
                    self.outputs[f"a{layer}.h{h}"] = out
            x = x + sum(heads) if heads else x
            if lw.mlps:
                inp = x + patch[2] if patch is not None and patch[0] == f"m{layer}" else x
                hidden = np.maximum(inp @ lw.w_1, 0.0)  # [batch, seq, hidden units]
                for start, stop, values in swap.get(f"m{layer}", ()):
                    hidden = hidden.copy()
                    hidden[..., start:stop] = values
                out = hidden @ lw.w_2
                if record:
                    self.outputs[f"m{layer}"] = out
                    self.hidden[layer] = hidden
                x = x + out
        if record:
            self.layer_inputs.append(x)
        if patch is not None and patch[0] == "unembed":
            x = x + patch[2]
        return x


def _decoded(model: Any, final: np.ndarray) -> np.ndarray:
    """[batch, seq - 1] output codes (BOS dropped): a numerical output's value; a categorical
    one's value index, -1 for no value, -2 where the block holds no single value."""
    loc = model.output_location
    block = final[:, 1:, loc.start : loc.stop]
    if loc.encoding is rasp.Encoding.NUMERICAL:
        return block[..., 0]
    top = block.argmax(axis=-1)
    high = np.take_along_axis(block, top[..., None], axis=-1)[..., 0]
    rest = np.abs(block).sum(axis=-1) - np.abs(high)
    empty = np.abs(block).sum(axis=-1) < 0.25
    clean = (high >= 0.75) & (rest <= 0.25)
    return np.where(clean, top, np.where(empty, -1, -2)).astype(float)


def _changed(model: Any, clean: np.ndarray, other: np.ndarray, tolerance: float) -> np.ndarray:
    """[batch] bool: the decoded output differs at some position."""
    if model.output_location.encoding is rasp.Encoding.NUMERICAL:
        scale = tolerance * np.maximum(1.0, np.abs(clean))
        return (~(np.abs(other - clean) <= scale)).any(axis=1)
    return (other != clean).any(axis=1)


def _inputs(model: Any, max_inputs: int, seed: int) -> list[list]:
    """Every input of length 1, 2, ... while the total stays within `max_inputs`, then
    seeded random inputs of the longer lengths (shortest first)."""
    vocab = sorted(model.vocab, key=repr)
    rng = random.Random(seed)
    out: list[list] = []
    longer = list(range(1, model.max_seq_len + 1))
    for n in range(1, model.max_seq_len + 1):
        if len(out) + len(vocab) ** n <= max_inputs:
            out += [list(xs) for xs in itertools.product(vocab, repeat=n)]
            longer.remove(n)
    per_length = max(1, (max_inputs - len(out)) // max(1, len(longer))) if longer else 0
    for n in longer:
        out += [[rng.choice(vocab) for _ in range(n)] for _ in range(per_length)]
    return out


def verify_circuit(
    model: Any,
    *,
    inputs: Sequence[Sequence[Any]] | None = None,
    max_inputs: int = 2000,
    seed: int = 0,
    tolerance: float = 1e-3,
) -> dict[str, Any]:
    """Witnesses for every edge of the circuit and reasons for every non-edge.

    Searches `inputs` (default: exhaustive by length up to `max_inputs`, then seeded random
    ones) shortest first; inputs whose clean output does not decode to one value per
    position are skipped. Returns

        {"edges": [{"src", "dst", "input", "via",
                    "zero": input or None,              # zero-ablating the edge changes the output
                    "zero_changes": int,                # how many searched inputs it changes
                    "resample": (input, corrupt) or None,
                    "resample_changes": int,            # pairs (input, the next of its length) changed
                    "same_per_length": bool}, ...],     # what the edge carries is the same on all inputs of a length
         "non_edges": [{"src", "dst", "input", "shared": [...], "reason": str or None}, ...],
         "inputs": int}                                 # inputs searched

    A non-edge's "shared" lists the residual groups its src writes and its dst reads (empty
    for every non-edge of a correct circuit: then "reason" says the connecting weights
    multiply to exactly zero; else "reason" is None). Edge "zero"/"resample" None means no
    searched input showed the edge matters (a larger search may).

    Resampling takes the second input from the same length (TransformerLens batches have
    one length), so an edge that carries the same on every input of a length
    ("same_per_length": the bias, BOS and position directions, or an SOp such as `length`)
    has no resample witness by construction. Some edges have no zero-ablation witness either:
    a head whose query reads only `one` and BOS for an all-true selector scores every key
    the same with or without that input.
    """
    if max_inputs < 1:
        raise ValueError(f"max_inputs must be at least 1, got {max_inputs}")
    pool = [list(xs) for xs in inputs] if inputs is not None else _inputs(model, max_inputs, seed)
    edges = node_edges(model)
    _, pairs = _graph(model)
    group = _groups(model)
    directions = model.layout.directions

    def groups(mask: np.ndarray) -> list[str]:
        return list(dict.fromkeys(group[directions[i]] for i in np.flatnonzero(mask)))

    results = {
        key: {
            "src": key[0],
            "dst": key[1],
            "input": key[2],
            "via": vias,
            "zero": None,
            "zero_changes": 0,
            "resample": None,
            "resample_changes": 0,
            "same_per_length": True,
        }
        for key, vias in edges.items()
    }
    reads = {(dst, role): _reads(model, dst, role) for _, dst, role in edges}
    by_length: dict[int, list[list]] = {}
    for xs in pool:
        by_length.setdefault(len(xs), []).append(xs)
    searched = 0
    for n in sorted(by_length):
        batch = by_length[n]
        ids = model.encode_batch(batch)
        forward = _Forward(model, ids)
        clean = _decoded(model, forward.final)
        keep = (
            ~(clean == -2).any(axis=1)
            if model.output_encoder.encoding_map is not None
            else np.ones(len(batch), bool)
        )
        if not keep.any():
            continue
        if not keep.all():
            rows = np.flatnonzero(keep)
            batch = [batch[r] for r in rows]
            forward = _Forward(model, ids[rows])
            clean = clean[rows]
        searched += len(batch)
        for (src, dst, role), result in results.items():
            out = forward.outputs[src]
            zero = _changed(model, clean, _decoded(model, forward.run((dst, role, -out))), tolerance)
            result["zero_changes"] += int(zero.sum())
            if result["zero"] is None and zero.any():
                result["zero"] = batch[int(np.argmax(zero))]
            if len(batch) < 2:
                continue
            for shift in range(1, min(4, len(batch))):
                delta = np.roll(out, shift, axis=0) - out
                if np.abs(delta[..., reads[(dst, role)]]).max(initial=0.0) > 1e-9:
                    result["same_per_length"] = False
                resampled = _changed(
                    model, clean, _decoded(model, forward.run((dst, role, delta))), tolerance
                )
                if shift == 1:
                    result["resample_changes"] += int(resampled.sum())
                if result["resample"] is None and resampled.any():
                    row = int(np.argmax(resampled))
                    result["resample"] = (batch[row], batch[(row - shift) % len(batch)])
                if result["resample"] is not None:
                    break
    non_edges = []
    for src, dst, role in pairs:
        if (src, dst, role) in edges:
            continue
        shared = groups(_writes(model, src) & _reads(model, dst, role))
        reason = None
        if not shared:
            reason = (
                f"{src} writes {groups(_writes(model, src))}, {dst}"
                f"{'' if role is None else ' ' + role} reads {groups(_reads(model, dst, role))}: no residual "
                f"direction in common, so the weights connecting them multiply to exactly zero"
            )
        non_edges.append({"src": src, "dst": dst, "input": role, "shared": shared, "reason": reason})
    return {"edges": list(results.values()), "non_edges": non_edges, "inputs": searched}


# ------------------------------------------------------------------ interchange interventions


def _writers(model: Any) -> dict[str, list[dict[str, Any]]]:
    """SOp label -> the components that write its residual directions (for a SelectorWidth,
    its MLP; the head only writes the scratch direction the MLP reads)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for component in ground_truth_circuit(model)["components"]:
        for label in component["writes"]:
            if label in model.layout.sops:
                out.setdefault(label, []).append(component)
    return out


def _program_sops(model: Any, program: rasp.SOp | None) -> set[str] | None:
    """The labels of the program's own SOps (the compiler adds helpers such as "<label>_raw"
    and "<label>_clean", which are part of computing their SOp, not high-level nodes); None
    for a loaded model given no program."""
    from rasp_lab.rasp.rewrite import topological

    if program is None:
        if model.is_loaded:
            return None
        program = model.program
    return {node.label for node in topological(program) if isinstance(node, rasp.SOp)}


def iit_correspondence(model: Any, program: rasp.SOp | None = None) -> dict[str, list[tuple[str, tuple]]]:
    """The high-level -> low-level correspondence that interchange-intervention training
    (InterpBench's SIIT) reads: each SOp a head or MLP computes -> the (hook, index) pairs
    holding that computation, in TransformerLens names.

    A head is `("blocks.L.attn.hook_result", (slice(None), slice(None), h, slice(None)))`,
    the index `Ix[:, :, h, :]` (hook_result is [batch, pos, head, d_model]). An MLP is
    `("blocks.L.mlp.hook_post", (None,))`, `Ix[[None]]`, when the layer's MLP computes that
    SOp alone, or `(slice(None), slice(None), slice(start, stop))` over its hidden units when
    it shares the layer. `iit.utils.index.TorchIndex(list(index))` turns an index into the
    iit package's type. Embedded SOps (tokens, indices, constants) have no entry.

    The keys are the program's SOps (`program` defaults to `model.program`); for a loaded
    model given no program they are every SOp of the residual stream, the compiler's
    helpers included."""
    mlp_sops: dict[int, set[str]] = {}
    writers = _writers(model)
    own = _program_sops(model, program)
    for label, components in writers.items():
        for c in components:
            if c["kind"] == "mlp":
                mlp_sops.setdefault(c["layer"], set()).add(label)
    out: dict[str, list[tuple[str, tuple]]] = {}
    for label, components in writers.items():
        if own is not None and label not in own:
            continue
        for c in components:
            if c["kind"] == "attn":
                entry = (
                    naming.tl(c["layer"], "attn.hook_result"),
                    (slice(None), slice(None), c["head"], slice(None)),
                )
            elif len(mlp_sops[c["layer"]]) == 1:
                entry = (naming.tl(c["layer"], "mlp.hook_post"), (None,))
            else:
                entry = (
                    naming.tl(c["layer"], "mlp.hook_post"),
                    (slice(None), slice(None), slice(*c["neurons"])),
                )
            out.setdefault(label, []).append(entry)
    return out


def _near(value: Any, options: np.ndarray | frozenset) -> bool:
    """`value` is one of `options`: exactly for categorical values, within float noise for a
    number against a sorted float array."""
    if isinstance(options, frozenset):
        return value in options
    if value is None or not isinstance(value, (int, float)):
        return False
    i = int(np.searchsorted(options, value))
    near = options[max(0, i - 1) : i + 1]
    return bool(near.size) and bool(np.min(np.abs(near - value)) <= 1e-9 * max(1.0, abs(value)))


def _all_same(got: list, want: list, numerical: bool, tolerance: float) -> bool:
    """Position by position, as `assert_compiles_exactly` compares (None only with None)."""
    from rasp_lab.testing.checks import _same

    return len(got) == len(want) and all(_same(g, w, numerical, tolerance) for g, w in zip(got, want))


def verify_correspondence(
    model: Any,
    *,
    program: rasp.SOp | None = None,
    inputs: Sequence[Sequence[Any]] | None = None,
    max_inputs: int = 500,
    seed: int = 0,
    tolerance: float = 1e-3,
) -> list[dict[str, Any]]:
    """Interchange interventions on both sides of `iit_correspondence`, per SOp.

    For each pair (base, source) of inputs of one length (each input with the next and the
    one after among the searched inputs of its length), the model runs on base with the
    SOp's hooks holding their values from source (float64 numpy, compact weights), and the
    evaluator runs `program` on base with the SOp's values from source
    (`trace(..., interventions=...)`). The decoded outputs must agree.

    The claim is scoped to what the compiled model covers: a pair on which the intervened
    program gives some SOp a value outside its compiled value set (interventions can mix
    values no single input produces together) is counted in "out_of_range", and one on which
    the program itself has no value (an EvaluationError) in "undefined"; neither is held
    against the model. Returns one dict per SOp:

        {"sop", "hooks": [(hook, index), ...], "pairs", "agree", "out_of_range",
         "undefined",
         "changes",                          # pairs where the intervention changes the output
         "disagree": [(base, source, expected, got), ...] (at most 3)}

    `program` defaults to `model.program` (a loaded model needs it given, with the model's
    output label; its value sets are inferred again). An empty list means the program has no
    SOp a head or MLP computes.
    """
    from rasp_lab.rasp.evaluator import EvaluationError, trace
    from rasp_lab.testing.checks import _decode_rows
    from rasp_lab.value_sets import value_sets

    if max_inputs < 1:
        raise ValueError(f"max_inputs must be at least 1, got {max_inputs}")
    program = model.program if program is None else program
    if program.label != model.output_location.label:
        raise ValueError(
            f"program {program.label!r} is not this model's: the model computes "
            f"{model.output_location.label!r}"
        )
    # A loaded model keeps no value sets: infer them again, as the compiler did.
    sets = value_sets(program, model.vocab, model.max_seq_len) if model.is_loaded else model.value_sets
    allowed = {}
    if sets is not None:
        for label, values in sets.sets.items():
            if values is None:
                continue
            numbers = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
            is_numerical = len(numbers) == len(values)
            allowed[label] = np.sort(np.asarray(numbers, float)) if is_numerical else values
    numerical = model.output_location.encoding is rasp.Encoding.NUMERICAL
    correspondence = iit_correspondence(model, program)
    writers = _writers(model)
    pool = [list(xs) for xs in inputs] if inputs is not None else _inputs(model, max_inputs, seed)
    by_length: dict[int, list[list]] = {}
    for xs in pool:
        by_length.setdefault(len(xs), []).append(xs)
    results = {
        label: {
            "sop": label,
            "hooks": hooks,
            "pairs": 0,
            "agree": 0,
            "out_of_range": 0,
            "undefined": 0,
            "changes": 0,
            "disagree": [],
        }
        for label, hooks in correspondence.items()
    }
    for n in sorted(by_length):
        batch = by_length[n]
        if len(batch) < 2:
            continue
        ids = model.encode_batch(batch)
        forward = _Forward(model, ids)
        traces = []
        for xs in batch:
            try:
                traces.append(trace(program, xs, causal=model.causal).by_label())
            except EvaluationError:
                traces.append(None)
        for shift in range(1, min(3, len(batch))):
            for label, result in results.items():
                swap: dict[str, Any] = {}
                for c in writers[label]:
                    if c["kind"] == "attn":
                        swap[c["name"]] = np.roll(forward.outputs[c["name"]], shift, axis=0)
                    else:
                        start, stop = c["neurons"]
                        hidden = np.roll(forward.hidden[c["layer"]][..., start:stop], shift, axis=0)
                        swap.setdefault(c["name"], []).append((start, stop, hidden))
                decoded = _decode_rows(model, forward.run(swap=swap), ids, model.output_location)
                for row, base in enumerate(batch):
                    source_row = (row - shift) % len(batch)
                    result["pairs"] += 1
                    if traces[row] is None or traces[source_row] is None:
                        result["undefined"] += 1
                        continue
                    try:
                        expected = trace(
                            program,
                            base,
                            causal=model.causal,
                            interventions={label: traces[source_row][label]},
                        ).by_label()
                    except EvaluationError:
                        result["undefined"] += 1
                        continue
                    if any(
                        not _near(v, allowed[sop])
                        for sop, values in expected.items()
                        if sop in allowed and isinstance(values, list)
                        for v in values
                    ):
                        result["out_of_range"] += 1
                        continue
                    got, want = decoded[row], expected[program.label]
                    if not _all_same(traces[row][program.label], want, numerical, tolerance):
                        result["changes"] += 1
                    if _all_same(got, want, numerical, tolerance):
                        result["agree"] += 1
                    elif len(result["disagree"]) < 3:
                        result["disagree"].append((base, batch[source_row], want, got))
    return list(results.values())
