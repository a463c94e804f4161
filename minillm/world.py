"""The world: a second built-in source whose truth is known, of short documents about people.

grammar.py has one-sentence documents; a capability table (text generation, reading
comprehension, question answering, translation) needs documents whose sentences depend on each
other. Each document of the world tells of one person on one day, in 1 to 4 sentences:

    昨天天气很好。小明很高兴。他和小红去公园玩了。他买了3个冰淇淋。
    明天天气不好。小丽要去图书馆看书。
    今天小刚去商店买东西。他买2瓶水。

Words are the tokens; the lexicon is ``WORDS``. The rules that tie the sentences together:

  - the time word selects the tense of every later sentence: 了 after a past outing or
    purchase (去公园玩了, 买了), 要 before a future one (要去, 要买), neither in the present;
  - the place depends on the weather one sentence back (天气很好。小明去公园…) or two
    (天气很好。小明很高兴。他去公园…), and the no-weather table when there is none;
  - after the person is named, a later sentence says 他 or 她 by the person's gender;
  - the activity depends on the place, the item bought on the place, and the measure word
    on the item (3个苹果, 2瓶水, 1本书).

The whole world (each choice is independent of the others unless it says "given"):

    document        time, then: the weather sentence (.6), or the person's sentences (.4)
                    weather   天气 W 。          then END .1, or the person's sentences .9
    person's        mood      P M 。             (.3)  then END .1, or the outing .9 with 他/她
    sentences       outing    P [和 C] V place activity [了] 。   (.7)
                    after the outing: END .3, or the purchase .7
                    purchase  他/她 V' N measure item 。         then END
    time            昨天 .2  前天 .1  上周末 .1  (past)   今天 .2  现在 .05  (present)
                    明天 .15  后天 .1  下周末 .1  (future)
    W (weather)     很好 .35  不错 .2  不好 .2  很热 .15  很冷 .1
                    class: 很好 不错 -> good, 不好 很冷 -> bad, 很热 -> hot
    P (person)      小明 .15 小红 .15 小刚 .1 小丽 .1 小军 .1 小芳 .1 小强 .075 小美 .075
                    小东 .075 小雪 .075;  他 for 小明 小刚 小军 小强 小东, 她 for the others
    M (mood)        很高兴 .5  很累 .3  很饿 .2
    companion       none .7, or 和 C (.3) with C drawn from P without the person, renormalised
    V (go)          past 去 … 了,  present 去,  future 要去
    place           given the weather class:
                        good: 公园 .35  海边 .25  商店 .15  书店 .1  学校 .15
                        bad:  商店 .35  图书馆 .3  书店 .2  学校 .15
                        hot:  海边 .5  商店 .25  图书馆 .25
                        none: 公园 .25  海边 .15  商店 .2  图书馆 .15  书店 .1  学校 .15
    activity        given the place: 公园: 玩 .6 散步 .4     海边: 游泳 .6 玩 .4
                                     商店: 买东西 1          图书馆: 看书 .7 学习 .3
                                     书店: 看书 .6 买东西 .4  学校: 上课 .6 学习 .4
    V' (buy)        past 买了,  present 买,  future 要买
    N (count)       1 .2  2 .2  3 .15  4 .1  5 .1  6 .08  7 .07  8 .05  9 .05
    item            given the place: 公园: 冰淇淋 .5 水 .3 蛋糕 .2
                                     海边: 冰淇淋 .4 水 .4 帽子 .2
                                     商店: 苹果 .4 蛋糕 .2 水 .2 果汁 .2
                                     图书馆: 水 .5 笔 .5   书店: 书 .7 笔 .3
                                     学校: 笔 .5 本子 .3 水 .2
    measure         given the item: 个 for 苹果 蛋糕 冰淇淋, 瓶 for 水 果汁, 本 for 书 本子,
                    支 for 笔, 顶 for 帽子

The automaton. The same rules, written as a deterministic probabilistic automaton over words:
a ``State`` (where we are: the role of the last word written, plus what later rules need to
remember: the tense, the weather class, the person, the place, the measure word) and from each
state a table {next word: (probability, next state)} whose words are distinct, with "[EOS]"
where the document may end. Two places need care. After a name the next word tells whether
this is the mood sentence or the outing, so the name's table holds both: 很高兴 with .3·.5, 和
with .7·.3, 去 with .7·.7. And the measure word is written before the item it agrees with, so
its table holds P(measure | place) = Σ of P(item | place) over the items with that measure,
and the item's table P(item | place) / P(measure | place). Every document then has exactly one
path, and its probability is the product of the probabilities along the path:

    log P(w_1 … w_n) = Σ_i log p(w_i | s_{i-1}) + log p([EOS] | s_n)

The true next-word distribution after a prefix is the table of the state the prefix leads to,
and the entropy is a sum over states, memoised (the automaton is acyclic):

    H(s) = Σ_w p(w | s) · (−log p(w | s) + H(next(s, w))),        H([EOS]'s next) = 0
    E(s) = Σ_w p(w | s) · (1 + E(next(s, w)))                      (tokens, [EOS] counted)
    N(s) = Σ_w N(next(s, w)),  N after [EOS] = 1                     (distinct documents)

The support holds 3,956,680 documents of 1 to 4 sentences, 4 to 22 words; H = 12.43 nats per
document, E[tokens] = 14.74 (words + [EOS]), so the entropy floor is 0.843 nats per token.
The lexicon has 79 words (questions included), the English 90.

Lexicon rule: longest-match segmentation of a document's text over ``WORDS`` gives back exactly
its words (今天天气 -> 今天 | 天气, 去书店 -> 去 | 书店, 看书 and 本书 -> 看书, 本 | 书: no word
of the lexicon straddles two others); tests/test_world.py checks it on sampled documents.

Splits, fixed: "compositional" holds the documents whose (person, place) pair is one of
``HELD_OUT`` (each of those people and places is still seen with other partners); of the rest,
"test" holds those whose text's SHA-256 falls in the first ``TEST_FRACTION`` of its range, and
"train" everything else.

Tasks with exact answers, from a document's slots:

    questions   谁去了公园？ -> 小明   (谁和小红去了公园？ when 小红 went along: the answer is unique)
                小明去了哪里？ -> 公园   小明什么时候去的公园？ -> 昨天
                小明在公园做什么？ -> 玩   小明买了几个冰淇淋？ -> 3
    translation 昨天天气很好。小明和小红去公园玩了。 ->
                yesterday the weather was good . xiaoming went to the park with xiaohong to play .
"""

