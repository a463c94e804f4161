"""In-context learning: the tasks, the corpus, k-shot evaluation and induction scores.

Oracles here are written apart from minillm/icl.py: the corpus's words by walking the world's
automaton, the oracle predictor by reading the task off the first demonstration, the induction
pattern of a repeated sequence by its closed form (the successor of position i > n is i − n + 1).
"""

import math
from collections import Counter

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from minillm import icl, task_formats, world
from minillm.icl import FIXED_TASKS, INPUTS, LABEL, LABELS, SEPARATOR, TASKS
from minillm.models import GPTConfig, gpt_init
from minillm.tokenizer import BOS_ID, EOS_ID

VOCAB = icl.vocabulary()


def tiny_gpt(seed=0, n_ctx=None):
    cfg = GPTConfig(vocab_size=len(VOCAB.tokenizer), n_ctx=n_ctx or icl.context_needed(),
                    n_embd=16, n_head=2, n_layer=2)
    return gpt_init(cfg, np.random.default_rng(seed), dtype=np.float64), cfg


def split_pairs(words):
    """``x1 y1 ； … ； xn yn`` (or a prompt ending ``x``) -> [(x, y words)], parsed."""
    pairs, segment = [], []
    for w in tuple(words) + (SEPARATOR,):
        if w == SEPARATOR:
            pairs.append((segment[0], tuple(segment[1:])))
            segment = []
        else:
            segment.append(w)
    return pairs


def is_list(document):
    """A demonstration list, not a world document (whose sentences all end with 。)."""
    return "。" not in document


def task_of_pair(x, y):
    """The tasks that can answer y to x."""
    return [t for t in FIXED_TASKS if icl.answer(t, x) == y] + ([LABEL] if y in
                                                                 [(d,) for d in LABELS] else [])


def oracle(prompt):
    """Reads the task off the first demonstration and answers the query as it does (a label
    query: the label of its demonstration)."""
    pairs = split_pairs(prompt)
    (task,) = task_of_pair(*pairs[0])
    query = pairs[-1][0]
    if task == LABEL:
        return dict(pairs[:-1])[query]
    return icl.answer(task, query)


# ----------------------------------------------------------------------------------------------
# The tasks


def test_four_answers_differ_for_every_input():
    assert len(INPUTS) == 25 and len(set(INPUTS)) == 25
    for x in INPUTS:
        answers = [icl.answer(t, x) for t in FIXED_TASKS]
        assert len(set(answers)) == 4, (x, answers)
        assert all(len(y) >= 1 for y in answers)
        assert not set(answers) & {(d,) for d in LABELS}  # a label names the label task


def test_answers_by_hand():
    # From world.py's tables: ENGLISH, ENGLISH_ITEMS' singular, GENDER, ACTIVITIES, MEASURE_OF.
    assert icl.answer("translate", "公园") == ("the", "park")
    assert icl.answer("translate", "冰淇淋") == ("ice", "cream")
    assert icl.answer("translate", "小雪") == ("xiaoxue",)
    assert [icl.answer("category", x) for x in ("小明", "学校", "笔")] == [("人",), ("地方",),
                                                                          ("东西",)]
    assert icl.answer("copy", "图书馆") == ("图书馆",)
    collocations = {"小明": "他", "小红": "她", "公园": "玩", "海边": "游泳", "商店": "买东西",
                    "图书馆": "看书", "书店": "看书", "学校": "上课", "水": "瓶", "帽子": "顶",
                    "本子": "本"}
    for x, y in collocations.items():
        assert icl.answer("collocation", x) == (y,), x
    assert icl.most_probable({"a": 0.5, "b": 0.5}) == "a"  # ties: the first in table order
    with pytest.raises(ValueError, match="task"):
        icl.answer("reverse", "小明")
    with pytest.raises(ValueError, match="task"):  # a label exists only in its list
        icl.answer(LABEL, "小明")
    with pytest.raises(ValueError, match="x must be"):
        icl.answer("copy", "天气")


def test_vocabulary_holds_every_word_as_one_token():
    tok = VOCAB.tokenizer
    words = set(world.WORDS) | set(world.ENGLISH_WORDS) | set(icl.NEW_WORDS)
    assert all(w in tok.id_of for w in words)
    assert all(not tok.is_special(tok.id_of[w]) for w in words)
    for w in icl.NEW_WORDS:  # the new words are tokens of their own, as longest match reads them
        assert tok.tokenize(w) == [w]
    doc = icl.list_words("translate", ("水", "小明"))
    assert VOCAB.words(VOCAB.ids(doc)) == doc


