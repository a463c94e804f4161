"""Hugging Face tokenizers in minillm (hf_tokenizers.py): GPT-2's and BART's byte-level BPE and
BERT's WordPiece against transformers' encodings, the pieces of each algorithm on examples worked
by hand, bad files, and minillm's tokenizer written as a tokenizer.json.

The fixtures (tests/fixtures/hf_tokenizers/, made by make_tokenizer_fixtures.py) hold tokenizers
trained with the tokenizers library and saved by transformers, and transformers' ids for 128
strings: the tests below need neither library. The tests marked "transformers" compare with
transformers itself on drawn strings, and skip without it.
"""

import json
import os
import re
import shutil

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from minillm import hf_tokenizers
from minillm.grammar import default_grammar
from minillm.hf_tokenizers import (
    AddedToken,
    TokenizerFileError,
    bert_normalize,
    bert_split,
    bpe,
    bytes_to_unicode,
    gpt2_split,
    load_tokenizer,
    longest_match_pattern,
    minillm_tokenizer_config,
    minillm_tokenizer_json,
    save_minillm_tokenizer,
    split_on_added_tokens,
    straddling_words,
    wordpiece,
)
from minillm.tokenizer import SPECIAL_TOKENS, Tokenizer

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "hf_tokenizers")
with open(os.path.join(FIXTURES, "expected.json"), encoding="utf-8") as _f:
    EXPECTED = json.load(_f)
STRINGS = EXPECTED["strings"]
# gpt2/ bart/ bert/ bert-cased/ as transformers 5 saves them; *-files/ the older layout of each
# (vocab.json + merges.txt or vocab.txt), which gives its twin's encodings.
FOLDERS = sorted(EXPECTED["folders"]) + sorted(EXPECTED["same_as"])
ARCH = {"gpt2": "gpt2", "bart": "bart", "bert": "bert", "bert-cased": "bert"}

# What drawn strings are made of: ASCII, Chinese (some characters no vocabulary has), accented
# letters precomposed and decomposed, punctuation, whitespace of many kinds, controls, emoji
# (with a skin tone, a flag, a joiner), and words: special tokens' text (also with whitespace
# around, which BART's <mask> swallows), contractions, words of the training text.
CHARS = ("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
         "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"
         "今天明天气很好我们去公园海边学校商店图书馆玩了漢字龍㈱"
         "éèêëàâäôöûüçñÉÜßσΣİ\u0301\u0308"
         "，。！？、「」“”—…"
         "    \t\n\r\x0b\x0c\x85\u00a0\u3000\u2028\u200b\x00\x1f\x7f\ufffd"
         "😀👍🏽🎉❤\ufe0f\u200d🇨🇳")
WORDS = ["<mask>", "[MASK]", "<|endoftext|>", "[CLS]", "<s>", " <mask>", "\t<mask> ",
         " [MASK]  ", " <|endoftext|>\n", "'s", "'re", "'ll", "weather", "today", "good",
         "ab" * 51]  # a word longer than WordPiece's 100 characters
# Each word is drawn as one private-use character, replaced by the word after drawing: drawing
# characters is three times faster for hypothesis than drawing from a list of strings.
STAND_INS = {0xE000 + k: w for k, w in enumerate(WORDS)}
texts = st.text(CHARS + "".join(map(chr, STAND_INS)), max_size=30).map(
    lambda s: s.translate(STAND_INS))


def fixture(name):
    return os.path.join(FIXTURES, name)


def expected(name):
    return EXPECTED["folders"][EXPECTED["same_as"].get(name, name)]


def mismatches(got, want, strings=STRINGS):
    """The strings on which two lists of results differ, with both results: an assertion's
    message that shows what went wrong."""
    return [(s, g, w) for s, g, w in zip(strings, got, want) if g != w][:5]


# ----------------------------------------------------------------------------------------------
# Against transformers' stored encodings


