"""How each model family does each task: GPT by a prompt and its continuation, BERT by [MASK]
slots, the encoder-decoder by input → output (compare.py measures the tutorial's capability
table with them; capabilities.py holds the tasks and their scores).

An example is (source words, target words). Each family turns it into the batch its own loss
trains on and reads its answer back in its own way:

    GPT (clm)          [BOS] source [SEP] target [EOS]; the loss only on target and [EOS]
                       (prompt → continuation, as GPT-2/3 are fine-tuned and prompted).
                       Generation: [BOS] document [EOS], the loss on all of it.
                       Answer: the continuation of [BOS] source [SEP], greedy, up to [EOS].
    BERT (mlm)         [CLS] source [SEP] [MASK]·K [SEP]; the K slots are labelled with the
                       target and [EOS] (the slots after it are not asked for): a fixed number
                       of slots filled at once. K is one more than the longest answer of the
                       fine-tuning examples.
                       A blank: the passage with [MASK] in place, labelled at the mask.
                       Generation: the slots after a document's first words; a document is
                       written by filling the first slot, appending it, and again (left to right).
    encoder-decoder    source [EOS] → target [EOS] (teacher forcing; seq2seq.make_batch).
                       Generation: an empty source ([EOS] alone) → the whole document.

Without fine-tuning (the pre-trained model alone), where it makes sense:

    generation     GPT samples from [BOS]; BERT fills [MASK]s left to right in a row whose
                   length is drawn from the training documents' lengths (it has no other way
                   to know where to stop); the encoder-decoder decodes from a source that is
                   all blank (T5: <extra_id_0>, its output's sentinels dropped; BART: [MASK]).
                   Its pre-training never saw a source blank from end to end (T5 blanks 15% in
                   spans of 3, BART 30%), so this one asks it for more than it learned.
    comprehension  GPT two ways: the left context only, argmax P(w | words before the blank);
                   and each candidate w scored by the whole passage's likelihood P(passage
                   with w), as GPT-3 does for cloze. BERT: the MLM head at the [MASK]. The
                   encoder-decoder: each candidate scored by P(target | source) in its
                   pre-training format (T5: <extra_id_0> w [EOS]; BART: the whole passage).

Every answer is drawn the same way for every family: greedy for qa, translation and code,
sampled at temperature 1 for generation; a blank's answer is the most probable candidate word.
A sample may hold any token of the vocabulary, a special one ([CLS], a sentinel) included: the
world cannot produce such a document, so it scores as outside the support.
"""

from __future__ import annotations

import numpy as np

from .layers import IGNORE_INDEX, cross_entropy_forward, log_softmax
from .models import (bert_forward, decoder_forward, encoder_forward, gpt_forward,
                     seq2seq_forward)
from .objectives import seq2seq as seq2seq_objective
from .tokenizer import BOS_ID, CLS_ID, EOS_ID, MASK_ID, PAD_ID, SEP_ID, right_pad

MASK_WORD = "[MASK]"


