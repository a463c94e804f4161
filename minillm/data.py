"""What a run trains on: the built-in grammar (whose truth is known), a user's text file, the
grammar's text-to-text tasks; make_data picks the one an objective needs, and packed_length
the length T5's packing gives an example."""

from __future__ import annotations

import numpy as np

from .config import PACKED_OBJECTIVES, TASK_OBJECTIVES
from .corruption.t5 import (longest_inputs_for_sentinels, pack_sequences,
                            t5_input_and_target_lengths, t5_noise_counts)
from .objectives import get_objective
from .options import OptionError
from .tokenizer import N_SENTINELS

class GrammarData:
    """Sentences drawn from the built-in grammar, whose true entropy is the loss floor.

    With ``pool`` > 0 the data is a fixed set of that many sentences, drawn once from
    ``pool_rng`` (a corpus with epochs, as static masking needs); otherwise every step draws
    fresh sentences. With ``packed_length`` > 0 an example is not one sentence but
    ``packed_length`` tokens of sentences drawn end to end (T5's packing, pack_sequences).
    """

    def __init__(self, grammar, tokenizer, pool=0, pool_rng=None, packed_length=0):
        self.grammar, self.tokenizer = grammar, tokenizer
        self.floor = grammar.entropy_per_token()  # nats per predicted token
        self.name = "the built-in grammar"
        self.pieces = None
        self.packed_length = packed_length
        if pool:
            texts = grammar.sample_text(pool_rng, pool)
            self.pieces = [tokenizer.encode(t) for t in texts]
            self.name += f" (a pool of {pool} sentences)"
        if packed_length:
            self.name += f", packed into sequences of {packed_length} tokens"

    def sentences(self, rng, n):
        """n sentences as token-id lists, and their indices in the pool (None without one)."""
        if self.pieces is not None:
            idx = rng.integers(0, len(self.pieces), size=n)
            return idx, [self.pieces[i] for i in idx]
        return None, [self.tokenizer.encode(text) for text in self.grammar.sample_text(rng, n)]

    def sample(self, rng, n):
        """n examples: sentences, or (packed_length > 0) n packed sequences of exactly
        packed_length tokens, cut from fresh sentences end to end (None for the indices)."""
        if not self.packed_length:
            return self.sentences(rng, n)
        drawn, total = [], 0
        while total < n * self.packed_length:
            _, more = self.sentences(rng, n)
            drawn += more
            total += sum(len(s) for s in more)
        return None, pack_sequences(drawn, self.packed_length)[:n]


class TextData:
    """A user's documents (one per line). A document longer than the model's context is cut
    into consecutive pieces that fit; each piece is trained as its own sequence. With
    ``packed`` the documents are first put end to end, so that every piece but the last holds
    exactly max_tokens tokens (T5's packing, pack_sequences). ``source`` ({"path", "sha256"}
    of the file) goes into the checkpoint, so that a resumed run can tell whether it is given
    the same file again."""

    def __init__(self, documents, tokenizer, max_tokens, name="text", source=None, packed=False):
        self.tokenizer, self.name, self.floor, self.source = tokenizer, name, None, source
        encoded = [tokenizer.encode(doc) for doc in documents]
        if packed:
            self.pieces = [list(p) for p in pack_sequences(encoded, max_tokens)]
        else:
            self.pieces = [ids[start : start + max_tokens]
                           for ids in encoded for start in range(0, len(ids), max_tokens)]
        if not self.pieces:
            raise ValueError(f"{name}: no tokens to train on")

    def sample(self, rng, n):
        idx = rng.integers(0, len(self.pieces), size=n)
        return idx, [self.pieces[i] for i in idx]


class DocumentData:
    """Two-sentence documents from the grammar (``Grammar.sample_documents``), encoded: the
    data of next-sentence prediction."""

    def __init__(self, grammar, tokenizer):
        self.grammar, self.tokenizer = grammar, tokenizer
        self.floor = None
        self.name = "the grammar's two-sentence documents"

    def sample(self, rng, n):
        docs = self.grammar.sample_documents(rng, n)
        return None, [[self.tokenizer.encode(s) for s in doc] for doc in docs]


