"""The corruption functions of the BERT path (minillm/objectives/mlm.py), without a model.

Exact invariants first, drawn by hypothesis over lengths 0, 1, 2, ... and rows that are all
special or all padding: specials and padding are never touched, labels are the originals
exactly where something was selected, the fixed rule and span masking select exactly their
count. Then statistics, each with its expected value, where that value comes from, and a bound
of at least 5 standard deviations; every statistical test uses a fixed seed, so it cannot flake.

Sources: ../shared/reference/objectives.md (objectives.md below) sections 1-4, which quote
google-research/bert, huggingface/transformers, fairseq (RoBERTa) and SpanBERT.
"""

import math
import re

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from minillm.layers import IGNORE_INDEX
from minillm.corruption.bert import (
    ACTION_KEEP,
    ACTION_MASK,
    ACTION_NONE,
    ACTION_RANDOM,
    DynamicMasker,
    StaticMasker,
    fixed_num_to_predict,
    mask_tokens,
)
from minillm.corruption.nsp import IS_NEXT, IS_RANDOM, make_nsp_pairs
from minillm.corruption.spanbert import span_budget, span_length_distribution, span_mask
from minillm.tokenizer import CLS_ID, MASK_ID, PAD_ID, SEP_ID, Tokenizer

# A vocabulary of the tests' own, so that nothing depends on the tokenizer's: ids 0..6 are the
# specials of minillm.tokenizer, 7..9 stand for sentinels, 10..29 are the ordinary words.
SPECIAL = np.arange(10)
ORDINARY = np.arange(10, 30)
W = len(ORDINARY)


def random_rows(rng, B, T, kind="mixed"):
    """(B, T) ids of the given kind, and the attention mask of its right padding.

    mixed: ordinary words, ~20% special tokens, and right padding of random length.
    all_special / all_padding: rows with no eligible position at all. ordinary: no special, no pad.
    """
    if kind == "all_special":
        ids = rng.choice(SPECIAL[SPECIAL != PAD_ID], size=(B, T))
        return ids, np.ones((B, T), dtype=np.int64)
    if kind == "all_padding":
        return np.full((B, T), PAD_ID), np.zeros((B, T), dtype=np.int64)
    ids = rng.choice(ORDINARY, size=(B, T))
    if kind == "ordinary":
        return ids, np.ones((B, T), dtype=np.int64)
    ids = np.where(rng.random((B, T)) < 0.2, rng.choice(SPECIAL, size=(B, T)), ids)
    lengths = rng.integers(0, T + 1, size=B)
    attention_mask = (np.arange(T)[None, :] < lengths[:, None]).astype(np.int64)  # (B, T)
    ids = np.where(attention_mask == 1, ids, PAD_ID)
    return ids, attention_mask


rows_strategy = st.fixed_dictionaries(
    {
        "seed": st.integers(0, 2**32 - 1),
        "B": st.integers(1, 4),
        "T": st.integers(0, 12),
        "kind": st.sampled_from(["mixed", "mixed", "ordinary", "all_special", "all_padding"]),
    }
)


def check_common_invariants(ids, inputs, labels, info):
    """The invariants every corruption function keeps, checked position by position."""
    eligible = ~np.isin(ids, SPECIAL) & (ids != PAD_ID)
    selected, action = info["selected"], info["action"]
    np.testing.assert_array_equal(info["eligible"], eligible)
    assert inputs.shape == ids.shape and labels.shape == ids.shape
    # special and padding positions are never selected and never altered
    assert not (selected & ~eligible).any()
    np.testing.assert_array_equal(inputs[~eligible], ids[~eligible])
    # unselected positions are unchanged and ignored; selected ones are labelled with the original
    np.testing.assert_array_equal(inputs[~selected], ids[~selected])
    assert (labels[~selected] == IGNORE_INDEX).all()
    np.testing.assert_array_equal(labels[selected], ids[selected])
    # the action says what happened, and a replacement is [MASK] or an ordinary word, never special
    np.testing.assert_array_equal(action == ACTION_NONE, ~selected)
    assert (inputs[action == ACTION_MASK] == MASK_ID).all()
    assert np.isin(inputs[action == ACTION_RANDOM], ORDINARY).all()
    np.testing.assert_array_equal(inputs[action == ACTION_KEEP], ids[action == ACTION_KEEP])


