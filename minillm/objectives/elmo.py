"""ELMo's biLM objective (tutorial: 训练目标的演进, 第一代: "ELMo：双向 LSTM + 语言模型").

Two next-token predictions of the same sentence, one from each end (Peters et al. 2018, §3.1):

    L = -Σ_k [ log p(t_k | t_1 .. t_{k-1}) + log p(t_k | t_{k+1} .. t_N) ]

The forward LM reads [BOS] w_1 .. w_n and predicts w_1 .. w_n [EOS], exactly as clm.py; the
backward LM reads [EOS] w_n .. w_1 and predicts w_n .. w_1 [BOS]. So a sentence of n words gives
2(n + 1) terms. The loss is their sum, as written, unless a mean is asked for; the mean over both
directions' terms is bilm-tf's 0.5 · (mean_fwd + mean_bwd), the two directions having equally
many terms. The model is elmo.py's; this module builds its batches and computes the loss.
"""

from __future__ import annotations

from ..elmo import elmo_backward, elmo_forward, make_streams
from ..layers import cross_entropy_backward, cross_entropy_forward

NAME = "elmo"
TITLE = "ELMo's bidirectional language modeling: a forward and a backward LSTM LM"
MODEL, MODEL_TITLE = "elmo", "ELMo biLM"
RESERVED = 1  # positions a sequence gives up to special tokens: [BOS] ([EOS] when reversed)


def log_probs(params, cfg, ids):
    """Each direction's chain rule over one sentence (ids: its n word ids):

        log p_fwd = Σ_k log p(w_k | w_<k) + log p([EOS] | w_1..w_n)
        log p_bwd = Σ_k log p(w_k | w_>k) + log p([BOS] | w_n..w_1)

    Returns (log p_fwd, log p_bwd), two floats: each direction's log-probability of the whole
    sentence, its end included.
    """
    batch = make_streams([list(ids)])
    logits, _ = elmo_forward(params, cfg, batch["inputs"])
    _, ce = cross_entropy_forward(logits, batch["targets"])
    per_step = ce["logp_target"]  # (2, 1, n + 1)
    return float(per_step[0].sum()), float(per_step[1].sum())


def loss(params, cfg, batch, reduction="sum"):
    """``L = -Σ_k [log p(t_k | t_<k) + log p(t_k | t_>k)]`` over every real target of both
    streams. Returns (L, n_predicted, cache); n_predicted counts both directions' terms, and
    ``reduction="mean"`` gives L / n_predicted."""
    logits, model_cache = elmo_forward(params, cfg, batch["inputs"])  # (2, B, T, V)
    L, ce_cache = cross_entropy_forward(logits, batch["targets"], reduction=reduction)
    return float(L), ce_cache["n"], {"model": model_cache, "ce": ce_cache, "logits": logits}


def backward(cache):
    """dL/dθ for every parameter θ, from loss's cache: a dict with the same keys as params."""
    dlogits = cross_entropy_backward(1.0, cache["ce"])  # dL/dlogits (2, B, T, V)
    return elmo_backward(dlogits, cache["model"])


def loss_and_grads(params, cfg, batch, reduction="sum"):
    """The loss and dL/dθ for every parameter θ. Returns (L, n_predicted, grads)."""
    L, n, cache = loss(params, cfg, batch, reduction)
    return L, n, backward(cache)


def training_batch(examples, indices, rng, tokenizer, train_cfg, n_ctx=None):
    """The training loop's entry: both streams of every sentence, no randomness of its own."""
    return make_streams(examples)
