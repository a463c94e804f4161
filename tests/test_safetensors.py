"""minillm.safetensors: round trips, the bytes on disk, crash safety, and a reader that rejects
every malformed file with a SafetensorsError naming the file, the tensor and the problem.

Oracles: an independent ten-line parse (struct + json) of the files the writer produces; the
GPT-2 fixture written by Hugging Face's save_pretrained (tests/fixtures/hf/gpt2, a copy of the
project's shared fixture); the `safetensors` package itself when it is installed; and, for the
fuzzing, a validity rule written out again in the test (validity_oracle).
"""

import errno
import json
import math
import os
import pathlib
import stat
import struct
import tracemalloc

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from minillm import safetensors as sf
from minillm.safetensors import MAX_HEADER_BYTES, SafetensorsError

GPT2 = pathlib.Path(__file__).parent / "fixtures" / "hf" / "gpt2" / "model.safetensors"

# Shapes every dtype is round-tripped in: 0-d, empty, empty with other dims, 1-d, 3-d.
SHAPES = [(), (0,), (3, 0, 2), (7,), (2, 3, 4)]

# Bytes per element of every code, written out again here rather than taken from the module.
ITEMSIZE = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1,
            "U64": 8, "U32": 4, "U16": 2, "U8": 1, "BOOL": 1}
WRITABLE = [code for code in ITEMSIZE if code != "BF16"]

# A load of a small file may use this much memory beyond a few times the file's size (the JSON
# parse, NumPy's bookkeeping); a reader that believed a corrupt size would use gigabytes.
ALLOCATION_SLACK = 1024 * 1024


# ----------------------------------------------------------------------------------------------
# Helpers


def random_array(code, shape, rng):
    """Random bit patterns of a dtype (for floats: NaNs with payloads, infinities, subnormals,
    -0.0 all occur), so a round trip that converts values instead of copying bytes is caught."""
    if code == "BOOL":
        return rng.integers(0, 2, size=shape).astype(bool)
    n = math.prod(shape) * ITEMSIZE[code]
    raw = rng.integers(0, 256, size=n, dtype=np.uint8).tobytes()
    return np.frombuffer(raw, dtype=sf.DTYPES[code]).reshape(shape).copy()


def naive_parse(blob):
    """Independent reading of a file's bytes: (header dict, data section bytes, header bytes)."""
    (n,) = struct.unpack("<Q", blob[:8])
    header_bytes = blob[8:8 + n]
    return json.loads(header_bytes), blob[8 + n:], header_bytes


def file_bytes(header, data=b"", pad=True):
    """A file from a header (a dict, or raw bytes) and a data section."""
    text = header if isinstance(header, bytes) else json.dumps(header).encode("utf-8")
    if pad:
        text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + data


def bf16_reference(raw):
    """bfloat16 bytes -> float32 values, one at a time with struct (independent of the module).

    The widened bit patterns are built as integers and only then viewed as float32: going
    through a Python float would quiet a signalling NaN (0x7f81 -> 0x7fc1) and change its bits.
    """
    bits = struct.unpack(f"<{len(raw) // 2}H", raw)
    return np.array([b << 16 for b in bits], dtype="<u4").view("<f4")


def assert_rejected(path, *phrases, tensor=None):
    """Loading ``path`` raises SafetensorsError whose message names the file, the tensor (if
    given) and every phrase."""
    with pytest.raises(SafetensorsError) as info:
        sf.load_file(path)
    message = str(info.value)
    assert str(path) in message, message
    if tensor is not None:
        assert repr(tensor) in message, message
    for phrase in phrases:
        assert phrase in message, message
    return message


# A small valid file: "a" F32 [2] at [0, 8), "b" I8 [3] at [8, 11). Rejection tests change one
# thing in it.
VALID_HEADER = {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                "b": {"dtype": "I8", "shape": [3], "data_offsets": [8, 11]}}
VALID_DATA = np.array([1.5, -2.0], "<f4").tobytes() + bytes([1, 2, 255])


def with_entry(name, **changes):
    """VALID_HEADER with fields of one entry replaced."""
    header = json.loads(json.dumps(VALID_HEADER))
    header[name].update(changes)
    return header


@pytest.fixture
def write(tmp_path):
    """write(blob) -> path of a file holding blob."""
    def write(blob, name="x.safetensors"):
        path = tmp_path / name
        path.write_bytes(blob)
        return path
    return write


# ----------------------------------------------------------------------------------------------
# Round trips


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("code", WRITABLE)
def test_round_trip_is_bit_exact_for_every_dtype_and_shape(tmp_path, code, shape):
    x = random_array(code, shape, np.random.default_rng(len(shape) + 17 * len(code)))
    path = tmp_path / "t.safetensors"
    sf.save_file({"x": x}, path)
    y = sf.load_file(path)["x"]
    assert y.dtype == x.dtype and y.shape == shape
    assert y.tobytes() == x.tobytes()
    assert sf.dtype_code(y.dtype) == code


