"""``python -m minillm compare`` (minillm/compare.py) and the families' interfaces
(minillm/task_formats.py): formats, matched sizes, FLOPs, and a tiny run end to end."""

import json
from dataclasses import replace

import numpy as np
import pytest

from minillm import capabilities as cap
from minillm import compare
from minillm.cli import main as cli_main
from minillm.task_formats import BERTFormat, GPTFormat, Seq2SeqFormat
from minillm.layers import IGNORE_INDEX
from minillm.tokenizer import BOS_ID, CLS_ID, EOS_ID, MASK_ID, PAD_ID, SEP_ID


@pytest.fixture(scope="module")
def vocab():
    return compare.make_vocabulary()


@pytest.mark.parametrize("name", ["quick", "full"])
def test_the_three_families_have_the_same_parameters_within_10_percent(vocab, name):
    budget = compare.BUDGETS[name]
    configs = compare.matched_configs(len(vocab.tokenizer), budget)
    counts = {c: compare.n_params(f, configs[c])
              for c, f in (("clm", "gpt"), ("mlm", "bert"), ("seq2seq", "seq2seq"))}
    assert max(counts.values()) <= 1.1 * min(counts.values()), counts
    assert configs["seq2seq"].n_enc_layer + configs["seq2seq"].n_dec_layer == budget.n_layer


def test_gpt_trains_on_the_answer_only(vocab):
    way = GPTFormat(vocab, None)
    ex = cap.Example(("小明", "去", "哪里"), ("公园",))
    batch = way.batch("qa", [ex])
    ids = vocab.ids
    assert batch["inputs"][0].tolist() == [BOS_ID, *ids(ex.source), SEP_ID, *ids(ex.target)]
    # position t predicts token t + 1: only the answer and [EOS] are targets
    assert batch["targets"][0].tolist() == [IGNORE_INDEX] * 4 + [*ids(ex.target), EOS_ID]
    # generation: the whole document is the target
    doc = cap.Example(("昨天",), ("天气", "很好", "。"))
    batch = way.batch("generation", [doc])
    assert batch["targets"][0].tolist() == [*ids(doc.source + doc.target), EOS_ID]


def test_bert_fills_a_fixed_number_of_slots(vocab):
    from minillm.models import BertConfig

    cfg = BertConfig(vocab_size=len(vocab.tokenizer), n_ctx=16, n_embd=8, n_head=2)
    way = BERTFormat(vocab, cfg, {"qa": 4, "comprehension": 1})
    ex = cap.Example(("小明", "去", "哪里"), ("公园",))
    batch = way.batch("qa", [ex])
    ids = vocab.ids
    assert batch["inputs"][0].tolist() == [CLS_ID, *ids(ex.source), SEP_ID] + [MASK_ID] * 4 + [
        SEP_ID]
    assert batch["labels"][0].tolist() == [IGNORE_INDEX] * 5 + [*ids(("公园",)), EOS_ID] + [
        IGNORE_INDEX] * 3
    blank = cap.Example(("今天", cap.MASK, "很好"), ("天气",))
    batch = way.batch("comprehension", [blank])
    assert batch["labels"][0].tolist() == [IGNORE_INDEX, IGNORE_INDEX, *ids(("天气",)),
                                           IGNORE_INDEX, IGNORE_INDEX]
    # A long source leaves fewer slots: the row still fits n_ctx.
    long = cap.Example(("小明",) * 12, ("公园",))
    row, slots = way.row("qa", long.source)
    assert len(row) <= cfg.n_ctx and len(slots) == cfg.n_ctx - 12 - 3


def test_the_encoder_decoder_blank_is_its_pretraining_blank(vocab):
    t5 = Seq2SeqFormat(vocab, None, "t5")
    bart = Seq2SeqFormat(vocab, None, "bart")
    source = ("今天", cap.MASK, "很好")
    assert t5.source("comprehension", source)[1] == vocab.tokenizer.sentinel_id(0)
    assert bart.source("comprehension", source)[1] == MASK_ID
    assert t5.source("comprehension", source)[-1] == EOS_ID


def test_training_flops_count_each_matmul(vocab):
    from minillm.models import GPTConfig

    cfg = GPTConfig(vocab_size=100, n_ctx=8, n_embd=4, n_head=2, n_layer=1)
    batch = {"inputs": np.zeros((2, 8), dtype=np.int64)}
    # By hand, per position: qkv 2·4·12 = 96, projection 2·4·4 = 32, scores and weighted sum
    # 2·2·8·4 = 128, feed-forward 2·2·4·16 = 256, output layer 2·4·100 = 800 -> 1312; 16
    # positions; backward twice the forward.
    assert compare.training_flops("clm", cfg, batch) == 3 * 16 * 1312


