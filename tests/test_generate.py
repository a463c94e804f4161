"""Decoding: sampling rules, the key/value cache, greedy and beam search."""

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minillm.generate import (
    generate,
    next_token_probs,
    seq2seq_beam_hypotheses,
    seq2seq_beam_search,
    seq2seq_greedy,
)
from minillm.models import (
    GPTConfig,
    Seq2SeqConfig,
    decoder_forward,
    encoder_forward,
    gpt_forward,
    gpt_init,
    seq2seq_init,
)
from minillm.tokenizer import BOS_ID, EOS_ID


def noisy(params, rng, scale):
    return {k: v + scale * rng.normal(size=v.shape) for k, v in params.items()}


GPT = GPTConfig(vocab_size=13, n_ctx=12, n_embd=16, n_head=2, n_layer=2)


@settings(max_examples=5)
@given(seed=st.integers(0, 2**32 - 1))
def test_cached_logits_equal_a_full_forward_pass(seed):
    rng = np.random.default_rng(seed)
    params = noisy(gpt_init(GPT, rng, np.float64), rng, 0.3)
    ids = rng.integers(0, 13, size=(1, 9))
    full, _ = gpt_forward(params, GPT, ids)
    logits, cache = gpt_forward(params, GPT, ids[:, :4])
    steps = [logits]
    for t in range(4, 9):
        logits, cache = gpt_forward(params, GPT, ids[:, t : t + 1], past=cache)
        steps.append(logits)
    np.testing.assert_allclose(np.concatenate(steps, axis=1), full, rtol=1e-12, atol=1e-12)


def test_cached_and_uncached_generation_agree():
    rng = np.random.default_rng(0)
    params = noisy(gpt_init(GPT, rng, np.float64), rng, 0.5)
    a = generate(params, GPT, [7, 8], 8, np.random.default_rng(5), use_cache=True, stop_at_eos=False)
    b = generate(params, GPT, [7, 8], 8, np.random.default_rng(5), use_cache=False, stop_at_eos=False)
    assert a == b and len(a) == 8


def test_generation_stops_at_the_context_length():
    params = gpt_init(GPT, np.random.default_rng(0))
    out = generate(params, GPT, [7, 8, 9], 50, np.random.default_rng(0), stop_at_eos=False)
    assert len(out) == GPT.n_ctx - 4  # [BOS] + 3 prompt tokens + new tokens = n_ctx


def test_temperature_zero_is_greedy_and_top_k_keeps_k():
    z = np.array([1.0, 3.0, 2.0, 0.5])
    np.testing.assert_array_equal(next_token_probs(z, temperature=0), [0, 1, 0, 0])
    p = next_token_probs(z, top_k=2)
    assert np.count_nonzero(p) == 2 and p[1] > p[2] > 0
    np.testing.assert_allclose(p[1] / p[2], np.exp(1.0), rtol=1e-12)


def test_top_p_keeps_the_smallest_set_reaching_the_mass():
    z = np.log(np.array([0.5, 0.3, 0.15, 0.05]))
    np.testing.assert_allclose(next_token_probs(z, top_p=0.75), [0.5 / 0.8, 0.3 / 0.8, 0, 0])
    np.testing.assert_allclose(next_token_probs(z, top_p=0.4), [1, 0, 0, 0])
    np.testing.assert_allclose(next_token_probs(z, top_p=0.81), [0.5, 0.3, 0.15, 0] / np.float64(0.95))
    np.testing.assert_allclose(next_token_probs(z, top_p=1.0), [0.5, 0.3, 0.15, 0.05])


@pytest.mark.parametrize("kwargs, name", [({"temperature": -1}, "temperature"),
                                          ({"top_k": 0}, "top_k"), ({"top_p": 1.5}, "top_p")])
def test_bad_sampling_arguments_are_named(kwargs, name):
    with pytest.raises(ValueError, match=name):
        next_token_probs(np.zeros(3), **kwargs)


# ---------------------------------------------------------------------------------------------
# Encoder-decoder decoding

S2S = Seq2SeqConfig(vocab_size=5, n_ctx=8, n_embd=8, n_head=2, n_enc_layer=1, n_dec_layer=1)


def s2s_params(seed, scale=1.0):
    rng = np.random.default_rng(seed)
    return noisy(seq2seq_init(S2S, rng, np.float64), rng, scale)


