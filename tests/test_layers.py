"""Gradient checks of every layer, in float64, against central differences.

One registry, ``LAYERS``, lists each layer as: how to draw its inputs for given sizes, its
forward, and its backward returning a gradient for each input. One test walks the registry:
it projects the output on a random upstream gradient, differentiates that scalar numerically
w.r.t. every element of every input, and compares with the hand-written backward.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minillm import layers as L
from minillm.erf import erf
from minillm.gradcheck import check_grads, key_bias_zeros, projected
from minillm.transformer import (
    BlockSpec,
    block_backward,
    block_forward,
    cross_attention_backward,
    cross_attention_forward,
    self_attention_backward,
    self_attention_forward,
    weights_under,
    with_prefix,
)
from minillm.models import block_shapes

RTOL, ATOL = 1e-5, 1e-7


def _padding_allowed(rng, B, S):
    """A random right-padding key mask (B, 1, 1, S): row 0 is unpadded (so no gradient is
    trivially 0), every other row has at least one real key."""
    lengths = rng.integers(1, S + 1, size=B)
    lengths[0] = S
    return (np.arange(S)[None, :] < lengths[:, None])[:, None, None, :]


def _random_allowed(rng, shape):
    """A random mask with about 60% allowed; the first row allows two keys at least, so its
    softmax gradient is not trivially 0 (one allowed key has weight exactly 1)."""
    allowed = rng.random(shape) < 0.6
    allowed[(0,) * (len(shape) - 1)][:2] = True
    return allowed


def _targets(rng, B, T, V):
    """Random targets (B, T) with about 30% ignored, but never all of them."""
    y = np.where(rng.random((B, T)) < 0.3, L.IGNORE_INDEX, rng.integers(0, V, (B, T)))
    y[0, 0] = rng.integers(0, V)
    return y


def _block_params(rng, pre, C, F, cross):
    p = {}
    for name, shape in block_shapes(pre, C, F, cross).items():
        p[name] = (1.0 if name.endswith(".g") else 0.0) + 0.3 * rng.normal(size=shape)
    return p


def _block_entry(pre_ln, cross, activation="gelu_tanh", layer=0, layer_scaled=False):
    spec = BlockSpec(n_head=2, ln_eps=1e-5, pre_ln=pre_ln, activation=activation, cross=cross,
                     scale_attn_by_inverse_layer_idx=layer_scaled)

    def make(rng, B, T, C):
        a = _block_params(rng, "h.0.", C, 2 * C, cross)
        a["x"] = rng.normal(size=(B, T, C))
        if cross:
            a["enc"] = rng.normal(size=(B, T + 1, C))
        return a

    def forward(a):
        B, T, _ = a["x"].shape
        allowed = L.causal_mask(T)[None, None]
        enc, cross_allowed = a.get("enc"), None
        if cross:
            cross_allowed = np.ones((B, 1, 1, enc.shape[1]), dtype=bool)
            cross_allowed[0, ..., -1] = False  # a padded source position in row 0
        return block_forward(a["x"], weights_under(a, "h.0."), spec, allowed, enc, cross_allowed,
                             layer=layer)

    def backward(d, c):
        dx, denc, block_grads = block_backward(d, c)
        grads = with_prefix("h.0.", block_grads)
        grads["x"] = dx
        if cross:
            grads["enc"] = denc
        return grads

    return {"make": make, "forward": forward, "backward": backward}


def _cross_entropy_entry(reduction):
    return {
        "make": lambda rng, B, T, C: {"z": 3.0 * rng.normal(size=(B, T, C)),
                                      "y": _targets(rng, B, T, C)},
        "forward": lambda a: L.cross_entropy_forward(a["z"], a["y"], reduction),
        "backward": lambda d, c: {"z": L.cross_entropy_backward(d, c)},
    }


def _layernorm_entry(forward, backward):
    return {
        "make": lambda rng, B, T, C: {
            "x": rng.normal(size=(B, T, C)), "g": 1 + 0.3 * rng.normal(size=C),
            "b": rng.normal(size=C)},
        "forward": lambda a: forward(a["x"], a["g"], a["b"], 1e-5),
        "backward": lambda d, c: dict(zip(("x", "g", "b"), backward(d, c))),
    }


LAYERS = {
    "embedding": {
        "make": lambda rng, B, T, C: {
            "ids": rng.integers(0, 5, size=(B, T)), "table": rng.normal(size=(5, C))},
        "forward": lambda a: L.embedding_forward(a["ids"], a["table"]),
        "backward": lambda d, c: {"table": L.embedding_backward(d, c)},
    },
    "position_embedding": {
        "make": lambda rng, B, T, C: {"x": np.zeros((B, T, C)), "table": rng.normal(size=(T + 3, C))},
        "forward": lambda a: (lambda o: (a["x"] + o[0], o[1]))(
            L.position_embedding_forward(a["x"].shape[1], a["table"], offset=2)),
        "backward": lambda d, c: {"table": L.position_embedding_backward(d, c)},
    },
    "linear": {
        "make": lambda rng, B, T, C: {
            "x": rng.normal(size=(B, T, C)), "w": rng.normal(size=(C, C + 1)),
            "b": rng.normal(size=C + 1)},
        "forward": lambda a: L.linear_forward(a["x"], a["w"], a["b"]),
        "backward": lambda d, c: dict(zip(("x", "w", "b"), L.linear_backward(d, c))),
    },
    "layernorm": _layernorm_entry(L.layernorm_forward, L.layernorm_backward),
    "gelu_tanh": {
        "make": lambda rng, B, T, C: {"x": 2.0 * rng.normal(size=(B, T, C))},
        "forward": lambda a: L.gelu_tanh_forward(a["x"]),
        "backward": lambda d, c: {"x": L.gelu_tanh_backward(d, c)},
    },
    "gelu_erf": {
        "make": lambda rng, B, T, C: {"x": 2.0 * rng.normal(size=(B, T, C))},
        "forward": lambda a: L.gelu_erf_forward(a["x"]),
        "backward": lambda d, c: {"x": L.gelu_erf_backward(d, c)},
    },
    "softmax": {
        "make": lambda rng, B, T, C: {"s": rng.normal(size=(B, T, C))},
        "forward": lambda a: L.softmax_forward(a["s"]),
        "backward": lambda d, c: {"s": L.softmax_backward(d, c)},
    },
    "softmax_masked": {
        "make": lambda rng, B, T, C: {"s": rng.normal(size=(B, T, C)),
                                      "allowed": _random_allowed(rng, (B, T, C))},
        "forward": lambda a: L.softmax_forward(a["s"], a["allowed"]),
        "backward": lambda d, c: {"s": L.softmax_backward(d, c)},
    },
    "attention": {
        "make": lambda rng, B, T, C: {
            "q": rng.normal(size=(B, 2, T, C)), "k": rng.normal(size=(B, 2, T, C)),
            "v": rng.normal(size=(B, 2, T, C)),
            "allowed": L.causal_mask(T)[None, None] & _padding_allowed(rng, B, T)},
        "forward": lambda a: L.attention_forward(a["q"], a["k"], a["v"], a["allowed"]),
        "backward": lambda d, c: dict(zip(("q", "k", "v"), L.attention_backward(d, c))),
    },
    "attention_scaled": {  # another factor on the scores than 1/sqrt(D), as GPT-2 block 2 of
        "make": lambda rng, B, T, C: {  # scale_attn_by_inverse_layer_idx has
            "q": rng.normal(size=(B, 2, T, C)), "k": rng.normal(size=(B, 2, T, C)),
            "v": rng.normal(size=(B, 2, T, C)),
            "allowed": L.causal_mask(T)[None, None] & _padding_allowed(rng, B, T)},
        "forward": lambda a: L.attention_forward(a["q"], a["k"], a["v"], a["allowed"],
                                                 scale=1 / (3 * np.sqrt(a["q"].shape[-1]))),
        "backward": lambda d, c: dict(zip(("q", "k", "v"), L.attention_backward(d, c))),
    },
    "self_attention": {
        "make": lambda rng, B, T, C: {
            "x": rng.normal(size=(B, T, C)),
            "a.c_attn.w": 0.5 * rng.normal(size=(C, 3 * C)), "a.c_attn.b": rng.normal(size=3 * C),
            "a.c_proj.w": 0.5 * rng.normal(size=(C, C)), "a.c_proj.b": rng.normal(size=C)},
        "forward": lambda a: self_attention_forward(
            a["x"], weights_under(a, "a."), 2, L.causal_mask(a["x"].shape[1])[None, None]),
        "backward": lambda d, c: (lambda r: {"x": r[0], **with_prefix("a.", r[1])})(
            self_attention_backward(d, c)),
    },
    "cross_attention": {
        "make": lambda rng, B, T, C: {
            "x": rng.normal(size=(B, T, C)), "enc": rng.normal(size=(B, T + 2, C)),
            "a.c_q.w": 0.5 * rng.normal(size=(C, C)), "a.c_q.b": rng.normal(size=C),
            "a.c_kv.w": 0.5 * rng.normal(size=(C, 2 * C)), "a.c_kv.b": rng.normal(size=2 * C),
            "a.c_proj.w": 0.5 * rng.normal(size=(C, C)), "a.c_proj.b": rng.normal(size=C),
            "allowed": _padding_allowed(rng, B, T + 2)},
        "forward": lambda a: cross_attention_forward(a["x"], a["enc"], weights_under(a, "a."), 2,
                                                     a["allowed"]),
        "backward": lambda d, c: (lambda r: {"x": r[0], "enc": r[1], **with_prefix("a.", r[2])})(
            cross_attention_backward(d, c)),
    },
    "cross_entropy_sum": _cross_entropy_entry("sum"),
    "cross_entropy_mean": _cross_entropy_entry("mean"),
    "block_pre_ln": _block_entry(pre_ln=True, cross=False),
    "block_post_ln": _block_entry(pre_ln=False, cross=False),
    "block_post_ln_cross": _block_entry(pre_ln=False, cross=True),
    "block_pre_ln_cross": _block_entry(pre_ln=True, cross=True),
    "block_post_ln_erf": _block_entry(pre_ln=False, cross=False, activation="gelu_erf"),
    "block_pre_ln_layer_scaled": _block_entry(pre_ln=True, cross=False, layer=2,
                                              layer_scaled=True),
}

# Inputs that are not differentiated: integer ids and targets, boolean masks.
NOT_DIFFERENTIABLE = {"ids", "y", "allowed"}
# Entries whose "x" only carries the layer's output through unchanged (x + positions), so the
# layer's backward has no gradient for it.
PASSES_X_THROUGH = {"position_embedding"}


def check_layer_gradients(name, seed, B, T, C):
    entry = LAYERS[name]
    rng = np.random.default_rng(seed)
    a = entry["make"](rng, B, T, C)
    out, cache = entry["forward"](a)
    upstream = rng.normal(size=np.shape(out))
    analytic = entry["backward"](upstream, cache)
    checked = [k for k in a if k not in NOT_DIFFERENTIABLE and a[k].dtype == np.float64]
    if name in PASSES_X_THROUGH:
        checked.remove("x")
    assert set(checked) <= set(analytic), f"backward returned no gradient for {set(checked) - set(analytic)}"
    assert checked
    check_grads(lambda: projected(entry["forward"](a)[0], upstream),
                {k: a[k] for k in checked}, analytic, zero=key_bias_zeros(checked, C),
                rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("name", sorted(LAYERS))
@settings(max_examples=6)
@given(seed=st.integers(0, 2**32 - 1), B=st.integers(1, 2), T=st.integers(2, 4),
       C=st.sampled_from([4, 6, 8]))
def test_layer_gradient(name, seed, B, T, C):
    check_layer_gradients(name, seed, B, T, C)


# ---------------------------------------------------------------------------------------------
# Exact values where a closed form exists


def _softmax_pair(forward, backward):
    """Softmax of x under a mask that differs by position and leaves the first row of the last
    axis with nothing allowed (its probabilities are 0), as (forward, backward)."""
    def allowed(x):
        mask = (np.arange(x.size).reshape(x.shape) % 3) != 1
        mask[(0,) * (x.ndim - 1)] = False
        return mask

    return (lambda x: forward(x, allowed(x)), lambda dy, cache: (backward(dy, cache),))


# Reference and tuned (forward, backward) pairs, backward returning a tuple, and the size of
# the terms a gradient is a sum of (a gradient that cancels to far below them has a rounding
# error relative to them, not to itself).
TUNED = {
    "softmax": (_softmax_pair(L.softmax_forward, L.softmax_backward),
                _softmax_pair(L.softmax_forward_tuned, L.softmax_backward_tuned),
                lambda dy, cache: np.abs(dy).max() * 2),
    "softmax_unmasked": ((L.softmax_forward, lambda dy, c: (L.softmax_backward(dy, c),)),
                         (L.softmax_forward_tuned,
                          lambda dy, c: (L.softmax_backward_tuned(dy, c),)),
                         lambda dy, cache: np.abs(dy).max() * 2),
}


@pytest.mark.parametrize("name", sorted(TUNED))
@settings(max_examples=15, deadline=None)
@given(shape=st.lists(st.integers(1, 7), min_size=2, max_size=4),
       dtype=st.sampled_from([np.float32, np.float64]), seed=st.integers(0, 2**32 - 1))
def test_a_tuned_layer_computes_what_its_reference_computes(name, shape, dtype, seed):
    """Outputs and gradients agree to a few roundings of the dtype (the sums are added in
    another order), in the dtype of the input; a second backward gives the same answer."""
    (forward, backward), (forward_tuned, backward_tuned), term_size = TUNED[name]
    rng = np.random.default_rng(seed)
    x = (3.0 * rng.normal(size=shape)).astype(dtype)
    dy = rng.normal(size=shape).astype(dtype)
    (y, cache), (y_tuned, cache_tuned) = forward(x), forward_tuned(x)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    assert y_tuned.dtype == dtype
    np.testing.assert_allclose(y_tuned, y, rtol=tol, atol=tol)
    grads = backward(dy, cache)
    for _ in range(2):
        for g, g_tuned in zip(grads, backward_tuned(dy, cache_tuned), strict=True):
            assert g_tuned.dtype == dtype
            np.testing.assert_allclose(g_tuned, g, rtol=tol, atol=tol * term_size(dy, cache))


def test_cross_entropy_of_zero_logits_is_log_V():
    """Uniform logits: every target has probability 1/V, so L = N log V (sum) or log V (mean)."""
    V, targets = 7, np.array([[0, 3, L.IGNORE_INDEX], [6, 1, 2]])
    z = np.zeros((2, 3, V))
    total, cache = L.cross_entropy_forward(z, targets, "sum")
    assert cache["n"] == 5
    np.testing.assert_allclose(total, 5 * np.log(V), rtol=1e-15)
    mean, _ = L.cross_entropy_forward(z, targets, "mean")
    np.testing.assert_allclose(mean, np.log(V), rtol=1e-15)


def test_cross_entropy_ignores_ignored_positions():
    """Changing the logits at an ignored position changes neither the loss nor other gradients."""
    rng = np.random.default_rng(0)
    z = rng.normal(size=(1, 4, 5))
    y = np.array([[1, L.IGNORE_INDEX, 3, 0]])
    l1, c1 = L.cross_entropy_forward(z, y)
    z2 = z.copy()
    z2[0, 1] += 100.0 * rng.normal(size=5)
    l2, c2 = L.cross_entropy_forward(z2, y)
    assert l1 == l2
    d1, d2 = L.cross_entropy_backward(1.0, c1), L.cross_entropy_backward(1.0, c2)
    np.testing.assert_array_equal(d1, d2)
    assert np.all(d1[0, 1] == 0.0)


def test_layernorm_of_one_channel_is_its_bias():
    """With C = 1, x - mean(x) = 0, so the output is exactly b and the gradient w.r.t. x is 0."""
    x = np.array([[[3.0], [-2.0]]])
    y, cache = L.layernorm_forward(x, np.array([2.0]), np.array([0.5]), 1e-5)
    np.testing.assert_array_equal(y, np.full_like(x, 0.5))
    dx, dg, db = L.layernorm_backward(np.ones_like(x), cache)
    np.testing.assert_array_equal(dx, np.zeros_like(x))
    np.testing.assert_array_equal(db, [2.0])


def test_attention_with_one_token_returns_its_value():
    """One key: its weight is exactly 1, so the output is v."""
    rng = np.random.default_rng(1)
    q, k, v = (rng.normal(size=(1, 2, 1, 4)) for _ in range(3))
    out, cache = L.attention_forward(q, k, v, L.causal_mask(1)[None, None])
    np.testing.assert_array_equal(cache["att"], np.ones((1, 2, 1, 1)))
    np.testing.assert_allclose(out, v, rtol=1e-15)


def test_causal_attention_weights_are_lower_triangular_rows_summing_to_one():
    rng = np.random.default_rng(2)
    T = 5
    q, k, v = (rng.normal(size=(2, 3, T, 4)) for _ in range(3))
    _, cache = L.attention_forward(q, k, v, L.causal_mask(T)[None, None])
    att = cache["att"]
    assert np.all(att[..., np.triu_indices(T, 1)[0], np.triu_indices(T, 1)[1]] == 0.0)
    np.testing.assert_allclose(att.sum(-1), 1.0, rtol=1e-14)


def test_fully_masked_row_is_finite_in_forward_and_backward():
    """A query whose keys are all padding gets zero weights, not 0/0 = NaN."""
    s = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    allowed = np.array([[True, True, False], [False, False, False]])
    p, cache = L.softmax_forward(s, allowed)
    np.testing.assert_array_equal(p[1], 0.0)
    assert p[0, 2] == 0.0 and abs(p[0].sum() - 1.0) < 1e-15
    ds = L.softmax_backward(np.ones_like(s), cache)
    assert np.all(np.isfinite(ds))


def test_extreme_logits_give_finite_loss_and_gradient():
    z = np.array([[[1e4, -1e4, 0.0], [-1e4, -1e4, 1e4]]])
    y = np.array([[1, 0]])
    loss, cache = L.cross_entropy_forward(z, y)
    np.testing.assert_allclose(loss, 2e4 + 2e4, rtol=1e-12)
    assert np.all(np.isfinite(L.cross_entropy_backward(1.0, cache)))


def test_erf_matches_math_erf_to_1e_13_over_the_whole_real_line():
    """Dense near the switch between the two methods, wide out to where erf is 1 in float64,
    and the special values."""
    import math

    xs = np.concatenate([
        np.linspace(-8.0, 8.0, 40001), np.linspace(2.95, 3.05, 2001),
        np.geomspace(1e-300, 1e3, 2000), -np.geomspace(1e-300, 1e3, 2000),
        [0.0, -0.0, 1e308, -1e308, np.inf, -np.inf],
    ])
    expected = np.array([math.erf(v) for v in xs])
    np.testing.assert_allclose(erf(xs), expected, rtol=1e-13, atol=1e-13)
    assert np.isnan(erf(np.array([np.nan])))[0]


def test_erf_in_float32_is_as_exact_as_float32_allows():
    """float32 input is computed in float32 with its own cheaper bands: within 2e-7 of math.erf
    (1.5e-7 measured over every float32 in [0, 4]: 2.5 float32 steps of a value below 1, where
    the spacing is 6e-8), with the special values of float64."""
    import math

    xs = np.concatenate([np.linspace(-6.0, 6.0, 24001), np.linspace(0.99, 1.01, 2001),
                         np.linspace(3.99, 4.01, 2001), [0.0, -0.0, 1e30, np.inf, -np.inf]])
    xs = xs.astype(np.float32)
    got = erf(xs)
    assert got.dtype == np.float32
    expected = np.array([math.erf(float(v)) for v in xs])
    np.testing.assert_allclose(got, expected, rtol=0, atol=2e-7)
    assert np.signbit(erf(np.float32(-0.0)))
    assert np.isnan(erf(np.array([np.nan, 2.0], dtype=np.float32))[0])


def test_erf_gelu_differs_from_the_tanh_form():
    """The two GELUs agree to ~1e-3, not exactly: a model must use its own."""
    x = np.linspace(-4, 4, 101)
    gap = np.max(np.abs(L.gelu_erf_forward(x)[0] - L.gelu_tanh_forward(x)[0]))
    assert 1e-5 < gap < 1e-2


def test_causal_mask_with_a_cache_lets_new_tokens_see_everything_before():
    np.testing.assert_array_equal(
        L.causal_mask(2, 4), [[True, True, True, False], [True, True, True, True]])


@settings(max_examples=20)
@given(B=st.integers(0, 4), T=st.integers(0, 6), V=st.integers(1, 6), seed=st.integers(0, 2**32 - 1))
def test_embedding_backward_adds_every_use_of_a_row(B, T, V, seed):
    """Each use of a row adds its upstream gradient: repeated ids summed, unused rows 0, and an
    empty batch gives an all-zero table (a loop over the positions is the oracle)."""
    rng = np.random.default_rng(seed)
    ids, table = rng.integers(0, V, size=(B, T)), rng.normal(size=(V, 3))
    _, cache = L.embedding_forward(ids, table)
    dout = rng.normal(size=(B, T, 3))
    expected = np.zeros_like(table)
    for b in range(B):
        for t in range(T):
            expected[ids[b, t]] += dout[b, t]
    np.testing.assert_allclose(L.embedding_backward(dout, cache), expected, rtol=1e-14, atol=1e-14)


def test_the_gradient_check_itself_refuses_wrong_gradients_wrong_zeros_and_vacuous_checks():
    x = np.array([1.0, 2.0, 3.0])

    def f():
        return float(np.sum(x[:2] ** 2))  # gradient [2, 4, 0]: its last element is zero

    check_grads(f, {"x": x}, {"x": np.array([2.0, 4.0, 0.0])}, zero={"x": np.s_[2:]})
    for analytic, zero in (([2.0, 4.5, 0.0], {}), ([2.0, 4.0, 0.0], {"x": np.s_[1:]}),
                           ([2.0, 4.0, 0.0], {"x": np.s_[:]})):
        with pytest.raises(AssertionError):
            check_grads(f, {"x": x}, {"x": np.array(analytic)}, zero=zero)
    y = np.array([1.0])
    with pytest.raises(AssertionError, match="proves nothing"):
        check_grads(lambda: 0.0 * float(y[0]), {"y": y}, {"y": np.zeros(1)})