from __future__ import annotations

import bisect
import hashlib
import math
from dataclasses import dataclass, field
from functools import lru_cache
from types import MappingProxyType
from typing import NamedTuple

import numpy as np

# ----------------------------------------------------------------------------------------------
# The rules, as data: every table maps a choice to its probability.

TIMES = {"昨天": 0.2, "前天": 0.1, "上周末": 0.1, "今天": 0.2, "现在": 0.05,
         "明天": 0.15, "后天": 0.1, "下周末": 0.1}
TENSE_OF = {"昨天": "past", "前天": "past", "上周末": "past", "今天": "present",
            "现在": "present", "明天": "future", "后天": "future", "下周末": "future"}
P_WEATHER_SENTENCE = 0.6  # the document opens with the weather, else with the person
WEATHERS = {"很好": 0.35, "不错": 0.2, "不好": 0.2, "很热": 0.15, "很冷": 0.1}
WEATHER_OF = {"很好": "good", "不错": "good", "不好": "bad", "很冷": "bad", "很热": "hot"}
PEOPLE = {"小明": 0.15, "小红": 0.15, "小刚": 0.1, "小丽": 0.1, "小军": 0.1, "小芳": 0.1,
          "小强": 0.075, "小美": 0.075, "小东": 0.075, "小雪": 0.075}
GENDER = {"小明": "male", "小刚": "male", "小军": "male", "小强": "male", "小东": "male",
          "小红": "female", "小丽": "female", "小芳": "female", "小美": "female",
          "小雪": "female"}
PRONOUN = {"male": "他", "female": "她"}
P_MOOD = 0.3  # the person's first sentence is a mood sentence, else the outing
MOODS = {"很高兴": 0.5, "很累": 0.3, "很饿": 0.2}
P_COMPANION = 0.3
PLACES = {
    "good": {"公园": 0.35, "海边": 0.25, "商店": 0.15, "书店": 0.1, "学校": 0.15},
    "bad": {"商店": 0.35, "图书馆": 0.3, "书店": 0.2, "学校": 0.15},
    "hot": {"海边": 0.5, "商店": 0.25, "图书馆": 0.25},
    None: {"公园": 0.25, "海边": 0.15, "商店": 0.2, "图书馆": 0.15, "书店": 0.1, "学校": 0.15},
}
ACTIVITIES = {
    "公园": {"玩": 0.6, "散步": 0.4},
    "海边": {"游泳": 0.6, "玩": 0.4},
    "商店": {"买东西": 1.0},
    "图书馆": {"看书": 0.7, "学习": 0.3},
    "书店": {"看书": 0.6, "买东西": 0.4},
    "学校": {"上课": 0.6, "学习": 0.4},
}
COUNTS = {"1": 0.2, "2": 0.2, "3": 0.15, "4": 0.1, "5": 0.1, "6": 0.08, "7": 0.07, "8": 0.05,
          "9": 0.05}
