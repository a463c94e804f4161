"""The word tokenizer: longest match, specials, round trips, unknown characters."""

import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from minillm.grammar import default_grammar
from minillm.tokenizer import (
    BOS_ID,
    CLS_ID,
    EOS_ID,
    MASK_ID,
    PAD_ID,
    SEP_ID,
    SPECIAL_TOKENS,
    UNK_ID,
    Tokenizer,
    sentinel,
)

TOK = default_grammar().tokenizer()
KNOWN_PIECES = list(TOK.vocab)  # every token string, specials and sentinels included
KNOWN_CHARS = sorted(t for t in TOK.vocab if len(t) == 1)  # the single-character fallbacks
RESERVED = list(TOK.vocab[: TOK.first_ordinary_id])  # specials and sentinels
CHARS_OF_ANY_TOKEN = {ch for t in TOK.vocab for ch in t}


def reference_tokenize(tok, text):
    """A slow oracle: at each position, compare every token of the vocabulary with the text and
    take the longest that matches; [UNK] for one character when none does."""
    out, i = [], 0
    while i < len(text):
        matches = [t for t in tok.vocab if text.startswith(t, i)]
        best = max(matches, key=len, default=None)
        out.append(best if best is not None else "[UNK]")
        i += len(best) if best is not None else 1
    return out


def test_specials_and_sentinels_have_fixed_ids():
    assert TOK.vocab[:7] == list(SPECIAL_TOKENS)
    assert (PAD_ID, UNK_ID, BOS_ID, EOS_ID, CLS_ID, SEP_ID, MASK_ID) == tuple(range(7))
    for k in range(TOK.n_sentinels):  # <extra_id_k> right after the specials, k = 0, 1, ...
        assert TOK.sentinel_id(k) == 7 + k
        assert TOK.vocab[7 + k] == sentinel(k) == f"<extra_id_{k}>"
    assert TOK.n_sentinels == 20 and TOK.first_ordinary_id == 27
    assert all(TOK.is_special(i) for i in range(TOK.first_ordinary_id))


def test_ordinary_ids_exclude_every_special_and_sentinel():
    ordinary = TOK.ordinary_ids
    assert ordinary.dtype.kind == "i"
    assert not any(TOK.is_special(int(i)) for i in ordinary)
    assert not {TOK.vocab[i] for i in ordinary} & set(RESERVED)
    assert set(ordinary.tolist()) | set(range(TOK.first_ordinary_id)) == set(range(len(TOK)))
    # Another number of sentinels moves the ordinary tokens, and ordinary_ids with them.
    small = Tokenizer(["今天", "天气"], n_sentinels=3)
    assert small.vocab[7:10] == [sentinel(0), sentinel(1), sentinel(2)]
    assert [small.vocab[i] for i in small.ordinary_ids] == ["今", "今天", "天", "天气", "气"]


def test_the_default_vocabulary_is_deterministic_and_has_164_tokens():
    # walkthrough.md quotes V = 164 (log 164 = 5.10, the loss of an untrained model).
    again = default_grammar().tokenizer()
    assert again.vocab == TOK.vocab and len(TOK) == 164
    ordinary = TOK.vocab[TOK.first_ordinary_id:]
    assert ordinary == sorted(set(ordinary))


def test_longest_match_keeps_the_tutorials_words_whole():
    assert TOK.tokenize("天气") == ["天气"]
    assert TOK.tokenize("今天天气") == ["今天", "天气"]
    assert TOK.tokenize("今天天气很好，我们去") == ["今天", "天气", "很好", "，", "我们", "去"]
    assert TOK.tokenize("今天[MASK]很好") == ["今天", "[MASK]", "很好"]
    assert TOK.tokenize("<extra_id_1>我<extra_id_12>") == ["<extra_id_1>", "我", "<extra_id_12>"]
    assert TOK.encode("今天", add_bos=True, add_eos=True) == [BOS_ID, TOK.id_of["今天"], EOS_ID]


def test_a_single_character_is_the_fallback():
    # 天 alone is not a word of the lexicon, but it is a character of 今天 and 天气.
    assert TOK.tokenize("天") == ["天"]
    assert TOK.tokenize("气今") == ["气", "今"]


@given(st.lists(st.sampled_from(KNOWN_PIECES), max_size=30))
def test_decode_encode_is_the_identity_on_known_text(pieces):
    text = "".join(pieces)
    assert TOK.decode(TOK.encode(text)) == text


@given(st.lists(st.sampled_from(KNOWN_CHARS) | st.sampled_from(RESERVED), max_size=40))
def test_decode_encode_is_the_identity_on_known_characters_and_literal_specials(pieces):
    text = "".join(pieces)
    ids = TOK.encode(text)
    assert TOK.decode(ids) == text
    assert UNK_ID not in ids or "[UNK]" in pieces


@given(st.text(max_size=50))
def test_any_text_is_cut_as_the_slow_oracle_cuts_it_and_never_raises(text):
    tokens = TOK.tokenize(text)
    assert tokens == reference_tokenize(TOK, text)
    ids = TOK.encode(text)
    assert ids == [TOK.id_of[t] for t in tokens]
    assert all(0 <= i < len(TOK) for i in ids)


