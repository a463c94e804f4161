"""``python -m minillm combine``: 训练目标可以组合 (the tutorial's 🔑 4), measured.

    python -m minillm combine [--budget quick|tiny] [--seeds N] [--jobs N] [--json FILE]

The tutorial says modern models combine objectives (BERT: MLM + NSP; T5: one Seq2Seq
framework for every task). minillm builds both combinations; this command measures what each
buys against its parts alone, at the same model, the same number of steps and the same batch:

1. **T5's unified framework** (Raffel et al. 2020). One encoder-decoder trained on

       tasks   the grammar's text-to-text tasks alone (总结 / 翻译 / 问)
       t5      span corruption of grammar text alone (packed, as T5 packs)
       mix     the two in one stream, each example a task or span corruption with
               probability 1/2 (objectives/seq2seq.py's mix): so mix sees half as many task
               examples as tasks alone, as T5's multi-task mixture does at equal steps

   scored on **held-out task prompts**, exact match of the greedy answer against
   ``Grammar.task_answer``, per task; and on **filling sentinels**: the span-corruption loss,
   in nats per target token, on fresh packed grammar text, ``−Σ_t log P(y_t | y_<t, x̃) / m``
   (the truth of a span of unknown length is not computed here).

   *What is held out:* a tenth of the grammar's kind-A and of its kind-B sentences
   (instruct.split_sentences, drawn once from SPLIT_SEED). No task example of training is built
   from them; every test prompt is. The span-corruption text is drawn from the whole grammar,
   held-out sentences included: that is what pre-training on unlabeled text gives a model
   (T5's C4 may hold the sentences of a downstream test set), so mix may have read a test
   prompt's sentence, corrupted, but never its task.

2. **BERT's MLM + NSP** (Devlin et al. 2019), the same BERT trained on

       mlm        MLM on single grammar sentences: ``train --objective mlm``
       mlm_pairs  MLM on the two-sentence documents of NSP (the same pairs, half with a random
                  second sentence), the NSP loss left out: the control that isolates NSP
       mlm_nsp    MLM + NSP on those pairs: ``train --objective mlm --nsp``

   scored on blanked grammar sentences (elmo.blanked_sentences: one word of a sentence as
   ``[CLS] … [MASK] … [SEP]``): KL(truth ‖ fill) against the grammar's true posterior
   (Grammar.masked_word_distribution) and whether the fill's argmax is the truth's
   (elmo.fill_scores); and the NSP head's accuracy on fresh pairs (chance 1/2; only mlm_nsp
   trains the head). The NSP documents (a weather sentence, then an outing) never hold a
   kind-A sentence, half the grammar's sentences: mlm against mlm_nsp changes the text too;
   mlm_pairs against mlm_nsp changes only the loss (RoBERTa's ablation, Liu et al. 2019).

Every number is a mean over seeds × items with a bootstrap standard error and 95% interval
(capabilities.bootstrap_means: seeds and items resampled). Each comparison's difference is
bootstrapped paired (the same items for every arm); its verdict says "helps" or "hurts" only
when the 95% interval of the difference excludes 0, otherwise "no clear difference".
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import asdict, dataclass, replace

import numpy as np

from . import capabilities as cap
from .compare import fit
from .config import TrainConfig
from .data import DocumentData, GrammarData, packed_length
from .elmo import blanked_sentences, fill_scores
from .generate import fill_mask_distributions, seq2seq_greedy
from .grammar import (ACTIVITIES, COMMA, KINDS, PEOPLE, PERIOD, PLACES, WEATHER_OF, Sentence,
                      default_grammar)
from .instruct import TASKS, sample_prompts, split_sentences
from .jobs import Progress, Weighted, check_run_options, run_jobs
from .layers import IGNORE_INDEX, cross_entropy_forward
from .models import MODELS, BertConfig, Seq2SeqConfig, seq2seq_forward
from .objectives import mlm, seq2seq
from .tokenizer import CLS_ID, EOS_ID, MASK_ID, SEP_ID

# ----------------------------------------------------------------------------------------------
# Budgets


@dataclass(frozen=True)
class Budget:
    """The sizes of one measurement. Steps and batch are per arm and per seed."""

    n_embd: int  # the encoder-decoder's and the BERT's width
    n_head: int
    n_layer: int  # BERT blocks; the encoder-decoder has this many on each side
    n_ctx: int  # 32: T5 packs 34 tokens of text, 2 spans (data.packed_length)
    seq2seq_steps: int
    bert_steps: int
    batch_size: int
    task_items: int  # held-out prompts per task
    span_items: int  # packed sequences for the span-corruption loss
    fill_items: int  # blanked sentences
    nsp_items: int  # sentence pairs
    lr: float = 3e-3
    seeds: int = 3


BUDGETS = {
    "quick": Budget(n_embd=32, n_head=4, n_layer=2, n_ctx=32, seq2seq_steps=1500,
                    bert_steps=1500, batch_size=32, task_items=100, span_items=200,
                    fill_items=300, nsp_items=400),
}
# For the tests: seconds, and numbers that mean nothing.
BUDGETS["tiny"] = Budget(n_embd=16, n_head=2, n_layer=1, n_ctx=32, seq2seq_steps=3,
                         bert_steps=3, batch_size=4, task_items=3, span_items=4, fill_items=5,
                         nsp_items=6, seeds=2)

T5_ARMS = ("tasks", "t5", "mix")
BERT_ARMS = ("mlm", "mlm_pairs", "mlm_nsp")
# The share of the kind-A and of the kind-B sentences no training task is built from.
HELD_OUT_FRACTION = 0.1
# Fixed seeds of what must not change between runs or arms: the split, the test items (the
# same for every arm and seed, so differences are paired), the bootstrap.
SPLIT_SEED, TEST_SEED, BOOTSTRAP_SEED = 2026, 2027, 7
# The relative cost of one training step of each arm, so that the progress line's ETA weighs a
# step by what it costs: milliseconds per step in the quick run of 2026-12-02 (two jobs on two
# cores; its "seconds" per arm / 1,500 steps).
STEP_COST = {"tasks": 19, "t5": 24, "mix": 31, "mlm": 5, "mlm_pairs": 10, "mlm_nsp": 10}


def held_out_split():
    """(training sentences, held-out sentences): texts of kinds A and B, a tenth of each kind
    held out (instruct.split_sentences from SPLIT_SEED). The same split for every run."""
    return split_sentences(np.random.default_rng(SPLIT_SEED), HELD_OUT_FRACTION)


def configs(budget, vocab_size):
    """The encoder-decoder (n_layer blocks on each side) and the BERT of a budget."""
    shape = dict(vocab_size=vocab_size, n_ctx=budget.n_ctx, n_embd=budget.n_embd,
                 n_head=budget.n_head)
    return {"seq2seq": Seq2SeqConfig(n_enc_layer=budget.n_layer, n_dec_layer=budget.n_layer,
                                     **shape),
            "bert": BertConfig(n_layer=budget.n_layer, **shape)}


# ----------------------------------------------------------------------------------------------
# Training batches


class ArmBatches:
    """The training batches of one arm, drawn from ``rng``: ``next_batch()`` -> (batch, the
    number of predicted tokens), compare.fit's interface.

        tasks      task pairs built from the training sentences only
        t5         packed grammar text, span-corrupted
        mix        per example, a task pair or (probability 1/2) packed text span-corrupted
        mlm        single grammar sentences, masked (15%, 80/10/10)
        mlm_pairs  NSP's sentence pairs, masked, with the next-sentence labels dropped
        mlm_nsp    NSP's sentence pairs, masked, with their next-sentence labels
    """

    def __init__(self, arm, budget, tokenizer, train_sentences, rng):
        self.arm, self.budget, self.tokenizer = arm, budget, tokenizer
        self.train_sentences, self.rng = train_sentences, rng
        self.train_cfg = training_config(arm, budget, steps=1)
        grammar = default_grammar()
        packed = packed_length(TrainConfig(objective="t5"), budget.n_ctx, tokenizer.n_sentinels)
        self.text = GrammarData(grammar, tokenizer, packed_length=packed)
        self.sentences = GrammarData(grammar, tokenizer)
        self.documents = DocumentData(grammar, tokenizer)

    def task_pairs(self, n):
        """n (source ids, target ids) of the tasks, from the training sentences only."""
        enc = self.tokenizer.encode
        return [(enc(p.text), enc(p.answer))
                for p in sample_prompts(self.rng, n, within=self.train_sentences)]

    def next_batch(self):
        n, rng, tok = self.budget.batch_size, self.rng, self.tokenizer
        if self.arm == "tasks":
            examples = self.task_pairs(n)
        elif self.arm == "t5":
            _, examples = self.text.sample(rng, n)
        elif self.arm == "mix":
            _, texts = self.text.sample(rng, n)
            examples = [(s, t, x) for (s, t), x in zip(self.task_pairs(n), texts)]
        elif self.arm == "mlm":
            _, examples = self.sentences.sample(rng, n)
        else:  # mlm_pairs, mlm_nsp
            _, examples = self.documents.sample(rng, n)
        objective = seq2seq if self.arm in T5_ARMS else mlm
        batch = objective.training_batch(examples, None, rng, tok, self.train_cfg,
                                         n_ctx=self.budget.n_ctx)
        if self.arm == "mlm_pairs":
            del batch["next_sentence_label"]  # the same pairs; no NSP term in the loss
        labels = batch["targets"] if self.arm in T5_ARMS else batch["labels"]
        return batch, int((labels != IGNORE_INDEX).sum())


def training_config(arm, budget, steps):
    """The TrainConfig whose objective trains ``arm`` (mlm_pairs: mlm with the NSP pairs)."""
    objective = arm if arm in T5_ARMS else "mlm"
    return TrainConfig(steps=steps, batch_size=budget.batch_size, lr=budget.lr,
                       objective=objective, nsp=arm in ("mlm_pairs", "mlm_nsp"))


# ----------------------------------------------------------------------------------------------
# Scores, one per item


def task_exact_match(params, cfg, tokenizer, prompts):
    """1.0 where greedy decoding of a prompt gives exactly ``Grammar.task_answer(prompt)`` and
    then [EOS], else 0.0. -> (n,). Decoding stops after len(answer) + 1 tokens: by then the
    output either is the answer and [EOS] or is not."""
    grammar = default_grammar()
    scores = []
    for prompt in prompts:
        truth = [*tokenizer.encode(grammar.task_answer(prompt.text)), EOS_ID]
        output, _ = seq2seq_greedy(params, cfg, [*tokenizer.encode(prompt.text), EOS_ID],
                                   max_len=len(truth))
        scores.append(float(output == truth))
    return np.array(scores)


def span_corruption_nll(params, cfg, pairs):
    """``−Σ_t log P(y_t | y_<t, x̃) / m`` for each (corrupted source x̃, target y of m tokens)
    pair: nats per target token, the loss of span corruption, one number per pair. -> (n,)."""
    batch = seq2seq.make_batch(pairs)
    logits, _ = seq2seq_forward(params, cfg, batch["src"], batch["dec_in"], batch["src_mask"],
                                batch["dec_mask"])  # (n, T, V)
    _, ce = cross_entropy_forward(logits, batch["targets"])
    m = (batch["targets"] != IGNORE_INDEX).sum(axis=1)  # (n,)
    return -ce["logp_target"].sum(axis=1) / m  # padding's terms are 0


def fill_kl_and_accuracy(params, cfg, tokenizer, blanks):
    """For each blanked sentence (a word list with one "[MASK]"): elmo.fill_scores of the
    BERT's fill of ``[CLS] … [MASK] … [SEP]`` against the grammar's true posterior given the
    whole sentence. -> (kl (n,), accuracy (n,))."""
    grammar = default_grammar()
    kl, accuracy = [], []
    for words in blanks:
        truth = grammar.masked_word_distribution(words, as_prefix=False)
        ids = [MASK_ID if w == "[MASK]" else tokenizer.encode(w)[0] for w in words]
        (_, probs), = fill_mask_distributions(params, cfg, [CLS_ID, *ids, SEP_ID])
        k, a = fill_scores(truth, probs, tokenizer)
        kl.append(k)
        accuracy.append(a)
    return np.array(kl), np.array(accuracy)


def document_support(grammar):
    """Every two-sentence document of ``Grammar.sample_documents`` with its probability,
    {(words of the first sentence, words of the second): P}:

        P(c, b) = P(c | kind C) · P(place | c's weather) · P(activity | place) · P(person)

    b is the kind-B outing of c's time (grammar.py's tables). Σ P = 1."""
    support = {}
    for c, p in zip(grammar.sentences, grammar.probs):
        if c.kind != "C":
            continue
        for place, p_place in PLACES[WEATHER_OF[c.predicate]].items():
            for activity, p_activity in ACTIVITIES[place].items():
                for person, p_person in PEOPLE.items():
                    b = Sentence("B", c.time, person=person, place=place, activity=activity)
                    support[c.words, b.words] = (p / KINDS["C"]) * p_place * p_activity * p_person
    return support


def blanked_documents(grammar, n, rng):
    """n documents drawn by ``Grammar.sample_documents``, each with one word (not
    punctuation) of either sentence chosen uniformly and replaced by [MASK]: a list of
    (first words, second words)."""
    tokenizer = grammar.tokenizer()
    blanks = []
    for first, second in grammar.sample_documents(rng, n):
        words = [tokenizer.tokenize(first), tokenizer.tokenize(second)]
        choices = [(i, k) for i in (0, 1) for k, w in enumerate(words[i])
                   if w not in (COMMA, PERIOD)]
        i, k = choices[int(rng.integers(len(choices)))]
        words[i][k] = "[MASK]"
        blanks.append((tuple(words[0]), tuple(words[1])))
    return blanks


def document_posterior(support, blank):
    """The true distribution of the one [MASK] of a blanked document, among the documents of
    ``support`` that agree with all its other words:

        P(w | the others) = Σ_{d agrees, d[mask] = w} P(d) / Σ_{d agrees} P(d)
    """
    words = (*blank[0], None, *blank[1])  # None: the boundary, which every document has
    at = words.index("[MASK]")
    dist = {}
    for (a, b), p in support.items():
        doc = (*a, None, *b)
        if len(doc) == len(words) and all(x == w for i, (x, w) in enumerate(zip(doc, words))
                                           if i != at):
            dist[doc[at]] = dist.get(doc[at], 0.0) + p
    total = sum(dist.values())
    return {w: p / total for w, p in dist.items()}


def document_fill_kl_and_accuracy(params, cfg, tokenizer, blanks):
    """For each blanked document: elmo.fill_scores of the BERT's fill of
    ``[CLS] A [SEP] B [SEP]`` (segments 0 and 1, as NSP trains them) against
    document_posterior. -> (kl (n,), accuracy (n,))."""
    support = document_support(default_grammar())
    kl, accuracy = [], []
    for a, b in blanks:
        truth = document_posterior(support, (a, b))
        ids_a, ids_b = ([MASK_ID if w == "[MASK]" else tokenizer.encode(w)[0] for w in part]
                        for part in (a, b))
        ids = [CLS_ID, *ids_a, SEP_ID, *ids_b, SEP_ID]
        types = [0] * (len(ids_a) + 2) + [1] * (len(ids_b) + 1)
        (_, probs), = fill_mask_distributions(params, cfg, ids, token_type_ids=types)
        k, acc = fill_scores(truth, probs, tokenizer)
        kl.append(k)
        accuracy.append(acc)
    return np.array(kl), np.array(accuracy)


def scoring_items(budget, tokenizer, held_out_sentences):
    """What every arm is scored on, from TEST_SEED: held-out prompts per task, span-corrupted
    packed text, blanked sentences, and the generator of the NSP pairs' seed."""
    rng = np.random.default_rng(TEST_SEED)
    prompts = {task: sample_prompts(rng, budget.task_items, (task,), within=held_out_sentences)
               for task in TASKS}
    packed = packed_length(TrainConfig(objective="t5"), budget.n_ctx, tokenizer.n_sentinels)
    _, texts = GrammarData(default_grammar(), tokenizer, packed_length=packed).sample(
        rng, budget.span_items)
    spans = [seq2seq.corrupt(ids, rng, tokenizer, "t5") for ids in texts]
    blanks = blanked_sentences(default_grammar(), budget.fill_items, rng)
    documents = blanked_documents(default_grammar(), budget.fill_items, rng)
    return {"prompts": prompts, "spans": spans, "blanks": blanks, "documents": documents}


