"""Instruction data whose true reward is known, and a labeler whose noise is known.

InstructGPT (Ouyang et al. 2022) learns from people: demonstrations of good answers, then
comparisons of two answers, "which is better?". Nobody knows the reward a person has in mind,
so nobody can say how good a reward model could have been. Here the person is replaced by a
stated function, so both are known.

Prompts are the built-in grammar's tasks (grammar.py: 总结 / 翻译 / 问), and the
demonstration of a prompt is the task's exact answer:

    总结：今天天气很好，我们去公园玩。         ->  今天我们去公园玩了。
    翻译：今天我们去公园玩了。                 ->  today we went to the park to play.
    问：今天我们去公园玩了。谁去公园？         ->  我们

Every prompt has four candidate responses, one of each kind (the example is the first prompt):

    correct      the exact answer                        今天我们去公园玩了。
    too_long     the answer, then the input sentence     今天我们去公园玩了。今天天气很好，…
    wrong_slot   the answer with one slot changed:       今天我去公园玩了。
                 the person (the next one in the grammar's table, cyclically); for a
                 where-question the place
    off_task     the input sentence copied back          今天天气很好，我们去公园玩。
                 (the instruction ignored)

**The true reward** r*(x, y) of any response y to a prompt x (not only the candidates) is a
table of the response's kind, decided in this order:

    kind of y                                               r*(x, y)
    y is the answer                             correct       +2
    y is the answer with one slot changed,      wrong_slot     0
        any other value of that slot
    y is the input sentence                     off_task      -1
    y starts with the answer and goes on        too_long      +1
    anything else                               other         -2

(wrong_slot is decided before too_long: the person 我 is a prefix of the person 我们.)

**Demonstrations.** InstructGPT's demonstrations were written by people, not always right.
Here a demonstrator writes each kind of candidate with the stated probabilities
DEMONSTRATION_MIX (correct .55, too_long .2, wrong_slot .15, off_task .1), so supervised
fine-tuning learns a policy whose expected true reward is .55·2 + .2·1 + .15·0 − .1·1 = 1.2,
and the preference stages have something to improve.

**The labeler** is Bradley–Terry (Bradley & Terry 1952; the model of InstructGPT's reward
loss and of DPO's Eq. 1) with temperature τ, the labeler's noise:

    P(y_a ≻ y_b | x) = σ((r*(x, y_a) − r*(x, y_b)) / τ),    τ = TAU = 1

so a labeler prefers the better of two responses one step apart in the table 73% of the time,
and never prefers with certainty. Its ranking of K responses is Plackett–Luce (Luce 1959,
Plackett 1975): sort by r*/τ + g with g independent standard Gumbel noise. The difference of
two independent standard Gumbels is standard logistic, so every pair of a ranking is ordered
with exactly the Bradley–Terry probability above.

**The Bayes limit.** No reward model can predict the labeler's held-out choices better than
the labeler's own probabilities do: for a pair with p = P(y_a ≻ y_b), the best guess is right
with probability max(p, 1 − p). With the pair drawn uniformly among a prompt's C(4, 2) = 6
candidate pairs, the best achievable accuracy is E[max(p, 1 − p)] (bayes_accuracy); with the
table above and τ = 1 it is (3 σ(1) + 2 σ(2) + σ(3)) / 6 ≈ 0.818.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .grammar import ASK, PEOPLE, PLACES, SUMMARY, TRANSLATE, Sentence, \
    default_grammar

TASKS = ("summary", "translate", "question")
# The candidate kinds, best first by the true reward.
KINDS = ("correct", "too_long", "wrong_slot", "off_task")
# r*(x, y) by the kind of y (the table of the module docstring); "other" is anything else.
TRUE_REWARD = {"correct": 2.0, "too_long": 1.0, "wrong_slot": 0.0, "off_task": -1.0,
               "other": -2.0}
# The labeler's temperature τ: the scale of its noise, in units of the true reward.
TAU = 1.0
# How often the demonstrator writes each kind of candidate (sample_demonstrations).
DEMONSTRATION_MIX = {"correct": 0.55, "too_long": 0.2, "wrong_slot": 0.15, "off_task": 0.1}
PERIOD = "。"


@dataclass(frozen=True)
class Prompt:
    """One instruction: the text a model reads, its task, the sentence inside it, and the
    demonstration (the task's exact answer)."""

    text: str
    task: str
    sentence: Sentence
    answer: str


@dataclass(frozen=True)
class Comparison:
    """One label: for ``prompt``, the labeler preferred ``chosen`` (y_w) to ``rejected`` (y_l)."""

    prompt: Prompt
    chosen: str
    rejected: str


def _check_rng(rng):
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a np.random.Generator, got {type(rng).__name__}")


def _sentence_by_text():
    """Every sentence of the grammar, by its text (built once per call; 970 entries)."""
    return {s.text: s for s in default_grammar().sentences}


def make_prompt(text, answer, sentences=None):
    """The Prompt of a grammar task pair (input text, target text), as
    ``Grammar.sample_task_pairs`` makes them. ``sentences`` (text -> Sentence) saves building
    the table again when many prompts are made."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}: {text!r}")
    sentences = _sentence_by_text() if sentences is None else sentences
    for task, prefix in (("summary", SUMMARY), ("translate", TRANSLATE), ("question", ASK)):
        if text.startswith(prefix):
            body = text[len(prefix):]
            sentence = sentences.get(body[: body.find(PERIOD) + 1])
            if sentence is not None:
                return Prompt(text, task, sentence, answer)
    raise ValueError(f"text must be a task input of the grammar, got {text!r}")


def split_sentences(rng, fraction):
    """(training texts, held-out texts): the sentences a prompt can be made from (kinds A and
    B, grammar.Grammar.task_pair), a ``fraction`` of each kind held out, drawn uniformly. Two
    disjoint frozensets; a prompt made from a held-out sentence was never trained on."""
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not (
            0 < fraction < 1):
        raise ValueError(f"fraction must be a number in (0, 1), got {fraction!r}")
    _check_rng(rng)
    train, held_out = set(), set()
    for kind in ("A", "B"):
        texts = sorted(s.text for s in default_grammar().sentences if s.kind == kind)
        order = rng.permutation(len(texts))
        n_out = math.ceil(fraction * len(texts))  # at least one of each kind
        held_out |= {texts[i] for i in order[:n_out]}
        train |= {texts[i] for i in order[n_out:]}
    return frozenset(train), frozenset(held_out)


def sample_prompts(rng, n, tasks=TASKS, within=None):
    """n prompts, each of a task drawn uniformly from ``tasks`` and a sentence drawn from the
    grammar among those the task accepts (grammar.Grammar.sample_task_pairs); with ``within``
    (a set of sentence texts, as split_sentences gives), only prompts whose sentence is in it:
    the grammar's distribution conditioned on it (the others are drawn again)."""
    _check_rng(rng)
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"n must be a non-negative integer, got {n!r}")
    unknown = [t for t in tasks if t not in TASKS]
    if unknown or len(tasks) == 0:
        raise ValueError(f"tasks must be some of {TASKS}, got {tasks!r}")
    sentences = _sentence_by_text()
    if within is not None:
        kinds = {sentences[t].kind for t in within if t in sentences}
        if "A" not in kinds or "B" not in kinds:  # summary needs kind A, translation kind B
            raise ValueError(f"within must hold sentences of the grammar of kinds A and B, got "
                             f"{len(within)} texts of kinds {sorted(kinds)}")
    prompts = []
    while len(prompts) < n:
        pairs = default_grammar().sample_task_pairs(rng, n - len(prompts), tasks)
        drawn = [make_prompt(text, answer, sentences) for text, answer in pairs]
        prompts += [p for p in drawn if within is None or p.sentence.text in within]
    return prompts


