"""Instruction data, the true reward and the Bradley–Terry labeler (minillm/instruct.py)."""

import math

import numpy as np
import pytest

from minillm import instruct as I
from minillm.grammar import default_grammar


def _sigmoid(x):
    return 1.0 / (1.0 + math.exp(-x))


@pytest.fixture(scope="module")
def prompts():
    return I.sample_prompts(np.random.default_rng(0), 300)


def test_prompts_cover_every_task_and_their_demonstration_is_the_grammars_answer(prompts):
    assert {p.task for p in prompts} == set(I.TASKS)
    grammar = default_grammar()
    for p in prompts[:60]:
        assert p.answer == grammar.task_answer(p.text)  # the grammar's own oracle
        assert p.sentence.text in p.text


def test_every_candidate_is_classified_as_its_own_kind_with_its_stated_reward(prompts):
    for p in prompts:
        cands = I.candidates(p)
        assert list(cands) == list(I.KINDS)
        assert len(set(cands.values())) == 4, cands  # four different responses
        for kind, text in cands.items():
            assert I.response_kind(p, text) == kind, (p.text, kind, text)
            assert I.true_reward(p, text) == I.TRUE_REWARD[kind]


def test_the_reward_table_is_as_stated_and_anything_else_is_other():
    assert I.TRUE_REWARD == {"correct": 2.0, "too_long": 1.0, "wrong_slot": 0.0,
                             "off_task": -1.0, "other": -2.0}
    grammar = default_grammar()
    (s,) = [s for s in grammar.sentences if s.text == "今天天气很好，我们去公园玩。"]
    p = I.make_prompt(*grammar.task_pair(s, "summary", None))
    assert p.answer == "今天我们去公园玩了。"
    assert I.response_kind(p, "今天小明去公园玩了。") == "wrong_slot"  # any other person
    assert I.response_kind(p, "今天我们去公园玩了。今天") == "too_long"
    assert I.response_kind(p, "公园公园") == "other"
    assert I.response_kind(p, "") == "other"


def test_a_person_that_is_a_prefix_of_another_is_a_wrong_slot_not_too_long():
    grammar = default_grammar()
    (s,) = [s for s in grammar.sentences if s.text == "今天我去公园玩了。"]
    rng = np.random.default_rng(1)
    while True:  # the who-question of this sentence
        text, answer = grammar.task_pair(s, "question", rng)
        if answer == "我":
            break
    p = I.make_prompt(text, answer)
    assert I.response_kind(p, "我们") == "wrong_slot"


def test_label_frequencies_match_the_bradley_terry_probability_within_5_sigma():
    """Each pair of candidate kinds, labelled n times: the share of times the first is chosen
    has mean p = σ((r*_a − r*_b)/τ) (the labeler's definition, from the stated table) and
    standard deviation sqrt(p(1−p)/n)."""
    rng = np.random.default_rng(2)
    (p,) = I.sample_prompts(rng, 1)
    cands = I.candidates(p)
    n = 3000
    for a_kind, b_kind in [("correct", "too_long"), ("correct", "off_task"),
                           ("wrong_slot", "too_long")]:
        a, b = cands[a_kind], cands[b_kind]
        for tau in (1.0, 0.5):
            expected = _sigmoid((I.TRUE_REWARD[a_kind] - I.TRUE_REWARD[b_kind]) / tau)
            wins = sum(I.label(rng, p, a, b, tau).chosen == a for _ in range(n))
            sd = math.sqrt(expected * (1 - expected) / n)
            assert abs(wins / n - expected) < 5 * sd, (a_kind, b_kind, tau, wins / n, expected)


def test_rankings_order_every_pair_with_its_bradley_terry_probability_within_5_sigma():
    """Plackett–Luce by Gumbel noise: P(a above b) = σ((r*_a − r*_b)/τ) for every pair of
    the ranking (the difference of two standard Gumbels is standard logistic)."""
    rng = np.random.default_rng(3)
    (p,) = I.sample_prompts(rng, 1)
    cands = I.candidates(p)
    texts = list(cands.values())
    n = 3000
    for tau in (1.0, 0.5):
        above = np.zeros((4, 4))
        for _ in range(n):
            order = I.rank(rng, p, texts, tau)
            pos = [order.index(t) for t in texts]
            above += np.array([[pos[i] < pos[j] for j in range(4)] for i in range(4)])
        for i, ki in enumerate(cands):
            for j, kj in enumerate(cands):
                if i != j:
                    expected = _sigmoid((I.TRUE_REWARD[ki] - I.TRUE_REWARD[kj]) / tau)
                    sd = math.sqrt(expected * (1 - expected) / n)
                    assert abs(above[i, j] / n - expected) < 5 * sd, (ki, kj, tau)