# ----------------------------------------------------------------------------------------------
# One arm: train, then score


def run_arm(budget, seed, arm, counter):
    """Train ``arm`` from seed ``seed`` and score it -> {metric: per-item scores (list)}."""
    tokenizer = default_grammar().tokenizer()
    train_sentences, held_out = held_out_split()
    cfgs = configs(budget, len(tokenizer))
    family = "seq2seq" if arm in T5_ARMS else "bert"
    cfg = cfgs[family]
    params = MODELS[family].init(cfg, np.random.default_rng([seed, 0]))
    steps = budget.seq2seq_steps if family == "seq2seq" else budget.bert_steps
    batches = ArmBatches(arm, budget, tokenizer, train_sentences,
                         np.random.default_rng([seed, 1]))
    objective = training_config(arm, budget, steps).objective
    record = fit(params, cfg, objective, batches.next_batch, steps, budget.lr, seed,
                 Weighted(counter, STEP_COST[arm]))
    items = scoring_items(budget, tokenizer, held_out)
    scores = {}
    if family == "seq2seq":
        for task in TASKS:
            scores[f"exact_match_{task}"] = task_exact_match(params, cfg, tokenizer,
                                                             items["prompts"][task])
        scores["span_nll"] = span_corruption_nll(params, cfg, items["spans"])
    else:
        scores["fill_kl"], scores["fill_accuracy"] = fill_kl_and_accuracy(
            params, cfg, tokenizer, items["blanks"])
        scores["doc_fill_kl"], scores["doc_fill_accuracy"] = document_fill_kl_and_accuracy(
            params, cfg, tokenizer, items["documents"])
        nsp_cfg = training_config("mlm_nsp", budget, 1)
        scores["nsp_accuracy"] = mlm.nsp_correct(
            params, cfg, DocumentData(default_grammar(), tokenizer), tokenizer, nsp_cfg,
            np.random.default_rng([TEST_SEED, 1]), budget.nsp_items)
    return {"scores": {name: [float(v) for v in values] for name, values in scores.items()},
            "train_loss": record["loss"], "seconds": record["seconds"],
            "n_params": int(sum(v.size for v in params.values()))}


