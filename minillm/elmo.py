"""ELMo's bidirectional language model (Peters et al. 2018), the tutorial's first generation:
"ELMo：双向 LSTM + 语言模型".

Two language models read the same sentence, one from each end (Peters et al. 2018, §3.1):

    forward LM :  log p(t_1..t_N) = Σ_k log p(t_k | t_1 .. t_{k-1})
    backward LM:  log p(t_1..t_N) = Σ_k log p(t_k | t_{k+1} .. t_N)
    L = -Σ_k [ log p(t_k | t_<k; Θx, →Θ_LSTM, Θs) + log p(t_k | t_>k; Θx, ←Θ_LSTM, Θs) ]

The token representation Θx (the embedding ``wte``) and the softmax Θs (``softmax.w``,
``softmax.b``, its own matrix, as in the paper and bilm-tf, not tied to the embedding) are
shared by the two directions; the two L-layer LSTM stacks (``fwd.*``, ``bwd.*``) are separate.

Framing, as bilm-tf's: the forward LM reads [BOS] w_1 .. w_n and predicts w_1 .. w_n [EOS]; the
backward LM is the same kind of left-to-right LSTM run over the reversed sentence: it reads
[EOS] w_n .. w_1 and predicts w_n .. w_1 [BOS]. Both streams are batched as (2, B, T): index 0
the forward stream, 1 the backward stream.

Layers (Peters et al. 2018, §3.4; bilm-tf's ResidualWrapper): x^(1) = LSTM_1(x^(0)), and from
the second layer on x^(j) = LSTM_j(x^(j-1)) + x^(j-1), a residual connection. The top layer's
output feeds the shared softmax.

The ELMo representation of word k is a learned mix of the biLM's L + 1 layers (eq. 1):

    ELMo_k = γ Σ_{j=0..L} softmax(s)_j h_{k,j},   h_{k,0} = [x_k; x_k],  h_{k,j} = [→h_{k,j}; ←h_{k,j}]

(``elmo_layers`` and ``scalar_mix_forward``). Filling a blank with the two directions is
"shallow" bidirectionality: two one-way predictions multiplied, p ∝ p_fwd(w | left) p_bwd(w |
right) (``shallow_fill_distribution``), where BERT's encoder reads both sides at every layer.

Left out, to stay small: the character CNN and highway layers (a word embedding instead), the
LSTM projection (LSTMP; here the LSTM width is the embedding width, C), cell and projection
clipping, sampled softmax (the full softmax instead), dropout, and the state carried from one
batch to the next (every sentence starts from the zero state, with [BOS] / [EOS]).

Shape letters: B batch, T stream positions (n words + 1), C width, V vocabulary, L layers.

models.py registers this family in its MODELS and so imports this module; what this module uses
of models.py (the checks at the door, INIT_STD) it imports inside the functions that use it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from .layers import (
    IGNORE_INDEX,
    embedding_backward,
    embedding_forward,
    linear_backward,
    linear_forward,
    log_softmax,
    softmax_backward,
    softmax_forward,
)
from .lstm import lstm_backward, lstm_forward
from .grammar import COMMA, PERIOD
from .tokenizer import BOS_ID, EOS_ID, MASK_ID, PAD_ID, right_pad

# The two directions, in the order of the first axis of every (2, B, T, ...) array.
DIRECTIONS = ("fwd", "bwd")
# The initial bias of every forget gate: bilm-tf's forget_bias of 1.0 (TF's LSTMCell adds it
# inside the cell; here it is the bias's starting value), so a fresh cell keeps its memory
# (Gers et al. 2000 motivate it; Jozefowicz et al. 2015 measure it).
FORGET_BIAS = 1.0


@dataclass(frozen=True)
class ElmoConfig:
    """The shape of a biLM. Defaults make a tiny model of about the tiny BERT's size."""

    vocab_size: int  # V
    n_ctx: int = 48  # the longest stream: [BOS] + the words. An LSTM has no position table:
    #                  n_ctx only bounds the inputs (and so the memory a run needs)
    n_embd: int = 64  # C: the embedding width and the LSTM width (h and c), no projection
    n_layer: int = 2  # L: LSTM layers in each direction

    def __post_init__(self):
        for name in ("vocab_size", "n_ctx", "n_embd", "n_layer"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
                raise ValueError(f"ElmoConfig.{name} must be a positive integer, got {value!r}")

    def to_dict(self):
        return asdict(self)


def elmo_param_shapes(cfg):
    """Every biLM parameter name with its shape: the shared embedding, each direction's LSTM
    layers (W_x (C, 4C), W_h (C, 4C), b (4C,), gate blocks i, f, g, o), the shared softmax."""
    C, V = cfg.n_embd, cfg.vocab_size
    shapes = {"wte": (V, C)}
    for direction in DIRECTIONS:
        for layer in range(cfg.n_layer):
            pre = f"{direction}.{layer}."
            shapes.update({pre + "w_x": (C, 4 * C), pre + "w_h": (C, 4 * C), pre + "b": (4 * C,)})
    shapes.update({"softmax.w": (C, V), "softmax.b": (V,)})
    return shapes


def elmo_init(cfg, rng, dtype=np.float32):
    """Fresh parameters: LSTM weights U(-1/√C, 1/√C) (PyTorch's nn.LSTM), LSTM biases 0 but
    the forget gate's FORGET_BIAS, the embedding and the softmax N(0, 0.02), the softmax bias 0."""
    from .models import INIT_STD  # here, not at the top: models.py registers this module

    C = cfg.n_embd
    bound = 1.0 / math.sqrt(C)
    params = {}
    for name, shape in elmo_param_shapes(cfg).items():
        if name.endswith((".w_x", ".w_h")):
            value = rng.uniform(-bound, bound, size=shape)
        elif name == "softmax.b":
            value = np.zeros(shape)
        elif name.endswith(".b"):  # an LSTM bias, blocks [i | f | g | o]
            value = np.zeros(shape)
            value[C:2 * C] = FORGET_BIAS
        else:
            value = rng.normal(0.0, INIT_STD, size=shape)
        params[name] = value.astype(dtype)
    return params


# ----------------------------------------------------------------------------------------------
# The two streams


def make_streams(sequences):
    """Token-id sequences -> a biLM batch: inputs (2, B, T), targets (2, B, T), attention_mask
    (B, T), right-padded, T = longest n + 1.

        forward  (index 0): reads [BOS] w_1 .. w_n,  predicts w_1 .. w_n [EOS]
        backward (index 1): reads [EOS] w_n .. w_1,  predicts w_n .. w_1 [BOS]

    Both are next-token prediction over a bracketed row: [BOS] w_1 .. w_n [EOS], and the same
    row reversed. Padding gets [PAD] in the inputs and IGNORE_INDEX in the targets.
    """
    if len(sequences) == 0:
        raise ValueError("sequences must hold at least one sequence, got an empty batch")
    rows = [[BOS_ID, *seq, EOS_ID] for seq in sequences]  # [BOS] w_1 .. w_n [EOS]
    reversed_rows = [row[::-1] for row in rows]  # [EOS] w_n .. w_1 [BOS]
    inputs, targets = [], []
    for stream in (rows, reversed_rows):
        inputs.append(right_pad([row[:-1] for row in stream], PAD_ID)[0])  # (B, T)
        targets.append(right_pad([row[1:] for row in stream], IGNORE_INDEX)[0])  # (B, T)
    _, attention_mask = right_pad([row[:-1] for row in rows], PAD_ID)  # (B, T)
    return {"inputs": np.stack(inputs), "targets": np.stack(targets),
            "attention_mask": attention_mask}


# ----------------------------------------------------------------------------------------------
# Forward and backward


def lstm_stack_forward(x, params, prefix, n_layer):
    """One direction's L LSTM layers.  x (B, T, C) -> top (B, T, C), outputs, caches.

        x^(1) = LSTM_1(x^(0));   x^(j) = LSTM_j(x^(j-1)) + x^(j-1)  for j >= 2   (residual)

    ``outputs`` lists x^(1) .. x^(L), the layers ELMo mixes.
    """
    outputs, caches = [], []
    for layer in range(n_layer):
        pre = f"{prefix}{layer}."
        out, cache = lstm_forward(x, params[pre + "w_x"], params[pre + "w_h"], params[pre + "b"])
        x = out if layer == 0 else out + x  # (B, T, C); no skip from the embedding into layer 1
        outputs.append(x)
        caches.append(cache)
    return x, outputs, caches


def lstm_stack_backward(dtop, caches, prefix, grads):
    """dtop (B, T, C) -> dx^(0) (B, T, C); adds each layer's W_x, W_h, b gradients to grads."""
    dx = dtop
    for layer in reversed(range(len(caches))):
        pre = f"{prefix}{layer}."
        dx_in, grads[pre + "w_x"], grads[pre + "w_h"], grads[pre + "b"] = lstm_backward(
            dx, caches[layer])
        # x^(j) = LSTM_j(x^(j-1)) + x^(j-1): x^(j-1) gets the LSTM's gradient and, from the
        # second layer on, the residual's dx unchanged.
        dx = dx_in if layer == 0 else dx_in + dx
    return dx


def elmo_forward(params, cfg, ids):
    """The biLM.  ids (2, B, T): the forward and backward streams (make_streams) ->
    logits (2, B, T, V), cache.

        x = wte[ids]                                  (2, B, T, C)  Θx, shared
        top_fwd = LSTM stack fwd(x[0]);  top_bwd = LSTM stack bwd(x[1])
        logits[d] = top_d W_s + b_s                   Θs, shared by both directions
    """
    from .models import ContextTooShort, check_ids

    ids = np.asarray(ids)
    if ids.ndim != 3 or ids.shape[0] != 2:
        raise ValueError(f"ids must be the (2, B, T) forward and backward streams, got shape "
                         f"{ids.shape}")
    for d, direction in enumerate(DIRECTIONS):
        check_ids(ids[d], cfg.vocab_size, f"ids[{d}] ({direction})")
    if ids.shape[2] > cfg.n_ctx:
        raise ContextTooShort("ids", ids.shape[2], cfg.n_ctx, what="stream")
    x, c_tok = embedding_forward(ids, params["wte"])  # (2, B, T, C)
    top_f, outputs_f, caches_f = lstm_stack_forward(x[0], params, "fwd.", cfg.n_layer)
    top_b, outputs_b, caches_b = lstm_stack_forward(x[1], params, "bwd.", cfg.n_layer)
    top = np.stack([top_f, top_b])  # (2, B, T, C)
    logits, c_out = linear_forward(top, params["softmax.w"], params["softmax.b"])  # (2, B, T, V)
    cache = {"tok": c_tok, "fwd": caches_f, "bwd": caches_b, "out": c_out, "x": x,
             "outputs": (outputs_f, outputs_b)}
    return logits, cache


def elmo_backward(dlogits, cache):
    """dlogits (2, B, T, V) -> grads, a dict with the same keys as the parameters."""
    grads = {}
    # logits = top W_s + b_s: the softmax's gradient sums both directions' positions (shared).
    dtop, grads["softmax.w"], grads["softmax.b"] = linear_backward(dlogits, cache["out"])
    dx_f = lstm_stack_backward(dtop[0], cache["fwd"], "fwd.", grads)  # (B, T, C)
    dx_b = lstm_stack_backward(dtop[1], cache["bwd"], "bwd.", grads)  # (B, T, C)
    # x = wte[ids] for both streams: the shared embedding gets both directions' gradients.
    grads["wte"] = embedding_backward(np.stack([dx_f, dx_b]), cache["tok"])
    return grads


# ----------------------------------------------------------------------------------------------
# The ELMo representation: a scalar mix of the layers


def elmo_layers(params, cfg, ids):
    """The biLM's L + 1 layers for each word of one sentence (Peters et al. 2018, §3.2):

        h_{k,0} = [x_k; x_k],   h_{k,j} = [→h_{k,j}; ←h_{k,j}]   (j = 1 .. L)

    where →h_{k,j} has read w_1 .. w_k and ←h_{k,j} has read w_n .. w_k. ids: the n word ids
    (no [BOS] / [EOS]) -> R (L + 1, n, 2C).
    """
    batch = make_streams([list(ids)])
    _, cache = elmo_forward(params, cfg, batch["inputs"])
    x = cache["x"][0, 0, 1:]  # (n, C): the forward stream's positions 1 .. n read w_1 .. w_n
    layers = [np.concatenate([x, x], axis=-1)]
    outputs_f, outputs_b = cache["outputs"]
    for layer in range(cfg.n_layer):
        h_f = outputs_f[layer][0, 1:]  # (n, C): position k read w_k, forwards
        h_b = outputs_b[layer][0, 1:][::-1]  # (n, C): the backward stream reads w_k at n + 1 - k
        layers.append(np.concatenate([h_f, h_b], axis=-1))
    return np.stack(layers)  # (L + 1, n, 2C)


def scalar_mix_forward(layers, w, gamma):
    """``ELMo_k = γ Σ_j s_j h_{k,j}``, s = softmax(w)  (Peters et al. 2018, eq. 1).

    layers (L + 1, ..., D), w (L + 1,), gamma (a 0-d array) -> out (..., D), cache. bilm-tf
    starts w at 0 (s_j = 1 / (L + 1)) and γ at 1.
    """
    if np.shape(w) != layers.shape[:1]:
        raise ValueError(f"w must have shape {layers.shape[:1]}, one weight per layer, got "
                         f"{np.shape(w)}")
    if np.ndim(gamma) != 0:
        raise ValueError(f"gamma must be one number (a 0-d array), got shape {np.shape(gamma)}")
    s, c_sm = softmax_forward(w)  # (L + 1,)
    mixed = np.tensordot(s, layers, axes=1)  # (..., D) = Σ_j s_j h_j
    out = gamma * mixed
    return out, {"layers": layers, "sm": c_sm, "s": s, "gamma": gamma, "mixed": mixed}


def scalar_mix_backward(dout, cache):
    """dout (..., D) -> dlayers (L + 1, ..., D), dw (L + 1,), dgamma (0-d).

    out = γ · mixed, so dγ = Σ dout ⊙ mixed and dmixed = γ dout. mixed = Σ_j s_j h_j gives
    dh_j = s_j dmixed and ds_j = ⟨dmixed, h_j⟩; s = softmax(w) gives dw.
    """
    layers, s, gamma, mixed = cache["layers"], cache["s"], cache["gamma"], cache["mixed"]
    dgamma = np.asarray(np.sum(dout * mixed))
    dmixed = gamma * dout  # (..., D)
    ds = np.tensordot(layers, dmixed, axes=dmixed.ndim)  # (L + 1,): ⟨h_j, dmixed⟩
    dw = softmax_backward(ds, cache["sm"])  # (L + 1,)
    dlayers = s.reshape(-1, *([1] * dmixed.ndim)) * dmixed  # (L + 1, ..., D)
    return dlayers, dw, dgamma


# ----------------------------------------------------------------------------------------------
# Filling a blank with the two directions: shallow bidirectionality


def direction_log_probs(params, cfg, ids, position):
    """log p_fwd(w | w_<k) and log p_bwd(w | w_>k), each (V,), for the word at ``position``
    (k, counted from 0) of the sentence ``ids`` (n word ids; the one at k is not read).

    The forward LM reads [BOS] w_1 .. w_{k-1}, the backward LM [EOS] w_n .. w_{k+1}: the right
    context is read from the end of the sentence, so ``ids`` is a whole sentence.
    """
    from .models import check_finite, check_ids

    ids = np.asarray(ids)
    if ids.ndim != 1 or ids.size == 0:
        raise ValueError(f"ids must be one sentence's word ids, got shape {ids.shape}")
    ids = check_ids(ids[None], cfg.vocab_size, "ids")[0].tolist()  # (n,): ints, not 7.5 read as 7
    if (isinstance(position, bool) or not isinstance(position, (int, np.integer))
            or not 0 <= position < len(ids)):
        raise ValueError(f"position must be an integer in [0, {len(ids)}), got {position!r}")
    left = [BOS_ID, *ids[:position]]  # the forward stream up to the blank
    right = [EOS_ID, *ids[position + 1:][::-1]]  # the backward stream up to the blank
    streams, _ = right_pad([left, right], PAD_ID)  # (2, T): padding after both changes nothing
    logits, _ = elmo_forward(params, cfg, streams[:, None, :])  # (2, 1, T, V)
    check_finite(logits)
    logp_f = log_softmax(logits[0, 0, len(left) - 1].astype(np.float64))  # (V,)
    logp_b = log_softmax(logits[1, 0, len(right) - 1].astype(np.float64))  # (V,)
    return logp_f, logp_b


def shallow_fill_distribution(params, cfg, ids, position):
    """ELMo's fill of one blank: ``p(w) = p_fwd(w | left) p_bwd(w | right) / Σ_v p_fwd(v | left)
    p_bwd(v | right)``, the two one-way predictions multiplied and normalised. -> (V,).

    Even two perfect one-way models do not give the true posterior this way: by Bayes,
    P(w | left, right) ∝ P(w | left) P(right | left, w), and p_bwd(w | right) is P(w | right),
    which counts w's own prior a second time and does not see the left context at all.
    """
    logp_f, logp_b = direction_log_probs(params, cfg, ids, position)
    return np.exp(log_softmax(logp_f + logp_b))  # (V,): the normalised product


def mask_position(ids):
    """The index of the one [MASK] in ``ids``; a ValueError for none or several (the shallow
    fill reads each side with a one-way model, which never saw a [MASK])."""
    where = [k for k, i in enumerate(ids) if i == MASK_ID]
    if len(where) != 1:
        raise ValueError(f"ELMo fills exactly one [MASK] per text, got {len(where)}")
    return where[0]


# ----------------------------------------------------------------------------------------------
# Measured: shallow (ELMo) against deep (BERT) bidirectionality on the grammar


def blanked_sentences(grammar, n, rng):
    """n sentences drawn from the grammar, each with one word (not punctuation) chosen
    uniformly and replaced by [MASK]: a list of word lists."""
    blanks = []
    for sentence in grammar.sample(rng, n):
        words = list(sentence.words)
        choices = [k for k, w in enumerate(words) if w not in (COMMA, PERIOD)]
        words[choices[int(rng.integers(len(choices)))]] = "[MASK]"
        blanks.append(words)
    return blanks


def true_one_way_distributions(grammar, words):
    """What two perfect one-way LMs predict for the one [MASK] of the sentence ``words``, from
    the grammar's sentences and their probabilities P(s):

        P(w | left)  = Σ_{s starts with left w} P(s) / Σ_{s starts with left, longer} P(s)
        P(w | right) = Σ_{s ends with w right} P(s) / Σ_{s ends with right, longer} P(s)

    Returns the two as {word: P}. Their normalised product is the best a shallow fill can do.
    """
    k = list(words).index("[MASK]")
    left, right = tuple(words[:k]), tuple(words[k + 1:])
    forward, backward = {}, {}
    for sent, p in grammar.support().items():
        if len(sent) > len(left) and sent[:len(left)] == left:
            forward[sent[len(left)]] = forward.get(sent[len(left)], 0.0) + p
        start = len(sent) - len(right)  # where ``right`` would begin, ending the sentence
        if start > 0 and sent[start:] == right:
            backward[sent[start - 1]] = backward.get(sent[start - 1], 0.0) + p
    return ({w: p / sum(forward.values()) for w, p in forward.items()},
            {w: p / sum(backward.values()) for w, p in backward.items()})


def fill_scores(truth, probs, tokenizer):
    """How a fill ``probs`` (V,) does against the true posterior ``truth`` {word: P}:
    KL(truth || model) = Σ_w P(w) log(P(w) / p(w)) in nats, and whether the model's most
    probable token is the truth's most probable word (1.0 or 0.0)."""
    kl = sum(p * (math.log(p) - math.log(max(float(probs[tokenizer.encode(w)[0]]), 1e-300)))
             for w, p in truth.items())
    best = max(truth, key=truth.get)
    return kl, float(int(np.argmax(probs)) == tokenizer.encode(best)[0])


def compare_fills(elmo, bert, tokenizer, grammar, blanks):
    """Shallow against deep bidirectionality: each model's fill of every blank of ``blanks``
    (blanked_sentences), scored against the grammar's true posterior of the whole sentence,
    P(w | both sides) (Grammar.masked_word_distribution with as_prefix=False).

    elmo, bert: (params, cfg) pairs. Returns {model: {"kl": mean KL(truth || model) in nats,
    "accuracy": share of blanks whose argmax is the truth's}} for "elmo" (the normalised
    product), "elmo_fwd" and "elmo_bwd" (each direction alone), "bert", "shallow_truth" (the
    normalised product of two perfect one-way LMs, true_one_way_distributions: the best any
    shallow fill can do), and "n" the blanks.
    """
    from .generate import fill_mask_distributions
    from .tokenizer import CLS_ID, SEP_ID

    if len(blanks) == 0:  # the means below would be 0/0
        raise ValueError("blanks must hold at least one sentence, got none")
    names = ("elmo", "elmo_fwd", "elmo_bwd", "bert", "shallow_truth")
    totals = {name: np.zeros(2) for name in names}
    for words in blanks:
        truth = grammar.masked_word_distribution(words, as_prefix=False)
        ids = [MASK_ID if w == "[MASK]" else tokenizer.encode(w)[0] for w in words]
        k = mask_position(ids)
        logp_f, logp_b = direction_log_probs(*elmo, ids, k)
        (_, bert_probs), = fill_mask_distributions(*bert, [CLS_ID, *ids, SEP_ID])
        true_f, true_b = true_one_way_distributions(grammar, words)
        product = np.zeros(len(tokenizer))  # (V,): P(w | left) P(w | right), the words of both
        for w in true_f.keys() & true_b.keys():
            product[tokenizer.encode(w)[0]] = true_f[w] * true_b[w]
        fills = {"elmo": np.exp(log_softmax(logp_f + logp_b)), "elmo_fwd": np.exp(logp_f),
                 "elmo_bwd": np.exp(logp_b), "bert": bert_probs,
                 "shallow_truth": product / product.sum()}
        for name, probs in fills.items():
            totals[name] += fill_scores(truth, probs, tokenizer)
    result = {name: {"kl": float(t[0] / len(blanks)), "accuracy": float(t[1] / len(blanks))}
              for name, t in totals.items()}
    result["n"] = len(blanks)
    return result


def compare_fill_checkpoints(elmo_path, bert_path, n_blanks=500, seed=0):
    """compare_fills on the checkpoints of ``train --objective elmo`` and ``train --objective
    mlm`` (both on the built-in grammar), over n_blanks blanked_sentences drawn from ``seed``.
    Returns compare_fills's dict, with each model's parameter count under "params"."""
    from .checkpoint import load_checkpoint
    from .grammar import default_grammar

    if isinstance(n_blanks, bool) or not isinstance(n_blanks, (int, np.integer)) or n_blanks < 1:
        raise ValueError(f"n_blanks must be a positive integer, got {n_blanks!r}")
    grammar = default_grammar()
    models = {}
    for name, path, objective in (("elmo", elmo_path, "elmo"), ("bert", bert_path, "mlm")):
        cfg, train_cfg, tokenizer, state = load_checkpoint(path)
        if train_cfg.objective != objective or tokenizer.vocab != grammar.tokenizer().vocab:
            raise ValueError(f"{path!r} is not a checkpoint of --objective {objective} trained "
                             f"on the built-in grammar")
        models[name] = (state["params"], cfg)
    blanks = blanked_sentences(grammar, n_blanks, np.random.default_rng(seed))
    result = compare_fills(models["elmo"], models["bert"], tokenizer, grammar, blanks)
    result["params"] = {name: int(sum(v.size for v in models[name][0].values()))
                        for name in models}
    return result
