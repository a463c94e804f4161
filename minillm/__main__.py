"""The command line: ``python -m minillm [command] [options]``.

    (no command)   the demo: train tiny models and answer the tutorial's examples
    train          train a GPT on the built-in grammar or on your own text file
    generate       continue a prompt with a trained GPT

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
    return parser


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
    from .train import load_checkpoint

    if not os.path.exists(args.checkpoint):
        raise UserError(f"--checkpoint {args.checkpoint!r} does not exist; "
                        "train one first with: python -m minillm train")
    if args.top_p is not None and not 0 < args.top_p <= 1:
        raise UserError(f"--top-p must be in (0, 1], got {args.top_p}")
    model_cfg, _, tokenizer, state = load_checkpoint(args.checkpoint)
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
    except (UserError, ValueError, OSError) as err:
        print(f"minillm: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("minillm: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
