"""The command line knows what each checkpoint is for (cli.JOBS), and says what it would
otherwise do silently: characters read as [UNK], generation cut at the context length, a truth
that does not exist, the hypotheses of a beam, a path that cannot be a folder."""

import errno
import json
import os
import shlex

import numpy as np
import pytest

from minillm import cli
from minillm.checkpoint import load_checkpoint, save_checkpoint
from minillm.cli import JOBS, OBJECTIVES, main, served_by
from minillm.grammar import default_grammar
from minillm.layers import log_softmax
from minillm.models import GPTConfig, gpt_forward, gpt_init, seq2seq_forward
from minillm.objectives import get_objective, run_path
from minillm.optim import adamw_init
from minillm.tokenizer import BOS_ID, EOS_ID
from minillm.config import TrainConfig

SMALL = ["--steps", "2", "--batch-size", "2", "--n-embd", "16", "--n-layer", "1", "--n-ctx", "48"]
TASK = "总结：今天天气很好，我们去公园玩。"


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """A tiny checkpoint of every objective, trained two steps on the grammar: {objective:
    path}. What they answer does not matter here, only what they were trained for."""
    folder = tmp_path_factory.mktemp("jobs")
    paths = {}
    for objective in OBJECTIVES:
        paths[objective] = str(folder / f"{objective}.safetensors")
        assert main(["train", "--objective", objective, *SMALL, "--out", paths[objective]]) == 0
    return paths


def write_corpus(tmp_path):
    """A user's text without 今 or 天. -> its path."""
    path = tmp_path / "corpus.txt"
    path.write_text("小猫喜欢吃鱼。\n小狗喜欢吃肉。\n小猫喜欢睡觉。\n", encoding="utf-8")
    return str(path)


def one_error_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("minillm: error: "), err
    return err[0]


# ----------------------------------------------------------------------------------------------
# Checkpoints know their job


def test_the_jobs_table_covers_every_objective_and_a_command_reads_one_model_family():
    assert set(JOBS) == set(OBJECTIVES)
    for command in ("generate", "score", "next", "fill", "seq2seq"):
        families = {get_objective(o).MODEL for o in served_by(command)}
        # fill alone reads three: BERT's blanks, XLNet's (the blank last in the order), and
        # ELMo's (its two one-way LMs combined, cli._elmo_fill)
        assert len(families) == 1 or (command, families) == ("fill", {"bert", "xlnet", "elmo"}), (
            command, families)
        parsed = cli.build_parser().parse_args([command, "x"])
        assert parsed.checkpoint == run_path(served_by(command)[0])
    assert [served_by(c)[0] for c in ("generate", "fill", "seq2seq")] == list(cli.DEMO_OBJECTIVES)


