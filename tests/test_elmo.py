"""ELMo's biLM (minillm/elmo.py, minillm/lstm.py, minillm/objectives/elmo.py): the LSTM cell and
its backpropagation through time against central differences, a hand-computed step and PyTorch;
the biLM's loss gradients; each direction a proper distribution that never sees what it
predicts; padding; the scalar mix; the shallow fill; training and fill from the command line."""

import itertools
import math
import os

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from minillm.cli import main
from minillm.elmo import (
    ElmoConfig,
    blanked_sentences,
    compare_fill_checkpoints,
    compare_fills,
    direction_log_probs,
    elmo_forward,
    elmo_init,
    elmo_layers,
    fill_scores,
    make_streams,
    mask_position,
    scalar_mix_backward,
    scalar_mix_forward,
    shallow_fill_distribution,
    true_one_way_distributions,
)
from minillm.gradcheck import check_grads, projected
from minillm.grammar import default_grammar
from minillm.layers import IGNORE_INDEX, log_softmax
from minillm.lstm import lstm_backward, lstm_cell_backward, lstm_cell_forward, lstm_forward
from minillm.models import BertConfig, bert_init
from minillm.objectives import elmo as objective
from minillm.tokenizer import BOS_ID, EOS_ID, MASK_ID, PAD_ID

FIXTURE = os.path.join(os.path.dirname(__file__), "fixtures", "lstm_torch.npz")
LN3 = math.log(3.0)  # σ(ln 3) = 3/4 and tanh(ln 3) = 4/5: gates with exact values


def tiny(V=9, C=4, L=2, n_ctx=8, seed=0, scale=1.0):
    """A float64 biLM with weights large enough that no gradient is near 0 by accident."""
    cfg = ElmoConfig(vocab_size=V, n_ctx=n_ctx, n_embd=C, n_layer=L)
    params = elmo_init(cfg, np.random.default_rng(seed), dtype=np.float64)
    rng = np.random.default_rng(seed + 1)
    for name in params:
        params[name] += scale * 0.5 * rng.normal(size=params[name].shape)
    return cfg, params


# ----------------------------------------------------------------------------------------------
# The LSTM cell and layer


@settings(max_examples=5)
@given(seed=st.integers(0, 2**32 - 1), B=st.integers(1, 3), I=st.sampled_from([4, 5]),
       H=st.sampled_from([4, 6]))
def test_lstm_cell_gradients_match_central_differences(seed, B, I, H):
    rng = np.random.default_rng(seed)
    a = {"x": rng.normal(size=(B, I)), "h_prev": rng.normal(size=(B, H)),
         "c_prev": rng.normal(size=(B, H)), "w_x": 0.7 * rng.normal(size=(I, 4 * H)),
         "w_h": 0.7 * rng.normal(size=(H, 4 * H)), "b": rng.normal(size=4 * H)}
    gh, gc = rng.normal(size=(B, H)), rng.normal(size=(B, H))  # upstream of h and of c

    def f():
        h, c, _ = lstm_cell_forward(a["x"], a["h_prev"], a["c_prev"], a["w_x"], a["w_h"], a["b"])
        return projected(h, gh) + projected(c, gc)

    _, _, cache = lstm_cell_forward(a["x"], a["h_prev"], a["c_prev"], a["w_x"], a["w_h"], a["b"])
    grads = dict(zip(("x", "h_prev", "c_prev", "w_x", "w_h", "b"),
                     lstm_cell_backward(gh, gc, cache)))
    check_grads(f, a, grads)


@settings(max_examples=4)
@given(seed=st.integers(0, 2**32 - 1), B=st.integers(1, 2), T=st.integers(2, 5))
def test_lstm_layer_backpropagation_through_time_matches_central_differences(seed, B, T):
    rng = np.random.default_rng(seed)
    I, H = 5, 4
    a = {"x": rng.normal(size=(B, T, I)), "w_x": 0.7 * rng.normal(size=(I, 4 * H)),
         "w_h": 0.7 * rng.normal(size=(H, 4 * H)), "b": rng.normal(size=4 * H)}
    upstream = rng.normal(size=(B, T, H))
    hs, cache = lstm_forward(a["x"], a["w_x"], a["w_h"], a["b"])
    grads = dict(zip(("x", "w_x", "w_h", "b"), lstm_backward(upstream, cache)))
    check_grads(lambda: projected(lstm_forward(a["x"], a["w_x"], a["w_h"], a["b"])[0], upstream),
                a, grads)


