"""The benchmark: how fast is a training step, measured against this machine's own limit.

    python -m minillm bench [--config tiny|small|medium|all] [--model gpt|bert|seq2seq|all]
                            [--threads N | --threads N,M,...] [--warmup W] [--steps K]
                            [--json FILE]

(``python -m minillm.bench`` runs the same.) A *training step* is what the PyTorch reference
``shared/bench/torch_gpt2_step.py`` times: forward, cross-entropy (mean) over all B·T
positions, backward and one AdamW update, float32, on random token ids with separate random
targets. For each model × config it measures, in one run:

(a) **tokens/s**: B·T divided by the median step time over ``--steps`` steps after ``--warmup``.
(b) **the matmul floor**: the time of just that step's matrix products (``matmul_products``,
    a table derived from the config), run back to back through ``np.matmul`` into
    preallocated outputs. Each timed step is followed by one timed floor run, so both see the
    machine in the same state; the floor's median is reported as tokens/s too.
(c) **fraction** = floor time / step time: the share of the floor the step reaches (1 would
    mean the step costs no more than its products).
(d) **the split of step time by kind** (``KIND_OF``, ``profiled``): three extra steps run
    under a profile hook (``sys.setprofile``) that knows the layer functions by their code
    objects, and the *exclusive* time of each (its own, less that of the timed functions it
    calls) is added to its kind: matmul (the linear and attention functions, less the softmax
    they call), softmax (attention softmax and masking), layernorm, gelu, cross_entropy,
    optimizer; ``other`` is the rest of the step (embeddings, head split/merge copies, residual
    sums, the Python between layers). No module's names are touched, so how a module imports
    a layer function does not matter. The tied output layer's three products are written
    inline in models.py, in no timed function; their floor time (same shapes, this run) is
    moved from other to matmul. Overhead: the hook runs on every call and return in the step,
    Python or C (about 1,000 events a step at GPT tiny, 2,700 at BART tiny, 7,600 at BART
    medium), near 1 µs each: about 5% of a tiny step, 1% at small, 0.3% at medium, counted
    mostly to the function making the calls. The timed steps of (a) run without the hook;
    ``profile.overhead`` in the JSON compares the profiled steps with them, and
    ``profile.wrapped_calls_per_step`` counts the timed calls (62 at GPT tiny).
(e) **memory**: the process's peak RSS after the warm-up steps, the peak of what one step
    allocates (tracemalloc), and the bytes per token of activation cache the backward pass
    keeps (``cache_bytes``) beside the analytic count of what it needs
    (``analytic_cache_bytes_per_token``).

**Threads.** NumPy's BLAS reads OPENBLAS_NUM_THREADS / OMP_NUM_THREADS / MKL_NUM_THREADS once,
when it is loaded, and ``python -m minillm`` has loaded NumPy before it parses a command. So
every (model, config) runs in a fresh Python process (``python -m minillm.bench --cell ...``)
whose environment sets those three variables to ``--threads``; everything else in the
environment, OPENBLAS_CORETYPE included, is passed on unchanged. A fresh process per cell also
makes its peak RSS that cell's own. Each cell reports the thread count OpenBLAS says it uses.

**Comparing thread counts.** ``--threads 1,2`` measures each cell at both counts in one
process (started with the largest), switching OpenBLAS between them with its own
``openblas_set_num_threads`` before every step and floor, and alternating which count goes
first: both counts then see the machine in the same moments. On a shared machine, whose second
core is at times busy with someone else's work, separate runs can disagree about which count is
faster by more than the difference itself; this one cannot. One row per count.

**Output.** A Markdown table on stdout, one row per model × config, ready to paste into an
issue; progress lines on stderr. ``--json FILE`` writes the same data:

    {"meta": {"threads" (a list), "steps", "warmup", "numpy", "python", "platform", "cpu_count",
              "started", "command", "configs": {name: {V, L, H, C, T, B}}},
     "results": [{"model", "config", "threads", "shape", "tokens_per_step", "steps", "warmup",
                  "tokens_per_s", "step_s", "floor_tokens_per_s", "floor_s", "floor_fraction",
                  "n_products", "floor_gflop", "step_gflops", "products",
                  "split_pct", "split_s", "by_function_s", "profile", "peak_rss_mb",
                  "step_alloc_peak_mb", "cache_bytes_per_token", "loss", "blas", "blas_env"}]}

``split_pct`` has the keys of ``KINDS``; ``cache_bytes_per_token`` has ``measured``, ``model``,
``loss`` and ``analytic``; ``products`` lists every product with its shapes, GFLOP and median
seconds.

The models at the same shapes: GPT as the PyTorch reference; BERT with the masked-LM head over
all B·T positions (its NSP head runs forward, as ``bert_forward`` always computes it, and
receives a zero gradient: no NSP loss); BART (``Seq2SeqConfig``) with L encoder and L decoder
blocks, source length T and target length T, tokens/s counted over the B·T target positions.
AdamW uses lr 3e-4 and no weight decay, as the reference.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
import tracemalloc
from dataclasses import asdict, dataclass
from typing import Callable, NamedTuple

import numpy as np

from . import layers, models, optim
from .allocator import keep_freed_memory
from .blas import blas_info, set_blas_threads
from .memory import analytic_cache_bytes_per_token
from .objectives import objective_of_model
from .safetensors import check_writable, write_json

# ----------------------------------------------------------------------------------------------
# The shapes: the three configs of the PyTorch reference (shared/bench/README.md)


@dataclass(frozen=True)
class BenchShape:
    """One benchmark shape, in the package's letters."""

    V: int  # vocabulary
    L: int  # blocks (BART: L encoder and L decoder blocks)
    H: int  # heads
    C: int  # model width; F = 4C
    T: int  # sequence length (BART: source and target)
    B: int  # sequences per step


