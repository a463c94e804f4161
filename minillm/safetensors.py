"""The safetensors file format, read and written with NumPy and ``json`` only.

    from minillm import safetensors
    safetensors.save_file({"wte": wte, "wpe": wpe}, "model.safetensors", metadata={"format": "pt"})
    tensors = safetensors.load_file("model.safetensors")            # {name: np.ndarray}
    tensors, metadata = safetensors.load_file_with_metadata(path)   # ... and {str: str}

A file has three parts:

    bytes 0 .. 8        N, the length of the header: an unsigned 64-bit little-endian integer
    bytes 8 .. 8+N      the header: UTF-8 JSON, one object
                            {"__metadata__": {"format": "pt"},           (optional, str -> str)
                             "wte": {"dtype": "F32", "shape": [97, 32], "data_offsets": [0, 12416]},
                             ...}
    bytes 8+N .. end    the data section: every tensor's raw little-endian bytes in C order

``data_offsets`` are [begin, end) byte positions counted from the first byte of the data
section. The tensors tile the data section exactly: no two overlap and no byte is left over, so
a file has one meaning only (without holes, a file cannot hide a second one inside it).

Writing. Tensors are written in name order; the header is padded with spaces to a multiple of
8 bytes (as the reference writer does) so that the data section starts 8-byte aligned. The file
is first written to a temporary file in the same folder, flushed to disk and then renamed over
the target, so a crash at any moment leaves either the old file or the new one, never half of one.

Reading. The header says how many bytes to read and how large each array is, so a reader that
trusts it can be made to allocate terabytes or read past the end of the file. ``load_file``
checks the header length against the file size, parses the header, checks every entry against
the data section, and only then reads the data. Anything wrong raises ``SafetensorsError`` naming
the file, the tensor at fault and the problem. Returned arrays are fresh, writeable NumPy arrays
that own their memory (no memory map is kept open).

dtypes: F64 F32 F16, I64 I32 I16 I8, U64 U32 U16 U8 and BOOL are read and written exactly.
BF16 (bfloat16, which NumPy lacks) is read only: each value is widened to float32 on load, which
is exact, since bfloat16 is the top half of a float32.
"""

from __future__ import annotations

import json
import math
import os
import reprlib
import struct
import threading
from collections.abc import Mapping

import numpy as np

# The header length field: an unsigned 64-bit integer, little-endian.
HEADER_LENGTH_FORMAT = "<Q"
HEADER_LENGTH_BYTES = struct.calcsize(HEADER_LENGTH_FORMAT)  # 8

# Largest header the reader accepts. A header only lists names, dtypes, shapes and offsets (about
# 100 bytes a tensor), so 100 MiB is room for about a million tensors; a larger length field is
# corruption, and believing it would make the reader allocate that much.
MAX_HEADER_BYTES = 100 * 1024 * 1024

# The header is padded with spaces (valid JSON whitespace) to a multiple of this many bytes, so the
# data section, and with it every 8-byte tensor that follows only 8-byte tensors, starts aligned.
HEADER_ALIGNMENT = 8

# Most dimensions a tensor may have: the fewest any supported NumPy allows (NumPy 1.x: 32; 2.x: 64),
# so that every shape this module accepts can become an array.
MAX_DIMS = 32

# The key of the optional {str: str} metadata object in the header. It cannot name a tensor.
METADATA_KEY = "__metadata__"

# The dtype codes of the format and the NumPy dtypes whose bytes they are, read and written
# exactly. Multi-byte types are little-endian ("<"), as the format requires. BOOL is one byte,
# 0 or 1.
DTYPES = {
    "F64": np.dtype("<f8"),
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "I64": np.dtype("<i8"),
    "I32": np.dtype("<i4"),
    "I16": np.dtype("<i2"),
    "I8": np.dtype("i1"),
    "U64": np.dtype("<u8"),
    "U32": np.dtype("<u4"),
    "U16": np.dtype("<u2"),
    "U8": np.dtype("u1"),
    "BOOL": np.dtype("?"),
}

