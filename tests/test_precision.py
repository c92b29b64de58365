"""Precision: mixed-precision training (Keras dtype policies, float16 loss scaling) and the
sampler's weights in bfloat16 or int8."""
import json
import os

import numpy as np
import pytest

from conftest import DEMO, ROOT, mix_for, small_archs

PRECISIONS = ["mixed_bfloat16", "mixed_float16"]


def _batch(cfg, batch=2, cutlen=64, seed=0):
    """A learnable batch: slow random walks, so that a few steps lower the loss."""
    rng = np.random.default_rng(seed)
    x = (128 + np.cumsum(rng.integers(-2, 3, (batch, cutlen + cfg.big_frame)), axis=1)) % cfg.q_levels
    return x.astype(np.int32), np.ones((batch, cutlen), np.float32)


def _steps(precision, cfg, n=5):
    import keras
    import tensorflow as tf

    from srnn.model import SampleRNN
    from srnn.training import Steps

    keras.utils.set_random_seed(3)
    m = SampleRNN(cfg, precision=precision)
    steps = Steps(m, xla=False)  # XLA compiles the same maths, slower to start for a few steps
    x, mask = _batch(cfg)
    mix = mix_for(m, 2)
    mix = np.zeros((2, 0), np.float32) if mix is None else mix
    states, losses = m.zero_states(2), []
    for i in range(n):
        loss, states = steps.train_step(x, mask, tf.constant(float(i == 0)), states, mix)
        losses.append(float(loss))
    return m, steps, losses, states


LABELLED = small_archs()["emb32-q64-labels"]


@pytest.fixture(scope="module")
def float32_losses():
    return _steps("float32", LABELLED)[2]


@pytest.mark.parametrize("precision", PRECISIONS)
def test_mixed_training_matches_float32(precision, float32_losses):
    reference = float32_losses
    m, steps, losses, states = _steps(precision, LABELLED)
    half = precision.split("_")[1]
    # the tiers really compute in 16 bits (the losses are not float32's to the bit) ...
    assert {t.compute_dtype for t in m.frame_tiers} == {half}
    assert m.sample_tier.h2.compute_dtype == half and m.sample_tier.out.compute_dtype == "float32"
    assert losses != reference
    # ... while the weights, the optimizer state and the carried states stay float32
    assert {w.dtype for _, w in m.named_weights()} == {"float32"}
    assert {v.dtype for v in steps.optimizer.variables if "float" in str(v.dtype)} == {"float32"}
    assert {s.dtype.name for s in states} == {"float32"}
    # the same batch gives the same loss in bits up to rounding (measured 0.003-0.025 bits of
    # ~7.5 with bfloat16, whose 8-bit significand rounds each product by up to 0.4 %), step
    # after step
    assert np.max(np.abs(np.array(losses) - reference)) < 0.05, (losses, reference)
    assert losses[-1] < losses[0] - 0.3  # and it learns


def test_float16_loss_scale_skips_overflow_and_grows():
    import tensorflow as tf

    cfg = small_archs()["default"]
    m, steps, _, states = _steps("mixed_float16", cfg, n=1)
    x, mask = _batch(cfg)
    mix = np.zeros((2, 0), np.float32)
    ls, opt = steps.loss_scale, steps.optimizer
    before = [w.numpy() for _, w in m.named_weights()]
    done = int(opt.iterations.numpy())
    ls.scale.assign(2.0 ** 60)  # the scaled gradients overflow float16
    loss, _ = steps.train_step(x, mask, tf.constant(0.0), states, mix)
    assert np.isfinite(float(loss))
    assert int(opt.iterations.numpy()) == done  # the step was skipped ...
    assert all(np.array_equal(a, w.numpy()) for a, (_, w) in zip(before, m.named_weights()))
    assert float(ls.scale.numpy()) == 2.0 ** 59  # ... and the scale halved
    ls.scale.assign(8.0)
    ls.good.assign(ls.growth - 1)  # one finite step short of growing
    steps.train_step(x, mask, tf.constant(0.0), states, mix)
    assert int(opt.iterations.numpy()) == done + 1
    assert float(ls.scale.numpy()) == 16.0 and int(ls.good.numpy()) == 0
    # the scale goes into the checkpoint's training state and comes back on --load
    from srnn.engine.tensorflow import LossScale

    ls.good.assign(7)
    resumed = LossScale()
    resumed.restore(json.loads(json.dumps(ls.state())))  # as the checkpoint stores it
    assert (float(resumed.scale.numpy()), int(resumed.good.numpy())) == (16.0, 7)