def test_bayes_accuracy_is_the_closed_form_and_what_the_true_reward_reaches(prompts):
    """With τ = 1 the six pairs differ by 1 (three pairs), 2 (two) and 3 (one) in r*, so
    E[max(p, 1 − p)] = (3σ(1) + 2σ(2) + σ(3)) / 6. Predicting with r* itself reaches it: on n
    sampled comparisons its accuracy has that mean and sd sqrt(acc(1 − acc)/n)."""
    closed = (3 * _sigmoid(1) + 2 * _sigmoid(2) + _sigmoid(3)) / 6
    assert I.bayes_accuracy(prompts) == pytest.approx(closed, rel=1e-12)
    assert I.bayes_accuracy(prompts, tau=0.5) == pytest.approx(
        (3 * _sigmoid(2) + 2 * _sigmoid(4) + _sigmoid(6)) / 6, rel=1e-12)
    rng = np.random.default_rng(4)
    many = I.sample_prompts(rng, 3000)
    comparisons = I.sample_comparisons(rng, many)
    right = [I.true_reward(c.prompt, c.chosen) > I.true_reward(c.prompt, c.rejected)
             for c in comparisons]
    sd = math.sqrt(closed * (1 - closed) / len(right))
    assert abs(np.mean(right) - closed) < 5 * sd


def test_sample_comparisons_draws_each_of_the_six_pairs_with_probability_one_sixth():
    rng = np.random.default_rng(5)
    many = I.sample_prompts(rng, 3000)
    counts = {}
    for c in I.sample_comparisons(rng, many):
        kinds = frozenset((I.response_kind(c.prompt, c.chosen),
                           I.response_kind(c.prompt, c.rejected)))
        counts[kinds] = counts.get(kinds, 0) + 1
    assert len(counts) == 6
    sd = math.sqrt((1 / 6) * (5 / 6) / 3000)
    for kinds, k in counts.items():
        assert abs(k / 3000 - 1 / 6) < 5 * sd, kinds


def test_bad_input_is_refused_by_name():
    rng = np.random.default_rng(6)
    (p,) = I.sample_prompts(rng, 1)
    with pytest.raises(ValueError, match="tau"):
        I.preference_probability(p, "a", "b", tau=0.0)
    with pytest.raises(ValueError, match="tasks"):
        I.sample_prompts(rng, 2, tasks=("poem",))
    with pytest.raises(TypeError, match="rng"):
        I.sample_prompts(0, 2)
    with pytest.raises(ValueError, match="text"):
        I.make_prompt("写诗：今天。", "x")
    with pytest.raises(TypeError, match="response"):
        I.response_kind(p, 3)
    with pytest.raises(ValueError, match="prompts"):
        I.bayes_accuracy([])
    with pytest.raises(ValueError, match="n must"):
        I.sample_prompts(rng, -1)
    with pytest.raises(ValueError, match="mix"):
        I.sample_demonstrations(rng, [p], {"correct": 0.5})


def test_demonstrations_follow_the_stated_mix_within_5_sigma():
    """Each kind's share among n demonstrations has mean mix[kind] and sd
    sqrt(mix(1 − mix)/n); the mix's expected true reward is .55·2 + .2·1 − .1·1 = 1.2."""
    rng = np.random.default_rng(7)
    many = I.sample_prompts(rng, 2000)
    kinds = [I.response_kind(p, y) for p, y in zip(many, I.sample_demonstrations(rng, many))]
    for kind, share in I.DEMONSTRATION_MIX.items():
        sd = math.sqrt(share * (1 - share) / len(many))
        assert abs(kinds.count(kind) / len(many) - share) < 5 * sd, kind
    assert I.expected_true_reward(I.DEMONSTRATION_MIX) == pytest.approx(1.2, rel=1e-12)


def test_split_sentences_holds_out_a_fraction_of_each_kind_and_prompts_stay_within():
    grammar = default_grammar()
    train, held_out = I.split_sentences(np.random.default_rng(8), 0.1)
    for kind, n in (("A", 760), ("B", 180)):
        texts = {s.text for s in grammar.sentences if s.kind == kind}
        assert len(texts) == n
        assert len(texts & held_out) == math.ceil(0.1 * n)
        assert texts <= train | held_out
    assert not train & held_out
    rng = np.random.default_rng(9)
    for within in (train, held_out):
        prompts = I.sample_prompts(rng, 60, within=within)
        assert len(prompts) == 60 and all(p.sentence.text in within for p in prompts)
        assert {p.task for p in prompts} == set(I.TASKS)
    with pytest.raises(ValueError, match="fraction"):
        I.split_sentences(rng, 1.0)
    only_a = {s.text for s in grammar.sentences if s.kind == "A"}
    with pytest.raises(ValueError, match="within"):
        I.sample_prompts(rng, 3, within=only_a)  # no translation could ever be drawn


@pytest.mark.parametrize("name", ["label", "rank", "sample_demonstrations",
                                  "sample_comparisons", "split_sentences"])
def test_every_drawing_function_refuses_a_non_generator_by_name(name):
    """Found in review: these reached an AttributeError ('int' object has no attribute ...)."""
    (p,) = I.sample_prompts(np.random.default_rng(10), 1)
    a, b = I.candidates(p)["correct"], I.candidates(p)["off_task"]
    args = {"label": (p, a, b), "rank": (p, [a, b]), "sample_demonstrations": ([p],),
            "sample_comparisons": ([p],), "split_sentences": (0.1,)}[name]
    with pytest.raises(TypeError, match="rng must be a np.random.Generator"):
        getattr(I, name)(0, *args)


def test_a_prompt_text_that_is_no_str_and_a_mix_of_no_numbers_are_refused_by_name():
    (p,) = I.sample_prompts(np.random.default_rng(11), 1)
    with pytest.raises(TypeError, match="text"):
        I.make_prompt(3, "x")
    with pytest.raises(ValueError, match="mix"):
        I.sample_demonstrations(np.random.default_rng(0), [p], {"correct": "1"})
