"""The built-in grammar: a corpus whose true probabilities are known exactly."""

import math

import numpy as np
import pytest

from minillm.grammar import END, default_grammar

G = default_grammar()
TOK = G.tokenizer()


def test_sentence_probabilities_sum_to_one():
    assert math.isclose(sum(G.support().values()), 1.0, rel_tol=0, abs_tol=1e-12)


def test_the_tutorials_sentences_are_in_the_support():
    assert G.sentence_probability("今天天气很好，我们去公园玩。") > 0
    assert G.sentence_probability("今天我们去公园玩了。") > 0
    assert G.sentence_probability("今天天气很好。") > 0
    assert G.sentence_probability("公园今天") == 0.0


def test_the_tutorials_answers_are_the_true_argmax():
    after = G.next_word_distribution(TOK.tokenize("今天天气很好，我们去"))
    assert max(after, key=after.get) == "公园"
    assert after["公园"] == pytest.approx(0.5)  # PLACES["good"]["公园"]
    masked = G.masked_word_distribution(["今天", "[MASK]", "很好"])
    assert max(masked, key=masked.get) == "天气"
    assert masked["天气"] == pytest.approx(0.8 * 0.5 / (0.8 * 0.5 + 0.2 * 0.6))


def test_next_word_distribution_is_the_ratio_of_prefix_probabilities():
    rng = np.random.default_rng(0)
    for sentence in G.sample(rng, 40):
        words = sentence.words
        for n in range(len(words) + 1):
            prefix = list(words[:n])
            dist = G.next_word_distribution(prefix)
            assert math.isclose(sum(dist.values()), 1.0, abs_tol=1e-12)
            for word, p in dist.items():
                joint = (G.sentence_probability(prefix) if word == END
                         else G.prefix_probability(prefix + [word]))
                assert math.isclose(p, joint / G.prefix_probability(prefix), rel_tol=1e-12)


def test_the_tokenizer_splits_every_sentence_back_into_its_words():
    for words in G.support():
        assert tuple(TOK.tokenize("".join(words))) == words


def test_sampling_follows_the_true_probabilities():
    """The most probable sentence's frequency over n draws is Binomial(n, p): a bound of 6
    standard deviations, sqrt(p(1-p)/n), cannot be crossed by chance in practice."""
    support = G.support()
    top, p = max(support.items(), key=lambda kv: kv[1])
    n = 20000
    draws = G.sample(np.random.default_rng(1), n)
    freq = sum(s.words == top for s in draws) / n
    assert abs(freq - p) < 6 * math.sqrt(p * (1 - p) / n)
    # And the kinds: A 0.5, B 0.3, C 0.2 (KINDS), each within 6 standard deviations.
    for kind, q in {"A": 0.5, "B": 0.3, "C": 0.2}.items():
        f = sum(s.kind == kind for s in draws) / n
        assert abs(f - q) < 6 * math.sqrt(q * (1 - q) / n), kind


def test_the_same_seed_gives_the_same_sentences():
    a = G.sample_text(np.random.default_rng(5), 10)
    b = G.sample_text(np.random.default_rng(5), 10)
    assert a == b and len(set(a)) > 1


def test_entropy_per_token_is_the_sentence_entropy_over_the_mean_length():
    support = G.support()
    H = -sum(p * math.log(p) for p in support.values())
    n = sum(p * (len(s) + 1) for s, p in support.items())
    assert math.isclose(G.entropy_per_token(), H / n, rel_tol=1e-12)
    assert 0 < G.entropy_per_token() < math.log(len(TOK))


def test_a_prefix_outside_the_grammar_is_refused_by_name():
    with pytest.raises(ValueError, match="公园今天"):
        G.next_word_distribution(["公园", "今天"])