def test_compare_runs_end_to_end_and_writes_the_json(tmp_path, capsys):
    out = tmp_path / "table.json"
    status = cli_main(["compare", "--budget", "tiny", "--json", str(out)])
    assert status == 0
    printed = capsys.readouterr().out
    for name in cap.CAPABILITIES.values():
        assert name in printed
    table = json.loads(out.read_text(encoding="utf-8"))
    headline = [r for r in table["rows"] if r["headline"]]
    assert {(r["capability"], r["objective"]) for r in headline} == {
        (name, c) for name in cap.CAPABILITIES.values() for c in cap.OBJECTIVES}
    for r in headline:
        assert set(r) >= {"capability", "objective", "metric", "value", "ci95", "stars",
                          "verdict"}
        assert r["stars"] == cap.STARS[r["task"]][r["objective"]]
        assert r["ci95"][0] <= r["value"] <= r["ci95"][1]
        assert 0.0 <= r["value"] <= 1.0
        assert r["verdict"] in ("agrees", "disagrees", "unclear")
    assert table["floor"]["entropy_per_document"] > 0
    assert set(table["compute"]) == set(cap.OBJECTIVES)
    assert table["settings"]["finished_seeds"] == [0]


def test_the_same_seed_gives_the_same_table_in_one_process_or_several():
    budget = compare.BUDGETS["tiny"]
    one = compare.summarize(compare.run(budget, log=lambda line: None, jobs=1), budget, "t5")
    two = compare.summarize(compare.run(budget, log=lambda line: None, jobs=2), budget, "t5")
    assert one["rows"] == two["rows"]


def test_ctrl_c_keeps_the_finished_seeds(monkeypatch, capsys, tmp_path):
    shown = []

    def show(self, what):
        shown.append(what)
        if what.startswith("seed 1/2: seq2seq done"):
            self.stop_next = True
        elif getattr(self, "stop_next", False):
            raise KeyboardInterrupt

    monkeypatch.setattr(compare.Progress, "show", show)
    monkeypatch.setitem(compare.BUDGETS, "tiny", replace(compare.BUDGETS["tiny"], seeds=2))
    out = tmp_path / "t.json"
    status = cli_main(["compare", "--budget", "tiny", "--jobs", "1", "--json", str(out)])
    assert status == 130
    table = json.loads(out.read_text(encoding="utf-8"))
    assert table["settings"]["finished_seeds"] == [0]  # the first seed's three models
    assert len([r for r in table["rows"] if r["headline"]]) == 15
    assert all(r["seeds"] == [0] for r in table["rows"])


def test_compare_explains_itself_and_refuses_bad_options(capsys):
    assert cli_main(["compare", "--help"]) == 0
    assert "--budget" in capsys.readouterr().out
    assert cli_main(["compare", "--seeds", "0"]) == 2
    assert "--seeds" in capsys.readouterr().err
    assert cli_main(["compare", "--budget", "huge"]) == 2
    assert "--budget" in capsys.readouterr().err
    assert cli_main(["compare", "--jobs", "0"]) == 2
    assert "--jobs" in capsys.readouterr().err


