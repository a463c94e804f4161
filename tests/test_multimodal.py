"""multimodal.py and objectives/caption.py: the patch embedding, the fused model (prefix and
cross-attention fusion), and the caption loss over the text positions only."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from test_gpt import random_params as random_gpt_params

from minillm.gradcheck import check_grads, key_bias_zeros, projected
from minillm.layers import IGNORE_INDEX, cross_entropy_forward
from minillm.models import MODELS
from minillm.multimodal import (CaptionConfig, caption_init, caption_param_shapes,
                                fused_backward, fused_forward, patch_embed_backward,
                                patch_embed_forward, patchify, unpatchify)
from minillm.objectives import caption, get_objective
from minillm.pictures import QUESTIONS

# A tiny fused model: 4×4 pictures in patches of 2, so N = 4 image tokens.
TINY = CaptionConfig(vocab_size=11, n_ctx=6, n_embd=8, n_head=2, n_layer=2, n_inner=8,
                     image_size=4, patch=2)


def conv_by_loops(images, kernel, bias, P):
    """The strided convolution of ViT's patch layer, by plain loops: kernel (P, P, 3, C), stride
    P, no padding; out[b, i, j, d] = b_d + Σ_{r, c, k} x[b, iP + r, jP + c, k] K[r, c, k, d],
    returned as tokens in raster order (B, (rows/P)(cols/P), C)."""
    B, rows, cols, K = images.shape
    C = kernel.shape[-1]
    out = np.zeros((B, (rows // P) * (cols // P), C))
    for b in range(B):
        for i in range(rows // P):
            for j in range(cols // P):
                for d in range(C):
                    total = bias[d]
                    for r in range(P):
                        for c in range(P):
                            for k in range(K):
                                total += images[b, i * P + r, j * P + c, k] * kernel[r, c, k, d]
                    out[b, i * (cols // P) + j, d] = total
    return out


@pytest.mark.parametrize("P, rows, cols", [(2, 4, 6), (4, 16, 16), (1, 3, 2)])
def test_the_patch_embedding_is_a_strided_convolution_computed_by_loops(P, rows, cols):
    """Exactly, in float64: pixels, kernel and bias are multiples of 1/16 below 1, so every
    product and partial sum is exact and the order of the additions cannot matter. Random
    floats agree to rounding."""
    rng = np.random.default_rng(P)
    C = 5
    images = rng.integers(0, 16, size=(2, rows, cols, 3)) / 16
    kernel = rng.integers(-8, 8, size=(P, P, 3, C)) / 16
    bias = rng.integers(-8, 8, size=C) / 16
    N = (rows // P) * (cols // P)
    pos = rng.integers(-8, 8, size=(N, C)) / 16
    z, _ = patch_embed_forward(images, kernel.reshape(P * P * 3, C), bias, pos, P)
    np.testing.assert_array_equal(z, conv_by_loops(images, kernel, bias, P) + pos)
    images, kernel = rng.normal(size=images.shape), rng.normal(size=kernel.shape)
    z, _ = patch_embed_forward(images, kernel.reshape(P * P * 3, C), bias, pos, P)
    np.testing.assert_allclose(z, conv_by_loops(images, kernel, bias, P) + pos, rtol=1e-12,
                               atol=1e-12)


def test_patchify_cuts_raster_order_patches_and_unpatchify_puts_them_back():
    images = np.arange(2 * 4 * 6 * 3, dtype=float).reshape(2, 4, 6, 3)
    patches = patchify(images, 2)  # (2, 6, 12)
    assert patches.shape == (2, 6, 12)
    np.testing.assert_array_equal(patches[1, 0], images[1, 0:2, 0:2].reshape(-1))
    np.testing.assert_array_equal(patches[1, 1], images[1, 0:2, 2:4].reshape(-1))  # right of it
    np.testing.assert_array_equal(patches[1, 3], images[1, 2:4, 0:2].reshape(-1))  # next row
    assert sorted(patches.reshape(-1)) == sorted(images.reshape(-1))  # a permutation
    np.testing.assert_array_equal(unpatchify(patches, 4, 6, 2), images)


@settings(max_examples=3)
@given(seed=st.integers(0, 2**32 - 1), P=st.sampled_from([1, 2, 3]))
def test_patch_embedding_gradients_match_central_differences(seed, P):
    rng = np.random.default_rng(seed)
    C, rows, cols = 4, 2 * P, 3 * P
    arrays = {"images": rng.normal(size=(2, rows, cols, 3)), "w": rng.normal(size=(P * P * 3, C)),
              "b": rng.normal(size=C), "pos": rng.normal(size=(6, C))}
    z, cache = patch_embed_forward(arrays["images"], arrays["w"], arrays["b"], arrays["pos"], P)
    upstream = rng.normal(size=z.shape)
    dimages, dw, db, dpos = patch_embed_backward(upstream, cache)
    analytic = {"images": dimages, "w": dw, "b": db, "pos": dpos}

    def f():
        return projected(patch_embed_forward(arrays["images"], arrays["w"], arrays["b"],
                                             arrays["pos"], P)[0], upstream)

    check_grads(f, arrays, analytic)


def random_params(cfg, seed):
    """float64 parameters of the fused model, biases and gains away from 0 and 1."""
    return random_gpt_params(cfg, seed, init=caption_init)


def random_batch(cfg, rng, B, T):
    """B random pictures and texts of T - 1 tokens, the second one token shorter (padding)."""
    images = rng.uniform(size=(B, cfg.image_size, cfg.image_size, 3))
    texts = [list(rng.integers(7, cfg.vocab_size, size=T - 1 - (b % 2))) for b in range(B)]
    return caption.make_batch(list(images), texts)


@pytest.mark.parametrize("fusion", ["prefix", "cross", "none"])
@settings(max_examples=1)
@given(seed=st.integers(0, 2**32 - 1))
def test_the_caption_loss_gradient_matches_central_differences_for_every_parameter(fusion, seed):
    """The summed loss over the text positions, w.r.t. every parameter of the fused model: the
    patch map and image positions included (the text reads the picture). Zero where it must be:
    the attention key biases, and the rows of wpe beyond the text."""
    cfg = CaptionConfig(**{**TINY.to_dict(), "fusion": fusion})
    params = random_params(cfg, seed)
    batch = random_batch(cfg, np.random.default_rng(seed + 1), B=2, T=4)
    L, n, analytic = caption.loss_and_grads(params, cfg, batch)
    assert set(analytic) == set(params) == set(caption_param_shapes(cfg))
    assert n == int((batch["targets"] != IGNORE_INDEX).sum())  # the text's targets, no more
    T = batch["inputs"].shape[1]
    zero = {**key_bias_zeros(params, cfg.n_embd), "wpe": np.s_[T:]}
    check_grads(lambda: caption.loss(params, cfg, batch)[0], params, analytic, zero=zero)


@pytest.mark.parametrize("fusion", ["prefix", "cross", "none"])
def test_fused_backward_matches_central_differences_on_a_random_upstream(fusion):
    """fused_backward alone, every logit row (image rows too) given a random upstream."""
    cfg = CaptionConfig(**{**TINY.to_dict(), "fusion": fusion, "n_layer": 1})
    params = random_params(cfg, 3)
    rng = np.random.default_rng(4)
    batch = random_batch(cfg, rng, B=2, T=3)
    args = (batch["images"], batch["inputs"], batch["attention_mask"])
    logits, cache = fused_forward(params, cfg, *args)
    upstream = rng.normal(size=logits.shape)
    analytic = fused_backward(upstream, cache)
    zero = {**key_bias_zeros(params, cfg.n_embd), "wpe": np.s_[3:]}
    check_grads(lambda: projected(fused_forward(params, cfg, *args)[0], upstream), params,
                analytic, zero=zero)


def test_image_positions_carry_the_ignore_index_and_add_nothing_to_the_loss():
    """With prefix fusion the sequence is N image positions, then the text. The image positions
    have no target (IGNORE_INDEX), their logits get a gradient of exactly 0, and the loss is the
    cross-entropy of the text rows alone."""
    params = random_params(TINY, 5)
    batch = random_batch(TINY, np.random.default_rng(6), B=3, T=5)
    N = TINY.n_image_tokens
    L, n, cache = caption.loss(params, TINY, batch)
    logits = cache["logits"]
    assert logits.shape[1] == N + batch["inputs"].shape[1]
    targets = caption.sequence_targets(batch["targets"], TINY)
    np.testing.assert_array_equal(targets[:, :N], IGNORE_INDEX)
    np.testing.assert_array_equal(targets[:, N:], batch["targets"])
    dlogits = caption.cross_entropy_backward(1.0, cache["ce"])
    np.testing.assert_array_equal(dlogits[:, :N], 0.0)
    assert np.abs(dlogits[:, N:]).max() > 0.01
    text_only, _ = cross_entropy_forward(logits[:, N:], batch["targets"])
    assert L == float(text_only)
    assert n == int((batch["targets"] != IGNORE_INDEX).sum())
    # Had the image positions a target, the loss would count it: the test could fail.
    with_targets = np.where(targets == IGNORE_INDEX, 0, targets)
    with_targets[:, N:] = targets[:, N:]
    assert float(cross_entropy_forward(logits, with_targets)[0]) > L


def test_the_text_reads_the_picture_and_the_picture_never_reads_the_text():
    """Prefix fusion is causal over the whole sequence: the image rows see only image rows, so
    changing the text leaves them bit-identical; every text row sees every patch, so changing
    the picture changes every text row."""
    params = random_params(TINY, 7)
    rng = np.random.default_rng(8)
    batch = random_batch(TINY, rng, B=2, T=4)
    N = TINY.n_image_tokens
    logits, _ = fused_forward(params, TINY, batch["images"], batch["inputs"])
    other_text = (batch["inputs"] + 1) % TINY.vocab_size
    changed, _ = fused_forward(params, TINY, batch["images"], other_text)
    np.testing.assert_array_equal(changed[:, :N], logits[:, :N])
    other_image = batch["images"].copy()
    other_image[:, -1, -1] += 0.5  # one pixel of the last patch
    changed, _ = fused_forward(params, TINY, other_image, batch["inputs"])
    np.testing.assert_array_equal(changed[:, :N - 1], logits[:, :N - 1])  # patches before it
    assert (np.abs(changed[:, N:] - logits[:, N:]).max(axis=-1) > 1e-9).all()


def test_cross_fusion_reads_the_picture_through_every_text_position():
    cfg = CaptionConfig(**{**TINY.to_dict(), "fusion": "cross"})
    params = random_params(cfg, 9)
    batch = random_batch(cfg, np.random.default_rng(10), B=2, T=4)
    logits, _ = fused_forward(params, cfg, batch["images"], batch["inputs"])
    assert logits.shape == batch["inputs"].shape + (cfg.vocab_size,)  # the text rows only
    other_image = batch["images"][::-1]
    changed, _ = fused_forward(params, cfg, other_image, batch["inputs"])
    assert (np.abs(changed - logits).max(axis=-1) > 1e-9).all()
    assert "h.0.xattn.c_kv.w" in params and "h.0.xattn.c_kv.w" not in caption_init(
        TINY, np.random.default_rng(0))


def test_the_family_and_the_objective_are_registered():
    assert MODELS["caption"].config is CaptionConfig
    assert get_objective("caption") is caption and caption.MODEL == "caption"
    params = caption_init(TINY, np.random.default_rng(0))
    assert {n: v.shape for n, v in params.items()} == caption_param_shapes(TINY)
    assert params["img.w"].shape == (2 * 2 * 3, 8) and params["img.wpe"].shape == (4, 8)


def test_bad_configs_and_inputs_are_refused_by_name():
    with pytest.raises(ValueError, match="patch=3 must divide image_size=16"):
        CaptionConfig(vocab_size=5, patch=3)
    with pytest.raises(ValueError, match="fusion must be one of"):
        CaptionConfig(vocab_size=5, fusion="late")
    with pytest.raises(ValueError, match="CaptionConfig.patch must be a positive integer"):
        CaptionConfig(vocab_size=5, patch=0)
    params = caption_init(TINY, np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"images must have shape \(1, 4, 4, 3\)"):
        fused_forward(params, TINY, np.zeros((1, 8, 8, 3)), np.zeros((1, 2), dtype=int))
    with pytest.raises(ValueError, match="images and sequences must pair up"):
        caption.make_batch([np.zeros((4, 4, 3))], [[7], [8]])
    w, b, pos = np.zeros((48, 4)), np.zeros(4), np.zeros((16, 4))
    with pytest.raises(ValueError, match=r"images must have shape \(B, rows, cols, channels\), "
                                         r"got \(16, 16, 3\)"):
        patch_embed_forward(np.zeros((16, 16, 3)), w, b, pos, 4)  # one picture, no batch axis
    for P in (0, -4, 2.0, True):
        with pytest.raises(ValueError, match=f"P must be a positive integer, got {P!r}"):
            patch_embed_forward(np.zeros((1, 16, 16, 3)), w, b, pos, P)


def test_train_caption_from_the_command_line(tmp_path, capsys):
    """train --objective caption writes a checkpoint of the fused model with the questions'
    vocabulary; --fusion is stored, and --resume refuses to change it."""
    from minillm.checkpoint import load_checkpoint
    from minillm.cli import main
    from minillm.pictures import caption_tokenizer

    small = ["--objective", "caption", "--steps", "4", "--batch-size", "3", "--n-embd", "16",
             "--n-layer", "1", "--n-ctx", "16", "--log-every", "2"]
    whole = str(tmp_path / "whole.safetensors")
    assert main(["train", *small, "--fusion", "cross", "--out", whole]) == 0
    out = capsys.readouterr().out
    assert "training a fused image–text GPT" in out and "step     4/4" in out
    assert main(["train", *small, "--fusion", "none", "--out", str(tmp_path / "t.safetensors")]) == 0
    assert "training a text-only GPT (never shown the pictures)" in capsys.readouterr().out
    assert "minillm caption --checkpoint" in out
    model_cfg, train_cfg, tokenizer, state = load_checkpoint(whole)
    assert train_cfg.objective == "caption" and model_cfg.fusion == "cross"
    assert tokenizer.vocab == caption_tokenizer().vocab
    assert "h.0.xattn.c_q.w" in state["params"]
    assert main(["train", "--resume", "--out", whole, "--fusion", "prefix"]) == 2
    assert "--fusion cross" in capsys.readouterr().err


def test_train_refuses_fusion_without_caption_and_caption_with_a_text_file(tmp_path, monkeypatch,
                                                                           capsys):
    from minillm.cli import main

    monkeypatch.chdir(tmp_path)  # had a refusal failed, its run writes runs/ here

    assert main(["train", "--objective", "clm", "--fusion", "cross", "--steps", "1"]) == 2
    assert "--fusion cross needs --objective caption, got --objective clm" in capsys.readouterr().err
    text = tmp_path / "t.txt"
    text.write_text("小猫喜欢吃鱼。\n", encoding="utf-8")
    assert main(["train", "--objective", "caption", "--data", str(text), "--steps", "1"]) == 2
    assert "which a text file does not have" in capsys.readouterr().err
    # --pool fixes a set of grammar sentences; caption draws fresh pictures every step and
    # would silently ignore it.
    assert main(["train", "--objective", "caption", "--pool", "50", "--steps", "1"]) == 2
    assert "--pool 50 needs --objective clm, " in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------
# Reading the picture, measured


def quiet(line):
    """A log that prints nothing."""


def test_a_short_training_answers_weather_and_place_better_than_the_text_only_model():
    """600 steps of the fused model (prefix fusion) against the same GPT trained on the same
    texts without the picture (fusion none), on 400 fresh pictures.

    A model that never reads the picture gives each picture the same answer v, right with
    probability P(v) <= chance = max_v P(v) (the grammar given kind A: weather 很好 0.52, place
    公园 0.38, people 几个人 0.65; test_pictures.py derives them). Its accuracy on n = 400
    pictures is then at most chance + 5σ, σ = sqrt(chance (1 - chance) / n), but for a
    5-standard-deviation fluke. The fused model must beat that bound on weather and place, and
    the text-only model by 0.1 (measured: about 0.78 and 0.9 against 0.52 and 0.38)."""
    from dataclasses import replace

    from minillm.config import TrainConfig
    from minillm.multimodal import answers, compare_slot_accuracy
    from minillm.pictures import PictureData, caption_tokenizer, sample_pictures
    from minillm.train import train

    tok = caption_tokenizer()
    cfg = CaptionConfig(vocab_size=len(tok), n_ctx=16, n_embd=32, n_head=4, n_layer=1)
    text_cfg = replace(cfg, fusion="none")
    train_cfg = TrainConfig(objective="caption", steps=600, batch_size=16, lr=2e-2, min_lr=2e-3,
                            log_every=600)
    fused = train(cfg, train_cfg, PictureData(tok), tok, log=quiet)["params"]
    text_only = train(text_cfg, replace(train_cfg, steps=150), PictureData(tok), tok,
                      log=quiet)["params"]
    n = 400
    pictures = sample_pictures(np.random.default_rng(123), n)
    numbers = compare_slot_accuracy((fused, cfg), (text_only, text_cfg), tok, pictures)
    chance = {"weather": 0.52, "place": 0.38, "people": 0.65}  # the grammar's max_v P(v)
    images = np.stack([p.image for p in pictures])
    for slot, question in QUESTIONS.items():  # the text-only model cannot tell pictures apart
        assert len(set(answers(text_only, text_cfg, tok, images, question))) == 1
        bound = chance[slot] + 5 * np.sqrt(chance[slot] * (1 - chance[slot]) / n)
        assert numbers["by_slot"]["text_only"][slot] <= bound
    for slot in ("weather", "place"):
        bound = chance[slot] + 5 * np.sqrt(chance[slot] * (1 - chance[slot]) / n)
        fused_acc, text_acc = numbers["by_slot"]["fused"][slot], numbers["by_slot"]["text_only"][slot]
        assert fused_acc > bound, (slot, fused_acc, bound)
        assert fused_acc >= text_acc + 0.1, (slot, fused_acc, text_acc)
    assert numbers["slot_accuracy"]["fused"] > numbers["slot_accuracy"]["text_only"]
    assert numbers["pictures"] == n


def test_the_caption_command_shows_a_picture_and_both_models_answers(tmp_path, monkeypatch,
                                                                    capsys):
    """caption draws the picture of --seed, prints its caption and answers beside the truth and
    the text-only model's, writes the PNG (8×8 per pixel) and the JSON of the slot accuracy."""
    import json

    from test_pictures import read_png

    from minillm.cli import main
    from minillm.pictures import enlarged, sample_pictures

    monkeypatch.chdir(tmp_path)
    small = ["--objective", "caption", "--steps", "3", "--batch-size", "2", "--n-embd", "16",
             "--n-layer", "1", "--n-ctx", "16"]
    assert main(["train", *small]) == 0
    assert main(["caption", "--seed", "5", "--pictures", "10"]) == 0  # no text-only model yet
    out = capsys.readouterr().out
    assert "(no --text-only model)" in out
    assert main(["train", *small, "--fusion", "none", "--out", "runs/caption_text.safetensors"]) == 0
    assert "caption --text-only runs/caption_text.safetensors" in capsys.readouterr().out
    assert main(["caption", "--seed", "5", "--pictures", "10", "--png", "p.png",
                 "--json", "p.json"]) == 0
    out = capsys.readouterr().out
    (picture,) = sample_pictures(np.random.default_rng(5), 1)  # the picture of --seed 5
    assert "\x1b[48;2;" in out and "(no --text-only model)" not in out
    for question, truth in picture.questions():
        line = next(row for row in out.splitlines() if row.startswith(question))
        assert truth in line
    assert picture.caption in out
    np.testing.assert_array_equal(read_png((tmp_path / "p.png").read_bytes()),
                                  np.round(enlarged(picture.image, 8) * 255).astype(np.uint8))
    numbers = json.loads((tmp_path / "p.json").read_text(encoding="utf-8"))
    assert set(numbers["slot_accuracy"]) == {"fused", "text_only"} and numbers["seed"] == 5
    # chance: the grammar's most likely answers, right on the 10 pictures that show them
    rng = np.random.default_rng(5)  # --seed 5: the picture shown, then --pictures 10 more
    sample_pictures(rng, 1)
    pictures = sample_pictures(rng, 10)
    likeliest = {"weather": "很好", "place": "公园", "people": "几个人"}
    assert numbers["chance"] == pytest.approx(np.mean(
        [np.mean([p.slots[slot] == v for p in pictures]) for slot, v in likeliest.items()]))
    assert numbers["pictures"] == 10
    # Each model in its place: the baseline is refused as --checkpoint, and the other way round.
    assert main(["caption", "--checkpoint", "runs/caption_text.safetensors"]) == 2
    assert "holds the text-only baseline" in capsys.readouterr().err
    assert main(["caption", "--text-only", "runs/caption.safetensors"]) == 2
    assert "reads the picture (--fusion prefix)" in capsys.readouterr().err


