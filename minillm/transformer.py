"""One Transformer block, forward and backward, for all three model families.

A block is two or three residual sublayers: self-attention, (cross-attention,) feed-forward.
Two switches cover the three architectures of the tutorial:

    model   norm placement                      self-attention   cross-attention
    GPT-2   pre-LN:  x + f(LN(x))               causal           no
    BERT    post-LN: LN(x + f(x))               bidirectional    no
    BART    post-LN: LN(x + f(x))               enc: bidir.,     decoder only
                                                dec: causal

Parameter names inside a block (prefix ``h.<layer>.``), with shapes:

    ln_1.g, ln_1.b           (C,)       norm of the self-attention sublayer
    attn.c_attn.w, .b        (C, 3C), (3C,)   fused q, k, v projection
    attn.c_proj.w, .b        (C, C), (C,)     output projection
    ln_x.g, ln_x.b           (C,)       norm of the cross-attention sublayer     (cross only)
    xattn.c_q.w, .b          (C, C), (C,)     query from the decoder           (cross only)
    xattn.c_kv.w, .b         (C, 2C), (2C,)   keys and values from the encoder (cross only)
    xattn.c_proj.w, .b       (C, C), (C,)                                      (cross only)
    ln_2.g, ln_2.b           (C,)       norm of the feed-forward sublayer
    mlp.c_fc.w, .b           (C, F), (F,)
    mlp.c_proj.w, .b         (F, C), (C,)

Weights are stored (in, out), so every projection is ``x @ w + b``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .layers import (
    attention_backward,
    attention_forward,
    gelu_erf_backward,
    gelu_erf_forward,
    gelu_tanh_backward,
    gelu_tanh_forward,
    layernorm_backward,
    layernorm_forward,
    linear_backward,
    linear_forward,
    merge_heads,
    split_heads,
)


@dataclass(frozen=True)
class BlockSpec:
    """What kind of block: the switches of the table in the module docstring."""

    n_head: int  # H; the model width C must be a multiple of it
    ln_eps: float  # layer-norm epsilon: GPT-2 and BART 1e-5, BERT 1e-12
    pre_ln: bool  # True: x + f(LN(x)) (GPT-2). False: LN(x + f(x)) (BERT, BART)
    activation: str = "gelu_tanh"  # "gelu_tanh" (GPT-2) or "gelu_erf" (BERT, BART)
    cross: bool = False  # a cross-attention sublayer reading an encoder (BART decoder)
    # GPT-2's scale_attn_by_inverse_layer_idx (a transformers GPT2Config setting, off in GPT-2
    # itself): the self-attention scores of block l are also divided by l + 1.
    scale_attn_by_inverse_layer_idx: bool = False


def _activation(name):
    if name == "gelu_tanh":
        return gelu_tanh_forward, gelu_tanh_backward
    if name == "gelu_erf":
        return gelu_erf_forward, gelu_erf_backward
    raise ValueError(f"activation must be 'gelu_tanh' or 'gelu_erf', got {name!r}")


# ----------------------------------------------------------------------------------------------
# Multi-head attention around the core of layers.attention_forward


def heads_forward(q, k, v, H, allowed, w_proj, b_proj, scale=None):
    """Split into heads, attend, merge, project.

    q (B, T, C), k and v (B, S, C) -> y (B, T, C). ``scale``: attention_forward's.
    """
    o, attention = attention_forward(split_heads(q, H), split_heads(k, H), split_heads(v, H),
                                     allowed, scale)  # (B, H, T, D)
    y, proj = linear_forward(merge_heads(o), w_proj, b_proj)  # (B, T, C)
    return y, {"attention": attention, "proj": proj, "H": H}


def heads_backward(dy, cache):
    """dy (B, T, C) -> dq (B, T, C), dk (B, S, C), dv (B, S, C), dw_proj, db_proj."""
    do, dw_proj, db_proj = linear_backward(dy, cache["proj"])
    H = cache["H"]
    dq, dk, dv = attention_backward(split_heads(do, H), cache["attention"])
    return merge_heads(dq), merge_heads(dk), merge_heads(dv), dw_proj, db_proj


def self_attention_forward(x, w, H, allowed, past=None, scale=None):
    """Multi-head self-attention: q, k, v all come from x through one fused projection.

    x (B, T, C) -> y (B, T, C). ``w`` holds the sublayer's weights: ``c_attn.w``, ``c_attn.b``,
    ``c_proj.w``, ``c_proj.b``. ``allowed`` (broadcastable to (B, H, T, S)) says which keys each
    query may see. ``past`` = (k, v), each (B, S0, C), are keys and values of earlier positions
    (generation's key/value cache); they are prepended, so S = S0 + T. The cache returns the
    full ``k`` and ``v`` for the next step. ``scale`` is the factor on the scores q·k (None:
    1/sqrt(D)).
    """
    qkv, fused = linear_forward(x, w["c_attn.w"], w["c_attn.b"])  # (B, T, 3C)
    q, k, v = np.split(qkv, 3, axis=-1)  # 3 x (B, T, C)
    if past is not None:
        k = np.concatenate([past[0], k], axis=1)  # (B, S, C)
        v = np.concatenate([past[1], v], axis=1)  # (B, S, C)
    y, heads = heads_forward(q, k, v, H, allowed, w["c_proj.w"], w["c_proj.b"], scale)
    return y, {"fused": fused, "heads": heads, "k": k, "v": v, "past": past is not None}


def self_attention_backward(dy, cache):
    """dy (B, T, C) -> dx (B, T, C), grads of the sublayer's weights (named as in ``w``)."""
    if cache["past"]:
        raise ValueError("backward through a key/value cache is not supported (generation only)")
    dq, dk, dv, dw_proj, db_proj = heads_backward(dy, cache["heads"])
    dqkv = np.concatenate([dq, dk, dv], axis=-1)  # (B, T, 3C)
    dx, dw, db = linear_backward(dqkv, cache["fused"])
    grads = {"c_attn.w": dw, "c_attn.b": db, "c_proj.w": dw_proj, "c_proj.b": db_proj}
    return dx, grads


def cross_attention_forward(x, enc, w, H, allowed, enc_kv=None):
    """Multi-head cross-attention: queries from the decoder x, keys and values from enc.

    x (B, T, C), enc (B, S, C) -> y (B, T, C). ``w``: ``c_q``, ``c_kv`` and ``c_proj``'s
    ``.w`` and ``.b``. ``allowed`` (B, 1, 1, S) hides source padding. ``enc_kv`` = (k, v)
    reuses projections of enc computed at an earlier generation step.
    """
    q, cq = linear_forward(x, w["c_q.w"], w["c_q.b"])  # (B, T, C)
    if enc_kv is None:
        kv, ckv = linear_forward(enc, w["c_kv.w"], w["c_kv.b"])  # (B, S, 2C)
        k, v = np.split(kv, 2, axis=-1)  # 2 x (B, S, C)
    else:
        (k, v), ckv = enc_kv, None
    y, heads = heads_forward(q, k, v, H, allowed, w["c_proj.w"], w["c_proj.b"])
    return y, {"cq": cq, "ckv": ckv, "heads": heads, "k": k, "v": v}


def cross_attention_backward(dy, cache):
    """dy (B, T, C) -> dx (B, T, C), denc (B, S, C), grads. The gradient reaches both sides."""
    dq, dk, dv, dw_proj, db_proj = heads_backward(dy, cache["heads"])
    dx, dwq, dbq = linear_backward(dq, cache["cq"])
    denc, dwkv, dbkv = linear_backward(np.concatenate([dk, dv], axis=-1), cache["ckv"])
    grads = {"c_q.w": dwq, "c_q.b": dbq, "c_kv.w": dwkv, "c_kv.b": dbkv,
             "c_proj.w": dw_proj, "c_proj.b": db_proj}
    return dx, denc, grads


# ----------------------------------------------------------------------------------------------
# Feed-forward


def mlp_forward(x, w, activation):
    """``y = act(x W_fc + b_fc) W_proj + b_proj``.  x (B, T, C) -> h (B, T, F) -> y (B, T, C)."""
    act_forward, _ = _activation(activation)
    h, fc = linear_forward(x, w["c_fc.w"], w["c_fc.b"])  # (B, T, F)
    h_act, act = act_forward(h)  # (B, T, F)
    y, proj = linear_forward(h_act, w["c_proj.w"], w["c_proj.b"])  # (B, T, C)
    return y, {"fc": fc, "act": act, "proj": proj, "activation": activation}


def mlp_backward(dy, cache):
    """dy (B, T, C) -> dx (B, T, C), grads of the sublayer's weights (named as in ``w``)."""
    _, act_backward = _activation(cache["activation"])
    dh_act, dw2, db2 = linear_backward(dy, cache["proj"])
    dh = act_backward(dh_act, cache["act"])
    dx, dw1, db1 = linear_backward(dh, cache["fc"])
    return dx, {"c_fc.w": dw1, "c_fc.b": db1, "c_proj.w": dw2, "c_proj.b": db2}


# ----------------------------------------------------------------------------------------------
# The block


def weights_under(params, prefix):
    """The parameters whose names start with ``prefix``, under the rest of their names:
    ``weights_under(params, "h.0.")["ln_1.g"]`` is ``params["h.0.ln_1.g"]``."""
    return {name[len(prefix):]: v for name, v in params.items() if name.startswith(prefix)}


def with_prefix(prefix, grads):
    """The inverse naming: ``{prefix + name: g}``."""
    return {prefix + name: g for name, g in grads.items()}


def attention_scale(spec, C, layer):
    """The factor on the scores q·k of block ``layer``'s self-attention: 1/sqrt(D) with
    D = C/H, and with spec.scale_attn_by_inverse_layer_idx also 1/(layer + 1)."""
    scale = 1.0 / math.sqrt(C // spec.n_head)
    return scale / (layer + 1) if spec.scale_attn_by_inverse_layer_idx else scale


def block_forward(x, w, spec, self_allowed, enc=None, cross_allowed=None, past=None, layer=0):
    """One block. x (B, T, C) -> y (B, T, C).

    w        the block's weights under their names inside the block (``ln_1.g``,
             ``attn.c_attn.w``, ...: the table of the module docstring), as weights_under makes
    spec     a BlockSpec
    self_allowed  boolean, broadcastable to (B, H, T, S): which keys each query sees
    enc, cross_allowed   the encoder output (B, S_enc, C) and its key mask (cross blocks only)
    past     generation only: a dict with the previous step's ``"k"``, ``"v"`` (and for cross
             blocks ``"xk"``, ``"xv"``); the returned cache holds the updated ones.
    layer    the block's index in its stack (only GPT-2's scale_attn_by_inverse_layer_idx
             reads it: attention_scale)

    Pre-LN (GPT-2) and post-LN (BERT, BART) are the two branches below, each the sequence of
    its sublayers as the papers write it. The cache keeps each sublayer's and each norm's own
    cache under its parameter name (``ln_1``, ``attn``, ``ln_x``, ``xattn``, ``ln_2``, ``mlp``).
    """
    H, eps = spec.n_head, spec.ln_eps
    attn = weights_under(w, "attn.")
    xattn = weights_under(w, "xattn.")
    mlp = weights_under(w, "mlp.")
    self_kv = None if past is None else (past["k"], past["v"])
    cross_kv = None if past is None or "xk" not in past else (past["xk"], past["xv"])
    scale = attention_scale(spec, x.shape[-1], layer)  # 1/sqrt(D), or 1/(sqrt(D) (layer + 1))
    cache = {"spec": spec}
    if spec.pre_ln:  # x = x + f(LN(x)), sublayer by sublayer
        h, cache["ln_1"] = layernorm_forward(x, w["ln_1.g"], w["ln_1.b"], eps)
        out, cache["attn"] = self_attention_forward(h, attn, H, self_allowed, self_kv, scale)
        x = x + out
        if spec.cross:
            h, cache["ln_x"] = layernorm_forward(x, w["ln_x.g"], w["ln_x.b"], eps)
            out, cache["xattn"] = cross_attention_forward(h, enc, xattn, H, cross_allowed,
                                                          cross_kv)
            x = x + out
        h, cache["ln_2"] = layernorm_forward(x, w["ln_2.g"], w["ln_2.b"], eps)
        out, cache["mlp"] = mlp_forward(h, mlp, spec.activation)
        x = x + out
    else:  # x = LN(x + f(x)), sublayer by sublayer
        out, cache["attn"] = self_attention_forward(x, attn, H, self_allowed, self_kv, scale)
        x, cache["ln_1"] = layernorm_forward(x + out, w["ln_1.g"], w["ln_1.b"], eps)
        if spec.cross:
            out, cache["xattn"] = cross_attention_forward(x, enc, xattn, H, cross_allowed,
                                                          cross_kv)
            x, cache["ln_x"] = layernorm_forward(x + out, w["ln_x.g"], w["ln_x.b"], eps)
        out, cache["mlp"] = mlp_forward(x, mlp, spec.activation)
        x, cache["ln_2"] = layernorm_forward(x + out, w["ln_2.g"], w["ln_2.b"], eps)
    # The keys and values seen so far, for the next generation step.
    cache["k"], cache["v"] = cache["attn"]["k"], cache["attn"]["v"]
    if spec.cross:
        cache["xk"], cache["xv"] = cache["xattn"]["k"], cache["xattn"]["v"]
    return x, cache


def block_backward(dy, cache):
    """dy (B, T, C) -> dx (B, T, C), denc (B, S_enc, C) or None, grads of the block's weights
    (named as in block_forward's ``w``).

    The forward's steps in reverse, each undoing one line of ``block_forward``; ``dx`` is the
    gradient of the residual stream x as it was after the step being undone. A residual sum
    x + out passes its gradient to both terms unchanged; a norm comes first in backward in
    post-LN, last in pre-LN. The grads come out in backward order: ln_2, mlp, ln_x, xattn, ln_1,
    attn.
    """
    spec, grads, denc, dx = cache["spec"], {}, None, dy
    if spec.pre_ln:
        # Pre-LN.
        # 3. x = x + mlp(LN_2(x)): dx reaches x directly and through the feed-forward path.
        dh, grads_mlp = mlp_backward(dx, cache["mlp"])
        dx_ln, grads["ln_2.g"], grads["ln_2.b"] = layernorm_backward(dh, cache["ln_2"])
        grads.update(with_prefix("mlp.", grads_mlp))
        dx = dx + dx_ln
        # 2. x = x + xattn(LN_x(x), enc)  (cross blocks only)
        if spec.cross:
            dh, denc, grads_x = cross_attention_backward(dx, cache["xattn"])
            dx_ln, grads["ln_x.g"], grads["ln_x.b"] = layernorm_backward(dh, cache["ln_x"])
            grads.update(with_prefix("xattn.", grads_x))
            dx = dx + dx_ln
        # 1. x = x + attn(LN_1(x))
        dh, grads_attn = self_attention_backward(dx, cache["attn"])
        dx_ln, grads["ln_1.g"], grads["ln_1.b"] = layernorm_backward(dh, cache["ln_1"])
        grads.update(with_prefix("attn.", grads_attn))
        return dx + dx_ln, denc, grads
    # Post-LN.
    # 3. x = LN_2(x + mlp(x)): back through the norm, then the sum splits in two.
    dsum, grads["ln_2.g"], grads["ln_2.b"] = layernorm_backward(dx, cache["ln_2"])
    dx_mlp, grads_mlp = mlp_backward(dsum, cache["mlp"])
    grads.update(with_prefix("mlp.", grads_mlp))
    dx = dsum + dx_mlp
    # 2. x = LN_x(x + xattn(x, enc))  (cross blocks only)
    if spec.cross:
        dsum, grads["ln_x.g"], grads["ln_x.b"] = layernorm_backward(dx, cache["ln_x"])
        dx_xattn, denc, grads_x = cross_attention_backward(dsum, cache["xattn"])
        grads.update(with_prefix("xattn.", grads_x))
        dx = dsum + dx_xattn
    # 1. x = LN_1(x + attn(x))
    dsum, grads["ln_1.g"], grads["ln_1.b"] = layernorm_backward(dx, cache["ln_1"])
    dx_attn, grads_attn = self_attention_backward(dsum, cache["attn"])
    grads.update(with_prefix("attn.", grads_attn))
    return dsum + dx_attn, denc, grads


# ----------------------------------------------------------------------------------------------
# A stack of blocks


def stack_forward(x, params, prefix, n_layer, spec, self_allowed, enc=None, cross_allowed=None,
                  past=None):
    """Blocks ``<prefix>0.`` .. ``<prefix>{n_layer-1}.`` in order.  x (B, T, C) -> (B, T, C).

    ``past`` (generation only) is the list of block caches of an earlier call.
    """
    caches = []
    for layer in range(n_layer):
        block_past = None if past is None else past[layer]
        w = weights_under(params, f"{prefix}{layer}.")
        x, c = block_forward(x, w, spec, self_allowed, enc, cross_allowed, block_past, layer)
        caches.append(c)
    return x, caches


def stack_backward(dy, caches, prefix, grads):
    """dy (B, T, C) -> dx (B, T, C), denc (the encoder output's gradient summed over every
    cross-attending block, or None). The blocks' grads are added to ``grads``."""
    denc = None
    for layer in reversed(range(len(caches))):
        dy, de, block_grads = block_backward(dy, caches[layer])
        grads.update(with_prefix(f"{prefix}{layer}.", block_grads))
        if de is not None:
            denc = de if denc is None else denc + de
    return dy, denc