ITEMS = {
    "公园": {"冰淇淋": 0.5, "水": 0.3, "蛋糕": 0.2},
    "海边": {"冰淇淋": 0.4, "水": 0.4, "帽子": 0.2},
    "商店": {"苹果": 0.4, "蛋糕": 0.2, "水": 0.2, "果汁": 0.2},
    "图书馆": {"水": 0.5, "笔": 0.5},
    "书店": {"书": 0.7, "笔": 0.3},
    "学校": {"笔": 0.5, "本子": 0.3, "水": 0.2},
}
MEASURE_OF = {"苹果": "个", "蛋糕": "个", "冰淇淋": "个", "水": "瓶", "果汁": "瓶", "书": "本",
              "本子": "本", "笔": "支", "帽子": "顶"}
# The chance that the document ends after each kind of sentence (it always ends after the
# purchase).
STOP = {"weather": 0.1, "mood": 0.1, "outing": 0.3}

WEATHER_WORD, AND, GO, WILL, DONE, BUY, PERIOD = "天气", "和", "去", "要", "了", "买", "。"
# The end of a document, as a "next word": the model predicts it as the token [EOS].
END = "[EOS]"

# Splits: documents whose (person, place) is held out form the compositional split.
HELD_OUT = (("小明", "海边"), ("小红", "图书馆"), ("小刚", "商店"), ("小丽", "公园"),
            ("小军", "书店"))
TEST_FRACTION = 0.1
SPLITS = ("train", "test", "compositional")

# Questions: their kinds, and the words they use beyond the documents' words.
QA_KINDS = ("谁", "哪里", "什么时候", "做什么", "几个")
WHO, WHERE, WHEN, WHAT_DOING, HOW_MANY = "谁", "哪里", "什么时候", "做什么", "几"
AT, PAST_OF_WHEN, QUESTION_MARK = "在", "的", "？"

# The toy English of the translation task: a phrase (a tuple of words) per Chinese word.
ENGLISH = {
    "昨天": ("yesterday",), "前天": ("the", "day", "before", "yesterday"),
    "上周末": ("last", "weekend"), "今天": ("today",), "现在": ("now",),
    "明天": ("tomorrow",), "后天": ("the", "day", "after", "tomorrow"),
    "下周末": ("next", "weekend"),
    "很好": ("good",), "不错": ("nice",), "不好": ("bad",), "很热": ("hot",), "很冷": ("cold",),
    "很高兴": ("happy",), "很累": ("tired",), "很饿": ("hungry",),
    "小明": ("xiaoming",), "小红": ("xiaohong",), "小刚": ("xiaogang",), "小丽": ("xiaoli",),
    "小军": ("xiaojun",), "小芳": ("xiaofang",), "小强": ("xiaoqiang",), "小美": ("xiaomei",),
    "小东": ("xiaodong",), "小雪": ("xiaoxue",), "他": ("he",), "她": ("she",),
    "公园": ("the", "park"), "海边": ("the", "beach"), "商店": ("the", "shop"),
    "图书馆": ("the", "library"), "书店": ("the", "bookshop"), "学校": ("school",),
    "玩": ("play",), "散步": ("take", "a", "walk"), "游泳": ("swim",),
    "买东西": ("buy", "things"), "看书": ("read",), "学习": ("study",), "上课": ("have", "class"),
}
# Items: (one, more than one).
ENGLISH_ITEMS = {
    "苹果": (("apple",), ("apples",)), "蛋糕": (("cake",), ("cakes",)),
    "冰淇淋": (("ice", "cream"), ("ice", "creams")),
    "水": (("bottle", "of", "water"), ("bottles", "of", "water")),
    "果汁": (("bottle", "of", "juice"), ("bottles", "of", "juice")),
    "书": (("book",), ("books",)), "本子": (("notebook",), ("notebooks",)),
    "笔": (("pen",), ("pens",)), "帽子": (("hat",), ("hats",)),
}
# Verbs by tense: to be, to go, to buy.
ENGLISH_VERBS = {
    "past": {"be": ("was",), "go": ("went",), "buy": ("bought",)},
    "present": {"be": ("is",), "go": ("goes",), "buy": ("buys",)},
    "future": {"be": ("will", "be"), "go": ("will", "go"), "buy": ("will", "buy")},
}
ENGLISH_FIXED = ("the", "weather", "to", "with", ".")

