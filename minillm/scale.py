"""``python -m minillm scale``: 规模很重要 (the tutorial's 🔑 5), measured against a source whose
entropy is known; and GPT-3's in-context learning.

    python -m minillm scale [--budget quick|full|tiny] [--source world|grammar] [--jobs N]
                            [--points FILE] [--fresh] [--plot FILE] [--json FILE]

Scaling-law studies (Kaplan et al. 2020; Hoffmann et al. 2022, "Chinchilla") train models of
many sizes N on many token budgets D and fit

    L(N)    = E + A·N^(−α)                  (at the largest D)
    L(N, D) = E + A·N^(−α) + B·D^(−β)       (Chinchilla's form)

to the held-out loss. They must *fit* E, the irreducible loss, because nobody knows the entropy
of web text. minillm's sources know theirs exactly (world.py, grammar.py: the entropy per token
is a sum over the source's automaton), so here each fit is made twice, with E free and with E
fixed to the true floor, and the fitted E is printed beside the truth.

1. **The sweep.** GPTs of ``budget.sizes`` (n_layer, n_embd, n_head), each trained on each of
   ``budget.tokens`` (D, the tokens predicted in training: words and [EOS]) documents drawn
   fresh from the source (every size reads the same stream; a smaller D reads its beginning),
   with AdamW at one learning rate for every size (warm-up over the first tenth, cosine decay
   to a tenth: the schedule ends at D, as Chinchilla's does). N counts the non-embedding
   parameters (Kaplan et al.: the laws are cleaner without the embedding tables); compute is
   C ≈ 6·N·D FLOPs (Kaplan et al.'s estimate: 2·N multiply-adds forward per token, twice that
   backward).
2. **The held-out loss**, in nats per token, on ``budget.eval_documents`` documents drawn
   fresh from the source (the same ones for every model): Σ −log q(w_t | w_<t) / Σ tokens, the
   first term after [BOS] and the [EOS] term included. Its floor is the source's entropy per
   token; its reducible part L − floor is the KL divergence from the source, measured on the
   same documents by subtracting their true −log P (which removes the sampling noise the two
   share).
3. **The fits** (scaling_law.py), the **compute-optimal frontier** (for each compute level,
   the best N measured and the fit's prediction), the capability probes of the world against
   size (samples from [BOS] inside the world's support; blanks filled by the whole passage's
   likelihood, GPT-3's cloze scoring; capabilities.py scores both), and a log-log plot of the
   reducible loss against N and against D (in the terminal; as an image with ``--plot FILE``
   when matplotlib is installed: ``pip install 'minillm[plot]'``).
4. **In-context learning** (icl.py): GPTs of ``budget.icl_sizes`` pre-trained on the world's
   documents mixed with lists of word-task demonstrations, then asked k-shot questions for
   k = 0, 1, 2, 4, 8 with no parameter update; and each head's induction score, on Olsson et
   al.'s repeated random words and at the query of the label task's prompts.

Every finished model is written at once to the points file (``--points``, by default in the
user's cache folder) and reused by a rerun with the same settings: a Ctrl-C loses only the
models still training. ``--fresh`` starts over.
"""

from __future__ import annotations

import argparse
import functools
import io
import math
import os
import sys
from dataclasses import asdict, dataclass

import numpy as np

from . import capabilities as cap
from . import icl
from . import scaling_law as law
from .compare import fit
from .jobs import Progress, Weighted, run_jobs
from .layers import IGNORE_INDEX, cross_entropy_forward
from .models import GPTConfig, MODELS, gpt_forward
from .objectives import clm
from .task_formats import GPTFormat, Vocabulary
from .tokenizer import Tokenizer

# ----------------------------------------------------------------------------------------------
# Budgets


@dataclass(frozen=True)
class Budget:
    """The sizes of one sweep. ``sizes`` are (n_layer, n_embd, n_head); ``tokens`` the training
    budgets D (tokens predicted); the in-context-learning models train on ``icl_tokens``."""

    sizes: tuple
    tokens: tuple
    icl_sizes: tuple
    icl_tokens: int
    batch_size: int = 32  # documents per step
    lr: float = 3e-3  # one learning rate for every size
    eval_documents: int = 4000  # held-out documents (about 59k tokens of the world)
    probe_items: int = 200  # blanks, and samples, per model of the largest budget
    icl_items: int = 200  # k-shot questions per k
    induction_sequences: int = 20  # repeated random sequences per model
    seed: int = 0


