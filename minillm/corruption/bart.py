"""BART's noise (Lewis et al. 2020, "BART: Denoising Sequence-to-Sequence Pre-training").

Text infilling: 30% of the words, in spans whose lengths are drawn from Poisson(λ = 3), are each
replaced by ONE [MASK], so the model must also work out how many words are missing; a span of
length 0 inserts a [MASK] where nothing is missing. Sentence permutation shuffles the sentences.
The target is the whole original text.

    x̃:  今天 [MASK] ， 我们 去 [MASK] 。 [EOS]
    y:  今天 天气 很好 ， 我们 去 公园 玩 。 [EOS]

    draw_span_lengths    Poisson(λ) lengths adding up to a budget
    text_infilling       BART's span masking with one [MASK] a span
    split_sentences      ids -> sentences, each ending after a full stop
    permute_sentences    BART's sentence permutation

Pure functions of (token ids, rng, settings), tested without a network
(tests/test_seq2seq_corruption.py). Facts about fairseq (``denoising_dataset.py``) are cited
from ../shared/reference/objectives.md (section 7).
"""

from __future__ import annotations

import math

import numpy as np

from ..tokenizer import BOS_ID, EOS_ID, MASK_ID
from .checks import as_ids, check_int


# text_infilling's max_length redraws span lengths until the inputs fit; a bound that this
# many draws miss is refused. With λ = 3 and a bound of at least |ids|, one draw fits with
# probability P(Poisson(3b) >= b) >= 1 − e^-3 = 0.95 (budget b = 1 is the worst case), so
# reaching it means a bound too tight for its λ, not bad luck.
MAX_REDRAWS = 1000


def _body(ids):
    """The part of ids that noise may touch: [lo, hi), leaving out a leading [BOS] and a
    trailing [EOS]. fairseq keeps bos and eos fixed at the two ends; so does minillm."""
    lo = 1 if ids[0] == BOS_ID else 0
    hi = len(ids) - 1 if ids[-1] == EOS_ID and len(ids) - 1 >= lo else len(ids)
    return lo, hi


def draw_span_lengths(budget, rng, poisson_lambda=3.0):
    """BART's span lengths: Poisson(λ) draws until they add up to at least ``budget``; the last
    one is cut so that they add up to exactly ``budget``.

        drawn:    l_1, l_2, ..., l_K   i.i.d. Poisson(λ), K the first index with Σ l_i >= budget
        lengths:  l_1, ..., l_{K−1}, budget − (l_1 + ... + l_{K−1})

    The cut last length is >= 1 (the sum before it was below the budget). Earlier lengths may
    be 0: those are the zero-length spans, which insert a [MASK]. fairseq truncates the
    Poisson law where p_k < 1e-7 (k <= 17 for λ = 3); here it is not truncated.

    Returns (drawn, lengths): two lists of K ints. K = 0 when budget = 0.
    """
    check_int("budget", budget, 0)
    if not poisson_lambda > 0:
        raise ValueError(f"poisson_lambda must be > 0, got {poisson_lambda!r}")
    drawn = []
    while sum(drawn) < budget:
        drawn.append(int(rng.poisson(poisson_lambda)))
    lengths = list(drawn)
    if lengths:
        lengths[-1] = budget - sum(drawn[:-1])  # cut the last span to what is left
    return drawn, lengths


