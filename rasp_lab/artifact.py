"""The compiled artifact as data: residual directions, head and MLP blocks, layer weights,
and where every SOp lives in the residual stream.

Everything a model file holds, and everything needed to run, decode and certify a model,
is one of these types. This module imports nothing from the compiler's passes (nor
scipy, networkx or jax), so loading a file or checking a model never pulls them in.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from rasp_lab import rasp


@dataclass(frozen=True)
class Direction:
    """One residual dimension: `name:value` (categorical) or `name` (numerical, scalars).

    `internal` marks the compiler's own directions (the bias, the BOS marker, scratch): they
    never compare equal to an SOp's direction, so no user label can reach one of them (an
    SOp may be named "one")."""

    name: str
    value: Any = None
    internal: bool = False

    def __str__(self) -> str:
        return self.name if self.value is None else f"{self.name}:{self.value}"


ONE = Direction("one", internal=True)
"""1 at every token position, 0 at BOS: the bias direction."""

INTERNAL_PREFIX = "rasp_lab:"
"""Put before an internal direction's printed name when an SOp's direction prints the same."""


def direction_labels(directions: Sequence[Direction]) -> list[str]:
    """Printed names, unique: SOp directions print as `sop:value` (or `sop`); an internal
    direction prints as its name, prefixed with INTERNAL_PREFIX while that would repeat an
    SOp's printed name (a user may name an SOp "one")."""
    taken = {str(d) for d in directions if not d.internal}
    out = []
    for d in directions:
        text = str(d)
        if d.internal:
            while text in taken:
                text = INTERNAL_PREFIX + text
            taken.add(text)
        out.append(text)
    return out


@dataclass(frozen=True)
class MLPBlock:
    """hidden = ReLU(x[inputs] @ w_in); x[outputs] += hidden @ w_out."""

    label: str
    kind: str
    inputs: tuple[Direction, ...]
    outputs: tuple[Direction, ...]
    w_in: np.ndarray  # [len(inputs), hidden]
    w_out: np.ndarray  # [hidden, len(outputs)]
    tolerance: float
    """Largest error on the numerical input for which the output is still exact."""
    rounding: float = 0.0
    """float32's estimated error in any output (steps.float32_estimate; 0 for the lookup
    MLPs, whose outputs each sum a few terms of the size of their weights)."""

    @property
    def hidden(self) -> int:
        return self.w_in.shape[1]


@dataclass(frozen=True)
class HeadBlock:
    """A Boolean attention head; `w_qk` in table units (margins of 1 before coldness)."""

    label: str
    selector: str
    query: tuple[Direction, ...]
    key: tuple[Direction, ...]
    w_qk: np.ndarray  # [len(query), len(key)], before coldness
    value: tuple[Direction, ...]
    output: tuple[Direction, ...]
    w_ov: np.ndarray  # [len(value), len(output)]
    margin: float
    """Logit gap (table units) between the attended set and every other key."""
    coldness: float
    """Softmax inverse temperature multiplying w_qk."""
    leak_bound: float
    """Upper bound on the attention weight outside the attended set: n * exp(-coldness * margin)."""
    strategy: str = ""
    """How the selector became this head (an encoding from selector_plans, or 'length')."""

    @property
    def key_size(self) -> int:
        return min(len(self.query), len(self.key))

    @property
    def value_size(self) -> int:
        return min(len(self.value), len(self.output))


@dataclass(frozen=True)
class LayerWeights:
    heads: tuple[HeadBlock, ...]
    mlps: tuple[MLPBlock, ...]
    w_q: np.ndarray  # [d_model, num_heads, head_size]
    w_k: np.ndarray  # [d_model, num_heads, head_size]
    w_v: np.ndarray  # [d_model, num_heads, head_size]
    w_o: np.ndarray  # [num_heads, head_size, d_model]
    w_1: np.ndarray  # [d_model, mlp_hidden]
    w_2: np.ndarray  # [mlp_hidden, d_model]

    @property
    def num_heads(self) -> int:
        return self.w_q.shape[1]

    @property
    def head_size(self) -> int:
        return self.w_q.shape[2]

    @property
    def mlp_hidden(self) -> int:
        return self.w_1.shape[1]


@dataclass(frozen=True)
class Weights:
    token_embed: np.ndarray  # [n_tokens (vocab + BOS + PAD), d_model]
    pos_embed: np.ndarray  # [max_seq_len + 1, d_model]
    layers: tuple[LayerWeights, ...]

    @property
    def d_model(self) -> int:
        return self.token_embed.shape[1]


@dataclass(frozen=True)
class SOpLocation:
    """Which layer computes an SOp and which residual dimensions hold it."""

    label: str
    encoding: rasp.Encoding
    head_layer: int | None
    mlp_layer: int | None
    directions: tuple[Direction, ...]
    start: int
    stop: int

    @property
    def values(self) -> tuple:
        return tuple(d.value for d in self.directions)


@dataclass(frozen=True)
class ResidualLayout:
    directions: tuple[Direction, ...]
    index: Mapping[Direction, int]
    sops: Mapping[str, SOpLocation]

    @property
    def width(self) -> int:
        return len(self.directions)

    @property
    def labels(self) -> list[str]:
        """Direction names as `sop:value` strings (Tracr's residual_labels), unique."""
        return direction_labels(self.directions)


def pad(weights: Weights) -> Weights:
    """Every layer widened (with zeros) to the largest head count, head size and MLP width.

    Attention divides logits by sqrt(head_size), and the compact W_Q folds in its own
    layer's sqrt(head_size); a widened layer's W_Q is rescaled so its logits are unchanged.
    """
    heads = max(1, max(lw.num_heads for lw in weights.layers))
    size = max(lw.head_size for lw in weights.layers)
    hidden = max(1, max(lw.mlp_hidden for lw in weights.layers))
    padded = []
    for lw in weights.layers:
        dh, ds, dm = heads - lw.num_heads, size - lw.head_size, hidden - lw.mlp_hidden
        w_q = lw.w_q * math.sqrt(size / lw.head_size)
        padded.append(
            LayerWeights(
                lw.heads,
                lw.mlps,
                *(np.pad(m, ((0, 0), (0, dh), (0, ds))) for m in (w_q, lw.w_k, lw.w_v)),
                np.pad(lw.w_o, ((0, dh), (0, ds), (0, 0))),
                np.pad(lw.w_1, ((0, 0), (0, dm))),
                np.pad(lw.w_2, ((0, dm), (0, 0))),
            )
        )
    return Weights(weights.token_embed, weights.pos_embed, tuple(padded))


@dataclass(frozen=True)
class ValueInfo:
    """What one SOp's residual directions can hold, as the certificate needs it: whether it
    can have no value, and for a numerical SOp its values (None when too many to list) and
    their range. A categorical SOp's values are its directions'."""

    nullable: bool
    values: tuple[float, ...] | None = None
    low: float = 0.0
    high: float = 0.0
