"""Files a user hands over: only regular files are read, never more than a stated size, and JSON
strictly.

A path may name a FIFO (opening it blocks until some writer comes), a device (/dev/zero never
ends), a folder, or a huge file. Every file minillm reads from a user (a --data text, a
checkpoint, the JSON files of a Hugging Face folder) goes through ``open_regular``, which opens
without blocking and refuses anything but a regular file, and the readers below bound the size
before reading.
"""

from __future__ import annotations

import json
import os
import reprlib
import stat

# What a file that is not a regular file is, for messages (stat's tests, tried in this order).
_KINDS = [(stat.S_ISDIR, "a folder"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
          (stat.S_ISSOCK, "a socket"), (stat.S_ISLNK, "a loop of symbolic links")]


def file_kind(mode):
    """What a file of this st_mode is, for a message that refuses it: "a FIFO (named pipe)"."""
    return next((kind for test, kind in _KINDS if test(mode)), "not a regular file")


def open_regular(path, what):
    """``path`` opened for reading (binary), if it is a regular file (symbolic links followed).

    Anything else is refused with a ValueError naming ``what`` and the path, before a byte is
    read: the file is opened with O_NONBLOCK, so that a FIFO without a writer does not block.
    A missing file raises FileNotFoundError, as ``open`` does.
    """
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise ValueError(f"{what} {os.fsdecode(path)!r} is {file_kind(mode)}, not a regular "
                             "file")
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_bytes(path, what, max_bytes):
    """The bytes of a regular file of at most ``max_bytes`` (ValueError naming ``what`` if it is
    larger: refused by its size, before it is read)."""
    with open_regular(path, what) as f:
        size = os.fstat(f.fileno()).st_size
        data = b"" if size > max_bytes else f.read(max_bytes + 1)
        if size > max_bytes or len(data) > max_bytes:  # a /proc file says 0; a file may grow
            raise ValueError(f"{what} {os.fsdecode(path)!r} is {max(size, len(data)):,} bytes "
                             f"or more, more than the {max_bytes:,} minillm reads")
        return data


def loads_json(text, what):
    """Parse JSON strictly: a key repeated in an object, NaN and Infinity (which Python's json
    accepts and JSON does not) and nesting too deep to parse are each a ValueError naming
    ``what``."""
    try:
        return json.loads(text, object_pairs_hook=no_repeated_keys, parse_constant=not_json)
    except RepeatedKey as err:
        raise ValueError(f"{what} is not valid JSON: the key {show(err.args[0])} appears twice "
                         "in one object") from None
    except RecursionError:
        raise ValueError(f"{what} is nested too deeply to read") from None
    except ValueError as err:  # JSONDecodeError, NaN, an over-long integer
        raise ValueError(f"{what} is not valid JSON: {_cut(str(err))}") from None


def read_json(path, what, max_bytes):
    """``loads_json`` of a regular UTF-8 file of at most ``max_bytes``."""
    data = read_bytes(path, what, max_bytes)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"{what} {os.fsdecode(path)!r} is not UTF-8 (byte {err.start})") from None
    return loads_json(text, f"{what} {os.fsdecode(path)!r}")


class RepeatedKey(Exception):
    """A JSON object with the same key twice (json.loads would silently keep the last)."""


def no_repeated_keys(pairs):
    """object_pairs_hook for json.loads: build the dict, refusing a repeated key."""
    obj = {}
    for key, value in pairs:
        if key in obj:
            raise RepeatedKey(key)
        obj[key] = value
    return obj


def not_json(constant):
    """parse_constant for json.loads: Python reads NaN, Infinity and -Infinity, JSON has none."""
    raise ValueError(f"{constant} is not a JSON value")


# Messages quote values from files, which may be huge (a 100 MiB name): cut them short.
_SHORT_REPR = reprlib.Repr()
_SHORT_REPR.maxstring = _SHORT_REPR.maxother = _SHORT_REPR.maxlong = 80
_SHORT_REPR.maxlist = _SHORT_REPR.maxdict = 8


def show(value):
    """repr() of a value read from a file, shortened with "..." past about 80 characters."""
    return _SHORT_REPR.repr(value)


def _cut(text, width=120):
    return text if len(text) <= width else text[: width - 3] + "..."
