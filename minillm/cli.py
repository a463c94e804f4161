"""The command line: ``python -m minillm [command] [options]``.

    (no command)   the demo: train tiny models and answer the tutorial's examples
    train          train a GPT on the built-in grammar or on your own text file
    generate       continue a prompt with a trained GPT
    score          the tutorial's formula on one text: log P(w_t | w_<t) step by step
    fill           fill the [MASK] of a text with a trained BERT
    seq2seq        turn one text into another with a trained encoder-decoder
    export         write a trained model as a Hugging Face folder (GPT-2, BERT or BART)
    import         read such a folder back into a minillm checkpoint
    bench          training-step speed against the machine's own matmul floor (bench.py)

A user error (a bad option, a missing file, a malformed input) prints one line starting with
``minillm: error:`` and exits with status 2; there is no traceback.
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import sys

from . import interrupt

DEFAULT_CHECKPOINT = os.path.join("runs", "gpt.safetensors")
DEFAULT_BERT = os.path.join("runs", "bert.safetensors")
# Where ``train`` writes, by model family, unless --out says otherwise.
DEFAULT_OUT = {"gpt": DEFAULT_CHECKPOINT, "bert": DEFAULT_BERT,
               "seq2seq": os.path.join("runs", "seq2seq.safetensors")}
OBJECTIVES = ("clm", "mlm", "span", "t5", "bart", "tasks", "mix")
DEFAULT_SEQ2SEQ = DEFAULT_OUT["seq2seq"]


class UserError(Exception):
    """An error in what the user asked for: printed as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UserError(f"{message} (see '{self.prog} --help')")


def _integer_at_least(low, name):
    """An argparse type: an integer >= low, refused in the words of ``name``."""
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {name}, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"expected {name}, got {text!r}")
        return value
    return parse


_positive_int = _integer_at_least(1, "a positive integer")
_non_negative_int = _integer_at_least(0, "an integer >= 0")


def _non_negative_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}")
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text!r}")
    return value