def sequence_log_prob(params, src, tgt):
    """log P(tgt | src) with the start token in front, from full decoder passes."""
    enc, _ = encoder_forward(params, S2S, np.array([src]))
    logits, _ = decoder_forward(params, S2S, np.array([[BOS_ID, *tgt[:-1]]]), enc)
    z = logits[0]
    logp = z - z.max(-1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(-1, keepdims=True))
    return float(sum(logp[t, y] for t, y in enumerate(tgt)))


@pytest.mark.parametrize("seed", range(4))
def test_wide_beam_finds_the_most_probable_sequence(seed):
    """Enumerate every target of at most n tokens ending in [EOS]; with a beam wide enough to
    keep every prefix, beam search (length penalty 0) returns the most probable one."""
    params, src, n = s2s_params(seed), [1, 4, 2], 3
    best, best_lp = None, -np.inf
    for k in range(n):
        for words in itertools.product([w for w in range(S2S.vocab_size) if w != EOS_ID], repeat=k):
            tgt = [*words, EOS_ID]
            lp = sequence_log_prob(params, src, tgt)
            if lp > best_lp:
                best, best_lp = tgt, lp
    ids, score = seq2seq_beam_search(params, S2S, src, beam_width=S2S.vocab_size ** n,
                                     max_len=n, length_penalty=0.0)
    assert ids == best
    np.testing.assert_allclose(score, best_lp, rtol=1e-10)


@pytest.mark.parametrize("seed", range(3))
def test_beam_width_one_is_greedy(seed):
    params = s2s_params(seed)
    src = [3, 1, 4]
    greedy, prefix = [], [BOS_ID]
    enc, _ = encoder_forward(params, S2S, np.array([src]))
    for _ in range(S2S.n_ctx):
        logits, _ = decoder_forward(params, S2S, np.array([prefix]), enc)
        token = int(np.argmax(logits[0, -1]))
        greedy.append(token)
        prefix.append(token)
        if token == EOS_ID:
            break
    assert seq2seq_beam_search(params, S2S, src, beam_width=1)[0] == greedy
    assert seq2seq_greedy(params, S2S, src)[0] == greedy


@pytest.mark.parametrize("width", [1, 3])
def test_cached_and_uncached_decoding_agree(width):
    params = s2s_params(7, scale=0.5)
    a = seq2seq_beam_search(params, S2S, [1, 2, 3, 4], beam_width=width, use_cache=True)
    b = seq2seq_beam_search(params, S2S, [1, 2, 3, 4], beam_width=width, use_cache=False)
    assert a[0] == b[0]
    np.testing.assert_allclose(a[1], b[1], rtol=1e-12)


# (seed, length penalty): models whose beams of 4 finish 2, 25, 9 and 8 hypotheses, and none
@pytest.mark.parametrize("seed, length_penalty", [(1, 1.0), (3, 1.0), (4, 0.5), (7, 2.0),
                                                  (2, 1.0)])
def test_each_beam_hypothesis_carries_its_own_log_probability_and_score(seed, length_penalty):
    """What seq2seq --show prints: every hypothesis's log P(y | x) is the sum of its per-step
    log-probabilities recomputed by a full decoder pass, its score is log P / len^penalty, the
    finished ones (ending in [EOS]) come first, best score first, and the first is
    seq2seq_beam_search's answer."""
    params, src = s2s_params(seed), [1, 4, 2, 3]
    hypotheses = seq2seq_beam_hypotheses(params, S2S, src, beam_width=4,
                                         length_penalty=length_penalty)
    finished = [h for h in hypotheses if h.finished]
    assert len(hypotheses) >= 4 and hypotheses[: len(finished)] == finished
    for h in hypotheses:
        assert (h.ids[-1] == EOS_ID) == h.finished and EOS_ID not in h.ids[:-1]
        np.testing.assert_allclose(h.log_prob, sequence_log_prob(params, src, h.ids), rtol=1e-10)
        np.testing.assert_allclose(h.score, h.log_prob / len(h.ids) ** length_penalty, rtol=1e-12)
    scores = [h.score for h in finished]
    assert scores == sorted(scores, reverse=True)
    assert len({tuple(h.ids) for h in hypotheses}) == len(hypotheses)  # no output twice
    ids, log_prob = seq2seq_beam_search(params, S2S, src, beam_width=4,
                                        length_penalty=length_penalty)
    assert (ids, log_prob) == (hypotheses[0].ids, hypotheses[0].log_prob)