def test_chance_is_the_likeliest_answers_accuracy_on_the_same_pictures():
    """Chance is what a model that never looks scores on the pictures the models are measured
    on: it answers the grammar's most likely values 很好, 公园, 几个人 (P = 0.52, 0.38, 0.65,
    test_pictures.py derives them) and is right on exactly the pictures that show them. On
    pictures of one person each, it is never right about the people: chance is 0 there, not the
    grammar's 0.65 (which would make a model that answers 几个人 look below chance)."""
    from minillm.multimodal import compare_slot_accuracy
    from minillm.pictures import ONE, caption_tokenizer, draw_picture, sample_kind_a

    rng = np.random.default_rng(11)
    alone = [s for s in sample_kind_a(rng, 60) if s.person in ("我", "小明")]
    pictures = [draw_picture(s, rng) for s in alone]
    assert len(pictures) >= 10 and all(p.slots["people"] == ONE for p in pictures)
    tok = caption_tokenizer()
    cfg = CaptionConfig(vocab_size=len(tok), n_ctx=8, n_embd=8, n_head=2, n_layer=1)
    model = (caption_init(cfg, np.random.default_rng(12)), cfg)
    numbers = compare_slot_accuracy(model, None, tok, pictures)
    likeliest = {"weather": "很好", "place": "公园", "people": "几个人"}
    expected = {slot: np.mean([p.slots[slot] == v for p in pictures])
                for slot, v in likeliest.items()}
    assert expected["people"] == 0.0 and 0 < expected["weather"] < 1
    assert numbers["by_slot"]["chance"] == pytest.approx(expected, abs=1e-12)
    assert numbers["chance"] == pytest.approx(np.mean(list(expected.values())), abs=1e-12)


