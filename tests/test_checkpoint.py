"""Checkpoints read from hostile files: every field of the metadata and every tensor checked,
through the command line, with one error line, no traceback and bounded memory."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minillm import safetensors
from minillm.cli import main
from minillm.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from minillm.grammar import default_grammar
from minillm.models import GPTConfig
from minillm.config import TrainConfig
from minillm.data import GrammarData
from minillm.train import train

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL = ["--n-embd", "16", "--n-layer", "1", "--n-head", "2", "--batch-size", "4",
         "--n-ctx", "24"]
MISSING = object()  # a mutation's value that deletes the field


def read(path):
    tensors, metadata = safetensors.load_file_with_metadata(path)
    return tensors, json.loads(metadata["minillm"])


def write(path, tensors, meta):
    text = meta if isinstance(meta, str) else json.dumps(meta)
    safetensors.save_file(tensors, path, metadata={"minillm": text})


def mutated(meta, changes):
    """A deep copy of meta with each (dotted field, value) applied; MISSING deletes."""
    meta = json.loads(json.dumps(meta))
    for field, value in changes:
        *parents, last = field.split(".")
        obj = meta
        for key in parents:
            obj = obj[key]
        if value is MISSING:
            del obj[last]
        else:
            obj[last] = value
    return meta


def meta_cases(meta):
    """(case id, {changes} or a replacement, the words the error must contain)."""
    steps, ordinary = meta["train_config"]["steps"], meta["tokenizer"]["ordinary"]
    V = meta["model_config"]["vocab_size"]
    cases = [
        ("metadata is a list", "[]", "metadata is a list"),
        ("metadata is not JSON", "{", "not valid JSON"),
        ("metadata has NaN", '{"format": NaN}', "not valid JSON"),
        ("extra top-level key", [("surprise", 1)], "surprise"),
        ("old format", [("format", "minillm-checkpoint-1")], "format"),
        ("format a number", [("format", 2)], "format"),
        ("unknown model", [("model", "llama")], "model is 'llama'"),
        ("model null", [("model", None)], "model is None"),
        ("model_config a list", [("model_config", [])], "model_config is a list"),
        ("model_config extra", [("model_config.n_foo", 1)], "n_foo"),
        ("model_config.n_embd missing", [("model_config.n_embd", MISSING)], "n_embd"),
        ("n_embd negative", [("model_config.n_embd", -1)], "model_config.n_embd is -1"),
        ("n_embd a string", [("model_config.n_embd", "16")], "model_config.n_embd"),
        ("n_embd a float", [("model_config.n_embd", 16.0)], "model_config.n_embd"),
        ("n_embd true", [("model_config.n_embd", True)], "model_config.n_embd"),
        ("n_embd huge", [("model_config.n_embd", 10**9)], "do not match"),
        ("n_head huge", [("model_config.n_head", 10**9)], "multiple of n_head"),
        ("n_layer huge", [("model_config.n_layer", 10**12)], "model_config.n_layer"),
        ("vocab_size huge", [("model_config.vocab_size", 10**9)], "do not match"),
        ("n_ctx huge", [("model_config.n_ctx", 10**9)], "do not match"),
        ("ln_eps negative", [("model_config.ln_eps", -1.0)], "model_config.ln_eps"),
        ("ln_eps a string", [("model_config.ln_eps", "x")], "model_config.ln_eps"),
        ("n_inner zero", [("model_config.n_inner", 0)], "model_config.n_inner"),
        ("train_config extra", [("train_config.n_foo", 1)], "n_foo"),
        ("train_config.steps missing", [("train_config.steps", MISSING)], "steps"),
        ("steps negative", [("train_config.steps", -1)], "train_config.steps"),
        ("steps zero", [("train_config.steps", 0)], "steps must be a positive integer"),
        ("steps a string", [("train_config.steps", "300")], "train_config.steps"),
        ("lr a string", [("train_config.lr", "x")], "train_config.lr"),
        ("lr negative", [("train_config.lr", -1.0)], "lr must be"),
        ("clip a string", [("train_config.clip", "x")], "train_config.clip"),
        ("dtype float16", [("train_config.dtype", "float16")], "dtype"),
        ("dtype float64 for float32 tensors", [("train_config.dtype", "float64")],
         "do not match"),
        ("objective of another model", [("train_config.objective", "mlm")],
         "does not train a gpt model"),
        ("unknown objective", [("train_config.objective", "llama")], "got 'llama'"),
        ("masking unknown", [("train_config.masking", "x")], "masking"),
        ("pool negative", [("train_config.pool", -1)], "train_config.pool"),
        ("nsp a string", [("train_config.nsp", "yes")], "train_config.nsp"),
        ("seed negative", [("train_config.seed", -1)], "train_config.seed"),
        ("log_every zero", [("train_config.log_every", 0)], "log_every"),
        ("warmup negative", [("train_config.warmup", -1)], "train_config.warmup"),
        ("tokenizer a list", [("tokenizer", [])], "tokenizer is a list"),
        ("tokenizer extra", [("tokenizer.extra", 1)], "extra"),
        ("tokenizer.ordinary missing", [("tokenizer.ordinary", MISSING)], "ordinary"),
        ("a billion sentinels", [("tokenizer.n_sentinels", 10**9)], "sentinels"),
        ("a billion sentinels and a vocabulary to match",
         [("tokenizer.n_sentinels", 10**9), ("model_config.vocab_size", V + 10**9 - 20)],
         "do not match"),
        ("no sentinels: the size does not match", [("tokenizer.n_sentinels", 0)], "vocab_size"),
        ("sentinels negative", [("tokenizer.n_sentinels", -1)], "tokenizer.n_sentinels"),
        ("ordinary reversed", [("tokenizer.ordinary", ordinary[::-1])], "same vocabulary"),
        ("ordinary a number", [("tokenizer.ordinary", 5)], "tokenizer.ordinary"),
        ("ordinary with an empty token", [("tokenizer.ordinary", [""] + ordinary[1:])],
         "non-empty"),
        ("step negative", [("step", -1)], "step is -1"),
        ("step a string", [("step", "3")], "step"),
        ("step beyond the run", [("step", steps + 1), ("adam_step", steps + 1)], "beyond"),
        ("step and the history disagree", [("step", steps - 1), ("adam_step", steps - 1)],
         "history"),
        ("adam_step negative", [("adam_step", -1)], "adam_step"),
        ("adam_step ahead", [("adam_step", steps + 1)], "adam_step"),
        ("adam_step true", [("adam_step", True)], "adam_step"),
        ("data_rng null", [("data_rng", None)], "data_rng"),
        ("data_rng empty", [("data_rng", {})], "data_rng lacks"),
        ("another bit generator", [("data_rng.bit_generator", "MT19937")], "PCG64"),
        ("rng state negative", [("data_rng.state.state", -1)], "data_rng.state.state"),
        ("rng state too wide", [("data_rng.state.state", 2**200)], "128 bits"),
        ("rng increment even", [("data_rng.state.inc", 2)], "odd"),
        ("has_uint32 two", [("data_rng.has_uint32", 2)], "has_uint32"),
        ("uinteger too wide", [("data_rng.uinteger", 2**40)], "32 bits"),
        ("data a number", [("data", 5)], "data is"),
        ("data hash not hex", [("data", {"path": "x.txt", "sha256": "zz"})], "sha256"),
        ("data path empty", [("data", {"path": "", "sha256": "0" * 64})], "data.path"),
    ]
    return cases


def tensor_cases(tensors):
    def with_(name, change):
        t = {k: v.copy() for k, v in tensors.items()}
        change(t, name)
        return t

    def poke(value):
        def change(t, name):
            t[name].reshape(-1)[0] = value
        return change

    return [
        ("NaN in a parameter", with_("param/wte", poke(np.nan)), "param/wte holds non-finite"),
        ("inf in a moment", with_("adam.m/wpe", poke(np.inf)), "adam.m/wpe holds non-finite"),
        ("a negative second moment", with_("adam.v/wpe", poke(-1.0)), "negative"),
        ("NaN in the history", with_("history", poke(np.nan)), "history holds non-finite"),
        ("a parameter in float64",
         with_("param/wpe", lambda t, n: t.__setitem__(n, t[n].astype(np.float64))),
         "param/wpe is F64"),
        ("a parameter missing", with_("param/ln_f.b", lambda t, n: t.pop(n)),
         "missing param/ln_f.b"),
        ("an extra tensor", with_("junk", lambda t, n: t.__setitem__(n, np.zeros(2))),
         "unexpected junk"),
    ]


# The child process: every case through the command line, under an address-space limit. It
# reports, per case and command, the exit status, what went to stderr, and any exception that
# escaped main() (a traceback, in a real run).
CHILD = r"""
import contextlib, io, json, os, resource, sys
from minillm.cli import main
import minillm.checkpoint, minillm.train, minillm.demo, minillm.hf  # imported before the limit

