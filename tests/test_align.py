"""The SFT → RM → DPO pipeline (minillm/align.py), on a model too small to learn anything: what
must hold whatever the model is."""

import json
import os
import math

import numpy as np
import pytest

from minillm import align, instruct, rlhf
from minillm.cli import main as cli_main
from minillm.grammar import default_grammar
from minillm.models import GPTConfig, gpt_forward, gpt_init
from minillm.tokenizer import EOS_ID

@pytest.fixture(scope="module")
def result():
    return align.run(align.TINY, log=lambda line: None)


def test_the_run_reports_every_measure_with_the_exact_bayes_limit(result):
    assert [row["method"] for row in result["rows"]] == ["sft", "dpo", "ppo", "ppo β=0"]
    _, _, data = align.make_data(align.TINY)
    assert result["bayes_accuracy"] == pytest.approx(
        instruct.bayes_accuracy(data.test_prompts), rel=1e-12)
    assert 0.0 <= result["rm_accuracy"] <= 1.0
    for row in result["rows"]:
        assert -2.0 <= row["true_reward"] <= 2.0
        assert 0.0 < row["win_rate_vs_sft"] < 1.0
        assert sum(row["kinds"].values()) == pytest.approx(1.0)
        assert len(row["responses"]) == align.TINY.n_test
    assert result["rows"][0]["kl_to_sft"] == 0.0  # the SFT model against itself: exactly 0
    sft_row = result["rows"][0]
    kinds = [instruct.response_kind(p, y) for p, y in zip(data.test_prompts,
                                                          sft_row["responses"])]
    wrong = [i for i, kind in enumerate(kinds) if kind != "correct"]  # the example's prompt
    assert result["example"]["prompt"] == data.test_prompts[wrong[0] if wrong else 0].text
    assert set(result["hacking"]) == {f"{key}_{when}{se}" for key in ("rm_reward", "true_reward")
                                      for when in ("first", "last") for se in ("", "_se")}
    report = align.format_report(result)
    assert "Bayes limit" in report and "ppo β=0" in report


def test_dpo_starts_at_log_2_because_the_policy_starts_as_the_reference():
    """history.md §5.7: at π = π_ref the DPO loss is ln 2 (the weights sum to 1)."""
    tokenizer, cfg, data = align.make_data(align.TINY)
    ref = gpt_init(cfg, np.random.default_rng(0))
    params = {k: v.copy() for k, v in ref.items()}
    losses = align.dpo(params, ref, cfg, tokenizer, data.ranked_prompts, data.rankings, 2, 8,
                       1e-3, 0.5, np.random.default_rng(1))
    assert losses[0] == pytest.approx(math.log(2), rel=1e-6)
    assert losses[1] != pytest.approx(math.log(2), rel=1e-6)  # one step later it moved


def test_drift_averages_the_responses_of_the_first_and_last_iterations_with_errors():
    """Rollout i scored its two responses i and i + 1 (RM) and −i, −i − 1 (true). The first ten
    rollouts' 20 responses: mean 5, E[x²] = (Σ_{i<10} i² + Σ_{i≤10} i²)/20 = (285 + 385)/20
    = 33.5, variance 8.5, standard error sqrt(8.5 / 20); the last ten are shifted by 20."""
    history = [{"rm_rewards": np.array([i, i + 1.0]), "true_rewards": -np.array([i, i + 1.0])}
               for i in range(30)]
    d = align.drift(history, window=10)
    se = math.sqrt(8.5 / 20)
    assert d == pytest.approx({"rm_reward_first": 5.0, "rm_reward_last": 25.0,
                               "true_reward_first": -5.0, "true_reward_last": -25.0,
                               "rm_reward_first_se": se, "rm_reward_last_se": se,
                               "true_reward_first_se": se, "true_reward_last_se": se},
                              rel=1e-12)


