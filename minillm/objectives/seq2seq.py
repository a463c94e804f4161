"""Sequence to sequence, the T5 and BART objective (tutorial: 3. 序列到序列).

The tutorial's picture: an encoder reads one text, a decoder writes another.

    输入: "总结：今天天气很好，我们去公园玩。"        输出: "今天我们去公园玩了。"

Pre-training has no such pairs, so it makes them: the input is a *corrupted* copy of a text and
the output is what is needed to undo the corruption. The loss is the decoder's next-token
cross-entropy over the output y given the corrupted input x̃:

    L = -Σ_t log P(y_t | y_<t, x̃; θ)

Two corruptions are implemented, the two of the tutorial's representative models:

    T5 span corruption (Raffel et al. 2020, "Exploring the Limits of Transfer Learning")
        15% of the tokens, in spans of mean length 3, are cut out. Each span leaves one
        sentinel <extra_id_k> in the input; the output lists each sentinel and the tokens it
        stands for. The output is short: only the missing pieces.

            x:  今天 天气 很好 ， 我们 去 公园 玩 。
            x̃:  今天 <extra_id_0> ， 我们 去 <extra_id_1> 玩 。 [EOS]
            y:  <extra_id_0> 天气 很好 <extra_id_1> 公园 [EOS]

    BART text infilling (Lewis et al. 2020, "BART: Denoising Sequence-to-Sequence Pre-training")
        30% of the words, in spans whose lengths are drawn from Poisson(λ = 3), are each
        replaced by ONE [MASK], so the model must also work out how many words are missing;
        a span of length 0 inserts a [MASK] where nothing is missing. Optionally the sentences
        are shuffled first. The output is the whole original text.

            x̃:  今天 [MASK] ， 我们 去 [MASK] 。 [EOS]
            y:  今天 天气 很好 ， 我们 去 公园 玩 。 [EOS]

The section "Corruption" holds pure functions of (token ids, rng, settings). No model is
involved, so their exact invariants and their statistics are tested without a network
(tests/test_seq2seq_corruption.py):

    t5_noise_counts             N noise tokens and S noise spans for a length (T5's formulas)
    random_spans_noise_mask     T5's random_spans_noise_mask: which tokens are noise
    noise_spans_to_sentinels    a noise mask -> (inputs, targets) with sentinels
    span_corruption             the two above together: T5's objective for one sequence
    t5_input_and_target_lengths the raw length that fills an input length (T5's helper)
    text_infilling              BART's span masking with Poisson lengths and one [MASK] a span
    split_sentences             ids -> sentences, each ending after a full stop
    permute_sentences           BART's sentence permutation

Randomness comes only from the ``rng`` argument (a ``np.random.Generator``): the same seed gives
the same corruption. Facts about other implementations are cited from
../shared/reference/objectives.md (sections 6 and 7), which quotes
google-research/text-to-text-transfer-transformer ("T5"), huggingface/transformers
(``run_t5_mlm_flax.py``, "HF") and fairseq (``denoising_dataset.py``).
"""

from __future__ import annotations

import math

import numpy as np

from ..tokenizer import BOS_ID, EOS_ID, MASK_ID

# ----------------------------------------------------------------------------------------------
# Corruption


# ---- argument checks, shared by the functions below


def _as_ids(ids):
    """Any sequence of token ids -> a 1-D int64 array holding at least one id."""
    a = np.asarray(ids)
    if a.ndim != 1 or a.size == 0:
        raise ValueError(f"ids must be a non-empty 1-D sequence of token ids, got shape {a.shape}")
    if not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"ids must hold integers, got dtype {a.dtype}")
    return a.astype(np.int64)


def _check_int(name, value, low):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")


def _check_open_unit(name, value):
    if not 0.0 < value < 1.0:
        raise ValueError(f"{name} must be in (0, 1), got {value!r}")


# ---- T5 span corruption (reference section 6)