def test_corpus_words_are_the_words_the_corpus_holds():
    # Walk the world's automaton: every word on some path of a document.
    w0 = world.default_world()
    seen, todo, document_words = {w0.start}, [w0.start], set()
    while todo:
        state = todo.pop()
        for word, (_, nxt) in w0.table(state).items():
            if nxt is None:
                continue
            document_words.add(word)
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    answered = {w for t in FIXED_TASKS for x in INPUTS for w in icl.answer(t, x)}
    assert set(LABELS) <= document_words  # the labels are the world's counts
    assert set(icl.corpus_words()) == document_words | answered
    assert SEPARATOR not in icl.corpus_words()


# ----------------------------------------------------------------------------------------------
# The corpus

N_DOCS = 20_000
# The 9 inputs with the longest translations (3, 3, 2 × 6 words and 1).
LONGEST = ("水", "果汁", "公园", "海边", "商店", "图书馆", "书店", "冰淇淋", "小明")
DOCS = icl.corpus_documents(np.random.default_rng(15), N_DOCS)


def within(count, n, p, sigmas=5):
    """count out of n is within `sigmas` binomial standard deviations of n p."""
    return abs(count - n * p) <= sigmas * math.sqrt(n * p * (1 - p))


def list_task(pairs):
    """The one task a whole list is consistent with (a label list: labels, one per input)."""
    consistent = [t for t in FIXED_TASKS if all(icl.answer(t, x) == y for x, y in pairs)]
    if all(y in [(d,) for d in LABELS] for _, y in pairs) and len(dict(pairs)) == len(
            set(pairs)):
        consistent.append(LABEL)
    assert len(consistent) == 1, pairs
    return consistent[0]


def test_corpus_kinds_and_task_frequencies():
    lists = [d for d in DOCS if is_list(d)]
    # P_LIST = 1/2 by construction: a list with probability 1/2, else a world document.
    assert within(len(lists), N_DOCS, 0.5)
    repeated = 0
    for d in DOCS:
        if is_list(d):
            continue
        if SEPARATOR in d:  # d ； d: the same world document twice
            cut = d.index(SEPARATOR)
            assert d[:cut] == d[cut + 1:], d
            d, repeated = d[:cut], repeated + 1
        assert world.default_world().log_prob(d) > -math.inf, d
    # P_REPEAT = 0.2 of the world documents are written twice.
    assert within(repeated, N_DOCS - len(lists), icl.P_REPEAT)
    tasks = Counter(list_task(split_pairs(d)) for d in lists)
    for t in TASKS:  # drawn uniformly: 1/5 each
        assert within(tasks[t], len(lists), 0.2), tasks


def test_list_sizes_and_inputs():
    lists = [split_pairs(d) for d in DOCS if is_list(d)]
    sizes = Counter(len(pairs) for pairs in lists)
    assert set(sizes) == set(range(1, 10))
    for size in range(1, 10):  # uniform in 1..9
        assert within(sizes[size], len(lists), 1 / 9), sizes
    repeats = 0
    for pairs in lists:
        inputs = [x for x, _ in pairs]
        assert set(inputs) <= set(INPUTS)
        if list_task(pairs) != LABEL:
            assert len(set(inputs)) == len(inputs)  # without replacement
        else:  # at most MAX_LABELLED inputs, which come back
            assert len(set(inputs)) <= icl.MAX_LABELLED
            repeats += len(inputs) - len(set(inputs))
    assert repeats > 0
    assert max(len(d) for d in DOCS) <= icl.context_needed() - 1


def test_expected_document_tokens_is_the_corpus_mean():
    # The exact expectation against the mean over DOCS (+1 for [EOS]): within 5 standard errors.
    lengths = np.array([len(d) + 1 for d in DOCS], dtype=float)
    assert abs(lengths.mean() - icl.expected_document_tokens()) <= \
        5 * lengths.std() / math.sqrt(len(lengths))


def test_list_format_and_longest_list():
    assert icl.list_words("copy", ("书",)) == ("书", "书")
    assert icl.list_words("category", ("小明", "笔")) == ("小明", "人", SEPARATOR, "笔", "东西")
    # By hand: translation of 水 and 果汁 (3 words each), 公园 海边 商店 图书馆 书店 冰淇淋
    # (2 each) and one more (1): 9 inputs + 19 answer words + 8 separators = 36.
    assert icl.max_list_tokens() == 36
    assert len(icl.list_words("translate", LONGEST)) == 36
    # A world document has at most 22 words (world.py's docstring), written twice with ；
    # between: 45; [BOS] in front.
    assert icl.context_needed() == 46


