"""How much memory a run will need, estimated before anything is allocated.

A size that is too large for the machine (``--batch-size 1000000000``, ``--n-ctx 1000000000``,
a checkpoint's stored settings) should fail at once, naming the option and the memory it would
need, rather than minutes later with a ``MemoryError``. The estimates here are upper bounds,
within about a factor of two of what a run really uses (the activation cache of the backward
pass, counted exactly by ``analytic_cache_bytes_per_token``, doubled for the gradients that
flow beside it; four copies of the parameters for AdamW), so that nothing that fits is refused.

``available_bytes`` is what this process may use: the machine's memory, or less where an
address-space limit (``ulimit -v``) is set.
"""

from __future__ import annotations

import math
import os

MODEL_KINDS = ("gpt", "bert", "seq2seq", "xlnet", "elmo", "caption")  # models.MODELS's families
# Parameters, their gradients and AdamW's two moments.
PARAMETER_COPIES = 4
# The backward pass holds the cache and, beside it, gradients of about the same size.
CACHE_FACTOR = 2
# The backward pass of one attention makes the gradient of its weights, of its scores, and
# softmax's product of the two before the sum, all (B, H, T, S), while every layer's weights are
# still cached; the output layer's backward makes dlogits and a temporary, (B, T, V) each.
# (Measured: BERT at --batch-size 99 --n-head 16 --n-ctx 256 peaked at 2.41 GB, where twice
# the cache alone is 2.12 GB; tests/test_checkpoint.py compares with tracemalloc.)
ATTENTION_TEMPORARIES = 3
OUTPUT_TEMPORARIES = 2
# A sentence of the built-in grammar in a --pool: token ids as a Python list and its index
# (about 160 bytes measured with tracemalloc, 270 at the peak of drawing); with room to spare.
POOL_BYTES_PER_SENTENCE = 512
# A picture of caption's --pictures, held while the models answer about it: its 16×16×3 float64
# image (6144 bytes) and its sentence (about 7200 bytes measured with tracemalloc).
BYTES_PER_PICTURE = 8192


def available_bytes():
    """The memory this process may still allocate: physical memory, or the room left under an
    address-space limit (RLIMIT_AS) if one is set. None where neither can be read."""
    limits = []
    try:
        limits.append(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):
        pass
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
        if soft != resource.RLIM_INFINITY:
            limits.append(max(soft - _address_space_in_use(), 0))
    except (ImportError, OSError, ValueError):
        pass
    return min(limits) if limits else None


def _address_space_in_use():
    """This process's virtual memory size (Linux: VmSize in /proc/self/status), 0 elsewhere."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def format_bytes(n):
    """1536 -> '1.50 KB' (powers of 1024)."""
    for unit in ("bytes", "KB", "MB", "GB", "TB", "PB"):
        if n < 1024 or unit == "PB":
            return f"{n:,.0f} {unit}" if unit == "bytes" else f"{n:,.2f} {unit}"
        n /= 1024


def check_fits(need, what):
    """ValueError if ``need`` bytes exceed what this process may use; ``what`` names the
    options (or the checkpoint fields) that ask for it."""
    room = available_bytes()
    if room is not None and need > room:
        raise ValueError(f"{what} would need about {format_bytes(need)} of memory, more than the "
                         f"{format_bytes(room)} this process can have")


def parameter_count(model, cfg):
    """The number of parameters of a model, from its table of shapes (nothing allocated).

    The table is built for at most two blocks of each stack: the count is linear in the number
    of blocks, and a config asking for a billion of them must not build a billion-entry table
    just to be refused."""
    from dataclasses import replace

    from .models import MODELS

    def count(**layers):
        shapes = MODELS[model].param_shapes(replace(cfg, **layers))
        return sum(math.prod(shape) for shape in shapes.values())

    stacks = [name for name in ("n_layer", "n_enc_layer", "n_dec_layer") if hasattr(cfg, name)]
    ones = {name: 1 for name in stacks}
    base = count(**ones)
    total = base
    for name in stacks:  # each further block of a stack adds what the second one added
        per_block = count(**{**ones, name: 2}) - base
        total += (getattr(cfg, name) - 1) * per_block
    return total


def training_step_bytes(model, cfg, batch_size, itemsize):
    """An upper bound on the memory of training ``model`` (one of MODEL_KINDS) with
    config ``cfg`` on batches of ``batch_size`` sequences of up to n_ctx tokens."""
    # The fused image-text GPT's sequence holds its N image tokens too (multimodal.py).
    T = cfg.n_ctx + getattr(cfg, "n_image_tokens", 0)
    return (PARAMETER_COPIES * parameter_count(model, cfg) * itemsize
            + forward_backward_bytes(model, cfg, batch_size, T, itemsize))


def forward_backward_bytes(model, cfg, batch_size, T, itemsize):
    """An upper bound on the activations of a forward and backward pass (or of a forward pass
    alone, which keeps less) over ``batch_size`` sequences of T tokens: the cache the backward
    pass needs, twice (the gradients flowing beside it), and the temporaries of the largest
    single layers on top: one attention's backward (scores, weights and their gradients, H·T²
    each) and the output layer's (probabilities and their gradient, V each)."""
    tokens = batch_size * T
    cache = analytic_cache_bytes_per_token(model, cfg, T, itemsize) * tokens
    # the attention with the most heads (an ELMo has none)
    heads = max(getattr(cfg, "n_head", 0), getattr(cfg, "n_dec_head", 0))
    attention = ATTENTION_TEMPORARIES * batch_size * heads * T * T * itemsize
    output = OUTPUT_TEMPORARIES * tokens * cfg.vocab_size * itemsize
    return CACHE_FACTOR * cache + attention + output


