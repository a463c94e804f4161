"""Layers as pairs of functions: ``x_forward(...) -> (out, cache)`` and ``x_backward(dout, cache)``.

Every layer of the three model families is here, each forward directly above its backward.
A forward returns its output and a small dict ``cache`` holding exactly what the backward
needs, under the forward's own local names. Nothing is stored between calls, so a backward
can be called twice with the same answer, and a gradient check of a layer is one lambda.

Shape letters, used in every comment and docstring of the package:

    B batch   T positions (target side)   S positions (source side, keys)
    C model width   H heads   D = C / H head width   F feed-forward width
    V vocabulary    N rows of a flattened (B*T, ...) array

The dtype of every output follows the inputs: float64 for gradient checks, float32 for speed.
No layer hard-codes either.
"""

from __future__ import annotations

import math

import numpy as np

from .erf import erf

# The label of a position that is not predicted. Cross-entropy skips it. -100 is the value
# Hugging Face and PyTorch use, so minillm's labels mean the same thing as theirs.
IGNORE_INDEX = -100


# ----------------------------------------------------------------------------------------------
# Embedding lookup: token embeddings and learned position embeddings


def embedding_forward(ids, table):
    """Look up rows of ``table``: ``out[b, t] = table[ids[b, t]]``.

    ids (B, T) integers, table (V, C) -> out (B, T, C). Used for the token embedding ``wte``.
    """
    out = table[ids]  # (B, T, C)
    cache = {"ids": ids, "table_shape": table.shape, "dtype": table.dtype}
    return out, cache


def embedding_backward(dout, cache):
    """Gradient of the lookup w.r.t. the table: every use of a row adds its upstream gradient.

    dout (B, T, C) -> dtable (V, C). A token used twice gets both gradients summed (plain
    fancy-index assignment, ``dtable[ids] = dout``, would keep only the last one). The ids
    are 0 .. V-1, as every model's check_ids makes sure.
    """
    dtable = np.zeros(cache["table_shape"], dtype=cache["dtype"])
    np.add.at(dtable, cache["ids"].reshape(-1), dout.reshape(-1, dout.shape[-1]))  # (V, C)
    return dtable


def position_embedding_forward(T, table, offset=0):
    """Learned absolute positions: rows ``offset .. offset+T-1`` of ``table``.

    table (P, C) -> out (T, C), added to every row of the batch by broadcasting. GPT-2 and BERT
    use offset 0; BART's tables have two extra rows and are read with offset 2.
    """
    if offset + T > table.shape[0]:
        raise ValueError(
            f"sequence length T={T} (+ offset {offset}) exceeds the model's context "
            f"of {table.shape[0] - offset} positions"
        )
    out = table[offset : offset + T]  # (T, C)
    cache = {"T": T, "offset": offset, "table_shape": table.shape, "dtype": table.dtype}
    return out, cache


def position_embedding_backward(dout, cache):
    """dout (B, T, C) or (T, C) -> dtable (P, C): the batch is summed, unused rows stay 0."""
    dtable = np.zeros(cache["table_shape"], dtype=cache["dtype"])
    if dout.ndim == 3:
        dout = dout.sum(axis=0)  # (T, C): the same row was used by every sequence
    o, T = cache["offset"], cache["T"]
    dtable[o : o + T] = dout
    return dtable


# ----------------------------------------------------------------------------------------------
# Linear: y = x W + b


def linear_forward(x, w, b):
    """``y = x @ w + b`` with ``w`` stored as (in, out), the layout of GPT-2's Conv1D.

    x (..., I), w (I, O), b (O,) -> y (..., O).
    """
    # One 2-D product over all N = B*T rows: a (B, T, I) @ (I, O) product would be B small ones.
    y = x.reshape(-1, x.shape[-1]) @ w + b  # (N, O)
    cache = {"x": x, "w": w}
    return y.reshape(*x.shape[:-1], w.shape[1]), cache


