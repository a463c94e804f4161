"""In-context learning: k-shot tasks learned from the prompt, and the induction heads behind it.

GPT-3 (Brown et al. 2020, "Language Models are Few-Shot Learners") is given a task by a few
demonstrations in its prompt, without any parameter update, as in their Figure 2.1:

    sea otter => loutre de mer          (a demonstration)
    cheese =>                           (the query: the model writes the answer)

Here the same, over the built-in world (world.py). One input set X: the world's people (10),
places (6) and items (9), 25 words; four fixed tasks map each x in X to an answer of words:

    task          x = 小明        x = 公园         x = 水                    the rule
    translate     xiaoming       the park        bottle of water           world.ENGLISH; an item
                                                                           in the singular
    category      人              地方             东西                       what kind of word x is
    copy          小明            公园             水                         x itself
    collocation   他              玩               瓶                         a person's pronoun by
                                                                           gender; a place's most
                                                                           probable activity; an
                                                                           item's measure word

For every x the four answers differ (tests/test_icl.py checks it), so a bare query word does
not tell the task and one demonstration does. The model can learn these maps in pretraining;
the prompt only has to say which one is asked for (GPT-3's "task recognition").

A fifth task, ``label`` (代号), cannot be learned in pretraining at all: each list gives a few
inputs labels drawn at random (digits 1–9, fresh for every list) and uses them again, so that
the only way to the answer is to find the query's earlier pair in the context and copy its
label (… x 7 … x ⇒ 7): what an induction head does.

Pretraining text in which such demonstrations occur naturally: each document of the corpus is
a world document (probability 1 − P_LIST; written twice, ``d ； d``, with probability
P_REPEAT, as real text repeats itself) or a demonstration list (P_LIST): a task drawn
uniformly from the five, n pairs with n uniform in 1..MAX_PAIRS, written

    x1 y1 ； x2 y2 ； … ； xn yn

A fixed task's inputs are drawn from X without replacement. A label list first draws m inputs
(m uniform in 1..MAX_LABELLED) and a label for each, then every pair's input from those m
(with replacement: inputs come back). A k-shot prompt is the first k pairs of such a list
followed by a query: ``x1 y1 ； … ； xk yk ； x`` (a fixed task's query is a new input; a
label query is one of the demonstrations' inputs). The model continues it greedily until ；
or [EOS]; the answer is right when the words before that stop are exactly the answer.

The best any predictor can do (``bayes_accuracy``) is fixed by the task prior: with k = 0 the
query x alone leaves the five tasks equally likely and a fixed task's answer is one word
sequence (a label, one of nine), so 1/5; with k ≥ 1 the first demonstration names the task
(the four fixed answers to it differ, and no fixed answer is a digit), and a label query's
label is in the prompt, so 1.

Induction heads (Olsson et al. 2022, "In-context Learning and Induction Heads"): a head that,
at a token A, attends to the token B that followed A's previous occurrence (… A B … A → B), the
mechanism that copies a pattern seen earlier in the context. Its score is measured on Olsson et
al.'s repeated random tokens, [BOS] r_1 … r_n r_1 … r_n:

    prev(i) = max{j < i : t_j = t_i}                           the previous occurrence
    I = {i : prev(i) exists and prev(i) + 1 < i}               the positions it can be seen at
    score_h = (1/|I|) Σ_{i ∈ I} A_h[i, prev(i) + 1]            head h's weight on the successor

A head that attends uniformly to the i + 1 positions it may see scores the mean of 1/(i + 1)
over I: the baseline printed beside the scores.
"""

from __future__ import annotations

from fractions import Fraction
from typing import NamedTuple

import numpy as np

from . import world
from .corruption.checks import check_int
from .models import GPTConfig, gpt_forward
from .task_formats import GPTFormat, Vocabulary
from .tokenizer import BOS_ID, Tokenizer

# ----------------------------------------------------------------------------------------------
# The tasks

