"""The command line: ``python -m minillm [command] [options]``.

    (no command)   the demo: train tiny models and answer the tutorial's examples
    train          train a GPT on the built-in grammar or on your own text file
    generate       continue a prompt with a trained GPT
    score          the tutorial's formula on one text: log P(w_t | w_<t) step by step
    next           the top next words after a prompt, beside the grammar's true ones
    fill           fill the [MASK] of a text with a trained BERT (or an XLNet, or an ELMo)
    seq2seq        turn one text into another with a trained encoder-decoder
    caption        draw a fresh picture: a fused model's caption and answers beside the truth
    export         write a trained model as a Hugging Face folder (GPT-2, BERT or BART)
    import         read such a folder back into a minillm checkpoint
    bench          training-step speed against the machine's own matmul floor (bench.py)
    compare        the tutorial's capability table, measured (compare.py)
    scale          scaling laws against the true entropy, and in-context learning (scale.py)
    combine        训练目标可以组合: T5's mix and BERT's MLM + NSP against their parts (combine.py)
    align          InstructGPT's SFT, reward model and PPO, and DPO, against a known labeler
                   (align.py)

A user error (a bad option, a missing file, a malformed input) prints one line starting with
``minillm: error:`` and exits with status 2; there is no traceback. What the user should know
but that is not an error (characters read as [UNK], generation cut at the context length)
prints one line starting with ``minillm: warning:`` on stderr.
"""

from __future__ import annotations

import argparse
import errno
import os
import shlex
import signal
import sys

from . import interrupt
from .objectives import run_path

OBJECTIVES = ("clm", "mlm", "span", "t5", "bart", "tasks", "mix", "xlnet", "elmo", "caption")

# What each objective's model is for: the commands that read its checkpoints, and the inputs
# it learned to answer. A command refuses a checkpoint trained for another job, naming the
# objective it needs; seq2seq also refuses an input its checkpoint never learned (a t5 model
# asked a 总结 task prints 。). A command's default checkpoint is runs/<objective>.safetensors
# of its first objective here, where ``train`` writes that objective's runs and the demo leaves
# its three models (clm, mlm, tasks).
JOBS = {  # objective: (commands, inputs: keys of INPUTS)
    "clm": (("generate", "score", "next"), ("text",)),
    "mlm": (("fill",), ("mask",)),
    "span": (("fill",), ("mask",)),
    "tasks": (("seq2seq",), ("task",)),
    "mix": (("seq2seq",), ("task", "sentinel")),
    "t5": (("seq2seq",), ("sentinel",)),
    "bart": (("seq2seq",), ("mask",)),
    "xlnet": (("fill",), ("mask",)),
    "elmo": (("fill",), ("mask",)),  # the two directions' predictions combined (elmo.py)
    "caption": (("caption",), ("picture",)),  # a fresh picture: its caption and answers
}
INPUTS = {"text": "any text", "mask": "a text with [MASK] where words are missing",
          "task": "a task (总结：TEXT, 翻译：TEXT or 问：TEXT QUESTION)",
          "sentinel": "a text with <extra_id_0>, <extra_id_1>, ... where words are missing",
          "picture": "a picture drawn from the grammar (pictures.py)"}
DEMO_OBJECTIVES = ("clm", "mlm", "tasks")  # the demo's three models


def served_by(command):
    """The objectives whose checkpoints ``command`` reads, its default's first."""
    return [objective for objective, (commands, _) in JOBS.items() if command in commands]


def default_checkpoint(command):
    """runs/<objective>.safetensors of the first objective ``command`` serves."""
    return run_path(served_by(command)[0])


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


def _reading_command(sub, name, help, description, text, **text_options):
    """A command that reads a text (``text`` = (its name, its help)) with the model in
    --checkpoint."""
    command = sub.add_parser(name, help=help, description=description)
    command.add_argument(text[0], help=text[1], **text_options)
    _checkpoint_option(command, name)
    return command


def _checkpoint_option(parser, command):
    """--checkpoint, its default and its help from JOBS: the objectives ``command`` reads; or
    --hf, a Hugging Face folder of the architecture the command runs (HF_ARCH)."""
    served = served_by(command)
    model = parser.add_mutually_exclusive_group()
    model.add_argument("--checkpoint", default=default_checkpoint(command), metavar="FILE",
                       help=f"a checkpoint trained with --objective {_either(served)} "
                       f"(default: {default_checkpoint(command)})")
    model.add_argument("--hf", metavar="FOLDER",
                       help=f"instead of --checkpoint: a {HF_NAMES[HF_ARCH[command]]} folder "
                       "saved by transformers (config.json, model.safetensors), with its own "
                       "tokenizer's files; the pretrained ones too")


