"""Bounded reading of model files (.npz and .safetensors), for files that may be hostile.

`rasp_lab.load` reads the metadata first, works out from it which arrays a model needs and
their shapes, checks every array's declared size, dtype and shape against that, and only
then reads data, so a small file can't make it allocate much more than the model it
describes. Nothing here trusts a size, a shape or a nesting depth the file declares:

- zip members: only stored or deflated (zipfile inflates other methods without an output
  bound), not encrypted, declared size exactly the .npy header plus the shape's bytes;
- .npy headers: at most numpy's default 10,000 bytes, float64 / float32 weights only
  (object arrays, which would unpickle, are refused before any data is read);
- JSON (the metadata, and the safetensors header): size, count of arrays/objects and
  nesting depth are capped, and a RecursionError becomes a ModelFileError;
- safetensors files are read here, not by the safetensors package: an 8-byte header size,
  a JSON header, then raw little-endian data at the offsets it names.

Members the metadata does not name are never read (so an extra array is ignored).
"""

from __future__ import annotations

import json
import math
import pathlib
import struct
import zipfile
import zlib
from typing import Any

import numpy as np

MAX_METADATA_CHARS = 4 * 2**20
"""The metadata JSON's length limit: about 30,000 residual directions at the usual ~120
characters each; it bounds what json.loads builds to about 50 MB."""
MAX_JSON_CONTAINERS = 500_000
"""Limit on `[` plus `{` in a JSON text, which bounds the objects json.loads builds."""
MAX_JSON_DEPTH = 100
"""Metadata nests about 6 deep, plus 2 per level of tuple in a token or direction value."""
MAX_NPY_HEADER = 10_000
"""numpy's own default limit on a .npy header."""
MAX_SAFETENSORS_HEADER = 2 * MAX_METADATA_CHARS + 2**20
"""The safetensors header holds the metadata as an escaped JSON string, plus one entry per array."""
WEIGHT_DTYPES = ("float64", "float32")
SAFETENSORS_DTYPES = {"F64": np.dtype("<f8"), "F32": np.dtype("<f4")}


class ModelFileError(ValueError):
    """A file that is not a model written by `rasp_lab.save`, or a damaged one."""


