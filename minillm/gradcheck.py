"""Numerical gradients by central differences, for tests and for a reader in a debugger.

    df/dx_i ≈ (f(x + h e_i) - f(x - h e_i)) / (2h)

The error of the central difference is O(h^2) from truncation plus O(eps/h) from rounding;
in float64 h = 1e-6 balances the two near 1e-10 relative error for functions of size O(1).
Every element is perturbed (the shapes in minillm's checks are tiny), in place, and restored.
"""

from __future__ import annotations

import numpy as np

# Step of the central difference in float64: truncation ~h^2 and rounding ~1e-16/h balance
# near 1e-6.
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


def relative_error(a, b):
    """max |a - b| / max(|a|, |b|, 1e-12), elementwise, as one number."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b) / np.maximum(np.maximum(np.abs(a), np.abs(b)), 1e-12)))