SEPARATOR = "；"  # between pairs: x1 y1 ； x2 y2
PERSON, PLACE, THING = "人", "地方", "东西"  # the category task's answers
NEW_WORDS = (SEPARATOR, PERSON, PLACE, THING)

# X: every word of it is an input of every task (people, then places, then items).
INPUTS = tuple(world.PEOPLE) + tuple(world.ACTIVITIES) + tuple(world.MEASURE_OF)
FIXED_TASKS = ("translate", "category", "copy", "collocation")
LABEL = "label"  # the task whose answers exist only in the context
TASKS = FIXED_TASKS + (LABEL,)
TASK_NAMES = {"translate": "翻译", "category": "类别", "copy": "复述", "collocation": "搭配",
              LABEL: "代号"}
# A demonstration list's task is drawn uniformly: P(task) = 1/5 (a Fraction, so that
# bayes_accuracy's sums are exact).
TASK_PRIOR = {task: Fraction(1, len(TASKS)) for task in TASKS}
# A label list's labels: the world's count words, drawn uniformly and independently per input.
LABELS = tuple(str(n) for n in range(1, 10))
MAX_LABELLED = 4  # a label list labels 1..4 inputs, so that they come back

# The corpus: a document is a demonstration list with probability P_LIST, else a world document;
# a list has MIN_PAIRS..MAX_PAIRS pairs, uniformly.
P_LIST = 0.5
# A world document is written twice (``d ； d``) with probability P_REPEAT: text repeats in
# real corpora too (quotes, names, boilerplate), and a repeat is what makes copying pay.
P_REPEAT = 0.2
MIN_PAIRS, MAX_PAIRS = 1, 9
# The k of the k-shot table (GPT-3's figures use 0, 1 and a few; k ≤ MAX_PAIRS − 1 keeps a
# prompt a prefix of a list the corpus can hold).
KS = (0, 1, 2, 4, 8)


def most_probable(table):
    """argmax_w table[w]; among ties, the first in the table's order (max keeps the first)."""
    return max(table, key=table.get)


def _answers():
    """{task: {x: answer words}} for every fixed task and every x in INPUTS."""
    answers = {task: {} for task in FIXED_TASKS}
    for x in world.PEOPLE:
        answers["translate"][x] = world.ENGLISH[x]
        answers["category"][x] = (PERSON,)
        answers["collocation"][x] = (world.PRONOUN[world.GENDER[x]],)
    for x in world.ACTIVITIES:
        answers["translate"][x] = world.ENGLISH[x]
        answers["category"][x] = (PLACE,)
        answers["collocation"][x] = (most_probable(world.ACTIVITIES[x]),)
    for x in world.MEASURE_OF:
        answers["translate"][x] = world.ENGLISH_ITEMS[x][0]  # the singular
        answers["category"][x] = (THING,)
        answers["collocation"][x] = (world.MEASURE_OF[x],)
    for x in INPUTS:
        answers["copy"][x] = (x,)
    return answers


ANSWERS = _answers()
# The longest answer, in words (bottle of water): how many tokens decoding may write before
# it must stop.
MAX_ANSWER_WORDS = max(len(y) for task in FIXED_TASKS for y in ANSWERS[task].values())


def answer(task, x):
    """The words a fixed task maps x to (the module docstring's table)."""
    if task not in ANSWERS:
        raise ValueError(f"task must be one of {FIXED_TASKS}, got {task!r}")
    if x not in ANSWERS[task]:
        raise ValueError(f"x must be one of the {len(INPUTS)} inputs (people, places, items), "
                         f"got {x!r}")
    return ANSWERS[task][x]


# ----------------------------------------------------------------------------------------------
# Words and tokens


