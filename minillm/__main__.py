"""The command line: ``python -m minillm [command] [options]``.

    (no command)   the demo: train tiny models and answer the tutorial's examples
    train          train a GPT on the built-in grammar or on your own text file
    generate       continue a prompt with a trained GPT
    score          the tutorial's formula on one text: log P(w_t | w_<t) step by step

A user error (a bad option, a missing file, a malformed input) prints one line starting with
``minillm: error:`` and exits with status 2; there is no traceback.
"""

from __future__ import annotations

import argparse
import os
import sys

DEFAULT_CHECKPOINT = os.path.join("runs", "gpt.safetensors")


class UserError(Exception):
    """An error in what the user asked for: printed as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UserError(f"{message} (see '{self.prog} --help')")


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


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
        "written by hand in NumPy. With no command, runs the demo: it trains a tiny GPT on "
        "the built-in grammar (a few seconds) and shows its prediction for the tutorial's "
        "example 今天天气很好，我们去 -> 公园 beside the true probabilities.",
    )
    sub = parser.add_subparsers(dest="command", metavar="command", parser_class=_Parser)

    sub.add_parser("demo", help="run the demo (the same as no command)",
                   description="Train a tiny GPT on the built-in grammar and print the "
                   "tutorial's example with the model's and the true probabilities.")

    t = sub.add_parser(
        "train", help="train a GPT with next-token prediction",
        description="Train a GPT with next-token prediction, L = -Σ log P(w_i | w_<i). The "
        "data is the built-in grammar unless --data names a UTF-8 text file (one document "
        "per line). Progress lines show the loss in nats per token (and, on the grammar, the "
        "entropy floor). The checkpoint (a safetensors file) is written to --out.",
    )
    t.add_argument("--data", metavar="FILE",
                   help="a UTF-8 text file, one document per line (default: the built-in "
                   "grammar); the vocabulary is built from its characters")
    t.add_argument("--out", default=DEFAULT_CHECKPOINT, metavar="FILE",
                   help=f"checkpoint to write (default: {DEFAULT_CHECKPOINT})")
    t.add_argument("--resume", action="store_true",
                   help="continue from the checkpoint at --out instead of starting afresh")
    t.add_argument("--steps", type=_positive_int, default=300, help="optimizer steps (default 300)")
    t.add_argument("--batch-size", type=_positive_int, default=32,
                   help="sequences per step (default 32)")
    t.add_argument("--lr", type=_non_negative_float, default=3e-3,
                   help="peak learning rate after warm-up (default 3e-3)")
    t.add_argument("--seed", type=int, default=0, help="seed for parameters and data (default 0)")
    t.add_argument("--n-layer", type=_positive_int, default=2, help="blocks (default 2)")
    t.add_argument("--n-embd", type=_positive_int, default=64, help="model width C (default 64)")
    t.add_argument("--n-head", type=_positive_int, default=4,
                   help="attention heads; must divide --n-embd (default 4)")
    t.add_argument("--n-ctx", type=_positive_int, default=32,
                   help="longest sequence in tokens, [BOS] included (default 32)")
    t.add_argument("--dtype", choices=("float32", "float64"), default="float32",
                   help="parameter dtype (default float32)")
    t.add_argument("--log-every", type=_positive_int, default=25,
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
    g.add_argument("--seed", type=int, default=0, help="seed for sampling (default 0)")

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
    return parser


def _load_gpt(path):
    from .train import load_checkpoint

    if not os.path.exists(path):
        raise UserError(f"--checkpoint {path!r} does not exist; "
                        "train one first with: python -m minillm train")
    return load_checkpoint(path)


def cmd_score(args):
    import math

    from .grammar import END, default_grammar
    from .objectives import clm

    model_cfg, _, tokenizer, state = _load_gpt(args.checkpoint)
    if not args.text:
        raise UserError("text must not be empty")
    ids = tokenizer.encode(args.text)
    if len(ids) + 1 > model_cfg.n_ctx:
        raise UserError(f"text of {len(ids)} tokens (+[EOS]) is longer than the model's "
                        f"n_ctx={model_cfg.n_ctx}")
    total, per_step = clm.log_prob(state["params"], model_cfg, ids, add_eos=True)
    grammar = default_grammar()
    truth = tokenizer.vocab == grammar.tokenizer().vocab
    words = [tokenizer.vocab[i] for i in ids] + ["[EOS]"]
    print(f"{'t':>3}  {'w_t':<8}{'model P(w_t | w_<t)':>22}" + (f"{'true P':>10}" if truth else ""))
    for t, (word, lp) in enumerate(zip(words, per_step), 1):
        line = f"{t:>3}  {word:<{8 - sum(ord(c) > 0x2E7F for c in word)}}{math.exp(lp):>22.4f}"
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


def cmd_train(args):
    from .grammar import default_grammar
    from .models import GPTConfig
    from .tokenizer import Tokenizer
    from .train import GrammarData, TextData, TrainConfig, load_checkpoint, train

    if args.resume:
        if not os.path.exists(args.out):
            raise UserError(f"--resume: no checkpoint at --out {args.out!r}")
        model_cfg, train_cfg, tokenizer, state = load_checkpoint(args.out)
        print(f"resuming from {args.out} at step {state['step']}", flush=True)
    else:
        train_cfg = TrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                                min_lr=args.lr / 10, seed=args.seed, dtype=args.dtype,
                                log_every=args.log_every)
        state = None
    if args.data:
        from .corpus import read_text_corpus

        documents = read_text_corpus(args.data)
        if not args.resume:
            tokenizer = Tokenizer.from_text("\n".join(documents))
    elif not args.resume:
        tokenizer = default_grammar().tokenizer()
    if not args.resume:
        model_cfg = GPTConfig(vocab_size=len(tokenizer), n_ctx=args.n_ctx, n_embd=args.n_embd,
                              n_head=args.n_head, n_layer=args.n_layer)
    if args.data:
        data = TextData(documents, tokenizer, max_tokens=model_cfg.n_ctx - 1, name=args.data)
    else:
        data = GrammarData(default_grammar(), tokenizer)
    folder = os.path.dirname(args.out)
    if folder:
        os.makedirs(folder, exist_ok=True)
    train(model_cfg, train_cfg, data, tokenizer, state=state, checkpoint=args.out,
          checkpoint_every=args.checkpoint_every, log=lambda s: print(s, flush=True))
    print(f"checkpoint written to {args.out}")
    print(f"try: python -m minillm generate --checkpoint {args.out} \"今天\"")


def cmd_generate(args):
    import numpy as np

    from .generate import generate

    if args.top_p is not None and not 0 < args.top_p <= 1:
        raise UserError(f"--top-p must be in (0, 1], got {args.top_p}")
    model_cfg, _, tokenizer, state = _load_gpt(args.checkpoint)
    prompt_ids = tokenizer.encode(args.prompt)
    if len(prompt_ids) + 1 >= model_cfg.n_ctx:
        raise UserError(f"prompt of {len(prompt_ids)} tokens leaves no room in the model's "
                        f"context of n_ctx={model_cfg.n_ctx}")
    rng = np.random.default_rng(args.seed)
    for _ in range(args.samples):
        new = generate(state["params"], model_cfg, prompt_ids, args.max_new_tokens, rng,
                       temperature=args.temperature, top_k=args.top_k, top_p=args.top_p)
        print(args.prompt + tokenizer.decode(new, skip_special=True))


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.command in (None, "demo"):
            from .demo import run_demo

            run_demo()
        elif args.command == "train":
            cmd_train(args)
        elif args.command == "generate":
            cmd_generate(args)
        elif args.command == "score":
            cmd_score(args)
    except (UserError, ValueError, OSError) as err:
        print(f"minillm: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("minillm: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