# Codes that are read only: the dtype their raw bytes are read as. NumPy has no bfloat16, so BF16
# is read as its 16-bit patterns and widened to float32 by bf16_to_float32.
READ_ONLY_DTYPES = {
    "BF16": np.dtype("<u2"),
}


class SafetensorsError(ValueError):
    """A file that is not a valid safetensors file. The message names the file, the tensor at
    fault (when one is) and what is wrong."""


# ----------------------------------------------------------------------------------------------
# Writing


def save_file(tensors, path, metadata=None):
    """Write ``tensors`` (a dict {name: array}) and optional ``metadata`` ({str: str}) to ``path``.

    Crash-safe: the bytes go to ``path + ".tmp-<pid>-<thread>"`` in the same folder, which is
    flushed and fsync'ed, then ``os.replace``d over ``path`` (an atomic rename), and finally the
    folder is fsync'ed (where the OS allows) so that the rename itself is on disk. A crash at any
    moment leaves the old file or the new one; on an error the temporary file is removed.

    Arrays are written in C order and little-endian whatever their layout in memory; any array
    NumPy can convert with ``np.asarray`` is accepted if its dtype is in DTYPES.
    """
    path = os.fspath(path)
    header, arrays = _build_header(tensors, metadata)  # every check happens before any write
    tmp = f"{path}.tmp-{os.getpid()}-{threading.get_ident()}"  # unique per process and thread
    try:
        with open(tmp, "wb") as f:
            f.write(struct.pack(HEADER_LENGTH_FORMAT, len(header)))
            f.write(header)
            for array in arrays:
                f.write(array.tobytes(order="C"))
            f.flush()  # Python's buffer -> the OS
            os.fsync(f.fileno())  # the OS's cache -> the disk, before the rename makes it visible
        os.replace(tmp, path)  # atomic: readers see the old file or the new one
    except BaseException:  # KeyboardInterrupt too: never leave a temporary file behind
        try:
            os.remove(tmp)
        except OSError:
            pass  # it was never created (or is already gone); the original error matters
        raise
    _fsync_directory(os.path.dirname(os.path.abspath(path)))


def _build_header(tensors, metadata):
    """Check the inputs and lay the tensors out: returns (header bytes padded to a multiple of
    HEADER_ALIGNMENT, the little-endian arrays in the order their bytes follow the header)."""
    if not isinstance(tensors, Mapping):
        raise TypeError(f"tensors must be a dict {{name: array}}, got {type(tensors).__name__}")
    for name in tensors:
        if not isinstance(name, str):
            raise TypeError(f"tensor names must be str, got {name!r} ({type(name).__name__})")
    if METADATA_KEY in tensors:
        raise ValueError(f"{METADATA_KEY!r} is reserved for the metadata and cannot name a tensor")
    header = {}
    if metadata is not None:
        if not isinstance(metadata, Mapping):
            raise TypeError(f"metadata must be a dict {{str: str}}, got {type(metadata).__name__}")
        for key, value in metadata.items():
            if not isinstance(key, str) or not isinstance(value, str):
                raise TypeError(f"metadata must map str to str, got {key!r}: {value!r} "
                                f"({type(key).__name__}: {type(value).__name__}); "
                                "encode other values yourself, e.g. with json.dumps")
        header[METADATA_KEY] = dict(metadata)

    arrays = []
    offset = 0
    for name in sorted(tensors):
        array = np.asarray(tensors[name])
        code = dtype_code(array.dtype)
        if code is None:
            bf16 = "bfloat16" in str(array.dtype)  # e.g. ml_dtypes.bfloat16
            hint = "; BF16 is read only, convert to float32" if bf16 else ""
            supported = ", ".join(dt.name for dt in DTYPES.values())
            raise ValueError(f"tensor {name!r}: dtype {array.dtype} cannot be stored (supported: "
                             f"{supported}){hint}")
        if array.ndim > MAX_DIMS:
            raise ValueError(f"tensor {name!r}: {array.ndim} dimensions, more than MAX_DIMS = "
                             f"{MAX_DIMS}")
        array = array.astype(DTYPES[code], copy=False)  # big-endian input -> little-endian
        header[name] = {"dtype": code, "shape": list(array.shape),
                        "data_offsets": [offset, offset + array.nbytes]}
        arrays.append(array)
        offset += array.nbytes

    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    padding = -len(text) % HEADER_ALIGNMENT
    return text + b" " * padding, arrays


