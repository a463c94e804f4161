"""Masked language modelling, the BERT objective (tutorial: 2. 掩码语言建模).

The tutorial's example and rule:

    原句: "今天天气很好"        掩码: "今天[MASK]很好"        预测: "天气"

    随机掩码 15% 的词; of those, 80% 替换为 [MASK], 10% 随机词, 10% 保持原词.

The model reads the corrupted text and is asked for the original word at the selected
positions only:

    L = -Σ_{i ∈ selected} log P(w_i | corrupted text; θ)

The section "Corruption" holds pure functions of (token ids, rng, settings). No model is
involved, so their statistics are tested without a network (tests/test_mlm_corruption.py):

    mask_tokens       the 15% / 80-10-10 rule, token by token: Hugging Face's Bernoulli rule
                      or Google BERT's fixed count per row
    StaticMasker      one corruption per example, the same in every epoch (BERT)
    DynamicMasker     a new corruption every time an example is seen (RoBERTa)
    span_mask         SpanBERT: whole spans, lengths from a clipped geometric law
    make_nsp_pairs    [CLS] A [SEP] B [SEP] pairs for next sentence prediction

Conventions of the masking functions (mask_tokens, span_mask and the two maskers):

- ids is a (B, T) or (T,) integer array. A position is *eligible* when its token is not in
  ``special_ids`` and it is not padding (id [PAD], or ``attention_mask == 0`` when a mask is
  given: padding is found by position as well as by id).
- They return ``(inputs, labels, info)``. ``inputs`` is the corrupted copy of ids, ``labels``
  (int64) holds the original token at every selected position and IGNORE_INDEX everywhere else,
  so the loss is the cross-entropy of layers.py over ``labels``. ``info`` says what was decided,
  for a debugger or a table in the walkthrough: ``eligible`` and ``selected`` (bool, shape of
  ids) and ``action`` (int8, shape of ids, one of the ACTION_* codes below).
- Randomness comes only from the ``rng`` argument: the same seed gives the same corruption.

Facts about other implementations are cited from ../shared/reference/objectives.md, which
quotes google-research/bert, huggingface/transformers, fairseq (RoBERTa) and SpanBERT.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from ..layers import IGNORE_INDEX
from ..tokenizer import CLS_ID, MASK_ID, N_SENTINELS, PAD_ID, SEP_ID, SPECIAL_TOKENS, pad


def _read_only(a):
    a.setflags(write=False)  # a module-level default must not be changed by a caller
    return a


# The ids that are never selected: the reserved ids of minillm's default vocabulary, i.e. the
# special tokens [PAD] [UNK] [BOS] [EOS] [CLS] [SEP] [MASK] (0..6) and the N_SENTINELS T5
# sentinels after them (Tokenizer.is_special). [UNK] is one of them, as in Hugging Face
# (all_special_ids): asking the model to predict "unknown" teaches it nothing. A tokenizer built
# with another number of sentinels passes ``special_ids=np.arange(tok.first_ordinary_id)``
# (with fewer sentinels, its ordinary ids would overlap these, which every function rejects).
SPECIAL_IDS = _read_only(np.arange(len(SPECIAL_TOKENS) + N_SENTINELS))

# What happened at a position: the ``action`` array of ``info``.
ACTION_NONE = 0  # not selected: input unchanged, label IGNORE_INDEX
ACTION_MASK = 1  # selected, the input becomes [MASK]
ACTION_RANDOM = 2  # selected, the input becomes a random ordinary word (it may equal the original)
ACTION_KEEP = 3  # selected, the input is left as it is; the model must still predict it
ACTION_NAMES = ("-", "[MASK]", "random", "kept")  # indexed by the codes above

# next_sentence_label values. Google BERT's convention: 1 means B is random (bert#125).
IS_NEXT = 0
IS_RANDOM = 1


# ----------------------------------------------------------------------------------------------
# Corruption


# ---- argument checks, shared by the functions below


def _check_probability(name, value):
    if not 0.0 <= value <= 1.0:  # also rejects NaN
        raise ValueError(f"{name} must be a probability in [0, 1], got {name}={value!r}")


def _check_replacement(mask_prob, random_prob):
    _check_probability("mask_prob", mask_prob)
    _check_probability("random_prob", random_prob)
    if mask_prob + random_prob > 1.0 + 1e-12:  # the rest, 1 - mask_prob - random_prob, is "kept"
        raise ValueError(
            "mask_prob + random_prob must be at most 1 (the rest is the kept share), got "
            f"mask_prob={mask_prob!r} + random_prob={random_prob!r} = {mask_prob + random_prob!r}"
        )


def _check_int(name, value, low):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {name}={value!r}")


def _as_int_array(name, a, ndims):
    a = np.asarray(a)
    if a.size == 0:
        a = a.astype(np.int64)  # np.asarray([]) is float64
    if a.ndim not in ndims:
        dims = " or ".join(map(str, ndims))
        raise ValueError(f"{name} must have {dims} dimension(s), got shape {a.shape}")
    if not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"{name} must hold integer token ids, got dtype {a.dtype}")
    return a


def _check_vocabulary(ordinary_ids, special_ids):
    """-> (ordinary_ids, special_ids) as 1-D int arrays; ordinary_ids non-empty and not special."""
    ordinary_ids = _as_int_array("ordinary_ids", ordinary_ids, (1,))
    special_ids = _as_int_array("special_ids", special_ids, (1,))
    if ordinary_ids.size == 0:
        raise ValueError(
            "ordinary_ids must hold at least one word id (random replacements are drawn from it), "
            "got ordinary_ids=[]"
        )
    both = np.intersect1d(ordinary_ids, special_ids)
    if both.size:
        raise ValueError(
            f"ordinary_ids must not contain special ids, got {both.tolist()} in both "
            "ordinary_ids and special_ids"
        )
    return ordinary_ids, special_ids


def _as_rows(ids, attention_mask):
    """(T,) or (B, T) -> (B, T) arrays and whether to return (T,) again."""
    ids = _as_int_array("ids", ids, (1, 2))
    one_row = ids.ndim == 1
    if one_row:
        ids = ids[None, :]  # (1, T)
    if attention_mask is not None:
        attention_mask = np.asarray(attention_mask)
        if one_row:
            attention_mask = attention_mask[None, :]
        if attention_mask.shape != ids.shape:
            raise ValueError(
                f"attention_mask must have the shape of ids {ids.shape}, got {attention_mask.shape}"
            )
    return ids, attention_mask, one_row


def _as_given(info, inputs, labels, one_row):
    """Undo _as_rows: a (T,) input gets (T,) outputs, and per-row info becomes one value."""
    if not one_row:
        return inputs, labels, info
    info = {k: (v[0] if isinstance(v, np.ndarray) else v) for k, v in info.items()}
    return inputs[0], labels[0], info


def eligible_positions(ids, special_ids=SPECIAL_IDS, attention_mask=None):
    """The positions that may be selected: not a special token and not padding.

    ids (B, T) or (T,) -> bool of the same shape. Padding is [PAD] by id, and also every
    position where ``attention_mask == 0`` when a mask is given (padding found by position
    still works when [PAD] shares its id with another token; transformers#23530).
    """
    eligible = ~np.isin(ids, special_ids) & (ids != PAD_ID)
    if attention_mask is not None:
        eligible &= np.asarray(attention_mask) != 0
    return eligible


def _decide_80_10_10(selected, u, mask_prob, random_prob):
    """The action of each position from one uniform draw u in [0, 1) per position.

    u < mask_prob                                  -> [MASK]
    mask_prob <= u < mask_prob + random_prob       -> random ordinary word
    u >= mask_prob + random_prob                   -> kept
    """
    action = np.full(selected.shape, ACTION_NONE, dtype=np.int8)
    action[selected & (u < mask_prob)] = ACTION_MASK
    action[selected & (u >= mask_prob) & (u < mask_prob + random_prob)] = ACTION_RANDOM
    action[selected & (u >= mask_prob + random_prob)] = ACTION_KEEP
    return action


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
    special_ids=SPECIAL_IDS,
    mlm_probability=0.15,
    mask_prob=0.8,
    random_prob=0.1,
    rule="bernoulli",
    max_predictions=None,
    attention_mask=None,
):
    """BERT's masking: select ~15% of the eligible tokens, then 80% [MASK] / 10% random / 10% kept.

    ids (B, T) or (T,) int, rng np.random.Generator, ordinary_ids (W,) the words a random
    replacement is drawn from, special_ids the ids that are never selected.
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
    _check_probability("mlm_probability", mlm_probability)
    _check_replacement(mask_prob, random_prob)
    if rule not in ("bernoulli", "fixed"):
        raise ValueError(f"rule must be 'bernoulli' or 'fixed', got rule={rule!r}")
    if max_predictions is not None:
        if rule != "fixed":
            raise ValueError(
                "max_predictions applies to rule='fixed' only, got "
                f"max_predictions={max_predictions!r} with rule={rule!r}"
            )
        _check_int("max_predictions", max_predictions, 0)
    ordinary_ids, special_ids = _check_vocabulary(ordinary_ids, special_ids)
    ids, attention_mask, one_row = _as_rows(ids, attention_mask)
    B, T = ids.shape

    eligible = eligible_positions(ids, special_ids, attention_mask)  # (B, T)
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

    action = _decide_80_10_10(selected, rng.random((B, T)), mask_prob, random_prob)  # (B, T)
    inputs = _apply_actions(ids, action, rng, ordinary_ids)  # (B, T)
    labels = np.where(selected, ids, IGNORE_INDEX).astype(np.int64)  # (B, T)
    info.update(selected=selected, action=action)
    return _as_given(info, inputs, labels, one_row)


# ---- static and dynamic masking


def _example_rng(*keys):
    """A generator determined by a tuple of non-negative integers, e.g. (seed, epoch, index)."""
    return np.random.default_rng(np.random.SeedSequence([int(k) for k in keys]))


class _Masker:
    """What StaticMasker and DynamicMasker share: the corruption and its settings.

    corrupt is ``mask_tokens`` (default) or ``span_mask``; options are passed to it, e.g.
    ``rule="fixed"`` or ``mask_ratio=0.15``.
    """

    def __init__(self, seed, ordinary_ids, special_ids=SPECIAL_IDS, corrupt=mask_tokens, **options):
        _check_int("seed", seed, 0)
        self.seed = seed
        self.ordinary_ids, self.special_ids = _check_vocabulary(ordinary_ids, special_ids)
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
        self, seed, ordinary_ids, special_ids=SPECIAL_IDS, dupe_factor=1, corrupt=mask_tokens,
        **options,
    ):
        super().__init__(seed, ordinary_ids, special_ids, corrupt, **options)
        _check_int("dupe_factor", dupe_factor, 1)
        self.dupe_factor = dupe_factor

    def __call__(self, index, ids, epoch=0):
        _check_int("index", index, 0)
        _check_int("epoch", epoch, 0)
        copy = epoch % self.dupe_factor
        return self._corrupt(ids, _example_rng(self.seed, index, copy))