def vocabulary():
    """The tokenizer of the ICL corpus, every word one token: the world's Chinese (world.WORDS),
    its English (world.ENGLISH_WORDS), and NEW_WORDS (；, 人, 地方, 东西)."""
    return Vocabulary(Tokenizer(sorted(set(world.WORDS) | set(world.ENGLISH_WORDS)
                                       | set(NEW_WORDS))))


def corpus_words():
    """The words the corpus holds, ； aside, sorted: those of the world's documents
    (world.WORDS without the question words, which only questions use) and every answer.
    Repeated random sequences are drawn from them: tokens the model has read in pretraining."""
    questions = {world.WHO, world.WHERE, world.WHEN, world.WHAT_DOING, world.HOW_MANY,
                 world.AT, world.PAST_OF_WHEN, world.QUESTION_MARK}
    documents = set(world.WORDS) - questions
    answered = {w for task in FIXED_TASKS for y in ANSWERS[task].values() for w in y}
    return tuple(sorted(documents | answered))


def pairs_words(pairs):
    """[(x, y words), …] -> ``x1 y1 ； x2 y2 ； … ； xn yn`` as a tuple of words."""
    words = []
    for i, (x, y) in enumerate(pairs):
        if i > 0:
            words.append(SEPARATOR)
        words.extend((x, *y))
    return tuple(words)


def list_words(task, inputs):
    """A fixed task's demonstration list: ``x1 y1 ； … ； xn yn`` with y = answer(task, x)."""
    return pairs_words([(x, answer(task, x)) for x in inputs])


def prompt_words(demonstrations, query):
    """A k-shot prompt: ``x1 y1 ； … ； xk yk ； x`` from the k demonstration pairs [(x, y
    words), …] and the query x (with k = 0 just ``x``)."""
    demos = pairs_words(demonstrations)
    return demos + ((SEPARATOR,) if demos else ()) + (query,)


def max_list_tokens():
    """The most words a demonstration list can have: MAX_PAIRS pairs of the task whose
    MAX_PAIRS longest answers are longest (a label is one word), each pair x y, with ；
    between them. A GPT reads [BOS] and a document, so pretraining on the corpus needs
    n_ctx ≥ context_needed()."""
    longest = 0
    for task in TASKS:
        answers = ANSWERS[task].values() if task in ANSWERS else [(LABELS[0],)]
        lengths = sorted((len(y) for y in answers), reverse=True)[:MAX_PAIRS]
        lengths += [lengths[-1]] * (MAX_PAIRS - len(lengths))  # a label repeats
        longest = max(longest, MAX_PAIRS + sum(lengths) + (MAX_PAIRS - 1))
    return longest


def context_needed():
    """n_ctx for pretraining on the corpus: [BOS] and the longest document, a list or a world
    document (make_batch's inputs are [BOS] w_1 … w_n; [EOS] is only a target)."""
    return 1 + max(max_list_tokens(), 2 * world.default_world().max_words() + 1)


# ----------------------------------------------------------------------------------------------
# The pretraining corpus


def _check_rng(rng):
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a np.random.Generator, got {type(rng).__name__}: {rng!r}")


def draw_pairs(rng, task, n):
    """n pairs [(x, y words), …] of ``task``: a fixed task's inputs drawn from INPUTS without
    replacement; a label list's m inputs (m uniform in 1..min(MAX_LABELLED, n)) each with a
    label drawn uniformly from LABELS, and each pair's input drawn uniformly from the m."""
    if task in ANSWERS:
        inputs = [INPUTS[i] for i in rng.choice(len(INPUTS), size=n, replace=False)]
        return [(x, answer(task, x)) for x in inputs]
    m = int(rng.integers(1, min(MAX_LABELLED, n) + 1))
    labelled = [INPUTS[i] for i in rng.choice(len(INPUTS), size=m, replace=False)]
    label_of = {x: (LABELS[rng.integers(len(LABELS))],) for x in labelled}
    return [(x, label_of[x]) for x in (labelled[i] for i in rng.integers(0, m, size=n))]