def _json_option(parser):
    parser.add_argument("--json", action="store_true",
                        help="print the numbers as one JSON object instead of a table")


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
        "corruption together (T5's unified framework); xlnet, XLNet's permutation language "
        "modeling (a random factorization order per sentence, two-stream attention); elmo, "
        "ELMo's biLM: a forward and a backward LSTM language model, L = -Σ [log P(w_k | w_<k) "
        "+ log P(w_k | w_>k)]; caption, a GPT that reads a picture's patches before the text "
        "(GPT-4's 多模态融合: LLaVA's prefix fusion, or with --fusion cross Flamingo's "
        "cross-attention), trained on pictures drawn from the grammar with their captions and "
        "answers. The "
        "data is the built-in grammar unless --data names a UTF-8 text file (one document "
        "per line). Progress lines show the loss in nats per token (and, for clm and elmo on "
        "the grammar, the entropy floor). The checkpoint (a safetensors file) is written to --out.",
    )
    # The settings a checkpoint stores have no argparse default (None): --resume must tell an
    # option the user gave from one left out. TRAIN_DEFAULTS fills them in afterwards.
    t.add_argument("--objective", choices=OBJECTIVES,
                   help="clm (GPT); mlm, span (BERT); t5, bart, tasks, mix (encoder-decoder); "
                   "xlnet (XLNet); elmo (a biLM of LSTMs; no --n-head); caption (pictures and "
                   "text) (default clm)")
    t.add_argument("--masking", choices=("dynamic", "static"),
                   help="mlm/span: a new mask every time a sentence is seen (RoBERTa) or one "
                   "mask per sentence for the whole run (BERT; needs --pool) (default dynamic)")
    t.add_argument("--nsp", action="store_true", default=None,
                   help="mlm: also train next-sentence prediction, on two-sentence documents "
                   "of the grammar ([CLS] A [SEP] B [SEP], B random half of the time)")
    t.add_argument("--plm-k", type=_positive_int, metavar="K",
                   help="xlnet: predict only the last 1/K of each factorization order, the "
                   "rest being context (partial prediction; default 6, as XLNet)")
    t.add_argument("--pool", type=_non_negative_int, metavar="N",
                   help="grammar data: train on a fixed pool of N sentences instead of fresh "
                   "ones every step (default 0: fresh)")
    t.add_argument("--data", metavar="FILE",
                   help="a UTF-8 text file, one document per line (default: the built-in "
                   "grammar); the vocabulary is built from its characters and frequent "
                   "character pairs. Not with tasks, mix or --nsp, which need the grammar")
    t.add_argument("--out", default=None, metavar="FILE",
                   help=f"checkpoint to write (default: {run_path('OBJECTIVE')}, one file per "
                   "objective, so that a run never replaces a model trained for another job)")
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
    t.add_argument("--n-layer", type=_positive_int,
                   help="blocks (elmo: LSTM layers in each direction) (default 2)")
    t.add_argument("--n-embd", type=_positive_int, help="model width C (default 64)")
    t.add_argument("--n-head", type=_positive_int,
                   help="attention heads; must divide --n-embd (default 4)")
    t.add_argument("--n-ctx", type=_positive_int,
                   help="longest sequence in tokens, special tokens included (default 32)")
    t.add_argument("--arch", choices=("gpt2", "gpt1"),
                   help="clm: which GPT, gpt2 (pre-LN blocks and a final layer norm) or gpt1 "
                   "(GPT-1: post-LN blocks, no final layer norm) (default gpt2)")
    t.add_argument("--fusion", choices=("prefix", "cross", "none"),
                   help="caption: how the text reads the picture, prefix (its patch tokens "
                   "first in the one sequence), cross (every block attends to them) or none "
                   "(the text-only baseline: the picture is never read) "
                   "(default prefix)")
    t.add_argument("--dtype", choices=("float32", "float64"),
                   help="parameter dtype (default float32)")
    t.add_argument("--log-every", type=_positive_int,
                   help="steps between progress lines (default 25)")
    t.add_argument("--checkpoint-every", type=_positive_int, default=100,
                   help="steps between checkpoints (default 100; always at the end)")

    g = _reading_command(
        sub, "generate", help="continue a prompt with a trained GPT",
        description="Continue PROMPT with the GPT in --checkpoint (made by the demo or by "
        "'minillm train'). "
        "Sampling: --temperature 0 is greedy; --top-k and --top-p restrict the draw to the "
        "most probable tokens.",
        text=("prompt", "text to continue (default: empty)"), nargs="?", default="")
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

    sc = _reading_command(
        sub, "score", help="the chain rule on one text: each log P(w_t | w_<t), their sum, the loss",
        description="Score TEXT with the GPT in --checkpoint, term by term: P(文本) = P(w_1) "
        "P(w_2|w_1) ... and L = -Σ log P(w_t | w_<t). [BOS] stands before w_1, so P(w_1) is a "
        "real term; [EOS] after the last word is the probability that the text ends there. "
        "When the model was trained on the built-in grammar, the true probabilities are shown "
        "beside the model's. With --hf (a GPT-2 folder), <|endoftext|> stands before w_1 "
        "instead and no end token is scored.",
        text=("text", "the text to score, e.g. 今天天气很好，我们去公园玩。"))
    _json_option(sc)

    nx = _reading_command(
        sub, "next", help="the top next words after a prompt, beside the grammar's true ones",
        description="The GPT's most probable next words after PROMPT, P(w | [BOS] PROMPT), "
        "beside the true P(w | PROMPT) when the model was trained on the built-in grammar and "
        "the grammar can begin a sentence with PROMPT; the table then ends with every other "
        "word the grammar may put next, at the rank the model gives it. [EOS] is the text "
        "ending there.",
        text=("prompt", "the text so far, e.g. 今天天气不好，我们去 (default: empty: the first "
              "word)"), nargs="?", default="")
    nx.add_argument("--top", type=_positive_int, default=5, metavar="K",
                    help="how many of the model's words to show (default 5)")
    _json_option(nx)

    f = _reading_command(
        sub, "fill", help="fill the [MASK] of a text with a trained BERT (or an XLNet, or an ELMo)",
        description="Predict the word at each [MASK] of TEXT with the BERT in --checkpoint "
        "(made by the demo or by 'minillm train --objective mlm', or span). The encoder reads "
        "the whole text, both sides of the [MASK]. An XLNet (--objective xlnet) predicts "
        "each [MASK] last in its factorization order, from all the other words; several "
        "[MASK]s left to right, each earlier one filled with its most probable word. With a "
        "checkpoint of --objective elmo, the one [MASK] is filled by ELMo's two LSTM language "
        "models, p ∝ p_fwd(w | left) p_bwd(w | right), the text read as a whole sentence. "
        "When the model was trained on the built-in grammar, the true probabilities are shown "
        "beside the model's.",
        text=("text", "text with one or more [MASK], e.g. 今天[MASK]很好"))
    f.add_argument("--top", type=_positive_int, default=5, help="how many words to show (default 5)")
    _json_option(f)

    q = _reading_command(
        sub, "seq2seq", help="turn one text into another with a trained encoder-decoder",
        description="Run the encoder-decoder in --checkpoint (made by the demo or by 'minillm "
        "train --objective tasks') on TEXT: the encoder reads it once, the decoder writes the "
        "output token by token with a key/value cache, greedily or by beam search. A checkpoint "
        "answers the inputs it was trained on: tasks a task (总结：, 翻译：, 问：); t5 a text with "
        "<extra_id_0>, <extra_id_1>, ... where words are missing; bart a text with [MASK] where "
        "words are missing; mix a task or a t5 input.",
        text=("text", "e.g. 总结：今天天气很好，我们去公园玩。 or 翻译：... or 问：..."))
    q.add_argument("--beam", type=_positive_int, default=1,
                   help="beam width; 1 is greedy decoding (default 1)")
    q.add_argument("--length-penalty", type=_non_negative_float, default=1.0,
                   help="rank finished beams by log P / length^this (default 1.0)")
    q.add_argument("--show", type=_positive_int, default=None, metavar="N",
                   help="print the N best hypotheses of the beam (N <= --beam), each with its "
                   "log P(y | x), its length in tokens and the score it is ranked by")
    _json_option(q)

    cp = sub.add_parser(
        "caption", help="draw a fresh picture: a fused model's caption and answers beside the "
        "truth and a text-only model's",
        description="Draw a fresh picture from the grammar (pictures.py), show it with coloured "
        "blocks, and print the caption and answers of the fused image-text GPT in --checkpoint "
        "(train --objective caption) beside the truth and beside those of the text-only model "
        "in --text-only (train --objective caption --fusion none: the same GPT on the same "
        "texts, never shown the picture). Then the slot accuracy of both on --pictures more "
        "fresh pictures, and chance: how often the grammar's most likely answer to each question "
        "is right on those pictures.")
    cp.add_argument("--checkpoint", default=default_checkpoint("caption"), metavar="FILE",
                    help="a checkpoint of --objective caption with --fusion prefix or cross "
                    f"(default: {default_checkpoint('caption')})")
    cp.add_argument("--text-only", default=run_path("caption_text"), metavar="FILE",
                    help="a checkpoint of --objective caption --fusion none (default: "
                    f"{run_path('caption_text')}, left out if there is none)")
    cp.add_argument("--seed", type=_non_negative_int,
                    help="the seed of the pictures, an integer >= 0 (default: a fresh one)")
    cp.add_argument("--pictures", type=_positive_int, default=200, metavar="N",
                    help="how many more fresh pictures the slot accuracy is measured on "
                    "(default 200)")
    cp.add_argument("--png", metavar="FILE",
                    help="also write the picture as a PNG file, each pixel 8×8")
    cp.add_argument("--json", metavar="FILE",
                    help="write the slot accuracy as JSON to FILE: {\"slot_accuracy\": "
                    "{\"fused\": ..., \"text_only\": ...}, \"chance\": ..., ...}")
    cp.set_defaults(hf=None)  # no Hugging Face architecture reads pictures

    e = sub.add_parser(
        "export", help="write a trained model as a Hugging Face folder",
        description="Write the model in CHECKPOINT as a Hugging Face folder: config.json and "
        "model.safetensors in the layout of GPT-2 (from a GPT; GPT-1's, openai-gpt, from a GPT "
        "trained with --arch gpt1), BERT (from a BERT) or BART (from "
        "an encoder-decoder), which transformers' from_pretrained loads; tokenizer.json and "
        "tokenizer_config.json, with which transformers' AutoTokenizer gives minillm's ids; and "
        "minillm_vocab.json, the vocabulary, so that 'minillm import' can read the folder back.",
    )
    e.add_argument("checkpoint", help="a checkpoint written by 'minillm train' or the demo")
    e.add_argument("folder", help="the folder to write (created if needed)")
    e.add_argument("--to", choices=("hf",), default="hf", help="the format (only hf)")

    i = sub.add_parser(
        "import", help="read a Hugging Face folder (GPT-2, GPT-1, BERT, BART) into a checkpoint",
        description="Read FOLDER (config.json and model.safetensors, as written by 'minillm "
        "export' or by transformers' save_pretrained) into a minillm checkpoint with fresh "
        "optimizer state. A folder that 'minillm export' wrote also holds minillm_vocab.json, "
        "the vocabulary; without it the checkpoint holds token ids only (the folder's own "
        "tokenizer is not minillm's), for use from Python.",
    )
    i.add_argument("folder", help="a folder written by 'minillm export' or save_pretrained")
    i.add_argument("checkpoint", help="the checkpoint to write")

    # `bench` has its own parser (minillm/bench.py); main() hands its arguments over before
    # this parser sees them. It is listed here so that --help shows it.
    sub.add_parser("bench", add_help=False,
                   help="measure training steps against the machine's matmul floor "
                   "(python -m minillm bench --help)")
    sub.add_parser("compare", add_help=False,
                   help="measure the tutorial's capability table: GPT, BERT and an "
                   "encoder-decoder on five tasks (python -m minillm compare --help)")
    sub.add_parser("scale", add_help=False,
                   help="fit scaling laws over a sweep of GPT sizes and token budgets, beside "
                   "the source's true entropy; measure in-context learning "
                   "(python -m minillm scale --help)")
    sub.add_parser("combine", add_help=False,
                   help="measure what combining objectives buys: T5's tasks + span corruption "
                   "and BERT's MLM + NSP against each alone (python -m minillm combine --help)")
    sub.add_parser("align", add_help=False,
                   help="SFT, a reward model, PPO and DPO against a labeler whose true reward "
                   "is known (python -m minillm align --help)")
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


def _how_to_make(objective):
    """The command that trains a checkpoint of ``objective``."""
    train = "python -m minillm train" + ("" if objective == "clm" else f" --objective {objective}")
    return f"python -m minillm (the demo) or {train}" if objective in DEMO_OBJECTIVES else train


def _load(path, command, flag="--checkpoint"):
    """The checkpoint at ``flag`` (--checkpoint; caption's --text-only) for ``command``, or one
    clear line naming ``flag``: how to make one if there is none, and which objective the
    command needs if it holds a model trained for another job (JOBS)."""
    from .objectives import title

    served = served_by(command)
    needs = f"--objective {_either(served)}"
    if not os.path.exists(path):
        hint = ""
        if path == default_checkpoint(command):  # another objective's run may be there
            others = [run_path(o) for o in served[1:] if os.path.isfile(run_path(o))]
            hint = f", or give --checkpoint {others[0]}" if others else ""
        raise UserError(f"{flag} {path!r} does not exist; train one first with: "
                        f"{_how_to_make(served[0])}{hint}")
    loaded = _read_checkpoint(path, flag)
    _refuse_ids_only(loaded[2], path, flag)
    objective = loaded[1].objective
    if objective not in served:
        raise UserError(f"{flag} {path!r} was trained with --objective {objective} "
                        f"({title(objective)}), not for {command}: {command} needs a checkpoint "
                        f"of {needs}, such as {default_checkpoint(command)} (made by "
                        f"{_how_to_make(served[0])}); this one is for "
                        f"{_either(JOBS[objective][0])}")
    return loaded