BUDGETS = {
    # 6 sizes spanning 43x in non-embedding parameters, 4 budgets spanning 8x.
    "quick": Budget(sizes=((1, 8, 2), (2, 8, 2), (1, 16, 2), (2, 16, 2), (2, 24, 4),
                           (3, 32, 4)),
                    tokens=(100_000, 200_000, 400_000, 800_000),
                    icl_sizes=((1, 16, 2), (2, 32, 2)), icl_tokens=400_000,
                    eval_documents=2000, probe_items=100, icl_items=100),
    # 9 sizes spanning 225x, 5 budgets spanning 16x.
    "full": Budget(sizes=((1, 8, 2), (2, 8, 2), (1, 16, 2), (2, 16, 2), (2, 24, 4),
                          (2, 32, 4), (4, 32, 4), (4, 48, 4), (4, 64, 4)),
                   tokens=(250_000, 500_000, 1_000_000, 2_000_000, 4_000_000),
                   icl_sizes=((1, 16, 2), (2, 32, 2), (2, 64, 2), (4, 64, 4)),
                   icl_tokens=4_000_000),
}
# For the tests: seconds, and numbers that mean nothing.
BUDGETS["tiny"] = Budget(sizes=((1, 8, 2), (1, 16, 2), (2, 16, 2), (2, 24, 4)),
                         tokens=(2_000, 3_000, 4_000), icl_sizes=((2, 16, 2),),
                         icl_tokens=2_000,
                         batch_size=8, eval_documents=40, probe_items=4, icl_items=8,
                         induction_sequences=2)


# ----------------------------------------------------------------------------------------------
# Sources: documents, their true probability, and the floor


class Source:
    """A built-in source as the sweep needs it: ``sample(rng, n)`` -> n documents (tuples of
    words) drawn with their true probabilities; ``log_prob(words)`` the true log P(document),
    [EOS] included; ``floor`` the entropy in nats per token (words and [EOS]); ``words`` the
    lexicon; ``max_words``."""

    def __init__(self, name):
        self.name = name
        if name == "world":
            from .world import WORDS, default_world

            self.model = default_world()
            self.words = WORDS
            self.floor = self.model.entropy_per_token()
            self.max_words = self.model.max_words()
        elif name == "grammar":
            from .grammar import default_grammar

            self.model = default_grammar()
            self.words = self.model.words
            self.floor = self.model.entropy_per_token()
            self.max_words = max(len(s) for s in self.model.support())
        else:
            raise ValueError(f"source must be 'world' or 'grammar', got {name!r}")
        self.tokenizer = Tokenizer(sorted(self.words), n_sentinels=0)

    def sample(self, rng, n):
        return [tuple(doc.words) for doc in self.model.sample(rng, n)]

    def log_prob(self, words):
        if self.name == "world":
            return self.model.log_prob(words)
        return math.log(self.model.sentence_probability(words))

    def ids(self, documents):
        return [[self.tokenizer.id_of[w] for w in words] for words in documents]


def gpt_config(size, vocab_size, n_ctx):
    n_layer, n_embd, n_head = size
    return GPTConfig(vocab_size=vocab_size, n_ctx=n_ctx, n_embd=n_embd, n_head=n_head,
                     n_layer=n_layer)


def non_embedding_params(cfg):
    """N: the parameters of the blocks and the final layer norm, without the token and position
    tables (Kaplan et al. 2020's N). About 12·n_layer·n_embd² (4C² attention, 8C² MLP)."""
    shapes = MODELS["gpt"].param_shapes(cfg)
    return sum(int(np.prod(shape)) for name, shape in shapes.items()
               if name not in ("wte", "wpe"))


def training_compute(n_params, tokens):
    """C ≈ 6·N·D FLOPs (Kaplan et al. 2020, section 2.1): per token, 2N forward and 4N
    backward, the attention scores and the embedding left out."""
    return law.FLOPS_PER_PARAMETER_TOKEN * n_params * tokens


# ----------------------------------------------------------------------------------------------
# One model: train, then measure


EVAL_SEED, PROBE_SEED = 2026, 11  # the held-out documents and the probes: the same for all
# What a point means: bump it when the code that trains or measures a model changes what it
# computes (a points file's models are reused only under the same number).
METHOD = 1
ICL_METHOD = 2  # the same for the in-context models (2: the label prompts' induction scores)


def train_gpt(cfg, documents_of, tokens, key, counter, expected_tokens):
    """A fresh GPT trained on ``tokens`` tokens of documents from ``documents_of(rng, n)``
    (lists of ids), by compare.fit (AdamW at key["lr"], warm-up over the first tenth, cosine
    decay to lr / 10): ``steps`` = tokens / (batch_size · expected tokens per document).
    ``counter.add`` gets each step's expected work. -> (params, {"tokens": tokens predicted,
    "steps", "seconds", "train_loss"})."""
    batch_size, seed = key["batch_size"], key["seed"]
    steps = max(1, round(tokens / (batch_size * expected_tokens)))
    params = MODELS["gpt"].init(cfg, np.random.default_rng([seed, 0]))
    data_rng = np.random.default_rng([seed, 1])  # the same stream for every size

    def next_batch():
        batch = clm.make_batch(documents_of(data_rng, batch_size))
        return batch, int((batch["targets"] != IGNORE_INDEX).sum())

    step_work = batch_size * expected_tokens * _work_per_token(cfg)
    record = fit(params, cfg, "clm", next_batch, steps, key["lr"], seed,
                 Weighted(counter, step_work))
    return params, {"tokens": record["text_tokens"], "steps": steps,
                    "seconds": record["seconds"], "train_loss": record["loss"]}


