"""The Seq2Seq path: teacher forcing, the three training objectives, and the tutorial's 总结."""

import numpy as np
import pytest

from minillm.demo import run_seq2seq_demo
from minillm.grammar import default_grammar
from minillm.layers import IGNORE_INDEX
from minillm.models import Seq2SeqConfig, seq2seq_forward, seq2seq_init
from minillm.objectives import seq2seq
from minillm.options import OptionError
from minillm.tokenizer import BOS_ID, EOS_ID, PAD_ID
from minillm.config import TrainConfig
from minillm.data import make_data
from minillm.train import train

GRAMMAR = default_grammar()
TOK = GRAMMAR.tokenizer()


def tiny(n_ctx, n_embd=16):
    """A one-block encoder-decoder over the grammar's vocabulary."""
    return Seq2SeqConfig(vocab_size=len(TOK), n_ctx=n_ctx, n_embd=n_embd, n_head=2, n_enc_layer=1,
                         n_dec_layer=1)


def test_teacher_forcing_shifts_the_target_right_behind_the_start_token():
    batch = seq2seq.make_batch([([11, 12, 3], [21, 22, EOS_ID]), ([13, 3], [23, EOS_ID])])
    np.testing.assert_array_equal(batch["dec_in"], [[BOS_ID, 21, 22], [BOS_ID, 23, PAD_ID]])
    np.testing.assert_array_equal(batch["targets"], [[21, 22, EOS_ID], [23, EOS_ID, IGNORE_INDEX]])
    np.testing.assert_array_equal(batch["src"], [[11, 12, 3], [13, 3, PAD_ID]])
    np.testing.assert_array_equal(batch["dec_mask"], [[1, 1, 1], [1, 1, 0]])


@pytest.mark.parametrize("objective", ["t5", "bart", "tasks", "mix"])
def test_the_ignore_index_never_reaches_a_decoder_input(objective):
    cfg = Seq2SeqConfig(vocab_size=len(TOK), n_ctx=48, n_embd=16, n_head=2, n_enc_layer=1, n_dec_layer=1)
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


def test_bart_trains_and_lowers_its_loss():
    cfg = Seq2SeqConfig(vocab_size=len(TOK), n_ctx=48, n_embd=32, n_head=2, n_enc_layer=1, n_dec_layer=1)
    train_cfg = TrainConfig(steps=60, batch_size=16, objective="bart")
    state = train(cfg, train_cfg, make_data(train_cfg, cfg, TOK), TOK, log=lambda line: None)
    # From about log V = 5.1 (untrained) to well below it.
    assert state["history"][0] > 4.5 and np.mean(state["history"][-10:]) < 3.5


def test_t5_training_learns_to_read_the_words_around_a_middle_sentinel():
    # Filling 今天<extra_id_0>很好 takes minutes of training (walkthrough.md, T5); in seconds a
    # tiny model learns what that rests on. At n_ctx 32 a packed example has S = 2 spans, the
    # first inside the source and the second at its end. The first span's tokens are scored
    # with the example's own source and with another example's: a decoder that ignores the
    # source scores both alike (as it does in its first few hundred steps); after 1200 steps
    # its own source must give at least 0.5 nats per token less, a factor e^0.5 = 1.65 on the
    # probability of the hidden words. (Unpacked, as before, there was no middle span at all.)
    cfg = tiny(32, n_embd=32)
    train_cfg = TrainConfig(steps=1200, batch_size=16, objective="t5")
    data = make_data(train_cfg, cfg, TOK)
    state = train(cfg, train_cfg, data, TOK, log=lambda line: None)
    assert state["history"][0] > 4.5 and np.mean(state["history"][-10:]) < 3.5  # from log V

    rng = np.random.default_rng(123)
    _, examples = data.sample(rng, 512)
    pairs = [seq2seq.corrupt(ids, rng, TOK, "t5") for ids in examples]
    swapped = [(other[0], tgt) for (_, tgt), other in zip(pairs, pairs[1:] + pairs[:1])]

    def first_span_loss(pairs):
        batch = seq2seq.make_batch(pairs)
        for row, (src, tgt) in enumerate(pairs):
            end = tgt.index(TOK.sentinel_id(1))  # <extra_id_0> w ... w <extra_id_1> ...
            assert src[src.index(TOK.sentinel_id(0)) + 1] != TOK.sentinel_id(1)  # a middle span
            batch["targets"][row, :1] = IGNORE_INDEX  # <extra_id_0> itself
            batch["targets"][row, end:] = IGNORE_INDEX  # the span at the end, and [EOS]
        return seq2seq.loss(state["params"], cfg, batch, "mean")[0]

    assert first_span_loss(pairs) < first_span_loss(swapped) - 0.5


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