# ----------------------------------------------------------------------------------------------
# mask_tokens: exact invariants


@given(
    rows=rows_strategy,
    rule=st.sampled_from(["bernoulli", "fixed"]),
    mlm_probability=st.sampled_from([0.0, 0.15, 0.5, 1.0]),
    split=st.sampled_from([(0.8, 0.1), (0.0, 1.0), (1.0, 0.0), (0.0, 0.0), (0.4, 0.3)]),
)
def test_mask_tokens_invariants(rows, rule, mlm_probability, split):
    rng = np.random.default_rng(rows["seed"])
    ids, attention_mask = random_rows(rng, rows["B"], rows["T"], rows["kind"])
    mask_prob, random_prob = split
    inputs, labels, info = mask_tokens(
        ids, rng, ORDINARY, SPECIAL, mlm_probability, mask_prob, random_prob, rule=rule
    )
    check_common_invariants(ids, inputs, labels, info)
    if rows["kind"] in ("all_special", "all_padding") or rows["T"] == 0:
        assert not info["selected"].any()


@given(rows=rows_strategy, max_predictions=st.sampled_from([None, 0, 1, 2, 20]))
def test_fixed_rule_selects_exactly_k(rows, max_predictions):
    rng = np.random.default_rng(rows["seed"])
    ids, _ = random_rows(rng, rows["B"], rows["T"], rows["kind"])
    _, _, info = mask_tokens(
        ids, rng, ORDINARY, SPECIAL, rule="fixed", max_predictions=max_predictions
    )
    n = info["eligible"].sum(axis=1)  # (B,)
    # k = min(P, max(1, round(0.15 n))), 0 for an empty row, recomputed here by hand
    cap = 10**9 if max_predictions is None else max_predictions
    k = [0 if n_b == 0 else min(cap, max(1, round(0.15 * n_b))) for n_b in n]
    np.testing.assert_array_equal(info["selected"].sum(axis=1), k)
    np.testing.assert_array_equal(info["num_to_predict"], k)


def test_fixed_num_to_predict_values():
    # objectives.md 1a [computed]: n = 128 -> 19, n = 30 -> 4 (round(4.5) is 4, half to even),
    # n = 10 -> 2; max(1, .) makes n = 3 give 1; the cap P = 20 applies from round(0.15 n) > 20.
    assert fixed_num_to_predict(128) == 19
    assert fixed_num_to_predict(30) == 4
    assert fixed_num_to_predict(10) == 2
    assert fixed_num_to_predict(3) == 1
    assert fixed_num_to_predict(1) == 1
    assert fixed_num_to_predict(0) == 0
    assert fixed_num_to_predict(200, max_predictions=20) == 20
    assert fixed_num_to_predict(128, max_predictions=20) == 19


@pytest.mark.parametrize("rule", ["bernoulli", "fixed"])
def test_rows_without_eligible_positions(rule):
    rng = np.random.default_rng(0)
    for ids in (
        np.zeros((0, 5), dtype=np.int64),  # no rows
        np.zeros((3, 0), dtype=np.int64),  # rows of length 0
        np.array([], dtype=np.int64),  # one row of length 0
        np.full((2, 6), PAD_ID),  # all padding
        np.array([[CLS_ID, SEP_ID, SEP_ID, 7, 8, PAD_ID]]),  # all special or sentinel
    ):
        inputs, labels, info = mask_tokens(ids, rng, ORDINARY, SPECIAL, 1.0, rule=rule)
        np.testing.assert_array_equal(inputs, ids)
        assert (labels == IGNORE_INDEX).all() and not info["selected"].any()


def test_attention_mask_marks_padding_by_position():
    # ordinary words behind attention_mask == 0 are padding too (transformers#23530: pad = eos)
    ids = np.tile(ORDINARY[:8], (3, 1))  # (3, 8)
    attention_mask = np.array([[1] * 8, [1] * 5 + [0] * 3, [0] * 8])
    _, _, info = mask_tokens(ids, np.random.default_rng(0), ORDINARY, SPECIAL, mlm_probability=1.0,
                             attention_mask=attention_mask)
    np.testing.assert_array_equal(info["selected"], attention_mask == 1)