class DynamicMasker(_Masker):
    """RoBERTa's dynamic masking: a new corruption every time an example is seen.

    ``masker(index, ids, epoch) -> (inputs, labels, info)``, drawn with a generator seeded by
    (seed, epoch, index), as fairseq's MaskTokensDataset seeds by hash((seed, epoch, index)):
    reproducible, but different in every epoch.
    """

    def __call__(self, index, ids, epoch=0):
        _check_int("index", index, 0)
        _check_int("epoch", epoch, 0)
        return self._corrupt(ids, _example_rng(self.seed, epoch, index))


# ---- SpanBERT span masking


def span_length_distribution(p=0.2, max_span=10):
    """The clipped geometric law of span lengths: ``P(l) = p (1-p)^(l-1) / Z`` for l = 1..max_span.

    Z = Σ_{l=1}^{max_span} p (1-p)^(l-1) renormalises the law after clipping (SpanBERT, Joshi et
    al. 2020). Returns (max_span,) float64 with P(l) at index l - 1. For p = 0.2, max_span = 10:
    P(1) = 0.224, P(10) = 0.030, mean 3.797 words (objectives.md section 4).
    """
    if not 0.0 < p <= 1.0:
        raise ValueError(f"p must be in (0, 1], got p={p!r}")
    _check_int("max_span", max_span, 1)
    lengths = np.arange(1, max_span + 1)  # (max_span,)
    weights = p * (1.0 - p) ** (lengths - 1)  # (max_span,)
    return weights / weights.sum()