def vm_size():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) * 1024 for l in f if l.startswith("VmSize:"))

limit = vm_size() + int(sys.argv[2])
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
results = []
for case_id, argv in json.load(open(sys.argv[1])):
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            status = main(argv)
        escaped = None
    except BaseException as e:
        status, escaped = None, f"{type(e).__name__}: {e}"[:300]
    results.append([case_id, argv[0], status, err.getvalue(), escaped])
print(json.dumps(results))
"""
EXTRA_MEMORY = 1 << 30  # the child may grow by 1 GiB beyond what it has after its imports


def run_child(tmp_path, runs, timeout=600):
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps(runs))
    proc = subprocess.run([sys.executable, "-c", CHILD, str(plan), str(EXTRA_MEMORY)], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout)


def commands(path, folder):
    return [["generate", "今天", "--checkpoint", path], ["score", "今天", "--checkpoint", path],
            ["export", path, folder], ["train", "--resume", "--out", path]]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc, sets RLIMIT_AS")
def test_every_metadata_and_tensor_mutation_is_one_error_line_naming_the_field(tmp_path):
    base = str(tmp_path / "base.safetensors")
    assert main(["train", "--steps", "3", *SMALL, "--log-every", "3", "--out", base]) == 0
    tensors, meta = read(base)
    runs, expect = [], {}
    for n, (case_id, change, words) in enumerate(meta_cases(meta)):
        path = str(tmp_path / f"m{n}.safetensors")
        write(path, tensors, change if isinstance(change, str) else mutated(meta, change))
        expect[case_id] = words
        runs += [[case_id, argv] for argv in commands(path, str(tmp_path / f"hf{n}"))]
    for n, (case_id, changed, words) in enumerate(tensor_cases(tensors)):
        path = str(tmp_path / f"t{n}.safetensors")
        write(path, changed, meta)
        expect[case_id] = words
        runs += [[case_id, argv] for argv in commands(path, str(tmp_path / f"hft{n}"))]
    results = run_child(tmp_path, runs)
    assert len(results) == len(runs) >= 300
    failures = []
    for case_id, command, status, err, escaped in results:
        lines = err.strip().splitlines()
        ok = (escaped is None and status == 2 and len(lines) == 1
              and lines[0].startswith("minillm: error:") and expect[case_id] in lines[0])
        if not ok:
            failures.append(f"{case_id} / {command}: status {status}, escaped {escaped}, "
                            f"stderr {err.strip()[:300]!r}")
    assert not failures, f"{len(failures)} of {len(results)}:\n" + "\n".join(failures[:30])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc, sets RLIMIT_AS")
def test_bert_and_encoder_decoder_fields_are_checked_too(tmp_path):
    runs, expect = [], {}
    for model, objective, command in (("bert", "mlm", "fill"), ("seq2seq", "tasks", "seq2seq")):
        base = str(tmp_path / f"{model}.safetensors")
        assert main(["train", "--objective", objective, "--steps", "1", *SMALL,
                     "--n-ctx", "48", "--out", base]) == 0
        tensors, meta = read(base)
        field = "n_types" if model == "bert" else "n_dec_layer"
        for value in (0, -1, "2", 10**12, None):
            case_id = f"{model} {field} {value!r}"
            path = str(tmp_path / f"{model}-{len(runs)}.safetensors")
            write(path, tensors, mutated(meta, [(f"model_config.{field}", value)]))
            # A huge count of segments is a wte-sized table the file does not hold.
            huge_types = field == "n_types" and value == 10**12
            expect[case_id] = "do not match" if huge_types else f"model_config.{field}"
            text = "今天[MASK]很好" if command == "fill" else "总结：今天天气很好。"
            runs.append([case_id, [command, text, "--checkpoint", path]])
    for case_id, command, status, err, escaped in run_child(tmp_path, runs):
        assert escaped is None and status == 2, (case_id, status, escaped, err)
        assert err.count("\n") == 1 and expect[case_id] in err, (case_id, err)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc, sets RLIMIT_AS")
def test_sizes_too_large_for_memory_are_refused_by_name_before_anything_is_allocated(tmp_path):
    """Each of these used to end in a MemoryError traceback (or, for /dev/zero, in reading an
    endless file); now one line names the option and the memory it would need."""
    seq = str(tmp_path / "s.safetensors")
    assert main(["train", "--objective", "tasks", "--steps", "1", *SMALL, "--n-ctx", "48",
                 "--out", seq]) == 0
    out = str(tmp_path / "never.safetensors")
    huge = str(tmp_path / "huge.txt")  # 10 GB of nothing: a sparse file, no disk used
    with open(huge, "wb") as f:
        f.truncate(10 * 2**30)
    # A finished run whose stored batch size and pool are too large to resume.
    gpt = str(tmp_path / "g.safetensors")
    assert main(["train", "--steps", "1", *SMALL, "--out", gpt]) == 0
    tensors, meta = read(gpt)
    stored = {}
    for field, value in (("batch_size", 10**9), ("pool", 10**12)):
        stored[field] = str(tmp_path / f"{field}.safetensors")
        write(stored[field], tensors, mutated(meta, [(f"train_config.{field}", value),
                                                     ("train_config.steps", 5)]))
    cases = [
        ("batch_size", ["train", "--resume", "--out", stored["batch_size"]], "would need"),
        ("pool", ["train", "--resume", "--out", stored["pool"]], "would need"),
        ("--n-layer", ["train", "--n-layer", "1000000000", "--out", out], "would need"),
        ("--batch-size", ["train", "--batch-size", "1000000000", "--out", out], "would need"),
        ("--n-embd", ["train", "--n-embd", "1000000", "--n-head", "1", "--out", out],
         "would need"),
        ("--n-ctx", ["train", "--n-ctx", "1000000000", "--out", out], "would need"),
        ("--pool", ["train", "--pool", "1000000000", "--out", out], "would need"),
        ("--data", ["train", "--data", "/dev/zero", "--out", out], "not a regular file"),
        ("--data", ["train", "--data", huge, "--out", out], "bytes or more, more than"),
        ("--beam", ["seq2seq", "总结：今天天气很好。", "--checkpoint", seq, "--beam", "1000000000"],
         "would need"),
    ]
    results = run_child(tmp_path, [[flag, argv] for flag, argv, _ in cases])
    for (flag, _, words), (_, _, status, err, escaped) in zip(cases, results):
        assert escaped is None and status == 2, (flag, status, escaped, err)
        line = err.strip()
        assert line.count("\n") == 0 and flag in line and words in line, (flag, line)
    assert not os.path.exists(out)


# ---------------------------------------------------------------------------------------------
# What a checkpoint holds


def test_the_loss_history_is_a_tensor_so_a_long_run_keeps_a_small_header(tmp_path):
    """A history of a million steps used to sit in the JSON header (about 20 MB of text), over
    the reader's limit after long enough runs; now it is a float64 tensor."""
    tok = default_grammar().tokenizer()
    cfg = GPTConfig(vocab_size=len(tok), n_ctx=32, n_embd=8, n_head=2, n_layer=1)
    train_cfg = TrainConfig(steps=10**6, batch_size=1)
    state = train(cfg, TrainConfig(steps=1, batch_size=1), GrammarData(default_grammar(), tok),
                  tok, log=lambda line: None)
    history = np.random.default_rng(0).random(10**6) * 3
    state.update(step=10**6, history=list(history))
    state["opt"]["step"] = 10**6
    path = str(tmp_path / "long.safetensors")
    save_checkpoint(path, cfg, train_cfg, tok, state)
    entries, metadata = safetensors.read_header(path)
    assert len(metadata["minillm"]) < 20_000
    assert entries["history"][:2] == ("F64", (10**6,))
    loaded = load_checkpoint(path)[3]
    np.testing.assert_array_equal(loaded["history"], history)