def linear_backward(dy, cache):
    """dy (..., O) -> dx (..., I), dw (I, O), db (O,).

    In the forward pass this was y = x w + b, so dx = dy w^T, dw = x^T dy summed over every
    leading position, and db = dy summed over every leading position.
    """
    x, w = cache["x"], cache["w"]
    x2 = x.reshape(-1, x.shape[-1])  # (N, I)
    dy2 = dy.reshape(-1, dy.shape[-1])  # (N, O)
    dx = (dy2 @ w.T).reshape(x.shape)  # (..., I)
    dw = x2.T @ dy2  # (I, O)
    db = dy2.sum(axis=0)  # (O,)
    return dx, dw, db


# ----------------------------------------------------------------------------------------------
# Layer norm


def layernorm_forward(x, g, b, eps):
    """``y = (x - mean) / sqrt(var + eps) * g + b`` over the last axis, with the biased variance.

    x (..., C), g (C,), b (C,) -> y (..., C). ``eps`` comes from the model's config (GPT-2 and
    BART 1e-5, BERT 1e-12); it is an argument because the three models differ.
    """
    mean = x.mean(axis=-1, keepdims=True)  # (..., 1)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)  # (..., 1), biased
    rstd = 1.0 / np.sqrt(var + eps)  # (..., 1)
    xhat = (x - mean) * rstd  # (..., C)
    y = xhat * g + b  # (..., C)
    cache = {"xhat": xhat, "rstd": rstd, "g": g}
    return y, cache


def layernorm_backward(dy, cache):
    """dy (..., C) -> dx (..., C), dg (C,), db (C,).

    In the forward pass y = xhat * g + b, so dg and db are sums over positions, and
    dxhat = dy * g. Then xhat = (x - mean) * rstd, where mean and rstd depend on every x of the
    row; collecting the three paths gives

        dx = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat))
    """
    xhat, rstd, g = cache["xhat"], cache["rstd"], cache["g"]
    leading = tuple(range(dy.ndim - 1))  # every axis but the last: the positions
    dg = (dy * xhat).sum(axis=leading)  # (C,)
    db = dy.sum(axis=leading)  # (C,)
    dxhat = dy * g  # (..., C)
    dx = rstd * (dxhat - dxhat.mean(axis=-1, keepdims=True)
                 - xhat * (dxhat * xhat).mean(axis=-1, keepdims=True))  # (..., C)
    return dx, dg, db


# ----------------------------------------------------------------------------------------------
# GELU, the tanh form of GPT-2 ("gelu_new")

# sqrt(2 / pi), the constant of the tanh approximation of GELU (Hendrycks & Gimpel, 2016).
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
# The cubic coefficient of the same approximation (Hendrycks & Gimpel, 2016; GPT-2's gelu).
_GELU_CUBIC = 0.044715


def gelu_tanh_forward(x):
    """``gelu(x) = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))``, the form GPT-2 uses.

    x (...) -> y (...). BERT and BART use the exact erf form instead.

    Written as ``y = x * cdf`` with cdf = 0.5 (1 + tanh(u)), the tanh approximation of the
    normal CDF Φ(x), the same shape as the erf form's ``x * Φ(x)``. (x * x * x, not x**3:
    NumPy's float32 power is about 100 times slower than two products.)
    """
    cdf = 0.5 * (1.0 + np.tanh(_SQRT_2_OVER_PI * (x + _GELU_CUBIC * x * x * x)))  # (...)
    y = x * cdf
    cache = {"x": x, "cdf": cdf}
    return y, cache


def gelu_tanh_backward(dy, cache):
    """dy (...) -> dx (...).

    y = x cdf with cdf = 0.5 (1 + th), th = tanh(u), u = sqrt(2/pi) (x + 0.044715 x³), so
        dy/dx = cdf + x (dcdf/du) (du/dx),   dcdf/du = 0.5 (1 - th²) = 2 cdf (1 - cdf),
        du/dx = sqrt(2/pi) (1 + 3 · 0.044715 x²),
    that is  dy/dx = cdf (1 + 2 x (1 - cdf) du/dx).
    """
    x, cdf = cache["x"], cache["cdf"]
    du_dx = _SQRT_2_OVER_PI * (1.0 + 3.0 * _GELU_CUBIC * x * x)  # (...)
    return dy * cdf * (1.0 + 2.0 * x * (1.0 - cdf) * du_dx)


