"""The LSTM, forward and backward by hand: one cell, and a layer that runs it over a sequence.

The cell (Hochreiter & Schmidhuber 1997, with the forget gate of Gers et al. 2000), for one step
t, with the gates in PyTorch's order (i, f, g, o):

    a   = x_t W_x + h_{t-1} W_h + b                              (B, 4H)
    i   = σ(a_i)    input gate        f = σ(a_f)    forget gate
    g   = tanh(a_g) candidate         o = σ(a_o)    output gate
    c_t = f ⊙ c_{t-1} + i ⊙ g                                    the memory cell
    h_t = o ⊙ tanh(c_t)                                          the output and next state

Weights are stored (in, out), as every projection of minillm: W_x (I, 4H), W_h (H, 4H), b (4H,),
each split in four column blocks [i | f | g | o] of H columns. PyTorch's nn.LSTM stores the
transposes, ``weight_ih = W_x^T``, ``weight_hh = W_h^T``, and two biases whose sum is b.

The layer runs the cell over t = 0 .. T-1 from a zero state, and its backward pass is
backpropagation through time written out one step at a time, t = T-1 .. 0: each step's state
gradient is what the step after it sends back (dh_next, dc_next) plus what its own output
received from above.

Padding: batches are right-padded, so a padded step comes after every real step of its row. The
state it computes is never read by a real step (the recurrence runs forwards only), and the loss
of a padded step is ignored (its target is IGNORE_INDEX), so padding changes no real output and
no gradient: tests/test_elmo.py checks both, bit for bit.

Shape letters: B batch, T steps, I input width, H hidden width (the cell's h and c).
"""

from __future__ import annotations

import numpy as np


def sigmoid(a):
    """σ(a) = 1 / (1 + exp(-a)), written as (1 + tanh(a/2)) / 2: the same function, with no
    overflow of exp for a large negative a."""
    return 0.5 * (1.0 + np.tanh(0.5 * a))


def gate_blocks(a):
    """(B, 4H) -> the four (B, H) column blocks of the gates, in the order (i, f, g, o)."""
    H = a.shape[-1] // 4
    return a[:, :H], a[:, H:2 * H], a[:, 2 * H:3 * H], a[:, 3 * H:]


def lstm_cell_forward(x, h_prev, c_prev, w_x, w_h, b):
    """One LSTM step.  x (B, I), h_prev (B, H), c_prev (B, H) -> h (B, H), c (B, H), cache.

        a = x W_x + h_prev W_h + b;  i, f, o = σ(a_i, a_f, a_o);  g = tanh(a_g)
        c = f ⊙ c_prev + i ⊙ g
        h = o ⊙ tanh(c)

    (Hochreiter & Schmidhuber 1997; the forget gate f of Gers et al. 2000.)
    """
    a = x @ w_x + h_prev @ w_h + b  # (B, 4H)
    a_i, a_f, a_g, a_o = gate_blocks(a)  # (B, H) each
    i, f, g, o = sigmoid(a_i), sigmoid(a_f), np.tanh(a_g), sigmoid(a_o)  # (B, H) each
    c = f * c_prev + i * g  # (B, H)
    tanh_c = np.tanh(c)  # (B, H)
    h = o * tanh_c  # (B, H)
    cache = {"x": x, "h_prev": h_prev, "c_prev": c_prev, "w_x": w_x, "w_h": w_h,
             "i": i, "f": f, "g": g, "o": o, "tanh_c": tanh_c}
    return h, c, cache