def dtype_code(dtype):
    """The safetensors code of a NumPy dtype ("F32" for float32, ...), or None if it has none.

    Byte order does not matter (arrays are converted to little-endian when written). A linear
    search with ``==`` rather than a dict lookup: equal dtypes (int64 and longlong, say) need not
    hash alike.
    """
    dtype = np.dtype(dtype).newbyteorder("<")
    for code, stored in DTYPES.items():
        if dtype == stored:
            return code
    return None


def _fsync_directory(folder):
    """Flush a folder's entry list to disk, so that a completed rename survives a power cut.

    POSIX needs this (the rename changes the folder, not the file); Windows cannot open a folder
    this way, and some file systems refuse to fsync one. Both are skipped: there is nothing more
    a program can do there.
    """
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# ----------------------------------------------------------------------------------------------
# Reading


def load_file(path):
    """Read a safetensors file: {name: array}, in name order. See load_file_with_metadata."""
    tensors, _ = load_file_with_metadata(path)
    return tensors


def load_file_with_metadata(path):
    """Read a safetensors file: ({name: array} in name order, {str: str} metadata, {} if none).

    Order of work: read the 8-byte header length, check it against MAX_HEADER_BYTES and the
    file size, read and parse the header, check every entry (parse_header), and only then read
    each tensor's bytes into a fresh array of exactly that many bytes. Arrays are writeable and own
    their memory; BF16 tensors come back as float32. Raises SafetensorsError for a malformed file.
    """
    path = os.fspath(path)
    with open(path, "rb") as f:
        file_size = _file_size(f)
        if file_size < HEADER_LENGTH_BYTES:
            raise SafetensorsError(f"{path}: file is {file_size} bytes, shorter than the "
                                   f"{HEADER_LENGTH_BYTES}-byte header length")
        (header_length,) = struct.unpack(HEADER_LENGTH_FORMAT, f.read(HEADER_LENGTH_BYTES))
        if header_length > MAX_HEADER_BYTES:
            raise SafetensorsError(f"{path}: header length {header_length} bytes exceeds the "
                                   f"limit MAX_HEADER_BYTES = {MAX_HEADER_BYTES}")
        if HEADER_LENGTH_BYTES + header_length > file_size:
            raise SafetensorsError(f"{path}: header length {header_length} bytes runs past the "
                                   f"end of the file ({file_size} bytes)")
        header = _read_exactly(f, header_length, path, "the header")
        data_size = file_size - HEADER_LENGTH_BYTES - header_length
        entries, metadata = parse_header(header, data_size, path)

        tensors = {}
        data_start = HEADER_LENGTH_BYTES + header_length
        for name, (code, shape, begin, end) in sorted(entries.items(), key=lambda e: e[1][2:]):
            f.seek(data_start + begin)
            tensors[name] = _read_tensor(f, name, code, shape, end - begin, path)
    return dict(sorted(tensors.items())), metadata