def span_budget(n, mask_ratio=0.15):
    """The number of tokens span_mask masks in a row of n eligible tokens: ``ceil(mask_ratio·n)``.

    SpanBERT's mask_num. For n = 510 it is 77 (objectives.md section 4).
    """
    return math.ceil(mask_ratio * n)


class Span(NamedTuple):
    """One span of span_mask: ``ids[row, start:end]`` was selected; drawn_length >= end - start."""

    row: int
    start: int
    end: int
    drawn_length: int  # the length drawn from the clipped geometric law, before any cut
    action: int  # ACTION_MASK, ACTION_RANDOM or ACTION_KEEP, the same for every token of the span


def span_mask(
    ids,
    rng,
    ordinary_ids,
    special_ids=SPECIAL_IDS,
    mask_ratio=0.15,
    geometric_p=0.2,
    max_span=10,
    mask_prob=0.8,
    random_prob=0.1,
    attention_mask=None,
):
    """SpanBERT's masking (Joshi et al. 2020): contiguous spans instead of single tokens.

    ids (B, T) or (T,) -> inputs, labels, info as in mask_tokens, plus ``info["spans"]``, a list
    of Span(row, start, end, drawn_length, action) in the order they were drawn.

    One token is one word here: minillm's tokenizer is word-level, so SpanBERT's span lengths
    "in words" are lengths in tokens, and there is no word-piece to round to.

    In each row with n eligible tokens, spans are added until exactly ``span_budget(n) =
    ceil(mask_ratio·n)`` tokens are selected:
      1. draw a length l from span_length_distribution(geometric_p, max_span);
      2. draw a start uniformly among the eligible positions not yet selected;
      3. select start, start+1, ... and stop after l tokens, or before a position that is not
         eligible (a special token, padding, the end of the row), or before a position that is
         already selected, or when the budget is reached. So the last span is cut to the budget,
         and spans never overlap. Each step selects at least the start, so the loop ends.
      4. decide once for the whole span: all [MASK] (mask_prob), all random ordinary words, each
         drawn uniformly (random_prob), or all unchanged (the rest).

    Differences from SpanBERT, chosen so that the selected count is exactly the budget and each
    token has one owner: SpanBERT lets spans overlap and then merges overlapping *and adjacent*
    spans, deciding 80/10/10 once per merged span; here a span stops at an already selected
    token and adjacent spans keep their own decisions. SpanBERT's random words are drawn from
    the corpus unigram distribution; here they are uniform over ordinary_ids (see mask_tokens).
    Because of the cuts, realised spans are on average a little shorter than the 3.797 words of
    the drawn lengths; ``drawn_length`` keeps the uncut draw.
    """
    _check_probability("mask_ratio", mask_ratio)
    if not 0.0 < geometric_p <= 1.0:
        raise ValueError(f"geometric_p must be in (0, 1], got geometric_p={geometric_p!r}")
    _check_int("max_span", max_span, 1)
    _check_replacement(mask_prob, random_prob)
    ordinary_ids, special_ids = _check_vocabulary(ordinary_ids, special_ids)
    ids, attention_mask, one_row = _as_rows(ids, attention_mask)
    B, T = ids.shape

    cdf = np.cumsum(span_length_distribution(geometric_p, max_span))  # (max_span,)
    eligible = eligible_positions(ids, special_ids, attention_mask)  # (B, T)
    selected = np.zeros((B, T), dtype=bool)
    action = np.full((B, T), ACTION_NONE, dtype=np.int8)
    inputs = ids.copy()
    spans = []
    for b in range(B):
        budget = span_budget(int(eligible[b].sum()), mask_ratio)
        n_selected = 0
        while n_selected < budget:
            # inverse-CDF draw of l; min() guards against cdf[-1] rounding to just below 1
            drawn = min(int(np.searchsorted(cdf, rng.random(), side="right")), max_span - 1) + 1
            free = np.flatnonzero(eligible[b] & ~selected[b])  # possible starts
            start = int(free[rng.integers(len(free))])
            limit = min(drawn, budget - n_selected)  # the last span is cut to the budget
            end = start
            while end - start < limit and end < T and eligible[b, end] and not selected[b, end]:
                end += 1
            u = rng.random()  # one 80/10/10 decision for the whole span
            if u < mask_prob:
                code = ACTION_MASK
            elif u < mask_prob + random_prob:
                code = ACTION_RANDOM
            else:
                code = ACTION_KEEP
            selected[b, start:end] = True
            action[b, start:end] = code
            if code == ACTION_MASK:
                inputs[b, start:end] = MASK_ID
            elif code == ACTION_RANDOM:
                inputs[b, start:end] = rng.choice(ordinary_ids, size=end - start)
            spans.append(Span(b, start, end, drawn, code))
            n_selected += end - start

    labels = np.where(selected, ids, IGNORE_INDEX).astype(np.int64)  # (B, T)
    info = {"eligible": eligible, "selected": selected, "action": action, "spans": spans}
    return _as_given(info, inputs, labels, one_row)