def _refuse_ids_only(tokenizer, path, flag):
    """A checkpoint of token ids only (imported from a folder without minillm's vocabulary) has
    no way from text to its ids: refused by the commands that read text."""
    if tokenizer is None:
        raise UserError(f"{flag} {path!r} holds token ids only (imported from a Hugging Face "
                        f"folder without {VOCAB_FILE}): minillm cannot turn text into its ids")


def _seq2seq_job(path, objective, text, ids, tokenizer):
    """Refuse an input that the seq2seq checkpoint at ``path`` never learned to answer (JOBS):
    a t5 model reads sentinels, not tasks; a tasks model reads tasks."""
    from .grammar import ASK, SUMMARY, TRANSLATE
    from .objectives import title
    from .tokenizer import MASK_ID, SPECIAL_TOKENS

    kinds = {"text"}
    if text.startswith((SUMMARY, TRANSLATE, ASK)):
        kinds.add("task")
    if MASK_ID in ids:
        kinds.add("mask")
    if any(tokenizer.is_special(i) and i >= len(SPECIAL_TOKENS) for i in ids):
        kinds.add("sentinel")
    answers = JOBS[objective][1]
    if kinds & set(answers):
        return
    others = [o for o in served_by("seq2seq") if kinds & set(JOBS[o][1])]
    if others:
        instead = (f"this text is one for a checkpoint of --objective {_either(others)}"
                   + (f", such as {run_path(others[0])}" if others[0] in DEMO_OBJECTIVES else ""))
    else:
        instead = ("no seq2seq checkpoint answers this text: each answers "
                   + _either([INPUTS[k] for k in ("task", "sentinel", "mask")]))
    raise UserError(f"--checkpoint {path!r} was trained with --objective {objective} "
                    f"({title(objective)}) and answers "
                    f"{_either([INPUTS[k] for k in answers])}, which this text is not; "
                    f"{instead}")


def _warn(message):
    print(f"minillm: warning: {message}", file=sys.stderr)


def _encode(tokenizer, text):
    """Text -> (token ids, the characters that became [UNK]), for _warn_unknown to name once
    the input has passed its checks (an error stays one line)."""
    unknown = []
    return tokenizer.encode(text, unknown=unknown), unknown


def _warn_unknown(unknown, path):
    """One warning line naming the characters that the vocabulary of the checkpoint at ``path``
    lacks, each read as [UNK]: the model sees none of them."""
    if unknown:
        chars = [ch if ch.isprintable() and not ch.isspace() else repr(ch)
                 for ch in dict.fromkeys(unknown)]
        more = f" and {len(chars) - 20} more" if len(chars) > 20 else ""
        _warn(f"{' '.join(chars[:20])}{more}: not in the vocabulary of --checkpoint {path!r}, "
              f"read as [UNK] ({len(unknown)} characters of the text)")


def _either(names):
    """"a", "a or b", "a, b or c"."""
    return " or ".join(names) if len(names) < 3 else f"{', '.join(names[:-1])} or {names[-1]}"


def _print_json(obj):
    import json

    print(json.dumps(obj, ensure_ascii=False, indent=1))


def _grammar_of(tokenizer):
    """The built-in grammar, for a model trained on it (its vocabulary is the grammar's); None
    for a model of a user's text, whose truth nobody knows."""
    from .grammar import default_grammar

    grammar = default_grammar()
    return grammar if tokenizer.vocab == grammar.tokenizer().vocab else None


def _truth(method, *args):
    """``method(*args)``, one of the grammar's exact answers, or None where there is none: for
    a text the grammar cannot produce, the method raises ValueError."""
    try:
        return method(*args)
    except ValueError:
        return None


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


def _rows_json(rows, ranks=None):
    """Table rows (word, model P, true P or None) as JSON objects, ranked 1, 2, ... or by
    ``ranks``."""
    return [{"rank": rank, "word": word, "model_p": model_p, "true_p": true_p}
            for rank, (word, model_p, true_p) in zip(ranks or range(1, len(rows) + 1), rows)]


def cmd_fill(args):
    from .demo import print_table, top_words_table
    from .generate import fill_mask_distributions
    from .objectives import get_objective
    from .objectives.xlnet import fill_distributions as xlnet_fill
    from .tokenizer import BOS_ID, CLS_ID, MASK_ID, SEP_ID

    model_cfg, train_cfg, tokenizer, state = _load(args.checkpoint, "fill")
    model = get_objective(train_cfg.objective).MODEL
    text_ids, unknown = _encode(tokenizer, args.text)
    if model == "elmo":
        return _elmo_fill(args, model_cfg, tokenizer, state, text_ids, unknown)
    # XLNet reads [BOS] and the text, and nothing after it: the words that may follow are
    # unread, as the tokens later in a factorization order are (the truth: any sentence that
    # starts with the text).
    ids = [BOS_ID, *text_ids] if model == "xlnet" else [CLS_ID, *text_ids, SEP_ID]
    if MASK_ID not in ids:
        raise UserError(f"text {args.text!r} has no [MASK] to fill")
    if len(ids) > model_cfg.n_ctx:
        raise UserError(f"text of {len(text_ids)} tokens is longer than the model's context")
    _check_input_fits(model, model_cfg, state, 1, len(ids), f"a text of {len(text_ids)} tokens")
    _warn_unknown(unknown, args.checkpoint)
    words = tokenizer.tokenize(args.text)
    grammar = _grammar_of(tokenizer)
    true = None  # the truth of one [MASK] (two have a joint law, which one column cannot show)
    if grammar is not None and words.count("[MASK]") == 1:
        true = _truth(grammar.masked_word_distribution, words)
    fill = xlnet_fill if model == "xlnet" else fill_mask_distributions
    masks = [(position, top_words_table(tokenizer, probs, true, k=args.top))
             for position, probs in fill(state["params"], model_cfg, ids)]
    if args.json:
        _print_json({"checkpoint": args.checkpoint, "text": args.text, "truth": true is not None,
                     "masks": [{"position": position, "words": _rows_json(rows)}
                               for position, rows in masks]})
        return
    for position, rows in masks:
        print(f"[MASK] as word {position} of {''.join(words)}:")
        print_table(rows, label="word")


def _elmo_fill(args, model_cfg, tokenizer, state, text_ids, unknown):
    """fill with an ELMo checkpoint: the one [MASK] of the text, read as a whole sentence, by
    the product of the forward LM's and the backward LM's predictions (elmo.py), beside the
    grammar's true P(w | the whole sentence's other words) when there is one."""
    from .demo import print_table, top_words_table
    from .elmo import mask_position, shallow_fill_distribution

    try:
        position = mask_position(text_ids)
    except ValueError as err:
        raise UserError(f"text {args.text!r}: {err}") from None
    if len(text_ids) + 1 > model_cfg.n_ctx:
        raise UserError(f"text of {len(text_ids)} tokens (+[BOS]) is longer than the model's "
                        f"n_ctx={model_cfg.n_ctx}")
    _check_input_fits("elmo", model_cfg, state, 1, len(text_ids) + 1,
                      f"a text of {len(text_ids)} tokens")
    _warn_unknown(unknown, args.checkpoint)
    words = tokenizer.tokenize(args.text)
    grammar = _grammar_of(tokenizer)
    true = None
    if grammar is not None:
        true = _truth(grammar.masked_word_distribution, words, False)
        if true is None:
            _warn(f"the backward LM reads {args.text!r} as a whole sentence, and the grammar has "
                  "no such sentence: no truth to show (a whole sentence ends with 。)")
    probs = shallow_fill_distribution(state["params"], model_cfg, text_ids, position)
    rows = top_words_table(tokenizer, probs, true, k=args.top)
    if args.json:
        _print_json({"checkpoint": args.checkpoint, "text": args.text, "truth": true is not None,
                     "masks": [{"position": position + 1, "words": _rows_json(rows)}]})
        return
    print(f"[MASK] as word {position + 1} of {''.join(words)}, p ∝ p_fwd(w | left) · "
          "p_bwd(w | right):")
    print_table(rows, label="word")


def _gpt_reads(args, command, text, name):
    """The GPT of --checkpoint for ``command``, and ``text`` as the token ids it reads after
    [BOS], checked: no [MASK], within the context with [BOS] (or [EOS]) beside it, within
    memory; characters read as [UNK] named. -> model_cfg, tokenizer, state, ids."""
    model_cfg, _, tokenizer, state = _load(args.checkpoint, command)
    _refuse_mask(text, name)
    ids, unknown = _encode(tokenizer, text)
    if len(ids) + 1 > model_cfg.n_ctx:
        raise UserError(f"{name} of {len(ids)} tokens (+[BOS] or [EOS]) is longer than the "
                        f"model's n_ctx={model_cfg.n_ctx}")
    _check_input_fits("gpt", model_cfg, state, 1, len(ids) + 1, f"a {name} of {len(ids)} tokens")
    _warn_unknown(unknown, args.checkpoint)
    return model_cfg, tokenizer, state, ids


