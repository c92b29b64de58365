"""The .h5 checkpoint: round trip, sizes from the file, clear errors for bad files."""
import h5py
import numpy as np
import pytest

from srnn import checkpoint
from srnn.config import ModelConfig
from srnn.errors import SrnnError
from srnn.model import SampleRNN
from srnn.names import checkpoint_name
from srnn.quiet import import_tensorflow
from srnn.training import Steps

tf = import_tensorflow()
import keras  # noqa: E402

CFG = ModelConfig(slowdim=24, dim=16, qtype="mu-law", sample_rate=8000)


def predictions(model, x):
    return model.forward(x, model.zero_states(x.shape[0]), 1.0)[0].numpy()


def test_round_trip_gives_identical_predictions(tmp_path, rng):
    keras.utils.set_random_seed(1)
    a = SampleRNN(CFG)
    a.frame_tiers[0].rnns[0].h0.assign(rng.normal(size=24).astype(np.float32))
    path = str(tmp_path / "m.h5")
    checkpoint.save(path, a)
    ckpt = checkpoint.load(path)
    assert ckpt.config == CFG  # hyperparameters travel with the weights
    keras.utils.set_random_seed(2)
    b = SampleRNN(ckpt.config)
    x = rng.integers(0, 256, (2, 72)).astype(np.int32)
    assert not np.array_equal(predictions(a, x), predictions(b, x))
    checkpoint.apply_weights(ckpt, b)
    assert np.array_equal(predictions(a, x), predictions(b, x))


def test_optimizer_state_and_history_round_trip(tmp_path, rng):
    keras.utils.set_random_seed(1)
    m = SampleRNN(CFG)
    steps = Steps(m, xla=False)
    x = rng.integers(0, 256, (2, 72)).astype(np.int32)
    steps.train_step(x, np.ones((2, 64), np.float32), tf.constant(1.0), m.zero_states(2))
    path = str(tmp_path / "m.h5")
    checkpoint.save(path, m, steps.optimizer, {"epoch": 3, "train_bits": [5.0, 4.0]})
    ckpt = checkpoint.load(path)
    assert ckpt.train["epoch"] == 3 and ckpt.train["train_bits"] == [5.0, 4.0]
    other = Steps(SampleRNN(CFG), xla=False)
    assert checkpoint.apply_optimizer(ckpt, other.optimizer)
    for v, w in zip(steps.optimizer.variables, other.optimizer.variables):
        np.testing.assert_array_equal(v.numpy(), w.numpy())


def test_size_mismatch_is_one_line_naming_both_sizes(tmp_path):
    path = str(tmp_path / "m.h5")
    checkpoint.save(path, SampleRNN(CFG))
    with pytest.raises(SrnnError) as e:
        checkpoint.apply_weights(checkpoint.load(path), SampleRNN(ModelConfig(slowdim=24, dim=32)))
    msg = str(e.value)
    assert "dim=16" in msg and "dim=32" in msg and "\n" not in msg


def test_file_names_follow_the_original():
    assert checkpoint_name("tiny", 32, 9) == "tiny_srnn_sz32_e9.h5"
    assert checkpoint_name("all", 1024, 0) == "all_srnn_sz1024_e0.h5"


def test_bad_files_give_clear_errors(tmp_path):
    good = tmp_path / "good.h5"
    checkpoint.save(str(good), SampleRNN(CFG))
    cases = {
        "missing.h5": ("not found", None),
        "text.h5": ("cannot be read as an HDF5", b"hello, not hdf5"),
        "half.h5": ("cannot be read as an HDF5", good.read_bytes()[: good.stat().st_size // 2]),
    }
    for name, (words, data) in cases.items():
        if data is not None:
            (tmp_path / name).write_bytes(data)
        with pytest.raises(SrnnError, match=words):
            checkpoint.load(str(tmp_path / name))
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["x"] = np.zeros(3)
    with pytest.raises(SrnnError, match="not an srnn checkpoint"):
        checkpoint.load(str(tmp_path / "other.h5"))
    for name, damage, words in [("list.h5", lambda f: f.attrs.__setitem__("config", "[1, 2]"), "damaged model"),
                                ("text_weight.h5", lambda f: (f["weights/sample/out"].__delitem__("b"),
                                                              f["weights/sample/out"].__setitem__("b", "text")),
                                 "weight sample/out/b is not an array of numbers")]:
        path = tmp_path / name
        path.write_bytes(good.read_bytes())
        with h5py.File(path, "r+") as f:
            damage(f)
        with pytest.raises(SrnnError, match=words):
            checkpoint.load(str(path))


def test_save_is_atomic_and_keeps_the_old_file_on_failure(tmp_path, monkeypatch):
    path = tmp_path / "m.h5"
    m = SampleRNN(CFG)
    checkpoint.save(str(path), m)
    before = path.read_bytes()

    def broken(*a, **k):
        raise RuntimeError("disk full")

    # fails after the weights are in the new file: a crash in the middle of writing it
    monkeypatch.setattr(checkpoint.json, "dumps", broken)
    with pytest.raises(RuntimeError):
        checkpoint.save(str(path), m, train={"epoch": 1})
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.h5"]  # no temporary left behind


def test_strip_keeps_weights_and_config_only(tmp_path, rng):
    m = SampleRNN(CFG)
    steps = Steps(m, xla=False)
    full = str(tmp_path / "full.h5")
    checkpoint.save(full, m, steps.optimizer, {"epoch": 2})
    checkpoint.strip(full, str(tmp_path / "small.h5"))
    small = checkpoint.load(str(tmp_path / "small.h5"))
    assert small.optimizer is None and small.train is None and small.config == CFG
    x = rng.integers(0, 256, (1, 40)).astype(np.int32)
    other = SampleRNN(CFG)
    checkpoint.apply_weights(small, other)
    assert np.array_equal(predictions(m, x), predictions(other, x))
    assert (tmp_path / "small.h5").stat().st_size < (tmp_path / "full.h5").stat().st_size / 2
    # in float16 (a shipped model): half the bytes again, read as any checkpoint, the same model to
    # float16's rounding of each weight
    checkpoint.strip(full, str(tmp_path / "half.h5"), dtype="float16")
    half = checkpoint.load(str(tmp_path / "half.h5"))
    assert (tmp_path / "half.h5").stat().st_size < 0.6 * (tmp_path / "small.h5").stat().st_size
    for name, value in small.weights.items():
        assert half.weights[name].dtype == np.float16
        np.testing.assert_array_equal(half.weights[name], value.astype(np.float16))
    checkpoint.apply_weights(half, other)
    np.testing.assert_allclose(predictions(other, x), predictions(m, x), atol=0.05)