def test_many_tensors_and_metadata_round_trip_together(tmp_path):
    rng = np.random.default_rng(0)
    tensors = {f"{code.lower()}.{i}": random_array(code, shape, rng)
               for code in WRITABLE for i, shape in enumerate(SHAPES)}
    tensors["名前/ünïcode"] = np.arange(5, dtype=np.int16)
    metadata = {"format": "pt", "": "", "note": "ünïcode ✓ \"quoted\" \n newline",
                "json": json.dumps({"step": 3})}
    path = tmp_path / "t.safetensors"
    sf.save_file(tensors, path, metadata=metadata)
    loaded, loaded_metadata = sf.load_file_with_metadata(path)
    assert loaded_metadata == metadata
    assert list(loaded) == sorted(tensors)
    for name, x in tensors.items():
        assert loaded[name].dtype == x.dtype and loaded[name].shape == x.shape, name
        assert loaded[name].tobytes() == x.tobytes(), name
    assert sf.load_file(path).keys() == loaded.keys()


def test_no_tensors_and_no_metadata_round_trip(tmp_path):
    path = tmp_path / "empty.safetensors"
    sf.save_file({}, path)
    assert sf.load_file_with_metadata(path) == ({}, {})
    sf.save_file({}, path, metadata={})
    assert sf.load_file_with_metadata(path) == ({}, {})


def test_bf16_is_read_as_float32_exactly(write):
    """bfloat16 patterns -> values: 0x3F80 = 1.0, 0xC000 = -2.0, 0x3EAB = 0.333984375,
    0x7F80 = inf, 0x8000 = -0.0, 0x0001 = 2^-133 (smallest subnormal), 0x7FC1 = a NaN whose
    payload must survive."""
    bits = [0x3F80, 0xC000, 0x3EAB, 0x7F80, 0x8000, 0x0001, 0x7FC1]
    raw = struct.pack("<7H", *bits)
    header = {"h": {"dtype": "BF16", "shape": [7], "data_offsets": [0, 14]}}
    y = sf.load_file(write(file_bytes(header, raw)))["h"]
    assert y.dtype == np.float32 and y.shape == (7,)
    np.testing.assert_array_equal(y[:6], [1.0, -2.0, 0.333984375, np.inf, -0.0, 2.0 ** -133])
    assert np.signbit(y[4])
    assert y.view(np.uint32).tolist() == [b << 16 for b in bits]
    assert y.tobytes() == bf16_reference(raw).tobytes()


def test_loaded_arrays_are_writeable_and_own_their_memory(tmp_path):
    path = tmp_path / "t.safetensors"
    sf.save_file({"w": np.arange(6.0).reshape(2, 3), "z": np.array(3, np.int8),
                  "m": np.array([True, False])}, path)
    before = path.read_bytes()
    loaded = sf.load_file(path)
    for name, y in loaded.items():
        assert y.flags.writeable and y.flags.owndata and y.flags.c_contiguous, name
    loaded["w"][0, 0] = 99.0  # changes the array, not the file
    assert path.read_bytes() == before
    assert sf.load_file(path)["w"][0, 0] == 0.0


def test_non_contiguous_and_big_endian_arrays_are_written_in_c_order_little_endian(tmp_path):
    base = np.arange(24, dtype=np.float64).reshape(4, 6)
    tensors = {"fortran": np.asfortranarray(base), "strided": base[::2, 1::2],
               "transposed": base.T, "big_endian": base.astype(">i4")}
    path = tmp_path / "t.safetensors"
    sf.save_file(tensors, path)
    header, data, _ = naive_parse(path.read_bytes())
    loaded = sf.load_file(path)
    for name, x in tensors.items():
        begin, end = header[name]["data_offsets"]
        expected = np.array(x, dtype=x.dtype.newbyteorder("<"), order="C").tobytes()
        assert data[begin:end] == expected, name
        np.testing.assert_array_equal(loaded[name], x)
    assert header["big_endian"]["dtype"] == "I32"
    assert loaded["big_endian"].dtype == np.dtype("<i4")


# ----------------------------------------------------------------------------------------------
# The bytes on disk