def test_save_refuses_a_non_finite_parameter(tmp_path):
    tok = default_grammar().tokenizer()
    cfg = GPTConfig(vocab_size=len(tok), n_ctx=32, n_embd=8, n_head=2, n_layer=1)
    state = train(cfg, TrainConfig(steps=1, batch_size=1), GrammarData(default_grammar(), tok),
                  tok, log=lambda line: None)
    state["params"]["h.0.ln_1.b"][3] = np.inf
    path = str(tmp_path / "bad.safetensors")
    with pytest.raises(ValueError, match=r"param/h\.0\.ln_1\.b holds non-finite"):
        save_checkpoint(path, cfg, TrainConfig(steps=1, batch_size=1), tok, state)
    assert not os.path.exists(path)


@settings(max_examples=10)
@given(model=st.sampled_from(["gpt", "bert", "seq2seq"]), layers=st.integers(1, 4),
       dec_layers=st.integers(1, 4), width=st.sampled_from([8, 16]), ctx=st.integers(1, 40))
def test_the_parameter_count_is_the_table_s_whatever_the_depth(model, layers, dec_layers, width,
                                                               ctx):
    import math

    from minillm.memory import parameter_count
    from minillm.models import MODELS

    shape = dict(vocab_size=50, n_ctx=ctx, n_embd=width, n_head=2)
    if model == "seq2seq":
        shape.update(n_enc_layer=layers, n_dec_layer=dec_layers)
    else:
        shape["n_layer"] = layers
    cfg = MODELS[model].config(**shape)
    table = sum(math.prod(s) for s in MODELS[model].param_shapes(cfg).values())
    assert parameter_count(model, cfg) == table


