"""Hugging Face checkpoints: read and write GPT-2, GPT-1 (transformers' openai-gpt), BERT and
BART, and compute what transformers computes, loss and gradients included.

    from minillm import hf
    model = hf.load(folder)                 # config.json + model.safetensors
    out = hf.forward_backward(model, case)  # loss, logits, grads under Hugging Face's names
    hf.save(model, folder)                  # a folder transformers' from_pretrained loads

Names and layouts. minillm stores every projection as (in, out) and fuses q, k, v into one
(C, 3C) matrix; GPT-2's Conv1D has the same layout, while BERT's and BART's nn.Linear store
(out, in) with q, k, v apart; GPT-1's Conv1D is GPT-2's, under GPT-2's block names. The tables
below list, per architecture, each minillm parameter and where it comes from. ``{l}`` is a
layer index. The kinds:

    copy       the same array
    T          transposed: nn.Linear's (out, in) -> (in, out)
    cat_T      several nn.Linear weights, transposed and put side by side (q | k | v)
    cat        several bias vectors, end to end
    row        a (1, V) buffer -> (V,)

Tied tensors are not in the files (GPT-2's lm_head, BERT's decoder weight and bias, BART's
embed_tokens and lm_head): each is the same array as one that is, and its gradient is folded in.
Files written elsewhere or by older versions name some tensors otherwise or hold copies and
buffers besides: ``canonical_tensors`` reads them into the tables' names.

Losses. ``forward_backward`` computes each model's loss the way Hugging Face defines it, which
is not minillm's own: a *mean* over predicted tokens (minillm's default is the tutorial's sum),
GPT-2 shifting its labels inside the loss (minillm shifts when it builds the batch), BERT adding
the next-sentence loss. The same cross-entropy function computes both (reduction="mean" here).
"""

from __future__ import annotations

import json
import os
import re
import reprlib
from dataclasses import dataclass

import numpy as np

from . import safetensors
from .files import read_json
from .layers import IGNORE_INDEX
from .models import MODELS, BertConfig, GPTConfig, Seq2SeqConfig, check_params
from .objectives import objective_of_model

# transformers' name of GPT-1 (OpenAIGPTLMHeadModel): a minillm GPT whose config has
# arch="gpt1" (arch_of).
GPT1_ARCH = "openai-gpt"
# Each Hugging Face architecture's minillm model family, and its table of parameter shapes.
ARCH_MODEL = {family.hf_arch: name for name, family in MODELS.items()
              if family.hf_arch is not None}  # ELMo and minillm's XLNet have no twin
ARCH_MODEL[GPT1_ARCH] = "gpt"
PARAM_SHAPES = {arch: MODELS[model].param_shapes for arch, model in ARCH_MODEL.items()}
# The largest config.json read: Hugging Face's are a few kilobytes.
MAX_CONFIG_BYTES = 1 << 20

# ----------------------------------------------------------------------------------------------
# The name tables: (minillm name, kind, Hugging Face name(s))

GPT2_TABLE = [
    ("wte", "copy", "transformer.wte.weight"),
    ("wpe", "copy", "transformer.wpe.weight"),
    ("ln_f.g", "copy", "transformer.ln_f.weight"),
    ("ln_f.b", "copy", "transformer.ln_f.bias"),
]
GPT2_BLOCK = [
    ("h.{l}.ln_1.g", "copy", "transformer.h.{l}.ln_1.weight"),
    ("h.{l}.ln_1.b", "copy", "transformer.h.{l}.ln_1.bias"),
    ("h.{l}.attn.c_attn.w", "copy", "transformer.h.{l}.attn.c_attn.weight"),
    ("h.{l}.attn.c_attn.b", "copy", "transformer.h.{l}.attn.c_attn.bias"),
    ("h.{l}.attn.c_proj.w", "copy", "transformer.h.{l}.attn.c_proj.weight"),
    ("h.{l}.attn.c_proj.b", "copy", "transformer.h.{l}.attn.c_proj.bias"),
    ("h.{l}.ln_2.g", "copy", "transformer.h.{l}.ln_2.weight"),
    ("h.{l}.ln_2.b", "copy", "transformer.h.{l}.ln_2.bias"),
    ("h.{l}.mlp.c_fc.w", "copy", "transformer.h.{l}.mlp.c_fc.weight"),
    ("h.{l}.mlp.c_fc.b", "copy", "transformer.h.{l}.mlp.c_fc.bias"),
    ("h.{l}.mlp.c_proj.w", "copy", "transformer.h.{l}.mlp.c_proj.weight"),
    ("h.{l}.mlp.c_proj.b", "copy", "transformer.h.{l}.mlp.c_proj.bias"),
]