CONFIGS = {
    "tiny": BenchShape(V=512, L=2, H=4, C=64, T=64, B=16),
    "small": BenchShape(V=2048, L=4, H=4, C=128, T=128, B=8),
    "medium": BenchShape(V=8192, L=6, H=8, C=256, T=256, B=8),
}
MODEL_NAMES = ("gpt", "bert", "seq2seq")  # models.MODELS's families
KINDS = ("matmul", "softmax", "layernorm", "gelu", "cross_entropy", "optimizer", "other")
# The variables BLAS libraries read for their thread count (OpenBLAS, OpenMP builds, MKL).
THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
# AdamW's learning rate in the step; weight decay 0, as the PyTorch reference.
LR = 3e-4
DEFAULT_WARMUP, DEFAULT_STEPS = 2, 5




def model_config(model, shape):
    """The minillm config of ``model`` ("gpt", "bert" or "seq2seq", the encoder-decoder in
    BART's architecture) at ``shape``; n_ctx = T."""
    if model not in MODEL_NAMES:
        raise ValueError(f"model must be one of {', '.join(MODEL_NAMES)}, got {model!r}")
    return models.MODELS[model].config(vocab_size=shape.V, n_ctx=shape.T, n_embd=shape.C,
                                       n_head=shape.H, **models.blocks(model, shape.L))


# ----------------------------------------------------------------------------------------------
# The training step


@dataclass
class Step:
    """A training step ready to run: ``run()`` does one and returns the loss; ``forward()``
    returns (loss, model cache, loss cache), the caches the backward pass would read."""

    model: str
    cfg: object  # GPTConfig, BertConfig or Seq2SeqConfig
    shape: BenchShape
    params: dict
    run: Callable[[], float]
    forward: Callable[[], tuple]


def build_step(model, shape, seed=0):
    """Parameters, optimizer state and random batch for ``model`` at ``shape``, and its step:
    the loss and backward of the objective that trains the model (objectives.objective_of_model),
    with random targets at every position and no padding (so no attention masks)."""
    rng = np.random.default_rng(seed)
    cfg = model_config(model, shape)
    params = models.MODELS[model].init(cfg, rng, np.float32)
    state = optim.adamw_init(params)
    ids = rng.integers(0, shape.V, size=(shape.B, shape.T))  # (B, T) inputs (BART: target side)
    targets = rng.integers(0, shape.V, size=(shape.B, shape.T))  # (B, T) separate random targets
    src = rng.integers(0, shape.V, size=(shape.B, shape.T))  # (B, S = T) BART's source
    if model == "gpt":
        batch = {"inputs": ids, "targets": targets, "attention_mask": None}
    elif model == "bert":  # no NSP label: the NSP head runs forward only, as bert_forward does
        batch = {"inputs": ids, "labels": targets, "attention_mask": None}
    else:
        batch = {"src": src, "dec_in": ids, "targets": targets, "src_mask": None, "dec_mask": None}
    objective = objective_of_model(model)

    def forward():
        loss, _, cache = objective.loss(params, cfg, batch, reduction="mean")
        return loss, cache["model"], cache["ce"]

    def run():
        loss, _, cache = objective.loss(params, cfg, batch, reduction="mean")
        grads = objective.backward(cache)
        optim.adamw_step(params, grads, state, LR, weight_decay=0.0)
        return float(loss)

    return Step(model, cfg, shape, params, run, forward)


