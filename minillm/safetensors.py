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
is first written to a temporary file ``<name>.tmp-<pid>-<n>`` in the same folder, flushed to disk
and then renamed over the target, so a crash at any moment leaves either the old file or the new
one, never half of one. A writer killed mid-save leaves its temporary file behind; the next save
of the same target removes it (on POSIX, where a live writer's file can be told by its lock).

Where a file may be written. ``path`` may be a new name in an existing folder or an existing
regular file. A symbolic link (or a chain of them) is followed: the file it finally names is
written (created, if the link dangles) and the link stays a link. A folder, a device, a FIFO, a
socket or a loop of links is refused with TargetError (a ValueError): a rename would otherwise
put a regular file in its place (as root, in place of /dev/null). ``check_writable(path)`` makes
every check save_file makes, creating and removing a test file, without writing ``path``: a
long run can learn at its start that its result could not be saved.

Reading. The header says how many bytes to read and how large each array is, so a reader that
trusts it can be made to allocate terabytes or read past the end of the file. ``load_file``
checks the header length against the file size, bounds what parsing the header can cost
(MAX_HEADER_VALUES), parses it, checks every entry against the data section and against what
NumPy can allocate, and only then reads the data. Anything wrong raises ``SafetensorsError``
naming the file, the tensor at fault and the problem. Returned arrays are fresh, writeable NumPy
arrays that own their memory (no memory map is kept open).

dtypes: F64 F32 F16, I64 I32 I16 I8, U64 U32 U16 U8 and BOOL are read and written exactly.
BF16 (bfloat16, which NumPy lacks) is read only: each value is widened to float32 on load, which
is exact, since bfloat16 is the top half of a float32.
"""

from __future__ import annotations

import errno
import itertools
import json
import math
import os
import re
import stat
import struct
import threading
from collections.abc import Mapping

import numpy as np

from .files import RepeatedKey, file_kind, no_repeated_keys, not_json, open_regular
from .files import show as _show

try:
    import fcntl  # flock: how a writer marks its temporary file as still in use (POSIX)
except ImportError:  # Windows: no flock, so stale temporary files are never removed there
    fcntl = None

# The header length field: an unsigned 64-bit integer, little-endian.
HEADER_LENGTH_FORMAT = "<Q"
HEADER_LENGTH_BYTES = struct.calcsize(HEADER_LENGTH_FORMAT)  # 8

# Largest header the reader accepts and the writer writes: the reference implementation's limit,
# MAX_HEADER_SIZE = 100_000_000 bytes (100 MB, not 100 MiB), so that no file this module reads or
# writes is one the reference refuses for its header. A header lists names, dtypes, shapes and
# offsets (about 100 bytes a tensor): room for about a million tensors. A larger length field is
# corruption, and believing it would make the reader allocate that much.
MAX_HEADER_BYTES = 100_000_000

# Most JSON structural characters ([ { , :) a header may hold; they are counted (bytes.count)
# before the header is parsed. Every key and every value in a JSON text but the first comes right
# after one of them, so their count + 1 bounds the Python objects json.loads builds. (Those
# characters inside strings are counted too: an over-count, on the safe side.)
# Why a bound: "[]," is 3 bytes of header but a 56-byte list and an 8-byte pointer, so a 100 MB
# header of empty lists made json.loads take 2.6 GB and 11 s before the header was refused.
# Why 2,000,000: a tensor's entry has about 12 ("name":{"dtype":..,"shape":[..],..}), so this is
# room for ~150,000 tensors; a minillm checkpoint carries its tokenizer's vocabulary in its
# metadata (one "," a token, a few hundred thousand at most); and at about 100 bytes a counted
# character (measured: 1,000,000 distinct keys with their values took 188 MiB), the parse stays
# near 200 MB in the worst case, plus the strings' own characters.
MAX_HEADER_VALUES = 2_000_000

# The header is padded with spaces (valid JSON whitespace) to a multiple of this many bytes, so the
# data section, and with it every 8-byte tensor that follows only 8-byte tensors, starts aligned.
HEADER_ALIGNMENT = 8

# Most dimensions a tensor may have: the fewest any supported NumPy allows (NumPy 1.x: 32; 2.x: 64),
# so that every shape this module accepts can become an array.
MAX_DIMS = 32

# Largest array NumPy can make, in bytes: when it makes any array (np.empty included), NumPy
# multiplies the itemsize by every dimension that is not 0, refusing ("array is too big") a
# product above the largest np.intp (2**63 - 1 on 64-bit machines). Zero dimensions are skipped, so
# an empty array of shape (0, 2**70) is refused too. Checked in _check_entry, so that the
# refusal names the file and the tensor.
MAX_ARRAY_BYTES = int(np.iinfo(np.intp).max)

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


class TargetError(ValueError):
    """A ``path`` that save_file will not write: a folder, a device, a FIFO, a socket, a loop of
    symbolic links, or a name too long for its file system. The message names the path and says
    what it is. (What the OS refuses, a missing folder or a read-only one, is an OSError.)"""


# ----------------------------------------------------------------------------------------------
# Writing


def save_file(tensors, path, metadata=None):
    """Write ``tensors`` (a dict {name: array}) and optional ``metadata`` ({str: str}) to ``path``.

    ``path`` may be a new name in an existing folder or an existing regular file. A symbolic link
    (or a chain of them) is followed: the file it finally names is written (created, if the link
    dangles), and the link stays a link. Refused before anything is written: a folder, a device,
    a FIFO, a socket or a loop of links (TargetError, a ValueError); a folder that is missing or
    cannot be written (an OSError: FileNotFoundError, PermissionError, ...). check_writable runs
    the same checks without writing.

    Crash-safe: the bytes go to a new temporary file ``<name>.tmp-<pid>-<n>`` beside the target
    (<name> cut short if the file system needs it; _temp_name), locked while in use. It is
    flushed and fsync'ed, then ``os.replace``d over the target (an atomic rename), and finally
    the folder is fsync'ed (where the OS allows) so that the rename itself is on disk. A crash at
    any moment leaves the old file or the new one; on an error the temporary file is removed.
    Temporary files of the same target left by writers that were killed are removed first
    (_remove_stale_temp_files).

    Arrays are written in C order and little-endian whatever their layout in memory; any array
    NumPy can convert with ``np.asarray`` is accepted if its dtype is in DTYPES.
    """
    header, arrays = _build_header(tensors, metadata)  # every check happens before any write
    chunks = [struct.pack(HEADER_LENGTH_FORMAT, len(header)), header]
    # One array's bytes at a time: a generator, so that no second copy of the model is held.
    write_atomically(path, itertools.chain(chunks, (a.tobytes(order="C") for a in arrays)))


def write_atomically(path, chunks):
    """Write the byte strings of the iterable ``chunks``, in order, to ``path``, crash-safe and with
    save_file's rules for the target (see save_file): the way every file minillm writes is
    written (checkpoints, and the JSON files of a Hugging Face folder)."""
    path = os.fsdecode(path)
    target, name_max = _check_target(path)  # symlinks followed, a regular file or a new name
    _remove_stale_temp_files(target, name_max)
    tmp, fd = _create_temp_file(path, target, name_max)  # new, and locked until fd is closed
    try:
        with open(fd, "wb") as f:  # f owns fd from here on: closing f releases the lock
            for chunk in chunks:
                f.write(chunk)
            f.flush()  # Python's buffer -> the OS
            os.fsync(f.fileno())  # the OS's cache -> the disk, before the rename makes it visible
            if os.name == "posix":  # renamed while still locked, so no cleaner takes it for stale
                os.replace(tmp, target)  # atomic: readers see the old file or the new one
        if os.name != "posix":  # Windows cannot rename an open file (and has no flock to hold)
            os.replace(tmp, target)
    except BaseException:  # KeyboardInterrupt too: never leave a temporary file behind
        try:
            os.remove(tmp)
        except OSError:
            pass  # already renamed or gone; the original error matters
        raise
    _fsync_directory(os.path.dirname(target))


def write_json(path, data, indent=1):
    """``data`` as UTF-8 JSON in ``path``, crash-safe (write_atomically): the --json files of
    the measuring commands, and the points file of scale."""
    text = json.dumps(data, ensure_ascii=False, indent=indent)
    write_atomically(path, [text.encode("utf-8")])


def check_writable(path):
    """Check, without writing ``path``, everything save_file(tensors, path) will check about it;
    return the file it would write (an absolute path, symbolic links followed).

    The checks are save_file's own (_check_target, then _create_temp_file): ``path`` is a new
    name or a regular file, itself or at the end of its symbolic links, and its name fits the file
    system (TargetError otherwise, a ValueError); its folder exists and is a folder
    (FileNotFoundError, NotADirectoryError); and a file can be created and removed there: a test
    file named as save_file's temporary file is (PermissionError, or an OSError with errno EROFS
    for a read-only file system; that holds for root too). A disk too full for the data is not
    caught, only one without room for an empty file. Each message is one line that names
    ``path``, for the CLI to print as it is.

    Call it before long work whose result goes to ``path``, such as a training run.
    """
    path = os.fsdecode(path)
    target, name_max = _check_target(path)
    tmp, fd = _create_temp_file(path, target, name_max)
    os.close(fd)
    try:
        os.remove(tmp)
    except FileNotFoundError:
        pass  # a save of the same target in this process took it for stale and removed it
    except OSError as e:
        raise _os_error(e.errno, f"cannot write {path!r}: cannot remove the test file {tmp!r} "
                                 f"from its folder: {e.strerror}") from e
    return target


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
    # Never write a file that load_file would refuse (a huge metadata string, say).
    if len(text) + padding > MAX_HEADER_BYTES:
        raise ValueError(f"the header would be {len(text) + padding} bytes, more than "
                         f"MAX_HEADER_BYTES = {MAX_HEADER_BYTES} (readers refuse such a file); "
                         "store less metadata")
    items = _count_json_items(text)
    if items > MAX_HEADER_VALUES:
        raise ValueError(f"the header would hold {items} JSON structural characters ([ {{ , :), "
                         f"more than MAX_HEADER_VALUES = {MAX_HEADER_VALUES} (load_file refuses "
                         "such a file); store less metadata or fewer tensors")
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
# Where the file goes: the target, its temporary file, and temporary files left by killed writers


# The longest file name, in bytes, assumed where the OS cannot say (os.pathconf is POSIX only):
# the limit of ext4, XFS, APFS and NTFS alike.
DEFAULT_NAME_MAX = 255

# The end of a temporary file's name, "<name>.tmp-<pid>-<n>", as _remove_stale_temp_files looks
# for it. At most 20 digits each (more than any pid or count), so int() of them stays cheap.
_TEMP_SUFFIX = re.compile(r"\.tmp-([0-9]{1,20})-([0-9]{1,20})\Z")

# The <n> of this process's temporary files: 0, 1, 2, ... (a short, unique number, where a
# thread's id would add 15 digits to the name).
_TEMP_NUMBERS = itertools.count()

# Held while a temporary file is created and locked, and while stale ones are removed, so that
# no thread of this process takes another's new, not yet locked, file for a stale one.
_TEMP_FILES_LOCK = threading.Lock()



def _check_target(path):
    """Where ``path`` leads, checked, without writing: returns (the file to write, absolute with
    every symbolic link followed; the longest file name its folder allows, in bytes).

    TargetError if ``path`` ends in a separator, leads to something other than a regular file or
    nothing, or has a name too long for the folder; an OSError if the folder is missing or is not
    a folder. Each message is one line naming ``path``.
    """
    if not os.path.basename(path):  # "runs/", or ""
        raise TargetError(f"cannot write {path!r}: it names a folder, not a file")
    target = os.path.realpath(path)  # every link followed: a chain, a dangling one, in folders
    folder, name = os.path.split(target)
    shown = f"{path!r} (a link to {target!r})" if os.path.islink(path) else repr(path)
    try:
        folder_mode = os.stat(folder).st_mode
    except OSError as e:  # most likely FileNotFoundError: the folder does not exist
        raise _os_error(e.errno, f"cannot write {shown}: folder {folder!r}: {e.strerror}") from e
    if not stat.S_ISDIR(folder_mode):
        raise _os_error(errno.ENOTDIR, f"cannot write {shown}: {folder!r} is not a folder")
    name_max = _name_max(folder)
    if len(os.fsencode(name)) > name_max:
        raise TargetError(f"cannot write {shown}: its name is {len(os.fsencode(name))} bytes, "
                          f"more than the {name_max} its folder allows")
    try:
        mode = os.lstat(target).st_mode
    except FileNotFoundError:
        mode = None  # a new file (or the missing end of a dangling link): fine
    except OSError as e:  # PermissionError: the folder cannot be searched
        raise _os_error(e.errno, f"cannot write {shown}: {e.strerror}") from e
    if mode is not None and not stat.S_ISREG(mode):
        raise TargetError(f"cannot write {shown}: it is {file_kind(mode)}; only a regular file "
                          "is replaced")
    return target, name_max


def _name_max(folder):
    """The longest file name ``folder`` allows, in bytes of the file-system encoding."""
    try:
        limit = os.pathconf(folder, "PC_NAME_MAX")
    except (AttributeError, ValueError, OSError):  # no pathconf (Windows), or no answer
        return DEFAULT_NAME_MAX
    return limit if limit > 0 else DEFAULT_NAME_MAX  # -1: "no limit", or it would not say


def _temp_name(name, pid, number, name_max):
    """The name of a temporary file for file ``name``: ``<name>.tmp-<pid>-<number>``, with
    <name> cut short (whole characters) until the whole fits in ``name_max`` bytes."""
    suffix = f".tmp-{pid}-{number}"
    while name and len(os.fsencode(name + suffix)) > name_max:
        name = name[:-1]
    return name + suffix


def _create_temp_file(path, target, name_max):
    """Create a new temporary file beside ``target`` and lock it: returns (its path, an open
    descriptor). The lock (flock, where there is one) lasts until the descriptor is closed and
    tells _remove_stale_temp_files that a live writer uses the file. O_EXCL makes the file new:
    never an old one, nor a link someone planted under that name. An OSError from the OS is
    raised again with a message naming ``path``."""
    folder, name = os.path.split(target)
    # 0o666 less the umask, as open(name, "wb") would give; O_BINARY: Windows would turn "\n"
    # into "\r\n" in a file opened without it.
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    with _TEMP_FILES_LOCK:
        for number in _TEMP_NUMBERS:
            tmp = os.path.join(folder, _temp_name(name, os.getpid(), number, name_max))
            try:
                fd = os.open(tmp, flags, 0o666)
            except FileExistsError:  # left by an earlier process with this pid: take the next
                continue
            except OSError as e:
                raise _os_error(e.errno, f"cannot write {path!r}: cannot create a file in folder "
                                         f"{folder!r}: {e.strerror}") from e
            break
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)  # nobody else has this new file open: no wait
            except OSError:  # a file system without locks; a cleaner cannot lock it either,
                pass  # and so leaves the file alone (_remove_if_unlocked)
    return tmp, fd


def _remove_stale_temp_files(target, name_max):
    """Remove the temporary files of ``target`` whose writers died mid-save (killed, a power cut).

    A file goes only if all of these hold: its name is exactly one that _temp_name gives
    ``target`` (so no other file can match); it is a regular file; no process with its pid runs,
    or that pid is this process's own (a restarted container often gets the pid of the one that
    died, and this process's live temporary files are locked); and no one holds its lock, which a
    live writer holds from creation to rename. Best effort: a file that cannot be checked or
    removed stays, and nothing is raised. Without flock (Windows) nothing is removed, since a
    live writer could not be told from a dead one.
    """
    if fcntl is None:
        return
    folder, name = os.path.split(target)
    with _TEMP_FILES_LOCK:
        try:
            entries = list(os.scandir(folder))
        except OSError:
            return
        for entry in entries:
            match = _TEMP_SUFFIX.search(entry.name)
            if match is None:
                continue
            pid, number = int(match[1]), int(match[2])
            if entry.name != _temp_name(name, pid, number, name_max):
                continue  # another target's temporary file, or "01" where we write "1"
            if pid != os.getpid() and _process_exists(pid):
                continue  # its writer may be at work
            try:
                if entry.is_file(follow_symlinks=False):
                    _remove_if_unlocked(entry.path)
            except OSError:
                pass  # locked (BlockingIOError), already gone, not ours to remove: it stays


def _process_exists(pid):
    """Whether a process with this pid exists (POSIX). Signal 0 sends nothing: kill only checks."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (OSError, OverflowError):  # PermissionError: it exists, another user's; or no answer
        return True
    return True


