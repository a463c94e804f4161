"""The built-in corpus: a small probabilistic grammar of Chinese sentences whose truth is known.

A language model's loss can only be judged against the truth, and for real text nobody knows
it. This grammar is small enough to list every sentence it can produce with its exact
probability, so minillm can print the model's P(公园 | 今天天气很好，我们去) beside the true one,
and every training run can show how far its loss is above the entropy of the source: the floor
no model can go below.

The whole grammar (each choice is independent of the others unless it says "given"):

    sentence kind   A 0.5   time subject predicate ， person 去 place activity 。
                            今天 天气 很好 ， 我们 去 公园 玩 。
                    B 0.3   time person 去 place activity 了 。
                            今天 我们 去 公园 玩 了 。          (the summary of an A sentence)
                    C 0.2   time subject predicate 。
                            今天 天气 很好 。
    time            今天 .4   明天 .2   昨天 .15   周末 .15   早上 .1
    subject         天气 .8   阳光 .2
    predicate       given 天气: 很好 .5  不错 .2  不好 .2  很热 .1
                    given 阳光: 很好 .6  不错 .4
    person          我们 .5   我 .2   他们 .15   小明 .15
    place           given the weather (kind A):
                        good (很好, 不错): 公园 .5  海边 .2  学校 .15  商店 .15
                        bad (不好):        商店 .4  图书馆 .4  学校 .2
                        hot (很热):        海边 .6  商店 .2  图书馆 .2
                    no weather (kind B): 公园 .35  学校 .2  商店 .15  海边 .15  图书馆 .15
    activity        given the place: 公园: 玩 .6  散步 .4    海边: 游泳 .6  玩 .4
                                     学校: 上课 .7  学习 .3  商店: 买东西 1
                                     图书馆: 看书 .7  学习 .3

So after 今天天气很好，我们去 the true next word is 公园 with probability 0.5, and in
今天[MASK]很好 the hidden word is 天气 with probability 0.4 / (0.4 + 0.12) ≈ 0.77.
The support holds 970 sentences; H = 6.12 nats per sentence, E[tokens] = 8.4 (words + [EOS]),
so the entropy floor is H / E[tokens] = 0.729 nats per token.

Lexicon rule: longest-match segmentation of a sentence's text gives back exactly its words
(今天天气 -> 今天 | 天气: no word of the lexicon straddles the boundary of two others);
tests/test_grammar.py checks it for every sentence of the support.

Text-to-text tasks (T5's framing: the task is named by a prefix of the input), built from the
slots of a sentence, so every answer is exactly right:

    总结：今天天气很好，我们去公园玩。       ->  今天我们去公园玩了。       (summary: kind A -> B)
    翻译：今天我们去公园玩了。               ->  today we went to the park to play.
    问：今天我们去公园玩了。谁去公园？       ->  我们
    问：今天我们去公园玩了。我们去哪里？     ->  公园
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

# ----------------------------------------------------------------------------------------------
# The rules, as data: every table maps a choice to its probability.

KINDS = {"A": 0.5, "B": 0.3, "C": 0.2}
TIMES = {"今天": 0.4, "明天": 0.2, "昨天": 0.15, "周末": 0.15, "早上": 0.1}
SUBJECTS = {"天气": 0.8, "阳光": 0.2}
PREDICATES = {
    "天气": {"很好": 0.5, "不错": 0.2, "不好": 0.2, "很热": 0.1},
    "阳光": {"很好": 0.6, "不错": 0.4},
}
WEATHER_OF = {"很好": "good", "不错": "good", "不好": "bad", "很热": "hot"}
PEOPLE = {"我们": 0.5, "我": 0.2, "他们": 0.15, "小明": 0.15}
PLACES = {
    "good": {"公园": 0.5, "海边": 0.2, "学校": 0.15, "商店": 0.15},
    "bad": {"商店": 0.4, "图书馆": 0.4, "学校": 0.2},
    "hot": {"海边": 0.6, "商店": 0.2, "图书馆": 0.2},
    None: {"公园": 0.35, "学校": 0.2, "商店": 0.15, "海边": 0.15, "图书馆": 0.15},
}
ACTIVITIES = {
    "公园": {"玩": 0.6, "散步": 0.4},
    "海边": {"游泳": 0.6, "玩": 0.4},
    "学校": {"上课": 0.7, "学习": 0.3},
    "商店": {"买东西": 1.0},
    "图书馆": {"看书": 0.7, "学习": 0.3},
}
COMMA, PERIOD, GO, DONE = "，", "。", "去", "了"

# The toy English of the translation task: one phrase per Chinese word, past tense throughout
# (the task translates kind-B sentences, which end in 了).
ENGLISH = {
    "今天": "today", "明天": "tomorrow", "昨天": "yesterday", "周末": "at the weekend",
    "早上": "in the morning",
    "我们": "we", "我": "I", "他们": "they", "小明": "Xiaoming",
    "公园": "the park", "海边": "the beach", "学校": "school", "商店": "the shop",
    "图书馆": "the library",
    "玩": "play", "散步": "take a walk", "游泳": "swim", "上课": "have class",
    "学习": "study", "买东西": "buy things", "看书": "read",
}
# Task prefixes and the words of questions, added to the tokenizer's lexicon.
SUMMARY, TRANSLATE, ASK = "总结：", "翻译：", "问："
WHO, WHERE, QUESTION_MARK = "谁", "哪里", "？"
TASK_WORDS = ("总结", "翻译", "问", "：", WHO, WHERE, QUESTION_MARK)

# The end of a sentence, as a "next word": the model predicts it as the token [EOS].
END = "[EOS]"


@dataclass(frozen=True)
class Sentence:
    """One sentence with the slots it was built from (None where its kind has no such slot)."""

    kind: str
    time: str
    subject: str | None = None
    predicate: str | None = None
    person: str | None = None
    place: str | None = None
    activity: str | None = None

    @property
    def words(self):
        """The sentence as a tuple of words, in the order of its kind's template."""
        if self.kind == "A":
            return (self.time, self.subject, self.predicate, COMMA, self.person, GO, self.place,
                    self.activity, PERIOD)
        if self.kind == "B":
            return (self.time, self.person, GO, self.place, self.activity, DONE, PERIOD)
        return (self.time, self.subject, self.predicate, PERIOD)

    @property
    def text(self):
        return "".join(self.words)


