"""--hf FOLDER: score, next, generate, fill and seq2seq on a Hugging Face folder with its own
tokenizer, each checked against the model's logits computed here (no download).

The folders are built in tmp_path from the model fixtures of tests/fixtures/hf/ (random weights
saved by transformers) and the tokenizer fixtures of tests/fixtures/hf_tokenizers/. The
tokenizers have more ids than the models have rows, so each model's vocabulary rows (the token
embedding, BERT's output bias, BART's final_logits_bias) get seeded random rows appended: the
only change."""

import dataclasses
import json
import os
import shutil

import numpy as np
import pytest

from minillm import hf
from minillm.cli import main
from minillm.hf_tokenizers import CHAR_TO_BYTE, load_tokenizer
from minillm.models import bert_forward, decoder_forward, encoder_forward, gpt_forward

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")
VOCAB_ROWS = ("wte", "mlm.bias", "out_bias")  # the parameters with one row per token id


def make_folder(model_name, tokenizer_name, out):
    """A fixture model with a fixture tokenizer beside it, its vocabulary grown to fit."""
    model = hf.load(os.path.join(FIXTURES, "hf", model_name))
    tokenizer_dir = os.path.join(FIXTURES, "hf_tokenizers", tokenizer_name)
    V = len(load_tokenizer(tokenizer_dir))
    old = model.cfg.vocab_size
    assert V > old  # else nothing to grow, and the test below of a too small model is moot
    rng = np.random.default_rng(0)
    for name in VOCAB_ROWS:
        if name in model.params:
            p = model.params[name]
            extra = rng.standard_normal((V - old,) + p.shape[1:]) * p.std()
            model.params[name] = np.concatenate([p, extra.astype(p.dtype)])
    model.cfg = dataclasses.replace(model.cfg, vocab_size=V)
    model.hf_config = {**model.hf_config, "vocab_size": V}
    hf.save(model, str(out))
    for name in os.listdir(tokenizer_dir):
        shutil.copy(os.path.join(tokenizer_dir, name), out)
    return str(out)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("hf_cli")
    return {arch: make_folder(arch, arch, root / arch) for arch in ("gpt2", "bert", "bart")}


def run_json(capsys, argv):
    assert main(argv + ["--json"]) == 0
    return json.loads(capsys.readouterr().out)


def float64_model(folder):
    model = hf.load(folder)
    return model, {k: v.astype(np.float64) for k, v in model.params.items()}


def log_softmax(z):
    """Written out here, not minillm's: log p_j = z_j - log Σ_k exp(z_k)."""
    return z - np.logaddexp.reduce(z, axis=-1, keepdims=True)


TEXT = "Hello world 今天 is"


def test_score_hf_is_the_sum_of_log_softmax_at_the_next_ids(folders, capsys):
    folder = folders["gpt2"]
    tokenizer = load_tokenizer(folder)
    ids = tokenizer.encode(TEXT)
    eot = tokenizer.token_id("<|endoftext|>")  # GPT-2's bos and eos, put before w_1
    model, params = float64_model(folder)
    logits, _ = gpt_forward(params, model.cfg, np.array([[eot, *ids]]))  # (1, n+1, V)
    expected = log_softmax(logits[0, :-1])[np.arange(len(ids)), ids]  # log P(w_t | w_<t)
    out = run_json(capsys, ["score", "--hf", folder, TEXT])
    assert out["ids"] == [eot, *ids]
    assert [s["id"] for s in out["steps"]] == ids and [s["t"] for s in out["steps"]][0] == 1
    np.testing.assert_allclose([s["log_p"] for s in out["steps"]], expected, rtol=1e-5,
                               atol=1e-5)  # float32 model against float64 here
    np.testing.assert_allclose(out["log_p"], expected.sum(), rtol=1e-5)
    assert out["tokens"] == len(ids)
    assert "true_p" not in out["steps"][0]
    assert main(["score", "--hf", folder, TEXT]) == 0
    table = capsys.readouterr().out
    assert "true P" not in table and "<|endoftext|> (id" in table


