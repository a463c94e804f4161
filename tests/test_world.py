"""The world: documents whose true probabilities, splits and task answers are known exactly.

The automaton of minillm/world.py is checked against a second, independent statement of the
same rules: ``enumerate_documents`` below writes the story of the module docstring as nested
loops over the rule tables (sentence by sentence, not state by state), and ``count_documents``
counts the support by a product formula.
"""

import hashlib
import math
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minillm import world
from minillm.tokenizer import Tokenizer
from minillm.world import END, default_world, qa_items, translate

W = default_world()
TOK = Tokenizer(world.WORDS)
N_SAMPLE = 20_000
SAMPLE = W.sample(np.random.default_rng(1234), N_SAMPLE)


def enumerate_documents(prefix):
    """Every document that starts with ``prefix`` (a tuple of words), with its probability,
    by the rules of the module docstring written as nested loops. Only for prefixes that reach
    the person's name: the whole support has millions of documents."""
    out = []

    def fits(words):
        return words[: len(prefix)] == prefix[: len(words)]

    def emit(words, p):
        if len(words) >= len(prefix) and fits(words):
            out.append((words, p))

    def purchase(words, p, tense, place, pronoun):
        verb = {"past": ("买", "了"), "present": ("买",), "future": ("要", "买")}[tense]
        for count, p_count in world.COUNTS.items():
            for item, p_item in world.ITEMS[place].items():
                emit(words + (pronoun,) + verb + (count, world.MEASURE_OF[item], item, "。"),
                     p * p_count * p_item)

    def outing(words, p, tense, weather, person):
        pronoun = {"male": "他", "female": "她"}[world.GENDER[person]]
        others = 1 - world.PEOPLE[person]
        companions = [((), 1 - world.P_COMPANION)] + [
            (("和", c), world.P_COMPANION * p_c / others)
            for c, p_c in world.PEOPLE.items() if c != person]
        verb = ("要", "去") if tense == "future" else ("去",)
        for with_whom, p_with in companions:
            for place, p_place in world.PLACES[weather].items():
                for activity, p_act in world.ACTIVITIES[place].items():
                    done = ("了",) if tense == "past" else ()
                    sentence = words + with_whom + verb + (place, activity) + done + ("。",)
                    if not fits(sentence):
                        continue
                    q = p * p_with * p_place * p_act
                    emit(sentence, q * world.STOP["outing"])
                    purchase(sentence, q * (1 - world.STOP["outing"]), tense, place, pronoun)

    def persons_sentences(words, p, tense, weather):
        for person, p_person in world.PEOPLE.items():
            named = words + (person,)
            if not fits(named):
                continue
            pronoun = {"male": "他", "female": "她"}[world.GENDER[person]]
            for mood, p_mood in world.MOODS.items():
                q = p * p_person * world.P_MOOD * p_mood
                emit(named + (mood, "。"), q * world.STOP["mood"])
                if fits(named + (mood, "。", pronoun)):
                    outing(named + (mood, "。", pronoun), q * (1 - world.STOP["mood"]), tense,
                           weather, person)
            outing(named, p * p_person * (1 - world.P_MOOD), tense, weather, person)

    for time, p_time in world.TIMES.items():
        tense = world.TENSE_OF[time]
        for weather, p_weather in world.WEATHERS.items():
            sentence = (time, "天气", weather, "。")
            if fits(sentence):
                q = p_time * world.P_WEATHER_SENTENCE * p_weather
                emit(sentence, q * world.STOP["weather"])
                persons_sentences(sentence, q * (1 - world.STOP["weather"]), tense,
                                  world.WEATHER_OF[weather])
        if fits((time,)):
            persons_sentences((time,), p_time * (1 - world.P_WEATHER_SENTENCE), tense, None)
    return out