def _draw(table, rng):
    """One choice from a rule table {choice: probability}."""
    choices = list(table)
    return choices[rng.choice(len(choices), p=list(table.values()))]


def _enumerate():
    """Every derivation with its probability: the product of the choices along the way."""
    out = []
    for time, p_time in TIMES.items():
        weathers = [(s, pr, p_time * p_s * p_pr)
                    for s, p_s in SUBJECTS.items() for pr, p_pr in PREDICATES[s].items()]
        for s, pr, p in weathers:  # kind C
            out.append((Sentence("C", time, s, pr), KINDS["C"] * p))
        for person, p_person in PEOPLE.items():
            outings = []
            for s, pr, p in weathers:  # kind A
                outings.append((dict(subject=s, predicate=pr), "A", KINDS["A"] * p,
                                PLACES[WEATHER_OF[pr]]))
            outings.append(({}, "B", KINDS["B"] * p_time, PLACES[None]))  # kind B
            for slots, kind, p, places in outings:
                for place, p_place in places.items():
                    for act, p_act in ACTIVITIES[place].items():
                        out.append((Sentence(kind, time, person=person, place=place, activity=act,
                                             **slots), p * p_person * p_place * p_act))
    return out


class Grammar:
    """The built-in probabilistic grammar, with exact probabilities computed by enumeration.

    ``words`` is the lexicon (a sorted tuple); ``sentences`` and ``probs`` list every
    derivation with its probability (one derivation per sentence: the kinds' templates differ).
    Methods that take words also take text, which they cut with ``tokenizer()``.
    """

    def __init__(self):
        self._derivations = _enumerate()
        self.sentences = [s for s, _ in self._derivations]
        self.probs = np.array([p for _, p in self._derivations])
        support = {}
        for s, p in self._derivations:
            support[s.words] = support.get(s.words, 0.0) + p
        self._support = support
        words = set()
        for s in self.sentences:
            words.update(s.words)
        self.words = tuple(sorted(words))  # the lexicon
        self._prefix = {}  # prefix (tuple of words) -> probability
        self._tokenizer = None  # built on first use by _words
        for sent, p in support.items():
            for n in range(len(sent) + 1):
                self._prefix[sent[:n]] = self._prefix.get(sent[:n], 0.0) + p

    def support(self):
        """Every sentence (a tuple of words) with its probability P(s): the product of the
        choices of its derivation (enumerated once, in __init__). Σ_s P(s) = 1."""
        return dict(self._support)

    def tokenizer(self, extra_words=()):
        """The project's default tokenizer: the grammar's words, the task words and the
        English words of the translation task as the lexicon (and ``extra_words``: the words of
        the picture questions, pictures.caption_tokenizer)."""
        from .tokenizer import Tokenizer

        english = {w for phrase in ENGLISH.values() for w in phrase.split()} | {"went", "to"}
        english = sorted(english)
        return Tokenizer(self.words + TASK_WORDS + tuple(english) + tuple(extra_words),
                         extra_chars=" .")

    # ------------------------------------------------------------------------------------------
    # Text-to-text tasks

    def task_pair(self, sentence, task, rng):
        """(input text, target text) of one task for one sentence; see the module docstring.

        summary needs a kind-A sentence; translation a kind-B one; a question any sentence
        with a person (kind A or B): who went there, or where the person went (drawn by rng).
        """
        s = sentence
        if task == "summary":
            if s.kind != "A":
                raise ValueError(f"the summary task needs a kind-A sentence, got {s.text!r}")
            short = Sentence("B", s.time, person=s.person, place=s.place, activity=s.activity)
            return SUMMARY + s.text, short.text
        if task == "translate":
            if s.kind != "B":
                raise ValueError(f"the translation task needs a kind-B sentence, got {s.text!r}")
            words = [ENGLISH[s.time], ENGLISH[s.person], "went to", ENGLISH[s.place], "to",
                     ENGLISH[s.activity]]
            return TRANSLATE + s.text, " ".join(words) + "."
        if task == "question":
            if s.kind == "C":
                raise ValueError(f"a question needs a sentence with a person, got {s.text!r}")
            if rng.random() < 0.5:
                return ASK + s.text + WHO + GO + s.place + QUESTION_MARK, s.person
            return ASK + s.text + s.person + GO + WHERE + QUESTION_MARK, s.place
        raise ValueError(f"task must be 'summary', 'translate' or 'question', got {task!r}")

    def task_answer(self, text):
        """The exact target of a task input (summary, translation or question), found by
        building every task pair of the sentence inside it."""
        for task, prefix in (("summary", SUMMARY), ("translate", TRANSLATE), ("question", ASK)):
            if text.startswith(prefix):
                break
        else:
            raise ValueError(f"text must start with {SUMMARY}, {TRANSLATE} or {ASK}, got {text!r}")
        for s in self.sentences:
            if task != "question" and text == prefix + s.text:
                return self.task_pair(s, task, None)[1]
            if task == "question" and s.kind != "C" and text.startswith(prefix + s.text):
                asked = text[len(prefix + s.text):]
                if asked == WHO + GO + s.place + QUESTION_MARK:
                    return s.person
                if asked == s.person + GO + WHERE + QUESTION_MARK:
                    return s.place
        raise ValueError(f"{text!r} is not a task input the grammar can make")

    def sample_task_pairs(self, rng, n, tasks=("summary", "translate", "question")):
        """n (input, target) pairs, each of a task drawn uniformly from ``tasks``, its sentence
        drawn from the grammar among the sentences the task accepts."""
        kinds = {"summary": "A", "translate": "B", "question": "AB"}
        pairs = []
        for task in rng.choice(list(tasks), size=n):
            while True:
                (s,) = self.sample(rng, 1)
                if s.kind in kinds[task]:
                    break
            pairs.append(self.task_pair(s, task, rng))
        return pairs

    # ------------------------------------------------------------------------------------------
    # Sampling

    def sample(self, rng, n):
        """n sentences (Sentence objects), drawn independently with their true probabilities."""
        if not isinstance(rng, np.random.Generator):
            raise TypeError(f"rng must be a np.random.Generator, got {type(rng).__name__}")
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
            raise ValueError(f"n must be a non-negative integer, got {n!r}")
        idx = rng.choice(len(self.sentences), size=n, p=self.probs)
        return [self.sentences[i] for i in idx]

    def sample_text(self, rng, n):
        """n sentences as text (their words joined), drawn as in ``sample``."""
        return [s.text for s in self.sample(rng, n)]

    def sample_documents(self, rng, n):
        """n two-sentence documents for next-sentence prediction: a weather sentence (kind C),
        then an outing of the same day (kind B) whose place follows that weather, as in kind A:

            今天天气不好。 | 今天我们去图书馆看书了。

        So the true second sentence is recognisable (the same time; a place that fits the
        weather), and a second sentence taken from another document usually is not.
        Returns a list of [first text, second text].
        """
        documents = []
        for _ in range(n):
            while True:
                (first,) = self.sample(rng, 1)
                if first.kind == "C":
                    break
            place = _draw(PLACES[WEATHER_OF[first.predicate]], rng)
            activity = _draw(ACTIVITIES[place], rng)
            person = _draw(PEOPLE, rng)
            second = Sentence("B", first.time, person=person, place=place, activity=activity)
            documents.append([first.text, second.text])
        return documents

    # ------------------------------------------------------------------------------------------
    # Exact probabilities

    def _words(self, words_or_text):
        """A tuple of words: text is cut by the grammar's tokenizer, a sequence is kept."""
        if isinstance(words_or_text, str):
            if self._tokenizer is None:
                self._tokenizer = self.tokenizer()
            return tuple(self._tokenizer.tokenize(words_or_text))
        return tuple(words_or_text)

    def sentence_probability(self, words_or_text):
        """P(sentence): 0.0 for anything the grammar cannot produce."""
        return self._support.get(self._words(words_or_text), 0.0)

    def prefix_probability(self, prefix):
        """P(a sentence starts with these words) = Σ of P(s) over sentences s with that prefix.
        The empty prefix has probability 1; a whole sentence's prefix probability is at least
        its sentence probability (other sentences may continue it)."""
        return self._prefix.get(self._words(prefix), 0.0)

    def next_word_distribution(self, prefix):
        """The true P(next word | prefix) = P(prefix + word) / P(prefix), ending as "[EOS]".

        This is the distribution a perfect language model would predict at this position.
        """
        prefix = self._words(prefix)
        total = self.prefix_probability(prefix)
        if total == 0.0:
            raise ValueError(f"prefix {''.join(prefix)!r} has probability 0 under the grammar")
        dist = {}
        for sent, p in self._support.items():
            if sent[: len(prefix)] == prefix:
                word = sent[len(prefix)] if len(sent) > len(prefix) else END
                dist[word] = dist.get(word, 0.0) + p / total
        return dict(sorted(dist.items(), key=lambda kv: -kv[1]))

    def masked_word_distribution(self, words, as_prefix=True):
        """The true distribution of the one word marked "[MASK]" in ``words``, among sentences
        that agree with all the other words (from their start, when ``as_prefix``; else the
        whole sentence). This is what a perfect masked language model would predict:

            P(w | the others) = Σ_{s agrees, s[mask] = w} P(s) / Σ_{s agrees} P(s)
        """
        words = self._words(words)
        if words.count("[MASK]") != 1:
            raise ValueError(f"words must hold exactly one [MASK], got {''.join(words)!r}")
        at = words.index("[MASK]")
        dist = {}
        for sent, p in self._support.items():
            if (len(sent) < len(words) if as_prefix else len(sent) != len(words)):
                continue
            if all(sent[i] == w for i, w in enumerate(words) if i != at):
                dist[sent[at]] = dist.get(sent[at], 0.0) + p
        total = sum(dist.values())
        if total == 0.0:
            raise ValueError(f"{''.join(words)!r} matches no sentence of the grammar")
        return {w: p / total for w, p in sorted(dist.items(), key=lambda kv: -kv[1])}

    # ------------------------------------------------------------------------------------------
    # Entropy: the floor under any model's loss

    def entropy(self):
        """H = -Σ_s P(s) log P(s), in nats per sentence."""
        return -sum(p * math.log(p) for p in self._support.values())

    def mean_tokens(self):
        """E[number of predicted tokens per sentence] = E[len(words)] + 1.

        A GPT reads [BOS] w_1 ... w_n and predicts w_1 ... w_n and [EOS]: n + 1 predictions.
        """
        return sum(p * (len(s) + 1) for s, p in self._support.items())

    def entropy_per_token(self):
        """H / E[tokens], in nats per predicted token: the lowest mean loss any model can reach
        on this source (the cross-entropy of a model equals this plus its KL divergence from
        the truth, which is never negative)."""
        return self.entropy() / self.mean_tokens()


@lru_cache(maxsize=1)
def default_grammar():
    """The built-in grammar (built once)."""
    return Grammar()
