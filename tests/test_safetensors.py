"""minillm.safetensors: round trips, the bytes on disk, crash safety, and a reader that rejects
every malformed file with a SafetensorsError naming the file, the tensor and the problem.

Oracles: an independent ten-line parse (struct + json) of the files the writer produces; the
GPT-2 fixture written by Hugging Face's save_pretrained (tests/fixtures/hf/gpt2, a copy of the
project's shared fixture); the `safetensors` package itself when it is installed; NumPy itself
for which shapes can become arrays; and, for the fuzzing, a validity rule written out again in
the test (validity_oracle).

The writer's target: only a new name or a regular file is written (through symbolic links), and
FIFOs, devices, sockets and folders are left as they were; temporary files of dead writers are
removed, those of live writers and every other file are not; check_writable reports what
save_file would refuse without writing anything.
"""

import errno
import json
import math
import os
import pathlib
import re
import socket
import stat
import struct
import subprocess
import sys
import tracemalloc

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from minillm import safetensors as sf
from minillm.safetensors import MAX_HEADER_BYTES, MAX_HEADER_VALUES, SafetensorsError

GPT2 = pathlib.Path(__file__).parent / "fixtures" / "hf" / "gpt2" / "model.safetensors"

# The repository root: child processes run there, so that they import this minillm.
REPO = pathlib.Path(__file__).resolve().parents[1]

# The largest array NumPy can make, in bytes (np.intp's maximum: 2**63 - 1 on 64-bit machines).
NUMPY_MAX_BYTES = int(np.iinfo(np.intp).max)

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

@pytest.mark.parametrize("shape", [(), (0,), (2, 3)], ids=str)
def test_bf16_tensors_come_back_in_arrays_that_own_their_memory(write, shape):
    """As every loaded array: its own memory (not a view of a uint32 array), writeable, C order,
    and the values exactly the widened patterns."""
    rng = np.random.default_rng(len(shape))
    raw = rng.integers(0, 256, size=2 * math.prod(shape), dtype=np.uint8).tobytes()
    header = {"h": {"dtype": "BF16", "shape": list(shape), "data_offsets": [0, len(raw)]}}
    y = sf.load_file(write(file_bytes(header, raw)))["h"]
    assert y.flags.owndata and y.base is None
    assert y.flags.writeable and y.flags.c_contiguous
    assert y.dtype == np.float32 and y.shape == shape
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
# Temporary files: names that fit, and those left by killed writers


def temp_files(folder):
    """Names in ``folder`` that look like temporary files (anything with ".tmp-" in it)."""
    return sorted(name for name in os.listdir(folder) if ".tmp-" in name)


