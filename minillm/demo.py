"""The demo: the tutorial's examples, answered by models trained here, beside the true answer.

``python -m minillm`` runs it, and leaves the trained models in runs/ for the other commands,
each as runs/<objective>.safetensors: clm, mlm and tasks, where generate, score and next, fill,
and seq2seq look by default.

Part 1, next-token prediction (the tutorial's section 1):

    输入: "今天天气很好，我们去"   输出: "公园"

A tiny GPT is trained on the built-in grammar for a few seconds; then its top-5 next words
after 今天天气很好，我们去 are printed beside the grammar's exact probabilities, and its final
loss beside the entropy floor that no model can go below.

Part 2, masked language modeling (section 2):

    原句: "今天天气很好"   掩码: "今天[MASK]很好"   预测: "天气"

A tiny BERT is trained with 15% masking (80/10/10) on the same grammar; its top-5 words for
the [MASK] are printed beside the true distribution of the hidden word.

Part 3, sequence to sequence (section 3):

    输入: "总结：今天天气很好，我们去公园玩。"   输出: "今天我们去公园玩了。"

A tiny encoder-decoder (BART's architecture) is trained on the grammar's text-to-text tasks
(总结 summary, 翻译 translation, 问 questions); its greedy outputs for the tutorial's input and
one input of each other task are printed beside the exact answers.
"""

from __future__ import annotations

import os

import numpy as np

from .generate import fill_mask_distributions, next_word_distribution
from .grammar import default_grammar
from .models import BertConfig, GPTConfig, Seq2SeqConfig
from .tokenizer import CLS_ID, SEP_ID, pad
from .checkpoint import save_checkpoint
from .objectives import run_path
from .config import TrainConfig
from .data import GrammarData
from .train import train

GPT_PROMPT = "今天天气很好，我们去"
BERT_TEXT = "今天[MASK]很好"
SEQ2SEQ_INPUTS = ("总结：今天天气很好，我们去公园玩。", "翻译：今天我们去公园玩了。",
                  "问：今天我们去公园玩了。谁去公园？")


def demo_gpt_config(vocab_size):
    """The demo's tiny GPT: 2 blocks of width 64, 4 heads."""
    return GPTConfig(vocab_size=vocab_size, n_ctx=32, n_embd=64, n_head=4, n_layer=2)


def demo_bert_config(vocab_size):
    """The demo's tiny BERT: the GPT's shape, post-LN and bidirectional."""
    return BertConfig(vocab_size=vocab_size, n_ctx=32, n_embd=64, n_head=4, n_layer=2)


def demo_seq2seq_config(vocab_size):
    """The demo's tiny encoder-decoder: one encoder and one decoder block of width 64."""
    return Seq2SeqConfig(vocab_size=vocab_size, n_ctx=48, n_embd=64, n_head=4, n_enc_layer=1,
                         n_dec_layer=1)


def _save(model_cfg, train_cfg, tokenizer, state, save):
    """Write the model where the commands that read it look: runs/<objective>.safetensors."""
    if not save:
        return None
    path = run_path(train_cfg.objective)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    save_checkpoint(path, model_cfg, train_cfg, tokenizer, state)
    return path


def top_words_table(tokenizer, model_probs, true_probs, k=5):
    """Rows (word, model P, true P) of the model's k most probable next tokens; true P is None
    throughout when ``true_probs`` is None (no known truth)."""
    order = np.argsort(-model_probs, kind="stable")[:k]
    rows = []
    for i in order:
        word = tokenizer.vocab[i]
        true_p = None if true_probs is None else float(true_probs.get(word, 0.0))
        rows.append((word, float(model_probs[i]), true_p))
    return rows


def print_table(rows, log=print, label="next word", ranks=None):
    """The rows of top_words_table, ranked 1, 2, ... (or by ``ranks``). Without a truth (every
    true P None) there is no true P column: a column of zeros would claim one."""
    truth = any(true_p is not None for _, _, true_p in rows)
    log(f"    {'rank':<5}{label:<10}{'model P':>9}" + (f"{'true P':>9}" if truth else ""))
    for rank, (word, model_p, true_p) in zip(ranks or range(1, len(rows) + 1), rows):
        log(f"    {rank:<5}{pad(word, 10)}{model_p:>9.3f}" + (f"{true_p:>9.3f}" if truth else ""))


