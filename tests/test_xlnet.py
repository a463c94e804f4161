"""XLNet's permutation language modeling: the two-stream layer's and the loss's gradients, the
probabilities of one order summing to 1, who may read whom (bit for bit), the mask grids,
partial prediction, and a short training run."""

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minillm.config import TrainConfig
from minillm.gradcheck import check_grads, key_bias_zeros, projected
from minillm.layers import IGNORE_INDEX
from minillm.models import XLNetConfig, block_shapes, init_params, xlnet_init
from minillm.objectives import xlnet as plm
from minillm.options import OptionError
from minillm.tokenizer import BOS_ID, EOS_ID, MASK_ID
from minillm.xlnet import (
    mask_grids,
    stream_masks,
    two_stream_backward,
    two_stream_forward,
    xlnet_forward,
)

# Ids 0 .. 6 are the special tokens ([PAD] .. [MASK]); 7 .. 10 stand for words.
TINY = XLNetConfig(vocab_size=11, n_ctx=7, n_embd=8, n_head=2, n_layer=2)
# A narrower copy for the gradient checks, which perturb every parameter one at a time.
CHECK = XLNetConfig(vocab_size=11, n_ctx=7, n_embd=4, n_head=2, n_layer=2, n_inner=8)


def noisy(params, rng):
    """Move every tensor off its initial constant, so no gain is 1 and no bias is 0."""
    return {k: v + 0.3 * rng.normal(size=v.shape) for k, v in params.items()}


# ----------------------------------------------------------------------------------------------
# Gradients, float64, central differences, every element


@settings(max_examples=3)
@given(seed=st.integers(0, 2**32 - 1))
def test_two_stream_layer_matches_central_differences_for_both_inputs_and_every_weight(seed):
    """Both streams' outputs (random upstream gradients on each) against h, g and every weight
    they share; one row padded, and z_1's query row reading nothing at all."""
    rng = np.random.default_rng(seed)
    C, B, T = CHECK.n_embd, 2, 5
    w = noisy(init_params(block_shapes("", C, CHECK.n_inner), rng, np.float64), rng)
    arrays = {**w, "h": rng.normal(size=(B, T, C)), "g": rng.normal(size=(B, T, C))}
    order = np.array([rng.permutation(T), [3, 0, 2, 1, 4]])
    mask = np.array([[1, 1, 1, 1, 1], [1, 1, 1, 1, 0]])
    content, query = stream_masks(order, mask)
    spec = CHECK.block_spec()

    def run():
        weights = {k: arrays[k] for k in w}
        return two_stream_forward(arrays["h"], arrays["g"], weights, spec, content[:, None],
                                  query[:, None])

    h_out, g_out, cache = run()
    up_h, up_g = rng.normal(size=h_out.shape), rng.normal(size=g_out.shape)
    dh, dg, grads = two_stream_backward(up_h, up_g, cache)
    analytic = {**grads, "h": dh, "g": dg}
    assert set(analytic) == set(arrays)

    def f():
        h, g, _ = run()
        return projected(h, up_h) + projected(g, up_g)

    check_grads(f, arrays, analytic, zero=key_bias_zeros(w, C))


@pytest.mark.parametrize("reduction", ["sum", "mean"])
@settings(max_examples=1)
@given(seed=st.integers(0, 2**32 - 1))
def test_xlnet_loss_gradient_matches_central_differences_for_every_parameter(reduction, seed):
    """The loss of a padded batch with partial prediction (K = 2): wte (lookup and output),
    wpe, mask_emb, every block, out_bias."""
    rng = np.random.default_rng(seed)
    params = noisy(xlnet_init(CHECK, rng, np.float64), rng)
    batch = plm.make_batch([[7, 8, 9, 7], [8, 9]], rng, K=2)
    T = batch["inputs"].shape[1]
    _, n, analytic = plm.loss_and_grads(params, CHECK, batch, reduction)
    assert n == 3 + 2 and set(analytic) == set(params)  # m = 5 and 3: ⌈5/2⌉ + ⌈3/2⌉
    check_grads(lambda: plm.loss(params, CHECK, batch, reduction)[0], params, analytic,
                zero={**key_bias_zeros(params, CHECK.n_embd), "wpe": np.s_[T:]})


