"""Seq2seq corruption (T5 span corruption, BART text infilling and sentence permutation):
exact invariants, statistics at >= 5 standard deviations, and argument errors.

Expected values come from closed forms; the numbers quoted from other implementations are from
../shared/reference/objectives.md, sections 6 (T5) and 7 (BART, fairseq).
"""

import math
from collections import Counter
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minillm.corruption.bart import (
    draw_span_lengths,
    permute_sentences,
    split_sentences,
    text_infilling,
)
from minillm.corruption.t5 import (
    longest_inputs_for_sentinels,
    noise_spans_to_sentinels,
    pack_sequences,
    random_spans_noise_mask,
    span_corruption,
    t5_input_and_target_lengths,
    t5_noise_counts,
)
from minillm.tokenizer import BOS_ID, EOS_ID, MASK_ID, SPECIAL_TOKENS

# Sentinel ids as in minillm's vocabulary (<extra_id_k> = 7 + k), without building a vocabulary.
FIRST_SENTINEL_ID = len(SPECIAL_TOKENS)
SENTINELS = list(range(FIRST_SENTINEL_ID, FIRST_SENTINEL_ID + 100))
# Ordinary token ids for the texts, far from every special id and sentinel.
WORDS = (1000, 2000)
seeds = st.integers(0, 2**32 - 1)


def random_text(rng, L):
    return rng.integers(*WORDS, size=L)


def noise_runs(mask):
    """Lengths of the runs of True in a bool array, left to right (a slow, obvious loop)."""
    runs, current = [], 0
    for m in mask:
        if m:
            current += 1
        elif current:
            runs.append(current)
            current = 0
    if current:
        runs.append(current)
    return runs


def expected_t5_counts(L):
    """T5's N and S at density 0.15 = 3/20 and μ = 3, in exact rational arithmetic.

    Python's round of a Fraction rounds half to even, like tf.round.
    """
    Lp = max(L, 2)
    N = min(max(round(Fraction(Lp) * Fraction(3, 20)), 1), Lp - 1)
    S = max(round(Fraction(N, 3)), 1)
    return N, S


def t5_noise_span_to_unique_sentinel(tokens, noise_mask, sentinels):
    """T5's noise_span_to_unique_sentinel (preprocessors.py L3141), as T5 writes it with shifted
    masks: the first token of each noise run becomes the next sentinel, the rest of the run is
    dropped. T5 makes the input with noise_mask and the target with ~noise_mask (reference 6)."""
    noise_mask = np.asarray(noise_mask, dtype=bool)
    prev = np.concatenate([[False], noise_mask[:-1]])
    first_noise = noise_mask & ~prev
    subsequent = noise_mask & prev
    sentinel_of = np.array(sentinels)[np.maximum(np.cumsum(first_noise) - 1, 0)]
    out = np.where(first_noise, sentinel_of, tokens)
    return out[~subsequent].tolist()


def rebuild_from_sentinels(inputs, targets, sentinels):
    """Replace each sentinel of the input by the tokens that follow it in the target."""
    assert inputs[-1] == EOS_ID and targets[-1] == EOS_ID
    sentinel_set = set(sentinels)
    filling, current = {}, None
    for t in targets[:-1]:
        if t in sentinel_set:
            current = t
            filling[current] = []
        else:
            assert current is not None, "the target must start with a sentinel"
            filling[current].append(t)
    out = []
    for t in inputs[:-1]:
        out += filling.pop(t) if t in sentinel_set else [t]
    assert filling == {}, "every target sentinel is used exactly once"
    return out


# ----------------------------------------------------------------------------------------------
# T5: exact


def test_noise_counts_follow_t5s_formulas_for_every_length_1_to_300():
    # Half-way cases round to even: L = 10 -> 1.5 -> 2, L = 30 -> 4.5 -> 4, L = 190 -> 28.5 -> 28.
    for L in range(1, 301):
        assert t5_noise_counts(L) == expected_t5_counts(L), L
    assert [t5_noise_counts(L)[0] for L in (10, 30, 190)] == [2, 4, 28]
    assert t5_noise_counts(568) == (85, 28)  # reference section 6: N = 85, S = 28 at L = 568


