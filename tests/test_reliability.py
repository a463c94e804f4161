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

from minillm import cli
from minillm.grammar import default_grammar
from minillm.models import GPTConfig, gpt_forward, gpt_init
from minillm.checkpoint import load_checkpoint, save_checkpoint
from minillm.config import TrainConfig
from minillm.data import GrammarData
from minillm.train import NonFiniteError, train

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
    from minillm.data import make_data
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


# ---------------------------------------------------------------------------------------------
# Nothing non-finite is ever saved


def test_a_huge_learning_rate_stops_at_step_1_naming_the_parameter_and_writes_nothing(tmp_path):
    """--lr 1e308 in float32 overflows the first update: it used to exit 0 and save inf/NaN."""
    path = tmp_path / "m.safetensors"
    proc = run_cli(["train", "--lr", "1e308", "--steps", "3", *SMALL, "--out", str(path)])
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr  # no NumPy warnings before it
    assert re.search(r"step 1: the update \(learning rate [0-9.e+]+\) made parameter \S+ "
                     r"non-finite", lines[0]), lines[0]
    assert "no checkpoint of this run was written" in lines[0]
    assert not path.exists()


def poison_update(monkeypatch, at_call, name="h.0.attn.c_proj.w"):
    """Make the at_call-th AdamW update write an infinity into parameter ``name``."""
    import minillm.train

    real, calls = minillm.train.adamw_step, []

    def poisoned(params, grads, opt, lr, **kwargs):
        real(params, grads, opt, lr, **kwargs)
        calls.append(1)
        if len(calls) == at_call:
            params[name][0, 0] = np.inf

    monkeypatch.setattr(minillm.train, "adamw_step", poisoned)


def test_a_diverging_update_keeps_the_last_finite_checkpoint_and_names_it(tmp_path, monkeypatch):
    poison_update(monkeypatch, at_call=3)
    cfg = GPTConfig(vocab_size=len(TOK), n_ctx=32, n_embd=16, n_head=2, n_layer=1)
    path = str(tmp_path / "m.safetensors")
    with pytest.raises(NonFiniteError) as err:
        train(cfg, TrainConfig(steps=10, batch_size=4), GrammarData(default_grammar(), TOK), TOK,
              checkpoint=path, checkpoint_every=1, log=lambda line: None)
    message = str(err.value)
    assert "step 3: the update" in message and "h.0.attn.c_proj.w" in message
    assert f"the last finite checkpoint, of step 2, stays at {path!r}" in message
    state = load_checkpoint(path)[3]
    assert state["step"] == 2
    assert all(np.all(np.isfinite(v)) for v in state["params"].values())


def test_a_stop_before_the_first_checkpoint_does_not_name_one(tmp_path, monkeypatch):
    """The NaN stop used to name a checkpoint that was never written (and an old file of
    another run at --out is not this run's checkpoint either)."""
    path = tmp_path / "m.safetensors"
    path.write_bytes(b"an older run's file")
    poison_update(monkeypatch, at_call=3)
    cfg = GPTConfig(vocab_size=len(TOK), n_ctx=32, n_embd=16, n_head=2, n_layer=1)
    with pytest.raises(NonFiniteError, match="no checkpoint of this run was written"):
        train(cfg, TrainConfig(steps=10, batch_size=4), GrammarData(default_grammar(), TOK), TOK,
              checkpoint=str(path), checkpoint_every=100, log=lambda line: None)
    assert path.read_bytes() == b"an older run's file"


def test_a_non_finite_loss_with_finite_parameters_says_the_forward_pass_overflowed(
        tmp_path, monkeypatch):
    from minillm.objectives import clm

    real = clm.loss_and_grads

    def overflowing(params, cfg, batch, reduction):
        loss, n, grads = real(params, cfg, batch, reduction)
        return np.float32(np.inf), n, grads

    monkeypatch.setattr(clm, "loss_and_grads", overflowing)
    cfg = GPTConfig(vocab_size=len(TOK), n_ctx=32, n_embd=16, n_head=2, n_layer=1)
    with pytest.raises(NonFiniteError, match="step 1: the loss is inf though every parameter is "
                                             "finite: a value in the forward pass overflowed"):
        train(cfg, TrainConfig(steps=3, batch_size=4), GrammarData(default_grammar(), TOK), TOK,
              log=lambda line: None)


# ---------------------------------------------------------------------------------------------
# Resume verifies what it continues


