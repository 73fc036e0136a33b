"""Hostile and self-contradicting model files (rasp_lab/model_format.py, rasp_lab/model_file.py).

Every file here is crafted from a real saved model with zipfile / numpy / json; each must be
refused with a ModelFileError saying what is wrong, quickly and without reading more than
the model it claims to be. Bombs are built from repeated deflate blocks, so the test itself
never holds the gigabyte it describes. The CLI turns each into exit code 2 and one line.
"""

from __future__ import annotations

import bz2
import io
import json
import math
import struct
import time
import tracemalloc
import zipfile
import zlib
from dataclasses import dataclass

import numpy as np
import pytest
from rasp_lab.programs.registry import get

import rasp_lab
from rasp_lab import cli, export, model_file

MB = 2**20


@pytest.fixture(scope="module")
def model() -> rasp_lab.CompiledModel:
    entry = get("sort")  # three layers: heads in layers 1 and 2, MLPs in layers 0 and 1
    return rasp_lab.compile(entry.build(), entry.vocab, entry.max_seq_len)


@pytest.fixture
def saved(model, tmp_path):
    return model.save(tmp_path / "sort.npz")


# ------------------------------------------------------------------ crafting zips by hand


@dataclass(frozen=True)
class Deflated:
    """A member's compressed bytes with the size and CRC it inflates to."""

    data: bytes
    size: int
    crc: int
    method: int = zipfile.ZIP_DEFLATED


def deflate(raw: bytes) -> Deflated:
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    return Deflated(c.compress(raw) + c.flush(), len(raw), zlib.crc32(raw))


