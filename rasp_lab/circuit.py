"""The ground-truth circuit of a compiled model, in TransformerLens names.

A compiled model's every head and MLP block was put there to compute one SOp, and reads
and writes named residual directions, so its circuit is known exactly: which components
compute which SOp, and which component's output each component reads. Circuit-discovery
methods (ACDC, attribution patching, ...) run on the TransformerLens export
(`rasp_lab.tl_export.to_transformer_lens`) can be scored against it.

Pure Python over the model's weights and residual layout: no torch, no jax arrays touched,
and it works for models loaded from a file as well as compiled ones.

The structure (every name a plain str, int, tuple or list, so it serialises to JSON):

    {
      "program": "sort",                  # the program's (output SOp's) label
      "output": "sort",                   # the SOp the unembedding reads
      "components": [                     # layer order; in a layer, heads then MLP blocks
        {"name": "a1.h0",                 # "a{layer}.h{head}" or "m{layer}"
         "sop": "target_pos",             # the SOp this component (helps) compute
         "kind": "attn",                  # "attn" or "mlp"
         "layer": 1,
         "head": 0,                       # head index (None for an MLP)
         "neurons": None,                 # (start, stop) hidden units of the layer's MLP (None for a head)
         "hook": "blocks.1.attn.hook_z",  # where its output is isolated: hook_z[:, :, head],
                                          #   or blocks.{l}.hook_mlp_out (whole layer MLP),
                                          #   blocks.{l}.mlp.hook_post[..., start:stop] (its neurons)
         "reads": {"q": ("one", "indices"), "k": ("bos", "keys"), "v": ("one",)},
                                          # residual groups read per input ("in" for an MLP)
         "writes": ("target_pos_selector_width_attn_output",)},
        ...
      ],
      "edges": [                          # who reads whom, deduplicated, in component order
        {"src": "embed", "dst": "a1.h0", "input": "k", "via": "keys"}, ...
        {"src": "a2.h0", "dst": "unembed", "input": None, "via": "sort"},
      ],
      "sops": {                           # per SOp of the residual stream
        "target_pos": {"encoding": "categorical", "components": ["a1.h0", "m1"],
                       "heads": [(1, 0)], "mlps": [1],     # (layer, head) pairs; MLP layers
                       "head_layer": 1, "mlp_layer": 1, "residual": (31, 37)},
        "tokens": {..., "components": [], ...},      # embedded SOps: written by "embed"
      },
      "nodes": ["embed", "m0", "a1.h0", "m1", "a2.h0", "unembed"],
      "hooks": ["blocks.0.hook_mlp_out", "blocks.1.attn.hook_z", ...],
    }

Residual groups ("via", "reads", "writes") are SOp labels, plus "one" (the bias direction),
"bos" (the BOS-token direction every head's key reads for its default) and
"{label}_selector_width_attn_output" (the scratch direction a SelectorWidth's head writes
and its MLP reads). "one", "bos" and embedded SOps (tokens, indices, and SOps computed
from nothing) are written by "embed".

Head indices and MLP neuron ranges are those of `model.params` and of the exported
HookedTransformer (the padded layout: padding adds zero heads and neurons at the end of a
layer, and those belong to no component). An MLP node name "m{layer}" is shared by the
MLP blocks of different SOps computed in one layer: their "neurons" tell them apart.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from rasp_lab import naming

__all__ = ["RealHead", "ground_truth_circuit", "head_hook", "mlp_hook", "padding_heads", "real_heads"]


class RealHead(NamedTuple):
    """A head the compiler put in the model: its TransformerLens (layer, head) and its SOp."""

    layer: int
    head: int
    sop: str


def real_heads(model: Any) -> list[RealHead]:
    """The heads that compute something, in layer order, with the SOp each computes.

    TransformerLens gives every layer the same number of heads, so the export pads each
    layer with all-zero heads after its real ones; only these are part of the circuit."""
    return [
        RealHead(layer, index, head.label)
        for layer, lw in enumerate(model.weights.layers)
        for index, head in enumerate(lw.heads)
    ]


def padding_heads(model: Any) -> list[tuple[int, int]]:
    """The exported (layer, head) pairs whose weights are all zero: they only pad the layer
    to `model.model_config.num_heads` heads and always output zero."""
    heads = model.model_config.num_heads
    return [
        (layer, index)
        for layer, lw in enumerate(model.weights.layers)
        for index in range(len(lw.heads), heads)
    ]


def head_hook(layer: int) -> str:
    """The TransformerLens hook holding each head's output, [batch, pos, head, d_head]."""
    return naming.tl(layer, "attn.hook_z")


