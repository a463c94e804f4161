"""combine.py: what combining objectives buys, measured (the tutorial's 🔑 4)."""

import json
import math

import numpy as np
import pytest

from minillm import combine
from minillm.cli import main as cli_main
from minillm.grammar import default_grammar
from minillm.instruct import TASKS, make_prompt
from minillm.models import MODELS
from minillm.objectives import seq2seq
from minillm.tokenizer import EOS_ID

TINY = combine.BUDGETS["tiny"]


@pytest.fixture(scope="module")
def tokenizer():
    return default_grammar().tokenizer()


def _sentence_of(tokenizer, source_ids, target_ids):
    """The grammar sentence a task pair was built from."""
    text, answer = tokenizer.decode(source_ids), tokenizer.decode(target_ids)
    return make_prompt(text, answer).sentence.text


# ----------------------------------------------------------------------------------------------
# What is held out


def test_the_split_holds_out_a_tenth_of_each_kind_and_is_the_same_every_time():
    train, held_out = combine.held_out_split()
    assert not train & held_out
    grammar = default_grammar()
    for kind in "AB":
        texts = {s.text for s in grammar.sentences if s.kind == kind}
        assert texts <= train | held_out
        assert len(texts & held_out) == math.ceil(0.1 * len(texts))
    assert combine.held_out_split() == (train, held_out)


@pytest.mark.parametrize("arm", ["tasks", "mix"])
def test_no_training_task_is_built_from_a_held_out_sentence(tokenizer, arm):
    train, held_out = combine.held_out_split()
    batches = combine.ArmBatches(arm, TINY, tokenizer, train, np.random.default_rng(0))
    pairs = batches.task_pairs(300)
    seen = {_sentence_of(tokenizer, s, t) for s, t in pairs}
    assert seen <= train and not seen & held_out
    # 300 prompts from ~870 training sentences: many distinct ones, so the check has teeth
    assert len(seen) > 100


def test_every_test_prompt_is_built_from_a_held_out_sentence(tokenizer):
    _, held_out = combine.held_out_split()
    items = combine.scoring_items(TINY, tokenizer, held_out)
    assert set(items["prompts"]) == set(TASKS)
    for task, prompts in items["prompts"].items():
        assert len(prompts) == TINY.task_items
        assert all(p.task == task and p.sentence.text in held_out for p in prompts)


def test_the_nsp_control_reads_the_same_pairs_without_the_nsp_labels(tokenizer):
    train, _ = combine.held_out_split()
    pairs = combine.ArmBatches("mlm_pairs", TINY, tokenizer, train, np.random.default_rng(5))
    nsp = combine.ArmBatches("mlm_nsp", TINY, tokenizer, train, np.random.default_rng(5))
    (a, n_a), (b, n_b) = pairs.next_batch(), nsp.next_batch()
    assert "next_sentence_label" not in a and "next_sentence_label" in b
    assert set(b) - set(a) == {"next_sentence_label"}
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    assert n_a == n_b > 0


# ----------------------------------------------------------------------------------------------
# The scores, against hand-computed cases


def test_exact_match_is_the_task_answer_then_eos(tokenizer, monkeypatch):
    _, held_out = combine.held_out_split()
    prompts = combine.scoring_items(TINY, tokenizer, held_out)["prompts"]["translate"][:3]
    truths = [[*tokenizer.encode(p.answer), EOS_ID] for p in prompts]
    # The decoder "writes": the answer exactly; the answer without its last token; the answer
    # with [EOS] missing (cut at max_len: it would go on).
    outputs = iter([truths[0], truths[1][:-2] + [EOS_ID], truths[2][:-1] + [truths[2][0]]])
    asked = []

    def fake_greedy(params, cfg, src_ids, max_len):
        asked.append((src_ids, max_len))
        return next(outputs), 0.0

    monkeypatch.setattr(combine, "seq2seq_greedy", fake_greedy)
    scores = combine.task_exact_match(None, None, tokenizer, prompts)
    np.testing.assert_array_equal(scores, [1.0, 0.0, 0.0])
    for (src, max_len), p, truth in zip(asked, prompts, truths):
        assert src == [*tokenizer.encode(p.text), EOS_ID] and max_len == len(truth)