def draw_list(rng):
    """One demonstration list: (task, pairs), the task uniform over TASKS, the number of pairs
    uniform in MIN_PAIRS..MAX_PAIRS (draw_pairs)."""
    task = TASKS[rng.integers(len(TASKS))]
    n = int(rng.integers(MIN_PAIRS, MAX_PAIRS + 1))
    return task, draw_pairs(rng, task, n)


def corpus_documents(rng, n):
    """n documents of the ICL corpus, each a tuple of words (without [EOS]): a demonstration
    list with probability P_LIST, else a world document (world.default_world().sample)."""
    _check_rng(rng)
    check_int("n", n, 0)
    docs = []
    for _ in range(n):
        if rng.random() < P_LIST:
            docs.append(pairs_words(draw_list(rng)[1]))
            continue
        words = world.default_world().sample(rng, 1)[0].words
        docs.append(words + (SEPARATOR,) + words if rng.random() < P_REPEAT else words)
    return docs


def expected_document_tokens():
    """E[tokens a GPT predicts per corpus document] (words and [EOS]), exactly: a list has
    E[n] pairs of 1 + E[answer words] words and E[n] − 1 separators; a world document
    world.expected_tokens() (which counts its [EOS])."""
    mean_pairs = (MIN_PAIRS + MAX_PAIRS) / 2
    answer_words = np.mean([np.mean([len(y) for y in ANSWERS[t].values()]) if t in ANSWERS
                            else 1.0 for t in TASKS])  # tasks equally likely
    list_tokens = mean_pairs * (1 + answer_words) + (mean_pairs - 1) + 1
    # A repeated world document holds 2 (E − 1) words, ； and [EOS]: 2E tokens.
    world_tokens = (1 + P_REPEAT) * world.default_world().expected_tokens()
    return P_LIST * list_tokens + (1 - P_LIST) * world_tokens


# ----------------------------------------------------------------------------------------------
# k-shot evaluation


class KShotItem(NamedTuple):
    """A k-shot test item: the task, the prompt's words (without [BOS]) and the answer's."""

    task: str
    prompt: tuple
    answer: tuple


def _check_k(k):
    check_int("k", k, 0)
    if k > MAX_PAIRS - 1:
        raise ValueError(f"k must be at most MAX_PAIRS - 1 = {MAX_PAIRS - 1} (a prompt is a "
                         f"list's first k pairs and a query), got k={k!r}")


def k_shot_items(rng, k, n):
    """n k-shot items, the tasks balanced (item i has task TASKS[i mod 5]). A fixed task: k
    demonstrations and a query, k + 1 distinct inputs drawn from INPUTS without replacement.
    The label task: k pairs drawn as a label list's (draw_pairs) and a query drawn uniformly
    from their distinct inputs; with k = 0, a random input and a random label (nothing in the
    prompt can tell it)."""
    _check_rng(rng)
    _check_k(k)
    check_int("n", n, 1)
    items = []
    for i in range(n):
        task = TASKS[i % len(TASKS)]
        if task in ANSWERS:
            pairs = draw_pairs(rng, task, k + 1)
            demonstrations, (query, y) = pairs[:k], pairs[k]
        elif k == 0:
            demonstrations = []
            query, y = INPUTS[rng.integers(len(INPUTS))], (LABELS[rng.integers(len(LABELS))],)
        else:
            demonstrations = draw_pairs(rng, task, k)
            shown = sorted(set(demonstrations), key=demonstrations.index)
            query, y = shown[rng.integers(len(shown))]
        items.append(KShotItem(task, prompt_words(demonstrations, query), y))
    return items


def until_stop(words):
    """The words before the first ；(decoding's stop; [EOS] is cut by continue_prompts)."""
    words = tuple(words)
    return words[: words.index(SEPARATOR)] if SEPARATOR in words else words