@pytest.mark.slow
def test_precision_flags_and_checkpoint(tmp_path, monkeypatch, capsys):
    """--precision is stored in the checkpoint and kept by --load unless given; bad values and
    combinations are one-line errors before any training."""
    from conftest import tone, write_audio

    from srnn import checkpoint, names
    from srnn.cli import train_main
    from srnn.errors import SrnnError

    monkeypatch.chdir(tmp_path)
    parts = tmp_path / "blizzard" / "mini_parts"  # three short parts: one each to train, validate, test
    for i in range(3):
        write_audio(str(parts / names.part_name(i)), tone(220 * (i + 1), 0.1, 16000), 16000)
    (parts / "prompts.txt").write_text("".join(names.prompt_line(i) for i in range(3)))
    common = ["--exp", "mini", "--slowdim", "16", "--dim", "16", "--cutlen", "256", "--batchsize", "1",
              "--trainstop", "1", "--validstop", "2"]
    for bad in (["--precision", "float8"], ["--sample", "x.h5", "--sample-precision", "int4"]):
        with pytest.raises(SystemExit) as e:
            train_main(common + bad)
        assert e.value.code == 2 and "invalid choice" in capsys.readouterr().err
    with pytest.raises(SrnnError, match="mixed_float16 does not work with --distribute"):
        train_main(common + ["--precision", "mixed_float16", "--distribute", "mirrored"])
    assert not list(tmp_path.glob("*.h5"))

    assert train_main(common + ["--nepochs", "1", "--precision", "mixed_bfloat16"]) == 0
    assert "XLA, mixed_bfloat16" in capsys.readouterr().out
    assert checkpoint.load("mini_srnn_sz16_e0.h5").train["precision"] == "mixed_bfloat16"
    # --load without --precision goes on in the file's precision (the runs below stop at once: the
    # file has its one epoch; what they would train in is the line that says so) ...
    assert train_main(common + ["--nepochs", "1", "--load", "mini_srnn_sz16_e0.h5"]) == 0
    out = capsys.readouterr().out
    assert "XLA, mixed_bfloat16" in out and "was trained in" not in out and "already been trained" in out
    # ... and a different one given is said, and used
    assert train_main(common + ["--nepochs", "1", "--load", "mini_srnn_sz16_e0.h5", "--precision", "float32"]) == 0
    out = capsys.readouterr().out
    assert "was trained in mixed_bfloat16; training goes on in float32" in out
    assert "mixed_bfloat16" not in out.split("training on")[1].splitlines()[0]


# ---- the sampler's weights

def test_packed_matmul():
    import tensorflow as tf

    from srnn.packed import Packed, matmul

    rng = np.random.default_rng(0)
    w = rng.normal(size=(64, 48)).astype(np.float32) * rng.uniform(0.01, 3, 48).astype(np.float32)
    w[:, 5] = 0.0  # a zero column keeps a usable scale
    x = rng.normal(size=(3, 64)).astype(np.float32)
    exact = x @ w
    for precision, tol in (("bfloat16", 2 ** -8), ("int8", 0.5 / 127)):
        p = Packed(tf.constant(w), precision)
        assert p.data.dtype == {"bfloat16": tf.bfloat16, "int8": tf.int8}[precision]
        back = p.unpacked().numpy()
        # each weight is off by at most half a step: relative for bfloat16, of its column's peak for int8
        bound = np.abs(w) * tol if precision == "bfloat16" else np.abs(w).max(axis=0) * tol
        assert np.all(np.abs(back - w) <= bound + 1e-12)
        assert np.all(back[:, 5] == 0)
        # x @ packed is x @ (the rounded weights), the sums in float32
        np.testing.assert_allclose(matmul(tf.constant(x), p).numpy(), x @ back, rtol=1e-5, atol=1e-5)
        assert not np.allclose(back, w, rtol=0, atol=1e-7)  # rounding happened
        assert np.abs(matmul(tf.constant(x), p).numpy() - exact).max() < 0.05 * np.abs(exact).max()