def test_span_nll_is_each_pairs_own_log_prob_per_target_token(tokenizer):
    cfg = combine.configs(TINY, len(tokenizer))["seq2seq"]
    params = MODELS["seq2seq"].init(cfg, np.random.default_rng(0), dtype=np.float64)
    rng = np.random.default_rng(1)
    texts = ["".join(default_grammar().sample_text(rng, k)) for k in (1, 2, 4)]
    pairs = [seq2seq.corrupt(tokenizer.encode(t), rng, tokenizer, "t5")
             for t in texts]  # 1, 2 and 4 sentences: targets of different lengths
    assert len({len(t) for _, t in pairs}) > 1
    got = combine.span_corruption_nll(params, cfg, pairs)
    want = [-seq2seq.log_prob(params, cfg, s, t)[0] / len(t) for s, t in pairs]
    np.testing.assert_allclose(got, want, rtol=1e-10)


def test_the_truth_scores_kl_0_and_a_uniform_fill_log_v_minus_the_entropy(tokenizer,
                                                                          monkeypatch):
    grammar = default_grammar()
    blanks = [["今天", "[MASK]", "很好", "。"], ["今天", "天气", "很好", "，", "我们", "去",
                                              "[MASK]", "玩", "。"]]
    truths = [grammar.masked_word_distribution(w, as_prefix=False) for w in blanks]
    V = len(tokenizer)
    fills = iter([np.zeros(V) for _ in blanks])

    def as_truth(params, cfg, ids):
        probs = next(fills)
        for w, p in truths[as_truth.calls].items():
            probs[tokenizer.encode(w)[0]] = p
        as_truth.calls += 1
        return [(ids.index(combine.MASK_ID), probs)]

    as_truth.calls = 0
    monkeypatch.setattr(combine, "fill_mask_distributions", as_truth)
    kl, accuracy = combine.fill_kl_and_accuracy(None, None, tokenizer, blanks)
    np.testing.assert_allclose(kl, 0.0, atol=1e-12)
    np.testing.assert_array_equal(accuracy, [1.0, 1.0])

    def uniform(params, cfg, ids):
        return [(ids.index(combine.MASK_ID), np.full(V, 1.0 / V))]

    monkeypatch.setattr(combine, "fill_mask_distributions", uniform)
    kl, _ = combine.fill_kl_and_accuracy(None, None, tokenizer, blanks)
    # KL(P ‖ uniform) = Σ P log P + log V
    want = [sum(p * math.log(p) for p in t.values()) + math.log(V) for t in truths]
    np.testing.assert_allclose(kl, want, rtol=1e-12)
    assert truths[0]["天气"] == pytest.approx(0.4 / 0.52)  # the grammar's docstring: 0.77


# ----------------------------------------------------------------------------------------------
# Verdicts


@pytest.mark.parametrize("ci, higher, want", [
    ((0.1, 0.3), True, "helps"), ((0.1, 0.3), False, "hurts"),
    ((-0.3, -0.1), True, "hurts"), ((-0.3, -0.1), False, "helps"),
    ((-0.1, 0.2), True, "no clear difference"), ((0.0, 0.2), True, "no clear difference"),
])
def test_verdict_only_when_the_interval_excludes_zero(ci, higher, want):
    assert combine.verdict(ci, higher) == want


def _made_up_results(seeds=3, n=20):
    """A table whose differences are known: mix answers every 总结 prompt, tasks none; mix's
    span loss is 0.5 above t5's; the fills are equal; NSP: mlm_nsp always right, the control
    on half (alternating items, so the difference is exactly 0.5 per seed)."""
    rng = np.random.default_rng(0)
    results = {}
    for seed in range(seeds):
        noise = rng.normal(size=n)
        base = {**{f"exact_match_{t}": np.zeros(n) for t in TASKS}, "span_nll": 9.0 + noise}
        t5 = {**base, "span_nll": 2.0 + noise}
        mix = {**base, "exact_match_summary": np.ones(n), "span_nll": 2.5 + noise}
        bert = {"fill_kl": 0.1 + np.abs(noise), "fill_accuracy": np.ones(n),
                "doc_fill_kl": 0.2 + np.abs(noise), "doc_fill_accuracy": np.zeros(n),
                "nsp_accuracy": np.arange(n) % 2 == 0}
        nsp = {**bert, "nsp_accuracy": np.ones(n)}
        for arm, scores in (("tasks", base), ("t5", t5), ("mix", mix), ("mlm", bert),
                            ("mlm_pairs", bert), ("mlm_nsp", nsp)):
            results[seed, arm] = {"scores": {k: [float(x) for x in v] for k, v in scores.items()},
                                  "train_loss": 1.0, "seconds": 1.0, "n_params": 10}
    return results


