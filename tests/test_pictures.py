"""pictures.py: pictures whose content is known, the hand-written classifier, the PNG writer."""

import itertools
import math
import struct
import zlib

import numpy as np
import pytest

from minillm.grammar import Sentence
from minillm.pictures import (GROUND_COLOURS, JITTER, MOST_PEOPLE, NOISE, ONE, QUESTIONS, SEVERAL,
                              SIZE, SKY_COLOURS, caption_tokenizer, classify, draw_picture,
                              png_bytes, sample_pictures, slot_priors, write_png)
from minillm.tokenizer import UNK_ID


def test_the_colours_of_a_band_are_further_apart_than_jitter_and_noise_can_move_a_pixel():
    """A pixel is at most sqrt(3)·(JITTER + NOISE) from its colour, so the nearest colour is
    its own when any two colours of its band are more than twice that apart."""
    reach = math.sqrt(3) * (JITTER + NOISE)
    for colours in (SKY_COLOURS, GROUND_COLOURS):
        for a, b in itertools.combinations(colours, 2):
            assert np.linalg.norm(np.subtract(colours[a], colours[b])) > 2 * reach, (a, b)


def test_the_hand_written_classifier_reads_every_slot_of_fresh_pictures():
    """The task is well posed: every slot, and the number of people, is in the pixels."""
    pictures = sample_pictures(np.random.default_rng(1), 400)
    for p in pictures:
        slots, heads = classify(p.image)
        assert slots == p.slots, p.caption
        assert heads == p.n_people
    # Every value of every slot was drawn, so the classifier was tested on all of them.
    for slot, values in (("weather", 4), ("place", 5), ("people", 2)):
        assert len({p.slots[slot] for p in pictures}) == values


def test_pictures_are_rgb_in_the_unit_interval_and_no_two_alike():
    pictures = sample_pictures(np.random.default_rng(2), 100)
    images = np.stack([p.image for p in pictures])  # (100, 16, 16, 3)
    assert images.shape == (100, SIZE, SIZE, 3)
    assert images.min() >= 0.0 and images.max() <= 1.0
    # The same sentence drawn twice gives two different pictures.
    s = pictures[0].sentence
    rng = np.random.default_rng(3)
    a, b = draw_picture(s, rng), draw_picture(s, rng)
    assert np.abs(a.image - b.image).max() > 0.01
    flat = images.reshape(100, -1)
    assert len({row.tobytes() for row in flat}) == 100


# P(value) of each slot given kind A, derived by hand from grammar.py's tables (the derivation:
# test_slot_frequencies_follow_the_grammar's docstring).
EXPECTED_SLOTS = {
    "weather": {"很好": 0.52, "不错": 0.24, "不好": 0.16, "很热": 0.08},
    "place": {"公园": 0.38, "海边": 0.2, "学校": 0.146, "商店": 0.194, "图书馆": 0.08},
    "people": {ONE: 0.35, SEVERAL: 0.65},
}


def test_slot_priors_are_the_grammars_probabilities_given_kind_a_exactly():
    """slot_priors sums P(s) over the grammar's enumerated kind-A sentences; it must give the
    hand-derived table (chance_accuracy answers its most likely value of each slot)."""
    priors = slot_priors()
    assert set(priors) == set(EXPECTED_SLOTS)
    for slot, probs in EXPECTED_SLOTS.items():
        assert priors[slot] == pytest.approx(probs, abs=1e-12), slot


def test_slot_frequencies_follow_the_grammar():
    """N = 3000 pictures. The expected frequencies come from grammar.py's tables given kind A:

        weather  P(很好) = P(天气)·0.5 + P(阳光)·0.6 = 0.8·0.5 + 0.2·0.6 = 0.52
                 P(不错) = 0.8·0.2 + 0.2·0.4 = 0.24,  P(不好) = 0.8·0.2 = 0.16,  P(很热) = 0.8·0.1 = 0.08
        place    good weather (很好, 不错: 0.76): 公园 .5, 海边 .2, 学校 .15, 商店 .15;
                 bad (0.16): 商店 .4, 图书馆 .4, 学校 .2;  hot (0.08): 海边 .6, 商店 .2, 图书馆 .2
                 -> 公园 0.38, 海边 0.2, 学校 0.146, 商店 0.194, 图书馆 0.08
        people   我 0.2 + 小明 0.15 = 0.35 one figure; 我们 + 他们 = 0.65 several, 2, 3 or 4
                 figures with 0.65/3 each (pictures.py draws the count uniformly)

    Each count must be within 5 standard deviations sqrt(N p (1 - p)) of N p.
    """
    N = 3000
    pictures = sample_pictures(np.random.default_rng(4), N)
    expected = {**EXPECTED_SLOTS, "n_people": {1: 0.35, 2: 0.65 / 3, 3: 0.65 / 3, 4: 0.65 / 3}}
    for slot, probs in expected.items():
        assert sum(probs.values()) == pytest.approx(1.0)
        for value, p in probs.items():
            if slot == "n_people":
                count = sum(pic.n_people == value for pic in pictures)
            else:
                count = sum(pic.slots[slot] == value for pic in pictures)
            sigma = math.sqrt(N * p * (1 - p))
            assert abs(count - N * p) <= 5 * sigma, (slot, value, count, N * p, sigma)
    assert max(p.n_people for p in pictures) == MOST_PEOPLE


