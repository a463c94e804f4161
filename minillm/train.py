"""The training loop, one training step, and the progress line.

One loop serves every objective (see DESIGN in walkthrough.md):

    sequences ──objective.training_batch──▶ batch                                 (train)
    batch ──objective.loss_and_grads──▶ loss, grads ──clip──▶ AdamW(lr) ──▶ params (train_step)

All randomness comes from two generators made from the seed: one draws the initial
parameters, the other draws the training data. Same seed, same settings: same bits.

A checkpoint (checkpoint.py) is one safetensors file holding the parameters, the AdamW
moments, the loss history, and in its JSON metadata the configs, the tokenizer's vocabulary, the
step and the data generator's state. It is written to a temporary file and renamed into place,
so it is never half-written, and it never holds a NaN or an infinity: the loop checks the loss,
the gradients and the updated parameters of every step before anything is saved.

The options are TrainConfig (config.py); what a run trains on is data.py's.
"""

from __future__ import annotations

import os
import signal
import threading
import time

import numpy as np

from .checkpoint import save_checkpoint
from .models import MODELS
from .objectives import get_objective, title
from .optim import adamw_init, adamw_step, clip_by_global_norm, learning_rate

# ----------------------------------------------------------------------------------------------
# The loop


def format_seconds(s):
    return f"{s:.1f}s" if s < 60 else f"{int(s // 60)}m{int(s % 60):02d}s"


class TrainingInterrupted(Exception):
    """Ctrl-C during training: raised after the checkpoint of the last finished step is
    written (when there is a checkpoint path). ``step`` is that step."""

    def __init__(self, step, checkpoint):
        self.step, self.checkpoint = step, checkpoint
        where = f"; checkpoint saved to {checkpoint!r}" if checkpoint else ""
        super().__init__(f"interrupted after step {step}{where}")


class NonFiniteError(Exception):
    """A loss, gradient or updated parameter became NaN or infinite. Nothing non-finite is ever
    saved: the checkpoint on disk is the last finite one (or there is none yet)."""


def first_non_finite(loss, grads):
    """None if the loss and every gradient are finite; otherwise what went wrong first, with
    the gradients in backward order (the order the backward pass produced them)."""
    for name, g in grads.items():
        if not np.all(np.isfinite(g)):
            said = f"the loss is {loss} and " if not np.isfinite(loss) else ""
            return f"{said}the gradient of {name} (the first in backward order) is not finite"
    if not np.isfinite(loss):
        return (f"the loss is {loss} though every parameter is finite: a value in the forward "
                "pass overflowed")
    return None


def first_non_finite_parameter(params):
    """The name of the first parameter holding a NaN or an infinity, or None."""
    return next((name for name, value in params.items() if not np.all(np.isfinite(value))),
                None)


class _StopOnSigint:
    """While active, Ctrl-C (SIGINT) only raises a flag; the loop stops at the end of the step,
    so the parameters, optimizer and data generator are never caught half-updated."""

    def __init__(self):
        self.requested = False
        self._previous = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame):
        self.requested = True

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
        return False


def train_step(params, opt, model_cfg, train_cfg, batch, step):
    """One optimizer step on one batch, in place: -> the batch's mean loss.

        L, g = the loss of the batch and its gradient      (objective.loss_and_grads)
        g    = g · min(1, clip / ||g||)                     (clip_by_global_norm)
        θ    = AdamW(θ, g, lr(step))                        (adamw_step, learning_rate)

    ``step`` counts from 0. A NaN or an infinity in the loss, a gradient or an updated parameter
    raises NonFiniteError naming step + 1 and the first tensor that went bad.
    """
    objective = get_objective(train_cfg.objective)
    # The gradient of the mean loss: the step size then does not depend on batch size.
    loss, n_tokens, grads = objective.loss_and_grads(params, model_cfg, batch, "mean")
    norm = clip_by_global_norm(grads, train_cfg.clip)
    if not (np.isfinite(loss) and np.isfinite(norm)):
        what = first_non_finite(loss, grads) or f"the gradient norm is {norm}"
        raise NonFiniteError(f"step {step + 1}: {what}")
    lr = learning_rate(step, train_cfg.lr, train_cfg.warmup, train_cfg.steps, train_cfg.min_lr)
    adamw_step(params, grads, opt, lr, weight_decay=train_cfg.weight_decay)
    bad = first_non_finite_parameter(params)
    if bad is not None:  # finite gradients, but the update overflowed (a huge lr)
        raise NonFiniteError(f"step {step + 1}: the update (learning rate {lr:g}) made "
                             f"parameter {bad} non-finite")
    return loss