def build_parser():
    parser = _Parser(
        prog="minillm",
        description="Pre-training objectives of large language models on tiny Transformers "
        "written by hand in NumPy. With no command, runs the demo (under 15 seconds): it "
        "trains a tiny GPT, a BERT and an encoder-decoder on the built-in grammar and answers "
        "the tutorial's three examples, 今天天气很好，我们去 -> 公园, 今天[MASK]很好 -> 天气 and "
        "总结：... -> 今天我们去公园玩了。, beside the true probabilities and answers.",
    )
    sub = parser.add_subparsers(dest="command", metavar="command", parser_class=_Parser)

    sub.add_parser("demo", help="run the demo (the same as no command)",
                   description="Train a tiny GPT, a BERT and an encoder-decoder on the "
                   "built-in grammar and print the tutorial's three examples with the models' "
                   "and the true probabilities; the three models are left in runs/.")

    t = sub.add_parser(
        "train", help="train a model with one of the tutorial's objectives",
        description="Train a model with one of the tutorial's objectives: clm, next-token "
        "prediction for a GPT, L = -Σ log P(w_i | w_<i); mlm, BERT's masked language modeling "
        "(15% of the words, 80/10/10); span, masked LM with SpanBERT's span masking; t5, "
        "bart, tasks and mix train an encoder-decoder with T5's span corruption, BART's text "
        "infilling, the grammar's text-to-text tasks (总结/翻译/问), or tasks and span "
        "corruption together (T5's unified framework). The "
        "data is the built-in grammar unless --data names a UTF-8 text file (one document "
        "per line). Progress lines show the loss in nats per token (and, for clm on the "
        "grammar, the entropy floor). The checkpoint (a safetensors file) is written to --out.",
    )
    # The settings a checkpoint stores have no argparse default (None): --resume must tell an
    # option the user gave from one left out. TRAIN_DEFAULTS fills them in afterwards.
    t.add_argument("--objective", choices=OBJECTIVES,
                   help="clm (GPT); mlm, span (BERT); t5, bart, tasks, mix (encoder-decoder) "
                   "(default clm)")
    t.add_argument("--masking", choices=("dynamic", "static"),
                   help="mlm/span: a new mask every time a sentence is seen (RoBERTa) or one "
                   "mask per sentence for the whole run (BERT; needs --pool) (default dynamic)")
    t.add_argument("--nsp", action="store_true", default=None,
                   help="mlm: also train next-sentence prediction, on two-sentence documents "
                   "of the grammar ([CLS] A [SEP] B [SEP], B random half of the time)")
    t.add_argument("--pool", type=_non_negative_int, metavar="N",
                   help="grammar data: train on a fixed pool of N sentences instead of fresh "
                   "ones every step (default 0: fresh)")
    t.add_argument("--data", metavar="FILE",
                   help="a UTF-8 text file, one document per line (default: the built-in "
                   "grammar); the vocabulary is built from its characters and frequent "
                   "character pairs. Not with tasks, mix or --nsp, which need the grammar")
    t.add_argument("--out", default=None, metavar="FILE",
                   help=f"checkpoint to write (default: {DEFAULT_CHECKPOINT} for clm, "
                   f"{DEFAULT_BERT} for mlm and span, {DEFAULT_SEQ2SEQ} for the others)")
    t.add_argument("--resume", action="store_true",
                   help="continue the run whose checkpoint is at --out, with the settings "
                   "stored in it (give --data again if it trained on a file)")
    t.add_argument("--steps", type=_positive_int, help="optimizer steps (default 300)")
    t.add_argument("--batch-size", type=_positive_int,
                   help="sequences per step (default 32)")
    t.add_argument("--lr", type=_non_negative_float,
                   help="peak learning rate after warm-up (default 3e-3)")
    t.add_argument("--seed", type=_non_negative_int,
                   help="seed for parameters and data, an integer >= 0 (default 0)")
    t.add_argument("--n-layer", type=_positive_int, help="blocks (default 2)")
    t.add_argument("--n-embd", type=_positive_int, help="model width C (default 64)")
    t.add_argument("--n-head", type=_positive_int,
                   help="attention heads; must divide --n-embd (default 4)")
    t.add_argument("--n-ctx", type=_positive_int,
                   help="longest sequence in tokens, special tokens included (default 32)")
    t.add_argument("--dtype", choices=("float32", "float64"),
                   help="parameter dtype (default float32)")
    t.add_argument("--log-every", type=_positive_int,
                   help="steps between progress lines (default 25)")
    t.add_argument("--checkpoint-every", type=_positive_int, default=100,
                   help="steps between checkpoints (default 100; always at the end)")

    g = sub.add_parser(
        "generate", help="continue a prompt with a trained GPT",
        description="Continue PROMPT with the GPT in --checkpoint (made by 'minillm train'). "
        "Sampling: --temperature 0 is greedy; --top-k and --top-p restrict the draw to the "
        "most probable tokens.",
    )
    g.add_argument("prompt", nargs="?", default="", help="text to continue (default: empty)")
    g.add_argument("--checkpoint", default=DEFAULT_CHECKPOINT, metavar="FILE",
                   help=f"a checkpoint written by 'minillm train' (default: {DEFAULT_CHECKPOINT})")
    g.add_argument("--max-new-tokens", type=_positive_int, default=20,
                   help="most tokens to add (default 20)")
    g.add_argument("--temperature", type=_non_negative_float, default=1.0,
                   help="softmax temperature; 0 means greedy (default 1.0)")
    g.add_argument("--top-k", type=_positive_int, default=None,
                   help="sample only from the k most probable tokens")
    g.add_argument("--top-p", type=_non_negative_float, default=None,
                   help="sample only from the smallest set of tokens with this much mass, in (0, 1]")
    g.add_argument("--samples", type=_positive_int, default=1, help="how many continuations (default 1)")
    g.add_argument("--seed", type=_non_negative_int, default=0,
                   help="seed for sampling, an integer >= 0 (default 0)")

    sc = sub.add_parser(
        "score", help="the chain rule on one text: each log P(w_t | w_<t), their sum, the loss",
        description="Score TEXT with the GPT in --checkpoint, term by term: P(文本) = P(w_1) "
        "P(w_2|w_1) ... and L = -Σ log P(w_t | w_<t). [BOS] stands before w_1, so P(w_1) is a "
        "real term; [EOS] after the last word is the probability that the text ends there. "
        "When the model was trained on the built-in grammar, the true probabilities are shown "
        "beside the model's.",
    )
    sc.add_argument("text", help="the text to score, e.g. 今天天气很好，我们去公园玩。")
    sc.add_argument("--checkpoint", default=DEFAULT_CHECKPOINT, metavar="FILE",
                    help=f"a checkpoint written by 'minillm train' (default: {DEFAULT_CHECKPOINT})")

    f = sub.add_parser(
        "fill", help="fill the [MASK] of a text with a trained BERT",
        description="Predict the word at each [MASK] of TEXT with the BERT in --checkpoint "
        "(made by the demo or by 'minillm train --objective mlm'). The encoder reads the whole "
        "text, both sides of the [MASK]. When the model was trained on the built-in grammar, the "
        "true probabilities are shown beside the model's.",
    )
    f.add_argument("text", help="text with one or more [MASK], e.g. 今天[MASK]很好")
    f.add_argument("--checkpoint", default=DEFAULT_BERT, metavar="FILE",
                   help=f"a BERT checkpoint (default: {DEFAULT_BERT})")
    f.add_argument("--top", type=_positive_int, default=5, help="how many words to show (default 5)")

    q = sub.add_parser(
        "seq2seq", help="turn one text into another with a trained encoder-decoder",
        description="Run the encoder-decoder in --checkpoint (made by the demo or by 'minillm "
        "train --objective tasks') on TEXT: the encoder reads it once, the decoder writes the "
        "output token by token with a key/value cache, greedily or by beam search.",
    )
    q.add_argument("text", help="e.g. 总结：今天天气很好，我们去公园玩。 or 翻译：... or 问：...")
    q.add_argument("--checkpoint", default=DEFAULT_SEQ2SEQ, metavar="FILE",
                   help=f"an encoder-decoder checkpoint (default: {DEFAULT_SEQ2SEQ})")
    q.add_argument("--beam", type=_positive_int, default=1,
                   help="beam width; 1 is greedy decoding (default 1)")
    q.add_argument("--length-penalty", type=_non_negative_float, default=1.0,
                   help="rank finished beams by log P / length^this (default 1.0)")

    e = sub.add_parser(
        "export", help="write a trained model as a Hugging Face folder",
        description="Write the model in CHECKPOINT as a Hugging Face folder: config.json and "
        "model.safetensors in the layout of GPT-2 (from a GPT), BERT (from a BERT) or BART (from "
        "an encoder-decoder), which transformers' from_pretrained loads; plus minillm_vocab.json, "
        "the vocabulary, so that 'minillm import' can read the folder back.",
    )
    e.add_argument("checkpoint", help="a checkpoint written by 'minillm train' or the demo")
    e.add_argument("folder", help="the folder to write (created if needed)")
    e.add_argument("--to", choices=("hf",), default="hf", help="the format (only hf)")

    i = sub.add_parser(
        "import", help="read a folder written by 'minillm export' into a checkpoint",
        description="Read FOLDER (config.json, model.safetensors and minillm_vocab.json, as "
        "written by 'minillm export') into a minillm checkpoint with fresh optimizer state.",
    )
    i.add_argument("folder", help="a folder written by 'minillm export'")
    i.add_argument("checkpoint", help="the checkpoint to write")

    # `bench` has its own parser (minillm/bench.py); main() hands its arguments over before
    # this parser sees them. It is listed here so that --help shows it.
    sub.add_parser("bench", add_help=False,
                   help="measure training steps against the machine's matmul floor "
                   "(python -m minillm bench --help)")
    return parser


