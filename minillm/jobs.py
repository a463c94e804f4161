"""Long experiments (compare, scale) as jobs: run in worker processes, with progress and an ETA.

Each job is one call ``function(args, counter)``; the function calls ``counter.add(n)`` as it
works (a training step, say, weighted by what it costs), so that one progress line can show how
far the whole experiment is and when it will end. ``run_jobs`` yields each job's result as it
finishes, so that the caller can keep it (print it, write it to disk) before the next one: a
Ctrl-C then loses only the jobs still running.

With ``jobs`` = 1 everything runs in this process (a debugger can step into the job); with
more, in forked worker processes, each with BLAS on one thread (two processes on two cores run
faster than one process with two BLAS threads at these sizes), and the results are the same
bits: every job draws from its own seeds, never from a shared generator.
"""

from __future__ import annotations

import time

from .train import format_seconds


def check_run_options(args):
    """The options the measuring commands (compare, combine) share, checked before anything
    runs: --seeds and --jobs at least 1, --json a file that can be written (save_file's
    checks), not found out after the whole run. -> the first problem's message, or None."""
    for flag in ("seeds", "jobs"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            return f"--{flag} must be at least 1, got {value}"
    if args.json is not None:
        from .safetensors import check_writable

        try:
            check_writable(args.json)
        except (ValueError, OSError) as err:
            return f"--json: {err}"
    return None


class Progress:
    """Progress lines ``<name> 42% | <what> | 1m02s elapsed | ETA 1m30s``, the ETA from the rate
    of work so far. ``done`` may be a number shared with worker processes (the parent copies it
    in before ``poll``); ``poll`` prints a line when enough has changed, or when told ``what``
    happened."""

    def __init__(self, total, log, name, every=0.05):
        self.total, self.log, self.name, self.every = total, log, name, every
        self.start, self.last_shown, self.done = time.perf_counter(), -1.0, 0

    def add(self, n=1):
        self.done += n
        self.poll()

    def poll(self, what=""):
        fraction = self.done / self.total
        if fraction - self.last_shown >= self.every or what:
            self.last_shown = fraction
            self.show(what)

    def show(self, what):
        elapsed = time.perf_counter() - self.start
        eta = elapsed / max(self.done, 1) * max(self.total - self.done, 0)
        self.log(f"{self.name} {100 * self.done / self.total:3.0f}% | "
                 f"{what + ' | ' if what else ''}{format_seconds(elapsed)} elapsed | "
                 f"ETA {format_seconds(eta)}")


class Weighted:
    """A progress counter whose every add() counts ``weight`` units of work (compare.fit adds
    one per step; a sweep's progress counts FLOPs, so that a big model's step weighs more)."""

    def __init__(self, counter, weight):
        self.counter, self.weight = counter, weight

    def add(self, n=1):
        self.counter.add(n * self.weight)


class _SharedCounter:
    """A worker's view of the work counter: a multiprocessing.Value the parent polls."""

    def __init__(self, value):
        self.value = value

    def add(self, n=1):
        with self.value.get_lock():
            self.value.value += n


def _worker_init(value):
    """A worker process: Ctrl-C is the parent's to handle; BLAS on one thread."""
    import signal

    from . import blas

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    blas.use_one_thread()
    global _COUNTER
    _COUNTER = _SharedCounter(value)


def _run_in_worker(function_and_args):
    function, args = function_and_args
    return args, function(args, _COUNTER)


def run_jobs(function, todo, jobs, progress):
    """Yield ``(args, function(args, counter))`` for each ``args`` of ``todo``, in the order
    they finish, ``jobs`` at a time (1: here, in order). ``function`` must be a module-level
    function (workers find it by name)."""
    from . import blas

    if jobs <= 1:
        blas.use_one_thread()
        for args in todo:
            yield args, function(args, progress)
        return
    import multiprocessing

    context = multiprocessing.get_context("fork")
    shared = context.Value("d", 0.0)
    with context.Pool(jobs, initializer=_worker_init, initargs=(shared,)) as pool:
        pending = pool.imap_unordered(_run_in_worker, [(function, args) for args in todo])
        for _ in todo:
            while True:
                try:
                    args, result = pending.next(timeout=2.0)
                    break
                except multiprocessing.TimeoutError:
                    progress.done = shared.value
                    progress.poll()
            progress.done = shared.value
            yield args, result