def dead_pid():
    """The pid of a process that has run and been reaped, so that no process has it (Linux hands
    out pids in turn: it is not reused within a test)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    with pytest.raises(ProcessLookupError):
        os.kill(child.pid, 0)
    return child.pid


def locked(path):
    """Open ``path`` and hold flock(LOCK_EX) on it, as a live writer does: returns the fd."""
    import fcntl

    fd = os.open(path, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


@pytest.mark.parametrize("name", ["a" * 250, "m" * 243 + ".safetensors", "b" * 255, "名" * 85],
                         ids=["250-bytes", "255-bytes.safetensors", "255-bytes", "255-bytes-utf8"])
def test_a_long_file_name_is_saved_through_a_temporary_name_that_fits(tmp_path, monkeypatch,
                                                                      name):
    """A 255-byte name is legal (NAME_MAX), so its temporary file must be named shorter:
    <name cut short>.tmp-<pid>-<n> within 255 bytes, cut at a whole character ("名" is 3 bytes
    in UTF-8)."""
    if os.pathconf(tmp_path, "PC_NAME_MAX") < 255:
        pytest.skip("this file system allows names shorter than 255 bytes")
    assert len(os.fsencode(name)) in (250, 255)
    renamed = []
    real_replace = os.replace

    def replace(src, dst):
        renamed.append(os.path.basename(src))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    x = np.arange(5, dtype=np.int16)
    sf.save_file({"x": x}, tmp_path / name)
    assert os.listdir(tmp_path) == [name]  # saved, and no temporary file left
    np.testing.assert_array_equal(sf.load_file(tmp_path / name)["x"], x)
    (tmp,) = renamed
    match = re.fullmatch(r"(.*)\.tmp-([0-9]+)-([0-9]+)", tmp)
    assert match and int(match[2]) == os.getpid()
    prefix = match[1]
    assert name.startswith(prefix) and len(prefix) < len(name)
    assert len(os.fsencode(tmp)) <= 255  # fits, and is cut no shorter than it must be:
    assert len(os.fsencode(tmp)) + len(os.fsencode(name[len(prefix)])) > 255


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="POSIX only (pids, flock, FIFOs)")
def test_stale_temporary_files_of_dead_writers_are_removed_and_nothing_else(tmp_path):
    """Before writing, save_file removes the temporary files of the same target whose writer is
    dead (no such pid, or this very process's pid, and no lock held); it leaves a live writer's
    file (its pid runs, or it is locked), and anything not named exactly as a temporary file of
    this target."""
    target = tmp_path / "t.safetensors"
    dead = dead_pid()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    lock_fds = []
    try:
        stale = [f"t.safetensors.tmp-{dead}-0", f"t.safetensors.tmp-{dead}-17",
                 f"t.safetensors.tmp-{os.getpid()}-99998"]  # this pid, yet not locked: stale
        live = [f"t.safetensors.tmp-{sleeper.pid}-0",  # its writer still runs
                f"t.safetensors.tmp-{dead}-5",  # locked: some writer still holds it
                f"t.safetensors.tmp-{os.getpid()}-99999"]  # this process's own, locked
        unrelated = [f"t.safetensors.tmp-{dead}-0.bak", f"t.safetensors.tmp-{dead}-x",
                     f"t.safetensors.tmp-0{dead}-1", f"t.safetensors.tmp-{dead}-01",
                     f"t.safetensors.tmp-{dead}", f"u.safetensors.tmp-{dead}-0",
                     f"xt.safetensors.tmp-{dead}-0", f"t.safetensors.tmp-{dead}-0-0",
                     "t.safetensors.tmp", "victim"]
        for name in stale + live + unrelated:
            (tmp_path / name).write_bytes(b"partial")
        lock_fds = [locked(tmp_path / name) for name in live[1:]]
        # Right names, but not regular files: a folder, a FIFO, a link (to "victim").
        os.mkdir(tmp_path / f"t.safetensors.tmp-{dead}-1")
        os.mkfifo(tmp_path / f"t.safetensors.tmp-{dead}-2")
        os.symlink("victim", tmp_path / f"t.safetensors.tmp-{dead}-3")
        not_files = [f"t.safetensors.tmp-{dead}-{n}" for n in (1, 2, 3)]

        sf.save_file({"a": np.zeros(2)}, target)

        assert sorted(os.listdir(tmp_path)) == sorted(["t.safetensors", *live, *unrelated,
                                                       *not_files])
        assert (tmp_path / "victim").read_bytes() == b"partial"
    finally:
        for fd in lock_fds:
            os.close(fd)
        sleeper.kill()
        sleeper.wait()


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="POSIX only (pids, flock)")
def test_stale_temporary_files_of_a_long_name_are_found_under_their_cut_name(tmp_path):
    """A 250-byte target's temporary file was named with its name cut short; that is the name
    looked for (and removed, its writer being dead)."""
    name = "s" * 250
    dead = dead_pid()
    suffix = f".tmp-{dead}-0"
    stale = name[:255 - len(suffix)] + suffix  # ASCII: characters are bytes
    (tmp_path / stale).write_bytes(b"partial")
    sf.save_file({"a": np.zeros(2)}, tmp_path / name)
    assert os.listdir(tmp_path) == [name]


def test_threads_saving_the_same_target_never_remove_each_others_temporary_files(tmp_path):
    """Each save removes unlocked temporary files with this process's pid; a thread's own file
    is locked from its creation to its rename, so concurrent saves all succeed."""
    import threading

    target = tmp_path / "t.safetensors"
    errors = []

    def save_often(seed):
        try:
            for step in range(10):
                sf.save_file({"x": np.full(1000, seed * 100 + step, np.int32)}, target)
        except BaseException as e:  # noqa: BLE001 -- reported below, in the test's thread
            errors.append(e)

    threads = [threading.Thread(target=save_often, args=(seed,)) for seed in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert os.listdir(tmp_path) == ["t.safetensors"]
    x = sf.load_file(target)["x"]
    assert np.all(x == x[0]) and x[0] % 100 == 9  # one save's array, the last of its thread

# A child that starts a save and is stopped inside it: its fsync of the temporary file (the
# first fsync of save_file) says "writing" and waits for stdin to close, where it is killed.
WRITER_STOPPED_IN_SAVE = """
import os, sys
import numpy as np
from minillm import safetensors

def fsync(fd):
    print("writing", flush=True)
    sys.stdin.read()  # returns only if the parent goes away without killing this process

os.fsync = fsync
safetensors.save_file({"x": np.arange(1000.0)}, sys.argv[1])
"""


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="POSIX only (pids, flock, SIGKILL)")
def test_a_writer_killed_inside_save_file_leaves_a_temporary_file_the_next_save_removes(
        tmp_path):
    """A real writer, SIGKILLed while its temporary file is written: while it lives, another
    process's save leaves its temporary file alone; once it is dead, the next save removes it.
    (The child stops inside save_file on its own, so where the kill lands does not depend on
    timing.)"""
    target = tmp_path / "t.safetensors"
    sf.save_file({"old": np.zeros(3)}, target)
    child = subprocess.Popen([sys.executable, "-c", WRITER_STOPPED_IN_SAVE, str(target)],
                             cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert child.stdout.readline() == b"writing\n"
        (its_temp_file,) = temp_files(tmp_path)
        assert its_temp_file.startswith(f"t.safetensors.tmp-{child.pid}-")
        sf.save_file({"meanwhile": np.ones(2)}, target)  # a live writer's file stays
        assert temp_files(tmp_path) == [its_temp_file]
        child.kill()  # SIGKILL: no cleanup runs in the child
        child.wait()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        child.stdin.close()
        child.stdout.close()
    assert temp_files(tmp_path) == [its_temp_file]  # left behind by the killed writer
    sf.save_file({"new": np.arange(4.0)}, target)
    assert os.listdir(tmp_path) == ["t.safetensors"]
    assert list(sf.load_file(target)) == ["new"]


# ----------------------------------------------------------------------------------------------
# What path may be: a new name or a regular file (through symbolic links), nothing else


def make_node(kind, path):
    """Make a FIFO, a character device (a copy of /dev/null: major 1, minor 3), a socket or a
    folder at ``path``; skip the test where this system does not allow it."""
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "char-device":
        try:
            os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 3))
        except (PermissionError, AttributeError):
            pytest.skip("making a device node needs root (CAP_MKNOD)")
    elif kind == "socket":
        sock = socket.socket(socket.AF_UNIX)
        try:
            sock.bind(str(path))
        except OSError:  # a path longer than a socket address allows (about 100 bytes)
            pytest.skip("the temporary folder's path is too long for a socket")
        finally:
            sock.close()
    else:
        os.mkdir(path)


NODE_KINDS = {"fifo": (stat.S_ISFIFO, "FIFO"), "char-device": (stat.S_ISCHR, "character device"),
              "socket": (stat.S_ISSOCK, "socket"), "folder": (stat.S_ISDIR, "folder")}


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="POSIX only (FIFOs, devices, sockets)")
@pytest.mark.parametrize("via_link", [False, True], ids=["direct", "via-symlink"])
@pytest.mark.parametrize("kind", list(NODE_KINDS))
def test_a_fifo_device_socket_or_folder_is_refused_and_left_as_it_was(tmp_path, kind, via_link):
    """os.replace would put a regular file in place of any of them (as root, in place of
    /dev/null). Refused with TargetError naming the path and what it is, by check_writable
    and by save_file alike; the node is still what it was, and nothing else is written."""
    is_kind, word = NODE_KINDS[kind]
    node = tmp_path / "out.safetensors"
    make_node(kind, node)
    before = os.lstat(node)
    path = node
    if via_link:
        path = tmp_path / "link.safetensors"
        os.symlink(node.name, path)
    for attempt in (sf.check_writable, lambda p: sf.save_file({"a": np.zeros(2)}, p)):
        with pytest.raises(sf.TargetError) as info:
            attempt(path)
        message = str(info.value)
        assert repr(str(path)) in message and word in message, message
        assert "\n" not in message
        after = os.lstat(node)
        assert is_kind(after.st_mode)
        assert (after.st_ino, after.st_rdev) == (before.st_ino, before.st_rdev)
    assert temp_files(tmp_path) == []
    if via_link:
        assert os.readlink(path) == node.name


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="needs symbolic links")
def test_a_chain_of_symlinks_is_followed_and_stays_a_chain(tmp_path, monkeypatch):
    """link2 -> link1 -> real/model.safetensors: the file at the end of the chain is replaced,
    through a temporary file in its own folder, and both links are still links to the same
    names."""
    (tmp_path / "real").mkdir()
    real = tmp_path / "real" / "model.safetensors"
    sf.save_file({"old": np.zeros(3)}, real)
    os.symlink(os.path.join("real", "model.safetensors"), tmp_path / "link1")
    os.symlink("link1", tmp_path / "link2")
    renames = []
    real_replace = os.replace

    def replace(src, dst):
        renames.append((os.path.dirname(src), dst))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    assert sf.check_writable(tmp_path / "link2") == os.path.realpath(real)
    sf.save_file({"new": np.arange(3.0)}, tmp_path / "link2")
    assert renames == [(os.path.realpath(tmp_path / "real"), os.path.realpath(real))]
    assert os.readlink(tmp_path / "link2") == "link1"
    assert os.readlink(tmp_path / "link1") == os.path.join("real", "model.safetensors")
    assert list(sf.load_file(real)) == ["new"]
    assert sorted(os.listdir(tmp_path)) == ["link1", "link2", "real"]
    assert os.listdir(tmp_path / "real") == ["model.safetensors"]


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="needs symbolic links")
def test_a_dangling_symlink_creates_the_file_it_names(tmp_path):
    os.symlink("new.safetensors", tmp_path / "link")
    assert sf.check_writable(tmp_path / "link") == os.path.realpath(tmp_path / "new.safetensors")
    assert sorted(os.listdir(tmp_path)) == ["link"]  # the check wrote nothing
    sf.save_file({"x": np.arange(4, dtype=np.int8)}, tmp_path / "link")
    assert os.readlink(tmp_path / "link") == "new.safetensors"
    assert list(sf.load_file(tmp_path / "new.safetensors")) == ["x"]
    assert sorted(os.listdir(tmp_path)) == ["link", "new.safetensors"]


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="needs symbolic links")
def test_a_loop_of_symlinks_and_a_link_into_a_missing_folder_are_refused(tmp_path):
    os.symlink("b", tmp_path / "a")
    os.symlink("a", tmp_path / "b")
    os.symlink(os.path.join("nowhere", "x.safetensors"), tmp_path / "lost")
    with pytest.raises(sf.TargetError, match="loop of symbolic links"):
        sf.save_file({"x": np.zeros(1)}, tmp_path / "a")
    with pytest.raises(FileNotFoundError) as info:
        sf.save_file({"x": np.zeros(1)}, tmp_path / "lost")
    assert repr(str(tmp_path / "lost")) in str(info.value)
    assert "nowhere" in str(info.value)
    assert sorted(os.listdir(tmp_path)) == ["a", "b", "lost"]


def test_a_path_that_names_a_folder_by_its_trailing_separator_is_refused(tmp_path):
    path = str(tmp_path / "new") + os.sep
    for attempt in (sf.check_writable, lambda p: sf.save_file({"a": np.zeros(2)}, p)):
        with pytest.raises(sf.TargetError, match="names a folder"):
            attempt(path)
    assert os.listdir(tmp_path) == []


# ----------------------------------------------------------------------------------------------
# check_writable: every check of save_file, without writing


def test_check_writable_returns_the_target_and_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert sf.check_writable("new.safetensors") == os.path.realpath("new.safetensors")
    assert os.listdir(tmp_path) == []
    sf.save_file({"a": np.arange(3.0)}, "old.safetensors")
    before = (tmp_path / "old.safetensors").read_bytes()
    assert sf.check_writable(pathlib.Path("old.safetensors")) == os.path.realpath(
        "old.safetensors")
    assert (tmp_path / "old.safetensors").read_bytes() == before
    assert os.listdir(tmp_path) == ["old.safetensors"]


@pytest.mark.parametrize("make_parent", ["missing", "a-file"])
def test_a_folder_that_does_not_exist_or_is_a_file_is_reported_by_name(tmp_path, make_parent):
    """FileNotFoundError / NotADirectoryError (OSError classes, errno kept) whose text is one
    line naming the path and the folder, no "[Errno 2]", no temporary file name."""
    parent = tmp_path / "runs"
    if make_parent == "a-file":
        parent.write_bytes(b"not a folder")
    path = parent / "model.safetensors"
    expected = FileNotFoundError if make_parent == "missing" else NotADirectoryError
    for attempt in (sf.check_writable, lambda p: sf.save_file({"a": np.zeros(2)}, p)):
        with pytest.raises(expected) as info:
            attempt(path)
        message = str(info.value)
        assert message.startswith(f"cannot write {str(path)!r}: "), message
        assert str(parent) in message and "\n" not in message and ".tmp-" not in message
        assert info.value.errno == (errno.ENOENT if make_parent == "missing" else errno.ENOTDIR)
    assert sorted(os.listdir(tmp_path)) == ([] if make_parent == "missing" else ["runs"])


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0,
                    reason="root writes into a read-only folder anyway")
def test_check_writable_refuses_a_read_only_folder(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with pytest.raises(PermissionError) as info:
            sf.check_writable(folder / "model.safetensors")
        message = str(info.value)
        assert repr(str(folder / "model.safetensors")) in message and str(folder) in message
        assert os.listdir(folder) == []
    finally:
        folder.chmod(0o755)


@pytest.mark.parametrize("number", [errno.EROFS, errno.ENOSPC, errno.EACCES],
                         ids=["read-only", "disk-full", "permission"])
def test_a_folder_that_refuses_new_files_is_reported_before_anything_is_written(
        tmp_path, monkeypatch, number):
    """The OS's refusal to create the temporary (or test) file, simulated, as a read-only mount
    refuses even root: an OSError with that errno, whose text names the path, the folder and
    the reason on one line; the old file is untouched."""
    path = tmp_path / "model.safetensors"
    sf.save_file({"old": np.zeros(2)}, path)
    old = path.read_bytes()
    real_open = os.open

    def refusing_open(name, flags, *args, **kwargs):
        if flags & os.O_CREAT:
            raise OSError(number, os.strerror(number), name)
        return real_open(name, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", refusing_open)
    for attempt in (sf.check_writable, lambda p: sf.save_file({"new": np.ones(2)}, p)):
        with pytest.raises(OSError) as info:
            attempt(path)
        message = str(info.value)
        assert info.value.errno == number
        assert message.startswith(f"cannot write {str(path)!r}: "), message
        assert str(tmp_path) in message and os.strerror(number) in message
        assert "\n" not in message and "[Errno" not in message
    assert path.read_bytes() == old
    assert os.listdir(tmp_path) == ["model.safetensors"]


def test_a_name_longer_than_the_file_system_allows_is_refused_before_writing(tmp_path):
    """A 256-byte name could be written to its (shortened) temporary file and then fail at the
    rename, after all the work: it is refused first."""
    limit = os.pathconf(tmp_path, "PC_NAME_MAX") if hasattr(os, "pathconf") else 255
    path = tmp_path / ("n" * (limit + 1))
    for attempt in (sf.check_writable, lambda p: sf.save_file({"a": np.zeros(2)}, p)):
        with pytest.raises(sf.TargetError, match=f"{limit + 1} bytes, more than the {limit}"):
            attempt(path)
    assert os.listdir(tmp_path) == []


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


def test_header_structural_characters_are_counted_before_parsing_against_the_limit(
        write, monkeypatch):
    """The count of [ { , : in the header bytes, strings included, is held against
    MAX_HEADER_VALUES before json.loads runs: at the limit the file loads, one above it the
    file is refused without json.loads being called."""
    header = {"__metadata__": {"note": "a,b:c[d{e"}, **VALID_HEADER}
    path = write(file_bytes(header, VALID_DATA))
    header_bytes = naive_parse(path.read_bytes())[2]
    count = sum(header_bytes.count(c) for c in (b"[", b"{", b",", b":"))
    assert count > 20  # 4 of them inside the metadata string
    monkeypatch.setattr(sf, "MAX_HEADER_VALUES", count)
    assert list(sf.load_file(path)) == ["a", "b"]
    monkeypatch.setattr(sf, "MAX_HEADER_VALUES", count - 1)

    def loads(*args, **kwargs):
        raise AssertionError("json.loads was called on a header over the limit")

    monkeypatch.setattr(json, "loads", loads)
    assert_rejected(path, f"{count} JSON structural characters",
                    f"MAX_HEADER_VALUES = {count - 1}")


# Loads a file in a process whose address space may grow only so far past what it uses after
# importing the module (measured there: Python, NumPy and its BLAS threads take a size that
# depends on the machine's cores), and prints the class of the error raised.
LOAD_WITH_MEMORY_BOUND = """
import resource, sys
from minillm import safetensors

with open("/proc/self/status") as f:
    in_use = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
_, hard = resource.getrlimit(resource.RLIMIT_AS)
resource.setrlimit(resource.RLIMIT_AS, (in_use + int(sys.argv[2]), hard))
try:
    safetensors.load_file(sys.argv[1])
except BaseException as e:
    print(type(e).__name__)
else:
    print("loaded")
"""


@pytest.mark.skipif(not (sys.platform.startswith("linux") and os.path.exists("/proc/self/status")),
                    reason="needs Linux's /proc/self/status and RLIMIT_AS")
@pytest.mark.parametrize("prefix, suffix", [(b"", b""), (b'{"t":', b"}")],
                         ids=["top-level", "tensor-entry"])
def test_a_header_of_100_mb_of_empty_lists_is_refused_within_600_mib(tmp_path, prefix, suffix):
    """[[],[],...] filling a header of MAX_HEADER_BYTES: parsing it would build 33 million lists
    (about 2.6 GB). Given 600 MiB of address space beyond what it needs after its imports, the
    reader must refuse it with SafetensorsError (reading the header takes 100 MB of that), not
    run out of memory."""
    size = MAX_HEADER_BYTES - MAX_HEADER_BYTES % 8
    count = (size - len(prefix) - len(suffix) - len(b"[[]]")) // len(b"[],")
    header_length = len(prefix) + len(b"[") + 3 * count + len(b"[]]") + len(suffix)
    padding = -header_length % 8
    path = tmp_path / "lists.safetensors"
    try:
        with open(path, "wb") as f:
            f.write(struct.pack("<Q", header_length + padding))
            f.write(prefix + b"[")
            f.write(b"[]," * count)
            f.write(b"[]]" + suffix + b" " * padding)
        assert header_length + padding <= MAX_HEADER_BYTES
        assert header_length + padding > MAX_HEADER_BYTES - 16  # the whole budget is used
        run = subprocess.run([sys.executable, "-c", LOAD_WITH_MEMORY_BOUND, str(path),
                              str(600 * 1024 * 1024)],
                             cwd=REPO, capture_output=True, text=True)
    finally:
        path.unlink()  # 100 MB: not left for pytest to keep
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["SafetensorsError"]


def test_the_writer_refuses_a_header_that_readers_would_refuse(tmp_path, monkeypatch):
    """The writer holds its header to the reader's limits (MAX_HEADER_BYTES, MAX_HEADER_VALUES),
    so it never writes a file that load_file refuses: exactly at each limit it writes, one
    below it raises ValueError and writes nothing."""
    tensors, metadata = {"a": np.zeros((2, 3))}, {"vocabulary": json.dumps(["x"] * 50)}
    probe = tmp_path / "probe.safetensors"
    sf.save_file(tensors, probe, metadata=metadata)
    header_bytes = naive_parse(probe.read_bytes())[2]
    count = sum(header_bytes.count(c) for c in (b"[", b"{", b",", b":"))
    probe.unlink()
    path = tmp_path / "t.safetensors"
    for name, limit in [("MAX_HEADER_BYTES", len(header_bytes)), ("MAX_HEADER_VALUES", count)]:
        monkeypatch.setattr(sf, name, limit)
        sf.save_file(tensors, path, metadata=metadata)
        assert sf.load_file_with_metadata(path)[1] == metadata
        path.unlink()
        monkeypatch.setattr(sf, name, limit - 1)
        with pytest.raises(ValueError, match=f"{name} = {limit - 1}"):
            sf.save_file(tensors, path, metadata=metadata)
        assert os.listdir(tmp_path) == []
        monkeypatch.undo()


@pytest.mark.parametrize("code, shape", [
    ("F32", [0, 2 ** 70]),
    ("U8", [0, 2 ** 62, 2 ** 62]),
    ("U8", [0, NUMPY_MAX_BYTES + 1]),
    ("U16", [NUMPY_MAX_BYTES // 2 + 1, 0]),  # 2 bytes each: one element past the limit
    ("BF16", [0, NUMPY_MAX_BYTES // 4 + 1]),  # 2 bytes in the file, 4 as float32
], ids=["2^70", "2^62x2^62", "max+1-bytes", "u16-max+1", "bf16-as-float32"])
def test_rejects_an_empty_tensor_that_numpy_could_not_make(write, code, shape):
    """A zero-size tensor with huge dimensions: the byte count (0) is right, but NumPy refuses
    the array. The reader says so, naming the file, the tensor and the shape."""
    assert not numpy_can_make(shape, code)  # NumPy itself is the oracle
    header = {**VALID_HEADER, "z": {"dtype": code, "shape": shape, "data_offsets": [11, 11]}}
    message = assert_rejected(write(file_bytes(header, VALID_DATA)), "too large for a NumPy "
                              "array", tensor="z")
    assert str(shape[0]) in message and str(shape[1]) in message


@pytest.mark.parametrize("code, shape", [
    ("U8", [0, NUMPY_MAX_BYTES]),
    ("U16", [NUMPY_MAX_BYTES // 2, 0]),
    ("BF16", [0, NUMPY_MAX_BYTES // 4]),
    ("F64", [0, 3, NUMPY_MAX_BYTES // 24]),
], ids=["u8-max", "u16-max", "bf16-max", "f64-max"])
def test_accepts_an_empty_tensor_at_numpy_s_limit(write, code, shape):
    assert numpy_can_make(shape, code)
    header = {**VALID_HEADER, "z": {"dtype": code, "shape": shape, "data_offsets": [11, 11]}}
    z = sf.load_file(write(file_bytes(header, VALID_DATA)))["z"]
    assert z.shape == tuple(shape) and z.size == 0
    assert z.dtype == (np.float32 if code == "BF16" else sf.DTYPES[code])


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
    if sum(blob[8:8 + n].count(c) for c in (b"[", b"{", b",", b":")) > MAX_HEADER_VALUES:
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
        if not numpy_can_make(shape, dtype):
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


def numpy_can_make(shape, code):
    """Whether NumPy itself makes an array of this shape in the dtype load_file returns for
    ``code`` (float32 for BF16). Asked directly, with np.empty; cheap when the shape's byte count
    is known to match the file (without a 0 in it, the array is no larger than the file; with
    one, np.empty allocates nothing, whatever the other dimensions)."""
    dtype = np.float32 if code == "BF16" else sf.DTYPES[code]
    try:
        np.empty(shape, dtype)
    except ValueError:  # "array is too big" / "Maximum allowed dimension exceeded"
        return False
    return True


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


@given(code=st.sampled_from(list(ITEMSIZE)),
       shape=st.lists(st.integers(0, 2 ** 70) | st.sampled_from([0, 2 ** 31, 2 ** 62, 2 ** 63]),
                      min_size=1, max_size=4).filter(lambda s: 0 in s))
def test_fuzz_empty_tensors_with_huge_dimensions_agree_with_numpy(scratch, code, shape):
    """A zero-size tensor of any dimensions: loaded exactly when NumPy can make the array
    (validity_oracle asks NumPy), otherwise a SafetensorsError, never another exception."""
    header = {**VALID_HEADER, "z": {"dtype": code, "shape": shape, "data_offsets": [11, 11]}}
    blob = file_bytes(header, VALID_DATA)
    tensors = load_or_reject(scratch, blob)
    assert (tensors is not None) == validity_oracle(blob)
