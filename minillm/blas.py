"""How many threads NumPy's matrix products use, chosen by measuring the training step.

NumPy's BLAS (OpenBLAS, in NumPy's own wheels) starts one thread per core. On a quiet 2-core
machine the second thread makes a training step of the demo's models 1.05-1.3x faster, and of
the benchmark's medium models 1.3-1.7x (README, Performance). But when another program keeps one
core busy, the second thread waits for its turn inside every product: the demo then took 24 s
with two threads against 9 s with one (measured on the project's 2-core machine). A learner's
laptop is rarely idle, so minillm measures instead of guessing:

``AdaptiveThreads`` times every training step, per token. It first tries each thread count on a
few steps, keeps the faster one, and tries the other again after 2 s, 4 s, 8 s ... (at most
every 60 s) of training, switching whenever the other has become faster. A busy core is found
within a few steps; the price is a few steps at the slower count now and then.

Where the thread count changes only how fast a product runs, switching is free: OpenBLAS
splits a product's output among its threads, and with some of its kernels each output element
is summed in the same order by whichever thread computes it (seen with its SkylakeX kernels on
Intel). With others it is not: with its Haswell kernels on an AMD EPYC, most products of a
training step's shapes come out one last bit apart with 2 threads. Switching there would make
a run's bits depend on the machine's load, so ``threads_keep_bits`` compares the two counts on
a few such products first, and where they differ a training run keeps one thread from start to
end: the same seed then gives the same bits, whatever else the machine does, at the price of
the second thread's speed on a quiet machine. ``tests/test_blas.py`` checks a switching run
against a one-thread run bit for bit where the probe says the counts agree.

A user who sets OPENBLAS_NUM_THREADS (or GOTO_NUM_THREADS or OMP_NUM_THREADS, which OpenBLAS also
reads) keeps that count: ``user_chose_threads`` then holds, and nothing here changes it. Where
NumPy's BLAS is not an OpenBLAS that can be reached (another BLAS, another system), nothing here
changes anything either.
"""

from __future__ import annotations

import functools
import os
import statistics
import time

# The environment variables OpenBLAS reads for its thread count, in the order it reads them.
OPENBLAS_THREAD_VARS = ("OPENBLAS_NUM_THREADS", "GOTO_NUM_THREADS", "OMP_NUM_THREADS")


def user_chose_threads():
    """True if the environment sets OpenBLAS's thread count: the user's choice, left alone."""
    return any(os.environ.get(var, "").strip() for var in OPENBLAS_THREAD_VARS)


@functools.lru_cache(maxsize=None)
def _openblas():
    """(path, lib, name) for the OpenBLAS that NumPy loaded, where ``name(f)`` spells its
    function f (``get_num_threads`` -> ``scipy_openblas_get_num_threads64_``); None where there
    is none to be found (another BLAS, another system). Read through ctypes from the libraries
    mapped into this process (Linux)."""
    try:
        import ctypes

        import numpy  # noqa: F401  (loads the BLAS whose functions are looked up below)

        with open("/proc/self/maps") as maps:
            paths = sorted({line.split()[-1] for line in maps if "openblas" in line.lower()})
        for path in paths:
            lib = ctypes.CDLL(path)
            for prefix, suffix in (("scipy_openblas_", "64_"), ("scipy_openblas_", ""),
                                   ("openblas_", "64_"), ("openblas_", "")):
                if hasattr(lib, f"{prefix}get_num_threads{suffix}"):
                    return path, lib, lambda f, p=prefix, s=suffix: f"{p}{f}{s}"
    except (OSError, AttributeError, ValueError):
        pass
    return None


def blas_info():
    """What the OpenBLAS that NumPy loaded says of itself: its thread count and core type.
    Best effort: an empty dict where there is no OpenBLAS to ask."""
    import ctypes

    found = _openblas()
    if found is None:
        return {}
    path, lib, name = found
    threads = getattr(lib, name("get_num_threads"))
    threads.restype = ctypes.c_int
    info = {"library": os.path.basename(path), "threads": threads()}
    for key in ("corename", "config"):
        fn = getattr(lib, name(f"get_{key}"), None)
        if fn is not None:
            fn.restype = ctypes.c_char_p
            info[key] = fn().decode()
    return info


# The thread count OpenBLAS started with (its default: every core, or what the environment
# says), read before this process first changes it: a training run may leave the count at 1,
# and the next one in the same process (the demo trains three) must still be able to try them all.
_starting_threads = None


def set_blas_threads(n):
    """Tell OpenBLAS to use ``n`` threads from its next call on (it starts more if it has
    fewer). ValueError where NumPy's BLAS is not an OpenBLAS this can reach."""
    global _starting_threads
    found = _openblas()
    if found is None:
        raise ValueError("setting the thread count needs NumPy's OpenBLAS, which was not found; "
                         "set OPENBLAS_NUM_THREADS (or your BLAS's variable) instead")
    if _starting_threads is None:
        _starting_threads = blas_info()["threads"]
    _, lib, name = found
    getattr(lib, name("set_num_threads"))(int(n))


def starting_threads():
    """The thread count OpenBLAS started this process with, whatever it runs now (1 where
    there is no OpenBLAS to ask)."""
    if _starting_threads is not None:
        return _starting_threads
    return blas_info().get("threads", 1)


def use_one_thread():
    """One BLAS thread for a command that only runs a model on one input (generate, score,
    fill, seq2seq): its products are too small for a second thread to pay, and a busy core would
    make it wait. Does nothing if the user set the count, or where OpenBLAS cannot be reached."""
    if not user_chose_threads() and _openblas() is not None:
        set_blas_threads(1)


