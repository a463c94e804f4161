"""``python -m minillm scale`` (minillm/scale.py): parameter and compute counting, the held-out
loss and its floor, a tiny sweep end to end, the points file across Ctrl-C and reruns, and
the command's refusals. The fits are tested in test_scaling_law.py, the in-context learning
data and induction scores in test_icl.py."""

import json
import math

import numpy as np
import pytest

from minillm import compare, scale
from minillm.cli import main as cli_main
from minillm.models import GPTConfig, MODELS
from minillm.objectives import clm
from minillm.tokenizer import EOS_ID
from minillm.world import default_world


# ----------------------------------------------------------------------------------------------
# Counting


@pytest.mark.parametrize("L, C, H", [(1, 8, 2), (2, 16, 2), (3, 32, 4), (4, 64, 4)])
def test_non_embedding_params_are_the_parameter_table_without_the_embeddings(L, C, H):
    cfg = GPTConfig(vocab_size=50, n_ctx=23, n_embd=C, n_head=H, n_layer=L)
    params = MODELS["gpt"].init(cfg, np.random.default_rng(0))
    table = sum(p.size for name, p in params.items() if name not in ("wte", "wpe"))
    assert scale.non_embedding_params(cfg) == table
    # By hand, per block: 12C² in the matrices (q, k, v, out: 4C²; the MLP: 2·C·4C), 13C in
    # the biases (3C + C + 4C + C) and the two layer norms (4C); the final layer norm 2C.
    assert table == L * (12 * C * C + 13 * C) + 2 * C


def test_training_compute_is_6ND_and_what_compare_counts_from_the_shapes():
    cfg = GPTConfig(vocab_size=50, n_ctx=23, n_embd=32, n_head=4, n_layer=3)
    assert scale.training_compute(1000, 500) == 6 * 1000 * 500
    batch = clm.make_batch([[7] * 20, [8] * 22, [9] * 5])
    B, T = batch["inputs"].shape
    counted = compare.training_flops("clm", cfg, batch)
    # compare counts the matrix products: 6 FLOPs per weight of the blocks' matrices and per
    # position (Kaplan's 6N with the biases and layer norms left out), the attention scores
    # and weighted sums (4·T·C per position and block, ×3), and the output layer (6·C·V).
    params = MODELS["gpt"].init(cfg, np.random.default_rng(0))
    matrices = sum(p.size for name, p in params.items()
                   if p.ndim == 2 and name not in ("wte", "wpe"))
    attention = 3 * cfg.n_layer * 4 * B * T * T * cfg.n_embd
    output = 6 * B * T * cfg.n_embd * cfg.vocab_size
    assert counted == 6 * matrices * B * T + attention + output
    # scale's N holds the same matrices and a little more (biases, layer norms).
    n = scale.non_embedding_params(cfg)
    assert matrices < n < 1.05 * matrices


# ----------------------------------------------------------------------------------------------
# The held-out loss


def test_document_nll_is_the_chain_rule_with_bos_and_eos():
    source = scale.Source("world")
    cfg = GPTConfig(vocab_size=len(source.tokenizer), n_ctx=23, n_embd=16, n_head=2,
                    n_layer=2)
    params = MODELS["gpt"].init(cfg, np.random.default_rng(1), dtype=np.float64)
    docs = source.ids(source.sample(np.random.default_rng(2), 7))
    nll, counts = scale.document_nll(params, cfg, docs, batch_size=3)
    for d, n, c in zip(docs, nll, counts):
        total, _ = clm.log_prob(params, cfg, d, add_eos=True)
        assert n == pytest.approx(-total, rel=1e-12)
        assert c == len(d) + 1  # the words and [EOS]; [BOS]'s prediction is the first term


def test_per_token_loss_and_its_standard_error_by_hand():
    loss, se = scale.per_token(np.array([1.0, 2.0, 3.0]), np.array([1.0, 1.0, 1.0]))
    assert loss == 2.0 and se == pytest.approx(1 / math.sqrt(3))  # sd 1, over sqrt(3)
    # Documents of equal length c: the mean nll per document over c, its sd over sqrt(n) over c.
    nll = np.array([3.0, 5.0, 10.0, 6.0])
    loss, se = scale.per_token(nll, np.full(4, 4.0))
    assert loss == pytest.approx(nll.mean() / 4)
    assert se == pytest.approx(nll.std(ddof=1) / 2 / 4)