def test_a_checkpoint_error_is_a_value_error_naming_the_file(tmp_path):
    path = str(tmp_path / "x.safetensors")
    safetensors.save_file({"a": np.zeros(2)}, path, metadata={"other": "1"})
    with pytest.raises(CheckpointError, match="x.safetensors: not a minillm checkpoint"):
        load_checkpoint(path)


# ---------------------------------------------------------------------------------------------
# Found by an adversarial pass over the first version of these checks


def test_type_confusions_in_metadata_are_one_error_line(tmp_path, capsys):
    """Numbers beyond a float, a model name that is a list, a key given twice, floats where
    integers belong: each used to be a traceback or to be accepted."""
    base = str(tmp_path / "base.safetensors")
    assert main(["train", "--steps", "2", *SMALL, "--out", base]) == 0
    tensors, meta = read(base)
    text = json.dumps(meta)
    cases = [
        (mutated(meta, [("train_config.lr", 10**30)]), None),  # an int: still a finite float
        (mutated(meta, [("train_config.clip", 10**400)]), "train_config.clip"),
        (mutated(meta, [("model_config.ln_eps", 10**400)]), "model_config.ln_eps"),
        (mutated(meta, [("model", ["gpt"])]), "model is ['gpt']"),
        (mutated(meta, [("model", {})]), "model is {}"),
        (mutated(meta, [("adam_step", 2.0)]), "adam_step is 2.0"),
        (mutated(meta, [("data_rng.has_uint32", 0.0)]), "data_rng.has_uint32"),
        (mutated(meta, [("train_config.objective", "x" * 10**6)]), "not a name"),
        (text.replace('"step": 2', '"step": 0, "step": 2'), "appears twice"),
    ]
    for n, (changed, words) in enumerate(cases):
        path = str(tmp_path / f"c{n}.safetensors")
        write(path, tensors, changed)
        capsys.readouterr()
        status = main(["generate", "今天", "--checkpoint", path])
        err = capsys.readouterr().err
        if words is None:
            assert status == 0, err
            continue
        assert status == 2 and err.count("\n") == 1 and words in err and len(err) < 1000, err


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_fifos_given_as_inputs_are_refused_without_waiting_for_a_writer(tmp_path):
    """Opening a FIFO blocks until a writer comes: each of these used to hang for ever."""
    fifo = str(tmp_path / "pipe")
    os.mkfifo(fifo)
    gpt = str(tmp_path / "g.safetensors")
    assert main(["train", "--steps", "1", *SMALL, "--out", gpt]) == 0
    folder = tmp_path / "hf"
    assert main(["export", gpt, str(folder)]) == 0
    os.remove(folder / "config.json")
    os.mkfifo(folder / "config.json")
    runs = [["checkpoint", ["generate", "今天", "--checkpoint", fifo]],
            ["checkpoint", ["export", fifo, str(tmp_path / "out")]],
            ["--out", ["train", "--resume", "--out", fifo]],
            ["--data", ["train", "--data", fifo, "--out", str(tmp_path / "x.safetensors")]],
            ["config", ["import", str(folder), str(tmp_path / "y.safetensors")]]]
    for case_id, command, status, err, escaped in run_child(tmp_path, runs, timeout=120):
        assert escaped is None and status == 2, (case_id, status, escaped, err)
        assert err.count("\n") == 1 and "FIFO" in err, (case_id, err)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_export_refuses_a_fifo_in_place_of_one_of_its_files_and_leaves_it(tmp_path, capsys):
    import stat

    gpt = str(tmp_path / "g.safetensors")
    assert main(["train", "--steps", "1", *SMALL, "--out", gpt]) == 0
    folder = tmp_path / "hf"
    folder.mkdir()
    for name in ("config.json", "minillm_vocab.json"):
        os.mkfifo(folder / name)
        capsys.readouterr()
        assert main(["export", gpt, str(folder)]) == 2
        assert "FIFO" in capsys.readouterr().err
        assert stat.S_ISFIFO(os.lstat(folder / name).st_mode)
        assert not (folder / "model.safetensors").exists()  # nothing was written
        os.remove(folder / name)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc, sets RLIMIT_AS")