# ----------------------------------------------------------------------------------------------
# (b) The matrix products of one step


class Product(NamedTuple):
    """One matrix product of the step: ``a @ b`` with a (..., M, K), b (..., K, N).

    ``inline`` marks a product written inline in models.py (the tied output layer), in no
    function of ``KIND_OF``.
    """

    name: str
    a: tuple
    b: tuple
    inline: bool = False


def _linear(name, N, I, O):
    """The three products of a linear layer y = x W over N rows, x (N, I), W (I, O)."""
    return [Product(f"{name}: y = x W", (N, I), (I, O)),
            Product(f"{name}: dx = dy W^T", (N, O), (O, I)),
            Product(f"{name}: dW = x^T dy", (I, N), (N, O))]


def _attention(name, B, H, T, S, D):
    """The six products of attention, q (B, H, T, D), k and v (B, H, S, D), a (B, H, T, S)."""
    return [Product(f"{name}: scores = q k^T", (B, H, T, D), (B, H, D, S)),
            Product(f"{name}: out = a v", (B, H, T, S), (B, H, S, D)),
            Product(f"{name}: da = dout v^T", (B, H, T, D), (B, H, D, S)),
            Product(f"{name}: dv = a^T dout", (B, H, S, T), (B, H, T, D)),
            Product(f"{name}: dq = ds k", (B, H, T, S), (B, H, S, D)),
            Product(f"{name}: dk = ds^T q", (B, H, S, T), (B, H, T, D))]


def _tied_output(N, C, V):
    """The three products of the output layer tied to the embedding, logits = h wte^T."""
    return [Product("output: logits = h wte^T", (N, C), (C, V), inline=True),
            Product("output: dh = dlogits wte", (N, V), (V, C), inline=True),
            Product("output: dwte = dlogits^T h", (V, N), (N, C), inline=True)]


def _block(pre, B, T, S, C, H, F, cross=False):
    """A block's products: self-attention, (cross-attention,) feed-forward. S: source length."""
    N, D = B * T, C // H
    out = _linear(pre + "attn.c_attn", N, C, 3 * C) + _attention(pre + "attn", B, H, T, T, D)
    out += _linear(pre + "attn.c_proj", N, C, C)
    if cross:
        out += _linear(pre + "xattn.c_q", N, C, C)
        out += _linear(pre + "xattn.c_kv", B * S, C, 2 * C)
        out += _attention(pre + "xattn", B, H, T, S, D)
        out += _linear(pre + "xattn.c_proj", N, C, C)
    return out + _linear(pre + "mlp.c_fc", N, C, F) + _linear(pre + "mlp.c_proj", N, F, C)


def matmul_products(model, cfg, B, T):
    """Every matrix product of one training step of ``model`` with config ``cfg`` on (B, T).

    Per linear layer over N rows (x (N, I), W (I, O)), three products:
        y = x W  (N, I)(I, O)     dx = dy W^T  (N, O)(O, I)     dW = x^T dy  (I, N)(N, O)
    Per attention (q (B, H, T, D), keys and values over S positions), six batched products:
        q k^T, a v   and backward   dout v^T, a^T dout, ds k, ds^T q
    The tied output layer (N = B·T rows): h wte^T, dlogits wte, dlogits^T h.

        GPT    L blocks x (4 linears + 1 attention) + output            = 18 L + 3
        BERT   the same + MLM dense + pooler (B rows) + NSP (B rows)   = 18 L + 12
        BART   L encoder blocks (18 each), L decoder blocks (7 linears + 2 attentions = 33
               each; c_kv reads the S = T source rows) + output         = 51 L + 3

    A product over positions is one 2-D product over all B·T rows, as linear_forward does it.
    """
    C, H, F = cfg.n_embd, cfg.n_head, cfg.n_inner
    V, N = cfg.vocab_size, B * T
    out = []
    if model == "seq2seq":
        for layer in range(cfg.n_enc_layer):
            out += _block(f"enc.h.{layer}.", B, T, T, C, H, F)
        for layer in range(cfg.n_dec_layer):
            out += _block(f"dec.h.{layer}.", B, T, T, C, H, F, cross=True)
        return out + _tied_output(N, C, V)
    for layer in range(cfg.n_layer):
        out += _block(f"h.{layer}.", B, T, T, C, H, F)
    if model == "bert":
        out += _linear("mlm.dense", N, C, C) + _tied_output(N, C, V)
        return out + _linear("pool", B, C, C) + _linear("nsp", B, C, 2)
    if model == "gpt":
        return out + _tied_output(N, C, V)
    raise ValueError(f"model must be one of {', '.join(MODEL_NAMES)}, got {model!r}")