def test_the_source_itself_scores_its_entropy():
    # The true −log P of the world's own samples, per token: the floor, within 5 standard errors
    # (world.entropy_per_token is an exact sum; scale.per_token gives the standard error).
    source = scale.Source("world")
    docs = source.sample(np.random.default_rng(3), 4000)
    nll = np.array([-source.log_prob(d) for d in docs])
    loss, se = scale.per_token(nll, np.array([len(d) + 1.0 for d in docs]))
    assert abs(loss - default_world().entropy_per_token()) < 5 * se
    grammar = scale.Source("grammar")
    docs = grammar.sample(np.random.default_rng(4), 4000)
    nll = np.array([-grammar.log_prob(d) for d in docs])
    loss, se = scale.per_token(nll, np.array([len(d) + 1.0 for d in docs]))
    assert abs(loss - grammar.floor) < 5 * se


# ----------------------------------------------------------------------------------------------
# A tiny sweep, end to end


def run_tiny(tmp_path, *extra, name="run"):
    out = tmp_path / f"{name}.json"
    status = cli_main(["scale", "--budget", "tiny", "--jobs", "1",
                       "--points", str(tmp_path / "points.json"), "--json", str(out), *extra])
    return status, (json.loads(out.read_text(encoding="utf-8")) if out.exists() else None)


def test_a_tiny_sweep_runs_end_to_end(tmp_path, capsys):
    status, summary = run_tiny(tmp_path)
    assert status == 0
    budget = scale.BUDGETS["tiny"]
    points = summary["points"]
    assert len(points) == len(budget.sizes) * len(budget.tokens)
    floor = default_world().entropy_per_token()
    assert summary["floor"] == floor
    for p in points:
        assert math.isfinite(p["loss"]) and p["loss_se"] > 0
        # Not below the floor by more than the evaluation's standard error (a tiny model is
        # far above it; a loss under the floor would be a bug in the loss or in the floor).
        assert p["loss"] > floor - p["loss_se"]
        assert p["reducible"] > -5 * p["reducible_se"]
        assert p["compute"] == 6 * p["n_params"] * p["tokens"]
        assert abs(p["tokens"] - p["budget_tokens"]) < 0.5 * p["budget_tokens"]
    assert set(summary["fit"]) == {"E", "A", "alpha", "B", "beta"}
    assert set(summary["fits"]) == {"L(N), E free", "L(N), E = floor", "L(N, D), E free",
                                    "L(N, D), E = floor"}
    (row,) = summary["icl"]["rows"]
    assert set(row["accuracy"]) == {"0", "1", "2", "4", "8"}
    assert all(0 <= a <= 1 for a in row["accuracy"].values())
    L, _, H = budget.icl_sizes[0]
    assert np.array(row["induction"]).shape == (L, H)
    printed = capsys.readouterr().out
    assert "fitted E − floor" in printed and "k=8" in printed and "induction" in printed


def test_the_same_seed_gives_the_same_bits_in_one_process_or_two(tmp_path):
    _, one = run_tiny(tmp_path, "--fresh", name="one")
    status = cli_main(["scale", "--budget", "tiny", "--jobs", "2", "--fresh",
                       "--points", str(tmp_path / "two-points.json"),
                       "--json", str(tmp_path / "two.json")])
    assert status == 0
    two = json.loads((tmp_path / "two.json").read_text(encoding="utf-8"))

    def without_time(points):
        return [{k: v for k, v in p.items() if k != "seconds"} for p in points]

    assert without_time(one["points"]) == without_time(two["points"])
    assert [r["accuracy"] for r in one["icl"]["rows"]] == [r["accuracy"] for r in
                                                          two["icl"]["rows"]]