def test_import_checks_the_tensors_against_config_json_before_building_anything(tmp_path):
    """A billion sentinels with a vocab_size to match used to build a billion strings; a
    config.json that disagrees with the tensors used to be imported and refused only later."""
    gpt = str(tmp_path / "g.safetensors")
    assert main(["train", "--steps", "1", *SMALL, "--out", gpt]) == 0
    runs = []
    for n, (config_change, vocab_change) in enumerate([
            ({"vocab_size": 10**9 + 164}, {"n_sentinels": 10**9 + 20}),
            ({"n_positions": 10}, {}),
            ({"n_embd": 32}, {})]):
        folder = tmp_path / f"hf{n}"
        assert main(["export", gpt, str(folder)]) == 0
        for name, change in (("config.json", config_change), ("minillm_vocab.json", vocab_change)):
            data = json.loads((folder / name).read_text(encoding="utf-8"))
            data.update(change)
            (folder / name).write_text(json.dumps(data), encoding="utf-8")
        runs.append([str(config_change), ["import", str(folder), str(tmp_path / f"i{n}.st")]])
    for case_id, command, status, err, escaped in run_child(tmp_path, runs):
        assert escaped is None and status == 2, (case_id, status, escaped, err)
        assert err.count("\n") == 1 and "model.safetensors" in err, (case_id, err)