# Every Chinese word of the documents and the questions (the tokenizer's lexicon), and every
# English word of the translations.
WORDS = tuple(sorted(
    set(TIMES) | set(WEATHERS) | set(PEOPLE) | set(PRONOUN.values()) | set(MOODS)
    | set(ACTIVITIES) | {a for table in ACTIVITIES.values() for a in table} | set(COUNTS)
    | set(MEASURE_OF) | set(MEASURE_OF.values())
    | {WEATHER_WORD, AND, GO, WILL, DONE, BUY, PERIOD}
    | {WHO, WHERE, WHEN, WHAT_DOING, HOW_MANY, AT, PAST_OF_WHEN, QUESTION_MARK}))
ENGLISH_WORDS = tuple(sorted(
    {w for phrase in ENGLISH.values() for w in phrase}
    | {w for forms in ENGLISH_ITEMS.values() for phrase in forms for w in phrase}
    | {w for verbs in ENGLISH_VERBS.values() for phrase in verbs.values() for w in phrase}
    | set(ENGLISH_FIXED) | set(COUNTS)))


# ----------------------------------------------------------------------------------------------
# Documents


@dataclass(frozen=True)
class Document:
    """A document of the world: its words (without "[EOS]") and the slots they were drawn for.

    ``slots`` maps person, gender, time, tense, weather, mood, place, activity, companion,
    count (an int), measure and item to their values, None where the document has no such
    fact. Two documents are equal when their words are.
    """

    words: tuple
    slots: MappingProxyType = field(compare=False, repr=False)

    @property
    def text(self):
        return "".join(self.words)

    @property
    def sentences(self):
        """The sentences, each a tuple of words ending in 。."""
        out, start = [], 0
        for i, w in enumerate(self.words):
            if w == PERIOD:
                out.append(self.words[start : i + 1])
                start = i + 1
        return tuple(out)


SLOTS = ("person", "gender", "time", "tense", "weather", "mood", "place", "activity",
         "companion", "count", "measure", "item")


def _document(words, drawn):
    """A Document from its words and the slot words drawn along its path (``drawn``: slot
    name -> word, as ``State`` roles record them); derived slots (tense, gender) filled in."""
    slots = dict.fromkeys(SLOTS)
    slots.update(drawn)
    slots["tense"] = TENSE_OF[slots["time"]]
    slots["gender"] = GENDER[slots["person"]] if slots["person"] else None
    if slots["count"] is not None:
        slots["count"] = int(slots["count"])
    return Document(tuple(words), MappingProxyType(slots))


# ----------------------------------------------------------------------------------------------
# The automaton


class State(NamedTuple):
    """Where the automaton is: ``at`` names the role of the last word written ("start" before
    the first); the other fields are what later rules need (None until known or once not
    needed): the tense, the weather class, the person, the place, the measure word."""

    at: str
    tense: str | None = None
    weather: str | None = None
    person: str | None = None
    place: str | None = None
    measure: str | None = None


# The roles whose word fills a slot of the document.
SLOT_OF_ROLE = {"time": "time", "weather": "weather", "name": "person", "mood": "mood",
                "companion": "companion", "place": "place", "activity": "activity",
                "count": "count", "measure": "measure", "item": "item"}

START = State("start")


def _names(state, weight):
    """The person's name opens their sentences: P(name) · weight."""
    return {name: (weight * p, state._replace(at="name", person=name))
            for name, p in PEOPLE.items()}


def _outing(state, weight):
    """The outing's next word after its subject: 和 (a companion), or its verb."""
    table = {AND: (weight * P_COMPANION, state._replace(at="和"))}
    table.update(_go(state, weight * (1 - P_COMPANION)))
    return table


def _go(state, weight):
    """The outing's verb: 要去 in the future, 去 otherwise."""
    if state.tense == "future":
        return {WILL: (weight, state._replace(at="要 (go)"))}
    return {GO: (weight, state._replace(at="去"))}


def _purchase_verb(state):
    """The purchase's verb: 要买 in the future, 买 otherwise."""
    if state.tense == "future":
        return {WILL: (1.0, state._replace(at="要 (buy)"))}
    return {BUY: (1.0, state._replace(at="买"))}


def _end_or_pronoun(state, stop, role):
    """After a sentence about the person: the end, or 他/她 (by the person's gender) opening
    the next sentence, in the given role."""
    pronoun = PRONOUN[GENDER[state.person]]
    return {END: (stop, None), pronoun: (1 - stop, state._replace(at=role))}