def k_shot_accuracy(params, cfg, vocab, items):
    """The fraction of items answered exactly, and the same per task: {task: fraction}.

    Each prompt [BOS] x1 y1 ； … ； x is continued greedily (GPTFormat.continue_prompts)
    for at most MAX_ANSWER_WORDS + 1 tokens (or until the context is full); the prediction is
    the words before the first ；or [EOS], and a continuation that writes neither in that room
    is longer than the answer (so wrong). cfg.n_ctx must hold [BOS], each prompt and its
    answer (context_needed() does, for every k of KS). No parameter changes: the task is
    learned from the prompt or not at all."""
    if not isinstance(cfg, GPTConfig):
        raise TypeError(f"cfg must be a GPTConfig, got {type(cfg).__name__}")
    if not isinstance(vocab, Vocabulary):
        raise TypeError(f"vocab must be a task_formats.Vocabulary, got {type(vocab).__name__}")
    items = list(items)
    if not items or not all(isinstance(item, KShotItem) and item.task in TASKS
                            for item in items):
        raise ValueError(f"items must be a non-empty list of KShotItem of the tasks {TASKS}, "
                         f"got {items[:3]!r}")
    prompts = [[BOS_ID, *vocab.ids(item.prompt)] for item in items]
    # Room to write the answer and a stop: that step reads [BOS], the prompt and the answer.
    need = max(len(p) + len(item.answer) for p, item in zip(prompts, items))
    if need > cfg.n_ctx:
        raise ValueError(f"cfg.n_ctx={cfg.n_ctx} is too short: an item needs {need} tokens "
                         f"([BOS], its prompt and its answer)")
    max_new = MAX_ANSWER_WORDS + 1
    outputs = GPTFormat(vocab, cfg).continue_prompts(params, prompts, max_new)
    right = {task: [] for task in TASKS}
    for item, ids in zip(items, outputs):
        right[item.task].append(until_stop(vocab.words(ids)) == item.answer)
    per_task = {task: float(np.mean(r)) for task, r in right.items() if r}
    accuracy = float(np.mean([r for task in TASKS for r in right[task]]))
    return accuracy, per_task


def bayes_accuracy(k):
    """The best accuracy any predictor can reach on k-shot items, from the task prior:

        acc(k) = E_prompt[ max_y P(y | prompt) ]

    k = 0: the prompt is the query x alone, and x tells nothing of the task (every task's
    query is drawn from the same X): P(y | x) = Σ_t P(t)·P(y | t, x), where a fixed task gives
    its one answer and the label task each of the nine labels with 1/9; acc = mean_x max_y
    P(y | x), which is max_t P(t) = 1/5 because the four fixed answers to x differ (a label
    has only 1/45).
    k ≥ 1: the first demonstration x1 y1 leaves only the tasks that can answer y1 to x1:
    acc = mean_{x1 ≠ x} Σ_{y1} max_y Σ_t P(t)·P(y1 | t, x1)·P(y | t, x, prompt), where a
    fixed task's y is its answer to x and the label task's y is read off the prompt (its
    query is one of the demonstrations' inputs). That is 1, because one task alone can answer
    y1 to x1 (the fixed answers differ and none is a label). More demonstrations never lower
    the best accuracy (the predictor may ignore them), and it cannot exceed 1: so 1 for every
    k ≥ 1."""
    _check_k(k)
    label_share = TASK_PRIOR[LABEL] / len(LABELS)  # P(label task)·P(one label)
    if k == 0:
        per_x = []
        for x in INPUTS:
            mass = {}  # y -> P(y | x)
            for t in FIXED_TASKS:
                mass[ANSWERS[t][x]] = mass.get(ANSWERS[t][x], 0) + TASK_PRIOR[t]
            for label in LABELS:
                mass[(label,)] = mass.get((label,), 0) + label_share
            per_x.append(max(mass.values()))
        return float(sum(per_x) / len(per_x))
    per_pair = []
    for x1 in INPUTS:
        for x in INPUTS:
            if x == x1:
                continue
            mass = {}  # (y1, y) -> Σ_t P(t)·P(y1 | t, x1)·P(y | t, x, prompt)
            for t in FIXED_TASKS:
                key = (ANSWERS[t][x1], ANSWERS[t][x])
                mass[key] = mass.get(key, 0) + TASK_PRIOR[t]
            for label in LABELS:  # y: the label the prompt shows for the query
                key = ((label,), "read off the prompt")
                mass[key] = mass.get(key, 0) + label_share
            best = {}  # y1 -> max_y mass[(y1, y)]
            for (y1, _), p in mass.items():
                best[y1] = max(best.get(y1, 0), p)
            per_pair.append(sum(best.values()))
    return float(sum(per_pair) / len(per_pair))


