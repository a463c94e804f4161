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
"""

from __future__ import annotations

import math
import os
import signal
import threading
import time
from dataclasses import dataclass

import numpy as np

from .checkpoint import save_checkpoint
from .corruption.t5 import (longest_inputs_for_sentinels, pack_sequences,
                            t5_input_and_target_lengths, t5_noise_counts)
from .models import MODELS
from .options import OptionError
from .objectives import get_objective, title
from .optim import adamw_init, adamw_step, clip_by_global_norm, learning_rate
from .tokenizer import N_SENTINELS

# Objectives whose examples come from the grammar's text-to-text tasks (总结/翻译/问), which
# plain text does not have (TrainConfig.check_data refuses them, and nsp, with a text file).
TASK_OBJECTIVES = ("tasks", "mix")
# Objectives that corrupt text as T5 does: packed into long sequences first (packed_length).
PACKED_OBJECTIVES = ("t5", "mix")


@dataclass(frozen=True)
class TrainConfig:
    """How to train. The defaults train the demo's tiny GPT on the built-in grammar."""

    steps: int = 300  # optimizer steps
    batch_size: int = 32  # sequences per step
    lr: float = 3e-3  # peak learning rate, reached at the end of warm-up
    min_lr: float = 3e-4  # learning rate at the last step (cosine decay ends here)
    warmup: int = 30  # steps of linear warm-up from 0
    weight_decay: float = 0.1  # AdamW's decoupled decay of matrices
    clip: float = 1.0  # cap on the global gradient norm (of the mean loss's gradient)
    seed: int = 0  # one seed for the initial parameters and for the data
    log_every: int = 25  # steps between progress lines
    dtype: str = "float32"  # parameter dtype: float32 for speed, float64 for exactness
    objective: str = "clm"  # clm (GPT); mlm, span (BERT); t5, bart, tasks, mix (encoder-decoder)
    masking: str = "dynamic"  # mlm/span: a new mask each time (RoBERTa) or one per example (BERT)
    pool: int = 0  # train on a fixed pool of this many sentences (0: a fresh draw every step)
    nsp: bool = False  # mlm: train next-sentence prediction too, on two-sentence documents

    def __post_init__(self):
        for name in ("steps", "batch_size", "log_every"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        for name in ("warmup", "seed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
        for name in ("lr", "min_lr", "weight_decay", "clip"):
            value = getattr(self, name)
            try:
                ok = not isinstance(value, bool) and math.isfinite(float(value)) and value >= 0
            except (TypeError, ValueError, OverflowError):  # a string; an int beyond float
                ok = False
            if not ok:
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"dtype must be 'float32' or 'float64', got {self.dtype!r}")
        get_objective(self.objective)  # names the objective if it is unknown
        if self.masking not in ("dynamic", "static"):
            raise ValueError(f"masking must be 'dynamic' or 'static', got {self.masking!r}")
        if not isinstance(self.pool, int) or self.pool < 0:
            raise ValueError(f"pool must be a non-negative integer, got {self.pool!r}")
        # The rules between options are OptionErrors: the CLI reports them in its flags.
        if self.nsp and self.objective != "mlm":
            raise OptionError("{nsp} needs {objective:mlm}, got {objective}", nsp=True,
                              objective=self.objective)
        if self.nsp and (self.masking != "dynamic" or self.pool):
            raise OptionError("{nsp} goes with {masking:dynamic} and {pool:0}, got {masking} "
                              "and {pool}", nsp=True, masking=self.masking, pool=self.pool)
        if self.masking == "static" and self.pool == 0:
            raise OptionError("{masking} masks each sentence once for the whole run, so it needs "
                              "a fixed set of them: add {pool:N} (say {pool:2000})",
                              masking=self.masking, pool=self.pool)

    def check_data(self, data):
        """Refuse a text file (``data``, its name; None for the grammar) to the objectives that
        build their examples from the grammar's structure. make_data calls it, and the CLI does
        before it reads the file."""
        if data is not None and self.objective in TASK_OBJECTIVES:
            raise OptionError("{objective} trains on the grammar's text-to-text tasks (总结/翻译/问), "
                              "which a text file does not have; drop {data} or use {objective:t5} "
                              "or {objective:bart}", objective=self.objective, data=data)
        if data is not None and self.nsp:
            raise OptionError("{nsp} trains on the grammar's two-sentence documents; it cannot "
                              "read {data}", nsp=True, data=data)


# ----------------------------------------------------------------------------------------------
# Data


class GrammarData:
    """Sentences drawn from the built-in grammar, whose true entropy is the loss floor.

    With ``pool`` > 0 the data is a fixed set of that many sentences, drawn once from
    ``pool_rng`` (a corpus with epochs, as static masking needs); otherwise every step draws
    fresh sentences. With ``packed_length`` > 0 an example is not one sentence but
    ``packed_length`` tokens of sentences drawn end to end (T5's packing, pack_sequences).
    """

    def __init__(self, grammar, tokenizer, pool=0, pool_rng=None, packed_length=0):
        self.grammar, self.tokenizer = grammar, tokenizer
        self.floor = grammar.entropy_per_token()  # nats per predicted token
        self.name = "the built-in grammar"
        self.pieces = None
        self.packed_length = packed_length
        if pool:
            texts = grammar.sample_text(pool_rng, pool)
            self.pieces = [tokenizer.encode(t) for t in texts]
            self.name += f" (a pool of {pool} sentences)"
        if packed_length:
            self.name += f", packed into sequences of {packed_length} tokens"

    def sentences(self, rng, n):
        """n sentences as token-id lists, and their indices in the pool (None without one)."""
        if self.pieces is not None:
            idx = rng.integers(0, len(self.pieces), size=n)
            return idx, [self.pieces[i] for i in idx]
        return None, [self.tokenizer.encode(text) for text in self.grammar.sample_text(rng, n)]

    def sample(self, rng, n):
        """n examples: sentences, or (packed_length > 0) n packed sequences of exactly
        packed_length tokens, cut from fresh sentences end to end (None for the indices)."""
        if not self.packed_length:
            return self.sentences(rng, n)
        drawn, total = [], 0
        while total < n * self.packed_length:
            _, more = self.sentences(rng, n)
            drawn += more
            total += sum(len(s) for s in more)
        return None, pack_sequences(drawn, self.packed_length)[:n]


class TextData:
    """A user's documents (one per line). A document longer than the model's context is cut
    into consecutive pieces that fit; each piece is trained as its own sequence. With
    ``packed`` the documents are first put end to end, so that every piece but the last holds
    exactly max_tokens tokens (T5's packing, pack_sequences). ``source`` ({"path", "sha256"}
    of the file) goes into the checkpoint, so that a resumed run can tell whether it is given
    the same file again."""

    def __init__(self, documents, tokenizer, max_tokens, name="text", source=None, packed=False):
        self.tokenizer, self.name, self.floor, self.source = tokenizer, name, None, source
        encoded = [tokenizer.encode(doc) for doc in documents]
        if packed:
            self.pieces = [list(p) for p in pack_sequences(encoded, max_tokens)]
        else:
            self.pieces = [ids[start : start + max_tokens]
                           for ids in encoded for start in range(0, len(ids), max_tokens)]
        if not self.pieces:
            raise ValueError(f"{name}: no tokens to train on")

    def sample(self, rng, n):
        idx = rng.integers(0, len(self.pieces), size=n)
        return idx, [self.pieces[i] for i in idx]


class DocumentData:
    """Two-sentence documents from the grammar (``Grammar.sample_documents``), encoded: the
    data of next-sentence prediction."""

    def __init__(self, grammar, tokenizer):
        self.grammar, self.tokenizer = grammar, tokenizer
        self.floor = None
        self.name = "the grammar's two-sentence documents"

    def sample(self, rng, n):
        docs = self.grammar.sample_documents(rng, n)
        return None, [[self.tokenizer.encode(s) for s in doc] for doc in docs]


class TaskData:
    """Text-to-text pairs from the built-in grammar (总结 / 翻译 / 问), encoded. With
    ``packed_length`` > 0 each example also carries that many tokens of fresh grammar
    sentences packed end to end, for the objective that mixes tasks with span corruption."""

    def __init__(self, grammar, tokenizer, packed_length=0):
        self.grammar, self.tokenizer = grammar, tokenizer
        self.text = None  # the packed sentences of mix
        self.floor = None
        self.name = "the grammar's text-to-text tasks"
        if packed_length:
            self.text = GrammarData(grammar, tokenizer, packed_length=packed_length)
            self.name += f" and its sentences, packed into sequences of {packed_length} tokens"

    def sample(self, rng, n):
        enc = self.tokenizer.encode
        pairs = [(enc(s), enc(t)) for s, t in self.grammar.sample_task_pairs(rng, n)]
        if self.text is not None:
            _, texts = self.text.sample(rng, n)
            return None, [(s, t, x) for (s, t), x in zip(pairs, texts)]
        return None, pairs


def packed_length(train_cfg, n_ctx, n_sentinels=N_SENTINELS):
    """How many tokens of text t5 and mix pack into one example (0 for the other objectives):
    the longest raw length T whose span corruption fits the model, as T5 packs 568 tokens so
    that its inputs are 512.

    The corrupted source holds (T − N) + S + 1 tokens ([EOS] included) and the target
    N + S + 1 (corruption/t5.py); T is the largest with a source of at most n_ctx tokens
    (t5_input_and_target_lengths), and the target, shorter, fits too. So every source fills
    the context and holds S noise spans: n_ctx 32 packs 34 tokens (N = 5, S = 2), 48 packs 52
    (8, 3), where one sentence of ~8 tokens alone would get one span, always at its end.

    An n_ctx whose S exceeds ``n_sentinels`` (a new vocabulary has 20, which serve n_ctx up to
    369) is refused with an OptionError naming it and the longest n_ctx that works.
    """
    if train_cfg.objective not in PACKED_OBJECTIVES:
        return 0
    if n_ctx < 3:  # a source holds at least a kept token, a sentinel and [EOS]
        raise OptionError("{objective} needs {n_ctx:3} or more, got {n_ctx}",
                          objective=train_cfg.objective, n_ctx=n_ctx)
    T, _ = t5_input_and_target_lengths(n_ctx)
    S = t5_noise_counts(T)[1]
    if S > n_sentinels:
        advice = (": use {n_ctx:%d} or less" % longest_inputs_for_sentinels(n_sentinels)
                  if n_sentinels else "")
        raise OptionError(f"{{objective}} packs {T} tokens into each example at {{n_ctx}}, and "
                          f"their span corruption needs {S} sentinels; the vocabulary has "
                          f"{n_sentinels}" + advice, objective=train_cfg.objective, n_ctx=n_ctx)
    return T


def make_data(train_cfg, model_cfg, tokenizer, documents=None, name=None, source=None):
    """The data a run trains on: the grammar (optionally a fixed pool of it, drawn from the
    seed), or the user's documents cut to fit the model's context (``source``: see TextData).
    For t5 and mix the text is packed into sequences of packed_length tokens."""
    objective = get_objective(train_cfg.objective)
    if documents is not None:
        train_cfg.check_data(name or "text")
    packed = (packed_length(train_cfg, model_cfg.n_ctx, tokenizer.n_sentinels)
              if train_cfg.objective in PACKED_OBJECTIVES else 0)
    if documents is not None:
        return TextData(documents, tokenizer, packed or model_cfg.n_ctx - objective.RESERVED,
                        name=name or "text", source=source, packed=bool(packed))
    from .grammar import default_grammar

    if train_cfg.nsp:
        return DocumentData(default_grammar(), tokenizer)
    if train_cfg.objective in TASK_OBJECTIVES:
        return TaskData(default_grammar(), tokenizer, packed)
    pool_rng = np.random.default_rng([train_cfg.seed, 2])
    return GrammarData(default_grammar(), tokenizer, train_cfg.pool, pool_rng, packed)


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
    floor = "" if data.floor is None or objective.NAME != "clm" else f" | floor {data.floor:.3f}"
    article = "an" if objective.MODEL_TITLE[0] in "AEIOUaeiou" else "a"
    nsp = " + next-sentence prediction" if train_cfg.nsp else ""
    n_params = sum(value.size for value in params.values())
    log(f"training {article} {objective.MODEL_TITLE} of {n_params:,} "
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