def test_corpus_is_reproducible_and_checks_arguments():
    assert icl.corpus_documents(np.random.default_rng(3), 50) == icl.corpus_documents(
        np.random.default_rng(3), 50)
    with pytest.raises(TypeError, match="rng"):
        icl.corpus_documents(3, 5)
    with pytest.raises(ValueError, match="n must be"):
        icl.corpus_documents(np.random.default_rng(0), -1)


# ----------------------------------------------------------------------------------------------
# k-shot items and the best possible accuracy


def test_prompt_format_by_hand():
    prompt = icl.prompt_words([("小明", ("xiaoming",)), ("公园", ("the", "park"))], "水")
    assert prompt == ("小明", "xiaoming", "；", "公园", "the", "park", "；", "水")
    assert icl.prompt_words([], "书") == ("书",)


@pytest.mark.parametrize("k", icl.KS)
def test_k_shot_items(k):
    items = icl.k_shot_items(np.random.default_rng(k), k, 40)
    assert Counter(item.task for item in items) == {t: 8 for t in TASKS}
    for item in items:
        pairs = split_pairs(item.prompt)
        assert len(pairs) == k + 1
        demonstrations, (query, after_query) = pairs[:k], pairs[k]
        assert after_query == ()  # the prompt ends with the query x
        if item.task == LABEL:
            assert item.answer in [(d,) for d in LABELS]
            if k:  # the query is a demonstrated input, and its label is the one shown
                assert dict(demonstrations)[query] == item.answer
                assert list_task(demonstrations) == LABEL
            continue
        assert query not in [x for x, _ in demonstrations]
        assert len({x for x, _ in demonstrations}) == k
        assert all(icl.answer(item.task, x) == y for x, y in demonstrations)
        assert item.answer == icl.answer(item.task, query)


def test_k_shot_items_check_arguments():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="k must be at most"):
        icl.k_shot_items(rng, 9, 4)
    with pytest.raises(ValueError, match="n must be"):
        icl.k_shot_items(rng, 1, 0)
    with pytest.raises(ValueError, match="k must be"):
        icl.bayes_accuracy(-1)


@pytest.mark.parametrize("k", [k for k in icl.KS if k >= 1])
def test_oracle_reaches_bayes_accuracy(k):
    items = icl.k_shot_items(np.random.default_rng(100 + k), k, 200)
    accuracy = np.mean([oracle(item.prompt) == item.answer for item in items])
    assert accuracy == icl.bayes_accuracy(k) == 1.0


def test_without_demonstrations_a_fifth_is_the_best():
    # Five tasks, equally likely; the four fixed answers differ and a label has 1/9 of 1/5.
    assert icl.bayes_accuracy(0) == 0.2
    n = 4000
    items = icl.k_shot_items(np.random.default_rng(7), 0, n)
    # A fixed task is right on exactly its own items: a fifth, the tasks being balanced.
    assert np.mean([icl.answer("copy", item.prompt[0]) == item.answer for item in items]) == 0.2
    # A fixed task chosen by the query is right with probability 1/4 on the fixed tasks' items
    # (the query is drawn independently of the task) and never on a label item: 1/5 in all,
    # within 5 standard deviations.
    right = sum(icl.answer(FIXED_TASKS[INPUTS.index(item.prompt[0]) % 4], item.prompt[0])
                == item.answer for item in items)
    assert within(right, n, 0.2)
    # Guessing a label: right on a label item with probability 1/9, below the best.
    right = sum(item.answer == ("3",) for item in items)
    assert within(right, n, 0.2 / 9)


# ----------------------------------------------------------------------------------------------
# k-shot accuracy of a model