def test_auto_choice(monkeypatch):
    import srnn.packed as packed
    from srnn.model import SampleRNN

    m = SampleRNN(small_archs()["default"])
    weights = m.step_weights()
    assert packed.choose("auto", weights, 1) == "float32"  # a small model's weights stay in cache
    assert packed.choose("int8", weights, 1) == "int8"  # a forced format is kept
    monkeypatch.setattr(packed, "AUTO_MIN_BYTES", 0)  # as if it were big: the fastest measured wins
    monkeypatch.setattr(packed, "probe", lambda shapes, streams: {"float32": 3.0, "bfloat16": 1.0, "int8": 2.0})
    assert packed.choose("auto", weights, 1) == "bfloat16"
    monkeypatch.undo()
    times = packed.probe(((16, 48), (32, 16)), 2)  # the real measurement, on small shapes
    assert set(times) == {"float32", "bfloat16", "int8"} and all(0 < t < 10 for t in times.values())


@pytest.fixture(scope="module")
def demo_model():
    from srnn import checkpoint
    from srnn.model import SampleRNN

    ckpt = checkpoint.load(os.path.join(ROOT, "models", "demo_srnn_sz128.h5"))
    m = SampleRNN(ckpt.config)
    checkpoint.apply_weights(ckpt, m)
    return m


def test_reduced_sampler_nll_and_argmax(demo_model):
    """Teacher-forced on held-out audio (a quarter second of the demo corpus's validation parts),
    the sampler's float32 step form gives the training graph's NLL, and its bfloat16 and int8
    weights the same NLL within 0.01 bits, with the same most likely level on most steps."""
    import tensorflow as tf

    from srnn.audio import stream_mono
    from srnn.model import LOG2E, loss_bits
    from srnn.quantize import q_zero, quantize

    c = demo_model.cfg
    audio = np.concatenate(list(stream_mono(os.path.join(DEMO, "dir-intro.flac"), c.sample_rate)))
    levels = quantize(audio[-16000:-12000], c.qtype, c.q_levels).astype(np.int32)
    x = np.concatenate([np.full(c.big_frame, q_zero(c.q_levels), np.int32), levels])[None]
    logits, _ = tf.function(demo_model.forward)(tf.constant(x), demo_model.zero_states(1), tf.constant(1.0))
    chunk_nll = float(loss_bits(logits, x[:, c.big_frame:], np.ones((1, len(levels)), np.float32)))
    nll, picks = {}, {}
    for precision in ("float32", "bfloat16", "int8"):  # without XLA: it would compile for one use
        picks[precision], logp = demo_model.sampler(precision=precision).score(levels[None])
        nll[precision] = -logp.mean() * LOG2E
    assert abs(nll["float32"] - chunk_nll) < 1e-4, (nll, chunk_nll)
    for precision in ("bfloat16", "int8"):
        assert abs(nll[precision] - nll["float32"]) < 0.01, nll
        agree = np.mean(picks[precision] == picks["float32"])
        assert agree > 0.9, (precision, agree)  # measured: bfloat16 0.98, int8 0.94
    assert np.mean(picks["float32"] == levels) > 0.05  # the argmax is a real prediction, not a constant


def test_reduced_sampler_generates(demo_model):
    from srnn.generation import generate_levels

    s = demo_model.sampler(precision="int8")
    a, logp = generate_levels(s, 2, 256, seed=4)
    b, _ = generate_levels(s, 2, 256, seed=4)
    assert np.array_equal(a, b) and a.min() >= 0 and a.max() < demo_model.cfg.q_levels
    assert np.all(np.isfinite(logp)) and np.all(logp <= 0)
    assert s.weight_precision(2).precision == "int8"
    assert demo_model.sampler().weight_precision(2) == ("float32", (), ())  # auto: dim 128 stays in cache


@pytest.mark.parametrize("arch", ["lstm3-skip", "emb32-q64-labels"])
def test_reduced_sampler_other_architectures(arch):
    """The packed weights through every kind of step: LSTM layers with skip connections, a tier
    feeding a tier, label vectors. The rounded sampler scores audio as the float32 one does, up to
    the rounding, and is not float32 in disguise."""
    import keras

    from srnn.model import SampleRNN

    keras.utils.set_random_seed(5)
    m = SampleRNN(small_archs()[arch])
    mix = mix_for(m, 2)
    x, _ = _batch(m.cfg, cutlen=64)
    ref = m.sampler(precision="float32").score(x[:, m.cfg.big_frame:], mix=mix)[1]
    for precision in ("bfloat16", "int8"):
        logp = m.sampler(precision=precision).score(x[:, m.cfg.big_frame:], mix=mix)[1]
        assert 0 < np.abs(logp - ref).max() < 0.05, (precision, np.abs(logp - ref).max())
