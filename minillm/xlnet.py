"""XLNet's two-stream Transformer for permutation language modeling (Yang et al. 2019).

Permutation language modeling (objectives/xlnet.py) predicts the tokens of a sequence in a
random factorization order z, a permutation of the positions, each from the tokens earlier in
the order, wherever they stand in the text:

    log p(x) = Σ_t log p(x_{z_t} | x_{z<t})                               (Yang et al. 2019, Eq. 3)

The text keeps its positions; only who may read whom changes, and that is two attention masks
(stream_masks). A token may not read its own content while it is being predicted, yet the
other tokens must read it when their turn comes. So every position carries two states, and
every layer m updates both with the same weights (section 2.3):

    content stream  h_{z_t}^(m) = Attention(Q = h_{z_t}^(m-1), KV = h_{z≤t}^(m-1))   sees itself
    query stream    g_{z_t}^(m) = Attention(Q = g_{z_t}^(m-1), KV = h_{z<t}^(m-1))   never x_{z_t}

Keys and values are always made from the content stream h; the query stream only asks. The
prediction of x_{z_t} is read from the top of the query stream, with the tied embedding:

    p(X_{z_t} = x | x_{z<t}) = softmax(g_{z_t}^(M) wte^T + out_bias)_x                (Eq. 4)

What minillm builds, and what it leaves out of XLNet:

- Positions are learned absolute embeddings, added to both streams at the bottom:
  h^(0)_i = e(x_i) + p_i and g^(0)_i = w + p_i, w one learned vector (``mask_emb``, XLNet's
  name). The position p_i is how the query stream knows *which* token it predicts: without it
  two targets with the same visible context would get the same prediction (section 2.3,
  "target position aware"). Transformer-XL's relative positions are left out, and so are
  its segment recurrence (memory of the previous segment), relative segment encodings and
  the two-segment (sentence pair) input.
- Each layer is one post-LN block as in BERT, LN(x + attn(x)) then LN(x + mlp(x)), applied to
  both streams with the same weights (transformer.py's block, with the two-stream wiring
  written out in two_stream_forward); GELU is the erf form (Hugging Face's XLNet default).
- Attention dropout and dropout are left out, as everywhere in minillm.

Parameters: wte (V, C), wpe (n_ctx, C), mask_emb (C,) = w, the blocks ``h.<l>.`` with the
names of transformer.py, and out_bias (V,). Shape letters as in layers.py.
"""

from __future__ import annotations

import numpy as np

from .layers import (
    embedding_backward,
    embedding_forward,
    layernorm_backward,
    layernorm_forward,
    linear_backward,
    linear_forward,
    position_embedding_backward,
    position_embedding_forward,
)
from .models import check_inputs
from .transformer import (
    heads_backward,
    heads_forward,
    mlp_backward,
    mlp_forward,
    weights_under,
    with_prefix,
)


# ----------------------------------------------------------------------------------------------
# The factorization order and the two masks


def check_order(order, shape, name="order"):
    """``order`` must be a (B, T) integer array whose every row is a permutation of 0..T-1."""
    order = np.asarray(order)
    if order.shape != tuple(shape) or order.dtype.kind not in "iu":
        raise ValueError(f"{name} must be a {tuple(shape)} integer array, got shape "
                         f"{order.shape} and dtype {order.dtype}")
    bad = [b for b in range(shape[0]) if not np.array_equal(np.sort(order[b]),
                                                            np.arange(shape[1]))]
    if bad:
        raise ValueError(f"{name}[{bad[0]}] = {order[bad[0]].tolist()} is not a permutation "
                         f"of the positions 0..{shape[1] - 1}")
    return order


def stream_masks(order, attention_mask=None):
    """The two attention masks of the factorization order z (``order[b, t]`` = z_t, the
    position predicted t-th). ``allowed[b, i, j]`` says that position i may read position j:

        rank[i] = t where z_t = i                        (the inverse permutation)
        content  allowed[i, j] = rank[j] <= rank[i]      h_{z_t} reads h_{z≤t}, itself included
        query    allowed[i, j] = rank[j] <  rank[i]      g_{z_t} reads h_{z<t}, never itself

    and nobody reads padding (``attention_mask`` 0). order (B, T) -> two (B, T, T) booleans.
    """
    B, T = order.shape
    real = np.ones((B, T), dtype=bool) if attention_mask is None else attention_mask.astype(bool)
    rank = np.argsort(order, axis=-1)  # (B, T): the inverse of each row's permutation
    content = (rank[:, None, :] <= rank[:, :, None]) & real[:, None, :]  # (B, T, T)
    query = (rank[:, None, :] < rank[:, :, None]) & real[:, None, :]  # (B, T, T)
    return content, query