def parse_header(header, data_size, path="<header>"):
    """Check a header (the raw bytes) against a data section of ``data_size`` bytes.

    Returns ({name: (dtype code, shape tuple, begin, end)}, metadata {str: str}). Raises
    SafetensorsError, naming ``path`` and the tensor, for: bytes that are not UTF-8 JSON (NaN
    and Infinity, which Python's json reads, are not JSON), JSON that is not one object, a
    repeated name, metadata that is not {str: str} (null counts as none), an entry that is not
    an object or lacks dtype / shape / data_offsets, an unknown dtype, a shape that is not a list
    of at most MAX_DIMS integers >= 0, data_offsets that are not two integers 0 <= begin <= end
    <= data_size, a byte count end - begin other than prod(shape) * itemsize, and tensors that
    overlap or leave bytes of the data section uncovered. JSON booleans are not integers here,
    though Python's bool is an int. Keys other than the three in an entry are ignored, as the
    reference reader does.
    """
    try:
        text = header.decode("utf-8")
    except UnicodeDecodeError as e:
        raise SafetensorsError(f"{path}: header is not valid UTF-8 ({e})") from None
    try:
        obj = json.loads(text, object_pairs_hook=_no_repeated_keys, parse_constant=_not_json)
    except _RepeatedKey as e:
        raise SafetensorsError(f"{path}: header names {_show(e.args[0])} twice") from None
    except (ValueError, RecursionError) as e:  # JSONDecodeError, over-long integers, deep nesting
        raise SafetensorsError(f"{path}: header is not valid JSON ({e})") from None
    if not isinstance(obj, dict):
        raise SafetensorsError(f"{path}: header is a JSON {_json_kind(obj)}, not an object")

    metadata = obj.pop(METADATA_KEY, None)
    if metadata is None:  # absent, or null (which the reference reader also takes as absent)
        metadata = {}
    if not isinstance(metadata, dict):
        raise SafetensorsError(f"{path}: {METADATA_KEY} is a JSON {_json_kind(metadata)}, "
                               "not an object")
    for key, value in metadata.items():
        if not isinstance(value, str):
            raise SafetensorsError(f"{path}: {METADATA_KEY} value of {_show(key)} is "
                                   f"{_show(value)}, not a string")

    entries = {name: _check_entry(name, entry, data_size, path) for name, entry in obj.items()}
    _check_tiling(entries, data_size, path)
    return entries, metadata


def _check_entry(name, entry, data_size, path):
    """One header entry -> (code, shape, begin, end), or SafetensorsError naming what is wrong."""
    def fail(problem):
        return SafetensorsError(f"{path}: tensor {_show(name)}: {problem}")

    if not isinstance(entry, dict):
        raise fail(f"entry is a JSON {_json_kind(entry)}, not an object")
    for key in ("dtype", "shape", "data_offsets"):
        if key not in entry:
            raise fail(f"entry has no {key!r}")
    code, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]

    if not isinstance(code, str):
        raise fail(f"dtype is {_show(code)}, not a string")
    if code not in DTYPES and code not in READ_ONLY_DTYPES:
        known = ", ".join([*DTYPES, *READ_ONLY_DTYPES])
        raise fail(f"unknown dtype {_show(code)} (known: {known})")
    if not isinstance(shape, list):
        raise fail(f"shape is {_show(shape)}, not a list")
    if len(shape) > MAX_DIMS:
        raise fail(f"shape has {len(shape)} dimensions, more than MAX_DIMS = {MAX_DIMS}")
    if not all(_is_int(d) and d >= 0 for d in shape):
        raise fail(f"shape {_show(shape)} is not a list of integers >= 0")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(map(_is_int, offsets))):
        raise fail(f"data_offsets {_show(offsets)} is not a list of two integers [begin, end]")
    begin, end = offsets
    if not 0 <= begin <= end:
        raise fail(f"data_offsets {_show(offsets)} are not 0 <= begin <= end")
    if end > data_size:
        raise fail(f"data_offsets {_show(offsets)} run past the end of the data section "
                   f"({data_size} bytes)")
    itemsize = stored_dtype(code).itemsize
    expected = math.prod(shape) * itemsize  # exact: Python integers do not overflow
    if end - begin != expected:
        raise fail(f"data_offsets {_show(offsets)} hold {_show(end - begin)} bytes, but shape "
                   f"{_show(shape)} of {code} needs {_show(expected)}")
    return code, tuple(shape), begin, end


