"""The three-tier model: TBPTT equivalence, weight norm, learned initial states, loss, clipping."""
import numpy as np
import pytest

from srnn.config import ModelConfig
from srnn.model import LOG2E, WNDense, WNGRU, SampleRNN, loss_bits
from srnn.quiet import import_tensorflow
from srnn.train import Steps

tf = import_tensorflow()
import keras  # noqa: E402

SMALL = ModelConfig(slowdim=24, dim=16)


@pytest.fixture(scope="module")
def model():
    keras.utils.set_random_seed(7)
    return SampleRNN(SMALL)


def random_states(model, batch, rng):
    return (tf.constant(rng.normal(size=(batch, model.cfg.slowdim)), tf.float32),
            tf.constant(rng.normal(size=(batch, model.cfg.dim)), tf.float32))


def test_tbptt_equivalence(model, rng):
    """Two consecutive chunks with the state carried == one pass over the doubled cutlen."""
    cutlen = 64
    x = rng.integers(0, 256, (3, 2 * cutlen + 8)).astype(np.int32)
    h_slow, h_mid = model.zero_states(3)
    whole, hs_whole, hm_whole = model.forward(x, h_slow, h_mid, 1.0)
    first, hs, hm = model.forward(x[:, :cutlen + 8], h_slow, h_mid, 1.0)
    second, hs, hm = model.forward(x[:, cutlen:], hs, hm, 0.0)
    assert whole.shape == (3, 2 * cutlen, 256)
    np.testing.assert_allclose(np.concatenate([first, second], axis=1), whole, atol=1e-5)
    np.testing.assert_allclose(hs, hs_whole, atol=1e-5)
    np.testing.assert_allclose(hm, hm_whole, atol=1e-5)


def test_tbptt_equivalence_through_compiled_eval_step(model, rng):
    steps = Steps(model, xla=True)
    x = rng.integers(0, 256, (2, 2 * 32 + 8)).astype(np.int32)
    mask = np.ones((2, 2 * 32), np.float32)
    hs, hm = model.zero_states(2)
    whole, _, _ = steps.eval_step(x, mask, tf.constant(1.0), hs, hm)
    a, hs, hm = steps.eval_step(x[:, :40], mask[:, :32], tf.constant(1.0), hs, hm)
    b, _, _ = steps.eval_step(x[:, 32:], mask[:, 32:], tf.constant(0.0), hs, hm)
    np.testing.assert_allclose((float(a) + float(b)) / 2, float(whole), rtol=1e-5)


def test_future_samples_do_not_change_past_logits(model, rng):
    x = rng.integers(0, 256, (1, 64 + 8)).astype(np.int32)
    y = x.copy()
    y[0, 40:] = rng.integers(0, 256, 32)  # change targets from index 40 on
    hs, hm = model.zero_states(1)
    lx, _, _ = model.forward(x, hs, hm, 1.0)
    ly, _, _ = model.forward(y, hs, hm, 1.0)
    # logits for target j (x[8 + j]) may depend on samples before it only
    np.testing.assert_allclose(lx[:, :40 - 8 + 1], ly[:, :40 - 8 + 1], atol=1e-6)
    assert not np.allclose(lx[:, 40 - 8 + 1:], ly[:, 40 - 8 + 1:])


def test_weight_norm_dense_equals_plain_dense_at_init(rng):
    wn = WNDense(5)
    wn.build((None, 7))
    plain = keras.layers.Dense(5)
    plain.build((None, 7))
    plain.set_weights([wn.v.numpy(), wn.b.numpy() + 0.1])
    wn.b.assign(wn.b.numpy() + 0.1)
    x = rng.normal(size=(4, 3, 7)).astype(np.float32)
    np.testing.assert_allclose(wn(x), plain(x), atol=1e-5)
    # and the gain really scales the kernel: doubling g doubles the output (minus bias)
    wn.g.assign(2 * wn.g)
    np.testing.assert_allclose(wn(x) - wn.b, 2 * (plain(x) - plain.bias), atol=1e-5)


def test_weight_norm_gru_equals_keras_gru_at_init(rng):
    wn = WNGRU(6)
    wn.build((None, None, 4))
    wn.bx.assign(rng.normal(size=18).astype(np.float32))  # non-zero biases make the check stricter
    wn.bh.assign(rng.normal(size=18).astype(np.float32))
    plain = keras.layers.GRU(6, reset_after=True, recurrent_activation="sigmoid",
                             return_sequences=True, return_state=True)
    plain.build((None, None, 4))
    plain.set_weights([wn.vx.numpy(), wn.vh.numpy(), np.stack([wn.bx.numpy(), wn.bh.numpy()])])
    x = rng.normal(size=(2, 9, 4)).astype(np.float32)
    h = rng.normal(size=(2, 6)).astype(np.float32)
    out, last = wn(x, h)
    ref, ref_last = plain(x, initial_state=h)
    np.testing.assert_allclose(out, ref, atol=1e-5)
    np.testing.assert_allclose(last, ref_last, atol=1e-5)


