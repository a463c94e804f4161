"""Next-token prediction after a picture (tutorial: 训练目标的演进, 第四代: "GPT-4：多模态融合").

The same objective as clm.py, with the picture read first. For a picture X_v and a text
w_1 .. w_n (its caption, or a question and its answer: pictures.py), the model reads the image
tokens and [BOS] w_1 ... w_n and predicts w_1 ... w_n [EOS] (LLaVA, Liu et al. 2023, eq. 3):

    L = -Σ_i log P(w_i | X_v, w_1, ..., w_{i-1}; θ)

over the text positions only. With prefix fusion the sequence holds N image positions before
the text: they carry IGNORE_INDEX, so they add no term to L (a picture is given, not predicted).
The model is multimodal.py's fused GPT.
"""

from __future__ import annotations

import numpy as np

from ..layers import IGNORE_INDEX, cross_entropy_backward, cross_entropy_forward
from ..multimodal import fused_backward, fused_forward
from .clm import make_batch as make_text_batch

NAME = "caption"
TITLE = "next-token prediction of pictures' captions and answers"
MODEL, MODEL_TITLE = "caption", "fused image–text GPT"
RESERVED = 1  # positions a text gives up to special tokens: [BOS] (the targets add [EOS])


def make_batch(images, sequences):
    """Pictures and their texts -> a batch: ``images`` (B, side, side, 3) and clm's text batch,
    inputs = [BOS] w_1 ... w_n, targets = w_1 ... w_n [EOS], attention_mask, each (B, T)."""
    if len(images) != len(sequences):
        raise ValueError(f"images and sequences must pair up, got {len(images)} images and "
                         f"{len(sequences)} texts")
    batch = make_text_batch(sequences)
    batch["images"] = np.stack([np.asarray(image) for image in images])  # (B, side, side, 3)
    return batch


def sequence_targets(targets, cfg):
    """The targets of the model's whole sequence: with prefix fusion, IGNORE_INDEX at the N image
    positions, then the text's. targets (B, T) -> (B, N + T); unchanged with cross fusion, whose
    sequence is the text alone."""
    if cfg.fusion != "prefix":
        return targets
    image_positions = np.full((targets.shape[0], cfg.n_image_tokens), IGNORE_INDEX)  # (B, N)
    return np.concatenate([image_positions, targets], axis=1)  # (B, N + T)


def loss(params, cfg, batch, reduction="sum"):
    """``L = -Σ_i log P(w_i | X_v, w_<i; θ)`` over every real text target of the batch.
    Returns (L, n_tokens, cache); ``reduction="mean"`` gives L / n_tokens."""
    logits, model_cache = fused_forward(params, cfg, batch["images"], batch["inputs"],
                                        batch["attention_mask"])  # (B, N + T, V) or (B, T, V)
    targets = sequence_targets(batch["targets"], cfg)
    L, ce_cache = cross_entropy_forward(logits, targets, reduction=reduction)
    return float(L), ce_cache["n"], {"model": model_cache, "ce": ce_cache, "logits": logits}


def backward(cache):
    """dL/dθ for every parameter θ, from loss's cache: a dict with the same keys as params."""
    dlogits = cross_entropy_backward(1.0, cache["ce"])  # (B, N + T, V): 0 at the image rows
    return fused_backward(dlogits, cache["model"])


def loss_and_grads(params, cfg, batch, reduction="sum"):
    """The loss and dL/dθ for every parameter θ. Returns (L, n_tokens, grads)."""
    L, n, cache = loss(params, cfg, batch, reduction)
    return L, n, backward(cache)


def training_batch(examples, indices, rng, tokenizer, train_cfg, n_ctx=None):
    """The training loop's entry: (picture, text ids) pairs from pictures.PictureData; no
    randomness of its own."""
    return make_batch([image for image, _ in examples], [ids for _, ids in examples])