# ----------------------------------------------------------------------------------------------
# GELU, the exact erf form of BERT and BART (erf itself is in erf.py: NumPy has none)

def gelu_erf_forward(x):
    """``gelu(x) = x Φ(x) = 0.5 x (1 + erf(x / sqrt(2)))``, the exact form BERT and BART use.

    x (...) -> y (...).
    """
    cdf = 0.5 * (1.0 + erf(x / math.sqrt(2.0)))  # (...) Φ(x), the standard normal CDF
    y = x * cdf
    return y, {"x": x, "cdf": cdf}


def gelu_erf_backward(dy, cache):
    """dy (...) -> dx (...).  y = x Φ(x), so dy/dx = Φ(x) + x φ(x), φ(x) = exp(-x²/2)/sqrt(2π)."""
    x, cdf = cache["x"], cache["cdf"]
    pdf = np.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)  # (...) φ(x)
    return dy * (cdf + x * pdf)


# ----------------------------------------------------------------------------------------------
# Softmax (with an optional mask) and log-softmax


def softmax_forward(s, allowed=None):
    """``p_j = exp(s_j) / Σ_k exp(s_k)`` over the last axis, stable for any finite input.

    s (..., S) -> p (..., S). With a boolean ``allowed`` (broadcastable to s), positions where
    it is False get probability exactly 0 and take no part in the sum. A row with nothing
    allowed (a query whose keys are all padding) becomes all zeros instead of 0/0 = NaN.
    """
    if allowed is not None:
        s = np.where(allowed, s, -np.inf)  # a masked score never reaches exp: exp(-inf) = 0
    m = s.max(axis=-1, keepdims=True)  # (..., 1)
    m[~np.isfinite(m)] = 0.0  # a row with nothing allowed: all -inf, leave it at 0
    e = np.exp(s - m)  # (..., S)
    z = e.sum(axis=-1, keepdims=True)  # (..., 1)
    z[z == 0.0] = 1.0  # ... and then its probabilities are 0/1 = 0, not 0/0
    p = e / z  # (..., S)
    return p, {"p": p}


def softmax_backward(dp, cache):
    """dp (..., S) -> ds (..., S).

    With p = softmax(s), dp_j/ds_k = p_j (δ_jk - p_k), so ds = p * (dp - Σ_j dp_j p_j).
    A masked position has p = 0 and so gets ds = 0.
    """
    p = cache["p"]
    return p * (dp - (dp * p).sum(axis=-1, keepdims=True))  # (..., S)


# Tuned softmax, for attention (attention_forward and attention_backward call these): the same
# formulas with the mask added as a 0 / -inf bias (a third of the time of np.where on the
# scores; masked scores must then be finite, as inf - inf is NaN), the work done in place in
# one buffer, the row sums as products with a column of ones (_sum_last, below), and
# Σ_j dp_j p_j as einsum's row-by-row dot products, with no (..., S) temporary.
# tests/test_layers.py checks them against the two functions above.
#
# What they buy, measured by ``python -m minillm bench --config all --model gpt --threads 1``,
# runs alternating with the references called in their place (2026-12-02, one thread,
# OpenBLAS's SkylakeX kernels, medians of 3): a GPT medium step of 1,120 ms against 1,220 ms
# (8.9%; 5.8% in an earlier set of runs), a tiny one 19.5 against 20.4 ms (4.5%, 6 runs).
# The same test kept layer norm and GELU plain: their in-place forms gained 3.9% and 3.0% of
# the tiny step, 2.2% and less at small and medium, under the 5% that a tuned variant needs.