@settings(max_examples=10)  # each example runs all 300 lengths: 3000 corruptions in about 1 s
@given(seed=seeds)
def test_t5_mask_and_corruption_invariants_for_every_length_1_to_300(seed):
    text_rng = np.random.default_rng(seed)
    sentinel_set = set(SENTINELS)
    for L in range(1, 301):
        ids = random_text(text_rng, L)
        mask = random_spans_noise_mask(L, np.random.default_rng([seed, L]))
        inputs, targets = span_corruption(ids, np.random.default_rng([seed, L]), SENTINELS)
        N, S = expected_t5_counts(L)
        assert mask.shape == (L,) and mask.dtype == bool
        if L == 1:
            # max(L, 2) = 2 gives [non-noise, noise], cut to one token: no noise in the input,
            # and T5's target is <extra_id_0> (the complement [True] is one noise run).
            assert not mask[0]
            assert inputs.tolist() == [ids[0], EOS_ID]
            assert targets.tolist() == [SENTINELS[0], EOS_ID]
            continue
        assert mask.sum() == N
        assert len(noise_runs(mask.tolist())) == S
        assert not mask[0] and mask[-1]  # starts with non-noise, ends with noise
        # span_corruption draws the same mask from the same seed.
        inputs, targets = inputs.tolist(), targets.tolist()
        same = noise_spans_to_sentinels(ids, mask, SENTINELS)
        assert (inputs, targets) == (same[0].tolist(), same[1].tolist())
        # Sentinels <extra_id_0>, <extra_id_1>, ... appear once each, in increasing k order.
        assert [t for t in inputs if t in sentinel_set] == SENTINELS[:S]
        assert [t for t in targets if t in sentinel_set] == SENTINELS[:S]
        assert len(inputs) == (L - N) + S + 1 and len(targets) == N + S + 1
        assert rebuild_from_sentinels(inputs, targets, SENTINELS) == ids.tolist()


def test_inputs_and_targets_are_t5s_sentinel_replacements_of_the_mask_and_its_complement():
    # T5 makes the input by noise_span_to_unique_sentinel on the mask and the target by the
    # same function on ~mask, then appends [EOS] (reference 6). For L = 1 the mask is [False],
    # so T5's target is [<extra_id_0>, EOS].
    for L in range(1, 301):
        ids = random_text(np.random.default_rng([L, 1]), L)
        mask = random_spans_noise_mask(L, np.random.default_rng([L, 2]))
        inputs, targets = span_corruption(ids, np.random.default_rng([L, 2]), SENTINELS)
        assert inputs.tolist() == [*t5_noise_span_to_unique_sentinel(ids, mask, SENTINELS), EOS_ID]
        assert targets.tolist() == [*t5_noise_span_to_unique_sentinel(ids, ~mask, SENTINELS),
                                    EOS_ID], L


def test_corruption_of_a_hand_written_mask():
    # x: 今天 天气 很 好 ， 我们 去 公园 玩 。  with 天气 很 and 公园 as noise (module docstring).
    ids = [1001, 1002, 1003, 1004, 1005, 1006, 1007, 1008, 1009, 1010]
    mask = [False, True, True, False, False, False, False, True, False, False]
    s0, s1 = SENTINELS[:2]
    inputs, targets = noise_spans_to_sentinels(ids, mask, SENTINELS)
    assert inputs.tolist() == [1001, s0, 1004, 1005, 1006, 1007, s1, 1009, 1010, EOS_ID]
    assert targets.tolist() == [s0, 1002, 1003, s1, 1008, EOS_ID]
    # A mask starting with noise (T5's never do) still gives "sentinel, then its tokens".
    inputs, targets = noise_spans_to_sentinels([1001, 1002, 1003], [True, False, True], SENTINELS)
    assert inputs.tolist() == [s0, 1002, s1, EOS_ID]
    assert targets.tolist() == [s0, 1001, s1, 1003, EOS_ID]


def test_t5s_decreasing_sentinel_ids_work_too():
    # T5's vocabulary: <extra_id_0> = vocab_size − 1 = 32099, then 32098, ... (reference 6).
    t5_sentinels = list(range(32099, 31999, -1))
    ids = random_text(np.random.default_rng(0), 200)
    inputs, targets = span_corruption(ids, np.random.default_rng(1), t5_sentinels)
    S = t5_noise_counts(200)[1]
    assert [t for t in inputs if t >= 32000] == t5_sentinels[:S]
    assert rebuild_from_sentinels(inputs.tolist(), targets.tolist(), t5_sentinels) == ids.tolist()


