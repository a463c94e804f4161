import pytest

from minillm.corpus import read_text_corpus


def test_blank_lines_are_skipped_and_trailing_space_removed(tmp_path):
    path = tmp_path / "c.txt"
    path.write_text("第一行  \n\n   \n第二行\n", encoding="utf-8")
    assert read_text_corpus(path) == ["第一行", "第二行"]


def test_a_file_that_is_not_utf8_names_the_file_and_the_byte_offset(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_bytes("好的".encode("utf-8") + b"\xff\xfe" + "文本".encode("utf-8"))
    with pytest.raises(ValueError, match=r"bad\.txt.*not UTF-8.*byte offset 6 \(0xff\)"):
        read_text_corpus(path)


def test_an_empty_corpus_says_so(tmp_path):
    path = tmp_path / "empty.txt"
    path.write_text("\n \n", encoding="utf-8")
    with pytest.raises(ValueError, match="empty.txt.*no text"):
        read_text_corpus(path)


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(ValueError, match="nope.txt.*does not exist"):
        read_text_corpus(tmp_path / "nope.txt")
