"""The capability tasks and their scores (minillm/capabilities.py): every answer is right by
construction, the oracle scores the optimum and a uniform guesser scores chance, and the
verdict rules say what the module docstring says."""

import math

import numpy as np
import pytest

from minillm import capabilities as cap
from minillm import program
from minillm.world import WORDS, default_world

LIMIT = 64  # compare.py's n_ctx
N = 200  # items per guesser test


@pytest.fixture(scope="module")
def world():
    return default_world()


@pytest.fixture(scope="module")
def items(world):
    rng = np.random.default_rng(0)
    return {task: cap.make_examples(task, world, rng, N, "test", LIMIT)
            for task in cap.CAPABILITIES}


def test_items_fit_and_come_from_the_split_asked(world, items):
    for task, examples in items.items():
        assert len(examples) == N
        for ex in examples:
            assert len(ex.source) + len(ex.target) + 4 <= LIMIT, (task, ex)
    for ex in items["generation"]:  # a document cut in two
        assert world.split_of(ex.source + ex.target) == "test"
    for ex in items["translation"]:
        assert world.split_of(ex.source) == "test"
    for ex in items["comprehension"]:
        assert world.split_of(ex.passage) == "test"


def test_a_blank_item_holds_the_true_posterior_of_its_word(world, items):
    for ex in items["comprehension"][:50]:
        k = ex.blank
        assert ex.source[k] == cap.MASK and ex.source[:k] == ex.passage[:k]
        assert ex.target == (ex.passage[k],)
        # The posterior, by brute force over the lexicon: the normalised joint.
        joint = {}
        for w in WORDS:
            log_p = world.log_prob(ex.passage[:k] + (w,) + ex.passage[k + 1:])
            if math.isfinite(log_p):
                joint[w] = math.exp(log_p)
        total = sum(joint.values())
        assert set(joint) == {w for w, p in ex.truth.items() if p > 0}
        for w, p in joint.items():
            assert ex.truth[w] == pytest.approx(p / total, rel=1e-9)


def test_qa_answers_are_in_the_passage_and_code_outputs_are_what_the_program_prints(items):
    for ex in items["qa"]:
        assert len(ex.target) >= 1
        assert all(w in ex.source for w in ex.target)
    for ex in items["code"]:
        assert program.run(ex.target) == ex.truth


# ----------------------------------------------------------------------------------------------
# The oracle scores the optimum, a uniform guesser scores chance


def test_the_oracle_scores_the_optimum_on_every_task(world, items):
    for task in ("comprehension", "qa", "translation", "code"):
        scores = [cap.score(task, ex, cap.oracle_answer(task, ex)) for ex in items[task]]
        assert np.mean([s[cap.HEADLINE[task]] for s in scores]) == 1.0, task
    # The oracle's answer to a blank has the largest true probability there is.
    blank = items["comprehension"]
    oracle = np.mean([cap.score("comprehension", ex, cap.oracle_answer("comprehension", ex))
                      ["true_prob"] for ex in blank])
    assert oracle == pytest.approx(np.mean([max(ex.truth.values()) for ex in blank]))


def test_generation_from_the_world_itself_is_in_the_support_with_the_entropy_as_mean_nll(world):
    rng = np.random.default_rng(1)
    samples = [doc.words for doc in world.sample(rng, 2000)]
    scores = cap.score_samples(world, samples)
    assert all(s["in_support"] == 1.0 for s in scores)
    nll = np.array([s["nll"] for s in scores])
    # E[-log P(x)] = H for x drawn from P; the standard error from the samples themselves.
    H = world.entropy_per_document()
    assert abs(nll.mean() - H) < 5 * nll.std() / math.sqrt(len(nll))


def test_a_generator_that_repeats_itself_scores_only_its_first_sample(world):
    doc = world.sample(np.random.default_rng(7), 1)[0].words
    scores = cap.score_samples(world, [doc] * 10)
    assert [s["distinct_in_support"] for s in scores] == [1.0] + [0.0] * 9
    assert all(s["in_support"] == 1.0 for s in scores)


def test_a_uniform_generator_is_almost_never_in_the_support(world):
    rng = np.random.default_rng(2)
    words = sorted(WORDS)
    samples = [tuple(words[i] for i in rng.integers(0, len(words), size=rng.integers(4, 24)))
               for _ in range(500)]
    scores = cap.score_samples(world, samples)
    # A document's first word must be one of the 8 time words (world.TIMES) or a name, its
    # second fits only a few: chance of even two right is about (18/|WORDS|)·(10/|WORDS|).
    assert sum(s["in_support"] for s in scores) == 0


def _chance_bound(p, n):
    """5 binomial standard deviations around the expected share p of n draws."""
    return 5 * math.sqrt(p * (1 - p) / n)


def test_a_uniform_guesser_scores_chance_on_the_blanks(items):
    rng = np.random.default_rng(3)
    blank = items["comprehension"] * 5  # 1000 guesses
    guesses = [cap.uniform_answer("comprehension", ex, rng, WORDS) for ex in blank]
    accuracy = np.mean([cap.score("comprehension", ex, g)["accuracy"]
                        for ex, g in zip(blank, guesses)])
    chance = 1 / len(WORDS)  # one right word among the lexicon's
    assert abs(accuracy - chance) <= _chance_bound(chance, len(blank))
    true_prob = np.mean([cap.score("comprehension", ex, g)["true_prob"]
                         for ex, g in zip(blank, guesses)])
    # E[P(uniform guess)] = Σ_w P(w) / |WORDS| = 1 / |WORDS|; a term p lies in [0, 1], so its
    # variance is at most E[p²] <= E[p] = 1 / |WORDS|.
    assert abs(true_prob - chance) <= 5 * math.sqrt(chance / len(blank))


