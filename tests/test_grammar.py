"""The built-in grammar: a corpus whose true probabilities are known exactly."""

import math

import numpy as np
import pytest

from minillm import grammar
from minillm.grammar import END, default_grammar

G = default_grammar()
TOK = G.tokenizer()
SUPPORT = G.support()


def every_prefix():
    """Every prefix of every sentence of the support (the empty one included), once."""
    return sorted({words[:n] for words in SUPPORT for n in range(len(words) + 1)})


def test_every_rule_table_sums_to_one():
    tables = [grammar.KINDS, grammar.TIMES, grammar.SUBJECTS, grammar.PEOPLE,
              *grammar.PREDICATES.values(), *grammar.PLACES.values(),
              *grammar.ACTIVITIES.values()]
    for table in tables:
        assert math.isclose(sum(table.values()), 1.0, abs_tol=1e-12), table
        assert all(p > 0 for p in table.values()), table


def test_sentence_probabilities_sum_to_one():
    assert math.isclose(sum(SUPPORT.values()), 1.0, rel_tol=0, abs_tol=1e-12)
    assert all(p > 0 for p in SUPPORT.values())
    # One derivation per sentence, and the size walkthrough.md quotes.
    assert len(SUPPORT) == len(G.sentences) == 970


def test_the_tutorials_sentences_are_in_the_support():
    # P = kind A .5 · 今天 .4 · 天气 .8 · 很好 .5 · 我们 .5 · 公园 (good weather) .5 · 玩 .6
    p_a = 0.5 * 0.4 * 0.8 * 0.5 * 0.5 * 0.5 * 0.6
    assert G.sentence_probability("今天天气很好，我们去公园玩。") == pytest.approx(p_a, rel=1e-12)
    assert SUPPORT[("今天", "天气", "很好", "，", "我们", "去", "公园", "玩", "。")] == pytest.approx(p_a)
    # P = kind B .3 · 今天 .4 · 我们 .5 · 公园 (no weather) .35 · 玩 .6
    p_b = 0.3 * 0.4 * 0.5 * 0.35 * 0.6
    assert G.sentence_probability(("今天", "我们", "去", "公园", "玩", "了", "。")) == pytest.approx(p_b)
    assert G.sentence_probability("今天天气很好。") == pytest.approx(0.2 * 0.4 * 0.8 * 0.5)
    assert G.sentence_probability("公园今天") == 0.0
    assert G.sentence_probability("今天天气很好，我们去公园玩") == 0.0  # a prefix, not a sentence


def test_the_tutorials_answers_are_the_true_argmax():
    after = G.next_word_distribution(TOK.tokenize("今天天气很好，我们去"))
    assert max(after, key=after.get) == "公园"
    assert after["公园"] == pytest.approx(0.5)  # PLACES["good"]["公园"]
    assert after["公园"] - max(p for w, p in after.items() if w != "公园") > 0.25  # clear margin
    masked = G.masked_word_distribution(["今天", "[MASK]", "很好"])
    assert max(masked, key=masked.get) == "天气"
    # 天气 .8 · 很好 .5 against 阳光 .2 · 很好 .6 (SUBJECTS, PREDICATES); time and kind cancel.
    assert masked["天气"] == pytest.approx(0.8 * 0.5 / (0.8 * 0.5 + 0.2 * 0.6))
    assert G.masked_word_distribution("今天[MASK]很好") == masked


def test_the_place_depends_on_the_weather_and_the_activity_on_the_place():
    bad = G.next_word_distribution(TOK.tokenize("今天天气不好，我们去"))
    assert bad == pytest.approx(grammar.PLACES["bad"])
    assert G.next_word_distribution(TOK.tokenize("今天我们去")) == pytest.approx(grammar.PLACES[None])
    at_school = G.next_word_distribution(TOK.tokenize("今天天气不好，我们去学校"))
    assert at_school == pytest.approx({"上课": 0.7, "学习": 0.3})


def test_next_word_distribution_is_the_ratio_of_prefix_probabilities():
    prefixes = every_prefix()
    assert len(prefixes) > 1000
    for prefix in prefixes:
        dist = G.next_word_distribution(prefix)
        assert math.isclose(sum(dist.values()), 1.0, abs_tol=1e-12)
        for word, p in dist.items():
            joint = (G.sentence_probability(prefix) if word == END
                     else G.prefix_probability(prefix + (word,)))
            assert math.isclose(p, joint / G.prefix_probability(prefix), rel_tol=1e-12)


def test_prefix_probability_sums_the_sentences_that_start_with_it():
    assert G.prefix_probability([]) == pytest.approx(1.0)
    for prefix in every_prefix()[::50]:
        brute = sum(p for s, p in SUPPORT.items() if s[: len(prefix)] == prefix)
        assert math.isclose(G.prefix_probability(prefix), brute, rel_tol=1e-12)
    assert G.prefix_probability(["公园"]) == 0.0


def test_a_mask_at_the_end_of_a_prefix_is_the_next_word_distribution():
    # Two computations of the same thing: masking the word after a prefix (as a prefix match)
    # must give the next-word distribution, without [EOS], renormalised.
    for prefix in every_prefix()[::5]:  # every fifth of the 2986 prefixes keeps the test fast
        nxt = {w: p for w, p in G.next_word_distribution(prefix).items() if w != END}
        if not nxt:
            continue
        total = sum(nxt.values())
        masked = G.masked_word_distribution(list(prefix) + ["[MASK]"])
        assert masked == pytest.approx({w: p / total for w, p in nxt.items()}, rel=1e-12)


