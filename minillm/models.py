"""The model families of the tutorial, built from the block of transformer.py.

GPT (GPT-2's architecture): pre-LN blocks, causal self-attention, learned positions, a final
layer norm, and an output layer tied to the token embedding; with ``GPTConfig.arch = "gpt1"``,
GPT-1's: the same decoder with post-LN blocks and no final layer norm. BERT: post-LN blocks
that see both sides, segment embeddings, the MLM and NSP heads. The encoder-decoder (BART's
architecture): a BERT-like encoder and a GPT-like decoder whose blocks also attend to the
encoder's output. XLNet's config and parameter table are here too; its two-stream forward and
backward are in xlnet.py.

Parameters live in one flat ``dict[str, np.ndarray]`` with dotted names (``gpt_param_shapes``
and its siblings list them with their shapes). Gradients come back as a new dict with exactly
the same keys.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Callable, NamedTuple

import numpy as np

from .layers import (
    causal_mask,
    embedding_backward,
    embedding_forward,
    gelu_erf_backward,
    gelu_erf_forward,
    layernorm_backward,
    layernorm_forward,
    linear_backward,
    linear_forward,
    position_embedding_backward,
    position_embedding_forward,
)
from .options import OptionError
from .transformer import BlockSpec, stack_backward, stack_forward


# The GPTs GPTConfig.arch can name.
GPT_ARCHS = ("gpt2", "gpt1")


@dataclass(frozen=True)
class GPTConfig:
    """The shape of a GPT. Defaults make the demo's tiny model (about 0.1 M parameters)."""

    vocab_size: int  # V: rows of the token embedding and columns of the logits
    n_ctx: int = 48  # the longest sequence, in tokens: rows of the position embedding
    n_embd: int = 64  # C: model width
    n_head: int = 4  # H: heads per attention; C must be a multiple of H
    n_layer: int = 2  # L: blocks
    n_inner: int | None = None  # F: feed-forward width; None means 4C, as GPT-2
    ln_eps: float = 1e-5  # layer-norm epsilon of GPT-2 (its config's layer_norm_epsilon)
    # Divide block l's attention scores also by l + 1 (transformers' GPT2Config setting of
    # this name; GPT-2 itself does not).
    scale_attn_by_inverse_layer_idx: bool = False
    # Which GPT: "gpt2" (Radford et al. 2019): pre-LN blocks x + f(LN(x)) and a final layer
    # norm; "gpt1" (Radford et al. 2018): post-LN blocks LN(x + f(x)) and no final layer norm.
    arch: str = "gpt2"

    def __post_init__(self):
        for name in ("vocab_size", "n_ctx", "n_embd", "n_head"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
                raise ValueError(
                    f"{type(self).__name__}.{name} must be a positive integer, got {value!r}")
        if self.n_embd % self.n_head:  # each head takes C/H of the width
            raise OptionError("{n_embd} must be a multiple of {n_head}", n_embd=self.n_embd,
                              n_head=self.n_head)
        # Resolve the defaults, so equal models have equal configs: F = 4C, and a BART
        # decoder's heads and width those of its encoder.
        if self.n_inner is None:
            object.__setattr__(self, "n_inner", 4 * self.n_embd)
        for name, default in (("n_dec_head", self.n_head), ("n_dec_inner", self.n_inner)):
            if hasattr(self, name) and getattr(self, name) is None:
                object.__setattr__(self, name, default)
        # The block counts (n_layer, or a BART's n_enc_layer and n_dec_layer), the fields only
        # some families have (BERT's segments, BART's decoder) and the feed-forward width:
        # positive integers too.
        for name in ("n_layer", "n_enc_layer", "n_dec_layer", "n_inner", "n_types", "n_dec_head",
                     "n_dec_inner"):
            value = getattr(self, name, 1)
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
                raise ValueError(
                    f"{type(self).__name__}.{name} must be a positive integer, got {value!r}")
        if self.n_embd % getattr(self, "n_dec_head", 1):  # no command-line option sets it
            raise ValueError(f"n_embd={self.n_embd} must be a multiple of "
                             f"n_dec_head={self.n_dec_head}")
        for name in ("scale_attn_by_inverse_layer_idx", "scale_embedding"):
            if not isinstance(getattr(self, name, False), bool):
                raise ValueError(f"{type(self).__name__}.{name} must be true or false, "
                                 f"got {getattr(self, name)!r}")
        if isinstance(self.ln_eps, bool) or not isinstance(self.ln_eps, (int, float)) or not (
                0 < self.ln_eps < math.inf):
            raise ValueError(
                f"{type(self).__name__}.ln_eps must be a finite number > 0, got {self.ln_eps!r}")
        if getattr(self, "arch", "gpt2") not in GPT_ARCHS:
            raise ValueError(f"{type(self).__name__}.arch must be one of {GPT_ARCHS}, "
                             f"got {self.arch!r}")

    def block_spec(self):
        # GPT-2 normalizes before each sublayer, GPT-1 after (the post-LN of Vaswani et al.).
        return BlockSpec(n_head=self.n_head, ln_eps=self.ln_eps, pre_ln=self.arch == "gpt2",
                         activation="gelu_tanh",
                         scale_attn_by_inverse_layer_idx=self.scale_attn_by_inverse_layer_idx)

    def to_dict(self):
        return asdict(self)


# ----------------------------------------------------------------------------------------------
# Checks at the door: a bad input is refused here, with its name and value, not three layers down


def check_ids(ids, vocab_size, name="ids"):
    """ids must be a (B, T) integer array with every value in [0, vocab_size)."""
    ids = np.asarray(ids)
    if ids.ndim != 2:
        raise ValueError(f"{name} must be a (B, T) array of token ids, got shape {ids.shape}")
    if ids.dtype.kind not in "iu":
        raise ValueError(f"{name} must hold integers, got dtype {ids.dtype}")
    if ids.shape[0] == 0 or ids.shape[1] == 0:
        raise ValueError(f"{name} must hold at least one token, got shape {ids.shape}")
    bad = (ids < 0) | (ids >= vocab_size)
    if bad.any():
        b, t = np.argwhere(bad)[0]
        raise ValueError(f"{name}[{b}, {t}] = {ids[b, t]} is outside the vocabulary "
                         f"[0, {vocab_size})")
    return ids


def check_mask(mask, shape, name):
    """An attention mask must have the shape of its ids and hold only 0 and 1."""
    mask = np.asarray(mask)
    if mask.shape != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {mask.shape}")
    if not np.isin(mask, (0, 1)).all():
        raise ValueError(f"{name} must hold only 0 and 1, got values {np.unique(mask)[:5]}")
    return mask


class NonFiniteOutput(ValueError):
    """The model's logits hold a NaN or an infinity: parameters that grew too large in training
    (a learning rate far too high), so that the forward pass overflows. Nothing sensible can be
    drawn or ranked from them."""


def check_finite(logits):
    """``logits`` unchanged if every value is finite; NonFiniteOutput otherwise."""
    if not np.all(np.isfinite(logits)):
        raise NonFiniteOutput("the model's output (its logits) is not finite")
    return logits


class ContextTooShort(ValueError):
    """A sequence longer than the model's context n_ctx (its position table has n_ctx rows).
    ``length`` is the sequence's length, ``n_ctx`` the model's: train names the option."""

    def __init__(self, name, length, n_ctx, what="sequence"):
        self.length, self.n_ctx = length, n_ctx
        super().__init__(f"{name}: a {what} of {length} tokens is longer than the model's "
                         f"n_ctx={n_ctx}")


def check_inputs(cfg, ids, mask, ids_name="ids", mask_name="attention_mask", start=0):
    """The checks every forward pass makes: ``ids`` (B, T) against the vocabulary; the
    sequence, after ``start`` positions already processed, against the context n_ctx; ``mask``
    against the shape (B, start + T). A missing mask means every position is a real token.
    Returns ids and the mask as booleans."""
    ids = check_ids(ids, cfg.vocab_size, ids_name)
    B, T = ids.shape
    if start + T > cfg.n_ctx:
        raise ContextTooShort(ids_name, start + T, cfg.n_ctx)
    if mask is None:
        return ids, np.ones((B, start + T), dtype=bool)
    return ids, check_mask(mask, (B, start + T), mask_name).astype(bool)


def check_params(params, shapes, what="parameters"):
    """Every mismatch between a parameter dict and the model's table of shapes, listed at once:
    missing names, unknown names, wrong shapes, and dtypes that are not one float dtype."""
    problems = [f"missing {n} {s}" for n, s in shapes.items() if n not in params]
    problems += [f"unexpected {n}" for n in params if n not in shapes]
    problems += [f"{n} has shape {tuple(params[n].shape)}, the model needs {tuple(s)}"
                 for n, s in shapes.items() if n in params and tuple(params[n].shape) != tuple(s)]
    dtypes = {str(np.asarray(v).dtype) for v in params.values()}
    if len(dtypes) > 1 or not dtypes <= {"float32", "float64"}:
        problems.append(f"dtypes {sorted(dtypes)}: all must be float32 or all float64")
    if problems:
        raise ValueError(f"{what} do not match the model ({len(problems)} problem"
                         f"{'s' if len(problems) > 1 else ''}): " + "; ".join(problems))


# ----------------------------------------------------------------------------------------------
# Parameters


def block_shapes(pre, C, F, cross=False):
    """Names and shapes of one block's parameters (see transformer.py's docstring)."""
    shapes = {
        pre + "ln_1.g": (C,), pre + "ln_1.b": (C,),
        pre + "attn.c_attn.w": (C, 3 * C), pre + "attn.c_attn.b": (3 * C,),
        pre + "attn.c_proj.w": (C, C), pre + "attn.c_proj.b": (C,),
    }
    if cross:
        shapes.update({
            pre + "ln_x.g": (C,), pre + "ln_x.b": (C,),
            pre + "xattn.c_q.w": (C, C), pre + "xattn.c_q.b": (C,),
            pre + "xattn.c_kv.w": (C, 2 * C), pre + "xattn.c_kv.b": (2 * C,),
            pre + "xattn.c_proj.w": (C, C), pre + "xattn.c_proj.b": (C,),
        })
    shapes.update({
        pre + "ln_2.g": (C,), pre + "ln_2.b": (C,),
        pre + "mlp.c_fc.w": (C, F), pre + "mlp.c_fc.b": (F,),
        pre + "mlp.c_proj.w": (F, C), pre + "mlp.c_proj.b": (C,),
    })
    return shapes


def gpt_param_shapes(cfg):
    """Every GPT parameter name with its shape, in the order a reader meets them. GPT-1 has no
    final layer norm (no ``ln_f``)."""
    C = cfg.n_embd
    shapes = {"wte": (cfg.vocab_size, C), "wpe": (cfg.n_ctx, C)}
    for layer in range(cfg.n_layer):
        shapes.update(block_shapes(f"h.{layer}.", C, cfg.n_inner))
    if cfg.arch == "gpt2":
        shapes.update({"ln_f.g": (C,), "ln_f.b": (C,)})
    return shapes


# GPT-2's initialisation (Radford et al. 2019, and its released code): weights N(0, 0.02),
# biases 0, layer-norm gains 1, and the projections that write into the residual stream
# (attn.c_proj, mlp.c_proj) scaled down by 1/sqrt(2L) so the stream's variance does not grow
# with depth.
INIT_STD = 0.02


def init_params(shapes, rng, dtype=np.float32, proj_std=INIT_STD):
    """Parameters for a table of shapes, drawn from ``rng`` in the table's order: layer-norm
    gains (``.g``) 1, biases (``.b``, ``mlm.bias``, ``out_bias``) 0, every other tensor
    N(0, INIT_STD), except the residual projections (``c_proj.w``) N(0, proj_std)."""
    params = {}
    for name, shape in shapes.items():
        if name.endswith(".g"):
            value = np.ones(shape)
        elif name.endswith(".b") or name.endswith("bias"):
            value = np.zeros(shape)
        else:
            std = proj_std if name.endswith("c_proj.w") else INIT_STD
            value = rng.normal(0.0, std, size=shape)
        params[name] = value.astype(dtype)
    return params


def gpt_init(cfg, rng, dtype=np.float32):
    """Fresh GPT-2 parameters for ``cfg``, with its residual projections scaled by 1/sqrt(2L);
    GPT-1's (Radford et al. 2018, section 4.1: N(0, 0.02)) without that scaling, which GPT-2
    introduced."""
    if cfg.arch == "gpt1":
        return init_params(gpt_param_shapes(cfg), rng, dtype)
    return init_params(gpt_param_shapes(cfg), rng, dtype, INIT_STD / math.sqrt(2 * cfg.n_layer))


# ----------------------------------------------------------------------------------------------
# Forward and backward


def gpt_forward(params, cfg, ids, attention_mask=None, past=None):
    """GPT-2's forward pass, or GPT-1's (``cfg.arch``).  ids (B, T) -> logits (B, T, V), cache.

        GPT-2 (Radford et al. 2019)               GPT-1 (Radford et al. 2018, eq. 2)
        x = wte[ids] + wpe[t]                     x = wte[ids] + wpe[t]             (B, T, C)
        x = block_l(x), pre-LN:                   x = block_l(x), post-LN:
            x = x + attn(LN_1(x))                     x = LN_1(x + attn(x))
            x = x + mlp(LN_2(x))                      x = LN_2(x + mlp(x))
        logits = LN_f(x) wte^T                    logits = x wte^T    (no final layer norm)

    Both with causal self-attention and the output layer tied to the token embedding.

    ``attention_mask`` (B, S) marks real tokens with 1 and padding with 0; padding is never
    attended to. ``past`` (generation only) is the ``cache`` of an earlier call; the T new
    tokens then sit at positions S0 .. S0+T-1 after the S0 already processed, and
    ``attention_mask`` must cover all S = S0 + T positions.
    """
    S0 = 0 if past is None else past["S"]
    ids, attention_mask = check_inputs(cfg, ids, attention_mask, start=S0)
    B, T = ids.shape
    S = S0 + T
    tok, c_tok = embedding_forward(ids, params["wte"])  # (B, T, C)
    pos, c_pos = position_embedding_forward(T, params["wpe"], offset=S0)  # (T, C)
    x = tok + pos  # (B, T, C)
    # A query at position i sees key j when j <= i and key j is a real token.
    allowed = causal_mask(T, S)[None, None] & attention_mask[:, None, None, :]
    blocks_past = None if past is None else past["blocks"]
    x, blocks = stack_forward(x, params, "h.", cfg.n_layer, cfg.block_spec(), allowed,
                              past=blocks_past)
    if cfg.arch == "gpt2":  # the final layer norm: each pre-LN block left x unnormalized
        h, c_lnf = layernorm_forward(x, params["ln_f.g"], params["ln_f.b"],
                                     cfg.ln_eps)  # (B, T, C)
    else:  # GPT-1: the last block's LN_2 already normalized x
        h, c_lnf = x, None  # (B, T, C)
    logits = h @ params["wte"].T  # (B, T, V)
    cache = {"tok": c_tok, "pos": c_pos, "blocks": blocks, "lnf": c_lnf, "h": h,
             "wte": params["wte"], "S": S}
    return logits, cache


def gpt_backward(dlogits, cache, dh_head=None):
    """dlogits (B, T, V) -> grads, a dict with the same keys as the parameters.

    ``dh_head`` (B, T, C), optional: the gradient that another head reading the final hidden
    states ``h = cache["h"]`` sends back (the scalar heads of rlhf.py: the reward model's and
    the value function's). It is added to the output layer's: both read the same h.
    """
    grads = {}
    h, wte = cache["h"], cache["wte"]
    V, C = wte.shape
    # logits = h wte^T: the output layer's part of the tied embedding's gradient.
    dwte_out = dlogits.reshape(-1, V).T @ h.reshape(-1, C)  # (V, C)
    dh = dlogits @ wte  # (B, T, C)
    if dh_head is not None:
        dh = dh + dh_head  # h feeds the output layer and the other head: the gradients add
    if cache["lnf"] is not None:  # GPT-2: h = LN_f(x)
        dx, grads["ln_f.g"], grads["ln_f.b"] = layernorm_backward(dh, cache["lnf"])
    else:  # GPT-1: h = x
        dx = dh
    dx, _ = stack_backward(dx, cache["blocks"], "h.", grads)
    # x = wte[ids] + wpe[t]: both tables receive dx.
    grads["wpe"] = position_embedding_backward(dx, cache["pos"])
    dwte_in = embedding_backward(dx, cache["tok"])
    grads["wte"] = dwte_in + dwte_out  # tied weight: the lookup's part plus the output layer's
    return grads


# ==============================================================================================
# BERT: post-LN, bidirectional, with the masked-LM head and the next-sentence head


@dataclass(frozen=True)
class BertConfig:
    """The shape of a BERT (Devlin et al. 2019). Defaults make the demo's tiny model."""

    vocab_size: int  # V
    n_ctx: int = 48  # longest input, [CLS] and [SEP]s included: rows of the position embedding
    n_embd: int = 64  # C
    n_head: int = 4  # H; C must be a multiple of it
    n_layer: int = 2  # L
    n_inner: int | None = None  # F; None means 4C, as BERT
    n_types: int = 2  # segment (token type) embeddings: sentence A = 0, sentence B = 1
    ln_eps: float = 1e-12  # BERT's layer_norm_eps

    __post_init__ = GPTConfig.__post_init__
    to_dict = GPTConfig.to_dict

    def block_spec(self):
        return BlockSpec(n_head=self.n_head, ln_eps=self.ln_eps, pre_ln=False,
                         activation="gelu_erf")


def bert_param_shapes(cfg):
    """Every BERT parameter name with its shape."""
    C, V = cfg.n_embd, cfg.vocab_size
    shapes = {"wte": (V, C), "wpe": (cfg.n_ctx, C), "wtt": (cfg.n_types, C),
              "ln_e.g": (C,), "ln_e.b": (C,)}
    for layer in range(cfg.n_layer):
        shapes.update(block_shapes(f"h.{layer}.", C, cfg.n_inner))
    shapes.update({
        "mlm.dense.w": (C, C), "mlm.dense.b": (C,), "mlm.ln.g": (C,), "mlm.ln.b": (C,),
        "mlm.bias": (V,),  # the output bias; the output weight is wte, tied
        "pool.w": (C, C), "pool.b": (C,),  # the pooler: dense + tanh on [CLS]
        "nsp.w": (C, 2), "nsp.b": (2,),  # next-sentence classifier: IsNext / NotNext
    })
    return shapes


def bert_init(cfg, rng, dtype=np.float32):
    """BERT's initialisation: every matrix and embedding N(0, 0.02), biases 0, gains 1."""
    return init_params(bert_param_shapes(cfg), rng, dtype)


def bert_forward(params, cfg, ids, token_type_ids=None, attention_mask=None):
    """BERT's forward pass with both pre-training heads.

        x = LN_e(wte[ids] + wpe[t] + wtt[segment])          (B, T, C)
        x = block_l(x) for l = 0..L-1                        post-LN, every token sees every token
        mlm_logits = LN(gelu(x W_d + b_d)) wte^T + bias      (B, T, V), tied to the embedding
        nsp_logits = tanh(x[:, 0] W_pool + b_pool) W_nsp + b_nsp      (B, 2), read from [CLS]

    ids, token_type_ids, attention_mask (B, T) -> mlm_logits, nsp_logits, cache.
    """
    ids, attention_mask = check_inputs(cfg, ids, attention_mask)
    B, T = ids.shape
    if token_type_ids is None:
        token_type_ids = np.zeros_like(ids)
    elif np.shape(token_type_ids) != ids.shape:
        raise ValueError(f"token_type_ids must have the shape of ids {ids.shape}, "
                         f"got {np.shape(token_type_ids)}")
    token_type_ids = check_ids(token_type_ids, cfg.n_types, "token_type_ids")
    tok, c_tok = embedding_forward(ids, params["wte"])  # (B, T, C)
    pos, c_pos = position_embedding_forward(T, params["wpe"])  # (T, C)
    seg, c_seg = embedding_forward(token_type_ids, params["wtt"])  # (B, T, C)
    x, c_lne = layernorm_forward(tok + pos + seg, params["ln_e.g"], params["ln_e.b"],
                                       cfg.ln_eps)
    # Bidirectional: query i sees every real key j, before or after it. Only padding is hidden.
    allowed = attention_mask[:, None, None, :]  # (B, 1, 1, T)
    x, blocks = stack_forward(x, params, "h.", cfg.n_layer, cfg.block_spec(), allowed)
    # The masked-LM head.
    dense, c_dense = linear_forward(x, params["mlm.dense.w"], params["mlm.dense.b"])  # (B, T, C)
    act, c_act = gelu_erf_forward(dense)  # (B, T, C)
    t, c_ln = layernorm_forward(act, params["mlm.ln.g"], params["mlm.ln.b"], cfg.ln_eps)
    mlm_logits = t @ params["wte"].T + params["mlm.bias"]  # (B, T, V)
    # The next-sentence head reads the first position, [CLS].
    pool_in, c_pool = linear_forward(x[:, 0], params["pool.w"], params["pool.b"])  # (B, C)
    pooled = np.tanh(pool_in)
    nsp_logits, c_nsp = linear_forward(pooled, params["nsp.w"], params["nsp.b"])  # (B, 2)
    cache = {"tok": c_tok, "pos": c_pos, "seg": c_seg, "lne": c_lne, "blocks": blocks,
             "dense": c_dense, "act": c_act, "ln": c_ln, "t": t, "wte": params["wte"],
             "pool": c_pool, "pooled": pooled, "nsp": c_nsp, "x_shape": x.shape}
    return mlm_logits, nsp_logits, cache


def bert_backward(dmlm_logits, dnsp_logits, cache):
    """dmlm_logits (B, T, V), dnsp_logits (B, 2) -> grads (same keys as the parameters).

    Either upstream gradient may be None when its loss is not used.
    """
    grads = {}
    t, wte = cache["t"], cache["wte"]
    V, C = wte.shape
    dx = np.zeros(cache["x_shape"], dtype=wte.dtype)  # (B, T, C)
    # nsp_logits = tanh(x[:, 0] W_pool + b) W_nsp + b_nsp
    if dnsp_logits is None:
        dnsp_logits = np.zeros((dx.shape[0], 2), dtype=wte.dtype)
    dpooled, grads["nsp.w"], grads["nsp.b"] = linear_backward(dnsp_logits, cache["nsp"])
    dpool_in = dpooled * (1.0 - cache["pooled"] ** 2)  # tanh' = 1 - tanh²
    dx[:, 0], grads["pool.w"], grads["pool.b"] = linear_backward(dpool_in, cache["pool"])
    # mlm_logits = t wte^T + bias
    if dmlm_logits is None:
        dmlm_logits = np.zeros(t.shape[:2] + (V,), dtype=wte.dtype)
    grads["mlm.bias"] = dmlm_logits.reshape(-1, V).sum(axis=0)
    dwte_out = dmlm_logits.reshape(-1, V).T @ t.reshape(-1, C)  # (V, C)
    dt = dmlm_logits @ wte  # (B, T, C)
    dact, grads["mlm.ln.g"], grads["mlm.ln.b"] = layernorm_backward(dt, cache["ln"])
    ddense = gelu_erf_backward(dact, cache["act"])
    dx_mlm, grads["mlm.dense.w"], grads["mlm.dense.b"] = linear_backward(ddense, cache["dense"])
    dx += dx_mlm
    dx, _ = stack_backward(dx, cache["blocks"], "h.", grads)
    # x = LN_e(wte[ids] + wpe[t] + wtt[segment])
    dsum, grads["ln_e.g"], grads["ln_e.b"] = layernorm_backward(dx, cache["lne"])
    grads["wtt"] = embedding_backward(dsum, cache["seg"])
    grads["wpe"] = position_embedding_backward(dsum, cache["pos"])
    grads["wte"] = embedding_backward(dsum, cache["tok"]) + dwte_out  # tied: lookup + output
    return grads


# ==============================================================================================
# Seq2Seq (BART): a post-LN encoder, a post-LN decoder with cross-attention, shared embeddings


# BART's learned position tables have two extra rows at the front and are read from row 2 on
# (fairseq's LearnedPositionalEmbedding reserved them for the padding index; Hugging Face keeps
# the offset so that BART checkpoints load unchanged).
BART_POSITION_OFFSET = 2


@dataclass(frozen=True)
class Seq2SeqConfig:
    """The shape of an encoder-decoder in BART's architecture (Lewis et al. 2020)."""

    vocab_size: int  # V, shared by source and target
    n_ctx: int = 48  # longest source and longest target, in tokens
    n_embd: int = 64  # C
    n_head: int = 4  # H, in the encoder's attention
    n_enc_layer: int = 2  # encoder blocks
    n_dec_layer: int = 2  # decoder blocks
    n_inner: int | None = None  # F of the encoder; None means 4C
    ln_eps: float = 1e-5  # PyTorch's LayerNorm default, which BART uses
    # The decoder's heads (self- and cross-attention) and feed-forward width; None means the
    # encoder's. BART's config names both sides (decoder_attention_heads, decoder_ffn_dim).
    n_dec_head: int | None = None
    n_dec_inner: int | None = None
    # BART's scale_embedding: token embeddings are multiplied by sqrt(C) before positions are
    # added (as in Vaswani et al. 2017, section 3.4); the output layer is not scaled.
    scale_embedding: bool = False

    __post_init__ = GPTConfig.__post_init__
    to_dict = GPTConfig.to_dict

    def block_spec(self, cross=False):
        """The encoder's blocks, or with cross=True the decoder's, with its own heads."""
        return BlockSpec(n_head=self.n_dec_head if cross else self.n_head, ln_eps=self.ln_eps,
                         pre_ln=False, activation="gelu_erf", cross=cross)


def seq2seq_param_shapes(cfg):
    """Every encoder-decoder parameter name with its shape."""
    C, V, P = cfg.n_embd, cfg.vocab_size, cfg.n_ctx + BART_POSITION_OFFSET
    shapes = {"wte": (V, C)}  # one table: encoder input, decoder input, and the output layer
    shapes.update({"enc.wpe": (P, C), "enc.ln_e.g": (C,), "enc.ln_e.b": (C,)})
    for layer in range(cfg.n_enc_layer):
        shapes.update(block_shapes(f"enc.h.{layer}.", C, cfg.n_inner))
    shapes.update({"dec.wpe": (P, C), "dec.ln_e.g": (C,), "dec.ln_e.b": (C,)})
    for layer in range(cfg.n_dec_layer):
        shapes.update(block_shapes(f"dec.h.{layer}.", C, cfg.n_dec_inner, cross=True))
    shapes["out_bias"] = (V,)  # BART's final_logits_bias
    return shapes


def seq2seq_init(cfg, rng, dtype=np.float32):
    """BART's initialisation: matrices and embeddings N(0, 0.02), biases 0, gains 1."""
    return init_params(seq2seq_param_shapes(cfg), rng, dtype)


def _embed(params, prefix, ids, cfg, start=0):
    """x = LN_e(wte[ids] * scale + wpe[start + t + 2]), scale = sqrt(C) with scale_embedding,
    else 1.  ids (B, T) -> x (B, T, C), cache."""
    T = ids.shape[1]
    scale = math.sqrt(cfg.n_embd) if cfg.scale_embedding else 1.0
    tok, c_tok = embedding_forward(ids, params["wte"])  # (B, T, C)
    pos, c_pos = position_embedding_forward(
        T, params[prefix + "wpe"], offset=BART_POSITION_OFFSET + start)  # (T, C)
    x, c_ln = layernorm_forward(tok * scale + pos, params[prefix + "ln_e.g"],
                                      params[prefix + "ln_e.b"], cfg.ln_eps)
    return x, {"tok": c_tok, "pos": c_pos, "ln": c_ln, "scale": scale}


def _embed_backward(dx, cache, prefix, grads):
    """Adds the position table's and the layer norm's grads; returns the token table's part."""
    dsum, grads[prefix + "ln_e.g"], grads[prefix + "ln_e.b"] = layernorm_backward(
        dx, cache["ln"])
    grads[prefix + "wpe"] = position_embedding_backward(dsum, cache["pos"])
    return embedding_backward(dsum * cache["scale"], cache["tok"])  # wte[ids] * scale


def encoder_forward(params, cfg, src_ids, src_mask=None):
    """src_ids (B, S) -> enc (B, S, C): every source token sees every real source token."""
    src_ids, src_mask = check_inputs(cfg, src_ids, src_mask, "src_ids", "src_mask")
    x, c_emb = _embed(params, "enc.", src_ids, cfg)
    allowed = src_mask[:, None, None, :]  # (B, 1, 1, S)
    x, blocks = stack_forward(x, params, "enc.h.", cfg.n_enc_layer, cfg.block_spec(), allowed)
    return x, {"emb": c_emb, "blocks": blocks}


def decoder_forward(params, cfg, tgt_in_ids, enc, src_mask=None, tgt_mask=None, past=None):
    """tgt_in_ids (B, T), enc (B, S, C) -> logits (B, T, V), cache.

        y = LN_e(wte[tgt_in] + wpe[t + 2])
        y = block_l(y, enc)    causal self-attention, cross-attention over the real source
        logits = y wte^T + out_bias

    ``past`` (generation only): the cache of the previous call; the new tokens continue it.
    """
    S0 = 0 if past is None else past["S"]
    tgt_in_ids, tgt_mask = check_inputs(cfg, tgt_in_ids, tgt_mask, "tgt_in_ids", "tgt_mask",
                                        start=S0)
    B, T = tgt_in_ids.shape
    src_mask = (np.ones(enc.shape[:2], dtype=bool) if src_mask is None
                else check_mask(src_mask, enc.shape[:2], "src_mask").astype(bool))
    y, c_emb = _embed(params, "dec.", tgt_in_ids, cfg, start=S0)
    self_allowed = causal_mask(T, S0 + T)[None, None] & tgt_mask[:, None, None, :]
    cross_allowed = src_mask[:, None, None, :]  # (B, 1, 1, S)
    y, blocks = stack_forward(y, params, "dec.h.", cfg.n_dec_layer, cfg.block_spec(cross=True),
                              self_allowed, enc, cross_allowed,
                              past=None if past is None else past["blocks"])
    logits = y @ params["wte"].T + params["out_bias"]  # (B, T, V)
    return logits, {"emb": c_emb, "blocks": blocks, "y": y, "wte": params["wte"], "S": S0 + T}


def seq2seq_forward(params, cfg, src_ids, tgt_in_ids, src_mask=None, tgt_mask=None):
    """The whole encoder-decoder.  -> logits (B, T, V), cache."""
    enc, enc_cache = encoder_forward(params, cfg, src_ids, src_mask)
    logits, dec_cache = decoder_forward(params, cfg, tgt_in_ids, enc, src_mask, tgt_mask)
    return logits, {"enc": enc_cache, "dec": dec_cache}


def seq2seq_backward(dlogits, cache):
    """dlogits (B, T, V) -> grads (same keys as the parameters)."""
    grads = {}
    dec, y, wte = cache["dec"], cache["dec"]["y"], cache["dec"]["wte"]
    V, C = wte.shape
    grads["out_bias"] = dlogits.reshape(-1, V).sum(axis=0)
    dwte_out = dlogits.reshape(-1, V).T @ y.reshape(-1, C)  # (V, C)
    dy = dlogits @ wte  # (B, T, C)
    dy, denc = stack_backward(dy, dec["blocks"], "dec.h.", grads)
    dwte_dec = _embed_backward(dy, dec["emb"], "dec.", grads)
    dx, _ = stack_backward(denc, cache["enc"]["blocks"], "enc.h.", grads)
    dwte_enc = _embed_backward(dx, cache["enc"]["emb"], "enc.", grads)
    grads["wte"] = dwte_enc + dwte_dec + dwte_out  # shared: encoder input + decoder input + output
    return grads


# ==============================================================================================
# XLNet (Yang et al. 2019): its config and parameters; the two-stream forward and backward are in
# xlnet.py


@dataclass(frozen=True)
class XLNetConfig:
    """The shape of minillm's XLNet. Defaults make a tiny model the size of the demo's BERT."""

    vocab_size: int  # V
    n_ctx: int = 48  # longest sequence, [BOS] and [EOS] included: rows of the position table
    n_embd: int = 64  # C
    n_head: int = 4  # H; C must be a multiple of it
    n_layer: int = 2  # L: two-stream blocks
    n_inner: int | None = None  # F; None means 4C
    ln_eps: float = 1e-12  # layer-norm epsilon (Hugging Face XLNetConfig's layer_norm_eps)

    __post_init__ = GPTConfig.__post_init__
    to_dict = GPTConfig.to_dict
    block_spec = BertConfig.block_spec  # post-LN, GELU's erf form (XLNet's blocks are BERT's)


def xlnet_param_shapes(cfg):
    """Every XLNet parameter name with its shape."""
    C, V = cfg.n_embd, cfg.vocab_size
    shapes = {"wte": (V, C), "wpe": (cfg.n_ctx, C), "mask_emb": (C,)}
    for layer in range(cfg.n_layer):
        shapes.update(block_shapes(f"h.{layer}.", C, cfg.n_inner))
    shapes["out_bias"] = (V,)  # XLNet's lm_loss bias; the output weight is wte, tied
    return shapes


def xlnet_init(cfg, rng, dtype=np.float32):
    """Matrices, embeddings and w N(0, 0.02) (XLNet's initializer_range), biases 0, gains 1."""
    return init_params(xlnet_param_shapes(cfg), rng, dtype)


class ModelFamily(NamedTuple):
    """One model family: its config class, its initialisation, its table of parameter shapes,
    and the Hugging Face architecture with the same computation (hf.py), or None."""

    config: type
    init: Callable
    param_shapes: Callable
    hf_arch: str | None


def blocks(family, n):
    """The config fields that give a model of ``family`` n blocks: {"n_layer": n}, or for the
    encoder-decoder n in the encoder and n in the decoder."""
    return {"n_enc_layer": n, "n_dec_layer": n} if family == "seq2seq" else {"n_layer": n}


# The model families by name; checkpoints record the name.
MODELS = {
    "gpt": ModelFamily(GPTConfig, gpt_init, gpt_param_shapes, "gpt2"),
    "bert": ModelFamily(BertConfig, bert_init, bert_param_shapes, "bert"),
    "seq2seq": ModelFamily(Seq2SeqConfig, seq2seq_init, seq2seq_param_shapes, "bart"),
    # Hugging Face's XLNet computes relative positions and Transformer-XL's recurrence, which
    # minillm's XLNet leaves out (xlnet.py): no Hugging Face architecture computes it.
    "xlnet": ModelFamily(XLNetConfig, xlnet_init, xlnet_param_shapes, None),
}


def _register_elmo():
    """ELMo's biLM (elmo.py, which imports this module): no Hugging Face architecture."""
    from .elmo import ElmoConfig, elmo_init, elmo_param_shapes

    MODELS["elmo"] = ModelFamily(ElmoConfig, elmo_init, elmo_param_shapes, None)


_register_elmo()

# The fused image–text GPT of GPT-4's 多模态融合 (multimodal.py, which imports this module)
# registers itself in MODELS as "caption".
from . import multimodal  # noqa: E402,F401