def _run_job(args, counter):
    budget, seed, arm = args
    return run_arm(budget, seed, arm, counter)


def run(budget, log=print, results=None, jobs=1):
    """Every arm for every seed, ``jobs`` at a time (jobs.run_jobs), the dearest first.
    ``results`` (a dict) is filled as jobs finish: results[(seed, arm)] is run_arm's output."""
    results = {} if results is None else results
    todo = [(budget, seed, arm) for arm in ("t5", "mix", "tasks", "mlm_nsp", "mlm_pairs", "mlm")
            for seed in range(budget.seeds)]
    total = sum(STEP_COST[arm] * (budget.seq2seq_steps if arm in T5_ARMS else budget.bert_steps)
                for _, _, arm in todo)
    progress = Progress(total, log, "combine")
    for (_, seed, arm), out in run_jobs(_run_job, todo, jobs, progress):
        results[(seed, arm)] = out
        progress.poll(f"seed {seed + 1}/{budget.seeds}: {arm} done")
    return results


# ----------------------------------------------------------------------------------------------
# The table: means, intervals, verdicts

# (metric, its title, whether higher is better, the arms scored on it)
METRICS = [
    ("exact_match_summary", "总结 exact match, held-out", True, T5_ARMS),
    ("exact_match_translate", "翻译 exact match, held-out", True, T5_ARMS),
    ("exact_match_question", "问 exact match, held-out", True, T5_ARMS),
    ("span_nll", "span-corruption loss (nats/token)", False, T5_ARMS),
    ("fill_kl", "sentence fill KL(truth ‖ model)", False, BERT_ARMS),
    ("fill_accuracy", "sentence fill argmax = truth's", True, BERT_ARMS),
    ("doc_fill_kl", "document fill KL(truth ‖ model)", False, BERT_ARMS),
    ("doc_fill_accuracy", "document fill argmax = truth's", True, BERT_ARMS),
    ("nsp_accuracy", "NSP accuracy (chance 0.5)", True, BERT_ARMS),
]
# (combined arm, the arm alone, metric): what each combination is compared with.
COMPARISONS = [
    *[("mix", "tasks", f"exact_match_{task}") for task in TASKS],
    ("mix", "t5", "span_nll"),
    *[(combined, alone, metric) for combined, alone in (("mlm_nsp", "mlm_pairs"),
                                                        ("mlm_nsp", "mlm"))
      for metric in ("fill_kl", "fill_accuracy", "doc_fill_kl", "doc_fill_accuracy")],
    ("mlm_nsp", "mlm_pairs", "nsp_accuracy"),
]