def analytic_cache_bytes_per_token(model, cfg, T, itemsize=4):
    """What a backward pass needs to keep, in bytes per token (of the B·T predicted tokens).

    Per block, per token, in floats: each linear layer's input, each layer norm's normalised
    input and 1/std, attention's q, k, v and its weights att (H·S per query, stored in full even
    where causal), GELU's input and its Φ(x) (kept so that the backward pass need not compute
    the tanh or erf again; GELU's output is the next linear's input):

        GPT, BERT block     ln (C+1) + c_attn in C + qkv 3C + att H·T + c_proj in C
                            + ln (C+1) + c_fc in C + gelu in, Φ 2F + c_proj in F
                          = 8C + 3F + H·T + 2
        BART decoder block  self: c_attn in C + qkv 3C + att H'·T + c_proj in C + ln (C+1)
                            cross: c_q in C + q C + att H'·S + c_proj in C + ln (C+1)
                                   + k, v 2C per source token
                            ffn: c_fc in C + gelu in, Φ 2F' + c_proj in F' + ln (C+1)
                          = 12C + 3F' + H'·T + H'·S + 3, + 2C per source token
                            (H', F': the decoder's heads and width, n_dec_head, n_dec_inner)

        GPT   L·block + ln_f (C+1) + h C + softmax V                        + ids, targets
        BERT  L·block + ln_e (C+1) + head: dense in C + gelu in, Φ 2C + ln (C+1) + t C
              + softmax V + pooled C per sequence                          + ids, types, targets
        BART  encoder (per source token): L·block + ln_e (C+1) + its output C
              decoder: L·dec block + ln_e (C+1) + y C + softmax V            + src, ids, targets
        XLNet L·(a BERT block for the content stream + the query stream's: g in C + q C
              + att H·T + c_proj in C + two ln 2(C+1) + c_fc in C + 3F) + g C + softmax V
              = L·(14C + 6F + 2H·T + 4) + C + V                        + ids, order, targets,
              and the two streams' masks, T bytes each

        ELMo  per direction and layer (an LSTM step): x C, h_prev C, c_prev C, the gates
              i, f, g, o 4C, tanh(c) C, the residual sum C = 9C; two directions, L layers;
              the embedding 2C, the top layer 2C, the softmax 2V (both directions'
              positions of one token)                                  + 2 ids, 2 targets

        fused image-text GPT (T = N image tokens + the text): a BART decoder block with S ≤ T,
              which bounds both fusions (prefix: a GPT block over T; cross: the text's blocks
              attend over N), + ln_f (C+1) + h C + softmax V + a patch's pixels 3P²
              = L·(12C + 3F + 2H·T + 2C + 3) + 2C + V + 3P² + 1       + ids, targets

    Token ids and targets are int64 (8 bytes each). The loss adds, per predicted token, its
    log-probability (a float: the per-step terms of the chain rule) and whether it counts
    (1 byte). BART here has S = T.
    """
    if model == "elmo":
        C, V = cfg.n_embd, cfg.vocab_size
        floats = 2 * cfg.n_layer * 9 * C + 2 * C + 2 * C + 2 * V
        return itemsize * (floats + 2) + 8 * 4 + 2
    C, H, F, V = cfg.n_embd, cfg.n_head, cfg.n_inner, cfg.vocab_size
    block = 8 * C + 3 * F + H * T + 2
    if model == "gpt":
        floats = cfg.n_layer * block + (C + 1) + C + V
        ints = 2
    elif model == "bert":
        floats = cfg.n_layer * block + (C + 1) + C + 2 * C + (C + 1) + C + V + C / T
        ints = 3
    elif model == "seq2seq":
        S = T
        encoder = (cfg.n_enc_layer * (8 * C + 3 * F + H * S + 2) + (C + 1) + C) * S / T
        H_dec, F_dec = cfg.n_dec_head, cfg.n_dec_inner
        dec_block = 12 * C + 3 * F_dec + H_dec * T + H_dec * S + 3 + 2 * C * S / T
        floats = encoder + cfg.n_dec_layer * dec_block + (C + 1) + C + V
        ints = 3
    elif model == "xlnet":
        floats = cfg.n_layer * (block + 6 * C + 3 * F + H * T + 2) + C + V + 2 * T / itemsize
        ints = 3
    elif model == "caption":
        floats = (cfg.n_layer * (12 * C + 3 * F + 2 * H * T + 2 * C + 3) + (C + 1) + C + V
                  + 3 * cfg.patch ** 2)
        ints = 2
    else:
        raise ValueError(f"model must be one of {', '.join(MODEL_KINDS)}, got {model!r}")
    return itemsize * (floats + 1) + 8 * ints + 1