def count_documents():
    """|support| by a product formula: a purchase is a count and an item of the place; an
    outing a companion (none or one of the 9 others), a place, an activity, then the end or a
    purchase; the person's sentences a name, then a mood sentence (ending there or followed by
    an outing) or an outing; a document a time, then a weather sentence (ending there or
    followed by the person's sentences) or the person's sentences."""
    def purchases(place):
        return len(world.COUNTS) * len(world.ITEMS[place])

    def outings(weather):
        return len(world.PEOPLE) * sum(len(world.ACTIVITIES[place]) * (1 + purchases(place))
                                       for place in world.PLACES[weather])

    def persons(weather):
        return len(world.PEOPLE) * (len(world.MOODS) * (1 + outings(weather)) + outings(weather))

    opened_by_weather = sum(1 + persons(world.WEATHER_OF[w]) for w in world.WEATHERS)
    return len(world.TIMES) * (opened_by_weather + persons(None))


def reachable_states():
    seen, todo = {W.start}, [W.start]
    while todo:
        for _, nxt in W.table(todo.pop()).values():
            if nxt is not None and nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


STATES = reachable_states()


# ----------------------------------------------------------------------------------------------
# Probabilities


def test_every_rule_table_sums_to_one():
    tables = [world.TIMES, world.WEATHERS, world.PEOPLE, world.MOODS, world.COUNTS,
              *world.PLACES.values(), *world.ACTIVITIES.values(), *world.ITEMS.values()]
    for table in tables:
        assert math.isclose(sum(table.values()), 1.0, abs_tol=1e-12), table
        assert all(p > 0 for p in table.values()), table


def test_every_automaton_table_sums_to_one():
    assert len(STATES) > 1000
    for state in STATES:
        table = W.table(state)
        assert math.isclose(sum(p for p, _ in table.values()), 1.0, abs_tol=1e-12), state
        assert all(p > 0 for p, _ in table.values()), state
        assert all(w in world.WORDS or w == END for w in table), state
        assert all((nxt is None) == (w == END) for w, (_, nxt) in table.items()), state


def test_the_probabilities_of_the_support_sum_to_one():
    # By a DP over states: the total probability of the documents that continue each state.
    total = {}

    def mass(state):
        if state not in total:
            total[state] = sum(p * (1.0 if nxt is None else mass(nxt))
                               for p, nxt in W.table(state).values())
        return total[state]

    assert mass(W.start) == pytest.approx(1.0, abs=1e-12)


def test_a_subtree_enumerated_by_the_rules_matches_the_automaton():
    # Every document opening 昨天天气很好。小明: its probability from the rules written as loops
    # equals the automaton's, and their sum is the opening's probability by hand.
    prefix = ("昨天", "天气", "很好", "。", "小明")
    docs = enumerate_documents(prefix)
    words = [d for d, _ in docs]
    assert len(set(words)) == len(words)  # one derivation per document
    for d, p in docs:
        assert W.log_prob(d) == pytest.approx(math.log(p), abs=1e-9)
    # P(昨天) .2 · weather sentence .6 · 很好 .35 · not ending .9 · 小明 .15
    assert sum(p for _, p in docs) == pytest.approx(0.2 * 0.6 * 0.35 * 0.9 * 0.15, rel=1e-9)
    # the count: 3 moods · (end or an outing) + an outing, outings as in count_documents
    outings = 10 * sum(len(world.ACTIVITIES[pl]) * (1 + 9 * len(world.ITEMS[pl]))
                       for pl in world.PLACES["good"])
    assert len(docs) == 3 * (1 + outings) + outings


def test_the_number_of_documents():
    assert W.n_documents() == count_documents()
    assert W.n_documents() >= 10**6


def test_log_prob_outside_the_support_is_minus_infinity():
    doc = SAMPLE[0]
    assert W.log_prob(doc.words[:-1]) == -math.inf  # a prefix is not a document
    assert W.log_prob(("公园",) + doc.words) == -math.inf
    assert W.log_prob(()) == -math.inf
    # A wrong pronoun, a wrong tense marker, a place the weather does not allow:
    assert W.log_prob("昨天天气很好。小明很高兴。她去公园玩了。") == -math.inf
    assert W.log_prob("明天天气很好。小明去公园玩了。") == -math.inf
    assert W.log_prob("昨天天气很热。小明去公园玩了。") == -math.inf
    assert W.log_prob("昨天天气很好。小明去公园玩了。") == pytest.approx(
        math.log(0.2 * 0.6 * 0.35 * 0.9 * 0.15 * 0.7 * 0.7 * 0.35 * 0.6 * 0.3))