# ---- next sentence prediction


def make_nsp_pairs(documents, rng, a_sentences=1, random_next_prob=0.5):
    """Sentence pairs ``[CLS] A [SEP] B [SEP]`` for BERT's next sentence prediction.

    documents: a list of documents, each a list of sentences, each a list of token ids.
    For every document d and every run of ``a_sentences`` consecutive sentences that has a
    sentence after it, one example is made: A is the run, and B is
      - the sentence right after A (label IS_NEXT = 0), or, with probability random_next_prob,
      - a sentence drawn uniformly from a document drawn uniformly among the *other* non-empty
        documents (label IS_RANDOM = 1; Google's convention, "1 means random").
    A random B never comes from A's document: Google tries up to 10 random documents and can end
    up inside A's own (NVIDIA/DeepLearningExamples#421); here the draw is from the others only,
    and a corpus with fewer than two non-empty documents is an error.

    Simplification relative to Google's create_instances_from_document: Google packs sentences
    into chunks of a (sometimes random) target length, splits each chunk at a random sentence
    boundary into A and B, fills a random B to the target length and truncates long pairs. Here
    A and B are whole sentences and nothing is truncated. Every example has a true next
    sentence, so the rate of random B is random_next_prob exactly in expectation (Google's is
    above 0.5, because a one-sentence chunk always gets a random B).

    Returns a dict of arrays, N examples padded to the longest, T = max(|A| + |B|) + 3:
      input_ids (N, T)             [CLS] A [SEP] B [SEP], then [PAD]
      token_type_ids (N, T)        0 for [CLS] A [SEP], 1 for B [SEP], 0 for padding
      attention_mask (N, T)        1 for tokens, 0 for padding
      next_sentence_label (N,)     IS_NEXT or IS_RANDOM
      a_source, b_source (N, 2)    (document, sentence) of A's first sentence and of B
    """
    _check_int("a_sentences", a_sentences, 1)
    _check_probability("random_next_prob", random_next_prob)
    for d, document in enumerate(documents):
        for s, sentence in enumerate(document):
            if len(sentence) == 0:
                raise ValueError(
                    f"every sentence must hold at least one token, got documents[{d}][{s}] = []"
                )
    non_empty = [d for d, document in enumerate(documents) if len(document) > 0]
    if len(non_empty) < 2:
        raise ValueError(
            "documents must hold at least two non-empty documents, so that a random B can come "
            f"from another document than A; got {len(non_empty)} non-empty of "
            f"len(documents)={len(documents)}"
        )

    rows, types, labels, a_source, b_source = [], [], [], [], []
    for d, document in enumerate(documents):
        others = [o for o in non_empty if o != d]
        for s in range(len(document) - a_sentences):
            a = [token for sentence in document[s : s + a_sentences] for token in sentence]
            if rng.random() < random_next_prob:
                b_doc = others[rng.integers(len(others))]
                b_sent = int(rng.integers(len(documents[b_doc])))
                label = IS_RANDOM
            else:
                b_doc, b_sent, label = d, s + a_sentences, IS_NEXT
            b = list(documents[b_doc][b_sent])
            rows.append([CLS_ID, *a, SEP_ID, *b, SEP_ID])
            types.append([0] * (len(a) + 2) + [1] * (len(b) + 1))
            labels.append(label)
            a_source.append((d, s))
            b_source.append((b_doc, b_sent))
    if not rows:
        raise ValueError(
            f"no document has a_sentences + 1 = {a_sentences + 1} consecutive sentences, "
            "so no pair can be made"
        )

    N, T = len(rows), max(len(r) for r in rows)
    input_ids = np.full((N, T), PAD_ID, dtype=np.int64)
    token_type_ids = np.zeros((N, T), dtype=np.int64)
    attention_mask = np.zeros((N, T), dtype=np.int64)
    for i, (r, t) in enumerate(zip(rows, types)):
        input_ids[i, : len(r)] = r
        token_type_ids[i, : len(t)] = t
        attention_mask[i, : len(r)] = 1
    return {
        "input_ids": input_ids,
        "token_type_ids": token_type_ids,
        "attention_mask": attention_mask,
        "next_sentence_label": np.array(labels, dtype=np.int64),
        "a_source": np.array(a_source, dtype=np.int64).reshape(N, 2),
        "b_source": np.array(b_source, dtype=np.int64).reshape(N, 2),
    }


