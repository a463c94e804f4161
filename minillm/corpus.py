"""A user's own text as a corpus: one document per line of a UTF-8 file."""

from __future__ import annotations

# The byte order mark some editors (Windows Notepad) write at the start of a UTF-8 file; it is
# not text, and left in it would become a token of the first document.
BOM = "\ufeff"
# The largest text file read. The whole text is tokenized in Python at about a million
# characters a second, so 64 MiB is already a minute of start-up; a larger file (or an endless
# one, such as /dev/zero) is refused after reading one byte more than this, not read to the end.
MAX_CORPUS_BYTES = 64 * 1024 * 1024


def read_text_corpus(path):
    """The non-blank lines of a UTF-8 text file, trailing whitespace removed.

    A file larger than MAX_CORPUS_BYTES is refused. A file that is not UTF-8 is refused with
    the byte offset of the first bad byte, so the user can find it (``head -c OFFSET FILE | tail -c 20``). A leading byte order mark is dropped.
    """
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_CORPUS_BYTES + 1)
    except FileNotFoundError:
        raise ValueError(f"corpus file {str(path)!r} does not exist") from None
    except IsADirectoryError:
        raise ValueError(f"corpus path {str(path)!r} is a directory, not a text file") from None
    except OSError as err:  # permissions, a broken disk, ...
        raise ValueError(f"corpus file {str(path)!r} cannot be read: {err.strerror}") from None
    if len(raw) > MAX_CORPUS_BYTES:
        raise ValueError(f"corpus file {str(path)!r} is larger than {MAX_CORPUS_BYTES // 2**20} "
                         "MiB (corpus.MAX_CORPUS_BYTES); minillm's models are tiny, train on a "
                         "part of it")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"corpus file {str(path)!r} is not UTF-8: byte offset {err.start} "
                         f"(0x{raw[err.start]:02x}) cannot be decoded") from None
    documents = [line.rstrip() for line in text.removeprefix(BOM).splitlines()]
    documents = [d for d in documents if d]
    if not documents:
        raise ValueError(f"corpus file {str(path)!r} has no text (every line is blank)")
    return documents