def _counts(state):
    return {n: (p, state._replace(at="count")) for n, p in COUNTS.items()}


def _table(state):
    """{next word: (probability, next state)} from ``state``; "[EOS]" leads to None."""
    at, tense = state.at, state.tense
    # The opening: the time, then the weather sentence or the person's sentences.
    if at == "start":
        return {t: (p, State("time", tense=TENSE_OF[t])) for t, p in TIMES.items()}
    if at == "time":
        return {WEATHER_WORD: (P_WEATHER_SENTENCE, state._replace(at="天气")),
                **_names(state, 1 - P_WEATHER_SENTENCE)}
    # The weather sentence: 天气 W 。
    if at == "天气":
        return {w: (p, state._replace(at="weather", weather=WEATHER_OF[w]))
                for w, p in WEATHERS.items()}
    if at == "weather":
        return {PERIOD: (1.0, state._replace(at="weather 。"))}
    if at == "weather 。":
        return {END: (STOP["weather"], None), **_names(state, 1 - STOP["weather"])}
    # After the name: the mood sentence (P M 。) or the outing.
    if at == "name":
        moods = {m: (P_MOOD * p, state._replace(at="mood")) for m, p in MOODS.items()}
        return {**moods, **_outing(state, 1 - P_MOOD)}
    if at == "mood":
        return {PERIOD: (1.0, state._replace(at="mood 。"))}
    if at == "mood 。":
        return _end_or_pronoun(state, STOP["mood"], "pronoun (outing)")
    # The outing: subject [和 C] V place activity [了] 。
    if at == "pronoun (outing)":
        return _outing(state, 1.0)
    if at == "和":
        others = 1 - PEOPLE[state.person]
        return {c: (p / others, state._replace(at="companion"))
                for c, p in PEOPLE.items() if c != state.person}
    if at == "companion":
        return _go(state, 1.0)
    if at == "要 (go)":
        return {GO: (1.0, state._replace(at="去"))}
    if at == "去":
        return {place: (p, state._replace(at="place", place=place, weather=None))
                for place, p in PLACES[state.weather].items()}
    if at == "place":
        return {a: (p, state._replace(at="activity")) for a, p in ACTIVITIES[state.place].items()}
    if at == "activity":
        if tense == "past":
            return {DONE: (1.0, state._replace(at="了 (go)"))}
        return {PERIOD: (1.0, state._replace(at="outing 。"))}
    if at == "了 (go)":
        return {PERIOD: (1.0, state._replace(at="outing 。"))}
    if at == "outing 。":
        return _end_or_pronoun(state, STOP["outing"], "pronoun (purchase)")
    # The purchase: 他/她 V' N measure item 。
    if at == "pronoun (purchase)":
        return _purchase_verb(state)
    if at == "要 (buy)":
        return {BUY: (1.0, state._replace(at="买"))}
    if at == "买":
        if tense == "past":
            return {DONE: (1.0, state._replace(at="了 (buy)"))}
        return _counts(state)
    if at == "了 (buy)":
        return _counts(state)
    if at == "count":
        # P(measure | place) = Σ of P(item | place) over the items that take this measure.
        measures = {}
        for item, p in ITEMS[state.place].items():
            measures[MEASURE_OF[item]] = measures.get(MEASURE_OF[item], 0.0) + p
        return {m: (p, state._replace(at="measure", measure=m)) for m, p in measures.items()}
    if at == "measure":
        items = {i: p for i, p in ITEMS[state.place].items() if MEASURE_OF[i] == state.measure}
        total = sum(items.values())
        return {i: (p / total, state._replace(at="item")) for i, p in items.items()}
    if at == "item":
        return {PERIOD: (1.0, state._replace(at="purchase 。"))}
    if at == "purchase 。":
        return {END: (1.0, None)}
    raise ValueError(f"state must be a state of the world's automaton, got {state!r}")