def verdict(ci, higher_is_better):
    """"helps" or "hurts" when the 95% interval (lo, hi) of combined − alone excludes 0, in the
    direction that is better or worse; otherwise "no clear difference"."""
    lo, hi = ci
    if lo > 0 or hi < 0:
        return "helps" if (lo > 0) == higher_is_better else "hurts"
    return "no clear difference"


def mean_and_interval(scores, rng):
    """scores (seeds, items) -> {"value": the mean, "se": the bootstrap standard error,
    "ci95": the bootstrap 95% interval}, seeds and items resampled (capabilities)."""
    replicates = cap.bootstrap_means(scores, rng)
    return {"value": float(np.mean(scores)), "se": float(np.std(replicates, ddof=1)),
            "ci95": list(cap.interval95(replicates))}


def summarize(results, budget, name=None):
    """results -> the table as JSON: "arms" {metric: {arm: value (the mean), se, ci95, seeds,
    by_seed (each seed's mean)}}, "comparisons" [{combined, alone, metric, difference, se,
    ci95, seeds, by_seed, verdict}], "training" (per arm: the final training loss, seconds,
    parameters), "settings"."""
    boot = np.random.default_rng(BOOTSTRAP_SEED)
    arms, comparisons = {}, []
    by_arm = {}  # arm -> {seed: scores}
    for (seed, arm), out in sorted(results.items()):
        by_arm.setdefault(arm, {})[seed] = out["scores"]
    for metric, _, _, metric_arms in METRICS:
        for arm in metric_arms:
            seeds = sorted(by_arm.get(arm, {}))
            if seeds:
                scores = np.array([by_arm[arm][s][metric] for s in seeds])  # (seeds, items)
                arms.setdefault(metric, {})[arm] = {**mean_and_interval(scores, boot),
                                                    "seeds": seeds,
                                                    "by_seed": scores.mean(axis=1).tolist()}
    higher = {metric: h for metric, _, h, _ in METRICS}
    for combined, alone, metric in COMPARISONS:
        common = sorted(set(by_arm.get(combined, {})) & set(by_arm.get(alone, {})))
        if not common:
            continue
        diff = np.array([np.subtract(by_arm[combined][s][metric], by_arm[alone][s][metric])
                         for s in common])  # (seeds, items), paired by item
        stats = mean_and_interval(diff, boot)
        comparisons.append({"combined": combined, "alone": alone, "metric": metric,
                            "difference": stats["value"], "se": stats["se"],
                            "ci95": stats["ci95"], "seeds": common,
                            "by_seed": diff.mean(axis=1).tolist(),
                            "verdict": verdict(stats["ci95"], higher[metric])})
    train = {arm: {"train_loss": float(np.mean([results[s, arm]["train_loss"] for s in seeds])),
                   "seconds": float(np.mean([results[s, arm]["seconds"] for s in seeds])),
                   "n_params": results[seeds[0], arm]["n_params"]}
             for arm, seeds in ((a, sorted(by_arm[a])) for a in by_arm)}
    _, held_out = held_out_split()
    return {"arms": arms, "comparisons": comparisons, "training": train,
            "settings": {"budget": name, **asdict(budget),
                         "held_out": {"fraction": HELD_OUT_FRACTION, "sentences": len(held_out),
                                      "split_seed": SPLIT_SEED},
                         "finished": sorted([s, a] for s, a in results)}}