def t5_noise_counts(length, noise_density=0.15, mean_span_length=3.0):
    """How many noise tokens N and noise spans S T5 puts into a sequence of ``length`` tokens.

        L' = max(L, 2)
        N  = round(L' · noise_density), clamped to [1, L' − 1]      (at least one token of each)
        S  = max(round(N / mean_span_length), 1)

    ``round`` is Python's, half to even, like ``tf.round``: L = 10 gives 1.5 -> N = 2, L = 30
    gives 4.5 -> N = 4. The counts are deterministic; only where the spans go is random. There
    are also S non-noise spans, holding the other M = L' − N tokens.

    T5 computes L'·d in float32, which at L = 190, 350, 390, 670, ... rounds 28.5, 52.5, ... up
    (float32 gives 28.500002) and so masks one token more than the exact half-to-even rule that
    its own length helper (random_spans_helper, in float64) and this function use. In float64
    the product is exactly rounded for density 0.15 and every L up to 20000 (checked).

    Hugging Face's copy computes S = round(min(N, M) / μ) instead (PR #22938, for #22246). At
    density 0.15 min(N, M) = N and the two agree. It matters when the density is above 0.5:
    then N/μ can exceed M, and S non-noise spans of at least one token each are impossible
    (T5's segmentation then silently makes empty non-noise spans, merging noise spans). Here
    that case is an error instead.

    Returns (N, S), two ints.
    """
    _check_int("length", length, 1)
    _check_open_unit("noise_density", noise_density)
    if not mean_span_length >= 1.0:
        raise ValueError(f"mean_span_length must be >= 1 (a span holds at least one token), "
                         f"got {mean_span_length!r}")
    L = max(int(length), 2)  # T5: "increase length to avoid degeneracy"
    N = min(max(round(L * noise_density), 1), L - 1)
    S = max(round(N / mean_span_length), 1)
    if S > L - N:
        raise ValueError(f"noise_density={noise_density!r} with mean_span_length="
                         f"{mean_span_length!r} asks for {S} noise spans in length {length}, "
                         f"but only {L - N} non-noise tokens can separate them")
    return N, S


def _random_composition(total, parts, rng):
    """A uniformly random way to write ``total`` as an ordered sum of ``parts`` integers >= 1.

    Lay the ``total`` items in a row; there are total − 1 gaps between neighbours. Cutting at
    parts − 1 distinct gaps, chosen uniformly, gives each of the C(total−1, parts−1)
    compositions the same probability. (T5's _random_segmentation shuffles parts − 1 ones
    among total − 1 slots: the same law.) Returns an int64 array of ``parts`` lengths.
    """
    cuts = np.sort(rng.choice(total - 1, size=parts - 1, replace=False)) + 1  # (parts-1,)
    return np.diff(np.concatenate([[0], cuts, [total]]))  # (parts,)


def random_spans_noise_mask(length, rng, noise_density=0.15, mean_span_length=3.0):
    """T5's ``random_spans_noise_mask``: which of ``length`` tokens are noise (True).

    With N and S from ``t5_noise_counts`` and M = L' − N:

    1. the N noise tokens are cut into S spans, a uniformly random composition (each >= 1);
    2. the M non-noise tokens likewise into S spans;
    3. the spans alternate, non-noise first: [non-noise_0, noise_0, non-noise_1, noise_1, ...],
       so the mask **starts with non-noise and ends with noise**;
    4. the mask is cut back to ``length`` (it only differs from L' when length = 1).

    Given N and S, every such mask is equally likely. Two consequences worth knowing:

    - length 1: L' = 2 gives the mask [False, True], cut to [False]. A one-token sequence has
      no noise at all, and span_corruption returns it unchanged with an empty target.
    - length <= 30: S = 1, so the mask is always exactly the last N tokens (t5#905). T5 has a
      ``random_roll`` option (off by default) that rotates the mask; it is not implemented.

    length: L >= 1. Returns a bool array of shape (L,).
    """
    N, S = t5_noise_counts(length, noise_density, mean_span_length)
    L = max(length, 2)
    M = L - N
    noise_lengths = _random_composition(N, S, rng)  # (S,) summing to N
    nonnoise_lengths = _random_composition(M, S, rng)  # (S,) summing to M
    run_lengths = np.stack([nonnoise_lengths, noise_lengths], axis=1).reshape(-1)  # (2S,)
    run_is_noise = np.tile([False, True], S)  # (2S,) non-noise, noise, non-noise, ...
    mask = np.repeat(run_is_noise, run_lengths)  # (L',)
    return mask[:length]  # (L,)