def lstm_cell_backward(dh, dc, cache):
    """dh (B, H), dc (B, H): the gradients of the step's two outputs (dc is what the next step
    sends back through its c_prev) -> dx (B, I), dh_prev (B, H), dc_prev (B, H), dw_x (I, 4H),
    dw_h (H, 4H), db (4H,).

    In the forward pass h = o ⊙ tanh(c), so do = dh ⊙ tanh(c), and c receives
    dh ⊙ o ⊙ (1 - tanh²(c)) besides its own dc. Then c = f ⊙ c_prev + i ⊙ g gives
    di = dc ⊙ g, dg = dc ⊙ i, df = dc ⊙ c_prev, dc_prev = dc ⊙ f. Through the nonlinearities,
    σ' = σ (1 - σ) and tanh' = 1 - tanh², to da; and a = x W_x + h_prev W_h + b gives the rest.
    """
    x, h_prev, c_prev = cache["x"], cache["h_prev"], cache["c_prev"]
    i, f, g, o, tanh_c = cache["i"], cache["f"], cache["g"], cache["o"], cache["tanh_c"]
    do = dh * tanh_c  # h = o ⊙ tanh(c)
    dc = dc + dh * o * (1.0 - tanh_c ** 2)  # ... and tanh(c): c's two uses, summed
    di = dc * g  # c = f ⊙ c_prev + i ⊙ g
    dg = dc * i
    df = dc * c_prev
    dc_prev = dc * f
    da = np.concatenate([di * i * (1.0 - i),  # i = σ(a_i)
                         df * f * (1.0 - f),  # f = σ(a_f)
                         dg * (1.0 - g ** 2),  # g = tanh(a_g)
                         do * o * (1.0 - o)], axis=-1)  # o = σ(a_o); (B, 4H), blocks as a
    dx = da @ cache["w_x"].T  # a = x W_x + h_prev W_h + b; (B, I)
    dh_prev = da @ cache["w_h"].T  # (B, H)
    dw_x = x.T @ da  # (I, 4H)
    dw_h = h_prev.T @ da  # (H, 4H)
    db = da.sum(axis=0)  # (4H,)
    return dx, dh_prev, dc_prev, dw_x, dw_h, db


def lstm_forward(x, w_x, w_h, b):
    """An LSTM layer over a sequence, from the zero state.  x (B, T, I) -> hs (B, T, H), cache.

        h_{-1} = c_{-1} = 0;   h_t, c_t = cell(x_t, h_{t-1}, c_{t-1})   for t = 0 .. T-1

    The cache holds one cell cache per step, in order.
    """
    B, T, _ = x.shape
    H = w_h.shape[0]
    h = np.zeros((B, H), dtype=x.dtype)  # (B, H)
    c = np.zeros((B, H), dtype=x.dtype)  # (B, H)
    hs = np.empty((B, T, H), dtype=x.dtype)
    steps = []
    for t in range(T):
        h, c, step = lstm_cell_forward(x[:, t], h, c, w_x, w_h, b)
        hs[:, t] = h
        steps.append(step)
    return hs, {"steps": steps, "x_shape": x.shape}


def lstm_backward(dhs, cache):
    """Backpropagation through time.  dhs (B, T, H), the gradient of every step's output ->
    dx (B, T, I), dw_x (I, 4H), dw_h (H, 4H), db (4H,).

    Walk t = T-1 .. 0 with dh_next = dc_next = 0 after the last step: step t's output h_t went
    to the layer above (dhs[:, t]) and to step t+1 (dh_next), its cell c_t to step t+1 only
    (dc_next). The weights are the same at every step, so their gradients add up over t.
    """
    steps = cache["steps"]
    B, T, _ = cache["x_shape"]
    w_x, w_h = steps[0]["w_x"], steps[0]["w_h"]
    dx = np.empty(cache["x_shape"], dtype=dhs.dtype)  # (B, T, I)
    dw_x, dw_h = np.zeros_like(w_x), np.zeros_like(w_h)
    db = np.zeros(w_x.shape[1], dtype=dhs.dtype)  # (4H,)
    dh_next = np.zeros_like(dhs[:, 0])  # (B, H): nothing comes back from after the last step
    dc_next = np.zeros_like(dhs[:, 0])
    for t in reversed(range(T)):
        dh = dhs[:, t] + dh_next  # h_t went up to the next layer and on to step t+1
        dx[:, t], dh_next, dc_next, dw_x_t, dw_h_t, db_t = lstm_cell_backward(dh, dc_next,
                                                                              steps[t])
        dw_x += dw_x_t  # the same W_x at every step: the steps' gradients add up
        dw_h += dw_h_t
        db += db_t
    return dx, dw_x, dw_h, db