# ----------------------------------------------------------------------------------------------
# Candidate responses and the true reward


def _next_in(table, value):
    """The value after ``value`` in a rule table's order, cyclically: a deterministic wrong
    value of a slot."""
    keys = list(table)
    return keys[(keys.index(value) + 1) % len(keys)]


def _answer_with(prompt, person=None, place=None):
    """The answer of ``prompt``'s task for its sentence with the person or the place replaced."""
    s = prompt.sentence
    person = s.person if person is None else person
    place = s.place if place is None else place
    if prompt.task == "question":
        return person if prompt.answer == s.person else place
    changed = Sentence(s.kind, s.time, s.subject, s.predicate, person, place, s.activity)
    return default_grammar().task_pair(changed, prompt.task, None)[1]


def _asks_where(prompt):
    """True for a where-question (its answer is the place), whose wrong slot is the place."""
    return prompt.task == "question" and prompt.answer == prompt.sentence.place


def wrong_slot_answers(prompt):
    """Every answer with one slot changed to another value of the grammar: the person (or,
    for a where-question, the place, among those of a kind-B sentence)."""
    if _asks_where(prompt):
        return [_answer_with(prompt, place=p) for p in PLACES[None] if p != prompt.sentence.place]
    return [_answer_with(prompt, person=p) for p in PEOPLE if p != prompt.sentence.person]


def candidates(prompt):
    """The four candidate responses of a prompt, {kind: text}, one of each of KINDS."""
    s = prompt.sentence
    if _asks_where(prompt):
        wrong = _answer_with(prompt, place=_next_in(PLACES[None], s.place))
    else:
        wrong = _answer_with(prompt, person=_next_in(PEOPLE, s.person))
    return {"correct": prompt.answer, "too_long": prompt.answer + s.text, "wrong_slot": wrong,
            "off_task": s.text}


def response_kind(prompt, response):
    """The kind of any response to ``prompt``: a key of TRUE_REWARD, decided in the order of
    the module docstring's table."""
    if not isinstance(response, str):
        raise TypeError(f"response must be a str, got {type(response).__name__}: {response!r}")
    if response == prompt.answer:
        return "correct"
    if response in wrong_slot_answers(prompt):
        return "wrong_slot"
    if response == prompt.sentence.text:
        return "off_task"
    if response.startswith(prompt.answer):
        return "too_long"
    return "other"