def document_nll(params, cfg, documents, batch_size=256):
    """−log q(document) for each document (lists of ids): the sum over its tokens after
    [BOS], [EOS] included -> (nll (n,), tokens (n,))."""
    nll, counts = [], []
    for i in range(0, len(documents), batch_size):
        batch = clm.make_batch(documents[i:i + batch_size])
        logits, _ = gpt_forward(params, cfg, batch["inputs"], batch["attention_mask"])
        _, ce = cross_entropy_forward(logits, batch["targets"])
        nll.extend(-ce["logp_target"].sum(axis=1))  # (B,): 0 at padding
        counts.extend((batch["targets"] != IGNORE_INDEX).sum(axis=1))
    return np.array(nll, dtype=np.float64), np.array(counts, dtype=np.float64)


def per_token(nll, counts):
    """Σ nll / Σ tokens, and its standard error as a ratio of two means (the delta method:
    residuals r_d = nll_d − loss·tokens_d, se = sqrt(Σ r² / (n (n−1))) / mean tokens)."""
    loss = nll.sum() / counts.sum()
    residual = nll - loss * counts
    se = math.sqrt((residual ** 2).sum() / (len(nll) * (len(nll) - 1))) / counts.mean()
    return float(loss), float(se)


def held_out(params, cfg, source, n_documents):
    """The held-out loss and its reducible part, on the same documents for every model:
    {"loss", "loss_se" (nats per token), "reducible" (loss − the same documents' true
    −log P per token: an estimate of KL(source ‖ model) per token), "reducible_se"}."""
    documents = source.sample(np.random.default_rng(EVAL_SEED), n_documents)
    nll, counts = document_nll(params, cfg, source.ids(documents))
    true_nll = np.array([-source.log_prob(d) for d in documents])
    loss, se = per_token(nll, counts)
    reducible, reducible_se = per_token(nll - true_nll, counts)
    return {"loss": loss, "loss_se": se, "reducible": reducible, "reducible_se": reducible_se}


def probes(params, cfg, source, n):
    """The world's capability probes, without fine-tuning: the fraction of samples from [BOS]
    the world can produce, and of blanks filled with the posterior's most probable word by
    the whole passage's likelihood (GPT-3's cloze scoring)."""
    vocab = Vocabulary(source.tokenizer)
    form = GPTFormat(vocab, cfg)
    # Two generators: sampling draws as many numbers as the model writes tokens, so the blanks
    # drawn from the same generator afterwards would differ from model to model.
    samples = form.generate(params, n, np.random.default_rng([PROBE_SEED, 0]))
    in_support = np.mean([s["in_support"] for s in cap.score_samples(source.model, samples)])
    items = cap.make_examples("comprehension", source.model,
                              np.random.default_rng([PROBE_SEED, 1]), n, "test", cfg.n_ctx)
    candidates = np.array(sorted(source.tokenizer.id_of[w] for w in source.words))
    answers = form.blanks_whole_passage(params, items, candidates)
    accuracy = np.mean([cap.score("comprehension", ex, a)["accuracy"]
                        for ex, a in zip(items, answers)])
    return {"in_support": float(in_support), "blank_accuracy": float(accuracy)}


def _work_per_token(cfg):
    """Progress weights: about the FLOPs of training on one token (6 per weight, the output
    layer included)."""
    return 6 * (non_embedding_params(cfg) + cfg.n_embd * cfg.vocab_size)


def run_point(key, counter):
    """One model of the sweep (key: a dict of settings, see ``job_keys``) -> its point:
    {"n_params", "tokens", "compute", "loss", "loss_se", "reducible", "reducible_se",
    "train_loss", "steps", "seconds", and the probes for the world's largest budget}."""
    source = Source(key["source"])
    cfg = gpt_config(key["size"], len(source.tokenizer), source.max_words + 1)
    expected = source.model.expected_tokens() if source.name == "world" else \
        source.model.mean_tokens()

    def documents_of(rng, n):
        return source.ids(source.sample(rng, n))

    params, record = train_gpt(cfg, documents_of, key["tokens"], key, counter, expected)
    n_params = non_embedding_params(cfg)
    point = {"n_params": n_params, "tokens": record["tokens"],
             "compute": training_compute(n_params, record["tokens"]),
             **held_out(params, cfg, source, key["eval_documents"]), **record}
    if key["probe_items"]:
        point.update(probes(params, cfg, source, key["probe_items"]))
    return point


def run_icl_point(key, counter):
    """One model of the in-context-learning sweep -> {"n_params", "tokens", "accuracy": {k:
    accuracy}, "per_task": {k: {task: accuracy}}, "induction": (L, H) scores, "baseline"}."""
    vocab = icl.vocabulary()
    cfg = gpt_config(key["size"], len(vocab.tokenizer), icl.context_needed())

    def documents_of(rng, n):
        return [vocab.ids(words) for words in icl.corpus_documents(rng, n)]

    expected = icl.expected_document_tokens()
    params, record = train_gpt(cfg, documents_of, key["tokens"], key, counter, expected)
    rng = np.random.default_rng(PROBE_SEED)
    accuracy, per_task = {}, {}
    for k in icl.KS:
        items = icl.k_shot_items(rng, k, key["icl_items"])
        accuracy[str(k)], per_task[str(k)] = icl.k_shot_accuracy(params, cfg, vocab, items)
    scores, baseline = icl.induction_table(params, cfg, vocab, rng, key["induction_sequences"])
    in_format, in_format_baseline = icl.label_induction_table(params, cfg, vocab, rng,
                                                              key["icl_items"])
    return {"n_params": non_embedding_params(cfg), **record, "accuracy": accuracy,
            "per_task": per_task, "induction": np.asarray(scores).tolist(),
            "baseline": float(baseline), "label_induction": np.asarray(in_format).tolist(),
            "label_baseline": in_format_baseline}


