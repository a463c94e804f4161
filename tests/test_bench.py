"""The benchmark's bookkeeping: which products it times, what it counts as cache, how it splits
a step by kind, what it writes. Nothing here asserts a time: the shapes are tiny and every
check is an exact invariant (a count, a sum, an identity), never a speed."""

import dataclasses
import json
import sys

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from minillm import bench, layers, models, optim, transformer
from minillm.blas import starting_threads as blas_starting_threads
from minillm.bench import (
    KINDS,
    BenchShape,
    KindTimer,
    cache_bytes,
    matmul_products,
    measure,
    model_config,
    product_flops,
    profiled,
)

# A shape small enough that a whole measurement takes milliseconds: V L H C T B.
TINY = BenchShape(V=37, L=1, H=2, C=8, T=6, B=2)


@st.composite
def shapes(draw):
    H = draw(st.integers(1, 4))
    return BenchShape(V=draw(st.integers(2, 50)), L=draw(st.integers(1, 3)), H=H,
                      C=H * draw(st.integers(1, 8)), T=draw(st.integers(1, 16)),
                      B=draw(st.integers(1, 4)))


# ----------------------------------------------------------------------------------------------
# The matmul floor's products


def expected_count(model, L):
    """18 per block (4 linears x 3 + 6 attention); a decoder block 33 (7 x 3 + 2 x 6); the
    tied output layer 3; BERT's MLM dense, pooler and NSP 3 each."""
    return {"gpt": 18 * L + 3, "bert": 18 * L + 12, "seq2seq": 51 * L + 3}[model]


def expected_flops(model, s):
    """Written from the architecture, not from the table: 6 FLOPs per matrix parameter per row
    it sees (2 forward, 4 backward), and 12 T S C per attention and sequence (6 products of
    2 T S D per head)."""
    V, L, C, T, B = s.V, s.L, s.C, s.T, s.B
    F, S, N = 4 * C, T, B * T
    block = 4 * C * C + 2 * C * F  # c_attn 3C², attn c_proj C², c_fc CF, mlp c_proj FC
    attention = 12 * B * T * S * C  # one attention over S keys
    if model == "gpt":
        return 6 * N * (L * block + V * C) + L * attention
    if model == "bert":
        # + the MLM head's dense (C x C) over N rows, the pooler (C x C) and NSP (C x 2) over B
        return 6 * N * (L * block + C * C + V * C) + 6 * B * (C * C + 2 * C) + L * attention
    # BART: L encoder blocks; L decoder blocks, whose c_q, c_kv and xattn.c_proj add 4C², c_kv
    # (2C²) reading the S source rows; self- and cross-attention in each decoder block.
    decoder = block + 2 * C * C
    return (6 * N * (L * block + L * decoder + V * C) + 6 * B * S * L * 2 * C * C
            + 3 * L * attention)


@pytest.mark.parametrize("model", bench.MODEL_NAMES)
@given(shape=shapes())
def test_the_floor_has_every_product_of_the_step_and_their_flops_match_the_formula(model, shape):
    cfg = model_config(model, shape)
    products = matmul_products(model, cfg, shape.B, shape.T)
    assert len(products) == expected_count(model, shape.L)
    assert sum(product_flops(p) for p in products) == expected_flops(model, shape)
    for p in products:  # every product is a valid matmul: (..., M, K) @ (..., K, N)
        assert p.a[:-2] == p.b[:-2] and p.a[-1] == p.b[-2], p
    assert sum(p.inline for p in products) == 3  # the tied output layer, inline in models.py


def test_gpt_flops_are_the_palm_formula_6N_plus_12LTC_per_token():
    """The reference's FLOPs per token: 6 N + 12 L T C, N the matrix parameters (wte once)."""
    s = bench.CONFIGS["small"]
    cfg = model_config("gpt", s)
    N = s.L * 12 * s.C**2 + s.V * s.C
    total = sum(product_flops(p) for p in matmul_products("gpt", cfg, s.B, s.T))
    assert total == s.B * s.T * (6 * N + 12 * s.L * s.T * s.C)