def test_up_to_30_tokens_the_mask_is_always_the_last_n_tokens():
    # S = 1 for L <= 30, so the only mask is one non-noise span then one noise span (t5#905).
    for L in range(2, 31):
        N, S = t5_noise_counts(L)
        assert S == 1
        for seed in range(5):
            mask = random_spans_noise_mask(L, np.random.default_rng(seed))
            assert mask.tolist() == [False] * (L - N) + [True] * N
    # At L = 31, N = 5 and S = 2: the masks differ between seeds.
    masks = {tuple(random_spans_noise_mask(31, np.random.default_rng(s))) for s in range(20)}
    assert len(masks) > 1


def docstring_example(doc):
    """The x, x̃ and y of a docstring, as token lists (a line that starts with neither label
    continues the one above)."""
    rows, label = {}, None
    for line in doc.splitlines():
        head, _, rest = line.strip().partition(":")
        if head in ("x", "x̃", "y") and rest:
            label = head
            rows[label] = rest.split()
        elif label and line.strip():
            rows[label] += line.split()
        else:
            label = None
    return rows["x"], rows["x̃"], rows["y"]


def test_span_corruptions_docstring_example_is_one_it_produces():
    # The example must be a corruption T5's rule can give: a mask of len(x) tokens with N noise
    # tokens in S runs, starting with non-noise and ending with noise (every such mask is
    # equally likely, reference 6), and it is what span_corruption returns for some seed.
    x, x_tilde, y = docstring_example(span_corruption.__doc__)
    names = {f"<extra_id_{k}>": s for k, s in enumerate(SENTINELS)} | {"[EOS]": EOS_ID}
    names |= {w: 1000 + i for i, w in enumerate(dict.fromkeys(x))}  # a made-up id per word

    def to_ids(tokens):
        return [names[t] for t in tokens]

    ids, inputs, targets = to_ids(x), to_ids(x_tilde), to_ids(y)
    assert rebuild_from_sentinels(inputs, targets, SENTINELS) == ids
    span_length, current = Counter(), None  # the number of target tokens after each sentinel
    for t in targets[:-1]:
        current = t if t in SENTINELS else current
        span_length[current] += t not in SENTINELS
    mask = [m for t in inputs[:-1]
            for m in ([True] * span_length[t] if t in SENTINELS else [False])]
    N, S = expected_t5_counts(len(ids))
    assert (sum(mask), len(noise_runs(mask))) == (N, S)
    assert not mask[0] and mask[-1]
    seed = next(s for s in range(20000)
                if random_spans_noise_mask(len(ids), np.random.default_rng(s)).tolist() == mask)
    got = span_corruption(ids, np.random.default_rng(seed), SENTINELS)
    assert (got[0].tolist(), got[1].tolist()) == (inputs, targets)


@settings(max_examples=50)
@given(lengths=st.lists(st.integers(0, 40), max_size=8), length=st.integers(1, 50))
def test_pack_sequences_cuts_the_stream_into_pieces_of_one_length(lengths, length):
    rng = np.random.default_rng(len(lengths) * 100 + length)
    sequences = [random_text(rng, n) for n in lengths]
    pieces = pack_sequences(sequences, length)
    stream = [t for s in sequences for t in s.tolist()]
    assert [t for p in pieces for t in p.tolist()] == stream  # nothing lost, nothing added
    assert all(len(p) == length for p in pieces[:-1])
    assert len(pieces) == math.ceil(len(stream) / length)


def test_longest_inputs_for_sentinels_is_the_last_input_length_they_serve():
    # By brute force over input lengths: the spans S of the raw length each input length packs.
    needs = {I: t5_noise_counts(t5_input_and_target_lengths(I)[0])[1] for I in range(3, 500)}
    assert all(needs[I] <= needs[I + 1] for I in range(3, 499))  # S never decreases
    for n in range(1, 25):
        assert longest_inputs_for_sentinels(n) == max(I for I, S in needs.items() if S <= n)
    assert longest_inputs_for_sentinels(20) == 369  # minillm's vocabulary has 20


@pytest.mark.parametrize("inputs_length, raw, targets", [
    (512, 568, 114), (128, 141, 29), (256, 284, 58), (1024, 1137, 229),  # reference section 6
])
def test_t5_raw_lengths_reproduce_t5s_values(inputs_length, raw, targets):
    assert t5_input_and_target_lengths(inputs_length) == (raw, targets)