def test_ranked_batch_pairs_put_the_better_ranked_response_first():
    rng = np.random.default_rng(0)
    tokenizer = default_grammar().tokenizer()
    prompts = instruct.sample_prompts(rng, 2)
    rankings = [instruct.rank(rng, p, list(instruct.candidates(p).values())) for p in prompts]
    x_ids, y_ids, chosen, rejected, weights = align.ranked_batch(tokenizer, prompts, rankings)
    assert len(y_ids) == 2 * align.K and len(chosen) == 2 * math.comb(align.K, 2)
    assert weights.sum() == pytest.approx(1.0)
    for w, l in zip(chosen, rejected):
        assert w // align.K == l // align.K  # pairs within one prompt
        ranking = rankings[w // align.K]
        assert ranking.index(tokenizer.decode(y_ids[w])) < ranking.index(
            tokenizer.decode(y_ids[l]))


def test_reward_model_accuracy_counts_pairs_scored_in_the_labelers_order():
    """A reward model whose head reads nothing (w = 0) but the bias scores every response the
    same: no pair is ordered strictly, accuracy 0 (ties count as wrong)."""
    rng = np.random.default_rng(1)
    tokenizer = default_grammar().tokenizer()
    cfg = GPTConfig(vocab_size=len(tokenizer), n_ctx=48, n_embd=8, n_head=2, n_layer=1)
    params = rlhf.add_scalar_head(gpt_init(cfg, rng), cfg, "rm", rng)
    params["rm.w"][:] = 0.0
    comparisons = instruct.sample_comparisons(rng, instruct.sample_prompts(rng, 5))
    assert align.reward_model_accuracy(params, cfg, tokenizer, comparisons) == 0.0


def test_dpos_optimum_on_the_candidates_by_hand():
    """β = τ = 1: weights mix · e^{r*} = .55e², .2e, .15, .1/e over correct, too_long,
    wrong_slot, off_task (r* = 2, 1, 0, −1); the expected r* is their weighted mean."""
    w = [0.55 * math.e**2, 0.2 * math.e, 0.15, 0.1 / math.e]
    expected = (2 * w[0] + w[1] - w[3]) / sum(w)
    assert align.dpo_optimum_true_reward(1.0) == pytest.approx(expected, rel=1e-12)
    assert align.dpo_optimum_true_reward(1e6) == pytest.approx(1.2, rel=1e-5)  # β → ∞: the mix


def _tiny_models(seed):
    """A tiny SFT model, a reward model and a policy with a value head, all untrained."""
    rng = np.random.default_rng(seed)
    tokenizer = default_grammar().tokenizer()
    cfg = GPTConfig(vocab_size=len(tokenizer), n_ctx=48, n_embd=8, n_head=2, n_layer=1)
    sft_params = gpt_init(cfg, rng)
    rm = rlhf.add_scalar_head(gpt_init(cfg, rng), cfg, "rm", rng)
    policy = rlhf.add_scalar_head({k: v.copy() for k, v in sft_params.items()}, cfg, "v", rng)
    return tokenizer, cfg, sft_params, rm, policy, rng


def test_a_rollout_of_the_sft_model_has_kl_exactly_0_and_the_rewards_add_up():
    """At the start the policy is the SFT model: every kl_t is 0, so Σ_t r_t = the RM score
    (history.md §4.7); the returns are the un-whitened advantages plus the values."""
    tokenizer, cfg, sft_params, rm, policy, rng = _tiny_models(2)
    prompts = instruct.sample_prompts(rng, 6)
    batch, arrays, stats = align.rollout(policy, sft_params, rm, cfg, tokenizer, prompts, 0.1,
                                         rng)
    assert stats["kl"] == 0.0
    mask = batch["targets"] != rlhf.IGNORE_INDEX
    assert arrays["advantages"][mask].mean() == pytest.approx(0.0, abs=1e-6)  # whitened
    assert np.all(arrays["advantages"][~mask] == 0.0)
    # With kl 0 the only reward is the score, at the last token, where V after it is 0:
    # R_last = A_last + V_last = δ_last + V_last = score.
    scores = align.rewards_of(rm, cfg, tokenizer, prompts, stats["responses"])
    last = mask.shape[1] - 1 - np.argmax(mask[:, ::-1], axis=1)
    np.testing.assert_allclose(arrays["returns"][np.arange(6), last], scores, rtol=1e-5,
                               atol=1e-6)
    assert stats["rm_reward"] == pytest.approx(float(scores.mean()), rel=1e-5, abs=1e-6)


def test_ppo_train_reports_every_measure_per_iteration():
    tokenizer, cfg, sft_params, rm, policy, rng = _tiny_models(3)
    prompts = instruct.sample_prompts(rng, 10)
    before = {k: v.copy() for k, v in policy.items()}
    history = align.ppo_train(policy, sft_params, rm, cfg, tokenizer, prompts, 2, 4, 1e-3, 0.1,
                              2, rng, log=lambda line: None)
    assert len(history) == 2
    for stats in history:
        assert set(stats) >= {"true_reward", "rm_reward", "kl", "clip_frac"}
        assert -2.0 <= stats["true_reward"] <= 2.0 and 0.0 <= stats["clip_frac"] <= 1.0
    assert history[0]["kl"] == 0.0  # the first rollout is the SFT model's
    assert any(np.any(policy[k] != before[k]) for k in policy)


# ----------------------------------------------------------------------------------------------
# python -m minillm align


def test_align_demo_writes_the_table_as_json(tmp_path, capsys):
    path = tmp_path / "align.json"
    assert cli_main(["align", "--demo", "--size", "tiny", "--json", str(path)]) == 0
    doc = json.loads(path.read_text(encoding="utf-8"))
    assert [row["method"] for row in doc["rows"]] == ["sft", "dpo", "ppo", "ppo β=0"]
    for row in doc["rows"]:
        assert {"method", "true_reward", "win_rate_vs_sft", "kl_to_sft"} <= set(row)
    out = capsys.readouterr().out
    assert "win rate vs SFT" in out and "Bayes limit" in out and doc["example"]["prompt"] in out


def test_align_stages_each_read_the_previous_stages_file(tmp_path, capsys):
    sft, rm, dpo, ppo = (str(tmp_path / f"{m}.safetensors") for m in ("sft", "rm", "dpo", "ppo"))
    assert align.main(["--method", "sft", "--size", "tiny", "--out", sft]) == 0
    assert align.main(["--method", "rm", "--sft", sft, "--out", rm]) == 0
    assert align.main(["--method", "dpo", "--sft", sft, "--out", dpo, "--beta", "0.3"]) == 0
    assert align.main(["--method", "ppo", "--sft", sft, "--rm", rm, "--out", ppo]) == 0
    params, settings = align.load_stage(ppo, "ppo", "--x")
    assert settings == align.TINY and "v.w" not in params
    _, settings = align.load_stage(dpo, "dpo", "--x")
    assert settings.beta == 0.3
    rm_params, _ = align.load_stage(rm, "rm", "--x")
    assert "rm.w" in rm_params
    assert "KL to SFT" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    ([], "give --demo or --method"),
    (["--demo", "--method", "sft"], "give --demo or --method"),
    (["--method", "sft"], "needs --out"),
    (["--method", "rm", "--out", "{tmp}/rm"], "needs --sft"),
    (["--method", "ppo", "--sft", "{sft}", "--out", "{tmp}/p"], "needs --rm"),
    (["--method", "ppo", "--sft", "{sft}", "--rm", "{sft}", "--out", "{tmp}/p"],
     "holds the 'sft' stage"),
    (["--method", "dpo", "--sft", "{tmp}/missing", "--out", "{tmp}/p"], "--sft"),
    (["--method", "dpo", "--sft", "{tmp}/not.safetensors", "--out", "{tmp}/p"], "--sft"),
    (["--demo", "--beta", "0.1"], "--beta goes with"),
    (["--demo", "--size", "huge"], "invalid choice"),
    (["--method", "rm", "--sft", "{sft}", "--size", "tiny", "--out", "{tmp}/p"],
     "--size goes with --demo, --method sft, not --method rm"),
    (["--method", "dpo", "--sft", "{sft}", "--rm", "{sft}", "--out", "{tmp}/p"],
     "--rm goes with --method ppo"),
    (["--method", "sft", "--sft", "{tmp}/x", "--out", "{tmp}/p"], "--sft goes with"),
    (["--demo", "--out", "{tmp}/p"], "--out goes with"),
    (["--demo", "--bogus"], "unrecognized arguments"),
    (["--method", "sft", "--size", "tiny", "--out", "{tmp}/s", "--json", "{tmp}/j"],
     "--json goes with --demo"),
    (["--method", "rm", "--sft", "{sft}", "--out", "{tmp}/p", "--beta", "0.1"],
     "--beta goes with"),
    (["--method", "dpo", "--sft", "{sft}", "--out", "{tmp}/p", "--beta", "0"], "--beta"),
])
def test_align_refuses_bad_options_in_one_line(tmp_path, capsys, argv, message):
    sft = str(tmp_path / "sft.safetensors")
    (tmp_path / "not.safetensors").write_text("hello")
    if "{sft}" in " ".join(argv):
        assert align.main(["--method", "sft", "--size", "tiny", "--out", sft]) == 0
        capsys.readouterr()
    argv = [a.format(tmp=tmp_path, sft=sft) for a in argv]
    assert align.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("minillm align: error:") and message in err
    assert err.count("\n") == 1