# ==============================================================================================
# The model's side: batches for BERT and the masked-LM loss

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
    rows = [[CLS_ID, *seq, SEP_ID] for seq in sequences]
    T = max(len(r) for r in rows)
    ids = np.full((len(rows), T), PAD_ID, dtype=np.int64)
    mask = np.zeros((len(rows), T), dtype=np.int64)
    for b, r in enumerate(rows):
        ids[b, : len(r)] = r
        mask[b, : len(r)] = 1
    return ids, mask


def training_batch(examples, indices, rng, tokenizer, train_cfg):
    """One BERT batch: ``[CLS] sentence [SEP]`` rows, corrupted by the objective's masking
    (with train_cfg.nsp: ``[CLS] A [SEP] B [SEP]`` pairs from two-sentence documents).

    train_cfg.objective "mlm" uses mask_tokens (15%, 80/10/10), "span" uses span_mask.
    train_cfg.masking "dynamic" draws a new mask from the training rng every time a sentence
    is seen (RoBERTa); "static" gives each example of the pool one mask for the whole run,
    drawn from a generator seeded by (seed, index) (BERT's precomputed copies).
    """
    special = np.arange(tokenizer.first_ordinary_id)
    if getattr(train_cfg, "nsp", False):
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
    from ..layers import cross_entropy_forward
    from ..models import bert_forward

    mlm_logits, nsp_logits, model_cache = bert_forward(
        params, cfg, batch["inputs"], batch.get("token_type_ids"), batch.get("attention_mask"))
    L, ce = cross_entropy_forward(mlm_logits, batch["labels"], reduction=reduction)
    cache = {"model": model_cache, "ce": ce, "nsp": None}
    total = float(L)
    if "next_sentence_label" in batch:
        L_nsp, cache["nsp"] = cross_entropy_forward(nsp_logits, batch["next_sentence_label"],
                                                    reduction=reduction)
        total += float(L_nsp)
    return total, ce["n"], cache


