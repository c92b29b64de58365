"""Robustness: files that lie, environments that linger, the new features'
edges. Every row runs the commands in-process (srnn.errors.run_cli), on inputs made here."""
import contextlib
import errno
import json
import os
import warnings

import h5py
import numpy as np
import pytest
import soundfile as sf

from srnn import checkpoint, names
from srnn.cli import preprocess_main, train_main
from srnn.config import ModelConfig
from srnn.errors import SrnnError, run_cli

CFG = ModelConfig(slowdim=16, dim=16)
RATE = 16000


def clean_error(capsys, code, *words):
    """A one-line error naming the problem, a non-zero exit, no traceback."""
    err = capsys.readouterr().err
    assert code != 0, err
    assert "Traceback" not in err, err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and err.count("\n") == 1, err
    for w in words:
        assert w in errors[0], (w, errors[0])
    return errors[0]


def save_model(path, cfg=CFG, train=None):
    """A checkpoint of an untrained model (with an optimizer and a training state when `train`)."""
    from srnn.model import SampleRNN

    model = SampleRNN(cfg)
    optimizer = None
    if train is not None:
        from srnn.training import Steps

        optimizer = Steps(model, xla=False).optimizer
    checkpoint.save(str(path), model, optimizer, train)
    return str(path)


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    """A weights-only checkpoint and a full one (optimizer and training state), to copy and damage."""
    folder = tmp_path_factory.mktemp("ckpt")
    return {"weights": save_model(folder / "w.h5"),
            "full": save_model(folder / "full.h5", train={"epoch": 0, "seed": 1337, "exp": "t",
                                                            "train_bits": [5.0], "valid_bits": [5.0]}),
            "labels": save_model(folder / "labels.h5", ModelConfig(slowdim=16, dim=16, labels=("a", "b")))}


def crafted(good, tmp_path, edit, which="weights", name="x.h5"):
    """A copy of a good checkpoint, edited with h5py (`edit(f)`)."""
    path = tmp_path / name
    path.write_bytes(open(good[which], "rb").read())
    with h5py.File(path, "r+") as f:
        edit(f)
    return str(path)


def set_config(**changes):
    def edit(f):
        data = json.loads(f.attrs["config"])
        data.update(changes)
        f.attrs["config"] = json.dumps(data)
    return edit


def set_train(**changes):
    def edit(f):
        for k, v in changes.items():
            f["train"].attrs[k] = v if isinstance(v, str) and k.startswith("raw:") else json.dumps(v)
    return edit


def invalid(path, *words):
    with pytest.raises(SrnnError) as e:
        checkpoint.load(path)
    msg = str(e.value)
    assert msg.startswith(f"{path} is not a valid srnn checkpoint: ") and "\n" not in msg, msg
    for w in words:
        assert w in msg, (w, msg)
    return msg


def write_parts(root, n=2, seconds=0.05, labels=None, exp="t"):
    """blizzard/{exp}_parts with `n` short tones and prompts.txt (an optional label per part)."""
    folder = root / "blizzard" / f"{exp}_parts"
    folder.mkdir(parents=True)
    t = np.arange(int(seconds * RATE)) / RATE
    for i in range(n):
        sf.write(folder / names.part_name(i), 0.3 * np.sin(2 * np.pi * (200 + 50 * i) * t), RATE, subtype="PCM_16")
    (folder / names.PROMPTS).write_text("".join(names.prompt_line(i, labels[i] if labels else names.NO_LABEL)
                                                for i in range(n)))
    return folder


TRAIN = ["--exp=t", "--slowdim=16", "--dim=16", "--batchsize=1", "--trainstop=1", "--validstop=2", "--cutlen=64"]


# ---- 1. a checkpoint is untrusted input

def test_a_good_checkpoint_still_loads(good):
    for path in good.values():
        ckpt = checkpoint.load(path)
        assert set(ckpt.weights) == set(ckpt.config.weight_shapes())
    assert checkpoint.load(good["full"]).train["epoch"] == 0


def test_weight_shapes_and_states_from_the_config_are_the_models():
    """ModelConfig.weight_shapes (what a file must hold, known before TensorFlow) == the model's."""
    from conftest import small_archs
    from srnn.model import SampleRNN

    for cfg in small_archs().values():
        model = SampleRNN(cfg)
        assert cfg.weight_shapes() == {name: tuple(w.shape) for name, w in model.named_weights()}
        assert cfg.state_sizes() == model.state_sizes()