@pytest.mark.parametrize("n_sentinels", [0, 20, 30, 100])
def test_default_special_ids_are_the_tokenizers_however_many_sentinels_it_has(n_sentinels):
    # Every reserved id of the tokenizer (specials and sentinels: is_special) is special by
    # default, for any number of sentinels: a fixed list of 20 masked <extra_id_20>... as words.
    tok = Tokenizer(["今天", "天气", "很好"], n_sentinels=n_sentinels)
    reserved = [i for i in range(len(tok)) if tok.is_special(i)]
    ids = np.array(reserved * 3 + list(tok.ordinary_ids))
    n = 3 * len(reserved)
    for corrupt in (lambda rng: mask_tokens(ids, rng, tok.ordinary_ids, mlm_probability=1.0),
                    lambda rng: span_mask(ids, rng, tok.ordinary_ids, mask_ratio=1.0),
                    lambda rng: StaticMasker(0, tok.ordinary_ids, mlm_probability=1.0)(0, ids),
                    lambda rng: DynamicMasker(0, tok.ordinary_ids, mlm_probability=1.0)(0, ids)):
        inputs, _, info = corrupt(np.random.default_rng(0))
        assert not info["selected"][:n].any() and info["selected"][n:].all()
        np.testing.assert_array_equal(inputs[:n], ids[:n])
    np.testing.assert_array_equal(tok.special_ids, reserved)  # what mlm.py passes explicitly


@given(seed=st.integers(0, 2**32 - 1), rule=st.sampled_from(["bernoulli", "fixed"]))
def test_same_seed_same_result_and_one_row_like_a_batch_of_one(seed, rule):
    ids, _ = random_rows(np.random.default_rng(seed), 3, 9)
    a = mask_tokens(ids, np.random.default_rng(seed), ORDINARY, SPECIAL, rule=rule)
    b = mask_tokens(ids, np.random.default_rng(seed), ORDINARY, SPECIAL, rule=rule)
    for x, y in zip(a[:2], b[:2]):
        np.testing.assert_array_equal(x, y)
    np.testing.assert_array_equal(a[2]["action"], b[2]["action"])
    # a (T,) row gives the (1, T) result with its batch axis dropped
    one = mask_tokens(ids[0], np.random.default_rng(seed), ORDINARY, SPECIAL, rule=rule)
    batch = mask_tokens(ids[:1], np.random.default_rng(seed), ORDINARY, SPECIAL, rule=rule)
    np.testing.assert_array_equal(one[0], batch[0][0])
    np.testing.assert_array_equal(one[1], batch[1][0])
    np.testing.assert_array_equal(one[2]["action"], batch[2]["action"][0])


# ----------------------------------------------------------------------------------------------
# mask_tokens: statistics


def within(observed, expected, sd, k=5.0):
    return abs(observed - expected) <= k * sd


def chi_square(counts, probabilities):
    """Pearson's Σ (O - E)² / E, and the bound mean + 5 sd of the χ² law with df = cells - 1.

    The χ² law with df degrees of freedom has mean df and standard deviation sqrt(2 df).
    """
    counts = np.asarray(counts, dtype=np.float64)
    expected = counts.sum() * np.asarray(probabilities)
    assert expected.min() >= 5, "too few expected counts per cell for the χ² approximation"
    df = len(counts) - 1
    return float(((counts - expected) ** 2 / expected).sum()), df + 5 * math.sqrt(2 * df)


@pytest.fixture(scope="module")
def bernoulli_sample():
    """One large Bernoulli-rule sample: 400 x 500 mixed positions, ~150 000 eligible."""
    rng = np.random.default_rng(2024)
    ids, attention_mask = random_rows(rng, 400, 500)
    ids[:, :250] = np.where(ids[:, :250] == PAD_ID, ORDINARY[0], ids[:, :250])  # long rows
    inputs, labels, info = mask_tokens(ids, rng, ORDINARY, SPECIAL)
    return ids, inputs, labels, info


def test_selection_rate_is_0_15(bernoulli_sample):
    # Expected 0.15 per eligible position (tutorial: 随机掩码 15%; HF mlm_probability = 0.15),
    # selected independently: the rate of n Bernoulli trials has sd sqrt(p (1 - p) / n).
    _, _, _, info = bernoulli_sample
    n = int(info["eligible"].sum())
    rate = info["selected"].sum() / n
    assert n > 100_000
    assert within(rate, 0.15, math.sqrt(0.15 * 0.85 / n)), rate


