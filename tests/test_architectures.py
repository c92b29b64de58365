"""Architectures beyond the original: checkpoints say what they hold, --sample and --load need no
architecture flags, a mismatch is one line; files written before tiers were layers still load."""
import re

import h5py
import numpy as np
import pytest

from conftest import ROOT, assert_clean_error, built_once, mix_for, run_tool
from srnn import checkpoint
from srnn.config import ModelConfig
from srnn.model import SampleRNN, loss_bits
from srnn.quantize import Q_ZERO

MUSIC = ["--frames", "4", "--rnn", "lstm", "--rnn-layers", "2", "--skip", "--qtype", "a-law", "--q-levels", "64",
         "--emb-size", "16", "--dim", "16", "--slowdim", "24", "--learning-rate", "0.002"]
MUSIC_CFG = ModelConfig(slowdim=24, dim=16, frames=(4,), rnn="lstm", rnn_layers=2, skip=True, q_levels=64,
                        emb_size=16, qtype="a-law")
SPLIT = ["--cutlen=256", "--batchsize=2", "--trainstop=4", "--validstop=6"]


def predictions(model, x):
    return model.forward(x, model.zero_states(x.shape[0]), 1.0, mix_for(model, x.shape[0]))[0].numpy()


def test_parameter_count_from_the_settings_alone(arch_model):
    """ModelConfig.count_params (the memory check's, computed without TensorFlow) == Keras' count."""
    assert arch_model.cfg.count_params() == arch_model.count_params()


def test_checkpoint_round_trip_every_architecture(arch_model, tmp_path, rng):
    path = str(tmp_path / "m.h5")
    checkpoint.save(path, arch_model)
    ckpt = checkpoint.load(path)
    assert ckpt.config == arch_model.cfg  # the architecture travels with the weights
    other = SampleRNN(ckpt.config)
    x = rng.integers(0, arch_model.cfg.q_levels, (2, 3 * arch_model.cfg.big_frame)).astype(np.int32)
    checkpoint.apply_weights(ckpt, other)
    assert np.array_equal(predictions(arch_model, x), predictions(other, x))
    with pytest.raises(checkpoint.SrnnError, match="frames="):  # another architecture: one clear line
        checkpoint.apply_weights(ckpt, SampleRNN(ModelConfig(slowdim=24, dim=16, frames=(4,))))


def test_a_version_1_checkpoint_loads_and_computes_as_before():
    """models/demo_srnn_sz128.h5 was written before the tiers became layers (format version 1,
    other weight names). Its teacher-forced loss on 4096 samples of the demo is the value the code
    of that time computed (commit 90c3118: 0.4339583218097687 bits)."""
    from srnn.audio import read_mono, resample
    from srnn.quantize import quantize

    path = f"{ROOT}/models/demo_srnn_sz128.h5"
    with h5py.File(path, "r") as f:
        assert f.attrs["version"] == 1 and "slow_gru" in f["weights"]
    ckpt = checkpoint.load(path)
    assert ckpt.config.frames == (8, 2) and ckpt.config.rnn == "gru"
    model = SampleRNN(ckpt.config)
    checkpoint.apply_weights(ckpt, model)  # raises if any weight is missing under the new names
    x, sr = read_mono(f"{ROOT}/blizzard/tiny/dir-intro.flac")
    levels = quantize(resample(x, sr, 16000), "linear")[:4096]
    xx = np.concatenate([np.full(8, Q_ZERO, np.int32), levels])[None]
    import tensorflow as tf

    # the forward pass as a graph, as training runs it (eagerly, its scans step in Python: slower)
    logits, _ = tf.function(model.forward)(tf.constant(xx), model.zero_states(1), tf.constant(1.0))
    bits = float(loss_bits(logits, xx[:, 8:], np.ones((1, 4096), np.float32)))
    assert bits == pytest.approx(0.4339583218097687, abs=1e-4)


def test_version_1_training_position_is_renamed():
    weights, train_state = checkpoint._upgrade_v1(
        {"mid_gru/vx": 1, "sample_out/b": 2}, {"h_slow": 3, "h_mid": 4, "epoch": 0})
    assert weights == {"frame1/rnn0/vx": 1, "sample/out/b": 2}
    assert train_state == {"state_0": 3, "state_1": 4, "epoch": 0}


@pytest.fixture(scope="module")
def music(mini_root, tmp_path_factory):
    """A 2-tier LSTM music-style model trained by the command line for two epochs, saved after
    each (e0, e1); made once per suite (read-only: tests copy what they change)."""
    import shutil

    def make(work):
        shutil.copytree(mini_root, work, dirs_exist_ok=True)
        proc = run_tool("train_srnn.py", "--exp=mini", *MUSIC, *SPLIT, "--nepochs=2", "--svepoch=1", cwd=work)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert "frames=4, rnn=lstm x2 with skip" in proc.stdout

    work = built_once(tmp_path_factory, "music", make)
    return work, work / "mini_srnn_sz16_e0.h5"


@pytest.mark.slow
def test_sample_needs_no_architecture_flags(music, tmp_path):
    _, path = music
    proc = run_tool("train_srnn.py", f"--sample={path}", "--seconds", 0.25, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    import soundfile as sf

    x, sr = sf.read(str(tmp_path / "generated.wav"))
    assert sr == 16000 and len(x) == 4000 and len(np.unique(x)) > 5
    assert_clean_error(run_tool("train_srnn.py", f"--sample={path}", "--frames", "8,2", cwd=tmp_path),
                       "frames=4", "frames=8,2")


@pytest.mark.slow
def test_load_takes_the_architecture_from_the_file_and_resumes_exactly(music, tmp_path, no_xla):
    """--load with no architecture flags continues the LSTM model (its (h, c) states, layers,
    learning rate and optimizer state all travel through the file): epoch 0 by one command and
    epoch 1 by another == two epochs in one run. (The second command's steps run without XLA,
    which would compile them again: its losses agree with the compiled run's to 1e-7.)"""
    import shutil

    work, path = music
    ckpt = checkpoint.load(str(path))
    assert ckpt.config == MUSIC_CFG and ckpt.train["learning_rate"] == pytest.approx(2e-3)
    whole = checkpoint.load(str(work / "mini_srnn_sz16_e1.h5")).train  # the two epochs in one run
    shutil.copytree(work / "blizzard", tmp_path / "blizzard")
    shutil.copy(path, tmp_path / path.name)
    proc = run_tool("train_srnn.py", "--exp=mini", f"--load={path.name}", *SPLIT, "--nepochs=2", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "resuming from" in proc.stdout and "learning rate 0.002" in proc.stdout
    e1 = checkpoint.load(str(tmp_path / "mini_srnn_sz16_e1.h5"))
    assert e1.config == MUSIC_CFG
    assert len(re.findall(r"Epoch \d+ valid loss in bits", proc.stdout)) == 1  # epoch 1 only
    np.testing.assert_allclose(e1.train["train_bits"], whole["train_bits"], atol=1e-5)
    np.testing.assert_allclose(e1.train["valid_bits"], whole["valid_bits"], atol=1e-5)
    assert whole["train_bits"][1] < whole["train_bits"][0]
    assert_clean_error(run_tool("train_srnn.py", "--exp=mini", f"--load={path}", "--rnn", "gru", *SPLIT, cwd=tmp_path),
                       "rnn=lstm", "rnn=gru")