@pytest.mark.parametrize("noise_density, mean_span_length", [
    (0.15, 3.0), (0.15, 2.0), (0.3, 3.0), (0.5, 3.0), (0.5, 2.0),
])
def test_t5_raw_length_is_the_largest_that_fits_and_its_lengths_are_exact(
        noise_density, mean_span_length):
    rng = np.random.default_rng(0)
    settings = dict(noise_density=noise_density, mean_span_length=mean_span_length)
    for inputs_length in range(3, 160):
        raw, targets_length = t5_input_and_target_lengths(inputs_length, **settings)
        inputs, targets = span_corruption(random_text(rng, raw), rng, SENTINELS, **settings)
        assert len(inputs) <= inputs_length
        assert len(targets) == targets_length
        longer, _ = span_corruption(random_text(rng, raw + 1), rng, SENTINELS, **settings)
        assert len(longer) > inputs_length  # one more raw token no longer fits


# ----------------------------------------------------------------------------------------------
# T5: statistics


def test_t5_noise_span_lengths_follow_the_uniform_composition_law():
    # L = 568: N = 85, S = 28 (reference 6). The noise is a uniform composition of N into S
    # parts, so one span has length k with probability
    #     P(k) = C(N−k−1, S−2) / C(N−1, S−1)      (k = 1 .. N−S+1),
    # mean exactly N/S = 3.036, P(1) = (S−1)/(N−1) = 27/84 = 0.3214 (reference: computed
    # 0.321, measured 0.3226).
    L, N, S, n = 568, 85, 28, 4000
    P = {k: Fraction(math.comb(N - k - 1, S - 2), math.comb(N - 1, S - 1))
         for k in range(1, N - S + 2)}
    assert sum(P.values()) == 1 and sum(k * p for k, p in P.items()) == Fraction(N, S)
    assert P[1] == Fraction(27, 84)

    rng = np.random.default_rng(1234)
    runs = [noise_runs(random_spans_noise_mask(L, rng)) for _ in range(n)]  # n lists of S
    # Exact: every mask has S spans adding up to N, so the mean over a mask is exactly N/S.
    assert all(len(r) == S and sum(r) == N for r in runs)

    # Frequency of k = 1 over all n·S spans. X = number of length-1 spans in one mask:
    # E[X] = S·P(1) = 9 and Var X = S·P(1) + S(S−1)·P(1,1) − E[X]², with P(1,1) the probability
    # that two given spans both have length 1 = C(N−3, S−3)/C(N−1, S−1) (the other S−2 spans
    # compose N−2). Masks are independent, so sd(frequency) = sqrt(Var X / n) / S.
    p1 = float(P[1])
    p11 = math.comb(N - 3, S - 3) / math.comb(N - 1, S - 1)
    var_X = S * p1 + S * (S - 1) * p11 - (S * p1) ** 2
    frequency = sum(r.count(1) for r in runs) / (n * S)
    assert abs(frequency - p1) <= 5 * math.sqrt(var_X / n) / S

    # Mean of one span (the first of each mask, independent across masks): N/S, with the
    # variance of P(k).
    var_k = float(sum(k * k * p for k, p in P.items()) - Fraction(N, S) ** 2)
    first = np.array([r[0] for r in runs])
    assert abs(first.mean() - N / S) <= 5 * math.sqrt(var_k / n)
    assert abs(np.mean(first == 1) - p1) <= 5 * math.sqrt(p1 * (1 - p1) / n)


# ----------------------------------------------------------------------------------------------
# BART text infilling: exact


def rebuild_inputs_from_info(ids, info):
    """The corrupted input from the recorded spans and inserts, by a slow walk over ids."""
    span_at = dict(info["spans"])
    inserts = Counter(info["inserts"])
    out, i = [], 0
    while i < len(ids):
        out += [MASK_ID] * inserts.pop(i, 0)
        if i in span_at:
            out.append(MASK_ID)
            i += span_at[i]
        else:
            out.append(ids[i])
            i += 1
    out += [MASK_ID] * inserts.pop(len(ids), 0)
    assert not inserts
    return out


@given(seed=seeds, n=st.integers(0, 60), with_bos=st.booleans(), with_eos=st.booleans(),
       mask_ratio=st.sampled_from([0.0, 0.15, 0.3, 0.5, 1.0]),
       poisson_lambda=st.sampled_from([0.5, 3.0, 3.5]),
       slack=st.one_of(st.none(), st.integers(0, 3)))
