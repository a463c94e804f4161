"""The BERT encoder and the BART encoder-decoder: gradients of every parameter, and who sees whom."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from minillm.gradcheck import check_grads, key_bias_zeros, projected
from minillm.models import (
    BertConfig,
    Seq2SeqConfig,
    bert_backward,
    bert_forward,
    bert_init,
    seq2seq_backward,
    seq2seq_forward,
    seq2seq_init,
)

BERT = BertConfig(vocab_size=9, n_ctx=6, n_embd=8, n_head=2, n_layer=2)
BART = Seq2SeqConfig(vocab_size=9, n_ctx=6, n_embd=8, n_head=2, n_layer=1, n_dec_layer=2)
# Narrower copies for the gradient checks, which perturb every parameter one at a time.
BERT_CHECK = BertConfig(vocab_size=9, n_ctx=6, n_embd=4, n_head=2, n_layer=2)
BART_CHECK = Seq2SeqConfig(vocab_size=9, n_ctx=6, n_embd=4, n_head=2, n_layer=1, n_dec_layer=2)


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
    rng = np.random.default_rng(seed)
    params = noisy(seq2seq_init(BART_CHECK, rng, np.float64), rng)
    src, tgt = rng.integers(0, 9, size=(2, 5)), rng.integers(0, 9, size=(2, 4))
    src_mask = np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    tgt_mask = np.array([[1, 1, 1, 0], [1, 1, 1, 1]])
    logits, cache = seq2seq_forward(params, BART_CHECK, src, tgt, src_mask, tgt_mask)
    upstream = rng.normal(size=logits.shape)
    analytic = seq2seq_backward(upstream, cache)
    assert set(analytic) == set(params)
    P = params["enc.wpe"].shape[0]  # n_ctx + 2: BART's positions start at 2
    zero = {**key_bias_zeros(params, BART_CHECK.n_embd),
            "enc.wpe": unread_rows(P, 2, src.shape[1]), "dec.wpe": unread_rows(P, 2, tgt.shape[1])}
    check_grads(
        lambda: projected(seq2seq_forward(params, BART_CHECK, src, tgt, src_mask, tgt_mask)[0],
                          upstream),
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