def test_written_file_matches_an_independent_parse(tmp_path):
    rng = np.random.default_rng(1)
    tensors = {"zeta": random_array("F16", (3,), rng), "alpha": random_array("I8", (5,), rng),
               "mid": random_array("F64", (2, 2), rng), "empty": np.zeros((0, 4), np.float32),
               "scalar": np.float32(2.5)}
    path = tmp_path / "t.safetensors"
    sf.save_file(tensors, path, metadata={"format": "np"})
    blob = path.read_bytes()
    header, data, header_bytes = naive_parse(blob)
    assert len(header_bytes) % 8 == 0
    assert header_bytes.rstrip(b" ").endswith(b"}")  # the JSON, then spaces only ...
    assert len(header_bytes) - len(header_bytes.rstrip(b" ")) < 8  # ... and fewer than 8
    assert header.pop("__metadata__") == {"format": "np"}
    assert list(header) == sorted(tensors)  # sorted name order, in the JSON and in the data
    position = 0
    for name in sorted(tensors):
        x = np.asarray(tensors[name])
        entry = header[name]
        assert entry["dtype"] == {"float16": "F16", "int8": "I8", "float64": "F64",
                                  "float32": "F32"}[x.dtype.name]
        assert entry["shape"] == list(x.shape)
        assert entry["data_offsets"] == [position, position + x.nbytes]
        assert data[position:position + x.nbytes] == x.tobytes()
        position += x.nbytes
    assert position == len(data)


def test_written_file_is_readable_by_the_safetensors_package(tmp_path):
    stnp = pytest.importorskip("safetensors.numpy")
    rng = np.random.default_rng(2)
    tensors = {f"t.{code}": random_array(code, (2, 3), rng) for code in WRITABLE}
    tensors["scalar"] = np.float64(1.25)
    tensors["empty"] = np.zeros((0, 3), np.int32)
    path = tmp_path / "t.safetensors"
    sf.save_file(tensors, path, metadata={"format": "np"})
    theirs = stnp.load_file(str(path))
    assert theirs.keys() == tensors.keys()
    for name, x in tensors.items():
        assert theirs[name].dtype == x.dtype and theirs[name].shape == np.shape(x), name
        assert theirs[name].tobytes() == np.asarray(x).tobytes(), name


def test_gpt2_fixture_from_hugging_face_is_read_correctly():
    """The file save_pretrained wrote (see tests/fixtures/hf/gpt2/README.md): 28 float32 tensors,
    29600 scalars, tied lm_head absent, metadata {"format": "pt"}."""
    tensors, metadata = sf.load_file_with_metadata(GPT2)
    assert metadata == {"format": "pt"}
    assert len(tensors) == 28
    assert all(x.dtype == np.float32 for x in tensors.values())
    assert sum(x.size for x in tensors.values()) == 29600
    assert tensors["transformer.wte.weight"].shape == (97, 32)
    assert tensors["transformer.wpe.weight"].shape == (32, 32)
    assert tensors["transformer.h.1.attn.c_attn.weight"].shape == (32, 96)
    assert "lm_head.weight" not in tensors
    header, data, _ = naive_parse(GPT2.read_bytes())
    for name, x in tensors.items():
        begin, end = header[name]["data_offsets"]
        assert x.tobytes() == data[begin:end], name
    assert np.all(np.isfinite(tensors["transformer.wte.weight"]))
    assert np.std(tensors["transformer.wte.weight"]) > 0.1  # README: 0.5 N(0, 1), not zeros


def test_resaving_the_gpt2_fixture_reproduces_hugging_faces_bytes(tmp_path):
    """Same layout as the reference writer for an all-float32 file: compact JSON, metadata
    first, names sorted, spaces to a multiple of 8."""
    tensors, metadata = sf.load_file_with_metadata(GPT2)
    path = tmp_path / "model.safetensors"
    sf.save_file(tensors, path, metadata=metadata)
    assert path.read_bytes() == GPT2.read_bytes()


# ----------------------------------------------------------------------------------------------
# The writer rejects bad input before writing anything


@pytest.mark.parametrize("tensors, metadata, error, phrases", [
    ({1: np.zeros(2)}, None, TypeError, ["names must be str", "1"]),
    ({"__metadata__": np.zeros(2)}, None, ValueError, ["reserved"]),
    ({"c": np.zeros(2, np.complex64)}, None, ValueError, ["'c'", "complex64"]),
    ({"o": np.array([object()])}, None, ValueError, ["'o'", "object"]),
    ({"s": np.array(["text"])}, None, ValueError, ["'s'", "<U4"]),
    ({"a": np.zeros(2)}, {"step": 3}, TypeError, ["'step'", "3", "str"]),
    ({"a": np.zeros(2)}, {1: "x"}, TypeError, ["1", "str"]),
    ({"a": np.zeros(2)}, [("k", "v")], TypeError, ["metadata must be a dict"]),
    ([("a", np.zeros(2))], None, TypeError, ["tensors must be a dict"]),
], ids=["name-int", "reserved-name", "complex", "object", "string",
        "metadata-int-value", "metadata-int-key", "metadata-list", "tensors-list"])
def test_writer_rejects_bad_input_and_writes_nothing(tmp_path, tensors, metadata, error, phrases):
    path = tmp_path / "t.safetensors"
    path.write_bytes(b"old")
    with pytest.raises(error) as info:
        sf.save_file(tensors, path, metadata=metadata)
    for phrase in phrases:
        assert phrase in str(info.value), str(info.value)
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["t.safetensors"]