def noise_spans_to_sentinels(ids, noise_mask, sentinel_ids):
    """Replace each run of noise by one sentinel; the target lists the sentinels and the runs.

    The k-th run of True in ``noise_mask`` (counted from the left, k = 0, 1, ...) becomes
    ``sentinel_ids[k]`` in the input. The target is, for each k in order, ``sentinel_ids[k]``
    followed by the tokens of that run. [EOS] ends both (T5 appends it afterwards, with
    seqio's append_eos_after_trim). So replacing each sentinel of the input by what follows
    the same sentinel in the target gives back ``ids``.

    minillm's sentinel ids **increase** with k: <extra_id_k> has id 7 + k in the default
    vocabulary (``Tokenizer.sentinel_id(k)``). T5's vocabulary puts <extra_id_0> at the *last*
    id, vocab_size − 1, and ids decrease with k (T5 ``noise_span_to_unique_sentinel``; HF once
    got this wrong, #14282). Only the order k = 0, 1, ... matters to the model; ``sentinel_ids``
    says which ids to use, so any convention can be passed in.

    T5 computes the target by applying the same replacement to ``~noise_mask``; that gives this
    target when the mask starts with non-noise, as T5's masks do. Here the target is built from
    the runs directly, so it is right for any mask.

    ids (L,), noise_mask (L,) bool, sentinel_ids: at least as many ids as there are noise runs.
    Returns (inputs, targets), two int64 arrays.
    """
    ids = _as_ids(ids)
    noise_mask = np.asarray(noise_mask, dtype=bool)
    if noise_mask.shape != ids.shape:
        raise ValueError(f"noise_mask must have the shape of ids {ids.shape}, "
                         f"got {noise_mask.shape}")
    padded = np.concatenate([[False], noise_mask, [False]]).astype(np.int8)  # (L+2,)
    starts = np.flatnonzero(np.diff(padded) == 1)  # a run starts where False -> True
    ends = np.flatnonzero(np.diff(padded) == -1)  # and ends (exclusive) where True -> False
    if len(starts) > len(sentinel_ids):
        raise ValueError(f"sentinel_ids holds {len(sentinel_ids)} ids but the noise mask has "
                         f"{len(starts)} spans; pass more sentinels")
    inputs, targets = [], []
    previous_end = 0
    for k, (start, end) in enumerate(zip(starts, ends)):
        inputs += [*ids[previous_end:start], sentinel_ids[k]]  # kept tokens, then <extra_id_k>
        targets += [sentinel_ids[k], *ids[start:end]]  # <extra_id_k>, then what it replaced
        previous_end = end
    inputs += [*ids[previous_end:], EOS_ID]
    targets += [EOS_ID]
    return np.array(inputs, dtype=np.int64), np.array(targets, dtype=np.int64)


def span_corruption(ids, rng, sentinel_ids, noise_density=0.15, mean_span_length=3.0):
    """T5's span corruption of one sequence: (inputs, targets) for the encoder and decoder.

        x:  今天 天气 很 好 ， 我们 去 公园 玩 。
        x̃:  今天 <extra_id_0> 好 ， 我们 去 <extra_id_1> 玩 。 [EOS]
        y:  <extra_id_0> 天气 很 <extra_id_1> 公园 [EOS]

    The mask is ``random_spans_noise_mask(len(ids), rng, ...)`` (the same draws: the same seed
    gives the same mask), then ``noise_spans_to_sentinels``. For L >= 2 the lengths are exact:

        |inputs| = (L − N) + S + 1        |targets| = N + S + 1

    ids: the raw text (L,), without [EOS]; sentinel_ids: the ids of <extra_id_0>,
    <extra_id_1>, ... (e.g. ``[tok.sentinel_id(k) for k in range(tok.n_sentinels)]``), at least
    S of them. Returns (inputs, targets), two int64 arrays.
    """
    ids = _as_ids(ids)
    noise_mask = random_spans_noise_mask(len(ids), rng, noise_density, mean_span_length)
    return noise_spans_to_sentinels(ids, noise_mask, sentinel_ids)