def cmd_next(args):
    import numpy as np

    from .demo import print_table
    from .generate import next_word_distribution

    model_cfg, tokenizer, state, ids = _gpt_reads(args, "next", args.prompt, "prompt")
    probs = next_word_distribution(state["params"], model_cfg, ids)  # (V,): P(w | [BOS] prompt)
    words = tokenizer.tokenize(args.prompt)
    grammar = _grammar_of(tokenizer)
    true = None if grammar is None else _truth(grammar.next_word_distribution, words)
    order = np.argsort(-probs, kind="stable")  # the model's ranking, ties by token id
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(1, len(order) + 1)
    shown = [int(i) for i in order[: args.top]]
    if true is not None:  # then every word the grammar may put next, at the model's rank
        lower = {tokenizer.id_of[word] for word in true} - set(shown)
        shown += sorted(lower, key=lambda i: rank[i])
    rows = [(tokenizer.vocab[i], float(probs[i]),
             None if true is None else true.get(tokenizer.vocab[i], 0.0)) for i in shown]
    ranks = [int(rank[i]) for i in shown]
    if args.json:
        _print_json({"checkpoint": args.checkpoint, "prompt": args.prompt, "tokens": words,
                     "truth": true is not None, "words": _rows_json(rows, ranks)})
        return
    said = f'after "{args.prompt}" ([BOS] {" | ".join(words)})'.replace("[BOS] )", "[BOS])")
    if true is not None:
        others = (", then the grammar's other next words at the model's rank"
                  if len(shown) > args.top else "")
        print(f"{said}: the model's top {args.top} next words{others}, beside the truth:")
    elif grammar is not None:
        print(f"{said}: the model's top {args.top} next words (no true P: the grammar never "
              "begins a sentence so):")
    else:
        print(f"{said}: the model's top {args.top} next words:")
    print_table(rows, ranks=ranks)


def cmd_score(args):
    import math

    from .objectives import clm
    from .tokenizer import pad

    if not args.text:
        raise UserError("text must not be empty")
    model_cfg, tokenizer, state, ids = _gpt_reads(args, "score", args.text, "text")
    total, per_step = clm.log_prob(state["params"], model_cfg, ids, add_eos=True)
    grammar = _grammar_of(tokenizer)
    words = [tokenizer.vocab[i] for i in ids] + ["[EOS]"]
    steps = []
    for t, (word, lp) in enumerate(zip(words, per_step), 1):
        true = None  # after a prefix the grammar cannot produce, P(w_t | w_<t) is undefined
        if grammar is not None:
            following = _truth(grammar.next_word_distribution, words[: t - 1])
            true = None if following is None else following.get(word, 0.0)
        steps.append({"t": t, "word": word, "model_p": math.exp(lp), "true_p": true})
    true_text = None if grammar is None else grammar.sentence_probability(args.text)
    if args.json:
        _print_json({"checkpoint": args.checkpoint, "text": args.text, "steps": steps,
                     "log_p": total, "loss": -total, "tokens": len(per_step),
                     "loss_per_token": -total / len(per_step), "true_text_p": true_text})
        return
    truth = grammar is not None
    print(f"{'t':>3}  {'w_t':<8}{'model P(w_t | w_<t)':>22}" + (f"{'true P':>10}" if truth else ""))
    for step in steps:
        line = f"{step['t']:>3}  {pad(step['word'], 8)}{step['model_p']:>22.4f}"
        if truth:
            line += f"{'-':>10}" if step["true_p"] is None else f"{step['true_p']:>10.4f}"
        print(line)
    print(f"log P(文本) = Σ log P(w_t | w_<t) = {total:.4f}   P(文本) = {math.exp(total):.4g}")
    print(f"L = -Σ log P(w_t | w_<t) = {-total:.4f} nats over {len(per_step)} tokens "
          f"({-total / len(per_step):.4f} per token)")
    if truth:
        print(f"the grammar's true P(文本) = {true_text:.4g}")


def _check_show(args):
    if args.show is not None and args.show > args.beam:
        raise UserError(f"--show {args.show} needs --beam {args.show} or more: beam search "
                        "keeps --beam hypotheses")


def cmd_seq2seq(args):
    from .generate import seq2seq_beam_hypotheses
    from .tokenizer import EOS_ID

    _check_show(args)
    model_cfg, train_cfg, tokenizer, state = _load(args.checkpoint, "seq2seq")
    if not args.text:
        raise UserError("text must not be empty")
    text_ids, unknown = _encode(tokenizer, args.text)
    ids = [*text_ids, EOS_ID]
    _seq2seq_job(args.checkpoint, train_cfg.objective, args.text, ids, tokenizer)
    if len(ids) > model_cfg.n_ctx:
        raise UserError(f"text of {len(ids)} tokens (with [EOS]) is longer than the model's "
                        f"n_ctx={model_cfg.n_ctx}")
    # Each live beam keeps a decoder cache of up to n_ctx tokens.
    _check_input_fits("seq2seq", model_cfg, state, args.beam, model_cfg.n_ctx,
                      f"--beam {args.beam}, decoding up to the model's n_ctx={model_cfg.n_ctx} "
                      "tokens,")
    _warn_unknown(unknown, args.checkpoint)
    hypotheses = seq2seq_beam_hypotheses(state["params"], model_cfg, ids, beam_width=args.beam,
                                         length_penalty=args.length_penalty)[: args.show or 1]
    outputs = [answer_text(tokenizer, h.ids) for h in hypotheses]
    _print_hypotheses(args, {"checkpoint": args.checkpoint}, hypotheses, outputs)


def answer_text(tokenizer, ids):
    """A seq2seq answer as text: without [BOS], [EOS] and [PAD], but with its sentinels, which
    a t5 answer uses to say which blank each run of words fills (<extra_id_0> 天气 <extra_id_1>
    ...)."""
    from .tokenizer import SPECIAL_TOKENS

    return tokenizer.decode([i for i in ids if not tokenizer.is_special(i)
                             or i >= len(SPECIAL_TOKENS)])


def _print_hypotheses(args, model, hypotheses, outputs):
    """seq2seq's answer: the best output, or with --show the table of the best hypotheses, or
    with --json both; ``model`` names where the model came from in the JSON."""
    if args.json:
        _print_json({**model, "input": args.text, "beam": args.beam,
                     "length_penalty": args.length_penalty, "output": outputs[0],
                     "hypotheses": [{"rank": rank, "output": output, "ids": h.ids,
                                     "tokens": len(h.ids), "log_p": h.log_prob,
                                     "score": h.score, "finished": h.finished}
                                    for rank, (h, output) in enumerate(zip(hypotheses, outputs),
                                                                       1)]})
        return
    if args.show is None:
        print(outputs[0])
        return
    print(f"the {len(hypotheses)} best of beam {args.beam}, ranked by score = log P(y | x) / "
          f"tokens^{args.length_penalty:g} (tokens: the output's, [EOS] included):")
    print(f"    {'rank':<5}{'log P':>9}{'tokens':>8}{'score':>9}  output")
    for rank, (h, output) in enumerate(zip(hypotheses, outputs), 1):
        unfinished = "" if h.finished else "   (unfinished: no [EOS])"
        print(f"    {rank:<5}{h.log_prob:>9.4f}{len(h.ids):>8}{h.score:>9.4f}  {output}"
              + unfinished)


# ----------------------------------------------------------------------------------------------
# --hf FOLDER: a Hugging Face model (GPT-2, BERT or BART, the pretrained ones too) run by
# minillm's own forward pass, with the folder's own tokenizer (hf.py, hf_tokenizers.py). There
# is no known truth for such a model, so no table has a true P column.

HF_ARCH = {"generate": "gpt2", "score": "gpt2", "next": "gpt2", "fill": "bert",
           "seq2seq": "bart"}
HF_NAMES = {"gpt2": "GPT-2", "openai-gpt": "GPT-1", "bert": "BERT", "bart": "BART"}


def _hf_load(args, command):
    """The HFModel and tokenizer of --hf FOLDER for ``command``, or one line naming what is
    wrong: no such folder, a model of another architecture, a file minillm cannot read, a
    tokenizer with ids beyond the model's vocab_size."""
    import json

    from . import hf
    from .hf_tokenizers import load_tokenizer

    folder, need = args.hf, HF_ARCH[command]
    needs = f"{command} needs a {HF_NAMES[need]} folder (config.json model_type {need!r})"
    if not os.path.isdir(folder):
        raise UserError(f"--hf {folder!r} is not a folder: {needs}, as saved by transformers' "
                        "save_pretrained")
    try:  # the architecture first, before a large file of the wrong one is read
        with open(os.path.join(folder, "config.json"), "rb") as f:
            model_type = json.loads(f.read(hf.MAX_CONFIG_BYTES)).get("model_type")
    except (OSError, ValueError, AttributeError):
        model_type = None  # hf.load says what is wrong with the file
    if model_type in HF_NAMES and model_type != need:
        raise UserError(f"--hf {folder!r} holds a {HF_NAMES[model_type]} model "
                        f"(model_type {model_type!r}): {needs}")
    try:
        model = hf.load(folder)
        tokenizer = load_tokenizer(folder)
    except ValueError as err:
        raise UserError(f"--hf {folder!r}: {err}") from None
    if model.arch != need:
        raise UserError(f"--hf {folder!r} holds a {HF_NAMES[model.arch]} model: {needs}")
    if len(tokenizer) > model.cfg.vocab_size:
        raise UserError(f"--hf {folder!r}: its tokenizer has ids up to {len(tokenizer) - 1}, "
                        f"but the model's vocab_size is {model.cfg.vocab_size}: the tokenizer "
                        "is not this model's")
    return model, tokenizer