def test_a_json_path_that_cannot_be_written_is_refused_before_the_run(tmp_path, capsys,
                                                                      monkeypatch):
    def run(*args, **kwargs):
        raise AssertionError("the run started")

    monkeypatch.setattr(compare, "run", run)
    for path in (tmp_path / "missing" / "t.json", tmp_path):
        assert cli_main(["compare", "--budget", "tiny", "--json", str(path)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "--json" in err


# ----------------------------------------------------------------------------------------------
# The families' decoders against minillm's own generators (a random tiny model of each)


def _tiny(family, vocab):
    from minillm.models import MODELS

    cfg = compare.matched_configs(len(vocab.tokenizer), compare.BUDGETS["tiny"])[family]
    model = {"clm": "gpt", "mlm": "bert", "seq2seq": "seq2seq"}[family]
    return cfg, MODELS[model].init(cfg, np.random.default_rng(0), dtype=np.float64)


def test_gpt_greedy_answers_are_what_the_cached_generator_writes(vocab):
    from minillm.generate import generate

    cfg, params = _tiny("clm", vocab)
    way = GPTFormat(vocab, cfg)
    sources = [("小明", "去", "哪里"), ("昨天",), ("今天", "天气", "很好", "。", "小红")]
    answers = way.answer(params, "qa", [cap.Example(s, ()) for s in sources])
    for source, answer in zip(sources, answers):
        prompt = way.prompt("qa", source)[1:]  # generate puts [BOS] in front itself
        expected = generate(params, cfg, prompt, cfg.n_ctx, None, temperature=0)
        expected = expected[: expected.index(EOS_ID)] if EOS_ID in expected else expected
        assert answer == vocab.words(expected)


def test_encoder_decoder_greedy_answers_are_what_the_beam_search_of_width_1_writes(vocab):
    from minillm.generate import seq2seq_greedy

    cfg, params = _tiny("seq2seq", vocab)
    way = Seq2SeqFormat(vocab, cfg, "t5")
    sources = [("小明", "去", "哪里"), ("昨天",), ("今天", "天气", "很好", "。", "小红")]
    answers = way.answer(params, "qa", [cap.Example(s, ()) for s in sources])
    for source, answer in zip(sources, answers):
        ids, _ = seq2seq_greedy(params, cfg, np.array(way.source("qa", source)),
                                max_len=cfg.n_ctx - 1)
        ids = list(ids)
        expected = ids[: ids.index(EOS_ID)] if EOS_ID in ids else ids
        assert answer == vocab.words(expected)


def test_bert_reads_each_slot_up_to_the_first_eos(vocab):
    cfg, params = _tiny("mlm", vocab)
    way = BERTFormat(vocab, cfg, {"qa": 5})
    # The MLM head's logits, set by hand: the slots say 公园 水 [EOS] 公园 [PAD].
    ex = cap.Example(("小明", "去", "哪里"), ("公园",))
    row, slots = way.row("qa", ex.source)
    logits = np.zeros((1, len(row), len(vocab.tokenizer)))
    park, water = vocab.ids(("公园", "水"))
    for k, token in zip(slots, [park, water, EOS_ID, park, PAD_ID]):
        logits[0, k, token] = 1.0
    way._slot_logits = lambda params, rows: logits
    assert way.answer(params, "qa", [ex]) == [("公园", "水")]


def test_the_unseen_pairs_items_come_from_the_compositional_split():
    from minillm.world import default_world

    budget = compare.BUDGETS["tiny"]
    _, _, _, tests, _ = compare._setting(budget, "t5")
    world = default_world()
    for ex in tests["translation", "compositional"]:
        assert world.split_of(ex.source) == "compositional"
    for ex in tests["translation"]:
        assert world.split_of(ex.source) == "test"


def test_the_encoder_decoder_learns_generation_from_an_empty_source(vocab):
    form = Seq2SeqFormat(vocab, None, "t5")
    doc = cap.Example(("昨天",), ("天气", "很好", "。"))  # a document cut at a random point
    batch = form.batch("generation", [doc])
    assert batch["src"][0].tolist() == [EOS_ID]  # as it is when a document is generated
    assert batch["targets"][0].tolist() == [*vocab.ids(doc.source + doc.target), EOS_ID]


def test_t5_reads_the_same_words_as_the_others_its_left_over_carried(vocab):
    from minillm.world import default_world

    world = default_world()
    plain = compare.WorldText(world, vocab)
    packed = compare.WorldText(world, vocab, packed=70)
    rng_a, rng_b = np.random.default_rng(0), np.random.default_rng(0)
    words = sum(len(d) for _ in range(20) for d in plain.sample(rng_a, 32))
    rows = [row for _ in range(20) for row in packed.sample(rng_b, 32)]
    assert all(len(row) == 70 for row in rows)
    # The same documents, end to end: every word is in a row or waiting for the next step.
    assert len(rows) * 70 + len(packed.left_over) == words


def test_bert_writes_past_the_longest_training_answer_until_eos(vocab):
    cfg, params = _tiny("mlm", vocab)
    form = BERTFormat(vocab, cfg, {"generation": 3})  # the longest training rest: 2 words
    word = vocab.ids(("天气",))[0]

    def slot_logits(params, rows):  # every slot says 天气 until 8 words are written
        logits = np.zeros((len(rows), max(map(len, rows)), len(vocab.tokenizer)))
        for b, row in enumerate(rows):
            logits[b, :, EOS_ID if row.count(word) >= 8 else word] = 1e3
        return logits

    form._slot_logits = slot_logits
    assert form.generate(params, 2, np.random.default_rng(0)) == [("天气",) * 8] * 2
