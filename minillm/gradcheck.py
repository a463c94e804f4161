"""Numerical gradients by central differences, for tests and for a reader in a debugger.

    df/dx_i ≈ (f(x + h e_i) - f(x - h e_i)) / (2h)

The error of the central difference is O(h^2) from truncation plus O(eps/h) from rounding. For
functions of size O(1) in float64 (eps ~ 1e-16), h = 1e-6 gives ~1e-12 of truncation and
~1e-10 of rounding (the two would balance at h ~ eps^(1/3) ~ 5e-6, near 3e-11): either is far
below the rtol of 1e-5 the checks use.
Every element is perturbed (the shapes in minillm's checks are tiny), in place, and restored.
"""

from __future__ import annotations

import numpy as np

# Step of the central difference in float64: truncation ~h^2 ~ 1e-12, rounding ~1e-16/h ~ 1e-10.
STEP = 1e-6


def numerical_gradient(f, x, h=STEP):
    """The gradient of the scalar ``f()`` w.r.t. the array ``x``, which f reads in place.

    f() -> float, x (any shape, float64) -> grad (same shape as x).
    """
    if x.dtype != np.float64:
        raise ValueError(f"numerical_gradient needs float64 arrays, got x.dtype={x.dtype}")
    grad = np.zeros_like(x)
    flat, gflat = x.reshape(-1), grad.reshape(-1)  # views: writing flat writes x
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + h
        f_plus = float(f())
        flat[i] = old - h
        f_minus = float(f())
        flat[i] = old
        gflat[i] = (f_plus - f_minus) / (2.0 * h)
    return grad


def projected(out, upstream):
    """``Σ out * upstream``: turns an array output into a scalar whose gradient w.r.t. the
    output is ``upstream``. A random upstream gradient checks every output element (an
    upstream of all ones would, for example, make a softmax's true gradient exactly 0)."""
    return float(np.sum(out * upstream))


# A gradient this large somewhere shows that a check compared something (a gradient that is ~0
# everywhere would pass any comparison).
NOT_VACUOUS = 1e-4
# What "exactly zero" allows of an analytic gradient: rounding of sums that are 0 in exact
# arithmetic (the key bias's gradient is Σ_s of a softmax gradient, which sums to 0).
ROUNDING = 1e-12


def check_grads(f, arrays, analytic, zero=None, rtol=1e-5, atol=1e-7):
    """Check ``analytic[name]``, the gradient of the scalar ``f()`` w.r.t. ``arrays[name]``,
    against central differences, for every name of ``arrays`` (float64, perturbed in place).

    ``zero`` maps a name to an index (``np.s_[C:2*C]``, a boolean mask) of the part of its
    gradient that is zero by construction: the key part of an attention bias (softmax ignores a
    shift shared by all keys), the rows of a position table that no position reads. That part
    must be zero (to rounding) in both gradients; everywhere else the numeric gradient must be
    clearly non-zero somewhere, so that no comparison passes vacuously.
    """
    zero = zero or {}
    assert set(analytic) >= set(arrays), f"no gradient for {sorted(set(arrays) - set(analytic))}"
    for name, value in arrays.items():
        numeric = numerical_gradient(f, value)
        np.testing.assert_allclose(analytic[name], numeric, rtol=rtol, atol=atol, err_msg=name)
        rest = np.ones(value.shape, dtype=bool)
        if name in zero:
            np.testing.assert_allclose(analytic[name][zero[name]], 0.0, rtol=0, atol=ROUNDING,
                                       err_msg=f"{name}: the part that must be zero")
            rest[zero[name]] = False
        assert rest.any() and np.max(np.abs(numeric[rest])) > NOT_VACUOUS, (
            f"{name}: gradient ~0 where it should not be; the check proves nothing")


def key_bias_zeros(names, C):
    """The exactly-zero parts of attention biases among ``names``: the key third [C, 2C) of a
    fused q, k, v bias (``c_attn.b``) and the key half [0, C) of a cross-attention k, v bias
    (``c_kv.b``). Adding the same vector to every key adds the same number to every score of a
    query, which softmax takes away."""
    zero = {n: np.s_[C:2 * C] for n in names if n.endswith("c_attn.b")}
    zero.update({n: np.s_[:C] for n in names if n.endswith("c_kv.b")})
    return zero
