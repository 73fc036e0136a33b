"""Between tokens and ids, and between the residual stream and values: the model's input and
output encoders (Tracr's encoder contract: `encoding_map`, `decoding_map`, `encode`,
`decode`), and the vectorised decoding of an SOp's block."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from rasp_lab import rasp
from rasp_lab.artifact import SOpLocation


class DecodingError(ValueError):
    """The output block at some position is neither one value nor empty (e.g. an average of
    two values): the compiled model has no single answer there."""


class InputEncoder:
    """Token <-> id, as Tracr's CategoricalEncoder: vocab sorted, then BOS, then PAD."""

    def __init__(self, tokens: Sequence[Any], bos: Any, pad: Any, max_seq_len: int) -> None:
        self.encoding_map = {token: i for i, token in enumerate(tokens)}
        self.decoding_map = {i: token for token, i in self.encoding_map.items()}
        self.bos_token, self.pad_token = bos, pad
        self.max_seq_len = max_seq_len

    @property
    def bos_encoding(self) -> int:
        return self.encoding_map[self.bos_token]

    @property
    def pad_encoding(self) -> int:
        return self.encoding_map[self.pad_token]

    def decode(self, encodings: Sequence[int]) -> list[Any]:
        """Tokens of ids (Tracr's encoder method)."""
        return [self.decoding_map[int(i)] for i in encodings]

    def encode(self, inputs: Sequence[Any], *, allow_padding: bool = False) -> list[int]:
        """Ids for `[BOS, *tokens]` (with `allow_padding`, `[BOS, *tokens, *PADs]` as Tracr
        runs a padded row); ValueError naming the first bad token and its position."""
        if isinstance(inputs, (str, bytes)) or not isinstance(inputs, Sequence):
            raise TypeError(f"expected a list of tokens starting with {self.bos_token!r}, got {inputs!r}")
        if len(inputs) == 0 or inputs[0] != self.bos_token:
            first = repr(inputs[0]) if len(inputs) else "nothing"
            raise ValueError(
                f"inputs must start with the BOS token {self.bos_token!r}, got {first} at position 0"
            )
        if len(inputs) - 1 > self.max_seq_len:
            raise ValueError(
                f"{len(inputs) - 1} tokens after BOS is longer than max_seq_len {self.max_seq_len}"
            )
        ids = []
        padding = 0  # the first PAD's position, once one is seen
        for position, token in enumerate(inputs):
            where = f"position {position} (BOS is position 0)"
            if position > 0 and token == self.bos_token:
                raise ValueError(f"BOS token {token!r} may only stand at position 0, found at {where}")
            if token == self.pad_token:
                if not allow_padding:
                    raise ValueError(
                        f"PAD token {token!r} at {where}: pass inputs without padding (run_batch pads them itself)"
                    )
                if position == 1:
                    raise ValueError(
                        f"PAD token {token!r} at {where}: a padded input needs at least one token before PAD"
                    )
                padding = padding or position
                ids.append(self.encoding_map[token])
                continue
            if padding:
                raise ValueError(
                    f"PAD token {self.pad_token!r} at position {padding} is followed by token {token!r} at "
                    f"{where}: PAD may only pad the input at its end"
                )
            if token not in self.encoding_map:
                vocab = [t for t in self.encoding_map if t not in (self.bos_token, self.pad_token)]
                raise ValueError(f"unknown token {token!r} at {where}; the vocabulary is {vocab}")
            ids.append(self.encoding_map[token])
        return ids


class CategoricalOutputEncoder:
    """Output value <-> index within the output SOp's one-hot block."""

    def __init__(self, values: Sequence[Any]) -> None:
        self.encoding_map = {v: i for i, v in enumerate(values)}
        self.decoding_map = dict(enumerate(values))

    def encode(self, values: Sequence[Any]) -> list[int]:
        """Indices of output values (Tracr's encoder method)."""
        return [self.encoding_map[v] for v in values]

    def decode(self, encodings: Sequence[int]) -> list[Any]:
        """Output values of indices, None for -1 (no value), as `unembedded` holds them."""
        return [None if int(i) < 0 else self.decoding_map[int(i)] for i in encodings]


class NumericalOutputEncoder:
    """The output is the single numerical direction's value."""

    encoding_map = None

    def encode(self, values: Sequence[Any]) -> list[Any]:
        return list(values)

    def decode(self, encodings: Sequence[Any]) -> list[Any]:
        return [float(v) for v in encodings]


def decode_block(
    residual: np.ndarray, ids: np.ndarray, location: SOpLocation, pad_id: int, bos_id: int
) -> list[list]:
    """The values of one SOp per row and position of `ids` [batch, seq] (BOS and PAD
    positions excluded), read from `residual` [batch, seq, d_model].

    Vectorised: a categorical block decodes to its value where one entry is >= 0.75 and
    the rest <= 0.25, to None where the block is (near) empty, and raises DecodingError
    for anything in between (e.g. an average of two values); a numerical block is its value."""
    ids = np.asarray(ids)
    body = ids[:, 1:]
    if (body == bos_id).any():
        row, position = np.argwhere(body == bos_id)[0]
        raise ValueError(f"row {row}: BOS at position {position + 1}")
    lengths = np.argmax(np.concatenate([body == pad_id, np.ones((len(ids), 1), bool)], axis=1), axis=1)
    block = residual[:, 1:, location.start : location.stop]  # [batch, seq - 1, len(directions)]
    if location.encoding is rasp.Encoding.NUMERICAL:
        values = block[..., 0].astype(float)
        return [values[row, : lengths[row]].tolist() for row in range(len(ids))]
    top = block.argmax(axis=-1)  # [batch, seq - 1]
    high = np.take_along_axis(block, top[..., None], axis=-1)[..., 0]
    rest = np.abs(block).sum(axis=-1) - np.abs(high)
    total = block.sum(axis=-1)
    empty = (total < 0.25) & (block.max(axis=-1, initial=0.0) < 0.25)
    clean = (high >= 0.75) & (rest <= 0.25)
    valid = np.arange(body.shape[1])[None, :] < lengths[:, None]
    bad = valid & ~empty & ~clean
    if bad.any():
        row, position = np.argwhere(bad)[0]
        shown = {
            str(d): round(float(v), 3)
            for d, v in zip(location.directions, block[row, position])
            if abs(v) > 1e-3
        }
        raise DecodingError(
            f"{location.label}: row {row}, position {position + 1} holds no single value (block {shown}); "
            f"a categorical Aggregate probably averaged different values here"
        )
    table = [d.value for d in location.directions]
    out = []
    for row in range(len(ids)):
        n = lengths[row]
        out.append([None if empty[row, p] else table[top[row, p]] for p in range(n)])
    return out