def _read_checkpoint(path, flag):
    """load_checkpoint, with a file that is not a valid checkpoint named by the option that
    gave it, and the reason: a malformed safetensors file, or the field at fault."""
    from .checkpoint import load_checkpoint

    if os.path.isdir(path):
        raise UserError(f"{flag} {path!r} is a directory, not a checkpoint file")
    try:
        return load_checkpoint(path)
    except ValueError as err:  # SafetensorsError and CheckpointError are ValueErrors
        reason = str(err).removeprefix(f"{path}: ")
        raise UserError(f"{flag} {path!r} is not a valid minillm checkpoint: {reason}") from None


def _load(path, model="gpt"):
    """A checkpoint of the given model family, or a clear error saying how to make one."""
    how = {"gpt": "python -m minillm train",
           "bert": "python -m minillm (the demo) or python -m minillm train --objective mlm",
           "seq2seq": "python -m minillm (the demo) or python -m minillm train --objective tasks"}
    if not os.path.exists(path):
        raise UserError(f"--checkpoint {path!r} does not exist; train one first with: {how[model]}")
    loaded = _read_checkpoint(path, "--checkpoint")
    kind = type(loaded[0]).__name__
    expected = {"gpt": "GPTConfig", "bert": "BertConfig", "seq2seq": "Seq2SeqConfig"}[model]
    if kind != expected:
        raise UserError(f"--checkpoint {path!r} holds a {kind[:-6]} model, not a "
                        f"{expected[:-6]} model")
    return loaded


def _check_input_fits(model, model_cfg, state, batch, T, what):
    """Refuse, before the forward pass, an input whose activations would not fit in memory
    (a long text on a model with a long context)."""
    from .memory import check_fits, forward_backward_bytes

    itemsize = state["params"]["wte"].dtype.itemsize
    check_fits(forward_backward_bytes(model, model_cfg, batch, T, itemsize), what)


def _refuse_mask(text, name):
    if "[MASK]" in text:
        raise UserError(f"{name} {text!r} holds [MASK], which a GPT never learned (it predicts "
                        "the next word); fill a [MASK] with: python -m minillm fill")