class World:
    """The world as a deterministic probabilistic automaton: exact probabilities by walking it.

    ``start`` is the start state; ``table(state)`` the next words from a state. Methods that
    take words take a Document, a sequence of words (without "[EOS]"), or a text (cut by
    longest match over ``WORDS``).
    """

    def __init__(self):
        self.start = START
        self._tables = {}  # state -> {word: (probability, next state)}
        self._choices = {}  # state -> (words, cumulative probabilities, next states)
        self._entropy, self._tokens, self._count, self._longest_words = {}, {}, {}, {}  # DP
        self._lexicon = set(WORDS)
        self._longest = max(len(w) for w in WORDS)

    def table(self, state):
        """{next word: (probability, next state)} from ``state`` (a ``State``); the
        probabilities sum to 1; "[EOS]", where the document may end, leads to None."""
        if not isinstance(state, State):
            raise TypeError(f"state must be a State, got {type(state).__name__}: {state!r}")
        return dict(self._table(state))

    def _table(self, state):
        """The table of ``state``, built once (not copied: callers must not change it)."""
        if state not in self._tables:
            self._tables[state] = _table(state)
        return self._tables[state]

    # ------------------------------------------------------------------------------------------
    # Walking the automaton

    def _words(self, words_or_doc, name):
        """A tuple of words: a Document's words, a text cut by longest match, or a sequence."""
        if isinstance(words_or_doc, Document):
            return words_or_doc.words
        if isinstance(words_or_doc, str):
            return self.segment(words_or_doc)
        try:
            words = tuple(words_or_doc)
        except TypeError:
            raise TypeError(f"{name} must be a Document, a text or a sequence of words, got "
                            f"{type(words_or_doc).__name__}: {words_or_doc!r}") from None
        for w in words:
            if not isinstance(w, str):
                raise TypeError(f"{name} must hold strings, got {w!r} in {words!r}")
        if END in words:
            raise ValueError(f"{name} must not hold {END} (it is the end, not a word): {words!r}")
        return words

    def segment(self, text):
        """Longest-match segmentation of ``text`` over ``WORDS`` (a character no word starts
        with becomes a word of its own, and leaves the support)."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}: {text!r}")
        words, i = [], 0
        while i < len(text):
            for length in range(min(self._longest, len(text) - i), 0, -1):
                if text[i : i + length] in self._lexicon or length == 1:
                    words.append(text[i : i + length])
                    i += length
                    break
        return tuple(words)

    def _walk(self, words):
        """The states along ``words`` from the start: [start, s_1, …, s_n], or None when a word
        is not in the table of the state before it (the prefix is outside the support)."""
        states = [self.start]
        for w in words:
            step = self._table(states[-1]).get(w)
            if step is None or step[1] is None:
                return None
            states.append(step[1])
        return states

    def parse(self, words):
        """The Document these words make, with its slots read off the path; ValueError when
        the words are not a whole document of the world."""
        words = self._words(words, "words")
        states = self._walk(words)
        if states is None or END not in self._table(states[-1]):
            raise ValueError(f"words {''.join(words)!r} are not a document of the world")
        drawn = {SLOT_OF_ROLE[s.at]: w for w, s in zip(words, states[1:]) if s.at in SLOT_OF_ROLE}
        return _document(words, drawn)

    def log_prob(self, words):
        """log P(document) = Σ_i log p(w_i | s_{i-1}) + log p([EOS] | s_n); −inf outside the
        support."""
        words = self._words(words, "words")
        total, state = 0.0, self.start
        for w in words + (END,):
            step = self._table(state).get(w)
            if step is None:
                return -math.inf
            total += math.log(step[0])
            state = step[1]
        return total

    def next_word_distribution(self, prefix):
        """The true P(next word | prefix): the table of the state the prefix leads to, with
        "[EOS]" where the document may end; most probable first."""
        prefix = self._words(prefix, "prefix")
        states = self._walk(prefix)
        if states is None:
            raise ValueError(f"prefix {''.join(prefix)!r} has probability 0 in the world")
        table = self._table(states[-1])
        return {w: p for w, (p, _) in sorted(table.items(), key=lambda kv: -kv[1][0])}

    def blank_posterior(self, words, k):
        """The true distribution of the word at position k given all the others:

            P(w | the others) = P(words with w at k) / Σ_v P(words with v at k)

        over the words v the prefix words[:k] allows. ValueError if no word fits."""
        words = self._words(words, "words")
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 0 <= k < len(words):
            raise ValueError(f"k must be an integer in [0, {len(words)}), got {k!r}")
        states = self._walk(words[:k])
        if states is None:
            raise ValueError(f"words[:k] = {''.join(words[:k])!r} has probability 0 in the world")
        log_joint = {w: self.log_prob(words[:k] + (w,) + words[k + 1 :])
                     for w in self._table(states[-1]) if w != END}
        log_joint = {w: lp for w, lp in log_joint.items() if lp > -math.inf}
        if not log_joint:
            raise ValueError(f"no word at position {k} makes {''.join(words)!r} a document")
        top = max(log_joint.values())
        weights = {w: math.exp(lp - top) for w, lp in log_joint.items()}
        total = sum(weights.values())
        return {w: x / total for w, x in sorted(weights.items(), key=lambda kv: -kv[1])}

    # ------------------------------------------------------------------------------------------
    # Sampling

    def _choice_arrays(self, state):
        """The table of ``state`` as lists for drawing: words, cumulative probabilities, next
        states."""
        if state not in self._choices:
            table = self._table(state)
            words = list(table)
            cumulative = list(np.cumsum([table[w][0] for w in words]))
            self._choices[state] = (words, cumulative, [table[w][1] for w in words])
        return self._choices[state]

    def _draw(self, rng, n):
        """n documents drawn from the world: each word by a uniform u, the first word whose
        cumulative probability exceeds u."""
        uniforms = rng.random((n, self.max_words() + 1))
        docs = []
        for row in uniforms:
            state, words, drawn = self.start, [], {}
            for u in row:
                choices, cumulative, nexts = self._choice_arrays(state)
                i = min(bisect.bisect_right(cumulative, u), len(choices) - 1)
                if choices[i] == END:
                    break
                state = nexts[i]
                words.append(choices[i])
                if state.at in SLOT_OF_ROLE:
                    drawn[SLOT_OF_ROLE[state.at]] = choices[i]
            docs.append(_document(words, drawn))
        return docs

    def sample(self, rng, n, split=None):
        """n documents drawn independently with their true probabilities; with ``split``
        ("train", "test" or "compositional"), drawn from the world restricted to that split
        (rejection sampling: draws outside it are thrown away)."""
        if not isinstance(rng, np.random.Generator):
            raise TypeError(f"rng must be a np.random.Generator, got {type(rng).__name__}")
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
            raise ValueError(f"n must be a non-negative integer, got {n!r}")
        if split is not None and split not in SPLITS:
            raise ValueError(f"split must be None or one of {SPLITS}, got {split!r}")
        if split is None:
            return self._draw(rng, int(n))
        kept = []
        while len(kept) < n:
            batch = self._draw(rng, max(2 * (n - len(kept)), 100))
            kept.extend(d for d in batch if self.split_of(d) == split)
        return kept[:n]

    def split_of(self, words_or_doc):
        """"compositional" if the document's (person, place) is in HELD_OUT; else "test" if
        its text's SHA-256, read as a fraction of its range, is below TEST_FRACTION; else
        "train". ValueError outside the support."""
        doc = words_or_doc if isinstance(words_or_doc, Document) else self.parse(words_or_doc)
        if (doc.slots["person"], doc.slots["place"]) in HELD_OUT:
            return "compositional"
        digest = hashlib.sha256(doc.text.encode("utf-8")).digest()
        if int.from_bytes(digest[:8], "big") / 2**64 < TEST_FRACTION:
            return "test"
        return "train"

    # ------------------------------------------------------------------------------------------
    # Exact sums over the support, by dynamic programming over states

    def _successors(self, state):
        """(probability, next state) for each next word; next state None after "[EOS]"."""
        return self._table(state).values()

    def _entropy_from(self, state):
        """H(s) = Σ_w p(w|s) · (−log p(w|s) + H(next)), in nats."""
        if state not in self._entropy:
            self._entropy[state] = sum(
                p * (-math.log(p) + (0.0 if nxt is None else self._entropy_from(nxt)))
                for p, nxt in self._successors(state))
        return self._entropy[state]

    def _tokens_from(self, state):
        """E(s) = Σ_w p(w|s) · (1 + E(next)): expected tokens still to come, [EOS] included."""
        if state not in self._tokens:
            self._tokens[state] = sum(
                p * (1.0 + (0.0 if nxt is None else self._tokens_from(nxt)))
                for p, nxt in self._successors(state))
        return self._tokens[state]

    def _count_from(self, state):
        """N(s) = Σ_w N(next), with N = 1 after "[EOS]": the documents that continue s."""
        if state not in self._count:
            self._count[state] = sum(1 if nxt is None else self._count_from(nxt)
                                     for _, nxt in self._successors(state))
        return self._count[state]

    def entropy_per_document(self):
        """H = −Σ_d P(d) log P(d), in nats per document, exactly (H(start))."""
        return self._entropy_from(self.start)

    def expected_tokens(self):
        """E[tokens per document] = E[words] + 1 (the [EOS]): a GPT predicts that many."""
        return self._tokens_from(self.start)

    def entropy_per_token(self):
        """H / E[tokens], in nats per predicted token: the floor under any model's mean loss."""
        return self.entropy_per_document() / self.expected_tokens()

    def n_documents(self):
        """The number of distinct documents in the support (one path each)."""
        return self._count_from(self.start)

    def max_words(self):
        """The length of the longest document, in words ([EOS] not counted)."""
        return self._longest_from(self.start)

    def _longest_from(self, state):
        """L(s) = max_w (0 after "[EOS]", else 1 + L(next)): the most words still to come."""
        if state not in self._longest_words:
            self._longest_words[state] = max(0 if nxt is None else 1 + self._longest_from(nxt)
                                             for _, nxt in self._successors(state))
        return self._longest_words[state]


