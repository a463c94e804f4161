"""GPT-1 (Radford et al. 2018): a GPT whose config says arch="gpt1": post-LN blocks, no final
layer norm. Gradients, causality, the key/value cache, parity with transformers'
OpenAIGPTLMHeadModel on the fixture in tests/fixtures/hf/openai_gpt/ (its README says how it
was made), export and import both ways, old checkpoints, and the command line."""

import json
import math
import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minillm import hf, safetensors
from minillm.checkpoint import CheckpointError, load_checkpoint
from minillm.cli import main
from minillm.models import GPTConfig, gpt_forward, gpt_init, gpt_param_shapes
from minillm.objectives import clm
from test_gpt import _check_every_parameter, check_causal, check_gpt_backward, random_params
from test_hf import _copy_folder

FIXTURE = os.path.join(os.path.dirname(__file__), "fixtures", "hf", "openai_gpt")
TINY1 = GPTConfig(vocab_size=11, n_ctx=6, n_embd=8, n_head=2, n_layer=2, arch="gpt1")
SMALL = ["--n-embd", "16", "--n-layer", "1", "--n-head", "2", "--batch-size", "4",
         "--n-ctx", "24"]


def case():
    return np.load(os.path.join(FIXTURE, "case.npz"), allow_pickle=False)


# ---------------------------------------------------------------------------------------------
# The model


def test_gpt1_has_no_final_layer_norm_and_post_ln_blocks():
    shapes = gpt_param_shapes(TINY1)
    assert "ln_f.g" not in shapes and "ln_f.b" not in shapes
    gpt2_shapes = gpt_param_shapes(GPTConfig(**{**TINY1.to_dict(), "arch": "gpt2"}))
    assert set(gpt2_shapes) - set(shapes) == {"ln_f.g", "ln_f.b"}
    assert TINY1.block_spec().pre_ln is False
    assert GPTConfig(vocab_size=11).block_spec().pre_ln is True  # GPT-2, the default


def test_gpt1_draws_every_matrix_from_n_0_0_02_without_gpt2_s_residual_scaling():
    """Radford et al. 2018, section 4.1: weights N(0, 0.02). GPT-2's 1/sqrt(2L) on the residual
    projections (Radford et al. 2019, section 2.3) would make their std 0.01 here (L = 2). The
    sample std of n normal draws has standard error 0.02/sqrt(2n): bound 5 of them."""
    cfg = GPTConfig(vocab_size=11, n_ctx=8, n_embd=64, n_head=2, n_layer=2, arch="gpt1")
    params = gpt_init(cfg, np.random.default_rng(0), np.float64)
    for name in ("h.0.attn.c_attn.w", "h.0.attn.c_proj.w", "h.1.mlp.c_proj.w"):
        n = params[name].size  # 12288, 4096, 16384
        assert abs(params[name].std() - 0.02) < 5 * 0.02 / math.sqrt(2 * n), name


@settings(max_examples=1)
@given(seed=st.integers(0, 2**32 - 1), B=st.integers(1, 2), T=st.integers(2, 5))
def test_gpt1_backward_matches_central_differences_for_every_parameter(seed, B, T):
    check_gpt_backward(TINY1, seed, B, T)


def test_gpt1_loss_gradient_matches_central_differences():
    params = random_params(TINY1, seed=5)
    batch = clm.make_batch([[7, 9, 8, 10], [8, 7]])
    _, _, analytic = clm.loss_and_grads(params, TINY1, batch, "sum")
    _check_every_parameter(params, analytic, lambda: clm.loss(params, TINY1, batch, "sum")[0],
                           batch["inputs"].shape[1])


def test_the_last_block_s_layer_norm_is_the_output_when_there_is_no_final_one():
    """logits = x_L wte^T with x_L the last block's LN_2 output: so each position's hidden
    state has mean beta and spread gamma, recomputed here from the logits by least squares."""
    params = random_params(TINY1, seed=7)
    ids = np.array([[1, 4, 2, 9]])
    logits, cache = gpt_forward(params, TINY1, ids)
    h = np.linalg.lstsq(params["wte"], logits[0].T, rcond=None)[0].T  # (T, C): logits = h wte^T
    g, b = params["h.1.ln_2.g"], params["h.1.ln_2.b"]
    norm = (h - b) / g  # LN_2's normalized input: mean 0, variance 1 - eps/(var + eps) ~ 1
    np.testing.assert_allclose(norm.mean(axis=-1), 0.0, atol=1e-9)
    np.testing.assert_allclose(norm.var(axis=-1), 1.0, atol=1e-4)