# ----------------------------------------------------------------------------------------------
# Next words and blanks


def test_the_first_words_are_the_times_and_then_the_openings():
    assert W.next_word_distribution(()) == pytest.approx(world.TIMES)
    after = W.next_word_distribution(("昨天",))
    expected = {"天气": 0.6, **{name: 0.4 * p for name, p in world.PEOPLE.items()}}
    assert after == pytest.approx(expected)


def test_next_word_distribution_is_the_ratio_of_prefix_probabilities():
    # P(w | prefix) = P(prefix + w …) / P(prefix …), both summed over the documents the rules
    # enumerate; for prefixes from sampled documents that reach the person's name.
    rng = np.random.default_rng(7)
    checked = 0
    for doc in SAMPLE[:60]:
        if doc.slots["person"] is None:
            continue
        first = doc.words.index(doc.slots["person"]) + 1
        k = int(rng.integers(first, len(doc.words) + 1))
        prefix = doc.words[:k]
        docs = enumerate_documents(prefix)
        total = sum(p for _, p in docs)
        expected = Counter()
        for d, p in docs:
            expected[d[k] if len(d) > k else END] += p / total
        assert W.next_word_distribution(prefix) == pytest.approx(dict(expected), abs=1e-12)
        checked += 1
    assert checked >= 30


def test_the_place_follows_the_weather_two_sentences_back():
    after = W.next_word_distribution("昨天天气不好。小明很累。他去")
    assert after == pytest.approx(world.PLACES["bad"])
    after = W.next_word_distribution("明天小红和小明要去")
    assert after == pytest.approx(world.PLACES[None])


def test_blank_posterior_equals_brute_force_over_the_vocabulary():
    rng = np.random.default_rng(3)
    for doc in SAMPLE[100:160]:
        k = int(rng.integers(len(doc.words)))
        joint = {}
        for w in world.WORDS:
            p = math.exp(W.log_prob(doc.words[:k] + (w,) + doc.words[k + 1 :]))
            if p > 0:
                joint[w] = p
        total = sum(joint.values())
        assert W.blank_posterior(doc.words, k) == pytest.approx(
            {w: p / total for w, p in joint.items()}, rel=1e-9)


def test_blank_posterior_of_a_place_by_hand():
    # 昨天天气不好。小明去[?]看书了。: bad weather allows 图书馆 .3 (看书 .7) and 书店 .2 (看书 .6).
    words = W.segment("昨天天气不好。小明去图书馆看书了。")
    posterior = W.blank_posterior(words, words.index("图书馆"))
    expected = 0.3 * 0.7 / (0.3 * 0.7 + 0.2 * 0.6)
    assert posterior == pytest.approx({"图书馆": expected, "书店": 1 - expected})


# ----------------------------------------------------------------------------------------------
# Sampling and entropy


def binomial_bound(p, n):
    """5 standard deviations of a frequency with probability p over n draws: 5·√(p(1−p)/n)."""
    return 5 * math.sqrt(p * (1 - p) / n)


def test_sampled_first_words_follow_the_times():
    counts = Counter(d.words[0] for d in SAMPLE)
    for time, p in world.TIMES.items():
        assert abs(counts[time] / N_SAMPLE - p) < binomial_bound(p, N_SAMPLE), time


def test_sampled_places_follow_the_weather_two_sentences_back():
    # Documents 天气 W 。 name mood 。 pronoun …: the place is drawn from PLACES[class of W].
    for weather_class in ("good", "bad", "hot"):
        places = [d.slots["place"] for d in SAMPLE
                  if d.slots["mood"] and d.slots["place"] and d.slots["weather"]
                  and world.WEATHER_OF[d.slots["weather"]] == weather_class]
        assert len(places) > 300
        counts = Counter(places)
        assert set(counts) <= set(world.PLACES[weather_class])
        for place, p in world.PLACES[weather_class].items():
            freq = counts[place] / len(places)
            assert abs(freq - p) < binomial_bound(p, len(places)), (weather_class, place)


