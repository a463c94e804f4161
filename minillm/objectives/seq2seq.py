"""Sequence to sequence, the T5 and BART objective (tutorial: 3. 序列到序列).

The tutorial's picture: an encoder reads one text, a decoder writes another.

    输入: "总结：今天天气很好，我们去公园玩。"        输出: "今天我们去公园玩了。"

Pre-training has no such pairs, so it makes them: the input is a corrupted copy of a text and
the output is what undoes the corruption (corruption/t5.py's span corruption, corruption/bart.py's
text infilling). The loss is the decoder's next-token cross-entropy over the output y given the
input x:

    L = -Σ_t log P(y_t | y_<t, x; θ)

The four objectives of ``--objective``:

    t5      span corruption of grammar sentences packed into long sequences (pre-training, T5)
    bart    text infilling of grammar sentences (pre-training, BART)
    tasks   the text-to-text tasks of the grammar: 总结 / 翻译 / 问 (T5's framing by prefix)
    mix     tasks and span corruption in one stream, half and half: T5's unified framework
"""

from __future__ import annotations

from ..corruption.bart import text_infilling
from ..corruption.t5 import span_corruption
from ..layers import IGNORE_INDEX, cross_entropy_backward, cross_entropy_forward
from ..models import check_finite, seq2seq_backward, seq2seq_forward
from ..tokenizer import BOS_ID, EOS_ID, PAD_ID, right_pad

NAME = "seq2seq"
TITLE = "sequence to sequence"
MODEL, MODEL_TITLE = "seq2seq", "encoder-decoder"
RESERVED = 1  # a source gives up one position to [EOS]


def make_batch(pairs, start_id=BOS_ID):
    """(source ids, target ids) pairs -> a right-padded batch for teacher forcing.

    The decoder reads the target shifted right behind a start token and predicts it:

        decoder_inputs = [start] y_1 ... y_{m-1}        targets = y_1 ... y_m

    so position t predicts y_{t+1} from y_≤t and the whole source. Padding is [PAD] in every
    input and IGNORE_INDEX in the targets. The targets are built from the token ids, never from
    a label array that holds IGNORE_INDEX, so the ignore index cannot reach a decoder input
    (Hugging Face users hit that: transformers#15867).

    Returns src (B, S), src_mask (B, S), dec_in (B, T), dec_mask (B, T), targets (B, T).
    """
    if len(pairs) == 0:
        raise ValueError("pairs must hold at least one (source, target) pair, got an empty batch")
    if any(len(src) == 0 or len(tgt) == 0 for src, tgt in pairs):
        raise ValueError("every source and every target must hold at least one token")
    batch = {}
    batch["src"], batch["src_mask"] = right_pad([src for src, _ in pairs], PAD_ID)  # (B, S)
    batch["dec_in"], batch["dec_mask"] = right_pad([[start_id, *tgt[:-1]] for _, tgt in pairs],
                                                   PAD_ID)  # (B, T)
    batch["targets"], _ = right_pad([tgt for _, tgt in pairs], IGNORE_INDEX)  # (B, T)
    batch["attention_mask"] = batch["src_mask"]  # what the training loop counts as tokens read
    return batch


def corrupt(ids, rng, tokenizer, objective, n_ctx=None):
    """One text -> (source, target) for the pre-training objectives: for t5 a packed sequence
    (data.packed_length makes its source fit n_ctx), for bart a sentence or a piece of at
    most n_ctx − 1 tokens, whose infilled source is kept within n_ctx (text_infilling's
    max_length redraws the rare span lengths that would lengthen it past n_ctx)."""
    if objective == "t5":
        sentinels = [tokenizer.sentinel_id(k) for k in range(tokenizer.n_sentinels)]
        src, tgt = span_corruption(ids, rng, sentinels)
        return list(src), list(tgt)
    if objective == "bart":
        src, tgt, _ = text_infilling(ids, rng, max_length=None if n_ctx is None else n_ctx - 1)
        return [*src, EOS_ID], [*tgt, EOS_ID]
    raise ValueError(f"objective must be 't5' or 'bart' here, got {objective!r}")


def training_batch(examples, indices, rng, tokenizer, train_cfg, n_ctx=None):
    """One batch for train_cfg.objective: t5 and bart corrupt text of the grammar or a --data
    file (for t5 packed: see corrupt); tasks takes (source, target) pairs from TaskData; mix
    takes (source, target, text) triples and uses the task pair or, half of the time, the span
    corruption of the text. [EOS] ends every source and every target."""
    objective = train_cfg.objective
    if objective in ("t5", "bart"):
        pairs = [corrupt(ids, rng, tokenizer, objective, n_ctx) for ids in examples]
    elif objective == "tasks":
        pairs = [([*src, EOS_ID], [*tgt, EOS_ID]) for src, tgt in examples]
    elif objective == "mix":
        pairs = []
        for src, tgt, text in examples:
            if rng.random() < 0.5:
                pairs.append(([*src, EOS_ID], [*tgt, EOS_ID]))
            else:
                pairs.append(corrupt(text, rng, tokenizer, "t5"))
    else:
        raise ValueError(f"objective must be t5, bart, tasks or mix, got {objective!r}")
    return make_batch(pairs)


def log_prob(params, cfg, src, tgt):
    """``log P(y | x) = Σ_t log P(y_t | y_<t, x; θ)`` for one pair: the seq2seq loss of one
    example is L = -log P(y | x) = -Σ_t log P(y_t | y_<t, x; θ) (teacher forcing, make_batch).

    src: the source ids x (with its [EOS]); tgt: the target ids y_1 .. y_m (with its [EOS]).
    Returns (total, per_step): a float and the m terms log P(y_t | y_<t, x).
    """
    batch = make_batch([(list(src), list(tgt))])
    logits, _ = seq2seq_forward(params, cfg, batch["src"], batch["dec_in"])
    _, ce = cross_entropy_forward(check_finite(logits), batch["targets"])
    per_step = ce["logp_target"][0]  # (m,)
    return float(per_step.sum()), per_step


def loss(params, cfg, batch, reduction="sum"):
    """``L = -Σ_t log P(y_t | y_<t, x; θ)`` over every real target token of every pair: the sum
    of -log_prob over the batch (``reduction="mean"`` divides by the number of tokens).
    Returns (L, n_predicted, cache)."""
    logits, model_cache = seq2seq_forward(params, cfg, batch["src"], batch["dec_in"],
                                          batch["src_mask"], batch["dec_mask"])
    L, ce = cross_entropy_forward(logits, batch["targets"], reduction=reduction)
    return float(L), ce["n"], {"model": model_cache, "ce": ce, "logits": logits}


def backward(cache):
    """dL/dθ for every encoder-decoder parameter, from loss's cache."""
    return seq2seq_backward(cross_entropy_backward(1.0, cache["ce"]), cache["model"])


def loss_and_grads(params, cfg, batch, reduction="sum"):
    """The loss and dL/dθ for every encoder-decoder parameter."""
    L, n, cache = loss(params, cfg, batch, reduction)
    return L, n, backward(cache)
