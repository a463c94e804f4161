"""Nothing lost, nothing silent: clear errors, crash-safe and resumable training, determinism."""

import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minillm import __main__ as cli
from minillm.grammar import default_grammar
from minillm.models import GPTConfig, gpt_forward, gpt_init
from minillm.checkpoint import load_checkpoint, save_checkpoint
from minillm.train import GrammarData, NonFiniteError, TrainConfig, train

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOK = default_grammar().tokenizer()
SMALL = ["--n-embd", "16", "--n-layer", "1", "--n-head", "2", "--batch-size", "8"]


def run_cli(args, **kwargs):
    return subprocess.run([sys.executable, "-m", "minillm", *args], cwd=REPO,
                          capture_output=True, text=True, **kwargs)


def params_of(path):
    return load_checkpoint(path)[3]["params"]


def assert_same_params(a, b):
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


# ---------------------------------------------------------------------------------------------
# Crash safety and resume


def test_sigkill_at_any_moment_leaves_a_loadable_checkpoint_and_resume_is_exact(tmp_path):
    """Kill training with SIGKILL three times at different moments; every time the checkpoint on
    disk loads, and a resume from the last one ends bit-identical to an unbroken run."""
    steps = ["--steps", "1000", "--checkpoint-every", "1", "--log-every", "1000", *SMALL]
    reference = str(tmp_path / "reference.safetensors")
    assert cli.main(["train", *steps, "--out", reference]) == 0
    path = str(tmp_path / "killed.safetensors")
    rng = np.random.default_rng(0)
    seen_steps = []
    for attempt in range(3):
        args = [*steps, "--out", path] + (["--resume"] if os.path.exists(path) else [])
        before = os.stat(path).st_mtime_ns if os.path.exists(path) else None
        proc = subprocess.Popen([sys.executable, "-m", "minillm", "train", *args], cwd=REPO,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # Wait until this run has written a checkpoint of its own (so the kill lands while it
        # trains, on any machine speed), then let it run a random moment more.
        deadline = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < deadline:
            if os.path.exists(path) and os.stat(path).st_mtime_ns != before:
                break
            time.sleep(0.01)
        time.sleep(0.3 * rng.random())
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        _, _, _, state = load_checkpoint(path)  # never torn: it loads
        seen_steps.append(state["step"])
    assert seen_steps and min(seen_steps) < 1000, f"no kill landed mid-run: {seen_steps}"
    assert seen_steps == sorted(seen_steps)  # each attempt resumed from the last
    if seen_steps[-1] < 1000:
        assert cli.main(["train", *steps, "--out", path, "--resume"]) == 0
    assert_same_params(params_of(path), params_of(reference))


def test_ctrl_c_saves_a_checkpoint_and_says_how_to_resume(tmp_path):
    path = str(tmp_path / "m.safetensors")
    args = ["train", "--steps", "3000", "--log-every", "5", *SMALL, "--out", path]
    proc = subprocess.Popen([sys.executable, "-m", "minillm", *args], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    while not proc.stdout.readline().startswith("step"):  # training has started
        pass
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert "Traceback" not in err
    assert "checkpoint saved to" in err and f"--resume --out {path}" in err
    step = load_checkpoint(path)[3]["step"]
    assert 5 <= step < 3000


def test_n_steps_then_n_more_equals_2n_steps_from_the_command_line(tmp_path):
    full, half = str(tmp_path / "full.safetensors"), str(tmp_path / "half.safetensors")
    assert cli.main(["train", "--steps", "20", *SMALL, "--out", full]) == 0
    from minillm.train import make_data
    # Stop after 10 of the 20 steps (the schedule still plans 20), then resume.
    model_cfg, train_cfg, tok, _ = load_checkpoint(full)
    train(model_cfg, train_cfg, make_data(train_cfg, model_cfg, tok), tok, checkpoint=half,
          until=10, log=lambda line: None)
    assert load_checkpoint(half)[3]["step"] == 10
    assert cli.main(["train", "--resume", "--out", half]) == 0
    assert_same_params(params_of(half), params_of(full))


def test_two_fresh_processes_with_one_seed_write_identical_bits(tmp_path):
    paths = [str(tmp_path / f"run{i}.safetensors") for i in range(2)]
    outputs = []
    for path in paths:
        assert run_cli(["train", "--steps", "15", "--seed", "3", *SMALL, "--out", path]).returncode == 0
        outputs.append(run_cli(["generate", "今天", "--checkpoint", path, "--seed", "1",
                                "--samples", "3"]).stdout)
    with open(paths[0], "rb") as a, open(paths[1], "rb") as b:
        assert a.read() == b.read()
    assert outputs[0] == outputs[1] and outputs[0].count("\n") == 3


def test_a_non_finite_gradient_stops_training_naming_the_step_and_the_parameter(tmp_path, monkeypatch):
    from minillm.objectives import clm

    real = clm.loss_and_grads
    calls = []

    def poisoned(params, cfg, batch, reduction):
        loss, n, grads = real(params, cfg, batch, reduction)
        calls.append(1)
        if len(calls) == 3:
            grads["h.0.mlp.c_fc.w"][0, 0] = np.nan
            grads["wte"][0, 0] = np.inf  # later in backward order: not the one to name
        return loss, n, grads

    monkeypatch.setattr(clm, "loss_and_grads", poisoned)
    cfg = GPTConfig(vocab_size=len(TOK), n_ctx=16, n_embd=16, n_head=2, n_layer=1)
    path = str(tmp_path / "m.safetensors")
    with pytest.raises(NonFiniteError, match=r"step 3: the gradient of h\.0\.mlp\.c_fc\.w"):
        train(cfg, TrainConfig(steps=10, batch_size=4), GrammarData(default_grammar(), TOK), TOK,
              checkpoint=path, checkpoint_every=1, log=lambda line: None)
    state = load_checkpoint(path)[3]
    assert state["step"] == 2  # the last good step stays on disk
    assert all(np.all(np.isfinite(v)) for v in state["params"].values())


# ---------------------------------------------------------------------------------------------
# Errors at the door


def test_a_checkpoint_that_does_not_fit_lists_every_mismatch(tmp_path):
    cfg = GPTConfig(vocab_size=len(TOK), n_ctx=16, n_embd=16, n_head=2, n_layer=1)
    state = train(cfg, TrainConfig(steps=1, batch_size=2), GrammarData(default_grammar(), TOK),
                  TOK, log=lambda line: None)
    state["params"]["wpe"] = state["params"]["wpe"][:8]
    del state["params"]["ln_f.b"]
    state["params"]["extra.w"] = np.zeros(3, dtype=np.float32)
    path = str(tmp_path / "bad.safetensors")
    save_checkpoint(path, cfg, TrainConfig(steps=1, batch_size=2), TOK, state)
    with pytest.raises(ValueError) as err:
        load_checkpoint(path)
    message = str(err.value)
    for part in ("3 problems", "missing param/ln_f.b", "unexpected param/extra.w",
                 "param/wpe is F32 [8, 16], the model needs F32 [16, 16]"):
        assert part in message


@pytest.mark.parametrize("ids, mask, named", [
    (np.array([[2, 5, 999]]), None, "ids[0, 2] = 999 is outside the vocabulary"),
    (np.array([[2, -1]]), None, "ids[0, 1] = -1"),
    (np.array([2, 5]), None, "ids must be a (B, T) array"),
    (np.array([[2.0, 5.0]]), None, "ids must hold integers"),
    (np.zeros((1, 0), dtype=np.int64), None, "at least one token"),
    (np.array([[2, 5]]), np.array([[1, 1, 1]]), "attention_mask must have shape (1, 2)"),
    (np.array([[2, 5]]), np.array([[1, 2]]), "attention_mask must hold only 0 and 1"),
])
def test_bad_model_inputs_are_named(ids, mask, named):
    cfg = GPTConfig(vocab_size=30, n_ctx=8, n_embd=8, n_head=2, n_layer=1)
    with pytest.raises(ValueError, match=re.escape(named)):
        gpt_forward(gpt_init(cfg, np.random.default_rng(0)), cfg, ids, mask)


def test_a_mask_given_to_a_gpt_is_refused(tmp_path, capsys):
    path = str(tmp_path / "m.safetensors")
    assert cli.main(["train", "--steps", "1", *SMALL, "--out", path]) == 0
    capsys.readouterr()
    assert cli.main(["generate", "今天[MASK]", "--checkpoint", path]) == 2
    err = capsys.readouterr().err
    assert "prompt '今天[MASK]' holds [MASK]" in err and "fill" in err


def test_an_all_padding_row_stays_finite_through_the_model():
    cfg = GPTConfig(vocab_size=30, n_ctx=8, n_embd=8, n_head=2, n_layer=2)
    params = gpt_init(cfg, np.random.default_rng(0), dtype=np.float64)
    from minillm.models import gpt_backward

    ids = np.array([[2, 5, 7], [0, 0, 0]])
    mask = np.array([[1, 1, 1], [0, 0, 0]])
    logits, cache = gpt_forward(params, cfg, ids, mask)
    grads = gpt_backward(np.ones_like(logits), cache)
    assert np.all(np.isfinite(logits))
    assert all(np.all(np.isfinite(g)) for g in grads.values())


# ---------------------------------------------------------------------------------------------
# The command line never shows a traceback

WORDS = ["train", "generate", "score", "fill", "seq2seq", "export", "import", "demo", "--steps",
         "--lr", "--objective", "--masking", "--pool", "--checkpoint", "--top-p", "--top-k",
         "--beam", "--temperature", "--n-embd", "--n-head", "--data", "--to", "--seed", "mlm",
         "clm", "t5", "static", "0", "-1", "1e9", "nan", "inf", "abc", "今天[MASK]很好", "",
         "/nonexistent/x", "--help"]


@settings(max_examples=40)
@given(argv=st.lists(st.one_of(st.sampled_from(WORDS), st.text(max_size=6)), max_size=6))
def test_random_argument_lists_exit_0_or_2_without_a_traceback(argv):
    import tempfile

    import minillm.demo
    import minillm.train

    real_train = minillm.train.train
    # Nothing here may train for long or write outside a temporary folder.
    with pytest.MonkeyPatch.context() as patch, tempfile.TemporaryDirectory() as folder:
        patch.chdir(folder)
        patch.setattr(minillm.demo, "run_demo", lambda **kwargs: None)
        patch.setattr(minillm.train, "train", lambda *a, **k: real_train(
            *a, **{**k, "until": 1, "log": lambda line: None}))
        try:
            status = cli.main(argv)
        except SystemExit as exit:  # --help prints and exits 0
            status = exit.code
    assert status in (0, 2)
