"""BERT's masking (tutorial: 2. 掩码语言建模): 15% of the words, then 80% [MASK] / 10% random / 10% kept.

    原句: "今天天气很好"        掩码: "今天[MASK]很好"        预测: "天气"

    mask_tokens       the 15% / 80-10-10 rule, token by token: Hugging Face's Bernoulli rule
                      or Google BERT's fixed count per row
    StaticMasker      one corruption per example, the same in every epoch (BERT)
    DynamicMasker     a new corruption every time an example is seen (RoBERTa)
    corruption_table  one corrupted row as a table to read

Conventions, shared with spanbert.span_mask:

- ids is a (B, T) or (T,) integer array. A position is *eligible* when its token is not
  special and it is not padding (id [PAD], or ``attention_mask == 0`` when a mask is given:
  padding is found by position as well as by id). The special ids are ``special_ids`` when
  given; by default they are every id that is not one of ``ordinary_ids``, so they come from
  the tokenizer whose words ordinary_ids lists, whatever its specials and sentinels are.
- They return ``(inputs, labels, info)``. ``inputs`` is the corrupted copy of ids, ``labels``
  (int64) holds the original token at every selected position and IGNORE_INDEX everywhere else,
  so the loss is the cross-entropy of layers.py over ``labels``. ``info`` says what was decided,
  for a debugger or a table in the walkthrough: ``eligible`` and ``selected`` (bool, shape of
  ids) and ``action`` (int8, shape of ids, one of the ACTION_* codes below).
- Randomness comes only from the ``rng`` argument: the same seed gives the same corruption.

Pure functions: no model, no training settings; their statistics are tested without a network
(tests/test_mlm_corruption.py). Facts about other implementations are cited from
../shared/reference/objectives.md, which quotes google-research/bert, huggingface/transformers
and fairseq (RoBERTa).
"""

from __future__ import annotations

import numpy as np

from ..layers import IGNORE_INDEX
from ..tokenizer import MASK_ID, PAD_ID, pad
from .checks import (as_given, as_rows, check_int, check_probability, check_replacement,
                     check_vocabulary)


# Which ids are special is the tokenizer's to say: its ordinary_ids are the words, every other
# id ([PAD] [UNK] [BOS] [EOS] [CLS] [SEP] [MASK] and however many T5 sentinels it holds;
# Tokenizer.special_ids) is never selected. [UNK] is one of them, as in Hugging Face
# (all_special_ids): asking the model to predict "unknown" teaches it nothing. A fixed list of
# ids would miss the extra sentinels of a tokenizer that has more, and mask them as words.

# What happened at a position: the ``action`` array of ``info``.
ACTION_NONE = 0  # not selected: input unchanged, label IGNORE_INDEX
ACTION_MASK = 1  # selected, the input becomes [MASK]
ACTION_RANDOM = 2  # selected, the input becomes a random ordinary word (it may equal the original)
ACTION_KEEP = 3  # selected, the input is left as it is; the model must still predict it
ACTION_NAMES = ("-", "[MASK]", "random", "kept")  # indexed by the codes above


def eligible_positions(ids, special_ids=None, attention_mask=None, ordinary_ids=None):
    """The positions that may be selected: not a special token and not padding.

    ids (B, T) or (T,) -> bool of the same shape. Special tokens are ``special_ids``, or, when
    that is None, every id that is not one of ``ordinary_ids``. Padding is [PAD] by id, and
    also every position where ``attention_mask == 0`` when a mask is given (padding found by
    position still works when [PAD] shares its id with another token; transformers#23530).
    """
    if special_ids is None:
        if ordinary_ids is None:
            raise ValueError("eligible_positions needs special_ids or ordinary_ids, got neither")
        special = ~np.isin(ids, ordinary_ids)
    else:
        special = np.isin(ids, special_ids)
    eligible = ~special & (ids != PAD_ID)
    if attention_mask is not None:
        eligible &= np.asarray(attention_mask) != 0
    return eligible


def action_80_10_10(u, mask_prob=0.8, random_prob=0.1):
    """What a selected position (mask_tokens) or span (span_mask) becomes, from one uniform draw
    u in [0, 1) (a number or an array; the result has its shape, int8):

        u < mask_prob                                -> ACTION_MASK    [MASK]
        mask_prob <= u < mask_prob + random_prob     -> ACTION_RANDOM  a random ordinary word
        u >= mask_prob + random_prob                 -> ACTION_KEEP    left as it is
    """
    return np.where(u < mask_prob, ACTION_MASK,
                    np.where(u < mask_prob + random_prob, ACTION_RANDOM, ACTION_KEEP)
                    ).astype(np.int8)