# ----------------------------------------------------------------------------------------------
# Induction heads

# A head is called an induction head when its score reaches 0.3: on repeated sequences of
# REPEAT_LENGTH tokens uniform causal attention scores 0.04, so 0.3 is seven times that, while a
# head that also parks weight on [BOS] (an attention sink) or on the current token can reach it.
INDUCTION_THRESHOLD = 0.3
# n of the repeated random sequences [BOS] r_1 … r_n r_1 … r_n (2n + 1 tokens).
REPEAT_LENGTH = 16


def induction_scores(att, ids):
    """score_h = (1/|I|) Σ_{i ∈ I} att[h, i, prev(i) + 1] for each head h (the module docstring;
    Olsson et al. 2022). att (H, T, T) attention weights of one sequence, ids (T,) its tokens
    -> (H,). ValueError when no position is in I."""
    att, ids = np.asarray(att), np.asarray(ids)
    if att.ndim != 3 or att.shape[1] != att.shape[2]:
        raise ValueError(f"att must be (H, T, T) attention weights, got shape {att.shape}")
    if ids.shape != (att.shape[1],):
        raise ValueError(f"ids must be ({att.shape[1]},), the tokens att attends over, got "
                         f"shape {ids.shape}")
    last_seen = {}  # token -> its most recent position so far
    weights = []  # (H,) per scored position
    for i, token in enumerate(ids.tolist()):
        j = last_seen.get(token)
        if j is not None and j + 1 < i:
            weights.append(att[:, i, j + 1])
        last_seen[token] = i
    if not weights:
        raise ValueError(f"ids hold no token seen before with a token between (no position to "
                         f"score): {ids.tolist()}")
    return np.mean(weights, axis=0)  # (H,)


def causal_uniform_attention(T):
    """(1, T, T): query i attends 1/(i + 1) to each of the positions 0..i (the baseline)."""
    check_int("T", T, 1)
    allowed = np.tril(np.ones((T, T)))
    return (allowed / allowed.sum(axis=1, keepdims=True))[None]


def repeated_tokens(rng, vocab, n):
    """[BOS] r_1 … r_n r_1 … r_n, with r n distinct tokens drawn from corpus_words() (Olsson
    et al.'s repeated random sequence). -> (2n + 1,) int64."""
    _check_rng(rng)
    if not isinstance(vocab, Vocabulary):
        raise TypeError(f"vocab must be a task_formats.Vocabulary, got {type(vocab).__name__}")
    pool = vocab.ids(corpus_words())
    check_int("n", n, 2)  # with n = 1 the repeat follows at once: no position to score
    if n > len(pool):
        raise ValueError(f"n must be at most {len(pool)} (distinct corpus words), got n={n!r}")
    r = [pool[i] for i in rng.choice(len(pool), size=n, replace=False)]
    return np.array([BOS_ID, *r, *r], dtype=np.int64)


def _attention(params, cfg, ids):
    """ids (B, T) -> (B, L, H, T, T): every block's attention weights, from gpt_forward's
    cache."""
    _, cache = gpt_forward(params, cfg, ids)
    att = [block["attn"]["heads"]["attention"]["att"] for block in cache["blocks"]]  # L (B,H,T,T)
    return np.stack(att, axis=1)  # (B, L, H, T, T)