def test_learned_initial_state_used_on_reset_only(rng):
    keras.utils.set_random_seed(3)
    m = SampleRNN(SMALL)
    m.slow_gru.h0.assign(rng.normal(size=SMALL.slowdim).astype(np.float32))
    m.mid_gru.h0.assign(rng.normal(size=SMALL.dim).astype(np.float32))
    x = rng.integers(0, 256, (2, 32 + 8)).astype(np.int32)
    hs, hm = random_states(m, 2, rng)
    reset_out, _, _ = m.forward(x, hs, hm, 1.0)
    tiled = (tf.tile(m.slow_gru.h0[None], [2, 1]), tf.tile(m.mid_gru.h0[None], [2, 1]))
    from_h0, _, _ = m.forward(x, *tiled, 0.0)
    np.testing.assert_allclose(reset_out, from_h0, atol=1e-6)  # reset == starting from h0
    carried, _, _ = m.forward(x, hs, hm, 0.0)
    m.slow_gru.h0.assign(m.slow_gru.h0 * 0 + 5.0)
    m.mid_gru.h0.assign(m.mid_gru.h0 * 0 - 5.0)
    carried_again, _, _ = m.forward(x, hs, hm, 0.0)
    np.testing.assert_allclose(carried, carried_again, atol=0)  # no reset: h0 is ignored
    assert not np.allclose(reset_out, carried)


def test_loss_equals_numpy_masked_cross_entropy_in_bits(rng):
    logits = rng.normal(size=(2, 5, 256)).astype(np.float32) * 3
    targets = rng.integers(0, 256, (2, 5)).astype(np.int32)
    mask = np.array([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0]], np.float32)
    logp = logits - logits.max(-1, keepdims=True)
    logp = logp - np.log(np.exp(logp).sum(-1, keepdims=True))
    nll = -np.take_along_axis(logp, targets[..., None], -1)[..., 0]
    expected = (nll * mask).sum() / mask.sum() / np.log(2)
    assert float(loss_bits(logits, targets, mask)) == pytest.approx(expected, rel=1e-5)
    assert LOG2E == pytest.approx(1 / np.log(2))


def test_uniform_prediction_costs_eight_bits():
    logits = np.zeros((1, 10, 256), np.float32)
    assert float(loss_bits(logits, np.zeros((1, 10), np.int32), np.ones((1, 10), np.float32))) == pytest.approx(8.0)


def test_gradients_are_clipped_elementwise(rng):
    keras.utils.set_random_seed(5)
    m = SampleRNN(SMALL)
    m.sample_out.g.assign(m.sample_out.g * 300.0)  # huge logits -> huge gradients
    steps = Steps(m, xla=False)
    x = rng.integers(0, 256, (2, 64 + 8)).astype(np.int32)
    mask = np.ones((2, 64), np.float32)
    hs, hm = m.zero_states(2)
    with tf.GradientTape() as tape:
        logits, _, _ = m.forward(x, hs, hm, 1.0)
        loss = loss_bits(logits, x[:, 8:], mask)
    raw = tape.gradient(loss, m.trainable_variables)
    assert max(float(tf.reduce_max(tf.abs(g))) for g in raw) > 1.0  # the test can fail
    _, clipped, _, _ = steps.gradients(x, mask, tf.constant(1.0), hs, hm)
    assert max(float(tf.reduce_max(tf.abs(g))) for g in clipped) <= 1.0
    for g_raw, g_clip in zip(raw, clipped):
        np.testing.assert_allclose(np.clip(g_raw, -1, 1), g_clip, atol=1e-6)


def test_a_training_step_lowers_the_loss_on_a_fixed_chunk(rng):
    keras.utils.set_random_seed(11)
    m = SampleRNN(SMALL)
    steps = Steps(m)
    x = np.tile(np.arange(100, 164, dtype=np.int32), (2, 2))[:, :64 + 8]  # a simple repeating ramp
    mask = np.ones((2, 64), np.float32)
    hs, hm = m.zero_states(2)
    first = float(steps.eval_step(x, mask, tf.constant(1.0), hs, hm)[0])
    for _ in range(30):
        steps.train_step(x, mask, tf.constant(1.0), hs, hm)
    assert float(steps.eval_step(x, mask, tf.constant(1.0), hs, hm)[0]) < first - 1.0


def test_hand_written_gru_gradient_equals_autodiff(rng):
    """gru_sequence's custom gradient == autodiff through a plain loop of gru_step."""
    from srnn.model import gru_sequence, gru_step

    B, T, U = 3, 7, 5
    xp = tf.constant(rng.normal(size=(B, T, 3 * U)), tf.float32)
    h = tf.constant(rng.normal(size=(B, U)), tf.float32)
    wh = tf.constant(rng.normal(size=(U, 3 * U)) * 0.5, tf.float32)
    bh = tf.constant(rng.normal(size=3 * U), tf.float32)
    w_out = tf.constant(rng.normal(size=(B, T, U)), tf.float32)  # a loss that weighs every output
    w_last = tf.constant(rng.normal(size=(B, U)), tf.float32)  # ... and the carried state

    def loss(outs, last):
        return tf.reduce_sum(outs * w_out) + tf.reduce_sum(tf.sin(last) * w_last)

    with tf.GradientTape() as tape:
        tape.watch([xp, h, wh, bh])
        outs, last = gru_sequence(xp, h, wh, bh)
        ours = tape.gradient(loss(outs, last), [xp, h, wh, bh])
    with tf.GradientTape() as tape:
        tape.watch([xp, h, wh, bh])
        hh, seq = h, []
        for t in range(T):
            hh = gru_step(xp[:, t], hh, wh, bh)
            seq.append(hh)
        ref = tape.gradient(loss(tf.stack(seq, 1), hh), [xp, h, wh, bh])
    np.testing.assert_allclose(outs, tf.stack(seq, 1), atol=1e-6)
    for a, b in zip(ours, ref):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
