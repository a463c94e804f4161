"""Images and text in one next-token objective (the tutorial's 第四代: GPT-4's 多模态融合).

GPT-4's own recipe is unpublished; this is the public recipe of the idea, in two settings of one
model (CaptionConfig.fusion):

1. **The patch embedding** (ViT, Dosovitskiy et al. 2021, §3.1 eq. 1): the image is cut into
   N = (side/P)² patches of P×P pixels, each flattened into a vector x_p^i of P·P·3 numbers, and
   one linear map and a learned position make it a token of the model's width C:

       z_i = x_p^i E + b + E_pos[i]          E (P·P·3, C),  E_pos (N, C)

   A convolution with kernel = stride = P computes the same numbers (``patch_embed_forward``'s
   test holds the two equal). Patches come in raster order, row by row, and a patch is
   flattened in (row, column, channel) order: the layout of a (P, P, 3, C) kernel, JAX's.
   ViT's class token is left out: nothing here classifies the image as a whole.

2. **Prefix fusion** (LLaVA, Liu et al. 2023, §4.1 eq. 3; ``fusion="prefix"``): the N image
   tokens come first, then the text, in one GPT sequence:

       x = [z_1 .. z_N ; wte[BOS] + wpe[0], wte[w_1] + wpe[1], ...]       (B, N + T, C)
       x = block_l(x)   GPT-2's pre-LN blocks, causal over the whole sequence
       logits = LN_f(x) wte^T                                              (B, N + T, V)

   and the loss is the tutorial's next-token cross-entropy over the text positions only:
   p(X_a | X_v) = Π_i p(x_i | X_v, x_<i), the image positions carry IGNORE_INDEX (LLaVA's
   labels are -100 on the image rows). The image rows keep their own positions E_pos; the text's
   are wpe from 0 (LLaVA numbers the whole sequence with its LM's one table: with learned
   positions either is a learned vector per row).

3. **Cross-attention fusion** (Flamingo's idea, Alayrac et al. 2022; ``fusion="cross"``): the
   text alone is the sequence, and every block also attends to the N image tokens, as the
   decoder of the encoder-decoder attends to its encoder (transformer.py's cross blocks,
   pre-LN here):

       y = block_l(y, z)    causal self-attention, then attention over z_1 .. z_N, then the MLP

4. **No fusion** (``fusion="none"``), the baseline: the same GPT on the same texts, the picture
   never read (no patch embedding at all). It can learn what the grammar makes likely (很好 is
   the most likely weather), never what this picture shows: what the fused model answers
   better than it, it answers by reading the picture.

There is no vision encoder: the patch tokens go straight into the decoder, whose blocks do all
the reading. (LLaVA puts a frozen CLIP ViT and a projector between the two; at 16×16 pixels and
patches of 4 a token already holds a whole object.)

Parameters: ``img.w`` (P·P·3, C), ``img.b`` (C,), ``img.wpe`` (N, C), then a GPT-2's (``wte``,
``wpe``, ``h.<l>.*``, ``ln_f.*``); with cross fusion each block also has ``ln_x`` and ``xattn``;
without fusion there is no ``img.*``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .layers import (
    causal_mask,
    embedding_backward,
    embedding_forward,
    layernorm_backward,
    layernorm_forward,
    linear_backward,
    linear_forward,
    position_embedding_backward,
    position_embedding_forward,
)
from .models import (INIT_STD, MODELS, GPTConfig, ModelFamily, block_shapes, check_finite,
                     check_inputs, init_params)
from .pictures import CAPTION_QUESTION, QUESTIONS, SIZE, slot_priors
from .tokenizer import BOS_ID, EOS_ID
from .transformer import BlockSpec, stack_backward, stack_forward

FUSIONS = ("prefix", "cross", "none")
CHANNELS = 3  # RGB


# ----------------------------------------------------------------------------------------------
# The patch embedding


def patchify(images, P):
    """Cut images into P×P patches, each flattened: (B, rows, cols, 3) -> (B, N, P·P·3).

    N = (rows/P)(cols/P), in raster order (patch i·cols/P + j is rows iP .. iP+P-1, columns
    jP .. jP+P-1); a patch's numbers in (row, column, channel) order.
    """
    B, rows, cols, K = images.shape
    x = images.reshape(B, rows // P, P, cols // P, P, K)  # (B, rows/P, P, cols/P, P, 3)
    x = x.transpose(0, 1, 3, 2, 4, 5)  # (B, rows/P, cols/P, P, P, 3): patch grid, then inside
    return x.reshape(B, (rows // P) * (cols // P), P * P * K)  # (B, N, P·P·3)


def unpatchify(patches, rows, cols, P):
    """The inverse of patchify: (B, N, P·P·3) -> (B, rows, cols, 3). Patches do not overlap,
    so this is a pure permutation of the numbers."""
    B, K = patches.shape[0], patches.shape[2] // (P * P)
    x = patches.reshape(B, rows // P, cols // P, P, P, K)  # (B, rows/P, cols/P, P, P, 3)
    x = x.transpose(0, 1, 3, 2, 4, 5)  # (B, rows/P, P, cols/P, P, 3)
    return x.reshape(B, rows, cols, K)


def patch_embed_forward(images, w, b, pos, P):
    """``z_i = x_p^i E + b + E_pos[i]`` (ViT eq. 1, no class token).

    images (B, rows, cols, 3), w = E (P·P·3, C), b (C,), pos = E_pos (N, C) -> z (B, N, C).
    """
    if np.ndim(images) != 4:
        raise ValueError(f"images must have shape (B, rows, cols, channels), "
                         f"got {np.shape(images)}")
    if isinstance(P, bool) or not isinstance(P, (int, np.integer)) or P < 1:
        raise ValueError(f"P must be a positive integer, got {P!r}")
    B, rows, cols, K = images.shape
    if rows % P or cols % P:
        raise ValueError(f"images of {rows}×{cols} pixels do not split into patches of P={P}")
    patches = patchify(images, P)  # (B, N, P·P·3)
    proj, lin = linear_forward(patches, w, b)  # (B, N, C)
    z = proj + pos  # (B, N, C): E_pos broadcast over the batch
    return z, {"lin": lin, "rows": rows, "cols": cols, "P": P}


def patch_embed_backward(dz, cache):
    """dz (B, N, C) -> dimages (B, rows, cols, 3), dw (P·P·3, C), db (C,), dpos (N, C).

    In the forward pass z = patches E + b + E_pos: E_pos was added to every image, so dpos sums
    dz over the batch; the linear map gives dpatches, dE and db; and patches was a permutation
    of the pixels, so dimages is dpatches put back in place (unpatchify).
    """
    dpos = dz.sum(axis=0)  # (N, C)
    dpatches, dw, db = linear_backward(dz, cache["lin"])  # (B, N, P·P·3), (P·P·3, C), (C,)
    dimages = unpatchify(dpatches, cache["rows"], cache["cols"], cache["P"])
    return dimages, dw, db, dpos


# ----------------------------------------------------------------------------------------------
# The fused model


@dataclass(frozen=True)
class CaptionConfig:
    """The shape of the fused image–text GPT. Defaults: the tiny model of ``train --objective
    caption``."""

    vocab_size: int  # V
    n_ctx: int = 16  # the longest text, [BOS] included: rows of wpe (the image has its own)
    n_embd: int = 64  # C
    n_head: int = 4  # H; C must be a multiple of it
    n_layer: int = 2  # L
    n_inner: int | None = None  # F; None means 4C
    ln_eps: float = 1e-5  # GPT-2's
    image_size: int = SIZE  # pictures are image_size × image_size RGB (pictures.py: 16)
    patch: int = 4  # P: a patch is P×P pixels; N = (image_size / P)² image tokens
    # "prefix": image tokens before the text; "cross": attended to; "none": never read
    fusion: str = "prefix"

    def __post_init__(self):
        GPTConfig.__post_init__(self)
        for name in ("image_size", "patch"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
                raise ValueError(f"CaptionConfig.{name} must be a positive integer, got {value!r}")
        if self.image_size % self.patch:
            raise ValueError(f"CaptionConfig.patch={self.patch} must divide "
                             f"image_size={self.image_size}")
        if self.fusion not in FUSIONS:
            raise ValueError(f"CaptionConfig.fusion must be one of {FUSIONS}, got {self.fusion!r}")

    @property
    def n_image_tokens(self):
        """N = (image_size / P)²: one token per patch."""
        return (self.image_size // self.patch) ** 2

    def block_spec(self):
        """GPT-2's pre-LN blocks; with cross fusion each also attends to the image tokens."""
        return BlockSpec(n_head=self.n_head, ln_eps=self.ln_eps, pre_ln=True,
                         activation="gelu_tanh", cross=self.fusion == "cross")

    to_dict = GPTConfig.to_dict