# GPT-1 (transformers' OpenAIGPTLMHeadModel): its blocks are named as GPT-2's (GPT2_BLOCK), its
# embeddings otherwise, and it has no final layer norm.
OPENAI_GPT_TABLE = [
    ("wte", "copy", "transformer.tokens_embed.weight"),
    ("wpe", "copy", "transformer.positions_embed.weight"),
]

_BERT_L = "bert.encoder.layer.{l}."
BERT_TABLE = [
    ("wte", "copy", "bert.embeddings.word_embeddings.weight"),
    ("wpe", "copy", "bert.embeddings.position_embeddings.weight"),
    ("wtt", "copy", "bert.embeddings.token_type_embeddings.weight"),
    ("ln_e.g", "copy", "bert.embeddings.LayerNorm.weight"),
    ("ln_e.b", "copy", "bert.embeddings.LayerNorm.bias"),
    ("pool.w", "T", "bert.pooler.dense.weight"),
    ("pool.b", "copy", "bert.pooler.dense.bias"),
    ("mlm.dense.w", "T", "cls.predictions.transform.dense.weight"),
    ("mlm.dense.b", "copy", "cls.predictions.transform.dense.bias"),
    ("mlm.ln.g", "copy", "cls.predictions.transform.LayerNorm.weight"),
    ("mlm.ln.b", "copy", "cls.predictions.transform.LayerNorm.bias"),
    ("mlm.bias", "copy", "cls.predictions.bias"),
    ("nsp.w", "T", "cls.seq_relationship.weight"),
    ("nsp.b", "copy", "cls.seq_relationship.bias"),
]
BERT_BLOCK = [
    ("h.{l}.attn.c_attn.w", "cat_T", [_BERT_L + f"attention.self.{n}.weight"
                                      for n in ("query", "key", "value")]),
    ("h.{l}.attn.c_attn.b", "cat", [_BERT_L + f"attention.self.{n}.bias"
                                    for n in ("query", "key", "value")]),
    ("h.{l}.attn.c_proj.w", "T", _BERT_L + "attention.output.dense.weight"),
    ("h.{l}.attn.c_proj.b", "copy", _BERT_L + "attention.output.dense.bias"),
    ("h.{l}.ln_1.g", "copy", _BERT_L + "attention.output.LayerNorm.weight"),
    ("h.{l}.ln_1.b", "copy", _BERT_L + "attention.output.LayerNorm.bias"),
    ("h.{l}.mlp.c_fc.w", "T", _BERT_L + "intermediate.dense.weight"),
    ("h.{l}.mlp.c_fc.b", "copy", _BERT_L + "intermediate.dense.bias"),
    ("h.{l}.mlp.c_proj.w", "T", _BERT_L + "output.dense.weight"),
    ("h.{l}.mlp.c_proj.b", "copy", _BERT_L + "output.dense.bias"),
    ("h.{l}.ln_2.g", "copy", _BERT_L + "output.LayerNorm.weight"),
    ("h.{l}.ln_2.b", "copy", _BERT_L + "output.LayerNorm.bias"),
]

BART_TABLE = [
    ("wte", "copy", "model.shared.weight"),
    ("enc.wpe", "copy", "model.encoder.embed_positions.weight"),
    ("enc.ln_e.g", "copy", "model.encoder.layernorm_embedding.weight"),
    ("enc.ln_e.b", "copy", "model.encoder.layernorm_embedding.bias"),
    ("dec.wpe", "copy", "model.decoder.embed_positions.weight"),
    ("dec.ln_e.g", "copy", "model.decoder.layernorm_embedding.weight"),
    ("dec.ln_e.b", "copy", "model.decoder.layernorm_embedding.bias"),
    ("out_bias", "row", "final_logits_bias"),  # a buffer in transformers: no gradient there
]


def _bart_attention(ours, theirs):
    return [
        (ours + "c_attn.w", "cat_T", [theirs + f"{n}_proj.weight" for n in "qkv"]),
        (ours + "c_attn.b", "cat", [theirs + f"{n}_proj.bias" for n in "qkv"]),
        (ours + "c_proj.w", "T", theirs + "out_proj.weight"),
        (ours + "c_proj.b", "copy", theirs + "out_proj.bias"),
    ]


