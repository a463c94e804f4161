"""T5's span corruption (Raffel et al. 2020, "Exploring the Limits of Transfer Learning").

15% of the tokens, in spans of mean length 3, are cut out. Each span leaves one sentinel
<extra_id_k> in the input; the target lists each sentinel and the tokens it stands for. The
target is short: only the missing pieces.

T5 corrupts long sequences: it packs its documents end to end and cuts the stream into pieces
of 568 tokens, whose inputs are then 512 tokens long. A short sentence alone would get one
noise span, always at its end (a mask ends with noise); packed with others it can lose any of
its words. span_corruption's docstring shows a packed sequence of 34 tokens; its first sentence:

    x:  今天 天气 很好 ， 我们 去 公园 玩 。 今天 我们 去 图书馆 …
    x̃:  今天 <extra_id_0> ， 我们 去 公园 玩 。 今天 我们 去 图书馆 … <extra_id_1> [EOS]
    y:  <extra_id_0> 天气 很好 <extra_id_1> … [EOS]

    t5_noise_counts             N noise tokens and S noise spans for a length (T5's formulas)
    random_spans_noise_mask     T5's random_spans_noise_mask: which tokens are noise
    noise_spans_to_sentinels    a noise mask -> (inputs, targets) with sentinels
    span_corruption             the two above together: T5's objective for one sequence
    pack_sequences              token sequences end to end, cut into pieces of one length
    t5_input_and_target_lengths the raw length that fills an input length (T5's helper)
    longest_inputs_for_sentinels the longest input length that n sentinels can serve

Pure functions of (token ids, rng, settings), tested without a network
(tests/test_seq2seq_corruption.py). Facts about other implementations are cited from
../shared/reference/objectives.md (section 6), which quotes
google-research/text-to-text-transfer-transformer ("T5") and huggingface/transformers
(``run_t5_mlm_flax.py``, "HF").
"""

from __future__ import annotations

import numpy as np

from ..tokenizer import EOS_ID
from .checks import as_ids, check_int, check_open_unit


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
    check_int("length", length, 1)
    check_open_unit("noise_density", noise_density)
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
      no noise at all; span_corruption returns it unchanged, with T5's target for it (below).
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

    T5 computes the target by applying the same replacement to ``~noise_mask``: its k-th
    non-noise run becomes the k-th sentinel. That equals this target when the mask starts with
    non-noise and ends with noise, as T5's masks do for every length but 1 (span_corruption
    handles that one). Here the target is built from the noise runs directly, so it lists the
    sentinels of the input, and nothing else, for any mask.

    ids (L,), noise_mask (L,) bool, sentinel_ids: at least as many ids as there are noise runs.
    Returns (inputs, targets), two int64 arrays.
    """
    ids = as_ids(ids)
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

    T5 corrupts packed sequences (pack_sequences), such as these 34 tokens of the grammar's
    sentences (N = 5 noise tokens in S = 2 spans; the last span always ends the sequence):

        x:  今天 天气 很好 ， 我们 去 公园 玩 。 今天 我们 去 图书馆 看书 了 。 周末 天气 不好 ，
            我们 去 商店 买东西 。 明天 天气 不错 ， 小明 去 公园 玩 。
        x̃:  今天 <extra_id_0> ， 我们 去 公园 玩 。 今天 我们 去 图书馆 看书 了 。 周末 天气 不好 ，
            我们 去 商店 买东西 。 明天 天气 不错 ， 小明 去 <extra_id_1> [EOS]
        y:  <extra_id_0> 天气 很好 <extra_id_1> 公园 玩 。 [EOS]

    The mask is ``random_spans_noise_mask(len(ids), rng, ...)`` (the same draws: the same seed
    gives the same mask), then ``noise_spans_to_sentinels``. For L >= 2 the lengths are exact:

        |inputs| = (L − N) + S + 1        |targets| = N + S + 1

    For L = 1 the mask holds no noise (see random_spans_noise_mask). T5 builds the target by
    the sentinel replacement of ``~noise_mask`` = [True], which turns the one token into
    <extra_id_0>; so here too: inputs [w, EOS], targets [<extra_id_0>, EOS].

    ids: the raw text (L,), without [EOS]; sentinel_ids: the ids of <extra_id_0>,
    <extra_id_1>, ... (e.g. ``[tok.sentinel_id(k) for k in range(tok.n_sentinels)]``), at least
    S of them. Returns (inputs, targets), two int64 arrays.
    """
    ids = as_ids(ids)
    noise_mask = random_spans_noise_mask(len(ids), rng, noise_density, mean_span_length)
    inputs, targets = noise_spans_to_sentinels(ids, noise_mask, sentinel_ids)
    if len(ids) == 1:  # T5's target of the mask [False]: its non-noise run becomes <extra_id_0>
        targets = np.array([sentinel_ids[0], EOS_ID], dtype=np.int64)
    return inputs, targets


def pack_sequences(sequences, length):
    """T5's packing: the sequences end to end, cut into consecutive pieces of ``length`` tokens.

    T5's span_corruption pipeline concatenates documents (reduce_concat_tokens) and splits the
    stream into pieces of the raw length (split_tokens) before corrupting each piece, so pieces
    start and end anywhere, also inside a sentence, and no separator is added between
    documents. The last piece holds what is left (1 to ``length`` tokens).

    sequences: lists (or arrays) of token ids; length >= 1. Returns a list of int64 arrays.
    """
    check_int("length", length, 1)
    stream = np.concatenate([np.asarray(s, dtype=np.int64).reshape(-1) for s in sequences]
                            or [np.zeros(0, dtype=np.int64)])  # (total,)
    return [stream[start : start + length] for start in range(0, len(stream), length)]


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
    check_int("inputs_length", inputs_length, 3)

    def lengths_after_corruption(raw_length):
        N, S = t5_noise_counts(raw_length, noise_density, mean_span_length)
        return (raw_length - N) + S + 1, N + S + 1

    raw_length = inputs_length - 1  # inputs(T) <= T + 1, so this one always fits
    while lengths_after_corruption(raw_length + 1)[0] <= inputs_length:
        raw_length += 1
    return raw_length, lengths_after_corruption(raw_length)[1]


def longest_inputs_for_sentinels(n_sentinels, noise_density=0.15, mean_span_length=3.0):
    """The longest input length whose raw length needs at most ``n_sentinels`` sentinels.

    A raw length T needs S(T) sentinels (t5_noise_counts), and S never decreases as T grows; so
    n sentinels serve every T up to T_n, the largest T with S(T) <= n. The raw length of an
    input length I (t5_input_and_target_lengths) exceeds T_n exactly when inputs(T_n + 1) <= I,
    so the answer is inputs(T_n + 1) − 1. With 20 sentinels (minillm's default vocabulary):
    T_20 = 409 (N = 61, S = 20; T = 410 gives N = 62, S = 21) and the answer is 369.

    n_sentinels >= 1 (every corruption of two or more tokens has a span). Returns an int.
    """
    check_int("n_sentinels", n_sentinels, 1)

    def spans(raw_length):
        return t5_noise_counts(raw_length, noise_density, mean_span_length)[1]

    raw_length = 2  # S(2) = 1
    while spans(raw_length + 1) <= n_sentinels:
        raw_length += 1
    N, S = t5_noise_counts(raw_length + 1, noise_density, mean_span_length)
    return (raw_length + 1 - N) + S + 1 - 1