def text_infilling(ids, rng, mask_ratio=0.3, poisson_lambda=3.0, mask_id=MASK_ID,
                   max_length=None):
    """BART's text infilling: spans of Poisson(λ) length, each replaced by a single [MASK].

    The n maskable tokens are ids without a leading [BOS] and a trailing [EOS], which stay at
    the two ends (as in fairseq). minillm's tokenizer is word-level, so a token is a word.

    1. budget = ceil(mask_ratio · n) tokens are to be masked (fairseq: num_to_mask = ceil).
    2. Span lengths from ``draw_span_lengths``: Poisson(λ) draws, the last cut so that they add
       up to the budget exactly. A length 0 is an insertion: one [MASK], nothing removed.
    3. The spans are put in a random order and placed **without overlap**, uniformly: the K
       spans are K blocks set among the n − budget unmasked tokens, at K of the
       n − budget + K places chosen at random (every arrangement equally likely). Two spans may
       touch, giving [MASK] [MASK]; they never share a token.
    4. Each block becomes one ``mask_id`` in the input, whatever its length (fairseq's
       replace_length = 1, the BART-large recipe).

    fairseq instead picks each span's start independently, so its spans may overlap
    (fairseq#3486) and the masked fraction is then at most the budget. Forbidding overlap makes
    both of these exact, for every call:

        masked tokens = budget
        |inputs| = |ids| − Σ_{spans} (len_i − 1) + inserts       (= |ids| − budget + K)

    |inputs| exceeds |ids| when K > budget, i.e. when there are more inserts than masked tokens
    beyond the first of each span; fairseq's sources can then pass the model's position limit
    (fairseq#2297). ``max_length`` bounds |inputs|: span lengths whose K would make the inputs
    longer are drawn again (step 2 repeats). |inputs| depends on the draws only through K, so
    this gives exactly the law above conditioned on the inputs fitting, and when the first draw
    fits, the result is the one the same rng gives without a bound. K > budget exactly when the
    first budget draws add up to less than budget, so a bound of |ids| redraws with probability
    P(Poisson(λ·budget) < budget): 7.1e-6 for n = 31 (budget 10), 8.6e-4 for n = 15 (budget 5).

    Not implemented: fairseq's random replacement of masks (``mask_random``), its extra
    ``insert`` noise and document rotation.
    The BART-large recipe used λ = 3.5 (fairseq#1899); the paper says λ = 3.

    Returns (inputs, target, info):
        inputs   int64 array, the corrupted ids
        target   int64 array, a copy of ids: BART's decoder reconstructs the whole text
        info     dict: "budget" (int), "drawn_lengths" (the Poisson draws, in draw order),
                 "spans" (list of (start, length), length >= 1, start an index into ids,
                 sorted), "inserts" (list of indices into ids before which a [MASK] was
                 inserted, sorted; len(ids) − 1 for "just before a trailing [EOS]"),
                 "redraws" (how many span-length draws max_length refused)
    """
    ids = as_ids(ids)
    if not 0.0 <= mask_ratio <= 1.0:
        raise ValueError(f"mask_ratio must be in [0, 1], got {mask_ratio!r}")
    lo, hi = _body(ids)
    n = hi - lo
    budget = math.ceil(mask_ratio * n)
    n_free = n - budget  # tokens that stay
    # |inputs| = |ids| − budget + K: the most spans max_length allows (any K when it is None).
    if max_length is not None:
        check_int("max_length", max_length, 1)
    max_spans = math.inf if max_length is None else max_length - (len(ids) - budget)
    if max_spans < min(budget, 1):  # budget > 0 needs at least one span
        raise ValueError(f"max_length={max_length!r} is too short for {len(ids)} ids: with "
                         f"{budget} tokens masked the inputs hold at least "
                         f"{len(ids) - budget + min(budget, 1)} ids")
    drawn, lengths = draw_span_lengths(budget, rng, poisson_lambda)
    redraws = 0
    while len(lengths) > max_spans:  # too many spans: the inputs would not fit
        redraws += 1
        if redraws > MAX_REDRAWS:
            raise ValueError(f"max_length={max_length!r}: {MAX_REDRAWS} draws of span lengths "
                             f"for {len(ids)} ids with poisson_lambda={poisson_lambda!r} all "
                             f"gave longer inputs; allow longer inputs")
        drawn, lengths = draw_span_lengths(budget, rng, poisson_lambda)
    K = len(lengths)
    lengths = np.array(lengths, dtype=np.int64)[rng.permutation(K)]  # (K,) in random order
    # K blocks among n_free tokens: choose the K places the blocks take among n_free + K.
    places = np.sort(rng.choice(n_free + K, size=K, replace=False))  # (K,)
    # Block i has (places[i] − i) free tokens and the earlier blocks' lengths before it.
    starts = lo + places - np.arange(K) + (np.cumsum(lengths) - lengths)  # (K,)

    pieces = [ids[:lo]]
    position = lo
    for start, length in zip(starts, lengths):
        pieces += [ids[position:start], [mask_id]]  # the free tokens before, then one [MASK]
        position = start + length
    pieces.append(ids[position:])
    inputs = np.concatenate(pieces).astype(np.int64)

    info = {
        "budget": budget,
        "drawn_lengths": drawn,
        "spans": [(int(s), int(l)) for s, l in zip(starts, lengths) if l > 0],
        "inserts": [int(s) for s, l in zip(starts, lengths) if l == 0],
        "redraws": redraws,
    }
    return inputs, ids.copy(), info


def split_sentences(ids, full_stop_ids):
    """Cut ids into sentences, each ending just after a full stop (e.g. the id of "。").

    A last piece with no full stop is a sentence too. Concatenating the result gives ids back.
    ids (L,) -> list of int64 arrays.
    """
    ids = np.asarray(ids, dtype=np.int64)
    ends = np.flatnonzero(np.isin(ids, list(full_stop_ids))) + 1  # one past each full stop
    return [s for s in np.split(ids, ends) if len(s) > 0]


def permute_sentences(ids, rng, full_stop_ids):
    """BART's sentence permutation: the sentences of ids in a uniformly random order.

    Sentences end after any id of ``full_stop_ids`` (split_sentences). A leading [BOS] and a
    trailing [EOS] stay at the two ends and are not part of any sentence. Every order of the
    sentences is equally likely, the original one included (probability 1/k! for k sentences).
    In fairseq the full stop was [EOS] and was stripped before splitting, so the permutation
    was a no-op (fairseq#3803); tests check that the order does change.

    In BART the permutation comes before text infilling (fairseq ``__getitem__``).
    Returns an int64 array of the same length, a rearrangement of ids.
    """
    ids = as_ids(ids)
    full_stop_ids = list(full_stop_ids)
    if len(full_stop_ids) == 0:
        raise ValueError("full_stop_ids must hold at least one id, got none")
    lo, hi = _body(ids)
    sentences = split_sentences(ids[lo:hi], full_stop_ids)
    order = rng.permutation(len(sentences))
    shuffled = [sentences[i] for i in order]
    return np.concatenate([ids[:lo], *shuffled, ids[hi:]]).astype(np.int64)