def train(model_cfg, train_cfg, data, tokenizer, state=None, log=print, checkpoint=None,
          checkpoint_every=None, until=None, threads=None):
    """Train the model of ``train_cfg.objective`` on ``data``. Returns the final state dict:

        params, opt (AdamW moments and step), step, data_rng, history (mean loss per step)

    ``state`` continues an earlier run (from ``load_checkpoint``). ``checkpoint`` is a path
    written every ``checkpoint_every`` steps and at the end. ``until`` stops early, after that
    many steps in all (the schedule still runs to ``train_cfg.steps``, so a resumed run ends
    exactly where an uninterrupted one would). ``threads`` (a ``blas.AdaptiveThreads``, or
    None to leave BLAS alone) is told the time of every step and picks the next one's BLAS
    thread count; the bits computed are the same at any count.

    Ctrl-C finishes the current step, writes the checkpoint and raises TrainingInterrupted. A
    NaN or infinity in the loss, a gradient or an updated parameter raises NonFiniteError
    naming the step and the first tensor that went bad; it is never saved.
    """
    dtype = np.dtype(train_cfg.dtype)
    objective = get_objective(train_cfg.objective)
    resumed = state is not None
    if state is None:
        init_rng = np.random.default_rng([train_cfg.seed, 0])
        params = MODELS[objective.MODEL].init(model_cfg, init_rng, dtype=dtype)
        state = {"params": params, "opt": adamw_init(params), "step": 0,
                 "data_rng": np.random.default_rng([train_cfg.seed, 1]), "history": []}
    params, opt, rng = state["params"], state["opt"], state["data_rng"]
    # The entropy floor bounds next-token prediction; other objectives predict other things.
    # ELMo's mean over both directions has the same floor: each direction factorises P(s).
    floor = ("" if data.floor is None or objective.NAME not in ("clm", "elmo")
             else f" | floor {data.floor:.3f}")
    # A GPT with GPT-1's blocks (models.GPTConfig.arch) says so.
    model_title = "GPT-1" if getattr(model_cfg, "arch", None) == "gpt1" else objective.MODEL_TITLE
    if getattr(model_cfg, "fusion", None) == "none":  # caption's baseline (multimodal.py)
        model_title = "text-only GPT (never shown the pictures)"
    article = "an" if model_title[0] in "AEIOUaeiouX" else "a"
    nsp = " + next-sentence prediction" if train_cfg.nsp else ""
    n_params = sum(value.size for value in params.values())
    log(f"training {article} {model_title} of {n_params:,} "
        f"parameters ({title(train_cfg.objective)}{nsp})"
        f" on {data.name} for {train_cfg.steps} steps of "
        f"{train_cfg.batch_size} sequences")
    start, tokens_seen = time.perf_counter(), 0
    first = state["step"]
    last = train_cfg.steps if until is None else min(until, train_cfg.steps)
    # The step of the checkpoint on disk that is this run's (written, or resumed from), if any.
    saved = first if resumed and checkpoint and os.path.exists(checkpoint) else None

    # NaN and infinity are caught below, by name: NumPy's own warnings would only come first.
    with _StopOnSigint() as sigint, np.errstate(all="ignore"):
        while state["step"] < last:
            step = state["step"]
            step_start = time.perf_counter()
            indices, examples = data.sample(rng, train_cfg.batch_size)
            batch = objective.training_batch(examples, indices, rng, tokenizer, train_cfg,
                                             n_ctx=model_cfg.n_ctx)
            try:
                loss = train_step(params, opt, model_cfg, train_cfg, batch, step)
            except NonFiniteError as err:
                kept = (f"; the last finite checkpoint, of step {saved}, stays at {checkpoint!r}"
                        if saved is not None else "; no checkpoint of this run was written")
                raise NonFiniteError(f"{err}; training stopped{kept}") from None
            state["history"].append(loss)
            state["step"] = step + 1
            tokens_seen += int(batch["attention_mask"].sum())  # tokens read, predicted or not
            if threads is not None:  # time per token position, padding included
                threads.step_done(time.perf_counter() - step_start, batch["attention_mask"].size)
            done = state["step"] == last
            if state["step"] % train_cfg.log_every == 0 or done:
                elapsed = time.perf_counter() - start
                per_step = elapsed / (state["step"] - first)
                eta = per_step * (train_cfg.steps - state["step"])
                recent = np.mean(state["history"][-train_cfg.log_every:])
                log(f"step {state['step']:>5}/{train_cfg.steps} | loss {recent:.3f} nats/token"
                    f"{floor} | {tokens_seen / elapsed:,.0f} tok/s | {format_seconds(elapsed)} "
                    f"elapsed | ETA {format_seconds(eta)}")
            every = checkpoint_every and state["step"] % checkpoint_every == 0
            if checkpoint and (done or every or sigint.requested):
                save_checkpoint(checkpoint, model_cfg, train_cfg, tokenizer, state,
                                data=getattr(data, "source", None))
                saved = state["step"]
            if sigint.requested and not done:
                raise TrainingInterrupted(state["step"], checkpoint)
    return state