@pytest.mark.parametrize("name", FOLDERS)
def test_ids_equal_transformers_on_the_stored_strings(name):
    tok = load_tokenizer(fixture(name))
    want = expected(name)
    assert len(STRINGS) == len(want["ids"]) == 128
    got = [tok.encode(s) for s in STRINGS]
    assert got == want["ids"], mismatches(got, want["ids"])
    got = [tok.encode(s, add_special_tokens=True) for s in STRINGS]
    assert got == want["ids_with_specials"], mismatches(got, want["ids_with_specials"])


@pytest.mark.parametrize("name", FOLDERS)
def test_decode_and_special_ids_equal_transformers(name):
    tok = load_tokenizer(fixture(name))
    want = expected(name)
    got = [tok.decode(ids) for ids in want["ids"]]
    assert got == want["decoded"], mismatches(got, want["decoded"])
    assert {k: getattr(tok, k + "_id") for k in want["special_ids"]} == want["special_ids"]


@pytest.mark.parametrize("name", ["gpt2-files", "bert-files", "bert-cased-files"])
def test_a_folder_with_only_vocabulary_files_and_config_json(name, tmp_path):
    """A folder as the Hub has some (vocab files and config.json, no tokenizer_config.json):
    config.json's model_type names the tokenizer, which takes the class's defaults; the cased
    BERT's one setting moves to tokenizer_config.json."""
    folder = tmp_path / name
    shutil.copytree(fixture(name), folder)
    _hub_like(folder)
    if name == "bert-cased-files":
        (folder / "tokenizer_config.json").write_text('{"do_lower_case": false}')
    tok = load_tokenizer(folder)
    want = expected(name)
    got = [tok.encode(s, add_special_tokens=True) for s in STRINGS]
    assert got == want["ids_with_specials"], mismatches(got, want["ids_with_specials"])
    assert {k: getattr(tok, k + "_id") for k in want["special_ids"]} == want["special_ids"]


@pytest.mark.parametrize("name", ["gpt2", "bart"])
@given(text=texts)
def test_byte_level_decode_of_encode_is_the_text(name, text):
    tok = TOKENIZERS[name]
    assume(name != "bart" or "<mask>" not in text)  # <mask> swallows the spaces before it
    assert tok.decode(tok.encode(text)) == text


TOKENIZERS = {name: load_tokenizer(fixture(name)) for name in ARCH}


def test_byte_level_decode_of_part_of_a_character_is_the_replacement_character():
    tok = TOKENIZERS["gpt2"]
    first_byte = tok.vocab[bytes_to_unicode()["今".encode("utf-8")[0]]]  # 0xE4 of E4 BB 8A
    assert tok.decode([first_byte]) == "\ufffd"
    assert tok.decode([first_byte] + tok.encode("x")) == "\ufffdx"


def test_vocabulary_files_with_windows_line_ends(tmp_path):
    for name in ("bert-files", "gpt2-files"):
        shutil.copytree(fixture(name), tmp_path / name)
        for f in ("vocab.txt", "merges.txt"):
            if (tmp_path / name / f).exists():
                text = (tmp_path / name / f).read_text(encoding="utf-8")
                (tmp_path / name / f).write_bytes(text.replace("\n", "\r\n").encode("utf-8"))
        tok = load_tokenizer(tmp_path / name)
        assert [tok.encode(s) for s in STRINGS] == expected(name)["ids"]


def test_add_prefix_space_puts_a_space_before_each_piece(tmp_path):
    """GPT-2 with add_prefix_space: each piece of text between added tokens is read as if a
    space came before it (unless one does)."""
    shutil.copytree(fixture("gpt2"), tmp_path / "gpt2")
    _edit_json("tokenizer_config.json", _set(["add_prefix_space"], True))(tmp_path / "gpt2")
    tok, plain = load_tokenizer(tmp_path / "gpt2"), TOKENIZERS["gpt2"]
    assert tok.encode("hello") == plain.encode(" hello") != plain.encode("hello")
    assert tok.encode(" hello") == plain.encode(" hello")
    eot = plain.eos_id
    assert tok.encode("a<|endoftext|>b") == plain.encode(" a") + [eot] + plain.encode(" b")
    assert tok.encode("") == []