@pytest.mark.parametrize("field, value", [("sft_steps", 0), ("beta", 0.0), ("dpo_lr", 0.0),
                                          ("n_test", 2.5), ("seed", -1), ("ppo_beta", True)])
def test_align_settings_refuse_bad_values_by_name(field, value):
    with pytest.raises(ValueError, match=f"AlignConfig.{field} "):
        align.AlignConfig(**{field: value})


@pytest.mark.parametrize("field, value, bound", [
    ("beta", 0.0, "a finite number > 0"), ("dpo_lr", float("inf"), "a finite number > 0"),
    ("ppo_beta", -0.1, "a finite number >= 0"), ("hack_beta", float("nan"), "a finite number >= 0"),
    ("beta", "1", "a finite number > 0"), ("sft_steps", 0, "an integer >= 1"),
    ("seed", -1, "an integer >= 0")])
def test_align_settings_say_which_values_they_take(field, value, bound):
    # DPO's beta divides the reward (pi* = pi_ref exp(r / beta) / Z), so it must be > 0;
    # PPO's KL penalty may be 0 (the reward-hacking run); the message says which.
    with pytest.raises(ValueError) as caught:
        align.AlignConfig(**{field: value})
    assert str(caught.value) == f"AlignConfig.{field} must be {bound}, got {value!r}"