def test_mask_random_kept_split_is_80_10_10(bernoulli_sample):
    # Expected among selected: 0.8 [MASK], 0.1 random, 0.1 kept (tutorial table; objectives.md
    # 1a-1b: P([MASK]) = 0.8, random = 0.2 * 0.5 = 0.1, not 0.5, transformers#1927/#10285).
    _, _, _, info = bernoulli_sample
    action = info["action"][info["selected"]]
    m = len(action)
    for code, share in ((ACTION_MASK, 0.8), (ACTION_RANDOM, 0.1), (ACTION_KEEP, 0.1)):
        observed = (action == code).sum() / m
        assert within(observed, share, math.sqrt(share * (1 - share) / m)), (code, observed)


def test_random_words_are_uniform_over_ordinary_words(bernoulli_sample):
    # Expected: every ordinary word with probability 1 / W, W = 20 (minillm draws uniformly from
    # ordinary_ids). Pearson χ² with df = W - 1 = 19 (mean 19, sd sqrt(38) = 6.2); the bound
    # is mean + 5 sd = 49.8, a tail probability near 1e-4 under uniformity.
    _, inputs, _, info = bernoulli_sample
    replaced = inputs[info["action"] == ACTION_RANDOM]
    assert np.isin(replaced, ORDINARY).all()  # never special (exact)
    counts = np.bincount(replaced - ORDINARY[0], minlength=W)
    statistic, bound = chi_square(counts, np.full(W, 1 / W))
    assert statistic < bound, (statistic, bound)


def test_fixed_rule_chooses_positions_uniformly():
    # Rows of n = 20 eligible tokens: k = round(3.0) = 3, so each position is selected with
    # probability 3/20 (objectives.md 1a: k / n for every non-special position). Pearson χ² over
    # the 20 positions, df = 19, bound mean + 5 sd = 49.8. (Choosing without replacement makes
    # the counts negatively correlated, which only shrinks the statistic.)
    rng = np.random.default_rng(7)
    ids = rng.choice(ORDINARY, size=(3000, 20))
    _, _, info = mask_tokens(ids, rng, ORDINARY, SPECIAL, rule="fixed")
    assert (info["selected"].sum(axis=1) == 3).all()
    statistic, bound = chi_square(info["selected"].sum(axis=0), np.full(20, 1 / 20))
    assert statistic < bound, (statistic, bound)


# ----------------------------------------------------------------------------------------------
# Static and dynamic masking


def _examples(n=50, T=30, seed=3):
    return [random_rows(np.random.default_rng([seed, i]), 1, T, "ordinary")[0][0] for i in range(n)]


def _same(a, b):
    return np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])


@pytest.mark.parametrize("rule", ["bernoulli", "fixed"])
def test_static_masking_repeats_every_epoch(rule):
    masker = StaticMasker(seed=11, ordinary_ids=ORDINARY, special_ids=SPECIAL, rule=rule)
    examples = _examples()
    for i, ids in enumerate(examples):
        first = masker(i, ids, epoch=0)
        check_common_invariants(ids, *first)
        for epoch in (1, 2, 7):
            assert _same(masker(i, ids, epoch), first)
    # different examples get different masks: not all 49 other indices repeat example 0's mask
    assert not all(_same(masker(i, examples[0]), masker(0, examples[0])) for i in range(1, 50))


def test_static_masking_with_dupe_factor_cycles_through_copies():
    masker = StaticMasker(seed=11, ordinary_ids=ORDINARY, special_ids=SPECIAL, dupe_factor=3)
    examples = _examples()
    for i, ids in enumerate(examples):
        for epoch in range(3):
            assert _same(masker(i, ids, epoch), masker(i, ids, epoch + 3))
            assert _same(masker(i, ids, epoch), masker(i, ids, epoch + 6))
    # the 3 copies differ: two independent selections of a 30-word row agree with probability
    # (0.85² + 0.15²)^30 = 1.5e-4, so all 50 examples agreeing is impossible in practice
    assert not all(_same(masker(i, ids, 0), masker(i, ids, 1)) for i, ids in enumerate(examples))