def cmd_fill(args):
    from .generate import fill_mask_distributions
    from .grammar import default_grammar
    from .tokenizer import CLS_ID, MASK_ID, SEP_ID

    model_cfg, _, tokenizer, state = _load(args.checkpoint, "bert")
    ids = [CLS_ID, *tokenizer.encode(args.text), SEP_ID]
    if MASK_ID not in ids:
        raise UserError(f"text {args.text!r} has no [MASK] to fill")
    if len(ids) > model_cfg.n_ctx:
        raise UserError(f"text of {len(ids) - 2} tokens is longer than the model's context")
    _check_input_fits("bert", model_cfg, state, 1, len(ids), f"a text of {len(ids) - 2} tokens")
    grammar = default_grammar()
    truth = tokenizer.vocab == grammar.tokenizer().vocab
    words = tokenizer.tokenize(args.text)
    for position, probs in fill_mask_distributions(state["params"], model_cfg, ids):
        true = {}
        if truth and words.count("[MASK]") == 1:
            try:
                true = grammar.masked_word_distribution(words)
            except ValueError:
                true = {}
        print(f"[MASK] as word {position} of {''.join(words)}:")
        from .demo import print_table, top_words_table

        print_table(top_words_table(tokenizer, probs, true, k=args.top), label="word")


def cmd_score(args):
    import math

    from .grammar import END, default_grammar
    from .objectives import clm
    from .tokenizer import pad

    model_cfg, _, tokenizer, state = _load(args.checkpoint)
    _refuse_mask(args.text, "text")
    if not args.text:
        raise UserError("text must not be empty")
    ids = tokenizer.encode(args.text)
    if len(ids) + 1 > model_cfg.n_ctx:
        raise UserError(f"text of {len(ids)} tokens (+[EOS]) is longer than the model's "
                        f"n_ctx={model_cfg.n_ctx}")
    _check_input_fits("gpt", model_cfg, state, 1, len(ids) + 1, f"a text of {len(ids)} tokens")
    total, per_step = clm.log_prob(state["params"], model_cfg, ids, add_eos=True)
    grammar = default_grammar()
    truth = tokenizer.vocab == grammar.tokenizer().vocab
    words = [tokenizer.vocab[i] for i in ids] + ["[EOS]"]
    print(f"{'t':>3}  {'w_t':<8}{'model P(w_t | w_<t)':>22}" + (f"{'true P':>10}" if truth else ""))
    for t, (word, lp) in enumerate(zip(words, per_step), 1):
        line = f"{t:>3}  {pad(word, 8)}{math.exp(lp):>22.4f}"
        if truth:
            try:
                p = grammar.next_word_distribution(words[: t - 1]).get(
                    END if word == "[EOS]" else word, 0.0)
            except ValueError:
                p = 0.0
            line += f"{p:>10.4f}"
        print(line)
    print(f"log P(文本) = Σ log P(w_t | w_<t) = {total:.4f}   P(文本) = {math.exp(total):.4g}")
    print(f"L = -Σ log P(w_t | w_<t) = {-total:.4f} nats over {len(per_step)} tokens "
          f"({-total / len(per_step):.4f} per token)")
    if truth:
        print(f"the grammar's true P(文本) = {grammar.sentence_probability(args.text):.4g}")


def cmd_seq2seq(args):
    from .generate import seq2seq_beam_search
    from .tokenizer import EOS_ID

    model_cfg, _, tokenizer, state = _load(args.checkpoint, "seq2seq")
    if not args.text:
        raise UserError("text must not be empty")
    ids = [*tokenizer.encode(args.text), EOS_ID]
    if len(ids) > model_cfg.n_ctx:
        raise UserError(f"text of {len(ids)} tokens (with [EOS]) is longer than the model's "
                        f"n_ctx={model_cfg.n_ctx}")
    # Each live beam keeps a decoder cache of up to n_ctx tokens.
    _check_input_fits("seq2seq", model_cfg, state, args.beam, model_cfg.n_ctx,
                      f"--beam {args.beam}, decoding up to the model's n_ctx={model_cfg.n_ctx} "
                      "tokens,")
    out, score = seq2seq_beam_search(state["params"], model_cfg, ids, beam_width=args.beam,
                                     length_penalty=args.length_penalty)
    print(tokenizer.decode(out, skip_special=True))


VOCAB_FILE = "minillm_vocab.json"
# The largest vocabulary file import reads: every character of Unicode and 200 pairs fit in
# a few MB.
MAX_VOCAB_FILE_BYTES = 64 << 20


def _make_folder(folder, what):
    """Create ``folder`` (and its parents) if needed; an error names ``what`` it is."""
    if not folder:
        return
    try:
        os.makedirs(folder, exist_ok=True)
    except (OSError, RecursionError) as err:  # a file in the way, no permission, too deep
        reason = getattr(err, "strerror", None) or "the path is too deep"
        raise UserError(f"{what} {folder!r} cannot be made: {reason}") from None