def test_judges_kl_is_read_on_the_sampled_tokens_not_on_a_re_encoding_of_their_text(
        monkeypatch):
    """The estimator log π(y|x) − log π_SFT(y|x) has the mean KL(π ‖ π_SFT) only if y is the
    token sequence that was sampled. A sample may spell a word by its characters (今 天 for
    今天): its text re-encodes to other tokens, of another probability. Here every sampled
    response is the answer spelled by characters."""
    tokenizer, cfg, sft_params, _, policy, rng = _tiny_models(4)
    params = rlhf.gpt_without(policy, "v")
    params = {k: v + 0.1 * rng.normal(size=v.shape).astype(v.dtype) for k, v in params.items()}
    prompts = instruct.sample_prompts(rng, 4, tasks=("question",))  # short answers
    spelled = [[tokenizer.id_of[ch] for ch in p.answer] for p in prompts]
    assert any(s != tokenizer.encode(p.answer) for s, p in zip(spelled, prompts))

    def sample_spelled(params, cfg, tokenizer, prompts, rng):
        return [list(s) for s in spelled]

    monkeypatch.setattr(align, "sample_response_ids", sample_spelled)
    off_task = [instruct.candidates(p)["off_task"] for p in prompts]  # r* = −1
    row = align.judge(params, sft_params, cfg, tokenizer, prompts, off_task, rng)
    batch = rlhf.sft_batch([tokenizer.encode(p.text) for p in prompts], spelled)
    kl = (rlhf.sequence_logprobs(params, cfg, batch)[0]
          - rlhf.sequence_logprobs(sft_params, cfg, batch)[0])
    assert abs(kl.mean()) > 1e-3
    assert row["kl_to_sft"] == pytest.approx(float(kl.mean()), rel=1e-5)
    assert row["responses"] == [p.answer for p in prompts]
    assert row["true_reward"] == instruct.TRUE_REWARD["correct"]
    # the true labeler prefers a correct answer (+2) to an off-task one (−1) with σ(3)
    assert row["win_rate_vs_sft"] == pytest.approx(1 / (1 + math.exp(-3)), rel=1e-12)