def repeated(head: bytes, chunk: bytes, times: int) -> Deflated:
    """`head` then `chunk` * `times`, deflated without ever building the whole: after a full
    flush a chunk compresses to the same bytes, so those bytes are repeated."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    first = c.compress(head) + c.flush(zlib.Z_FULL_FLUSH)
    block = c.compress(chunk) + c.flush(zlib.Z_FULL_FLUSH)
    assert c.compress(chunk) + c.flush(zlib.Z_FULL_FLUSH) == block
    crc = zlib.crc32(head)
    for _ in range(times):
        crc = zlib.crc32(chunk, crc)
    return Deflated(first + block * times + c.flush(), len(head) + len(chunk) * times, crc)


def write_zip(path, members: dict[str, bytes | Deflated]):
    """A plain zip (no zip64) of `members`, each deflated unless given as Deflated."""
    out, central = io.BytesIO(), io.BytesIO()
    for name, member in members.items():
        m = member if isinstance(member, Deflated) else deflate(member)
        encoded = name.encode()
        offset = out.tell()
        out.write(struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, m.method, 0, 0x21, m.crc, len(m.data), m.size,
                              len(encoded), 0) + encoded + m.data)
        central.write(struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0, m.method, 0, 0x21, m.crc, len(m.data),
                                  m.size, len(encoded), 0, 0, 0, 0, 0, offset) + encoded)
    start = out.tell()
    out.write(central.getvalue())
    out.write(struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, len(members), len(members), len(central.getvalue()),
                          start, 0))
    path.write_bytes(out.getvalue())
    return path


def npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=True)
    return buffer.getvalue()


def npy_header(shape: tuple[int, ...], descr: str) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": descr, "fortran_order": False, "shape": shape})
    return buffer.getvalue()


def members(path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def parts(path) -> tuple[dict[str, np.ndarray], dict]:
    with np.load(path) as archive:
        arrays = {name: archive[name] for name in archive.files}
    return arrays, json.loads(str(arrays.pop(export.METADATA_KEY)))


def repack(path, arrays, metadata, tmp_path, name="changed.npz"):
    text = metadata if isinstance(metadata, str) else json.dumps(metadata)
    files = {f"{k}.npy": npy(v) for k, v in arrays.items()}
    files[f"{export.METADATA_KEY}.npy"] = npy(np.array(text))
    return write_zip(tmp_path / name, files)


def refused(path, message: str, seconds: float = 5.0, megabytes: float = 200.0) -> str:
    """Load `path`, expecting a ModelFileError matching `message`; time and memory bounded."""
    tracemalloc.start()
    start = time.perf_counter()
    try:
        with pytest.raises(rasp_lab.ModelFileError, match=message) as caught:
            rasp_lab.load(path)
        elapsed = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1] / MB
    finally:
        tracemalloc.stop()
    assert elapsed < seconds, f"{elapsed:.2f}s to refuse {path.name}"
    assert peak < megabytes, f"{peak:.0f} MB to refuse {path.name}"
    text = str(caught.value)
    assert "\n" not in text and len(text) < 1000, text
    return text


# ------------------------------------------------------------------ good files still load


def test_valid_files_load_and_run_identically(model, tmp_path):
    xs = [[3, 1, 2], [4, 4, 1, 2, 3], [2], [1, 3, 3, 1]]
    want = model.run_batch(xs)
    ids = model.encode_batch(xs)
    for suffix in ("npz", "safetensors"):
        loaded = rasp_lab.load(model.save(tmp_path / f"sort.{suffix}"))
        assert loaded.run_batch(xs) == want
        for a, b in zip(loaded.forward(ids)[0], model.forward(ids)[0], strict=True):
            np.testing.assert_array_equal(a, b)


def test_float32_weights_load_within_float32_tolerance(model, saved, tmp_path):
    arrays, metadata = parts(saved)
    smaller = {k: v.astype(np.float32) for k, v in arrays.items()}
    loaded = rasp_lab.load(repack(saved, smaller, metadata, tmp_path, "f32.npz"))
    assert loaded.run_batch([[3, 1, 2], [4, 2]]) == [[1, 2, 3], [2, 4]]


def test_an_equivalent_factorization_loads(model, saved, tmp_path):
    """Heads are checked by W_Q W_K^T and W_V W_O, not by the compiler's exact factors: the
    same head with its head_size columns permuted (same products) loads and runs the same."""
    arrays, metadata = parts(saved)
    permutation = np.arange(arrays["layer_1.w_q"].shape[2])[::-1]
    for part in ("w_q", "w_k", "w_v"):
        arrays[f"layer_1.{part}"] = arrays[f"layer_1.{part}"][:, :, permutation]
    arrays["layer_1.w_o"] = arrays["layer_1.w_o"][:, permutation, :]
    loaded = rasp_lab.load(repack(saved, arrays, metadata, tmp_path))
    xs = [[3, 1, 2], [4, 4, 1, 2, 3], [2, 1]]
    assert loaded.run_batch(xs) == model.run_batch(xs)
    arrays["layer_1.w_k"][0, 0, permutation[0]] += 0.01  # and a product that differs does not
    refused(repack(saved, arrays, metadata, tmp_path), r"layer 1 head 0 .* disagrees with layer_1.w_q @ layer_1.w_k\^T: "
                                                      r"at directions \('.*', '.*'\) the layer has")


def test_extra_arrays_and_metadata_keys_are_ignored(model, saved, tmp_path):
    """Members the metadata does not name are never read, not even a 1 GB bomb; unknown
    metadata keys (a later format may add some) are ignored."""
    files = members(saved)
    metadata = json.loads(str(np.load(saved)[export.METADATA_KEY]))
    metadata["added_later"] = {"anything": [1, 2]}
    metadata["model_config"]["added_later"] = 3
    files[f"{export.METADATA_KEY}.npy"] = npy(np.array(json.dumps(metadata)))
    files["unexpected.npy"] = repeated(npy_header((2**27,), "<f8"), bytes(MB), 1024)
    path = write_zip(tmp_path / "extra.npz", files)
    assert path.stat().st_size < 2 * MB
    start = time.perf_counter()
    assert rasp_lab.load(path).run([3, 1, 2]) == [1, 2, 3]
    assert time.perf_counter() - start < 5


# ------------------------------------------------------------------ damaged containers


def test_truncated_zip(saved, tmp_path):
    data = saved.read_bytes()
    for cut in (len(data) // 2, len(data) - 10, 30):
        path = tmp_path / f"cut{cut}.npz"
        path.write_bytes(data[:cut])
        refused(path, "not a readable .npz archive")


def test_corrupt_member_data(saved, tmp_path):
    files = members(saved)
    raw = bytearray(files["layer_1.w_1.npy"])
    raw[-3] ^= 0xFF  # the CRC no longer matches
    files["layer_1.w_1.npy"] = bytes(raw)
    bad = write_zip(tmp_path / "crc.npz", files)
    with zipfile.ZipFile(bad) as archive:  # repack the member with the old CRC
        info = archive.getinfo("layer_1.w_1.npy")
    good_crc = zlib.crc32(members(saved)["layer_1.w_1.npy"])
    data = bad.read_bytes().replace(struct.pack("<L", info.CRC), struct.pack("<L", good_crc))
    bad.write_bytes(data)
    refused(bad, r"member 'layer_1.w_1.npy' is damaged \(Bad CRC-32")


def test_zip_bomb_in_a_weight_member(saved, tmp_path):
    """token_embed.npy with its true header, then 1 GB of zeros: refused from the zip's
    declared size before anything is inflated."""
    files = members(saved)
    header = files["token_embed.npy"][:128]
    files["token_embed.npy"] = repeated(header, bytes(MB), 1024)
    path = write_zip(tmp_path / "bomb.npz", files)
    assert path.stat().st_size < 2 * MB
    text = refused(path, r"member 'token_embed.npy' would inflate to 1,073,741,952 bytes; "
                         r"its header says shape \(6, 42\) float64, which is 2,144", seconds=2, megabytes=50)
    assert "not a readable .npz archive" in text


def test_zip_bomb_in_the_metadata(saved, tmp_path):
    """The metadata member declaring 50 MB of characters (200 MB as numpy's UTF-32)."""
    files = members(saved)
    chars = 50 * MB
    files[f"{export.METADATA_KEY}.npy"] = repeated(npy_header((), f"<U{chars}"), "x".encode("utf-32-le") * (MB // 4), 200)
    path = write_zip(tmp_path / "metabomb.npz", files)
    refused(path, r"the metadata member '__rasp_lab__.npy' would inflate to 209,715,328 bytes, over the",
            seconds=2, megabytes=50)


def test_metadata_header_lies_about_its_size(saved, tmp_path):
    files = members(saved)
    files[f"{export.METADATA_KEY}.npy"] = npy_header((), f"<U{10**6}") + b"x\0\0\0" * 10
    refused(write_zip(tmp_path / "lies.npz", files), r"holds 40 bytes of data, its dtype <U1000000 takes 4,000,000")


def test_npy_header_declaring_a_giant_shape(saved, tmp_path):
    files = members(saved)
    files["layer_1.w_1.npy"] = npy_header((10**9, 10**9), "<f8") + bytes(64)
    refused(write_zip(tmp_path / "giant.npz", files),
            r"array 'layer_1.w_1' has shape \(1000000000, 1000000000\), expected \(42, 11\)", seconds=2, megabytes=50)
    files["layer_1.mlp_0.w_in.npy"] = npy_header((2, 10**100), "<f8")
    refused(write_zip(tmp_path / "widest.npz", files), r"'layer_1.mlp_0.w_in' has shape \(2, <333-bit number>\), expected \(2, width\)")
    files["layer_1.mlp_0.w_in.npy"] = npy_header((2, 10**12), "<f8")  # the MLP width is read from w_in
    refused(write_zip(tmp_path / "wide.npz", files), r"need [\d,]+ bytes of weights, over the 2,147,483,648 byte limit",
            seconds=2, megabytes=50)


def test_metadata_declaring_a_giant_model(saved, tmp_path):
    """A max_seq_len whose positional embedding (consistently declared) would take 720 GB."""
    arrays, metadata = parts(saved)
    metadata["max_seq_len"] = 2**31 - 1
    metadata["model_config"]["max_seq_len"] = 2**31 - 1
    files = {f"{k}.npy": npy(v) for k, v in arrays.items()}
    files["pos_embed.npy"] = npy_header((2**31, 42), "<f8")
    files[f"{export.METADATA_KEY}.npy"] = npy(np.array(json.dumps(metadata)))
    text = refused(write_zip(tmp_path / "long.npz", files), r"max_seq_len 2147483647\) need 721,554,\d{3},\d{3} bytes")
    assert "over the 2,147,483,648 byte limit" in text
    files = members(saved)
    files["pos_embed.npy"] = npy_header((10**40, 42), "<f8")
    refused(write_zip(tmp_path / "huge.npz", files), r"array 'pos_embed' has shape \(<133-bit number>, 42\), expected \(6, 42\)")


def test_byte_limit_is_a_parameter(saved):
    with pytest.raises(rasp_lab.ModelFileError, match=r"need \d[\d,]* bytes of weights, over the 1,000 byte limit"):
        rasp_lab.load(saved, max_bytes=1000)


def test_object_dtype_is_never_unpickled(saved, tmp_path):
    files = members(saved)
    files["layer_0.w_1.npy"] = npy(np.array([[object()]], dtype=object)[:0])
    refused(write_zip(tmp_path / "pickle.npz", files), r"array 'layer_0.w_1' holds Python objects \(dtype object\)")
    files = members(saved)
    files[f"{export.METADATA_KEY}.npy"] = npy(np.array(["{}"], dtype=object))
    refused(write_zip(tmp_path / "pickled_meta.npz", files), "not a readable .npz archive: .*holds Python objects")


@pytest.mark.parametrize("dtype", ["<i8", "<f2", "<c16", "|b1", "<U3"])
def test_weights_of_other_dtypes(saved, tmp_path, dtype):
    files = members(saved)
    files["layer_0.w_1.npy"] = npy(np.zeros((42, 20), dtype=dtype))
    refused(write_zip(tmp_path / "dtype.npz", files), r"array 'layer_0.w_1' has dtype .*; weights must be float64 or float32")


def test_other_compression_methods(saved, tmp_path):
    """bzip2 can inflate a few kilobytes to gigabytes in one call, with no output bound."""
    files = members(saved)
    raw = files["layer_0.w_1.npy"]
    files["layer_0.w_1.npy"] = Deflated(bz2.compress(raw), len(raw), zlib.crc32(raw), zipfile.ZIP_BZIP2)
    refused(write_zip(tmp_path / "bz2.npz", files), "uses compression method 12; only stored and deflated")


def test_bad_npy_header(saved, tmp_path):
    files = members(saved)
    files["layer_0.w_1.npy"] = b"\x93NUMPY\x01\x00" + struct.pack("<H", 60000) + b"{" * 100
    refused(write_zip(tmp_path / "header.npz", files), "member 'layer_0.w_1.npy' has no valid .npy header")
    files["layer_0.w_1.npy"] = b"not numpy at all"
    refused(write_zip(tmp_path / "magic.npz", files), "member 'layer_0.w_1.npy' has no valid .npy header")


def test_member_shorter_than_its_header(saved, tmp_path):
    files = members(saved)
    files["layer_0.w_1.npy"] = files["layer_0.w_1.npy"][:-8]
    refused(write_zip(tmp_path / "short.npz", files), r"member 'layer_0.w_1.npy' would inflate to 6,840 bytes; its header says shape \(42, 20\) float64, which is 6,848")


# ------------------------------------------------------------------ hostile metadata JSON


def test_metadata_nested_100000_deep(saved, tmp_path):
    arrays, _ = parts(saved)
    deep = "[" * 100_000 + "]" * 100_000
    refused(repack(saved, arrays, deep, tmp_path), "metadata is JSON nested too deeply", seconds=2, megabytes=50)
    inside = '{"format": "rasp_lab.model", "version": 1, "name": ' + deep + "}"
    refused(repack(saved, arrays, inside, tmp_path), "metadata is JSON nested too deeply", seconds=2, megabytes=50)
    medium = '{"format": "rasp_lab.model", "version": 1, "x": ' + "[" * 500 + "]" * 500 + "}"
    refused(repack(saved, arrays, medium, tmp_path), r"nested 501 levels deep, over the 100 limit|nested too deeply")


def test_metadata_too_long_or_too_many_objects(saved, tmp_path):
    arrays, metadata = parts(saved)
    metadata["name"] = "x" * (model_file.MAX_METADATA_CHARS + 1)
    refused(repack(saved, arrays, metadata, tmp_path),
            r"the metadata member '__rasp_lab__.npy' would inflate to 16,7\d\d,\d+ bytes, over the 16,787,226 byte limit")
    save_file = pytest.importorskip("safetensors.numpy").save_file
    path = tmp_path / "long.safetensors"
    save_file({}, str(path), metadata={export.SAFETENSORS_METADATA_KEY: json.dumps(metadata)})
    refused(path, r"metadata is 4,19\d,\d+ characters long, over the 4,194,304 limit")
    metadata["name"] = [[]] * 600_000
    refused(repack(saved, arrays, metadata, tmp_path), r"has 600,\d{3} JSON arrays/objects, over the 500,000 limit")


def test_metadata_not_json(saved, tmp_path):
    arrays, _ = parts(saved)
    refused(repack(saved, arrays, "{not json", tmp_path), "metadata is not valid JSON")
    refused(repack(saved, arrays, "[" + "1" * 5000 + "]", tmp_path), "metadata is not valid JSON")
    refused(repack(saved, arrays, "[1, 2]", tmp_path), "does not describe a rasp_lab model")


# ------------------------------------------------------------------ files that disagree with themselves


def _first(metadata, label):
    return next(s for s in metadata["sops"] if s["label"] == label)


def _mlp_layer(metadata):
    return next(n for n, layer in enumerate(metadata["layers"]) if layer["mlps"])


def swap_start_stop(a, m):
    s = _first(m, "sort")
    s["start"], s["stop"] = s["stop"], s["start"]


def shift_directions(a, m):
    s = _first(m, "sort")
    s["directions"] = [i + 1 for i in s["directions"]]


def shift_span(a, m):
    s = _first(m, "sort")
    s["start"] += 1
    s["stop"] += 1
    s["directions"] = list(range(s["start"], s["stop"]))


def reverse_tokens(a, m):
    m["tokens"][:-2] = m["tokens"][:-2][::-1]


def perturb(name, index, by):
    def change(a, m):
        a[name] = a[name].copy()
        a[name][index] += by
    return change


def set_nan(name):
    def change(a, m):
        a[name] = a[name].copy()
        a[name].flat[3] = np.nan
    return change


def head(layer, key, value):
    return lambda a, m: m["layers"][layer]["heads"][0].update({key: value})


def top(key, value):
    return lambda a, m: m.update({key: value})


CASES = [
    (swap_start_stop, r"SOp 'sort' has start \d+ > stop \d+"),
    (shift_directions, r"SOp 'sort' claims directions (\d+)\.\.(\d+) \(start \1, stop \2\) but lists"),
    (shift_span, r"SOp 'sort' claims directions (\d+)\.\.\d+, but direction \d+ is named '.*': an SOp's directions carry"),
    (lambda a, m: _first(m, "indices").update(start=_first(m, "indices")["start"] - 1,
                                                directions=[_first(m, "indices")["start"] - 1] + _first(m, "indices")["directions"]),
     "claims directions|overlap"),
    (lambda a, m: _first(m, "tokens").update(encoding="numerical"), "SOp 'tokens' is numerical but has 4 directions"),
    (lambda a, m: _first(m, "sort").update(head_layer=3), r"SOp 'sort' head_layer must be an integer in \[0, 3\), got 3"),
    (lambda a, m: _first(m, "sort").update(head_layer=1), r"layer 2 head 0 \('sort'\) computes no SOp the metadata places"),
    (lambda a, m: m["sops"].append(dict(m["sops"][0])), "two SOps are labelled 'tokens'"),
    (reverse_tokens, r"the token order \[4, 3, 2, 1, 'BOS', 'PAD'\] is not the sorted vocabulary, then BOS, then PAD"),
    (lambda a, m: m["tokens"].__setitem__(0, ["bool", True]), "token order"),
    (top("bos", ["int", 1]), "the BOS token 1 is also in the vocabulary"),
    (top("pad", ["str", "BOS"]), "PAD token 'BOS' .*|BOS and PAD are the same token 'BOS'"),
    (top("output", "nothing"), "the output SOp 'nothing' is not among the saved SOps"),
    (perturb("layer_2.head_0.w_qk", (0, 0), 0.5), r"layer 2 head 0 \('sort'\): its w_qk \(times coldness \* sqrt\(head_size\) = "
     r"[\d.]+\) disagrees with layer_2.w_q @ layer_2.w_k\^T: at directions \('.*', '.*'\) the layer has"),
    (perturb("layer_2.w_k", (0, 0, 0), 1e-6), r"layer 2 head 0 .* disagrees with layer_2.w_q @ layer_2.w_k\^T"),
    (perturb("layer_2.head_0.w_ov", (0, 0), 1.0), r"its w_ov disagrees with layer_2.w_v @ layer_2.w_o"),
    (perturb("layer_1.mlp_0.w_out", (0, 0), 0.25), r"layer 1 MLP 0 \('\w+'\): its w_out disagrees with layer_1.w_2: at "
     r"hidden unit 0, direction '.*' the layer has .*off by 0.25"),
    (perturb("layer_0.w_1", (0, 3), 1.0), r"layer 0 MLP 0 \('\w+'\): its w_in disagrees with layer_0.w_1: at direction 'one', hidden unit 3"),
    (set_nan("layer_0.w_1"), r"array 'layer_0.w_1' has 1 non-finite entries \(nan at \(0, 3\)\)"),
    (set_nan("pos_embed"), r"array 'pos_embed' has 1 non-finite entries"),
    (lambda a, m: a.pop("layer_1.w_v"), "array 'layer_1.w_v' is missing"),
    (lambda a, m: a.pop("layer_1.mlp_0.w_in"), "array 'layer_1.mlp_0.w_in' is missing"),
    (lambda a, m: a.update(**{"layer_1.w_1": a["layer_1.w_1"][:, :-1]}), r"array 'layer_1.w_1' has shape \(42, 10\), expected \(42, 11\)"),
    (lambda a, m: m["model_config"].update(num_layers=2), r"stored model config \(num_layers = 2\) does not match the 3 layers"),
    (lambda a, m: m["layers"].pop() and m["model_config"].update(num_layers=2), r"head_layer must be an integer in \[0, 2\), got 2"),
    (lambda a, m: m["layers"].append({"heads": [], "mlps": []}), r"stored model config \(num_layers = 3\) does not match"),
    (top("layers", []), "the saved model has 0 layers"),
    (top("max_seq_len", 5.5), "max_seq_len must be an integer in \\[1, 2147483648\\), got 5.5"),
    (top("max_seq_len", "5"), "max_seq_len must be an integer in \\[1, 2147483648\\), got '5'"),
    (top("max_seq_len", True), "max_seq_len must be an integer in \\[1, 2147483648\\), got True"),
    (top("max_seq_len", 0), "max_seq_len must be an integer in \\[1, 2147483648\\), got 0"),
    (top("leak", 0), "leak must be strictly between 0 and 1, got 0"),
    (top("causal", "no"), "causal must be true or false"),
    (head(2, "margin", 0), r"layer 2 head 0 \('sort'\) margin must be a finite number > 0, got 0"),
    (head(2, "coldness", -1.0), "coldness must be a finite number > 0, got -1.0"),
    (head(2, "coldness", float("nan")), "coldness must be a finite number > 0, got nan"),
    (head(2, "leak_bound", 1.0), r"leak_bound must be in \[0, 1\), got 1.0"),
    (head(2, "query", [0, 0]), "query lists direction 0 more than once"),
    (head(2, "query", [0, -1]), r"direction index out of range in layer 2 head 0 \('sort'\)'s query: -1"),
    (head(2, "key", "all"), "key must be a list of direction indices, got 'all'"),
    (lambda a, m: m["layers"][1]["mlps"][0].update(tolerance=-1), "tolerance must be a number >= 0, got -1"),
    (lambda a, m: m["directions"].append(m["directions"][0]), "repeated residual directions: 'one' appears more than once"),
    (lambda a, m: m["directions"].__setitem__(0, "one"), r"residual direction 0 is 'one', not \[name, value\]"),
    (lambda a, m: m.pop("sops"), "missing 'sops' in the saved model"),
    (lambda a, m: m["sops"][0].pop("start"), r"missing 'start' in the saved model \(SOp 'tokens'\)"),
    (top("vocab", [["int", 1], ["int", 1]]), "the vocabulary .* repeats a token"),
]


@pytest.mark.parametrize("change, message", CASES)
def test_self_contradicting_files(saved, tmp_path, change, message):
    arrays, metadata = parts(saved)
    change(arrays, metadata)
    refused(repack(saved, arrays, metadata, tmp_path), message)


def test_from_arrays_checks_the_same(model):
    arrays, metadata = export.to_arrays(model)
    arrays["layer_2.head_0.w_qk"] = arrays["layer_2.head_0.w_qk"] + 0.5
    with pytest.raises(rasp_lab.ModelFileError, match="its w_qk .* disagrees with layer_2.w_q"):
        rasp_lab.CompiledModel.from_arrays(arrays, metadata)
    arrays, metadata = export.to_arrays(model)
    nested: list = []
    for _ in range(10_000):
        nested = [nested]
    metadata["name"] = nested
    with pytest.raises(rasp_lab.ModelFileError, match=r"metadata is nested \d+ levels deep, over the 100 limit"):
        rasp_lab.CompiledModel.from_arrays(arrays, metadata)


# ------------------------------------------------------------------ safetensors


def write_safetensors(path, header: dict | bytes, data: bytes = b"", size: int | None = None):
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw) if size is None else size) + raw + data)
    return path