def t5_input_and_target_lengths(inputs_length, noise_density=0.15, mean_span_length=3.0):
    """The raw length T whose corruption fills ``inputs_length``, and its target length.

    T5 trains on inputs of a fixed length (512). Corruption shortens a text (N tokens leave,
    S sentinels and an [EOS] come in), so T5 cuts the raw text a little longer. With N and S
    from ``t5_noise_counts(T)``:

        inputs(T)  = (T − N) + S + 1          targets(T) = N + S + 1

    T is the largest raw length with inputs(T) <= inputs_length (inputs(T) never decreases as
    T grows, so counting up from inputs_length − 1 finds it). This is T5's random_spans_helper
    (HF: compute_input_and_target_lengths). Values: 512 -> (568, 114), 128 -> (141, 29),
    256 -> (284, 58), 1024 -> (1137, 229).

    Two differences from T5, both so that the two lengths returned are exactly the lengths
    span_corruption produces for a text of T tokens:

    - N and S are counted with the clamps of the mask (t5_noise_counts); T5's helper leaves
      them out. They only matter for very short lengths.
    - T5's helper has a "minor hack" for density 0.5: when targets > inputs it lowers T and the
      target length by one, to make the two lengths equal. Lowering T by one does not always
      lower the target by exactly one (N and S can both change), so the hack is left out: at
      density 0.5 the target may be one longer than the input here. Example: for
      inputs_length 11 T5 returns (14, 11), but a 14-token text gives a target of 10 tokens;
      this function returns (15, 12), the lengths a 15-token text really gets.

    inputs_length >= 3 (so that T >= 2; a one-token text has no noise). Returns (T, targets).
    """
    _check_int("inputs_length", inputs_length, 3)

    def lengths_after_corruption(raw_length):
        N, S = t5_noise_counts(raw_length, noise_density, mean_span_length)
        return (raw_length - N) + S + 1, N + S + 1

    raw_length = inputs_length - 1  # inputs(T) <= T + 1, so this one always fits
    while lengths_after_corruption(raw_length + 1)[0] <= inputs_length:
        raw_length += 1
    return raw_length, lengths_after_corruption(raw_length)[1]


# ---- BART text infilling and sentence permutation (reference section 7)


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
    _check_int("budget", budget, 0)
    if not poisson_lambda > 0:
        raise ValueError(f"poisson_lambda must be > 0, got {poisson_lambda!r}")
    drawn = []
    while sum(drawn) < budget:
        drawn.append(int(rng.poisson(poisson_lambda)))
    lengths = list(drawn)
    if lengths:
        lengths[-1] = budget - sum(drawn[:-1])  # cut the last span to what is left
    return drawn, lengths