def test_questions_and_answers_are_in_the_caption_tokenizer():
    tok = caption_tokenizer()
    (picture,) = sample_pictures(np.random.default_rng(5), 1)
    for question, answer in picture.questions():
        assert UNK_ID not in tok.encode(question)
        assert len(tok.encode(answer)) == 1  # an answer is one token
    assert [q for q, _ in picture.questions()] == list(QUESTIONS.values())
    assert UNK_ID not in tok.encode(picture.caption)
    assert tok.decode(tok.encode(picture.caption)) == picture.caption


def test_a_picture_needs_a_kind_a_sentence_and_a_generator():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="sentence must be a kind-A"):
        draw_picture(Sentence("C", "今天", "天气", "很好"), rng)
    with pytest.raises(TypeError, match="rng must be a np.random.Generator"):
        draw_picture(Sentence("A", "今天", "天气", "很好", "我们", "公园", "玩"), 0)
    with pytest.raises(ValueError, match="image must have shape"):
        classify(np.zeros((8, 8, 3)))


def read_png(data):
    """A minimal PNG reader for the test: the chunks (CRC checked), IHDR, the inflated rows."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, []
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])
        assert crc == zlib.crc32(kind + body), kind
        chunks.append((kind, body))
        pos += 12 + length
    assert [k for k, _ in chunks] == [b"IHDR", b"IDAT", b"IEND"]
    W, H, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", chunks[0][1])
    assert (depth, colour, interlace) == (8, 2, 0)
    raw = zlib.decompress(chunks[1][1])
    assert len(raw) == H * (1 + 3 * W)
    rows = [raw[r * (1 + 3 * W):(r + 1) * (1 + 3 * W)] for r in range(H)]
    assert all(row[0] == 0 for row in rows)  # filter type 0 on every row
    return np.frombuffer(b"".join(row[1:] for row in rows), dtype=np.uint8).reshape(H, W, 3)


def test_the_png_decodes_back_to_the_same_bytes(tmp_path):
    image = np.random.default_rng(6).uniform(size=(5, 7, 3))  # not square: W and H in order
    path = tmp_path / "p.png"
    write_png(path, image)
    pixels = read_png(path.read_bytes())
    np.testing.assert_array_equal(pixels, np.round(image * 255).astype(np.uint8))
    assert pixels.shape == (5, 7, 3)
    with pytest.raises(ValueError, match="image must have shape"):
        png_bytes(np.zeros((4, 4)))
    with pytest.raises(ValueError, match="image must be finite"):
        png_bytes(np.full((2, 2, 3), np.nan))  # not silently written as some colour


def test_the_terminal_picture_is_one_coloured_cell_a_pixel():
    from minillm.pictures import enlarged, terminal_blocks

    image = np.random.default_rng(7).uniform(size=(3, 5, 3))
    lines = terminal_blocks(image).split("\n")
    assert len(lines) == 3 and all(line.count("\x1b[48;2;") == 5 for line in lines)
    r, g, b = np.round(image[2, 4] * 255).astype(int)
    assert lines[2].endswith(f"\x1b[48;2;{r};{g};{b}m  \x1b[0m")
    big = enlarged(image, 4)
    assert big.shape == (12, 20, 3)
    np.testing.assert_array_equal(big[4:8, 8:12], np.broadcast_to(image[1, 2], (4, 4, 3)))


def test_a_given_number_of_people_must_agree_with_the_sentence():
    """The picture's answer is its sentence's (我 -> 一个人): a count the person cannot have would
    draw a picture whose answer the pixels contradict, so it is refused by name."""
    rng = np.random.default_rng(8)
    me = Sentence("A", "今天", "天气", "很好", "我", "公园", "玩")
    we = Sentence("A", "今天", "天气", "很好", "我们", "公园", "玩")
    assert classify(draw_picture(me, rng, n_people=1).image)[1] == 1
    assert classify(draw_picture(we, rng, n_people=MOST_PEOPLE).image)[1] == MOST_PEOPLE
    for sentence, bad in ((me, 3), (we, 1), (we, MOST_PEOPLE + 1), (we, 0), (we, 2.0), (me, True)):
        with pytest.raises(ValueError, match=f"n_people must be .*got {bad!r}"):
            draw_picture(sentence, rng, n_people=bad)