def true_reward(prompt, response):
    """r*(x, y) = TRUE_REWARD[kind of y]: the stated function the labeler's choices follow."""
    return TRUE_REWARD[response_kind(prompt, response)]


def sample_demonstrations(rng, prompts, mix=None):
    """One demonstration per prompt: a candidate whose kind is drawn from ``mix`` ({kind:
    probability}, default DEMONSTRATION_MIX). -> a list of response texts."""
    _check_rng(rng)
    mix = DEMONSTRATION_MIX if mix is None else mix
    numbers = all(isinstance(p, (int, float)) and not isinstance(p, bool) for p in mix.values())
    if not numbers or set(mix) - set(KINDS) or not math.isclose(sum(mix.values()), 1.0) or min(
            mix.values()) < 0:
        raise ValueError(f"mix must give probabilities of kinds among {KINDS} that sum to 1, "
                         f"got {mix!r}")
    kinds = rng.choice(list(mix), size=len(prompts), p=list(mix.values()))
    return [candidates(prompt)[kind] for prompt, kind in zip(prompts, kinds)]


def expected_true_reward(policy):
    """E_{kind ~ policy}[r*] for a distribution over candidate kinds ({kind: probability}):
    the true reward of a policy that writes only candidates (1.2 for DEMONSTRATION_MIX)."""
    return sum(p * TRUE_REWARD[kind] for kind, p in policy.items())


# ----------------------------------------------------------------------------------------------
# The Bradley–Terry labeler


def _check_tau(tau):
    if isinstance(tau, bool) or not isinstance(tau, (int, float)) or not 0 < tau < math.inf:
        raise ValueError(f"tau must be a finite number > 0, got {tau!r}")


def preference_probability(prompt, a, b, tau=TAU):
    """P(a ≻ b | x) = σ((r*(x, a) − r*(x, b)) / τ)   (Bradley–Terry; DPO's Eq. 1 with r*/τ)."""
    _check_tau(tau)
    diff = (true_reward(prompt, a) - true_reward(prompt, b)) / tau
    return 1.0 / (1.0 + math.exp(-diff))


def label(rng, prompt, a, b, tau=TAU):
    """One comparison by the labeler: a is preferred with probability
    preference_probability(prompt, a, b, tau). Returns a Comparison."""
    _check_rng(rng)
    if rng.random() < preference_probability(prompt, a, b, tau):
        return Comparison(prompt, a, b)
    return Comparison(prompt, b, a)


def rank(rng, prompt, responses, tau=TAU):
    """The labeler's ranking of K responses, best first (Plackett–Luce): sorted by
    r*(x, y)/τ + g, g ~ Gumbel(0, 1) independent. Every pair of the ranking is ordered with
    its Bradley–Terry probability (the difference of two Gumbels is logistic)."""
    _check_rng(rng)
    _check_tau(tau)
    scores = np.array([true_reward(prompt, y) / tau for y in responses]) + rng.gumbel(
        size=len(responses))  # (K,)
    return [responses[k] for k in np.argsort(-scores, kind="stable")]


def sample_comparisons(rng, prompts, tau=TAU):
    """One comparison per prompt: an unordered pair of distinct candidates drawn uniformly
    (each of the C(4, 2) pairs with probability 1/6), labelled by the labeler."""
    _check_rng(rng)
    out = []
    for prompt in prompts:
        texts = list(candidates(prompt).values())
        i, j = rng.choice(len(texts), size=2, replace=False)
        out.append(label(rng, prompt, texts[i], texts[j], tau))
    return out


def bayes_accuracy(prompts, tau=TAU):
    """The best accuracy any predictor of the labeler's choices can reach, exactly:

        E[max(p, 1 − p)],   p = P(y_a ≻ y_b | x) = σ((r*(x, y_a) − r*(x, y_b)) / τ)

    averaged over the prompts and, within a prompt, over its C(4, 2) candidate pairs (the
    pairs sample_comparisons draws, each equally likely)."""
    prompts = list(prompts)
    if not prompts:
        raise ValueError("prompts must hold at least one prompt, got none")
    total = 0.0
    for prompt in prompts:
        texts = list(candidates(prompt).values())
        pairs = [(a, b) for i, a in enumerate(texts) for b in texts[i + 1:]]
        for a, b in pairs:
            p = preference_probability(prompt, a, b, tau)
            total += max(p, 1.0 - p) / len(pairs)
    return total / len(prompts)


def encode(tokenizer, prompt_text, response_text):
    """(prompt ids, response ids) by the grammar's tokenizer: what the GPT reads is
    [BOS] prompt [SEP] response [EOS] (rlhf.sft_batch adds the specials)."""
    return tokenizer.encode(prompt_text), tokenizer.encode(response_text)
