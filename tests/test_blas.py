"""The BLAS thread count of training: chosen by timing steps, never changing the bits."""

import numpy as np
import pytest

from minillm import blas
from minillm.grammar import default_grammar
from minillm.models import GPTConfig
from minillm.config import TrainConfig
from minillm.data import GrammarData
from minillm.train import train

TOK = default_grammar().tokenizer()


class FakeMachine:
    """A clock and a BLAS whose step time per token depends on the thread count in force:
    ``speed[count]`` seconds per token, changed by the test to play a busy core."""

    def __init__(self, speed):
        self.speed, self.now, self.threads, self.sets = dict(speed), 0.0, 2, []

    def set_threads(self, n):
        self.threads = n
        self.sets.append(n)

    def clock(self):
        return self.now

    def run(self, chooser, steps, tokens=100):
        """Run ``steps`` steps; -> the thread count each one ran with."""
        used = []
        for _ in range(steps):
            seconds = self.speed[self.threads] * tokens
            self.now += seconds
            used.append(self.threads)
            chooser.step_done(seconds, tokens)
        return used


def chooser_on(machine, **kwargs):
    return blas.AdaptiveThreads(counts=(1, 2), set_threads=machine.set_threads,
                                clock=machine.clock, **kwargs)


def test_the_first_trial_keeps_the_faster_count():
    for fast, slow in ((1, 2), (2, 1)):
        machine = FakeMachine({fast: 1e-3, slow: 3e-3})
        chooser = chooser_on(machine)
        used = machine.run(chooser, 20)
        # The first step (untimed) and the trial's 3 + 3 steps; then the faster count only.
        assert used[1:7].count(1) == used[1:7].count(2) == 3
        assert set(used[8:]) == {fast}
        assert chooser.choices == [(7, fast)]