def _apply_actions(ids, action, rng, ordinary_ids):
    """ids, action (B, T) -> inputs (B, T): [MASK] or a uniform ordinary word, as action says."""
    inputs = ids.copy()
    inputs[action == ACTION_MASK] = MASK_ID
    is_random = action == ACTION_RANDOM
    inputs[is_random] = rng.choice(ordinary_ids, size=int(is_random.sum()))  # uniform, independent
    return inputs


def fixed_num_to_predict(n, mlm_probability=0.15, max_predictions=None):
    """Google BERT's count of selected positions in a row: ``k = min(P, max(1, round(p·n)))``.

    n is the number of eligible tokens of the row (minillm's choice; see mask_tokens), p the
    mlm_probability and P = max_predictions (no cap when None). k = 0 when n = 0. ``round`` is
    Python's, half to even, as in Google's code under Python 3: n = 30 gives round(4.5) = 4.
    Since round(p·n) <= n, k never exceeds n.
    """
    if n == 0:
        return 0
    k = max(1, round(n * mlm_probability))
    return k if max_predictions is None else min(max_predictions, k)


def mask_tokens(
    ids,
    rng,
    ordinary_ids,
    special_ids=None,
    mlm_probability=0.15,
    mask_prob=0.8,
    random_prob=0.1,
    rule="bernoulli",
    max_predictions=None,
    attention_mask=None,
):
    """BERT's masking: select ~15% of the eligible tokens, then 80% [MASK] / 10% random / 10% kept.

    ids (B, T) or (T,) int, rng np.random.Generator, ordinary_ids (W,) the words a random
    replacement is drawn from, special_ids the ids that are never selected (None: every id not
    in ordinary_ids).
    -> inputs (shape of ids), labels (int64, shape of ids), info (see the module docstring; with
    ``num_to_predict`` (B,) for the fixed rule).

    Which positions are selected (``rule``):
      "bernoulli"  each eligible position independently with probability mlm_probability, so the
                   count per row is Binomial(n, mlm_probability) (Hugging Face
                   DataCollatorForLanguageModeling; transformers#684). max_predictions must be
                   None.
      "fixed"      exactly k = fixed_num_to_predict(n, mlm_probability, max_predictions) eligible
                   positions per row, uniformly without replacement (Google BERT,
                   create_masked_lm_predictions). Google counts n over *all* tokens of the pair,
                   [CLS] and both [SEP] included (no padding exists at that point); minillm counts
                   only the eligible tokens, so that k / n is the selection rate among the tokens
                   that can be selected. Rounding is Python's half to even, like Google's code
                   under Python 3. k = 0 for a row without eligible tokens.

    What a selected position becomes, one uniform draw per position: [MASK] with probability
    mask_prob (0.8), a random ordinary word with probability random_prob (0.1), unchanged
    otherwise (0.1). The label is the original token in all three cases.

    The random word is uniform over ``ordinary_ids``, never a special token or a sentinel, and it
    may equal the original. Google's and Hugging Face's code draw it from the whole vocabulary,
    special tokens included ([PAD], [CLS], [SEP], [MASK], [unused*]; methylbert#28). minillm does
    not: a special token in the middle of a text is an input the model never sees at inference,
    so it is noise that teaches nothing about words. fairseq (RoBERTa) also gives the special
    symbols zero weight in its random draw.
    """
    check_probability("mlm_probability", mlm_probability)
    check_replacement(mask_prob, random_prob)
    if rule not in ("bernoulli", "fixed"):
        raise ValueError(f"rule must be 'bernoulli' or 'fixed', got rule={rule!r}")
    if max_predictions is not None:
        if rule != "fixed":
            raise ValueError(
                "max_predictions applies to rule='fixed' only, got "
                f"max_predictions={max_predictions!r} with rule={rule!r}"
            )
        check_int("max_predictions", max_predictions, 0)
    ordinary_ids, special_ids = check_vocabulary(ordinary_ids, special_ids)
    ids, attention_mask, one_row = as_rows(ids, attention_mask)
    B, T = ids.shape

    eligible = eligible_positions(ids, special_ids, attention_mask, ordinary_ids)  # (B, T)
    info = {"eligible": eligible}
    if rule == "bernoulli":
        selected = eligible & (rng.random((B, T)) < mlm_probability)  # (B, T)
    else:
        n = eligible.sum(axis=1)  # (B,) eligible tokens per row
        num_to_predict = np.array(
            [fixed_num_to_predict(int(n_b), mlm_probability, max_predictions) for n_b in n],
            dtype=np.int64,
        )  # (B,)
        selected = np.zeros((B, T), dtype=bool)
        for b in range(B):
            if num_to_predict[b] > 0:
                candidates = np.flatnonzero(eligible[b])
                chosen = rng.choice(candidates, size=num_to_predict[b], replace=False)
                selected[b, chosen] = True
        info["num_to_predict"] = num_to_predict

    u = rng.random((B, T))  # one draw per position, used where selected
    action = np.where(selected, action_80_10_10(u, mask_prob, random_prob), ACTION_NONE)  # (B, T)
    inputs = _apply_actions(ids, action, rng, ordinary_ids)  # (B, T)
    labels = np.where(selected, ids, IGNORE_INDEX).astype(np.int64)  # (B, T)
    info.update(selected=selected, action=action)
    return as_given(info, inputs, labels, one_row)


