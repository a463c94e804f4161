"""The BERT encoder and the BART encoder-decoder: gradients of every parameter, and who sees whom."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minillm.gradcheck import check_grads, key_bias_zeros, projected
from minillm.models import (
    BertConfig,
    Seq2SeqConfig,
    bert_backward,
    bert_forward,
    bert_init,
    encoder_forward,
    seq2seq_backward,
    seq2seq_forward,
    seq2seq_init,
    seq2seq_param_shapes,
)

BERT = BertConfig(vocab_size=9, n_ctx=6, n_embd=8, n_head=2, n_layer=2)
BART = Seq2SeqConfig(vocab_size=9, n_ctx=6, n_embd=8, n_head=2, n_enc_layer=1, n_dec_layer=2)
# Narrower copies for the gradient checks, which perturb every parameter one at a time.
BERT_CHECK = BertConfig(vocab_size=9, n_ctx=6, n_embd=4, n_head=2, n_layer=2)
BART_CHECK = Seq2SeqConfig(vocab_size=9, n_ctx=6, n_embd=4, n_head=2, n_enc_layer=1, n_dec_layer=2)


def noisy(params, rng):
    """Move every tensor off its initial constant, so no gain is 1 and no bias is 0."""
    return {k: v + 0.3 * rng.normal(size=v.shape) for k, v in params.items()}


def unread_rows(n_rows, first, length):
    """A boolean mask of the position-table rows outside [first, first + length): no position
    reads them, so their gradient is exactly 0."""
    rows = np.ones(n_rows, dtype=bool)
    rows[first : first + length] = False
    return np.s_[rows]


@settings(max_examples=2)
@given(seed=st.integers(0, 2**32 - 1))
def test_bert_backward_matches_central_differences_for_every_parameter(seed):
    """Embeddings with segments, post-LN blocks with erf GELU, the MLM head with its tied
    weights, the pooler and the NSP head: every parameter, both heads' upstream gradients."""
    rng = np.random.default_rng(seed)
    params = noisy(bert_init(BERT_CHECK, rng, np.float64), rng)
    ids = rng.integers(0, 9, size=(2, 5))
    segments = np.array([[0, 0, 1, 1, 1], [0, 0, 0, 1, 1]])
    mask = np.array([[1, 1, 1, 1, 1], [1, 1, 1, 1, 0]])
    mlm, nsp, cache = bert_forward(params, BERT_CHECK, ids, segments, mask)
    u_mlm, u_nsp = rng.normal(size=mlm.shape), rng.normal(size=nsp.shape)
    analytic = bert_backward(u_mlm, u_nsp, cache)

    def f():
        a, b, _ = bert_forward(params, BERT_CHECK, ids, segments, mask)
        return projected(a, u_mlm) + projected(b, u_nsp)

    assert set(analytic) == set(params)
    zero = {**key_bias_zeros(params, BERT_CHECK.n_embd),
            "wpe": unread_rows(BERT_CHECK.n_ctx, 0, ids.shape[1])}
    check_grads(f, params, analytic, zero=zero)


@settings(max_examples=2)
@given(seed=st.integers(0, 2**32 - 1))
def test_bart_backward_matches_central_differences_for_every_parameter(seed):
    """The whole encoder-decoder, cross-attention included: its gradient reaches the encoder."""
    check_bart_gradients(BART_CHECK, seed)


def check_bart_gradients(cfg, seed):
    """Every parameter of an encoder-decoder of config ``cfg`` against central differences."""
    rng = np.random.default_rng(seed)
    params = noisy(seq2seq_init(cfg, rng, np.float64), rng)
    src, tgt = rng.integers(0, 9, size=(2, 5)), rng.integers(0, 9, size=(2, 4))
    src_mask = np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    tgt_mask = np.array([[1, 1, 1, 0], [1, 1, 1, 1]])
    logits, cache = seq2seq_forward(params, cfg, src, tgt, src_mask, tgt_mask)
    upstream = rng.normal(size=logits.shape)
    analytic = seq2seq_backward(upstream, cache)
    assert set(analytic) == set(params)
    P = params["enc.wpe"].shape[0]  # n_ctx + 2: BART's positions start at 2
    zero = {**key_bias_zeros(params, cfg.n_embd),
            "enc.wpe": unread_rows(P, 2, src.shape[1]), "dec.wpe": unread_rows(P, 2, tgt.shape[1])}
    check_grads(
        lambda: projected(seq2seq_forward(params, cfg, src, tgt, src_mask, tgt_mask)[0], upstream),
        params, analytic, zero=zero)