def _run(args, counter):
    kind, key = args
    return (run_point if kind == "sweep" else run_icl_point)(key, counter)


def job_keys(budget, source):
    """Every model of a run as (kind, key): the key holds every setting that shapes that
    model's result and nothing else, so that a points file's entry is reused exactly by a run
    that would compute the same (another budget that shares a model reuses it too)."""
    training = {"method": METHOD, "seed": budget.seed, "batch_size": budget.batch_size,
                "lr": budget.lr}
    jobs = [("sweep", {**training, "source": source, "size": list(size), "tokens": tokens,
                       "eval_documents": budget.eval_documents,
                       "probe_items": budget.probe_items if source == "world" and
                       tokens == max(budget.tokens) else 0})
            for size in budget.sizes for tokens in budget.tokens]
    corpus = {"p_list": icl.P_LIST, "p_repeat": icl.P_REPEAT, "max_pairs": icl.MAX_PAIRS,
              "max_labelled": icl.MAX_LABELLED}  # what the in-context corpus is made of
    jobs += [("icl", {**training, "method": ICL_METHOD, "size": list(size),
                      "tokens": budget.icl_tokens,
                      "icl_items": budget.icl_items, "corpus": corpus,
                      "induction_sequences": budget.induction_sequences})
             for size in budget.icl_sizes]
    return jobs


@functools.lru_cache(maxsize=None)
def _vocab_size(kind, source):
    """V of a sweep model on ``source``, or of an in-context model (built once: a tokenizer)."""
    return len(Source(source).tokenizer if kind == "sweep" else icl.vocabulary().tokenizer)


def _expected_work(kind, key):
    vocab_size = _vocab_size(kind, key.get("source"))
    return key["tokens"] * _work_per_token(gpt_config(key["size"], vocab_size, 1))


# ----------------------------------------------------------------------------------------------
# The points file: what finished, kept across runs

POINTS_FORMAT = "minillm scale points, version 1"
MAX_POINTS_BYTES = 2_000_000  # a full run's file is about 40 kB


def default_points_path(source, budget_name):
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(cache, "minillm", f"scale-{source}-{budget_name}.json")


def read_points(path, wanted=()):
    """[(kind, key, point)] from a points file; [] when there is none. ValueError (one line,
    naming the file) when it is not one minillm wrote, or when an entry of ``wanted`` (a list
    of (kind, key), the models this run would reuse) is not a finished model. Other entries
    (another budget's, or an older METHOD's) are kept as they are."""
    from .files import read_json

    if not os.path.exists(path):
        return []
    data = read_json(path, "--points", MAX_POINTS_BYTES)
    entries = data.get("entries") if isinstance(data, dict) else None
    if not isinstance(data, dict) or data.get("format") != POINTS_FORMAT or \
            not isinstance(entries, list):
        raise ValueError(f"--points {path!r} is not a points file of minillm scale (delete it "
                         "or pass --fresh)")
    out = []
    for i, entry in enumerate(entries):
        if not (isinstance(entry, dict) and entry.get("kind") in ("sweep", "icl")
                and isinstance(entry.get("key"), dict) and isinstance(entry.get("point"), dict)
                and ((entry["kind"], entry["key"]) not in wanted
                     or _is_finished(entry["kind"], entry["key"], entry["point"]))):
            raise ValueError(f"--points {path!r}: entry {i} is not a finished model (delete the "
                             "file or pass --fresh)")
        out.append((entry["kind"], entry["key"], entry["point"]))
    return out


# What a finished model's point holds: field -> (type, lowest, highest). A loss is at most
# MAX_LOSS nats per token (an untrained model's is about ln V < 10).
MAX_LOSS = 1e3
_COUNT = (int, 1, 10 ** 15)
_LOSS = (float, 0.0, MAX_LOSS)
_SIGNED_LOSS = (float, -MAX_LOSS, MAX_LOSS)  # the reducible part: noise may make it negative
_FRACTION = (float, 0.0, 1.0)
SWEEP_FIELDS = {"n_params": _COUNT, "tokens": _COUNT, "steps": _COUNT, "compute": (float, 1, 1e30),
                "loss": _LOSS, "loss_se": _LOSS, "reducible": _SIGNED_LOSS,
                "reducible_se": _LOSS, "train_loss": _LOSS, "seconds": (float, 0.0, 1e9)}
PROBE_FIELDS = {"in_support": _FRACTION, "blank_accuracy": _FRACTION}
ICL_FIELDS = {"n_params": _COUNT, "tokens": _COUNT, "steps": _COUNT, "train_loss": _LOSS,
              "seconds": (float, 0.0, 1e9), "baseline": _FRACTION, "label_baseline": _FRACTION}


def _is_number(value, kind, low, high):
    """An int (kind int) or an int or float (kind float), not a bool, within [low, high]."""
    kinds = (int,) if kind is int else (int, float)
    return isinstance(value, kinds) and not isinstance(value, bool) and low <= value <= high