def mlp_hook(layer: int) -> str:
    """The TransformerLens hook holding a layer's MLP output, [batch, pos, d_model]."""
    return naming.tl(layer, "hook_mlp_out")


def _groups(model: Any) -> dict[Any, str]:
    """Residual direction -> the group it belongs to (see the module docstring)."""
    layout = model.layout
    group = {}
    for label, location in layout.sops.items():
        for direction in location.directions:
            group[direction] = label
    directions = layout.directions
    for i, direction in enumerate(directions):
        if direction in group:
            continue
        if direction.name == "one" and direction.internal:
            group[direction] = "one"
        elif i == 1:  # the layout puts the BOS direction right after ONE
            group[direction] = "bos"
        else:
            group[direction] = direction.name
    return group


def _names(directions, group: dict[Any, str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(group[d] for d in directions))


def ground_truth_circuit(model: Any) -> dict[str, Any]:
    """Which heads and MLPs compute which SOp, and what each reads from whom.

    `model` is a `rasp_lab.CompiledModel` (compiled or loaded). See the module docstring
    for the structure returned.
    """
    group = _groups(model)
    components: list[dict[str, Any]] = []
    for layer, lw in enumerate(model.weights.layers):
        for index, head in enumerate(lw.heads):
            components.append(
                {
                    "name": f"a{layer}.h{index}",
                    "sop": head.label,
                    "kind": "attn",
                    "layer": layer,
                    "head": index,
                    "neurons": None,
                    "hook": head_hook(layer),
                    "reads": {
                        "q": _names(head.query, group),
                        "k": _names(head.key, group),
                        "v": _names(head.value, group),
                    },
                    "writes": _names(head.output, group),
                }
            )
        offset = 0
        for mlp in lw.mlps:
            components.append(
                {
                    "name": f"m{layer}",
                    "sop": mlp.label,
                    "kind": "mlp",
                    "layer": layer,
                    "head": None,
                    "neurons": (offset, offset + mlp.hidden),
                    "hook": mlp_hook(layer),
                    "reads": {"in": _names(mlp.inputs, group)},
                    "writes": _names(mlp.outputs, group),
                }
            )
            offset += mlp.hidden

    writers: dict[str, list[str]] = {}
    for component in components:
        for name in component["writes"]:
            writers.setdefault(name, [])
            if component["name"] not in writers[name]:
                writers[name].append(component["name"])

    edges: list[dict[str, Any]] = []
    seen: set[tuple] = set()

    def add(src: str, dst: str, role: str | None, via: str) -> None:
        key = (src, dst, role, via)
        if key not in seen:
            seen.add(key)
            edges.append({"src": src, "dst": dst, "input": role, "via": via})

    for component in components:
        for role, names in component["reads"].items():
            for via in names:
                for src in writers.get(via, ["embed"]):
                    add(src, component["name"], role, via)
    output = model.output_location.label
    for src in writers.get(output, ["embed"]):
        add(src, "unembed", None, output)

    sops = {}
    for label, location in model.layout.sops.items():
        sops[label] = {
            "encoding": location.encoding.name.lower(),
            "components": list(dict.fromkeys(c["name"] for c in components if c["sop"] == label)),
            "heads": [
                (c["layer"], c["head"]) for c in components if c["sop"] == label and c["kind"] == "attn"
            ],
            "mlps": [c["layer"] for c in components if c["sop"] == label and c["kind"] == "mlp"],
            "head_layer": location.head_layer,
            "mlp_layer": location.mlp_layer,
            "residual": (location.start, location.stop),
        }

    nodes = ["embed", *dict.fromkeys(c["name"] for c in components), "unembed"]
    hooks = sorted({c["hook"] for c in components})
    return {
        "program": model.name,
        "output": output,
        "components": components,
        "edges": edges,
        "sops": sops,
        "nodes": nodes,
        "hooks": hooks,
    }