# ---------------------------------------------------------------------------------------------
# Who sees whom


@settings(max_examples=10)
@given(seed=st.integers(0, 2**32 - 1), t=st.integers(0, 3))
def test_bert_sees_the_right_hand_context(seed, t):
    """Changing a token to the right of position t changes the encoder's output at t: the
    opposite of the causal test on the GPT path."""
    rng = np.random.default_rng(seed)
    params = noisy(bert_init(BERT, rng, np.float64), rng)
    ids = rng.integers(0, 9, size=(1, 5))
    changed = ids.copy()
    changed[0, t + 1] = (ids[0, t + 1] + 1) % 9
    a, _, _ = bert_forward(params, BERT, ids)
    b, _, _ = bert_forward(params, BERT, changed)
    assert np.all(np.abs(a[0, t] - b[0, t]) > 0)


def test_bert_padding_is_invisible():
    rng = np.random.default_rng(3)
    params = noisy(bert_init(BERT, rng, np.float64), rng)
    ids = np.array([[4, 7, 8, 5, 0, 0]])
    mask = np.array([[1, 1, 1, 1, 0, 0]])
    other = ids.copy()
    other[0, 4:] = [3, 2]
    a, na, _ = bert_forward(params, BERT, ids, attention_mask=mask)
    b, nb, _ = bert_forward(params, BERT, other, attention_mask=mask)
    np.testing.assert_array_equal(a[0, :4], b[0, :4])
    np.testing.assert_array_equal(na, nb)


@settings(max_examples=10)
@given(seed=st.integers(0, 2**32 - 1), t=st.integers(0, 3))
def test_decoder_is_causal_and_sees_the_whole_source(seed, t):
    rng = np.random.default_rng(seed)
    params = noisy(seq2seq_init(BART, rng, np.float64), rng)
    src, tgt = rng.integers(0, 9, size=(1, 5)), rng.integers(0, 9, size=(1, 5))
    base, _ = seq2seq_forward(params, BART, src, tgt)
    # A later target token leaves earlier decoder outputs bit-identical.
    later = tgt.copy()
    later[0, t + 1:] = (tgt[0, t + 1:] + 1) % 9
    out, _ = seq2seq_forward(params, BART, src, later)
    np.testing.assert_array_equal(out[0, : t + 1], base[0, : t + 1])
    # Any source token, even the last, changes every decoder output.
    for s in range(5):
        other = src.copy()
        other[0, s] = (src[0, s] + 1) % 9
        out, _ = seq2seq_forward(params, BART, other, tgt)
        assert np.all(np.any(out[0] != base[0], axis=-1)), f"source position {s}"


# ---------------------------------------------------------------------------------------------
# BART's config variants that transformers supports: a decoder with its own heads and
# feed-forward width, and token embeddings scaled by sqrt(C)

BART_ASYM = Seq2SeqConfig(vocab_size=9, n_ctx=6, n_embd=4, n_head=2, n_enc_layer=1, n_dec_layer=2,
                          n_inner=6, n_dec_head=1, n_dec_inner=3, scale_embedding=True)


def test_the_decoder_s_heads_and_width_default_to_the_encoder_s():
    cfg = Seq2SeqConfig(vocab_size=9, n_embd=8, n_head=2, n_inner=12)
    assert (cfg.n_dec_head, cfg.n_dec_inner) == (2, 12)
    assert Seq2SeqConfig(vocab_size=9, n_embd=8).n_dec_inner == 32  # 4C, as n_inner