class FakeGPT:
    """A stand-in for gpt_forward whose logits put all the weight on one next token, chosen by
    reading the row (whose prompt is the longest of ``prompts`` it starts with): ``mode``
    "oracle" answers as the first demonstration's task and then writes ；, "eos" the same but
    stops with [EOS], "copy" always answers with the query itself, "no stop" writes the right
    answer and then the query again instead of a stop."""

    def __init__(self, mode, items):
        self.mode = mode
        self.prompts = sorted({tuple(item.prompt) for item in items}, key=len, reverse=True)

    def forward(self, params, cfg, ids, attention_mask=None, past=None):
        B, T = ids.shape
        logits = np.zeros((B, T, cfg.vocab_size))
        for b in range(B):
            n = int(attention_mask[b].sum())
            words = VOCAB.words(ids[b, 1:n])  # without [BOS]
            prompt = next(p for p in self.prompts if words[:len(p)] == p)
            written = words[len(prompt):]
            query = prompt[-1]
            answer = (query,) if self.mode == "copy" else oracle(prompt)
            if len(written) < len(answer):
                nxt = VOCAB.ids([answer[len(written)]])[0]
            elif self.mode == "eos":
                nxt = EOS_ID
            elif self.mode == "no stop":
                nxt = VOCAB.ids([query])[0]
            else:
                nxt = VOCAB.ids([SEPARATOR])[0]
            logits[b, n - 1, nxt] = 10.0
        return logits, {}


def fake_items():
    """k = 1 and k = 8 items, and one whose answer has the most words (bottle of water)."""
    rng = np.random.default_rng(5)
    longest = icl.KShotItem("translate", icl.prompt_words([("小明", ("xiaoming",))], "水"),
                            ("bottle", "of", "water"))
    return icl.k_shot_items(rng, 1, 12) + icl.k_shot_items(rng, 8, 12) + [longest]


@pytest.mark.parametrize("mode", ["oracle", "eos"])
def test_a_model_that_answers_right_scores_one(monkeypatch, mode):
    monkeypatch.setattr(task_formats, "gpt_forward", FakeGPT(mode, fake_items()).forward)
    params, cfg = tiny_gpt()
    accuracy, per_task = icl.k_shot_accuracy(params, cfg, VOCAB, fake_items())
    assert accuracy == 1.0 and per_task == {t: 1.0 for t in TASKS}


def test_exact_match_and_per_task(monkeypatch):
    params, cfg = tiny_gpt()
    monkeypatch.setattr(task_formats, "gpt_forward", FakeGPT("copy", fake_items()).forward)
    accuracy, per_task = icl.k_shot_accuracy(params, cfg, VOCAB, fake_items())
    assert per_task == {"translate": 0.0, "category": 0.0, "copy": 1.0, "collocation": 0.0,
                        LABEL: 0.0}
    items = fake_items()
    assert accuracy == sum(item.task == "copy" for item in items) / len(items)
    # The right words without a stop within the room left: longer than the answer, wrong.
    monkeypatch.setattr(task_formats, "gpt_forward", FakeGPT("no stop", fake_items()).forward)
    accuracy, _ = icl.k_shot_accuracy(params, cfg, VOCAB, fake_items())
    assert accuracy == 0.0


def test_k_shot_accuracy_of_a_random_gpt():
    params, cfg = tiny_gpt()
    items = icl.k_shot_items(np.random.default_rng(1), 2, 10)
    accuracy, per_task = icl.k_shot_accuracy(params, cfg, VOCAB, items)
    assert 0.0 <= accuracy <= 1.0
    assert set(per_task) == set(TASKS) and all(0.0 <= a <= 1.0 for a in per_task.values())
    assert accuracy == pytest.approx(np.mean(list(per_task.values())))  # 2 items per task


def test_the_longest_8_shot_item_fits_context_needed():
    # [BOS], 8 demonstrations and the query with its answer: the longest list, 1 + 36 tokens.
    demonstrations = [(x, icl.answer("translate", x)) for x in LONGEST[:8]]
    item = icl.KShotItem("translate", icl.prompt_words(demonstrations, LONGEST[8]),
                         ("xiaoming",))
    params, cfg = tiny_gpt(n_ctx=37)
    accuracy, _ = icl.k_shot_accuracy(params, cfg, VOCAB, [item])
    assert accuracy in (0.0, 1.0)
    params, cfg = tiny_gpt(n_ctx=36)
    with pytest.raises(ValueError, match="n_ctx=36 is too short: an item needs 37"):
        icl.k_shot_accuracy(params, cfg, VOCAB, [item])


def test_k_shot_accuracy_checks_its_arguments():
    params, cfg = tiny_gpt()
    items = icl.k_shot_items(np.random.default_rng(1), 1, 4)
    with pytest.raises(ValueError, match="items"):
        icl.k_shot_accuracy(params, cfg, VOCAB, [])
    with pytest.raises(TypeError, match="cfg"):
        icl.k_shot_accuracy(params, cfg.to_dict(), VOCAB, items)
    with pytest.raises(TypeError, match="vocab"):
        icl.k_shot_accuracy(params, cfg, VOCAB.tokenizer, items)


