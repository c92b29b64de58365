"""Beyond the original: seeds, priming, mu-law, best checkpoints, patience, test loss, exact
resume, any --exp name, pictures, several sequences."""
import os
import shutil
import subprocess
import sys

import h5py
import numpy as np
import pytest
import soundfile as sf

from conftest import MINI_CFG, run_tool
from srnn import checkpoint
from srnn.config import ModelConfig
from srnn.generation import generate_levels
from srnn.model import SampleRNN
from srnn.quantize import Q_ZERO
from srnn.quiet import import_tensorflow
from srnn.training import TrainOptions, train

tf = import_tensorflow()

CFG = ModelConfig(**MINI_CFG)


@pytest.fixture(scope="module")
def mini(mini_root):
    return mini_root


def opts(root, out, **kw):
    """The shared run's options (conftest.base_run), its steps without XLA as there."""
    base = dict(exp="mini", nepochs=2, batchsize=2, trainstop=4, validstop=6, cutlen=256, xla=False,
                parts_root=str(root / "blizzard"), out_dir=str(out))
    return TrainOptions(**{**base, **kw})


def quiet(*a, **k):
    pass


def train_feeder(root):
    from srnn.batches import Feeder, read_prompts

    return Feeder(read_prompts(str(root / "blizzard" / "mini_parts"))[:4], 2, 256, CFG)


@pytest.fixture(scope="module")
def base(base_run):
    return base_run


@pytest.mark.slow
def test_same_seed_same_losses_and_exact_resume(mini, base, tmp_path):
    """Epoch 0 again with the same seed (and without watching) gives the same losses; --load of it
    and one more epoch gives the two-epoch run's losses and weights; another seed starts from
    other weights and another data order."""
    out, whole, _ = base
    first = train(CFG, opts(mini, tmp_path, nepochs=1), log=quiet)
    assert first["train_bits"] == whole["train_bits"][:1] and first["valid_bits"] == whole["valid_bits"][:1]
    resumed = train(CFG, opts(mini, tmp_path, load=str(tmp_path / "mini_srnn_sz16_e0.h5")), log=quiet)
    np.testing.assert_allclose(resumed["train_bits"], whole["train_bits"], atol=1e-5)
    np.testing.assert_allclose(resumed["valid_bits"], whole["valid_bits"], atol=1e-5)
    a = checkpoint.load(str(out / "mini_srnn_sz16_e1.h5"))
    b = checkpoint.load(str(tmp_path / "mini_srnn_sz16_e1.h5"))
    for k in a.weights:
        np.testing.assert_allclose(a.weights[k], b.weights[k], atol=1e-5)
    # another seed: other initial weights and another data order (so other losses)
    import keras

    firsts = []
    for seed in (1337, 6):
        keras.utils.set_random_seed(seed)
        firsts.append(SampleRNN(CFG).named_weights()[0][1].numpy())
    assert not np.array_equal(*firsts)
    feed = train_feeder(mini)
    assert feed.batches(seed=[1337, 0]) != feed.batches(seed=[6, 0])


@pytest.mark.slow
def test_weights_only_file_loads_with_a_note(mini, tmp_path):
    path = str(tmp_path / "weights_only.h5")
    checkpoint.save(path, SampleRNN(CFG))
    lines = []
    history = train(CFG, opts(mini, tmp_path, nepochs=1, load=path), log=lines.append)
    assert any("holds weights only" in line for line in lines)
    assert len(history["train_bits"]) == 1


@pytest.mark.slow
def test_best_checkpoint_is_the_lowest_validation_epoch_and_test_loss(base):
    out, history, lines = base
    best = int(np.argmin(history["valid_bits"]))
    ckpt = checkpoint.load(str(out / "mini_srnn_sz16_best.h5"))
    assert ckpt.train["epoch"] == best
    same_epoch = checkpoint.load(str(out / f"mini_srnn_sz16_e{best}.h5"))
    for k in ckpt.weights:
        np.testing.assert_array_equal(ckpt.weights[k], same_epoch.weights[k])
    # prompts.txt has lines after validstop: the best model's test loss is reported
    assert any(line.startswith("Test loss in bits") and f"epoch {best}" in line for line in lines)
    assert 0 < history["test_bits"] < 8.5