def caption_param_shapes(cfg):
    """Every parameter of the fused model with its shape: the patch embedding (none without
    fusion), then a GPT-2's (with cross-attention in every block when cfg.fusion is "cross")."""
    C, P = cfg.n_embd, cfg.patch
    shapes = {}
    if cfg.fusion != "none":
        shapes.update({"img.w": (P * P * CHANNELS, C), "img.b": (C,),
                       "img.wpe": (cfg.n_image_tokens, C)})
    shapes.update({"wte": (cfg.vocab_size, C), "wpe": (cfg.n_ctx, C)})
    for layer in range(cfg.n_layer):
        shapes.update(block_shapes(f"h.{layer}.", C, cfg.n_inner, cross=cfg.fusion == "cross"))
    shapes.update({"ln_f.g": (C,), "ln_f.b": (C,)})
    return shapes


def caption_init(cfg, rng, dtype=np.float32):
    """GPT-2's initialisation (residual projections N(0, 0.02/sqrt(2L))); the patch map and the
    image positions N(0, 0.02), as ViT's position embedding."""
    return init_params(caption_param_shapes(cfg), rng, dtype, INIT_STD / math.sqrt(2 * cfg.n_layer))


def check_images(images, cfg, B):
    """images must be (B, image_size, image_size, 3), with the batch of the text."""
    images = np.asarray(images)
    want = (B, cfg.image_size, cfg.image_size, CHANNELS)
    if images.shape != want:
        raise ValueError(f"images must have shape {want} (one picture per text), "
                         f"got {images.shape}")
    return images