def test_one_lstm_step_is_the_hand_computed_closed_form():
    """With a = [ln 3, ln 3, ln 3, -ln 3]: i = f = σ(ln 3) = 3/4, g = tanh(ln 3) = 4/5,
    o = σ(-ln 3) = 1/4. From c_prev = 1/2: c = 3/4 · 1/2 + 3/4 · 4/5 = 39/40 and
    h = tanh(39/40) / 4. The first step of a layer starts from c = 0: c = 3/5, h = tanh(3/5)/4."""
    x, h_prev, c_prev = np.array([[1.0]]), np.array([[1.0]]), np.array([[0.5]])
    w_x = np.array([[LN3, 0.0, 0.0, -LN3]])  # (I=1, 4H=4): blocks i, f, g, o
    w_h = np.array([[0.0, 0.0, LN3, 0.0]])
    b = np.array([0.0, LN3, 0.0, 0.0])
    h, c, cache = lstm_cell_forward(x, h_prev, c_prev, w_x, w_h, b)
    for gate, value in (("i", 0.75), ("f", 0.75), ("g", 0.8), ("o", 0.25)):
        np.testing.assert_allclose(cache[gate], value, rtol=1e-15, err_msg=gate)
    np.testing.assert_allclose(c, 39 / 40, rtol=1e-15)
    np.testing.assert_allclose(h, math.tanh(39 / 40) / 4, rtol=1e-15)
    hs, _ = lstm_forward(x[:, None, :], np.array([[LN3, 0.0, LN3, -LN3]]), w_h, np.zeros(4))
    np.testing.assert_allclose(hs[0, 0, 0], math.tanh(0.6) / 4, rtol=1e-15)