def _is_finished(kind, key, point):
    """True when ``point`` holds every number a finished model of ``kind`` has, each of its type
    and within its range (so that the summary and the report can use them as they are)."""
    fields = SWEEP_FIELDS if kind == "sweep" else ICL_FIELDS
    if key.get("probe_items"):
        fields = {**fields, **PROBE_FIELDS}
    if not all(name in point and _is_number(point[name], *fields[name]) for name in fields):
        return False
    if kind == "sweep":
        return True
    size = key.get("size")
    if not (isinstance(size, list) and len(size) == 3 and all(_is_number(v, *_COUNT)
                                                              for v in size)):
        return False
    accuracy = point.get("accuracy")
    return (isinstance(accuracy, dict) and set(accuracy) == {str(k) for k in icl.KS}
            and all(_is_number(a, *_FRACTION) for a in accuracy.values())
            and isinstance(point.get("per_task"), dict)
            and all(_is_head_table(point.get(name), size) for name in ("induction",
                                                                      "label_induction")))


def _is_head_table(table, size):
    """A list of n_layer rows of n_head fractions (size = [n_layer, n_embd, n_head])."""
    return (isinstance(table, list) and len(table) == size[0]
            and all(isinstance(row, list) and len(row) == size[2]
                    and all(_is_number(v, *_FRACTION) for v in row) for row in table))


def write_points(path, entries):
    """Crash-safe, as every file minillm writes (safetensors.write_json)."""
    from .safetensors import write_json

    data = {"format": POINTS_FORMAT,
            "entries": [{"kind": kind, "key": key, "point": point}
                        for kind, key, point in entries]}
    write_json(path, data, indent=None)


# ----------------------------------------------------------------------------------------------
# The run


def run(budget, source="world", jobs=1, log=print, points_path=None, kept=()):
    """Every model of the run, ``jobs`` at a time (jobs.run_jobs), skipping those in ``kept``
    (entries of a points file). Returns [(kind, key, point)] for every finished model, also
    after a Ctrl-C (KeyboardInterrupt is re-raised with ``.entries`` set), and writes each new
    one to ``points_path`` as it finishes."""
    wanted = job_keys(budget, source)
    entries, others = [], []  # this run's finished models; those of other runs, kept as read
    for kind, key, point in kept:
        if (kind, key) not in wanted:
            others.append((kind, key, point))
        elif all((kind, key) != (k, v) for k, v, _ in entries):  # a repeated entry: the first
            entries.append((kind, key, point))
    done = [(kind, key) for kind, key, _ in entries]
    todo = [job for job in wanted if job not in done]
    todo.sort(key=lambda job: -_expected_work(*job))  # the longest first: the pool ends together
    if entries:
        log(f"scale: {len(entries)} models reused from {points_path}; {len(todo)} to train")
    total = sum(_expected_work(*job) for job in todo) or 1
    progress = Progress(total, log, "scale")
    try:
        for (kind, key), point in run_jobs(_run, todo, min(jobs, len(todo)), progress):
            entries.append((kind, key, point))
            if points_path is not None:
                write_points(points_path, others + entries)
            what = f"{kind} {size_name(key['size'])} on {key['tokens']:,} tokens"
            progress.poll(f"{what} done")
    except KeyboardInterrupt as interrupt:
        interrupt.entries = entries
        raise
    return entries


# ----------------------------------------------------------------------------------------------
# The summary


def summarize(entries, budget, source_name, budget_name=None):
    """Everything measured, as JSON: {"points", "fit" (Chinchilla's form, E free), "fits" (all
    four), "floor", "frontier", "icl", "settings"}."""
    source = Source(source_name)
    points = sorted((dict(p, size=key["size"], budget_tokens=key["tokens"])
                     for kind, key, p in entries if kind == "sweep"),
                    key=lambda p: (p["n_params"], p["tokens"]))
    fits = {}
    largest = [p for p in points if p["budget_tokens"] == max(budget.tokens)]
    for name, rows, form in (("L(N)", largest, "power"), ("L(N, D)", points, "chinchilla")):
        for fixed in (False, True):
            label = f"{name}, E {'= floor' if fixed else 'free'}"
            try:
                fits[label] = _fit(rows, form, source.floor if fixed else None).to_dict()
            except ValueError as err:  # too few points (an interrupted run)
                fits[label] = {"error": str(err)}
    free = fits.get("L(N, D), E free", {})
    fixed = fits.get("L(N, D), E = floor", {})
    frontier = law.frontier(points, _allocating(free)) if points else []
    fit_fixed = _allocating(fixed)
    for level in frontier:
        if fit_fixed is not None:
            level["predicted_n_e_fixed"] = law.optimal_n(fit_fixed, level["compute"])
    icl_rows = sorted((dict(p, size=key["size"]) for kind, key, p in entries if kind == "icl"),
                      key=lambda p: p["n_params"])
    return {"points": points,
            "fit": free.get("params") if "params" in free else None,
            "fits": fits, "floor": source.floor, "frontier": frontier,
            "icl": {"rows": icl_rows, "bayes": {str(k): icl.bayes_accuracy(k) for k in icl.KS},
                    "threshold": icl.INDUCTION_THRESHOLD},
            "settings": {"budget": budget_name, "source": source_name, **asdict(budget)}}