def test_a_bad_text_only_checkpoint_is_named_by_its_own_option(tmp_path, monkeypatch, capsys):
    """--text-only that does not exist, or holds another objective's model, is refused in one
    line that names --text-only (not --checkpoint, which is fine), exit 2."""
    from minillm.cli import main

    monkeypatch.chdir(tmp_path)
    small = ["--steps", "1", "--batch-size", "2", "--n-embd", "8", "--n-head", "2",
             "--n-layer", "1", "--n-ctx", "16"]
    assert main(["train", "--objective", "caption", *small]) == 0
    assert main(["train", *small, "--out", "clm.safetensors"]) == 0
    capsys.readouterr()
    assert main(["caption", "--text-only", "missing.safetensors", "--pictures", "2"]) == 2
    err = capsys.readouterr().err
    assert "--text-only 'missing.safetensors' does not exist" in err and "--checkpoint" not in err
    assert main(["caption", "--text-only", "clm.safetensors", "--pictures", "2"]) == 2
    err = capsys.readouterr().err
    assert "--text-only 'clm.safetensors' was trained with --objective clm" in err
    assert "--checkpoint 'clm" not in err


def test_slot_accuracy_reads_the_pictures_a_bounded_batch_at_a_time(monkeypatch):
    """--pictures 50000 must not run one forward pass over all of them (its memory grows with
    the batch: 1.6 GB for 5000): slot_accuracy answers EVAL_BATCH pictures at a time. With
    answers that read each picture by hand (pictures.classify), every batch's answers must
    line up with its own pictures: all right."""
    import minillm.multimodal as multimodal
    from minillm.pictures import classify, sample_pictures

    slot_of = {question: slot for slot, question in QUESTIONS.items()}
    batches = []

    def by_hand(params, cfg, tokenizer, images, question):
        batches.append(len(images))
        return [classify(image)[0][slot_of[question]] for image in images]

    monkeypatch.setattr(multimodal, "answers", by_hand)
    monkeypatch.setattr(multimodal, "EVAL_BATCH", 4)
    pictures = sample_pictures(np.random.default_rng(14), 10)
    accuracy = multimodal.slot_accuracy(None, None, None, pictures)
    assert accuracy == {**{slot: 1.0 for slot in QUESTIONS}, "mean": 1.0}
    assert batches == [4, 4, 2] * len(QUESTIONS)


def test_caption_refuses_more_pictures_than_memory_holds(tmp_path, monkeypatch, capsys):
    """Each picture of --pictures is held while the models answer (about 8 KB): a million need
    7.63 GB, refused in one line before anything is drawn when the process may have 1 GB."""
    import minillm.memory
    from minillm.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(minillm.memory, "available_bytes", lambda: 2**30)
    assert main(["caption", "--pictures", "1000000"]) == 2
    err = capsys.readouterr().err
    assert "--pictures 1000000 would need about 7.63 GB of memory, more than the 1.00 GB" in err