def test_a_mask_in_a_whole_sentence():
    # As a prefix, [MASK] 天气 很好 picks the time with TIMES' probabilities (time is independent).
    assert G.masked_word_distribution(["[MASK]", "天气", "很好"]) == pytest.approx(grammar.TIMES)
    # As the whole sentence 今天 我们 去 [MASK] 玩 了 。: P(place) ∝ PLACES[None] · P(玩 | place)
    whole = G.masked_word_distribution(["今天", "我们", "去", "[MASK]", "玩", "了", "。"],
                                       as_prefix=False)
    z = 0.35 * 0.6 + 0.15 * 0.4
    assert whole == pytest.approx({"公园": 0.35 * 0.6 / z, "海边": 0.15 * 0.4 / z})
    # A whole-sentence match refuses a mere prefix.
    with pytest.raises(ValueError, match="matches no sentence"):
        G.masked_word_distribution(["今天", "[MASK]", "很好"], as_prefix=False)
    with pytest.raises(ValueError, match="exactly one"):
        G.masked_word_distribution(["今天", "天气"])


def test_the_tokenizer_splits_every_sentence_back_into_its_words():
    for words in SUPPORT:
        assert tuple(TOK.tokenize("".join(words))) == words
    assert set(G.words) <= set(TOK.vocab)


def test_sampling_follows_the_true_probabilities():
    """Each frequency over n draws is Binomial(n, p) / n, whose standard deviation is
    sqrt(p(1-p)/n); a bound of 6 standard deviations is crossed by chance with probability
    below 2e-9 per check. The most probable sentence is 今天天气很好。 with
    p = C .2 · 今天 .4 · 天气 .8 · 很好 .5 = 0.032 (KINDS, TIMES, SUBJECTS, PREDICATES)."""
    top, p = max(SUPPORT.items(), key=lambda kv: kv[1])
    assert top == ("今天", "天气", "很好", "。") and p == pytest.approx(0.032)
    n = 20000
    draws = G.sample(np.random.default_rng(1), n)
    counts = {}
    for s in draws:
        counts[s.words] = counts.get(s.words, 0) + 1
    for words, q in sorted(SUPPORT.items(), key=lambda kv: -kv[1])[:10]:
        freq = counts.get(words, 0) / n
        assert abs(freq - q) < 6 * math.sqrt(q * (1 - q) / n), "".join(words)
    # And the kinds: A 0.5, B 0.3, C 0.2 (KINDS), each within 6 standard deviations.
    for kind, q in grammar.KINDS.items():
        f = sum(s.kind == kind for s in draws) / n
        assert abs(f - q) < 6 * math.sqrt(q * (1 - q) / n), kind


def test_a_sampled_sentence_keeps_its_slots():
    for s in G.sample(np.random.default_rng(2), 200):
        assert s.words in SUPPORT and s.text == "".join(s.words)
        if s.kind == "A":
            assert s.words == (s.time, s.subject, s.predicate, "，", s.person, "去", s.place,
                               s.activity, "。")
        elif s.kind == "B":
            assert s.subject is None and s.predicate is None
            assert s.words == (s.time, s.person, "去", s.place, s.activity, "了", "。")
        else:
            assert s.person is None and s.place is None and s.activity is None
    with pytest.raises(AttributeError):
        s.time = "明天"  # frozen


def test_the_same_seed_gives_the_same_sentences():
    a = G.sample_text(np.random.default_rng(5), 10)
    b = G.sample_text(np.random.default_rng(5), 10)
    c = G.sample_text(np.random.default_rng(6), 10)
    assert a == b and len(set(a)) > 1 and a != c


def test_sampling_arguments_are_checked():
    with pytest.raises(TypeError, match="rng must be a np.random.Generator, got int"):
        G.sample(5, 3)
    with pytest.raises(ValueError, match="n must be a non-negative integer, got -1"):
        G.sample(np.random.default_rng(0), -1)
    assert G.sample(np.random.default_rng(0), 0) == []


def test_entropy_per_token_is_the_sentence_entropy_over_the_mean_length():
    H = -sum(p * math.log(p) for p in SUPPORT.values())
    n = sum(p * (len(s) + 1) for s, p in SUPPORT.items())  # words + the [EOS] prediction
    assert math.isclose(G.entropy(), H, rel_tol=1e-12)
    assert math.isclose(G.mean_tokens(), n, rel_tol=1e-12)
    # E[len + 1] from the kinds: A has 9 words, B 7, C 4 (the templates), so .5·10 + .3·8 + .2·5
    assert math.isclose(G.mean_tokens(), 8.4, rel_tol=1e-12)
    assert math.isclose(G.entropy_per_token(), H / n, rel_tol=1e-12)
    assert 0 < G.entropy_per_token() < math.log(len(TOK))
    assert G.entropy_per_token() == pytest.approx(0.7286, abs=1e-4)  # walkthrough.md: 0.729


def test_a_prefix_outside_the_grammar_is_refused_by_name():
    with pytest.raises(ValueError, match="公园今天"):
        G.next_word_distribution(["公园", "今天"])