def _fit(rows, form, E):
    n = np.array([p["n_params"] for p in rows], dtype=np.float64)
    loss = np.array([p["loss"] for p in rows], dtype=np.float64)
    if form == "power":
        return law.fit_power_law(n, loss, E=E)
    d = np.array([p["tokens"] for p in rows], dtype=np.float64)
    return law.fit_chinchilla(n, d, loss, E=E)


def _allocating(fit_dict):
    """A Fit back from its dict, when it has a compute-optimal allocation (A > 0 and B > 0,
    scaling_law.optimal_n); None when the fit failed or has none (a term that grows with N or
    D, as a fit to noise may end)."""
    if not fit_dict or "params" not in fit_dict:
        return None
    if not (fit_dict["params"]["A"] > 0 and fit_dict["params"]["B"] > 0):
        return None
    return law.Fit(**fit_dict)


# ----------------------------------------------------------------------------------------------
# Printing


def format_report(summary):
    lines = []
    settings = summary["settings"]
    if settings.get("budget") == "tiny":
        lines.append("(--budget tiny: a smoke test; its numbers mean nothing)")
    floor = summary["floor"]
    points = summary["points"]
    lines.append(f"held-out loss, nats per token (source: {settings['source']}; its entropy, "
                 f"the floor: {floor:.4f}); in brackets the reducible part ± its standard error: "
                 "the loss less the same documents' true −log P per token, an estimate of "
                 "KL(source ‖ model) per token (loss − floor, without the held-out documents' "
                 "own sampling noise)")
    budgets = sorted({p["budget_tokens"] for p in points})
    lines.append(f"{'size (L×C)':>11} {'N':>8}" + "".join(f"{f'D={d:,}':>25}"
                                                         for d in budgets))
    for size in settings["sizes"]:
        row = [p for p in points if p["size"] == list(size)]
        if not row:
            continue
        cells = {p["budget_tokens"]: p for p in row}
        text = "".join(f"{_cell(cells.get(d)):>25}" for d in budgets)
        lines.append(f"{size_name(size):>11} {row[0]['n_params']:>8,}{text}")
    lines.append("")
    lines.append("fits (least squares on the loss; ± one standard error, linearized):")
    for label, fit in summary["fits"].items():
        lines.append(f"  {label:<20} {_format_fit(fit, floor)}")
    lines.append("")
    frontier = summary["frontier"]
    if frontier:
        lines.append("compute-optimal frontier (C = 6·N·D, Kaplan's count: the output layer's "
                     "6·width·V per token is left out, a large share for the smallest models; "
                     "points within a factor √2 of a power of 2 are one level):")
        lines.append(f"  {'C (FLOPs)':>10} {'best N measured':>16} {'its loss':>9} "
                     f"{'N_opt, E free':>14} {'N_opt, E = floor':>17}")
        for level in frontier:
            lines.append(f"  {level['compute']:>10.2e} {level['best_n']:>16,.0f} "
                         f"{level['best_loss']:>9.4f} {_maybe(level.get('predicted_n')):>14} "
                         f"{_maybe(level.get('predicted_n_e_fixed')):>17}")
        lines.append("")
    probed = [p for p in points if "in_support" in p]
    if probed:
        lines.append(f"the world's capabilities against size (D = {probed[0]['tokens']:,}; "
                     "no fine-tuning; the true source scores 1.00 on both):")
        lines.append(f"  {'N':>8} {'samples in support':>19} {'blanks right':>13}")
        for p in probed:
            lines.append(f"  {p['n_params']:>8,} {p['in_support']:>19.2f} "
                         f"{p['blank_accuracy']:>13.2f}")
        lines.append("")
    lines.extend(plot_lines(points, floor, settings))
    lines.extend(icl_lines(summary["icl"]))
    return "\n".join(lines)


def size_name(size):
    """(n_layer, n_embd, n_head) -> "L×C", as the tables print a size."""
    return f"{size[0]}×{size[1]}"


def _cell(p):
    if p is None:
        return "(not run)"
    return f"{p['loss']:.4f} [{p['reducible']:.4f}±{p['reducible_se']:.4f}]"


def _maybe(n):
    """A predicted N as a whole number; "-" where there is none, or where a fit that means
    nothing predicts less than one parameter."""
    return "-" if n is None or n < 1 else f"{n:,.0f}"


def _format_fit(fit, floor):
    if "error" in fit:
        return f"(no fit: {fit['error']})"
    params, se = fit["params"], fit["se"]
    parts = []
    for name in ("E", "A", "alpha", "B", "beta"):
        if name not in params:
            continue
        err = f"±{se[name]:.3g}" if name in se else " (fixed)"
        parts.append(f"{name} = {params[name]:.4g}{err}")
    text = ", ".join(parts)
    if "E" in se:
        text += f"   [true floor {floor:.4f}: fitted E − floor = {params['E'] - floor:+.4f}"
        text += "; E undetermined: its standard error exceeds it]" if se["E"] > abs(
            params["E"]) else "]"
    return text


SYMBOLS = "123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"  # one per budget, or per size, in a text plot