class Vocabulary:
    """Words <-> token ids through a tokenizer: the tasks are made of words, and every word is
    one token (the tokenizer's lexicon holds them all)."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer

    def ids(self, words):
        return [self.tokenizer.id_of[w] for w in words]

    def words(self, ids):
        return tuple(self.tokenizer.vocab[i] for i in ids)


def _sample_rows(logits, rng, allowed=None):
    """One token per row of logits (n, V): the argmax when rng is None, else a draw at
    temperature 1. ``allowed`` (ids) restricts the choice to those tokens."""
    if allowed is not None:
        restricted = np.full_like(logits, -np.inf)
        restricted[:, allowed] = logits[:, allowed]
        logits = restricted
    if rng is None:
        return logits.argmax(axis=-1)
    probs = np.exp(log_softmax(logits.astype(np.float64)))
    u = rng.random(len(probs))[:, None]
    return np.minimum((probs.cumsum(axis=-1) < u).sum(axis=-1), probs.shape[-1] - 1)


def _until_eos(ids):
    """The tokens before the first [EOS] (all of them if there is none)."""
    ids = list(ids)
    return ids[: ids.index(EOS_ID)] if EOS_ID in ids else ids


# ==============================================================================================
# GPT: prompt → continuation


class GPTFormat:
    objective = "clm"  # the table's column
    train_objective = "clm"  # the objective module whose loss fine-tunes it (objectives/)
    blank_word = MASK_WORD  # how a blank is written in a source

    def __init__(self, vocab, cfg):
        self.vocab, self.cfg = vocab, cfg

    def prompt(self, task, source):
        if task == "generation":
            return [BOS_ID, *self.vocab.ids(source)]
        return [BOS_ID, *self.vocab.ids(source), SEP_ID]

    def batch(self, task, examples):
        """Rows ``prompt target [EOS]``; inputs are a row but its last token, targets a row but
        its first, and the targets of the prompt are ignored: the loss is on the answer."""
        rows, starts = [], []
        for ex in examples:
            prompt = self.prompt(task, () if task == "generation" else ex.source)
            target = (ex.source + ex.target) if task == "generation" else ex.target
            rows.append(prompt + self.vocab.ids(target) + [EOS_ID])
            starts.append(len(prompt) - 1)  # targets[starts:] are the answer's tokens
        inputs, mask = right_pad([r[:-1] for r in rows], PAD_ID)
        targets, _ = right_pad([r[1:] for r in rows], IGNORE_INDEX)
        for b, start in enumerate(starts):
            targets[b, :start] = IGNORE_INDEX
        return {"inputs": inputs, "targets": targets, "attention_mask": mask}

    def continue_prompts(self, params, prompts, max_new, rng=None):
        """Each prompt continued until [EOS] or the context is full: greedy (rng None) or
        sampled. The whole sequence is read again at every step (no key/value cache: short
        rows, all prompts in one batch)."""
        rows = [list(p) for p in prompts]
        new = [[] for _ in rows]
        live = [b for b in range(len(rows))]
        for _ in range(max_new):
            live = [b for b in live if len(rows[b]) < self.cfg.n_ctx]
            if not live:
                break
            inputs, mask = right_pad([rows[b] for b in live], PAD_ID)
            logits, _ = gpt_forward(params, self.cfg, inputs, mask)
            last = logits[np.arange(len(live)), mask.sum(axis=1) - 1]  # (n_live, V)
            tokens = _sample_rows(last, rng)
            for b, token in zip(live, tokens):
                rows[b].append(int(token))
                new[b].append(int(token))
            live = [b for b in live if new[b][-1] != EOS_ID]
        return [_until_eos(n) for n in new]

    def answer(self, params, task, examples):
        prompts = [self.prompt(task, ex.source) for ex in examples]
        return [self.vocab.words(ids) for ids in
                self.continue_prompts(params, prompts, self.cfg.n_ctx)]

    def generate(self, params, n, rng, fine_tuned=True, lengths=None):
        """n documents sampled from [BOS] (fine-tuned or not, the same interface)."""
        outputs = self.continue_prompts(params, [[BOS_ID]] * n, self.cfg.n_ctx, rng)
        return [self.vocab.words(ids) for ids in outputs]

    def fill_blanks(self, params, examples, candidates):
        """Fine-tuned: the first token after ``[BOS] passage-with-[MASK] [SEP]``, among the
        candidates."""
        inputs, mask = right_pad([self.prompt("comprehension", ex.source) for ex in examples],
                                 PAD_ID)
        logits, _ = gpt_forward(params, self.cfg, inputs, mask)
        last = logits[np.arange(len(examples)), mask.sum(axis=1) - 1]
        return self.vocab.words(_sample_rows(last, None, candidates))

    def blanks_without_fine_tuning(self):
        return {"left context": self.blanks_left_context,
                "whole passage": self.blanks_whole_passage}

    def blanks_left_context(self, params, examples, candidates):
        """Without fine-tuning, the left context only: argmax_w P(w | [BOS] words before it)."""
        inputs, mask = right_pad([[BOS_ID, *self.vocab.ids(ex.passage[: ex.blank])]
                                  for ex in examples], PAD_ID)
        logits, _ = gpt_forward(params, self.cfg, inputs, mask)
        last = logits[np.arange(len(examples)), mask.sum(axis=1) - 1]
        return self.vocab.words(_sample_rows(last, None, candidates))

    def blanks_whole_passage(self, params, examples, candidates):
        """Without fine-tuning, as GPT-3 scores a cloze: argmax_w log P([BOS] passage with w
        [EOS]), the chain rule over the whole passage."""
        answers = []
        for ex in examples:
            left, right = self.vocab.ids(ex.passage[: ex.blank]), self.vocab.ids(
                ex.passage[ex.blank + 1:])
            rows = [[BOS_ID, *left, int(w), *right, EOS_ID] for w in candidates]
            inputs, mask = right_pad([r[:-1] for r in rows], PAD_ID)
            targets, _ = right_pad([r[1:] for r in rows], IGNORE_INDEX)
            logits, _ = gpt_forward(params, self.cfg, inputs, mask)
            _, ce = cross_entropy_forward(logits, targets)
            totals = ce["logp_target"].reshape(targets.shape).sum(axis=1)  # log P(row)
            answers.append(self.vocab.tokenizer.vocab[int(candidates[int(totals.argmax())])])
        return tuple(answers)


# ==============================================================================================
# BERT: [MASK] slots


class BERTFormat:
    objective = "mlm"
    train_objective = "mlm"
    blank_word = MASK_WORD

    def __init__(self, vocab, cfg, slots):
        self.vocab, self.cfg = vocab, cfg
        self.slots = slots  # task -> K, the number of [MASK] slots of its answers

    def row(self, task, source):
        """``[CLS] source [SEP] [MASK]·K [SEP]`` (K cut so that the row fits n_ctx) and the
        positions of the slots; a blank is the passage with its [MASK] in place."""
        ids = self.vocab.ids(source)
        if task == "comprehension":
            row = [CLS_ID, *ids, SEP_ID]
            return row, [row.index(MASK_ID)]
        k = min(self.slots[task], self.cfg.n_ctx - len(ids) - 3)
        start = len(ids) + 2
        return [CLS_ID, *ids, SEP_ID, *[MASK_ID] * k, SEP_ID], list(range(start, start + k))

    def batch(self, task, examples):
        rows, labels = [], []
        for ex in examples:
            row, slots = self.row(task, ex.source)
            answer = self.vocab.ids(ex.target)
            if task != "comprehension":  # the answer, [EOS], and no label after it
                answer = (answer + [EOS_ID])[: len(slots)]
            label = [IGNORE_INDEX] * len(row)
            for position, token in zip(slots, answer):
                label[position] = token
            rows.append(row)
            labels.append(label)
        inputs, mask = right_pad(rows, PAD_ID)
        labels, _ = right_pad(labels, IGNORE_INDEX)
        return {"inputs": inputs, "labels": labels, "attention_mask": mask,
                "token_type_ids": np.zeros_like(inputs)}

    def _slot_logits(self, params, rows):
        inputs, mask = right_pad(rows, PAD_ID)
        logits, _, _ = bert_forward(params, self.cfg, inputs, None, mask)
        return logits

    def answer(self, params, task, examples):
        """All slots at once: each slot's argmax, read up to the first [EOS]."""
        built = [self.row(task, ex.source) for ex in examples]
        logits = self._slot_logits(params, [row for row, _ in built])
        out = []
        for b, (_, slots) in enumerate(built):
            ids = [int(t) for t in logits[b, slots].argmax(axis=-1)]
            out.append(self.vocab.words(_until_eos(ids)))
        return out

    def blanks_without_fine_tuning(self):
        return {"pre-trained": self.fill_blanks}

    def fill_blanks(self, params, examples, candidates):
        """The MLM head at the [MASK], among the candidates (fine-tuned or not)."""
        built = [self.row("comprehension", ex.source) for ex in examples]
        logits = self._slot_logits(params, [row for row, _ in built])
        at_mask = logits[np.arange(len(examples)), [slots[0] for _, slots in built]]
        return self.vocab.words(_sample_rows(at_mask, None, candidates))

    def generate(self, params, n, rng, fine_tuned=True, lengths=None):
        """Left to right: fill the first [MASK], append it, again. Fine-tuned: the slots of
        ``row("generation", words so far)``, until the first slot says [EOS]. Not fine-tuned:
        ``[CLS] words so far [MASK]·(L − t) [SEP]`` with L drawn from ``lengths``."""
        done = [[] for _ in range(n)]
        target = None if fine_tuned else [int(lengths[i]) for i in
                                          rng.integers(0, len(lengths), size=n)]
        live = list(range(n))
        while live:
            if fine_tuned:
                rows = [self.row("generation", tuple(done[b]))[0] for b in live]
                firsts = [len(done[b]) + 2 for b in live]  # [CLS] words [SEP] then the slots
            else:
                rows = [[CLS_ID, *self.vocab.ids(done[b]),
                         *[MASK_ID] * (target[b] - len(done[b])), SEP_ID] for b in live]
                firsts = [len(done[b]) + 1 for b in live]
            logits = self._slot_logits(params, rows)
            tokens = _sample_rows(logits[np.arange(len(live)), firsts], rng)
            for b, token in zip(live, tokens):
                if int(token) != EOS_ID:
                    done[b].append(self.vocab.tokenizer.vocab[int(token)])
            if fine_tuned:  # until [EOS], or no room for a slot: [CLS] words [SEP] slot [SEP]
                live = [b for b, t in zip(live, tokens) if int(t) != EOS_ID and
                        len(done[b]) < self.cfg.n_ctx - 4]
            else:
                live = [b for b in live if len(done[b]) < target[b]]
        return [tuple(words) for words in done]


