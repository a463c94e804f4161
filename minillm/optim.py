"""Gradient descent by hand: SGD, AdamW, clipping by global norm, and the learning-rate schedule.

The tutorial: "其中 θ 是模型参数，通过梯度下降优化" (θ is optimised by gradient descent). Every
function here updates the flat parameter dict in place, name by name, so a reader can watch one
tensor change in a debugger.
"""

from __future__ import annotations

import math

import numpy as np


def decays(name, value):
    """Weight decay applies to matrices (linear weights, embeddings), not to biases and
    layer-norm gains: the rule of GPT-2-style training (nanoGPT decays every tensor of two or
    more dimensions)."""
    return value.ndim >= 2


def sgd_step(params, grads, lr):
    """Plain gradient descent: θ ← θ - lr · ∂L/∂θ."""
    for name, g in grads.items():
        params[name] -= lr * g


def adamw_init(params):
    """Zero first and second moments for every parameter, and the step counter."""
    return {
        "step": 0,
        "m": {n: np.zeros_like(theta) for n, theta in params.items()},
        "v": {n: np.zeros_like(theta) for n, theta in params.items()},
    }


def adamw_step(params, grads, state, lr, beta1=0.9, beta2=0.95, eps=1e-8, weight_decay=0.1):
    """One AdamW step (Loshchilov & Hutter 2019: Adam with decoupled weight decay).

        t ← t + 1
        m ← β1 m + (1 - β1) g            v ← β2 v + (1 - β2) g²
        m̂ = m / (1 - β1^t)                v̂ = v / (1 - β2^t)
        θ ← θ - lr · λ · θ                (decay, decoupled from the gradient; matrices only)
        θ ← θ - lr · m̂ / (sqrt(v̂) + ε)

    Defaults β2 = 0.95 and λ = 0.1 are GPT-3's (Brown et al. 2020, appendix B).
    """
    state["step"] += 1
    t = state["step"]
    c1, c2 = 1.0 - beta1**t, 1.0 - beta2**t
    # The last line with the corrections moved onto scalars:
    #   lr m̂ / (sqrt(v̂) + ε) = (lr sqrt(c2) / c1) · m / (sqrt(v) + ε sqrt(c2)),
    # so each tensor takes 5 passes there instead of 7. (Kingma & Ba's "efficient" form moves
    # sqrt(c2) the same way but leaves ε unscaled, a slightly different step; scaling ε keeps
    # it the step above, and PyTorch's, exactly in exact arithmetic.)
    step_size, eps_hat = lr * math.sqrt(c2) / c1, eps * math.sqrt(c2)
    for name, g in grads.items():
        theta, m, v = params[name], state["m"][name], state["v"][name]
        m *= beta1
        m += (1.0 - beta1) * g
        v *= beta2
        g2 = g * g
        g2 *= 1.0 - beta2
        v += g2
        if weight_decay and decays(name, theta):
            theta *= 1.0 - lr * weight_decay
        update = np.sqrt(v)  # the update is built in this one buffer
        update += eps_hat
        np.divide(m, update, out=update)
        update *= step_size
        theta -= update


def global_norm(grads):
    """sqrt(Σ_θ Σ g²) over every gradient: the length of the whole gradient vector."""
    return math.sqrt(sum(float(np.sum(g.astype(np.float64) ** 2)) for g in grads.values()))


def clip_by_global_norm(grads, max_norm):
    """Scale every gradient by max_norm / norm when the global norm exceeds max_norm.

    The direction of the step is kept; only its length is capped. Returns the norm before
    clipping (the number a progress line shows).
    """
    norm = global_norm(grads)
    if max_norm is not None and norm > max_norm:
        scale = max_norm / norm
        for g in grads.values():
            g *= scale
    return norm


def learning_rate(step, max_lr, warmup_steps, total_steps, min_lr=0.0):
    """Linear warm-up, then cosine decay (the schedule of GPT-2/3 training).

        step < warmup:   lr = max_lr · (step + 1) / warmup
        afterwards:      lr = min_lr + ½ (max_lr - min_lr) (1 + cos(π · progress)),
                         progress = (step - warmup) / (total - warmup), from 0 to 1

    ``step`` counts from 0; the last step is total_steps - 1.
    """
    if step < warmup_steps:
        return max_lr * (step + 1) / warmup_steps
    span = max(total_steps - warmup_steps, 1)
    progress = min((step - warmup_steps) / span, 1.0)
    return min_lr + 0.5 * (max_lr - min_lr) * (1.0 + math.cos(math.pi * progress))