# ----------------------------------------------------------------------------------------------
# The activation cache


def test_cache_bytes_counts_each_memory_once_and_no_parameter():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(4, 6)).astype(np.float32)
    qkv = rng.normal(size=(5, 9)).astype(np.float32)
    a = rng.normal(size=(3, 3))  # float64, 72 bytes
    q, k, v = np.split(qkv, 3, axis=-1)
    cache = {"w": w, "wT": w.T, "x": [q, (k, v)], "qkv": qkv, "inner": {"a": a, "again": a},
             "shape": (5, 9), "n": 3}
    assert cache_bytes(cache, {"w": w}) == qkv.nbytes + a.nbytes
    assert cache_bytes(cache, {}) == qkv.nbytes + a.nbytes + w.nbytes


@pytest.mark.parametrize("model", bench.MODEL_NAMES)
def test_the_cache_of_a_real_forward_is_positive_and_holds_no_parameter(model):
    step = bench.build_step(model, TINY)
    _, cache, loss_cache = step.forward()
    counted = cache_bytes(cache, step.params)
    assert counted > 0
    # The cache does hold the tied embedding (and every linear's w): counting parameters too
    # adds at least wte's bytes, so they were left out above.
    assert cache_bytes(cache, {}) >= counted + step.params["wte"].nbytes
    assert cache_bytes(loss_cache, step.params) >= TINY.B * TINY.T * TINY.V * 4  # softmax


@pytest.mark.parametrize("model", bench.MODEL_NAMES)
def test_the_cache_holds_exactly_what_the_analytic_count_says(model):
    """Nothing is kept for the backward pass beyond the items the analytic count lists: the
    measured bytes per token equal it exactly (float32, at the tiny shape)."""
    step = bench.build_step(model, TINY)
    _, cache, loss_cache = step.forward()
    measured = (cache_bytes(cache, step.params) + cache_bytes(loss_cache, step.params))
    analytic = bench.analytic_cache_bytes_per_token(model, step.cfg, TINY.T)
    assert measured / (TINY.B * TINY.T) == pytest.approx(analytic, rel=1e-12)


# ----------------------------------------------------------------------------------------------
# The split by kind


def test_the_kind_timer_keeps_exclusive_time_with_a_fake_clock():
    """outer runs 1 s itself, 4 s in an untimed helper and calls inner, which runs 2 s:
    outer's own time is 5 s, inner's 2 s. The work is ``spent.append``, a C call: its time
    counts to the function that makes it."""
    spent = []

    def inner():
        spent.append(2.0)

    def helper():
        spent.append(4.0)

    def outer():
        spent.append(1.0)
        inner()
        helper()

    timer = KindTimer({outer: "matmul", inner: "gelu"}, clock=lambda: sum(spent))
    with profiled(timer):
        outer()
    assert timer.by_kind == {**dict.fromkeys(KINDS, 0.0), "matmul": 5.0, "gelu": 2.0}
    assert timer.by_function == {"outer": 5.0, "inner": 2.0} and timer.calls == 2


def test_a_call_that_raises_and_a_generator_leave_the_timer_stack_even():
    """A function that exits by an exception still ends its time, and a generator's time is
    its own at every resume; the caller's own time stays right after both."""
    spent = []

    def failing():
        spent.append(3.0)
        raise ValueError("boom")

    def numbers():
        for n in range(2):
            spent.append(1.0)
            yield n

    def outer():
        spent.append(1.0)
        with pytest.raises(ValueError):
            failing()
        assert list(numbers()) == [0, 1]
        spent.append(1.0)
        return "done"

    timer = KindTimer({outer: "matmul", failing: "gelu", numbers: "softmax"},
                      clock=lambda: sum(spent))
    with profiled(timer):
        assert outer() == "done"
    assert timer.by_function == {"outer": 2.0, "failing": 3.0, "numbers": 2.0}
    assert timer.calls == 1 + 1 + 3  # a generator: a call and a return per resume