def test_ctrl_c_keeps_finished_models_and_a_rerun_trains_only_the_rest(tmp_path, monkeypatch):
    total = len(scale.job_keys(scale.BUDGETS["tiny"], "world"))
    shown = []

    def show(self, what):  # a Ctrl-C right after the second model finishes
        if what.endswith("done"):
            shown.append(what)
            if len(shown) == 2:
                raise KeyboardInterrupt

    monkeypatch.setattr(scale.Progress, "show", show)
    status, summary = run_tiny(tmp_path, name="first")
    assert status == 130
    kept = json.loads((tmp_path / "points.json").read_text(encoding="utf-8"))["entries"]
    assert len(kept) == 2
    assert len(summary["points"]) + len(summary["icl"]["rows"]) == 2  # printed and written
    monkeypatch.undo()

    trained = []
    real = scale.train_gpt

    def counting(*args, **kwargs):
        trained.append(args[2])
        return real(*args, **kwargs)

    monkeypatch.setattr(scale, "train_gpt", counting)
    status, second = run_tiny(tmp_path, name="second")
    assert status == 0 and len(trained) == total - 2
    trained.clear()
    status, third = run_tiny(tmp_path, name="third")  # everything kept: nothing to train
    assert status == 0 and trained == []
    assert third["points"] == second["points"]
    # --fresh trains everything again, with the same bits
    status, fresh = run_tiny(tmp_path, "--fresh", name="fresh")
    assert len(trained) == total
    assert [p["loss"] for p in fresh["points"]] == [p["loss"] for p in second["points"]]


# ----------------------------------------------------------------------------------------------
# The command's refusals


def test_scale_explains_itself(capsys):
    assert cli_main(["scale", "--help"]) == 0
    text = capsys.readouterr().out
    assert "--budget" in text and "--points" in text and "entropy" in text
    with pytest.raises(SystemExit):
        cli_main(["--help"])
    assert "scale" in capsys.readouterr().out


@pytest.mark.parametrize("args, named", [
    (["--jobs", "0"], "--jobs must be at least 1"),
    (["--budget", "huge"], "invalid choice"),
    (["--source", "web"], "invalid choice"),
])
def test_bad_options_are_one_line_and_status_2(args, named, capsys, tmp_path):
    status = cli_main(["scale", *args, "--points", str(tmp_path / "p.json")])
    err = capsys.readouterr().err
    assert status == 2 and named in err
    assert "Traceback" not in err


@pytest.mark.parametrize("content, named", [
    (b"not json", "not valid JSON"),
    (b'{"format": "something else", "entries": []}', "not a points file"),
    (b'{"format": "minillm scale points, version 1", "entries": [{"kind": "sweep"}]}',
     "entry 0 is not a finished model"),
    (b'{"format": "minillm scale points, version 1", "entries": [{"kind": "sweep", '
     b'"key": {}, "point": {"loss": NaN}}]}', "not valid JSON"),
])
def test_a_bad_points_file_is_named_and_refused(content, named, capsys, tmp_path):
    path = tmp_path / "points.json"
    path.write_bytes(content)
    status = cli_main(["scale", "--budget", "tiny", "--points", str(path)])
    err = capsys.readouterr().err.strip()
    assert status == 2 and named in err and "--points" in err
    assert len(err.splitlines()) == 1


def test_fresh_does_not_read_the_points_file_and_replaces_it(tmp_path):
    path = tmp_path / "points.json"
    path.write_bytes(b"not json")
    assert cli_main(["scale", "--budget", "tiny", "--jobs", "1", "--fresh",
                     "--points", str(path)]) == 0
    assert len(scale.read_points(str(path))) == len(scale.job_keys(scale.BUDGETS["tiny"],
                                                                   "world"))