def _bart_block(side, cross):
    ours, theirs = f"{side}.h.{{l}}.", f"model.{'encoder' if side == 'enc' else 'decoder'}.layers.{{l}}."
    rows = _bart_attention(ours + "attn.", theirs + "self_attn.")
    rows += [(ours + "ln_1.g", "copy", theirs + "self_attn_layer_norm.weight"),
             (ours + "ln_1.b", "copy", theirs + "self_attn_layer_norm.bias")]
    if cross:
        x, hx = ours + "xattn.", theirs + "encoder_attn."
        rows += [
            (x + "c_q.w", "T", hx + "q_proj.weight"), (x + "c_q.b", "copy", hx + "q_proj.bias"),
            (x + "c_kv.w", "cat_T", [hx + "k_proj.weight", hx + "v_proj.weight"]),
            (x + "c_kv.b", "cat", [hx + "k_proj.bias", hx + "v_proj.bias"]),
            (x + "c_proj.w", "T", hx + "out_proj.weight"),
            (x + "c_proj.b", "copy", hx + "out_proj.bias"),
            (ours + "ln_x.g", "copy", theirs + "encoder_attn_layer_norm.weight"),
            (ours + "ln_x.b", "copy", theirs + "encoder_attn_layer_norm.bias"),
        ]
    rows += [
        (ours + "mlp.c_fc.w", "T", theirs + "fc1.weight"), (ours + "mlp.c_fc.b", "copy", theirs + "fc1.bias"),
        (ours + "mlp.c_proj.w", "T", theirs + "fc2.weight"), (ours + "mlp.c_proj.b", "copy", theirs + "fc2.bias"),
        (ours + "ln_2.g", "copy", theirs + "final_layer_norm.weight"),
        (ours + "ln_2.b", "copy", theirs + "final_layer_norm.bias"),
    ]
    return rows


BART_ENC_BLOCK = _bart_block("enc", cross=False)
BART_DEC_BLOCK = _bart_block("dec", cross=True)

# Parameters transformers keeps as buffers: loaded and saved, but given no gradient.
NO_GRAD = {"final_logits_bias"}


def name_table(arch, cfg):
    """The full table for a model: every row with {l} filled in for each layer."""
    def expand(rows, n_layer):
        out = []
        for layer in range(n_layer):
            for ours, kind, theirs in rows:
                fill = (lambda s: s.format(l=layer))
                out.append((fill(ours), kind,
                            [fill(t) for t in theirs] if isinstance(theirs, list) else fill(theirs)))
        return out

    if arch == "gpt2":
        return GPT2_TABLE[:2] + expand(GPT2_BLOCK, cfg.n_layer) + GPT2_TABLE[2:]
    if arch == GPT1_ARCH:
        return OPENAI_GPT_TABLE + expand(GPT2_BLOCK, cfg.n_layer)
    if arch == "bert":
        return BERT_TABLE[:5] + expand(BERT_BLOCK, cfg.n_layer) + BERT_TABLE[5:]
    if arch == "bart":
        return (BART_TABLE[:4] + expand(BART_ENC_BLOCK, cfg.n_enc_layer) + BART_TABLE[4:7]
                + expand(BART_DEC_BLOCK, cfg.n_dec_layer) + BART_TABLE[7:])
    raise ValueError(f"unknown architecture {arch!r}: expected 'gpt2', 'openai-gpt', 'bert' or "
                     "'bart'")


def arch_of(model, cfg):
    """The Hugging Face architecture of a minillm model of family ``model`` (models.MODELS)
    with config ``cfg``: the family's, except a GPT with GPT-1's blocks, transformers'
    openai-gpt."""
    if model == "gpt" and cfg.arch == "gpt1":
        return GPT1_ARCH
    return MODELS[model].hf_arch