def write_text(path, text):
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_resume_refuses_another_text_file_with_the_same_characters(tmp_path, capsys):
    first = write_text(tmp_path / "a.txt", "小猫喜欢吃鱼。\n小狗喜欢吃肉。\n" * 5)
    other = write_text(tmp_path / "b.txt", "小狗喜欢吃鱼。\n小猫喜欢吃肉。\n" * 5)  # same characters
    ckpt = str(tmp_path / "m.safetensors")
    assert cli.main(["train", "--data", first, "--steps", "4", *SMALL, "--out", ckpt]) == 0
    model = load_checkpoint(ckpt)
    capsys.readouterr()
    assert cli.main(["train", "--resume", "--out", ckpt, "--data", other]) == 2
    err = capsys.readouterr().err
    assert "--data" in err and "is not the file" in err and "SHA-256" in err
    assert cli.main(["train", "--resume", "--out", ckpt, "--data", first]) == 0  # the same file
    assert load_checkpoint(ckpt)[3]["step"] == model[3]["step"]


def test_resume_refuses_an_option_given_at_its_default_that_differs_from_the_stored_value(
        tmp_path, capsys):
    """--steps 300 is the default; on a 40-step run it used to be silently ignored."""
    ckpt = str(tmp_path / "m.safetensors")
    assert cli.main(["train", "--steps", "4", *SMALL, "--out", ckpt]) == 0
    capsys.readouterr()
    for option in (["--steps", "300"], ["--n-embd", "64"], ["--seed", "0", "--seed", "0",
                                                             "--batch-size", "32"]):
        assert cli.main(["train", "--resume", "--out", ckpt, *option]) == 2, option
        err = capsys.readouterr().err
        assert "--resume continues" in err and "cannot change them" in err, err
    assert cli.main(["train", "--resume", "--out", ckpt, "--steps", "4", "--n-embd", "16"]) == 0