def test_merges_txt_without_its_version_line(tmp_path):
    shutil.copytree(fixture("gpt2-files"), tmp_path / "gpt2-files")
    path = tmp_path / "gpt2-files" / "merges.txt"
    lines = path.read_text(encoding="utf-8").split("\n")
    assert lines[0].startswith("#version")
    path.write_text("\n".join(lines[1:]), encoding="utf-8")
    tok = load_tokenizer(tmp_path / "gpt2-files")
    assert [tok.encode(s) for s in STRINGS] == expected("gpt2-files")["ids"]


def test_bpe_drops_a_symbol_it_has_no_id_for():
    """A byte-level BPE without an unknown token leaves out a byte its vocabulary lacks, as
    tokenizers does (the fixtures have all 256, so it never happens there)."""
    tok = hf_tokenizers.HFTokenizer(model="bpe", vocab={"a": 0, "b": 1, "ab": 2},
                                    merges=[("a", "b")], decoder="byte_level")
    assert tok.encode("abcab") == [2, 2]


# ----------------------------------------------------------------------------------------------
# The algorithms' pieces, on examples worked by hand


def test_bytes_to_unicode_is_gpt2s_table():
    table = bytes_to_unicode()
    assert sorted(table) == list(range(256))
    assert len(set(table.values())) == 256
    assert all(ch.isprintable() and not ch.isspace() for ch in table.values())
    for b in [*range(0x21, 0x7F), *range(0xA1, 0xAD), *range(0xAE, 0x100)]:
        assert table[b] == chr(b)  # printable Latin-1 stands for itself
    # The 68 others from U+0100 in byte order: 0x00..0x20 first, so the space is the 33rd.
    assert table[0x00] == "\u0100" and table[0x0A] == "Ċ" and table[0x20] == "Ġ"
    assert table[0x7F] == "\u0121" and table[0xA0] == "\u0142" and table[0xAD] == "\u0143"


@pytest.mark.parametrize("text, pieces", [
    ("Hello  world's 12€", ["Hello", " ", " world", "'s", " 12", "€"]),
    ("a\n\nb", ["a", "\n", "\n", "b"]),  # the last whitespace before a letter stands alone
    ("a  b", ["a", " ", " b"]),  # ... unless it is a space: then it starts the word
    ("x  ", ["x", "  "]),  # whitespace at the end stays together
    ("can't I'M", ["can", "'t", " I", "'", "M"]),  # contractions are lower-case only
    (" 'll", [" '", "ll"]),  # the optional space goes with the punctuation
    ("3.14", ["3", ".", "14"]),
    ("e\u0301t\u00e9", ["e", "\u0301", "t\u00e9"]),  # a combining mark is not a letter
    ("a\x1c\x1cb", ["a", "\x1c\x1c", "b"]),  # U+001C is not whitespace (str.isspace says so)
    ("今天。", ["今天", "。"]),
    # \s is Unicode's White_Space: U+0085, U+3000 and U+00A0 are, and only " " joins a word
    ("x\x85\u3000\u00a0y", ["x", "\x85\u3000", "\u00a0", "y"]),
])
def test_gpt2_split_examples(text, pieces):
    assert gpt2_split(text) == pieces
    assert "".join(gpt2_split(text)) == text


def test_bpe_merges_the_lowest_rank_first_and_every_occurrence():
    ranks = {("Ġ", "l"): 0, ("o", "w"): 1, ("Ġl", "ow"): 2, ("e", "r"): 3}
    assert bpe("Ġlower", ranks) == ["Ġlow", "er"]
    assert bpe("owow", {("o", "w"): 0, ("ow", "ow"): 1}) == ["owow"]
    # (a, a) twice over "aaa": left to right, the first pair merges and the second is gone
    assert bpe("aaa", {("a", "a"): 0}) == ["aa", "a"]
    # rank, not position: (b, c) merges before (a, b)
    assert bpe("abc", {("b", "c"): 0, ("a", "b"): 1}) == ["a", "bc"]
    assert bpe("x", {}) == ["x"] and bpe("xy", {}) == ["x", "y"]