def test_every_architectures_full_checkpoint_passes_the_checks(tmp_path):
    """What training writes (weights, Adam's variables, an interrupted run's carried states) is
    within the bounds the checks set, for every architecture."""
    from conftest import small_archs
    from srnn.model import SampleRNN
    from srnn.training import Steps

    for k, cfg in enumerate(small_archs().values()):
        model = SampleRNN(cfg)
        states = {f"state_{i}": np.zeros((3, n), np.float32) for i, n in enumerate(cfg.state_sizes())}
        path = str(tmp_path / f"{k}.h5")
        checkpoint.save(path, model, Steps(model, xla=False).optimizer, {
            "epoch": 1, "seed": 2 ** 32 - 1, "exp": "x", "precision": "float32", "learning_rate": 1e-3,
            "train_bits": [5.0, 4.0], "valid_bits": [5.0, 4.5], "next_batch": 1, "next_chunk": 2,
            "partial_total": 3.0, "partial_count": 4.0, "partial_chunks": 2, "loss_scale": 2.0 ** 15,
            "loss_scale_good": 3, **({"valid_label_bits": [[1.0, float("nan"), 2.0]] * 2} if cfg.labels else {}),
            **states})
        ckpt = checkpoint.load(path)
        assert len(ckpt.optimizer) == 2 * len(cfg.weight_shapes()) + 2 and ckpt.train["state_0"].shape[0] == 3


@pytest.mark.parametrize("field,value", [("dim", 32.5), ("dim", "32"), ("q_levels", 256.0), ("slowdim", True),
                                         ("frames", [8, 2.0]), ("labels", "ab"), ("skip", 1), ("rnn", 3)])
def test_config_fields_have_their_types(good, tmp_path, field, value):
    invalid(crafted(good, tmp_path, set_config(**{field: value})), "damaged model description", field)


def test_config_that_declares_more_than_the_file_holds(good, tmp_path):
    """A huge architecture in a small file is refused before anything is allocated."""
    invalid(crafted(good, tmp_path, set_config(dim=10 ** 6)), "declares a model of", "in a file of")


def test_unwritten_chunked_dataset_is_refused(good, tmp_path):
    def edit(f):
        del f["weights/sample/out/b"]
        f["weights/sample/out"].create_dataset("b", shape=(10 ** 10,), dtype="f4", chunks=(1 << 16,))
    invalid(crafted(good, tmp_path, edit), "weights/sample/out/b")

    def unwritten_state(f):  # the right shape, nothing written: reads as gigabytes of zeros
        f["train"].create_dataset("state_0", shape=(1 << 16, 16), dtype="f4", chunks=(1, 16))
    invalid(crafted(good, tmp_path, unwritten_state, "full", "s.h5"), "train/state_0", "unwritten")


def test_compressed_dataset_is_refused(good, tmp_path):
    def edit(f):
        del f["weights/sample/out/b"]
        f["weights/sample/out"].create_dataset("b", data=np.zeros(256, np.float32), compression="gzip")
    invalid(crafted(good, tmp_path, edit), "weights/sample/out/b", "compressed")


def test_external_storage_and_links_are_refused(good, tmp_path):
    other = tmp_path / "secret.bin"
    other.write_bytes(np.ones(256, np.float32).tobytes())

    def external(f):
        del f["weights/sample/out/b"]
        f["weights/sample/out"].create_dataset("b", shape=(256,), dtype="f4", external=[(str(other), 0, 1024)])
    invalid(crafted(good, tmp_path, external, name="e.h5"), "external storage")

    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["b"] = np.ones(256, np.float32)

    def external_link(f):
        del f["weights/sample/out/b"]
        f["weights/sample/out/b"] = h5py.ExternalLink(str(tmp_path / "other.h5"), "/b")
    invalid(crafted(good, tmp_path, external_link, name="l.h5"), "external link")

    def soft_link(f):
        del f["weights/sample/h1/b"]
        f["weights/sample/h1/b"] = h5py.SoftLink("/weights/sample/h2/b")
    invalid(crafted(good, tmp_path, soft_link, name="s.h5"), "soft link")


def test_weights_must_match_the_declared_architecture(good, tmp_path):
    def wrong_shape(f):
        del f["weights/sample/out/b"]
        f["weights/sample/out/b"] = np.zeros(255, np.float32)
    invalid(crafted(good, tmp_path, wrong_shape, name="a.h5"), "weight sample/out/b has shape (255,)")
    invalid(crafted(good, tmp_path, lambda f: f["weights"].__delitem__("sample/h2/g"), name="b.h5"),
            "lacks the weight sample/h2/g")
    invalid(crafted(good, tmp_path, lambda f: f["weights/sample"].__setitem__("extra", np.zeros(3, np.float32)),
                    name="c.h5"), "sample/extra")
    invalid(crafted(good, tmp_path, lambda f: f.__setitem__("junk", np.zeros(3)), name="d.h5"), "'junk'")

    def int_weight(f):
        del f["weights/sample/out/b"]
        f["weights/sample/out/b"] = np.zeros(256, np.int32)
    invalid(crafted(good, tmp_path, int_weight, name="e.h5"), "weight sample/out/b holds int32")