def shown(value: Any, limit: int = 80) -> str:
    """`repr(value)`, cut short: error messages echo values from files of any size."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 15]}... ({len(text)} chars)"


def shape_text(shape: tuple[int, ...]) -> str:
    """A declared shape for a message; a size too long to print is shown by its bit length."""
    sizes = [str(n) if n.bit_length() <= 64 else f"<{n.bit_length()}-bit number>" for n in shape]
    return f"({', '.join(sizes)}{',' if len(sizes) == 1 else ''})"


def parse_json(text: str, what: str, max_chars: int = MAX_METADATA_CHARS) -> Any:
    """json.loads with bounded size, object count and depth; ModelFileError naming `what`."""
    if len(text) > max_chars:
        raise ModelFileError(f"{what} is {len(text):,} characters long, over the {max_chars:,} limit")
    containers = text.count("[") + text.count("{")
    if containers > MAX_JSON_CONTAINERS:
        raise ModelFileError(
            f"{what} has {containers:,} JSON arrays/objects, over the {MAX_JSON_CONTAINERS:,} limit"
        )
    try:
        value = json.loads(text)
    except RecursionError:
        raise ModelFileError(
            f"{what} is JSON nested too deeply to read (limit {MAX_JSON_DEPTH} levels)"
        ) from None
    except ValueError as err:  # JSONDecodeError, or an integer too long to convert
        raise ModelFileError(f"{what} is not valid JSON ({err})") from None
    depth = json_depth(value)
    if depth > MAX_JSON_DEPTH:
        raise ModelFileError(f"{what} is JSON nested {depth} levels deep, over the {MAX_JSON_DEPTH} limit")
    return value


def json_depth(value: Any) -> int:
    """Nesting depth of parsed JSON, level by level, without recursion."""
    depth, level = 0, [value]
    while level:
        containers = [item for item in level if type(item) is list or type(item) is dict]
        if not containers:
            break
        depth += 1
        level = [child for item in containers for child in (item.values() if type(item) is dict else item)]
    return depth


def _weight_dtype(dtype: np.dtype, name: str, where: str) -> np.dtype:
    if dtype.hasobject:
        raise ModelFileError(
            f"{where}: array {name!r} holds Python objects (dtype {dtype}); those are never loaded"
        )
    if dtype.kind != "f" or dtype.name not in WEIGHT_DTYPES:
        raise ModelFileError(f"{where}: array {name!r} has dtype {dtype}; weights must be float64 or float32")
    return dtype


class NpzReader:
    """A .npz archive read member by member, each size checked before its data is read."""

    def __init__(self, path: pathlib.Path, metadata_key: str) -> None:
        self.path, self.metadata_key = path, metadata_key
        self.where = repr(str(path))
        try:
            self.zip = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError) as err:
            raise self.unreadable(str(err)) from None
        self.headers: dict[str, tuple[tuple[int, ...], np.dtype, bool, int]] = {}

    def __enter__(self) -> NpzReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.zip.close()

    def unreadable(self, why: str) -> ModelFileError:
        return ModelFileError(f"{self.where} is not a readable .npz archive: {why}")

    def _info(self, name: str) -> zipfile.ZipInfo | None:
        try:
            info = self.zip.getinfo(f"{name}.npy")
        except KeyError:
            return None
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise self.unreadable(
                f"member {info.filename!r} uses compression method {info.compress_type}; "
                f"only stored and deflated members are read"
            )
        if info.flag_bits & 0x1:
            raise self.unreadable(f"member {info.filename!r} is encrypted")
        return info

    def _header(
        self, name: str, info: zipfile.ZipInfo, stream
    ) -> tuple[tuple[int, ...], np.dtype, bool, int]:
        fmt = np.lib.format
        try:
            version = fmt.read_magic(stream)
            if version == (1, 0):
                shape, fortran, dtype = fmt.read_array_header_1_0(stream, max_header_size=MAX_NPY_HEADER)
            elif version == (2, 0):
                shape, fortran, dtype = fmt.read_array_header_2_0(stream, max_header_size=MAX_NPY_HEADER)
            else:
                raise ValueError(f".npy format version {version} (expected 1.0 or 2.0)")
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as err:
            raise self.unreadable(f"member {info.filename!r} is damaged ({err})") from None
        except (ValueError, SyntaxError, TypeError) as err:
            raise self.unreadable(
                f"member {info.filename!r} has no valid .npy header ({shown(str(err), 200)})"
            ) from None
        return tuple(shape), dtype, bool(fortran), stream.tell()

    def metadata_text(self) -> str | None:
        """The JSON metadata string, or None if the archive has none."""
        info = self._info(self.metadata_key)
        if info is None:
            return None
        limit = 4 * MAX_METADATA_CHARS + MAX_NPY_HEADER + 10  # UTF-32, as numpy stores str arrays
        if info.file_size > limit:
            raise ModelFileError(
                f"{self.where}: the metadata member {info.filename!r} would inflate to {info.file_size:,} bytes, "
                f"over the {limit:,} byte limit"
            )
        with self.zip.open(info) as stream:
            shape, dtype, _, offset = self._header(self.metadata_key, info, stream)
            if dtype.hasobject:
                raise self.unreadable(
                    f"array {self.metadata_key!r} holds Python objects (dtype {dtype}); those are never loaded"
                )
            if shape != () or dtype.kind != "U":
                raise ModelFileError(f"{self.where}: array {self.metadata_key!r} is not a JSON string")
            if info.file_size != offset + dtype.itemsize:
                raise self.unreadable(
                    f"member {info.filename!r} holds {info.file_size - offset:,} bytes of data, "
                    f"its dtype {dtype} takes {dtype.itemsize:,}"
                )
            data = self._exactly(stream, info, dtype.itemsize)
        text = data.decode("utf-32-be" if dtype.byteorder == ">" else "utf-32-le", errors="strict")
        return text.rstrip("\x00")

    def header(self, name: str) -> tuple[tuple[int, ...], np.dtype] | None:
        """The shape and dtype array `name` declares (None if it is missing); reads no data."""
        if name not in self.headers:
            info = self._info(name)
            if info is None:
                return None
            with self.zip.open(info) as stream:
                self.headers[name] = self._header(name, info, stream)
        shape, dtype, _, _ = self.headers[name]
        return shape, _weight_dtype(dtype, name, self.where)

    def read(self, name: str) -> np.ndarray:
        """Array `name` (in its stored precision), once its header has been checked; its
        member must hold exactly that."""
        info = self._info(name)
        shape, dtype, fortran, offset = self.headers[name]
        size = math.prod(shape) * dtype.itemsize
        if info.file_size != offset + size:
            raise self.unreadable(
                f"member {info.filename!r} would inflate to {info.file_size:,} bytes; "
                f"its header says shape {shape_text(shape)} {dtype}, which is {offset + size:,}"
            )
        with self.zip.open(info) as stream:
            stream.seek(offset)
            data = self._exactly(stream, info, size)
        flat = np.frombuffer(data, dtype=dtype, count=math.prod(shape))
        return flat.reshape(shape, order="F" if fortran else "C").astype(dtype.newbyteorder("="))

    def _exactly(self, stream, info: zipfile.ZipInfo, size: int) -> bytes:
        """`size` bytes, then the end of the member (which makes zipfile check its CRC)."""
        try:
            data = stream.read(size)
            extra = stream.read(1)
        except (zipfile.BadZipFile, zlib.error, OSError, EOFError, ValueError) as err:
            raise self.unreadable(f"member {info.filename!r} is damaged ({err})") from None
        if len(data) != size or extra:
            raise self.unreadable(
                f"member {info.filename!r} does not hold the {size:,} bytes its header declares"
            )
        return data


class SafetensorsReader:
    """A .safetensors file: the header parsed with bounds, each array read at its offsets."""

    def __init__(self, path: pathlib.Path, metadata_key: str) -> None:
        self.path, self.metadata_key = path, metadata_key
        self.where = repr(str(path))
        self.file = path.open("rb")
        try:
            self._read_header()
        except BaseException:
            self.file.close()
            raise

    def __enter__(self) -> SafetensorsReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.file.close()

    def unreadable(self, why: str) -> ModelFileError:
        return ModelFileError(f"{self.where} is not a readable .safetensors file: {why}")

    def _read_header(self) -> None:
        file_size = self.path.stat().st_size
        prefix = self.file.read(8)
        if len(prefix) != 8:
            raise self.unreadable(f"{len(prefix)} bytes, too short for the 8-byte header size")
        (length,) = struct.unpack("<Q", prefix)
        if length > MAX_SAFETENSORS_HEADER:
            raise self.unreadable(
                f"header size {length:,} bytes is over the {MAX_SAFETENSORS_HEADER:,} byte limit"
            )
        if 8 + length > file_size:
            raise self.unreadable(
                f"header size {length:,} bytes runs past the end of the {file_size:,} byte file"
            )
        raw = self.file.read(length)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as err:
            raise self.unreadable(f"header is not UTF-8 ({err})") from None
        header = parse_json(text, f"{self.where}: the safetensors header", MAX_SAFETENSORS_HEADER)
        if not isinstance(header, dict):
            raise self.unreadable("header is not a JSON object")
        self.data_start, self.data_size = 8 + length, file_size - 8 - length
        self.meta = header.pop("__metadata__", None)
        if self.meta is not None and not (
            isinstance(self.meta, dict) and all(isinstance(v, str) for v in self.meta.values())
        ):
            raise self.unreadable("header '__metadata__' is not a map of strings")
        self.entries = header

    def metadata_text(self) -> str | None:
        return None if self.meta is None else self.meta.get(self.metadata_key)

    def header(self, name: str) -> tuple[tuple[int, ...], np.dtype] | None:
        """The shape and dtype array `name` declares (None if it is missing); reads no data."""
        entry = self.entries.get(name)
        if entry is None:
            return None
        if not isinstance(entry, dict):
            raise self.unreadable(f"header entry {name!r} is {shown(entry)}, not an object")
        dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
        if dtype not in SAFETENSORS_DTYPES:
            raise ModelFileError(
                f"{self.where}: array {name!r} has dtype {shown(dtype)}; weights must be F64 or F32"
            )
        if not (isinstance(shape, list) and all(_is_int(n) and n >= 0 for n in shape)):
            raise self.unreadable(f"array {name!r} has shape {shown(shape)}, not a list of sizes")
        if any(n.bit_length() > 64 for n in shape):
            raise self.unreadable(f"array {name!r} has shape {shape_text(tuple(shape))}, sizes over 64 bits")
        if not (
            isinstance(offsets, list)
            and len(offsets) == 2
            and all(_is_int(n) for n in offsets)
            and 0 <= offsets[0] <= offsets[1] <= self.data_size
        ):
            raise self.unreadable(
                f"array {name!r} has data offsets {shown(offsets)}, outside the {self.data_size:,} bytes of data"
            )
        return tuple(shape), SAFETENSORS_DTYPES[dtype]

    def read(self, name: str) -> np.ndarray:
        """Array `name`, once its header has been checked; its offsets must span exactly its shape."""
        shape, dtype = self.header(name)  # type: ignore[misc]
        begin, end = self.entries[name]["data_offsets"]
        size = math.prod(shape) * dtype.itemsize
        if end - begin != size:
            raise self.unreadable(
                f"array {name!r} spans {end - begin:,} bytes; its shape {shape_text(shape)} {dtype} takes {size:,}"
            )
        self.file.seek(self.data_start + begin)
        data = self.file.read(size)
        if len(data) != size:
            raise self.unreadable(f"array {name!r} is cut short ({len(data):,} of {size:,} bytes)")
        return np.frombuffer(data, dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="))


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