def to_minillm(arch, cfg, hf_tensors):
    """Hugging Face tensors -> minillm's flat parameter dict (same dtype as the file)."""
    params, missing = {}, []
    for ours, kind, theirs in name_table(arch, cfg):
        names = theirs if isinstance(theirs, list) else [theirs]
        absent = [n for n in names if n not in hf_tensors]
        if absent:
            missing += absent
            continue
        arrays = [hf_tensors[n] for n in names]
        if kind == "copy":
            params[ours] = arrays[0].copy()
        elif kind == "T":
            params[ours] = np.ascontiguousarray(arrays[0].T)
        elif kind == "cat_T":
            params[ours] = np.concatenate([a.T for a in arrays], axis=1)
        elif kind == "cat":
            params[ours] = np.concatenate(arrays)
        elif kind == "row":
            params[ours] = arrays[0].reshape(-1).copy()
    if missing:
        raise ValueError(f"the checkpoint lacks {len(missing)} tensor(s) a {arch} model needs: "
                         + ", ".join(missing))
    return params


def to_hf(arch, cfg, params, keep=None):
    """minillm's parameters (or gradients) -> Hugging Face names and layouts.

    ``keep`` limits the result to those Hugging Face names (e.g. leave out buffers)."""
    out = {}
    for ours, kind, theirs in name_table(arch, cfg):
        a = params[ours]
        if kind == "copy":
            out[theirs] = a
        elif kind == "T":
            out[theirs] = np.ascontiguousarray(a.T)
        elif kind == "cat_T":
            for name, part in zip(theirs, np.split(a, len(theirs), axis=1)):
                out[name] = np.ascontiguousarray(part.T)
        elif kind == "cat":
            for name, part in zip(theirs, np.split(a, len(theirs))):
                out[name] = part
        elif kind == "row":
            out[theirs] = a.reshape(1, -1)
    if keep is not None:
        out = {k: v for k, v in out.items() if k in keep}
    return out


# ----------------------------------------------------------------------------------------------
# Files from elsewhere: other names for the same tensors

# Copies of a tensor under a second name, as (copy, the tensor it copies): the _tied_weights_keys
# of transformers' model classes. transformers ties them (tie_word_embeddings) and writes only
# the second; older files hold the copy too.
TIED_COPIES = {
    "gpt2": [("lm_head.weight", "transformer.wte.weight")],
    GPT1_ARCH: [("lm_head.weight", "transformer.tokens_embed.weight")],
    "bert": [("cls.predictions.decoder.weight", "bert.embeddings.word_embeddings.weight"),
             ("cls.predictions.decoder.bias", "cls.predictions.bias")],
    "bart": [("model.encoder.embed_tokens.weight", "model.shared.weight"),
             ("model.decoder.embed_tokens.weight", "model.shared.weight"),
             ("lm_head.weight", "model.shared.weight")],
}
# Buffers older files hold and transformers rebuilds instead of reading (its GPT-2 and BART list
# attn.bias and the version numbers among the keys to ignore): GPT-2's causal masks (attn.bias;
# masked_bias, the -1e4 older versions masked with), BERT's position and token type ids, the
# version numbers of fairseq's BART.
REBUILT_BUFFERS = {
    "gpt2": re.compile(r"transformer\.h\.\d+\.attn\.(bias|masked_bias)"),
    GPT1_ARCH: re.compile(r"transformer\.(h\.\d+\.attn\.bias|position_ids)"),
    "bert": re.compile(r"bert\.embeddings\.(position_ids|token_type_ids)"),
    "bart": re.compile(r"model\.(encoder|decoder)\.version"),
}
# The token embedding as a file saved from the model without its head (GPT2Model,
# OpenAIGPTModel) names it: such a file has no "transformer." prefix.
BASE_MODEL_NAME = {"gpt2": "wte.weight", GPT1_ARCH: "tokens_embed.weight"}
# The longest list of names a message shows.
SHOW_NAMES = 5


def _renamed(tensors, rename, where):
    """``tensors`` under ``rename(name)``; two names that become one are refused."""
    out = {}
    for name, value in tensors.items():
        new = rename(name)
        if new in out:
            raise ValueError(f"{where} holds the same tensor under two names ({new})")
        out[new] = value
    return out


