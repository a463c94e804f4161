"""Generation from a GPT: next-word distributions, sampling rules, and the key/value cache.

Autoregressive generation is the tutorial's formula run forwards: draw w_t from
P(w_t | w_1, ..., w_{t-1}), append it, repeat. Each step's distribution comes from the last
position's logits, reshaped by one of the sampling rules below.

The key/value cache: at step t only the newest token is fed to the model. Its attention needs
the keys and values of every earlier position, which ``gpt_forward`` already computed and
returned in its cache; passing that cache back as ``past`` reuses them. The logits are the same
as a full forward pass over the whole sequence (a test proves it); only the work differs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .layers import log_softmax
from .models import check_finite, gpt_forward
from .tokenizer import BOS_ID, EOS_ID


def next_token_probs(logits, temperature=1.0, top_k=None, top_p=None):
    """The distribution to draw the next token from, given the last position's logits (V,).

    temperature  p ∝ exp(z / temperature); below 1 sharpens, above 1 flattens; 0 is greedy
                 (all mass on the argmax)
    top_k        keep only the k most probable tokens (Fan et al. 2018), renormalised
    top_p        keep the smallest set of most probable tokens whose mass reaches top_p
                 (nucleus sampling, Holtzman et al. 2020), renormalised
    """
    z = check_finite(np.asarray(logits, dtype=np.float64))
    V = z.shape[-1]
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature!r}")
    if top_k is not None and not 1 <= top_k:
        raise ValueError(f"top_k must be a positive integer, got {top_k!r}")
    if top_p is not None and not 0.0 < top_p <= 1.0:
        raise ValueError(f"top_p must be in (0, 1], got {top_p!r}")
    if temperature == 0:
        p = np.zeros(V)
        p[int(np.argmax(z))] = 1.0
        return p
    # Subtract the largest logit before dividing: every z - max is then <= 0, so a tiny
    # temperature sends the others to -inf (probability 0) instead of making inf - inf = NaN.
    with np.errstate(over="ignore"):
        z = (z - z.max()) / temperature
    p = np.exp(z)
    p /= p.sum()
    order = np.argsort(-p, kind="stable")  # most probable first; ties by token id
    keep = np.ones(V, dtype=bool)
    if top_k is not None and top_k < V:
        keep[order[top_k:]] = False
    if top_p is not None:
        mass_before = np.cumsum(p[order]) - p[order]  # mass of the tokens ranked above each
        keep[order[mass_before >= top_p]] = False
    p = np.where(keep, p, 0.0)
    return p / p.sum()


def generate(params, cfg, prompt_ids, max_new_tokens, rng, temperature=1.0, top_k=None,
             top_p=None, use_cache=True, stop_at_eos=True, bos_id=BOS_ID, eos_id=EOS_ID):
    """Continue ``prompt_ids`` (without [BOS]; it is added) by up to ``max_new_tokens`` tokens.

    Returns the list of new token ids (ending with [EOS] when the model chose to stop).
    Generation also stops when the sequence fills the model's context of n_ctx positions.
    ``use_cache=False`` recomputes the whole sequence at every step (slow, for comparison).
    ``bos_id``/``eos_id``: the model's own special ids (minillm's by default); ``bos_id`` None
    reads the prompt alone, as transformers generates with GPT-2, which has no BOS token.
    """
    ids = list(prompt_ids) if bos_id is None else [bos_id, *prompt_ids]
    if not ids:
        raise ValueError("nothing to continue: an empty prompt and no bos_id")
    new = []
    logits, cache = gpt_forward(params, cfg, np.array([ids]))
    for _ in range(max_new_tokens):
        p = next_token_probs(logits[0, -1], temperature, top_k, top_p)
        token = int(np.argmax(p)) if temperature == 0 else int(rng.choice(len(p), p=p))
        new.append(token)
        ids.append(token)
        if (stop_at_eos and token == eos_id) or len(ids) >= cfg.n_ctx:
            break
        if use_cache:
            logits, cache = gpt_forward(params, cfg, np.array([[token]]), past=cache)
        else:
            logits, _ = gpt_forward(params, cfg, np.array([ids]))
    return new


def next_word_distribution(params, cfg, prompt_ids, bos_id=BOS_ID):
    """The model's P(next token | [BOS] prompt) as an array (V,): what the demo prints.
    ``bos_id`` None: P(next token | prompt), the prompt read alone (GPT-2 in transformers)."""
    ids = list(prompt_ids) if bos_id is None else [bos_id, *prompt_ids]
    if not ids:
        raise ValueError("no next-token distribution of an empty prompt without a bos_id")
    logits, _ = gpt_forward(params, cfg, np.array([ids]))
    return next_token_probs(logits[0, -1])


# ----------------------------------------------------------------------------------------------
# Mask filling (BERT)


def fill_mask_distributions(params, cfg, ids, mask_id=None, token_type_ids=None):
    """The model's distribution over the vocabulary at every [MASK] of one input.

    ids: the token ids of ``[CLS] ... [SEP]`` with one or more [MASK]. Returns a list of
    (position, probs (V,)) in position order. Each [MASK] is predicted from every other token
    on both sides: the encoder is bidirectional. ``mask_id``: the model's [MASK] id (default
    minillm's). ``token_type_ids``: the segments of a ``[CLS] A [SEP] B [SEP]`` pair (default
    all 0, one segment).
    """
    from .models import bert_forward
    from .tokenizer import MASK_ID

    mask_id = MASK_ID if mask_id is None else mask_id
    ids = np.asarray(ids)
    positions = np.flatnonzero(ids == mask_id)
    if positions.size == 0:
        raise ValueError("the text has no [MASK] to fill")
    types = None if token_type_ids is None else np.asarray(token_type_ids)[None]
    mlm_logits, _, _ = bert_forward(params, cfg, ids[None], types)
    return [(int(t), next_token_probs(mlm_logits[0, t])) for t in positions]


# ----------------------------------------------------------------------------------------------
# Encoder-decoder decoding: greedy and beam search, the encoder run once


def _select_past(cache, rows):
    """Keep only what a decoder step needs from a cache, for the given batch rows."""
    keep = ("k", "v", "xk", "xv")
    return {"S": cache["S"],
            "blocks": [{key: c[key][rows] for key in keep} for c in cache["blocks"]]}


def _decode_logits(params, cfg, enc, src_mask, prefixes, past, use_cache):
    """The next-token logits (n, V) for n target prefixes of equal length, and the new cache."""
    from .models import decoder_forward

    if use_cache and past is not None:
        new = np.array([[p[-1]] for p in prefixes])
        logits, cache = decoder_forward(params, cfg, new, enc, src_mask, past=past)
    else:
        logits, cache = decoder_forward(params, cfg, np.array(prefixes), enc, src_mask)
    return logits[:, -1], cache


def seq2seq_beam_search(params, cfg, src_ids, beam_width=4, max_len=None, length_penalty=1.0,
                        use_cache=True, start_id=None, eos_id=None):
    """Beam search over the decoder: keep the ``beam_width`` best prefixes at every step.

    A prefix's score is its total log-probability Σ_t log P(y_t | y_<t, x). A finished
    hypothesis (ending in [EOS]) is ranked by score / len^length_penalty (Hugging Face's rule;
    0 ranks by total log-probability, 1 by the mean per token). The encoder runs once; the
    decoder's keys and values are cached and reordered with the surviving beams.
    Returns (ids without the start token, score), the best finished hypothesis, or the best
    unfinished one when none finished within ``max_len`` tokens.
    Beam width 1 is greedy decoding.
    """
    best = seq2seq_beam_hypotheses(params, cfg, src_ids, beam_width, max_len, length_penalty,
                                   use_cache, start_id, eos_id)[0]
    return best.ids, best.log_prob


@dataclass(frozen=True)
class Hypothesis:
    """One output of beam search: its ids (without the start token; ending in [EOS] when
    finished), log P(y | x) = Σ_t log P(y_t | y_<t, x), and the score it is ranked by,
    log P / len(ids)^length_penalty."""

    ids: list
    log_prob: float
    score: float
    finished: bool


def seq2seq_beam_hypotheses(params, cfg, src_ids, beam_width=4, max_len=None,
                            length_penalty=1.0, use_cache=True, start_id=None, eos_id=None):
    """seq2seq_beam_search's whole result: every hypothesis that finished during the search,
    best score first, then the beams still live when it stopped (unfinished: at ``max_len``, or
    unable to beat the best finished one), most probable first. The first is
    seq2seq_beam_search's answer."""
    from .models import encoder_forward
    from .tokenizer import BOS_ID as _BOS, EOS_ID as _EOS

    start_id = _BOS if start_id is None else start_id
    eos_id = _EOS if eos_id is None else eos_id
    max_len = cfg.n_ctx if max_len is None else min(max_len, cfg.n_ctx)
    if beam_width < 1:
        raise ValueError(f"beam_width must be a positive integer, got {beam_width!r}")
    src = np.asarray(src_ids)[None]  # (1, S)
    enc, _ = encoder_forward(params, cfg, src)  # (1, S, C), once
    beams = [([start_id], 0.0)]  # (prefix with the start token, total log-probability)
    finished = []
    past = None
    for _ in range(max_len):
        rows = np.zeros(len(beams), dtype=np.int64)
        logits, cache = _decode_logits(params, cfg, enc[rows], None,
                                       [b[0] for b in beams], past, use_cache)
        logp = log_softmax(check_finite(logits))  # (n, V): log P(next token | prefix, source)
        scores = np.array([b[1] for b in beams])[:, None] + logp  # (n, V)
        flat = np.argsort(-scores, axis=None, kind="stable")[: 2 * beam_width]
        candidates = []
        for f in flat:
            i, token = divmod(int(f), scores.shape[1])
            prefix, score = beams[i][0] + [token], float(scores[i, token])
            if token == eos_id:
                finished.append((prefix[1:], score, score / len(prefix[1:]) ** length_penalty))
            else:
                candidates.append((prefix, score, i))
            if len(candidates) == beam_width:
                break
        if not candidates:
            beams = []
            break
        # Stop when no live beam can still beat the best finished one (for length_penalty 0,
        # adding tokens only lowers a score, so the live beams can only get worse).
        if finished and length_penalty == 0 and max(f[2] for f in finished) >= candidates[0][1]:
            break
        beams = [(c[0], c[1]) for c in candidates]
        past = _select_past(cache, np.array([c[2] for c in candidates])) if use_cache else None
    done = [Hypothesis(ids, lp, score, True) for ids, lp, score in finished]
    live = [Hypothesis(p[1:], lp, lp / max(len(p) - 1, 1) ** length_penalty, False)
            for p, lp in beams]
    # sorted is stable: of equal scores the one found first leads, as max() would pick it.
    return (sorted(done, key=lambda h: h.score, reverse=True)
            + sorted(live, key=lambda h: h.log_prob, reverse=True))


def seq2seq_greedy(params, cfg, src_ids, max_len=None, use_cache=True, start_id=None,
                   eos_id=None):
    """Greedy decoding: the most probable next token at every step (beam width 1).
    ``start_id``/``eos_id``: the decoder's first token and its stop (default minillm's [BOS],
    [EOS]; a BART's are config.json's decoder_start_token_id and eos_token_id)."""
    return seq2seq_beam_search(params, cfg, src_ids, beam_width=1, max_len=max_len,
                               length_penalty=0.0, use_cache=use_cache, start_id=start_id,
                               eos_id=eos_id)
