"""Masked language modeling, the BERT objective (tutorial: 2. 掩码语言建模).

    原句: "今天天气很好"        掩码: "今天[MASK]很好"        预测: "天气"

The corruption is corruption/bert.py's ``mask_tokens`` (15% of the words; 80% [MASK], 10% a
random word, 10% kept) or, for ``--objective span``, corruption/spanbert.py's ``span_mask``; with
``--nsp`` the rows are corruption/nsp.py's sentence pairs. The model reads the corrupted text
and is asked for the original word at the selected positions only:

    L = -Σ_{i ∈ selected} log P(w_i | corrupted text; θ)

This module makes BERT's batches and computes that loss (and, with NSP, -log P(label | [CLS])).
"""

from __future__ import annotations

import numpy as np

from ..corruption.bert import StaticMasker, mask_tokens
from ..corruption.nsp import make_nsp_pairs
from ..corruption.spanbert import span_mask
from ..layers import IGNORE_INDEX, cross_entropy_backward, cross_entropy_forward
from ..models import bert_backward, bert_forward
from ..tokenizer import CLS_ID, PAD_ID, SEP_ID, right_pad

NAME = "mlm"
TITLE = "masked language modeling"
MODEL, MODEL_TITLE = "bert", "BERT"
RESERVED = 2  # positions a sequence gives up to special tokens: [CLS] and [SEP]


def encoder_rows(sequences):
    """Token-id sequences -> ``[CLS] w_1 ... w_n [SEP]`` rows, right-padded with [PAD].

    Returns ids (B, T) and attention_mask (B, T) (1 for tokens, 0 for padding).
    """
    if len(sequences) == 0:
        raise ValueError("sequences must hold at least one sequence, got an empty batch")
    return right_pad([[CLS_ID, *seq, SEP_ID] for seq in sequences], PAD_ID)


def training_batch(examples, indices, rng, tokenizer, train_cfg, n_ctx=None):
    """One BERT batch: ``[CLS] sentence [SEP]`` rows, corrupted by the objective's masking
    (with train_cfg.nsp: ``[CLS] A [SEP] B [SEP]`` pairs from two-sentence documents).

    train_cfg.objective "mlm" uses mask_tokens (15%, 80/10/10), "span" uses span_mask.
    train_cfg.masking "dynamic" draws a new mask from the training rng every time a sentence
    is seen (RoBERTa); "static" gives each example of the pool one mask for the whole run,
    drawn from a generator seeded by (seed, index) (BERT's precomputed copies). Masking keeps
    the length, so n_ctx is not needed.
    """
    special = tokenizer.special_ids
    if train_cfg.nsp:
        # examples are documents: [CLS] A [SEP] B [SEP] pairs, half with a random B, then the
        # usual masking over the words of both sentences (BERT: MLM + NSP).
        pairs = make_nsp_pairs(examples, rng)
        ids, mask = pairs["input_ids"], pairs["attention_mask"]
        inputs, labels, _ = mask_tokens(ids, rng, tokenizer.ordinary_ids, special_ids=special,
                                        attention_mask=mask)
        return {"inputs": inputs, "labels": labels, "attention_mask": mask,
                "token_type_ids": pairs["token_type_ids"],
                "next_sentence_label": pairs["next_sentence_label"]}
    ids, mask = encoder_rows(examples)
    corrupt = span_mask if train_cfg.objective == "span" else mask_tokens
    if train_cfg.masking == "static":
        masker = StaticMasker(train_cfg.seed, tokenizer.ordinary_ids, special, corrupt=corrupt)
        inputs, labels = ids.copy(), np.full_like(ids, IGNORE_INDEX)
        for b, index in enumerate(indices):
            n = int(mask[b].sum())
            inputs[b, :n], labels[b, :n], _ = masker(int(index), ids[b, :n])
    else:
        inputs, labels, _ = corrupt(ids, rng, tokenizer.ordinary_ids, special_ids=special,
                                    attention_mask=mask)
    return {"inputs": inputs, "labels": labels, "attention_mask": mask,
            "token_type_ids": np.zeros_like(ids)}


def loss(params, cfg, batch, reduction="sum"):
    """``L = -Σ_{i ∈ selected} log P(w_i | corrupted text; θ)``, plus the next-sentence loss
    ``-log P(label | [CLS])`` per pair when the batch has ``next_sentence_label``.

    Only selected positions are terms: every other label is IGNORE_INDEX. Returns
    (L, n_predicted, cache).
    """
    mlm_logits, nsp_logits, model_cache = bert_forward(
        params, cfg, batch["inputs"], batch.get("token_type_ids"), batch.get("attention_mask"))
    L, ce = cross_entropy_forward(mlm_logits, batch["labels"], reduction=reduction)
    cache = {"model": model_cache, "ce": ce, "nsp": None, "logits": mlm_logits,
             "nsp_logits": nsp_logits, "mlm_loss": float(L), "nsp_loss": 0.0}
    if "next_sentence_label" in batch:
        L_nsp, cache["nsp"] = cross_entropy_forward(nsp_logits, batch["next_sentence_label"],
                                                    reduction=reduction)
        cache["nsp_loss"] = float(L_nsp)
    return cache["mlm_loss"] + cache["nsp_loss"], ce["n"], cache


def backward(cache):
    """dL/dθ for every BERT parameter, from loss's cache."""
    dmlm = cross_entropy_backward(1.0, cache["ce"])  # (B, T, V)
    dnsp = None if cache["nsp"] is None else cross_entropy_backward(1.0, cache["nsp"])  # (B, 2)
    return bert_backward(dmlm, dnsp, cache["model"])


def loss_and_grads(params, cfg, batch, reduction="sum"):
    """The loss and dL/dθ for every BERT parameter. Returns (L, n_predicted, grads)."""
    L, n, cache = loss(params, cfg, batch, reduction)
    return L, n, backward(cache)


def nsp_correct(params, cfg, data, tokenizer, train_cfg, rng, n=400):
    """For each of ``n`` fresh ``[CLS] A [SEP] B [SEP]`` pairs of ``data`` (B the true next
    sentence half of the time, masked as in training): 1.0 where the NSP head's argmax is the
    pair's next-sentence label, else 0.0. -> (n,)."""
    _, documents = data.sample(rng, n)
    batch = training_batch(documents, None, rng, tokenizer, train_cfg)
    _, nsp_logits, _ = bert_forward(params, cfg, batch["inputs"], batch["token_type_ids"],
                                    batch["attention_mask"])  # (n, 2)
    return (nsp_logits.argmax(axis=-1) == batch["next_sentence_label"]).astype(np.float64)


def nsp_accuracy(params, cfg, data, tokenizer, train_cfg, rng, n=400):
    """The share of ``n`` fresh pairs whose next-sentence label the NSP head gets right
    (nsp_correct's mean). Chance is 1/2."""
    return float(np.mean(nsp_correct(params, cfg, data, tokenizer, train_cfg, rng, n)))