def test_samples_are_in_the_support_with_pronouns_and_tenses_that_agree():
    for doc in SAMPLE[:2000]:
        assert W.log_prob(doc) > -math.inf
        assert W.parse(doc.words) == doc
        assert dict(W.parse(doc.words).slots) == dict(doc.slots)
        pronouns = {"他", "她"} & set(doc.words)
        if pronouns:
            assert pronouns == {"他" if doc.slots["gender"] == "male" else "她"}
        tense = world.TENSE_OF[doc.words[0]]
        if doc.slots["place"] is not None:
            assert ("了" in doc.words) == (tense == "past")
            assert ("要" in doc.words) == (tense == "future")


def test_entropy_matches_monte_carlo():
    # H = E[−log P(d)]: the sample mean of −log P within 5 standard errors.
    neg_log = np.array([-W.log_prob(d) for d in SAMPLE])
    se = neg_log.std(ddof=1) / math.sqrt(N_SAMPLE)
    assert abs(neg_log.mean() - W.entropy_per_document()) < 5 * se
    tokens = np.array([len(d.words) + 1 for d in SAMPLE])
    se = tokens.std(ddof=1) / math.sqrt(N_SAMPLE)
    assert abs(tokens.mean() - W.expected_tokens()) < 5 * se
    assert W.entropy_per_token() == W.entropy_per_document() / W.expected_tokens()


def test_documents_are_short_enough_for_a_question_and_answer():
    assert max(len(d.words) for d in SAMPLE) <= W.max_words() <= 36
    assert W.max_words() == 3 + 1 + 2 + 1 + 7 + 1 + 6 + 1  # each sentence at its longest


# ----------------------------------------------------------------------------------------------
# Splits


def hash_fraction(text):
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big") / 2**64


def test_split_of_is_the_held_out_pairs_then_the_hash():
    for doc in SAMPLE[:3000]:
        if (doc.slots["person"], doc.slots["place"]) in world.HELD_OUT:
            expected = "compositional"
        else:
            expected = "test" if hash_fraction(doc.text) < world.TEST_FRACTION else "train"
        assert W.split_of(doc) == W.split_of(doc.words) == W.split_of(doc.text) == expected


def test_held_out_people_and_places_are_seen_with_other_partners():
    places = {place for table in world.PLACES.values() for place in table}
    for person, place in world.HELD_OUT:
        assert person in world.PEOPLE and place in places
        assert any((person, other) not in world.HELD_OUT for other in places - {place})
        assert any((other, place) not in world.HELD_OUT
                   for other in world.PEOPLE if other != person)


def test_sampling_a_split_keeps_only_that_split():
    rng = np.random.default_rng(5)
    for split in world.SPLITS:
        docs = W.sample(rng, 300, split=split)
        assert len(docs) == 300
        assert all(W.split_of(d) == split for d in docs)