def plot_lines(points, floor, settings):
    """Two log-log scatter plots in text: the reducible loss against N (a symbol per budget D)
    and against D (a symbol per size)."""
    shown = [p for p in points if p["reducible"] > 0]
    if len(shown) < 2:
        return []
    budgets = sorted(settings["tokens"])
    sizes = [list(s) for s in settings["sizes"]]
    y = [p["reducible"] for p in shown]
    by_budget = [SYMBOLS[budgets.index(p["budget_tokens"])] for p in shown]
    by_size = [SYMBOLS[sizes.index(p["size"])] for p in shown]
    title = "log-log: the reducible loss (nats per token, the bracketed numbers) against"
    return (text_plot([p["n_params"] for p in shown], y, by_budget,
                      f"{title} N (non-embedding parameters); " +
                      ", ".join(f"{SYMBOLS[i]}: D={d:,}" for i, d in enumerate(budgets))) +
            text_plot([p["tokens"] for p in shown], y, by_size,
                      f"{title} D (training tokens); " +
                      ", ".join(f"{SYMBOLS[i]}: {size_name(s)}" for i, s in enumerate(sizes))))


def text_plot(x, y, symbols, title, width=56, height=14):
    """Points (x, y) > 0 on log-log axes as lines of text, each drawn as its symbol ("*" where
    points of different symbols fall on one character)."""
    x, y = np.log10(x), np.log10(y)
    x_span, y_span = max(np.ptp(x), 1e-12), max(np.ptp(y), 1e-12)
    grid = [[" "] * width for _ in range(height)]
    for xi, yi, symbol in zip(x, y, symbols):
        row = int(round((y.max() - yi) / y_span * (height - 1)))
        col = int(round((xi - x.min()) / x_span * (width - 1)))
        grid[row][col] = symbol if grid[row][col] in (" ", symbol) else "*"
    lines = [title + " (*: several)"]
    for r, cells in enumerate(grid):
        value = 10 ** (y.max() - r * y_span / (height - 1))
        lines.append((f"{value:8.4f} |" if r in (0, height - 1) else " " * 9 + "|") +
                     "".join(cells))
    lines.append(" " * 9 + "+" + "-" * width)
    lines.append(" " * 10 + f"{10 ** x.min():<,.0f}".ljust(width - 12) +
                 f"{10 ** x.max():>12,.0f}")
    lines.append("")
    return lines


def icl_lines(icl_summary):
    rows = icl_summary["rows"]
    if not rows:
        return []
    ks = list(icl_summary["bayes"])
    header = f"  {'size':>6} {'N':>8} " + "".join(f"{f'k={k}':>8}" for k in ks)
    lines = ["in-context learning (GPT-3): k-shot accuracy, no parameter update; each model "
             "pre-trained on the world's documents mixed with demonstration lists (icl.py)",
             header]
    for r in rows:
        lines.append(f"  {size_name(r['size']):>6} {r['n_params']:>8,} " +
                     "".join(f"{r['accuracy'][k]:>8.2f}" for k in ks))
    lines.append(f"  {'best possible':>15} " +
                 "".join(f"{icl_summary['bayes'][k]:>8.2f}" for k in ks))
    lines.append("")
    lines.append(f"the label task alone (its answers exist only in the prompt; chance "
                 f"{1 / len(icl.LABELS):.2f} at k=0, best possible 1.00 after):")
    lines.append(header)
    for r in rows:
        lines.append(f"  {size_name(r['size']):>6} {r['n_params']:>8,} " +
                     "".join(f"{r['per_task'][k][icl.LABEL]:>8.2f}" for k in ks))
    lines.append("")
    lines.append(f"induction heads: a head's attention from a token to the token after its "
                 f"previous occurrence (≥ {icl_summary['threshold']} counts as one), on "
                 f"repeated random words (Olsson et al. 2022) and at the query of "
                 f"{icl.LABEL_K}-shot label prompts (the weight on the answer):")
    for r in rows:
        parts = []
        for name, baseline, where in (("induction", "baseline", "random repeats"),
                                      ("label_induction", "label_baseline", "label prompts")):
            scores = np.array(r[name])
            found = [f"{layer}.{head} ({scores[layer, head]:.2f})"
                     for layer, head in zip(*np.nonzero(scores >= icl_summary["threshold"]))]
            parts.append(f"{where}: best {scores.max():.2f} (uniform {r[baseline]:.2f}), "
                         f"{'heads ' + ', '.join(found) if found else 'none'}")
        lines.append(f"  {size_name(r['size']):>6}: " + "; ".join(parts))
    lines.append("  (a head is named layer.head, from 0)")
    return lines