def canonical_tensors(arch, tensors, where="model.safetensors"):
    """A file's tensors under the names of the tables above, whoever wrote it:

        GPT-2 files saved from GPT2Model    have no "transformer." prefix: it is added (and
        GPT-1's from OpenAIGPTModel         so for GPT-1's)
        older BERT files                    name LayerNorm's weight and bias gamma and beta:
                                            renamed, as transformers' own loader does
        older files                         hold REBUILT_BUFFERS: dropped; and TIED_COPIES:
                                            dropped once found equal to the tensor they copy

    A copy that differs from its tensor is refused: the file means something minillm (and
    transformers, which ties them anyway) would not compute.
    """
    if BASE_MODEL_NAME.get(arch) in tensors:
        tensors = _renamed(tensors, lambda n: n if n == "lm_head.weight" else "transformer." + n,
                           where)
    tensors = _renamed(tensors, lambda n: n.replace("LayerNorm.gamma", "LayerNorm.weight")
                       .replace("LayerNorm.beta", "LayerNorm.bias"), where)
    tensors = {n: v for n, v in tensors.items() if not REBUILT_BUFFERS[arch].fullmatch(n)}
    for copy, source in TIED_COPIES[arch]:
        if copy not in tensors:
            continue
        if source not in tensors:  # only the copy was written: it is the tensor
            tensors[source] = tensors.pop(copy)
        elif np.array_equal(tensors[copy], tensors[source]):
            del tensors[copy]
        else:
            raise ValueError(f"{where}: {copy} differs from {source}, which config.json ties it "
                             "to (tie_word_embeddings): the two cannot both be used")
    return tensors


def _listed(names):
    names = sorted(names)
    more = f" and {len(names) - SHOW_NAMES} more" if len(names) > SHOW_NAMES else ""
    return ", ".join(names[:SHOW_NAMES]) + more


# ----------------------------------------------------------------------------------------------
# Configs


# config.json settings that change what a model computes, with the one value minillm computes.
# A folder that sets another is refused: imported, it would silently compute something else.
# (The settings minillm computes either way are read by config_from_hf: GPT-2's n_inner and
# scale_attn_by_inverse_layer_idx, BART's decoder heads and width and scale_embedding.)
COMPUTES = {
    "gpt2": {"activation_function": "gelu_new", "scale_attn_weights": True,
             "add_cross_attention": False, "tie_word_embeddings": True},
    # GPT-1's afn "gelu" is transformers' gelu_new, the tanh form (modeling_openai.ACT_FNS),
    # as in GPT-1's own code; "gelu_new" itself is not one of its afn names.
    GPT1_ARCH: {"afn": "gelu", "tie_word_embeddings": True},
    "bert": {"hidden_act": "gelu", "position_embedding_type": "absolute", "is_decoder": False,
             "add_cross_attention": False, "tie_word_embeddings": True},
    "bart": {"activation_function": "gelu", "normalize_before": False,
             "add_final_layer_norm": False, "normalize_embedding": True,
             "tie_word_embeddings": True},
}


def config_from_hf(hf_config):
    """(arch, minillm config) from a transformers config.json dict."""
    arch = hf_config.get("model_type")
    for key, value in COMPUTES.get(arch, {}).items():
        if key in hf_config and hf_config[key] != value:
            raise ValueError(f"{arch} {key}={reprlib.repr(hf_config[key])} is not supported: "
                             f"minillm computes {key}={value!r}")
    if arch == "gpt2":
        return arch, GPTConfig(
            vocab_size=hf_config["vocab_size"], n_ctx=hf_config["n_positions"],
            n_embd=hf_config["n_embd"], n_head=hf_config["n_head"], n_layer=hf_config["n_layer"],
            n_inner=hf_config.get("n_inner"), ln_eps=hf_config.get("layer_norm_epsilon", 1e-5),
            # Read as transformers reads them: any true value (and null is false).
            scale_attn_by_inverse_layer_idx=bool(hf_config.get("scale_attn_by_inverse_layer_idx")))
    if arch == GPT1_ARCH:  # its feed-forward width is always 4C (modeling_openai.Block)
        return arch, GPTConfig(
            vocab_size=hf_config["vocab_size"], n_ctx=hf_config["n_positions"],
            n_embd=hf_config["n_embd"], n_head=hf_config["n_head"], n_layer=hf_config["n_layer"],
            ln_eps=hf_config.get("layer_norm_epsilon", 1e-5), arch="gpt1")
    if arch == "bert":
        return arch, BertConfig(
            vocab_size=hf_config["vocab_size"], n_ctx=hf_config["max_position_embeddings"],
            n_embd=hf_config["hidden_size"], n_head=hf_config["num_attention_heads"],
            n_layer=hf_config["num_hidden_layers"], n_inner=hf_config["intermediate_size"],
            n_types=hf_config.get("type_vocab_size", 2), ln_eps=hf_config.get("layer_norm_eps", 1e-12))
    if arch == "bart":
        return arch, Seq2SeqConfig(
            vocab_size=hf_config["vocab_size"], n_ctx=hf_config["max_position_embeddings"],
            n_embd=hf_config["d_model"], n_head=hf_config["encoder_attention_heads"],
            n_enc_layer=hf_config["encoder_layers"], n_dec_layer=hf_config["decoder_layers"],
            n_inner=hf_config["encoder_ffn_dim"], n_dec_head=hf_config["decoder_attention_heads"],
            n_dec_inner=hf_config["decoder_ffn_dim"],
            scale_embedding=bool(hf_config.get("scale_embedding")))
    raise ValueError(f"config.json model_type {arch!r} is not supported: "
                     "expected 'gpt2', 'openai-gpt', 'bert' or 'bart'")