def product_flops(p):
    """2 M K N for each of the batch's products (a multiply and an add per term)."""
    *batch, M, K = p.a
    return 2 * math.prod(batch) * M * K * p.b[-1]


def floor_plan(products, rng):
    """Operands and outputs for every product: random float32, contiguous, allocated once.

    Contiguous operands: the transposed views the step hands to BLAS (x^T in dW = x^T dy,
    wte^T) cost the same within noise, measured on the medium shapes. Products of equal shapes
    share their arrays (the L blocks reuse one set), which bounds the memory; outputs never
    alias inputs (np.matmul would copy an input that overlaps ``out``).
    """
    inputs, outputs = {}, {}

    def array(store, shape):
        if shape not in store:
            store[shape] = rng.standard_normal(shape, dtype=np.float32)
        return store[shape]

    return [(p, array(inputs, p.a), array(inputs, p.b),
             array(outputs, p.a[:-1] + p.b[-1:])) for p in products]


def time_floor(plan):
    """Run every product once, back to back. -> the seconds of each."""
    seconds = []
    for _, a, b, out in plan:
        t0 = time.perf_counter()
        np.matmul(a, b, out=out)
        seconds.append(time.perf_counter() - t0)
    return seconds


# ----------------------------------------------------------------------------------------------
# (d) Step time by kind: a profile hook times the layer functions' exclusive time

# The functions whose own time counts to each kind. A new layer function (a tuned variant, say)
# is one more name, which a test asks for; a misspelt one is an AttributeError here, at import.
# ``other`` functions are listed too, so their time shows by name in by_function_s; the
# ``other`` kind is the step less every named kind.
FUNCTIONS_OF_KIND = {
    "matmul": (layers.linear_forward, layers.linear_backward,  # + bias add, bias sum
               layers.attention_forward, layers.attention_backward),  # less their softmax
    "softmax": (layers.softmax_forward, layers.softmax_backward, layers.softmax_forward_tuned,
                layers.softmax_backward_tuned, layers.causal_mask),
    "layernorm": (layers.layernorm_forward, layers.layernorm_backward),
    "gelu": (layers.gelu_tanh_forward, layers.gelu_tanh_backward, layers.gelu_erf_forward,
             layers.gelu_erf_backward),
    "cross_entropy": (layers.cross_entropy_forward, layers.cross_entropy_backward),
    "optimizer": (optim.adamw_step,),
    "other": (layers.embedding_forward, layers.embedding_backward,
              layers.position_embedding_forward, layers.position_embedding_backward,
              layers.split_heads, layers.merge_heads),
}
KIND_OF = {fn: kind for kind, functions in FUNCTIONS_OF_KIND.items() for fn in functions}


class KindTimer:
    """Exclusive seconds per kind and per function name, of the functions of ``kind_of``.

    The functions are known by their code objects, which every module that imports one shares,
    so nothing is rebound. A stack holds, for every timed call still running, its start and
    the time spent so far in the timed calls inside it; a call's own time is its elapsed time
    less that.
    """

    def __init__(self, kind_of=KIND_OF, clock=time.perf_counter):
        self.clock = clock  # seconds; a test passes a fake clock
        self.by_kind = dict.fromkeys(KINDS, 0.0)
        self.by_function = {}
        self.calls = 0
        self._timed = {fn.__code__: (kind, fn.__name__) for fn, kind in kind_of.items()}
        if len(self._timed) < len(kind_of):  # decorated functions would share one wrapper
            raise ValueError("two functions of kind_of share a code object")
        self._stack = []  # [start, seconds in timed calls inside] per timed call running

    def hook(self, frame, event, arg):
        """The sys.setprofile callback. Only Python calls and returns are looked at: time in
        NumPy's C functions ('c_call' ... 'c_return') counts to the function calling them.
        A function that exits by an exception sends 'return' too, so the stack stays even."""
        if event == "call" and frame.f_code in self._timed:
            self._stack.append([self.clock(), 0.0])
        elif event == "return" and frame.f_code in self._timed:
            self._stop(*self._timed[frame.f_code])

    def _stop(self, kind, name):
        start, inner = self._stack.pop()
        elapsed = self.clock() - start
        if self._stack:  # the enclosing timed call does not count this time as its own
            self._stack[-1][1] += elapsed
        own = elapsed - inner
        self.by_kind[kind] += own
        self.by_function[name] = self.by_function.get(name, 0.0) + own
        self.calls += 1