# ==============================================================================================
# Encoder-decoder: input → output


class Seq2SeqFormat:
    objective = "seq2seq"
    train_objective = "tasks"  # objectives/seq2seq.py's loss on (source, target) pairs

    def __init__(self, vocab, cfg, pretraining):
        self.vocab, self.cfg = vocab, cfg
        self.pretraining = pretraining  # "t5" or "bart": how the blank and the all-blank source
        tok = vocab.tokenizer
        self.blank_word = tok.vocab[tok.sentinel_id(0)] if pretraining == "t5" else MASK_WORD

    def source(self, task, words):
        words = tuple(self.blank_word if w == MASK_WORD else w for w in words)
        return [*self.vocab.ids(words), EOS_ID]

    def batch(self, task, examples):
        """``source [EOS] → target [EOS]``; for generation ``[EOS] → document [EOS]``, the
        source empty, as it is when a document is generated."""
        if task == "generation":
            pairs = [([EOS_ID], [*self.vocab.ids(ex.source + ex.target), EOS_ID])
                     for ex in examples]
        else:
            pairs = [(self.source(task, ex.source), [*self.vocab.ids(ex.target), EOS_ID])
                     for ex in examples]
        return seq2seq_objective.make_batch(pairs)

    def decode(self, params, sources, rng=None):
        """Each source's output, greedy (rng None) or sampled, until [EOS] or n_ctx tokens: the
        encoder runs once, the decoder reads its whole prefix at every step."""
        src, src_mask = right_pad(sources, PAD_ID)
        enc, _ = encoder_forward(params, self.cfg, src, src_mask)
        rows = [[BOS_ID] for _ in sources]
        live = list(range(len(sources)))
        while live and len(rows[live[0]]) < self.cfg.n_ctx:
            prefix = np.array([rows[b] for b in live])
            logits, _ = decoder_forward(params, self.cfg, prefix, enc[live], src_mask[live])
            tokens = _sample_rows(logits[:, -1], rng)
            for b, token in zip(live, tokens):
                rows[b].append(int(token))
            live = [b for b in live if rows[b][-1] != EOS_ID]
        return [_until_eos(r[1:]) for r in rows]

    def answer(self, params, task, examples):
        outputs = self.decode(params, [self.source(task, ex.source) for ex in examples])
        return [self.vocab.words(ids) for ids in outputs]

    def fill_blanks(self, params, examples, candidates):
        """Fine-tuned: the first token of the output, among the candidates."""
        src, src_mask = right_pad([self.source("comprehension", ex.source) for ex in examples],
                                  PAD_ID)
        enc, _ = encoder_forward(params, self.cfg, src, src_mask)
        logits, _ = decoder_forward(params, self.cfg, np.full((len(examples), 1), BOS_ID), enc,
                                    src_mask)
        return self.vocab.words(_sample_rows(logits[:, 0], None, candidates))

    def blanks_without_fine_tuning(self):
        return {"pre-trained": self.blanks_by_scoring}

    def blanks_by_scoring(self, params, examples, candidates):
        """Without fine-tuning: argmax_w log P(target(w) | source) in the pre-training format:
        T5 ``<extra_id_0> w [EOS]`` for a source with <extra_id_0> at the blank; BART the whole
        passage with w for a source with [MASK] there."""
        answers = []
        for ex in examples:
            src = self.source("comprehension", ex.source)
            left, right = self.vocab.ids(ex.passage[: ex.blank]), self.vocab.ids(
                ex.passage[ex.blank + 1:])
            if self.pretraining == "t5":
                sentinel = self.vocab.tokenizer.sentinel_id(0)
                targets = [[sentinel, int(w), EOS_ID] for w in candidates]
            else:
                targets = [[*left, int(w), *right, EOS_ID] for w in candidates]
            batch = seq2seq_objective.make_batch([(src, t) for t in targets])
            logits, _ = seq2seq_forward(params, self.cfg, batch["src"], batch["dec_in"],
                                        batch["src_mask"], batch["dec_mask"])
            _, ce = cross_entropy_forward(logits, batch["targets"])
            totals = ce["logp_target"].reshape(batch["targets"].shape).sum(axis=1)
            answers.append(self.vocab.tokenizer.vocab[int(candidates[int(totals.argmax())])])
        return tuple(answers)

    def generate(self, params, n, rng, fine_tuned=True, lengths=None):
        """Fine-tuned: an empty source ([EOS] alone) → a document. Not fine-tuned: a source that
        is all blank (T5 <extra_id_0>, BART [MASK]) → its filling, sentinels dropped."""
        if fine_tuned:
            return [self.vocab.words(ids) for ids in self.decode(params, [[EOS_ID]] * n, rng)]
        outputs = self.decode(params, [self.source("generation", (MASK_WORD,))] * n, rng)
        sentinels = {self.vocab.tokenizer.sentinel_id(k)
                     for k in range(self.vocab.tokenizer.n_sentinels)}
        return [self.vocab.words([i for i in ids if i not in sentinels]) for ids in outputs]