def test_the_verdicts_of_a_made_up_table():
    summary = combine.summarize(_made_up_results(), TINY, "tiny")
    by = {(c["combined"], c["alone"], c["metric"]): c for c in summary["comparisons"]}
    assert len(by) == len(combine.COMPARISONS)
    summary_em = by["mix", "tasks", "exact_match_summary"]
    assert summary_em["difference"] == 1.0 and summary_em["verdict"] == "helps"
    assert by["mix", "tasks", "exact_match_question"]["verdict"] == "no clear difference"
    span = by["mix", "t5", "span_nll"]
    assert span["difference"] == pytest.approx(0.5) and span["verdict"] == "hurts"
    assert by["mlm_nsp", "mlm", "fill_kl"]["difference"] == 0.0
    assert by["mlm_nsp", "mlm", "fill_kl"]["verdict"] == "no clear difference"
    nsp = by["mlm_nsp", "mlm_pairs", "nsp_accuracy"]
    assert nsp["difference"] == pytest.approx(0.5) and nsp["verdict"] == "helps"
    assert summary["arms"]["span_nll"]["mix"]["value"] == pytest.approx(
        2.5 + np.mean([r["scores"]["span_nll"] for (s, a), r in _made_up_results().items()
                       if a == "t5"]) - 2.0)
    text = combine.format_table(summary)
    assert "helps" in text and "hurts" in text


# ----------------------------------------------------------------------------------------------
# The command


def test_tiny_runs_end_to_end_and_writes_every_number(tmp_path, capsys):
    out = tmp_path / "combine.json"
    assert cli_main(["combine", "--budget", "tiny", "--jobs", "1", "--json", str(out)]) == 0
    captured = capsys.readouterr()
    assert "mix − tasks" in captured.out and "mlm_nsp − mlm_pairs" in captured.out
    assert "ETA" in captured.err
    table = json.loads(out.read_text(encoding="utf-8"))
    for metric, _, _, arms in combine.METRICS:
        assert set(table["arms"][metric]) == set(arms)
        for cell in table["arms"][metric].values():
            assert math.isfinite(cell["value"]) and math.isfinite(cell["se"])
            assert cell["ci95"][0] <= cell["value"] <= cell["ci95"][1]
            assert cell["seeds"] == list(range(TINY.seeds))
            assert np.mean(cell["by_seed"]) == pytest.approx(cell["value"])
    assert len(table["comparisons"]) == len(combine.COMPARISONS)
    for c in table["comparisons"]:
        assert math.isfinite(c["difference"]) and c["ci95"][0] <= c["difference"] <= c["ci95"][1]
        assert c["verdict"] in ("helps", "hurts", "no clear difference")
    assert table["settings"]["held_out"]["sentences"] == len(combine.held_out_split()[1])


def test_combine_explains_itself_and_refuses_bad_options(tmp_path, capsys, monkeypatch):
    assert cli_main(["combine", "--help"]) == 0
    assert "--budget" in capsys.readouterr().out

    def run(*args, **kwargs):
        raise AssertionError("the run started")

    monkeypatch.setattr(combine, "run", run)
    for argv, flag in ((["--seeds", "0"], "--seeds"), (["--jobs", "0"], "--jobs"),
                       (["--budget", "huge"], "--budget"),
                       (["--json", str(tmp_path / "missing" / "t.json")], "--json"),
                       (["--json", str(tmp_path)], "--json")):
        assert cli_main(["combine", *argv]) == 2
        err = capsys.readouterr().err
        assert flag in err and err.strip().count("\n") == 0 or argv[0] == "--budget", err


# ----------------------------------------------------------------------------------------------
# The NSP documents' own truth


def test_the_document_support_sums_to_one_and_holds_every_sampled_document():
    grammar = default_grammar()
    support = combine.document_support(grammar)
    assert sum(support.values()) == pytest.approx(1.0, abs=1e-12)
    tok = grammar.tokenizer()
    docs = grammar.sample_documents(np.random.default_rng(3), 4000)
    keys = [(tuple(tok.tokenize(a)), tuple(tok.tokenize(b))) for a, b in docs]
    assert all(k in support for k in keys)
    # The most probable document's frequency: 4000 draws, a bound of 5 binomial standard
    # deviations around its P from the tables.
    top = max(support, key=support.get)
    p = support[top]
    count = sum(k == top for k in keys)
    assert abs(count - 4000 * p) < 5 * math.sqrt(4000 * p * (1 - p)) and count > 0