@pytest.mark.parametrize("rule", ["bernoulli", "fixed"])
def test_dynamic_masking_draws_a_new_mask_each_epoch(rule):
    masker = DynamicMasker(seed=11, ordinary_ids=ORDINARY, special_ids=SPECIAL, rule=rule)
    examples = _examples()
    for i, ids in enumerate(examples):
        assert _same(masker(i, ids, 4), masker(i, ids, 4))  # reproducible from (seed, epoch, index)
    # A new mask each epoch. Two independent selections of a 30-word row agree with probability
    # (0.85² + 0.15²)^30 = 1.5e-4 (bernoulli) or 1 / C(30, 4) = 3.6e-5 (fixed, k = 4), so not
    # all 50 examples repeat, and 3 or more repeats of 50 have probability C(50, 3) (1.5e-4)^3
    # < 1e-7. The seed is fixed, so the test is exact.
    for e1, e2 in ((0, 1), (1, 2), (0, 5)):
        repeated = [_same(masker(i, ids, e1), masker(i, ids, e2)) for i, ids in enumerate(examples)]
        assert not all(repeated)
        assert sum(repeated) <= 2


def test_maskers_accept_span_masking():
    static = StaticMasker(5, ORDINARY, SPECIAL, corrupt=span_mask, mask_ratio=0.3)
    dynamic = DynamicMasker(5, ORDINARY, SPECIAL, corrupt=span_mask, mask_ratio=0.3)
    examples = _examples(20)
    for i, ids in enumerate(examples):
        assert _same(static(i, ids, 0), static(i, ids, 9))
        assert static(i, ids)[2]["selected"].sum() == 9  # ceil(0.3 * 30)
    assert not all(_same(dynamic(i, ids, 0), dynamic(i, ids, 1)) for i, ids in enumerate(examples))


# ----------------------------------------------------------------------------------------------
# span_mask


def test_span_length_distribution_exact():
    law = span_length_distribution(0.2, 10)
    lengths = np.arange(1, 11)
    # a loop-based oracle of P(l) = p (1 - p)^(l - 1) / Z
    weights = [0.2 * 0.8 ** (l - 1) for l in range(1, 11)]
    np.testing.assert_allclose(law, [w / sum(weights) for w in weights], rtol=1e-14)
    np.testing.assert_allclose(law.sum(), 1.0, rtol=1e-14)
    # objectives.md section 4 [computed]: mean 3.797 words, P(1) = 0.224, P(10) = 0.030; p = 0.3
    # gives mean 3.043
    assert round(float((lengths * law).sum()), 3) == 3.797
    assert round(float(law[0]), 3) == 0.224 and round(float(law[9]), 3) == 0.030
    assert round(float((lengths * span_length_distribution(0.3, 10)).sum()), 3) == 3.043
    np.testing.assert_array_equal(span_length_distribution(1.0, 4), [1, 0, 0, 0])
    np.testing.assert_array_equal(span_length_distribution(0.5, 1), [1])


def test_span_budget_values():
    # ceil(0.15 n): objectives.md section 4 gives 77 for n = 510
    assert span_budget(510) == 77
    assert [span_budget(n) for n in (0, 1, 6, 7, 20, 21)] == [0, 1, 1, 2, 3, 4]


def check_spans(ids, info, max_span, mask_ratio):
    """Every span of span_mask, replayed in the order it was drawn."""
    eligible, selected, action = info["eligible"], info["selected"], info["action"]
    B, T = ids.shape
    replay = np.zeros((B, T), dtype=bool)
    last_span_of_row = {span.row: j for j, span in enumerate(info["spans"])}
    for j, span in enumerate(info["spans"]):
        b, start, end = span.row, span.start, span.end
        assert 1 <= end - start <= span.drawn_length <= max_span
        assert eligible[b, start:end].all() and not replay[b, start:end].any()  # no overlap
        assert (action[b, start:end] == span.action).all()  # one decision per span
        replay[b, start:end] = True
        if end - start < span.drawn_length:  # a cut has a reason
            assert (
                end == T or not eligible[b, end] or replay[b, end] or j == last_span_of_row[b]
            ), span
    np.testing.assert_array_equal(replay, selected)  # the spans are exactly the selection
    budget = [span_budget(int(n), mask_ratio) for n in eligible.sum(axis=1)]
    np.testing.assert_array_equal(selected.sum(axis=1), budget)  # exactly the budget


