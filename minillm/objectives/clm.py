"""Next-token prediction, the GPT objective (tutorial: 1. 语言建模 and 训练目标的数学理解).

The tutorial writes the probability of a text as a product of next-word probabilities,

    P(文本) = P(w_1) × P(w_2|w_1) × P(w_3|w_1,w_2) × ... × P(w_n|w_1,...,w_{n-1})

and the loss as the negative log of it,

    L = -Σ_{i=1}^{N} log P(w_i | w_1, ..., w_{i-1}; θ)

Both are computed here exactly as written. A [BOS] token stands in front of every sequence,
so P(w_1) = P(w_1 | [BOS]) is a real term of the sum: the model reads [BOS] w_1 ... w_n and
at each position predicts the next word. A training sentence also ends with [EOS], whose
prediction is how the model learns where a sentence stops. The loss is a sum, as written,
unless a mean is asked for.
"""

from __future__ import annotations

from ..layers import IGNORE_INDEX, cross_entropy_backward, cross_entropy_forward
from ..models import check_finite, gpt_backward, gpt_forward
from ..tokenizer import BOS_ID, EOS_ID, PAD_ID, right_pad

NAME = "clm"
TITLE = "next-token prediction"
MODEL, MODEL_TITLE = "gpt", "GPT"
RESERVED = 1  # positions a sequence gives up to special tokens: [BOS] (the targets add [EOS])


def make_batch(sequences, add_eos=True, bos_id=BOS_ID):
    """Token-id sequences -> a right-padded batch for next-token prediction.

    For w_1 .. w_n the model reads ``inputs = [BOS] w_1 ... w_n`` and is asked for
    ``targets = w_1 ... w_n [EOS]``: position t predicts the token after it. Padding gets
    [PAD] in the inputs, IGNORE_INDEX in the targets and 0 in the attention mask.

    sequences: list of B lists of ids -> dict with inputs (B, T), targets (B, T),
    attention_mask (B, T), where T = longest n + 1.
    """
    if len(sequences) == 0:
        raise ValueError("sequences must hold at least one sequence, got an empty batch")
    rows = [[bos_id, *seq, *([EOS_ID] if add_eos else [])] for seq in sequences]
    inputs, attention_mask = right_pad([r[:-1] for r in rows], PAD_ID)  # (B, T)
    targets, _ = right_pad([r[1:] for r in rows], IGNORE_INDEX)  # (B, T)
    return {"inputs": inputs, "targets": targets, "attention_mask": attention_mask}


def log_prob(params, cfg, ids, add_eos=False, bos_id=BOS_ID):
    """``log P(w_1..w_n) = Σ_{t=1}^{n} log P(w_t | w_1, ..., w_{t-1})``  (the chain rule).

    ids: the n token ids of one text (no [BOS]; ``bos_id`` is put before them: [BOS], or
    another model's token in its place). With ``add_eos`` the [EOS] after w_n is one more
    term: the probability that the text ends there.
    Returns (total, per_step): a float and an array of n (or n+1) terms, the per-step
    log P(w_t | w_<t). ``exp(total)`` is the tutorial's P(文本).
    """
    batch = make_batch([list(ids)], add_eos=add_eos, bos_id=bos_id)
    logits, _ = gpt_forward(params, cfg, batch["inputs"], batch["attention_mask"])
    _, ce = cross_entropy_forward(check_finite(logits), batch["targets"])
    per_step = ce["logp_target"][0]  # (n,)
    return float(per_step.sum()), per_step


def loss(params, cfg, batch, reduction="sum"):
    """``L = -Σ_i log P(w_i | w_<i; θ)`` over every real target of the batch.

    Returns (L, n_tokens, cache). ``reduction="mean"`` gives L / n_tokens.
    """
    logits, model_cache = gpt_forward(params, cfg, batch["inputs"], batch["attention_mask"])
    L, ce_cache = cross_entropy_forward(logits, batch["targets"], reduction=reduction)
    return float(L), ce_cache["n"], {"model": model_cache, "ce": ce_cache, "logits": logits}


def backward(cache):
    """dL/dθ for every parameter θ, from loss's cache: a dict with the same keys as params."""
    dlogits = cross_entropy_backward(1.0, cache["ce"])  # dL/dlogits (B, T, V)
    return gpt_backward(dlogits, cache["model"])


def loss_and_grads(params, cfg, batch, reduction="sum"):
    """The loss and dL/dθ for every parameter θ: forward, then backward by hand.

    Returns (L, n_tokens, grads), grads a dict with the same keys as params.
    """
    L, n, cache = loss(params, cfg, batch, reduction)
    return L, n, backward(cache)


def training_batch(examples, indices, rng, tokenizer, train_cfg, n_ctx=None):
    """The training loop's entry: next-token prediction needs no randomness of its own (and
    no n_ctx: the data already fits)."""
    return make_batch(examples)