@lru_cache(maxsize=1)
def default_world():
    """The built-in world (built once)."""
    return World()


# ----------------------------------------------------------------------------------------------
# Tasks


def _document_of(doc):
    if isinstance(doc, Document):
        return doc
    return default_world().parse(doc)


def _go_words(tense):
    """The verb of going in a question: 去了 (past), 去 (present), 要去 (future)."""
    return {"past": (GO, DONE), "present": (GO,), "future": (WILL, GO)}[tense]


def _buy_words(tense):
    return {"past": (BUY, DONE), "present": (BUY,), "future": (WILL, BUY)}[tense]


def qa_items(doc):
    """Questions about the document, each (kind, question words, answer words), one of each
    kind whose fact the document holds (the kinds of QA_KINDS, in that order):

        谁      谁去了公园？ (谁和小红去了公园？ when 小红 went along)   -> the person
        哪里    小明去了哪里？                                        -> the place
        什么时候 小明什么时候去的公园？ (什么时候去公园 not in the past) -> the time
        做什么  小明在公园做什么？ (要在 in the future)                -> the activity
        几个    小明买了几个苹果？ (买 / 要买 by tense)                -> the count

    The first four need the outing, the last the purchase. Each answer is a word of the
    document, and the only word of its kind there that the question does not name."""
    s = _document_of(doc).slots
    person, place, tense = s["person"], s["place"], s["tense"]
    items = []
    if place is None:
        return items
    with_whom = (AND, s["companion"]) if s["companion"] else ()
    items.append(("谁", (WHO,) + with_whom + _go_words(tense) + (place, QUESTION_MARK),
                  (person,)))
    items.append(("哪里", (person,) + _go_words(tense) + (WHERE, QUESTION_MARK), (place,)))
    when = (WHEN, GO, PAST_OF_WHEN) if tense == "past" else (WHEN, GO)
    items.append(("什么时候", (person,) + when + (place, QUESTION_MARK), (s["time"],)))
    will = (WILL,) if tense == "future" else ()
    items.append(("做什么", (person,) + will + (AT, place, WHAT_DOING, QUESTION_MARK),
                  (s["activity"],)))
    if s["item"] is not None:
        items.append(("几个", (person,) + _buy_words(tense)
                      + (HOW_MANY, s["measure"], s["item"], QUESTION_MARK), (str(s["count"]),)))
    return items


