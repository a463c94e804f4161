"""minillm against Hugging Face transformers: logits, losses and every gradient.

The fixtures in tests/fixtures/hf/ (copied from the project's shared oracle; see its README)
were produced by transformers 5.24.0 for tiny GPT-2, BERT and BART models. Tolerances are the
fixtures' own recommendations: float64 logits and losses rtol 1e-9 / atol 1e-10, gradients
rtol 1e-7 / atol 1e-9, float32 logits rtol 1e-4 / atol 1e-4.
"""

import json
import os

import numpy as np
import pytest

from minillm import hf
from minillm.models import GPTConfig, bert_init, gpt_init, seq2seq_init, BertConfig, Seq2SeqConfig

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "hf")
ARCHS = ["gpt2", "bert", "bart"]
LOGITS = {"gpt2": ["logits"], "bert": ["prediction_logits", "seq_relationship_logits"],
          "bart": ["logits"]}


def fixture(arch):
    folder = os.path.join(FIXTURES, arch)
    return folder, np.load(os.path.join(folder, "case.npz"), allow_pickle=False)


@pytest.mark.parametrize("arch", ARCHS)
def test_float64_logits_losses_and_every_gradient_match_transformers(arch):
    folder, case = fixture(arch)
    out = hf.forward_backward(hf.load(folder), case, dtype=np.float64)
    for key in LOGITS[arch]:
        np.testing.assert_allclose(out[key], case[key], rtol=1e-9, atol=1e-10, err_msg=key)
    np.testing.assert_allclose(out["loss"], case["loss"], rtol=1e-9, atol=1e-10)
    if arch == "bert":
        for key in ("mlm_loss", "nsp_loss"):
            np.testing.assert_allclose(out[key], case[key], rtol=1e-9, atol=1e-10, err_msg=key)
    expected = {k[len("grad/"):] for k in case.files if k.startswith("grad/")}
    assert set(out["grads"]) == expected
    for name in expected:
        np.testing.assert_allclose(out["grads"][name], case["grad/" + name], rtol=1e-7, atol=1e-9,
                                   err_msg=name)


@pytest.mark.parametrize("arch", ARCHS)
def test_float32_logits_match_the_float32_run(arch):
    folder, case = fixture(arch)
    out = hf.forward_backward(hf.load(folder), case, dtype=np.float32)
    for key in LOGITS[arch]:
        assert out[key].dtype == np.float32
        np.testing.assert_allclose(out[key], case[key + "_f32"], rtol=1e-4, atol=1e-4, err_msg=key)
    np.testing.assert_allclose(out["loss"], case["loss_f32"], rtol=1e-5, atol=1e-5)


def test_the_fixtures_would_catch_a_wrong_layer_norm_epsilon():
    """The tolerance is tight enough to see BERT's 1e-12 replaced by the common 1e-5."""
    folder, case = fixture("bert")
    model = hf.load(folder)
    model.cfg = BertConfig(**{**model.cfg.to_dict(), "ln_eps": 1e-5})
    out = hf.forward_backward(model, case)
    assert np.max(np.abs(out["prediction_logits"] - case["prediction_logits"])) > 1e-6


@pytest.mark.parametrize("arch", ARCHS)
def test_load_save_load_is_bit_exact(arch, tmp_path):
    folder, _ = fixture(arch)
    first = hf.load(folder)
    hf.save(first, tmp_path)
    second = hf.load(tmp_path)
    assert second.cfg == first.cfg
    assert set(second.params) == set(first.params)
    for name, value in first.params.items():
        assert second.params[name].dtype == value.dtype
        np.testing.assert_array_equal(second.params[name], value, err_msg=name)
    # The file holds exactly the tensors of the original (ties and buffers included or not alike).
    from minillm import safetensors

    original = safetensors.load_file(os.path.join(folder, "model.safetensors"))
    written = safetensors.load_file(os.path.join(tmp_path, "model.safetensors"))
    assert set(original) == set(written)
    for name in original:
        np.testing.assert_array_equal(original[name], written[name], err_msg=name)


MINILLM_MODELS = {
    "gpt2": (GPTConfig(vocab_size=30, n_ctx=10, n_embd=16, n_head=2, n_layer=2), gpt_init),
    "bert": (BertConfig(vocab_size=30, n_ctx=10, n_embd=16, n_head=2, n_layer=2), bert_init),
    "bart": (Seq2SeqConfig(vocab_size=30, n_ctx=10, n_embd=16, n_head=2, n_enc_layer=1,
                           n_dec_layer=2), seq2seq_init),
}