def test_score_hf_equals_transformers_loss(folders, capsys):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    folder = folders["gpt2"]
    out = run_json(capsys, ["score", "--hf", folder, TEXT])
    model = transformers.GPT2LMHeadModel.from_pretrained(folder, dtype=torch.float64).eval()
    ids = torch.tensor([out["ids"]])
    with torch.no_grad():
        loss = model(ids, labels=ids).loss.item()  # the mean over the tokens after the first
    np.testing.assert_allclose(out["loss_per_token"], loss, rtol=1e-5)


def test_a_token_that_is_part_of_a_character_shows_as_its_bytes():
    from minillm.cli import _hf_token_text

    tokenizer = load_tokenizer(os.path.join(FIXTURES, "hf_tokenizers", "gpt2"))
    partial = []
    for token, i in tokenizer.vocab.items():
        data = bytes(CHAR_TO_BYTE[ch] for ch in token)
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            partial.append((i, data))
    assert partial  # the fixture's BPE has pieces of Chinese characters
    for i, data in partial:
        assert _hf_token_text(tokenizer, i) == "<" + data.hex(" ") + ">"
    assert _hf_token_text(tokenizer, tokenizer.vocab["Ġthe"]) == "' the'"  # its space shows


def test_next_hf_ranks_the_softmax_of_the_last_logits(folders, capsys):
    folder = folders["gpt2"]
    ids = load_tokenizer(folder).encode("Hello world")
    model, params = float64_model(folder)
    logits, _ = gpt_forward(params, model.cfg, np.array([ids]))  # the prompt alone, no bos
    p = np.exp(log_softmax(logits[0, -1]))
    out = run_json(capsys, ["next", "--hf", folder, "Hello world", "--top", "3"])
    top = np.argsort(-p, kind="stable")[:3]
    assert [w["id"] for w in out["words"]] == top.tolist()
    np.testing.assert_allclose([w["model_p"] for w in out["words"]], p[top], rtol=1e-4)


def test_generate_hf_greedy_is_the_argmax_loop_on_gpt_forward(folders, capsys):
    folder = folders["gpt2"]
    tokenizer = load_tokenizer(folder)
    model, params = float64_model(folder)
    prompt = "Hello"
    ids = tokenizer.encode(prompt)  # as transformers generates with GPT-2: no bos before it
    new = []
    for _ in range(12):
        logits, _ = gpt_forward(params, model.cfg, np.array([ids + new]))
        new.append(int(np.argmax(logits[0, -1])))
        if new[-1] == tokenizer.eos_id:
            break
    assert main(["generate", "--hf", folder, prompt, "--temperature", "0",
                 "--max-new-tokens", "12"]) == 0
    assert capsys.readouterr().out == prompt + tokenizer.decode(new, skip_special_tokens=True) \
        + "\n"


def test_fill_hf_top_word_is_the_argmax_of_the_bert_logits_at_the_mask(folders, capsys):
    folder = folders["bert"]
    tokenizer = load_tokenizer(folder)
    text = "hello [MASK] world"
    ids = tokenizer.encode(text, add_special_tokens=True)  # [CLS] ... [SEP]
    at = ids.index(tokenizer.mask_id)
    model, params = float64_model(folder)
    mlm_logits, _, _ = bert_forward(params, model.cfg, np.array([ids]))
    out = run_json(capsys, ["fill", "--hf", folder, text])
    (mask,) = out["masks"]
    assert mask["position"] == at
    best = int(np.argmax(mlm_logits[0, at]))
    assert mask["words"][0]["id"] == best
    assert mask["words"][0]["token"] == repr(tokenizer.decode([best]))


