"""Permutation language modeling, XLNet's objective (Yang et al. 2019), the "PLM" of its name.

Bidirectional context without [MASK]: draw a factorization order z, a random permutation of
the positions, and predict each token from the tokens before it *in that order*, wherever they
stand in the text. Over all orders every token is predicted from every subset of the others:

    max_θ  E_{z∼Z_T} [ Σ_{t=1}^{T} log p_θ(x_{z_t} | x_{z<t}) ]                        (Eq. 3)

Partial prediction: only the tokens after a cutting point c are predicted, the last 1/K of the
order (K = 6 in the paper, ``TrainConfig.plm_k``), each still reading all tokens before it:

    L = -Σ_{t=c+1}^{|z|} log p_θ(x_{z_t} | x_{z<t}),   |z| - c = ⌈|z| / K⌉            (Eq. 5)

The framing: a sentence is ``[BOS] w_1 ... w_n [EOS]`` at fixed positions 0 .. n+1, right-padded.
z permutes the positions 1 .. n+1 (the words and [EOS], which tells where the sentence stops);
[BOS] stands first in every order, as context that is never predicted (it is the same in every
sentence), so even z_1's query has a key to read. Padding comes last in the order, and nobody
reads it (the attention mask). The loss is a sum over predicted tokens, as written, unless a
mean is asked for. The model is xlnet.py's two-stream Transformer.

The reference code (zihangdai/xlnet) lets the context tokens z≤c read each other in both
directions; here every token keeps its own place in z, as Eq. 3 and 5 write it.
"""

from __future__ import annotations

import math

import numpy as np

from ..generate import next_token_probs
from ..layers import IGNORE_INDEX, cross_entropy_backward, cross_entropy_forward, log_softmax
from ..models import check_finite
from ..tokenizer import BOS_ID, EOS_ID, MASK_ID, PAD_ID, right_pad
from ..xlnet import check_order, xlnet_backward, xlnet_forward

NAME = "xlnet"
TITLE = "permutation language modeling"
MODEL, MODEL_TITLE = "xlnet", "XLNet"
RESERVED = 2  # positions a sequence gives up to special tokens: [BOS] and [EOS]


def sample_order(n, T, rng):
    """A factorization order for a row of n real tokens ([BOS] first) padded to T positions:
    [BOS] (position 0), a uniform random permutation of positions 1 .. n-1, then the padding."""
    return np.concatenate([[0], 1 + rng.permutation(n - 1), np.arange(n, T)])  # (T,)


def make_batch(sequences, rng, K=6, orders=None):
    """Token-id sequences -> a batch for permutation language modeling.

    inputs (B, T) ``[BOS] w_1 ... w_n [EOS]`` right-padded; order (B, T), each row z drawn by
    sample_order (or given in ``orders``, each row one that sample_order could draw: [BOS]
    first, the padding last); labels (B, T): the token at the last ⌈m/K⌉ positions of z's m
    permuted ones, IGNORE_INDEX elsewhere; attention_mask (B, T).
    """
    if len(sequences) == 0:
        raise ValueError("sequences must hold at least one sequence, got an empty batch")
    if isinstance(K, bool) or not isinstance(K, int) or K < 1:
        raise ValueError(f"K must be a positive integer, got {K!r}")
    inputs, attention_mask = right_pad([[BOS_ID, *seq, EOS_ID] for seq in sequences], PAD_ID)
    B, T = inputs.shape
    if orders is not None:
        orders = check_order(orders, (B, T), "orders")
    order = np.zeros((B, T), dtype=np.int64)
    labels = np.full((B, T), IGNORE_INDEX, dtype=np.int64)
    for b in range(B):
        n = int(attention_mask[b].sum())  # real tokens, [BOS] and [EOS] included
        if orders is None:
            order[b] = sample_order(n, T, rng)
        elif orders[b, 0] != 0 or not np.array_equal(orders[b, n:], np.arange(n, T)):
            # the labels below would otherwise ask for [BOS] or [PAD]
            raise ValueError(f"orders[{b}] = {orders[b].tolist()} must put [BOS] (position 0) "
                             f"first and the padding (from position {n} on) last, in place")
        else:
            order[b] = orders[b]
        c = n - math.ceil((n - 1) / K)  # the cutting point: z_0 .. z_{c-1} are only read
        predicted = order[b, c:n]  # the last ⌈m/K⌉ of the m = n - 1 permuted positions
        labels[b, predicted] = inputs[b, predicted]
    return {"inputs": inputs, "order": order, "labels": labels,
            "attention_mask": attention_mask}