def cmd_export(args):
    import json

    from . import hf, safetensors
    from .models import MODELS
    from .objectives import get_objective
    from .tokenizer import BOS_ID, EOS_ID, PAD_ID

    if not os.path.exists(args.checkpoint):
        raise UserError(f"checkpoint {args.checkpoint!r} does not exist")
    if not args.folder.strip():
        raise UserError("folder is empty: name the folder to write")
    model_cfg, train_cfg, tokenizer, state = _read_checkpoint(args.checkpoint, "checkpoint")
    arch = MODELS[get_objective(train_cfg.objective).MODEL].hf_arch
    model = hf.from_minillm(arch, model_cfg, state["params"],
                            special={"pad": PAD_ID, "bos": BOS_ID, "eos": EOS_ID})
    tensors = hf.float32_tensors(model)  # refused here if float32 cannot hold them
    # The folder and its three files are checked before any is written: each a new name or a
    # regular file (a FIFO, a device or a folder in their place is refused, not replaced).
    _make_folder(args.folder, "folder")
    for name in ("config.json", "model.safetensors", VOCAB_FILE):
        safetensors.check_writable(os.path.join(args.folder, name))
    hf.save(model, args.folder, tensors)
    text = json.dumps(tokenizer.to_dict(), ensure_ascii=False, indent=1)
    safetensors.write_atomically(os.path.join(args.folder, VOCAB_FILE), [text.encode("utf-8")])
    folder = args.folder.rstrip(os.sep) or args.folder
    print(f"wrote {arch} to {folder}{os.sep} (config.json, model.safetensors, {VOCAB_FILE})")


def cmd_import(args):
    import numpy as np

    from . import hf
    from .checkpoint import save_checkpoint, tokenizer_from_description
    from .files import read_json
    from .optim import adamw_init
    from .train import TrainConfig

    vocab = os.path.join(args.folder, VOCAB_FILE)
    if not os.path.exists(os.path.join(args.folder, "config.json")):
        what = "is not a folder" if not os.path.isdir(args.folder) else "has no config.json"
        raise UserError(f"folder {args.folder!r} {what}")
    if not os.path.exists(vocab):
        raise UserError(f"folder {args.folder!r} has no {VOCAB_FILE}: import reads folders "
                        "written by 'minillm export'")
    model = hf.load(args.folder)  # every tensor checked against config.json first
    description = read_json(vocab, "the vocabulary file", MAX_VOCAB_FILE_BYTES)
    tokenizer = tokenizer_from_description(description, model.cfg.vocab_size, vocab,
                                           "the vocabulary")
    objective = {"gpt2": "clm", "bert": "mlm", "bart": "tasks"}[model.arch]
    params = {k: v.astype(np.float32) for k, v in model.params.items()}
    state = {"params": params, "opt": adamw_init(params), "step": 0, "history": [],
             "data_rng": np.random.default_rng([0, 1])}
    save_checkpoint(args.checkpoint, model.cfg, TrainConfig(objective=objective), tokenizer, state)
    print(f"wrote {args.checkpoint} ({model.arch} as a minillm {objective} model)")


# train's options that a checkpoint stores, where, and their defaults for a fresh run. --resume
# keeps the stored values and refuses any of these options given with another value.
STORED_SETTINGS = {
    "objective": ("train", "clm"), "steps": ("train", 300), "batch_size": ("train", 32),
    "lr": ("train", 3e-3), "seed": ("train", 0), "dtype": ("train", "float32"),
    "log_every": ("train", 25), "masking": ("train", "dynamic"), "pool": ("train", 0),
    "nsp": ("train", False),
    "n_layer": ("model", 2), "n_embd": ("model", 64), "n_head": ("model", 4),
    "n_ctx": ("model", 32),
}


def _given_settings(args):
    """The stored settings the user gave on the command line (argparse leaves the others None)."""
    return {name for name in STORED_SETTINGS if getattr(args, name) is not None}


def _fill_defaults(args):
    for name, (_, default) in STORED_SETTINGS.items():
        if getattr(args, name) is None:
            setattr(args, name, default)