# ----------------------------------------------------------------------------------------------
# Induction heads


def repeated(n):
    """[BOS] 10 … 10+n−1 10 … 10+n−1, and its scored positions i = n+1 .. 2n."""
    r = list(range(10, 10 + n))
    return np.array([BOS_ID, *r, *r]), range(n + 1, 2 * n + 1)


def test_induction_scores_of_a_copying_head_and_a_uniform_head():
    n = 6
    ids, scored = repeated(n)
    T = len(ids)
    copying = np.eye(T)  # every other row attends to itself
    for i in scored:
        copying[i] = 0.0
        copying[i, i - n + 1] = 1.0  # the token after the previous occurrence of ids[i]
    uniform = np.tril(np.ones((T, T))) / np.arange(1, T + 1)[:, None]
    scores = icl.induction_scores(np.stack([copying, uniform]), ids)
    assert scores[0] == 1.0
    expected = np.mean([1 / (i + 1) for i in scored])  # causal-uniform: 1/(i+1) at i
    assert scores[1] == pytest.approx(expected, rel=1e-12)
    assert scores[1] < icl.INDUCTION_THRESHOLD / 2
    assert icl.induction_scores(icl.causal_uniform_attention(T), ids)[0] == pytest.approx(
        expected, rel=1e-12)


def test_induction_scores_read_the_most_recent_occurrence():
    a, b, c = 20, 21, 22
    ids = np.array([a, b, a, c, a])  # scored: i = 2 (successor 1), i = 4 (successor 3, not 1)
    att = np.zeros((2, 5, 5))
    att[:, np.arange(5), np.arange(5)] = 1.0
    att[0, 2], att[0, 4] = np.eye(5)[1], np.eye(5)[1]  # head 0 looks at the older successor
    att[1, 2], att[1, 4] = np.eye(5)[1], np.eye(5)[3]  # head 1 at the most recent one
    np.testing.assert_array_equal(icl.induction_scores(att, ids), [0.5, 1.0])


def test_induction_scores_refuse_what_cannot_be_scored():
    with pytest.raises(ValueError, match="no position"):
        icl.induction_scores(np.ones((1, 3, 3)) / 3, np.array([5, 5, 6]))  # successor is i
    with pytest.raises(ValueError, match="att must be"):
        icl.induction_scores(np.ones((3, 3)), np.array([5, 5, 5]))
    with pytest.raises(ValueError, match="ids must be"):
        icl.induction_scores(np.ones((1, 3, 3)), np.array([5, 5]))


@given(st.integers(2, 12), st.integers(1, 3), st.integers(0, 2**32 - 1))
def test_induction_scores_match_a_backward_search(T, H, seed):
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, 3, size=T)
    att = rng.random((H, T, T))
    sums, count = np.zeros(H), 0
    for i in range(T):
        earlier = [j for j in range(i - 1, -1, -1) if ids[j] == ids[i]]
        if earlier and earlier[0] + 1 < i:
            sums += att[:, i, earlier[0] + 1]
            count += 1
    if count == 0:
        with pytest.raises(ValueError):
            icl.induction_scores(att, ids)
    else:
        np.testing.assert_allclose(icl.induction_scores(att, ids), sums / count, rtol=1e-12)


def test_repeated_tokens():
    ids = icl.repeated_tokens(np.random.default_rng(0), VOCAB, 16)
    assert ids.shape == (33,) and ids[0] == BOS_ID
    np.testing.assert_array_equal(ids[1:17], ids[17:])
    assert len(set(ids[1:17].tolist())) == 16
    assert set(VOCAB.words(ids[1:].tolist())) <= set(icl.corpus_words())
    with pytest.raises(ValueError, match="n must be"):
        icl.repeated_tokens(np.random.default_rng(0), VOCAB, 1)


