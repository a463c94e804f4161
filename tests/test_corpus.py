"""A user's corpus: one document per line of a UTF-8 file; every refusal names the file."""

import pytest

from minillm.corpus import read_text_corpus


def test_blank_lines_are_skipped_and_trailing_space_removed(tmp_path):
    path = tmp_path / "c.txt"
    path.write_text("第一行  \n\n   \n  第二行\r\n", encoding="utf-8")
    assert read_text_corpus(path) == ["第一行", "  第二行"]  # leading space is text
    assert read_text_corpus(str(path)) == ["第一行", "  第二行"]


def test_a_byte_order_mark_is_not_text(tmp_path):
    path = tmp_path / "bom.txt"
    path.write_bytes(b"\xef\xbb\xbf" + "今天\n明天\n".encode("utf-8"))
    assert read_text_corpus(path) == ["今天", "明天"]


def test_the_byte_order_marks_of_files_joined_with_cat_are_not_text(tmp_path):
    """`cat a.txt b.txt` of two files saved with a BOM puts b's BOM at the start of a line."""
    from minillm.tokenizer import Tokenizer

    path = tmp_path / "joined.txt"
    path.write_bytes(2 * (b"\xef\xbb\xbf" + "今天\n".encode("utf-8")))
    assert read_text_corpus(path) == ["今天", "今天"]
    assert all("\ufeff" not in token for token in Tokenizer.from_file(path).vocab)


def test_a_file_that_is_not_utf8_names_the_file_and_the_byte_offset(tmp_path):
    path = tmp_path / "bad.txt"
    # 好的 is 6 bytes of UTF-8, so the first bad byte, 0xff, is at offset 6.
    path.write_bytes("好的".encode("utf-8") + b"\xff\xfe" + "文本".encode("utf-8"))
    with pytest.raises(ValueError, match=r"bad\.txt.*not UTF-8.*byte offset 6 \(0xff\)"):
        read_text_corpus(path)


def test_a_gbk_file_is_refused_at_its_first_byte(tmp_path):
    path = tmp_path / "gbk.txt"
    path.write_bytes("ab\n今天".encode("gbk"))  # 今 in GBK is 0xbd 0xf1: offset 3
    with pytest.raises(ValueError, match=r"gbk\.txt.*byte offset 3 \(0xbd\)"):
        read_text_corpus(path)


def test_an_empty_corpus_says_so(tmp_path):
    path = tmp_path / "empty.txt"
    path.write_text("\n \n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"empty\.txt.*no text"):
        read_text_corpus(path)
    (tmp_path / "zero.txt").write_bytes(b"")
    with pytest.raises(ValueError, match=r"zero\.txt.*no text"):
        read_text_corpus(tmp_path / "zero.txt")


def test_a_missing_file_or_a_directory_is_named(tmp_path):
    with pytest.raises(ValueError, match=r"nope\.txt.*does not exist"):
        read_text_corpus(tmp_path / "nope.txt")
    with pytest.raises(ValueError, match="is a folder, not a regular file"):
        read_text_corpus(tmp_path)