@pytest.mark.parametrize("size", ["tiny", "demo"])
def test_held_out_prompts_share_no_sentence_with_any_training_prompt(size):
    """The policies are judged, and the reward model's accuracy measured, on prompts whose
    sentence no stage trained on (no demonstration's, no ranking's): held out, not redrawn
    from the same small space (the grammar has 970 sentences; 4000 prompts cover most of
    its mass)."""
    _, _, data = align.make_data(align.SIZES[size])
    trained = {p.sentence.text for p in data.demo_prompts + data.ranked_prompts}
    tested = {p.sentence.text for p in data.test_prompts}
    tested |= {c.prompt.sentence.text for c in data.test_comparisons}
    assert len(data.test_prompts) == align.SIZES[size].n_test
    assert not trained & tested
    assert {p.task for p in data.test_prompts} == set(instruct.TASKS)


def test_ppo_refuses_a_reward_model_made_with_other_settings_than_its_sft_file(tmp_path,
                                                                                capsys):
    """Found in review: --rm's settings were read and dropped, so a reward model of another
    size (or seed) than --sft's ran into a traceback (or trained PPO against a reward model
    built on another SFT model)."""
    sft = str(tmp_path / "sft.safetensors")
    rm = str(tmp_path / "rm.safetensors")
    assert align.main(["--method", "sft", "--size", "tiny", "--out", sft]) == 0
    other = align.AlignConfig(**{**align.asdict(align.TINY), "n_embd": 16})
    tokenizer, cfg, _ = align.make_data(other)
    rng = np.random.default_rng(0)
    align.save_stage(rm, "rm", rlhf.add_scalar_head(gpt_init(cfg, rng), cfg, "rm", rng), other)
    capsys.readouterr()
    assert align.main(["--method", "ppo", "--sft", sft, "--rm", rm,
                       "--out", str(tmp_path / "p")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("minillm align: error: --rm") and "n_embd" in err
    assert err.count("\n") == 1


def test_the_eos_after_a_response_cut_at_the_context_is_no_sampled_token(monkeypatch):
    """sample_response_ids cuts a response at n_ctx − len([BOS] x [SEP]) − 1 tokens, so that
    [EOS] fits; the sampled distribution is then π with the end forced there, whose
    log-probability of a cut response has no [EOS] term. The KL estimator (judge) and the PPO
    mask (rollout) must leave it out; a response that ended by itself keeps its [EOS]."""
    tokenizer, cfg, sft_params, rm, policy, rng = _tiny_models(5)
    params = rlhf.gpt_without(policy, "v")
    params = {k: v + 0.1 * rng.normal(size=v.shape).astype(v.dtype) for k, v in params.items()}
    prompts = instruct.sample_prompts(rng, 2, tasks=("question",))
    x_ids = [tokenizer.encode(p.text) for p in prompts]
    cap = cfg.n_ctx - len(x_ids[0]) - 3  # the longest response sample_response_ids returns
    y_ids = [[tokenizer.id_of["我"]] * cap, tokenizer.encode(prompts[1].answer)]

    def sample_fixed(params, cfg, tokenizer, prompts, rng):
        return [list(y) for y in y_ids]

    monkeypatch.setattr(align, "sample_response_ids", sample_fixed)
    batch = rlhf.sft_batch(x_ids, y_ids)
    terms = []
    for p in (params, sft_params):
        logits, _ = gpt_forward(p, cfg, batch["inputs"], batch["attention_mask"])
        terms.append(rlhf.token_logprobs_forward(logits, batch["targets"])[0])  # (2, T)
    eos_0 = len(x_ids[0]) + 1 + cap  # row 0's [EOS] target
    kl_0 = (terms[0][0, :eos_0] - terms[1][0, :eos_0]).sum()  # y only
    kl_1 = (terms[0][1] - terms[1][1]).sum()  # y and its [EOS]
    assert abs(terms[0][0, eos_0] - terms[1][0, eos_0]) > 1e-3  # leaving it in would show
    row = align.judge(params, sft_params, cfg, tokenizer, prompts, ["", ""], rng)
    assert row["kl_to_sft"] == pytest.approx((kl_0 + kl_1) / 2, rel=1e-5)
    rolled, arrays, _ = align.rollout(rlhf.add_scalar_head(params, cfg, "v", rng), sft_params,
                                      rm, cfg, tokenizer, prompts, 0.1, rng)
    assert rolled["targets"][0, eos_0] == rlhf.IGNORE_INDEX
    assert rolled["targets"][1, len(x_ids[1]) + 1 + len(y_ids[1])] == EOS_ID


def test_no_stage_trains_on_the_true_reward(monkeypatch):
    """The truth reaches training only through the data the labeler and the demonstrator drew
    (make_data). With the data fixed, every stage trained again under another true-reward
    table (negated) must give the same parameters, bit for bit: only the reports may change."""
    settings = align.TINY
    tokenizer, cfg, data = align.make_data(settings)

    def stages():
        sft = align.stage_sft(settings, tokenizer, cfg, data, log=lambda line: None)
        rm = align.stage_rm(settings, tokenizer, cfg, data, sft, log=lambda line: None)[0]
        dpo = align.stage_dpo(settings, tokenizer, cfg, data, sft, log=lambda line: None)
        ppo, _ = align.stage_ppo(settings, tokenizer, cfg, data, sft, rm, 0.2,
                                 log=lambda line: None)
        return {"sft": sft, "rm": rm, "dpo": dpo, "ppo": ppo}

    before = stages()
    monkeypatch.setattr(instruct, "TRUE_REWARD",
                        {k: -v for k, v in instruct.TRUE_REWARD.items()})
    after = stages()
    for stage, params in before.items():
        for name, value in params.items():
            np.testing.assert_array_equal(after[stage][name], value, err_msg=f"{stage} {name}")


def test_every_stage_shows_its_progress_with_an_eta():
    """align --demo takes minutes: each training stage prints progress lines with the time
    elapsed and an ETA, and PPO's lines carry its per-iteration measures."""
    lines = []
    align.run(align.TINY, log=lines.append)
    for stage in ("SFT", "RM", "DPO", f"PPO β = {align.TINY.ppo_beta:g}",
                  f"PPO β = {align.TINY.hack_beta:g}"):
        shown = [line for line in lines if line.startswith(stage + " ") and "ETA" in line]
        assert shown and shown[-1].startswith(f"{stage} 100% |"), (stage, lines)
    assert any("true reward" in line and "ETA" in line for line in lines)


def test_a_stage_file_with_other_tensors_or_a_nan_is_one_line_and_none_is_written_non_finite(
        tmp_path, capsys):
    """A stage file is checked like a checkpoint: exactly the tensors of its settings' GPT (and
    the reward model's head), all finite; a stage whose parameters went non-finite is not
    written."""
    from minillm import safetensors

    sft = str(tmp_path / "sft.safetensors")
    assert align.main(["--method", "sft", "--size", "tiny", "--out", sft]) == 0
    params, metadata = safetensors.load_file_with_metadata(sft)
    name = "h.0.attn.c_attn.b"
    for label, tensors, words in [
            ("shape", {**params, name: np.zeros(3, np.float32)}, f"{name} has shape (3,)"),
            ("missing", {k: v for k, v in params.items() if k != name}, f"missing {name}"),
            ("extra", {**params, "rm.b": np.zeros(1, np.float32)}, "unexpected rm.b"),
            ("nan", {**params, name: np.full_like(params[name], np.nan)},
             f"{name} holds a NaN or an infinity")]:
        bad = str(tmp_path / f"{label}.safetensors")
        safetensors.save_file(tensors, bad, metadata=metadata)
        capsys.readouterr()
        assert align.main(["--method", "rm", "--sft", bad, "--out", str(tmp_path / "r")]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith(f"minillm align: error: --sft {bad}: ")
        assert words in err, err
    out = str(tmp_path / "never.safetensors")
    with pytest.raises(align.AlignError, match="not finite"):
        align.save_stage(out, "dpo", {**params, name: np.full_like(params[name], np.inf)},
                         align.TINY)
    assert not os.path.exists(out)