def test_writer_rejects_more_dimensions_than_the_reader_accepts(tmp_path):
    try:
        x = np.zeros((1,) * 33)
    except ValueError:
        pytest.skip("this NumPy cannot build a 33-d array at all")
    with pytest.raises(ValueError, match="'deep': 33 dimensions, more than MAX_DIMS = 32"):
        sf.save_file({"deep": x}, tmp_path / "t.safetensors")
    assert os.listdir(tmp_path) == []


# ----------------------------------------------------------------------------------------------
# Crash safety


def test_save_replaces_the_old_file_and_leaves_no_temporary_file(tmp_path):
    path = tmp_path / "t.safetensors"
    sf.save_file({"a": np.zeros(3)}, path)
    sf.save_file({"b": np.ones(2, np.int8)}, str(path))
    assert os.listdir(tmp_path) == ["t.safetensors"]
    assert list(sf.load_file(path)) == ["b"]


def test_the_file_is_synced_before_the_rename_and_the_folder_after_it(tmp_path, monkeypatch):
    """The order that makes a crash leave the old or the new file: fsync(temporary file), then
    os.replace within one folder (a rename across file systems is not atomic), then
    fsync(folder) so that the rename itself is durable."""
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append("fsync folder" if stat.S_ISDIR(os.fstat(fd).st_mode) else "fsync file")
        real_fsync(fd)

    def replace(src, dst):
        events.append("replace")
        assert os.path.dirname(os.path.abspath(src)) == os.path.dirname(os.path.abspath(dst))
        assert os.path.getsize(src) > 0
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    sf.save_file({"a": np.zeros(3)}, tmp_path / "t.safetensors")
    assert events == ["fsync file", "replace", "fsync folder"]


def test_a_failed_rename_keeps_the_old_file_and_removes_the_temporary_file(tmp_path, monkeypatch):
    path = tmp_path / "t.safetensors"
    sf.save_file({"old": np.arange(4.0)}, path)
    old = path.read_bytes()

    def replace(src, dst):
        assert os.path.exists(src)  # the new file was complete at this point
        raise OSError(errno.EIO, "simulated failure of the rename")

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(OSError, match="simulated"):
        sf.save_file({"new": np.arange(9.0)}, path)
    assert path.read_bytes() == old
    assert os.listdir(tmp_path) == ["t.safetensors"]


@pytest.mark.parametrize("failure", [OSError(errno.ENOSPC, "disk full"), KeyboardInterrupt()],
                         ids=["disk-full", "interrupt"])