def sentinel_count(row):
    return sum(TOK.sentinel_id(0) <= t <= TOK.sentinel_id(TOK.n_sentinels - 1) for t in row)


@pytest.mark.parametrize("objective", ["t5", "mix"])
def test_t5_corrupts_packed_sequences_that_fill_the_context_with_several_spans(objective):
    # n_ctx 48 packs T = 52 tokens of sentences (t5_input_and_target_lengths(48)): N = 8 noise
    # tokens in S = 3 spans, so a source of (52 − 8) + 3 + 1 = 48 tokens and a target of
    # 8 + 3 + 1 = 12. One sentence alone (~8 tokens) would get one span, at its end.
    cfg = tiny(48)
    train_cfg = TrainConfig(objective=objective)
    data = make_data(train_cfg, cfg, TOK)
    rng = np.random.default_rng(0)
    _, examples = data.sample(rng, 64)
    batch = seq2seq.training_batch(examples, None, rng, TOK, train_cfg)
    span_rows = [b for b in range(64) if sentinel_count(batch["src"][b]) > 0]
    assert len(span_rows) == 64 if objective == "t5" else 10 <= len(span_rows) <= 54
    for b in span_rows:
        assert sentinel_count(batch["src"][b]) == 3 and batch["src_mask"][b].sum() == 48
        assert batch["dec_mask"][b].sum() == 12