@contextlib.contextmanager
def profiled(timer):
    """Run the body with ``timer.hook`` as the profile hook; put back the one there was (none,
    or another profiler's) on leaving, also after an error."""
    previous = sys.getprofile()
    sys.setprofile(timer.hook)
    try:
        yield timer
    finally:
        sys.setprofile(previous)


def split_by_kind(step_seconds, timer, inline_seconds):
    """Seconds per kind that add up to ``step_seconds``, and the same in percent.

    The products written inline in models.py (the tied output layer) run in no timed
    function, so they would land in ``other``; their floor time of the same shapes
    (``inline_seconds``) is moved from other to matmul, at most all of other.
    """
    split = dict(timer.by_kind)
    named = sum(v for k, v in split.items() if k != "other")
    rest = max(step_seconds - named, 0.0)
    moved = min(inline_seconds, rest)
    split["matmul"] += moved
    split["other"] = rest - moved
    total = sum(split.values())
    pct = {k: 100.0 * v / total if total > 0 else 0.0 for k, v in split.items()}
    return split, pct


# ----------------------------------------------------------------------------------------------
# (e) Memory: the activation cache, measured and analytic


def _root(a):
    """The array that owns a view's memory."""
    while isinstance(a.base, np.ndarray):
        a = a.base
    return a


def cache_bytes(cache, params):
    """Bytes of the distinct arrays that ``cache`` (nested dicts, lists, tuples) keeps alive.

    Views count once, as the array that owns their memory (q, k, v are views of one qkv), and
    anything whose memory a parameter owns (``w``, ``wte``, ``wte.T``) is not counted.
    """
    params_owned = {id(_root(p)) for p in params.values()}
    counted, visited, total = set(), set(), 0
    todo = [cache]
    while todo:
        obj = todo.pop()
        if isinstance(obj, np.ndarray):
            owner = _root(obj)
            if id(owner) not in counted and id(owner) not in params_owned:
                counted.add(id(owner))
                total += owner.nbytes
        elif isinstance(obj, (dict, list, tuple)) and id(obj) not in visited:
            visited.add(id(obj))
            todo.extend(obj.values() if isinstance(obj, dict) else obj)
    return total