def run_gpt_demo(train_cfg=None, log=print, save=False, threads=None):
    """Train the demo GPT and print the tutorial's example. Returns a dict of what it printed."""
    grammar = default_grammar()
    tokenizer = grammar.tokenizer()
    model_cfg = demo_gpt_config(len(tokenizer))
    train_cfg = train_cfg or TrainConfig()
    log("== 1. 语言建模: next-token prediction (GPT) ==")
    data = GrammarData(grammar, tokenizer)
    state = train(model_cfg, train_cfg, data, tokenizer, log=log, threads=threads)
    prompt_ids = tokenizer.encode(GPT_PROMPT)
    model_probs = next_word_distribution(state["params"], model_cfg, prompt_ids)
    true_probs = grammar.next_word_distribution(tokenizer.tokenize(GPT_PROMPT))
    rows = top_words_table(tokenizer, model_probs, true_probs)
    log("")
    log(f'  输入: "{GPT_PROMPT}"  ->  the model\'s top-5 next words, and the truth:')
    print_table(rows, log)
    final = float(np.mean(state["history"][-train_cfg.log_every:]))
    log(f"  final loss {final:.3f} nats/token; the source's entropy floor is "
        f"{data.floor:.3f} (no model can go below it)")
    path = _save(model_cfg, train_cfg, tokenizer, state, save)
    if path:
        log(f"  saved to {path}; try: python -m minillm score \"今天天气很好，我们去公园玩。\" or "
            "python -m minillm next \"今天天气不好，我们去\"")
    log("")
    return {"rows": rows, "final_loss": final, "floor": data.floor}


def run_bert_demo(train_cfg=None, log=print, save=False, threads=None):
    """Train the demo BERT with masked language modeling and fill 今天[MASK]很好."""
    grammar = default_grammar()
    tokenizer = grammar.tokenizer()
    model_cfg = demo_bert_config(len(tokenizer))
    train_cfg = train_cfg or TrainConfig(objective="mlm")
    log("== 2. 掩码语言建模: masked language modeling (BERT) ==")
    state = train(model_cfg, train_cfg, GrammarData(grammar, tokenizer), tokenizer, log=log,
                  threads=threads)
    ids = [CLS_ID, *tokenizer.encode(BERT_TEXT), SEP_ID]
    ((_, probs),) = fill_mask_distributions(state["params"], model_cfg, ids)
    true_probs = grammar.masked_word_distribution(tokenizer.tokenize(BERT_TEXT))
    rows = top_words_table(tokenizer, probs, true_probs)
    log("")
    log(f'  掩码: "{BERT_TEXT}"  ->  the model\'s top-5 words for [MASK], and the truth:')
    print_table(rows, log, label="word")
    path = _save(model_cfg, train_cfg, tokenizer, state, save)
    if path:
        log(f"  saved to {path}; try: python -m minillm fill \"明天[MASK]不错\"")
    log("")
    return {"rows": rows}


def run_seq2seq_demo(train_cfg=None, log=print, save=False, threads=None):
    """Train the demo encoder-decoder on the text-to-text tasks and answer the tutorial's 总结."""
    from .generate import seq2seq_greedy
    from .tokenizer import EOS_ID
    from .data import make_data

    grammar = default_grammar()
    tokenizer = grammar.tokenizer()
    model_cfg = demo_seq2seq_config(len(tokenizer))
    train_cfg = train_cfg or TrainConfig(objective="tasks", log_every=50)
    log("== 3. 序列到序列: sequence to sequence (an encoder-decoder, BART's architecture) ==")
    state = train(model_cfg, train_cfg, make_data(train_cfg, model_cfg, tokenizer), tokenizer,
                  log=log, threads=threads)
    log("")
    outputs = []
    for text in SEQ2SEQ_INPUTS:
        ids, _ = seq2seq_greedy(state["params"], model_cfg, [*tokenizer.encode(text), EOS_ID])
        output = tokenizer.decode(ids, skip_special=True)
        truth = grammar.task_answer(text)
        outputs.append((text, output, truth))
        log(f'  输入: "{text}"')
        log(f'  输出: "{output}"   (the exact answer: "{truth}")')
    path = _save(model_cfg, train_cfg, tokenizer, state, save)
    if path:
        log(f"  saved to {path}; try: python -m minillm seq2seq \"总结：明天天气不好，我们去商店买东西。\"")
    log("")
    return {"outputs": outputs}


def run_demo(log=print, save=True, threads=lambda: None):
    """The three parts in order. ``threads`` makes each training run's BLAS thread chooser
    (``blas.adaptive_threads``, as the command line passes), or None to leave BLAS alone."""
    run_gpt_demo(log=log, save=save, threads=threads())
    run_bert_demo(log=log, save=save, threads=threads())
    run_seq2seq_demo(log=log, save=save, threads=threads())