def _check_resume_options(args, given, out, model_cfg, train_cfg, state, source):
    """--resume continues a run with the settings stored in its checkpoint: an option given
    with another value is an error, whether or not that value is the default (it would be
    silently ignored), and the data must be the data the run started on, byte for byte
    (``source``: the path and SHA-256 of the --data file given now, or None)."""
    for name in sorted(given, key=list(STORED_SETTINGS).index):
        where = STORED_SETTINGS[name][0]
        stored = getattr(train_cfg if where == "train" else model_cfg, name)
        if getattr(args, name) != stored:
            flag = "--" + name.replace("_", "-")
            raise UserError(f"--resume continues {out!r} with its stored settings ({flag} "
                            f"{stored}); {flag} {getattr(args, name)} cannot change them: "
                            "train afresh with another --out instead")
    data = state["data"]
    if data is None and args.data is not None:
        raise UserError(f"--resume: {out!r} was trained on the built-in grammar, not on --data "
                        f"{args.data!r}")
    if data is not None and args.data is None:
        raise UserError(f"--resume: {out!r} was trained on the text file {data['path']!r}: give "
                        f"it again with --data")
    if data is not None and source["sha256"] != data["sha256"]:
        raise UserError(f"--resume: --data {args.data!r} is not the file {out!r} was trained "
                        f"on (its SHA-256 differs from the stored {data['sha256'][:12]}...): "
                        "give the same file, unchanged")


def _check_memory(model_cfg, train_cfg, objective, where):
    """Refuse, before anything is allocated, a run that could not fit in memory; ``where`` says
    whether the sizes come from the command line or from a checkpoint."""
    from .memory import POOL_BYTES_PER_SENTENCE, check_fits, training_step_bytes

    itemsize = 8 if train_cfg.dtype == "float64" else 4
    need = training_step_bytes(objective.MODEL, model_cfg, train_cfg.batch_size, itemsize)
    if where == "options":
        what = (f"training with --batch-size {train_cfg.batch_size}, --n-ctx {model_cfg.n_ctx}, "
                f"--n-embd {model_cfg.n_embd} and --n-layer {model_cfg.n_layer}")
    else:
        what = (f"{where}: training with its batch_size {train_cfg.batch_size}, n_ctx "
                f"{model_cfg.n_ctx}, n_embd {model_cfg.n_embd} and n_layer {model_cfg.n_layer}")
    check_fits(need, what)
    if train_cfg.pool:
        check_fits(train_cfg.pool * POOL_BYTES_PER_SENTENCE,
                   f"--pool {train_cfg.pool}" if where == "options" else f"{where}: its pool "
                   f"of {train_cfg.pool} sentences")


def _resume_command(out, data):
    command = f"python -m minillm train --resume --out {shlex.quote(out)}"
    return command + (f" --data {shlex.quote(data)}" if data is not None else "")


def _flag_setting(name, value):
    """An option as train's command line writes it (``--nsp``, ``--pool 2000``): the rules of
    TrainConfig and of the model configs (OptionError) are reported in these words."""
    flag = "--" + name.replace("_", "-")
    return flag if value is True else f"{flag} {shlex.quote(str(value))}"


def _configs_from_options(args, objective):
    """A fresh run's TrainConfig and model config, built before anything slow, so that a broken
    rule between options (an OptionError) comes first, in train's flags. The model's vocab_size
    is 1 until the data is read."""
    from .models import MODELS
    from .options import OptionError
    from .train import TrainConfig, packed_length

    shape = dict(n_ctx=args.n_ctx, n_embd=args.n_embd, n_head=args.n_head, n_layer=args.n_layer)
    if objective.MODEL == "seq2seq":
        shape["n_dec_layer"] = args.n_layer  # as many decoder blocks as encoder blocks
    try:
        train_cfg = TrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                                min_lr=args.lr / 10, seed=args.seed, dtype=args.dtype,
                                log_every=args.log_every, objective=args.objective,
                                masking=args.masking, pool=args.pool, nsp=args.nsp)
        train_cfg.check_data(args.data)
        model_cfg = MODELS[objective.MODEL].config(vocab_size=1, **shape)
        packed_length(train_cfg, model_cfg.n_ctx)  # t5 and mix: n_ctx within the sentinels
    except OptionError as err:
        raise UserError(err.render(_flag_setting)) from None
    return train_cfg, model_cfg