def config_to_hf(arch, cfg, special=None):
    """A transformers config.json dict for a minillm config. ``special`` holds token ids."""
    s = {"bos": 2, "eos": 3, "pad": 0, **(special or {})}
    if arch in ("gpt2", GPT1_ARCH) and arch != arch_of("gpt", cfg):  # GPT-1 is not GPT-2
        raise ValueError(f"a GPT with arch={cfg.arch!r} is Hugging Face's "
                         f"{arch_of('gpt', cfg)!r}, not {arch!r}")
    if arch == "gpt2":
        return {"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"],
                "vocab_size": cfg.vocab_size, "n_positions": cfg.n_ctx, "n_embd": cfg.n_embd,
                "n_layer": cfg.n_layer, "n_head": cfg.n_head, "n_inner": cfg.n_inner,
                "activation_function": "gelu_new", "layer_norm_epsilon": cfg.ln_eps,
                "resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0,
                "scale_attn_weights": True, "tie_word_embeddings": True,
                "scale_attn_by_inverse_layer_idx": cfg.scale_attn_by_inverse_layer_idx,
                "bos_token_id": s["bos"], "eos_token_id": s["eos"]}
    if arch == GPT1_ARCH:
        # transformers' GPT-1 has neither setting: refused rather than written and ignored.
        if cfg.n_inner != 4 * cfg.n_embd or cfg.scale_attn_by_inverse_layer_idx:
            raise ValueError(f"openai-gpt computes a feed-forward width of 4 n_embd and no "
                             f"attention scaled by layer, got n_inner={cfg.n_inner} and "
                             f"scale_attn_by_inverse_layer_idx="
                             f"{cfg.scale_attn_by_inverse_layer_idx} for n_embd={cfg.n_embd}")
        return {"model_type": GPT1_ARCH, "architectures": ["OpenAIGPTLMHeadModel"],
                "vocab_size": cfg.vocab_size, "n_positions": cfg.n_ctx, "n_embd": cfg.n_embd,
                "n_layer": cfg.n_layer, "n_head": cfg.n_head, "afn": "gelu",
                "layer_norm_epsilon": cfg.ln_eps, "resid_pdrop": 0.0, "embd_pdrop": 0.0,
                "attn_pdrop": 0.0, "tie_word_embeddings": True,
                "bos_token_id": s["bos"], "eos_token_id": s["eos"]}
    if arch == "bert":
        return {"model_type": "bert", "architectures": ["BertForPreTraining"],
                "vocab_size": cfg.vocab_size, "hidden_size": cfg.n_embd,
                "num_hidden_layers": cfg.n_layer, "num_attention_heads": cfg.n_head,
                "intermediate_size": cfg.n_inner, "max_position_embeddings": cfg.n_ctx,
                "type_vocab_size": cfg.n_types, "hidden_act": "gelu", "layer_norm_eps": cfg.ln_eps,
                "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0,
                "pad_token_id": s["pad"], "tie_word_embeddings": True}
    if arch == "bart":
        return {"model_type": "bart", "architectures": ["BartForConditionalGeneration"],
                "vocab_size": cfg.vocab_size, "d_model": cfg.n_embd,
                "encoder_layers": cfg.n_enc_layer, "decoder_layers": cfg.n_dec_layer,
                "encoder_attention_heads": cfg.n_head, "decoder_attention_heads": cfg.n_dec_head,
                "encoder_ffn_dim": cfg.n_inner, "decoder_ffn_dim": cfg.n_dec_inner,
                "max_position_embeddings": cfg.n_ctx, "activation_function": "gelu",
                "scale_embedding": cfg.scale_embedding, "dropout": 0.0, "attention_dropout": 0.0,
                "activation_dropout": 0.0, "tie_word_embeddings": True,
                "pad_token_id": s["pad"], "bos_token_id": s["bos"], "eos_token_id": s["eos"],
                "decoder_start_token_id": s["bos"], "forced_eos_token_id": s["eos"]}
    raise ValueError(f"unknown architecture {arch!r}: expected 'gpt2', 'openai-gpt', 'bert' or "
                     "'bart'")