def test_optimizer_arrays_are_bounded_by_the_model(good, tmp_path):
    invalid(crafted(good, tmp_path, lambda f: f["optimizer"].__setitem__("99999", np.zeros(3, np.float32)),
                    "full"), "optimizer variables, more than the model's Adam has")

    def wrong_shape(f):
        del f["optimizer/00005"]
        f["optimizer/00005"] = np.zeros((300, 300), np.float32)
    invalid(crafted(good, tmp_path, wrong_shape, "full", "y.h5"), "optimizer/00005", "shape of no weight")


@pytest.mark.parametrize("field,value,words", [
    ("seed", "abc", "seed"), ("seed", -5, "seed"), ("seed", 2 ** 32, "seed"), ("epoch", float("inf"), "epoch"),
    ("epoch", 1.5, "epoch"), ("train_bits", 5, "train_bits"), ("valid_bits", [1, 2, 3], "valid_bits"),
    ("next_batch", -1, "next_batch"), ("learning_rate", float("nan"), "learning_rate"),
    ("exp", 3, "exp"),
])
def test_training_state_types_and_ranges(good, tmp_path, field, value, words):
    invalid(crafted(good, tmp_path, set_train(**{field: value}), "full"), "training state", words)


def test_training_state_position_must_be_whole(good, tmp_path):
    invalid(crafted(good, tmp_path, set_train(next_batch=3), "full"), "part of the position")


@pytest.mark.parametrize("label,shown", [("../../../../tmp/x/pwned", "'/'"), ("a\0b", r"'\x00'"),
                                         ("a\nb", r"'\n'"), ("..", "names a folder")])
def test_stored_labels_follow_the_label_rule(good, tmp_path, monkeypatch, capsys, label, shown):
    """A crafted label never becomes a path: --sample and --export refuse the file in one line,
    and nothing is written (a folder named generated_.. existing makes no difference)."""
    path = crafted(good, tmp_path, set_config(labels=[label, "b"]), "labels")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "generated_..").mkdir()
    before = sorted(os.listdir(tmp_path))
    clean_error(capsys, run_cli(train_main, [f"--sample={path}", "--seconds=0.01"]), "x.h5",
                "not a valid srnn checkpoint", shown)
    clean_error(capsys, run_cli(train_main, [f"--sample={path}", "--export", "exp"]), "not a valid srnn checkpoint")
    assert sorted(os.listdir(tmp_path)) == before


def test_output_names_are_checked_where_they_are_made():
    assert names.generated_name(0, 1, label="speech") == "generated_speech.wav"
    for label in ("../x", "a/b", "a\0b", "a\nb"):
        with pytest.raises(SrnnError, match="cannot be part of a file name"):
            names.generated_name(0, 2, label=label)


def test_vocabulary_size_is_bounded(good, tmp_path):
    from srnn.labels import MAX_LABELS, vocabulary

    invalid(crafted(good, tmp_path, set_config(labels=[f"l{i}" for i in range(200000)]), "labels"),
            f"more than {MAX_LABELS}")
    with pytest.raises(SrnnError, match=f"more than {MAX_LABELS}"):
        vocabulary([f"l{i}" for i in range(MAX_LABELS + 1)], "prompts.txt")


def test_version_and_format_attributes(good, tmp_path):
    invalid(crafted(good, tmp_path, lambda f: f.attrs.__setitem__("version", "abc")), "version")


def test_resume_position_beyond_the_epoch_is_refused(tmp_path, monkeypatch, capsys, no_xla):
    """next_batch 10^9 used to skip the whole epoch ("0 chunks", loss 0) and save it as trained."""
    write_parts(tmp_path)
    path = save_model(tmp_path / "crafted.h5", train={
        "epoch": -1, "seed": 1337, "exp": "t", "train_bits": [], "valid_bits": [], "next_batch": 10 ** 9,
        "next_chunk": 0, "partial_total": 0.0, "partial_count": 0.0, "partial_chunks": 0})
    monkeypatch.chdir(tmp_path)
    code = run_cli(train_main, TRAIN + ["--nepochs=1", f"--load={path}"])
    clean_error(capsys, code, "crafted.h5", "batch 1000000000", "1 batch(es)")
    assert not list(tmp_path.glob("t_srnn_*.h5"))


# ---- 4. the environment cannot silently change the job