def _case_for(arch, rng):
    ids = rng.integers(7, 30, size=(2, 6))
    mask = np.ones((2, 6), dtype=np.int64)
    mask[1, 4:] = 0
    case = {"input_ids": ids, "attention_mask": mask, "labels": np.where(mask == 1, ids, -100)}
    if arch == "bert":
        case["token_type_ids"] = np.repeat([[0, 0, 0, 1, 1, 1]], 2, axis=0)
        case["next_sentence_label"] = np.array([0, 1])
    if arch == "bart":
        case["decoder_input_ids"] = rng.integers(7, 30, size=(2, 5))
        case["decoder_attention_mask"] = np.ones((2, 5), dtype=np.int64)
        case["labels"] = rng.integers(7, 30, size=(2, 5))
    return case


@pytest.mark.parametrize("arch", ARCHS)
def test_a_minillm_model_saved_in_hf_layout_gives_identical_logits(arch, tmp_path):
    cfg, init = MINILLM_MODELS[arch]
    rng = np.random.default_rng(0)
    params = init(cfg, rng)
    for name, value in params.items():  # move every tensor off its initial constant
        params[name] = (value + 0.1 * rng.normal(size=value.shape)).astype(np.float32)
    model = hf.from_minillm(arch, cfg, params)
    hf.save(model, tmp_path)
    with open(os.path.join(tmp_path, "config.json")) as f:
        assert json.load(f)["model_type"] == arch
    loaded = hf.load(tmp_path)
    assert loaded.cfg == cfg
    case = _case_for(arch, rng)
    a, b = hf.forward_backward(model, case), hf.forward_backward(loaded, case)
    for key in LOGITS[arch]:
        np.testing.assert_array_equal(a[key], b[key])


def test_a_missing_tensor_is_named(tmp_path):
    from minillm import safetensors

    folder, _ = fixture("gpt2")
    tensors = safetensors.load_file(os.path.join(folder, "model.safetensors"))
    del tensors["transformer.h.1.mlp.c_fc.bias"]
    safetensors.save_file(tensors, os.path.join(tmp_path, "model.safetensors"))
    with open(os.path.join(folder, "config.json")) as src, open(tmp_path / "config.json", "w") as dst:
        dst.write(src.read())
    with pytest.raises(ValueError, match=r"transformer\.h\.1\.mlp\.c_fc\.bias"):
        hf.load(tmp_path)


def test_an_unknown_model_type_is_named():
    with pytest.raises(ValueError, match="'llama'"):
        hf.config_from_hf({"model_type": "llama"})


