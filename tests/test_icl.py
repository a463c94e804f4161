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
from minillm.icl import ARROW, INPUTS, SEPARATOR, TASKS
from minillm.models import GPTConfig, gpt_init
from minillm.tokenizer import BOS_ID, EOS_ID

VOCAB = icl.vocabulary()


def tiny_gpt(seed=0, n_ctx=None):
    cfg = GPTConfig(vocab_size=len(VOCAB.tokenizer), n_ctx=n_ctx or icl.context_needed(),
                    n_embd=16, n_head=2, n_layer=2)
    return gpt_init(cfg, np.random.default_rng(seed), dtype=np.float64), cfg


def split_pairs(words):
    """``x1 → y1 ； … ； xn → yn`` (or a prompt ending ``x →``) -> [(x, y words)], parsed."""
    pairs, segment = [], []
    for w in tuple(words) + (SEPARATOR,):
        if w == SEPARATOR:
            assert segment[1] == ARROW, segment
            pairs.append((segment[0], tuple(segment[2:])))
            segment = []
        else:
            segment.append(w)
    return pairs


def task_of_pair(x, y):
    """The tasks whose answer to x is y."""
    return [t for t in TASKS if icl.answer(t, x) == y]


def oracle(prompt):
    """Reads the task off the first demonstration and answers the query as it does."""
    pairs = split_pairs(prompt)
    (task,) = task_of_pair(*pairs[0])
    return icl.answer(task, pairs[-1][0])


# ----------------------------------------------------------------------------------------------
# The tasks


def test_four_answers_differ_for_every_input():
    assert len(INPUTS) == 25 and len(set(INPUTS)) == 25
    for x in INPUTS:
        answers = [icl.answer(t, x) for t in TASKS]
        assert len(set(answers)) == 4, (x, answers)
        assert all(len(y) >= 1 for y in answers)


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
    answered = {w for t in TASKS for x in INPUTS for w in icl.answer(t, x)}
    assert set(icl.corpus_words()) == document_words | answered
    assert ARROW not in icl.corpus_words() and SEPARATOR not in icl.corpus_words()


# ----------------------------------------------------------------------------------------------
# The corpus

N_DOCS = 20_000
# The 9 inputs with the longest translations (3, 3, 2 × 6 words and 1).
LONGEST = ("水", "果汁", "公园", "海边", "商店", "图书馆", "书店", "冰淇淋", "小明")
DOCS = icl.corpus_documents(np.random.default_rng(15), N_DOCS)


def within(count, n, p, sigmas=5):
    """count out of n is within `sigmas` binomial standard deviations of n p."""
    return abs(count - n * p) <= sigmas * math.sqrt(n * p * (1 - p))


def test_corpus_kinds_and_task_frequencies():
    lists = [d for d in DOCS if ARROW in d]
    # P_LIST = 1/2 by construction: a list with probability 1/2, else a world document.
    assert within(len(lists), N_DOCS, 0.5)
    tasks = Counter()
    for d in DOCS:
        if ARROW not in d:
            assert world.default_world().log_prob(d) > -math.inf, d
    for d in lists:
        pairs = split_pairs(d)
        consistent = [t for t in TASKS if all(icl.answer(t, x) == y for x, y in pairs)]
        assert len(consistent) == 1, d
        tasks[consistent[0]] += 1
    for t in TASKS:  # drawn uniformly: 1/4 each
        assert within(tasks[t], len(lists), 0.25), tasks


def test_list_sizes_and_inputs():
    lists = [split_pairs(d) for d in DOCS if ARROW in d]
    sizes = Counter(len(pairs) for pairs in lists)
    assert set(sizes) == set(range(1, 10))
    for size in range(1, 10):  # uniform in 1..9
        assert within(sizes[size], len(lists), 1 / 9), sizes
    for pairs in lists:
        inputs = [x for x, _ in pairs]
        assert len(set(inputs)) == len(inputs)  # without replacement
        assert set(inputs) <= set(INPUTS)
    assert max(len(d) for d in DOCS) <= icl.context_needed() - 1


def test_list_format_and_longest_list():
    assert icl.list_words("copy", ("书",)) == ("书", ARROW, "书")
    assert icl.list_words("category", ("小明", "笔")) == ("小明", ARROW, "人", SEPARATOR,
                                                          "笔", ARROW, "东西")
    # By hand: translation of 水 and 果汁 (3 words each), 公园 海边 商店 图书馆 书店 冰淇淋
    # (2 each) and one more (1): 9 inputs + 9 arrows + 19 answer words + 8 separators = 45.
    assert icl.max_list_tokens() == 45
    assert len(icl.list_words("translate", LONGEST)) == 45
    # A world document has at most 22 words (world.py's docstring); [BOS] in front.
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
    prompt = icl.prompt_words("translate", ["小明", "公园"], "水")
    assert prompt == ("小明", "→", "xiaoming", "；", "公园", "→", "the", "park", "；", "水", "→")
    assert icl.prompt_words("copy", [], "书") == ("书", "→")


@pytest.mark.parametrize("k", icl.KS)
def test_k_shot_items(k):
    items = icl.k_shot_items(np.random.default_rng(k), k, 40)
    assert Counter(item.task for item in items) == {t: 10 for t in TASKS}
    for item in items:
        pairs = split_pairs(item.prompt)
        assert len(pairs) == k + 1
        demonstrations, (query, after_arrow) = pairs[:k], pairs[k]
        assert after_arrow == ()  # the prompt ends with "x →"
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


