"""``python -m minillm compare``: the tutorial's capability table, measured.

    python -m minillm compare [--budget quick|full|tiny] [--seq2seq t5|bart] [--seeds N]
                              [--jobs N] [--json FILE]

The tutorial's table 💡 训练目标对能力的影响 gives each objective stars for five capabilities.
Papers compare models that differ in data, size and tokenizer at once; here only the objective
differs:

1. **Pre-train** a GPT (next-token prediction), a BERT (MLM: 15%, 80/10/10) and an
   encoder-decoder (T5's span corruption, or BART's text infilling) on the training documents
   of the built-in world (world.py), with the same number of parameters (within 10%: the
   encoder-decoder's width is chosen to match) and the same text: every step reads the same
   number of the world's words in each family (T5 packs them; the others read documents).
2. **Adapt** each pre-trained model to each of the five tasks (capabilities.py) with the same
   number of steps on the same examples, through the interface its family really uses
   (task_formats.py), and also try it without fine-tuning where that makes sense (generation and
   blanks).
3. **Score** every answer against the exact truth on held-out items, for each of ``--seeds``
   seeds (the seed draws the initial parameters, the training data and the fine-tuning
   batches; the test items are the same for every seed and every family).

Pre-training reads only the world's Chinese documents: English and programs are first seen in
fine-tuning, so the translation and code rows measure what each family learns in its
fine-tuning steps on top of what pre-training taught it about Chinese.

The table shows each cell's mean with a 95% interval (bootstrap over seeds and items), the
tutorial's stars beside it, and a verdict: a cell "agrees" when every comparison with the other
cells of its row goes the way the stars say (more stars: higher, with the interval of the
difference above 0; equal stars: an interval of the difference within ±5 points,
capabilities.EQUIVALENCE_MARGIN), "disagrees" when one goes the other way (or equal stars
differ for sure), and is "unclear" when an interval is too wide to tell. Below it, the compute
per training token of each family (the tutorial's "计算开销大" for Seq2Seq): matrix multiply
FLOPs counted from the shapes, and measured seconds.

Ctrl-C stops the run and keeps what is finished: the table and the JSON hold every finished cell.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import asdict, dataclass, replace

import numpy as np

from . import capabilities as cap
from .config import TrainConfig
from .jobs import Progress, check_run_options, run_jobs
from .data import packed_length
from .models import BertConfig, GPTConfig, MODELS, Seq2SeqConfig
from .objectives import get_objective
from .optim import adamw_init
from .task_formats import BERTFormat, GPTFormat, Seq2SeqFormat, Vocabulary
from .tokenizer import Tokenizer
from .train import train_step

# ----------------------------------------------------------------------------------------------
# Budgets


@dataclass(frozen=True)
class Budget:
    """The sizes of one comparison. ``steps`` and ``batch_size`` are per family and per seed."""

    n_embd: int  # the GPT's and the BERT's width (the encoder-decoder's is matched to them)
    n_head: int
    n_layer: int  # GPT and BERT blocks; the encoder-decoder has n_layer // 2 of each kind
    n_ctx: int  # every family's context; every task's items fit it
    pretrain_steps: int
    batch_size: int  # documents per pre-training step (T5: as many words, packed)
    finetune_steps: int  # per task
    finetune_examples: int  # the fine-tuning set of each task (the same for every family)
    test_items: int  # per task
    samples: int  # generated documents per model
    lr: float = 3e-3
    finetune_lr: float = 1e-3
    seeds: int = 3


BUDGETS = {
    "quick": Budget(n_embd=32, n_head=4, n_layer=2, n_ctx=64, pretrain_steps=800,
                    batch_size=16, finetune_steps=300, finetune_examples=2000, test_items=100,
                    samples=100),
    "full": Budget(n_embd=64, n_head=4, n_layer=4, n_ctx=64, pretrain_steps=2000,
                   batch_size=32, finetune_steps=1000, finetune_examples=8000, test_items=300,
                   samples=300),
}
# For the tests: seconds, and numbers that mean nothing.
BUDGETS["tiny"] = Budget(n_embd=16, n_head=2, n_layer=2, n_ctx=64, pretrain_steps=3,
                         batch_size=4, finetune_steps=2, finetune_examples=8, test_items=4,
                         samples=4, seeds=1)
TASKS = tuple(cap.CAPABILITIES)
# The tasks also scored on the world's compositional split (world.HELD_OUT's pairs).
COMPOSITIONAL = ("qa", "translation")
# Fixed seeds of what must not change between runs: the test items (the same for every seed
# and every family) and the bootstrap.
TEST_SEED, BOOTSTRAP_SEED = 2026, 7


def make_vocabulary():
    """One tokenizer for every family: the world's Chinese, its English, the instructions and
    the programs, every word one token."""
    from . import program, world

    words = set(world.WORDS) | set(world.ENGLISH_WORDS) | set(program.INSTRUCTION_WORDS) | \
        set(program.PROGRAM_TOKENS)
    return Vocabulary(Tokenizer(sorted(words)))


def n_params(family, cfg):
    return sum(int(np.prod(shape)) for shape in MODELS[family].param_shapes(cfg).values())


def matched_configs(vocab_size, budget):
    """The three families' configs: GPT and BERT as the budget says (BERT has a few more
    parameters: its MLM head's dense layer and the pooler); the encoder-decoder with
    n_layer // 2 encoder and decoder blocks (a decoder block also has cross-attention), and
    the width (a multiple of n_head) and feed-forward width (from 2 to 4 times it, in steps of
    4) that make the largest of the three counts closest to the smallest."""
    shape = dict(vocab_size=vocab_size, n_ctx=budget.n_ctx, n_head=budget.n_head)
    gpt = GPTConfig(n_embd=budget.n_embd, n_layer=budget.n_layer, **shape)
    bert = BertConfig(n_embd=budget.n_embd, n_layer=budget.n_layer, **shape)
    half = max(budget.n_layer // 2, 1)
    counts = (n_params("gpt", gpt), n_params("bert", bert))

    def spread(cfg):
        both = counts + (n_params("seq2seq", cfg),)
        return max(both) / min(both)

    shapes = [(c, f) for c in range(budget.n_head, 2 * budget.n_embd + 1, budget.n_head)
              for f in range(2 * c, 4 * c + 1, 4)]
    seq2seq = min((Seq2SeqConfig(n_embd=c, n_inner=f, n_enc_layer=half, n_dec_layer=half,
                                 **shape) for c, f in shapes), key=spread)
    return {"clm": gpt, "mlm": bert, "seq2seq": seq2seq}


# ----------------------------------------------------------------------------------------------
# Compute: FLOPs counted from the shapes


def _block_flops(rows, T, C, F, H, keys=None):
    """Forward matmul FLOPs of one transformer block over rows × T positions (2 per
    multiply-add): q, k, v, the output projection, the scores and the weighted sum over
    ``keys`` positions (T for self-attention), and the feed-forward."""
    keys = T if keys is None else keys
    return rows * (2 * T * C * 3 * C + 2 * T * C * C + 2 * 2 * T * keys * C + 2 * 2 * T * C * F)


def training_flops(objective, cfg, batch):
    """Matmul FLOPs of one training step on ``batch``: the forward pass counted from the shapes,
    times 3 (the backward pass costs about twice the forward). Padding is counted: it is
    computed."""
    C, V = cfg.n_embd, cfg.vocab_size
    if objective in ("clm", "mlm"):
        B, T = batch["inputs"].shape
        forward = cfg.n_layer * _block_flops(B, T, C, cfg.n_inner, cfg.n_head)
        forward += B * 2 * T * C * V  # the output layer
        if objective == "mlm":
            forward += B * 2 * T * C * C  # the MLM head's dense layer
    else:
        B, S = batch["src"].shape
        T = batch["dec_in"].shape[1]
        forward = cfg.n_enc_layer * _block_flops(B, S, C, cfg.n_inner, cfg.n_head)
        self_part = _block_flops(B, T, C, cfg.n_dec_inner, cfg.n_dec_head)
        # cross-attention: q and the output projection on T, k and v on S, scores T × S
        cross = B * (2 * T * C * C * 2 + 2 * S * C * 2 * C + 2 * 2 * T * S * C)
        forward += cfg.n_dec_layer * (self_part + cross) + B * 2 * T * C * V
    return 3 * forward


# ----------------------------------------------------------------------------------------------
# Pre-training


class WorldText:
    """The world's training documents as token ids, ``n`` a step. With ``packed`` > 0 (T5),
    the same n documents put end to end and cut into sequences of exactly that many tokens;
    what is left over starts the next step's stream, so T5 reads the same words as the
    others (a step whose stream holds less than one sequence draws n more documents)."""

    def __init__(self, world, vocab, packed=0):
        self.world, self.vocab, self.packed = world, vocab, packed
        self.left_over = []

    def documents(self, rng, n):
        return [self.vocab.ids(doc.words) for doc in self.world.sample(rng, n, "train")]

    def sample(self, rng, n):
        if not self.packed:
            return self.documents(rng, n)
        stream = self.left_over
        while len(stream) < self.packed:
            stream = stream + [token for doc in self.documents(rng, n) for token in doc]
        rows = len(stream) // self.packed
        self.left_over = stream[rows * self.packed:]
        return [stream[k * self.packed: (k + 1) * self.packed] for k in range(rows)]


def pretraining_objective(objective, seq2seq):
    """The objective module's name that pre-trains a column: clm, mlm, or t5 / bart."""
    return {"clm": "clm", "mlm": "mlm", "seq2seq": seq2seq}[objective]