def test_wordpiece_greedy_longest_match_first():
    vocab = {"un", "##aff", "##able", "u", "##n", "##a"}
    assert wordpiece("unaffable", vocab) == ["un", "##aff", "##able"]
    assert wordpiece("una", vocab) == ["un", "##a"]
    assert wordpiece("unx", vocab) == ["[UNK]"]  # nothing matches at x: the whole word
    assert wordpiece("u" + "n" * 99, vocab) == ["un"] + ["##n"] * 98
    assert wordpiece("u" + "n" * 100, vocab) == ["[UNK]"]  # 101 characters > 100
    assert wordpiece("ab", {"a", "b"}, prefix="") == ["a", "b"]


def test_bert_normalize_examples():
    assert bert_normalize("Héllo\tWORLD\x00!") == "hello world!"
    assert bert_normalize("Héllo", strip_accents=False, lowercase=False) == "Héllo"
    assert bert_normalize("Héllo", strip_accents=False) == "héllo"
    assert bert_normalize("ΣΑΣ") == "σασ"  # one character at a time: no final ς
    assert bert_normalize("今天ok") == " 今  天 ok"
    assert bert_normalize("今", handle_chinese_chars=False) == "今"
    # tokenizers' ranges (which transformers runs) start CJK Extension E at U+2B920, not U+2B820
    assert bert_normalize("a\U0002B820b\U0002B920") == "a\U0002B820b \U0002B920 "
    # Controls go, even those that are also whitespace; other whitespace becomes a space.
    assert bert_normalize("a\x0bb\x85c\u200bd\u3000e\u2028f") == "abcd e f"
    assert bert_normalize("a\x0bb", clean_text=False) == "a\x0bb"


def test_bert_split_examples():
    assert bert_split("Hello, world!") == ["Hello", ",", "world", "!"]
    assert bert_split("  a$b^c  ") == ["a", "$", "b", "^", "c"]  # ASCII symbols are punctuation
    assert bert_split("x\u3000y。z") == ["x", "y", "。", "z"]
    assert bert_split("") == [] and bert_split(" \n ") == []


def test_split_on_added_tokens_examples():
    mask = AddedToken("<mask>", 9, lstrip=True)
    eot = AddedToken("<e>", 7)
    tokens = {"<mask>": mask, "<e>": eot}
    assert split_on_added_tokens("hello <mask> world", tokens) == ["hello", mask, " world"]
    assert split_on_added_tokens("<e>a<e><e>", tokens) == [eot, "a", eot, eot]
    assert split_on_added_tokens(" \t<mask>", tokens) == [mask]
    # the leftmost match first; of two at one place, the longer
    longer = AddedToken("<e><e>", 8)
    both = {"<e>": eot, "<e><e>": longer}
    assert split_on_added_tokens("x<e><e><e>", both) == ["x", longer, eot]
    rstrip = AddedToken("<r>", 5, rstrip=True)
    assert split_on_added_tokens("a<r>  b", {"<r>": rstrip}) == ["a", rstrip, "b"]
    assert split_on_added_tokens("", tokens) == []


# ----------------------------------------------------------------------------------------------
# Bad files: one TokenizerFileError naming the file and the field


def _edit_json(name, edit):
    def apply(folder):
        path = os.path.join(folder, name)
        with open(path, encoding="utf-8") as f:
            obj = json.load(f)
        edit(obj)
        with open(path, "w", encoding="utf-8") as f:
            json.dump(obj, f, ensure_ascii=False)
    return apply


def _write(name, text):
    def apply(folder):
        with open(os.path.join(folder, name), "w", encoding="utf-8", newline="") as f:
            f.write(text)
    return apply


def _replace_line(name, n, text):
    def apply(folder):
        path = os.path.join(folder, name)
        with open(path, encoding="utf-8", newline="") as f:
            lines = f.read().split("\n")
        lines[n] = text
        with open(path, "w", encoding="utf-8", newline="") as f:
            f.write("\n".join(lines))
    return apply


def _set(path, value):
    """An edit of a JSON object: obj[path[0]][path[1]]... = value."""
    def edit(obj):
        for key in path[:-1]:
            obj = obj[key]
        obj[path[-1]] = value
    return edit


