"""The compiled sampler computes exactly what the training graph computes, for every architecture."""
import numpy as np
import pytest

from conftest import mix_for
from srnn.config import ModelConfig
from srnn.model import SampleRNN
from srnn.quantize import Q_ZERO, q_zero
from srnn.quiet import import_tensorflow
from srnn.generation import generate_levels, level_chunks, plain_request
from srnn.sampler import Sampler

tf = import_tensorflow()
import keras  # noqa: E402


@pytest.fixture(scope="module")
def model():
    keras.utils.set_random_seed(21)
    m = SampleRNN(ModelConfig(slowdim=24, dim=16))
    rng = np.random.default_rng(0)
    # non-trivial learned initial states, so the test also checks the sampler starts from them
    m.frame_tiers[0].rnns[0].h0.assign(rng.normal(size=24).astype(np.float32) * 0.5)
    m.frame_tiers[1].rnns[0].h0.assign(rng.normal(size=16).astype(np.float32) * 0.5)
    return m


def teacher_forced_logp(model, levels, temps=1.0, before=(), mix=None):
    """Log-probabilities of `levels` under the training graph, fed the same sequence after a big
    frame of silence and `before` (a primer, already padded to whole big frames)."""
    c = model.cfg
    head = np.concatenate([np.full(c.big_frame, q_zero(c.q_levels), np.int32), np.asarray(before, np.int32)])
    x = np.concatenate([np.tile(head, (levels.shape[0], 1)), levels], axis=1)
    logits, _ = model.forward(x, model.zero_states(levels.shape[0]), 1.0, mix)
    logits = logits[:, -levels.shape[1]:]
    logp = tf.nn.log_softmax(logits / np.asarray(temps, np.float32).reshape(-1, 1, 1)).numpy()
    return np.take_along_axis(logp, levels[..., None], -1)[..., 0]


@pytest.mark.parametrize("xla", [True, False])
def test_sampler_equals_model(model, xla):
    temps = [1.0, 0.7, 1.3]
    levels, logp = generate_levels(model.sampler(xla=xla), 3, 64, temperature=temps, seed=5)
    assert levels.shape == logp.shape == (3, 64)
    assert len(np.unique(levels)) > 5  # really drawn, not stuck
    np.testing.assert_allclose(logp, teacher_forced_logp(model, levels, temps), atol=1e-4)


def test_generate_and_prime_equal_model_for_every_architecture(arch_model):
    """model.generate (compiled, fused steps) draws what the chunk form predicts, from the learned
    initial states and after a primer that is not a whole number of big frames."""
    m, bf = arch_model, arch_model.cfg.big_frame
    n = 2 * bf if bf > 8 else 48
    # XLA compiles the loop body, a whole big frame unrolled: 20 s for 64 samples; the 4-tier model
    # runs the same graph without it (the other architectures cover the compiled path)
    xla = bf <= 16
    mix = mix_for(m, 2)  # a conditioned model: each sequence its own mixture of labels
    levels, logp = generate_levels(m.sampler(xla=xla), 2, n, temperature=[1.0, 0.8], seed=5, mix=mix)
    assert levels.shape == (2, n) and levels.max() < m.cfg.q_levels
    assert len(np.unique(levels)) > 3
    np.testing.assert_allclose(logp, teacher_forced_logp(m, levels, [1.0, 0.8], mix=mix), atol=1e-4)
    primer = np.random.default_rng(0).integers(0, m.cfg.q_levels, bf + 3).astype(np.int32)
    levels, logp = generate_levels(m.sampler(xla=xla), 2, n, seed=6, primer=primer, mix=mix)
    padded = np.concatenate([np.full(-len(primer) % bf, q_zero(m.cfg.q_levels), np.int32), primer])
    np.testing.assert_allclose(logp, teacher_forced_logp(m, levels, before=padded, mix=mix), atol=1e-4)
    if mix is not None:  # the label matters: another mixture, other predictions for the same audio
        other = teacher_forced_logp(m, levels, before=padded, mix=mix[::-1])
        assert np.abs(other - logp).max() > 1e-2