def test_tf_config_without_multiworker_is_a_note_and_one_process(tmp_path, monkeypatch, capsys, no_xla):
    """A TF_CONFIG left naming this machine worker 1 made a plain run a silent non-chief: exit 0,
    nothing printed, no checkpoint. Now it is ignored, with a note."""
    write_parts(tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]},
                                                "task": {"type": "worker", "index": 1}}))
    assert run_cli(train_main, TRAIN + ["--nepochs=1"]) == 0
    out = capsys.readouterr().out
    assert "note: TF_CONFIG is set, but only --distribute multiworker reads it" in out
    assert "Epoch 0 valid loss in bits" in out
    assert (tmp_path / "t_srnn_sz16_e0.h5").exists()


@pytest.mark.parametrize("tf_config,words", [
    ({"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 2}}, "index 2"),
    ({"cluster": ["a:1", "b:2"], "task": {"type": "worker", "index": 0}}, "cluster of list"),
    ({"cluster": {"worker": ["a:1"], "ps": ["c:3"]}, "task": {"type": "ps", "index": 0}}, "'ps'"),
    ({"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": True}}, "index True"),
    ({"cluster": {"worker": "a:1"}, "task": {"type": "worker", "index": 0}}, "not a list of host:port"),
    ("{not json", "not JSON"),
])
def test_malformed_tf_config_for_multiworker_is_one_line(tmp_path, monkeypatch, capsys, tf_config, words):
    write_parts(tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TF_CONFIG", tf_config if isinstance(tf_config, str) else json.dumps(tf_config))
    clean_error(capsys, run_cli(train_main, TRAIN + ["--distribute=multiworker"]), "TF_CONFIG", words)


# ---- 5. every number checked, everywhere

@pytest.mark.parametrize("seed", ["-5", "4294967296", "99999999999999999999"])
def test_seeds_outside_the_range_are_one_line(good, tmp_path, monkeypatch, capsys, seed):
    monkeypatch.chdir(tmp_path)
    write_parts(tmp_path)
    clean_error(capsys, run_cli(train_main, TRAIN + [f"--seed={seed}"]), f"--seed={seed}", "4294967295")
    clean_error(capsys, run_cli(train_main, [f"--sample={good['weights']}", f"--seed={seed}"]), "--seed")
    assert not list(tmp_path.glob("generated*")) and not list(tmp_path.glob("*.h5"))


def test_every_seed_of_the_range_has_its_own_draws():
    """Seeds at and above 2^31 (int32's end) are wrapped, not refused by TensorFlow; below, unchanged."""
    from srnn.sampler import int32_seed

    assert [int32_seed(s) for s in (0, 1337, 2 ** 31 - 1)] == [0, 1337, 2 ** 31 - 1]
    assert int32_seed(2 ** 31) == -2 ** 31 and int32_seed(2 ** 32 - 1) == -1


def test_sample_memory_is_checked_before_the_sequences_are_listed(good, tmp_path, monkeypatch, capsys):
    from srnn import memory

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(memory, "machine_bytes", lambda: 6 << 30)  # a 6 GB machine
    code = run_cli(train_main, [f"--sample={good['weights']}", "--seconds=1", "--nseqs=100000000"])
    clean_error(capsys, code, "generating 100,000,000 x 1 s", "GB of memory", "--nseqs")


def test_audition_memory_is_checked_before_training(tmp_path, monkeypatch, capsys):
    from srnn import memory

    write_parts(tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(memory, "machine_bytes", lambda: 6 << 30)
    code = run_cli(train_main, TRAIN + ["--audition=1", "--seconds=3600", "--nseqs=1000"])
    clean_error(capsys, code, "auditioning 1,000 x 3600 s", "GB of memory")
    assert not list(tmp_path.glob("*.h5"))


def test_label_mixture_weights_do_not_overflow():
    from srnn.labels import parse_mix

    np.testing.assert_allclose(parse_mix("a:1e308,b:1e308", ("a", "b")), [0.5, 0.5])
    np.testing.assert_allclose(parse_mix("a:3e307,b:1e308", ("a", "b")), [0.2307692, 0.7692308], rtol=1e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy's overflow RuntimeWarning is a failure here
        # one label named twice with huge weights: summed per label, never to inf (and a NaN mixture)
        np.testing.assert_allclose(parse_mix("b:1e308,b:1e308", ("a", "b")), [0.0, 1.0])
        np.testing.assert_allclose(parse_mix("b:1e308,a:1e308,b:1e308", ("a", "b")), [1 / 3, 2 / 3], rtol=1e-6)
    for text in ("a:1e309", "a:nan", "a:-inf", "a:0"):
        with pytest.raises(SrnnError, match="positive number"):
            parse_mix(text, ("a", "b"))


def test_exported_generate_checks_its_inputs_in_the_graph(tmp_path):
    """The SavedModel's own checks: each bad input an InvalidArgumentError naming it (before: one
    sample of silence, silence, audio, or the caller's memory exhausted)."""
    from srnn.export import export
    from srnn.model import SampleRNN
    from srnn.quiet import import_tensorflow

    tf = import_tensorflow()
    m = tf.saved_model.load(export(SampleRNN(ModelConfig(slowdim=16, dim=16, labels=("a", "b"))),
                                   str(tmp_path / "exp")))
    good_mix = tf.constant([[1.0, 0.0]])
    rows = [(dict(n_samples=0), "n_samples must be positive"), (dict(n_samples=-5), "n_samples must be positive"),
            (dict(n_samples=10 ** 9), "n_seqs x n_samples"), (dict(n_seqs=10 ** 6), "n_seqs must be at most"),
            (dict(n_seqs=0), "n_seqs must be positive"),
            (dict(temperature=0.0), "temperature"), (dict(temperature=-1.0), "temperature"),
            (dict(temperature=float("nan")), "temperature"),
            (dict(mix=tf.constant([[float("nan"), 1.0]])), "mix must be finite"),
            (dict(mix=tf.constant([[0.0, 0.0]])), "positive weight"),
            (dict(mix=tf.constant([[1.0, 0.0], [0.0, 1.0]])), "one row per sequence")]
    for change, words in rows:
        args = dict(n_seqs=1, n_samples=64, temperature=1.0, seed=1, mix=good_mix, **{})
        args.update(change)
        args = {k: tf.constant(v, tf.int32) if k in ("n_seqs", "n_samples", "seed") else v for k, v in args.items()}
        args["temperature"] = tf.constant(args["temperature"], tf.float32)
        with pytest.raises(tf.errors.InvalidArgumentError, match=words):
            m.generate(**args)


def test_sequences_beyond_the_open_file_limit_are_one_line(good, tmp_path, monkeypatch, capsys):
    import resource

    monkeypatch.chdir(tmp_path)
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    code = run_cli(train_main, [f"--sample={good['weights']}", "--seconds=0.001", f"--nseqs={soft + 1}"])
    clean_error(capsys, code, "temporary files open at once", "--nseqs")


# ---- 2. the corpus stays in its folder

@pytest.mark.parametrize("entry", ["ABS", "../../x.wav", "sub/../../x.wav"])
def test_prompts_may_not_leave_the_parts_folder(tmp_path, monkeypatch, capsys, entry):
    folder = write_parts(tmp_path)
    outside = tmp_path / "x.wav"
    sf.write(outside, np.zeros(800), RATE, subtype="PCM_16")
    entry = str(outside) if entry == "ABS" else entry
    (folder / names.PROMPTS).write_text(f"p0.wav\tnone\n{entry}\tnone\n")
    monkeypatch.chdir(tmp_path)
    clean_error(capsys, run_cli(train_main, TRAIN), "prompts.txt line 2", repr(entry), "outside")


def test_prompts_naming_a_fifo_or_a_folder_is_one_line(tmp_path, monkeypatch, capsys):
    folder = write_parts(tmp_path)
    os.mkfifo(folder / "fifo.wav")
    (folder / "dir.wav").mkdir()
    monkeypatch.chdir(tmp_path)
    for entry in ("fifo.wav", "dir.wav"):
        (folder / names.PROMPTS).write_text(f"p0.wav\tnone\n{entry}\tnone\n")
        clean_error(capsys, run_cli(train_main, TRAIN), entry, "not a regular file")


def test_a_part_with_a_nan_sample_is_an_error_naming_it(tmp_path, monkeypatch, capsys):
    folder = write_parts(tmp_path)
    x = np.full(800, 0.1, np.float32)
    x[400] = np.nan
    sf.write(folder / "p1.wav", x, RATE, subtype="FLOAT")
    monkeypatch.chdir(tmp_path)
    clean_error(capsys, run_cli(train_main, TRAIN), "p1.wav", "NaN or infinite")


def test_a_latin1_byte_in_prompts_is_an_error_not_a_replacement(tmp_path, monkeypatch, capsys):
    folder = write_parts(tmp_path)
    (folder / names.PROMPTS).write_bytes(b"p0.wav\tspeech\np1.wav\tsp\xe9ech\n")
    monkeypatch.chdir(tmp_path)
    clean_error(capsys, run_cli(train_main, TRAIN), "prompts.txt line 2 is not UTF-8", "0xe9", "UTF-8")


# ---- 6. never overwrite the user's input

def test_preprocess_out_is_the_source_with_force_refuses(tmp_path, monkeypatch, capsys):
    src = tmp_path / "rec"
    src.mkdir()
    t = np.arange(RATE) / RATE
    sf.write(src / "p0.wav", 0.3 * np.sin(2 * np.pi * 220 * t), RATE, subtype="PCM_16")  # the user's recording
    sf.write(src / "talk.wav", 0.3 * np.sin(2 * np.pi * 330 * t), RATE, subtype="PCM_16")
    before = (src / "p0.wav").read_bytes()
    monkeypatch.chdir(tmp_path)
    code = run_cli(preprocess_main, ["rec", "--out", "rec", "--force", "--seconds=0.25"])
    clean_error(capsys, code, "p0.wav", "--force would overwrite it", "--out")
    assert (src / "p0.wav").read_bytes() == before and sorted(os.listdir(src)) == ["p0.wav", "talk.wav"]
    # a hard link to an input in another output folder is the input too
    (tmp_path / "out").mkdir()
    os.link(src / "talk.wav", tmp_path / "out" / "p3.wav")
    code = run_cli(preprocess_main, ["rec", "--out", "out", "--force", "--seconds=0.25"])
    clean_error(capsys, code, "p3.wav", "--force would overwrite it")
    # an output folder inside the source holds only parts (it is not read): --force replaces them
    assert run_cli(preprocess_main, ["rec", "--out", "rec/parts", "--seconds=0.25"]) == 0
    assert run_cli(preprocess_main, ["rec", "--out", "rec/parts", "--force", "--seconds=0.25"]) == 0
    assert (src / "p0.wav").read_bytes() == before


def test_prime_is_never_the_output(good, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    sf.write(tmp_path / "generated.wav", np.zeros(800), RATE, subtype="PCM_16")
    before = (tmp_path / "generated.wav").read_bytes()
    code = run_cli(train_main, [f"--sample={good['weights']}", "--seconds=0.01", "--prime", "generated.wav"])
    clean_error(capsys, code, "--prime generated.wav", "copy or rename")
    assert (tmp_path / "generated.wav").read_bytes() == before


# ---- 7. clean up after any kill; every message says what is true, on one line

def test_prime_from_a_device_is_not_a_regular_file(good, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code = run_cli(train_main, [f"--sample={good['weights']}", "--seconds=0.01", "--prime", "/dev/zero"])
    clean_error(capsys, code, "--prime /dev/zero is not a regular file")


def test_a_label_folder_with_a_newline_is_one_line(tmp_path, monkeypatch, capsys):
    src = tmp_path / "corpus"
    t = np.arange(RATE) / RATE
    for label in ("speech", "two\nlines"):
        (src / label).mkdir(parents=True)
        sf.write(src / label / "a.wav", 0.3 * np.sin(2 * np.pi * 220 * t), RATE, subtype="PCM_16")
    monkeypatch.chdir(tmp_path)
    line = clean_error(capsys, run_cli(preprocess_main, ["corpus", "--labels", "folder", "--seconds=0.25"]),
                       r"two\nlines", "rename it")
    assert "\n" not in line


def test_a_killed_exports_staging_folder_is_removed_by_the_next(good, tmp_path, monkeypatch, capsys):
    """SIGKILL during --export leaves .NAME.srnn-export-*; the next export to NAME removes it."""
    monkeypatch.chdir(tmp_path)
    stale = tmp_path / ".exp.srnn-export-k1ll3d"
    (stale / "variables").mkdir(parents=True)
    other = tmp_path / ".other.srnn-export-x"  # another export's: left alone
    other.mkdir()
    assert run_cli(train_main, [f"--sample={good['weights']}", "--export", "exp"]) == 0
    assert not stale.exists() and other.exists() and (tmp_path / "exp" / "saved_model.pb").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.srnn-export-x", "exp"]


def test_export_onto_a_full_disk_is_one_line(good, tmp_path, monkeypatch, capsys):
    import keras

    from srnn.quiet import import_tensorflow

    tf = import_tensorflow()

    def full(self, path, **kw):
        raise tf.errors.ResourceExhaustedError(None, None, f"{path}/variables; No space left on device\nmore")
    # (the archive Keras makes is its backend's subclass: patched there)
    monkeypatch.setattr(type(keras.export.ExportArchive()), "write_out", full)
    monkeypatch.chdir(tmp_path)
    clean_error(capsys, run_cli(train_main, [f"--sample={good['weights']}", "--export", "exp"]),
                "cannot write --export", "No space left on device", "the disk may be full")
    assert os.listdir(tmp_path) == []  # no staging folder, no half export

    def denied(self, path, **kw):
        raise PermissionError(errno.EACCES, "Permission denied", path)
    monkeypatch.setattr(type(keras.export.ExportArchive()), "write_out", denied)
    err = clean_error(capsys, run_cli(train_main, [f"--sample={good['weights']}", "--export", "exp"]),
                      "cannot write --export", "Permission denied", "choose another folder")
    assert "disk may be full" not in err  # said only where it may be true
    assert os.listdir(tmp_path) == []


# ---- 3. never lose a training to its side jobs

def test_samples_folder_taken_by_a_file_is_one_line_before_training(tmp_path, monkeypatch, capsys):
    write_parts(tmp_path)
    (tmp_path / "t_samples").write_text("not a folder")
    monkeypatch.chdir(tmp_path)
    clean_error(capsys, run_cli(train_main, TRAIN + ["--audition=1"]), "t_samples", "audition clips")
    assert not list(tmp_path.glob("*.h5"))


def test_audition_and_tensorboard_failures_are_warnings(tmp_path, monkeypatch, capsys, no_xla):
    """An audition that fails after the epoch (here: every one) and a TensorBoard folder whose
    writes fail (a full disk) cost nothing: each epoch's checkpoint is written before its audition,
    the TensorBoard failure is said once, training ends normally."""
    import srnn.training
    from srnn.quiet import import_tensorflow

    tf = import_tensorflow()
    write_parts(tmp_path)
    monkeypatch.chdir(tmp_path)
    seen = []

    def failing_audition(model, out_dir, exp, epoch, *a, **k):
        seen.append((epoch, os.path.exists(os.path.join(out_dir, names.checkpoint_name(exp, 16, epoch)))))
        raise OSError(28, "No space left on device")

    def full(*a, **k):
        raise tf.errors.ResourceExhaustedError(None, None, "{{function_node __wrapped__W}} events: No space left")
    monkeypatch.setattr(srnn.training, "audition", failing_audition)
    monkeypatch.setattr(tf.summary, "write", full)
    assert run_cli(train_main, TRAIN + ["--nepochs=2", "--svepoch=1", "--audition=1", "--tensorboard=tb"]) == 0
    out = capsys.readouterr().out
    assert seen == [(0, True), (1, True)]  # the epoch's checkpoint was there when its audition ran
    assert out.count("warning: the audition of epoch") == 2 and "No space left on device" in out
    assert out.count("warning: cannot write TensorBoard events to tb (events: No space left)") == 1
    assert (tmp_path / "t_srnn_sz16_e1.h5").exists() and "Epoch 1 valid loss in bits" in out


# ---- 8. numbers only ASCII digits spell; schedules a checkpoint can hold

def test_a_block_of_other_digits_is_one_line_from_python(tmp_path, monkeypatch):
    """str.isdigit() takes '²', which int() refuses: the block is refused as the flag is."""
    import srnn

    monkeypatch.chdir(tmp_path)
    with pytest.raises(SrnnError, match="prune_block \u00b2x1: give ROWSxCOLS"):
        srnn.train(exp="t", sparsity=0.5, prune_block="\u00b2x1", log=None)


def test_a_state_named_with_other_digits_is_refused(good, tmp_path):
    def edit(f):
        f["train"].create_dataset("state_\u00b2", data=np.zeros((1, 16), np.float32))
    invalid(crafted(good, tmp_path, edit, which="full"), "train/state_\u00b2 is no carried state")


def test_a_schedule_past_a_checkpoints_last_step_is_refused_before_training(tmp_path, monkeypatch, capsys, no_xla):
    """--prune-end counts from the loaded run's step: that step plus the flag must still be a step
    a checkpoint holds, or the run would write files that --load and --sample refuse."""
    from srnn.model import SampleRNN
    from srnn.sparse import MAX_STEP
    from srnn.training import Steps

    write_parts(tmp_path)
    model = SampleRNN(CFG)
    optimizer = Steps(model, xla=False).optimizer
    optimizer.iterations.assign(7)
    path = str(tmp_path / "resumed.h5")
    checkpoint.save(path, model, optimizer, {"epoch": 0, "seed": 1337, "exp": "t", "train_bits": [5.0],
                                             "valid_bits": [5.0]})
    monkeypatch.chdir(tmp_path)
    code = run_cli(train_main, TRAIN + ["--nepochs=2", f"--load={path}", "--sparsity=0.5", "--prune-block=16x1",
                                        f"--prune-end={MAX_STEP}"])
    clean_error(capsys, code, "--prune-start/--prune-end", f"optimizer step {MAX_STEP + 7}", "give fewer steps")
    assert not list(tmp_path.glob("t_srnn_*.h5"))


def test_a_fifo_or_a_device_as_checkpoint_is_one_line_not_a_hang(tmp_path, monkeypatch, capsys):
    """A named pipe nobody writes to held srnn.load and --sample in their first read for ever."""
    import srnn

    os.mkfifo(tmp_path / "x.h5")
    monkeypatch.chdir(tmp_path)
    with ends_after(tmp_path / "x.h5", 5.0):  # a reader that blocks gets an end: it fails, not hangs
        for path in (str(tmp_path / "x.h5"), "/dev/zero"):
            with pytest.raises(SrnnError, match=f"^{path} is not a regular file: give a checkpoint file"):
                srnn.load(path)
            code = run_cli(train_main, [f"--sample={path}", "--seconds=0.01"])
            clean_error(capsys, code, path, "not a regular file")
            clean_error(capsys, run_cli(train_main, TRAIN + [f"--load={path}"]), path, "not a regular file")


@contextlib.contextmanager
def ends_after(fifo, seconds):
    """After `seconds`, whoever waits on `fifo` sees a writer come and go (its end), until the block
    ends: another process, as h5py holds this one's interpreter while it waits."""
    import subprocess

    writer = subprocess.Popen(["sh", "-c", 'sleep "$1"; while :; do : > "$2"; sleep 0.05; done', "sh", str(seconds),
                               str(fifo)])
    try:
        yield
    finally:
        writer.kill()
        writer.wait()


# ---- 9. weights are checked as the model computes with them

def replace(name, value):
    """An edit that puts `value` (any dtype) in the place of weight `name`."""
    def edit(f):
        del f[f"weights/{name}"]
        f[f"weights/{name}"] = value
    return edit


def refused_values(path, monkeypatch, capsys, tmp_path, *words):
    """srnn.load and --sample both refuse the file's values in one line naming it."""
    import srnn

    with pytest.raises(SrnnError) as e:
        srnn.load(path)
    assert str(e.value).startswith(f"{path}: ") and "\n" not in str(e.value)
    for w in words:
        assert w in str(e.value), (w, str(e.value))
    monkeypatch.chdir(tmp_path)
    clean_error(capsys, run_cli(train_main, [f"--sample={path}", "--seconds=0.01"]), path, *words)
    assert not list(tmp_path.glob("*.wav"))


def test_a_float64_weight_beyond_float32_is_refused(good, tmp_path, monkeypatch, capsys):
    """1e300 is finite in the file and infinite in the model: every sample came out the same."""
    value = np.zeros(256)
    value[7] = 1e300
    path = crafted(good, tmp_path, replace("sample/out/b", value))
    refused_values(path, monkeypatch, capsys, tmp_path, "weight sample/out/b holds 1e+300, beyond float32's range")


def test_a_kernel_column_of_zeros_is_refused(good, tmp_path, monkeypatch, capsys):
    """The weight norm divides a column by its norm: a column of zeros is 0 / 0 in every output."""
    def edit(f):
        f["weights/sample/h2/v"][:, 3] = 0.0
    path = crafted(good, tmp_path, edit)
    refused_values(path, monkeypatch, capsys, tmp_path, "weight sample/h2/v's column 3 has the norm 0")


def test_a_sparse_kernel_zero_where_its_mask_keeps_weights_is_refused(tmp_path, monkeypatch, capsys):
    """v is not zero, but v * mask is in every column: the norm the model divides by is v * mask's."""
    from srnn import sparse

    cfg = ModelConfig(slowdim=16, dim=16, sparse_block=(16, 1))
    path = save_model(tmp_path / "sparse.h5", cfg)

    def edit(f):
        f["weights/sample/h1/mask"][1:] = 0  # each output keeps input 0 alone, whose weights are zero
        f["weights/sample/h1/v"][0] = 0.0
        held = sparse.mask_sparsity([f[f"weights/{m}"][()] for m in sparse.mask_suffixes(cfg).values()])
        set_config(sparsity=round(held, 6))(f)
    path = crafted({"weights": path}, tmp_path, edit)
    refused_values(path, monkeypatch, capsys, tmp_path,
                   "weight sample/h1/v's column 0 has the norm 0 where its mask keeps weights")


def test_a_sample_rate_beyond_a_wav_is_refused(good, tmp_path):
    """Its audio could not be written: --sample generated, then failed in the WAV library."""
    invalid(crafted(good, tmp_path, set_config(sample_rate=10 ** 12)), "samplerate=1000000000000 is more than a WAV "
                                                                         "holds (2147483647 Hz)")


def test_strip_to_float16_says_what_float16_cannot_hold(good, tmp_path):
    def big(f):
        f["weights/sample/out/b"][5] = 1e5
    with pytest.raises(SrnnError, match=r"^strip: weight sample/out/b of .*x\.h5 holds 100000, beyond float16's "
                                        r"range \(largest 65504\): keep float32 \(leave dtype out\)$"):
        checkpoint.strip(crafted(good, tmp_path, big), str(tmp_path / "half.h5"), dtype="float16")

    def tiny(f):  # 1e-9 is 0 in float16: the column's norm with it
        f["weights/sample/h1/v"][:, 2] = 1e-9
    with pytest.raises(SrnnError, match=r"in float16: weight sample/h1/v's column 2 has the norm 0 in float32"):
        checkpoint.strip(crafted(good, tmp_path, tiny, name="y.h5"), str(tmp_path / "half.h5"), dtype="float16")
    assert not (tmp_path / "half.h5").exists()