def test_text_infilling_exact_invariants(seed, n, with_bos, with_eos, mask_ratio, poisson_lambda,
                                        slack):
    rng = np.random.default_rng(seed)
    ids = [BOS_ID] * with_bos + random_text(rng, n).tolist() + [EOS_ID] * with_eos
    if not ids:
        return
    budget = math.ceil(Fraction(str(mask_ratio)) * n)
    # A bound on the inputs: none, or |ids| plus a slack (one draw of λ >= 3 fits it with
    # probability >= 0.95: text_infilling's docstring).
    max_length = None if slack is None or poisson_lambda < 3 else len(ids) + slack
    inputs, target, info = text_infilling(ids, rng, mask_ratio, poisson_lambda,
                                          max_length=max_length)
    inputs = inputs.tolist()
    lo, hi = int(with_bos), len(ids) - int(with_eos)
    if max_length is not None:
        assert len(inputs) <= max_length
    if info["redraws"] == 0:  # the first draw fitted: the corruption made without a bound
        rng = np.random.default_rng(seed)
        random_text(rng, n)
        unbounded = text_infilling(ids, rng, mask_ratio, poisson_lambda)
        assert unbounded[0].tolist() == inputs and unbounded[2] == info

    assert target.tolist() == ids  # BART reconstructs the whole original
    if with_bos:
        assert inputs[0] == BOS_ID
    if with_eos:
        assert inputs[-1] == EOS_ID
    # Budget: ceil(mask_ratio · n) of the n body tokens, all masked (spans do not overlap).
    assert info["budget"] == budget
    spans, inserts = info["spans"], info["inserts"]
    assert sum(length for _, length in spans) == budget
    covered = [i for start, length in spans for i in range(start, start + length)]
    assert len(set(covered)) == len(covered) == budget  # no overlap
    assert all(lo <= i < hi for i in covered) and all(lo <= i <= hi for i in inserts)
    # One [MASK] per span, zero-length spans (inserts) included.
    assert inputs.count(MASK_ID) == len(spans) + len(inserts) == len(info["drawn_lengths"])
    assert len(inputs) == len(ids) - sum(length - 1 for _, length in spans) + len(inserts)
    # The tokens that are not masked appear in order, and the recorded spans explain the input.
    assert [t for t in inputs if t != MASK_ID] == [t for i, t in enumerate(ids)
                                                   if i not in set(covered)]
    assert inputs == rebuild_inputs_from_info(ids, info)
    # The lengths are the Poisson draws with the last one cut to the budget.
    drawn = info["drawn_lengths"]
    if budget == 0:
        assert drawn == []
    else:
        assert sum(drawn[:-1]) < budget <= sum(drawn)
        cut = drawn[:-1] + [budget - sum(drawn[:-1])]
        assert sorted(cut) == sorted([length for _, length in spans] + [0] * len(inserts))


def test_text_infilling_example_with_a_zero_length_span():
    # Seed 0 draws Poisson lengths [2, 0, 7] for a budget of ceil(0.3·20) = 6: the 7 is cut to
    # 4, the 0 is an insertion. Worked through by hand:
    ids = [BOS_ID, *range(1000, 1020), EOS_ID]
    inputs, target, info = text_infilling(ids, np.random.default_rng(0))
    assert info == {"budget": 6, "drawn_lengths": [2, 0, 7], "spans": [(1, 4), (16, 2)],
                    "inserts": [12], "redraws": 0}
    m = MASK_ID
    assert inputs.tolist() == [BOS_ID, m, *range(1004, 1011), m, *range(1011, 1015), m,
                               1017, 1018, 1019, EOS_ID]
    assert target.tolist() == ids
    assert draw_span_lengths(6, np.random.default_rng(0)) == ([2, 0, 7], [2, 0, 4])


def test_text_infilling_within_a_bound_redraws_as_often_as_poisson_says():
    # 3 tokens, budget ceil(0.9) = 1; inputs of at most 3 tokens allow one span (|inputs| =
    # 3 − 1 + K), so a first Poisson(3) draw of 0 (an insert, then another span) is drawn
    # again: with probability e^-3 = 0.0498 (text_infilling: P(Poisson(λ·b) < b), b = 1).
    # Given that, exactly one span of length 1 and no insert, every time.
    n, p = 10000, math.exp(-3)
    redrawn = 0
    for seed in range(n):
        inputs, _, info = text_infilling([1001, 1002, 1003], np.random.default_rng(seed),
                                         max_length=3)
        assert len(inputs) == 3 and [length for _, length in info["spans"]] == [1]
        assert info["inserts"] == []
        redrawn += info["redraws"] > 0
    assert abs(redrawn / n - p) <= 5 * math.sqrt(p * (1 - p) / n)