def safetensors_parts(path) -> tuple[dict, bytes]:
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8 : 8 + n]), raw[8 + n :]


def test_safetensors_hostile_headers(model, tmp_path):
    path = model.save(tmp_path / "sort.safetensors")
    header, data = safetensors_parts(path)
    refused(write_safetensors(tmp_path / "a.safetensors", b"{}", size=2**62), r"header size [\d,]+ bytes is over the")
    refused(write_safetensors(tmp_path / "b.safetensors", b"{}", size=100), "runs past the end of the")
    refused(write_safetensors(tmp_path / "c.safetensors", b"[" * 100_000 + b"]" * 100_000),
            "safetensors header is JSON nested too deeply", seconds=2, megabytes=50)
    refused(write_safetensors(tmp_path / "d.safetensors", b"\xff\xfe"), "header is not UTF-8")

    def changed(change, name):
        h = json.loads(json.dumps(header))
        change(h)
        return write_safetensors(tmp_path / name, h, data)

    refused(changed(lambda h: h["layer_0.w_1"].update(dtype="I64"), "e.safetensors"),
            "array 'layer_0.w_1' has dtype 'I64'; weights must be F64 or F32")
    refused(changed(lambda h: h["layer_0.w_1"].update(data_offsets=[0, 10**12]), "f.safetensors"),
            r"array 'layer_0.w_1' has data offsets \[0, 1000000000000\], outside the")
    refused(changed(lambda h: h["layer_0.w_1"].update(shape=[10**6, 10**6]), "g.safetensors"),
            r"array 'layer_0.w_1' has shape \(1000000, 1000000\), expected \(42, 20\)")
    refused(changed(lambda h: h["__metadata__"].update(rasp_lab="[" * 100_000), "h.safetensors"),
            "metadata is JSON nested too deeply")
    refused(changed(lambda h: h.update(__metadata__=[1]), "i.safetensors"), "'__metadata__' is not a map of strings")

    begin, _ = header["layer_0.w_1"]["data_offsets"]
    poisoned = bytearray(data)
    poisoned[begin : begin + 8] = struct.pack("<d", math.inf)
    refused(write_safetensors(tmp_path / "j.safetensors", header, bytes(poisoned)),
            r"array 'layer_0.w_1' has 1 non-finite entries \(inf at \(0, 0\)\)")
    refused(write_safetensors(tmp_path / "k.safetensors", header, data[: len(data) // 2]), "outside the")


# ------------------------------------------------------------------ the command line


def test_cli_exits_2_with_one_line_for_bad_files(saved, tmp_path, capsys):
    arrays, metadata = parts(saved)
    cut = tmp_path / "cut.npz"
    cut.write_bytes(saved.read_bytes()[:500])
    perturbed = dict(arrays, **{"layer_2.head_0.w_qk": arrays["layer_2.head_0.w_qk"] + 1})
    bad = [
        cut,
        repack(saved, arrays, "[" * 100_000, tmp_path, "deep.npz"),
        repack(saved, perturbed, metadata, tmp_path, "qk.npz"),
        repack(saved, arrays, dict(metadata, max_seq_len=5.5), tmp_path, "len.npz"),
    ]
    for path in bad:
        code = cli.main(["run", str(path), "3 1 2"])
        out, err = capsys.readouterr()
        assert code == 2 and out == "", (path.name, out, err)
        assert err.startswith("error: ") and err.count("\n") == 1, err
        assert path.name in err
    assert cli.main(["run", str(saved), "3 1 2"]) == 0
    assert "compiled:  [1, 2, 3]" in capsys.readouterr().out