# ----------------------------------------------------------------------------------------------
# Load, save, compute


@dataclass
class HFModel:
    """A Hugging Face model held in minillm's form."""

    arch: str  # "gpt2", "openai-gpt", "bert" or "bart"
    cfg: object  # GPTConfig (arch "gpt2" or "gpt1"), BertConfig or Seq2SeqConfig
    params: dict  # minillm names and layouts
    hf_config: dict  # the config.json it came from (or will be saved as)


# Weight files transformers may write instead of one model.safetensors, and why minillm does
# not read them.
OTHER_WEIGHT_FILES = {
    "model.safetensors.index.json": "sharded weights (model.safetensors.index.json), which "
                                    "minillm does not read: save them as one file",
    "pytorch_model.bin": "only pytorch_model.bin, a pickle, which minillm does not read (loading "
                         "a pickle can run code): save the model with safe_serialization=True",
}


def load(folder):
    """Read ``folder/config.json`` and ``folder/model.safetensors``: a folder minillm wrote
    (``save``) or transformers' save_pretrained did, names of older files included
    (canonical_tensors). Every tensor of the file is used or accounted for: one that the model
    does not use is refused by name, as is a config.json setting minillm would not compute
    (COMPUTES)."""
    path = os.path.join(folder, "config.json")
    hf_config = read_json(path, "config file", MAX_CONFIG_BYTES)
    if not isinstance(hf_config, dict):
        raise ValueError(f"{path} holds a JSON {type(hf_config).__name__}, not an object")
    try:
        arch, cfg = config_from_hf(hf_config)
    except KeyError as err:
        raise ValueError(f"{path} has no {err.args[0]!r}") from None
    except (TypeError, ValueError) as err:  # a field of the wrong type or out of range
        raise ValueError(f"{path}: {err}") from None
    weights = os.path.join(folder, "model.safetensors")
    if not os.path.exists(weights):
        found = [why for name, why in OTHER_WEIGHT_FILES.items()
                 if os.path.exists(os.path.join(folder, name))]
        raise ValueError(f"{folder} has no model.safetensors" + (f": it has {found[0]}" if found
                                                                  else ""))
    tensors = safetensors.load_file(weights)
    for name in ("n_layer", "n_enc_layer", "n_dec_layer"):  # before name_table lists every block's names
        if getattr(cfg, name, 0) > len(tensors):
            raise ValueError(f"{path}: {name} = {getattr(cfg, name)} blocks, but "
                             f"model.safetensors holds only {len(tensors)} tensors")
    tensors = canonical_tensors(arch, tensors, f"{folder}: model.safetensors")
    if arch == "bart" and "final_logits_bias" not in tensors:
        # A buffer of zeros that transformers does not expect in a file (its BART lists it
        # among the keys to ignore when missing): absent, it is zero.
        dtype = getattr(tensors.get("model.shared.weight"), "dtype", np.float32)
        tensors["final_logits_bias"] = np.zeros((1, cfg.vocab_size), dtype=dtype)
    # float16 widens to float32 exactly (as safetensors.py widens BF16).
    tensors = {n: v.astype(np.float32) if v.dtype == np.float16 else v for n, v in tensors.items()}
    try:
        params = to_minillm(arch, cfg, tensors)
    except ValueError as err:  # arrays that cannot be put together: shapes that do not fit
        raise ValueError(f"{folder}: model.safetensors does not fit config.json ({err})") from None
    used = {n for _, _, theirs in name_table(arch, cfg)
            for n in (theirs if isinstance(theirs, list) else [theirs])}
    unused = set(tensors) - used
    if unused:
        raise ValueError(f"{folder}: model.safetensors holds {len(unused)} tensor(s) that a "
                         f"{arch} model does not use: {_listed(unused)}")
    # The tensors must be the shapes config.json says, in a float dtype: checked here, before
    # anything (a vocabulary, a checkpoint) is built on config.json's numbers.
    check_params(params, PARAM_SHAPES[arch](cfg), what=f"{folder}: model.safetensors")
    return HFModel(arch, cfg, params, hf_config)