@settings(max_examples=5)
@given(seed=st.integers(0, 2**32 - 1), t=st.integers(0, 4))
def test_gpt1_changing_later_tokens_leaves_earlier_outputs_bit_identical(seed, t):
    check_causal(TINY1, seed, t)


def test_gpt1_key_value_cache_gives_the_logits_of_the_whole_sequence():
    """generate() feeds one token at a time with ``past``: the post-LN branch must give the
    same logits as one pass over the whole sequence."""
    params = random_params(TINY1, seed=8)
    ids = np.array([[2, 7, 9, 4, 10]])
    whole, _ = gpt_forward(params, TINY1, ids)
    _, cache = gpt_forward(params, TINY1, ids[:, :2])
    steps = []
    for t in range(2, 5):
        logits, cache = gpt_forward(params, TINY1, ids[:, t:t + 1], past=cache)
        steps.append(logits[:, 0])
    np.testing.assert_allclose(np.stack(steps, axis=1), whole[:, 2:], rtol=1e-12, atol=1e-12)


def test_an_unknown_arch_is_refused_by_name():
    with pytest.raises(ValueError, match=r"GPTConfig\.arch must be one of .*got 'gpt3'"):
        GPTConfig(vocab_size=5, arch="gpt3")


# ---------------------------------------------------------------------------------------------
# Parity with transformers' OpenAIGPTLMHeadModel (float64 fixture; no torch needed)


def test_the_fixture_is_a_gpt1_with_nothing_trivial():
    """What the parity test below rests on: an openai-gpt folder, no final layer norm, no bias
    at 0 and no layer norm at the identity (a wrong bias or gain would then show)."""
    model = hf.load(FIXTURE)
    assert model.arch == "openai-gpt" and model.cfg.arch == "gpt1"
    assert model.hf_config["afn"] == "gelu" and model.cfg.n_inner == 4 * model.cfg.n_embd
    assert not any(name.startswith("ln_f") for name in model.params)
    for name, value in model.params.items():
        if name.endswith(".b"):
            assert np.all(value != 0), name
        if name.endswith(".g"):
            assert np.all(value != 1), name