def fused_forward(params, cfg, images, ids, attention_mask=None):
    """The fused model (module docstring).  images (B, side, side, 3), ids (B, T) -> logits,
    cache; logits (B, N + T, V) with prefix fusion (the first N rows at the image tokens),
    (B, T, V) with cross fusion or none (which never reads ``images``)."""
    ids, attention_mask = check_inputs(cfg, ids, attention_mask)
    B, T = ids.shape
    N = cfg.n_image_tokens
    dtype = params["wte"].dtype
    images = check_images(images, cfg, B).astype(dtype)
    z = c_img = None
    if cfg.fusion != "none":
        z, c_img = patch_embed_forward(images, params["img.w"], params["img.b"],
                                       params["img.wpe"], cfg.patch)  # (B, N, C)
    tok, c_tok = embedding_forward(ids, params["wte"])  # (B, T, C)
    pos, c_pos = position_embedding_forward(T, params["wpe"])  # (T, C)
    text = tok + pos  # (B, T, C)
    if cfg.fusion == "prefix":
        x = np.concatenate([z, text], axis=1)  # (B, N + T, C): the image first, then the text
        # Causal over the whole sequence; every image token is real, padding only in the text.
        real = np.concatenate([np.ones((B, N), dtype=bool), attention_mask], axis=1)  # (B, N+T)
        allowed = causal_mask(N + T)[None, None] & real[:, None, None, :]
        x, blocks = stack_forward(x, params, "h.", cfg.n_layer, cfg.block_spec(), allowed)
    elif cfg.fusion == "cross":  # the text is the sequence, the image tokens what it attends to
        allowed = causal_mask(T)[None, None] & attention_mask[:, None, None, :]
        every_patch = np.ones((B, 1, 1, N), dtype=bool)  # (B, 1, 1, N)
        x, blocks = stack_forward(text, params, "h.", cfg.n_layer, cfg.block_spec(), allowed,
                                  z, every_patch)
    else:  # none: a GPT on the text alone
        allowed = causal_mask(T)[None, None] & attention_mask[:, None, None, :]
        x, blocks = stack_forward(text, params, "h.", cfg.n_layer, cfg.block_spec(), allowed)
    h, c_lnf = layernorm_forward(x, params["ln_f.g"], params["ln_f.b"], cfg.ln_eps)
    logits = h @ params["wte"].T  # (B, N + T, V) or (B, T, V)
    cache = {"img": c_img, "tok": c_tok, "pos": c_pos, "blocks": blocks, "lnf": c_lnf, "h": h,
             "wte": params["wte"], "N": N, "fusion": cfg.fusion}
    return logits, cache


