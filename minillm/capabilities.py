"""The five capabilities of the tutorial's table 💡 训练目标对能力的影响, as tasks with exact answers.

The tutorial claims that the training objective decides what a model is good at:

    | 能力     | Next Token Prediction | MLM  | Seq2Seq |
    |----------|-----------------------|------|---------|
    | 文本生成 | ⭐⭐⭐                | ⭐   | ⭐⭐    |
    | 阅读理解 | ⭐⭐                  | ⭐⭐⭐ | ⭐⭐⭐  |
    | 问答系统 | ⭐⭐                  | ⭐⭐  | ⭐⭐⭐  |
    | 机器翻译 | ⭐                    | ⭐   | ⭐⭐⭐  |
    | 代码生成 | ⭐⭐⭐                | ⭐   | ⭐⭐    |

Each row becomes a task here whose right answer is known exactly, because its items are made
from the built-in world (world.py), whose every probability is known, and from the tiny
programming language of program.py, whose interpreter runs a program:

    文本生成  generation     free text. Scored by the share of samples the world can produce at
                             all (in its support) and that do not repeat an earlier sample, and
                             by the samples' true −log P per document beside the world's entropy
                             H (what the world's own samples score on average).
    阅读理解  comprehension  a passage with one word blanked anywhere → the word. Scored against
                             the argmax of the true posterior P(word | both sides), and by the
                             true probability the model's answer has.
    问答系统  qa             a passage and a question (谁 / 哪里 / 什么时候 / 做什么 / 几个) → the
                             answer, a word of the passage. Exact match.
    机器翻译  translation    Chinese → English (tense from the time word, English word order).
                             Exact match, and token accuracy.
    代码生成  code           a Chinese instruction → a program; pass@1: the program, run by
                             program.run, prints the expected output (held-out instructions
                             that hold a number training never saw).

Every task is a list of ``Example(source, target, truth)``: what a model reads, the exact
answer, and what the scoring needs besides. How each model family reads a source and writes a
target (GPT a prompt and its continuation, BERT [MASK] slots, an encoder-decoder input → output)
is compare.py's business; this module is the same for all three. The scores are checked by two
guessers: the oracle, which answers with the truth, scores 100% (or the known optimum), and a
uniform guesser scores chance (tests/test_capabilities.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from . import program
from .world import qa_items, translate

# The rows of the table, in the tutorial's order: task key -> the tutorial's name.
CAPABILITIES = {"generation": "文本生成", "comprehension": "阅读理解", "qa": "问答系统",
                "translation": "机器翻译", "code": "代码生成"}
# The columns: objective -> the tutorial's name.
OBJECTIVES = {"clm": "Next Token Prediction", "mlm": "MLM", "seq2seq": "Seq2Seq"}
# The tutorial's stars, cell by cell (08-training-objectives.md, 💡 训练目标对能力的影响).
STARS = {
    "generation": {"clm": 3, "mlm": 1, "seq2seq": 2},
    "comprehension": {"clm": 2, "mlm": 3, "seq2seq": 3},
    "qa": {"clm": 2, "mlm": 2, "seq2seq": 3},
    "translation": {"clm": 1, "mlm": 1, "seq2seq": 3},
    "code": {"clm": 3, "mlm": 1, "seq2seq": 2},
}
# Each row's headline metric (higher is better), chosen before any run: the table shows it.
HEADLINE = {"generation": "distinct_in_support", "comprehension": "accuracy", "qa": "exact_match",
            "translation": "exact_match", "code": "pass_at_1"}
METRIC_TITLES = {
    "distinct_in_support": "share of samples in the world's support and not a repeat of an "
                           "earlier sample",
    "in_support": "share of samples in the world's support",
    "nll": "true −log P of a sample, in nats per document (the world's entropy beside it)",
    "accuracy": "accuracy against the argmax of the true posterior",
    "true_prob": "true posterior probability of the answer",
    "exact_match": "exact match",
    "token_accuracy": "token accuracy",
    "pass_at_1": "pass@1 (the program's output is right)",
}
MASK = "[MASK]"  # the blank of a comprehension passage, for every family


@dataclass(frozen=True)
class Example:
    """One item of a task: the words a model reads, the exact answer, and what scoring needs.

    source  tuple of words (a passage with MASK, a passage and a question, a Chinese text, an
            instruction; for generation a document's first words, possibly none)
    target  tuple of words: the answer (for comprehension the word the document really had)
    truth   comprehension: the true posterior {word: P(word | both sides)}; code: the expected
            output; otherwise None
    passage, blank   comprehension only: the whole document's words and the blank's position
    """

    source: tuple
    target: tuple
    truth: object = None
    passage: tuple = ()
    blank: int = -1
    kind: str = field(default="", compare=False)  # qa: the question's kind (谁, 哪里, ...)


# ----------------------------------------------------------------------------------------------
# The items


def _fits(example, limit):
    """A row of the longest format fits ``limit`` (BERT: [CLS] source [SEP] target [EOS]
    [SEP]; GPT's [BOS] source [SEP] target [EOS] is one shorter)."""
    return len(example.source) + len(example.target) + 4 <= limit


def make_examples(task, world, rng, n, split, limit):
    """``n`` examples of ``task`` from documents of the world's ``split`` ("train" for
    fine-tuning, "test" for evaluation), each short enough that every family's format fits
    ``limit`` tokens (the models' n_ctx). Drawn from ``rng``: the same rng, the same items."""
    if task not in CAPABILITIES:
        raise ValueError(f"task must be one of {sorted(CAPABILITIES)}, got {task!r}")
    out, tries = [], 0
    while len(out) < n:
        tries += 1
        if tries > 100:
            raise ValueError(f"cannot make {n} {task} examples that fit {limit} tokens")
        if task == "code":
            batch = [Example(item.instruction, item.program, item.output)
                     for item in program.code_items(rng, n - len(out), split)]
        else:
            batch = [_from_document(task, doc, world, rng)
                     for doc in world.sample(rng, n - len(out), split=split)]
        out += [ex for ex in batch if ex is not None and _fits(ex, limit)]
    return out


def _from_document(task, doc, world, rng):
    """One example of a document-based task (None if the document has no such item)."""
    words = tuple(doc.words)
    if task == "generation":  # a document cut at a random point: its start, and the rest
        cut = int(rng.integers(0, len(words) + 1))
        return Example(words[:cut], words[cut:])
    if task == "comprehension":  # any word may be the blank
        k = int(rng.integers(0, len(words)))
        posterior = world.blank_posterior(words, k)
        return Example(words[:k] + (MASK,) + words[k + 1:], (words[k],), posterior,
                       passage=words, blank=k)
    if task == "qa":
        items = qa_items(doc)
        if not items:
            return None
        kind, question, answer = items[int(rng.integers(0, len(items)))]
        return Example(words + tuple(question), tuple(answer), kind=kind)
    if task == "translation":
        return Example(words, tuple(translate(doc)))
    raise AssertionError(task)


# ----------------------------------------------------------------------------------------------
# The scores: one number per item (the table's cells are their means)


def best_answer(posterior):
    """The argmax of a blank's true posterior (ties: the first word in sorted order)."""
    return max(sorted(posterior), key=lambda w: posterior[w])


def score_comprehension(example, answer):
    """A model's word for the blank -> {"accuracy": 1.0 if it is the posterior's argmax else
    0.0, "true_prob": P(answer | both sides), the truth's probability of that answer}."""
    posterior = example.truth
    return {"accuracy": float(answer == best_answer(posterior)),
            "true_prob": float(posterior.get(answer, 0.0))}


def token_accuracy(reference, output):
    """The share of positions i < max(|reference|, |output|) where output[i] == reference[i]:
    a word in the right place counts, a missing or an extra word counts against."""
    width = max(len(reference), len(output))
    if width == 0:
        return 1.0
    return sum(a == b for a, b in zip(reference, output)) / width


def score_answer(example, output):
    """qa and translation: -> {"exact_match", "token_accuracy"} of the output words."""
    output = tuple(output)
    return {"exact_match": float(output == example.target),
            "token_accuracy": token_accuracy(example.target, output)}


def score_code(example, output):
    """code: run the program the model wrote; pass@1 is 1.0 if it prints the expected output.
    A program outside the language (program.ProgramError) fails."""
    try:
        printed = program.run(tuple(output))
    except program.ProgramError:
        return {"pass_at_1": 0.0}
    return {"pass_at_1": float(printed == example.truth)}


def score_samples(world, samples):
    """generation: each sampled document (a tuple of words, without [EOS]) -> {"in_support":
    1.0 if the world can produce it, "distinct_in_support": 1.0 if it is in the support and no
    earlier sample of the list is the same document, "nll": its true −log P in nats (NaN
    outside the support)}.

    A generator that samples the world itself has mean nll = the world's entropy per document
    (E[−log P(x)] = H), and its samples are almost all distinct (the world has millions of
    documents); one that repeats a few likely documents has less nll and many repeats; one
    that wanders falls outside the support."""
    out, seen = [], set()
    for words in samples:
        words = tuple(words)
        log_p = world.log_prob(words)
        inside = math.isfinite(log_p)
        out.append({"distinct_in_support": float(inside and words not in seen),
                    "in_support": float(inside), "nll": -log_p if inside else math.nan})
        seen.add(words)
    return out


def score(task, example, output):
    """The scores of one answer of ``task`` (the output words; for comprehension a word)."""
    if task == "comprehension":
        return score_comprehension(example, output)
    if task == "code":
        return score_code(example, output)
    if task in ("qa", "translation"):
        return score_answer(example, output)
    raise ValueError(f"task must be comprehension, qa, translation or code, got {task!r}")


# ----------------------------------------------------------------------------------------------
# Two guessers that validate the scoring


def oracle_answer(task, example):
    """The truth: the posterior's argmax for a blank, the exact answer otherwise."""
    if task == "comprehension":
        return best_answer(example.truth)
    return example.target


def uniform_answer(task, example, rng, words):
    """A guesser that knows nothing: a blank's word uniform over ``words``; otherwise as many
    words as the answer has, each uniform over ``words``."""
    words = sorted(words)
    if task == "comprehension":
        return words[int(rng.integers(0, len(words)))]
    return tuple(words[i] for i in rng.integers(0, len(words), size=len(example.target)))


# ----------------------------------------------------------------------------------------------
# Intervals and verdicts


def bootstrap_means(scores, rng, n_boot=2000):
    """``n_boot`` bootstrap replicates of the mean of ``scores`` (seeds, items): seeds and
    items are both resampled with replacement, so the interval covers the spread from training
    (seeds) and from the choice of test items."""
    scores = np.asarray(scores, dtype=np.float64)
    S, N = scores.shape
    seeds = rng.integers(0, S, size=(n_boot, S))
    items = rng.integers(0, N, size=(n_boot, N))
    return scores[seeds[:, :, None], items[:, None, :]].mean(axis=(1, 2))


def interval95(replicates):
    """The 2.5th and 97.5th percentiles of bootstrap replicates: a 95% interval."""
    lo, hi = np.percentile(replicates, [2.5, 97.5])
    return float(lo), float(hi)


# Two cells with equal stars agree when their difference is within this margin (5 points of a
# share): an interval that merely holds 0 may be too wide to say anything.
EQUIVALENCE_MARGIN = 0.05


def pair_verdict(stars_a, stars_b, difference_ci, margin=EQUIVALENCE_MARGIN):
    """Does the measured difference a − b (its 95% interval) agree with the stars?

    More stars for a: agrees if the interval is above 0, disagrees if below, else "unclear".
    Equal stars: agrees if the interval lies within ±margin, disagrees if it excludes 0,
    else "unclear".
    """
    lo, hi = difference_ci
    if stars_a == stars_b:
        if -margin <= lo and hi <= margin:
            return "agrees"
        return "disagrees" if lo > 0 or hi < 0 else "unclear"
    better, worse = (lo > 0, hi < 0) if stars_a > stars_b else (hi < 0, lo > 0)
    return "agrees" if better else "disagrees" if worse else "unclear"


def cell_verdict(pair_verdicts):
    """A cell agrees with the tutorial if every comparison with the other cells of its row
    agrees, disagrees if any disagrees, and is unclear otherwise."""
    if "disagrees" in pair_verdicts:
        return "disagrees"
    return "agrees" if all(v == "agrees" for v in pair_verdicts) else "unclear"