def test_without_demonstrations_a_quarter_is_the_best():
    assert icl.bayes_accuracy(0) == 0.25  # four tasks, equally likely, four distinct answers
    n = 4000
    items = icl.k_shot_items(np.random.default_rng(7), 0, n)
    # A fixed task is right on exactly its own items: a quarter, the tasks being balanced.
    assert np.mean([icl.answer("copy", item.prompt[0]) == item.answer for item in items]) == 0.25
    # A task chosen by the query is right with probability 1/4 too (the query is drawn
    # independently of the task): within 5 standard deviations of n/4.
    right = sum(icl.answer(TASKS[INPUTS.index(item.prompt[0]) % 4], item.prompt[0])
                == item.answer for item in items)
    assert within(right, n, 0.25)


# ----------------------------------------------------------------------------------------------
# k-shot accuracy of a model


class FakeGPT:
    """A stand-in for gpt_forward whose logits put all the weight on one next token, chosen by
    reading the row: ``mode`` "oracle" answers as the first demonstration's task and then writes
    ；, "eos" the same but stops with [EOS], "copy" always answers with the query itself,
    "no stop" writes the right answer and then → instead of a stop."""

    def __init__(self, mode):
        self.mode = mode

    def forward(self, params, cfg, ids, attention_mask=None, past=None):
        B, T = ids.shape
        logits = np.zeros((B, T, cfg.vocab_size))
        for b in range(B):
            n = int(attention_mask[b].sum())
            words = VOCAB.words(ids[b, 1:n])  # without [BOS]
            last_arrow = len(words) - 1 - words[::-1].index(ARROW)
            prompt, written = words[: last_arrow + 1], words[last_arrow + 1:]
            query = prompt[-2]
            answer = (query,) if self.mode == "copy" else oracle(prompt)
            if len(written) < len(answer):
                nxt = VOCAB.ids([answer[len(written)]])[0]
            elif self.mode == "eos":
                nxt = EOS_ID
            elif self.mode == "no stop":
                nxt = VOCAB.ids([ARROW])[0]
            else:
                nxt = VOCAB.ids([SEPARATOR])[0]
            logits[b, n - 1, nxt] = 10.0
        return logits, {}


def fake_items():
    """k = 1 and k = 8 items, and one whose answer has the most words (bottle of water)."""
    rng = np.random.default_rng(5)
    longest = icl.KShotItem("translate", icl.prompt_words("translate", ["小明"], "水"),
                            ("bottle", "of", "water"))
    return icl.k_shot_items(rng, 1, 12) + icl.k_shot_items(rng, 8, 12) + [longest]


@pytest.mark.parametrize("mode", ["oracle", "eos"])
def test_a_model_that_answers_right_scores_one(monkeypatch, mode):
    monkeypatch.setattr(task_formats, "gpt_forward", FakeGPT(mode).forward)
    params, cfg = tiny_gpt()
    accuracy, per_task = icl.k_shot_accuracy(params, cfg, VOCAB, fake_items())
    assert accuracy == 1.0 and per_task == {t: 1.0 for t in TASKS}


def test_exact_match_and_per_task(monkeypatch):
    params, cfg = tiny_gpt()
    monkeypatch.setattr(task_formats, "gpt_forward", FakeGPT("copy").forward)
    accuracy, per_task = icl.k_shot_accuracy(params, cfg, VOCAB, fake_items())
    assert per_task == {"translate": 0.0, "category": 0.0, "copy": 1.0, "collocation": 0.0}
    assert accuracy == 6 / 25  # the 6 copy items of 25
    # The right words without a stop within the room left: longer than the answer, wrong.
    monkeypatch.setattr(task_formats, "gpt_forward", FakeGPT("no stop").forward)
    accuracy, _ = icl.k_shot_accuracy(params, cfg, VOCAB, fake_items())
    assert accuracy == 0.0


def test_k_shot_accuracy_of_a_random_gpt():
    params, cfg = tiny_gpt()
    items = icl.k_shot_items(np.random.default_rng(1), 2, 8)
    accuracy, per_task = icl.k_shot_accuracy(params, cfg, VOCAB, items)
    assert 0.0 <= accuracy <= 1.0
    assert set(per_task) == set(TASKS) and all(0.0 <= a <= 1.0 for a in per_task.values())
    assert accuracy == pytest.approx(np.mean(list(per_task.values())))  # 2 items per task


def test_the_longest_8_shot_item_fits_context_needed():
    # [BOS], 8 demonstrations and the query with its answer: the longest list, 1 + 45 tokens.
    item = icl.KShotItem("translate", icl.prompt_words("translate", LONGEST[:8], LONGEST[8]),
                         ("xiaoming",))
    params, cfg = tiny_gpt()
    assert cfg.n_ctx == 46
    accuracy, _ = icl.k_shot_accuracy(params, cfg, VOCAB, [item])
    assert accuracy in (0.0, 1.0)
    params, cfg = tiny_gpt(n_ctx=45)
    with pytest.raises(ValueError, match="n_ctx=45 is too short: an item needs 46"):
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