def test_a_core_that_becomes_busy_is_noticed_at_the_next_recheck_and_left():
    machine = FakeMachine({1: 1.2e-3, 2: 1e-3})  # quiet: two threads are a little faster
    chooser = chooser_on(machine, first_recheck=1.0, max_recheck=4.0)
    machine.run(chooser, 30)
    assert chooser.chosen == 2 and chooser.choices == [(7, 2)]
    machine.speed = {1: 1.2e-3, 2: 6e-3}  # another program takes a core: two collapse
    used = machine.run(chooser, 200)
    switch = used.index(1)
    # Within one re-check interval (at most 4 s of 0.12 to 0.6 s steps) it ran one thread,
    # and from then on only re-checks use two threads, RECHECK_STEPS at a time.
    assert switch < 40
    tail = used[switch + 5:]
    assert tail.count(2) <= blas.AdaptiveThreads.RECHECK_STEPS * (1 + len(tail) // 6)
    assert chooser.choices[-1][1] == 1


def test_rechecks_grow_further_apart_while_the_choice_holds():
    machine = FakeMachine({1: 1e-3, 2: 2e-3})
    chooser = chooser_on(machine, first_recheck=0.5, max_recheck=4.0)
    used = machine.run(chooser, 600)  # 0.1 s a step at the chosen count
    # A re-check runs 2, 1, 2, 1: it starts where the two steps before it ran one thread.
    probes = [i for i in range(8, len(used)) if used[i] == 2 and 2 not in used[i - 2:i]]
    gaps = np.diff(probes)
    # The interval doubles from 0.5 s to its cap of 4 s (a step takes 0.1 s at the kept count).
    assert len(probes) >= 6 and gaps[0] < gaps[1] < gaps[2]
    assert max(gaps[2:]) - min(gaps[2:]) <= 1  # at the cap: equal, but for a step of rounding
    assert chooser.recheck == 4.0 and chooser.choices == [(7, 1)]


def test_a_difference_within_the_margin_does_not_switch():
    machine = FakeMachine({1: 1e-3, 2: 1.02e-3})  # 2% apart: noise, not a reason to switch
    chooser = chooser_on(machine, first_recheck=0.2, max_recheck=0.2)
    machine.run(chooser, 20)
    first = chooser.chosen
    machine.speed = {1: 1.02e-3, 2: 1e-3}  # the other way round, still within 5%
    machine.run(chooser, 300)
    assert chooser.chosen == first and len(chooser.choices) == 1


def test_a_thread_count_set_by_the_user_is_left_alone(monkeypatch):
    calls = []
    monkeypatch.setattr(blas, "set_blas_threads", calls.append)
    for var in blas.OPENBLAS_THREAD_VARS:
        monkeypatch.setenv(var, "2")
        assert blas.user_chose_threads()
        assert blas.adaptive_threads() is None
        blas.use_one_thread()
        monkeypatch.delenv(var)
    assert calls == []


@pytest.mark.skipif(blas.starting_threads() < 2 or blas.user_chose_threads()
                    or not blas.threads_keep_bits(blas.starting_threads()),
                    reason="needs NumPy's OpenBLAS starting with 2 threads or more, whose "
                    "thread counts give the same bits")
def test_a_count_left_at_one_by_a_run_does_not_stop_the_next_run_from_trying_more():
    """A training run whose chooser found one thread faster leaves OpenBLAS at 1; the next run
    in the same process (the demo trains three) still chooses between 1 and every thread the
    process started with, and so does bench --busy."""
    most = blas.starting_threads()
    try:
        blas.set_blas_threads(1)
        chooser = blas.adaptive_threads()
        assert chooser is not None and chooser.counts == (1, most)
        assert blas.starting_threads() == most
    finally:
        blas.set_blas_threads(most)


@pytest.mark.skipif(not blas.blas_info() or not blas.threads_keep_bits(2),
                    reason="switching thread counts needs OpenBLAS, and on this machine 2 threads "
                    "give other bits than 1 (threads_keep_bits): training keeps one thread")
def test_switching_thread_counts_every_step_gives_the_same_bits():
    """The thread count changes how fast a product runs, not the sums it makes: a run whose
    BLAS alternates between 1 and 2 threads every step ends bit-identical to a 1-thread run."""

    class EveryStep:
        def __init__(self):
            self.n = 1

        def step_done(self, seconds, tokens):
            self.n = 3 - self.n
            blas.set_blas_threads(self.n)

    before = blas.blas_info()["threads"]
    cfg = GPTConfig(vocab_size=len(TOK), n_ctx=32, n_embd=64, n_head=4, n_layer=2)
    train_cfg = TrainConfig(steps=12, batch_size=32, dtype="float32")
    runs = []
    try:
        for threads in (None, EveryStep()):
            blas.set_blas_threads(1)
            state = train(cfg, train_cfg, GrammarData(default_grammar(), TOK), TOK,
                          log=lambda line: None, threads=threads)
            runs.append(state)
    finally:
        blas.set_blas_threads(before)
    assert runs[0]["history"] == runs[1]["history"]
    for name, value in runs[0]["params"].items():
        np.testing.assert_array_equal(runs[1]["params"][name], value, err_msg=name)


@pytest.mark.skipif(not blas.blas_info() or blas.user_chose_threads(),
                    reason="needs NumPy's OpenBLAS, its thread count not set by the user")
def test_where_thread_counts_change_the_bits_a_run_keeps_one_thread(monkeypatch):
    calls = []
    monkeypatch.setattr(blas, "starting_threads", lambda: 2)
    monkeypatch.setattr(blas, "set_blas_threads", calls.append)
    monkeypatch.setattr(blas, "threads_keep_bits", lambda count: False)
    assert blas.adaptive_threads() is None and calls == [1]
    monkeypatch.setattr(blas, "threads_keep_bits", lambda count: True)
    chooser = blas.adaptive_threads()
    assert chooser is not None and chooser.counts == (1, 2) and calls == [1]


@pytest.mark.skipif(not blas.blas_info(), reason="needs NumPy's OpenBLAS")
def test_the_bit_probe_leaves_the_thread_count_as_it_found_it():
    before = blas.blas_info()["threads"]
    blas.threads_keep_bits.cache_clear()
    blas.threads_keep_bits(2)  # sets 1, then 2 threads, then the count it found
    assert blas.blas_info()["threads"] == before