# ----------------------------------------------------------------------------------------------
# One factorization order is a probability distribution over sequences


@pytest.mark.parametrize("order", [[0, 1, 2, 3], [2, 0, 3, 1], [3, 2, 1, 0]])
def test_the_probabilities_of_all_sequences_in_one_order_sum_to_one(order):
    """Σ over all V^n sequences of Π_t p(x_{z_t} | x_{z<t}) = 1, for a fixed order z.

    Exactly 1 in exact arithmetic, when each factor is a distribution over x_{z_t} that reads
    only x_{z<t} (sum over x_{z_n} first, then x_{z_{n-1}}, ...): a query that saw its own
    token, or a later one, would break it. float64 rounding over V^n terms stays below 1e-9.
    """
    cfg = XLNetConfig(vocab_size=4, n_ctx=4, n_embd=8, n_head=2, n_layer=2)
    params = noisy(xlnet_init(cfg, np.random.default_rng(5), np.float64),
                   np.random.default_rng(6))
    total = sum(math.exp(plm.log_prob(params, cfg, seq, order)[0])
                for seq in itertools.product(range(cfg.vocab_size), repeat=len(order)))
    np.testing.assert_allclose(total, 1.0, rtol=0, atol=1e-9)


def test_with_k_1_every_position_but_bos_and_padding_is_predicted():
    batch = plm.make_batch([[7, 8, 9], [8]], np.random.default_rng(0), K=1)
    expected = np.array([[IGNORE_INDEX, 7, 8, 9, EOS_ID],
                         [IGNORE_INDEX, 8, EOS_ID, IGNORE_INDEX, IGNORE_INDEX]])
    np.testing.assert_array_equal(batch["labels"], expected)


# ----------------------------------------------------------------------------------------------
# Who reads whom: changing what a position may not read leaves it bit-identical


def _random_case(seed, T=6):
    rng = np.random.default_rng(seed)
    params = noisy(xlnet_init(TINY, rng, np.float64), rng)
    return rng, params, rng.integers(0, TINY.vocab_size, size=(1, T)), rng.permutation(T)[None]


@settings(max_examples=10)
@given(seed=st.integers(0, 2**32 - 1), t=st.integers(0, 5))
def test_the_query_stream_at_z_t_never_reads_x_z_t(seed, t):
    rng, params, ids, order = _random_case(seed)
    i = order[0, t]  # z_t
    other = ids.copy()
    other[0, i] = (ids[0, i] + 1 + rng.integers(TINY.vocab_size - 1)) % TINY.vocab_size
    logits, cache = xlnet_forward(params, TINY, ids, order)
    logits2, cache2 = xlnet_forward(params, TINY, other, order)
    np.testing.assert_array_equal(logits2[0, i], logits[0, i])  # bit-identical
    # ... while its own content stream reads it: the test compares something that can move.
    assert not np.array_equal(cache2["h"][0, i], cache["h"][0, i])
    if t + 1 < order.shape[1]:  # and so does the query of z_{t+1}
        assert not np.array_equal(logits2[0, order[0, t + 1]], logits[0, order[0, t + 1]])


@settings(max_examples=10)
@given(seed=st.integers(0, 2**32 - 1), t=st.integers(0, 4))
def test_neither_stream_reads_a_token_later_in_the_order(seed, t):
    """Replace every token after z_t in the order: both streams at z_1 .. z_t are bit-identical."""
    rng, params, ids, order = _random_case(seed)
    later = order[0, t + 1:]
    other = ids.copy()
    other[0, later] = (ids[0, later] + 1) % TINY.vocab_size
    logits, cache = xlnet_forward(params, TINY, ids, order)
    logits2, cache2 = xlnet_forward(params, TINY, other, order)
    seen = order[0, : t + 1]
    np.testing.assert_array_equal(logits2[0, seen], logits[0, seen])
    np.testing.assert_array_equal(cache2["h"][0, seen], cache["h"][0, seen])
    assert not np.array_equal(cache2["h"][0, later], cache["h"][0, later])  # they were read