def test_attention_weights_are_causal_distributions():
    params, cfg = tiny_gpt()
    ids = icl.repeated_tokens(np.random.default_rng(1), VOCAB, 8)
    att = icl.attention_weights(params, cfg, ids)
    T = len(ids)
    assert att.shape == (cfg.n_layer, cfg.n_head, T, T)
    np.testing.assert_allclose(att.sum(axis=-1), 1.0, rtol=1e-12)
    assert np.all(att[..., ~np.tril(np.ones((T, T), dtype=bool))] == 0.0)
    assert np.all(att[..., np.tril(np.ones((T, T), dtype=bool))] > 0.0)
    # Block 0's heads by hand: x = wte[ids] + wpe[t], LN_1, q k v, softmax(q k^T / sqrt(D)).
    x = params["wte"][ids] + params["wpe"][:T]  # (T, C)
    h = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + cfg.ln_eps)
    h = h * params["h.0.ln_1.g"] + params["h.0.ln_1.b"]
    q, k, _ = np.split(h @ params["h.0.attn.c_attn.w"] + params["h.0.attn.c_attn.b"], 3, -1)
    D = cfg.n_embd // cfg.n_head
    for head in range(cfg.n_head):
        cols = slice(head * D, (head + 1) * D)
        scores = q[:, cols] @ k[:, cols].T / np.sqrt(D)  # (T, T)
        scores[~np.tril(np.ones((T, T), dtype=bool))] = -np.inf
        expected = np.exp(scores - scores.max(-1, keepdims=True))
        expected /= expected.sum(-1, keepdims=True)
        np.testing.assert_allclose(att[0, head], expected, rtol=1e-10, atol=1e-14)


def test_induction_table_of_a_tiny_gpt():
    params, cfg = tiny_gpt()
    n = 8
    scores, baseline = icl.induction_table(params, cfg, VOCAB, np.random.default_rng(2), 3, n)
    assert scores.shape == (cfg.n_layer, cfg.n_head)
    assert np.all((scores >= 0) & (scores <= 1))
    assert baseline == pytest.approx(np.mean([1 / (i + 1) for i in repeated(n)[1]]), rel=1e-12)
    # The table is the mean of one sequence's scores read from attention_weights.
    ids = icl.repeated_tokens(np.random.default_rng(2), VOCAB, n)
    first = icl.attention_weights(params, cfg, ids)
    one, _ = icl.induction_table(params, cfg, VOCAB, np.random.default_rng(2), 1, n)
    np.testing.assert_allclose(one, [icl.induction_scores(first[layer], ids)
                                     for layer in range(cfg.n_layer)], rtol=1e-12)
    with pytest.raises(ValueError, match="n_ctx"):
        icl.induction_table(params, cfg, VOCAB, np.random.default_rng(2), 1, 23)


def test_query_induction_scores_read_the_label_after_the_earlier_query():
    # [BOS] 小明 7 ； 书 3 ； 小明: the label of 小明 sits at position 2.
    ids = np.array([BOS_ID, *VOCAB.ids(("小明", "7", SEPARATOR, "书", "3", SEPARATOR, "小明"))])
    T = len(ids)
    copying = np.zeros((1, T, T))
    copying[0, :, 0] = 1.0
    copying[0, T - 1] = 0.0
    copying[0, T - 1, 2] = 1.0  # the query attends to 7
    uniform = icl.causal_uniform_attention(T)
    scores = icl.query_induction_scores(np.concatenate([copying, uniform]), ids)
    np.testing.assert_allclose(scores, [1.0, 1 / T])
    with pytest.raises(ValueError, match="occurs nowhere earlier"):  # 3 comes once
        icl.query_induction_scores(icl.causal_uniform_attention(T - 2), ids[:-2])


def test_label_induction_table_of_a_tiny_gpt():
    params, cfg = tiny_gpt()
    scores, baseline = icl.label_induction_table(params, cfg, VOCAB, np.random.default_rng(3), 6)
    assert scores.shape == (cfg.n_layer, cfg.n_head) and np.all((scores > 0) & (scores < 1))
    items = [item for item in icl.k_shot_items(np.random.default_rng(3), icl.LABEL_K, 30)
             if item.task == LABEL]
    assert len(items) == 6
    assert baseline == pytest.approx(np.mean([1 / (len(item.prompt) + 1) for item in items]))
    # The first prompt's scores, by hand from its attention weights.
    ids = np.array([BOS_ID, *VOCAB.ids(items[0].prompt)])
    att = icl.attention_weights(params, cfg, ids)
    prev = max(j for j in range(len(ids) - 1) if ids[j] == ids[-1])
    one, _ = icl.label_induction_table(params, cfg, VOCAB, np.random.default_rng(3), 1)
    np.testing.assert_allclose(one, att[:, :, -1, prev + 1], rtol=1e-12)
