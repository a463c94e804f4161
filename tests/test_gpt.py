"""The GPT model and the next-token objective: gradients, the chain rule, causality, dtypes."""

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minillm.gradcheck import check_grads, key_bias_zeros, projected
from minillm.layers import IGNORE_INDEX
from minillm.models import GPTConfig, gpt_backward, gpt_forward, gpt_init, gpt_param_shapes
from minillm.objectives import clm
from minillm.tokenizer import BOS_ID, EOS_ID

TINY = GPTConfig(vocab_size=11, n_ctx=6, n_embd=8, n_head=2, n_layer=2)


def random_params(cfg, seed, init=gpt_init):
    """float64 parameters with every bias and gain away from 0 and 1, so no term is trivial
    (``init``: the model family's init, a GPT's unless told)."""
    rng = np.random.default_rng(seed)
    params = init(cfg, rng, dtype=np.float64)
    for name, value in params.items():
        if name.endswith(".g"):
            params[name] = 1.0 + 0.2 * rng.normal(size=value.shape)
        elif name.endswith(".b"):
            params[name] = 0.2 * rng.normal(size=value.shape)
        else:
            params[name] = 0.4 * rng.normal(size=value.shape)
    return params


def random_batch(cfg, rng, B, T):
    ids = rng.integers(0, cfg.vocab_size, size=(B, T))
    mask = np.ones((B, T), dtype=np.int64)
    mask[1:, T - 1:] = 0  # right padding in every row but the first
    return ids, mask


def _check_every_parameter(params, analytic, f, T):
    """Every parameter against central differences; zero where it must be: the attention key
    biases, and the position rows from T on, which no position of the batch reads."""
    assert set(analytic) == set(params)
    check_grads(f, params, analytic, zero={**key_bias_zeros(params, TINY.n_embd),
                                           "wpe": np.s_[T:]})


def check_gpt_backward(cfg, seed, B, T):
    """gpt_backward of model ``cfg`` against central differences, every parameter, on a
    random upstream gradient."""
    params = random_params(cfg, seed)
    rng = np.random.default_rng(seed + 1)
    ids, mask = random_batch(cfg, rng, B, T)
    logits, cache = gpt_forward(params, cfg, ids, mask)
    upstream = rng.normal(size=logits.shape)
    analytic = gpt_backward(upstream, cache)
    _check_every_parameter(
        params, analytic, lambda: projected(gpt_forward(params, cfg, ids, mask)[0], upstream), T)
    np.testing.assert_array_equal(analytic["wpe"][T:], 0.0)  # not read at all: exactly 0


@settings(max_examples=3)
@given(seed=st.integers(0, 2**32 - 1), B=st.integers(1, 2), T=st.integers(2, 5))
def test_gpt_backward_matches_central_differences_for_every_parameter(seed, B, T):
    check_gpt_backward(TINY, seed, B, T)


@pytest.mark.parametrize("reduction", ["sum", "mean"])
@settings(max_examples=2)
@given(seed=st.integers(0, 2**32 - 1))
def test_loss_gradient_matches_central_differences(reduction, seed):
    params = random_params(TINY, seed)
    rng = np.random.default_rng(seed + 1)
    batch = clm.make_batch([list(rng.integers(7, 11, size=n)) for n in (4, 2)])
    _, _, analytic = clm.loss_and_grads(params, TINY, batch, reduction)
    _check_every_parameter(params, analytic, lambda: clm.loss(params, TINY, batch, reduction)[0],
                           batch["inputs"].shape[1])


# ---------------------------------------------------------------------------------------------
# The chain rule: P(文本) = P(w_1) P(w_2|w_1) ... P(w_n|w_<n)


@pytest.mark.parametrize("n", [1, 2, 3])
def test_probabilities_of_all_sequences_of_length_n_sum_to_one(n):
    """Σ over all V^n sequences of Π_t P(w_t | w_<t) = 1, for a model small enough to enumerate.

    Exactly 1 in exact arithmetic (each factor is a distribution over the next token); float64
    rounding over V^n terms stays far below 1e-9.
    """
    cfg = GPTConfig(vocab_size=6, n_ctx=4, n_embd=8, n_head=2, n_layer=1)
    params = random_params(cfg, seed=n)
    total = sum(np.exp(clm.log_prob(params, cfg, seq)[0])
                for seq in itertools.product(range(cfg.vocab_size), repeat=n))
    np.testing.assert_allclose(total, 1.0, rtol=0, atol=1e-9)


def test_exp_minus_loss_is_the_product_of_per_step_conditionals():
    params = random_params(TINY, seed=3)
    ids = [7, 9, 8, 10]
    total, per_step = clm.log_prob(params, TINY, ids)
    assert per_step.shape == (4,)
    # The per-step terms, recomputed one prefix at a time straight from the logits.
    seq = [BOS_ID] + ids
    steps = []
    for t in range(1, len(seq)):
        logits, _ = gpt_forward(params, TINY, np.array([seq[:t]]))
        z = logits[0, -1]
        steps.append(np.exp(z[seq[t]] - z.max()) / np.exp(z - z.max()).sum())
    np.testing.assert_allclose(np.exp(per_step), steps, rtol=1e-12)
    batch = clm.make_batch([ids], add_eos=False)
    L, n, _ = clm.loss(params, TINY, batch)
    assert n == 4
    np.testing.assert_allclose(np.exp(-L), np.prod(steps), rtol=1e-12)
    np.testing.assert_allclose(L, -total, rtol=1e-14)


