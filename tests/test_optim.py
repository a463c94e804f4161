import math

import numpy as np
import pytest

from minillm.optim import (
    adamw_init,
    adamw_step,
    clip_by_global_norm,
    global_norm,
    learning_rate,
    sgd_step,
)


def test_sgd_step_is_theta_minus_lr_times_gradient():
    p = {"w": np.array([[1.0, 2.0]]), "b": np.array([3.0])}
    g = {"w": np.array([[0.5, -1.0]]), "b": np.array([2.0])}
    sgd_step(p, g, lr=0.1)
    np.testing.assert_allclose(p["w"], [[0.95, 2.1]], rtol=1e-15)
    np.testing.assert_allclose(p["b"], [2.8], rtol=1e-15)


def test_adamw_first_step_moves_each_parameter_by_lr_against_the_sign_of_its_gradient():
    """At t = 1, m̂ = g and v̂ = g², so the Adam step is lr · g / |g| = lr · sign(g)."""
    rng = np.random.default_rng(0)
    p = {"w": rng.normal(size=(3, 4))}
    g = {"w": rng.normal(size=(3, 4))}
    start = p["w"].copy()
    state = adamw_init(p)
    adamw_step(p, g, state, lr=1e-2, eps=0.0, weight_decay=0.0)
    np.testing.assert_allclose(p["w"], start - 1e-2 * np.sign(g["w"]), rtol=1e-13)


def test_adamw_matches_the_formula_step_by_step():
    """A loop written straight from Loshchilov & Hutter's algorithm, three steps."""
    rng = np.random.default_rng(1)
    p = {"w": rng.normal(size=(2, 3)), "b": rng.normal(size=3)}
    ref = {k: v.copy() for k, v in p.items()}
    m = {k: np.zeros_like(v) for k, v in p.items()}
    v2 = {k: np.zeros_like(v) for k, v in p.items()}
    state = adamw_init(p)
    lr, b1, b2, eps, wd = 0.01, 0.9, 0.95, 1e-8, 0.1
    for t in range(1, 4):
        g = {k: rng.normal(size=val.shape) for k, val in p.items()}
        adamw_step(p, g, state, lr, b1, b2, eps, wd)
        for k in ref:
            m[k] = b1 * m[k] + (1 - b1) * g[k]
            v2[k] = b2 * v2[k] + (1 - b2) * g[k] ** 2
            mhat, vhat = m[k] / (1 - b1**t), v2[k] / (1 - b2**t)
            decay = wd if ref[k].ndim >= 2 else 0.0  # biases are not decayed
            ref[k] = ref[k] - lr * decay * ref[k] - lr * mhat / (np.sqrt(vhat) + eps)
    for k in ref:
        np.testing.assert_allclose(p[k], ref[k], rtol=1e-13)
    assert state["step"] == 3


def test_adamw_weight_decay_is_decoupled_from_the_gradient():
    """With a zero gradient the Adam term is 0 and a matrix shrinks by exactly (1 - lr·λ)."""
    p = {"w": np.full((2, 2), 4.0), "b": np.full(2, 4.0)}
    state = adamw_init(p)
    adamw_step(p, {"w": np.zeros((2, 2)), "b": np.zeros(2)}, state, lr=0.5, weight_decay=0.1)
    np.testing.assert_allclose(p["w"], 4.0 * (1 - 0.05), rtol=1e-15)
    np.testing.assert_array_equal(p["b"], 4.0)


def test_adamw_minimises_a_quadratic():
    p = {"w": np.array([[5.0, -3.0]])}
    state = adamw_init(p)
    for _ in range(500):
        adamw_step(p, {"w": 2 * p["w"]}, state, lr=0.05, weight_decay=0.0)
    assert np.max(np.abs(p["w"])) < 0.05


def test_clipping_caps_the_global_norm_and_keeps_the_direction():
    g = {"a": np.array([3.0]), "b": np.array([[4.0]])}  # norm 5
    norm = clip_by_global_norm(g, 1.0)
    assert norm == 5.0
    np.testing.assert_allclose(global_norm(g), 1.0, rtol=1e-15)
    np.testing.assert_allclose([g["a"][0], g["b"][0, 0]], [0.6, 0.8], rtol=1e-15)


def test_clipping_leaves_a_small_gradient_alone():
    g = {"a": np.array([0.3, 0.4])}
    assert clip_by_global_norm(g, 1.0) == pytest.approx(0.5)
    np.testing.assert_array_equal(g["a"], [0.3, 0.4])


def test_learning_rate_warms_up_linearly_then_decays_by_cosine():
    lr = [learning_rate(s, 1.0, 10, 110, min_lr=0.1) for s in range(110)]
    np.testing.assert_allclose(lr[:10], np.arange(1, 11) / 10, rtol=1e-15)
    assert lr[10] == 1.0
    assert lr[60] == pytest.approx(0.1 + 0.45 * (1 + math.cos(math.pi * 0.5)))
    assert all(a >= b for a, b in zip(lr[10:], lr[11:]))
    assert learning_rate(110, 1.0, 10, 110, min_lr=0.1) == pytest.approx(0.1)