def test_one_compilation_serves_every_length(model):
    """The number of frames is a tensor and the output has a power-of-two room (memory.piece_frames):
    lengths up to the room share one compiled loop, and a longer one's pieces share another."""
    from srnn import memory

    s = Sampler(model, xla=False)
    short = [np.concatenate([p for p, _ in level_chunks(s, plain_request(model.cfg, 1, n, seed=3))], 1)
             for n in (5, 64, 1000)]
    assert s._compiled.experimental_get_tracing_count() == 1
    assert [len(x[0]) for x in short] == [5, 64, 1000]
    np.testing.assert_array_equal(short[1][0, :5], short[0][0])  # a prefix draws the same
    # 2 s of room at least; a length past it gets one more room (and its pieces all share it)
    assert memory.piece_frames(1000, 8) == (memory.PIECE // 8, memory.MIN_ROOM // 8)
    assert memory.piece_frames(18 * 16000, 8) == (memory.PIECE // 8, memory.PIECE // 8)
    assert memory.piece_frames(100, 8, piece=24) == (3, 4)


def test_argmax_is_deterministic_and_most_likely(model):
    a, logp = generate_levels(model.sampler(), 2, 40, argmax=True, seed=1)
    b, _ = generate_levels(model.sampler(), 2, 40, argmax=True, seed=99)
    assert np.array_equal(a, b)
    assert np.array_equal(a[0], a[1])  # same start, same choices
    x = np.concatenate([np.full((1, 8), Q_ZERO, np.int32), a[:1]], axis=1)
    logits, _ = model.forward(x, model.zero_states(1), 1.0)
    assert np.array_equal(np.argmax(logits[0], -1), a[0])


def test_same_seed_same_audio_other_seed_other_audio(model):
    a, _ = generate_levels(model.sampler(), 2, 48, seed=3)
    b, _ = generate_levels(model.sampler(), 2, 48, seed=3)
    c, _ = generate_levels(model.sampler(), 2, 48, seed=4)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    assert not np.array_equal(a[0], a[1])  # streams of one batch draw independently


def test_length_not_a_multiple_of_the_big_frame(model):
    levels, _ = generate_levels(model.sampler(), 1, 37)
    assert levels.shape == (1, 37)
    assert levels.min() >= 0 and levels.max() < 256


def test_lower_temperature_lowers_entropy_of_draws(model):
    _, cold = generate_levels(model.sampler(), 1, 400, temperature=0.5, seed=2)  # one compiled loop for both
    _, hot = generate_levels(model.sampler(), 1, 400, temperature=1.5, seed=2)
    assert -cold.mean() < -hot.mean()  # mean surprisal of the chosen samples


def test_inverse_cdf_pick_draws_the_right_distribution():
    from srnn.rule import inverse_cdf_pick

    rng = np.random.default_rng(0)
    p = rng.gamma(0.3, size=256)
    p[[0, 17, 100, 101, 255]] = 0.0  # zero-probability levels, at block edges too
    p /= p.sum()
    n = 400_000
    u = tf.constant(rng.uniform(size=n), tf.float32)
    picks = inverse_cdf_pick(tf.tile(tf.constant(p[None], tf.float32), [n, 1]), u).numpy()
    counts = np.bincount(picks, minlength=256)
    assert counts[[0, 17, 100, 101, 255]].sum() == 0
    expected = p * n
    big = expected > 50
    z = (counts[big] - expected[big]) / np.sqrt(expected[big])
    assert np.abs(z).max() < 5.5  # each frequency within sampling noise
    assert ((z ** 2).sum() / big.sum()) < 1.5  # chi-square per degree of freedom ~ 1


def test_inverse_cdf_pick_with_a_one_hot_distribution():
    from srnn.rule import inverse_cdf_pick

    p = np.zeros((4, 256), np.float32)
    p[np.arange(4), [0, 15, 16, 255]] = 1.0
    u = tf.constant([0.0, 0.5, 0.999999, 0.3])
    assert inverse_cdf_pick(tf.constant(p), u).numpy().tolist() == [0, 15, 16, 255]


@pytest.mark.slow
def test_a_generation_in_chunks_draws_the_same(model, tmp_path, monkeypatch):
    """Chunks joined == one call, whatever the chunk (the draws are numbered by big frame from the
    start): chunks of a whole number of big frames, of a length that is not one, and an endless
    request taken chunk by chunk; the command line generates in pieces of at most PIECE samples,
    spools them to disk and writes the same WAV."""
    import srnn.generation
    import srnn.memory
    from srnn import checkpoint
    from srnn.cli import train_main

    s = model.sampler()
    whole, whole_logp = generate_levels(s, 2, 100, seed=9)
    parts = list(level_chunks(s, plain_request(model.cfg, 2, 100, seed=9), chunk=24))
    assert [p[0].shape[1] for p in parts] == [24, 24, 24, 24, 4]
    np.testing.assert_array_equal(np.concatenate([p[0] for p in parts], 1), whole)
    np.testing.assert_allclose(np.concatenate([p[1] for p in parts], 1), whole_logp, atol=1e-6)
    odd = [p for p, _ in level_chunks(s, plain_request(model.cfg, 2, 100, seed=9), chunk=13)]
    assert [p.shape[1] for p in odd] == [13] * 7 + [9]
    np.testing.assert_array_equal(np.concatenate(odd, 1), whole)
    endless = level_chunks(s, plain_request(model.cfg, 2, None, seed=9), chunk=30)
    np.testing.assert_array_equal(np.concatenate([next(endless)[0] for _ in range(4)], 1)[:, :100], whole)
    endless.close()

    path = str(tmp_path / "m.h5")
    checkpoint.save(path, model)
    monkeypatch.chdir(tmp_path)
    assert train_main(["--sample", path, "--seconds", "0.1", "--nseqs", "2"]) == 0
    one_go = [(tmp_path / f"generated_{i}.wav").read_bytes() for i in range(2)]
    sizes = []
    real = srnn.generation.level_chunks

    def spy(*a, **k):
        for levels, logp in real(*a, **k):
            sizes.append(levels.shape[1])
            yield levels, logp
    monkeypatch.setattr(srnn.memory, "PIECE", 512)
    monkeypatch.setattr(srnn.generation, "level_chunks", spy)
    assert train_main(["--sample", path, "--seconds", "0.1", "--nseqs", "2"]) == 0
    assert sizes == [512] * 3 + [1600 - 1536]
    assert [(tmp_path / f"generated_{i}.wav").read_bytes() for i in range(2)] == one_go
