"""Checkpoints: one safetensors file holding everything a training run needs to continue.

    tensors    param/<name>     the parameters           (float32 or float64, as train_config.dtype)
               adam.m/<name>    AdamW's first moments
               adam.v/<name>    AdamW's second moments   (never negative)
               history          the mean loss of every step so far, float64, shape (step,)
    metadata   "minillm": one JSON object
               {"format": "minillm-checkpoint-2",
                "model": "gpt" | "bert" | "seq2seq",
                "model_config": {...}, "train_config": {...},  every field of the two dataclasses
                "tokenizer": {"ordinary": [...], "n_sentinels": k} | null,
                                        null: token ids only (a model imported from a Hugging
                                        Face folder, whose text side is the folder's tokenizer)
                "step": n, "adam_step": n,                      optimizer steps done (equal)
                "data_rng": {...},                              the data generator's PCG64 state
                "data": null | {"path": "...", "sha256": "..."}}  the --data file trained on

The file itself is written crash-safe by ``safetensors.save_file`` (a temporary file renamed into
place), so it is never half-written; ``save_checkpoint`` also refuses to write a non-finite
value, so a checkpoint never holds one.

Reading trusts nothing. A checkpoint may have been edited, cut short or made by someone else,
and a single field can turn a 36 KB file into a request for gigabytes (a tokenizer with a
billion sentinels, say). So ``load_checkpoint`` checks, in this order, before it allocates
anything a field sizes: the safetensors header; every metadata field's type, range and
consistency with the others (``read_metadata``); every tensor's name, dtype and shape against
the model the config describes (still from the header); and only then reads the tensors, and
checks that they are finite. Each problem raises ``CheckpointError`` naming the file and the
field.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, fields

import numpy as np

from . import safetensors
from .config import TrainConfig
from .files import loads_json
from .files import show as _short
from .models import GPT_ARCHS, MODELS
from .multimodal import FUSIONS
from .objectives import get_objective
from .tokenizer import SPECIAL_TOKENS, Tokenizer

FORMAT = "minillm-checkpoint-2"
# The metadata's keys, all required and no others.
META_KEYS = ("format", "model", "model_config", "train_config", "tokenizer", "step",
             "adam_step", "data_rng", "data")
# safetensors dtype codes of the two parameter dtypes.
DTYPE_CODES = {"float32": "F32", "float64": "F64"}
# The longest name a setting may have (an objective, a dtype), and the longest stored path:
# values from a file are echoed in messages, which must stay one readable line.
MAX_NAME, MAX_PATH = 32, 4096
# PCG64's state and increment are 128-bit integers; the buffered half-draw a 32-bit one.
PCG64_BITS, UINT32 = 128, 2**32
# Model-config fields added after this format was first written (for models imported from
# Hugging Face, and GPT-1): a checkpoint without them was made before, and its model computes
# as the fields' defaults do (the decoder's heads and width the encoder's, nothing scaled, a
# GPT-2).
LATER_MODEL_FIELDS = ("n_dec_head", "n_dec_inner", "scale_embedding",
                      "scale_attn_by_inverse_layer_idx", "arch")
# Model-config fields renamed since: (family, name in older files) -> today's name. An
# encoder-decoder's n_layer counted its encoder blocks only, beside n_dec_layer; it is n_enc_layer.
RENAMED_MODEL_FIELDS = {("seq2seq", "n_layer"): "n_enc_layer"}
# The training settings added since, which an older file lacks (their defaults apply).
LATER_TRAIN_FIELDS = ("plm_k",)
# The model-config fields that are switches, true or false.
BOOLEAN_MODEL_FIELDS = ("scale_embedding", "scale_attn_by_inverse_layer_idx")


class CheckpointError(ValueError):
    """A file that is not a valid minillm checkpoint; the message names the file and the field."""


# ----------------------------------------------------------------------------------------------
# Writing


def save_checkpoint(path, model_cfg, train_cfg, tokenizer, state, data=None):
    """Write everything needed to resume into one safetensors file (crash-safe).

    ``state`` is train's state dict (params, opt, step, data_rng, history); ``data`` is None for
    the built-in grammar or {"path", "sha256"} of the text file trained on. A parameter or
    moment that is not finite is refused (ValueError naming it): nothing non-finite is saved.
    """
    from .objectives import get_objective

    tensors = {f"param/{k}": v for k, v in state["params"].items()}
    tensors.update({f"adam.m/{k}": v for k, v in state["opt"]["m"].items()})
    tensors.update({f"adam.v/{k}": v for k, v in state["opt"]["v"].items()})
    for name, value in tensors.items():
        if not np.all(np.isfinite(value)):
            raise ValueError(f"{path}: not saved: {name} holds non-finite values")
    tensors["history"] = np.asarray(state["history"], dtype=np.float64).reshape(-1)
    meta = {
        "format": FORMAT,
        "model": get_objective(train_cfg.objective).MODEL,
        "model_config": model_cfg.to_dict(),
        "train_config": asdict(train_cfg),
        "tokenizer": None if tokenizer is None else tokenizer.to_dict(),
        "step": state["step"],
        "adam_step": state["opt"]["step"],
        "data_rng": state["data_rng"].bit_generator.state,
        "data": data,
    }
    safetensors.save_file(tensors, path, metadata={"minillm": json.dumps(meta)})


# ----------------------------------------------------------------------------------------------
# Reading


def load_checkpoint(path):
    """Read and check a checkpoint written by save_checkpoint. Returns (model_cfg, train_cfg,
    tokenizer, state), the tokenizer None for a checkpoint of token ids only, the state ready to pass back to ``train``, with ``state["data"]`` the
    stored description of the data (None for the grammar). Raises CheckpointError (or
    safetensors.SafetensorsError for a malformed file) naming the file and what is wrong."""
    entries, metadata = safetensors.read_header(path)
    model_cfg, train_cfg, tokenizer, meta = read_metadata(metadata, entries, path)
    tensors = safetensors.load_file(path)  # the sizes were all checked against the header
    for name, value in tensors.items():
        if not np.all(np.isfinite(value)):
            raise CheckpointError(f"{path}: tensor {name} holds non-finite values")
        if name.startswith("adam.v/") and np.any(value < 0):
            raise CheckpointError(f"{path}: tensor {name} holds negative values (a second "
                                  "moment is a mean of squares)")

    def group(prefix):
        return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}

    rng = np.random.default_rng()
    rng.bit_generator.state = meta["data_rng"]
    state = {
        "params": group("param/"),
        "opt": {"step": meta["adam_step"], "m": group("adam.m/"), "v": group("adam.v/")},
        "step": meta["step"],
        "data_rng": rng,
        "history": [float(x) for x in tensors["history"]],
        "data": meta["data"],
    }
    return model_cfg, train_cfg, tokenizer, state


def read_metadata(metadata, entries, path):
    """Check a checkpoint's metadata against itself and against the tensors the header lists
    (``entries``: {name: (dtype code, shape, begin, end)}), allocating nothing that a field
    sizes. -> (model_cfg, train_cfg, tokenizer, meta)."""
    def fail(problem):
        return CheckpointError(f"{path}: {problem}")

    if "minillm" not in metadata:
        raise fail("not a minillm checkpoint (no 'minillm' metadata)")
    try:
        meta = loads_json(metadata["minillm"], "the minillm metadata")
    except ValueError as err:  # not JSON, a key twice, NaN, too deep
        raise fail(str(err)) from None
    if not isinstance(meta, dict):
        raise fail(f"the minillm metadata is a {_kind(meta)}, not a JSON object")
    if meta.get("format") != FORMAT:
        raise fail(f"format is {_short(meta.get('format'))}, not {FORMAT!r} (a checkpoint of "
                   "another minillm version: train it again)")
    _exact_keys(meta, META_KEYS, "the metadata", fail)
    if not isinstance(meta["model"], str) or meta["model"] not in MODELS:
        raise fail(f"model is {_short(meta['model'])}, not one of {sorted(MODELS)}")
    config_class, param_shapes = MODELS[meta["model"]].config, MODELS[meta["model"]].param_shapes

    # The model: every field an integer >= 1 (ln_eps a positive float, the switches true or
    # false). The layer counts are bounded by the tensors present before param_shapes loops
    # over them.
    n_params = sum(name.startswith("param/") for name in entries)
    model_fields = {f.name for f in fields(config_class)}
    if isinstance(meta["model_config"], dict):  # an older file may lack the later fields
        model_fields -= {n for n in LATER_MODEL_FIELDS if n not in meta["model_config"]}
        for (family, old), new in RENAMED_MODEL_FIELDS.items():  # or use an older name
            if meta["model"] == family and old in meta["model_config"]:
                model_fields = (model_fields - {new}) | {old}
    _exact_keys(meta["model_config"], model_fields, "model_config", fail)
    for name, value in meta["model_config"].items():
        if name == "ln_eps":
            _number(value, f"model_config.{name}", fail, positive=True)
        elif name in BOOLEAN_MODEL_FIELDS:
            if not isinstance(value, bool):
                raise fail(f"model_config.{name} is {_short(value)}, not true or false")
        elif name == "arch":  # which GPT (models.GPT_ARCHS); a GPT checkpoint without it: GPT-2
            if value not in GPT_ARCHS:
                raise fail(f"model_config.arch is {_short(value)}, not one of {GPT_ARCHS}")
        elif name == "fusion":  # how the fused image-text GPT reads its picture (multimodal.py)
            if value not in FUSIONS:
                raise fail(f"model_config.fusion is {_short(value)}, not one of {FUSIONS}")
        else:
            _integer(value, f"model_config.{name}", fail, low=1)
    for name in ("n_layer", "n_enc_layer", "n_dec_layer"):
        if meta["model_config"].get(name, 0) > n_params:
            raise fail(f"model_config.{name} is {meta['model_config'][name]}, but the file holds "
                       f"only {n_params} parameter tensors")
    stored = {RENAMED_MODEL_FIELDS.get((meta["model"], name), name): value
              for name, value in meta["model_config"].items()}
    try:
        model_cfg = config_class(**stored)
    except ValueError as err:
        raise fail(f"model_config: {err}") from None

    # Training settings: the fields of TrainConfig, each of its type; TrainConfig checks ranges.
    types = {f.name: f.type for f in fields(TrainConfig)}
    if isinstance(meta["train_config"], dict):  # an older file may lack the later fields
        types = {n: t for n, t in types.items()
                 if n not in LATER_TRAIN_FIELDS or n in meta["train_config"]}
    _exact_keys(meta["train_config"], types, "train_config", fail)
    for name, value in meta["train_config"].items():
        where = f"train_config.{name}"
        if types[name] == "int":
            _integer(value, where, fail, low=0)
        elif types[name] == "float":
            _number(value, where, fail)
        elif types[name] == "bool" and not isinstance(value, bool):
            raise fail(f"{where} is {_short(value)}, not true or false")
        elif types[name] == "str" and not (isinstance(value, str) and len(value) <= MAX_NAME):
            raise fail(f"{where} is {_short(value)}, not a name (a string of at most {MAX_NAME} "
                       "characters)")
    try:
        train_cfg = TrainConfig(**meta["train_config"])
    except ValueError as err:
        raise fail(f"train_config: {err}") from None
    if get_objective(train_cfg.objective).MODEL != meta["model"]:
        raise fail(f"train_config.objective {train_cfg.objective!r} does not train a "
                   f"{meta['model']} model")

    # Progress: steps done, equal for the loop and AdamW, within the planned steps.
    _integer(meta["step"], "step", fail, low=0)
    if meta["step"] > train_cfg.steps:
        raise fail(f"step is {meta['step']}, beyond train_config.steps = {train_cfg.steps}")
    _integer(meta["adam_step"], "adam_step", fail, low=0)
    if meta["adam_step"] != meta["step"]:
        raise fail(f"adam_step is {_short(meta['adam_step'])}, but step is {meta['step']}: "
                   "AdamW makes one update per step")
    _check_rng_state(meta["data_rng"], fail)
    data = meta["data"]
    if data is not None:
        _exact_keys(data, ("path", "sha256"), "data", fail)
        if not isinstance(data["path"], str) or not 0 < len(data["path"]) <= MAX_PATH:
            raise fail(f"data.path is {_short(data['path'])}, not a file name")
        sha = data["sha256"]
        if not (isinstance(sha, str) and len(sha) == 64 and set(sha) <= set("0123456789abcdef")):
            raise fail(f"data.sha256 is {_short(sha)}, not 64 hexadecimal digits")

    # The tensors, from the header: exactly the model's, in the run's dtype, and the history.
    code = DTYPE_CODES[train_cfg.dtype]
    expected = {}
    for prefix in ("param/", "adam.m/", "adam.v/"):
        expected.update({prefix + n: (code, tuple(s)) for n, s in param_shapes(model_cfg).items()})
    expected["history"] = ("F64", (meta["step"],))
    problems = [f"missing {n}" for n in expected if n not in entries]
    problems += [f"unexpected {n}" for n in entries if n not in expected]
    problems += [f"{n} is {entries[n][0]} {list(entries[n][1])}, the model needs {c} {list(s)}"
                 for n, (c, s) in expected.items()
                 if n in entries and (entries[n][0], tuple(entries[n][1])) != (c, s)]
    if problems:
        shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5
                                           else "")
        raise fail(f"the tensors do not match the model ({len(problems)} problem"
                   f"{'s' if len(problems) > 1 else ''}): {shown}")
    # Last, the tokenizer: its size is now bounded by the embedding the file really holds.
    tokenizer = None if meta["tokenizer"] is None else tokenizer_from_description(
        meta["tokenizer"], model_cfg.vocab_size, path, "tokenizer")
    return model_cfg, train_cfg, tokenizer, meta


def tokenizer_from_description(tok, vocab_size, path, where):
    """The Tokenizer that ``tok`` (Tokenizer.to_dict's description, read from a file) describes,
    checked first: its size (specials + sentinels + ordinary tokens) must be ``vocab_size``
    before anything is built, so that a stored sentinel count cannot ask for a billion strings.
    CheckpointError naming ``path`` and ``where`` otherwise."""
    def fail(problem):
        return CheckpointError(f"{path}: {problem}")

    _exact_keys(tok, ("ordinary", "n_sentinels"), where, fail)
    _integer(tok["n_sentinels"], f"{where}.n_sentinels", fail, low=0)
    if not isinstance(tok["ordinary"], list):
        raise fail(f"{where}.ordinary is a {_kind(tok['ordinary'])}, not a list of strings")
    size = len(SPECIAL_TOKENS) + tok["n_sentinels"] + len(tok["ordinary"])
    if size != vocab_size:
        raise fail(f"the tokenizer has {len(SPECIAL_TOKENS)} special tokens + "
                   f"{tok['n_sentinels']} sentinels + {len(tok['ordinary'])} ordinary tokens = "
                   f"{size}, but the model's vocab_size is {vocab_size}")
    if not all(isinstance(t, str) and t for t in tok["ordinary"]):
        raise fail(f"{where}.ordinary must hold only non-empty strings")
    try:
        return Tokenizer.from_dict(tok)
    except (TypeError, ValueError) as err:
        raise fail(f"{where}: {err}") from None


# ----------------------------------------------------------------------------------------------
# Field checks


def _exact_keys(obj, keys, where, fail):
    """obj must be a JSON object with exactly ``keys``."""
    if not isinstance(obj, dict):
        raise fail(f"{where} is a {_kind(obj)}, not a JSON object")
    missing = [k for k in keys if k not in obj]
    extra = [k for k in obj if k not in keys]
    if missing or extra:
        said = ([f"lacks {', '.join(map(str, missing))}"] if missing else []) + (
            [f"has unknown {', '.join(_short(k) for k in extra[:5])}"] if extra else [])
        raise fail(f"{where} {' and '.join(said)}")


def _integer(value, where, fail, low=0):
    """An integer >= low (JSON true and false are not integers here)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise fail(f"{where} is {_short(value)}, not an integer")
    if value < low:
        raise fail(f"{where} is {value}, below {low}")


def _number(value, where, fail, positive=False):
    """A finite number (> 0 if positive); an integer too large for a float is not one."""
    try:
        finite = not isinstance(value, bool) and math.isfinite(float(value))
    except (TypeError, ValueError, OverflowError):
        finite = False
    if not finite:
        raise fail(f"{where} is {_short(value)}, not a finite number")
    if positive and value <= 0:
        raise fail(f"{where} is {value}, not > 0")


def _check_rng_state(rng, fail):
    """A PCG64 state as NumPy writes it: 128-bit state and odd increment, a buffered 32-bit
    half-draw flag and value."""
    _exact_keys(rng, ("bit_generator", "state", "has_uint32", "uinteger"), "data_rng", fail)
    if rng["bit_generator"] != "PCG64":
        raise fail(f"data_rng.bit_generator is {_short(rng['bit_generator'])}, not 'PCG64'")
    _exact_keys(rng["state"], ("state", "inc"), "data_rng.state", fail)
    for name in ("state", "inc"):
        value = rng["state"][name]
        _integer(value, f"data_rng.state.{name}", fail)
        if value >= 2**PCG64_BITS:
            raise fail(f"data_rng.state.{name} does not fit in {PCG64_BITS} bits")
    if rng["state"]["inc"] % 2 == 0:
        raise fail("data_rng.state.inc is even; PCG64's increment is always odd")
    _integer(rng["has_uint32"], "data_rng.has_uint32", fail)
    if rng["has_uint32"] not in (0, 1):
        raise fail(f"data_rng.has_uint32 is {_short(rng['has_uint32'])}, not 0 or 1")
    _integer(rng["uinteger"], "data_rng.uinteger", fail)
    if rng["uinteger"] >= UINT32:
        raise fail("data_rng.uinteger does not fit in 32 bits")


def _kind(value):
    """The JSON name of a parsed value's type."""
    return {bool: "boolean", int: "number", float: "number", str: "string", list: "list",
            dict: "JSON object", type(None): "null"}.get(type(value), type(value).__name__)