def _generic(edit):
    """Make a folder's tokenizer_config.json name PreTrainedTokenizerFast (so that tokenizer.json
    alone decides), then edit its tokenizer.json."""
    def apply(folder):
        _edit_json("tokenizer_config.json", _set(["tokenizer_class"], "PreTrainedTokenizerFast"))(
            folder)
        _edit_json("tokenizer.json", edit)(folder)
    return apply


def _hub_like(folder):
    """Leave a folder's vocabulary files and a config.json, as some Hub folders are."""
    for name in ("special_tokens_map.json", "tokenizer_config.json"):
        os.remove(os.path.join(folder, name))
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump({"model_type": os.path.basename(folder).split("-")[0]}, f)


BAD_FILES = [
    ("gpt2", _edit_json("tokenizer.json", _set(["model", "vocab", "hello"], -1)),
     ["tokenizer.json", "model.vocab['hello']", "-1"]),
    ("gpt2", _edit_json("tokenizer.json", _set(["model", "vocab", "twice"], 5)),
     ["tokenizer.json", "model.vocab gives the id 5"]),
    ("gpt2", _edit_json("tokenizer.json", _set(["model", "merges", 3], ["Ġ", "zzz"])),
     ["tokenizer.json", "model.merges[3]", "'zzz'", "not in the vocabulary"]),
    ("gpt2", _edit_json("tokenizer.json", _set(["model", "merges", 0], "a b c")),
     ["tokenizer.json", "model.merges[0]", "not a pair of tokens"]),
    ("gpt2", _edit_json("tokenizer.json", _set(["model", "type"], "WordPiece")),
     ["tokenizer.json", "model.type", "BPE"]),
    ("gpt2", _edit_json("tokenizer.json", _set(["added_tokens", 0, "single_word"], True)),
     ["tokenizer.json", "added_tokens[0].single_word"]),
    ("gpt2", _edit_json("tokenizer.json", _set(["added_tokens", 0, "id"], "x")),
     ["tokenizer.json", "added_tokens[0].id"]),
    ("gpt2", _write("tokenizer.json", '{"model": {}, "model": {}}'),
     ["tokenizer.json", "the key 'model' appears twice"]),
    ("gpt2", _write("tokenizer.json", "[1, 2]"), ["tokenizer.json", "not an object"]),
    ("gpt2", _edit_json("tokenizer_config.json", _set(["tokenizer_class"], "T5Tokenizer")),
     ["tokenizer_config.json", "tokenizer_class 'T5Tokenizer' is not supported"]),
    ("gpt2", _edit_json("tokenizer_config.json", _set(["add_prefix_space"], "yes")),
     ["tokenizer_config.json", "add_prefix_space is 'yes', not a bool"]),
    ("gpt2", _edit_json("tokenizer_config.json", _set(["eos_token"], "<|end|>")),
     ["tokenizer_config.json: eos_token", "'<|end|>'", "not in the vocabulary"]),
    ("gpt2", _edit_json("tokenizer_config.json", _set(["eos_token"], 3)),
     ["tokenizer_config.json", "eos_token is 3, not a token"]),
    ("gpt2-files", _replace_line("merges.txt", 4, "Ġ t h"),
     ["merges.txt line 5", "'Ġ t h' is not two tokens"]),
    ("gpt2-files", _replace_line("merges.txt", 2, "Ġ zz"),
     ["merges.txt line 3", "'zz'", "not in the vocabulary"]),
    ("gpt2-files", lambda folder: os.remove(os.path.join(folder, "merges.txt")),
     ["has neither tokenizer.json nor merges.txt"]),
    ("bart-files", _edit_json("special_tokens_map.json", _set(["mask_token"], {"lstrip": True})),
     ["special_tokens_map.json", "mask_token", "not a token"]),
    ("bert", _edit_json("tokenizer_config.json", _set(["do_lower_case"], None)),
     ["tokenizer_config.json", "do_lower_case is None, not a bool"]),
    ("bert", _edit_json("tokenizer_config.json", _set(["strip_accents"], 1)),
     ["tokenizer_config.json", "strip_accents is 1, not a bool or null"]),
    ("bert-files", lambda folder: open(os.path.join(folder, "vocab.txt"), "wb").write(b"a\xff\n"),
     ["vocab.txt", "is not UTF-8 (byte 1)"]),
    ("bert-files", _write("vocab.txt", "[CLS]\na\n"),
     ["special_tokens_map.json: unk_token is '[UNK]'", "not in the vocabulary"]),
    ("bert-files", lambda folder: (_hub_like(folder), _write("vocab.txt", "[CLS]\na\n")(folder)),
     ["bert-files: the vocabulary has no [UNK]"]),
    ("bert-files", lambda folder: os.remove(os.path.join(folder, "vocab.txt")),
     ["has neither tokenizer.json nor vocab.txt"]),
    ("bert-files", lambda folder: os.mkdir(os.path.join(folder, "tokenizer.json")),
     ["tokenizer.json", "is a folder, not a regular file"]),
    ("bert", _generic(lambda tj: None), []),
    ("bert", _generic(_set(["pre_tokenizer"], {"type": "Metaspace"})),
     ["tokenizer.json", "WordPiece", "BertPreTokenizer"]),
    ("bert", _generic(_set(["model", "type"], "Unigram")),
     ["tokenizer.json", "model.type 'Unigram' is not supported"]),
    ("bert", _generic(_set(["post_processor", "type"], "Other")),
     ["tokenizer.json", "post_processor.type 'Other' is not supported"]),
    ("bert", _generic(_set(["model", "unk_token"], "<unk>")),
     ["tokenizer.json", "model.unk_token '<unk>' is not in the vocabulary"]),
]