def _remove_if_unlocked(path):
    """Remove ``path`` if no one holds its lock. OSError (BlockingIOError if it is locked) if it
    cannot be checked or removed."""
    # O_NOFOLLOW, O_NONBLOCK: a name swapped since the listing for a link or a FIFO neither leads
    # elsewhere nor blocks.
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.remove(path)
    finally:
        os.close(fd)


def _os_error(number, message):
    """An OSError for errno ``number``, of the class Python itself would raise for it
    (FileNotFoundError for ENOENT, PermissionError for EACCES, ...), whose text is ``message``
    alone: one self-contained line, which the CLI prints as it is."""
    kind = type(OSError(number, os.strerror(number)))  # OSError(errno, ...) picks the subclass
    error = kind(message)  # one argument: str(error) is the message, without "[Errno n]"
    error.errno = number
    return error


# ----------------------------------------------------------------------------------------------
# Reading


def load_file(path):
    """Read a safetensors file: {name: array}, in name order. See load_file_with_metadata."""
    tensors, _ = load_file_with_metadata(path)
    return tensors


def load_file_with_metadata(path):
    """Read a safetensors file: ({name: array} in name order, {str: str} metadata, {} if none).

    Order of work: read the 8-byte header length, check it against MAX_HEADER_BYTES and the
    file size, read the header, bound what parsing it can cost, parse it and check every entry
    (parse_header), and only then read each tensor's bytes into a fresh array of exactly that
    many bytes. Arrays are writeable and own their memory; BF16 tensors come back as float32.
    Raises SafetensorsError for a malformed file.
    """
    path = os.fspath(path)
    with open_regular(path, "file") as f:  # a FIFO or a device is refused, not waited on
        entries, metadata, data_start = _read_header(f, path)
        tensors = {}
        for name, (code, shape, begin, end) in sorted(entries.items(), key=lambda e: e[1][2:]):
            f.seek(data_start + begin)
            tensors[name] = _read_tensor(f, name, code, shape, end - begin, path)
    return dict(sorted(tensors.items())), metadata