def _hf_token_text(tokenizer, token_id):
    """One token id as readable text: the decode of that id alone, quoted so that its spaces
    show (GPT-2's ' world'); a byte-level piece that is part of a character (GPT-2 cuts most
    Chinese characters into 2 or 3 byte tokens) as its bytes, <e4 bb>; an id the tokenizer
    lacks (a model with spare rows) as <id N>."""
    from .hf_tokenizers import CHAR_TO_BYTE

    token = tokenizer.id_to_token.get(int(token_id))
    if token is None:
        return f"<id {int(token_id)}>"
    if tokenizer.decoder == "byte_level" and all(ch in CHAR_TO_BYTE for ch in token):
        data = bytes(CHAR_TO_BYTE[ch] for ch in token)
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            return "<" + data.hex(" ") + ">"
    return repr(tokenizer.decode([int(token_id)]))


def _hf_text(tokenizer, ids):
    """Token ids -> text without the special tokens; an id the tokenizer lacks as <id N>."""
    known = [i for i in ids if i in tokenizer.id_to_token]
    if len(known) == len(ids):
        return tokenizer.decode(ids, skip_special_tokens=True)
    return "".join(_hf_text(tokenizer, [i]) if i in tokenizer.id_to_token else f"<id {i}>"
                   for i in ids)


def _hf_fits(args, model, n, what):
    """Refuse an input of ``n`` positions beyond the model's context, or beyond memory."""
    if n > model.cfg.n_ctx:
        raise UserError(f"{what} is {n} tokens, longer than the model's context: --hf "
                        f"{args.hf!r} has n_ctx={model.cfg.n_ctx}")
    from .hf import ARCH_MODEL

    _check_input_fits(ARCH_MODEL[model.arch], model.cfg, {"params": model.params}, 1, n, f"{what} ({n} tokens)")


def _hf_gpt2_prompt(args, model, tokenizer, text, room):
    """A prompt's ids and the bos id to put before them: as transformers' generate, the prompt
    alone (GPT-2 has no BOS: <|endoftext|> is its eos, between documents), and <|endoftext|>
    alone for an empty prompt. ``room``: the positions it must leave free."""
    ids = tokenizer.encode(text)
    bos = None if ids else tokenizer.bos_id
    if not ids and bos is None:
        raise UserError(f"prompt {text!r} gives no tokens, and the tokenizer of --hf "
                        f"{args.hf!r} has no bos token to begin with")
    _hf_fits(args, model, len(ids) + (bos is not None) + room,
             f"prompt {text!r}" + (" (with room for one new token)" if room else ""))
    return ids, bos


def hf_generate(args):
    import numpy as np

    from .generate import generate

    _check_top_p(args)
    model, tokenizer = _hf_load(args, "generate")
    ids, bos = _hf_gpt2_prompt(args, model, tokenizer, args.prompt, room=1)
    start = len(ids) + (bos is not None)
    _hf_fits(args, model, min(model.cfg.n_ctx, start + args.max_new_tokens),
             "the prompt and the new tokens")
    rng = np.random.default_rng(args.seed)
    cut = 0
    for _ in range(args.samples):
        new = generate(model.params, model.cfg, ids, args.max_new_tokens, rng,
                       temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
                       bos_id=bos, eos_id=tokenizer.eos_id)
        print(args.prompt + _hf_text(tokenizer, new))
        cut += len(new) < args.max_new_tokens and new[-1] != tokenizer.eos_id
    if cut:
        which = "generation" if args.samples == 1 else f"{cut} of the {args.samples} samples"
        _warn(f"{which} stopped at the model's context length n_ctx={model.cfg.n_ctx} ({start} "
              f"prompt tokens + {model.cfg.n_ctx - start} new), before --max-new-tokens "
              f"{args.max_new_tokens} or the eos token")


def hf_next(args):
    import numpy as np

    from .demo import print_table
    from .generate import next_word_distribution

    model, tokenizer = _hf_load(args, "next")
    ids, bos = _hf_gpt2_prompt(args, model, tokenizer, args.prompt, room=0)
    probs = next_word_distribution(model.params, model.cfg, ids, bos_id=bos)  # (V,)
    order = [int(i) for i in np.argsort(-probs, kind="stable")[: args.top]]
    rows = [(_hf_token_text(tokenizer, i), float(probs[i]), None) for i in order]
    read = [bos] if bos is not None else ids
    if args.json:
        _print_json({"hf": args.hf, "prompt": args.prompt, "ids": read,
                     "truth": False, "words": [{"rank": r, "id": i, "token": row[0],
                                                "model_p": row[1]}
                                               for r, (i, row) in enumerate(zip(order, rows), 1)]})
        return
    tokens = " | ".join(_hf_token_text(tokenizer, i) for i in read)
    print(f"after {args.prompt!r} (read as {tokens}): the model's top {args.top} next tokens "
          "(no true P: nobody knows a real text's true distribution):")
    print_table(rows, label="token")


def hf_score(args):
    import math

    from .objectives import clm
    from .tokenizer import pad

    if not args.text:
        raise UserError("text must not be empty")
    model, tokenizer = _hf_load(args, "score")
    ids = tokenizer.encode(args.text)
    # <|endoftext|> (GPT-2's bos, the separator between its training documents) before w_1,
    # so that P(w_1) is a term as [BOS] makes it for minillm's models. Without it (the way
    # transformers' loss reads model(ids, labels=ids)) w_1 has no probability.
    seq = ids if tokenizer.bos_id is None else [tokenizer.bos_id, *ids]
    if len(seq) < 2:
        raise UserError(f"text {args.text!r} gives {len(ids)} token(s) and the tokenizer has no "
                        "bos token: there is no term to score")
    _hf_fits(args, model, len(seq), f"text {args.text!r}" + (
        " with <|endoftext|> first" if tokenizer.bos_id is not None else ""))
    # The chain rule as for minillm's GPT, with seq[0] read where [BOS] stands.
    total, per_step = clm.log_prob(model.params, model.cfg, seq[1:], bos_id=seq[0])
    first = 1 if tokenizer.bos_id is not None else 2  # the t of the first term
    n = len(per_step)
    steps = [{"t": t, "id": int(i), "token": _hf_token_text(tokenizer, i),
              "model_p": math.exp(lp), "log_p": float(lp)}
             for t, (i, lp) in enumerate(zip(seq[1:], per_step), first)]
    if args.json:
        _print_json({"hf": args.hf, "text": args.text, "ids": seq, "steps": steps,
                     "log_p": total, "loss": -total, "tokens": n, "loss_per_token": -total / n})
        return
    if tokenizer.bos_id is not None:
        bos = tokenizer.id_to_token[tokenizer.bos_id]
        print(f"{bos} (id {tokenizer.bos_id}) stands before w_1, so P(w_1) is a term; no end "
              "token is scored")
    else:
        print("the tokenizer has no bos token: w_1 has no probability; the terms start at w_2")
    print(f"{'t':>3}  {'id':>6}  {'w_t':<14}{'model P(w_t | w_<t)':>22}{'log P':>10}")
    for step in steps:
        print(f"{step['t']:>3}  {step['id']:>6}  {pad(step['token'], 14)}"
              f"{step['model_p']:>22.4g}{step['log_p']:>10.3f}")
    print(f"log P(文本) = Σ log P(w_t | w_<t) = {total:.4f}   P(文本) = {math.exp(total):.4g}")
    print(f"L = -Σ log P(w_t | w_<t) = {-total:.4f} nats over {n} tokens ({-total / n:.4f} per "
          "token: transformers' loss of model(ids, labels=ids) with ids as read here)")


def hf_fill(args):
    from .demo import print_table
    from .generate import fill_mask_distributions

    model, tokenizer = _hf_load(args, "fill")
    if tokenizer.mask_id is None:
        raise UserError(f"--hf {args.hf!r}: its tokenizer has no mask token")
    mask = tokenizer.id_to_token[tokenizer.mask_id]
    ids = tokenizer.encode(args.text, add_special_tokens=True)  # [CLS] text [SEP]
    if tokenizer.mask_id not in ids:
        raise UserError(f"text {args.text!r} has no {mask} to fill (the mask token of the "
                        f"tokenizer of --hf {args.hf!r})")
    _hf_fits(args, model, len(ids), f"text {args.text!r} with {tokenizer.decode(ids[:1])} "
             f"and {tokenizer.decode(ids[-1:])}")
    masks = [(position, [(i, _hf_token_text(tokenizer, i), float(probs[i]))
                         for i in probs.argsort(kind="stable")[::-1][: args.top]])
             for position, probs in fill_mask_distributions(model.params, model.cfg, ids,
                                                            mask_id=tokenizer.mask_id)]
    if args.json:
        _print_json({"hf": args.hf, "text": args.text, "ids": ids, "truth": False,
                     "masks": [{"position": position,
                                "words": [{"rank": r, "id": int(i), "token": text, "model_p": p}
                                          for r, (i, text, p) in enumerate(rows, 1)]}
                               for position, rows in masks]})
        return
    tokens = " ".join(tokenizer.id_to_token[i] for i in ids)
    for position, rows in masks:
        print(f"{mask} at position {position} of {tokens}:")
        print_table([(text, p, None) for _, text, p in rows], label="token")