@pytest.mark.parametrize("name, damage, words", BAD_FILES)
def test_a_bad_file_is_one_error_naming_the_file_and_field(name, damage, words, tmp_path):
    folder = tmp_path / name
    shutil.copytree(fixture(name), folder)
    damage(str(folder))
    if not words:  # a sound variation: PreTrainedTokenizerFast reads tokenizer.json alone
        tok = load_tokenizer(folder)
        got = [tok.encode(s, add_special_tokens=True) for s in STRINGS]
        assert got == expected(name)["ids_with_specials"]
        return
    with pytest.raises(TokenizerFileError) as info:
        load_tokenizer(folder)
    message = str(info.value)
    assert "\n" not in message
    for word in words:
        assert word in message, message


def test_files_too_large_are_refused_before_they_are_read(tmp_path, monkeypatch):
    monkeypatch.setattr(hf_tokenizers, "MAX_TOKENIZER_BYTES", 1000)
    with pytest.raises(TokenizerFileError, match=r"tokenizer\.json.*more than the 1,000"):
        load_tokenizer(fixture("gpt2"))
    monkeypatch.undo()
    monkeypatch.setattr(hf_tokenizers, "MAX_CONFIG_BYTES", 100)
    with pytest.raises(TokenizerFileError, match=r"tokenizer_config\.json.*more than the 100"):
        load_tokenizer(fixture("bert"))


def test_not_a_folder_and_no_tokenizer_files(tmp_path):
    with pytest.raises(TokenizerFileError, match="is not a folder"):
        load_tokenizer(tmp_path / "nothing")
    with pytest.raises(TokenizerFileError, match="no tokenizer_config.json tokenizer_class nor "
                                                 "config.json model_type"):
        load_tokenizer(tmp_path)
    (tmp_path / "config.json").write_text('{"model_type": "t5"}')
    with pytest.raises(TokenizerFileError, match="model_type is 't5'"):
        load_tokenizer(tmp_path)


# ----------------------------------------------------------------------------------------------
# minillm's tokenizer as a tokenizer.json

GRAMMAR = default_grammar().tokenizer()
# A vocabulary from a text of many kinds of characters: regex syntax, brackets, a backslash,
# an emoji outside the BMP, a combining mark, a tab, a NUL. Brackets and angle brackets only
# after spaces, so that no word runs into a special token's text (straddling_words is empty).
WIDE_TEXT = ("今天天气很好 [x] <y> a.b*c+d?e|f(g)h{i}j^k$l \\m 😀😀 e\u0301e\u0301 t\tt \x00z "
             "[x] <y> 今天 a.b*c+d?e|f(g)h{i}j^k$l \\m\n") * 3