def peak_rss_mb():
    """The process's peak resident memory so far (ru_maxrss: KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024 if sys.platform == "darwin" else 1024)


# ----------------------------------------------------------------------------------------------
# One cell: one model at one config, measured in this process


def measure(model, config, shape, steps=DEFAULT_STEPS, warmup=DEFAULT_WARMUP, seed=0,
            log=lambda line: None, profile_steps=3, threads=(None,)):
    """Measure ``model`` at ``shape`` (named ``config``) in this process. -> a list of result
    dicts with the keys listed in the module docstring, one per entry of ``threads``: BLAS
    thread counts, switched with set_blas_threads, or None for the count the process has.

    Order: warm-up steps (cycling through the counts); one step under tracemalloc; peak RSS;
    one floor run as its warm-up and one more untimed step; then ``steps`` rounds of a timed
    step followed by a timed floor run at every count (the first count first in even rounds,
    last in odd ones); ``profile_steps`` steps at every count under the profile
    hook (``profiled``); one forward pass whose caches are counted.
    """
    if steps < 1 or profile_steps < 1 or warmup < 0:
        raise ValueError(f"need steps >= 1, profile_steps >= 1 and warmup >= 0, got "
                         f"{steps}, {profile_steps} and {warmup}")
    threads = list(threads)

    def use(n):
        if n is not None:
            set_blas_threads(n)

    tokens = shape.B * shape.T
    step = build_step(model, shape, seed)
    products = matmul_products(model, step.cfg, shape.B, shape.T)
    label = f"{model}/{config}"

    losses = []
    for i in range(max(warmup, len(threads) if len(threads) > 1 else 0)):
        use(threads[i % len(threads)])
        t0 = time.perf_counter()
        losses.append(step.run())
        if i == 0:  # say how long the rest will take, when that is long enough to wait for
            rounds = len(threads) * (2 * steps + profile_steps)
            estimate = (time.perf_counter() - t0) * (warmup + rounds + 3)
            if estimate > 1.0:
                log(f"{label}: {warmup} warm-up, {steps} timed steps and floors, "
                    f"{profile_steps} profiled" + (f", at {len(threads)} thread counts"
                                                   if len(threads) > 1 else "")
                    + f" (about {estimate:.0f} s)")

    tracing = tracemalloc.is_tracing()  # (left running if someone else started it)
    if not tracing:
        tracemalloc.start()
    tracemalloc.reset_peak()  # one step's own allocations, over what is alive before it
    base, _ = tracemalloc.get_traced_memory()
    losses.append(step.run())
    alloc_peak = tracemalloc.get_traced_memory()[1] - base
    if not tracing:
        tracemalloc.stop()
    rss = peak_rss_mb()  # after whole steps, before the floor's buffers exist

    plan = floor_plan(products, np.random.default_rng(seed + 1))
    time_floor(plan)  # warm-up: first touch of every buffer
    # The floor's buffers took over memory the steps had freed, so the next step gets fresh
    # pages from the kernel and runs slower (by half at tiny and small): one more untimed
    # step brings it back to the steady state the timed ones measure.
    losses.append(step.run())
    step_s = {n: [] for n in threads}
    floor_runs = {n: [] for n in threads}
    for r in range(steps):
        for n in (threads if r % 2 == 0 else threads[::-1]):
            use(n)
            t0 = time.perf_counter()
            losses.append(step.run())
            step_s[n].append(time.perf_counter() - t0)
            floor_runs[n].append(time_floor(plan))
    del plan

    timers, profiled_s = {}, {}
    for n in threads:
        use(n)
        timers[n], profiled_s[n] = KindTimer(), 0.0
        with profiled(timers[n]):
            for _ in range(profile_steps):
                t0 = time.perf_counter()
                losses.append(step.run())
                profiled_s[n] += time.perf_counter() - t0

    loss, model_cache, loss_cache = step.forward()
    measured_model = cache_bytes(model_cache, step.params) / tokens
    measured_loss = cache_bytes(loss_cache, step.params) / tokens
    del model_cache, loss_cache
    memory = {
        "peak_rss_mb": rss, "step_alloc_peak_mb": alloc_peak / 2**20,
        "cache_bytes_per_token": {
            "measured": measured_model + measured_loss, "model": measured_model,
            "loss": measured_loss,
            "analytic": analytic_cache_bytes_per_token(model, step.cfg, shape.T)},
        "loss": {"first": losses[0], "last": float(loss)},
    }
    results = []
    for n in threads:
        use(n)
        results.append(_result(model, config, shape, steps, warmup, products, step_s[n],
                               floor_runs[n], timers[n], profiled_s[n], profile_steps, memory,
                               threads=n))
    return results


def _result(model, config, shape, steps, warmup, products, step_s, floor_runs, timer,
            profiled_s, profile_steps, memory, threads):
    """One result dict of ``measure``, at one thread count."""
    tokens = shape.B * shape.T
    floor_s = [sum(run) for run in floor_runs]
    per_product = [statistics.median([run[i] for run in floor_runs]) for i in range(len(products))]
    inline = profile_steps * sum(s for p, s in zip(products, per_product) if p.inline)
    split_s, split_pct = split_by_kind(profiled_s, timer, inline)
    step_median, floor_median = statistics.median(step_s), statistics.median(floor_s)
    flops = sum(product_flops(p) for p in products)
    n_prof = max(profile_steps, 1)
    blas = blas_info()
    return {
        "model": model, "config": config,
        "threads": blas.get("threads", "?" if threads is None else threads),
        "shape": asdict(shape), "tokens_per_step": tokens,
        "steps": steps, "warmup": warmup,
        "tokens_per_s": tokens / step_median, "step_s": step_s,
        "floor_tokens_per_s": tokens / floor_median, "floor_s": floor_s,
        "floor_fraction": floor_median / step_median,
        "n_products": len(products), "floor_gflop": flops / 1e9,
        "step_gflops": flops / 1e9 / step_median,
        "products": [{"name": p.name, "a": list(p.a), "b": list(p.b), "inline": p.inline,
                      "gflop": product_flops(p) / 1e9, "median_s": s}
                     for p, s in zip(products, per_product)],
        "split_pct": split_pct,
        "split_s": {k: v / n_prof for k, v in split_s.items()},
        "by_function_s": {k: v / n_prof for k, v in sorted(timer.by_function.items())},
        "profile": {"steps": profile_steps, "step_s": profiled_s / n_prof,
                    "overhead": (profiled_s / n_prof) / step_median - 1.0,
                    "wrapped_calls_per_step": timer.calls / n_prof,
                    "inline_matmul_s": inline / n_prof},
        **memory,
        "blas": blas,
        "blas_env": {k: os.environ[k] for k in (*THREAD_VARS, "OPENBLAS_CORETYPE",
                                                 "OPENBLAS_L2_SIZE") if k in os.environ},
    }


# ----------------------------------------------------------------------------------------------
# Every cell in its own process, with the thread count in its environment


class BenchError(Exception):
    """A cell's process failed: printed as one line, exit status 1."""