def training_batch(examples, indices, rng, tokenizer, train_cfg, n_ctx=None):
    """The training loop's entry: one new order per sentence from the training generator."""
    return make_batch(examples, rng, train_cfg.plm_k)


def loss(params, cfg, batch, reduction="sum"):
    """``L = -Σ_{t>c} log p(x_{z_t} | x_{z<t}; θ)`` over every predicted token of the batch.

    Returns (L, n_predicted, cache). ``reduction="mean"`` gives L / n_predicted.
    """
    logits, model_cache = xlnet_forward(params, cfg, batch["inputs"], batch["order"],
                                        batch["attention_mask"])
    L, ce_cache = cross_entropy_forward(logits, batch["labels"], reduction=reduction)
    return float(L), ce_cache["n"], {"model": model_cache, "ce": ce_cache, "logits": logits}


def backward(cache):
    """dL/dθ for every parameter θ, from loss's cache: a dict with the same keys as params."""
    dlogits = cross_entropy_backward(1.0, cache["ce"])  # (B, T, V)
    return xlnet_backward(dlogits, cache["model"])


def loss_and_grads(params, cfg, batch, reduction="sum"):
    """The loss and dL/dθ for every parameter θ. Returns (L, n_predicted, grads)."""
    L, n, cache = loss(params, cfg, batch, reduction)
    return L, n, backward(cache)


def log_prob(params, cfg, ids, order):
    """``log p(x) = Σ_t log p(x_{z_t} | x_{z<t})`` for one sequence in one order, every
    position predicted (ids (T,) as they are, no [BOS] added; order (T,) a permutation).
    Returns (total, per_position (T,))."""
    logits, _ = xlnet_forward(params, cfg, np.asarray(ids)[None], np.asarray(order)[None])
    logp = log_softmax(check_finite(logits[0]))  # (T, V)
    per_position = logp[np.arange(len(ids)), np.asarray(ids)]  # (T,)
    return float(per_position.sum()), per_position


def fill_distributions(params, cfg, ids, context_order=None, mask_id=MASK_ID):
    """The model's distribution at each [MASK] of ``[BOS] text`` (ids), each blank predicted
    last in the order, from every other token: p(x_blank | the others).

    ``context_order``: the order in which the other positions come first (default left to
    right); the content stream reads them in that order, so the answer may depend on it.
    Several blanks are filled left to right: each is predicted with the earlier ones filled
    with their most probable word and the later ones after it in the order (unread).
    Returns a list of (position, probs (V,)).
    """
    ids = np.array(ids)
    blanks = [int(i) for i in np.flatnonzero(ids == mask_id)]
    if not blanks:
        raise ValueError("the text has no [MASK] to fill")
    rest = [i for i in range(len(ids)) if i not in blanks]  # (left to right)
    others = rest if context_order is None else [int(i) for i in context_order]
    if sorted(others) != rest:
        raise ValueError(f"context_order must order the positions {rest} (all but the "
                         f"blanks), got {context_order!r}")
    filled = []
    for k, blank in enumerate(blanks):
        order = np.array([[*others, *blanks[:k], blank, *blanks[k + 1:]]])  # (1, T)
        logits, _ = xlnet_forward(params, cfg, ids[None], order)
        probs = next_token_probs(logits[0, blank])  # (V,)
        filled.append((blank, probs))
        ids[blank] = int(np.argmax(probs))  # read by the blanks after it
    return filled