def test_a_model_whose_output_overflows_is_refused_in_one_line(tmp_path, capsys):
    """--dtype float64 --lr 1e100 trains to finite parameters near 1e98, whose forward pass
    overflows: generate used to print NumPy warnings and "Probabilities contain NaN", score a
    table of nan, and export wrote infinities into the float32 file."""
    ckpt = str(tmp_path / "big.safetensors")
    assert main(["train", "--dtype", "float64", "--lr", "1e100", "--steps", "1", *SMALL,
                 "--out", ckpt]) == 0
    for argv in (["generate", "今天", "--checkpoint", ckpt], ["score", "今天", "--checkpoint", ckpt]):
        capsys.readouterr()
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "output is not finite" in err, err
    capsys.readouterr()
    assert main(["export", ckpt, str(tmp_path / "hf")]) == 2
    assert "does not fit float32" in capsys.readouterr().err
    assert not (tmp_path / "hf" / "model.safetensors").exists()


def test_a_long_text_on_a_long_context_model_is_refused_before_the_forward_pass(tmp_path, capsys):
    tok = default_grammar().tokenizer()
    cfg = GPTConfig(vocab_size=len(tok), n_ctx=60000, n_embd=8, n_head=2, n_layer=1)
    state = train(cfg, TrainConfig(steps=1, batch_size=1), GrammarData(default_grammar(), tok),
                  tok, log=lambda line: None)
    path = str(tmp_path / "long.safetensors")
    save_checkpoint(path, cfg, TrainConfig(steps=1, batch_size=1), tok, state)
    assert main(["score", "今" * 40000, "--checkpoint", path]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "a text of 40000 tokens would need about" in err, err


@pytest.mark.parametrize("model, objective", [("gpt", "clm"), ("bert", "mlm"),
                                              ("seq2seq", "tasks"), ("xlnet", "xlnet"),
                                              ("elmo", "elmo"), ("caption", "caption")])
def test_the_memory_estimate_bounds_a_real_training_step(model, objective):
    """memory.training_step_bytes is an upper bound: measured with tracemalloc over one
    training step (loss, gradients, AdamW) at a shape where attention dominates."""
    import tracemalloc

    from minillm.memory import training_step_bytes
    from minillm.models import MODELS, blocks
    from minillm.objectives import get_objective
    from minillm.optim import adamw_init
    from minillm.train import train_step

    tok = default_grammar().tokenizer()
    heads = {} if model == "elmo" else {"n_head": 8}  # an ELMo's LSTMs have no heads
    cfg = MODELS[model].config(vocab_size=len(tok), n_ctx=96, n_embd=32, **heads,
                               **blocks(model, 2))
    train_cfg = TrainConfig(objective=objective, batch_size=6)
    rng = np.random.default_rng(0)
    params = MODELS[model].init(cfg, rng)
    opt = adamw_init(params)
    long_text = [[int(x) for x in rng.integers(tok.first_ordinary_id, len(tok), size=90)]
                 for _ in range(6)]
    examples = [(ids, ids[:80]) for ids in long_text] if objective == "tasks" else long_text
    if objective == "caption":  # each text after a picture: 16 image tokens more per sequence
        examples = [(rng.uniform(size=(16, 16, 3)), ids) for ids in long_text]
    batch = get_objective(objective).training_batch(examples, None, rng, tok, train_cfg)
    tracemalloc.start()
    try:
        train_step(params, opt, cfg, train_cfg, batch, 0)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    estimate = training_step_bytes(model, cfg, train_cfg.batch_size, 4)
    assert peak <= estimate, (peak, estimate)
    assert estimate < 8 * peak  # an upper bound, not a refusal of everything


def test_a_path_nested_too_deep_and_a_newline_in_out_give_one_line(tmp_path, capsys):
    deep = str(tmp_path / ("a/" * 3000 + "m.safetensors"))
    assert main(["train", "--steps", "1", *SMALL, "--out", deep]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    odd = str(tmp_path / "two\nlines.safetensors")
    assert main(["train", "--steps", "1", *SMALL, "--out", odd]) == 0
    capsys.readouterr()
    assert main(["train", "--resume", "--out", odd, "--steps", "7"]) == 2
    assert capsys.readouterr().err.count("\n") == 1


@pytest.mark.parametrize("objective, key, value", [
    ("mlm", "hidden_act", "relu"), ("mlm", "position_embedding_type", "relative_key"),
    ("mlm", "is_decoder", True), ("tasks", "activation_function", "relu"),
    ("tasks", "normalize_before", True), ("tasks", "add_final_layer_norm", True),
    ("clm", "scale_attn_weights", False), ("clm", "tie_word_embeddings", False),
    ("mlm", "tie_word_embeddings", False),
])
def test_import_refuses_a_config_whose_computation_minillm_does_not_make(
        objective, key, value, tmp_path, capsys):
    """Each of these was imported silently, into a model that computes something else."""
    ckpt, folder = str(tmp_path / "m.safetensors"), tmp_path / "hf"
    assert main(["train", "--objective", objective, "--steps", "1", *SMALL, "--n-ctx", "48",
                 "--out", ckpt]) == 0
    assert main(["export", ckpt, str(folder)]) == 0
    config = json.loads((folder / "config.json").read_text())
    config[key] = value
    (folder / "config.json").write_text(json.dumps(config))
    capsys.readouterr()
    assert main(["import", str(folder), str(tmp_path / "back.safetensors")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{key}={value!r} is not supported" in err, err


def test_a_refused_export_makes_no_folder_and_a_proc_file_is_bounded_by_what_it_holds(
        tmp_path, capsys):
    from minillm.files import read_bytes

    ckpt = str(tmp_path / "big.safetensors")
    assert main(["train", "--dtype", "float64", "--lr", "1e100", "--steps", "1", *SMALL,
                 "--out", ckpt]) == 0
    assert main(["export", ckpt, str(tmp_path / "new" / "deeper")]) == 2
    assert not (tmp_path / "new").exists()
    if os.path.exists("/proc/self/status"):  # a file whose size says 0 but which holds more
        with pytest.raises(ValueError, match="or more, more than the 10 minillm reads"):
            read_bytes("/proc/self/status", "status", 10)


# ---------------------------------------------------------------------------------------------
# The model-config fields of Hugging Face's variants (a decoder's own heads and width, scaled
# embeddings, attention scaled by layer)


def _seq2seq_checkpoint(path, **fields):
    from minillm.models import MODELS
    from minillm.optim import adamw_init

    tok = default_grammar().tokenizer()
    cfg = MODELS["seq2seq"].config(vocab_size=len(tok), n_ctx=16, n_embd=8, n_head=2,
                                   n_enc_layer=1, n_dec_layer=1, **fields)
    params = MODELS["seq2seq"].init(cfg, np.random.default_rng(0))
    state = {"params": params, "opt": adamw_init(params), "step": 0, "history": [],
             "data_rng": np.random.default_rng(0)}
    save_checkpoint(path, cfg, TrainConfig(objective="tasks"), tok, state)
    return cfg


def test_the_decoder_s_own_sizes_and_the_switches_are_kept_and_checked(tmp_path):
    path = str(tmp_path / "m.safetensors")
    cfg = _seq2seq_checkpoint(path, n_dec_head=4, n_inner=12, n_dec_inner=20,
                              scale_embedding=True)
    assert load_checkpoint(path)[0] == cfg
    tensors, meta = read(path)
    for field, value, words in [
            ("n_dec_head", 3, "multiple of n_dec_head=3"), ("n_dec_head", 0, "n_dec_head is 0"),
            ("n_dec_inner", 21, "do not match"), ("n_dec_inner", "20", "n_dec_inner"),
            ("scale_embedding", 1, "model_config.scale_embedding is 1, not true or false")]:
        write(path, tensors, mutated(meta, [(f"model_config.{field}", value)]))
        with pytest.raises(CheckpointError, match=words):
            load_checkpoint(path)


def test_a_checkpoint_written_before_the_variants_loads_with_their_defaults(tmp_path):
    """A checkpoint whose model_config lacks the later fields (all written before them) is the
    model they default to: the decoder as the encoder, nothing scaled."""
    path = str(tmp_path / "m.safetensors")
    cfg = _seq2seq_checkpoint(path)
    tensors, meta = read(path)
    later = ("n_dec_head", "n_dec_inner", "scale_embedding")
    write(path, tensors, mutated(meta, [(f"model_config.{f}", MISSING) for f in later]))
    assert load_checkpoint(path)[0] == cfg
    gpt = str(tmp_path / "gpt.safetensors")
    assert main(["train", "--steps", "1", *SMALL, "--out", gpt]) == 0
    tensors, meta = read(gpt)
    write(gpt, tensors, mutated(meta, [("model_config.scale_attn_by_inverse_layer_idx",
                                        MISSING)]))
    assert load_checkpoint(gpt)[0].scale_attn_by_inverse_layer_idx is False
    assert main(["generate", "今天", "--checkpoint", gpt]) == 0


def test_an_encoder_decoder_written_when_its_encoder_blocks_were_n_layer_loads(tmp_path):
    """Older files name an encoder-decoder's encoder blocks n_layer (beside n_dec_layer); they
    load as n_enc_layer, and a file with both names, or with neither, is refused by name."""
    path = str(tmp_path / "m.safetensors")
    cfg = _seq2seq_checkpoint(path)
    tensors, meta = read(path)
    write(path, tensors, mutated(meta, [("model_config.n_enc_layer", MISSING),
                                        ("model_config.n_layer", 1)]))
    assert load_checkpoint(path)[0] == cfg
    for fields, words in [([("model_config.n_layer", 1)], "unknown 'n_enc_layer'"),
                          ([("model_config.n_enc_layer", MISSING)], "lacks n_enc_layer")]:
        write(path, tensors, mutated(meta, fields))
        with pytest.raises(CheckpointError, match=words):
            load_checkpoint(path)