# Products of a training step's shapes (rows, inner, columns; float32): the models' linear
# layers and output layer at the demo's and the sweeps' sizes, on which threads_keep_bits
# compares thread counts.
BIT_PROBE_SHAPES = ((1024, 64, 164), (164, 1024, 64), (1024, 64, 256), (1024, 256, 64))


@functools.lru_cache(maxsize=None)
def threads_keep_bits(count):
    """True when OpenBLAS computes the products of BIT_PROBE_SHAPES with ``count`` threads to
    exactly the bits it computes with one (a few milliseconds, once per process). OpenBLAS is
    left at the count it had."""
    import numpy as np

    rng = np.random.default_rng(0)
    pairs = [(rng.standard_normal((m, k)).astype(np.float32),
              rng.standard_normal((k, n)).astype(np.float32)) for m, k, n in BIT_PROBE_SHAPES]
    before = blas_info()["threads"]
    try:
        set_blas_threads(1)
        one = [a @ b for a, b in pairs]
        set_blas_threads(count)
        many = [a @ b for a, b in pairs]
    finally:
        set_blas_threads(before)
    return all(np.array_equal(x, y) for x, y in zip(one, many))


def adaptive_threads():
    """An ``AdaptiveThreads`` for a training run, or None where it has nothing to choose: the
    user set the thread count, OpenBLAS cannot be reached, or it runs one thread anyway; or
    where another thread count would change the bits (threads_keep_bits): then one thread, set
    here, for the whole run."""
    if user_chose_threads():
        return None
    most = starting_threads()
    if most < 2:
        return None
    if not threads_keep_bits(most):
        set_blas_threads(1)
        return None
    return AdaptiveThreads(counts=(1, most))


class AdaptiveThreads:
    """Choose the BLAS thread count of a training loop by timing its steps (module docstring).

    The loop calls ``step_done(seconds, tokens)`` after every step; it records the step's time
    per token at the count it ran with and sets the count for the next step. The first step is
    not timed (it also pays for first-touch memory). Then each count runs ``TRIAL_STEPS`` steps,
    the counts alternating so that both see the same moments of a shared machine, and the one
    with the lower median time per token is kept. A re-check runs the other count and the kept
    one ``RECHECK_STEPS`` steps each, alternating, after ``recheck`` seconds; the interval
    doubles (up to ``max_recheck``) while the kept count stays the faster, and starts again from
    ``first_recheck`` after a switch.

    ``set_threads`` and ``clock`` are OpenBLAS's setter and ``time.perf_counter`` unless a test
    passes its own.
    """

    TRIAL_STEPS = 3  # steps per count in the first trial
    RECHECK_STEPS = 2  # steps per count in a re-check
    MARGIN = 0.05  # switch only when the other count is at least 5% faster: not on noise

    def __init__(self, counts=(1, 2), set_threads=set_blas_threads, clock=time.perf_counter,
                 first_recheck=2.0, max_recheck=60.0):
        if len(counts) != 2 or counts[0] == counts[1]:
            raise ValueError(f"counts must be two different thread counts, got {counts!r}")
        self.counts = tuple(counts)
        self.set_threads, self.clock = set_threads, clock
        self.first_recheck, self.max_recheck = first_recheck, max_recheck
        self.recheck = first_recheck
        self.current = None  # set at the first step; until then, whatever OpenBLAS runs
        self.chosen = None  # the count kept after the last trial or re-check
        self.skip_next = True  # the first step is not timed
        self.plan = [c for _ in range(self.TRIAL_STEPS) for c in (max(counts), min(counts))]
        self.samples = {c: [] for c in counts}  # seconds per token, in the current trial
        self.next_check = None  # the clock time of the next re-check
        self.choices = []  # (step, count) at every choice, for tests and curious readers
        self.steps = 0

    def step_done(self, seconds, tokens):
        """Record one step (``seconds`` for ``tokens`` tokens) and set the next step's count."""
        self.steps += 1
        if self.skip_next:
            self.skip_next = False
        elif self.plan is not None:
            self.samples[self.current].append(seconds / max(tokens, 1))
        if self.plan:  # a trial is under way: run its next count
            self._use(self.plan.pop(0))
        elif self.plan is not None:  # a trial has just ended: keep the faster count
            self._choose()
        elif self.clock() >= self.next_check:  # time to see whether the other count is faster
            other = self.counts[0] if self.chosen == self.counts[1] else self.counts[1]
            self.plan = [c for _ in range(self.RECHECK_STEPS) for c in (other, self.chosen)]
            self.samples = {c: [] for c in self.counts}
            self._use(self.plan.pop(0))

    def _choose(self):
        median = {c: statistics.median(s) for c, s in self.samples.items() if s}
        best = min(median, key=median.get)
        if self.chosen is None or best == self.chosen:
            keep = best
        else:  # the other count won the re-check: switch only if it is clearly faster
            keep = best if median[best] < (1 - self.MARGIN) * median[self.chosen] else self.chosen
        if keep == self.chosen:
            self.recheck = min(2 * self.recheck, self.max_recheck)
        else:
            self.recheck = self.first_recheck
            self.choices.append((self.steps, keep))
        self.chosen = keep
        self.plan = None
        self._use(keep)
        self.next_check = self.clock() + self.recheck

    def _use(self, count):
        if count != self.current:
            self.set_threads(count)
            self.current = count