def test_the_query_stream_knows_which_position_it_predicts():
    """Position 2 in z = 0, 1, 2, 3 and position 3 in z = 0, 1, 3, 2 are predicted from the same
    context, x_0 and x_1, whose content streams are the same in both orders. Only the position
    p_i in g^(0)_i = w + p_i tells the two targets apart: without it the two predictions would
    be bit-identical (Yang et al. 2019, section 2.3, "target position aware")."""
    _, params, ids, _ = _random_case(seed=0, T=4)
    a, cache_a = xlnet_forward(params, TINY, ids, [[0, 1, 2, 3]])
    b, cache_b = xlnet_forward(params, TINY, ids, [[0, 1, 3, 2]])
    np.testing.assert_array_equal(cache_a["h"][0, :2], cache_b["h"][0, :2])  # the same context
    assert np.abs(a[0, 2] - b[0, 3]).max() > 1e-2


# ----------------------------------------------------------------------------------------------
# The masks


def test_the_mask_grids_of_a_hand_written_order():
    """z = 2, 0, 3, 1: position 2 is first (its content reads only itself, its query nothing),
    position 1 last (its content reads all, its query all but itself)."""
    assert mask_grids([2, 0, 3, 1]) == "\n".join([
        "order z: 2 -> 0 -> 3 -> 1",
        "content stream h (z<=t)   query stream g (z<t)",
        "   0 1 2 3                   0 1 2 3",
        " 0 x . x .                 0 . . x .",
        " 1 x x x x                 1 x . x x",
        " 2 . . x .                 2 . . . .",
        " 3 x . x x                 3 x . x .",
    ])


def test_mask_grids_refuses_tokens_that_do_not_name_every_position():
    with pytest.raises(ValueError, match=r"tokens must name the 3 positions of order, got 2"):
        mask_grids([2, 0, 1], tokens=["[BOS]", "今天"])


def test_nobody_reads_padding():
    content, query = stream_masks(np.array([[0, 2, 1, 3, 4]]), np.array([[1, 1, 1, 0, 0]]))
    assert not content[0, :, 3:].any() and not query[0, :, 3:].any()
    assert content[0, :3, :3].any(axis=-1).all()  # every real position reads something


def test_a_given_order_must_be_one_that_sample_order_could_draw():
    """make_batch's labels take [BOS] to be first in every order and the padding last, as
    sample_order draws them: a given order that breaks that would have the loss predict [PAD]
    (or [BOS]), so it is refused by name."""
    rng = np.random.default_rng(0)
    sentences = [[7, 8], [9]]  # rows [BOS] 7 8 [EOS] and [BOS] 9 [EOS] [PAD]
    batch = plm.make_batch(sentences, rng, K=1, orders=[[0, 2, 3, 1], [0, 2, 1, 3]])
    np.testing.assert_array_equal(batch["order"], [[0, 2, 3, 1], [0, 2, 1, 3]])
    np.testing.assert_array_equal(batch["labels"][1], [IGNORE_INDEX, 9, EOS_ID, IGNORE_INDEX])
    with pytest.raises(ValueError, match=r"orders\[1\] = \[0, 1, 3, 2\] must put \[BOS\]"):
        plm.make_batch(sentences, rng, orders=[[0, 2, 3, 1], [0, 1, 3, 2]])  # [PAD] before 2
    with pytest.raises(ValueError, match=r"orders\[0\] = \[1, 0, 2, 3\] must put \[BOS\]"):
        plm.make_batch(sentences, rng, orders=[[1, 0, 2, 3], [0, 2, 1, 3]])
    with pytest.raises(ValueError, match=r"orders must be a \(2, 4\) integer array"):
        plm.make_batch(sentences, rng, orders=[[0, 2, 3, 1]])


def test_a_wrong_order_is_refused_by_name():
    ids = np.zeros((1, 3), dtype=np.int64)
    with pytest.raises(ValueError, match=r"order\[0\] = \[0, 0, 2\] is not a permutation"):
        xlnet_forward(xlnet_init(TINY, np.random.default_rng(0)), TINY, ids, [[0, 0, 2]])
    with pytest.raises(ValueError, match="K must be a positive integer, got 0"):
        plm.make_batch([[7]], np.random.default_rng(0), K=0)