def test_the_tutorials_sentence_is_corrupted_at_every_position_as_often():
    # A text file of the tutorial's sentence 34 times: 306 tokens, packed at n_ctx 32 into 9
    # pieces of T = 34 tokens (N = 5 noise tokens in S = 2 spans). 34 = 7 (mod 9) and 7 is
    # prime to 9, so the 9 pieces start at the sentence's 9 words: by symmetry every word is
    # noise equally often, 5/9 of a token per example. Exact law of X_i, the number of noise
    # tokens that are word i in one example: the piece (9, uniform) and the mask (the 4 · 28
    # noise/non-noise compositions, uniform: reference 6) enumerated. Unpacked (before), the
    # sentence was one 9-token example whose one noise token was always the final 。.
    sentence = TOK.encode("今天天气很好，我们去公园玩。")
    cfg = tiny(32)
    train_cfg = TrainConfig(objective="t5")
    data = make_data(train_cfg, cfg, TOK, documents=["今天天气很好，我们去公园玩。"] * 34)
    T, N = 34, 5
    masks = [[False] * b1 + [True] * a1 + [False] * (T - N - b1) + [True] * (N - a1)
             for a1 in range(1, N) for b1 in range(1, T - N)]
    word_at = [[(T * piece + t) % 9 for t in range(T)] for piece in range(9)]
    X = np.array([np.bincount([w for w, m in zip(words, mask) if m], minlength=9)
                  for words in word_at for mask in masks])  # (9 · 112, 9), equally likely
    mean, sd = X.mean(axis=0), X.std(axis=0)
    np.testing.assert_allclose(mean, 5 / 9)

    rng, n = np.random.default_rng(7), 20000
    counts = np.zeros(9)
    for _ in range(n // 500):
        _, examples = data.sample(rng, 500)
        batch = seq2seq.training_batch(examples, None, rng, TOK, train_cfg)
        for target in batch["targets"]:
            for token in target:
                if token in sentence:
                    counts[sentence.index(token)] += 1
    assert np.all(np.abs(counts / n - mean) <= 5 * sd / np.sqrt(n)), counts / n


def test_bart_sources_fit_the_context_however_many_inserts_are_drawn():
    # Pieces of a text file are n_ctx − 1 = 3 tokens; text infilling masks ceil(0.9) = 1 and a
    # first Poisson draw of 0 (probability e^-3 = 5%) adds an insert and another span: a source
    # of 5 tokens with [EOS], one more than n_ctx. text_infilling's max_length redraws those.
    cfg = tiny(4, n_embd=8)
    train_cfg = TrainConfig(objective="bart", steps=5, batch_size=64, log_every=5)
    data = make_data(train_cfg, cfg, TOK, documents=["今天天气很好，我们去公园玩。"] * 20)
    state = train(cfg, train_cfg, data, TOK, log=lambda line: None)  # 320 pieces: ~16 redraws
    assert len(state["history"]) == 5
    rng = np.random.default_rng(0)
    for _ in range(20):
        _, examples = data.sample(rng, 64)
        batch = seq2seq.training_batch(examples, None, rng, TOK, train_cfg, n_ctx=4)
        assert batch["src"].shape[1] <= 4 and batch["dec_in"].shape[1] <= 4


def test_t5_takes_the_longest_context_its_sentinels_serve_and_refuses_a_longer_one():
    # 20 sentinels serve raw lengths up to 409 (N = 61, S = 20), whose sources are 369 tokens;
    # n_ctx 370 packs 410 tokens (N = 62, S = 21) and is refused, naming the n_ctx that works.
    documents = ["今天天气很好，我们去公园玩。" * 409]  # 9 · 409 tokens: 9 full pieces
    train_cfg = TrainConfig(objective="t5")
    data = make_data(train_cfg, tiny(369, n_embd=8), TOK, documents=documents)
    _, examples = data.sample(np.random.default_rng(0), 4)
    batch = seq2seq.training_batch(examples, None, np.random.default_rng(0), TOK, train_cfg)
    assert [sentinel_count(row) for row in batch["src"]] == [20] * 4
    assert batch["src"].shape[1] == 369
    for n_ctx in (370, 411):
        with pytest.raises(OptionError, match=rf"n_ctx={n_ctx}.* needs 2\d sentinels; the "
                                              r"vocabulary has 20: use n_ctx=369 or less"):
            make_data(train_cfg, tiny(n_ctx, n_embd=8), TOK, documents=documents)
        with pytest.raises(OptionError, match=rf"n_ctx={n_ctx}"):
            make_data(train_cfg, tiny(n_ctx, n_embd=8), TOK)  # the grammar too


def test_the_loss_is_minus_the_sum_of_the_per_step_log_probabilities():
    # L = -Σ_t log P(y_t | y_<t, x; θ): each term computed on its own, by running the decoder
    # on the prefix [BOS] y_1 .. y_{t-1} alone and taking the log-softmax of its last logits at
    # y_t. Two pairs of different lengths, so padding is in the batch.
    cfg = tiny(16)
    params = seq2seq_init(cfg, np.random.default_rng(0), dtype=np.float64)
    noise = np.random.default_rng(1)
    params = {k: v + 0.3 * noise.standard_normal(v.shape) for k, v in params.items()}
    pairs = [(TOK.encode("今天天气很好。", add_eos=True), TOK.encode("天气很好", add_eos=True)),
             (TOK.encode("我们去公园玩。", add_eos=True), TOK.encode("公园", add_eos=True))]
    per_pair = []
    for src, tgt in pairs:
        terms = []
        for t in range(len(tgt)):
            logits, _ = seq2seq_forward(params, cfg, np.array([src]),
                                        np.array([[BOS_ID, *tgt[:t]]]))
            z = logits[0, -1]  # (V,) the prediction of y_t
            terms.append(z[tgt[t]] - z.max() - np.log(np.exp(z - z.max()).sum()))
        total, per_step = seq2seq.log_prob(params, cfg, src, tgt)
        np.testing.assert_allclose(per_step, terms, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(total, sum(terms), rtol=1e-12)
        per_pair.append(sum(terms))
    batch = seq2seq.make_batch(pairs)
    L, n, _ = seq2seq.loss(params, cfg, batch)
    assert n == sum(len(tgt) for _, tgt in pairs)
    np.testing.assert_allclose(L, -sum(per_pair), rtol=1e-12)
    np.testing.assert_allclose(seq2seq.loss(params, cfg, batch, "mean")[0], -sum(per_pair) / n,
                               rtol=1e-12)
    assert -sum(per_pair) > 1.0  # far from a loss that is zero for every parameter