def cmd_train(args, threads=None):
    import dataclasses

    from . import safetensors
    from .objectives import get_objective
    from .tokenizer import Tokenizer
    from .train import TASK_OBJECTIVES, TrainingInterrupted, make_data, train

    given = _given_settings(args)
    _fill_defaults(args)
    for flag, value in (("--out", args.out), ("--data", args.data)):
        if value is not None and not value.strip():
            raise UserError(f"{flag} is empty: name a file")
    objective = get_objective(args.objective)
    out = args.out or DEFAULT_OUT[objective.MODEL]
    if not args.resume:  # every rule on the options is checked before the data is read
        train_cfg, model_cfg = _configs_from_options(args, objective)
    documents = source = None
    if args.data is not None:
        from .corpus import read_corpus_file

        from .corpus import CORPUS_BYTES_PER_BYTE, MAX_CORPUS_BYTES
        from .memory import check_fits

        try:
            size = os.stat(args.data).st_size
        except OSError as err:
            raise UserError(f"--data: corpus file {args.data!r}: {err.strerror}") from None
        if size <= MAX_CORPUS_BYTES:  # a larger file is refused by read_corpus_file
            check_fits(size * CORPUS_BYTES_PER_BYTE, f"reading --data {args.data!r} "
                       f"({size:,} bytes)")
        try:
            documents, sha256 = read_corpus_file(args.data)
        except ValueError as err:
            raise UserError(f"--data: {err}") from None
        source = {"path": args.data, "sha256": sha256}
    if args.resume:
        if not os.path.exists(out):
            raise UserError(f"--resume: no checkpoint at --out {out!r}")
        model_cfg, train_cfg, tokenizer, state = _read_checkpoint(out, "--out")
        _check_resume_options(args, given, out, model_cfg, train_cfg, state, source)
        objective = get_objective(train_cfg.objective)
        _check_memory(model_cfg, train_cfg, objective, f"--out {out!r}")
        print(f"resuming from {out} at step {state['step']} of {train_cfg.steps}", flush=True)
    else:
        if documents is not None:
            tokenizer = Tokenizer.from_text("\n".join(documents))
        else:
            from .grammar import default_grammar

            tokenizer = default_grammar().tokenizer()
        model_cfg = dataclasses.replace(model_cfg, vocab_size=len(tokenizer))
        _check_memory(model_cfg, train_cfg, objective, "options")
        state = None
    # Everything about --out is checked now, not after the training: the folder exists (or is
    # made) and takes a new file, and --out is a file or a new name (a symlink is followed).
    _make_folder(os.path.dirname(out), f"--out {out!r}: its folder")
    safetensors.check_writable(out)
    data = make_data(train_cfg, model_cfg, tokenizer, documents, name=args.data, source=source)
    try:
        state = train(model_cfg, train_cfg, data, tokenizer, state=state, checkpoint=out,
                      checkpoint_every=args.checkpoint_every, log=lambda s: print(s, flush=True),
                      threads=threads)
    except TrainingInterrupted as err:  # main() prints how to resume: the command, pasteable
        err.resume = _resume_command(out, source["path"] if source else None)
        raise
    print(f"checkpoint written to {out}")
    if train_cfg.nsp:
        import numpy as np

        from .objectives.mlm import nsp_accuracy

        held_out = np.random.default_rng([train_cfg.seed, 3])  # not the training draws
        accuracy = nsp_accuracy(state["params"], model_cfg, data, tokenizer, train_cfg, held_out)
        print(f"next-sentence prediction: {accuracy:.0%} of 400 held-out pairs right "
              "(chance: 50%)")
    if objective.MODEL == "gpt":
        print(f"try: python -m minillm generate --checkpoint {shlex.quote(out)} \"今天\"")
    elif objective.MODEL == "bert":
        print(f"try: python -m minillm fill --checkpoint {shlex.quote(out)} \"今天[MASK]很好\"")
    elif train_cfg.objective in TASK_OBJECTIVES:
        print(f"try: python -m minillm seq2seq --checkpoint {shlex.quote(out)} \"总结：今天天气很好，我们去公园玩。\"")
    elif train_cfg.objective == "t5":  # it learned span corruption, not the tasks
        print(f"try: python -m minillm seq2seq --checkpoint {shlex.quote(out)} \"今天<extra_id_0>很好，"
              "我们去公园玩。今天我们去图书馆看书了。周末天气不好，我们去商店买东西。"
              "明天天气不错，小明<extra_id_1>\" (it prints the missing words; walkthrough.md, T5, "
              "says why the text is long)")
    else:  # bart: it learned to rewrite corrupted text whole
        print(f"try: python -m minillm seq2seq --checkpoint {shlex.quote(out)} \"今天[MASK]很好，我们去公园玩。\"")


def cmd_generate(args):
    import numpy as np

    from .generate import generate

    if args.top_p is not None and not 0 < args.top_p <= 1:
        raise UserError(f"--top-p must be in (0, 1], got {args.top_p}")
    model_cfg, _, tokenizer, state = _load(args.checkpoint)
    _refuse_mask(args.prompt, "prompt")
    prompt_ids = tokenizer.encode(args.prompt)
    if len(prompt_ids) + 1 >= model_cfg.n_ctx:
        raise UserError(f"prompt of {len(prompt_ids)} tokens leaves no room in the model's "
                        f"context of n_ctx={model_cfg.n_ctx}")
    longest = min(model_cfg.n_ctx, len(prompt_ids) + 1 + args.max_new_tokens)
    _check_input_fits("gpt", model_cfg, state, 1, longest, f"generating up to {longest} tokens")
    rng = np.random.default_rng(args.seed)
    for _ in range(args.samples):
        new = generate(state["params"], model_cfg, prompt_ids, args.max_new_tokens, rng,
                       temperature=args.temperature, top_k=args.top_k, top_p=args.top_p)
        print(args.prompt + tokenizer.decode(new, skip_special=True))