def float32_tensors(model):
    """The model's tensors under Hugging Face's names, in float32, as a folder holds them. A
    value that float32 cannot hold (beyond ±3.4e38) is refused, naming the tensor."""
    with np.errstate(over="ignore"):  # an overflow is refused just below, by name
        tensors = {k: np.asarray(v, dtype=np.float32)
                   for k, v in to_hf(model.arch, model.cfg, model.params).items()}
    for name, value in tensors.items():
        if not np.all(np.isfinite(value)):
            raise ValueError(f"{name} does not fit float32 (a value beyond ±3.4e38, or one "
                             "not finite): nothing written")
    return tensors


def save(model, folder, tensors=None):
    """Write ``config.json`` and ``model.safetensors`` (float32, Hugging Face names);
    ``tensors`` are float32_tensors(model), if already made."""
    tensors = float32_tensors(model) if tensors is None else tensors
    os.makedirs(folder, exist_ok=True)
    safetensors.save_file(tensors, os.path.join(folder, "model.safetensors"),
                          metadata={"format": "pt"})
    text = json.dumps(model.hf_config, indent=2, sort_keys=True)
    safetensors.write_atomically(os.path.join(folder, "config.json"), [text.encode("utf-8")])


def from_minillm(arch, cfg, params, special=None):
    """Wrap a model trained by minillm so that ``save`` writes it in Hugging Face's format."""
    return HFModel(arch, cfg, params, config_to_hf(arch, cfg, special))


def objective_batch(arch, arrays):
    """A Hugging Face batch (arrays named as in the fixtures' case.npz) as the batch of the
    minillm objective that trains the same model (objectives/clm.py, mlm.py, seq2seq.py)."""
    if arch in ("gpt2", GPT1_ARCH):
        # Hugging Face shifts inside the loss: position t predicts labels[t + 1]; the last
        # position predicts nothing.
        targets = np.full_like(arrays["labels"], IGNORE_INDEX)
        targets[:, :-1] = arrays["labels"][:, 1:]
        return {"inputs": arrays["input_ids"], "targets": targets,
                "attention_mask": arrays.get("attention_mask")}
    if arch == "bert":
        names = {"inputs": "input_ids", "labels": "labels", "attention_mask": "attention_mask",
                 "token_type_ids": "token_type_ids", "next_sentence_label": "next_sentence_label"}
    elif arch == "bart":
        names = {"src": "input_ids", "dec_in": "decoder_input_ids", "src_mask": "attention_mask",
                 "dec_mask": "decoder_attention_mask", "targets": "labels"}
    else:
        raise ValueError(f"unknown architecture {arch!r}")
    batch = {ours: arrays.get(theirs) for ours, theirs in names.items()}
    if batch.get("next_sentence_label") is None:
        batch.pop("next_sentence_label", None)  # BERT without the NSP loss
    return batch


def forward_backward(model, case, dtype=np.float64):
    """Hugging Face's forward pass, loss and gradients, computed by minillm.

    case: a mapping of arrays named as in the fixtures' case.npz. Returns a dict with
    ``loss`` (float), the logits (``logits``; for BERT ``prediction_logits`` and
    ``seq_relationship_logits``; also ``mlm_loss`` and ``nsp_loss``), and ``grads``, keyed by
    the Hugging Face names stored in model.safetensors.
    """
    params = {k: v.astype(dtype) for k, v in model.params.items()}
    batch = objective_batch(model.arch, {k: np.asarray(case[k]) for k in case.keys()})
    objective = objective_of_model(ARCH_MODEL[model.arch])
    loss, _, cache = objective.loss(params, model.cfg, batch, reduction="mean")
    grads = objective.backward(cache)
    if model.arch == "bert":
        out = {"prediction_logits": cache["logits"], "seq_relationship_logits": cache["nsp_logits"],
               "mlm_loss": cache["mlm_loss"], "nsp_loss": cache["nsp_loss"]}
    else:
        out = {"logits": cache["logits"]}
    stored = to_hf(model.arch, model.cfg, model.params)
    out["loss"] = float(loss)
    out["grads"] = to_hf(model.arch, model.cfg, grads,
                         keep=[k for k in stored if k not in NO_GRAD])
    return out
