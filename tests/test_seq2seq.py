"""The Seq2Seq path: teacher forcing, the three training objectives, and the tutorial's 总结."""

import numpy as np
import pytest

from minillm.demo import run_seq2seq_demo
from minillm.grammar import default_grammar
from minillm.layers import IGNORE_INDEX
from minillm.models import Seq2SeqConfig
from minillm.objectives import seq2seq
from minillm.tokenizer import BOS_ID, EOS_ID, PAD_ID
from minillm.train import TrainConfig, make_data, train

GRAMMAR = default_grammar()
TOK = GRAMMAR.tokenizer()


def test_teacher_forcing_shifts_the_target_right_behind_the_start_token():
    batch = seq2seq.make_batch([([11, 12, 3], [21, 22, EOS_ID]), ([13, 3], [23, EOS_ID])])
    np.testing.assert_array_equal(batch["dec_in"], [[BOS_ID, 21, 22], [BOS_ID, 23, PAD_ID]])
    np.testing.assert_array_equal(batch["targets"], [[21, 22, EOS_ID], [23, EOS_ID, IGNORE_INDEX]])
    np.testing.assert_array_equal(batch["src"], [[11, 12, 3], [13, 3, PAD_ID]])
    np.testing.assert_array_equal(batch["dec_mask"], [[1, 1, 1], [1, 1, 0]])


@pytest.mark.parametrize("objective", ["t5", "bart", "tasks", "mix"])
def test_the_ignore_index_never_reaches_a_decoder_input(objective):
    cfg = Seq2SeqConfig(vocab_size=len(TOK), n_ctx=48, n_embd=16, n_head=2, n_layer=1, n_dec_layer=1)
    train_cfg = TrainConfig(objective=objective)
    data = make_data(train_cfg, cfg, TOK)
    rng = np.random.default_rng(0)
    for _ in range(5):
        _, examples = data.sample(rng, 16)
        batch = seq2seq.training_batch(examples, None, rng, TOK, train_cfg)
        for key in ("src", "dec_in"):
            assert batch[key].min() >= 0, key
        real = batch["targets"] != IGNORE_INDEX
        np.testing.assert_array_equal(real, batch["dec_mask"] == 1)
        # Every target row ends with [EOS]; every decoder row starts with the start token.
        last = real.sum(axis=1) - 1
        assert np.all(batch["targets"][np.arange(16), last] == EOS_ID)
        assert np.all(batch["dec_in"][:, 0] == BOS_ID)


def test_a_t5_example_merges_back_into_its_sentence():
    sentence = TOK.encode("今天天气很好，我们去公园玩。")
    src, tgt = seq2seq.corrupt(sentence, np.random.default_rng(3), TOK, "t5")
    sentinels = {TOK.sentinel_id(k) for k in range(TOK.n_sentinels)}
    pieces, current = {}, None
    for token in tgt[:-1]:
        if token in sentinels:
            current = pieces.setdefault(token, [])
        else:
            current.append(token)
    rebuilt = [t for s in src[:-1] for t in (pieces[s] if s in sentinels else [s])]
    assert rebuilt == sentence


@pytest.mark.parametrize("objective", ["t5", "bart"])
def test_denoising_objectives_train_and_lower_their_loss(objective):
    cfg = Seq2SeqConfig(vocab_size=len(TOK), n_ctx=48, n_embd=32, n_head=2, n_layer=1, n_dec_layer=1)
    train_cfg = TrainConfig(steps=60, batch_size=16, objective=objective)
    state = train(cfg, train_cfg, make_data(train_cfg, cfg, TOK), TOK, log=lambda line: None)
    # From about log V = 5.1 (untrained) to well below it.
    assert state["history"][0] > 4.5 and np.mean(state["history"][-10:]) < 3.5


def test_the_demo_summarises_the_tutorials_sentence():
    result = run_seq2seq_demo(log=lambda line: None)
    (text, output, truth), *_ = result["outputs"]
    assert text == "总结：今天天气很好，我们去公园玩。"
    assert truth == "今天我们去公园玩了。"
    assert output == truth


def test_task_pairs_have_exact_answers():
    rng = np.random.default_rng(0)
    for src, tgt in GRAMMAR.sample_task_pairs(rng, 50):
        assert GRAMMAR.task_answer(src) == tgt
        assert "[UNK]" not in TOK.tokenize(src + tgt)
        assert TOK.decode(TOK.encode(tgt)) == tgt