def test_split_fractions():
    # P(compositional) exactly: the person is named (after the weather sentence that goes on,
    # or right after the time), the outing comes (directly .7, or after a mood sentence that
    # goes on, .3·.9), and the place is drawn from the weather's table.
    outing = (1 - world.P_MOOD) + world.P_MOOD * (1 - world.STOP["mood"])
    p_comp = 0.0
    for person, place in world.HELD_OUT:
        by_weather = sum(p_w * world.PLACES[world.WEATHER_OF[w]].get(place, 0.0)
                         for w, p_w in world.WEATHERS.items())
        p_place = (world.P_WEATHER_SENTENCE * (1 - world.STOP["weather"]) * by_weather
                   + (1 - world.P_WEATHER_SENTENCE) * world.PLACES[None][place])
        p_comp += world.PEOPLE[person] * outing * p_place
    splits = Counter(W.split_of(d) for d in SAMPLE)
    assert abs(splits["compositional"] / N_SAMPLE - p_comp) < binomial_bound(p_comp, N_SAMPLE)
    # The test share of the rest: 0.1, up to the sampling error and the hash's own luck (the
    # hash is a fixed function; as a random one, the mass it puts below 0.1 has variance
    # 0.1·0.9·Σ P(d)² / P(rest)², with Σ P(d)² by a DP over states).
    squares = {}

    def sum_of_squares(state):
        if state not in squares:
            squares[state] = sum(p * p * (1.0 if nxt is None else sum_of_squares(nxt))
                                 for p, nxt in W.table(state).values())
        return squares[state]

    rest = N_SAMPLE - splits["compositional"]
    f = world.TEST_FRACTION
    sigma = math.sqrt(f * (1 - f) / rest
                      + f * (1 - f) * sum_of_squares(W.start) / (1 - p_comp) ** 2)
    assert abs(splits["test"] / rest - f) < 5 * sigma


# ----------------------------------------------------------------------------------------------
# The lexicon


def test_longest_match_gives_back_the_words_of_documents_and_questions():
    assert 60 <= len(world.WORDS) <= 150
    for doc in SAMPLE[:5000]:
        assert TOK.tokenize(doc.text) == list(doc.words)
        assert W.segment(doc.text) == doc.words
        for _, question, answer in qa_items(doc):
            assert TOK.tokenize("".join(question)) == list(question)
            assert TOK.tokenize(doc.text + "".join(question) + "".join(answer)) == list(
                doc.words + question + answer)


def test_documents_split_into_sentences():
    for doc in SAMPLE[:500]:
        sentences = doc.sentences
        assert 1 <= len(sentences) <= 4
        assert sum(sentences, ()) == doc.words
        assert all(s[-1] == "。" and "。" not in s[:-1] for s in sentences)


# ----------------------------------------------------------------------------------------------
# Tasks

NAMES = set(world.PEOPLE)
PLACES = {place for table in world.PLACES.values() for place in table}
ACTIVITIES = {a for table in world.ACTIVITIES.values() for a in table}


def contains(words, part):
    return any(words[i : i + len(part)] == part for i in range(len(words) - len(part) + 1))


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_qa_answers_are_in_the_passage_and_the_only_right_one(seed):
    for doc in W.sample(np.random.default_rng(seed), 20):
        items = qa_items(doc)
        words = doc.words
        kinds = [kind for kind, _, _ in items]
        assert kinds == [k for k in world.QA_KINDS
                         if doc.slots["place"] and (k != "几个" or doc.slots["item"])]
        for kind, question, answer in items:
            assert contains(words, answer)
            assert all(w in world.WORDS for w in question + answer)
            assert question[-1] == "？"
            # The answer read off the words: the only word of its kind in the passage that the
            # question does not name.
            if kind == "谁":
                candidates = [w for w in words if w in NAMES and w not in question]
                assert candidates[0] == words[[w in NAMES for w in words].index(True)]
            elif kind == "哪里":
                candidates = [w for w in words if w in PLACES]
            elif kind == "什么时候":
                candidates = [w for w in words if w in world.TIMES]
            elif kind == "做什么":
                candidates = [w for w in words if w in ACTIVITIES]
            else:
                candidates = [w for w in words if w in world.COUNTS]
                assert question[-3:-1] == words[-3:-1]  # 几 measure item, as bought
            assert len(set(candidates)) == 1 and answer == (candidates[0],), (kind, doc.text)