def loss_and_grads(params, cfg, batch, reduction="sum"):
    """The loss and dL/dθ for every BERT parameter. Returns (L, n_predicted, grads)."""
    from ..layers import cross_entropy_backward
    from ..models import bert_backward

    L, n, cache = loss(params, cfg, batch, reduction)
    dmlm = cross_entropy_backward(1.0, cache["ce"])  # (B, T, V)
    dnsp = None if cache["nsp"] is None else cross_entropy_backward(1.0, cache["nsp"])  # (B, 2)
    return L, n, bert_backward(dmlm, dnsp, cache["model"])


def nsp_accuracy(params, cfg, data, tokenizer, train_cfg, rng, n=400):
    """The share of ``n`` fresh ``[CLS] A [SEP] B [SEP]`` pairs of ``data`` (B the true next
    sentence half of the time, masked as in training) whose next-sentence label the NSP head
    gets right. Chance is 1/2."""
    from ..models import bert_forward

    _, documents = data.sample(rng, n)
    batch = training_batch(documents, None, rng, tokenizer, train_cfg)
    _, nsp_logits, _ = bert_forward(params, cfg, batch["inputs"], batch["token_type_ids"],
                                    batch["attention_mask"])  # (n, 2)
    return float(np.mean(nsp_logits.argmax(axis=-1) == batch["next_sentence_label"]))


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