def mask_grids(order, tokens=None):
    """The two masks of one factorization order (a list of positions) as text: row i is the
    position that reads, column j the position read, ``x`` allowed and ``.`` not."""
    order = np.asarray(order)[None]  # (1, T)
    content, query = stream_masks(check_order(order, order.shape))
    T = order.shape[1]
    if tokens is not None and len(tokens) != T:
        raise ValueError(f"tokens must name the {T} positions of order, got {len(tokens)}")
    lines = ["order z: " + " -> ".join(str(int(i)) for i in order[0])]
    if tokens is not None:
        lines.append("tokens:  " + "  ".join(f"{i}={w}" for i, w in enumerate(tokens)))
    header = "   " + " ".join(str(j % 10) for j in range(T))  # the positions read
    title = "content stream h (z<=t)"
    width = max(len(header), len(title)) + 3  # the left grid's column
    lines.append(f"{title:<{width}}query stream g (z<t)")
    lines.append(f"{header:<{width}}{header}")
    for i in range(T):
        left = f"{i:>2} " + " ".join("x" if a else "." for a in content[0, i])
        right = f"{i:>2} " + " ".join("x" if a else "." for a in query[0, i])
        lines.append(f"{left:<{width}}{right}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------
# One two-stream layer


def _summed(a, b):
    """{name: a[name] + b[name]}: the gradient of a weight both streams use is the sum of the
    two streams' parts."""
    return {name: a[name] + b[name] for name in a}


def two_stream_forward(h, g, w, spec, content_allowed, query_allowed):
    """One layer of two-stream self-attention and its feed-forward, post-LN, one set of weights
    (Yang et al. 2019, section 2.3, Eq. 4's g and the content stream h):

        g_{z_t} <- Attention(Q = g_{z_t}, KV = h_{z<t})      then LN, feed-forward, LN
        h_{z_t} <- Attention(Q = h_{z_t}, KV = h_{z≤t})      then LN, feed-forward, LN

    h, g (B, T, C) -> h, g (B, T, C). ``w`` is the block's weights under transformer.py's names
    (weights_under); content_allowed and query_allowed broadcast to (B, H, T, T).
    """
    H, eps, C = spec.n_head, spec.ln_eps, h.shape[-1]
    attn, mlp = weights_under(w, "attn."), weights_under(w, "mlp.")
    cache = {"C": C}
    # 1. The content stream makes queries, keys and values from h; the query stream makes only
    #    queries, from g, with the same query weights (the first C columns of c_attn).
    qkv, cache["qkv"] = linear_forward(h, attn["c_attn.w"], attn["c_attn.b"])  # (B, T, 3C)
    q_h, k, v = np.split(qkv, 3, axis=-1)  # 3 x (B, T, C)
    q_g, cache["q_g"] = linear_forward(g, attn["c_attn.w"][:, :C], attn["c_attn.b"][:C])
    # 2. Both streams attend to the keys and values of h: the content stream to z≤t, the
    #    query stream to z<t.
    a_h, cache["attn_h"] = heads_forward(q_h, k, v, H, content_allowed, attn["c_proj.w"],
                                          attn["c_proj.b"])  # (B, T, C)
    a_g, cache["attn_g"] = heads_forward(q_g, k, v, H, query_allowed, attn["c_proj.w"],
                                          attn["c_proj.b"])  # (B, T, C)
    # 3. x = LN_1(x + attn(x)), each stream
    h, cache["ln_1h"] = layernorm_forward(h + a_h, w["ln_1.g"], w["ln_1.b"], eps)
    g, cache["ln_1g"] = layernorm_forward(g + a_g, w["ln_1.g"], w["ln_1.b"], eps)
    # 4. x = LN_2(x + mlp(x)), each stream
    m_h, cache["mlp_h"] = mlp_forward(h, mlp, spec.activation)  # (B, T, C)
    h, cache["ln_2h"] = layernorm_forward(h + m_h, w["ln_2.g"], w["ln_2.b"], eps)
    m_g, cache["mlp_g"] = mlp_forward(g, mlp, spec.activation)  # (B, T, C)
    g, cache["ln_2g"] = layernorm_forward(g + m_g, w["ln_2.g"], w["ln_2.b"], eps)
    return h, g, cache


def two_stream_backward(dh, dg, cache):
    """dh, dg (B, T, C) -> dh, dg (B, T, C), grads of the block's weights (names as in ``w``).

    The forward's steps in reverse. Every weight is used by both streams, so its gradient is
    the sum of the two streams' parts; k and v were made once, from h, and read by both.
    """
    C = cache["C"]
    # 4. x = LN_2(x + mlp(x)): back through the norm, then the sum splits in two.
    dsum_h, dln2g_h, dln2b_h = layernorm_backward(dh, cache["ln_2h"])
    dm_h, grads_mlp_h = mlp_backward(dsum_h, cache["mlp_h"])
    dh = dsum_h + dm_h
    dsum_g, dln2g_g, dln2b_g = layernorm_backward(dg, cache["ln_2g"])
    dm_g, grads_mlp_g = mlp_backward(dsum_g, cache["mlp_g"])
    dg = dsum_g + dm_g
    # 3. x = LN_1(x + attn(x))
    dh, dln1g_h, dln1b_h = layernorm_backward(dh, cache["ln_1h"])  # the sum's gradient
    dg, dln1g_g, dln1b_g = layernorm_backward(dg, cache["ln_1g"])
    # 2. a = attention(q, k, v) for each stream, k and v the same arrays in both
    dq_h, dk_h, dv_h, dwp_h, dbp_h = heads_backward(dh, cache["attn_h"])
    dq_g, dk_g, dv_g, dwp_g, dbp_g = heads_backward(dg, cache["attn_g"])
    # 1. qkv = h c_attn (k and v read by both streams), q_g = g c_attn[:, :C]
    dqkv = np.concatenate([dq_h, dk_h + dk_g, dv_h + dv_g], axis=-1)  # (B, T, 3C)
    dh_in, dw_attn, db_attn = linear_backward(dqkv, cache["qkv"])
    dg_in, dw_q, db_q = linear_backward(dq_g, cache["q_g"])
    dw_attn[:, :C] += dw_q  # the query weights, shared
    db_attn[:C] += db_q
    grads = {"ln_2.g": dln2g_h + dln2g_g, "ln_2.b": dln2b_h + dln2b_g,
             "ln_1.g": dln1g_h + dln1g_g, "ln_1.b": dln1b_h + dln1b_g,
             "attn.c_attn.w": dw_attn, "attn.c_attn.b": db_attn,
             "attn.c_proj.w": dwp_h + dwp_g, "attn.c_proj.b": dbp_h + dbp_g}
    grads.update(with_prefix("mlp.", _summed(grads_mlp_h, grads_mlp_g)))
    return dh + dh_in, dg + dg_in, grads


# ----------------------------------------------------------------------------------------------
# The model


def xlnet_forward(params, cfg, ids, order, attention_mask=None):
    """XLNet's forward pass.  ids, order (B, T) -> logits (B, T, V), cache.

        h = wte[ids] + wpe[t],   g = mask_emb + wpe[t]           the two streams   (B, T, C)
        h, g = two_stream_block_l(h, g) for l = 0..L-1            masks from order
        logits = g wte^T + out_bias                               read from the query stream

    ``logits[b, i]`` is the prediction for position i from the tokens before i in the order:
    log p(x_i | x_{z<rank(i)}). ``cache["h"]`` is the top of the content stream.
    """
    ids, attention_mask = check_inputs(cfg, ids, attention_mask)
    order = check_order(order, ids.shape)
    B, T = ids.shape
    content, query = stream_masks(order, attention_mask)  # (B, T, T) each
    tok, c_tok = embedding_forward(ids, params["wte"])  # (B, T, C)
    pos, c_pos = position_embedding_forward(T, params["wpe"])  # (T, C)
    h = tok + pos  # (B, T, C): h^(0)_i = e(x_i) + p_i
    g = np.tile(params["mask_emb"] + pos, (B, 1, 1))  # (B, T, C): g^(0)_i = w + p_i
    spec, blocks = cfg.block_spec(), []
    for layer in range(cfg.n_layer):
        w = weights_under(params, f"h.{layer}.")
        h, g, block = two_stream_forward(h, g, w, spec, content[:, None], query[:, None])
        blocks.append(block)
    logits = g @ params["wte"].T + params["out_bias"]  # (B, T, V)
    cache = {"tok": c_tok, "pos": c_pos, "blocks": blocks, "h": h, "g": g,
             "wte": params["wte"]}
    return logits, cache


def xlnet_backward(dlogits, cache):
    """dlogits (B, T, V) -> grads, a dict with the same keys as the parameters."""
    grads = {}
    g, wte = cache["g"], cache["wte"]
    V, C = wte.shape
    # logits = g wte^T + out_bias: the output layer's part of the tied embedding's gradient.
    grads["out_bias"] = dlogits.reshape(-1, V).sum(axis=0)
    dwte_out = dlogits.reshape(-1, V).T @ g.reshape(-1, C)  # (V, C)
    dg = dlogits @ wte  # (B, T, C)
    dh = np.zeros_like(dg)  # the top of the content stream is not read by the output
    for layer in reversed(range(len(cache["blocks"]))):
        dh, dg, block_grads = two_stream_backward(dh, dg, cache["blocks"][layer])
        grads.update(with_prefix(f"h.{layer}.", block_grads))
    # g = mask_emb + wpe[t] and h = wte[ids] + wpe[t]: the position table gets both.
    grads["mask_emb"] = dg.sum(axis=(0, 1))  # (C,)
    grads["wpe"] = position_embedding_backward(dh + dg, cache["pos"])
    grads["wte"] = embedding_backward(dh, cache["tok"]) + dwte_out  # tied: lookup + output
    return grads