@given(
    rows=rows_strategy,
    mask_ratio=st.sampled_from([0.0, 0.15, 0.5, 1.0]),
    max_span=st.sampled_from([1, 3, 10]),
    split=st.sampled_from([(0.8, 0.1), (0.0, 1.0), (0.0, 0.0)]),
)
def test_span_mask_invariants(rows, mask_ratio, max_span, split):
    rng = np.random.default_rng(rows["seed"])
    ids, attention_mask = random_rows(rng, rows["B"], rows["T"], rows["kind"])
    inputs, labels, info = span_mask(
        ids, rng, ORDINARY, SPECIAL, mask_ratio=mask_ratio, max_span=max_span,
        mask_prob=split[0], random_prob=split[1], attention_mask=attention_mask,
    )
    check_common_invariants(ids, inputs, labels, info)
    check_spans(ids, info, max_span, mask_ratio)


@given(seed=st.integers(0, 2**32 - 1))
def test_span_mask_same_seed_same_result(seed):
    ids, _ = random_rows(np.random.default_rng(seed), 3, 40)
    a = span_mask(ids, np.random.default_rng(seed), ORDINARY, SPECIAL, mask_ratio=0.3)
    b = span_mask(ids, np.random.default_rng(seed), ORDINARY, SPECIAL, mask_ratio=0.3)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert a[2]["spans"] == b[2]["spans"]
    one = span_mask(ids[1], np.random.default_rng(seed), ORDINARY, SPECIAL)
    assert all(span.row == 0 for span in one[2]["spans"]) and one[0].shape == (40,)


@pytest.fixture(scope="module")
def span_sample():
    """1500 rows of 100 ordinary words: budget 15 each, about 6000 spans."""
    rng = np.random.default_rng(99)
    ids = rng.choice(ORDINARY, size=(1500, 100))
    inputs, labels, info = span_mask(ids, rng, ORDINARY, SPECIAL)
    return ids, inputs, labels, info


LAW = span_length_distribution(0.2, 10)
LAW_MEAN = float((np.arange(1, 11) * LAW).sum())  # 3.797
LAW_SD = math.sqrt(float((np.arange(1, 11) ** 2 * LAW).sum()) - LAW_MEAN**2)  # 2.554


def test_drawn_span_lengths_follow_the_clipped_geometric_law(span_sample):
    # Expected: P(l) = 0.2 * 0.8^(l-1) / Z on 1..10, mean 3.797 words (SpanBERT paper setting,
    # objectives.md section 4). The mean of m draws has sd LAW_SD / sqrt(m). The histogram:
    # Pearson χ² over the 10 lengths, df = 9 (mean 9, sd sqrt(18) = 4.24), bound 9 + 5 sd = 30.2.
    _, _, _, info = span_sample
    drawn = np.array([span.drawn_length for span in info["spans"]])
    m = len(drawn)
    assert m > 5000
    assert within(drawn.mean(), LAW_MEAN, LAW_SD / math.sqrt(m)), drawn.mean()
    statistic, bound = chi_square(np.bincount(drawn, minlength=11)[1:], LAW)
    assert statistic < bound, (statistic, bound)


def test_uncut_span_lengths_follow_the_clipped_geometric_law():
    # The first span of a row starting at least max_span = 10 before the end of a row of 100
    # words cannot be cut (the budget is 15 >= 10, nothing is selected yet, nothing special
    # follows): its realised length is exactly its drawn length, and whether it qualifies
    # depends only on its start, drawn independently of its length. So realised lengths have
    # mean 3.797 (objectives.md section 4); sd of the mean LAW_SD / sqrt(m).
    rng = np.random.default_rng(5)
    ids = rng.choice(ORDINARY, size=(3000, 100))
    _, _, info = span_mask(ids, rng, ORDINARY, SPECIAL)
    first = {}
    for span in info["spans"]:
        first.setdefault(span.row, span)
    uncut = [s for s in first.values() if s.start <= 100 - 10]
    assert all(s.end - s.start == s.drawn_length for s in uncut)  # exact
    realised = np.array([s.end - s.start for s in uncut])
    m = len(realised)
    assert m > 2500
    assert within(realised.mean(), LAW_MEAN, LAW_SD / math.sqrt(m)), realised.mean()
    statistic, bound = chi_square(np.bincount(realised, minlength=11)[1:], LAW)
    assert statistic < bound, (statistic, bound)