def test_the_lstm_layer_matches_pytorch_to_1e_12():
    """tests/fixtures/lstm_torch.npz (make_lstm_fixture.py): torch.nn.LSTM in float64, its
    outputs, last state and autograd's gradients. PyTorch's gate order is minillm's (i, f, g,
    o); its weights are stored (out, in) and its two biases add up."""
    f = np.load(FIXTURE, allow_pickle=False)
    w_x, w_h = f["weight_ih_l0"].T, f["weight_hh_l0"].T  # (I, 4H), (H, 4H)
    b = f["bias_ih_l0"] + f["bias_hh_l0"]  # (4H,)
    hs, cache = lstm_forward(f["x"], w_x, w_h, b)
    np.testing.assert_allclose(hs, f["out"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(hs[:, -1], f["h_n"], rtol=0, atol=1e-12)
    last = cache["steps"][-1]
    c_n = last["f"] * last["c_prev"] + last["i"] * last["g"]
    np.testing.assert_allclose(c_n, f["c_n"], rtol=0, atol=1e-12)
    dx, dw_x, dw_h, db = lstm_backward(f["g"], cache)
    np.testing.assert_allclose(dx, f["grad_x"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(dw_x, f["grad_weight_ih_l0"].T, rtol=0, atol=1e-12)
    np.testing.assert_allclose(dw_h, f["grad_weight_hh_l0"].T, rtol=0, atol=1e-12)
    np.testing.assert_allclose(db, f["grad_bias_ih_l0"], rtol=0, atol=1e-12)  # each bias's
    np.testing.assert_allclose(db, f["grad_bias_hh_l0"], rtol=0, atol=1e-12)  # gradient is db


# ----------------------------------------------------------------------------------------------
# The biLM


SENTENCES = [[7, 8, 7], [8], [7, 7, 8, 8, 7]]  # ids >= 7 are ordinary tokens (7 specials)


def test_the_bilm_loss_gradients_match_central_differences_for_every_parameter():
    cfg, params = tiny(L=2)
    batch = make_streams(SENTENCES)  # padded rows: the loss ignores their padding
    _, _, grads = objective.loss_and_grads(params, cfg, batch, "sum")
    assert set(grads) == set(params)
    check_grads(lambda: objective.loss(params, cfg, batch, "sum")[0], params, grads)


def test_the_stack_skips_from_the_second_layer_on_and_not_from_the_embedding():
    """Peters et al. 2018 (bilm-tf's ResidualWrapper on every layer but the first):
    x^(1) = LSTM_1(x^(0)) and x^(j) = LSTM_j(x^(j-1)) + x^(j-1) for j >= 2, in each direction,
    recomputed here one layer at a time with lstm_forward. (The gradient check cannot see this:
    a forward and backward that both skip everywhere, or nowhere, agree with each other.)"""
    cfg, params = tiny(L=3)
    ids = make_streams([[7, 8, 7, 8]])["inputs"]  # (2, 1, T)
    _, cache = elmo_forward(params, cfg, ids)
    for d, direction in enumerate(("fwd", "bwd")):
        x = params["wte"][ids[d]]  # x^(0): (1, T, C)
        for j in range(cfg.n_layer):
            w = [params[f"{direction}.{j}.{name}"] for name in ("w_x", "w_h", "b")]
            out, _ = lstm_forward(x, *w)
            x = out if j == 0 else out + x  # x^(j+1), counting layers from 1
            np.testing.assert_allclose(cache["outputs"][d][j], x, rtol=0, atol=1e-15,
                                       err_msg=f"{direction} layer {j + 1}")


def test_a_fresh_lstm_s_biases_are_zero_but_the_forget_gate_s_and_its_weights_are_bounded():
    """bilm-tf's forget_bias 1.0 (FORGET_BIAS) on block f of [i | f | g | o], 0 on the other
    gates; W_x and W_h drawn from U(-1/sqrt(C), 1/sqrt(C)), PyTorch's nn.LSTM init."""
    cfg = ElmoConfig(vocab_size=9, n_embd=16, n_layer=2)
    params = elmo_init(cfg, np.random.default_rng(0), dtype=np.float64)
    C = cfg.n_embd
    for direction in ("fwd", "bwd"):
        for j in range(cfg.n_layer):
            pre = f"{direction}.{j}."
            np.testing.assert_array_equal(params[pre + "b"], [0.0] * C + [1.0] * C + [0.0] * 2 * C)
            for name in ("w_x", "w_h"):
                w = params[pre + name]
                assert np.abs(w).max() <= 1 / math.sqrt(C) and np.abs(w).max() > 0.9 / math.sqrt(C)


def test_the_streams_are_the_sentence_and_the_sentence_reversed():
    batch = make_streams([[7, 8, 9], [10]])
    P, X = PAD_ID, IGNORE_INDEX
    np.testing.assert_array_equal(batch["inputs"][0], [[BOS_ID, 7, 8, 9], [BOS_ID, 10, P, P]])
    np.testing.assert_array_equal(batch["targets"][0], [[7, 8, 9, EOS_ID], [10, EOS_ID, X, X]])
    np.testing.assert_array_equal(batch["inputs"][1], [[EOS_ID, 9, 8, 7], [EOS_ID, 10, P, P]])
    np.testing.assert_array_equal(batch["targets"][1], [[9, 8, 7, BOS_ID], [10, BOS_ID, X, X]])
    np.testing.assert_array_equal(batch["attention_mask"], [[1, 1, 1, 1], [1, 1, 0, 0]])


def test_each_direction_s_probabilities_of_all_sequences_sum_to_one():
    """Σ over all V^n sequences of Π_k p(w_k | w_<k) = 1, and of Π_k p(w_k | w_>k) = 1: each
    direction is a chain rule over its own order (V = 9 with the specials, n = 3: 729)."""
    cfg, params = tiny(V=9)
    n = 3
    sequences = [list(s) for s in itertools.product(range(cfg.vocab_size), repeat=n)]
    batch = make_streams(sequences)
    _, _, cache = objective.loss(params, cfg, batch)
    logp = cache["ce"]["logp_target"]  # (2, 729, n + 1); the last term is [EOS] / [BOS]
    for d, direction in enumerate(("forward", "backward")):
        total = np.exp(logp[d, :, :n].sum(axis=-1)).sum()
        assert abs(total - 1.0) < 1e-12, (direction, total)


def test_neither_direction_sees_the_word_it_predicts():
    """The forward LM's prediction of w_k is bit-identical whatever w_k .. w_n are, and the
    backward LM's whatever w_1 .. w_k are."""
    cfg, params = tiny()
    rng = np.random.default_rng(3)
    ids = [7, 8, 7, 8, 8]
    n = len(ids)
    logits, _ = elmo_forward(params, cfg, make_streams([ids])["inputs"])
    for k in range(n):
        later = ids[:k] + [int(v) for v in rng.integers(0, cfg.vocab_size, n - k)]
        earlier = [int(v) for v in rng.integers(0, cfg.vocab_size, k + 1)] + ids[k + 1:]
        changed_f, _ = elmo_forward(params, cfg, make_streams([later])["inputs"])
        changed_b, _ = elmo_forward(params, cfg, make_streams([earlier])["inputs"])
        assert np.array_equal(changed_f[0, 0, k], logits[0, 0, k]), k  # reads w_<k only
        assert np.array_equal(changed_b[1, 0, n - 1 - k], logits[1, 0, n - 1 - k]), k  # w_>k
    # and each does read its context: a changed word before changes the prediction after it
    other, _ = elmo_forward(params, cfg, make_streams([[8] + ids[1:]])["inputs"])
    assert not np.array_equal(other[0, 0, 1], logits[0, 0, 1])


def test_padding_changes_no_real_output_loss_or_gradient():
    """Padding is right-padding with an ignored loss: changing the padded inputs leaves every
    real logit, the loss and every gradient bit-identical."""
    cfg, params = tiny()
    batch = make_streams(SENTENCES)
    L, n, grads = objective.loss_and_grads(params, cfg, batch)
    odd = dict(batch, inputs=batch["inputs"].copy())
    pad = np.broadcast_to(batch["attention_mask"] == 0, odd["inputs"].shape)
    odd["inputs"][pad] = 8  # a real word where [PAD] was
    L2, n2, grads2 = objective.loss_and_grads(params, cfg, odd)
    assert (L2, n2) == (L, n) and n == 2 * sum(len(s) + 1 for s in SENTENCES)
    for name in grads:
        assert np.array_equal(grads[name], grads2[name]), name
    logits, _ = elmo_forward(params, cfg, batch["inputs"])
    logits2, _ = elmo_forward(params, cfg, odd["inputs"])
    real = np.broadcast_to(batch["attention_mask"] == 1, logits.shape[:3])
    assert np.array_equal(logits[real], logits2[real])
    # and a padded row gives what the sentence gives alone
    alone, _ = elmo_forward(params, cfg, make_streams([SENTENCES[1]])["inputs"])
    np.testing.assert_allclose(logits[:, 1, :2], alone[:, 0], rtol=0, atol=1e-12)


def test_log_probs_are_each_direction_s_chain_rule():
    cfg, params = tiny()
    ids = [7, 8, 8]
    fwd, bwd = objective.log_probs(params, cfg, ids)
    logits, _ = elmo_forward(params, cfg, make_streams([ids])["inputs"])
    by_hand_f = sum(log_softmax(logits[0, 0, t])[w] for t, w in enumerate(ids + [EOS_ID]))
    by_hand_b = sum(log_softmax(logits[1, 0, t])[w] for t, w in enumerate(ids[::-1] + [BOS_ID]))
    np.testing.assert_allclose([fwd, bwd], [by_hand_f, by_hand_b], rtol=1e-13)


def test_bad_configs_and_inputs_are_refused_by_name():
    with pytest.raises(ValueError, match="n_layer must be a positive integer, got 0"):
        ElmoConfig(vocab_size=9, n_layer=0)
    cfg, params = tiny()
    with pytest.raises(ValueError, match=r"\(2, B, T\)"):
        elmo_forward(params, cfg, np.zeros((3, 1, 2), dtype=int))
    with pytest.raises(ValueError, match="outside the vocabulary"):
        elmo_forward(params, cfg, np.full((2, 1, 2), 9))
    with pytest.raises(ValueError, match="longer than the model's n_ctx=8"):
        elmo_forward(params, cfg, np.zeros((2, 1, 9), dtype=int))
    with pytest.raises(ValueError, match="exactly one \\[MASK\\] per text, got 2"):
        mask_position([MASK_ID, 7, MASK_ID])
    with pytest.raises(ValueError, match=r"position must be an integer in \[0, 3\), got 1.5"):
        direction_log_probs(params, cfg, [7, 8, 7], 1.5)
    with pytest.raises(ValueError, match="ids must hold integers"):  # not read as 7
        shallow_fill_distribution(params, cfg, [7.5, 8, 7], 1)
    with pytest.raises(ValueError, match=r"ids must be one sentence's word ids, got shape \(0,\)"):
        direction_log_probs(params, cfg, [], 0)


# ----------------------------------------------------------------------------------------------
# The ELMo representation


@settings(max_examples=5)
@example(seed=1256, L=3, n=1)  # a random upstream made dL/dγ ~0 here
@example(seed=592933354, L=1, n=4)  # and dL/dw ~0 here
@given(seed=st.integers(0, 2**32 - 1), L=st.integers(1, 3), n=st.integers(1, 4))
def test_scalar_mix_gradients_match_central_differences(seed, L, n):
    rng = np.random.default_rng(seed)
    a = {"layers": rng.normal(size=(L + 1, n, 4)), "w": rng.normal(size=L + 1),
         "gamma": np.asarray(rng.choice([-1.0, 1.0]) * rng.uniform(0.5, 2.0))}  # γ away from 0
    out, cache = scalar_mix_forward(a["layers"], a["w"], a["gamma"])
    # A random upstream gradient can make dL/dγ or dL/dw ~0 by chance (dL/dw sums to 0, and
    # with two layers its two entries are ± one small number); check_grads would then refuse the
    # check as vacuous. Draw again until every parameter's gradient is clearly non-zero.
    for _ in range(100):
        upstream = rng.normal(size=(n, 4))
        grads = dict(zip(("layers", "w", "gamma"), scalar_mix_backward(upstream, cache)))
        if min(np.abs(g).max() for g in grads.values()) > 1e-2:
            break
    else:
        raise AssertionError("no upstream gradient gave every parameter a gradient")
    check_grads(lambda: projected(scalar_mix_forward(a["layers"], a["w"], a["gamma"])[0],
                                  upstream), a, grads)


def test_the_mix_refuses_a_weight_per_other_count_of_layers_and_a_gamma_per_channel():
    """w holds one weight per layer, γ is one number (eq. 1): a γ of shape (D,) would broadcast
    into a per-channel scale whose gradient came back as one number."""
    layers = np.zeros((3, 2, 4))  # (L + 1, n, D)
    with pytest.raises(ValueError, match=r"w must have shape \(3,\), one weight per layer"):
        scalar_mix_forward(layers, np.zeros(2), np.asarray(1.0))
    with pytest.raises(ValueError, match=r"gamma must be one number .*got shape \(4,\)"):
        scalar_mix_forward(layers, np.zeros(3), np.ones(4))


def test_the_mix_of_equal_weights_is_gamma_times_the_mean_of_the_layers():
    """w = 0 (bilm-tf's start): s_j = 1/(L+1), so ELMo_k = γ · mean_j h_{k,j}."""
    cfg, params = tiny(L=2)
    R = elmo_layers(params, cfg, [7, 8, 7])
    assert R.shape == (3, 3, 2 * cfg.n_embd)
    np.testing.assert_array_equal(R[0, :, :4], R[0, :, 4:])  # h_{k,0} = [x_k; x_k]
    out, _ = scalar_mix_forward(R, np.zeros(3), np.asarray(2.0))
    np.testing.assert_allclose(out, 2.0 * R.mean(axis=0), rtol=1e-14)


def test_the_layers_align_each_word_s_two_directions():
    """→h_{k,j} has read w_1..w_k, ←h_{k,j} has read w_k..w_n: the backward half of word k is
    the same whatever the words before k are, the forward half whatever the words after."""
    cfg, params = tiny()
    R = elmo_layers(params, cfg, [7, 8, 7, 8])
    C = cfg.n_embd
    other_start = elmo_layers(params, cfg, [8, 7, 7, 8])  # words 1 and 2 changed
    other_end = elmo_layers(params, cfg, [7, 8, 8, 7])  # words 3 and 4 changed
    assert np.array_equal(R[1:, 2:, C:], other_start[1:, 2:, C:])
    assert np.array_equal(R[1:, :2, :C], other_end[1:, :2, :C])
    assert not np.array_equal(R[1:, 2:, :C], other_start[1:, 2:, :C])


# ----------------------------------------------------------------------------------------------
# Shallow fill


def test_the_shallow_fill_is_the_normalised_product_of_the_two_directions():
    cfg, params = tiny()
    ids = [7, 8, 8, 7]
    logits, _ = elmo_forward(params, cfg, make_streams([ids])["inputs"])
    n = len(ids)
    for k in range(n):
        p_f = np.exp(log_softmax(logits[0, 0, k]))  # read [BOS] w_1 .. w_{k-1}
        p_b = np.exp(log_softmax(logits[1, 0, n - 1 - k]))  # read [EOS] w_n .. w_{k+1}
        p = shallow_fill_distribution(params, cfg, ids, k)
        assert abs(p.sum() - 1.0) < 1e-13
        np.testing.assert_allclose(p, p_f * p_b / (p_f * p_b).sum(), rtol=1e-10, atol=1e-15)
        logp_f, logp_b = direction_log_probs(params, cfg, [*ids[:k], MASK_ID, *ids[k + 1:]], k)
        np.testing.assert_allclose(np.exp(logp_f), p_f, rtol=1e-10)  # the blank is not read
        np.testing.assert_allclose(np.exp(logp_b), p_b, rtol=1e-10)


def test_two_perfect_one_way_models_multiplied_are_not_the_posterior():
    """今天[MASK]很好。 (grammar.py's table): P(天气 | 今天) = 0.7 · 0.8 = 0.56, P(阳光 | 今天) =
    0.14 (kinds A and C), P(天气 | 很好。) = 0.8 · 0.5 / (0.8 · 0.5 + 0.2 · 0.6) = 10/13; the true
    posterior is 0.16 / 0.208 = 10/13 too, but the product gives 天气 0.56 · 10/13 against
    阳光 0.14 · 3/13: 0.93, the prior of 天气 counted twice."""
    grammar = default_grammar()
    words = ["今天", "[MASK]", "很好", "。"]
    fwd, bwd = true_one_way_distributions(grammar, words)
    np.testing.assert_allclose([fwd["天气"], fwd["阳光"], sum(fwd.values())], [0.56, 0.14, 1.0])
    np.testing.assert_allclose([bwd["天气"], bwd["阳光"]], [10 / 13, 3 / 13])
    truth = grammar.masked_word_distribution(words, as_prefix=False)
    np.testing.assert_allclose(truth["天气"], 10 / 13)
    product = fwd["天气"] * bwd["天气"] / (fwd["天气"] * bwd["天气"] + fwd["阳光"] * bwd["阳光"])
    np.testing.assert_allclose(product, 5.6 / (5.6 + 0.42))


def test_fill_scores_are_zero_for_the_truth_and_log_v_terms_for_uniform():
    tok = default_grammar().tokenizer()
    truth = {"天气": 0.75, "阳光": 0.25}
    exact = np.zeros(len(tok))
    exact[tok.encode("天气")[0]], exact[tok.encode("阳光")[0]] = 0.75, 0.25
    assert fill_scores(truth, exact, tok) == (0.0, 1.0)
    V = len(tok)
    kl, right = fill_scores(truth, np.full(V, 1.0 / V), tok)  # argmax of a tie: token 0
    np.testing.assert_allclose(kl, 0.75 * math.log(0.75 * V) + 0.25 * math.log(0.25 * V))
    assert right == 0.0


def test_blanked_sentences_have_one_blank_on_a_word_with_a_whole_sentence_truth():
    grammar = default_grammar()
    for words in blanked_sentences(grammar, 50, np.random.default_rng(0)):
        assert words.count("[MASK]") == 1
        truth = grammar.masked_word_distribution(words, as_prefix=False)
        assert abs(sum(truth.values()) - 1.0) < 1e-12
        assert "，" not in truth and "。" not in truth


def test_compare_fills_scores_every_model_on_every_blank():
    """On untrained tiny models: every score is in range and each is the mean of fill_scores."""
    grammar = default_grammar()
    tok = grammar.tokenizer()
    V = len(tok)
    elmo_cfg = ElmoConfig(vocab_size=V, n_ctx=16, n_embd=8, n_layer=1)
    bert_cfg = BertConfig(vocab_size=V, n_ctx=16, n_embd=8, n_head=2, n_layer=1)
    elmo = (elmo_init(elmo_cfg, np.random.default_rng(0)), elmo_cfg)
    bert = (bert_init(bert_cfg, np.random.default_rng(0)), bert_cfg)
    blanks = blanked_sentences(grammar, 4, np.random.default_rng(1))
    result = compare_fills(elmo, bert, tok, grammar, blanks)
    assert result["n"] == 4
    for name in ("elmo", "elmo_fwd", "elmo_bwd", "bert", "shallow_truth"):
        assert result[name]["kl"] >= 0 and 0 <= result[name]["accuracy"] <= 1
    ids = [MASK_ID if w == "[MASK]" else tok.encode(w)[0] for w in blanks[0]]
    truth = grammar.masked_word_distribution(blanks[0], as_prefix=False)
    one = compare_fills(elmo, bert, tok, grammar, blanks[:1])
    p = shallow_fill_distribution(*elmo, ids, mask_position(ids))
    np.testing.assert_allclose(one["elmo"]["kl"], fill_scores(truth, p, tok)[0], rtol=1e-9)
    # the product of the two true one-way conditionals on 今天[MASK]很好。: 天气 5.6 / 6.02
    # against the truth's 10/13 (test_two_perfect_one_way_models_multiplied_are_not_the_posterior)
    with pytest.raises(ValueError, match="blanks must hold at least one sentence, got none"):
        compare_fills(elmo, bert, tok, grammar, [])
    shallow = compare_fills(elmo, bert, tok, grammar, [["今天", "[MASK]", "很好", "。"]])
    p_sun = 0.42 / 6.02
    expected = 10 / 13 * math.log(10 / 13 / (1 - p_sun)) + 3 / 13 * math.log(3 / 13 / p_sun)
    np.testing.assert_allclose(shallow["shallow_truth"]["kl"], expected, rtol=1e-12)
    assert shallow["shallow_truth"]["accuracy"] == 1.0


# ----------------------------------------------------------------------------------------------
# The command line


SMALL = ["--steps", "60", "--batch-size", "16", "--n-embd", "32", "--n-layer", "1",
         "--log-every", "60"]


def test_train_elmo_lowers_the_loss_and_fill_prints_the_truth(tmp_path, capsys):
    from minillm.checkpoint import load_checkpoint

    path = str(tmp_path / "elmo.safetensors")
    assert main(["train", "--objective", "elmo", *SMALL, "--out", path]) == 0
    out = capsys.readouterr().out
    assert "training an ELMo biLM of" in out and "fill --checkpoint" in out
    assert "| floor 0.729 |" in out  # both directions factorise P(s): the GPT's floor
    history = load_checkpoint(path)[3]["history"]
    # ln V at the start (near-uniform logits); lower after 60 steps
    assert history[0] > 0.9 * math.log(len(default_grammar().tokenizer()))
    assert np.mean(history[-5:]) < history[0] - 1.0
    assert main(["fill", "今天[MASK]很好。", "--checkpoint", path, "--json"]) == 0
    import json

    shown = json.loads(capsys.readouterr().out)
    assert shown["truth"] and shown["masks"][0]["position"] == 2
    words = {row["word"]: row["true_p"] for row in shown["masks"][0]["words"]}
    if "天气" in words:
        np.testing.assert_allclose(words["天气"], 0.16 / 0.208)  # 0.4·0.8·0.5 / (… + 0.4·0.2·0.6)
    assert main(["fill", "[MASK]天[MASK]很好。", "--checkpoint", path]) == 2
    assert "exactly one [MASK]" in capsys.readouterr().err
    assert main(["train", "--objective", "elmo", "--n-head", "2", *SMALL, "--out", path]) == 2
    assert "--n-head" in capsys.readouterr().err
    assert main(["export", path, str(tmp_path / "hf")]) == 2
    assert "no Hugging Face architecture" in capsys.readouterr().err
    bert = str(tmp_path / "bert.safetensors")
    assert main(["train", "--objective", "mlm", *SMALL, "--out", bert]) == 0
    result = compare_fill_checkpoints(path, bert, n_blanks=3)
    assert result["n"] == 3 and set(result["params"]) == {"elmo", "bert"}
    V, C = len(default_grammar().tokenizer()), 32
    lstm = 2 * C * 4 * C + 4 * C  # W_x, W_h, b: one layer of one direction
    assert result["params"]["elmo"] == V * C + 2 * lstm + C * V + V  # wte, fwd, bwd, softmax
    with pytest.raises(ValueError, match="not a checkpoint of --objective elmo"):
        compare_fill_checkpoints(bert, path)
    for n in (0, -1, 2.5):  # 0 gave NaN scores (0/0)
        with pytest.raises(ValueError, match=f"n_blanks must be a positive integer, got {n}$"):
            compare_fill_checkpoints(path, bert, n_blanks=n)