def format_table(summary):
    """The arms' means ± standard errors, then each comparison with its interval and verdict."""
    lines = []
    if summary["settings"].get("budget") == "tiny":
        lines.append("(--budget tiny: a smoke test; its numbers mean nothing)")
    s = summary["settings"]
    lines.append(f"each number: mean ± standard error over {s['seeds']} seeds × test items "
                 f"(bootstrap); {s['held_out']['sentences']} sentences held out of the tasks' "
                 "training")
    for title, arms in (("T5's unified framework (one encoder-decoder)", T5_ARMS),
                        ("BERT's MLM + NSP", BERT_ARMS)):
        lines += ["", f"{title}:", f"  {'':<36}" + "".join(f"{a:>18}" for a in arms)]
        for metric, metric_title, _, metric_arms in METRICS:
            if metric_arms != arms or metric not in summary["arms"]:
                continue
            cells = summary["arms"][metric]
            row = "".join(f"{_pm(cells[a]):>18}" if a in cells else f"{'(not run)':>18}"
                          for a in arms)
            lines.append(f"  {metric_title:<36}{row}")
        train = summary["training"]
        row = "".join(f"{train[a]['train_loss']:>18.3f}" if a in train else f"{'':>18}"
                      for a in arms)
        lines.append(f"  {'final training loss':<36}{row}")
    lines += ["", "combined − alone [95% interval]  verdict (only when the interval excludes 0):"]
    titles = {metric: title for metric, title, _, _ in METRICS}
    for c in summary["comparisons"]:
        lo, hi = c["ci95"]
        lines.append(f"  {c['combined'] + ' − ' + c['alone']:<20} {titles[c['metric']]:<36} "
                     f"{c['difference']:+.3f} [{lo:+.3f}, {hi:+.3f}]  {c['verdict']}")
    return "\n".join(lines)


