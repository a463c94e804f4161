"""A user's own text as a corpus: one document per line of a UTF-8 file."""

from __future__ import annotations

import hashlib

from .files import read_bytes

# The byte order mark some editors (Windows Notepad) write at the start of a UTF-8 file; it is
# not text, and left in it would become a token. Files joined with ``cat`` bring theirs along
# to the start of a later line, and inside a line U+FEFF is no text either (its other use, a
# zero-width no-break space, is deprecated since Unicode 3.2 in favour of U+2060), so every
# one is dropped.
BOM = "\ufeff"
# The largest text file read (its size is checked before it is read). Building the vocabulary
# and tokenizing the text hold Python objects of about 30 bytes a byte of text, and take about
# 15 s for these 16 MiB: minillm's models are tiny, and a larger text teaches them no more.
MAX_CORPUS_BYTES = 16 * 1024 * 1024
# Memory held while a text is read into documents and token ids, per byte of the file
# (measured: a 60 MB file of random Chinese characters peaked at about 2 GB); a bound for
# memory.check_fits.
CORPUS_BYTES_PER_BYTE = 40


def read_text_corpus(path):
    """The non-blank lines of a UTF-8 text file, trailing whitespace removed.

    Anything but a regular file (a folder, a FIFO, a device such as /dev/zero) is refused, and
    so is a file larger than MAX_CORPUS_BYTES, before it is read. A file that is not UTF-8 is
    refused with the byte offset of the first bad byte, so the user can find it
    (``head -c OFFSET FILE | tail -c 20``). Byte order marks are dropped, wherever they are.
    """
    return read_corpus_file(path)[0]


def read_corpus_file(path):
    """read_text_corpus's documents, and the SHA-256 (hex) of the bytes they were read from: how
    a resumed run knows its --data file again, from one read of the file."""
    try:
        raw = read_bytes(path, "corpus file", MAX_CORPUS_BYTES)  # a regular file, size checked
    except FileNotFoundError:
        raise ValueError(f"corpus file {str(path)!r} does not exist") from None
    except OSError as err:  # permissions, a broken disk, ...
        raise ValueError(f"corpus file {str(path)!r} cannot be read: {err.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"corpus file {str(path)!r} is not UTF-8: byte offset {err.start} "
                         f"(0x{raw[err.start]:02x}) cannot be decoded") from None
    documents = [line.rstrip() for line in text.replace(BOM, "").splitlines()]
    documents = [d for d in documents if d]
    if not documents:
        raise ValueError(f"corpus file {str(path)!r} has no text (every line is blank)")
    return documents, hashlib.sha256(raw).hexdigest()