def test_two_functions_of_one_code_object_are_refused():
    """Functions made by one decorator share its wrapper's code: they could not be told apart."""
    def twice(fn):
        return lambda *args: fn(*args)

    with pytest.raises(ValueError, match="share a code object"):
        KindTimer({twice(len): "gelu", twice(abs): "softmax"})


def step_functions():
    """Every name bound to a callable in the modules a training step runs through."""
    return {(m.__name__, name): value for m in (layers, transformer, models, optim)
            for name, value in vars(m).items() if callable(value)}


def test_profiling_rebinds_no_name_and_removes_its_hook_also_after_an_error():
    before, outside = step_functions(), sys.getprofile()
    timer = KindTimer()
    with profiled(timer):
        assert sys.getprofile() == timer.hook
        during = step_functions()
    assert during.keys() == before.keys()
    assert [key for key, fn in before.items() if during[key] is not fn] == []
    assert sys.getprofile() is outside
    with pytest.raises(RuntimeError):  # also when the profiled code fails
        with profiled(KindTimer()):
            raise RuntimeError("boom")
    assert sys.getprofile() is outside


def test_profiling_puts_back_a_profiler_installed_before_it():
    outside = sys.getprofile()

    def other_profiler(frame, event, arg):
        pass

    sys.setprofile(other_profiler)
    try:
        with profiled(KindTimer()):
            assert sys.getprofile() != other_profiler
        assert sys.getprofile() is other_profiler
    finally:
        sys.setprofile(outside)


def test_kind_of_has_every_layer_function_a_step_calls_and_each_one_runs():
    """A layers.py or optim.py function that the step, transformer.py or models.py calls (a
    new tuned variant, say) needs its line in KIND_OF, or its time would count as other; and
    a line of KIND_OF whose function no step runs any more (renamed, say) is found too, unless
    it is the reference of a tuned variant that runs in its place."""
    ran, entered, outside = set(), set(), sys.getprofile()

    def record(frame, event, arg):
        code = frame.f_code
        if event == "call":
            ran.add(code)
            if (code.co_filename in (layers.__file__, optim.__file__)
                    and frame.f_back.f_code.co_filename != code.co_filename):
                entered.add(code)  # called from outside its own module

    for model in bench.MODEL_NAMES:
        step = bench.build_step(model, TINY)
        sys.setprofile(record)
        try:
            step.run()
        finally:
            sys.setprofile(outside)
    timed = {fn.__code__ for fn in bench.KIND_OF}
    assert sorted(code.co_name for code in entered - timed) == []  # missing from KIND_OF
    # A reference whose tuned variant the models call is listed too (a reader may put it back
    # in the models' place), and needs not run.
    replaced = {getattr(layers, fn.__name__[:-len("_tuned")]).__code__
                for fn in bench.KIND_OF if fn.__name__.endswith("_tuned")}
    assert sorted(code.co_name for code in timed - ran - replaced) == []  # never run


def test_split_by_kind_moves_inline_products_to_matmul_and_never_goes_negative():
    timer = KindTimer()
    timer.by_kind.update(matmul=3.0, gelu=1.0)
    split, pct = bench.split_by_kind(10.0, timer, inline_seconds=2.0)
    assert split["matmul"] == 5.0 and split["other"] == 4.0
    split, pct = bench.split_by_kind(4.5, timer, inline_seconds=2.0)  # only 0.5 s of other
    assert split["matmul"] == 3.5 and split["other"] == 0.0
    assert sum(pct.values()) == pytest.approx(100.0)