@pytest.mark.parametrize("arch", ARCHS)
def test_transformers_loads_a_saved_minillm_model(arch, tmp_path):
    """Optional: with transformers and torch installed, a folder hf.save writes from a minillm
    model loads with from_pretrained and gives the same logits."""
    transformers = pytest.importorskip("transformers")
    torch = pytest.importorskip("torch")
    cfg, init = MINILLM_MODELS[arch]
    rng = np.random.default_rng(1)
    params = {k: (v + 0.1 * rng.normal(size=v.shape)).astype(np.float32)
              for k, v in init(cfg, rng).items()}
    hf.save(hf.from_minillm(arch, cfg, params), tmp_path)
    model_class = {"gpt2": transformers.GPT2LMHeadModel, "bert": transformers.BertForPreTraining,
                   "bart": transformers.BartForConditionalGeneration}[arch]
    theirs = model_class.from_pretrained(tmp_path).eval()
    case = _case_for(arch, rng)
    inputs = {k: torch.tensor(case[k]) for k in
              ("input_ids", "attention_mask", "token_type_ids", "decoder_input_ids",
               "decoder_attention_mask") if k in case}
    with torch.no_grad():
        out = theirs(**inputs)
    ours = hf.forward_backward(hf.load(tmp_path), case, dtype=np.float32)
    key = "prediction_logits" if arch == "bert" else "logits"
    np.testing.assert_allclose(ours[key], getattr(out, key).numpy(), rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------------------------------------
# Folders saved by transformers with the config variants it supports, and files in the layouts
# of older versions (tests/fixtures/hf/make_variants.py made them; README.md says how). Each
# folder with the case.npz whose numbers transformers computed for it: the older layouts are
# rewritten fixtures that transformers loads to bit-identical parameters.

VARIANTS = {
    "gpt2_layer_scaled": "gpt2_layer_scaled",  # scale_attn_by_inverse_layer_idx, n_inner=40
    "bart_asym": "bart_asym",  # decoder 2 heads, FFN 24; encoder 4, 48; scale_embedding
    "gpt2_model_style": "gpt2_layer_scaled",  # GPT2Model's names, attn.bias buffers
    "bart_tied_copies": "bart_asym",  # embed_tokens and lm_head stored beside model.shared
    "bert_legacy": "bert",  # LayerNorm gamma/beta, position_ids, cls.predictions.decoder.*
}


def _config(folder):
    with open(os.path.join(FIXTURES, folder, "config.json")) as f:
        return json.load(f)


def _names(folder):
    from minillm import safetensors

    return set(safetensors.read_header(os.path.join(FIXTURES, folder, "model.safetensors"))[0])


def is_the_variant_named(folder):
    """What makes each folder the variant it is named for (checked first, so that the test
    below tests what it claims)."""
    cfg, names = _config(folder), _names(folder)
    if folder == "gpt2_layer_scaled":
        return cfg["scale_attn_by_inverse_layer_idx"] and cfg["n_inner"] != 4 * cfg["n_embd"]
    if folder == "bart_asym":
        return (cfg["scale_embedding"] and cfg["encoder_attention_heads"] == 4
                and cfg["decoder_attention_heads"] == 2 and cfg["encoder_ffn_dim"] == 48
                and cfg["decoder_ffn_dim"] == 24)
    if folder == "gpt2_model_style":
        return (cfg["architectures"] == ["GPT2Model"] and "wte.weight" in names
                and not any(n.startswith("transformer.") for n in names)
                and {"h.0.attn.bias", "h.2.attn.masked_bias"} <= names)
    if folder == "bart_tied_copies":
        return {"model.encoder.embed_tokens.weight", "model.decoder.embed_tokens.weight",
                "lm_head.weight"} <= names
    if folder == "bert_legacy":
        return ({"bert.embeddings.LayerNorm.gamma", "bert.embeddings.position_ids",
                 "cls.predictions.decoder.weight", "cls.predictions.decoder.bias"} <= names
                and not any(n.endswith("LayerNorm.weight") for n in names))
    raise ValueError(folder)


@pytest.mark.parametrize("folder, reference", sorted(VARIANTS.items()))
def test_a_folder_saved_by_transformers_reproduces_its_loss_and_every_gradient_to_1e_9(
        folder, reference):
    """The issue's bar, 1e-9, for gradients too: tighter than the fixtures' recommended 1e-7,
    and it holds with room (the largest difference seen is 1.3e-15)."""
    assert is_the_variant_named(folder)
    _, case = fixture(reference)
    model = hf.load(os.path.join(FIXTURES, folder))
    out = hf.forward_backward(model, case, dtype=np.float64)
    arch = model.arch
    for key in LOGITS[arch]:
        np.testing.assert_allclose(out[key], case[key], rtol=1e-9, atol=1e-10, err_msg=key)
    np.testing.assert_allclose(out["loss"], case["loss"], rtol=1e-9, atol=1e-10)
    expected = {k[len("grad/"):] for k in case.files if k.startswith("grad/")}
    assert set(out["grads"]) == expected
    for name in expected:
        np.testing.assert_allclose(out["grads"][name], case["grad/" + name], rtol=1e-9,
                                   atol=1e-10, err_msg=name)


def test_a_loaded_folder_runs_on_token_ids_from_python():
    """The recipe for a reader with a real folder: hf.load, then the model's own forward and
    backward on token ids (here the fixture's), in float64."""
    from minillm.models import gpt_backward, gpt_forward, seq2seq_forward

    _, case = fixture("gpt2_layer_scaled")
    model = hf.load(os.path.join(FIXTURES, "gpt2_model_style"))
    params = {k: v.astype(np.float64) for k, v in model.params.items()}
    logits, cache = gpt_forward(params, model.cfg, case["input_ids"], case["attention_mask"])
    np.testing.assert_allclose(logits, case["logits"], rtol=1e-9, atol=1e-10)
    grads = gpt_backward(np.ones_like(logits), cache)  # any upstream gradient: shapes and names
    assert set(grads) == set(params)
    _, case = fixture("bart_asym")
    model = hf.load(os.path.join(FIXTURES, "bart_asym"))
    params = {k: v.astype(np.float64) for k, v in model.params.items()}
    logits, _ = seq2seq_forward(params, model.cfg, case["input_ids"], case["decoder_input_ids"],
                                case["attention_mask"], case["decoder_attention_mask"])
    np.testing.assert_allclose(logits, case["logits"], rtol=1e-9, atol=1e-10)


def _copy_folder(name, tmp_path, change=None, config=None):
    """tmp_path/name: the fixture folder's config.json (changed by ``config``) and its tensors
    (changed by ``change``)."""
    from minillm import safetensors

    src, dst = os.path.join(FIXTURES, name), tmp_path / name
    os.makedirs(dst)
    with open(os.path.join(src, "config.json")) as f:
        cfg = json.load(f)
    (dst / "config.json").write_text(json.dumps(config(cfg) if config else cfg))
    tensors = safetensors.load_file(os.path.join(src, "model.safetensors"))
    safetensors.save_file(change(tensors) if change else tensors, str(dst / "model.safetensors"))
    return str(dst)


def test_a_tied_copy_that_differs_from_its_tensor_is_refused_by_name(tmp_path):
    def change(t):
        t["lm_head.weight"] = t["lm_head.weight"] + np.float32(1e-3)
        return t

    with pytest.raises(ValueError, match=r"lm_head\.weight differs from model\.shared\.weight"):
        hf.load(_copy_folder("bart_tied_copies", tmp_path, change))


def test_a_tensor_the_model_does_not_use_is_refused_by_name(tmp_path):
    """Silently ignored before: a head minillm does not compute, or a typo in a name."""
    def change(t):
        t["classifier.weight"] = np.zeros((2, 16), dtype=np.float32)
        return t

    with pytest.raises(ValueError, match=r"1 tensor\(s\) that a gpt2 model does not use: "
                                         r"classifier\.weight"):
        hf.load(_copy_folder("gpt2_layer_scaled", tmp_path, change))


def test_bart_without_final_logits_bias_has_zero_bias_as_in_transformers(tmp_path):
    """transformers' BART lists final_logits_bias among the keys it lets a file lack; it is then
    zero, and the logits are the fixture's minus the bias it added last."""
    _, case = fixture("bart_asym")

    def change(t):
        del t["final_logits_bias"]
        return t

    model = hf.load(_copy_folder("bart_asym", tmp_path, change))
    bias = hf.load(os.path.join(FIXTURES, "bart_asym")).params["out_bias"].astype(np.float64)
    out = hf.forward_backward(model, case)
    np.testing.assert_array_equal(model.params["out_bias"], 0.0)
    np.testing.assert_allclose(out["logits"], case["logits"] - bias, rtol=1e-9, atol=1e-10)


def test_a_float16_file_is_widened_to_float32(tmp_path):
    def change(t):
        return {k: v.astype(np.float16) for k, v in t.items()}

    model = hf.load(_copy_folder("bart_asym", tmp_path, change))
    original = hf.load(os.path.join(FIXTURES, "bart_asym"))
    for name, value in model.params.items():
        assert value.dtype == np.float32
        np.testing.assert_array_equal(value, original.params[name].astype(np.float16), name)


def test_an_untied_output_layer_is_refused(tmp_path):
    """minillm's output layer is the token embedding; a config that unties them would load
    into a model that ignores the file's lm_head."""
    folder = _copy_folder("gpt2_layer_scaled", tmp_path,
                          config=lambda c: {**c, "tie_word_embeddings": False})
    with pytest.raises(ValueError, match="tie_word_embeddings=False is not supported"):
        hf.load(folder)


@pytest.mark.parametrize("present, words", [
    (None, r"has no model\.safetensors$"),
    ("pytorch_model.bin", "a pickle, which minillm does not read"),
    ("model.safetensors.index.json", "sharded weights"),
])
def test_a_folder_without_model_safetensors_says_what_it_has(present, words, tmp_path):
    folder = tmp_path / "f"
    os.makedirs(folder)
    with open(os.path.join(FIXTURES, "gpt2", "config.json")) as f:
        (folder / "config.json").write_text(f.read())
    if present:
        (folder / present).write_bytes(b"")
    with pytest.raises(ValueError, match=words):
        hf.load(str(folder))


@pytest.mark.parametrize("arch", ["gpt2", "bart"])
def test_the_config_variants_survive_save_and_load(arch, tmp_path):
    name = {"gpt2": "gpt2_layer_scaled", "bart": "bart_asym"}[arch]
    first = hf.load(os.path.join(FIXTURES, name))
    hf.save(hf.from_minillm(arch, first.cfg, first.params), tmp_path)
    second = hf.load(tmp_path)
    assert second.cfg == first.cfg
    for key in ("scale_attn_by_inverse_layer_idx", "scale_embedding", "decoder_attention_heads",
                "decoder_ffn_dim", "n_inner"):
        if key in first.hf_config:
            assert second.hf_config[key] == first.hf_config[key], key


@pytest.mark.parametrize("arch", ["gpt2", "bart"])
def test_transformers_loads_a_saved_minillm_model_with_the_config_variants(arch, tmp_path):
    """Optional: a minillm model with the variants (GPT-2 scaled by layer with its own n_inner;
    BART with its decoder's own heads and width and scaled embeddings), saved by hf.save, gives
    transformers' logits in from_pretrained."""
    transformers = pytest.importorskip("transformers")
    torch = pytest.importorskip("torch")
    cfg, init = {
        "gpt2": (GPTConfig(vocab_size=30, n_ctx=10, n_embd=16, n_head=2, n_layer=3, n_inner=24,
                           scale_attn_by_inverse_layer_idx=True), gpt_init),
        "bart": (Seq2SeqConfig(vocab_size=30, n_ctx=10, n_embd=16, n_head=4, n_enc_layer=1,
                               n_dec_layer=2, n_inner=40, n_dec_head=2, n_dec_inner=24,
                               scale_embedding=True), seq2seq_init),
    }[arch]
    rng = np.random.default_rng(2)
    params = {k: (v + 0.1 * rng.normal(size=v.shape)).astype(np.float32)
              for k, v in init(cfg, rng).items()}
    hf.save(hf.from_minillm(arch, cfg, params), tmp_path)
    model_class = {"gpt2": transformers.GPT2LMHeadModel,
                   "bart": transformers.BartForConditionalGeneration}[arch]
    theirs = model_class.from_pretrained(tmp_path, dtype=torch.float64).eval()
    case = _case_for(arch, rng)
    inputs = {k: torch.tensor(case[k]) for k in
              ("input_ids", "attention_mask", "decoder_input_ids", "decoder_attention_mask")
              if k in case}
    with torch.no_grad():
        expected = theirs(**inputs).logits.numpy()
    ours = hf.forward_backward(hf.load(tmp_path), case, dtype=np.float64)
    np.testing.assert_allclose(ours["logits"], expected, rtol=1e-9, atol=1e-10)


# ---------------------------------------------------------------------------------------------
# The command line: `minillm import` reads a folder transformers wrote


@pytest.mark.parametrize("folder", ["gpt2", "bert", "bart", *sorted(VARIANTS)])
def test_import_reads_a_folder_transformers_wrote_into_a_checkpoint_of_token_ids(
        folder, tmp_path, capsys):
    """Refused before ("has no minillm_vocab.json"): the folder's vocabulary is its own
    tokenizer's, so the checkpoint holds the model and token ids only."""
    from minillm.checkpoint import load_checkpoint
    from minillm.cli import main

    ckpt = str(tmp_path / "m.safetensors")
    assert main(["import", os.path.join(FIXTURES, folder), ckpt]) == 0
    assert "token ids only" in capsys.readouterr().out
    model_cfg, _, tokenizer, state = load_checkpoint(ckpt)
    expected = hf.load(os.path.join(FIXTURES, folder))
    assert tokenizer is None and model_cfg == expected.cfg
    for name, value in expected.params.items():
        np.testing.assert_array_equal(state["params"][name], value, err_msg=name)


def test_a_checkpoint_of_token_ids_is_refused_by_the_commands_that_read_text_and_exported(
        tmp_path, capsys):
    from minillm.cli import main

    ckpt = str(tmp_path / "m.safetensors")
    assert main(["import", os.path.join(FIXTURES, "bart_asym"), ckpt]) == 0
    capsys.readouterr()
    for argv in (["seq2seq", "今天", "--checkpoint", ckpt], ["train", "--resume", "--out", ckpt]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("minillm: error:"), err
        assert "holds token ids only" in err, err
    out = tmp_path / "again"
    assert main(["export", ckpt, str(out)]) == 0
    assert sorted(os.listdir(out)) == ["config.json", "model.safetensors"]
    (out / "minillm_vocab.json").write_text("{}")  # from an earlier export: not this model's
    assert main(["export", ckpt, str(out)]) == 2
    assert "holds a minillm_vocab.json" in capsys.readouterr().err
    again, first = hf.load(str(out)), hf.load(os.path.join(FIXTURES, "bart_asym"))
    assert again.cfg == first.cfg
    for name, value in first.params.items():
        np.testing.assert_array_equal(again.params[name], value, err_msg=name)


@pytest.mark.parametrize("folder, key, value", [
    ("gpt2_model_style", "activation_function", "relu"), ("bart_asym", "normalize_before", True),
    ("bert_legacy", "position_embedding_type", "relative_key"),
])
def test_import_still_refuses_a_setting_minillm_would_not_compute(folder, key, value, tmp_path,
                                                                   capsys):
    from minillm.cli import main

    source = _copy_folder(folder, tmp_path, config=lambda c: {**c, key: value})
    assert main(["import", source, str(tmp_path / "m.safetensors")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{key}={value!r} is not supported" in err, err
    assert not os.path.exists(tmp_path / "m.safetensors")