def test_a_write_that_fails_midway_keeps_the_old_file_and_removes_the_temporary_file(
        tmp_path, monkeypatch, failure):
    """The open() the module uses is replaced by one whose file dies after 100 bytes, so the
    temporary file is torn when the error comes."""
    path = tmp_path / "t.safetensors"
    sf.save_file({"old": np.arange(4.0)}, path)
    old = path.read_bytes()
    torn = []

    class DyingFile:
        def __init__(self, f):
            self.f, self.written = f, 0

        def write(self, b):
            if self.written + len(b) > 100:
                self.f.write(bytes(b)[:100 - self.written])
                self.f.flush()
                torn.append(os.path.getsize(self.f.name))
                raise failure
            self.written += len(b)
            return self.f.write(b)

        def __getattr__(self, name):
            return getattr(self.f, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    monkeypatch.setattr(sf, "open", lambda p, mode: DyingFile(open(p, mode)), raising=False)
    with pytest.raises(type(failure)):
        sf.save_file({"new": np.arange(100.0)}, path)
    assert torn == [100]  # the failure did come mid-way through the file
    assert path.read_bytes() == old
    assert os.listdir(tmp_path) == ["t.safetensors"]


# ----------------------------------------------------------------------------------------------
# The reader rejects malformed files: one test per problem


def test_reader_accepts_the_valid_base_file(write):
    """The file every rejection test below changes in one place is itself valid."""
    loaded = sf.load_file(write(file_bytes(VALID_HEADER, VALID_DATA)))
    np.testing.assert_array_equal(loaded["a"], [1.5, -2.0])
    np.testing.assert_array_equal(loaded["b"], [1, 2, -1])


@pytest.mark.parametrize("blob", [b"", b"\x01", b"\x00" * 7], ids=len)
def test_rejects_a_file_shorter_than_the_header_length(write, blob):
    assert_rejected(write(blob), f"file is {len(blob)} bytes, shorter than")


@pytest.mark.parametrize("length", [MAX_HEADER_BYTES + 1, 2 ** 64 - 1])
def test_rejects_a_header_length_above_the_cap_without_allocating_it(write, length):
    path = write(struct.pack("<Q", length) + b"{}" + b" " * 6)
    tracemalloc.start()
    try:
        assert_rejected(path, f"header length {length} bytes exceeds", "MAX_HEADER_BYTES")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < ALLOCATION_SLACK


def test_rejects_a_header_length_beyond_the_end_of_the_file_without_allocating_it(write):
    path = write(struct.pack("<Q", MAX_HEADER_BYTES) + b"{}")  # within the cap: 100 MiB
    tracemalloc.start()
    try:
        assert_rejected(path, f"header length {MAX_HEADER_BYTES} bytes runs past the end",
                        "(10 bytes)")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < ALLOCATION_SLACK


def test_rejects_a_header_that_is_not_utf8(write):
    assert_rejected(write(file_bytes(b'{"caf\xe9": 1}')), "not valid UTF-8")


@pytest.mark.parametrize("text", [b'{"a": ', b"{'a': 1}", b"", b"{} x", b"[" * 100_000,
                                  b'{"a": ' + b"9" * 5000 + b"}", b'{"a": NaN}',
                                  b'{"__metadata__": {}, "a": {"x": -Infinity}}'],
                         ids=["cut", "single-quotes", "empty", "trailing", "deep", "huge-int",
                              "nan", "infinity"])
def test_rejects_a_header_that_is_not_json(write, text):
    assert_rejected(write(file_bytes(text)), "not valid JSON")


@pytest.mark.parametrize("text, kind", [(b"[]", "array"), (b'"x"', "string"), (b"3", "number"),
                                        (b"null", "null"), (b"true", "boolean")])
def test_rejects_a_header_that_is_not_a_json_object(write, text, kind):
    assert_rejected(write(file_bytes(text)), f"header is a JSON {kind}, not an object")


def test_rejects_a_name_given_twice(write):
    entry = json.dumps(VALID_HEADER["a"])
    text = f'{{"a": {entry}, "a": {entry}}}'.encode()
    assert_rejected(write(file_bytes(text, VALID_DATA[:8])), "names 'a' twice")


def test_null_metadata_reads_as_no_metadata(write):
    """As the reference reader does: "__metadata__": null is the same as no metadata."""
    header = {"__metadata__": None, **VALID_HEADER}
    tensors, metadata = sf.load_file_with_metadata(write(file_bytes(header, VALID_DATA)))
    assert metadata == {} and list(tensors) == ["a", "b"]


@pytest.mark.parametrize("metadata, phrase", [
    ([1], "__metadata__ is a JSON array, not an object"),
    ({"step": 3}, "value of 'step' is 3, not a string"),
    ({"ok": "x", "bad": None}, "value of 'bad' is None"),
])
def test_rejects_metadata_that_is_not_str_to_str(write, metadata, phrase):
    header = {"__metadata__": metadata, **VALID_HEADER}
    assert_rejected(write(file_bytes(header, VALID_DATA)), phrase)


@pytest.mark.parametrize("key", ["dtype", "shape", "data_offsets"])
def test_rejects_an_entry_missing_a_field(write, key):
    header = with_entry("b")
    del header["b"][key]
    assert_rejected(write(file_bytes(header, VALID_DATA)), f"entry has no {key!r}", tensor="b")


@pytest.mark.parametrize("changes, phrase", [
    ({"dtype": 32}, "dtype is 32, not a string"),
    ({"shape": "2"}, "shape is '2', not a list"),
    ({"shape": 2}, "shape is 2, not a list"),
    ({"shape": [-2]}, "shape [-2] is not a list of integers >= 0"),
    ({"shape": [2.0]}, "shape [2.0] is not a list of integers >= 0"),
    ({"shape": [True, True]}, "shape [True, True] is not a list of integers >= 0"),
    ({"shape": [None]}, "is not a list of integers >= 0"),
    ({"data_offsets": [0]}, "data_offsets [0] is not a list of two integers"),
    ({"data_offsets": [0, 8, 8]}, "is not a list of two integers"),
    ({"data_offsets": {"0": 8}}, "is not a list of two integers"),
    ({"data_offsets": [0, 8.0]}, "data_offsets [0, 8.0] is not a list of two integers"),
    ({"data_offsets": [False, 8]}, "data_offsets [False, 8] is not a list of two integers"),
    ({"data_offsets": ["0", "8"]}, "is not a list of two integers"),
    ({"data_offsets": [-1, 7]}, "data_offsets [-1, 7] are not 0 <= begin <= end"),
], ids=["dtype-int", "shape-str", "shape-int", "negative-dim", "float-dim", "bool-dims", "null-dim",
        "one-offset", "three-offsets", "offsets-object", "float-offset", "bool-offset",
        "string-offsets", "negative-offset"])
def test_rejects_an_entry_with_a_field_of_the_wrong_type(write, changes, phrase):
    header = with_entry("a", **changes)
    assert_rejected(write(file_bytes(header, VALID_DATA)), phrase, tensor="a")


def test_rejects_an_entry_that_is_not_an_object(write):
    header = {**VALID_HEADER, "a": [0, 8]}
    assert_rejected(write(file_bytes(header, VALID_DATA)), "entry is a JSON array, not an object",
                    tensor="a")


def test_rejects_a_shape_with_more_dimensions_than_numpy_allows(write):
    header = with_entry("b", shape=[3] + [1] * 40)
    assert_rejected(write(file_bytes(header, VALID_DATA)), "41 dimensions", "MAX_DIMS",
                    tensor="b")


@pytest.mark.parametrize("dtype", ["F8_E4M3", "f32", "float32", ""])
def test_rejects_an_unknown_dtype(write, dtype):
    header = with_entry("b", dtype=dtype)
    assert_rejected(write(file_bytes(header, VALID_DATA)), f"unknown dtype {dtype!r}", tensor="b")


def test_values_quoted_from_the_header_are_cut_short_in_messages(write):
    """A megabyte-long name with a bad dtype: the message says so in a line, not a megabyte."""
    name = "n" * 1_000_000
    header = {name: {"dtype": "X" * 1_000_000, "shape": [0], "data_offsets": [0, 0]}}
    path = write(file_bytes(header))
    message = assert_rejected(path, "unknown dtype 'XXX")
    assert "nnn...nnn" in message and len(message) < 500 + len(str(path))


def test_rejects_a_byte_count_that_does_not_match_the_shape(write):
    header = with_entry("a", shape=[3])  # 3 float32 need 12 bytes, the offsets give 8
    assert_rejected(write(file_bytes(header, VALID_DATA)),
                    "data_offsets [0, 8] hold 8 bytes, but shape [3] of F32 needs 12", tensor="a")


def test_rejects_offsets_past_the_data_section_without_allocating(write):
    """A shape of 2^40 x 2^40 float32 with matching offsets: the byte count is right, the file
    has 11 data bytes. The reader must say so, not try to allocate 4 * 2^80 bytes."""
    header = with_entry("b", shape=[2 ** 40, 2 ** 40], dtype="F32",
                        data_offsets=[8, 8 + 4 * 2 ** 80])
    path = write(file_bytes(header, VALID_DATA))
    tracemalloc.start()
    try:
        assert_rejected(path, "run past the end of the data section (11 bytes)", tensor="b")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < ALLOCATION_SLACK


def test_rejects_end_before_begin(write):
    header = with_entry("a", shape=[0], data_offsets=[8, 0])
    assert_rejected(write(file_bytes(header, VALID_DATA)), "data_offsets [8, 0] are not 0 <= "
                    "begin <= end", tensor="a")


def test_rejects_overlapping_tensors(write):
    header = with_entry("b", data_offsets=[6, 9])  # a is [0, 8)
    message = assert_rejected(write(file_bytes(header, VALID_DATA[:9])), "overlaps", tensor="b")
    assert "'a'" in message


def test_rejects_a_zero_size_tensor_inside_another(write):
    header = {**VALID_HEADER, "z": {"dtype": "F32", "shape": [0], "data_offsets": [4, 4]}}
    message = assert_rejected(write(file_bytes(header, VALID_DATA)), "overlaps", tensor="z")
    assert "'a'" in message


def test_rejects_bytes_between_tensors_that_belong_to_no_tensor(write):
    header = with_entry("b", data_offsets=[9, 12])
    assert_rejected(write(file_bytes(header, VALID_DATA + b"\0")),
                    "bytes [8, 9] of the data section", "belong to no tensor", tensor="b")


def test_rejects_bytes_after_the_last_tensor_that_belong_to_no_tensor(write):
    assert_rejected(write(file_bytes(VALID_HEADER, VALID_DATA + b"hidden")),
                    "bytes [11, 17] at the end of the data section belong to no tensor")


def test_rejects_bool_bytes_other_than_0_and_1(write):
    header = with_entry("b", dtype="BOOL")
    assert_rejected(write(file_bytes(header, VALID_DATA)), "BOOL holds byte values other than 0 "
                    "and 1", tensor="b")


def test_rejects_a_file_that_shrinks_after_it_was_measured(write, monkeypatch):
    """The size is taken once; if the file is then shorter (truncated by another process) the
    reads come up short, and the reader says so instead of returning garbage."""
    path = write(file_bytes(VALID_HEADER, VALID_DATA))
    real_size = path.stat().st_size
    header = with_entry("b", shape=[7], data_offsets=[8, 15])  # claims 4 more bytes
    path = write(file_bytes(header, VALID_DATA))
    monkeypatch.setattr(sf, "_file_size", lambda f: real_size + 4)
    assert_rejected(path, "file ended after 3 of its 7 bytes", tensor="b")
    path = write(struct.pack("<Q", 12) + b"{}")  # a 12-byte header, 2 bytes in the file
    monkeypatch.setattr(sf, "_file_size", lambda f: 20)
    assert_rejected(path, "file ended after 2 of the 12 bytes of the header")


# ----------------------------------------------------------------------------------------------
# Fuzzing: whatever the bytes, SafetensorsError or a correct load


def valid_blob_and_parts():
    """A valid file with every writable dtype, a 0-d and a zero-size tensor, and metadata."""
    rng = np.random.default_rng(3)
    tensors = {f"t{code}": random_array(code, (2, 3), rng) for code in WRITABLE}
    tensors["scalar"] = np.float32(-1.5)
    tensors["empty"] = np.zeros((0, 2), np.int64)
    header, offset = {"__metadata__": {"format": "np"}}, 0
    for name in sorted(tensors):
        x = np.asarray(tensors[name])
        code = sf.dtype_code(x.dtype)
        header[name] = {"dtype": code, "shape": list(x.shape),
                        "data_offsets": [offset, offset + x.nbytes]}
        offset += x.nbytes
    data = b"".join(np.asarray(tensors[name]).tobytes() for name in sorted(tensors))
    return file_bytes(header, data), header


VALID_BLOB, VALID_BLOB_HEADER = valid_blob_and_parts()


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    """A path to overwrite with each fuzzed file (a module-scoped fixture, as hypothesis needs)."""
    return tmp_path_factory.mktemp("fuzz") / "f.safetensors"


def load_or_reject(path, blob):
    """Write ``blob``, load it; return the tensors, or None if it raised SafetensorsError. Any
    other exception propagates (and fails the test). Checks that the load did not
    allocate much beyond the file's size, and, when it succeeded, returned exactly what an
    independent parse of the same bytes says. (No clock: a reader that looped on a corrupt file
    would never return, and the run would fail without one.)"""
    path.write_bytes(blob)
    tracemalloc.start()
    try:
        result = sf.load_file_with_metadata(path)
    except SafetensorsError as e:
        assert str(path) in str(e)
        result = None
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peak < ALLOCATION_SLACK + 16 * len(blob)
    if result is None:
        return None
    tensors, metadata = result
    header, data, _ = naive_parse(blob)
    assert metadata == header.pop("__metadata__", {})
    assert tensors.keys() == header.keys()
    for name, entry in header.items():
        x = tensors[name]
        begin, end = entry["data_offsets"]
        assert x.shape == tuple(entry["shape"]), name
        if entry["dtype"] == "BF16":
            assert x.dtype == np.float32
            assert x.tobytes() == bf16_reference(data[begin:end]).tobytes(), name
        else:
            assert sf.dtype_code(x.dtype) == entry["dtype"], name
            assert x.tobytes() == data[begin:end], name
    return tensors


class RepeatedKey(Exception):
    pass


def strict_object(pairs):
    """object_pairs_hook: a dict, or RepeatedKey if a key comes twice."""
    if len({key for key, _ in pairs}) != len(pairs):
        raise RepeatedKey
    return dict(pairs)


def no_constants(name):
    """parse_constant: RFC 8259 JSON has no NaN or Infinity (Python's json reads them)."""
    raise ValueError(f"{name} is not JSON")


def validity_oracle(blob):
    """The format's rules written out again, independently of the module: is ``blob`` valid?"""
    if len(blob) < 8:
        return False
    (n,) = struct.unpack("<Q", blob[:8])
    if n > MAX_HEADER_BYTES or 8 + n > len(blob):
        return False
    try:
        header = json.loads(blob[8:8 + n].decode("utf-8"), object_pairs_hook=strict_object,
                            parse_constant=no_constants)
    except (ValueError, RecursionError, RepeatedKey):
        return False
    if not isinstance(header, dict):
        return False
    metadata = header.pop("__metadata__", None)
    if metadata is not None and not (isinstance(metadata, dict)
                                     and all(isinstance(v, str) for v in metadata.values())):
        return False

    def is_int(v):
        return type(v) is int

    data, spans = blob[8 + n:], []
    for entry in header.values():
        if not isinstance(entry, dict) or not {"dtype", "shape", "data_offsets"} <= entry.keys():
            return False
        dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
        if not (isinstance(dtype, str) and dtype in ITEMSIZE):
            return False
        if not (isinstance(shape, list) and len(shape) <= 32
                and all(is_int(d) and d >= 0 for d in shape)):
            return False
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(map(is_int, offsets))):
            return False
        begin, end = offsets
        if not 0 <= begin <= end <= len(data):
            return False
        if end - begin != math.prod(shape) * ITEMSIZE[dtype]:
            return False
        if dtype == "BOOL" and any(b > 1 for b in data[begin:end]):
            return False
        spans.append((begin, end))
    position = 0
    for begin, end in sorted(spans):  # end to end from byte 0 to the last byte
        if begin != position:
            return False
        position = end
    return position == len(data)