def test_summed_loss_is_the_mean_times_the_number_of_predicted_tokens():
    params = random_params(TINY, seed=4)
    batch = clm.make_batch([[7, 8, 9], [10], [8, 8]])
    total, n, _ = clm.loss(params, TINY, batch, "sum")
    mean, n2, _ = clm.loss(params, TINY, batch, "mean")
    assert n == n2 == (3 + 1) + (1 + 1) + (2 + 1)  # every word and each [EOS]
    np.testing.assert_allclose(total, mean * n, rtol=1e-14)


def test_first_word_is_a_real_term_predicted_from_bos():
    """The batch starts with [BOS], so P(w_1 | [BOS]) is the first term of the sum."""
    batch = clm.make_batch([[7, 8], [9]])
    np.testing.assert_array_equal(batch["inputs"], [[BOS_ID, 7, 8], [BOS_ID, 9, 0]])
    np.testing.assert_array_equal(batch["targets"], [[7, 8, EOS_ID], [9, EOS_ID, IGNORE_INDEX]])
    np.testing.assert_array_equal(batch["attention_mask"], [[1, 1, 1], [1, 1, 0]])


# ---------------------------------------------------------------------------------------------
# Causality and dtypes


def check_causal(cfg, seed, t):
    """Tokens after position t changed (a model of 6 positions, 11 tokens): the outputs up to
    t bit-identical, the later ones not."""
    params = random_params(cfg, seed)
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, cfg.vocab_size, size=(2, 6))
    changed = ids.copy()
    changed[:, t + 1:] = (ids[:, t + 1:] + 1 + rng.integers(0, 9, size=(2, 5 - t))) % 11
    a, _ = gpt_forward(params, cfg, ids)
    b, _ = gpt_forward(params, cfg, changed)
    np.testing.assert_array_equal(a[:, : t + 1], b[:, : t + 1])
    if t < 5:
        assert not np.array_equal(a[:, t + 1:], b[:, t + 1:])


@settings(max_examples=10)
@given(seed=st.integers(0, 2**32 - 1), t=st.integers(0, 4))
def test_changing_later_tokens_leaves_earlier_outputs_bit_identical(seed, t):
    check_causal(TINY, seed, t)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_flows_from_the_parameters(dtype):
    params = gpt_init(TINY, np.random.default_rng(0), dtype=dtype)
    batch = clm.make_batch([[7, 8, 9]])
    logits, cache = gpt_forward(params, TINY, batch["inputs"])
    assert logits.dtype == dtype
    _, _, grads = clm.loss_and_grads(params, TINY, batch)
    assert all(g.dtype == dtype for g in grads.values())


def test_init_follows_the_parameter_table():
    params = gpt_init(TINY, np.random.default_rng(0))
    shapes = gpt_param_shapes(TINY)
    assert {k: v.shape for k, v in params.items()} == shapes
    assert shapes["h.1.attn.c_attn.w"] == (8, 24) and shapes["h.0.mlp.c_fc.w"] == (8, 32)


def test_too_long_a_sequence_is_refused_with_the_lengths():
    params = gpt_init(TINY, np.random.default_rng(0))
    with pytest.raises(ValueError, match="7 tokens.*n_ctx=6"):
        gpt_forward(params, TINY, np.zeros((1, 7), dtype=np.int64))


def test_config_rejects_a_width_that_heads_do_not_divide():
    with pytest.raises(ValueError, match="n_embd=10.*n_head=4"):
        GPTConfig(vocab_size=5, n_embd=10, n_head=4)


# ---------------------------------------------------------------------------------------------
# GPT-2's config variants that transformers supports: n_inner other than 4C, and attention
# scores divided by the block's index + 1 (scale_attn_by_inverse_layer_idx)

SCALED = GPTConfig(vocab_size=11, n_ctx=6, n_embd=8, n_head=2, n_layer=3, n_inner=12,
                   scale_attn_by_inverse_layer_idx=True)


@settings(max_examples=1)
@given(seed=st.integers(0, 2**32 - 1))
def test_a_layer_scaled_gpt_with_its_own_ffn_width_matches_central_differences(seed):
    params = random_params(SCALED, seed)
    assert params["h.2.mlp.c_fc.w"].shape == (8, 12)
    rng = np.random.default_rng(seed + 1)
    ids, mask = random_batch(SCALED, rng, 2, 5)
    logits, cache = gpt_forward(params, SCALED, ids, mask)
    upstream = rng.normal(size=logits.shape)
    analytic = gpt_backward(upstream, cache)
    _check_every_parameter(
        params, analytic, lambda: projected(gpt_forward(params, SCALED, ids, mask)[0], upstream), 5)


def test_scaling_by_the_inverse_layer_index_divides_block_l_s_queries_by_l_plus_1():
    """q k^T / (sqrt(D) (l + 1)) is the unscaled score of queries divided by l + 1: the same
    model without the setting, with each block's query weights and bias so divided, computes
    the same logits (transformers' GPT2Attention: ``scaling /= layer_idx + 1``)."""
    params = random_params(SCALED, seed=7)
    plain_cfg = GPTConfig(**{**SCALED.to_dict(), "scale_attn_by_inverse_layer_idx": False})
    plain = dict(params)
    C = SCALED.n_embd
    for layer in range(SCALED.n_layer):
        for name in (f"h.{layer}.attn.c_attn.w", f"h.{layer}.attn.c_attn.b"):
            plain[name] = params[name].copy()
            plain[name][..., :C] /= layer + 1  # the query columns
    ids = np.random.default_rng(8).integers(0, 11, size=(2, 6))
    scaled_logits, _ = gpt_forward(params, SCALED, ids)
    np.testing.assert_allclose(scaled_logits, gpt_forward(plain, plain_cfg, ids)[0],
                               rtol=1e-12, atol=1e-12)
    assert np.max(np.abs(scaled_logits - gpt_forward(params, plain_cfg, ids)[0])) > 1e-3