# ----------------------------------------------------------------------------------------------
# Partial prediction


@settings(max_examples=25)
@given(seed=st.integers(0, 2**32 - 1), K=st.integers(1, 8),
       lengths=st.lists(st.integers(0, 9), min_size=1, max_size=4))
def test_partial_prediction_predicts_exactly_the_last_ceil_m_over_k_of_the_order(seed, K,
                                                                                  lengths):
    """m = n + 1 permuted positions (the words and [EOS]); the last ⌈m/K⌉ of them in z are the
    targets, with their own tokens as labels; [BOS] is first in z, padding last."""
    rng = np.random.default_rng(seed)
    sentences = [list(rng.integers(7, 20, size=n)) for n in lengths]
    batch = plm.make_batch(sentences, rng, K=K)
    T = batch["inputs"].shape[1]
    for b, n in enumerate(lengths):
        z, m = batch["order"][b], n + 1
        assert z[0] == 0 and sorted(z[1 : m + 1]) == list(range(1, m + 1))
        np.testing.assert_array_equal(z[m + 1:], np.arange(m + 1, T))
        targets = z[m + 1 - math.ceil(m / K) : m + 1]
        expected = np.full(T, IGNORE_INDEX)
        expected[targets] = batch["inputs"][b, targets]
        np.testing.assert_array_equal(batch["labels"][b], expected)


def test_plm_k_is_a_setting_of_xlnet_only():
    assert TrainConfig(objective="xlnet").plm_k == 6  # Yang et al. 2019, K = 6
    assert TrainConfig(objective="xlnet", plm_k=1).plm_k == 1
    with pytest.raises(OptionError, match="plm_k=3 needs objective='xlnet'"):
        TrainConfig(objective="clm", plm_k=3)
    with pytest.raises(ValueError, match="plm_k must be a positive integer, got 0"):
        TrainConfig(objective="xlnet", plm_k=0)


# ----------------------------------------------------------------------------------------------
# Filling a blank, and training


def test_fill_predicts_the_blank_last_from_every_other_token():
    """fill_distributions is the query stream at the blank in the order (the others left to
    right, then the blank): the softmax of that position's logits, whatever token the blank
    holds."""
    params = noisy(xlnet_init(TINY, np.random.default_rng(1), np.float64),
                   np.random.default_rng(2))
    ids = [BOS_ID, 7, MASK_ID, 8, 9]
    [(position, probs)] = plm.fill_distributions(params, TINY, ids)
    logits, _ = xlnet_forward(params, TINY, np.array([[BOS_ID, 7, 10, 8, 9]]), [[0, 1, 3, 4, 2]])
    expected = np.exp(logits[0, 2] - logits[0, 2].max())
    assert position == 2
    np.testing.assert_allclose(probs, expected / expected.sum(), rtol=1e-12)


def test_training_lowers_the_loss():
    """60 steps on the grammar: the mean loss of the last 10 steps is below that of the first
    10 by more than a nat per predicted token (it starts near log V = 4.0)."""
    from minillm.data import GrammarData
    from minillm.grammar import default_grammar
    from minillm.train import train

    tok = default_grammar().tokenizer()
    cfg = XLNetConfig(vocab_size=len(tok), n_ctx=16, n_embd=16, n_head=2, n_layer=1)
    train_cfg = TrainConfig(objective="xlnet", steps=60, batch_size=16, warmup=5)
    state = train(cfg, train_cfg, GrammarData(default_grammar(), tok), tok, log=lambda s: None)
    history = state["history"]
    assert np.mean(history[:10]) > np.log(len(tok)) - 0.5
    assert np.mean(history[-10:]) < np.mean(history[:10]) - 1.0