def read_header(path):
    """The checked header of a safetensors file, without its data: ({name: (dtype code, shape,
    begin, end)}, metadata {str: str}). For a reader that checks the tensors' names, dtypes and
    shapes (and the metadata) before it reads them, as checkpoint.load_checkpoint does."""
    path = os.fspath(path)
    with open_regular(path, "file") as f:
        entries, metadata, _ = _read_header(f, path)
    return entries, metadata


def _read_header(f, path):
    """Read and check the header of the open file ``f``: the 8-byte length against
    MAX_HEADER_BYTES and the file size, then the header itself (parse_header). -> (entries,
    metadata, the byte offset where the data section starts)."""
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
    data_start = HEADER_LENGTH_BYTES + header_length
    entries, metadata = parse_header(header, file_size - data_start, path)
    return entries, metadata, data_start


def parse_header(header, data_size, path="<header>"):
    """Check a header (the raw bytes) against a data section of ``data_size`` bytes.

    Returns ({name: (dtype code, shape tuple, begin, end)}, metadata {str: str}). Raises
    SafetensorsError, naming ``path`` and the tensor, for: more than MAX_HEADER_VALUES JSON
    structural characters (counted before parsing), bytes that are not UTF-8 JSON (NaN and
    Infinity, which Python's json reads, are not JSON), JSON that is not one object, a repeated
    name, metadata that is not {str: str} (null counts as none), an entry that is not an object
    or lacks dtype / shape / data_offsets, an unknown dtype, a shape that is not a list of at
    most MAX_DIMS integers >= 0, data_offsets that are not two integers 0 <= begin <= end <=
    data_size, a byte count end - begin other than prod(shape) * itemsize, a shape too large for
    a NumPy array (MAX_ARRAY_BYTES), and tensors that overlap or leave bytes of the data section
    uncovered. JSON booleans are not integers here, though Python's bool is an int. Keys other
    than the three in an entry are ignored, as the reference reader does.
    """
    # Bound what json.loads can cost before paying it: see MAX_HEADER_VALUES.
    items = _count_json_items(header)
    if items > MAX_HEADER_VALUES:
        raise SafetensorsError(f"{path}: header holds {items} JSON structural characters "
                               f"([ {{ , :), more than MAX_HEADER_VALUES = {MAX_HEADER_VALUES}; "
                               "it is not parsed")
    try:
        text = header.decode("utf-8")
    except UnicodeDecodeError as e:
        raise SafetensorsError(f"{path}: header is not valid UTF-8 ({e})") from None
    try:
        obj = json.loads(text, object_pairs_hook=no_repeated_keys, parse_constant=not_json)
    except RepeatedKey as e:
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
    # NumPy must be able to make the array (MAX_ARRAY_BYTES). A tensor with data is bounded by
    # the file already; this catches empty ones such as [0, 2**70]. BF16 comes back as float32.
    loaded_itemsize = 4 if code == "BF16" else itemsize
    array_bytes = math.prod(d for d in shape if d != 0) * loaded_itemsize  # as NumPy counts
    if array_bytes > MAX_ARRAY_BYTES:
        raise fail(f"shape {_show(shape)} of {code} is too large for a NumPy array: its non-zero "
                   f"dimensions times {loaded_itemsize} bytes exceed MAX_ARRAY_BYTES = "
                   f"{MAX_ARRAY_BYTES}")
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
    """bfloat16 bit patterns (uint16) -> float32, exactly, in a new array that owns its memory.

    A bfloat16 is the top 16 bits of a float32 (sign, the same 8 exponent bits, 7 of the 23
    mantissa bits), so shifting the pattern left by 16 gives the float32 with the same value.
    The shift is done in the float32 array's own memory, seen as uint32, so that the array
    returned is the one allocated, not a view of another.
    """
    out = np.empty(bits.shape, dtype="<f4")
    out_bits = out.view("<u4")  # the same memory, as integers
    out_bits[...] = bits  # each 16-bit pattern, widened, in the low half of its 32 bits
    out_bits <<= 16  # ... moved to the high half: the float32 of the same value
    return out


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


def _count_json_items(header):
    """How many JSON structural characters ([ { , :) the header bytes hold: one more than this
    bounds the keys and values json.loads would build from them (see MAX_HEADER_VALUES)."""
    return sum(header.count(c) for c in (b"[", b"{", b",", b":"))


def _is_int(x):
    """A JSON integer. bool is excluded: Python's True is an int, JSON's true is not a number."""
    return isinstance(x, int) and not isinstance(x, bool)


def _json_kind(value):
    """The JSON name of a parsed value's type, for messages: "array", not Python's "list"."""
    kinds = [(bool, "boolean"), (int, "number"), (float, "number"), (str, "string"),
             (list, "array"), (dict, "object")]
    return next((kind for t, kind in kinds if isinstance(value, t)), "null")