def test_unwritable_outputs_are_refused_before_any_training(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(scale, "train_gpt", lambda *a, **k: pytest.fail("trained"))
    for flag, name in (("--points", "p.json"), ("--json", "out.json"), ("--plot", "plot.png")):
        (tmp_path / name).mkdir()  # a folder, with a good name: refused for being a folder
        args = ["scale", "--budget", "tiny", "--points", str(tmp_path / "points.json"),
                flag, str(tmp_path / name)]
        assert cli_main(args) == 2
        err = capsys.readouterr().err
        assert flag in err and "folder" in err, err
    # Two outputs in one file: the points file would be overwritten by the JSON summary.
    same = str(tmp_path / "both.json")
    assert cli_main(["scale", "--budget", "tiny", "--points", same, "--json", same]) == 2
    assert "name the same file" in capsys.readouterr().err


def test_plot_without_matplotlib_is_a_clear_error(capsys, tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name.startswith("matplotlib"):
            raise ImportError("No module named 'matplotlib'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    status = cli_main(["scale", "--budget", "tiny", "--points", str(tmp_path / "p.json"),
                       "--plot", str(tmp_path / "plot.png")])
    assert status == 2 and "minillm[plot]" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------
# Review 15: defects found by a review, each with a test that fails on the code before its fix


@pytest.fixture(scope="module")
def finished_points(tmp_path_factory):
    """The text of a finished tiny sweep's points file (trained once for this module)."""
    path = tmp_path_factory.mktemp("finished") / "points.json"
    assert cli_main(["scale", "--budget", "tiny", "--jobs", "1", "--points", str(path)]) == 0
    return path.read_text(encoding="utf-8")


def test_reducible_is_the_loss_less_the_same_documents_true_loss():
    # Σ(nll − true)/Σ tokens = Σ nll/Σ tokens − Σ true/Σ tokens: an identity, so the reducible
    # part must equal the loss minus the true per-token loss of the very same documents.
    source = scale.Source("world")
    budget = scale.BUDGETS["tiny"]
    cfg = scale.gpt_config((1, 8, 2), len(source.tokenizer), source.max_words + 1)
    params = MODELS["gpt"].init(cfg, np.random.default_rng(0), dtype=np.float64)
    measured = scale.held_out(params, cfg, source, budget.eval_documents)
    documents = source.sample(np.random.default_rng(scale.EVAL_SEED), budget.eval_documents)
    true_loss = (sum(-source.log_prob(d) for d in documents)
                 / sum(len(d) + 1 for d in documents))
    assert measured["reducible"] == pytest.approx(measured["loss"] - true_loss, rel=1e-12)


def test_probes_ask_every_model_the_same_blanks(monkeypatch):
    # A model that ends its samples at once draws fewer random numbers while sampling; the
    # blanks asked afterwards must not depend on that.
    source = scale.Source("world")
    cfg = scale.gpt_config((1, 8, 2), len(source.tokenizer), source.max_words + 1)
    talker = MODELS["gpt"].init(cfg, np.random.default_rng(7))
    quitter = {name: p.copy() for name, p in talker.items()}
    quitter["wte"][EOS_ID] *= 300  # [EOS] the most probable next token nearly everywhere
    asked = []
    real = scale.cap.make_examples

    def spy(*args, **kwargs):
        items = real(*args, **kwargs)
        asked.append([tuple(ex.passage) for ex in items])
        return items

    monkeypatch.setattr(scale.cap, "make_examples", spy)
    for params in (talker, quitter):
        scale.probes(params, cfg, source, scale.BUDGETS["tiny"].probe_items)
    assert asked[0] == asked[1]


def test_a_fit_with_a_negative_coefficient_still_gives_a_report(monkeypatch):
    # An E-free Chinchilla fit may end with B < 0 (D's effect within the noise); Chinchilla's
    # allocation does not exist then, and the report says so instead of a traceback.
    real = scale.law.fit_chinchilla

    def negative_b(N, D, L, E=None):
        fit = real(N, D, L, E=E)
        return scale.law.Fit(**{**fit.to_dict(), "params": {**fit.params, "B": -0.1}})

    monkeypatch.setattr(scale.law, "fit_chinchilla", negative_b)
    points = [("sweep", {"size": [1, 8 * (i + 1), 2], "tokens": d},
               {"n_params": 1000 * (i + 1), "tokens": d, "loss": 1 + 9 / (i + 1) + d ** -0.3,
                "reducible": 0.1, "reducible_se": 0.01, "compute": 6000 * (i + 1) * d})
              for i in range(4) for d in (1000, 2000, 4000)]
    budget = scale.Budget(sizes=tuple((1, 8 * (i + 1), 2) for i in range(4)),
                          tokens=(1000, 2000, 4000), icl_sizes=(), icl_tokens=1)
    summary = scale.summarize(points, budget, "world", "tiny")
    assert summary["frontier"] and all(level.get("predicted_n") is None
                                       for level in summary["frontier"])
    assert "-" in scale.format_report(summary)


def test_a_fit_of_losses_too_large_to_square_is_refused_in_one_line():
    with pytest.raises(ValueError, match="too large"):
        scale.law.fit_power_law([1e3, 2e3, 4e3, 8e3], [1e200, 1.0, 1.0, 1.0])


@pytest.mark.parametrize("field, value", [
    ("loss", "abc"), ("loss", -5.0), ("loss", 1e308), ("loss", True), ("n_params", -3),
    ("n_params", 1.5), ("tokens", 10 ** 400), ("reducible", "x"), ("reducible_se", [1]),
    ("loss", None), ("in_support", 2.0)])
def test_a_finished_model_with_a_bad_number_is_refused_in_one_line(field, value, tmp_path,
                                                                     capsys, finished_points):
    path, data = tmp_path / "points.json", json.loads(finished_points)
    sweep = next(e for e in data["entries"] if e["kind"] == "sweep" and "in_support" in
                 e["point"])
    sweep["point"][field] = value
    path.write_text(json.dumps(data), encoding="utf-8")
    capsys.readouterr()
    status = cli_main(["scale", "--budget", "tiny", "--jobs", "1", "--points", str(path)])
    err = capsys.readouterr().err.strip()
    assert status == 2 and "is not a finished model" in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("change", ["no loss", "empty", "icl accuracy", "icl induction"])
def test_a_finished_model_with_missing_fields_is_refused_in_one_line(change, tmp_path, capsys,
                                                                      finished_points):
    path, data = tmp_path / "points.json", json.loads(finished_points)
    sweep = next(e for e in data["entries"] if e["kind"] == "sweep")
    icl_entry = next(e for e in data["entries"] if e["kind"] == "icl")
    if change == "no loss":
        del sweep["point"]["loss"]
    elif change == "empty":
        sweep["point"] = {}
    elif change == "icl accuracy":
        icl_entry["point"]["accuracy"] = {}
    else:
        icl_entry["point"]["induction"] = []
    path.write_text(json.dumps(data), encoding="utf-8")
    capsys.readouterr()
    status = cli_main(["scale", "--budget", "tiny", "--jobs", "1", "--points", str(path)])
    err = capsys.readouterr().err.strip()
    assert status == 2 and "is not a finished model" in err and len(err.splitlines()) == 1


def test_a_points_file_keeps_the_models_of_other_runs(tmp_path):
    # A --points file shared by two runs (tiny on the world, then on the grammar) keeps both.
    path = tmp_path / "points.json"
    for source in ("world", "grammar"):
        assert cli_main(["scale", "--budget", "tiny", "--jobs", "1", "--source", source,
                         "--points", str(path)]) == 0
    kept = scale.read_points(str(path))
    assert {key.get("source") for kind, key, _ in kept if kind == "sweep"} == {"world",
                                                                             "grammar"}


def test_a_plot_of_an_unknown_format_is_refused_before_training(tmp_path, capsys):
    status = cli_main(["scale", "--budget", "tiny", "--points", str(tmp_path / "p.json"),
                       "--plot", str(tmp_path / "plot.foo")])
    err = capsys.readouterr().err
    assert status == 2 and "--plot" in err and "'.foo'" in err  # the format, not matplotlib


def test_an_unusable_cache_folder_is_one_line(monkeypatch, capsys):
    monkeypatch.setenv("XDG_CACHE_HOME", "/dev/null")
    status = cli_main(["scale", "--budget", "tiny"])
    err = capsys.readouterr().err.strip()
    assert status == 2 and "/dev/null" in err and len(err.splitlines()) == 1


def test_an_entry_of_an_older_method_is_kept_but_not_used(tmp_path):
    # A model measured by older code (another METHOD) may lack today's fields: it is neither
    # refused nor reused, and stays in the file.
    path = tmp_path / "points.json"
    old = {"kind": "icl", "key": {"method": 0, "size": [2, 16, 2]}, "point": {"loss": "?"}}
    path.write_text(json.dumps({"format": scale.POINTS_FORMAT, "entries": [old]}),
                    encoding="utf-8")
    assert cli_main(["scale", "--budget", "tiny", "--jobs", "1", "--points", str(path)]) == 0
    entries = json.loads(path.read_text(encoding="utf-8"))["entries"]
    assert old in entries
    assert len(entries) == 1 + len(scale.job_keys(scale.BUDGETS["tiny"], "world"))