def _check_tiling(entries, data_size, path):
    """The tensors, in offset order, must cover the data section exactly once: each begins where
    the one before it ended, the first at 0 and the last ending at data_size."""
    covered_to, previous = 0, None
    for name, (_, _, begin, end) in sorted(entries.items(), key=lambda e: e[1][2:]):
        if begin < covered_to:
            raise SafetensorsError(f"{path}: tensor {_show(name)} (bytes [{begin}, {end}]) "
                                   f"overlaps tensor {_show(previous)} (which ends at byte "
                                   f"{covered_to})")
        if begin > covered_to:
            raise SafetensorsError(f"{path}: bytes [{covered_to}, {begin}] of the data section, "
                                   f"before tensor {_show(name)}, belong to no tensor")
        covered_to, previous = end, name
    if covered_to != data_size:
        raise SafetensorsError(f"{path}: bytes [{covered_to}, {data_size}] at the end of the "
                               "data section belong to no tensor")


def _read_tensor(f, name, code, shape, nbytes, path):
    """Read ``nbytes`` (already checked against the file) from ``f`` into a fresh array."""
    stored = stored_dtype(code)
    array = np.empty(shape, dtype=stored)
    got = f.readinto(array.reshape(-1).view(np.uint8))  # straight into the array's own memory
    if got != nbytes:  # the file shrank after it was measured
        raise SafetensorsError(f"{path}: tensor {_show(name)}: file ended after {got} of its "
                               f"{nbytes} bytes")
    if code == "BOOL" and np.any(array.view(np.uint8) > 1):  # NumPy assumes bool bytes are 0 or 1
        raise SafetensorsError(f"{path}: tensor {_show(name)}: BOOL holds byte values other than "
                               "0 and 1")
    if code == "BF16":
        array = bf16_to_float32(array)
    return array if array.dtype.isnative else array.astype(array.dtype.newbyteorder("="))


def stored_dtype(code):
    """The NumPy dtype of the bytes a dtype code stands for (BF16: its uint16 bit patterns)."""
    return DTYPES[code] if code in DTYPES else READ_ONLY_DTYPES[code]


def bf16_to_float32(bits):
    """bfloat16 bit patterns (uint16) -> float32, exactly.

    A bfloat16 is the top 16 bits of a float32 (sign, the same 8 exponent bits, 7 of the 23
    mantissa bits), so shifting the pattern left by 16 gives the float32 with the same value.
    """
    return (bits.astype("<u4") << 16).view("<f4")


# ----------------------------------------------------------------------------------------------
# Small helpers


def _file_size(f):
    """Size in bytes of the open file ``f``; the reader never reads beyond it."""
    return os.fstat(f.fileno()).st_size


def _read_exactly(f, n, path, what):
    """Read ``n`` bytes (already checked to lie in the file); SafetensorsError if it ends early."""
    data = f.read(n)
    if len(data) != n:  # the file shrank after it was measured
        raise SafetensorsError(f"{path}: file ended after {len(data)} of the {n} bytes of {what}")
    return data


def _is_int(x):
    """A JSON integer. bool is excluded: Python's True is an int, JSON's true is not a number."""
    return isinstance(x, int) and not isinstance(x, bool)


def _json_kind(value):
    """The JSON name of a parsed value's type, for messages: "array", not Python's "list"."""
    kinds = [(bool, "boolean"), (int, "number"), (float, "number"), (str, "string"),
             (list, "array"), (dict, "object")]
    return next((kind for t, kind in kinds if isinstance(value, t)), "null")


# Error messages quote values from the header, which may be huge (a 100 MiB name): cut them short.
_SHORT_REPR = reprlib.Repr()
_SHORT_REPR.maxstring = _SHORT_REPR.maxother = _SHORT_REPR.maxlong = 80
_SHORT_REPR.maxlist = _SHORT_REPR.maxdict = 8


def _show(value):
    """repr() of a value from the header, shortened with "..." past about 80 characters."""
    return _SHORT_REPR.repr(value)


def _not_json(constant):
    """parse_constant for json.loads: Python reads NaN, Infinity and -Infinity, JSON has none."""
    raise ValueError(f"{constant} is not a JSON value")


class _RepeatedKey(Exception):
    """A JSON object with the same key twice (json.loads would silently keep the last)."""


def _no_repeated_keys(pairs):
    """object_pairs_hook for json.loads: build the dict, refusing a repeated key."""
    obj = {}
    for key, value in pairs:
        if key in obj:
            raise _RepeatedKey(key)
        obj[key] = value
    return obj