def test_a_checkpoint_written_before_plm_k_loads_with_its_default(tmp_path):
    """plm_k came after the checkpoint format: a file without it is an older run (K = 6)."""
    import json

    from minillm import safetensors
    from minillm.checkpoint import load_checkpoint, save_checkpoint
    from minillm.optim import adamw_init

    cfg = XLNetConfig(vocab_size=11, n_ctx=7, n_embd=8, n_head=2, n_layer=1)
    params = xlnet_init(cfg, np.random.default_rng(0))
    state = {"params": params, "opt": adamw_init(params), "step": 0, "history": [],
             "data_rng": np.random.default_rng(1)}
    path = str(tmp_path / "x.safetensors")
    save_checkpoint(path, cfg, TrainConfig(objective="xlnet", steps=1), None, state)
    tensors, metadata = safetensors.load_file_with_metadata(path)
    meta = json.loads(metadata["minillm"])
    assert meta["train_config"].pop("plm_k") == 6
    safetensors.save_file(tensors, path, metadata={"minillm": json.dumps(meta)})
    model_cfg, train_cfg, _, loaded = load_checkpoint(path)
    assert (model_cfg, train_cfg.plm_k) == (cfg, 6)
    np.testing.assert_array_equal(loaded["params"]["mask_emb"], params["mask_emb"])


def test_train_fill_and_export_on_the_command_line(tmp_path, capsys):
    """train --objective xlnet writes a checkpoint that fill reads ([BOS] and the text, the
    blank last in the order; the grammar's truth beside it) and export refuses, in one line."""
    import json

    from minillm.cli import main

    path = str(tmp_path / "xlnet.safetensors")
    assert main(["train", "--objective", "xlnet", "--plm-k", "3", "--steps", "2",
                 "--batch-size", "2", "--n-embd", "16", "--n-layer", "1", "--out", path]) == 0
    assert "(permutation language modeling)" in capsys.readouterr().out
    assert main(["fill", "今天[MASK]很好", "--checkpoint", path, "--json", "--top", "100"]) == 0
    out = json.loads(capsys.readouterr().out)
    [blank] = out["masks"]
    assert out["truth"] and blank["position"] == 2  # [BOS] 今天 [MASK]: word 2
    truth = {row["word"]: row["true_p"] for row in blank["words"]}
    assert truth["天气"] == pytest.approx(0.769, abs=1e-3)  # 0.4 / (0.4 + 0.12), grammar.py
    # The model's column is fill_distributions on [BOS] 今天 [MASK] 很好, nothing after it.
    from minillm.checkpoint import load_checkpoint

    cfg, _, tok, state = load_checkpoint(path)
    [(_, probs)] = plm.fill_distributions(state["params"], cfg,
                                          [BOS_ID, *tok.encode("今天[MASK]很好")])
    for row in blank["words"]:
        assert row["model_p"] == probs[tok.vocab.index(row["word"])]
    assert main(["fill", "今天[MASK]很好，我们去[MASK]玩", "--checkpoint", path]) == 0
    assert capsys.readouterr().out.count("[MASK] as word") == 2
    assert main(["export", path, str(tmp_path / "hf")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no Hugging Face architecture computes" in err[0], err


@pytest.mark.parametrize("objective", ["clm", "mlm", "elmo"])
def test_plm_k_given_to_another_objective_is_refused_even_at_its_default(tmp_path, capsys,
                                                                         objective):
    """--plm-k only means something to xlnet: given to another objective it would be ignored,
    so it is refused in one line, even as --plm-k 6 (the default), as --arch is; and on
    --resume of another objective's checkpoint it is refused by the same rule, not as a change
    of a setting that checkpoint never had."""
    from minillm.cli import main

    out = str(tmp_path / "m.safetensors")
    small = ["--steps", "1", "--batch-size", "2", "--n-embd", "8", "--n-layer", "1",
             "--out", out]
    if objective != "elmo":
        small += ["--n-head", "2"]
    assert main(["train", "--objective", objective, "--plm-k", "6", *small]) == 2
    err = capsys.readouterr().err
    assert err == (f"minillm: error: --plm-k 6 needs --objective xlnet, got --objective "
                   f"{objective}\n")
    assert main(["train", "--objective", objective, *small]) == 0
    capsys.readouterr()
    assert main(["train", "--resume", "--plm-k", "2", "--out", out]) == 2
    err = capsys.readouterr().err
    assert err == (f"minillm: error: --plm-k 2 needs --objective xlnet, got --objective "
                   f"{objective}\n")