def data_start(blob):
    """Position of the first byte after the header."""
    return 8 + struct.unpack("<Q", blob[:8])[0]


BOOL_BYTES = range(data_start(VALID_BLOB) + VALID_BLOB_HEADER["tBOOL"]["data_offsets"][0],
                   data_start(VALID_BLOB) + VALID_BLOB_HEADER["tBOOL"]["data_offsets"][1])


def test_the_fuzzing_base_file_is_valid(scratch):
    assert validity_oracle(VALID_BLOB)
    assert load_or_reject(scratch, VALID_BLOB) is not None


@given(flips=st.lists(st.tuples(st.integers(0, len(VALID_BLOB) - 1), st.integers(1, 255)),
                      min_size=1, max_size=8))
def test_fuzz_flipped_bytes(scratch, flips):
    """Flipped bits anywhere: a rejection or a correct load. Flips only in the data section (not
    in the BOOL tensor) leave a valid file, which must load with the flipped bytes."""
    blob = bytearray(VALID_BLOB)
    for position, mask in flips:
        blob[position] ^= mask
    blob = bytes(blob)
    tensors = load_or_reject(scratch, blob)
    assert (tensors is not None) == validity_oracle(blob)
    if all(p >= data_start(VALID_BLOB) and p not in BOOL_BYTES for p, _ in flips):
        assert tensors is not None