WIDE = Tokenizer.from_text(WIDE_TEXT, min_count=2)


def known_texts(tok, unknown=""):
    """Texts of a tokenizer's words and characters, its special tokens' text, and ``unknown``."""
    pieces = list(tok.vocab) + list(unknown)
    return st.lists(st.sampled_from(pieces), max_size=20).map("".join)


def test_the_export_holds_minillm_vocabulary_and_special_tokens():
    for tok in (GRAMMAR, WIDE):
        tj = minillm_tokenizer_json(tok)
        assert tj["model"] == {"type": "WordLevel", "vocab": tok.id_of, "unk_token": "[UNK]"}
        assert [(a["id"], a["content"]) for a in tj["added_tokens"]] == list(
            enumerate(tok.vocab[:tok.first_ordinary_id]))
        assert all(a["special"] and not a["normalized"] for a in tj["added_tokens"])
        config = minillm_tokenizer_config(tok)
        for name, token in zip(("pad", "unk", "bos", "eos", "cls", "sep", "mask"), SPECIAL_TOKENS):
            assert config[name + "_token"] == token
        assert config["extra_special_tokens"] == [f"<extra_id_{k}>" for k in range(20)]


def _as_python_regex(pattern):
    """longest_match_pattern in Python's re syntax: \\x{...} -> \\U........"""
    return re.sub(r"\\x\{([0-9a-f]+)\}", lambda m: "\\U%08x" % int(m.group(1), 16), pattern)


@pytest.mark.parametrize("tok", [GRAMMAR, WIDE], ids=["grammar", "wide"])
@given(data=st.data())
def test_the_export_pattern_cuts_text_as_minillm_longest_match(tok, data):
    """The pattern, run by a regex engine that tries alternatives in order (Python's re, as
    Oniguruma), cuts a text without special tokens exactly where minillm does; what it cuts
    out that the vocabulary lacks is minillm's [UNK]."""
    ordinary = tok.vocab[tok.first_ordinary_id:]
    text = data.draw(st.lists(st.sampled_from(ordinary + list("X\n龍")), max_size=20).map("".join))
    pieces = re.findall(_as_python_regex(longest_match_pattern(tok)), text)
    assert "".join(pieces) == text
    assert [p if p in tok.id_of else "[UNK]" for p in pieces] == tok.tokenize(text)


def test_straddling_words():
    assert straddling_words(GRAMMAR) == [] and straddling_words(WIDE) == []
    tok = Tokenizer(["x[", "[M", "[MASK]x", "K]", "a<", "<e", "y<extra", "ab"])
    assert straddling_words(tok) == ["[MASK]x", "a<", "x[", "y<extra"]


def test_save_minillm_tokenizer_writes_the_two_files(tmp_path):
    save_minillm_tokenizer(WIDE, tmp_path / "out")
    with open(tmp_path / "out" / "tokenizer.json", encoding="utf-8") as f:
        assert json.load(f) == minillm_tokenizer_json(WIDE)
    with open(tmp_path / "out" / "tokenizer_config.json", encoding="utf-8") as f:
        assert json.load(f) == minillm_tokenizer_config(WIDE)


# ----------------------------------------------------------------------------------------------
# Against transformers itself (optional)