def test_span_decision_is_80_10_10_per_span(span_sample):
    # Expected per span: 0.8 all [MASK], 0.1 all random, 0.1 all kept (SpanBERT's "span"
    # replacement, objectives.md section 4); sd sqrt(q (1 - q) / m) over m spans.
    _, inputs, _, info = span_sample
    codes = np.array([span.action for span in info["spans"]])
    m = len(codes)
    for code, share in ((ACTION_MASK, 0.8), (ACTION_RANDOM, 0.1), (ACTION_KEEP, 0.1)):
        observed = (codes == code).sum() / m
        assert within(observed, share, math.sqrt(share * (1 - share) / m)), (code, observed)
    # the random words of a random span are uniform over the ordinary words: χ², df = 19, 49.8
    counts = np.bincount(inputs[info["action"] == ACTION_RANDOM] - ORDINARY[0], minlength=W)
    statistic, bound = chi_square(counts, np.full(W, 1 / W))
    assert statistic < bound, (statistic, bound)


# ----------------------------------------------------------------------------------------------
# Next sentence prediction


def random_corpus(rng, n_documents, max_sentences, max_words=6):
    return [
        [list(rng.choice(ORDINARY, size=rng.integers(1, max_words + 1)))
         for _ in range(rng.integers(0, max_sentences + 1))]
        for _ in range(n_documents)
    ]


def check_nsp(documents, pairs, a_sentences):
    """Every example, exactly: layout, segments, mask, label, and where A and B come from."""
    N, T = pairs["input_ids"].shape
    assert N == sum(max(0, len(doc) - a_sentences) for doc in documents)
    for i in range(N):
        (da, sa), (db, sb) = pairs["a_source"][i], pairs["b_source"][i]
        a = [w for sentence in documents[da][sa : sa + a_sentences] for w in sentence]
        b = documents[db][sb]
        row = [CLS_ID, *a, SEP_ID, *b, SEP_ID]
        expected = row + [PAD_ID] * (T - len(row))
        np.testing.assert_array_equal(pairs["input_ids"][i], expected)
        types = [0] * (len(a) + 2) + [1] * (len(b) + 1) + [0] * (T - len(row))
        np.testing.assert_array_equal(pairs["token_type_ids"][i], types)
        mask = [1] * len(row) + [0] * (T - len(row))
        np.testing.assert_array_equal(pairs["attention_mask"][i], mask)
        if pairs["next_sentence_label"][i] == IS_NEXT:
            assert (db, sb) == (da, sa + a_sentences)  # the actual next sentence
        else:
            assert pairs["next_sentence_label"][i] == IS_RANDOM
            assert db != da  # a random B never comes from A's document
    assert T == pairs["attention_mask"].sum(axis=1).max()  # padded to the longest


@given(
    seed=st.integers(0, 2**32 - 1),
    n_documents=st.integers(2, 5),
    a_sentences=st.integers(1, 2),
    random_next_prob=st.sampled_from([0.0, 0.5, 1.0]),
)
def test_nsp_pairs_exact(seed, n_documents, a_sentences, random_next_prob):
    rng = np.random.default_rng(seed)
    documents = random_corpus(rng, n_documents, 4)
    documents[0] = [[ORDINARY[0]], [ORDINARY[1], ORDINARY[2]], [ORDINARY[3]]]  # a pair exists
    documents[1] = documents[1] or [[ORDINARY[4]]]  # a second non-empty document exists
    pairs = make_nsp_pairs(documents, rng, a_sentences, random_next_prob)
    check_nsp(documents, pairs, a_sentences)
    if random_next_prob in (0.0, 1.0):
        assert (pairs["next_sentence_label"] == (IS_RANDOM if random_next_prob else IS_NEXT)).all()