def test_the_decoder_has_its_own_shapes_and_heads():
    shapes = seq2seq_param_shapes(BART_ASYM)
    assert shapes["enc.h.0.mlp.c_fc.w"] == (4, 6) and shapes["dec.h.1.mlp.c_fc.w"] == (4, 3)
    assert shapes["dec.h.0.mlp.c_proj.w"] == (3, 4)
    _, cache = seq2seq_forward(seq2seq_init(BART_ASYM, np.random.default_rng(0), np.float64),
                               BART_ASYM, np.zeros((1, 3), dtype=np.int64),
                               np.zeros((1, 2), dtype=np.int64))
    heads = {side: {c["spec"].n_head for c in cache[side]["blocks"]} for side in ("enc", "dec")}
    assert heads == {"enc": {2}, "dec": {1}}
    assert {c["xattn"]["heads"]["H"] for c in cache["dec"]["blocks"]} == {1}  # cross-attention too
    with pytest.raises(ValueError, match="n_embd=4.*n_dec_head=3"):
        Seq2SeqConfig(vocab_size=9, n_embd=4, n_head=2, n_dec_head=3)


@settings(max_examples=1)
@given(seed=st.integers(0, 2**32 - 1))
def test_an_asymmetric_scaled_bart_matches_central_differences_for_every_parameter(seed):
    """Encoder 2 heads and F = 6, decoder 1 head and F = 3, embeddings scaled by sqrt(C) (one
    example: the sizes are the point, not the seed)."""
    check_bart_gradients(BART_ASYM, seed)


def test_scale_embedding_scales_the_lookup_and_not_the_output_layer():
    """With scale_embedding the encoder reads wte[ids] sqrt(C): the encoder of the unscaled
    model whose table is multiplied by sqrt(C) gives the same output (transformers'
    BartScaledWordEmbedding). The output layer reads wte itself: the logits differ."""
    rng = np.random.default_rng(4)
    cfg = Seq2SeqConfig(vocab_size=9, n_ctx=6, n_embd=8, n_head=2, scale_embedding=True)
    plain_cfg = Seq2SeqConfig(**{**cfg.to_dict(), "scale_embedding": False})
    params = noisy(seq2seq_init(cfg, rng, np.float64), rng)
    src = rng.integers(0, 9, size=(2, 5))
    scaled_table = {**params, "wte": params["wte"] * np.sqrt(8)}
    np.testing.assert_allclose(encoder_forward(params, cfg, src)[0],
                               encoder_forward(scaled_table, plain_cfg, src)[0],
                               rtol=1e-12, atol=1e-12)
    assert np.max(np.abs(encoder_forward(params, cfg, src)[0]
                         - encoder_forward(params, plain_cfg, src)[0])) > 1e-3


def test_the_memory_estimate_counts_the_decoder_s_own_heads_and_width():
    """memory.analytic_cache_bytes_per_token is what the backward pass keeps, exactly (as
    tests/test_bench.py checks for the encoder's sizes on both sides), here with the decoder's
    heads and width unlike the encoder's."""
    from minillm.bench import cache_bytes
    from minillm.memory import analytic_cache_bytes_per_token
    from minillm.objectives import objective_of_model

    cfg = Seq2SeqConfig(vocab_size=13, n_ctx=6, n_embd=8, n_head=2, n_enc_layer=1, n_dec_layer=2,
                        n_inner=12, n_dec_head=4, n_dec_inner=40)
    rng = np.random.default_rng(0)
    params = seq2seq_init(cfg, rng, np.float32)
    B, T = 2, 6
    batch = {"src": rng.integers(0, 13, size=(B, T)), "dec_in": rng.integers(0, 13, size=(B, T)),
             "targets": rng.integers(0, 13, size=(B, T)), "src_mask": None, "dec_mask": None}
    _, _, cache = objective_of_model("seq2seq").loss(params, cfg, batch, reduction="mean")
    measured = cache_bytes(cache["model"], params) + cache_bytes(cache["ce"], params)
    assert measured / (B * T) == pytest.approx(
        analytic_cache_bytes_per_token("seq2seq", cfg, T), rel=1e-12)