def attention_weights(params, cfg, ids):
    """One sequence's attention weights: ids (T,) -> (L, H, T, T); row i of a head sums to 1
    over the positions 0..i."""
    ids = np.asarray(ids)
    if ids.ndim != 1:
        raise ValueError(f"ids must be one sequence (T,), got shape {ids.shape}")
    return _attention(params, cfg, ids[None])[0]


def induction_table(params, cfg, vocab, rng, n_sequences, n=REPEAT_LENGTH):
    """Every head's induction score, averaged over n_sequences repeated random sequences of
    repeated_tokens(rng, vocab, n) -> ((L, H) scores, the causal-uniform baseline: the score
    of causal_uniform_attention on the same sequences, the mean of 1/(i + 1) over I)."""
    check_int("n_sequences", n_sequences, 1)
    check_int("n", n, 2)
    if 2 * n + 1 > cfg.n_ctx:
        raise ValueError(f"n={n!r} makes sequences of {2 * n + 1} tokens, longer than "
                         f"cfg.n_ctx={cfg.n_ctx}")
    ids = np.stack([repeated_tokens(rng, vocab, n) for _ in range(n_sequences)])  # (N, T)
    att = _attention(params, cfg, ids)  # (N, L, H, T, T)
    N, L, H, T, _ = att.shape
    scores = np.mean([induction_scores(att[b].reshape(L * H, T, T), ids[b]) for b in range(N)],
                     axis=0).reshape(L, H)
    uniform = causal_uniform_attention(T)
    baseline = float(np.mean([induction_scores(uniform, ids[b])[0] for b in range(N)]))
    return scores, baseline


# The k of the label prompts on which label_induction_table scores the heads: several pairs, so
# that the query's earlier pair is one of a few.
LABEL_K = 4


def query_induction_scores(att, ids):
    """Each head's weight, at the last position (a query x), on the token after x's most recent
    earlier occurrence: att (H, T, T) and ids (T,) of one sequence -> (H,). In a label prompt
    ``… x 7 ； … ； x`` that token is x's label, the answer: the induction score of the one
    position that matters, in the format the model was trained on."""
    att, ids = np.asarray(att), np.asarray(ids)
    if att.ndim != 3 or att.shape[1:] != (len(ids), len(ids)):
        raise ValueError(f"att must be (H, T, T) with T = len(ids) = {len(ids)}, got shape "
                         f"{att.shape}")
    earlier = np.flatnonzero(ids[:-1] == ids[-1])  # positions of the query's token before it
    if len(earlier) == 0 or earlier[-1] + 1 >= len(ids) - 1:
        raise ValueError(f"the last token of ids occurs nowhere earlier with a token after it: "
                         f"{ids.tolist()}")
    return att[:, -1, earlier[-1] + 1]  # (H,)


def label_induction_table(params, cfg, vocab, rng, n_items, k=LABEL_K):
    """query_induction_scores averaged over n_items k-shot label prompts [BOS] x1 d1 ； … ； x
    (k_shot_items) -> ((L, H) scores, the uniform baseline: the mean of 1/T over the prompts,
    what a head spreading its weight evenly would score)."""
    check_int("n_items", n_items, 1)
    items = [item for item in k_shot_items(rng, k, n_items * len(TASKS)) if item.task == LABEL]
    scores, baseline = [], []
    for item in items:
        ids = np.array([BOS_ID, *vocab.ids(item.prompt)])  # (T,)
        att = attention_weights(params, cfg, ids)  # (L, H, T, T)
        L, H, T, _ = att.shape
        scores.append(query_induction_scores(att.reshape(L * H, T, T), ids).reshape(L, H))
        baseline.append(1 / T)
    return np.mean(scores, axis=0), float(np.mean(baseline))