def run_cell(model, config, shape, threads, steps, warmup):
    """``measure`` in a fresh ``python -m minillm.bench --cell ...`` whose environment sets
    THREAD_VARS to the largest of ``threads`` (a list of counts; with more than one, the cell
    switches between them). Its stderr (progress) passes through; stdout is the result list."""
    env = dict(os.environ)
    env.update({var: str(max(threads)) for var in THREAD_VARS})
    package_parent = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_parent, env.get("PYTHONPATH")) if p)
    cell = json.dumps({"model": model, "config": config, "shape": asdict(shape),
                       "steps": steps, "warmup": warmup,
                       "threads": list(threads) if len(threads) > 1 else [None]})
    proc = subprocess.run([sys.executable, "-m", "minillm.bench", "--cell", cell],
                          env=env, stdout=subprocess.PIPE, text=True)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise BenchError(f"measuring {model}/{config} failed (exit status {proc.returncode})")
    return json.loads(lines[-1])


def format_table(results, meta):
    """The Markdown table a user pastes into an issue, with a line saying where it ran."""
    blas = next((r["blas"] for r in results if r.get("blas")), {})
    counts = meta["threads"]
    head = (f"minillm bench: {' and '.join(map(str, counts))} thread"
            f"{'s' * (counts != [1])}" + (", alternating step by step" if len(counts) > 1 else "")
            + f", warm-up {meta['warmup']}, {meta['steps']} steps; numpy {meta['numpy']}"
            + (f", OpenBLAS {blas.get('corename', '?')}" if blas else "")
            + f"; {meta['platform']}, {meta['cpu_count']} cores")
    cols = ["model", "config", "threads", "tokens/s", "floor tokens/s", "fraction",
            *[f"{k} %" for k in KINDS], "peak RSS MB", "step alloc MB",
            "cache B/token", "analytic B/token"]
    lines = [head, "", "| " + " | ".join(cols) + " |",
             "|" + "|".join(["---"] * 2 + ["---:"] * (len(cols) - 2)) + "|"]
    for r in results:
        cache = r["cache_bytes_per_token"]
        cells = [r["model"], r["config"], str(r["threads"]), f"{r['tokens_per_s']:,.0f}",
                 f"{r['floor_tokens_per_s']:,.0f}", f"{r['floor_fraction']:.2f}",
                 *[f"{r['split_pct'][k]:.1f}" for k in KINDS],
                 f"{r['peak_rss_mb']:,.0f}", f"{r['step_alloc_peak_mb']:,.0f}",
                 f"{cache['measured']:,.0f}", f"{cache['analytic']:,.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    shapes = {r["config"]: r["shape"] for r in results}.items()  # in the order measured
    lines.append("")
    lines += [f"{name}: " + " ".join(f"{k}={v}" for k, v in s.items()) for name, s in shapes]
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------
# The command line


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise ValueError(f"{message} (see '{self.prog} --help')")


def _int_at_least(low):
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {text!r}")
        if value < low:
            raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {text!r}")
        return value

    return parse


def _thread_counts(text):
    """'2' -> [2]; '1,2' -> [1, 2]: distinct integers >= 1, in the order given."""
    parse = _int_at_least(1)
    counts = [parse(part.strip()) for part in text.split(",")]
    if len(set(counts)) != len(counts):
        raise argparse.ArgumentTypeError(f"thread counts must differ, got {text!r}")
    return counts


def build_parser(config_names):
    parser = _Parser(
        prog="minillm bench",
        description="Time a training step (forward, backward, AdamW; float32) of GPT, BERT "
        "and BART at the PyTorch reference's shapes, beside the matmul floor of the same step "
        "measured in the same run, with the split of step time by layer kind, peak memory and "
        "the activation cache per token. Prints a Markdown table; progress goes to stderr.",
    )
    parser.add_argument("--config", choices=(*config_names, "all"), default="tiny",
                        help="which shape (default tiny): " + "; ".join(
                            f"{n}: " + " ".join(f"{k}={v}" for k, v in asdict(s).items())
                            for n, s in CONFIGS.items() if n in config_names))
    parser.add_argument("--model", choices=(*MODEL_NAMES, "all"), default="gpt",
                        help="which model (default gpt)")
    parser.add_argument("--threads", type=_thread_counts, default=[1], metavar="N[,M...]",
                        help="BLAS threads, set in each measuring process's environment "
                        "before NumPy loads (default 1); several, as in 1,2, are measured "
                        "in the same process, switching between them step by step")
    parser.add_argument("--warmup", type=_int_at_least(0), default=DEFAULT_WARMUP,
                        help=f"untimed steps first (default {DEFAULT_WARMUP})")
    parser.add_argument("--steps", type=_int_at_least(1), default=DEFAULT_STEPS,
                        help=f"timed steps, each followed by a timed floor (default "
                        f"{DEFAULT_STEPS})")
    parser.add_argument("--json", metavar="FILE", help="also write every number to FILE")
    parser.add_argument("--busy", action="store_true",
                        help="instead: time the demo's training with another program keeping a "
                        "core busy, with the automatic BLAS thread choice against 1 and 2 "
                        "threads, and on a quiet machine (bench_busy.py; about 90 s a round)")
    parser.add_argument("--repeat", type=_int_at_least(1), default=2, metavar="R",
                        help="--busy: rounds of the six conditions (default 2)")
    parser.add_argument("--cell", help=argparse.SUPPRESS)  # internal: one cell, in this process
    return parser


def _run_one_cell(spec):
    """The child's side of run_cell: measure one cell, print its result as one JSON line."""
    keep_freed_memory()  # as `minillm train` does: a step reuses the last step's freed memory
    spec = json.loads(spec)
    results = measure(spec["model"], spec["config"], BenchShape(**spec["shape"]),
                      spec["steps"], spec["warmup"], threads=spec["threads"],
                      log=lambda line: print(f"minillm bench: {line}", file=sys.stderr,
                                             flush=True))
    print(json.dumps(results))
    return 0


def main(argv=None, configs=None):
    """``minillm bench``: returns the exit status (0, 1 if a measurement failed, 2 for a bad
    argument). ``configs`` replaces CONFIGS (tests pass tiny shapes)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    configs = CONFIGS if configs is None else configs
    try:
        args = build_parser(tuple(configs)).parse_args(argv)
        if args.cell:
            return _run_one_cell(args.cell)
        if args.json:  # checked now, not after the whole benchmark: a folder, a FIFO, ...
            check_writable(args.json)
        if args.busy:
            from . import bench_busy

            return bench_busy.main(args.repeat, args.json)
        names = list(configs) if args.config == "all" else [args.config]
        chosen = list(MODEL_NAMES) if args.model == "all" else [args.model]
        cells = [(m, c) for c in names for m in chosen]
        meta = {"threads": args.threads, "steps": args.steps, "warmup": args.warmup,
                "numpy": np.__version__, "python": platform.python_version(),
                "platform": f"{platform.system()} {platform.machine()}",
                "cpu_count": os.cpu_count(),
                "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "command": "python -m minillm bench " + " ".join(argv),
                "configs": {c: asdict(configs[c]) for c in names}}
        results = []
        for i, (model, config) in enumerate(cells, 1):
            print(f"minillm bench: [{i}/{len(cells)}] {model} {config} ...", file=sys.stderr,
                  flush=True)
            results += run_cell(model, config, configs[config], args.threads, args.steps,
                                args.warmup)
        print(format_table(results, meta))
        if args.json:
            write_json(args.json, {"meta": meta, "results": results})  # crash-safe
    except BenchError as err:
        print(f"minillm bench: error: {err}", file=sys.stderr)
        return 1
    except (ValueError, OSError) as err:
        print(f"minillm bench: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("minillm bench: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