@pytest.mark.parametrize("task", ["qa", "translation"])
def test_a_uniform_guesser_scores_chance_on_the_word_answers(items, task):
    rng = np.random.default_rng(4)
    vocabulary = sorted(set(WORDS) | {w for ex in items[task] for w in ex.target})
    examples = items[task] * 5
    scores = [cap.score(task, ex, cap.uniform_answer(task, ex, rng, vocabulary))
              for ex in examples]
    # Token accuracy: each position is right with probability 1/|vocabulary|.
    chance = 1 / len(vocabulary)
    token_accuracy = np.mean([s["token_accuracy"] for s in scores])
    assert abs(token_accuracy - chance) <= _chance_bound(chance, len(examples))
    # Exact match needs every word right: chance at most 1/|vocabulary| (one-word answers).
    assert np.mean([s["exact_match"] for s in scores]) <= chance + _chance_bound(
        chance, len(examples))


def test_a_uniform_guesser_almost_never_writes_a_right_program(items):
    rng = np.random.default_rng(5)
    examples = items["code"] * 5
    passed = [cap.score("code", ex, cap.uniform_answer("code", ex, rng, program.PROGRAM_TOKENS))
              ["pass_at_1"] for ex in examples]
    # A random token string must parse, print, and print the right number: far below 1%
    # (expected under 10 of 1000; 5σ of a share of 1% is 1.6%).
    assert np.mean(passed) <= 0.01 + _chance_bound(0.01, len(examples))


def test_a_program_outside_the_language_fails_instead_of_raising(items):
    ex = items["code"][0]
    assert cap.score("code", ex, ("print", "(", "(", ")"))["pass_at_1"] == 0.0
    assert cap.score("code", ex, ("import", "os"))["pass_at_1"] == 0.0


def test_token_accuracy_counts_missing_and_extra_words_against():
    assert cap.token_accuracy(("a", "b"), ("a", "b")) == 1.0
    assert cap.token_accuracy(("a", "b"), ("a",)) == 0.5
    assert cap.token_accuracy(("a", "b"), ("a", "b", "c", "d")) == 0.5
    assert cap.token_accuracy(("a", "b"), ("b", "a")) == 0.0


# ----------------------------------------------------------------------------------------------
# Intervals and verdicts


def test_the_bootstrap_interval_covers_the_mean_and_shrinks_with_more_items():
    rng = np.random.default_rng(6)
    small = rng.random((3, 50))
    large = rng.random((3, 5000))
    lo_s, hi_s = cap.interval95(cap.bootstrap_means(small, np.random.default_rng(0)))
    lo_l, hi_l = cap.interval95(cap.bootstrap_means(large, np.random.default_rng(0)))
    assert lo_s < small.mean() < hi_s and lo_l < large.mean() < hi_l
    assert (hi_l - lo_l) < (hi_s - lo_s) / 3  # 100 times the items: about a tenth the width
    # Seeds are resampled too: seeds that disagree widen the interval.
    spread = np.stack([np.full(500, 0.2), np.full(500, 0.5), np.full(500, 0.8)])
    lo, hi = cap.interval95(cap.bootstrap_means(spread, np.random.default_rng(0)))
    assert lo < 0.35 and hi > 0.65


def test_pair_verdicts_follow_the_stars():
    assert cap.pair_verdict(3, 1, (0.1, 0.3)) == "agrees"
    assert cap.pair_verdict(3, 1, (-0.3, -0.1)) == "disagrees"
    assert cap.pair_verdict(3, 1, (-0.1, 0.1)) == "unclear"
    assert cap.pair_verdict(1, 3, (-0.3, -0.1)) == "agrees"
    assert cap.pair_verdict(1, 3, (0.1, 0.3)) == "disagrees"
    assert cap.pair_verdict(2, 2, (-0.03, 0.04)) == "agrees"  # within ±5 points
    assert cap.pair_verdict(2, 2, (-0.1, 0.1)) == "unclear"  # holds 0, but too wide
    assert cap.pair_verdict(2, 2, (0.1, 0.3)) == "disagrees"
    assert cap.cell_verdict(["agrees", "agrees"]) == "agrees"
    assert cap.cell_verdict(["agrees", "unclear"]) == "unclear"
    assert cap.cell_verdict(["unclear", "disagrees"]) == "disagrees"


def test_the_stars_are_the_tutorials_table():
    # 08-training-objectives.md, 💡 训练目标对能力的影响, row by row.
    rows = {"文本生成": (3, 1, 2), "阅读理解": (2, 3, 3), "问答系统": (2, 2, 3),
            "机器翻译": (1, 1, 3), "代码生成": (3, 1, 2)}
    for task, name in cap.CAPABILITIES.items():
        assert tuple(cap.STARS[task][c] for c in ("clm", "mlm", "seq2seq")) == rows[name]