def test_train_keeps_one_checkpoint_per_objective_where_the_commands_look(tmp_path, monkeypatch,
                                                                          capsys):
    """`train --objective span` once replaced the demo's BERT in runs/ (and fill then ranked 。
    above 天气): each objective now has its own file, and fill still reads the mlm one."""
    monkeypatch.chdir(tmp_path)
    small = ["--steps", "2", "--batch-size", "2", "--n-embd", "16", "--n-layer", "1"]
    assert main(["train", "--objective", "mlm", *small]) == 0
    mlm = (tmp_path / "runs" / "mlm.safetensors").read_bytes()
    assert main(["train", "--objective", "span", *small]) == 0
    assert sorted(os.listdir(tmp_path / "runs")) == ["mlm.safetensors", "span.safetensors"]
    assert (tmp_path / "runs" / "mlm.safetensors").read_bytes() == mlm
    capsys.readouterr()
    assert main(["fill", "今天[MASK]很好", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["checkpoint"] == run_path("mlm")
    os.remove(run_path("mlm"))  # then fill points at the span run it finds
    assert main(["fill", "今天[MASK]很好"]) == 2
    assert f"--checkpoint {run_path('span')}" in one_error_line(capsys)


# (the command line without --checkpoint, the objective of the checkpoint it is given, what the
# refusal must say the command needs)
WRONG_JOBS = [
    (["fill", "今天[MASK]很好"], "clm", "--objective mlm, span, xlnet or elmo"),
    (["fill", "今天[MASK]很好"], "tasks", "--objective mlm, span, xlnet or elmo"),
    (["generate", "今天"], "elmo", "--objective clm"),
    (["generate", "今天"], "mlm", "--objective clm"),
    (["score", "今天"], "span", "--objective clm"),
    (["seq2seq", TASK], "clm", "--objective tasks, mix, t5 or bart"),
    (["seq2seq", TASK], "t5", "--objective tasks or mix"),
    (["seq2seq", TASK], "bart", "--objective tasks or mix"),
    (["seq2seq", "今天<extra_id_0>很好"], "tasks", "--objective mix or t5"),
    (["seq2seq", "今天[MASK]很好"], "t5", "--objective bart"),
    (["seq2seq", "今天天气很好"], "bart", "each answers a task"),
    (["next", "今天"], "bart", "--objective clm"),
]


@pytest.mark.parametrize("argv, objective, needs", WRONG_JOBS,
                         ids=[f"{a[0]}-{o}-{a[1]}" for a, o, _ in WRONG_JOBS])
def test_a_checkpoint_trained_for_another_job_is_refused_naming_the_one_needed(
        argv, objective, needs, checkpoints, capsys):
    assert main([*argv, "--checkpoint", checkpoints[objective]]) == 2
    line = one_error_line(capsys)
    assert f"trained with --objective {objective} " in line and needs in line, line


@pytest.mark.parametrize("argv, objective", [
    (["fill", "今天[MASK]很好"], "span"), (["seq2seq", "今天[MASK]很好"], "bart"),
    (["seq2seq", "今天<extra_id_0>很好"], "t5"), (["seq2seq", "今天<extra_id_0>很好"], "mix"),
    (["seq2seq", TASK], "mix"), (["seq2seq", TASK], "tasks"), (["score", "今天"], "clm"),
    (["fill", "今天[MASK]很好。"], "elmo"),
])
def test_a_checkpoint_answers_the_input_it_was_trained_on(argv, objective, checkpoints, capsys):
    assert main([*argv, "--checkpoint", checkpoints[objective]]) == 0
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("objective", ["mix", "span", "t5", "bart"])
def test_export_and_import_keep_the_objective(objective, checkpoints, tmp_path, capsys):
    """A mix model came back from export and import labelled tasks (and span as mlm)."""
    folder, back = str(tmp_path / "hf"), str(tmp_path / "back.safetensors")
    assert main(["export", checkpoints[objective], folder]) == 0
    assert main(["import", folder, back]) == 0
    assert load_checkpoint(back)[1].objective == objective
    assert f"as a minillm {objective} model" in capsys.readouterr().out


def test_a_folder_without_the_label_imports_as_its_architecture_was_pretrained(checkpoints,
                                                                              tmp_path, capsys):
    """A BART folder that minillm did not label is a denoiser (BART's pre-training), not a
    model of the grammar's tasks; a label that does not fit the architecture is refused."""
    folder, back = tmp_path / "hf", str(tmp_path / "back.safetensors")
    assert main(["export", checkpoints["tasks"], str(folder)]) == 0
    config = json.loads((folder / "config.json").read_text())
    del config[cli.OBJECTIVE_KEY]
    (folder / "config.json").write_text(json.dumps(config))
    assert main(["import", str(folder), back]) == 0
    assert load_checkpoint(back)[1].objective == "bart"
    config[cli.OBJECTIVE_KEY] = "clm"
    (folder / "config.json").write_text(json.dumps(config))
    capsys.readouterr()
    assert main(["import", str(folder), back]) == 2
    assert "minillm_objective 'clm' is not an objective of a bart model" in one_error_line(capsys)


# ----------------------------------------------------------------------------------------------
# No silent surprises


def test_characters_outside_the_vocabulary_are_named_in_one_warning(tmp_path, capsys):
    ckpt, corpus = str(tmp_path / "m.safetensors"), write_corpus(tmp_path)
    assert main(["train", "--data", corpus, "--steps", "2", "--batch-size", "2",
                 "--n-embd", "16", "--n-layer", "1", "--out", ckpt]) == 0
    # The text train suggests trying is made of the file's words, not the tutorial's 今天.
    suggestion = capsys.readouterr().out.splitlines()[-1]
    assert suggestion.startswith("try: python -m minillm generate")
    text = shlex.split(suggestion)[-1]
    assert text and set(text) <= set(open(corpus, encoding="utf-8").read())
    for argv in (["generate", "今天", "--max-new-tokens", "2"], ["score", "今天小猫"],
                 ["next", "今天"]):
        assert main([*argv, "--checkpoint", ckpt]) == 0
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("minillm: warning: 今 天: ") and "[UNK]" in err[0]
    assert main(["generate", "小猫", "--max-new-tokens", "2", "--checkpoint", ckpt]) == 0
    assert capsys.readouterr().err == ""  # every character known: nothing to say


def zero_logit_gpt(path, n_ctx):
    """A GPT whose logits are all 0 (its final layer norm's gain and bias are 0): greedy
    decoding takes id 0, [PAD], at every step and never [EOS], so only n_ctx stops it."""
    tokenizer = default_grammar().tokenizer()
    cfg = GPTConfig(vocab_size=len(tokenizer), n_ctx=n_ctx, n_embd=16, n_head=2, n_layer=1)
    params = gpt_init(cfg, np.random.default_rng(0))
    params["ln_f.g"][:] = 0
    params["ln_f.b"][:] = 0
    state = {"params": params, "opt": adamw_init(params), "step": 0, "history": [],
             "data_rng": np.random.default_rng(0)}
    save_checkpoint(path, cfg, TrainConfig(), tokenizer, state)


def test_generation_cut_at_the_context_length_says_so(tmp_path, capsys):
    ckpt = str(tmp_path / "m.safetensors")
    zero_logit_gpt(ckpt, n_ctx=8)
    assert main(["generate", "今天", "--checkpoint", ckpt, "--max-new-tokens", "100",
                 "--temperature", "0"]) == 0
    out = capsys.readouterr()
    assert out.out == "今天\n"  # [PAD] is not printed
    err = out.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("minillm: warning: ")
    assert "n_ctx=8" in err[0] and "[BOS] + 1 prompt token + 6 new" in err[0]
    assert "--max-new-tokens 100" in err[0]
    # Stopped by --max-new-tokens, as asked: nothing to say.
    assert main(["generate", "今天", "--checkpoint", ckpt, "--max-new-tokens", "3",
                 "--temperature", "0"]) == 0
    assert capsys.readouterr().err == ""


def test_a_model_of_a_users_text_has_no_true_column(tmp_path, checkpoints, capsys):
    ckpt = str(tmp_path / "m.safetensors")
    assert main(["train", "--objective", "mlm", "--data", write_corpus(tmp_path), "--steps", "2",
                 "--batch-size", "2", "--n-embd", "16", "--n-layer", "1", "--out", ckpt]) == 0
    capsys.readouterr()
    assert main(["fill", "小猫[MASK]吃鱼", "--checkpoint", ckpt]) == 0
    out = capsys.readouterr().out
    assert "model P" in out and "true P" not in out
    assert main(["fill", "小猫[MASK]吃鱼", "--checkpoint", ckpt, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["truth"] is False
    assert all(row["true_p"] is None for row in result["masks"][0]["words"])
    # A model of the grammar keeps its truth.
    assert main(["fill", "今天[MASK]很好", "--checkpoint", checkpoints["mlm"]]) == 0
    assert "true P" in capsys.readouterr().out


def test_score_has_no_true_p_after_a_prefix_the_grammar_cannot_make(checkpoints, capsys):
    """In the grammar only a kind-B sentence (no weather) ends 玩了: P(了 | 今天天气很好，
    他们去公园玩) = 0, and after a prefix of probability 0 nothing is defined."""
    text = "今天天气很好，他们去公园玩了。"
    assert main(["score", text, "--checkpoint", checkpoints["clm"], "--json"]) == 0
    steps = json.loads(capsys.readouterr().out)["steps"]
    assert [s["word"] for s in steps[8:]] == ["了", "。", "[EOS]"]
    assert steps[8]["true_p"] == 0.0 and steps[9]["true_p"] is None and steps[10]["true_p"] is None
    assert steps[6]["true_p"] == pytest.approx(0.5)  # P(公园 | good weather), grammar.py
    assert main(["score", text, "--checkpoint", checkpoints["clm"]]) == 0
    rows = capsys.readouterr().out.splitlines()[1:12]
    assert rows[8].endswith("0.0000") and rows[9].endswith("-") and rows[10].endswith("-")


def test_seq2seq_shows_the_hypotheses_of_its_beam_with_their_scores(checkpoints, capsys):
    """--beam 4 used to print what greedy printed, with no score: --show 4 prints the four
    best hypotheses, each with log P(y | x) (recomputed here by one teacher-forced pass), its
    length and its score log P / length^penalty."""
    ckpt = checkpoints["tasks"]
    argv = ["seq2seq", TASK, "--checkpoint", ckpt, "--beam", "4", "--show", "4",
            "--length-penalty", "0.5"]
    assert main([*argv, "--json"]) == 0
    hypotheses = json.loads(capsys.readouterr().out)["hypotheses"]
    assert [h["rank"] for h in hypotheses] == [1, 2, 3, 4]
    cfg, _, tokenizer, state = load_checkpoint(ckpt)
    params = {name: value.astype(np.float64) for name, value in state["params"].items()}
    src = np.array([[*tokenizer.encode(TASK), EOS_ID]])
    for h in hypotheses:
        ids = h["ids"]
        logits, _ = seq2seq_forward(params, cfg, src, np.array([[BOS_ID, *ids[:-1]]]))
        log_p = log_softmax(logits[0])[np.arange(len(ids)), ids].sum()
        np.testing.assert_allclose(h["log_p"], log_p, rtol=1e-4)
        assert h["tokens"] == len(ids) and h["finished"] == (ids[-1] == EOS_ID)
        np.testing.assert_allclose(h["score"], h["log_p"] / len(ids) ** 0.5, rtol=1e-12)
        assert h["output"] == tokenizer.decode(ids, skip_special=True)
    finished = [h["score"] for h in hypotheses if h["finished"]]
    assert finished == sorted(finished, reverse=True)
    assert len({tuple(h["ids"]) for h in hypotheses}) == 4
    assert main(argv) == 0
    rows = capsys.readouterr().out.splitlines()[2:]
    assert len(rows) == 4
    for row, h in zip(rows, hypotheses):
        assert row.split()[1:4] == [f"{h['log_p']:.4f}", str(h["tokens"]), f"{h['score']:.4f}"]


def test_the_span_run_names_span_masking(tmp_path, capsys):
    assert main(["train", "--objective", "span", "--steps", "1", "--batch-size", "2",
                 "--n-embd", "16", "--n-layer", "1", "--out", str(tmp_path / "s.safetensors")]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert "(masked language modeling with SpanBERT's span masking)" in first


def test_a_file_where_a_folder_should_be_is_named(tmp_path, monkeypatch, capsys, checkpoints):
    """The system's "File exists" and "Not a directory" said nothing of which part of a path
    was in the way; the demo's even came after three seconds of training."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes").write_text("mine")
    for argv, flag in ((["train", "--steps", "1", "--out", "notes/m.safetensors"], "--out"),
                       (["train", "--steps", "1", "--data", "notes/c.txt"], "--data"),
                       (["export", checkpoints["clm"], "notes/hf"], "folder")):
        assert main(argv) == 2
        line = one_error_line(capsys)
        assert flag in line and "'notes' is a file, not a folder" in line, line
    os.rename("notes", "runs")
    assert main([]) == 2  # the demo, refused before it trains anything
    out = capsys.readouterr()
    assert out.out == ""
    assert out.err.startswith("minillm: error: the demo's model 'runs/clm.safetensors': its "
                              "folder 'runs' cannot be made: 'runs' is a file, not a folder")


def test_an_os_error_not_foreseen_names_its_path_without_errno(monkeypatch, capsys):
    def fail(args):
        raise IsADirectoryError(errno.EISDIR, "Is a directory", "some/where")

    monkeypatch.setattr(cli, "cmd_export", fail)
    assert main(["export", "a", "b"]) == 2
    assert one_error_line(capsys) == "minillm: error: 'some/where': Is a directory"


# ----------------------------------------------------------------------------------------------
# next: the model's top next words and the true ones


def test_next_prints_the_models_next_words_beside_the_true_ones(checkpoints, capsys):
    """The walkthrough's example: after 今天天气不好，我们去 the grammar's places for bad weather
    are 商店 0.4, 图书馆 0.4 and 学校 0.2 (grammar.py's rules), and the model's column is its
    P(w | [BOS] prompt), recomputed here."""
    ckpt, prompt = checkpoints["clm"], "今天天气不好，我们去"
    assert main(["next", prompt, "--checkpoint", ckpt, "--top", "3", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    rows = result["words"]
    assert result["truth"] is True
    assert {r["word"]: r["true_p"] for r in rows if r["true_p"] > 0} == pytest.approx(
        {"商店": 0.4, "图书馆": 0.4, "学校": 0.2})
    cfg, _, tokenizer, state = load_checkpoint(ckpt)
    params = {name: value.astype(np.float64) for name, value in state["params"].items()}
    logits, _ = gpt_forward(params, cfg, np.array([[BOS_ID, *tokenizer.encode(prompt)]]))
    p = np.exp(log_softmax(logits[0, -1]))
    for r in rows:
        np.testing.assert_allclose(r["model_p"], p[tokenizer.id_of[r["word"]]], rtol=1e-4)
    assert [r["rank"] for r in rows[:3]] == [1, 2, 3]
    ranks = [r["rank"] for r in rows]
    assert ranks == sorted(ranks) and len(set(ranks)) == len(ranks)
    top = {tokenizer.id_of[r["word"]] for r in rows[:3]}
    others = np.delete(p, list(top))
    assert min(r["model_p"] for r in rows[:3]) >= others.max() * (1 - 1e-4)
    assert main(["next", prompt, "--checkpoint", ckpt, "--top", "3"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "true P" in out[1] and len(out) == 2 + len(rows)
    for line, r in zip(out[2:], rows):  # (a word may be a space: split around it)
        assert r["word"] in line and line.split()[0] == str(r["rank"])
        assert line.split()[-2:] == [f"{r['model_p']:.3f}", f"{r['true_p']:.3f}"]


@pytest.mark.parametrize("prompt", ["总结：", "今天今天"])
def test_next_has_no_truth_after_a_prompt_the_grammar_cannot_begin(prompt, checkpoints, capsys):
    assert main(["next", prompt, "--checkpoint", checkpoints["clm"]]) == 0
    out = capsys.readouterr().out
    assert "no true P" in out.splitlines()[0] and "true P" not in out.splitlines()[1]


def test_a_t5_answer_keeps_its_sentinels_so_each_filled_blank_shows():
    """seq2seq prints a t5 answer with the sentinels that say which blank each word fills; the
    other special tokens ([BOS], [EOS], [PAD]) stay out."""
    from minillm.cli import answer_text
    from minillm.grammar import default_grammar
    from minillm.tokenizer import BOS_ID, EOS_ID, PAD_ID

    tok = default_grammar().tokenizer()
    ids = [BOS_ID, tok.sentinel_id(0), *tok.encode("天气"), tok.sentinel_id(1),
           *tok.encode("去公园"), EOS_ID, PAD_ID]
    assert answer_text(tok, ids) == "<extra_id_0>天气<extra_id_1>去公园"
