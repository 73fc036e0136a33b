"""Save a compiled model to a file and load it back, without the RASP program.

    model.save("sort.npz")            # or rasp_lab.export.save(model, "sort.npz")
    model = rasp_lab.load("sort.npz")

The format, and every check `load` makes of a file, are in rasp_lab/model_format.py (with
bounded reading in rasp_lab/model_file.py). This module sits above the model and gives the
user-facing functions, which build a CompiledModel.
"""

from __future__ import annotations

import os
import pathlib
from typing import Any

import numpy as np

from rasp_lab import model_format
from rasp_lab.compiler.model import CompiledModel
from rasp_lab.model_file import ModelFileError
from rasp_lab.model_format import (
    FORMAT,
    MAX_WEIGHT_BYTES,
    METADATA_KEY,
    SAFETENSORS_METADATA_KEY,
    SUFFIXES,
    VERSION,
    decode_value,
    encode_value,
    to_arrays,
)

__all__ = [
    "FORMAT",
    "MAX_WEIGHT_BYTES",
    "METADATA_KEY",
    "SAFETENSORS_METADATA_KEY",
    "SUFFIXES",
    "VERSION",
    "ModelFileError",
    "decode_value",
    "encode_value",
    "from_arrays",
    "load",
    "save",
    "to_arrays",
]


def save(model: CompiledModel, path: str | os.PathLike) -> pathlib.Path:
    """Write `model` to `path`: a numpy archive for `.npz`, safetensors for `.safetensors`."""
    if not isinstance(model, CompiledModel):
        raise TypeError(f"save takes a CompiledModel, got {type(model).__name__}")
    return model_format.save(model, path)


def load(path: str | os.PathLike, *, max_bytes: int = MAX_WEIGHT_BYTES) -> CompiledModel:
    """The model saved at `path`, ready to run; a file that is not such a model (damaged,
    self-contradicting, or too large for `max_bytes` of weights) is a ModelFileError."""
    return model_format.load(path, CompiledModel, max_bytes=max_bytes)


def from_arrays(
    arrays: dict[str, np.ndarray], metadata: dict[str, Any], source: str = "arrays"
) -> CompiledModel:
    """The model from `to_arrays`'s output, once everything it claims is re-derived and checked."""
    return model_format.from_arrays(arrays, metadata, CompiledModel, source=source)