@pytest.mark.slow
def test_patience_stops_early(mini, base, tmp_path):
    path = tmp_path / "mini_srnn_sz16_e0.h5"
    shutil.copy(base[0] / "mini_srnn_sz16_e0.h5", path)
    with h5py.File(path, "r+") as f:  # pretend epoch 0 was unbeatable
        f["train"].attrs["valid_bits"] = "[0.5]"
    lines = []
    history = train(CFG, opts(mini, tmp_path, nepochs=6, patience=2, load=str(path)), log=lines.append)
    assert len(history["valid_bits"]) == 3  # epoch 0 (loaded), then 2 epochs without improvement
    assert any("--patience 2" in line and "best epoch is 0" in line for line in lines)
    assert (tmp_path / "mini_srnn_sz16_e2.h5").exists()


def test_mu_law_is_stored_and_used(tmp_path):
    """The quantisation travels in the checkpoint (training with another one: the a-law model of
    test_architectures.py) and sampling turns levels back into audio with it."""
    path = str(tmp_path / "m.h5")
    checkpoint.save(path, SampleRNN(ModelConfig(slowdim=16, dim=16, qtype="mu-law")))
    ckpt = checkpoint.load(path)
    assert ckpt.config.qtype == "mu-law"
    # sampling takes the quantisation from the file: levels are turned back into audio by mu-law
    from srnn.quantize import mu_law_dequantize, soundsc
    from srnn.quantize import to_audio

    levels = np.arange(256)
    np.testing.assert_allclose(to_audio(levels, ckpt.config.qtype, 256, scaling="minmax"),
                               soundsc(mu_law_dequantize(levels)))
    assert not np.allclose(to_audio(levels, "linear", 256), to_audio(levels, ckpt.config.qtype, 256))


def test_priming_continues_from_the_primer(tmp_path):
    import keras

    keras.utils.set_random_seed(4)
    m = SampleRNN(CFG)
    s = m.sampler()
    rng = np.random.default_rng(0)
    primer = rng.integers(100, 156, 21).astype(np.int32)  # not a whole number of big frames
    start = s.prime(primer, 2)
    h0 = s.initial(2)
    assert not np.allclose(start.states[0], h0.states[0]) and not np.allclose(start.frame, h0.frame)
    levels, logp = generate_levels(m.sampler(), 2, 40, seed=3, primer=primer)
    # the training graph fed [silence, padding, primer, continuation] agrees with the sampler
    pad = np.full(3, Q_ZERO, np.int32)
    x = np.concatenate([np.full((2, 8), Q_ZERO, np.int32), np.tile(np.concatenate([pad, primer]), (2, 1)), levels], 1)
    logits, _ = m.forward(x, m.zero_states(2), 1.0)
    ref = tf.nn.log_softmax(logits[:, -40:]).numpy()
    np.testing.assert_allclose(logp, np.take_along_axis(ref, levels[..., None], -1)[..., 0], atol=1e-4)


@pytest.fixture(scope="module")
def trained(base):
    return base[0] / "mini_srnn_sz16_e1.h5"


LOAD_EXPORT = """
import importlib.util, sys
import numpy as np
import tensorflow as tf
assert importlib.util.find_spec("srnn") is None  # TensorFlow alone
m = tf.saved_model.load(sys.argv[1])
out = m.generate(n_seqs=3, n_samples=4000, temperature=tf.constant([0.7, 1.0, 1.3]), seed=1)
np.save(sys.argv[2], out["audio"].numpy())
np.save(sys.argv[3], out["levels"].numpy())
"""


