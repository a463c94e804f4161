"""The command line: the demo's answer, train -> generate -> score, and clear errors."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from minillm.cli import main
from minillm.demo import run_bert_demo, run_gpt_demo
from minillm.grammar import default_grammar
from minillm.models import GPTConfig, Seq2SeqConfig
from minillm.config import TrainConfig
from minillm.data import make_data

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_the_demo_puts_gongyuan_first_beside_its_true_probability():
    lines = []
    result = run_gpt_demo(log=lines.append)
    word, model_p, true_p = result["rows"][0]
    assert word == "公园"
    assert true_p == pytest.approx(0.5)  # the grammar: P(公园 | good weather) = 0.5
    assert abs(model_p - true_p) < 0.15
    assert result["final_loss"] < result["floor"] + 0.1
    assert any("公园" in line and f"{true_p:.3f}" in line for line in lines)


def test_the_demo_bert_fills_tianqi_and_fill_reads_its_checkpoint(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    result = run_bert_demo(log=lambda line: None, save=True)
    word, model_p, true_p = result["rows"][0]
    assert word == "天气"
    assert true_p == pytest.approx(0.4 / 0.52)  # grammar.py: 0.8·0.5 / (0.8·0.5 + 0.2·0.6)
    assert abs(model_p - true_p) < 0.15
    assert os.listdir("runs") == ["mlm.safetensors"]  # where fill looks, the default
    assert main(["fill", "今天[MASK]很好"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[2].split()[1] == "天气"  # the first row of the table


def test_train_generate_and_score_from_the_command_line(tmp_path, capsys):
    ckpt = str(tmp_path / "m.safetensors")
    assert main(["train", "--steps", "30", "--batch-size", "8", "--n-embd", "32",
                 "--log-every", "10", "--out", ckpt]) == 0
    out = capsys.readouterr().out
    assert "step    30/30" in out and os.path.exists(ckpt)
    assert main(["generate", "今天", "--checkpoint", ckpt, "--temperature", "0"]) == 0
    assert capsys.readouterr().out.startswith("今天")
    assert main(["score", "今天天气很好。", "--checkpoint", ckpt]) == 0
    out = capsys.readouterr().out
    assert "[EOS]" in out and "L = -Σ log P" in out and "true P" in out


def test_train_an_encoder_decoder_and_run_it(tmp_path, capsys):
    ckpt = str(tmp_path / "s.safetensors")
    assert main(["train", "--objective", "tasks", "--steps", "5", "--batch-size", "4",
                 "--n-embd", "16", "--n-layer", "1", "--n-ctx", "48", "--out", ckpt]) == 0
    assert "encoder-decoder" in capsys.readouterr().out
    assert main(["seq2seq", "总结：今天天气很好，我们去公园玩。", "--checkpoint", ckpt, "--beam", "2"]) == 0
    assert capsys.readouterr().out.strip() != ""
    assert main(["fill", "今天[MASK]很好", "--checkpoint", ckpt]) == 2  # not a BERT
    err = capsys.readouterr().err
    assert "--objective tasks" in err and "fill needs a checkpoint of --objective mlm, span, xlnet or elmo" in err


def write_corpus(tmp_path, text="小猫喜欢吃鱼。\n小狗喜欢吃肉。\n\n小猫喜欢睡觉。\n"):
    """A user's text file, one document per line. -> its path."""
    path = tmp_path / "corpus.txt"
    path.write_text(text, encoding="utf-8")
    return path


def test_train_on_a_users_text_file(tmp_path, capsys):
    text = write_corpus(tmp_path)
    ckpt = str(tmp_path / "m.safetensors")
    assert main(["train", "--data", str(text), "--steps", "10", "--batch-size", "4",
                 "--out", ckpt]) == 0
    assert "floor" not in capsys.readouterr().out  # no known truth for a user's text
    assert main(["generate", "小猫", "--checkpoint", ckpt]) == 0