@pytest.fixture(scope="module")
def transformers_tokenizers(tmp_path_factory):
    """(name, minillm's tokenizer, transformers' AutoTokenizer) for each fixture folder, and for
    variants made here: GPT-2 with add_prefix_space, with add_bos_token and add_eos_token (in both
    layouts), and GPT-2 and BERT folders of the Hub's kind (vocabulary files and config.json
    only). The four of transformers 5's layout come first."""
    transformers = pytest.importorskip("transformers")
    folders = {name: fixture(name) for name in FOLDERS}
    base = tmp_path_factory.mktemp("variants")
    shutil.copytree(fixture("gpt2"), base / "gpt2-prefix")
    _edit_json("tokenizer_config.json", _set(["add_prefix_space"], True))(base / "gpt2-prefix")
    for name in ("gpt2", "gpt2-files"):  # used without tokenizer.json, ignored with it
        shutil.copytree(fixture(name), base / (name + "-bos-eos"))
        for key in ("add_bos_token", "add_eos_token"):
            _edit_json("tokenizer_config.json", _set([key], True))(base / (name + "-bos-eos"))
    for name in ("gpt2-files", "bert-files"):
        shutil.copytree(fixture(name), base / (name + "-hub"))
        _hub_like(base / (name + "-hub"))
    folders.update({p.name: str(p) for p in base.iterdir()})
    auto = transformers.AutoTokenizer.from_pretrained
    return [(name, load_tokenizer(path), auto(path)) for name, path in folders.items()]


def check_ids(tokenizers, batch):
    for name, ours, theirs in tokenizers:
        want = theirs(batch)["input_ids"]
        got = [ours.encode(s, add_special_tokens=True) for s in batch]
        assert got == want, (name, mismatches(got, want, batch))


# 1000 examples of 10 strings: issue 13's 10^4 drawn strings, for each of the four tokenizers.
@settings(max_examples=1000)
@given(batch=st.lists(texts, min_size=10, max_size=10))
def test_ids_equal_transformers_on_drawn_strings(transformers_tokenizers, batch):
    check_ids(transformers_tokenizers[:4], batch)


# The other layouts and settings, on 10^3 drawn strings.
@settings(max_examples=100)
@given(batch=st.lists(texts, min_size=10, max_size=10))
def test_ids_equal_transformers_in_every_layout(transformers_tokenizers, batch):
    check_ids(transformers_tokenizers[4:], batch)


def test_the_stored_encodings_are_transformers_own(transformers_tokenizers):
    """The fixtures' expected.json is what the transformers installed here computes."""
    for name, _, theirs in transformers_tokenizers:
        if name in EXPECTED["folders"] or name in EXPECTED["same_as"]:
            assert [theirs.encode(s, add_special_tokens=False) for s in STRINGS] == \
                expected(name)["ids"], name


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """minillm's grammar and WIDE tokenizers, exported and loaded by AutoTokenizer."""
    transformers = pytest.importorskip("transformers")
    out = []
    for name, tok in (("grammar", GRAMMAR), ("wide", WIDE)):
        folder = tmp_path_factory.mktemp(name)
        save_minillm_tokenizer(tok, folder)
        out.append((tok, transformers.AutoTokenizer.from_pretrained(folder)))
    return out


@settings(max_examples=200)
@given(data=st.data())
def test_an_export_gives_minillm_ids_in_transformers(exported, data):
    for tok, theirs in exported:
        text = data.draw(known_texts(tok, unknown="X\n龍"))
        ids = tok.encode(text)
        assert theirs(text)["input_ids"] == ids
        assert theirs.decode(ids) == tok.decode(ids)


def test_an_export_maps_the_special_tokens(exported):
    for tok, theirs in exported:
        assert (theirs.pad_token_id, theirs.unk_token_id, theirs.bos_token_id,
                theirs.eos_token_id, theirs.cls_token_id, theirs.sep_token_id,
                theirs.mask_token_id) == tuple(range(7))
        assert theirs.convert_tokens_to_ids("<extra_id_19>") == tok.sentinel_id(19)
        assert len(theirs) == len(tok)


def test_a_straddling_word_is_where_transformers_cuts_otherwise(tmp_path):
    """The one documented difference: minillm's longest match takes the word x[ in x[MASK]],
    transformers takes [MASK] first."""
    transformers = pytest.importorskip("transformers")
    tok = Tokenizer(["x[", "MASK]"])
    save_minillm_tokenizer(tok, tmp_path)
    theirs = transformers.AutoTokenizer.from_pretrained(tmp_path)
    assert tok.tokenize("x[MASK]") == ["x[", "MASK]"]
    assert theirs.convert_ids_to_tokens(theirs("x[MASK]")["input_ids"]) == ["x", "[MASK]"]
    assert straddling_words(tok) == ["x["]