@pytest.mark.slow
def test_nseqs_temperatures_seed_and_export(trained, tmp_path, xla_generation):
    """Three sequences with their own temperatures; the exported SavedModel, loaded by TensorFlow
    alone, generates the same audio for the same seed (so --sample honours --seed too)."""
    args = ["--sample", trained, "--seconds", 0.25, "--nseqs", 3, "--temperature", 0.7, 1.0, 1.3]
    assert run_tool("train_srnn.py", *args, "--seed", 1, cwd=tmp_path).returncode == 0
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == [f"generated_{i}{e}" for i in range(3) for e in (".png", ".wav")]
    first = [(tmp_path / f"generated_{i}.wav").read_bytes() for i in range(3)]
    assert len(set(first)) == 3  # three different sequences
    before = set(os.listdir(tmp_path))
    proc = run_tool("train_srnn.py", "--sample", trained, "--export", tmp_path / "exported", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert set(os.listdir(tmp_path)) - before == {"exported"}  # exporting generates nothing
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run([sys.executable, "-c", LOAD_EXPORT, tmp_path / "exported", tmp_path / "audio.npy",
                          tmp_path / "levels.npy"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    audio = np.load(tmp_path / "audio.npy")
    assert audio.shape == (3, 4000) and len(np.unique(np.load(tmp_path / "levels.npy"))) > 10
    for i in range(3):
        wav, sr = sf.read(str(tmp_path / f"generated_{i}.wav"))
        np.testing.assert_allclose(audio[i], wav, atol=1.5 / 32768)  # the WAV is 16-bit


@pytest.mark.slow
def test_any_exp_name_uses_fractional_split(mini, tmp_path, no_xla):
    """Any --exp name, one with a folder in it too (made for the checkpoints before training); a
    --cutlen longer than the parts is cut to their length, with a note."""
    shutil.copytree(mini / "blizzard" / "mini_parts", tmp_path / "blizzard" / "sub" / "speech_parts")
    proc = run_tool("train_srnn.py", "--exp", "sub/speech", "--dim", 16, "--slowdim", 16, "--cutlen", 100_000_000,
                    "--nepochs", 1, "--batchsize", 1, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "training on 8 part(s), validating on 1, testing on 1" in proc.stdout  # 0.8 / 0.9 of 10 lines
    assert "--cutlen 100000000 is longer than the longest part (4000 samples): using 4000" in proc.stderr
    assert "cutlen 4000" in proc.stdout
    assert (tmp_path / "sub" / "speech_srnn_sz16_e0.h5").exists()




@pytest.mark.slow
def test_export_after_training_is_the_best_epoch(base):
    out, history, lines = base
    best = int(np.argmin(history["valid_bits"]))
    assert f"exported the best epoch ({best}) to {out / 'exported'}" in lines
    assert (out / "exported" / "saved_model.pb").exists()


@pytest.mark.slow
def test_tensorboard_events_and_audition_clips(base):
    """The base run's event files: every step's loss (numbered by the optimizer), the epoch
    scalars, the test bits and the clips; the clips and their pictures on disk; a line per
    audition. (That watching leaves the losses unchanged: test_same_seed_same_losses_and_exact_resume.)"""
    out, history, lines = base
    for epoch in (0, 1):
        for i in (0, 1):
            assert (out / "mini_samples" / f"e{epoch}_{i}.wav").exists()
            assert (out / "mini_samples" / f"e{epoch}_{i}.png").exists()
        assert any(line.startswith(f"Epoch {epoch} audition e{epoch}_0.wav: ") for line in lines)
    steps = {}
    for path in (out / "tb").glob("events.out.tfevents*"):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                steps.setdefault(value.tag, []).append(event.step)
    chunks = sum(int(line.split("(")[1].split()[0]) for line in lines if "training loss in bits" in line)
    assert steps["train/loss_bits"] == list(range(1, chunks + 1))
    for tag in ("epoch/train_bits", "epoch/valid_bits", "epoch/seconds", "epoch/samples_per_s",
                "epoch/learning_rate", "audition/0", "audition/1", "audition/0_picture"):
        assert steps[tag] == [0, 1], tag
    assert len(steps["test/bits"]) == 1