def _sum_last(x):
    """Σ over the last axis, kept as an axis of length 1: (..., K) -> (..., 1). Float x.

    NumPy's ``x.sum(axis=-1)`` restarts its reduction loop for every row, so on short rows it
    costs several times a BLAS matrix-vector product with a column of ones (measured on
    2026-12-02, float32, one thread: 4.6x on a (16, 64, 64) array, 2.3x on (8, 256, 256)):
    the same sum, added in another order."""
    return x @ np.ones((x.shape[-1], 1), dtype=x.dtype)


def softmax_forward_tuned(s, allowed=None):
    """softmax_forward, in place on one buffer."""
    if allowed is None:
        p = s.copy()  # the caller's scores stay as they were
    else:
        p = s + np.where(allowed, 0.0, -np.inf).astype(s.dtype)  # (..., S)
    m = p.max(axis=-1, keepdims=True)  # (..., 1)
    m[~np.isfinite(m)] = 0.0  # a row with nothing allowed: all -inf, leave it at 0
    p -= m
    np.exp(p, out=p)
    z = _sum_last(p)  # (..., 1)
    z[z == 0.0] = 1.0  # ... and then its probabilities are 0/1 = 0, not 0/0
    p /= z
    return p, {"p": p}


def softmax_backward_tuned(dp, cache):
    """softmax_backward, with Σ_j dp_j p_j from einsum and ds built in one buffer."""
    p = cache["p"]
    dp_dot_p = np.einsum("...j,...j->...", dp, p)[..., None]  # (..., 1)
    ds = dp - dp_dot_p  # (..., S)
    ds *= p
    return ds


def log_softmax(z):
    """``log p_j = z_j - log Σ_k exp(z_k)`` over the last axis, with the max subtracted first."""
    m = z.max(axis=-1, keepdims=True)
    return z - m - np.log(np.exp(z - m).sum(axis=-1, keepdims=True))


# ----------------------------------------------------------------------------------------------
# Attention


def causal_mask(T, S=None):
    """``allowed[i, j] = j <= i + (S - T)``: query i sees itself and the keys before it.

    -> (T, S) boolean. With S > T the T queries are the last T of S positions (the key/value
    cache of generation: the new tokens see everything already generated).
    """
    S = T if S is None else S
    return np.tril(np.ones((T, S), dtype=bool), k=S - T)


def attention_forward(q, k, v, allowed=None, scale=None):
    """Scaled dot-product attention, every head at once.

        scores = q k^T / sqrt(D),   att = softmax(scores) over keys,   out = att v

    (softmax by softmax_forward_tuned, softmax_forward's tuned form.)

    q (B, H, T, D), k (B, H, S, D), v (B, H, S, D), allowed broadcastable to (B, H, T, S)
    -> out (B, H, T, D). The cache holds the attention weights ``att``: a debugger stopped here
    shows a (T, S) grid per head whose rows sum to 1 (0 above the diagonal when causal).
    ``scale`` replaces 1/sqrt(D) when given (GPT-2's scale_attn_by_inverse_layer_idx makes it
    1/(sqrt(D) (l + 1)) in block l: transformer.py's attention_scale).
    """
    D = q.shape[-1]
    scale = 1.0 / math.sqrt(D) if scale is None else scale
    scores = (q * scale) @ k.swapaxes(-1, -2)  # (B, H, T, S); scaling q: T*D products, not T*S
    att, sm_cache = softmax_forward_tuned(scores, allowed)  # (B, H, T, S)
    out = att @ v  # (B, H, T, D)
    cache = {"q": q, "k": k, "v": v, "att": att, "sm": sm_cache, "scale": scale}
    return out, cache


def attention_backward(dout, cache):
    """dout (B, H, T, D) -> dq (B, H, T, D), dk (B, H, S, D), dv (B, H, S, D).

    In the forward pass out = att v, so datt = dout v^T and dv = att^T dout. Then
    att = softmax(scores) gives dscores, and scores = q k^T * scale gives
    dq = dscores k * scale and dk = dscores^T q * scale.
    """
    q, k, v, att, scale = cache["q"], cache["k"], cache["v"], cache["att"], cache["scale"]
    datt = dout @ v.swapaxes(-1, -2)  # (B, H, T, S)
    dv = att.swapaxes(-1, -2) @ dout  # (B, H, S, D)
    dscores = softmax_backward_tuned(datt, cache["sm"])  # (B, H, T, S), before the scale
    dq = (dscores @ k) * scale  # (B, H, T, D)
    dk = (dscores.swapaxes(-1, -2) @ q) * scale  # (B, H, S, D)
    return dq, dk, dv