def text_infilling(ids, rng, mask_ratio=0.3, poisson_lambda=3.0, mask_id=MASK_ID):
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

    |inputs| can exceed |ids| when there are more inserts than masked tokens beyond the first
    of each span (fairseq#2297: mind a position limit). Not implemented: fairseq's random
    replacement of masks (``mask_random``), its extra ``insert`` noise and document rotation.
    The BART-large recipe used λ = 3.5 (fairseq#1899); the paper says λ = 3.

    Returns (inputs, target, info):
        inputs   int64 array, the corrupted ids
        target   int64 array, a copy of ids: BART's decoder reconstructs the whole text
        info     dict: "budget" (int), "drawn_lengths" (the Poisson draws, in draw order),
                 "spans" (list of (start, length), length >= 1, start an index into ids,
                 sorted), "inserts" (list of indices into ids before which a [MASK] was
                 inserted, sorted; len(ids) − 1 for "just before a trailing [EOS]")
    """
    ids = _as_ids(ids)
    if not 0.0 <= mask_ratio <= 1.0:
        raise ValueError(f"mask_ratio must be in [0, 1], got {mask_ratio!r}")
    lo, hi = _body(ids)
    n = hi - lo
    budget = math.ceil(mask_ratio * n)
    drawn, lengths = draw_span_lengths(budget, rng, poisson_lambda)
    K = len(lengths)
    lengths = np.array(lengths, dtype=np.int64)[rng.permutation(K)]  # (K,) in random order
    n_free = n - budget  # tokens that stay
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
    ids = _as_ids(ids)
    full_stop_ids = list(full_stop_ids)
    if len(full_stop_ids) == 0:
        raise ValueError("full_stop_ids must hold at least one id, got none")
    lo, hi = _body(ids)
    sentences = split_sentences(ids[lo:hi], full_stop_ids)
    order = rng.permutation(len(sentences))
    shuffled = [sentences[i] for i in order]
    return np.concatenate([ids[:lo], *shuffled, ids[hi:]]).astype(np.int64)



# ==============================================================================================
# The model's side: teacher forcing, the loss, and the three training objectives
#
#   t5      span corruption of grammar sentences (pre-training, T5)
#   bart    text infilling of grammar sentences (pre-training, BART)
#   tasks   the text-to-text tasks of the grammar: 总结 / 翻译 / 问 (T5's framing by prefix)
#   mix     tasks and span corruption in one stream, half and half: T5's unified framework

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
    from ..layers import IGNORE_INDEX
    from ..tokenizer import PAD_ID

    if len(pairs) == 0:
        raise ValueError("pairs must hold at least one (source, target) pair, got an empty batch")
    B = len(pairs)
    S = max(len(src) for src, _ in pairs)
    T = max(len(tgt) for _, tgt in pairs)
    if S == 0 or T == 0:
        raise ValueError("every source and every target must hold at least one token")
    batch = {
        "src": np.full((B, S), PAD_ID, dtype=np.int64),
        "src_mask": np.zeros((B, S), dtype=np.int64),
        "dec_in": np.full((B, T), PAD_ID, dtype=np.int64),
        "dec_mask": np.zeros((B, T), dtype=np.int64),
        "targets": np.full((B, T), IGNORE_INDEX, dtype=np.int64),
    }
    for b, (src, tgt) in enumerate(pairs):
        batch["src"][b, : len(src)] = src
        batch["src_mask"][b, : len(src)] = 1
        batch["dec_in"][b, : len(tgt)] = [start_id, *tgt[:-1]]
        batch["dec_mask"][b, : len(tgt)] = 1
        batch["targets"][b, : len(tgt)] = tgt
    batch["attention_mask"] = batch["src_mask"]  # what the training loop counts as tokens read
    return batch


def corrupt(ids, rng, tokenizer, objective):
    """One grammar sentence -> (source, target) for the pre-training objectives."""
    if objective == "t5":
        sentinels = [tokenizer.sentinel_id(k) for k in range(tokenizer.n_sentinels)]
        src, tgt = span_corruption(ids, rng, sentinels)
        return list(src), list(tgt)
    if objective == "bart":
        src, tgt, _ = text_infilling(ids, rng)
        return [*src, EOS_ID], [*tgt, EOS_ID]
    raise ValueError(f"objective must be 't5' or 'bart' here, got {objective!r}")


def training_batch(examples, indices, rng, tokenizer, train_cfg):
    """One batch for train_cfg.objective: t5 and bart corrupt grammar sentences; tasks takes
    (source, target) pairs from TaskData; mix takes (source, target, sentence) triples and uses
    the task pair or, half of the time, the span corruption of the sentence. [EOS] ends every
    source and every target."""
    objective = train_cfg.objective
    if objective in ("t5", "bart"):
        pairs = [corrupt(ids, rng, tokenizer, objective) for ids in examples]
    elif objective == "tasks":
        pairs = [([*src, EOS_ID], [*tgt, EOS_ID]) for src, tgt in examples]
    elif objective == "mix":
        pairs = []
        for src, tgt, sentence in examples:
            if rng.random() < 0.5:
                pairs.append(([*src, EOS_ID], [*tgt, EOS_ID]))
            else:
                pairs.append(corrupt(sentence, rng, tokenizer, "t5"))
    else:
        raise ValueError(f"objective must be t5, bart, tasks or mix, got {objective!r}")
    return make_batch(pairs)


def loss(params, cfg, batch, reduction="sum"):
    """``L = -Σ_t log P(y_t | y_<t, x; θ)`` over every real target token. Returns
    (L, n_predicted, cache)."""
    from ..layers import cross_entropy_forward
    from ..models import seq2seq_forward

    logits, model_cache = seq2seq_forward(params, cfg, batch["src"], batch["dec_in"],
                                          batch["src_mask"], batch["dec_mask"])
    L, ce = cross_entropy_forward(logits, batch["targets"], reduction=reduction)
    return float(L), ce["n"], {"model": model_cache, "ce": ce}


def loss_and_grads(params, cfg, batch, reduction="sum"):
    """The loss and dL/dθ for every encoder-decoder parameter."""
    from ..layers import cross_entropy_backward
    from ..models import seq2seq_backward

    L, n, cache = loss(params, cfg, batch, reduction)
    return L, n, seq2seq_backward(cross_entropy_backward(1.0, cache["ce"]), cache["model"])
