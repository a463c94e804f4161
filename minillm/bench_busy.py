"""The busy-machine benchmark: the demo's training, with another program keeping a core busy.

    python -m minillm bench --busy [--repeat R] [--json FILE]

A learner's laptop is rarely idle. With one of two cores taken by another program, OpenBLAS's
second thread waits for its turn inside every matrix product, and a training step can become
several times slower than on one thread (blas.py). This benchmark measures what minillm's
automatic thread choice (``blas.AdaptiveThreads``) makes of that. It times the demo's three
training runs (a GPT, a BERT and an encoder-decoder, 300 steps each: ``demo.run_demo`` without
its output) under six conditions, in this process, one after another:

    quiet  auto        no other program; the thread count chosen by timing steps
    quiet  1, 2        no other program; OpenBLAS held at one thread, or at two
    busy   auto        a Python busy loop in a child process (one core's worth of work)
    busy   1, 2        the busy loop; OpenBLAS held at one thread, or at two (its default on
                       2 cores)

On a machine whose OpenBLAS gives other bits with another thread count (blas.threads_keep_bits),
"auto" is one thread held for the whole run, as every training run there.

The conditions take turns, ``--repeat`` rounds of all six, so that each sees the machine in
the same moods; the table gives the median seconds of each and its ratio to ``quiet auto``.
Nothing here is asserted by a test: timings belong to the machine that ran them.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

from . import blas

CONDITIONS = (("quiet", "auto"), ("quiet", 1), ("quiet", 2),
              ("busy", "auto"), ("busy", 1), ("busy", 2))
BUSY_LOOP = "while True: pass"


def run_demo_training(threads):
    """Seconds for the demo's three training runs (and its few answers), nothing printed."""
    from .demo import run_demo

    start = time.perf_counter()
    run_demo(log=lambda line: None, save=False, threads=threads)
    return time.perf_counter() - start


def measure(repeat=2, log=lambda line: None):
    """{(load, threads): [seconds per round]} over ``repeat`` rounds of CONDITIONS."""
    if blas.user_chose_threads():
        raise ValueError("--busy compares thread counts itself: unset OPENBLAS_NUM_THREADS "
                         "(and GOTO_NUM_THREADS, OMP_NUM_THREADS) first")
    most = blas.starting_threads()
    if most < 2:
        raise ValueError("--busy needs NumPy's OpenBLAS with at least 2 threads to compare")
    seconds = {c: [] for c in CONDITIONS}
    total = repeat * len(CONDITIONS)
    started = time.perf_counter()
    for r in range(repeat):
        for n, (load, threads) in enumerate(CONDITIONS):
            busy = subprocess.Popen([sys.executable, "-c", BUSY_LOOP]) if load == "busy" else None
            try:
                if threads == "auto":
                    blas.set_blas_threads(most)  # as a fresh process starts
                    seconds[(load, threads)].append(run_demo_training(blas.adaptive_threads))
                else:
                    blas.set_blas_threads(threads)
                    seconds[(load, threads)].append(run_demo_training(lambda: None))
            finally:
                if busy is not None:
                    busy.kill()
                    busy.wait()
                blas.set_blas_threads(most)
            done = r * len(CONDITIONS) + n + 1
            elapsed = time.perf_counter() - started
            log(f"minillm bench --busy: [{done}/{total}] {load} {threads}: "
                f"{seconds[(load, threads)][-1]:.1f} s | ETA "
                f"{elapsed / done * (total - done):.0f} s")
    return seconds


def format_table(seconds):
    quiet = statistics.median(seconds[("quiet", "auto")])
    lines = ["| machine | BLAS threads | demo training s (median) | each round | vs quiet auto |",
             "|---|---|---:|---|---:|"]
    for (load, threads), values in seconds.items():
        median = statistics.median(values)
        lines.append(f"| {load} | {threads} | {median:.1f} | "
                     f"{', '.join(f'{v:.1f}' for v in values)} | {median / quiet:.2f} |")
    return "\n".join(lines)


def main(repeat, json_path=None):
    seconds = measure(repeat, log=lambda line: print(line, file=sys.stderr, flush=True))
    info = blas.blas_info()
    print(f"minillm bench --busy: the demo's training (GPT, BERT, encoder-decoder; 300 steps "
          f"each), {repeat} rounds; {info.get('library', '?')} {info.get('corename', '')}, "
          f"{info.get('threads')} threads by default\n")
    print(format_table(seconds))
    if json_path:
        from .safetensors import write_json

        write_json(json_path, {"rounds": repeat, "blas": info,  # crash-safe
                               "seconds": [{"machine": load, "threads": threads,
                                            "seconds": values}
                                           for (load, threads), values in seconds.items()]})
    return 0