def main(argv=None):
    """Run one command; -> the exit status (0 done, 1 training stopped on a NaN, 2 a user
    error, 130 interrupted by Ctrl-C)."""
    argv = sys.argv[1:] if argv is None else argv
    try:
        return _run(argv)
    except KeyboardInterrupt:
        print("minillm: interrupted", file=sys.stderr)
        return 130
    except Exception:
        if interrupt.interrupted:  # NumPy's import turns a Ctrl-C inside it into an ImportError
            print("minillm: interrupted", file=sys.stderr)
            return 130
        raise


def _run(argv):
    from .train import NonFiniteError, TrainingInterrupted

    if interrupt.interrupted:  # a Ctrl-C during NumPy's import, whose C code can clear it
        raise KeyboardInterrupt

    if argv[:1] == ["bench"]:
        from .bench import main as bench_main

        return bench_main(argv[1:])
    parser = build_parser()
    try:
        args, extra = parser.parse_known_args(argv)
        if extra:  # named here, so that the hint names the command's own --help
            where = f"minillm {args.command}" if args.command else "minillm"
            raise UserError(f"unrecognized arguments: {' '.join(extra)} (see '{where} --help')")
        from . import blas
        from .allocator import keep_freed_memory

        if args.command in (None, "demo", "train"):
            keep_freed_memory()  # each training step reuses the last one's memory (allocator.py)
        if args.command in (None, "demo"):
            from .demo import run_demo

            run_demo(threads=blas.adaptive_threads)
        elif args.command == "train":
            cmd_train(args, threads=blas.adaptive_threads())
        elif args.command in ("generate", "score", "fill", "seq2seq"):
            blas.use_one_thread()  # one input at a time: a second thread would not pay
            _run_model(args)
        elif args.command == "export":
            cmd_export(args)
        elif args.command == "import":
            cmd_import(args)
    except TrainingInterrupted as err:
        print(f"minillm: {err}", file=sys.stderr)
        if err.checkpoint:
            resume = getattr(err, "resume", None) or \
                f"python -m minillm train --resume --out {shlex.quote(err.checkpoint)}"
            print(f"minillm: resume with: {resume}", file=sys.stderr)
        return 130
    except NonFiniteError as err:
        print(f"minillm: error: {err}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        # The reader of the output went away (as ``| head`` does): stop quietly. stdout is
        # pointed at devnull so that Python's own flush at exit does not complain again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except (UserError, ValueError, OSError) as err:
        print(f"minillm: error: {err}", file=sys.stderr)
        return 2
    except MemoryError:  # what the estimates before a run (memory.py) did not foresee
        print(f"minillm: error: out of memory running '{argv[0] if argv else 'demo'}': use smaller "
              "sizes (--batch-size, --n-ctx, --n-embd, a shorter text or --data file)",
              file=sys.stderr)
        return 2
    except RecursionError:  # a path or a file nested beyond what Python's recursion allows
        print("minillm: error: an input is nested too deeply to read (a path or a file)",
              file=sys.stderr)
        return 2
    return 0


def _run_model(args):
    """generate, score, fill or seq2seq: one model on one input. A model whose output is not
    finite (its parameters grew too large in training) is refused in one line, and NumPy's
    overflow warnings on the way are not printed."""
    import numpy as np

    from .models import NonFiniteOutput

    command = {"generate": cmd_generate, "score": cmd_score, "fill": cmd_fill,
               "seq2seq": cmd_seq2seq}[args.command]
    try:
        with np.errstate(all="ignore"):
            command(args)
    except NonFiniteOutput:
        raise UserError(f"--checkpoint {args.checkpoint!r}: the model's output is not finite "
                        "for this input: its parameters grew too large in training (a learning "
                        "rate far too high); train it again with a smaller --lr") from None


def cli():
    """The entry point of ``python -m minillm`` (through __main__.py) and of the ``minillm``
    script: main() with Ctrl-C handled by interrupt.py, and the exit status."""
    interrupt.install()
    interrupt.main_running = True
    try:
        status = main()
        # Done: a Ctrl-C still pending (a second one, while main handled the first) must not
        # turn the exit into a KeyboardInterrupt.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    except KeyboardInterrupt:  # such a Ctrl-C, run before the line above
        status = 130
    if status == 130:
        # CPython marks a KeyboardInterrupt raised while some modules are being imported as
        # unhandled, even though main() handled it, and then kills itself with SIGINT at exit
        # (status -2 instead of 130; seen with NumPy's import). Leave without that last step.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    sys.exit(status)