# ----------------------------------------------------------------------------------------------
# BART text infilling: statistics


def test_text_infilling_masked_fraction_and_poisson_span_lengths():
    lam, p0 = 3.0, math.exp(-3.0)  # Poisson(3): mean 3, P(0) = e^-3 = 0.0498 (reference 7)
    rng = np.random.default_rng(2024)
    n_calls = 2000
    total_drawn = total_count = total_zeros = 0
    for call in range(n_calls):
        n = 100 if call % 2 == 0 else 17
        ids = [BOS_ID, *random_text(rng, n), EOS_ID]
        inputs, _, info = text_infilling(ids, rng, mask_ratio=0.3, poisson_lambda=lam)
        # Masked fraction: the budget rule gives ceil(0.3·n)/n, 30/100 = 0.30 and
        # ceil(5.1)/17 = 6/17 = 0.353. Spans never overlap, so the realised fraction is
        # exactly that in every call: its standard deviation is 0 (fairseq's overlapping spans
        # give a fraction at most the budget, fairseq#3486).
        masked = sum(length for _, length in info["spans"])
        assert Fraction(masked, n) == Fraction(math.ceil(Fraction(3, 10) * n), n)
        drawn = info["drawn_lengths"]
        total_drawn += sum(drawn)
        total_count += len(drawn)
        total_zeros += drawn.count(0)

    # The law of the *drawn* lengths. Drawing stops once the sum reaches the budget, so the
    # number K of draws depends on them; but Σ_{i<=K} (l_i − λ) is a martingale stopped at K:
    # its mean is 0 (Wald's identity) and its variance λ·E[K] (Wald's second identity). Over
    # independent calls, |Σ l − λ·ΣK| <= 5·sqrt(λ·ΣK) is a 5-standard-deviation bound.
    # (The lengths after cutting add up to the budget, mean 30/K ≈ 2.86 for n = 100: testing
    # them against λ would fail, as it should.)
    assert total_count > 10_000
    assert abs(total_drawn - lam * total_count) <= 5 * math.sqrt(lam * total_count)
    # Zero-length draws (inserts) at rate e^-λ, by the same martingale argument.
    assert abs(total_zeros - p0 * total_count) <= 5 * math.sqrt(p0 * (1 - p0) * total_count)


# ----------------------------------------------------------------------------------------------
# BART sentence permutation

FULL_STOP = 1999  # stands for the id of "。"


def sentence_ids(rng, k):
    """k distinct sentences of 1 to 5 words, each ending with FULL_STOP."""
    return [[int(1000 + 10 * i + j) for j in range(rng.integers(1, 6))] + [FULL_STOP]
            for i in range(k)]


@given(seed=seeds, k=st.integers(1, 6), with_ends=st.booleans(), fragment=st.booleans())
def test_permute_sentences_keeps_the_multiset_of_sentences(seed, k, with_ends, fragment):
    rng = np.random.default_rng(seed)
    sentences = sentence_ids(rng, k) + ([[1900, 1901]] if fragment else [])  # no full stop
    body = [t for s in sentences for t in s]
    ids = [BOS_ID, *body, EOS_ID] if with_ends else body
    out = permute_sentences(ids, rng, [FULL_STOP]).tolist()
    assert len(out) == len(ids)
    if with_ends:
        assert out[0] == BOS_ID and out[-1] == EOS_ID
        out = out[1:-1]
    # Each sentence is a contiguous piece of the output; together they are the output.
    pieces = []
    i = 0
    while i < len(out):
        piece = next(s for s in sentences if out[i:i + len(s)] == s)
        pieces.append(tuple(piece))
        i += len(piece)
    assert Counter(pieces) == Counter(tuple(s) for s in sentences)