@given(length=st.integers(0, len(VALID_BLOB) - 1))
def test_fuzz_truncated_file_is_always_rejected(scratch, length):
    assert load_or_reject(scratch, VALID_BLOB[:length]) is None


@given(extra=st.binary(min_size=1, max_size=64))
def test_fuzz_extended_file_is_always_rejected(scratch, extra):
    """Bytes after the last tensor belong to no tensor."""
    assert load_or_reject(scratch, VALID_BLOB + extra) is None


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-2 ** 70, 2 ** 70) | st.floats() | st.text(max_size=8)
    | st.sampled_from(list(ITEMSIZE)),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=4),
                                                                       children, max_size=4),
    max_leaves=10)


@given(name=st.sampled_from(sorted(VALID_BLOB_HEADER)),
       key=st.sampled_from(["dtype", "shape", "data_offsets", "extra", None]),
       value=JSON_VALUES | st.lists(st.integers(-3, 200), max_size=4), pad=st.booleans())
def test_fuzz_header_fields(scratch, name, key, value, pad):
    """One field of one entry (or the metadata) replaced by an arbitrary JSON value, or the
    whole entry replaced (key None): a rejection or a correct load, exactly as the oracle says."""
    header = json.loads(json.dumps(VALID_BLOB_HEADER))
    if key is None:
        header[name] = value
    elif isinstance(header[name], dict) and name != "__metadata__":
        header[name][key] = value
    else:
        header[name] = {key or "k": value}
    blob = file_bytes(header, VALID_BLOB[data_start(VALID_BLOB):], pad=pad)
    tensors = load_or_reject(scratch, blob)
    assert (tensors is not None) == validity_oracle(blob)


