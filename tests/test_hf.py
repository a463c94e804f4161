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
    "bart": (Seq2SeqConfig(vocab_size=30, n_ctx=10, n_embd=16, n_head=2, n_layer=1,
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