def test_qa_items_by_hand():
    doc = W.parse(W.segment("昨天天气很好。小明和小红去公园玩了。他买了3个冰淇淋。"))
    assert [(kind, "".join(q), "".join(a)) for kind, q, a in qa_items(doc)] == [
        ("谁", "谁和小红去了公园？", "小明"),
        ("哪里", "小明去了哪里？", "公园"),
        ("什么时候", "小明什么时候去的公园？", "昨天"),
        ("做什么", "小明在公园做什么？", "玩"),
        ("几个", "小明买了几个冰淇淋？", "3"),
    ]
    assert qa_items(W.parse("明天天气很好。")) == []
    future = W.parse("明天小红要去书店看书。她要买1本书。")
    assert [("".join(q), "".join(a)) for _, q, a in qa_items(future)][3:] == [
        ("小红要在书店做什么？", "看书"), ("小红要买几本书？", "1")]
    with pytest.raises(ValueError, match="not a document"):
        qa_items(("昨天", "天气", "很好", "。", "小明", "去", "公园", "玩", "了", "。", "他", "买",
                  "了", "3", "个", "苹果", "。"))  # 苹果 is not sold at the park


def test_translate_by_hand():
    assert translate(W.parse("昨天天气很好。小明和小红去公园玩了。")) == (
        "yesterday", "the", "weather", "was", "good", ".", "xiaoming", "went", "to", "the",
        "park", "with", "xiaohong", "to", "play", ".")
    assert " ".join(translate("明天小丽很饿。她要去商店买东西。她要买1瓶水。")) == (
        "tomorrow xiaoli will be hungry . she will go to the shop to buy things . "
        "she will buy 1 bottle of water .")
    assert " ".join(translate("现在天气很热。")) == "now the weather is hot ."


PAST, PRESENT, FUTURE = {"was", "went", "bought"}, {"is", "goes", "buys"}, {"will"}
VERBS = {"past": PAST, "present": PRESENT, "future": FUTURE}


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_translation_follows_tense_gender_and_count(seed):
    for doc in W.sample(np.random.default_rng(seed), 20):
        english = translate(doc)
        assert english == translate(doc.words) == translate(doc.text)  # a function of the Chinese
        assert all(w in world.ENGLISH_WORDS for w in english)
        assert english.count(".") == len(doc.sentences)
        # Tense from the time word, the first word of the Chinese, for every sentence's verb.
        tense = world.TENSE_OF[doc.words[0]]
        verbs = [w for w in english if w in PAST | PRESENT | FUTURE]
        assert len(verbs) == len(doc.sentences) and set(verbs) <= VERBS[tense]
        # he/she: as many as the Chinese 他/她, agreeing with the first name's gender.
        first_name = next((w for w in doc.words if w in NAMES), None)
        pronouns = [w for w in english if w in ("he", "she")]
        assert len(pronouns) == sum(w in ("他", "她") for w in doc.words)
        if pronouns:
            expected = "he" if world.GENDER[first_name] == "male" else "she"
            assert set(pronouns) == {expected}
        # The count, then the item: plural unless the count is 1.
        if "买" in doc.words:
            count = next(w for w in doc.words if w in world.COUNTS)
            at = english.index(count)
            noun = english[at + 1 : english.index(".", at)]
            assert any(w.endswith("s") for w in noun) == (count != "1")
        # English order: "with the companion" right after the place.
        if "和" in doc.words:
            at = english.index("with")
            assert english[at - 1] in {"park", "beach", "shop", "library", "bookshop", "school"}


# ----------------------------------------------------------------------------------------------
# Bad input


def test_bad_input_raises_clear_errors():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="not a document"):
        W.parse("昨天天气很好")
    with pytest.raises(ValueError, match="probability 0"):
        W.next_word_distribution("公园")
    with pytest.raises(ValueError, match="k must be"):
        W.blank_posterior(SAMPLE[0].words, len(SAMPLE[0].words))
    with pytest.raises(ValueError, match="split must be"):
        W.sample(rng, 3, split="dev")
    with pytest.raises(ValueError, match="n must be"):
        W.sample(rng, -1)
    with pytest.raises(TypeError, match="rng must be"):
        W.sample(0, 3)
    with pytest.raises(ValueError, match=r"\[EOS\]"):
        W.log_prob(("昨天", END))
    with pytest.raises(TypeError, match="must hold strings"):
        W.log_prob(("昨天", 3))
    with pytest.raises(TypeError, match="state must be a State"):
        W.table(("start",))
    assert W.sample(rng, 0) == []