@pytest.mark.parametrize("model", bench.MODEL_NAMES)
def test_a_measurement_splits_the_whole_step_into_the_kinds(model):
    before, outside = step_functions(), sys.getprofile()
    [r] = measure(model, "t", TINY, steps=2, warmup=1, profile_steps=2)
    assert step_functions() == before and sys.getprofile() is outside
    assert set(r["split_pct"]) == set(KINDS)
    assert all(v >= 0.0 for v in r["split_pct"].values())
    assert sum(r["split_pct"].values()) == pytest.approx(100.0, abs=1e-6)
    assert sum(r["split_s"].values()) == pytest.approx(r["profile"]["step_s"], rel=1e-9)
    # Every kind that has a function in this model was seen running.
    for kind in ("matmul", "softmax", "layernorm", "gelu", "cross_entropy", "optimizer"):
        assert r["split_s"][kind] > 0.0, kind
    assert r["n_products"] == expected_count(model, TINY.L) == len(r["products"])
    assert len(r["step_s"]) == len(r["floor_s"]) == 2
    assert r["floor_fraction"] == pytest.approx(np.median(r["floor_s"]) / np.median(r["step_s"]))
    assert np.isfinite(r["loss"]["first"]) and np.isfinite(r["loss"]["last"])
    assert r["cache_bytes_per_token"]["measured"] > 0


def test_only_the_profiled_steps_run_under_the_hook(monkeypatch):
    """The timed steps, the warm-up and the memory step run with no hook of KindTimer's: its
    cost per call would slow them."""
    hooks, build_step = [], bench.build_step

    def recording_build_step(*args, **kwargs):
        step = build_step(*args, **kwargs)
        run = step.run

        def recording_run():
            hooks.append(isinstance(getattr(sys.getprofile(), "__self__", None), KindTimer))
            return run()

        return dataclasses.replace(step, run=recording_run)

    monkeypatch.setattr(bench, "build_step", recording_build_step)
    measure("gpt", "t", TINY, steps=3, warmup=1, profile_steps=2)
    # warm-up, memory, the step after the floor's warm-up, 3 timed, then 2 profiled
    assert hooks == [False] * (1 + 1 + 1 + 3) + [True] * 2


# ----------------------------------------------------------------------------------------------
# The command line

META_KEYS = {"threads", "steps", "warmup", "numpy", "python", "platform", "cpu_count",
             "started", "command", "configs"}
RESULT_KEYS = {"model", "config", "threads", "shape", "tokens_per_step", "steps", "warmup",
               "tokens_per_s", "step_s", "floor_tokens_per_s", "floor_s", "floor_fraction",
               "n_products", "floor_gflop", "step_gflops", "products", "split_pct", "split_s",
               "by_function_s", "profile", "peak_rss_mb", "step_alloc_peak_mb",
               "cache_bytes_per_token", "loss", "blas", "blas_env"}


def test_json_has_the_documented_keys_and_the_table_a_row_per_cell(tmp_path, capsys):
    out = tmp_path / "bench.json"
    argv = ["--config", "t", "--model", "gpt", "--steps", "1", "--warmup", "0",
            "--threads", "1", "--json", str(out)]
    assert bench.main(argv, configs={"t": TINY}) == 0
    table = capsys.readouterr().out
    data = json.loads(out.read_text())
    assert set(data) == {"meta", "results"}
    assert set(data["meta"]) == META_KEYS
    [result] = data["results"]
    assert set(result) == RESULT_KEYS
    assert set(result["split_pct"]) == set(KINDS)
    assert set(result["cache_bytes_per_token"]) == {"measured", "model", "loss", "analytic"}
    assert result["shape"] == {"V": 37, "L": 1, "H": 2, "C": 8, "T": 6, "B": 2}
    assert result["blas_env"]["OPENBLAS_NUM_THREADS"] == "1"  # set in the measuring process
    rows = [line for line in table.splitlines() if line.startswith("| gpt | t |")]
    assert len(rows) == 1 and rows[0].count("|") == 18  # 17 columns
    assert rows[0].startswith("| gpt | t | 1 |") and data["meta"]["threads"] == [1]


@pytest.mark.parametrize("argv, named", [
    (["--threads", "0"], "--threads"),
    (["--threads", "two"], "--threads"),
    (["--threads", "1,1"], "--threads"),
    (["--threads", "1,0"], "--threads"),
    (["--config", "huge"], "huge"),
    (["--model", "t5"], "t5"),
    (["--steps", "0"], "--steps"),
    (["--warmup", "-1"], "--warmup"),
    (["--json", "/nonexistent/folder/out.json"], "/nonexistent/folder/out.json"),
])
def test_bad_arguments_give_one_clear_line_and_status_2(argv, named, capsys):
    assert bench.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("minillm bench: error:") and named in err
    assert "Traceback" not in err