@pytest.mark.parametrize("start", [None, 0])
def test_seq2seq_hf_greedy_is_the_argmax_loop_on_the_bart_forward(folders, capsys, tmp_path,
                                                                  start):
    """The decoder begins with config.json's decoder_start_token_id: BART's 2 (</s>), which
    is also minillm's [BOS] id, so a second run sets it to 0 (<s>)."""
    folder = folders["bart"]
    if start is not None:
        folder = str(tmp_path / "bart")
        shutil.copytree(folders["bart"], folder)
        config = os.path.join(folder, "config.json")
        with open(config) as f:
            cfg = json.load(f)
        with open(config, "w") as f:
            json.dump({**cfg, "decoder_start_token_id": start}, f)
    tokenizer = load_tokenizer(folder)
    text = "hello <mask> world"
    src = tokenizer.encode(text, add_special_tokens=True)  # <s> ... </s>
    model, params = float64_model(folder)
    start, eos = model.hf_config["decoder_start_token_id"], model.hf_config["eos_token_id"]
    enc, _ = encoder_forward(params, model.cfg, np.array([src]))
    out_ids = [start]
    while len(out_ids) <= model.cfg.n_ctx:  # at most n_ctx new tokens, as the beam decodes
        logits, _ = decoder_forward(params, model.cfg, np.array([out_ids]), enc)
        out_ids.append(int(np.argmax(logits[0, -1])))
        if out_ids[-1] == eos or len(out_ids) - 1 == model.cfg.n_ctx:
            break
    out = run_json(capsys, ["seq2seq", "--hf", folder, text])
    assert out["hypotheses"][0]["ids"] == out_ids[1:]


@pytest.mark.parametrize("command, arch, needs", [
    (["score", "x"], "bert", "GPT-2"), (["generate", "x"], "bart", "GPT-2"),
    (["next", "x"], "bert", "GPT-2"), (["fill", "[MASK]"], "gpt2", "BERT"),
    (["seq2seq", "x"], "gpt2", "BART")])
def test_a_folder_of_another_architecture_is_refused_naming_the_one_needed(folders, capsys,
                                                                          command, arch, needs):
    assert main([*command, "--hf", folders[arch]]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("minillm: error:")
    assert f"needs a {needs} folder" in err


def test_hf_and_checkpoint_together_are_refused(folders, capsys):
    assert main(["score", "x", "--hf", folders["gpt2"], "--checkpoint", "m.safetensors"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("minillm: error:") and "not allowed with argument --hf" in err


@pytest.mark.parametrize("command, arch", [("score", "gpt2"), ("next", "gpt2"),
                                           ("generate", "gpt2"), ("fill", "bert"),
                                           ("seq2seq", "bart")])
def test_a_text_longer_than_the_context_is_refused(folders, capsys, command, arch):
    text = "hi " * 40 + ("[MASK]" if arch == "bert" else "")  # over n_ctx 32 tokens
    assert main([command, "--hf", folders[arch], text]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "longer than the model's context" in err
    assert "n_ctx=32" in err


def test_a_tokenizer_with_ids_beyond_the_vocabulary_is_refused(tmp_path, capsys):
    folder = tmp_path / "mismatched"
    shutil.copytree(os.path.join(FIXTURES, "hf", "gpt2"), folder)  # vocab_size 97
    for name in ("tokenizer.json", "tokenizer_config.json"):  # 657 ids
        shutil.copy(os.path.join(FIXTURES, "hf_tokenizers", "gpt2", name), folder)
    assert main(["score", "--hf", str(folder), "hello"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "ids up to 656" in err and "vocab_size is 97" in err


def test_generate_takes_the_models_own_bos_and_eos(folders):
    """GPT-2's eos is <|endoftext|> (656 here), not minillm's [EOS] (3); with bos_id None the
    prompt is read alone."""
    from minillm.generate import generate

    model, params = float64_model(folders["gpt2"])
    ids = load_tokenizer(folders["gpt2"]).encode("Hello")
    logits, _ = gpt_forward(params, model.cfg, np.array([ids]))
    first = int(np.argmax(logits[0, -1]))
    assert first != 3  # else the default eos would stop it too
    rng = np.random.default_rng(0)
    assert generate(params, model.cfg, ids, 5, rng, temperature=0, bos_id=None,
                    eos_id=first) == [first]


def test_fill_mask_distributions_finds_the_given_mask_id(folders):
    from minillm.generate import fill_mask_distributions
    from minillm.tokenizer import MASK_ID

    model, params = float64_model(folders["bert"])
    ids = [2, MASK_ID, 9, 17, 3]  # minillm's [MASK] id at 1; the model's mask said to be 17
    assert [t for t, _ in fill_mask_distributions(params, model.cfg, ids, mask_id=17)] == [3]