@given(st.text(st.characters().filter(lambda ch: ch not in CHARS_OF_ANY_TOKEN), max_size=30))
def test_unknown_characters_become_one_unk_each(text):
    # No token holds any of these characters, so each one is an [UNK] of its own.
    assert TOK.encode(text) == [UNK_ID] * len(text)


def test_unknown_characters_between_known_words():
    assert TOK.tokenize("今天☃天气") == ["今天", "[UNK]", "天气"]
    assert TOK.decode(TOK.encode("今天☃☃")) == "今天[UNK][UNK]"


def test_decode_can_drop_special_tokens():
    ids = TOK.encode("[CLS]今天[MASK]<extra_id_0>[SEP]")
    assert TOK.decode(ids, skip_special=True) == "今天"
    assert TOK.decode(np.array(ids)) == "[CLS]今天[MASK]<extra_id_0>[SEP]"


def test_a_vocabulary_from_a_users_text_round_trips_it():
    text = "小猫喜欢吃鱼。小狗喜欢吃肉。小猫喜欢睡觉。"
    tok = Tokenizer.from_text(text, min_count=2)
    # 喜欢 3 times, 欢吃 2, 小猫 2: words; 吃鱼 once: not a word.
    assert {"喜欢", "欢吃", "小猫"} <= set(tok.id_of) and "吃鱼" not in tok.id_of
    assert tok.decode(tok.encode(text)) == text
    assert Tokenizer.from_text(text, min_count=2).vocab == tok.vocab  # deterministic
    assert Tokenizer.from_text(text, min_count=2, max_words=1).vocab == Tokenizer(
        sorted(set(text)) + ["喜欢"]).vocab  # the most frequent pair only
    mixed = "we like 天气 very much.\tTabs, too!"  # spaces and tabs are characters too
    tok = Tokenizer.from_text(mixed)
    assert tok.decode(tok.encode(mixed)) == mixed and " " in tok.id_of


@given(st.text(st.characters(blacklist_characters="\n\r"), max_size=60))
def test_from_text_round_trips_any_text_of_one_line(text):
    tok = Tokenizer.from_text(text + text, min_count=2)
    assert tok.decode(tok.encode(text)) == text
    assert UNK_ID not in tok.encode(text) or "[UNK]" in text  # every character is a token


def test_from_file_reads_the_documents(tmp_path):
    path = tmp_path / "c.txt"
    path.write_text("天天向上\n\n天天开心\n", encoding="utf-8")
    tok = Tokenizer.from_file(path, min_count=2)
    assert "天天" in tok.id_of and "\n" not in tok.id_of
    assert tok.tokenize("天天开心") == ["天天", "开", "心"]


@given(st.text(max_size=40))
def test_to_dict_from_dict_through_json_gives_the_same_encodings(text):
    again = Tokenizer.from_dict(json.loads(json.dumps(TOK.to_dict(), ensure_ascii=False)))
    assert again.vocab == TOK.vocab and again.n_sentinels == TOK.n_sentinels
    assert again.encode(text) == TOK.encode(text)


def test_a_user_vocabulary_survives_to_dict_from_dict():
    tok = Tokenizer.from_text("猫猫狗狗猫猫狗狗猫猫", min_count=2, n_sentinels=5)
    again = Tokenizer.from_dict(json.loads(json.dumps(tok.to_dict())))
    assert again.vocab == tok.vocab and again.n_sentinels == 5


def test_bad_arguments_are_named():
    with pytest.raises(TypeError, match="text must be a str, got int: 123"):
        TOK.encode(123)
    with pytest.raises(ValueError, match=r"ids\[1\] = 9999 is outside the vocabulary \[0, 164\)"):
        TOK.decode([5, 9999])
    with pytest.raises(ValueError, match=r"ids\[0\] = -1 is outside"):
        TOK.decode([-1])
    with pytest.raises(TypeError, match=r"ids must hold integers, got ids\[0\] = 1.5"):
        TOK.decode([1.5])
    with pytest.raises(TypeError, match="ids must be a sequence of token ids, got a str"):
        TOK.decode("今天")
    with pytest.raises(ValueError, match="sentinel index k .* got 99"):
        TOK.sentinel_id(99)
    with pytest.raises(TypeError, match="not one string"):
        Tokenizer("今天")
    with pytest.raises(ValueError, match="n_sentinels .* got -1"):
        Tokenizer(["今天"], n_sentinels=-1)
    with pytest.raises(ValueError, match="min_count must be an integer >= 1, got 0"):
        Tokenizer.from_text("今天", min_count=0)
    with pytest.raises(ValueError, match=r"lacks the keys \['n_sentinels'\]"):
        Tokenizer.from_dict({"ordinary": ["今"]})
    with pytest.raises(ValueError, match="does not rebuild the same vocabulary"):
        Tokenizer.from_dict({"ordinary": ["天", "今"], "n_sentinels": 0})  # not sorted


def test_a_long_text_round_trips():
    # 100 000 characters of grammar sentences (their speed is the benchmark's business, never a
    # test's: no timing is asserted here).
    text = "".join(default_grammar().sample_text(np.random.default_rng(0), 12000))[:100_000]
    assert len(text) == 100_000
    ids = TOK.encode(text)
    assert TOK.decode(ids) == text