def test_the_resume_command_printed_after_ctrl_c_works_when_pasted(tmp_path):
    """On a --data run the printed command used to omit --data, so pasting it failed."""
    import shlex

    text = write_text(tmp_path / "my text.txt", "小猫喜欢吃鱼。\n小狗喜欢吃肉。\n" * 20)
    steps = ["--steps", "3000", "--log-every", "5", *SMALL]
    path = str(tmp_path / "m.safetensors")
    proc = subprocess.Popen([sys.executable, "-m", "minillm", "train", "--data", text, *steps,
                             "--out", path], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    while not proc.stdout.readline().startswith("step"):  # training has started
        pass
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    command = err.split("resume with: ", 1)[1].strip()
    argv = shlex.split(command)
    assert argv[:3] == ["python", "-m", "minillm"] and "--data" in argv
    # Pasted (with this Python, and a short stop after a few more steps), it resumes.
    step = load_checkpoint(path)[3]["step"]
    import minillm.train

    real_train = minillm.train.train
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(minillm.train, "train", lambda *a, **k: real_train(
            *a, **{**k, "until": step + 5, "log": lambda line: None}))
        assert cli.main(argv[3:]) == 0
    assert load_checkpoint(path)[3]["step"] == step + 5


# ---------------------------------------------------------------------------------------------
# Where --out may point


def test_out_on_a_fifo_is_refused_before_training_and_the_fifo_stays(tmp_path, capsys):
    import stat

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    assert cli.main(["train", "--steps", "2", *SMALL, "--out", str(fifo)]) == 2
    captured = capsys.readouterr()
    assert "step" not in captured.out  # nothing was trained
    assert "FIFO" in captured.err and captured.err.count("\n") == 1
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


def test_out_on_a_device_node_is_refused_and_the_node_stays(tmp_path, capsys):
    import stat

    node = tmp_path / "null"
    try:
        os.mknod(node, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    except (PermissionError, OSError, AttributeError):
        pytest.skip("making a device node is not permitted here")
    assert cli.main(["train", "--steps", "2", *SMALL, "--out", str(node)]) == 2
    assert "character device" in capsys.readouterr().err
    assert stat.S_ISCHR(os.lstat(node).st_mode)


def test_out_on_a_symlink_writes_its_target_and_the_link_stays(tmp_path):
    target = tmp_path / "real.safetensors"
    link = tmp_path / "link.safetensors"
    os.symlink(target, link)
    assert cli.main(["train", "--steps", "2", *SMALL, "--out", str(link)]) == 0
    assert os.path.islink(link) and target.is_file()
    assert load_checkpoint(str(target))[3]["step"] == 2


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux's /proc")
def test_an_unwritable_out_fails_before_training(capsys):
    """It used to fail only at the first save, after the training was done."""
    assert cli.main(["train", "--steps", "2", *SMALL, "--out", "/proc/minillm.safetensors"]) == 2
    captured = capsys.readouterr()
    assert "step" not in captured.out and "/proc/minillm.safetensors" in captured.err


def test_a_long_legal_file_name_is_written(tmp_path):
    """252 characters used to fail: the temporary file's suffix took it past 255."""
    path = tmp_path / ("m" * 240 + ".safetensors")
    assert len(path.name) == 252
    assert cli.main(["train", "--steps", "1", *SMALL, "--out", str(path)]) == 0
    assert load_checkpoint(str(path))[3]["step"] == 1
    assert os.listdir(tmp_path) == [path.name]


# ---------------------------------------------------------------------------------------------
# Smaller ones


@pytest.mark.parametrize("argv, named", [
    (["train", "--data", ""], "--data is empty"),
    (["train", "--out", "", "--steps", "1"], "--out is empty"),
    (["train", "--seed", "-1"], "--seed"),
    (["generate", "--seed", "-1"], "--seed"),
])
def test_empty_and_negative_values_are_named(argv, named, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing may be written to the repository's runs/
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and named in err, err
    assert not os.path.exists(tmp_path / "runs")


def test_import_of_a_config_that_is_not_an_object_is_one_error_line(tmp_path, capsys):
    folder = tmp_path / "hf"
    folder.mkdir()
    (folder / "config.json").write_text("[1, 2]")
    (folder / "minillm_vocab.json").write_text("{}")
    assert cli.main(["import", str(folder), str(tmp_path / "m.safetensors")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "config.json holds a JSON list" in err


def test_a_tiny_temperature_is_greedy_not_nan(tmp_path, capsys):
    ckpt = str(tmp_path / "m.safetensors")
    assert cli.main(["train", "--steps", "5", *SMALL, "--out", ckpt]) == 0
    capsys.readouterr()
    assert cli.main(["generate", "今天", "--checkpoint", ckpt, "--temperature", "0"]) == 0
    greedy = capsys.readouterr().out
    assert cli.main(["generate", "今天", "--checkpoint", ckpt, "--temperature", "1e-320"]) == 0
    assert capsys.readouterr().out == greedy


# python -m minillm, with a Ctrl-C sent to itself the moment NumPy's import starts (and, with
# --twice, a second one 10 ms later): start-up, whatever the machine's speed.
CTRL_C_AT_NUMPY = r"""
import os, runpy, signal, sys, threading

class CtrlCAtNumPy:
    def find_spec(self, name, path=None, target=None):
        if name == "numpy":
            sys.meta_path.remove(self)
            os.kill(os.getpid(), signal.SIGINT)
            if twice:
                threading.Timer(0.01, os.kill, (os.getpid(), signal.SIGINT)).start()
        return None

twice = sys.argv[1] == "--twice"
sys.argv = ["minillm", *sys.argv[2:]]
sys.meta_path.insert(0, CtrlCAtNumPy())
runpy.run_module("minillm", run_name="__main__", alter_sys=True)
"""


@pytest.mark.parametrize("twice", ["--once", "--twice"])
def test_ctrl_c_while_numpy_is_imported_exits_130_without_a_traceback(tmp_path, twice):
    """It used to print a KeyboardInterrupt traceback (and CPython, which counts a Ctrl-C
    during an import as unhandled, then died of the signal: status -2)."""
    proc = subprocess.run([sys.executable, "-c", CTRL_C_AT_NUMPY, twice, "train", "--steps",
                           "3000", *SMALL, "--out", str(tmp_path / "m.safetensors")], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 130, (proc.returncode, proc.stderr)
    assert proc.stderr == "minillm: interrupted\n"


@pytest.mark.parametrize("delays", [(0.3,), (0.3, 0.01), (0.6, 0.01)])
def test_ctrl_c_once_or_twice_exits_130_without_a_traceback(tmp_path, delays):
    """A second Ctrl-C 10 ms after the first used to make the process die of the signal
    (exit -2) instead of exiting 130."""
    proc = subprocess.Popen([sys.executable, "-m", "minillm", "train", "--steps", "3000",
                             *SMALL, "--out", str(tmp_path / "m.safetensors")], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    for delay in delays:
        time.sleep(delay)
        proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, (proc.returncode, err)
    assert "Traceback" not in err and err.startswith("minillm: "), err


def test_import_of_a_config_with_a_trillion_layers_is_one_error_line(tmp_path, capsys):
    """The table of Hugging Face names used to be built for every one of them first."""
    import json

    ckpt, folder = str(tmp_path / "m.safetensors"), tmp_path / "hf"
    assert cli.main(["train", "--steps", "1", *SMALL, "--out", ckpt]) == 0
    assert cli.main(["export", ckpt, str(folder)]) == 0
    config = json.loads((folder / "config.json").read_text())
    config["n_layer"] = 10**12
    (folder / "config.json").write_text(json.dumps(config))
    capsys.readouterr()
    assert cli.main(["import", str(folder), str(tmp_path / "back.safetensors")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "n_layer = 1000000000000 blocks" in err