def write_plot(path, summary):
    """The two log-log plots as an image (matplotlib, an optional extra)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points, settings = summary["points"], summary["settings"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    for d in sorted(settings["tokens"]):
        row = [p for p in points if p["budget_tokens"] == d and p["reducible"] > 0]
        axes[0].loglog([p["n_params"] for p in row], [p["reducible"] for p in row], "o-",
                       label=f"D = {d:,}")
    for size in settings["sizes"]:
        row = [p for p in points if p["size"] == list(size) and p["reducible"] > 0]
        axes[1].loglog([p["tokens"] for p in row], [p["reducible"] for p in row], "o-",
                       label=f"{size[0]}×{size[1]}")
    axes[0].set_xlabel("N, non-embedding parameters")
    axes[1].set_xlabel("D, training tokens")
    from matplotlib.ticker import NullFormatter

    for ax in axes:
        ax.set_ylabel("reducible loss (nats/token)")
        ax.xaxis.set_minor_formatter(NullFormatter())  # only the powers of ten, readable
        ax.legend(fontsize=7)
    fig.suptitle(f"minillm scale ({settings['source']}): held-out loss − the same documents' "
                 f"true −log P (the floor: {summary['floor']:.4f} nats/token)")
    fig.tight_layout()
    image = io.BytesIO()
    fig.savefig(image, format=os.path.splitext(path)[1][1:].lower())
    plt.close(fig)
    from .safetensors import write_atomically

    write_atomically(path, [image.getvalue()])  # crash-safe, as every file minillm writes


# ----------------------------------------------------------------------------------------------
# The command


def build_parser():
    parser = argparse.ArgumentParser(
        prog="minillm scale",
        description="规模很重要: train GPTs over a sweep of sizes and token budgets on a "
        "built-in source whose entropy is known, fit the scaling laws L(N) and L(N, D) with "
        "the irreducible loss free and fixed to the true floor, and measure GPT-3's "
        "in-context learning (k-shot accuracy, induction heads) against size.")
    parser.add_argument("--budget", choices=sorted(BUDGETS), default="quick",
                        help="quick: under 2 minutes on 2 cores; full: about 25 minutes; "
                        "tiny: seconds, for the tests (default: quick)")
    parser.add_argument("--source", choices=("world", "grammar"), default="world",
                        help="the text the sweep trains on (default: world; the in-context "
                        "learning models always read the world)")
    parser.add_argument("--jobs", type=int, default=None,
                        help="models trained at a time, each in its own process (default: the "
                        "number of CPUs this process may use)")
    parser.add_argument("--points", metavar="FILE", default=None,
                        help="where finished models' numbers are kept and reused by a rerun "
                        "(default: scale-<source>-<budget>.json in ~/.cache/minillm)")
    parser.add_argument("--fresh", action="store_true",
                        help="ignore the points file's models and train everything again")
    parser.add_argument("--plot", metavar="FILE", default=None,
                        help="also draw the log-log plots to FILE (PNG, PDF or SVG by its "
                        "ending; needs matplotlib: pip install 'minillm[plot]')")
    parser.add_argument("--json", metavar="FILE", default=None,
                        help="also write every point and fit as JSON to FILE")
    return parser


PLOT_FORMATS = (".png", ".pdf", ".svg")  # the plot's file formats, by the file's ending


def _error(message):
    print(f"minillm scale: error: {message}", file=sys.stderr)
    return 2


def main(argv=None):
    """-> exit status: 0 done, 2 a bad option or file, 130 interrupted (what finished is kept
    and printed)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit:
        return int(exit.code or 0)
    if args.jobs is not None and args.jobs < 1:
        return _error(f"--jobs must be at least 1, got {args.jobs}")
    budget = BUDGETS[args.budget]
    points_path = args.points or default_points_path(args.source, args.budget)
    from .safetensors import check_writable

    if args.points is None:
        try:
            os.makedirs(os.path.dirname(points_path), exist_ok=True)
        except OSError as err:
            return _error(f"cannot make the folder of the points file: {err} (pass --points)")
    if args.plot is not None and os.path.splitext(args.plot)[1].lower() not in PLOT_FORMATS:
        return _error(f"--plot {args.plot!r}: its ending "
                      f"{os.path.splitext(args.plot)[1]!r} is none of {', '.join(PLOT_FORMATS)}")
    outputs = [(flag, path) for flag, path in (("--points", points_path), ("--json", args.json),
                                               ("--plot", args.plot)) if path is not None]
    for i, (flag, path) in enumerate(outputs):
        for other, other_path in outputs[:i]:
            if os.path.realpath(path) == os.path.realpath(other_path):
                return _error(f"{flag} and {other} name the same file {path!r}")
    for flag, path in outputs:
        try:
            check_writable(path)
        except (ValueError, OSError) as err:
            return _error(f"{flag}: {err}")
    if args.plot is not None:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            return _error("--plot needs matplotlib: pip install 'minillm[plot]' (or matplotlib)")
    try:
        kept = [] if args.fresh else read_points(points_path, job_keys(budget, args.source))
    except (ValueError, OSError) as err:
        return _error(str(err))
    jobs = args.jobs or len(os.sched_getaffinity(0))
    log = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
    status = 0
    try:
        entries = run(budget, args.source, jobs, log, points_path, kept)
    except KeyboardInterrupt as interrupt:
        entries = getattr(interrupt, "entries", [])
        log(f"scale: interrupted; {len(entries)} models finished, kept in {points_path} and "
            "shown below (rerun to go on)")
        status = 130
    summary = summarize(entries, budget, args.source, args.budget)
    print(format_report(summary))
    if args.json is not None:
        from .safetensors import write_json

        write_json(args.json, summary)
    if args.plot is not None:
        write_plot(args.plot, summary)
    return status