@st.composite
def layouts(draw):
    """Plausible files: a few tensors laid out end to end, then maybe one thing broken."""
    names = draw(st.lists(st.text(min_size=1, max_size=3), max_size=4, unique=True))
    header, data = {}, b""
    for name in names:
        code = draw(st.sampled_from(list(ITEMSIZE)))
        shape = draw(st.lists(st.integers(0, 3), max_size=3))
        n = math.prod(shape) * ITEMSIZE[code]
        raw = bytes(draw(st.lists(st.integers(0, 1 if code == "BOOL" else 255),
                                  min_size=n, max_size=n)))
        header[name] = {"dtype": code, "shape": shape, "data_offsets": [len(data), len(data) + n]}
        data += raw
    if names and draw(st.booleans()):
        entry = header[draw(st.sampled_from(names))]
        field = draw(st.sampled_from(["dtype", "shape", "data_offsets"]))
        if field == "dtype":
            entry["dtype"] = draw(st.sampled_from(list(ITEMSIZE)))
        elif field == "shape":
            entry["shape"] = draw(st.lists(st.integers(0, 3), max_size=3))
        else:
            entry["data_offsets"] = [o + draw(st.integers(-2, 2)) for o in entry["data_offsets"]]
    data += draw(st.binary(max_size=2))
    return file_bytes(header, data, pad=draw(st.booleans()))


@given(blob=layouts())
def test_fuzz_plausible_layouts_agree_with_the_oracle(scratch, blob):
    tensors = load_or_reject(scratch, blob)
    assert (tensors is not None) == validity_oracle(blob)


@given(blob=st.binary(max_size=300)
       | st.builds(lambda body, tail: struct.pack("<Q", len(body)) + body + tail,
                   st.binary(max_size=200), st.binary(max_size=16)))
def test_fuzz_random_bytes(scratch, blob):
    """Random files, and random headers behind a correct length: never anything but a
    SafetensorsError or a correct load."""
    tensors = load_or_reject(scratch, blob)
    assert (tensors is not None) == validity_oracle(blob)