def test_float64_logits_loss_and_every_gradient_match_transformers_gpt1():
    data = case()
    out = hf.forward_backward(hf.load(FIXTURE), data, dtype=np.float64)
    np.testing.assert_allclose(out["logits"], data["logits"], rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(out["loss"], data["loss"], rtol=1e-9, atol=1e-10)
    expected = {k[len("grad/"):] for k in data.files if k.startswith("grad/")}
    assert set(out["grads"]) == expected and len(expected) == 26
    for name in expected:
        np.testing.assert_allclose(out["grads"][name], data["grad/" + name], rtol=1e-7,
                                   atol=1e-9, err_msg=name)


def test_float32_logits_match_transformers_float32_run():
    data = case()
    out = hf.forward_backward(hf.load(FIXTURE), data, dtype=np.float32)
    assert out["logits"].dtype == np.float32
    np.testing.assert_allclose(out["logits"], data["logits_f32"], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(out["loss"], data["loss_f32"], rtol=1e-5, atol=1e-5)


def test_the_fixture_would_catch_gpt2_s_blocks():
    """The same weights through GPT-2's pre-LN blocks with an identity final layer norm are
    far from transformers' GPT-1 logits: the parity above tests the post-LN branch."""
    model = hf.load(FIXTURE)
    params = {k: v.astype(np.float64) for k, v in model.params.items()}
    C = model.cfg.n_embd
    params.update({"ln_f.g": np.ones(C), "ln_f.b": np.zeros(C)})
    gpt2 = GPTConfig(**{**model.cfg.to_dict(), "arch": "gpt2"})
    logits, _ = gpt_forward(params, gpt2, case()["input_ids"], case()["attention_mask"])
    assert np.max(np.abs(logits - case()["logits"])) > 1e-2


# ---------------------------------------------------------------------------------------------
# Export and import


def _moved(params, rng):
    return {k: (v + 0.1 * rng.normal(size=v.shape)).astype(np.float32) for k, v in params.items()}


def test_a_gpt1_saved_in_hf_layout_loads_back_bit_identical(tmp_path):
    rng = np.random.default_rng(0)
    params = _moved(gpt_init(TINY1, rng), rng)
    hf.save(hf.from_minillm("openai-gpt", TINY1, params), tmp_path)
    with open(tmp_path / "config.json") as f:
        config = json.load(f)
    assert config["model_type"] == "openai-gpt"
    assert config["architectures"] == ["OpenAIGPTLMHeadModel"]
    names = set(safetensors.read_header(str(tmp_path / "model.safetensors"))[0])
    # The names transformers wrote for its own two-block GPT-1 (the fixture): no more, no less.
    assert names == set(safetensors.read_header(os.path.join(FIXTURE, "model.safetensors"))[0])
    loaded = hf.load(tmp_path)
    assert loaded.cfg == TINY1
    for name, value in params.items():
        np.testing.assert_array_equal(loaded.params[name], value, err_msg=name)


def test_a_gpt1_and_a_gpt2_are_not_saved_as_each_other():
    with pytest.raises(ValueError, match="arch='gpt1' is Hugging Face's 'openai-gpt', not 'gpt2'"):
        hf.from_minillm("gpt2", TINY1, {})
    with pytest.raises(ValueError, match="feed-forward width of 4 n_embd"):
        hf.from_minillm("openai-gpt", GPTConfig(**{**TINY1.to_dict(), "n_inner": 12}), {})


def test_a_missing_or_unused_tensor_and_another_activation_are_refused_by_name(tmp_path):
    def drop(t):
        del t["transformer.h.1.mlp.c_fc.bias"]
        return t

    with pytest.raises(ValueError, match=r"transformer\.h\.1\.mlp\.c_fc\.bias"):
        hf.load(_copy_folder("openai_gpt", tmp_path / "a", drop))

    def add(t):  # GPT-2's final layer norm: GPT-1 has none
        t["transformer.ln_f.weight"] = np.ones(16, dtype=np.float32)
        return t

    with pytest.raises(ValueError, match=r"openai-gpt model does not use: transformer\.ln_f"):
        hf.load(_copy_folder("openai_gpt", tmp_path / "b", add))
    with pytest.raises(ValueError, match="afn='relu' is not supported"):
        hf.load(_copy_folder("openai_gpt", tmp_path / "c", config=lambda c: {**c, "afn": "relu"}))


def test_older_files_with_the_mask_buffer_and_the_tied_copy_load_as_the_fixture(tmp_path):
    """The causal mask buffer older transformers versions saved (attn.bias) and a stored copy
    of the tied lm_head are accounted for; a copy that differs is refused."""
    def older(t):
        for layer in range(2):
            mask = np.tril(np.ones((16, 16), np.float32))  # (T, T): the lower triangle
            t[f"transformer.h.{layer}.attn.bias"] = mask[None, None]
        t["lm_head.weight"] = t["transformer.tokens_embed.weight"].copy()
        return t

    model = hf.load(_copy_folder("openai_gpt", tmp_path / "a", older))
    reference = hf.load(FIXTURE)
    for name, value in reference.params.items():
        np.testing.assert_array_equal(model.params[name], value, err_msg=name)

    def differs(t):
        t["lm_head.weight"] = t["transformer.tokens_embed.weight"] + np.float32(1e-3)
        return t

    with pytest.raises(ValueError, match=r"lm_head\.weight differs"):
        hf.load(_copy_folder("openai_gpt", tmp_path / "b", differs))


def test_transformers_loads_a_saved_minillm_gpt1_with_the_same_float64_logits(tmp_path):
    """Optional: with transformers and torch installed, from_pretrained on a folder hf.save
    wrote from a minillm GPT-1 gives minillm's float64 logits."""
    transformers = pytest.importorskip("transformers")
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    params = _moved(gpt_init(TINY1, rng), rng)
    hf.save(hf.from_minillm("openai-gpt", TINY1, params), tmp_path)
    theirs = transformers.OpenAIGPTLMHeadModel.from_pretrained(
        tmp_path, dtype=torch.float64, attn_implementation="eager").eval()
    ids = rng.integers(0, TINY1.vocab_size, size=(2, 5))
    mask = np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    with torch.no_grad():
        expected = theirs(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask)).logits
    ours, _ = gpt_forward({k: v.astype(np.float64) for k, v in params.items()}, TINY1, ids, mask)
    np.testing.assert_allclose(ours, expected.numpy(), rtol=1e-9, atol=1e-10)


# ---------------------------------------------------------------------------------------------
# Checkpoints and the command line


def test_train_arch_gpt1_lowers_the_loss_and_its_checkpoint_is_read_by_every_gpt_command(
        tmp_path, capsys):
    ckpt = str(tmp_path / "gpt1.safetensors")
    assert main(["train", "--arch", "gpt1", "--steps", "40", "--log-every", "20", *SMALL,
                 "--out", ckpt]) == 0
    out = capsys.readouterr().out
    assert out.startswith("training a GPT-1 of ")
    losses = [float(line.split("| loss ")[1].split()[0]) for line in out.splitlines()
              if line.startswith("step ")]
    assert len(losses) == 2 and losses[1] < losses[0]
    model_cfg, train_cfg, _, state = load_checkpoint(ckpt)
    assert model_cfg.arch == "gpt1" and train_cfg.objective == "clm"
    assert "ln_f.g" not in state["params"]
    for argv in (["generate", "今天"], ["score", "今天天气很好。"], ["next", "今天"]):
        assert main([*argv, "--checkpoint", ckpt]) == 0, argv
    capsys.readouterr()


def test_arch_is_refused_for_other_objectives_and_cannot_change_on_resume(tmp_path, capsys):
    assert main(["train", "--objective", "mlm", "--arch", "gpt1", "--steps", "1", *SMALL,
                 "--out", str(tmp_path / "m.safetensors")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--arch gpt1 needs --objective clm, got --objective mlm" in err, err
    ckpt = str(tmp_path / "g.safetensors")
    assert main(["train", "--arch", "gpt1", "--steps", "2", *SMALL, "--out", ckpt]) == 0
    capsys.readouterr()
    assert main(["train", "--resume", "--arch", "gpt2", "--out", ckpt]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "(--arch gpt1); --arch gpt2 cannot change them" in err, err


def test_export_and_import_a_gpt1_checkpoint_round_trip_bit_identical(tmp_path, capsys):
    ckpt, folder, back = (str(tmp_path / n) for n in ("g.safetensors", "hf", "back.safetensors"))
    assert main(["train", "--arch", "gpt1", "--steps", "3", *SMALL, "--out", ckpt]) == 0
    assert main(["export", ckpt, folder, "--to", "hf"]) == 0
    assert "wrote openai-gpt to" in capsys.readouterr().out
    with open(os.path.join(folder, "config.json")) as f:
        config = json.load(f)
    assert config["model_type"] == "openai-gpt"
    assert config["architectures"] == ["OpenAIGPTLMHeadModel"]
    assert main(["import", folder, back]) == 0
    cfg_a, _, tok_a, a = load_checkpoint(ckpt)
    cfg_b, train_b, tok_b, b = load_checkpoint(back)
    assert cfg_b == cfg_a and train_b.objective == "clm" and tok_b.vocab == tok_a.vocab
    assert set(b["params"]) == set(a["params"])
    for name, value in a["params"].items():
        np.testing.assert_array_equal(b["params"][name], value, err_msg=name)


def test_a_gpt_checkpoint_written_before_arch_loads_as_gpt2_and_a_bad_arch_is_named(tmp_path):
    path = str(tmp_path / "old.safetensors")
    assert main(["train", "--steps", "1", *SMALL, "--out", path]) == 0
    tensors, metadata = safetensors.load_file_with_metadata(path)
    meta = json.loads(metadata["minillm"])
    del meta["model_config"]["arch"]
    safetensors.save_file(tensors, path, metadata={"minillm": json.dumps(meta)})
    cfg, _, _, state = load_checkpoint(path)
    assert cfg.arch == "gpt2" and "ln_f.g" in state["params"]
    meta["model_config"]["arch"] = "gpt3"
    safetensors.save_file(tensors, path, metadata={"minillm": json.dumps(meta)})
    with pytest.raises(CheckpointError, match=r"model_config\.arch is 'gpt3', not one of"):
        load_checkpoint(path)


def test_import_reads_the_folder_transformers_wrote_into_a_gpt1_checkpoint(tmp_path, capsys):
    ckpt = str(tmp_path / "m.safetensors")
    assert main(["import", FIXTURE, ckpt]) == 0
    assert "openai-gpt as a minillm clm model; token ids only" in capsys.readouterr().out
    model_cfg, train_cfg, tokenizer, state = load_checkpoint(ckpt)
    expected = hf.load(FIXTURE)
    assert model_cfg == expected.cfg and model_cfg.arch == "gpt1" and tokenizer is None
    for name, value in expected.params.items():
        np.testing.assert_array_equal(state["params"][name], value, err_msg=name)