def translate(doc):
    """The English of the document, a tuple of lowercase words and "."; a function of the
    Chinese. Each sentence as in Chinese, the time in front of the first, with the tense of
    the time word (was / is / will be, went / goes / will go, bought / buys / will buy), the
    companion after the place (went to the park with xiaohong to play), and the item plural
    unless the count is 1 (1 apple, 3 bottles of water). The person is named where the
    Chinese names them and he/she after, as in the Chinese."""
    s = _document_of(doc).slots
    verbs = ENGLISH_VERBS[s["tense"]]
    subject = ENGLISH[s["person"]] if s["person"] else None
    pronoun = ENGLISH[PRONOUN[s["gender"]]] if s["gender"] else None
    sentences = []
    if s["weather"] is not None:
        sentences.append(("the", "weather") + verbs["be"] + ENGLISH[s["weather"]])
    if s["mood"] is not None:
        sentences.append(subject + verbs["be"] + ENGLISH[s["mood"]])
        subject = pronoun
    if s["place"] is not None:
        with_whom = ("with",) + ENGLISH[s["companion"]] if s["companion"] else ()
        sentences.append(subject + verbs["go"] + ("to",) + ENGLISH[s["place"]] + with_whom
                         + ("to",) + ENGLISH[s["activity"]])
        subject = pronoun
    if s["item"] is not None:
        one, many = ENGLISH_ITEMS[s["item"]]
        sentences.append(subject + verbs["buy"] + (str(s["count"]),)
                         + (one if s["count"] == 1 else many))
    sentences[0] = ENGLISH[s["time"]] + sentences[0]
    return tuple(w for sentence in sentences for w in sentence + (".",))