def test_nsp_positive_rate_is_one_half():
    # Expected: P(B is the actual next sentence) = 0.5 (Google BERT, objectives.md section 2,
    # which is exactly 0.5 when every A has a next sentence, as here); sd sqrt(0.25 / N).
    # A random B never comes from A's document, checked exactly on every example.
    rng = np.random.default_rng(8)
    documents = random_corpus(rng, 300, 40, max_words=3)
    pairs = make_nsp_pairs(documents, rng)
    check_nsp(documents, pairs, 1)
    N = len(pairs["next_sentence_label"])
    assert N > 5000
    rate = (pairs["next_sentence_label"] == IS_NEXT).mean()
    assert within(rate, 0.5, math.sqrt(0.25 / N)), rate


def test_nsp_needs_another_document():
    rng = np.random.default_rng(0)
    one = [[[11, 12], [13], [14, 15]]]
    with pytest.raises(ValueError, match=re.escape("len(documents)=1")):
        make_nsp_pairs(one, rng)
    with pytest.raises(ValueError, match="at least two non-empty documents"):
        make_nsp_pairs(one + [[], []], rng)  # other documents, but none to draw a sentence from
    with pytest.raises(ValueError, match=re.escape("documents[1][0] = []")):
        make_nsp_pairs(one + [[[], [11]]], rng)
    with pytest.raises(ValueError, match="a_sentences \\+ 1 = 2"):
        make_nsp_pairs([[[11]], [[12]]], rng)  # no document has a next sentence


# ----------------------------------------------------------------------------------------------
# Errors name the argument and its value


IDS = np.array([[CLS_ID, 11, 12, 13, SEP_ID]])
DOCS = [[[11], [12]], [[13]]]


def masking(**kwargs):
    return lambda rng: mask_tokens(IDS, rng, ORDINARY, SPECIAL, **kwargs)


def spans(**kwargs):
    return lambda rng: span_mask(IDS, rng, ORDINARY, SPECIAL, **kwargs)


@pytest.mark.parametrize(
    "call, message",
    [
        (masking(mlm_probability=1.5), "mlm_probability=1.5"),
        (masking(mask_prob=-0.1), "mask_prob=-0.1"),
        (masking(random_prob=float("nan")), "random_prob=nan"),
        (masking(mask_prob=0.8, random_prob=0.3), "mask_prob=0.8 + random_prob=0.3"),
        (masking(rule="poisson"), "rule='poisson'"),
        (masking(rule="fixed", max_predictions=-1), "max_predictions=-1"),
        (masking(max_predictions=20), "max_predictions=20 with rule='bernoulli'"),
        (masking(attention_mask=np.ones((1, 4))), "shape of ids (1, 5), got (1, 4)"),
        (lambda rng: mask_tokens(IDS, rng, [], SPECIAL), "ordinary_ids=[]"),
        (lambda rng: mask_tokens(IDS, rng, [5, 11], SPECIAL), "got [5] in both ordinary_ids"),
        (lambda rng: mask_tokens(IDS[None], rng, ORDINARY, SPECIAL), "ids must have 1 or 2 "
         "dimension(s), got shape (1, 1, 5)"),
        (lambda rng: mask_tokens(IDS * 1.0, rng, ORDINARY, SPECIAL), "ids must hold integer token "
         "ids, got dtype float64"),
        (spans(mask_ratio=2), "mask_ratio=2"),
        (spans(geometric_p=0.0), "geometric_p=0.0"),
        (spans(max_span=0), "max_span=0"),
        (lambda rng: span_mask(IDS, rng, [], SPECIAL), "ordinary_ids=[]"),
        (lambda rng: span_length_distribution(1.5, 10), "p=1.5"),
        (lambda rng: StaticMasker(-1, ORDINARY, SPECIAL), "seed=-1"),
        (lambda rng: StaticMasker(0, ORDINARY, SPECIAL, dupe_factor=0), "dupe_factor=0"),
        (lambda rng: DynamicMasker(0, ORDINARY, SPECIAL)(-2, IDS[0]), "index=-2"),
        (lambda rng: DynamicMasker(0, ORDINARY, SPECIAL)(0, IDS[0], epoch=1.5), "epoch=1.5"),
        (lambda rng: make_nsp_pairs(DOCS, rng, a_sentences=0), "a_sentences=0"),
        (lambda rng: make_nsp_pairs(DOCS, rng, random_next_prob=1.2), "random_next_prob=1.2"),
    ],
)
def test_errors_name_the_argument_and_the_value(call, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        call(np.random.default_rng(0))