def split_heads(x, H):
    """(B, T, C) -> (B, H, T, D): head h owns the contiguous columns h*D .. (h+1)*D - 1."""
    B, T, C = x.shape
    return x.reshape(B, T, H, C // H).transpose(0, 2, 1, 3)


def merge_heads(x):
    """(B, H, T, D) -> (B, T, C): the inverse of split_heads, heads concatenated in order."""
    B, H, T, D = x.shape
    return x.transpose(0, 2, 1, 3).reshape(B, T, H * D)


# ----------------------------------------------------------------------------------------------
# Cross-entropy: the tutorial's loss


def cross_entropy_forward(logits, targets, reduction="sum", ignore_index=IGNORE_INDEX):
    """``L = -Σ_i log P(w_i | context_i)`` over the positions whose target is not ignored.

    This is the tutorial's 交叉熵损失, L = -Σ_{i=1}^{N} log P(w_i | w_1, ..., w_{i-1}; θ), once
    ``logits[i]`` is the model's prediction for ``targets[i]`` from the context before it.
    ``reduction="sum"`` (the default) returns L exactly as written; ``"mean"`` divides by n, the
    number of predicted positions (targets not ignored).

    logits (..., V), targets (...) integers -> loss (a 0-d array), cache. Below, N is the number
    of positions, predicted or not. The cache holds the per-position log-probabilities
    ``logp_target`` (0 where ignored) and the count n.
    """
    if reduction not in ("sum", "mean"):
        raise ValueError(f"reduction must be 'sum' or 'mean', got {reduction!r}")
    V = logits.shape[-1]
    z = logits.reshape(-1, V)  # (N, V)
    y = targets.reshape(-1)  # (N,)
    keep = y != ignore_index  # (N,)
    safe_y = np.where(keep, y, 0)
    rows = np.arange(len(y))
    # log P(y) = z_y - m - log Σ exp(z - m), with m the row max. The softmax itself, exp(z - m)
    # normalised, is kept: the backward pass needs exactly it, so it is computed once.
    m = z.max(axis=-1, keepdims=True)  # (N, 1)
    e = np.exp(z - m)  # (N, V)
    sum_e = e.sum(axis=-1, keepdims=True)  # (N, 1)
    p = e / sum_e  # (N, V) = softmax(z)
    log_z = (m + np.log(sum_e))[:, 0]  # (N,) = log Σ exp(z)
    logp_target = np.where(keep, z[rows, safe_y] - log_z, 0.0)  # (N,)
    n = int(keep.sum())
    total = -logp_target.sum()
    loss = total / max(n, 1) if reduction == "mean" else total
    cache = {
        "p": p, "y": safe_y, "keep": keep, "n": n, "reduction": reduction,
        "shape": logits.shape, "logp_target": logp_target.reshape(targets.shape),
    }
    return np.asarray(loss, dtype=logits.dtype), cache


def cross_entropy_backward(dloss, cache):
    """dloss (scalar) -> dlogits (..., V).

    For one position, -log softmax(z)[y] has gradient softmax(z) - onehot(y). Ignored
    positions get 0; with ``mean`` every row is divided by N.
    """
    p, y, keep = cache["p"], cache["y"], cache["keep"]
    scale = dloss / max(cache["n"], 1) if cache["reduction"] == "mean" else dloss
    dz = p.copy()  # (N, V): softmax(z) - onehot(y), row by row; p itself stays as it was
    dz[np.arange(len(y)), y] -= 1.0
    dz *= np.where(keep, scale, 0.0).astype(p.dtype)[:, None]  # ignored rows get 0
    return dz.reshape(cache["shape"])