def fused_backward(dlogits, cache):
    """dlogits (B, N + T, V) or (B, T, V) -> grads, a dict with the same keys as the params."""
    grads = {}
    h, wte, N = cache["h"], cache["wte"], cache["N"]
    V, C = wte.shape
    # logits = LN_f(x) wte^T: the output layer's part of the tied embedding's gradient.
    dwte_out = dlogits.reshape(-1, V).T @ h.reshape(-1, C)  # (V, C)
    dx, grads["ln_f.g"], grads["ln_f.b"] = layernorm_backward(dlogits @ wte, cache["lnf"])
    if cache["fusion"] == "prefix":
        # x = [z ; text]: the blocks' input gradient splits at row N.
        dx, _ = stack_backward(dx, cache["blocks"], "h.", grads)  # (B, N + T, C)
        dz, dtext = dx[:, :N], dx[:, N:]
    else:
        # The text went through the blocks; with cross fusion z reached every block's
        # cross-attention (without fusion there is no z: dz is None).
        dtext, dz = stack_backward(dx, cache["blocks"], "h.", grads)
    # text = wte[ids] + wpe[t]
    grads["wpe"] = position_embedding_backward(dtext, cache["pos"])
    grads["wte"] = embedding_backward(dtext, cache["tok"]) + dwte_out  # tied: lookup + output
    # z = patches E + b + E_pos (the pictures are data: their gradient is dropped)
    if cache["fusion"] != "none":
        _, grads["img.w"], grads["img.b"], grads["img.wpe"] = patch_embed_backward(dz,
                                                                                   cache["img"])
    return grads



# ----------------------------------------------------------------------------------------------
# Reading a picture: answers, a caption, and how often the answers are right


def next_token_logits(params, cfg, images, ids):
    """The logits of the token after [BOS] w_1 .. w_n, for each picture.
    images (B, side, side, 3), ids: the n ids of one text -> (B, V)."""
    inputs = np.tile([BOS_ID, *ids], (len(images), 1))  # (B, n + 1): the same text for each
    logits, _ = fused_forward(params, cfg, images, inputs)
    return check_finite(logits[:, -1])  # (B, V)


def answers(params, cfg, tokenizer, images, question):
    """The model's answer to ``question`` about each picture: the most probable next token after
    [BOS] question (an answer is one token: pictures.py). -> a list of B words."""
    logits = next_token_logits(params, cfg, images, tokenizer.encode(question))  # (B, V)
    return [tokenizer.vocab[i] for i in logits.argmax(axis=-1)]