def _pm(cell):
    return f"{cell['value']:.3f} ± {cell['se']:.3f}"


# ----------------------------------------------------------------------------------------------
# The command


def build_parser():
    parser = argparse.ArgumentParser(
        prog="minillm combine",
        description="Measure 训练目标可以组合: an encoder-decoder trained on the grammar's "
        "tasks, on T5's span corruption, and on both in one stream (T5's mix), scored on "
        "held-out prompts and on span corruption; a BERT trained with MLM, with MLM on NSP's "
        "sentence pairs, and with MLM + NSP, scored against the grammar's true fill and on "
        "NSP. Same model, steps and batch in every arm.")
    parser.add_argument("--budget", choices=sorted(BUDGETS), default="quick",
                        help="quick: about 4 minutes on 2 cores; tiny: seconds, for the tests "
                        "(default: quick)")
    parser.add_argument("--seeds", type=int, default=None,
                        help="seeds per arm (default: the budget's, 3)")
    parser.add_argument("--jobs", type=int, default=None,
                        help="models trained at a time, each in its own process (default: the "
                        "number of CPUs this process may use)")
    parser.add_argument("--json", metavar="FILE", default=None,
                        help="also write every number as JSON to FILE")
    return parser


def _log(line):
    """Progress lines go to stderr, the table to stdout."""
    print(line, file=sys.stderr, flush=True)


def _error(message):
    print(f"minillm combine: error: {message}", file=sys.stderr)
    return 2


def main(argv=None):
    """-> exit status: 0 done, 2 a bad option, 130 interrupted (what finished is printed)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit:
        return int(exit.code or 0)
    problem = check_run_options(args)
    if problem is not None:
        return _error(problem)
    budget = BUDGETS[args.budget]
    if args.seeds is not None:
        budget = replace(budget, seeds=args.seeds)
    jobs = args.jobs or len(os.sched_getaffinity(0))
    results, status = {}, 0
    try:
        run(budget, log=_log, results=results, jobs=jobs)
    except KeyboardInterrupt:
        _log(f"combine: interrupted; {len(results)} of {6 * budget.seeds} models finished, "
            "kept below")
        status = 130
    summary = summarize(results, budget, args.budget)
    print(format_table(summary))
    if args.json is not None:
        from .safetensors import write_json

        write_json(args.json, summary)
    return status
