"""SpanBERT's masking (Joshi et al. 2020): whole spans of words instead of single tokens.

    span_length_distribution   the clipped geometric law of span lengths (p = 0.2, at most 10)
    span_budget                how many tokens a row of n eligible tokens gives up: ceil(15% n)
    span_mask                  spans until the budget is met, 80/10/10 decided once a span

The conventions (eligible positions, (inputs, labels, info), the rng) are bert.py's.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from ..layers import IGNORE_INDEX
from ..tokenizer import MASK_ID
from .bert import (ACTION_MASK, ACTION_NONE, ACTION_RANDOM, action_80_10_10,
                   eligible_positions)
from .checks import (as_given, as_rows, check_int, check_probability, check_replacement,
                     check_vocabulary)


def span_length_distribution(p=0.2, max_span=10):
    """The clipped geometric law of span lengths: ``P(l) = p (1-p)^(l-1) / Z`` for l = 1..max_span.

    Z = Σ_{l=1}^{max_span} p (1-p)^(l-1) renormalises the law after clipping (SpanBERT, Joshi et
    al. 2020). Returns (max_span,) float64 with P(l) at index l - 1. For p = 0.2, max_span = 10:
    P(1) = 0.224, P(10) = 0.030, mean 3.797 words (objectives.md section 4).
    """
    if not 0.0 < p <= 1.0:
        raise ValueError(f"p must be in (0, 1], got p={p!r}")
    check_int("max_span", max_span, 1)
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
    special_ids=None,
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
    check_probability("mask_ratio", mask_ratio)
    if not 0.0 < geometric_p <= 1.0:
        raise ValueError(f"geometric_p must be in (0, 1], got geometric_p={geometric_p!r}")
    check_int("max_span", max_span, 1)
    check_replacement(mask_prob, random_prob)
    ordinary_ids, special_ids = check_vocabulary(ordinary_ids, special_ids)
    ids, attention_mask, one_row = as_rows(ids, attention_mask)
    B, T = ids.shape

    cdf = np.cumsum(span_length_distribution(geometric_p, max_span))  # (max_span,)
    eligible = eligible_positions(ids, special_ids, attention_mask, ordinary_ids)  # (B, T)
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
            code = int(action_80_10_10(rng.random(), mask_prob, random_prob))  # for the span
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
    return as_given(info, inputs, labels, one_row)