def test_permute_sentences_changes_the_order_and_every_order_is_equally_likely():
    # Three sentences have 3! = 6 orders, each with probability 1/6; with n draws each count is
    # Binomial(n, 1/6): bound it at 5 standard deviations.
    rng = np.random.default_rng(7)
    a, b, c = sentence_ids(rng, 3)
    ids = [BOS_ID, *a, *b, *c, EOS_ID]
    n = 1200
    orders = Counter()
    for _ in range(n):
        out = permute_sentences(ids, rng, [FULL_STOP])[1:-1]
        orders[tuple(tuple(s) for s in split_sentences(out, [FULL_STOP]))] += 1
    assert len(orders) == 6
    p = 1 / 6
    for count in orders.values():
        assert abs(count - n * p) <= 5 * math.sqrt(n * p * (1 - p))
    # Two sentences: the order changes for some seed (fairseq#3803 made it a no-op).
    two = [*a, *b]
    assert any(permute_sentences(two, np.random.default_rng(s), [FULL_STOP]).tolist() != two
               for s in range(20))


def test_split_sentences_cuts_after_each_full_stop():
    pieces = split_sentences([1, FULL_STOP, 2, 3, FULL_STOP, 4], [FULL_STOP])
    assert [p.tolist() for p in pieces] == [[1, FULL_STOP], [2, 3, FULL_STOP], [4]]
    one = [5, 6, 7]
    assert permute_sentences(one, np.random.default_rng(0), [FULL_STOP]).tolist() == one


# ----------------------------------------------------------------------------------------------
# Argument errors name the argument and the value


@pytest.mark.parametrize("call, message", [
    (lambda: random_spans_noise_mask(10, np.random.default_rng(0), noise_density=0.0),
     r"noise_density must be in \(0, 1\), got 0.0"),
    (lambda: random_spans_noise_mask(10, np.random.default_rng(0), noise_density=1.0),
     r"noise_density must be in \(0, 1\), got 1.0"),
    (lambda: span_corruption([1001, 1002], np.random.default_rng(0), SENTINELS,
                             noise_density=-0.1),
     r"noise_density must be in \(0, 1\), got -0.1"),
    (lambda: random_spans_noise_mask(10, np.random.default_rng(0), mean_span_length=0.5),
     r"mean_span_length must be >= 1 .*got 0.5"),
    (lambda: random_spans_noise_mask(0, np.random.default_rng(0)),
     r"length must be an integer >= 1, got length=0"),
    (lambda: random_spans_noise_mask(40, np.random.default_rng(0), noise_density=0.9,
                                     mean_span_length=1.0),
     r"noise_density=0.9 with mean_span_length=1.0 asks for 36 noise spans"),
    (lambda: span_corruption([], np.random.default_rng(0), SENTINELS),
     r"ids must be a non-empty 1-D sequence of token ids, got shape \(0,\)"),
    (lambda: span_corruption(list(range(1000, 1300)), np.random.default_rng(0), SENTINELS[:3]),
     r"sentinel_ids holds 3 ids but the noise mask has 15 spans"),
    (lambda: noise_spans_to_sentinels([1001, 1002], [True], SENTINELS),
     r"noise_mask must have the shape of ids \(2,\), got \(1,\)"),
    (lambda: t5_input_and_target_lengths(2),
     r"inputs_length must be an integer >= 3, got inputs_length=2"),
    (lambda: text_infilling([], np.random.default_rng(0)),
     r"ids must be a non-empty 1-D sequence"),
    (lambda: text_infilling([1001, 1002], np.random.default_rng(0), mask_ratio=1.5),
     r"mask_ratio must be in \[0, 1\], got 1.5"),
    (lambda: text_infilling([1001, 1002], np.random.default_rng(0), poisson_lambda=0.0),
     r"poisson_lambda must be > 0, got 0.0"),
    (lambda: permute_sentences([1001, 1002], np.random.default_rng(0), []),
     r"full_stop_ids must hold at least one id, got none"),
    (lambda: text_infilling(list(range(1000, 1010)), np.random.default_rng(0), max_length=7),
     r"max_length=7 is too short for 10 ids: with 3 tokens masked the inputs hold at least 8"),
    (lambda: text_infilling(list(range(1000, 1060)), np.random.default_rng(0), mask_ratio=1.0,
                            poisson_lambda=0.5, max_length=10),
     r"max_length=10: 1000 draws of span lengths for 60 ids with poisson_lambda=0.5 all gave"),
    (lambda: pack_sequences([[1001]], 0), r"length must be an integer >= 1, got length=0"),
    (lambda: longest_inputs_for_sentinels(0), r"n_sentinels must be an integer >= 1"),
])
def test_bad_arguments_are_rejected_with_their_name_and_value(call, message):
    with pytest.raises(ValueError, match=message):
        call()