def hf_seq2seq(args):
    from .generate import seq2seq_beam_hypotheses

    _check_show(args)
    model, tokenizer = _hf_load(args, "seq2seq")
    if not args.text:
        raise UserError("text must not be empty")
    ids = tokenizer.encode(args.text, add_special_tokens=True)  # BART: <s> text </s>
    _hf_fits(args, model, len(ids), f"text {args.text!r} with its special tokens")
    # The decoder begins with config.json's decoder_start_token_id (BART: </s>) and stops at
    # the eos, as transformers' generate does (its forced_bos_token_id, which some BART
    # configs set, is not applied here: the decoder chooses every token itself).
    special = {}
    for key, fallback in (("decoder_start_token_id", None), ("eos_token_id", tokenizer.eos_id)):
        value = model.hf_config.get(key, fallback)
        if isinstance(value, bool) or not isinstance(value, int) or not (
                0 <= value < model.cfg.vocab_size):
            raise UserError(f"--hf {args.hf!r}: config.json {key} is {value!r}, not a token id "
                            f"below vocab_size {model.cfg.vocab_size}")
        special[key] = value
    _check_input_fits("seq2seq", model.cfg, {"params": model.params}, args.beam,
                      model.cfg.n_ctx, f"--beam {args.beam}, decoding up to the model's "
                      f"n_ctx={model.cfg.n_ctx} tokens,")
    hypotheses = seq2seq_beam_hypotheses(
        model.params, model.cfg, ids, beam_width=args.beam, length_penalty=args.length_penalty,
        start_id=special["decoder_start_token_id"], eos_id=special["eos_token_id"])
    hypotheses = hypotheses[: args.show or 1]
    _print_hypotheses(args, {"hf": args.hf}, hypotheses,
                      [_hf_text(tokenizer, h.ids) for h in hypotheses])


HF_COMMANDS = {"generate": hf_generate, "score": hf_score, "next": hf_next, "fill": hf_fill,
               "seq2seq": hf_seq2seq}


VOCAB_FILE = "minillm_vocab.json"
# The config.json key export writes the checkpoint's objective under, and the objective import
# gives a folder without it: what a Hugging Face model of that architecture was pre-trained for
# (BART: denoising, BART's text infilling).
OBJECTIVE_KEY = "minillm_objective"
IMPORTED_OBJECTIVE = {"gpt2": "clm", "openai-gpt": "clm", "bert": "mlm", "bart": "bart"}
# The largest vocabulary file import reads: every character of Unicode and 200 pairs fit in
# a few MB.
MAX_VOCAB_FILE_BYTES = 64 << 20


def _in_the_way(path):
    """What stops ``path`` from being a folder when the system says "File exists" or "Not a
    directory": the first part of it that is there but is no folder, in words; or None."""
    import pathlib

    parts = pathlib.PurePath(path)
    for part in [*reversed(parts.parents), parts]:
        if str(part) in (".", parts.anchor) or not os.path.lexists(part):
            continue
        if os.path.islink(part) and not os.path.isdir(part):
            return f"{str(part)!r} is a link to {os.readlink(part)!r}, which is no folder"
        if not os.path.isdir(part):
            return f"{str(part)!r} is a file, not a folder"
    return None


def _make_folder(folder, what):
    """Create ``folder`` (and its parents) if needed; an error names ``what`` it is."""
    if not folder:
        return
    try:
        os.makedirs(folder, exist_ok=True)
    except (OSError, RecursionError) as err:  # a file in the way, no permission, too deep
        reason = (_in_the_way(folder) or getattr(err, "strerror", None)
                  or "the path is too deep")
        raise UserError(f"{what} {folder!r} cannot be made: {reason}") from None


def _check_out(path, what):
    """Before long work whose result goes to ``path``: its folder exists (or is made) and
    takes a new file, and ``path`` is a file or a new name (a symlink is followed)."""
    from . import safetensors

    _make_folder(os.path.dirname(path), f"{what} {path!r}: its folder")
    safetensors.check_writable(path)


def _caption_model(path, fused):
    """The (params, cfg) of a caption checkpoint: a fused one (fusion prefix or cross), or
    the text-only baseline (fusion none)."""
    flag = "--checkpoint" if fused else "--text-only"
    cfg, _, tokenizer, state = _load(path, "caption", flag)
    if fused and cfg.fusion == "none":
        raise UserError(f"--checkpoint {path!r} holds the text-only baseline (--fusion none), "
                        "which never reads the picture: give it as --text-only")
    if not fused and cfg.fusion != "none":
        raise UserError(f"--text-only {path!r} reads the picture (--fusion {cfg.fusion}): give "
                        "a checkpoint of train --objective caption --fusion none")
    return (state["params"], cfg), tokenizer, flag


def cmd_caption(args):
    """A fresh picture, its caption and answers by the fused model, the truth and the text-only
    model beside them; the slot accuracy of both on --pictures more pictures, and chance."""
    import json

    import numpy as np

    from .multimodal import answers, compare_slot_accuracy, greedy_caption
    from .pictures import (CAPTION_QUESTION, QUESTIONS, enlarged, sample_pictures,
                           terminal_blocks, write_png)
    from .tokenizer import pad

    from .memory import BYTES_PER_PICTURE, check_fits

    for flag, path in (("--png", args.png), ("--json", args.json)):
        if path is not None:
            _check_out(path, flag)
    check_fits(args.pictures * BYTES_PER_PICTURE, f"--pictures {args.pictures}")
    fused, tokenizer, _ = _caption_model(args.checkpoint, fused=True)
    text_only = None
    if os.path.exists(args.text_only) or args.text_only != run_path("caption_text"):
        text_only, text_tokenizer, _ = _caption_model(args.text_only, fused=False)
        if text_tokenizer.vocab != tokenizer.vocab:
            raise UserError(f"--text-only {args.text_only!r} has another vocabulary than "
                            f"--checkpoint {args.checkpoint!r}")
    seed = args.seed if args.seed is not None else int(np.random.SeedSequence().entropy % 2**31)
    rng = np.random.default_rng(seed)
    (picture,) = sample_pictures(rng, 1)
    print(f"a fresh picture (--seed {seed}):")
    print(terminal_blocks(picture.image))
    if args.png is not None:
        write_png(args.png, enlarged(picture.image, 8))
        print(f"written to {args.png}")
    rows = [(CAPTION_QUESTION, picture.caption, [greedy_caption(*m, tokenizer, picture.image)
                                                 for m in (fused, text_only) if m is not None])]
    for question, truth in picture.questions():
        said = [answers(*m, tokenizer, picture.image[None], question)[0]
                for m in (fused, text_only) if m is not None]
        rows.append((question, truth, said))
    print(f"\n{pad('question', 18)}{pad('fused model', 32)}{pad('truth', 32)}text-only model")
    for question, truth, said in rows:
        other = said[1] if text_only is not None else "(no --text-only model)"
        print(f"{pad(question, 18)}{pad(said[0], 32)}{pad(truth, 32)}{other}")
    numbers = compare_slot_accuracy(fused, text_only, tokenizer,
                                    sample_pictures(rng, args.pictures))
    print(f"\nslot accuracy on {args.pictures} more fresh pictures (chance: the grammar's most "
          "likely answer, what a model that never reads the picture scores, on the same "
          "pictures):")
    print(f"    {'slot':<10}{'fused':>8}{'text-only':>11}{'chance':>8}")
    by_slot = numbers["by_slot"]
    for slot in (*QUESTIONS, "mean"):
        if slot == "mean":
            values = [numbers["slot_accuracy"]["fused"], numbers["slot_accuracy"]["text_only"],
                      numbers["chance"]]
        else:
            values = [by_slot["fused"][slot],
                      None if text_only is None else by_slot["text_only"][slot],
                      by_slot["chance"][slot]]
        cells = "".join(f"{'—' if v is None else f'{v:.3f}':>{w}}"
                        for v, w in zip(values, (8, 11, 8)))
        print(f"    {slot:<10}{cells}")
    if args.json is not None:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({**numbers, "seed": seed}, f, ensure_ascii=False, indent=1)