# ---- static and dynamic masking


def _example_rng(*keys):
    """A generator determined by a tuple of non-negative integers, e.g. (seed, epoch, index)."""
    return np.random.default_rng(np.random.SeedSequence([int(k) for k in keys]))


class _Masker:
    """What StaticMasker and DynamicMasker share: the corruption and its settings.

    corrupt is ``mask_tokens`` (default) or ``span_mask``; options are passed to it, e.g.
    ``rule="fixed"`` or ``mask_ratio=0.15``.
    """

    def __init__(self, seed, ordinary_ids, special_ids=None, corrupt=mask_tokens, **options):
        check_int("seed", seed, 0)
        self.seed = seed
        self.ordinary_ids, self.special_ids = check_vocabulary(ordinary_ids, special_ids)
        self.corrupt = corrupt
        self.options = options

    def _corrupt(self, ids, rng):
        return self.corrupt(ids, rng, self.ordinary_ids, self.special_ids, **self.options)


class StaticMasker(_Masker):
    """BERT's static masking: an example is corrupted once and looks the same in every epoch.

    ``masker(index, ids, epoch) -> (inputs, labels, info)``. Google BERT writes ``dupe_factor``
    differently corrupted copies of its data to disk before training (default 10) and trains on
    them, so an example only ever appears with one of dupe_factor fixed masks. Here copy c of
    example ``index`` is drawn with a generator seeded by (seed, index, c), and epoch e reads
    copy ``e % dupe_factor`` (dupe_factor = 1: one mask for all epochs). Recomputing a copy from
    its seed gives the same arrays as storing it. ``index`` must name the example: the same index
    with other ids is corrupted with the same draws.
    """

    def __init__(
        self, seed, ordinary_ids, special_ids=None, dupe_factor=1, corrupt=mask_tokens,
        **options,
    ):
        super().__init__(seed, ordinary_ids, special_ids, corrupt, **options)
        check_int("dupe_factor", dupe_factor, 1)
        self.dupe_factor = dupe_factor

    def __call__(self, index, ids, epoch=0):
        check_int("index", index, 0)
        check_int("epoch", epoch, 0)
        copy = epoch % self.dupe_factor
        return self._corrupt(ids, _example_rng(self.seed, index, copy))


class DynamicMasker(_Masker):
    """RoBERTa's dynamic masking: a new corruption every time an example is seen.

    ``masker(index, ids, epoch) -> (inputs, labels, info)``, drawn with a generator seeded by
    (seed, epoch, index), as fairseq's MaskTokensDataset seeds by hash((seed, epoch, index)):
    reproducible, but different in every epoch.
    """

    def __call__(self, index, ids, epoch=0):
        check_int("index", index, 0)
        check_int("epoch", epoch, 0)
        return self._corrupt(ids, _example_rng(self.seed, epoch, index))


def corruption_table(tokenizer, ids, inputs, labels, action):
    """One corrupted row as a table a reader can check by eye: position, original word,
    selected?, action, the input the model sees, and the label it must predict."""
    lines = [f"{'pos':>3}  {'original':<9}{'selected':<10}{'action':<8}{'input':<9}label"]
    for t, (i, x, y, a) in enumerate(zip(ids, inputs, labels, action)):
        def cell(token_id, width):
            return pad(tokenizer.vocab[token_id], width)

        label = "-" if y == IGNORE_INDEX else tokenizer.vocab[y]
        lines.append(f"{t:>3}  {cell(i, 9)}{'yes' if a else 'no':<10}{ACTION_NAMES[a]:<8}"
                     f"{cell(x, 9)}{label}")
    return "\n".join(lines)