@pytest.mark.parametrize("argv, named", [
    (["train", "--steps", "0"], "--steps"),
    (["train", "--lr", "abc"], "--lr"),
    (["train", "--n-embd", "30", "--n-head", "4", "--steps", "1"], "--n-embd 30"),
    (["generate", "--checkpoint", "/nonexistent/x.safetensors"], "/nonexistent/x.safetensors"),
    (["generate", "--top-p", "1.5"], "--top-p"),
    (["train", "--data", "/nonexistent/corpus.txt"], "/nonexistent/corpus.txt"),
    (["frobnicate"], "frobnicate"),
    (["fill", "今天[MASK]很好", "--checkpoint", "/nonexistent/b.safetensors"], "/nonexistent/b"),
    (["train", "--objective", "llama"], "llama"),
    (["train", "--objective", "clm", "--nsp", "--steps", "1"], "--nsp needs --objective mlm"),
    (["train", "--objective", "mlm", "--nsp", "--pool", "5", "--steps", "1"], "--pool 5"),
    (["seq2seq", "总结：", "--checkpoint", "/nonexistent/s.safetensors"], "/nonexistent/s"),
    (["seq2seq", "x", "--beam", "0"], "--beam"),
    (["seq2seq", "x", "--beam", "2", "--show", "3"], "--show 3 needs --beam 3"),
    (["next", "今天", "--top", "0"], "--top"),
    (["next", "今天", "--checkpoint", "/nonexistent/g.safetensors"], "/nonexistent/g"),
    (["train", "--masking", "static", "--objective", "mlm", "--steps", "1"], "--pool N"),
    (["train", "--bogus", "3"], "'minillm train --help'"),
    (["score", "今天", "--checkpoint", os.path.join(REPO, "README.md")], "not a valid minillm checkpoint"),
    # A bad combination of options is named before --data is read (here: before its absence).
    (["train", "--nsp", "--objective", "span", "--data", "/nonexistent/c.txt"], "--nsp needs"),
    (["train", "--objective", "tasks", "--data", "/nonexistent/c.txt"], "drop --data"),
    (["train", "--n-embd", "30", "--n-head", "4", "--data", "/nonexistent/c.txt"], "--n-embd 30"),
])
def test_bad_arguments_give_one_line_and_exit_status_2(argv, named, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("minillm: error:") and named in err[0]


# Every rule between options (an OptionError of TrainConfig, of make_data's check of the data,
# of a model config), broken once: in Python, then with the same options on train's command
# line (--data names a file that does not exist: the rule must come first), then the options
# the message names.
TOKENIZER = default_grammar().tokenizer()
BROKEN_RULES = {
    "nsp without mlm": (lambda: TrainConfig(nsp=True, objective="span"),
                        ["--nsp", "--objective", "span"], ["nsp", "objective"]),
    "nsp with a pool": (lambda: TrainConfig(nsp=True, objective="mlm", pool=5),
                        ["--nsp", "--objective", "mlm", "--pool", "5"], ["nsp", "masking", "pool"]),
    "static masking without a pool": (lambda: TrainConfig(objective="mlm", masking="static"),
                                      ["--objective", "mlm", "--masking", "static"],
                                      ["masking", "pool"]),
    "tasks on a text file": (
        lambda: make_data(TrainConfig(objective="tasks"), None, TOKENIZER, ["今天"], name="c.txt"),
        ["--objective", "tasks", "--data", "c.txt"], ["objective", "data"]),
    "caption on a text file": (
        lambda: make_data(TrainConfig(objective="caption"), None, TOKENIZER, ["今天"], name="c.txt"),
        ["--objective", "caption", "--data", "c.txt"], ["objective", "data"]),
    "nsp on a text file": (
        lambda: make_data(TrainConfig(objective="mlm", nsp=True), None, TOKENIZER, ["今天"],
                          name="c.txt"),
        ["--objective", "mlm", "--nsp", "--data", "c.txt"], ["nsp", "data"]),
    "t5 beyond its sentinels": (
        lambda: make_data(TrainConfig(objective="t5"), Seq2SeqConfig(vocab_size=9, n_ctx=411),
                          TOKENIZER, ["今天"], name="c.txt"),
        ["--objective", "t5", "--n-ctx", "411", "--data", "c.txt"], ["objective", "n_ctx"]),
    "t5 without room for a span": (
        lambda: make_data(TrainConfig(objective="mix"), Seq2SeqConfig(vocab_size=9, n_ctx=2),
                          TOKENIZER),
        ["--objective", "mix", "--n-ctx", "2"], ["objective", "n_ctx"]),
    "plm_k without xlnet": (lambda: TrainConfig(plm_k=3), ["--plm-k", "3"], ["plm_k", "objective"]),
    "heads that do not divide the width": (lambda: GPTConfig(vocab_size=9, n_embd=30, n_head=4),
                                           ["--n-embd", "30", "--n-head", "4"],
                                           ["n_embd", "n_head"]),
}


def broken_rule(call):
    """The OptionError that ``call`` raises."""
    from minillm.options import OptionError

    with pytest.raises(OptionError) as caught:
        call()
    return caught.value


@pytest.mark.parametrize("call, argv, names", BROKEN_RULES.values(), ids=list(BROKEN_RULES))
def test_a_rule_names_fields_in_python_and_flags_on_the_command_line(call, argv, names, capsys,
                                                                     tmp_path, monkeypatch):
    from minillm.cli import _flag_setting

    err = broken_rule(call)
    monkeypatch.chdir(tmp_path)
    assert main(["train", *argv, "--steps", "1"]) == 2
    line = capsys.readouterr().err.strip()
    assert line == f"minillm: error: {err.render(_flag_setting)}"  # the one rule, in flags
    for name in names:
        flag = "--" + name.replace("_", "-")
        assert f"{name}=" in str(err) and flag not in str(err), str(err)
        assert flag in line and f"{name}=" not in line, line


def test_the_cases_above_break_every_rule_there_is():
    """One source: the rules are the OptionErrors raised in config.py, data.py and models.py,
    each broken once above, so the command line is seen to report every one of them."""
    import inspect

    from minillm import config, data, models

    rules = sum(inspect.getsource(m).count("raise OptionError(") for m in (config, data, models))
    broken = {broken_rule(call).template for call, _, _ in BROKEN_RULES.values()}
    assert len(broken) == rules


def test_help_explains_every_command():
    out = subprocess.run([sys.executable, "-m", "minillm", "train", "--help"], cwd=REPO,
                         capture_output=True, text=True)
    assert out.returncode == 0
    for option in ("--data", "--steps", "--lr", "--resume", "--n-ctx", "--dtype"):
        assert option in out.stdout
    top = subprocess.run([sys.executable, "-m", "minillm", "--help"], cwd=REPO,
                         capture_output=True, text=True)
    for command in ("train", "generate", "score", "next"):
        assert command in top.stdout


@pytest.mark.parametrize("objective", ["clm", "mlm", "tasks"])
def test_export_to_hugging_face_and_import_back_keeps_every_parameter(objective, tmp_path, capsys):
    from minillm import hf
    from minillm.checkpoint import load_checkpoint
    from minillm.hf_tokenizers import minillm_tokenizer_json

    ckpt, folder, back = (str(tmp_path / n) for n in ("m.safetensors", "hf", "back.safetensors"))
    assert main(["train", "--objective", objective, "--steps", "3", "--batch-size", "4",
                 "--n-embd", "16", "--n-layer", "1", "--n-ctx", "48", "--out", ckpt]) == 0
    assert main(["export", ckpt, folder, "--to", "hf"]) == 0
    expected_type = {"clm": "gpt2", "mlm": "bert", "tasks": "bart"}[objective]
    assert hf.load(folder).arch == expected_type
    assert main(["import", folder, back]) == 0
    _, _, tok_a, a = load_checkpoint(ckpt)
    _, _, tok_b, b = load_checkpoint(back)
    assert tok_a.vocab == tok_b.vocab
    # The folder carries the tokenizer for transformers too (hf_tokenizers.py).
    with open(os.path.join(folder, "tokenizer.json"), encoding="utf-8") as f:
        assert json.load(f) == json.loads(json.dumps(minillm_tokenizer_json(tok_a)))
    assert set(a["params"]) == set(b["params"])
    for name, value in a["params"].items():
        np.testing.assert_array_equal(b["params"][name], value, err_msg=name)


def test_an_exported_folder_gives_minillm_ids_in_transformers(tmp_path, capsys):
    """Optional: transformers' AutoTokenizer on an exported folder encodes as minillm does."""
    transformers = pytest.importorskip("transformers")
    from minillm.checkpoint import load_checkpoint

    ckpt, folder = str(tmp_path / "m.safetensors"), str(tmp_path / "hf")
    assert main(["train", "--steps", "1", "--batch-size", "2", "--n-embd", "16", "--n-layer",
                 "1", "--out", ckpt]) == 0
    assert main(["export", ckpt, folder]) == 0
    tok = load_checkpoint(ckpt)[2]
    theirs = transformers.AutoTokenizer.from_pretrained(folder)
    for text in ("今天天气很好，我们去公园玩。", "总结：明天天气不好，我们去商店买东西。"):
        assert theirs(text)["input_ids"] == tok.encode(text)


@pytest.mark.parametrize("objective, extra", [("tasks", []), ("mix", []), ("mlm", ["--nsp"])])
def test_objectives_that_need_the_grammar_refuse_a_text_file(objective, extra, tmp_path, capsys):
    text = write_corpus(tmp_path)
    argv = ["train", "--objective", objective, *extra, "--data", str(text), "--steps", "1",
            "--out", str(tmp_path / "m.safetensors")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("minillm: error:") and "--data" in err[0]


def test_resume_keeps_the_stored_settings_and_refuses_to_change_them(tmp_path, capsys):
    ckpt = str(tmp_path / "m.safetensors")
    small = ["--batch-size", "4", "--n-embd", "16", "--n-layer", "1", "--log-every", "5"]
    assert main(["train", "--steps", "5", *small, "--out", ckpt]) == 0
    before = os.stat(ckpt).st_mtime_ns
    capsys.readouterr()
    # Another value of a stored setting, or another objective, or data the run never read:
    for change in (["--steps", "50"], ["--objective", "mlm"], ["--lr", "0.1"], ["--n-head", "2"]):
        assert main(["train", "--resume", "--out", ckpt, *change]) == 2, change
        err = capsys.readouterr().err
        assert change[0] in err and "--resume" in err, err
    text = write_corpus(tmp_path)
    assert main(["train", "--resume", "--out", ckpt, "--data", str(text)]) == 2
    assert "built-in grammar" in capsys.readouterr().err
    assert os.stat(ckpt).st_mtime_ns == before  # nothing was trained or written
    # The same settings again are fine: the run is already at its last step.
    assert main(["train", "--resume", "--out", ckpt, "--steps", "5", *small]) == 0
    assert "at step 5 of 5" in capsys.readouterr().out


def test_resume_of_a_run_on_a_text_file_needs_the_file_again(tmp_path, capsys):
    ckpt = str(tmp_path / "m.safetensors")
    assert main(["train", "--data", str(write_corpus(tmp_path)), "--steps", "2",
                 "--batch-size", "2", "--n-embd", "16", "--n-layer", "1", "--out", ckpt]) == 0
    capsys.readouterr()
    assert main(["train", "--resume", "--out", ckpt]) == 2
    assert "--data" in capsys.readouterr().err


def test_a_broken_pipe_ends_quietly(monkeypatch, capsys, tmp_path):
    """``python -m minillm train | head -1``, when the reader has gone before the first line:
    the write fails with EPIPE, and the command stops with status 1, no error line and no
    traceback."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone
    with open(write_end, "w", buffering=1, encoding="utf-8") as closed_pipe:
        monkeypatch.setattr(sys, "stdout", closed_pipe)
        assert main(["train", "--steps", "1", "--batch-size", "2", "--n-embd", "16",
                     "--n-layer", "1", "--out", str(tmp_path / "m.safetensors")]) == 1
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("objective", ["clm", "t5", "xlnet", "elmo"])
def test_masking_given_to_an_objective_that_masks_nothing_is_refused(objective, tmp_path, capsys):
    """--masking chooses BERT's masks (mlm, span); another objective would ignore it silently,
    whichever value is given, the default included."""
    for masking in (["--masking", "static", "--pool", "5"], ["--masking", "dynamic"]):
        argv = ["train", "--objective", objective, *masking, "--steps", "1",
                "--out", str(tmp_path / "m.safetensors")]
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err == (f"minillm: error: --masking {masking[1]} needs --objective mlm or span, "
                       f"got --objective {objective}\n")


@pytest.mark.parametrize("objective", ["clm", "elmo", "tasks"])
def test_a_context_too_short_for_the_data_names_n_ctx(objective, tmp_path, capsys):
    """The grammar's sentences need more than 8 positions: train says so in one line naming
    --n-ctx and the length it met, not the forward pass's argument name."""
    assert main(["train", "--objective", objective, "--n-ctx", "8", "--steps", "2",
                 "--out", str(tmp_path / "m.safetensors")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("minillm: error: --n-ctx 8 is too short for "
                                                   "this training data: a batch holds a "
                                                   "sequence of "), err
    length = int(err.split("sequence of ")[1].split()[0])
    assert length > 8