def test_a_document_blank_posterior_by_hand():
    support = combine.document_support(default_grammar())
    # 今天天气不好。 | 今天我们去[MASK]看书了。: after bad weather the place is 商店 .4, 图书馆 .4,
    # 学校 .2, and 看书 happens only at 图书馆: the blank is 图书馆 for sure.
    blank = (("今天", "天气", "不好", "。"), ("今天", "我们", "去", "[MASK]", "看书", "了", "。"))
    assert combine.document_posterior(support, blank) == pytest.approx({"图书馆": 1.0})
    # 今天天气不好。 | 今天我们去[MASK]学习了。: 学习 at 图书馆 (.4 · .3) or 学校 (.2 · .3).
    blank = (("今天", "天气", "不好", "。"), ("今天", "我们", "去", "[MASK]", "学习", "了", "。"))
    assert combine.document_posterior(support, blank) == pytest.approx(
        {"图书馆": 0.12 / 0.18, "学校": 0.06 / 0.18})
    # The first sentence's predicate, given 天气 and an outing to the beach to swim:
    # P(predicate | 天气) · P(海边 | its weather); 游泳 and the person weigh every case alike.
    blank = (("今天", "天气", "[MASK]", "。"), ("今天", "我们", "去", "海边", "游泳", "了", "。"))
    joint = {"很好": 0.5 * 0.2, "不错": 0.2 * 0.2, "很热": 0.1 * 0.6}  # 不好: no 海边
    total = sum(joint.values())
    assert combine.document_posterior(support, blank) == pytest.approx(
        {w: p / total for w, p in joint.items()})


def test_document_blanks_hold_one_mask_off_punctuation():
    blanks = combine.blanked_documents(default_grammar(), 50, np.random.default_rng(0))
    for a, b in blanks:
        words = (*a, *b)
        assert words.count("[MASK]") == 1
    assert {("[MASK]" in a) for a, _ in blanks} == {True, False}  # both sentences get blanks


def test_a_document_fill_reads_the_pair_with_its_segments(tokenizer, monkeypatch):
    seen = []

    def fill(params, cfg, ids, token_type_ids):
        seen.append((ids, token_type_ids))
        probs = np.zeros(len(tokenizer))
        probs[tokenizer.encode("图书馆")[0]] = 1.0
        return [(ids.index(combine.MASK_ID), probs)]

    monkeypatch.setattr(combine, "fill_mask_distributions", fill)
    blank = (("今天", "天气", "不好", "。"), ("今天", "我们", "去", "[MASK]", "看书", "了", "。"))
    kl, accuracy = combine.document_fill_kl_and_accuracy(None, None, tokenizer, [blank])
    np.testing.assert_allclose(kl, [0.0], atol=1e-12)
    assert accuracy.tolist() == [1.0]
    ids, types = seen[0]
    assert types == [0] * 6 + [1] * 8 and len(ids) == 14
    assert ids[0] == combine.CLS_ID and ids[5] == ids[13] == combine.SEP_ID


def test_fill_mask_distributions_reads_the_segments_it_is_given(tokenizer):
    from minillm.generate import fill_mask_distributions, next_token_probs
    from minillm.models import bert_forward

    cfg = combine.configs(TINY, len(tokenizer))["bert"]
    params = MODELS["bert"].init(cfg, np.random.default_rng(0), dtype=np.float64)
    params["wtt"] = np.random.default_rng(1).normal(size=params["wtt"].shape)  # segments differ
    word, other = tokenizer.encode("天气")[0], tokenizer.encode("公园")[0]
    ids = [combine.CLS_ID, word, combine.SEP_ID, combine.MASK_ID, other, combine.SEP_ID]
    types = [0, 0, 0, 1, 1, 1]
    (_, got), = fill_mask_distributions(params, cfg, ids, token_type_ids=types)
    logits, _, _ = bert_forward(params, cfg, np.array([ids]), np.array([types]))
    np.testing.assert_allclose(got, next_token_probs(logits[0, 3]), rtol=1e-12)
    (_, one_segment), = fill_mask_distributions(params, cfg, ids)
    assert np.abs(got - one_segment).max() > 1e-3
