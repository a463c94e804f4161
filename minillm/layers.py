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

# The label of a position that is not predicted. Cross-entropy skips it. -100 is the value
# Hugging Face and PyTorch use, so minillm's labels mean the same thing as theirs.
IGNORE_INDEX = -100


# ----------------------------------------------------------------------------------------------
# Sums along one axis, as products with a vector of ones
#
# NumPy's ``x.sum(axis=-1)`` restarts its reduction loop for every row: on the short rows of
# attention (S = 64) and layer norm (C = 64) that costs 4 to 6 times a BLAS matrix-vector
# product with a column of ones, and ``x.sum(axis=0)`` over many rows 2 to 5 times. The two
# helpers are those products: the same sums, added in another order.


def sum_last(x):
    """Σ over the last axis, kept as an axis of length 1: (..., K) -> (..., 1). Float x."""
    return x @ np.ones((x.shape[-1], 1), dtype=x.dtype)


def sum_leading(x):
    """Σ over every axis but the last: (..., K) -> (K,). Float x, K > 0."""
    K = x.shape[-1]
    return np.ones(x.size // K, dtype=x.dtype) @ x.reshape(-1, K)


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
    ids = cache["ids"].reshape(-1)  # (N,)
    dout = dout.reshape(-1, dout.shape[-1])  # (N, C)
    dtable = np.zeros(cache["table_shape"], dtype=cache["dtype"])
    if ids.size == 0:
        return dtable  # nothing was looked up
    # np.add.at(dtable, ids, dout) says the same in one line, at twice the time: instead, sort
    # the rows by token and add each run of equal ids with one reduceat.
    order = np.argsort(ids, kind="stable")  # (N,)
    sorted_ids = ids[order]
    starts = np.flatnonzero(np.r_[True, sorted_ids[1:] != sorted_ids[:-1]])  # each run's first
    dtable[sorted_ids[starts]] = np.add.reduceat(dout[order], starts, axis=0)  # (runs, C)
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
    y = x.reshape(-1, x.shape[-1]) @ w  # (N, O)
    y += b
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
    db = sum_leading(dy2)  # (O,)
    return dx, dw, db


# ----------------------------------------------------------------------------------------------
# Layer norm


def layernorm_forward(x, g, b, eps):
    """``y = (x - mean) / sqrt(var + eps) * g + b`` over the last axis, with the biased variance.

    x (..., C), g (C,), b (C,) -> y (..., C). ``eps`` comes from the model's config (GPT-2 and
    BART 1e-5, BERT 1e-12); it is an argument because the three models differ.
    """
    C = x.shape[-1]
    mean = sum_last(x) / C  # (..., 1)
    xhat = x - mean  # (..., C), centred; normalised in place below
    var = sum_last(np.square(xhat)) / C  # (..., 1)
    rstd = 1.0 / np.sqrt(var + eps)  # (..., 1)
    xhat *= rstd  # (..., C)
    y = xhat * g  # (..., C)
    y += b
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
    C = dy.shape[-1]
    dy_xhat = dy * xhat  # (..., C)
    dg = sum_leading(dy_xhat)  # (C,)
    db = sum_leading(dy)  # (C,)
    # The two row means, without forming dxhat first: mean(dxhat) = (dy @ g) / C and
    # mean(dxhat * xhat) = ((dy * xhat) @ g) / C, each one matrix-vector product.
    mean_dxhat = (dy @ g)[..., None] / C  # (..., 1)
    mean_dxhat_xhat = (dy_xhat @ g)[..., None] / C  # (..., 1)
    dx = dy * g  # (..., C) = dxhat; the formula is then built in this buffer
    dx -= mean_dxhat
    dx -= xhat * mean_dxhat_xhat
    dx *= rstd
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
    normal CDF Φ(x), the same shape as the erf form's ``x * Φ(x)``.
    """
    # In place on one buffer, u = x (sqrt(2/pi) + sqrt(2/pi) 0.044715 x²), which is
    # sqrt(2/pi) (x + 0.044715 x³) in four passes, then cdf = 0.5 (1 + tanh(u)). (No x**3:
    # it is about 100 times slower in float32.)
    cdf = x * x  # (...)
    cdf *= _SQRT_2_OVER_PI * _GELU_CUBIC
    cdf += _SQRT_2_OVER_PI
    cdf *= x  # u
    np.tanh(cdf, out=cdf)
    cdf += 1.0
    cdf *= 0.5
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
    # The last line, built in one buffer to spare the temporaries of a one-liner:
    d = x * x  # (...)
    d *= 2.0 * _SQRT_2_OVER_PI * 3.0 * _GELU_CUBIC
    d += 2.0 * _SQRT_2_OVER_PI  # 2 du/dx
    d *= x
    d *= 1.0 - cdf
    d += 1.0
    d *= cdf
    d *= dy
    return d


# ----------------------------------------------------------------------------------------------
# GELU, the exact erf form of BERT and BART, and erf itself (NumPy has none)

_SQRT_PI = math.sqrt(math.pi)
# erf in three bands, each by the method that converges fastest there. Most GELU inputs lie in
# the first band, which has the cheapest method, and an array wholly inside it takes no other.
#   |x| <= 1   Taylor series of erf(x)/x in t = x², 18 terms, Horner (A&S 7.1.5); in float32
#              the same series economized to 7 terms
#   1 < |x| <= 3   the series without cancellation, 60 terms (A&S 7.1.6)
#   |x| > 3    1 - erfc from its continued fraction, 40 levels (A&S 7.1.14)
# Each reaches float64 rounding (~1e-15) for every x; tests/test_layers.py compares with math.erf.
# float32 input beyond |x| = 1 takes two cheaper bands instead (see _ERFC_SCALED_FLOAT32).
_ERF_TAYLOR = [2.0 / math.sqrt(math.pi) * (-1) ** n / (math.factorial(n) * (2 * n + 1))
               for n in range(18)]  # erf(x) = x Σ_n c_n x^(2n)
# float64 sums all 18 terms: the first omitted one, 1.13 / (n! (2n+1)), is below 1e-17 for n = 18.
# float32 would need 11 (the first omitted term below 2e-9; float32's rounding is 6e-8), but
# Lanczos' economization does it with 7: the series rewritten in Chebyshev polynomials on
# 0 <= t <= 1, whose coefficients fall fast, the terms after the 7th dropped, and the rest
# rewritten as powers of t. Evaluated in float32 its largest error on |x| <= 1 is 1.5e-7 (2.5
# float32 steps of a value below 1, over every float32 there), a little under the 11-term
# sum's 1.6e-7: 8 passes fewer over the array.
_ERF_NEAR = {
    np.dtype(np.float64): _ERF_TAYLOR,
    np.dtype(np.float32): [  # Python floats, so float32 arithmetic stays float32
        float(c) for c in np.polynomial.Polynomial(_ERF_TAYLOR)
        .convert(kind=np.polynomial.Chebyshev, domain=[0.0, 1.0]).truncate(7)
        .convert(kind=np.polynomial.Polynomial, domain=[-1.0, 1.0]).coef],
}
_ERF_SERIES_TERMS = 60
_ERFC_FRACTION_DEPTH = 40


def _erf_near(a):
    """erf(a) = a (c_0 + t (c_1 + t (c_2 + ...))), t = a², for |a| <= 1 (either sign: the
    series is odd)."""
    coefficients = _ERF_NEAR[a.dtype]
    t = a * a
    r = np.full_like(a, coefficients[-1])
    for c in reversed(coefficients[:-1]):
        r *= t
        r += c
    return a * r


# float32, 1 < |x| < 4: erf(x) = 1 - exp(-x²) g(x), where g(x) = exp(x²) erfc(x) is smooth and
# slowly varying there (0.43 down to 0.14), so a polynomial of degree 10 in s = (x - 2.5) / 1.5
# follows it: the one through g at the 11 Chebyshev points of [1, 4] (math.erfc gives the 11
# values, once, at import). Evaluated in float32, erf is then within 1e-7 of math.erf on the
# band, against 60 series terms or 40 fraction levels. From |x| = 4 on, erfc(x) < 1.6e-8 is less
# than half of float32's spacing just below 1 (6e-8), so erf(x) rounds to ±1.
_ERFC_SCALED_FLOAT32 = [  # the powers of s, lowest first; Python floats, as _ERF_NEAR
    float(c) for c in np.polynomial.Chebyshev.interpolate(
        lambda x: np.array([math.exp(v * v) * math.erfc(v) for v in x]), 10, domain=[1.0, 4.0])
    .convert(kind=np.polynomial.Polynomial, domain=[1.0, 4.0], window=[-1.0, 1.0]).coef]
_ERF_FLOAT32_ONE = 4.0  # from here on, float32's erf is 1


def _erf_middle_float32(a):
    """erf(a) = 1 - exp(-a²) g(a) for float32 1 < a < 4, g the polynomial above."""
    s = (a - 2.5) * (1.0 / 1.5)  # [1, 4] -> [-1, 1]
    g = np.full_like(a, _ERFC_SCALED_FLOAT32[-1])
    for c in reversed(_ERFC_SCALED_FLOAT32[:-1]):
        g *= s
        g += c
    g *= np.exp(-a * a)  # erfc(a)
    return 1.0 - g


def _erf_series(a):
    """erf(a) = 2/sqrt(pi) · exp(-a²) · Σ_{n>=0} 2^n a^(2n+1) / (1·3·5···(2n+1)), a >= 0:
    every term positive, so nothing cancels at larger a."""
    a2 = a * a
    term, total = a.copy(), a.copy()
    for n in range(1, _ERF_SERIES_TERMS):
        term *= 2.0 * a2 / (2 * n + 1)
        total += term
    return (2.0 / _SQRT_PI) * np.exp(-a2) * total


def _erfc_fraction(a):
    """erfc(a) = exp(-a²)/sqrt(pi) · 1/(a + (1/2)/(a + 1/(a + (3/2)/(a + ...)))), a > 0."""
    f = a
    for k in range(_ERFC_FRACTION_DEPTH, 0, -1):  # evaluated from the bottom up
        f = a + (k / 2.0) / f
    capped = np.minimum(a, 27.0)  # exp(-27²) ~ 1e-317: erfc is 0 in float64 from there on
    return np.exp(-capped * capped) / _SQRT_PI / f


def erf(x):
    """The error function, ``erf(x) = 2/sqrt(pi) ∫_0^x exp(-t²) dt``, elementwise.

    Computed in float32 for float32 input (as exact as the float32 model around it needs,
    and twice as fast) and in float64 for anything else, using erf(-x) = -erf(x).
    """
    x = np.asarray(x)
    dtype = np.float32 if x.dtype == np.float32 else np.float64
    x = x.astype(dtype, copy=False)
    # The common case, every |x| <= 1 (NaN fails the test): one odd series for both signs,
    # and no bands to gather and scatter.
    if x.size == 0 or (x.min() >= -1.0 and x.max() <= 1.0):
        return _erf_near(x)
    if dtype == np.float32:
        # The first band over the whole array, on x clipped into it (the series is odd, so
        # either sign is right), then the elements beyond it (by integer index: a boolean
        # mask is several times slower) replaced by the middle band's value, on |x| capped at
        # 4 where the middle band gives exactly 1. NaN is in neither and stays NaN.
        out = _erf_near(np.clip(x, -1.0, 1.0))
        flat_x, flat_out = x.reshape(-1), out.reshape(-1)
        wide = np.flatnonzero(np.abs(flat_x) > 1.0)
        capped = np.minimum(np.abs(flat_x[wide]), _ERF_FLOAT32_ONE)
        flat_out[wide] = np.copysign(_erf_middle_float32(capped), flat_x[wide])
        return out
    a = np.abs(x)
    out = np.full_like(a, np.nan)  # NaN falls in no band and stays NaN
    near = a <= 1.0
    out[near] = _erf_near(a[near])
    middle = ~near & (a <= 3.0)
    out[middle] = _erf_series(a[middle])
    far = a > 3.0
    out[far] = 1.0 - _erfc_fraction(a[far])
    return np.copysign(out, x)


def gelu_erf_forward(x):
    """``gelu(x) = x Φ(x) = 0.5 x (1 + erf(x / sqrt(2)))``, the exact form BERT and BART use.

    x (...) -> y (...).
    """
    cdf = erf(x * (1.0 / math.sqrt(2.0)))  # (...), a new array: finished in place
    cdf += 1.0
    cdf *= 0.5  # Φ(x), the standard normal CDF
    y = x * cdf
    return y, {"x": x, "cdf": cdf}


def gelu_erf_backward(dy, cache):
    """dy (...) -> dx (...).  y = x Φ(x), so dy/dx = Φ(x) + x φ(x), φ(x) = exp(-x²/2)/sqrt(2π)."""
    x = cache["x"]
    d = x * x  # (...), then built in place
    d *= -0.5
    np.exp(d, out=d)
    d *= x
    d *= 1.0 / math.sqrt(2.0 * math.pi)  # x φ(x)
    d += cache["cdf"]
    d *= dy
    return d


# ----------------------------------------------------------------------------------------------
# Softmax (with an optional mask) and log-softmax


def softmax_forward(s, allowed=None):
    """``p_j = exp(s_j) / Σ_k exp(s_k)`` over the last axis, stable for any finite input.

    s (..., S) -> p (..., S). With a boolean ``allowed`` (broadcastable to s), positions where
    it is False get probability exactly 0 and take no part in the sum (their scores must be
    finite too: the mask is added as a -inf bias, and inf - inf is NaN). A row with nothing
    allowed (a query whose keys are all padding) becomes all zeros instead of 0/0 = NaN.
    """
    if allowed is None:
        p = s.copy()  # the caller's scores stay as they were; p is worked on in place
    else:
        # A masked score becomes -inf and never reaches exp: exp(-inf) = 0. Adding a 0/-inf
        # bias the size of the mask costs a third of np.where(allowed, s, -inf) on the scores.
        p = s + np.where(allowed, 0.0, -np.inf).astype(s.dtype)
    m = p.max(axis=-1, keepdims=True)
    if allowed is not None:
        m[~np.isfinite(m)] = 0.0  # a row with nothing allowed: all -inf, leave it at 0
    p -= m
    np.exp(p, out=p)
    z = sum_last(p)  # (..., 1)
    z[z == 0.0] = 1.0  # ... and then its probabilities are 0/1 = 0, not 0/0
    p /= z
    return p, {"p": p}


def softmax_backward(dp, cache):
    """dp (..., S) -> ds (..., S).

    With p = softmax(s), dp_j/ds_k = p_j (δ_jk - p_k), so ds = p * (dp - Σ_j dp_j p_j).
    A masked position has p = 0 and so gets ds = 0.
    """
    p = cache["p"]
    # Σ_j dp_j p_j row by row, as einsum's dot products: no (..., S) temporary for dp * p.
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


def attention_forward(q, k, v, allowed=None):
    """Scaled dot-product attention, every head at once.

        scores = q k^T / sqrt(D),   att = softmax(scores) over keys,   out = att v

    q (B, H, T, D), k (B, H, S, D), v (B, H, S, D), allowed broadcastable to (B, H, T, S)
    -> out (B, H, T, D). The cache holds the attention weights ``att``: a debugger stopped here
    shows a (T, S) grid per head whose rows sum to 1 (0 above the diagonal when causal).
    """
    D = q.shape[-1]
    scale = 1.0 / math.sqrt(D)
    scores = (q * scale) @ k.swapaxes(-1, -2)  # (B, H, T, S); scaling q costs T*D, not T*S
    att, sm_cache = softmax_forward(scores, allowed)  # (B, H, T, S)
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
    dscores = softmax_backward(datt, cache["sm"])  # (B, H, T, S), before the scale
    dq = dscores @ k  # (B, H, T, D)
    dq *= scale
    dk = dscores.swapaxes(-1, -2) @ q  # (B, H, S, D)
    dk *= scale
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
    ``reduction="sum"`` (the default) returns L exactly as written; ``"mean"`` divides by N, the
    number of predicted positions.

    logits (..., V), targets (...) integers -> loss (a 0-d array), cache. The cache holds the
    per-position log-probabilities ``logp_target`` (0 where ignored) and the count N.
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
    p = np.exp(z - m)  # (N, V), unnormalised
    sum_e = sum_last(p)  # (N, 1)
    p /= sum_e  # (N, V) = softmax(z)
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
    # dz = (p - onehot(y)) * scale, written as p * scale first: one pass over the (N, V)
    # probabilities that also leaves p as it was, so a second backward gives the same answer.
    rows = np.arange(len(y))
    if keep.all():
        dz = p * np.asarray(scale, dtype=p.dtype)  # (N, V)
        dz[rows, y] -= scale
    else:
        w = np.where(keep, scale, 0.0).astype(p.dtype)  # (N,): ignored rows get 0
        dz = p * w[:, None]  # (N, V)
        dz[rows, y] -= w
    return dz.reshape(cache["shape"])