class TaskData:
    """Text-to-text pairs from the built-in grammar (总结 / 翻译 / 问), encoded. With
    ``packed_length`` > 0 each example also carries that many tokens of fresh grammar
    sentences packed end to end, for the objective that mixes tasks with span corruption."""

    def __init__(self, grammar, tokenizer, packed_length=0):
        self.grammar, self.tokenizer = grammar, tokenizer
        self.text = None  # the packed sentences of mix
        self.floor = None
        self.name = "the grammar's text-to-text tasks"
        if packed_length:
            self.text = GrammarData(grammar, tokenizer, packed_length=packed_length)
            self.name += f" and its sentences, packed into sequences of {packed_length} tokens"

    def sample(self, rng, n):
        enc = self.tokenizer.encode
        pairs = [(enc(s), enc(t)) for s, t in self.grammar.sample_task_pairs(rng, n)]
        if self.text is not None:
            _, texts = self.text.sample(rng, n)
            return None, [(s, t, x) for (s, t), x in zip(pairs, texts)]
        return None, pairs


def packed_length(train_cfg, n_ctx, n_sentinels=N_SENTINELS):
    """How many tokens of text t5 and mix pack into one example (0 for the other objectives):
    the longest raw length T whose span corruption fits the model, as T5 packs 568 tokens so
    that its inputs are 512.

    The corrupted source holds (T − N) + S + 1 tokens ([EOS] included) and the target
    N + S + 1 (corruption/t5.py); T is the largest with a source of at most n_ctx tokens
    (t5_input_and_target_lengths), and the target, shorter, fits too. So every source fills
    the context and holds S noise spans: n_ctx 32 packs 34 tokens (N = 5, S = 2), 48 packs 52
    (8, 3), where one sentence of ~8 tokens alone would get one span, always at its end.

    An n_ctx whose S exceeds ``n_sentinels`` (a new vocabulary has 20, which serve n_ctx up to
    369) is refused with an OptionError naming it and the longest n_ctx that works.
    """
    if train_cfg.objective not in PACKED_OBJECTIVES:
        return 0
    if n_ctx < 3:  # a source holds at least a kept token, a sentinel and [EOS]
        raise OptionError("{objective} needs {n_ctx:3} or more, got {n_ctx}",
                          objective=train_cfg.objective, n_ctx=n_ctx)
    T, _ = t5_input_and_target_lengths(n_ctx)
    S = t5_noise_counts(T)[1]
    if S > n_sentinels:
        advice = (": use {n_ctx:%d} or less" % longest_inputs_for_sentinels(n_sentinels)
                  if n_sentinels else "")
        raise OptionError(f"{{objective}} packs {T} tokens into each example at {{n_ctx}}, and "
                          f"their span corruption needs {S} sentinels; the vocabulary has "
                          f"{n_sentinels}" + advice, objective=train_cfg.objective, n_ctx=n_ctx)
    return T


def make_data(train_cfg, model_cfg, tokenizer, documents=None, name=None, source=None):
    """The data a run trains on: the grammar (optionally a fixed pool of it, drawn from the
    seed), or the user's documents cut to fit the model's context (``source``: see TextData).
    For t5 and mix the text is packed into sequences of packed_length tokens."""
    objective = get_objective(train_cfg.objective)
    if documents is not None:
        train_cfg.check_data(name or "text")
    packed = (packed_length(train_cfg, model_cfg.n_ctx, tokenizer.n_sentinels)
              if train_cfg.objective in PACKED_OBJECTIVES else 0)
    if documents is not None:
        return TextData(documents, tokenizer, packed or model_cfg.n_ctx - objective.RESERVED,
                        name=name or "text", source=source, packed=bool(packed))
    from .grammar import default_grammar

    if train_cfg.nsp:
        return DocumentData(default_grammar(), tokenizer)
    if train_cfg.objective == "caption":  # pictures with their captions and answers
        from .pictures import PictureData

        return PictureData(tokenizer)
    if train_cfg.objective in TASK_OBJECTIVES:
        return TaskData(default_grammar(), tokenizer, packed)
    pool_rng = np.random.default_rng([train_cfg.seed, 2])
    return GrammarData(default_grammar(), tokenizer, train_cfg.pool, pool_rng, packed)