def cmd_export(args):
    import json

    from . import hf, safetensors
    from .hf_tokenizers import HF_TOKENIZER_FILES, save_minillm_tokenizer
    from .objectives import get_objective
    from .tokenizer import BOS_ID, EOS_ID, PAD_ID

    if not os.path.exists(args.checkpoint):
        raise UserError(f"checkpoint {args.checkpoint!r} does not exist")
    if not args.folder.strip():
        raise UserError("folder is empty: name the folder to write")
    model_cfg, train_cfg, tokenizer, state = _read_checkpoint(args.checkpoint, "checkpoint")
    arch = hf.arch_of(get_objective(train_cfg.objective).MODEL, model_cfg)
    if arch is None:
        raise UserError(f"checkpoint {args.checkpoint!r} holds a model of --objective "
                        f"{train_cfg.objective}, which no Hugging Face architecture computes")
    model = hf.from_minillm(arch, model_cfg, state["params"],
                            special={"pad": PAD_ID, "bos": BOS_ID, "eos": EOS_ID})
    # The model's job travels with it: import labels the checkpoint with it again (JOBS).
    # transformers keeps a config key it does not know as an attribute of the config.
    model.hf_config[OBJECTIVE_KEY] = train_cfg.objective
    tensors = hf.float32_tensors(model)  # refused here if float32 cannot hold them
    # The folder and its files are checked before any is written: each a new name or a
    # regular file (a FIFO, a device or a folder in their place is refused, not replaced).
    _make_folder(args.folder, "folder")
    for name in ("config.json", "model.safetensors", VOCAB_FILE, *HF_TOKENIZER_FILES):
        safetensors.check_writable(os.path.join(args.folder, name))
    if tokenizer is None and os.path.exists(os.path.join(args.folder, VOCAB_FILE)):
        # It would stay beside a model it does not belong to, and import would read it.
        raise UserError(f"folder {args.folder!r} holds a {VOCAB_FILE}, and the checkpoint (of "
                        "token ids only) has none to replace it with: choose another folder")
    hf.save(model, args.folder, tensors)
    written = "config.json, model.safetensors"
    if tokenizer is not None:  # None: a checkpoint of token ids only, imported without one
        text = json.dumps(tokenizer.to_dict(), ensure_ascii=False, indent=1)
        safetensors.write_atomically(os.path.join(args.folder, VOCAB_FILE),
                                     [text.encode("utf-8")])
        # The same tokenizer for transformers: AutoTokenizer gives minillm's ids.
        save_minillm_tokenizer(tokenizer, args.folder)
        written += f", {VOCAB_FILE}, {', '.join(HF_TOKENIZER_FILES)}"
    folder = args.folder.rstrip(os.sep) or args.folder
    print(f"wrote {arch} to {folder}{os.sep} ({written})")


def cmd_import(args):
    import numpy as np

    from . import hf
    import reprlib

    from .checkpoint import save_checkpoint, tokenizer_from_description
    from .files import read_json
    from .objectives import get_objective
    from .optim import adamw_init
    from .config import TrainConfig

    vocab = os.path.join(args.folder, VOCAB_FILE)
    if not os.path.exists(os.path.join(args.folder, "config.json")):
        what = "is not a folder" if not os.path.isdir(args.folder) else "has no config.json"
        raise UserError(f"folder {args.folder!r} {what}")
    # Every tensor checked against config.json, and every setting of config.json that minillm
    # would not compute refused (hf.COMPUTES), before anything is written.
    model = hf.load(args.folder)
    tokenizer, only = None, ""
    if os.path.exists(vocab):  # a folder minillm exported: its vocabulary, checked against V
        description = read_json(vocab, "the vocabulary file", MAX_VOCAB_FILE_BYTES)
        tokenizer = tokenizer_from_description(description, model.cfg.vocab_size, vocab,
                                               "the vocabulary")
    else:  # a folder transformers wrote: its vocabulary is its own tokenizer's, not minillm's
        only = f"; token ids only: the folder has no {VOCAB_FILE}"
    objective = model.hf_config.get(OBJECTIVE_KEY, IMPORTED_OBJECTIVE[model.arch])
    fits = [o for o in OBJECTIVES if get_objective(o).MODEL == hf.ARCH_MODEL[model.arch]]
    if objective not in fits:
        raise UserError(f"folder {args.folder!r}: config.json's {OBJECTIVE_KEY} "
                        f"{reprlib.repr(objective)} is not an objective of a {model.arch} model "
                        f"({', '.join(fits)})")
    params = {k: v.astype(np.float32) for k, v in model.params.items()}
    state = {"params": params, "opt": adamw_init(params), "step": 0, "history": [],
             "data_rng": np.random.default_rng([0, 1])}
    save_checkpoint(args.checkpoint, model.cfg, TrainConfig(objective=objective), tokenizer, state)
    print(f"wrote {args.checkpoint} ({model.arch} as a minillm {objective} model{only})")


# train's options that a checkpoint stores, where, and their defaults for a fresh run. --resume
# keeps the stored values and refuses any of these options given with another value.
STORED_SETTINGS = {
    "objective": ("train", "clm"), "steps": ("train", 300), "batch_size": ("train", 32),
    "lr": ("train", 3e-3), "seed": ("train", 0), "dtype": ("train", "float32"),
    "log_every": ("train", 25), "masking": ("train", "dynamic"), "pool": ("train", 0),
    "nsp": ("train", False), "plm_k": ("train", 6),
    "n_layer": ("model", 2), "n_embd": ("model", 64), "n_head": ("model", 4),
    "n_ctx": ("model", 32), "arch": ("model", "gpt2"), "fusion": ("model", "prefix"),
}


def _given_settings(args):
    """The stored settings the user gave on the command line (argparse leaves the others None)."""
    return {name for name in STORED_SETTINGS if getattr(args, name) is not None}


def _fill_defaults(args):
    for name, (_, default) in STORED_SETTINGS.items():
        if getattr(args, name) is None:
            setattr(args, name, default)


# The options that only some objectives read: --arch picks a clm run's GPT, --plm-k XLNet's
# partial prediction, --masking BERT's masks, --fusion how a caption model reads its picture,
# --pool a fixed set of grammar sentences (tasks and mix train on task pairs, caption on fresh
# pictures). Given with another objective they would be silently ignored, so they are refused,
# even at their defaults (which TrainConfig's rules cannot tell from a choice).
READ_ONLY_BY = {"arch": ("clm",), "plm_k": ("xlnet",), "masking": ("mlm", "span"),
                "fusion": ("caption",),
                "pool": ("clm", "mlm", "span", "t5", "bart", "xlnet", "elmo")}


def _refuse_unread(given, args, objective):
    """Refuse an option of READ_ONLY_BY given with an objective that does not read it."""
    for name, objectives in READ_ONLY_BY.items():
        if name in given and objective not in objectives:
            raise UserError(f"{_flag_setting(name, getattr(args, name))} needs --objective "
                            f"{_either(objectives)}, got --objective {objective}")


def _check_resume_options(args, given, out, model_cfg, train_cfg, state, source):
    """--resume continues a run with the settings stored in its checkpoint: an option given
    with another value is an error, whether or not that value is the default (it would be
    silently ignored), and the data must be the data the run started on, byte for byte
    (``source``: the path and SHA-256 of the --data file given now, or None)."""
    for name in sorted(given, key=list(STORED_SETTINGS).index):
        where, field = STORED_SETTINGS[name][0], name
        if name == "n_layer" and not hasattr(model_cfg, name):  # an encoder-decoder's --n-layer
            field = "n_enc_layer"
        stored = getattr(train_cfg if where == "train" else model_cfg, field)
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
    # The block counts: a GPT's or BERT's n_layer; an encoder-decoder's two stacks, which
    # --n-layer sets to the same count.
    stacks = {name: getattr(model_cfg, name) for name in ("n_layer", "n_enc_layer", "n_dec_layer")
              if hasattr(model_cfg, name)}
    if where == "options":
        what = (f"training with --batch-size {train_cfg.batch_size}, --n-ctx {model_cfg.n_ctx}, "
                f"--n-embd {model_cfg.n_embd} and --n-layer {max(stacks.values())}")
    else:
        layers = " and ".join(f"{name} {count}" for name, count in stacks.items())
        what = (f"{where}: training with its batch_size {train_cfg.batch_size}, n_ctx "
                f"{model_cfg.n_ctx}, n_embd {model_cfg.n_embd} and {layers}")
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
    from .models import MODELS, blocks
    from .options import OptionError
    from .config import TrainConfig
    from .data import packed_length

    # --n-layer blocks (an encoder-decoder: in the encoder, and as many in the decoder)
    shape = dict(n_ctx=args.n_ctx, n_embd=args.n_embd, n_head=args.n_head,
                 **blocks(objective.MODEL, args.n_layer))
    if objective.MODEL == "gpt":
        shape["arch"] = args.arch  # GPT-2's blocks or GPT-1's
    if objective.MODEL == "caption":
        shape["fusion"] = args.fusion  # the picture's tokens first, or attended to
    if objective.MODEL == "elmo":
        del shape["n_head"]  # LSTMs, no attention
    try:
        train_cfg = TrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                                min_lr=args.lr / 10, seed=args.seed, dtype=args.dtype,
                                log_every=args.log_every, objective=args.objective,
                                masking=args.masking, pool=args.pool, nsp=args.nsp,
                                plm_k=args.plm_k)
        train_cfg.check_data(args.data)
        model_cfg = MODELS[objective.MODEL].config(vocab_size=1, **shape)
        packed_length(train_cfg, model_cfg.n_ctx)  # t5 and mix: n_ctx within the sentinels
    except OptionError as err:
        raise UserError(err.render(_flag_setting)) from None
    return train_cfg, model_cfg


