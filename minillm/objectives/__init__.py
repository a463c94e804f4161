"""One small module per pre-training objective of the tutorial.

Each builds training examples from token ids and defines its loss; the training loop in
train.py is the same for all of them. An objective module provides:

    NAME, TITLE, MODEL, MODEL_TITLE    its name, a one-line description, the model family it trains
    training_batch(examples, indices, rng, tokenizer, train_cfg, n_ctx=None) -> batch
                                       (n_ctx: the model's context, for corruptions that lengthen)
    loss(params, cfg, batch, reduction) -> (L, n_predicted, cache), cache["logits"] the logits
    backward(cache) -> grads, dL/dθ for every parameter
    loss_and_grads(params, cfg, batch, reduction) -> (L, n_predicted, grads)

    clm       next-token prediction (GPT), the tutorial's section 1 and its math section
    mlm       masked language modeling (BERT; 15%, 80/10/10; static or dynamic masking)
    span      masked language modeling with SpanBERT's span masking (the tutorial's "PLM" row)
    t5        T5's span corruption (encoder-decoder)
    bart      BART's text infilling (encoder-decoder)
    tasks     text-to-text tasks: 总结 / 翻译 / 问 (encoder-decoder)
    mix       tasks and span corruption together: T5's unified framework
    xlnet     permutation language modeling (XLNet): a random factorization order, two streams
    elmo      ELMo's biLM: a forward and a backward LSTM language model (elmo.py)
    caption   next-token prediction after a picture: GPT-4's 多模态融合 (multimodal.py)
"""

import importlib
import os

# Where a run of each objective is kept unless told otherwise: ``train`` writes there, the demo
# leaves its three models there, and each command of the command line reads its default
# checkpoint from there (cli.JOBS). One file per objective, so that no run replaces a model
# trained for another job.
RUNS = "runs"


def run_path(name):
    """runs/<objective>.safetensors: where a run of objective ``name`` is kept by default."""
    return os.path.join(RUNS, f"{name}.safetensors")

# objective name -> the module that implements it (span masking is a setting of mlm.py)
_REGISTRY = {"clm": "clm", "mlm": "mlm", "span": "mlm",
             "t5": "seq2seq", "bart": "seq2seq", "tasks": "seq2seq", "mix": "seq2seq",
             "xlnet": "xlnet", "elmo": "elmo", "caption": "caption"}


def get_objective(name):
    """The objective module for a name, or a ValueError listing the names there are."""
    if name not in _REGISTRY:
        raise ValueError(f"objective must be one of {sorted(_REGISTRY)}, got {name!r}")
    return importlib.import_module(f".{_REGISTRY[name]}", __name__)


# Where one module trains several objectives, what sets each apart: training's first line
# (through title) must say which one runs.
_VARIANTS = {"span": " with SpanBERT's span masking", "t5": ": T5's span corruption",
             "bart": ": BART's text infilling", "mix": ": the tasks and T5's span corruption"}


def title(name):
    """How objective ``name`` is named in training's first line: its module's TITLE, and the
    variant ("masked language modeling with SpanBERT's span masking")."""
    return get_objective(name).TITLE + _VARIANTS.get(name, "")


# model family (models.MODELS) -> the module whose loss trains it: hf.py and bench.py compute
# a model's loss and gradients through it, so each model's forward, loss and backward are
# called in one place.
_MODULE_OF_MODEL = {"gpt": "clm", "bert": "mlm", "seq2seq": "seq2seq", "xlnet": "xlnet",
                    "elmo": "elmo", "caption": "caption"}


def objective_of_model(model):
    """The objective module that trains the model family ``model`` ("gpt", "bert", "seq2seq")."""
    return importlib.import_module(f".{_MODULE_OF_MODEL[model]}", __name__)