@pytest.mark.skipif(not bench.blas_info(), reason="switching thread counts needs OpenBLAS")
def test_thread_counts_compared_in_one_process_give_one_result_each():
    before = bench.blas_info()["threads"]
    try:
        results = measure("gpt", "t", TINY, steps=2, warmup=0, profile_steps=1, threads=[1, 2])
        assert [r["threads"] for r in results] == [1, 2]  # as OpenBLAS reports them
        for r in results:
            assert len(r["step_s"]) == len(r["floor_s"]) == 2
            assert sum(r["split_pct"].values()) == pytest.approx(100.0, abs=1e-6)
        assert bench.blas_info()["threads"] == 2  # left at the last count measured
    finally:
        bench.set_blas_threads(before)


def _float_arrays(obj, path="cache"):
    """(path, dtype) of every floating-point array inside nested dicts, lists and tuples."""
    if isinstance(obj, np.ndarray):
        return [(path, obj.dtype)] if obj.dtype.kind == "f" else []
    if isinstance(obj, dict):
        return [a for k, v in obj.items() for a in _float_arrays(v, f"{path}.{k}")]
    if isinstance(obj, (list, tuple)):
        return [a for i, v in enumerate(obj) for a in _float_arrays(v, f"{path}[{i}]")]
    return []


@pytest.mark.parametrize("model", bench.MODEL_NAMES)
def test_a_float32_step_stays_float32_end_to_end(model):
    """No silent float64: every float the caches keep, the loss, and the parameters
    after a whole step are float32."""
    step = bench.build_step(model, TINY)
    loss, cache, loss_cache = step.forward()
    arrays = _float_arrays(cache) + _float_arrays(loss_cache, "loss_cache")
    assert arrays and all(dtype == np.float32 for _, dtype in arrays), \
        [a for a in arrays if a[1] != np.float32]
    # The loss is the objective's Python float; the per-position log-probabilities it sums
    # are float32 (a float64 logit or softmax anywhere would have made them float64).
    assert isinstance(loss, float) and loss_cache["logp_target"].dtype == np.float32
    step.run()
    assert {v.dtype for v in step.params.values()} == {np.dtype(np.float32)}


@pytest.mark.skipif(not bench.blas_info() or blas_starting_threads() < 2,
                    reason="--busy compares thread counts of NumPy's OpenBLAS")
def test_busy_runs_every_condition_with_its_thread_count_and_stops_its_busy_loop(monkeypatch):
    """The plumbing of bench --busy (no timing asserted): each condition runs the demo's
    training with the thread count it names, under a busy child process where it says busy,
    and no busy loop is left running."""
    import subprocess

    from minillm import bench_busy, blas

    seen, children = [], []
    real_popen = subprocess.Popen

    def popen(*args, **kwargs):
        children.append(real_popen(*args, **kwargs))
        return children[-1]

    def fake_training(threads):
        chooser = threads()
        busy = bool(children) and children[-1].poll() is None
        seen.append((busy, "auto" if chooser is not None else blas.blas_info()["threads"]))
        return 1.0

    monkeypatch.setattr(bench_busy.subprocess, "Popen", popen)
    monkeypatch.setattr(bench_busy, "run_demo_training", fake_training)
    # The plumbing, on any machine: one where thread counts change the bits holds one thread
    # for "auto" (test_blas.py checks that rule).
    monkeypatch.setattr(blas, "threads_keep_bits", lambda count: True)
    seconds = bench_busy.measure(repeat=2)
    expected = [(load == "busy", threads) for load, threads in bench_busy.CONDITIONS]
    assert seen == expected * 2
    assert len(children) == 6 and all(child.poll() is not None for child in children)
    table = bench_busy.format_table(seconds)
    assert table.count("\n") == 1 + len(bench_busy.CONDITIONS) and "| busy | 2 |" in table