def cmd_train(args, threads=None):
    import dataclasses

    from .objectives import get_objective
    from .tokenizer import Tokenizer
    from .config import TASK_OBJECTIVES
    from .data import make_data
    from .models import ContextTooShort
    from .train import TrainingInterrupted, train

    given = _given_settings(args)
    _fill_defaults(args)
    for flag, value in (("--out", args.out), ("--data", args.data)):
        if value is not None and not value.strip():
            raise UserError(f"{flag} is empty: name a file")
    objective = get_objective(args.objective)
    if "n_head" in given and objective.MODEL == "elmo":
        raise UserError("--n-head: --objective elmo trains LSTMs, which have no attention heads")
    out = args.out or run_path(args.objective)
    if not args.resume:  # every rule on the options is checked before the data is read
        _refuse_unread(given, args, args.objective)
        train_cfg, model_cfg = _configs_from_options(args, objective)
    documents = source = None
    if args.data is not None:
        from .corpus import read_corpus_file

        from .corpus import CORPUS_BYTES_PER_BYTE, MAX_CORPUS_BYTES
        from .memory import check_fits

        try:
            size = os.stat(args.data).st_size
        except OSError as err:
            reason = (_in_the_way(os.path.dirname(args.data)) if err.errno == errno.ENOTDIR
                      else None) or err.strerror
            raise UserError(f"--data: corpus file {args.data!r}: {reason}") from None
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
        _refuse_ids_only(tokenizer, out, "--out")
        _refuse_unread(given, args, train_cfg.objective)
        if "n_head" in given and not hasattr(model_cfg, "n_head"):
            raise UserError(f"--n-head: {out!r} holds an ELMo, whose LSTMs have no attention heads")
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
            if objective.MODEL == "caption":  # and the words of the pictures' questions
                from .pictures import caption_tokenizer

                tokenizer = caption_tokenizer()
        model_cfg = dataclasses.replace(model_cfg, vocab_size=len(tokenizer))
        _check_memory(model_cfg, train_cfg, objective, "options")
        state = None
    _check_out(out, "--out")  # now, not after the training
    data = make_data(train_cfg, model_cfg, tokenizer, documents, name=args.data, source=source)
    try:
        state = train(model_cfg, train_cfg, data, tokenizer, state=state, checkpoint=out,
                      checkpoint_every=args.checkpoint_every, log=lambda s: print(s, flush=True),
                      threads=threads)
    except TrainingInterrupted as err:  # main() prints how to resume: the command, pasteable
        err.resume = _resume_command(out, source["path"] if source else None)
        raise
    except ContextTooShort as err:  # a training sequence longer than the model's positions
        where = f"{out!r}'s n_ctx" if args.resume else "--n-ctx"
        raise UserError(f"{where} {err.n_ctx} is too short for this training data: a batch "
                        f"holds a sequence of {err.length} tokens; train with an --n-ctx of at "
                        "least that (a later batch may hold a longer one)") from None
    print(f"checkpoint written to {out}")
    if train_cfg.nsp:
        import numpy as np

        from .objectives.mlm import nsp_accuracy

        held_out = np.random.default_rng([train_cfg.seed, 3])  # not the training draws
        accuracy = nsp_accuracy(state["params"], model_cfg, data, tokenizer, train_cfg, held_out)
        print(f"next-sentence prediction: {accuracy:.0%} of 400 held-out pairs right "
              "(chance: 50%)")
    # A text to try the model on: the tutorial's, or for a --data run one made of the words of
    # the file's first document (the tutorial's words may not be in its vocabulary).
    words = None if documents is None else tokenizer.tokenize(documents[0])
    try_it = f"try: python -m minillm {{}} --checkpoint {shlex.quote(out)} {{}}"
    if objective.MODEL == "gpt":
        text = "今天" if words is None else _example_text(words, None)
        print(try_it.format("generate", shlex.quote(text)))
    elif objective.MODEL in ("bert", "xlnet"):
        text = "今天[MASK]很好" if words is None else _example_text(words, "[MASK]")
        print(try_it.format("fill", shlex.quote(text)))
    elif objective.MODEL == "elmo":  # its backward LM reads the text as a whole sentence
        text = "今天[MASK]很好。" if words is None else _example_text(words, "[MASK]")
        print(try_it.format("fill", shlex.quote(text)))
    elif objective.MODEL == "caption" and model_cfg.fusion == "none":  # the baseline
        print(try_it.replace("--checkpoint", "--text-only").format("caption", "--png picture.png"))
    elif objective.MODEL == "caption":  # a fresh picture, its caption and answers
        print(try_it.format("caption", "--png picture.png"))
    elif train_cfg.objective in TASK_OBJECTIVES:
        print(try_it.format("seq2seq", shlex.quote("总结：今天天气很好，我们去公园玩。")))
    elif train_cfg.objective == "t5":  # it learned span corruption, not the tasks
        grammar_text = ("今天<extra_id_0>很好，我们去公园玩。今天我们去图书馆看书了。"
                        "周末天气不好，我们去商店买东西。明天天气不错，小明<extra_id_1>")
        text = grammar_text if words is None else _example_text(words, "<extra_id_0>")
        print(try_it.format("seq2seq", shlex.quote(text)) + " (it prints the missing words; "
              "walkthrough.md, T5, says why the text is long)")
    else:  # bart: it learned to rewrite corrupted text whole
        text = "今天[MASK]很好，我们去公园玩。" if words is None else _example_text(words, "[MASK]")
        print(try_it.format("seq2seq", shlex.quote(text)))


def _example_text(words, blank):
    """A text to try a model on, made of the words of its own data: the first word alone
    (``blank`` None), or the first six with the second one replaced by ``blank``."""
    if blank is None:
        return words[0]
    words = words[:6]
    return "".join([words[0], blank, *words[2:]])


def _check_top_p(args):
    if args.top_p is not None and not 0 < args.top_p <= 1:
        raise UserError(f"--top-p must be in (0, 1], got {args.top_p}")


def cmd_generate(args):
    import numpy as np

    from .generate import generate
    from .tokenizer import EOS_ID

    _check_top_p(args)
    model_cfg, _, tokenizer, state = _load(args.checkpoint, "generate")
    _refuse_mask(args.prompt, "prompt")
    prompt_ids, unknown = _encode(tokenizer, args.prompt)
    if len(prompt_ids) + 1 >= model_cfg.n_ctx:
        raise UserError(f"prompt of {len(prompt_ids)} tokens leaves no room in the model's "
                        f"context of n_ctx={model_cfg.n_ctx}")
    longest = min(model_cfg.n_ctx, len(prompt_ids) + 1 + args.max_new_tokens)
    _check_input_fits("gpt", model_cfg, state, 1, longest, f"generating up to {longest} tokens")
    _warn_unknown(unknown, args.checkpoint)
    rng = np.random.default_rng(args.seed)
    cut = 0  # samples that generate() stopped at the context length
    for _ in range(args.samples):
        new = generate(state["params"], model_cfg, prompt_ids, args.max_new_tokens, rng,
                       temperature=args.temperature, top_k=args.top_k, top_p=args.top_p)
        print(args.prompt + tokenizer.decode(new, skip_special=True))
        cut += len(new) < args.max_new_tokens and new[-1] != EOS_ID
    if cut:
        which = "generation" if args.samples == 1 else f"{cut} of the {args.samples} samples"
        n = len(prompt_ids)
        _warn(f"{which} stopped at the model's context length n_ctx={model_cfg.n_ctx} ([BOS] + "
              f"{n} prompt token{'s' * (n != 1)} + {model_cfg.n_ctx - 1 - n} new), before "
              f"--max-new-tokens {args.max_new_tokens} or [EOS]")


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
    if argv[:1] == ["compare"]:
        from .compare import main as compare_main

        return compare_main(argv[1:])
    if argv[:1] == ["scale"]:
        from .scale import main as scale_main

        return scale_main(argv[1:])
    if argv[:1] == ["combine"]:
        from .combine import main as combine_main

        return combine_main(argv[1:])
    if argv[:1] == ["align"]:
        from .align import main as align_main

        return align_main(argv[1:])
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

            for objective in DEMO_OBJECTIVES:  # before any training, not after it
                _check_out(run_path(objective), "the demo's model")
            run_demo(threads=blas.adaptive_threads)
        elif args.command == "train":
            cmd_train(args, threads=blas.adaptive_threads())
        elif args.command in ("generate", "score", "next", "fill", "seq2seq", "caption"):
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
    except OSError as err:
        if err.filename is None:  # one of ours: its message is the whole line
            print(f"minillm: error: {err}", file=sys.stderr)
        else:  # the system's, not foreseen above: the path and the reason, without [Errno N]
            print(f"minillm: error: {err.filename!r}: {err.strerror}", file=sys.stderr)
        return 2
    except (UserError, ValueError) as err:
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

    commands = {"generate": cmd_generate, "score": cmd_score, "next": cmd_next,
                "fill": cmd_fill, "seq2seq": cmd_seq2seq, "caption": cmd_caption}
    if args.hf is not None:
        commands = HF_COMMANDS
    try:
        with np.errstate(all="ignore"):
            commands[args.command](args)
    except NonFiniteOutput:
        if args.hf is not None:
            raise UserError(f"--hf {args.hf!r}: the model's output is not finite for this "
                            "input") from None
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
