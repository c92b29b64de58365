"""Conditioning: labels from the folders, through training, into generation."""
import contextlib
import os

import numpy as np
import pytest
import soundfile as sf
from scipy.signal import welch

from conftest import assert_clean_error, built_once, load_json, run_tool, save_json, write_audio, xla_off
from srnn import checkpoint
from srnn.batches import read_prompt_lines
from srnn.config import ModelConfig
from srnn.errors import SrnnError
from srnn.generation import generate_levels
from srnn.labels import parse_mix, vocabulary
from srnn.parts import interleave

SR = 16000


def harmonic(seconds, f0, rng):
    t = np.arange(int(seconds * SR)) / SR
    phase = rng.uniform(0, 2 * np.pi)
    return sum(0.25 / h * np.sin(2 * np.pi * f0 * h * t + phase) for h in (1, 2, 3))


def flatness(x):
    """Spectral flatness (geometric over arithmetic mean of the power spectrum): ~1 for white
    noise, near 0 for a harmonic tone."""
    _, p = welch(x, SR, nperseg=256)
    p = p[1:] + 1e-20
    return float(np.exp(np.mean(np.log(p))) / np.mean(p))


def test_preprocess_labels_from_subfolders(tmp_path):
    src = tmp_path / "corpus"
    rng = np.random.default_rng(0)
    write_audio(str(src / "speech" / "a.wav"), 0.1 * rng.standard_normal(SR * 5), SR)  # 5 parts
    write_audio(str(src / "speech" / "deep" / "b.wav"), 0.1 * rng.standard_normal(SR * 3 // 2), SR)  # 1 part
    write_audio(str(src / "music" / "c.flac"), harmonic(4.5, 220, rng), SR)  # 4 parts, no straddling
    proc = run_tool("preprocess.py", src, "--labels", "folder", "--seconds", 1)
    assert proc.returncode == 0, proc.stderr
    assert "music 4 part(s), speech 6 part(s)" in proc.stdout
    lines = read_prompt_lines(str(tmp_path / "corpus_parts"))
    labels = [label for _, label in lines]
    assert sorted(labels) == ["music"] * 4 + ["speech"] * 6
    # interleaved: each half of prompts.txt holds both labels
    assert set(labels[:5]) == set(labels[5:]) == {"music", "speech"}
    # every music part is the tone (not noise from a speech file): its flatness is a tone's
    for path, label in lines:
        x, _ = sf.read(path)
        assert len(x) == SR
        assert (flatness(x) < 0.2) == (label == "music"), (path, label)
    # files directly in DIR have no label
    write_audio(str(src / "loose.wav"), np.zeros(SR), SR)
    proc = run_tool("preprocess.py", src, "--labels", "folder", "--force")
    assert_clean_error(proc, "loose.wav", "subfolder")


def test_interleaving_puts_every_label_in_every_split():
    for counts in ([7, 30], [10, 10, 10], [3, 50, 12]):
        order = [k for k, _ in interleave(counts)]
        assert sorted(order) == sorted(k for k, n in enumerate(counts) for _ in range(n))
        n = len(order)
        splits = order[:int(round(0.8 * n))], order[int(round(0.8 * n)):int(round(0.9 * n))], order[int(round(0.9 * n)):]
        for split in splits:  # the default fractions: every label with >= 10 parts is in every split
            assert {k for k, c in enumerate(counts) if c >= 10} <= set(split), (counts, split)


def test_label_names_mixtures_and_vocabulary():
    assert vocabulary(["b", "a", "b"], "x") == ("a", "b")
    assert vocabulary(["none", "none"], "x") == ()
    with pytest.raises(SrnnError, match="labels some parts and not others"):
        vocabulary(["a", "none"], "x")
    with pytest.raises(SrnnError, match="cannot be used"):
        vocabulary(["a:b"], "x")
    np.testing.assert_allclose(parse_mix("b", ("a", "b")), [0, 1])
    np.testing.assert_allclose(parse_mix("a:0.7,b:0.3", ("a", "b")), [0.7, 0.3], rtol=1e-6)
    np.testing.assert_allclose(parse_mix("a:2,b:2", ("a", "b")), [0.5, 0.5])
    with pytest.raises(SrnnError, match="unknown label 'c'; the model knows a, b"):
        parse_mix("c", ("a", "b"))
    with pytest.raises(SrnnError, match="positive number"):
        parse_mix("a:-1", ("a", "b"))


def test_vocabulary_round_trips_through_the_checkpoint(tmp_path):
    import keras

    from srnn.model import SampleRNN

    keras.utils.set_random_seed(0)
    m = SampleRNN(ModelConfig(slowdim=8, dim=8, labels=("noise", "tone")))
    assert m.cfg.count_params() == m.count_params()
    m.sample_tier.label.table.assign(np.arange(16, dtype=np.float32).reshape(2, 8))
    checkpoint.save(tmp_path / "c.h5", m)
    back = checkpoint.load(tmp_path / "c.h5")
    assert back.config.labels == ("noise", "tone")
    np.testing.assert_array_equal(back.weights["sample/label/table"], m.sample_tier.label.table.numpy())
    with pytest.raises(SrnnError, match="labels noise,tone"):
        checkpoint.check_compatible(back, ModelConfig(slowdim=8, dim=8))


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    """A two-label corpus (a harmonic tone, white noise) in parts of 128 samples, and the same small
    model trained on it with and without its labels (the same seed and data order). Parts are
    short because an unconditional model soon hears which label a part has: the label can save it
    at most a bit per part (the entropy of the label), and only a short part makes that visible.
    The unconditional run's steps are not compiled by XLA (the conditioned run's are, as the
    command's are by default): what it shows does not depend on it, and it starts at once. Made
    once per suite (read-only: tests write elsewhere)."""
    def make(root):
        rng = np.random.default_rng(3)
        for i, f0 in enumerate((200, 250, 300)):
            write_audio(str(root / "corpus" / "tone" / f"t{i}.wav"), harmonic(0.8, f0, rng), SR)
            write_audio(str(root / "corpus" / "noise" / f"n{i}.wav"),
                        (0.25 * rng.standard_normal(SR * 4 // 5)).clip(-1, 1), SR)
        proc = run_tool("preprocess.py", root / "corpus", "--labels", "folder", "--seconds", 128 / SR,
                        "--out", root / "blizzard" / "lab_parts")
        assert proc.returncode == 0, proc.stderr
        logs = {}
        for name, extra in (("cond", []), ("uncond", ["--no-cond"])):
            os.makedirs(root / name)
            os.symlink(root / "blizzard", root / name / "blizzard")  # one corpus, two folders of checkpoints
            with xla_off() if name == "uncond" else contextlib.nullcontext():
                proc = run_tool("train_srnn.py", "--exp", "lab", "--slowdim", 32, "--dim", 32, "--cutlen", 128,
                                "--batchsize", 16, "--nepochs", 6, "--learning-rate", 0.003, *extra, cwd=root / name)
            assert proc.returncode == 0, proc.stderr
            logs[name] = proc.stdout
        save_json(root / "logs.json", logs)

    root = built_once(tmp_path_factory, "labelled", make)
    return root, load_json(root / "logs.json")


def valid_bits(log):
    return [float(line.split()[-1]) for line in log.splitlines() if " valid loss in bits " in line]


@pytest.mark.slow
def test_labels_are_learnt_and_beat_the_unconditional_model(labelled):
    root, logs = labelled
    cond, uncond = valid_bits(logs["cond"]), valid_bits(logs["uncond"])
    # the label tells the model at once what the audio of each (short) part will be
    assert min(cond) < min(uncond), (cond, uncond)
    test = [float(log.split("Test loss in bits ")[1].split()[0]) for log in (logs["cond"], logs["uncond"])]
    assert test[0] < test[1], test
    per_label = [line for line in logs["cond"].splitlines() if "valid loss per label" in line][-1]
    bits = dict(zip(per_label.split(": ")[1].replace(",", "").split()[::2],
                    map(float, per_label.split(": ")[1].replace(",", "").split()[1::2])))
    assert set(bits) == {"noise", "tone"}
    assert bits["tone"] < 2 < 6 < bits["noise"]  # a tone is predictable, white noise is not
    assert "per label" not in logs["uncond"]
    assert checkpoint.load(root / "cond" / "lab_srnn_sz32_best.h5").config.labels == ("noise", "tone")


@pytest.mark.slow
def test_generation_follows_the_label_and_the_mixture(labelled, tmp_path):
    root, _ = labelled
    ckpt = root / "cond" / "lab_srnn_sz32_best.h5"
    out = tmp_path
    # without --label: --nseqs of every label, named by label
    proc = run_tool("train_srnn.py", "--sample", ckpt, "--seconds", 0.5, "--nseqs", 3, cwd=out)
    assert proc.returncode == 0, proc.stderr
    flat = {label: np.median([flatness(sf.read(out / f"generated_{label}_{i}.wav")[0]) for i in range(3)])
            for label in ("noise", "tone")}
    assert flat["tone"] < 0.3 < 0.8 < flat["noise"], flat
    # a mixture, after a primer (a noise part: --prime works with --label): the primer opens each
    # file, and the rest is what the mixture generates
    primer = str(root / "blizzard" / "lab_parts" / "p0.wav")
    proc = run_tool("train_srnn.py", "--sample", ckpt, "--seconds", 0.5, "--nseqs", 3, "--label",
                    "tone:0.5,noise:0.5", "--prime", primer, cwd=out)
    assert proc.returncode == 0, proc.stderr
    assert "label noise:0.5,tone:0.5" in proc.stdout
    mixed = []
    for i in range(3):
        x, _ = sf.read(out / f"generated_{i}.wav")
        assert len(x) == 128 + 8000
        mixed.append(flatness(x[128:]))
    # the mixture lies within the two labels' range, and is not the tone; a mixture of embeddings
    # is not a mixture of sounds: this small model's 50/50 sounds nearly like its noise (measured:
    # it switches between 0 and 25 % noise), so "between" includes the noise end up to the
    # measure's own spread (white noise's flatness varies by about 0.005 from clip to clip)
    assert flat["tone"] + 0.3 < np.median(mixed) < flat["noise"] + 0.01, (flat, mixed)
    # unknown labels, and --label for a model without labels, are one-line errors
    assert_clean_error(run_tool("train_srnn.py", "--sample", ckpt, "--label", "speech", cwd=out),
                       "unknown label 'speech'", "noise, tone")
    uncond = root / "uncond" / "lab_srnn_sz32_best.h5"
    assert_clean_error(run_tool("train_srnn.py", "--sample", uncond, "--label", "tone", cwd=out),
                       "trained without labels")


@pytest.mark.slow
def test_export_takes_the_label_weights(tmp_path):
    """The SavedModel of a conditioned model generates, for given label weights, what the model
    does, and lists its labels."""
    import keras
    import tensorflow as tf

    from srnn.export import export
    from srnn.names import LABELS_FILE
    from srnn.model import SampleRNN

    keras.utils.set_random_seed(1)
    m = SampleRNN(ModelConfig(slowdim=8, dim=8, labels=("a", "b")))
    for tier in m.tiers:
        tier.label.table.assign(np.random.default_rng(0).normal(size=tier.label.table.shape).astype(np.float32))
    mix = np.array([[1, 0], [0.3, 0.7]], np.float32)
    want, _ = generate_levels(m.sampler(xla=True), 2, 64, seed=4, mix=mix)  # (as the SavedModel's)
    path = export(m, tmp_path / "exported")
    assert open(os.path.join(path, LABELS_FILE)).read() == "a\nb\n"
    loaded = tf.saved_model.load(path)  # held: its variables live as long as it does
    got = loaded.generate(n_seqs=2, n_samples=64, temperature=1.0, seed=4, mix=mix)
    np.testing.assert_array_equal(got["levels"].numpy(), want)
