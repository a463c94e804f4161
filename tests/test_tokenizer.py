"""The word tokenizer: longest match, specials, round trips, unknown characters."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from minillm.grammar import default_grammar
from minillm.tokenizer import (
    BOS_ID,
    EOS_ID,
    MASK_ID,
    PAD_ID,
    SPECIAL_TOKENS,
    UNK_ID,
    Tokenizer,
    sentinel,
)

TOK = default_grammar().tokenizer()
KNOWN_PIECES = [t for t in TOK.vocab]  # every token string, specials and sentinels included


def test_specials_and_sentinels_have_fixed_ids():
    assert TOK.vocab[:7] == list(SPECIAL_TOKENS)
    assert (PAD_ID, UNK_ID, BOS_ID, EOS_ID, MASK_ID) == (0, 1, 2, 3, 6)
    assert TOK.vocab[TOK.sentinel_id(0)] == "<extra_id_0>" == sentinel(0)
    assert TOK.sentinel_id(1) == TOK.sentinel_id(0) + 1
    assert all(TOK.is_special(i) for i in range(TOK.first_ordinary_id))
    assert not any(TOK.is_special(int(i)) for i in TOK.ordinary_ids)
    assert set(TOK.ordinary_ids) == set(range(TOK.first_ordinary_id, len(TOK)))


def test_longest_match_keeps_the_tutorials_words_whole():
    assert TOK.tokenize("今天天气很好，我们去") == ["今天", "天气", "很好", "，", "我们", "去"]
    assert TOK.tokenize("今天[MASK]很好") == ["今天", "[MASK]", "很好"]
    assert TOK.encode("今天", add_bos=True, add_eos=True)[::2] == [BOS_ID, EOS_ID]


def test_a_single_character_is_the_fallback():
    # 天 alone is not a word of the lexicon, but it is a character of 今天 and 天气.
    assert TOK.tokenize("天") == ["天"]
    assert TOK.tokenize("气今") == ["气", "今"]


@given(st.lists(st.sampled_from(KNOWN_PIECES), max_size=30))
def test_decode_encode_is_the_identity_on_known_text(pieces):
    text = "".join(pieces)
    assert TOK.decode(TOK.encode(text)) == text


@given(st.text(max_size=50))
def test_unknown_characters_become_unk_and_never_raise(text):
    ids = TOK.encode(text)
    known = {t for t in TOK.vocab if len(t) == 1}  # the single-character fallbacks
    if all(ch in known for ch in text):
        assert TOK.decode(ids) == text
    else:  # some character is unknown (unless it sits inside a literal special token)
        assert UNK_ID in ids or TOK.decode(ids) == text
    assert all(0 <= i < len(TOK) for i in ids)


def test_decode_can_drop_special_tokens():
    ids = TOK.encode("[CLS]今天[MASK][SEP]")
    assert TOK.decode(ids, skip_special=True) == "今天"


def test_a_vocabulary_from_a_users_text_round_trips_it():
    text = "小猫喜欢吃鱼。小狗喜欢吃肉。小猫喜欢睡觉。"
    tok = Tokenizer.from_text(text, min_count=2)
    assert "喜欢" in tok.id_of and "小猫" in tok.id_of
    assert tok.decode(tok.encode(text)) == text
    again = Tokenizer.from_dict(tok.to_dict())
    assert again.vocab == tok.vocab
    assert again.encode(text) == tok.encode(text)


def test_bad_arguments_are_named():
    with pytest.raises(TypeError, match="text must be a str"):
        TOK.encode(123)
    with pytest.raises(ValueError, match=f"token id 9999 is outside the vocabulary of {len(TOK)}"):
        TOK.decode([9999])
    with pytest.raises(ValueError, match="sentinel index k .* got 99"):
        TOK.sentinel_id(99)
    with pytest.raises(TypeError, match="not one string"):
        Tokenizer("今天")


def test_ordinary_ids_is_an_index_array():
    assert TOK.ordinary_ids.dtype.kind == "i" and np.all(np.diff(TOK.ordinary_ids) == 1)