def greedy_caption(params, cfg, tokenizer, image):
    """The caption greedy decoding writes for one picture (side, side, 3) after 图里有什么？: each
    next token the most probable, until [EOS] or the context is full."""
    question = tokenizer.encode(CAPTION_QUESTION)
    ids = []
    while 1 + len(question) + len(ids) < cfg.n_ctx:
        next_id = int(next_token_logits(params, cfg, image[None], question + ids)[0].argmax())
        if next_id == EOS_ID:
            break
        ids.append(next_id)
    return tokenizer.decode(ids)


# Pictures per forward pass in slot_accuracy: its memory grows with the batch (about 1.6 GB for
# 5000 pictures at the default width), so --pictures 50000 is read EVAL_BATCH at a time.
EVAL_BATCH = 256


def slot_accuracy(params, cfg, tokenizer, pictures):
    """For each slot, the fraction of ``pictures`` whose question (图里天气怎么样？ ...) the model
    answers with the slot's true value; "mean", their mean. -> {slot: fraction, "mean": ...}.
    The pictures are answered EVAL_BATCH at a time."""
    accuracy = {}
    for slot, question in QUESTIONS.items():
        said = []
        for start in range(0, len(pictures), EVAL_BATCH):
            batch = pictures[start:start + EVAL_BATCH]
            images = np.stack([p.image for p in batch])  # (B, side, side, 3), B <= EVAL_BATCH
            said += answers(params, cfg, tokenizer, images, question)
        accuracy[slot] = float(np.mean([w == p.slots[slot] for w, p in zip(said, pictures)]))
    accuracy["mean"] = float(np.mean([accuracy[slot] for slot in QUESTIONS]))
    return accuracy


def chance_accuracy(pictures):
    """The accuracy on ``pictures`` of the best answer that does not look: for each slot the
    grammar's most likely value v* = argmax_v P(v) (pictures.slot_priors: 很好, 公园, 几个人),
    right on the pictures that show v*; "mean", their mean. -> {slot: fraction, "mean": ...}.

    Measured on the pictures the models are measured on, not taken as its expectation
    max_v P(v) (0.52, 0.38, 0.65): on 500 pictures the share of 几个人 has a standard deviation
    sqrt(0.65 · 0.35 / 500) = 0.021, so a model that always answers 几个人 may score 0.636, and
    that is chance, not below it."""
    if len(pictures) == 0:
        raise ValueError("pictures must hold at least one picture, got none")
    chance = {}
    for slot, prior in slot_priors().items():
        likeliest = max(prior, key=prior.get)
        chance[slot] = float(np.mean([p.slots[slot] == likeliest for p in pictures]))
    chance["mean"] = float(np.mean([chance[slot] for slot in QUESTIONS]))
    return chance


def compare_slot_accuracy(fused, text_only, tokenizer, pictures):
    """The fused model's slot accuracy on ``pictures`` beside the text-only model's and chance:

        {"slot_accuracy": {"fused": mean, "text_only": mean}, "chance": mean,
         "by_slot": {"fused": {slot: ...}, "text_only": {slot: ...}, "chance": {slot: ...}},
         "pictures": n}

    ``fused`` and ``text_only`` are (params, cfg) pairs; ``text_only`` may be None (its numbers
    are then None). Chance is chance_accuracy's on the same pictures: what a model that ignores
    the picture scores if it answers the grammar's most likely values."""
    chance = chance_accuracy(pictures)  # first: it refuses an empty list by name
    by_slot = {"fused": slot_accuracy(*fused, tokenizer, pictures),
               "text_only": None if text_only is None else slot_accuracy(*text_only, tokenizer,
                                                                         pictures),
               "chance": chance}
    means = {name: None if acc is None else acc.pop("mean") for name, acc in by_slot.items()}
    return {"slot_accuracy": {"fused": means["fused"], "text_only": means["text_only"]},
            "chance": means["chance"], "by_slot": by_slot, "pictures": len(pictures)}

# The fused model is one of models.MODELS's families; it registers itself there (models.py
# imports this module at its end, so the family is there whichever module is imported first).
MODELS["caption"] = ModelFamily(CaptionConfig, caption_init, caption_param_shapes, None)