def fit(params, cfg, objective, next_batch, steps, lr, seed, counter):
    """``steps`` AdamW steps (train.train_step) on batches from ``next_batch()``: warm-up over
    the first tenth, cosine decay to lr / 10. Returns {"seconds", "text_tokens" (the world's
    words read), "flops", "loss" (the mean loss of the last tenth of the steps)}."""
    train_cfg = TrainConfig(steps=steps, lr=lr, min_lr=lr / 10, warmup=max(steps // 10, 1),
                            objective=objective, seed=seed)
    opt = adamw_init(params)
    start, tokens, flops, losses = time.perf_counter(), 0, 0, []
    for step in range(steps):
        batch, n_text = next_batch()
        losses.append(train_step(params, opt, cfg, train_cfg, batch, step))
        tokens += n_text
        flops += training_flops(flops_kind(objective), cfg, batch)
        counter.add()
    return {"seconds": time.perf_counter() - start, "text_tokens": tokens, "flops": flops,
            "loss": float(np.mean(losses[-max(steps // 10, 1):]))}


def flops_kind(objective):
    """training_flops's kind of a training objective (t5, bart, tasks: the encoder-decoder)."""
    return {"clm": "clm", "mlm": "mlm"}.get(objective, "seq2seq")


def pretrain(objective, cfg, budget, world, vocab, seq2seq, seed, counter):
    """A fresh model of the column ``objective`` (clm, mlm, seq2seq) trained on the world's
    text. Returns (params, compute record)."""
    pretraining = pretraining_objective(objective, seq2seq)
    module = get_objective(pretraining)
    params = MODELS[module.MODEL].init(cfg, np.random.default_rng([seed, 0]))
    train_cfg = TrainConfig(objective=pretraining, seed=seed)
    rng = np.random.default_rng([seed, 1])
    packed = packed_length(train_cfg, cfg.n_ctx, vocab.tokenizer.n_sentinels)
    text = WorldText(world, vocab, packed)

    def next_batch():
        examples = text.sample(rng, budget.batch_size)
        batch = module.training_batch(examples, None, rng, vocab.tokenizer, train_cfg,
                                      n_ctx=cfg.n_ctx)
        return batch, sum(map(len, examples))

    record = fit(params, cfg, pretraining, next_batch, budget.pretrain_steps, budget.lr, seed,
                 counter)
    return params, record


# ----------------------------------------------------------------------------------------------
# The run


def _format_of(objective, vocab, cfg, seq2seq, slots):
    if objective == "clm":
        return GPTFormat(vocab, cfg)
    if objective == "mlm":
        return BERTFormat(vocab, cfg, slots)
    return Seq2SeqFormat(vocab, cfg, seq2seq)


def _params_copy(params):
    return {name: value.copy() for name, value in params.items()}


def evaluate(form, params, task, tests, candidates, world, budget, rng, fine_tuned, lengths):
    """method -> metric -> per-item scores, for one model on one task (and the answers)."""
    if task == "generation":
        samples = form.generate(params, budget.samples, rng, fine_tuned=fine_tuned,
                                lengths=lengths)
        scores = cap.score_samples(world, samples)
        method = "fine-tuned" if fine_tuned else "pre-trained"
        return {method: {m: [s[m] for s in scores] for m in scores[0]}}, samples
    if task == "comprehension" and not fine_tuned:  # the ways without fine-tuning
        methods = form.blanks_without_fine_tuning()
    elif task == "comprehension":
        methods = {"fine-tuned": form.fill_blanks}
    else:
        def answer(params, tests, candidates):
            return form.answer(params, task, tests)

        methods = {"fine-tuned": answer}
    out = {}
    for method, answer in methods.items():
        answers = answer(params, tests, candidates)
        scores = [cap.score(task, ex, a) for ex, a in zip(tests, answers)]
        out[method] = {m: [s[m] for s in scores] for m in scores[0]}
    return out, answers


def _setting(budget, seq2seq):
    """What every job of a run shares: the world, the vocabulary, the configs, the test items
    (from TEST_SEED: the same for every seed and every family; ``tests[task, "compositional"]``
    for qa and translation are items of documents whose (person, place) pair training never
    saw) and the blank's candidates."""
    from .world import WORDS, default_world

    world = default_world()
    vocab = make_vocabulary()
    configs = matched_configs(len(vocab.tokenizer), budget)
    test_rng = np.random.default_rng(TEST_SEED)
    tests = {task: cap.make_examples(task, world, test_rng, budget.test_items, "test",
                                     budget.n_ctx) for task in TASKS if task != "generation"}
    for task in COMPOSITIONAL:
        tests[task, "compositional"] = cap.make_examples(
            task, world, test_rng, budget.test_items, "compositional", budget.n_ctx)
    candidates = np.array(sorted(vocab.tokenizer.id_of[w] for w in WORDS))
    return world, vocab, configs, tests, candidates


def run_model(budget, seq2seq, seed, objective, counter):
    """One job of the comparison: pre-train the objective's model with ``seed``, try it without
    fine-tuning, fine-tune a copy on each task, score everything. ``counter.add()`` is called
    once per training step. Returns {"scores": {(task, objective, method, metric): per-item
    scores}, "compute": the pre-training record, "examples": a few answers}."""
    world, vocab, configs, tests, candidates = _setting(budget, seq2seq)
    cfg = configs[objective]
    # The fine-tuning examples of this seed: the same for every family.
    example_rng = np.random.default_rng([seed, 3])
    finetune = {task: cap.make_examples(task, world, example_rng, budget.finetune_examples,
                                        "train", budget.n_ctx) for task in TASKS}
    slots = {task: max(len(ex.target) for ex in finetune[task]) + 1 for task in TASKS}
    lengths = [len(doc.words) for doc in world.sample(example_rng, 1000, split="train")]
    form = _format_of(objective, vocab, cfg, seq2seq, slots)
    out = {"scores": {}, "examples": {}}
    params, out["compute"] = pretrain(objective, cfg, budget, world, vocab, seq2seq, seed,
                                      counter)
    eval_rng = np.random.default_rng([seed, 4])
    for task in ("generation", "comprehension"):
        scores, _ = evaluate(form, params, task, tests.get(task), candidates, world, budget,
                             eval_rng, False, lengths)
        _record(out, task, objective, scores)
    for task in TASKS:
        tuned = _params_copy(params)
        batch_rng = np.random.default_rng([seed, 5, TASKS.index(task)])
        pool = finetune[task]

        def next_batch():
            examples = [pool[i] for i in batch_rng.integers(0, len(pool), budget.batch_size)]
            words = sum(len(ex.source) + len(ex.target) for ex in examples)
            return form.batch(task, examples), words

        fit(tuned, cfg, form.train_objective, next_batch, budget.finetune_steps,
            budget.finetune_lr, seed, counter)
        scores, answers = evaluate(form, tuned, task, tests.get(task), candidates, world,
                                   budget, eval_rng, True, lengths)
        _record(out, task, objective, scores)
        if task in COMPOSITIONAL:  # the same fine-tuned model on pairs it never saw
            unseen, _ = evaluate(form, tuned, task, tests[task, "compositional"], candidates,
                                 world, budget, eval_rng, True, lengths)
            _record(out, task, objective, {"fine-tuned, unseen pairs": unseen["fine-tuned"]})
        shown = tests[task][:3] if task in tests else [None] * 3
        out["examples"][task] = [(None if ex is None else " ".join(ex.source),
                                  a if isinstance(a, str) else " ".join(a))  # a blank: a word
                                 for ex, a in zip(shown, answers[:3])]
    return out


def _record(out, task, objective, scores):
    for method, metrics in scores.items():
        for metric, values in metrics.items():
            out["scores"][(task, objective, method, metric)] = values


def _run_job(args, counter):
    budget, seq2seq, seed, objective = args
    return run_model(budget, seq2seq, seed, objective, counter)


def run(budget, seq2seq="t5", log=print, results=None, jobs=1):
    """The whole comparison: budget.seeds × 3 jobs (run_model), ``jobs`` of them at a time in
    worker processes (1: in this process; jobs.run_jobs). ``results`` (a dict) is filled as
    jobs finish, so that a Ctrl-C leaves what finished in it: results["jobs"][(seed,
    objective)] is a job's output."""
    results = {} if results is None else results
    world, vocab, configs, _, _ = _setting(budget, seq2seq)
    results.update(jobs={}, configs={c: cfg.to_dict() for c, cfg in configs.items()},
                   params={c: n_params(get_objective(pretraining_objective(c, seq2seq)).MODEL,
                                       cfg) for c, cfg in configs.items()},
                   floor=world.entropy_per_document())
    todo = [(budget, seq2seq, seed, objective) for seed in range(budget.seeds)
            for objective in configs]
    steps_per_job = budget.pretrain_steps + len(TASKS) * budget.finetune_steps
    progress = Progress(len(todo) * steps_per_job, log, "compare")
    for (_, _, seed, objective), out in run_jobs(_run_job, todo, jobs, progress):
        results["jobs"][(seed, objective)] = out
        progress.poll(f"seed {seed + 1}/{budget.seeds}: {objective} done")
    return results


# ----------------------------------------------------------------------------------------------
# The table


def summarize(results, budget, seq2seq, name=None):
    """results -> the table as JSON: {"rows": one per (capability, objective, method, metric),
    each {"capability", "objective", "metric", "value" (the mean over finished seeds and
    items), "ci95", "stars", "verdict" (headline rows), ...}; "floor": the world's entropy per
    document, which samples of the world itself score as mean nll; "settings": the budget and
    the configs; "compute": per objective, parameters, FLOPs and seconds per training token;
    "examples": a few answers of seed 0}."""
    boot = np.random.default_rng(BOOTSTRAP_SEED)
    cells = {}  # (task, objective, method, metric) -> {seed: per-item scores}
    for (seed, objective), out in sorted(results.get("jobs", {}).items()):
        for key, values in out["scores"].items():
            cells.setdefault(key, {})[seed] = values
    rows, headline = [], {}
    for (task, objective, method, metric), by_seed in cells.items():
        values = np.array([by_seed[s] for s in sorted(by_seed)], dtype=np.float64)
        if metric == "nll":  # only samples inside the support have one
            if np.all(np.isnan(values)):
                continue
            # Each sample outside the support counts as the mean of those inside, so that the
            # mean is the mean over the support (the interval is then slightly too narrow).
            values = np.where(np.isnan(values), np.nanmean(values), values)
        row = {"capability": cap.CAPABILITIES[task], "task": task, "objective": objective,
               "method": method, "metric": metric, "value": float(values.mean()),
               "ci95": list(cap.interval95(cap.bootstrap_means(values, boot))),
               "stars": cap.STARS[task][objective], "seeds": sorted(by_seed),
               "headline": method == "fine-tuned" and metric == cap.HEADLINE[task]}
        if row["headline"]:
            headline[(task, objective)] = (by_seed, row)
        rows.append(row)
    for (task, objective), (by_seed, row) in headline.items():
        verdicts = []
        for other in cap.OBJECTIVES:
            if other == objective or (task, other) not in headline:
                continue
            theirs = headline[(task, other)][0]
            common = sorted(set(by_seed) & set(theirs))  # paired: same seeds, same items
            if not common:
                continue
            diff = np.array([np.subtract(by_seed[s], theirs[s]) for s in common])
            ci = cap.interval95(cap.bootstrap_means(diff, boot))
            verdicts.append(cap.pair_verdict(cap.STARS[task][objective],
                                             cap.STARS[task][other], ci))
        row["verdict"] = cap.cell_verdict(verdicts) if verdicts else "unclear"
    compute = {}
    for objective in cap.OBJECTIVES:
        records = [out["compute"] for (_, c), out in results.get("jobs", {}).items()
                   if c == objective]
        if not records:
            continue
        tokens = sum(r["text_tokens"] for r in records)
        compute[objective] = {"params": results["params"][objective],
                              "flops_per_token": sum(r["flops"] for r in records) / tokens,
                              "seconds_per_1k_tokens":
                                  1000 * sum(r["seconds"] for r in records) / tokens,
                              "text_tokens_per_run": tokens / len(records),
                              "loss": float(np.mean([r["loss"] for r in records]))}
    finished = sorted({seed for seed, _ in results.get("jobs", {})})
    return {"rows": rows,
            "floor": {"entropy_per_document": results.get("floor"),
                      "unit": "nats: the mean nll of samples of the world itself"},
            "settings": {"budget": name, **asdict(budget), "seq2seq": seq2seq,
                         "finished_seeds": finished,
                         "configs": results.get("configs")},
            "compute": compute,
            "examples": {f"{task} {objective} seed {seed}": answers
                         for (seed, objective), out in sorted(results.get("jobs", {}).items())
                         if seed == 0 for task, answers in out["examples"].items()}}


def format_table(summary):
    """The 5 × 3 table of headline cells (value [95% interval], the tutorial's stars, verdict),
    the other measurements, and the compute per training token."""
    cells = {(r["task"], r["objective"]): r for r in summary["rows"] if r["headline"]}
    width = 34
    lines = ["each cell: mean [95% interval over seeds and test items]  the tutorial's stars  "
             "verdict (does this cell's order against the other two of its row follow the "
             "stars? equal stars: within ±5 points)", ""]
    if summary["settings"].get("budget") == "tiny":
        lines.insert(0, "(--budget tiny: a smoke test; its numbers mean nothing)")
    lines.append("能力       " + "".join(f"{cap.OBJECTIVES[c]:<{width}}" for c in cap.OBJECTIVES))
    for task, name in cap.CAPABILITIES.items():
        parts = []
        for objective in cap.OBJECTIVES:
            r = cells.get((task, objective))
            if r is None:
                parts.append(f"{'(not run)':<{width}}")
                continue
            lo, hi = r["ci95"]
            text = f"{r['value']:.2f} [{lo:.2f},{hi:.2f}] {'*' * r['stars']:<3} {r['verdict']}"
            parts.append(f"{text:<{width}}")
        lines.append(f"{name}   " + "".join(parts))
    lines.append("")
    lines.append("metrics: " + "; ".join(f"{cap.CAPABILITIES[t]} {cap.METRIC_TITLES[m]}"
                                         for t, m in cap.HEADLINE.items()))
    others = [r for r in summary["rows"] if not r["headline"]]
    if others:
        lines.append("")
        lines.append("other measurements (objective, method, metric: value [95% interval]):")
        order = list(cap.CAPABILITIES)
        for r in sorted(others, key=_other_order(order)):
            lo, hi = r["ci95"]
            lines.append(f"  {r['capability']} {r['objective']:<8} {r['method']:<24} "
                         f"{r['metric']:<19} {r['value']:.3f} [{lo:.3f}, {hi:.3f}]")
    floor = summary["floor"]["entropy_per_document"]
    if floor is not None:
        lines.append(f"  (the world's entropy: {floor:.3f} nats per document: the mean nll of "
                     "the world's own samples)")
    if summary["compute"]:
        lines.append("")
        lines.append("pre-training, per word of the world's text read (计算开销大?):")
        for objective, c in summary["compute"].items():
            lines.append(f"  {objective:<8} {c['params']:>9,} parameters  "
                         f"{c['flops_per_token'] / 1e6:6.2f} MFLOP  "
                         f"{c['seconds_per_1k_tokens'] * 1000:6.1f} µs  "
                         f"final loss {c['loss']:.3f}")
        lines.append("  (FLOPs of the matrix products, counted from the shapes, ×3 for the "
                     "backward pass. A T5 decoder reads only the short targets of span "
                     "corruption; BART's rebuilds the whole text)")
    return "\n".join(lines)


def _other_order(tasks):
    def key(row):
        return (tasks.index(row["task"]), row["metric"], row["objective"], row["method"])
    return key


# ----------------------------------------------------------------------------------------------
# The command


def build_parser():
    parser = argparse.ArgumentParser(
        prog="minillm compare",
        description="Measure the tutorial's capability table (训练目标决定模型能力): pre-train "
        "a GPT, a BERT and an encoder-decoder with the same number of parameters on the same "
        "text of the built-in world, adapt each to five tasks with exact answers, and print "
        "each cell's score with a 95% interval beside the tutorial's stars.")
    parser.add_argument("--budget", choices=sorted(BUDGETS), default="quick",
                        help="quick: under 5 minutes on 2 cores, noisy numbers; full: under 45 "
                        "minutes; tiny: seconds, for the tests (default: quick)")
    parser.add_argument("--seq2seq", choices=("t5", "bart"), default="t5",
                        help="the encoder-decoder's pre-training: T5's span corruption or "
                        "BART's text infilling (default: t5)")
    parser.add_argument("--seeds", type=int, default=None,
                        help="seeds (default: the budget's, 3)")
    parser.add_argument("--jobs", type=int, default=None,
                        help="models trained at a time, each in its own process (default: the "
                        "number of CPUs this process may use)")
    parser.add_argument("--json", metavar="FILE", default=None,
                        help="also write the table as JSON to FILE")
    return parser


def main(argv=None):
    """-> exit status: 0 done, 2 a bad option, 130 interrupted (what finished is printed)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit:
        return int(exit.code or 0)
    problem = check_run_options(args)
    if problem is not None:
        print(f"minillm compare: error: {problem}", file=sys.stderr)
        return 2
    budget = BUDGETS[args.budget]
    if args.seeds is not None:
        budget = replace(budget, seeds=args.seeds)
    jobs = args.jobs or len(os.sched_getaffinity(0))
    results, status = {}, 0
    log = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
    try:
        run(budget, args.seq2seq, log=log, results=results, jobs=jobs)
    except KeyboardInterrupt:
        log(f"compare: interrupted; {len(results.get('jobs', {}))} of "
            f"{3 * budget.seeds} models finished, kept below")
        status = 130
    summary = summarize(results, budget, args.seq2seq, args.budget)
    print(format_table(summary))
    if args.json is not None:
        from .safetensors import write_json

        write_json(args.json, summary)
    return status
