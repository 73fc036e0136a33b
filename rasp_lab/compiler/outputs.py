"""What one forward pass returns (ModelOutput: rasp_lab's fields and Tracr's) and what a
model says about each head (HeadInfo)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from rasp_lab.artifact import SOpLocation


@dataclass(frozen=True)
class HeadInfo:
    layer: int
    index: int
    label: str
    selector: str
    margin: float
    coldness: float
    leak_bound: float
    strategy: str = ""
    """How the selector became this head (see HeadBlock.strategy)."""


@dataclass(frozen=True)
class ModelOutput:
    """One forward pass on one input (BOS first, then tokens, then any PAD).

    The first five fields are rasp_lab's (positions as rows, no batch axis); the rest are the
    fields of Tracr's AssembledTransformerModelOutput, with its shapes (batch axis of 1)."""

    decoded: list
    """BOS, then each position's value (None where the SOp has no value, and at PAD)."""
    stream: Mapping[str, np.ndarray]
    """'embed', 'layer_{l}/attn', 'layer_{l}/mlp' -> [seq, d_model] after that block."""
    attention: Mapping[int, np.ndarray]
    """layer -> pattern [heads, query, key]."""
    cache: Mapping[str, np.ndarray]
    """TransformerLens hook names -> arrays (no batch axis)."""
    residual_labels: list[str]
    unembedded: np.ndarray
    """[1, seq]: the output's index in `output_encoder` (categorical; -1 where it has no
    value) or its value (numerical), as the model computes it (BOS and PAD included)."""
    layer_outputs: list[np.ndarray]
    """Each block's write to the residual stream, [1, seq, d_model], attention then MLP per layer."""
    residuals: list[np.ndarray]
    """The residual stream after each block, [1, seq, d_model] (Tracr's list; `stream` names them)."""
    attn_logits: list[np.ndarray]
    """Per layer [1, heads, query, key]: attention logits, recomputed in float64 from the
    residual before the layer (masked entries hold the mask value)."""
    transformer_output: np.ndarray
    """[1, seq, d_model]: the final residual stream."""
    input_embeddings: np.ndarray
    """[1, seq, d_model]: token plus position embeddings."""

    def sop(self, location: SOpLocation) -> np.ndarray:
        """[seq, len(directions)]: the final residual restricted to one SOp's directions."""
        final = list(self.stream.values())[-1]
        return final[:, location.start : location.stop]
