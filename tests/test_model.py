"""The model: TBPTT equivalence (every architecture), weight norm, learned initial states, loss,
clipping, the hand-written RNN gradients."""
import numpy as np
import pytest

from conftest import mix_for
from srnn.config import ModelConfig
from srnn.layers import WNDense, WNRNN
from srnn.model import LOG2E, SampleRNN, loss_bits
from srnn.quiet import import_tensorflow
from srnn.training import Steps

tf = import_tensorflow()
import keras  # noqa: E402

SMALL = ModelConfig(slowdim=24, dim=16)


@pytest.fixture(scope="module")
def model():
    keras.utils.set_random_seed(7)
    return SampleRNN(SMALL)


def random_states(model, batch, rng):
    return tuple(tf.constant(rng.normal(size=(batch, n)), tf.float32) for n in model.state_sizes())


def levels(model, rng, shape):
    return rng.integers(0, model.cfg.q_levels, shape).astype(np.int32)


def test_tbptt_equivalence(arch_model, rng):
    """Two consecutive chunks with the state carried == one pass over the doubled cutlen."""
    m, bf = arch_model, arch_model.cfg.big_frame
    cutlen = 2 * bf if bf > 8 else 64
    x = levels(m, rng, (3, 2 * cutlen + bf))
    states = m.zero_states(3)
    mix = mix_for(m, 3)
    whole, s_whole = m.forward(x, states, 1.0, mix)
    first, s = m.forward(x[:, :cutlen + bf], states, 1.0, mix)
    second, s = m.forward(x[:, cutlen:], s, 0.0, mix)
    assert whole.shape == (3, 2 * cutlen, m.cfg.q_levels)
    np.testing.assert_allclose(np.concatenate([first, second], axis=1), whole, atol=1e-5)
    assert len(s) == len(s_whole) == len(m.state_sizes())
    for a, b in zip(s, s_whole):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_tbptt_equivalence_through_compiled_eval_step(model, rng):
    steps = Steps(model, xla=True)
    x = rng.integers(0, 256, (2, 2 * 32 + 8)).astype(np.int32)
    mask = np.ones((2, 2 * 32), np.float32)
    states = model.zero_states(2)
    whole = steps.eval_step(x, mask, tf.constant(1.0), states)[0]
    a, states, _ = steps.eval_step(x[:, :40], mask[:, :32], tf.constant(1.0), states)
    b = steps.eval_step(x[:, 32:], mask[:, 32:], tf.constant(0.0), states)[0]
    np.testing.assert_allclose((float(a) + float(b)) / 2, float(whole), rtol=1e-5)


def test_future_samples_do_not_change_past_logits(arch_model, rng):
    m, bf = arch_model, arch_model.cfg.big_frame
    n = 4 * bf if bf > 8 else 64
    x = levels(m, rng, (1, n + bf))
    y = x.copy()
    cut = bf + n // 2 + 1  # change samples from here on (not on a frame boundary)
    y[0, cut:] = levels(m, rng, n + bf - cut)
    states, mix = m.zero_states(1), mix_for(m, 1)
    lx, _ = m.forward(x, states, 1.0, mix)
    ly, _ = m.forward(y, states, 1.0, mix)
    # logits for target j (x[bf + j]) may depend on samples before it only
    np.testing.assert_allclose(lx[:, :cut - bf + 1], ly[:, :cut - bf + 1], atol=1e-6)
    assert not np.allclose(lx[:, cut - bf + 1:], ly[:, cut - bf + 1:])


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
    wn = WNRNN(6)
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


def test_weight_norm_lstm_equals_keras_lstm_at_init(rng):
    wn = WNRNN(6, "lstm")
    wn.build((None, None, 4))
    assert wn.bx.numpy()[6:12].tolist() == [1.0] * 6  # the forget gate starts open
    wn.bx.assign(rng.normal(size=24).astype(np.float32))
    plain = keras.layers.LSTM(6, recurrent_activation="sigmoid", return_sequences=True, return_state=True)
    plain.build((None, None, 4))
    plain.set_weights([wn.vx.numpy(), wn.vh.numpy(), wn.bx.numpy()])  # bh is zero at init
    x = rng.normal(size=(2, 9, 4)).astype(np.float32)
    h, c = rng.normal(size=(2, 6)).astype(np.float32), rng.normal(size=(2, 6)).astype(np.float32)
    out, last = wn(x, np.concatenate([h, c], -1))
    ref, ref_h, ref_c = plain(x, initial_state=[h, c])
    np.testing.assert_allclose(out, ref, atol=1e-5)
    np.testing.assert_allclose(last, np.concatenate([ref_h, ref_c], -1), atol=1e-5)


def test_learned_initial_state_used_on_reset_only(arch_model, rng):
    m = arch_model
    x = levels(m, rng, (2, 2 * m.cfg.big_frame))
    states, mix = random_states(m, 2, rng), mix_for(m, 2)
    reset_out, _ = m.forward(x, states, 1.0, mix)
    from_h0, _ = m.forward(x, m.initial_states(2), 0.0, mix)
    np.testing.assert_allclose(reset_out, from_h0, atol=1e-6)  # reset == starting from h0
    carried, _ = m.forward(x, states, 0.0, mix)
    saved = [rnn.h0.numpy() for tier in m.frame_tiers for rnn in tier.rnns]
    try:
        for tier in m.frame_tiers:
            for rnn in tier.rnns:
                rnn.h0.assign(rnn.h0 * 0 + 5.0)
        carried_again, _ = m.forward(x, states, 0.0, mix)
    finally:
        for rnn, value in zip((r for tier in m.frame_tiers for r in tier.rnns), saved):
            rnn.h0.assign(value)
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
    m.sample_tier.out.g.assign(m.sample_tier.out.g * 300.0)  # huge logits -> huge gradients
    steps = Steps(m, xla=False)
    x = rng.integers(0, 256, (2, 64 + 8)).astype(np.int32)
    mask = np.ones((2, 64), np.float32)
    states = m.zero_states(2)
    with tf.GradientTape() as tape:
        logits, _ = m.forward(x, states, 1.0)
        loss = loss_bits(logits, x[:, 8:], mask)
    raw = tape.gradient(loss, m.trainable_variables)
    assert max(float(tf.reduce_max(tf.abs(g))) for g in raw) > 1.0  # the test can fail
    _, clipped, _ = steps.gradients(x, mask, tf.constant(1.0), states)
    assert max(float(tf.reduce_max(tf.abs(g))) for g in clipped) <= 1.0
    for g_raw, g_clip in zip(raw, clipped):
        np.testing.assert_allclose(np.clip(g_raw, -1, 1), g_clip, atol=1e-6)


def test_a_training_step_lowers_the_loss_on_a_fixed_chunk(rng):
    keras.utils.set_random_seed(11)
    m = SampleRNN(SMALL)
    steps = Steps(m)
    x = np.tile(np.arange(100, 164, dtype=np.int32), (2, 2))[:, :64 + 8]  # a simple repeating ramp
    mask = np.ones((2, 64), np.float32)
    states = m.zero_states(2)
    first = float(steps.eval_step(x, mask, tf.constant(1.0), states)[0])
    for _ in range(30):
        steps.train_step(x, mask, tf.constant(1.0), states)
    assert float(steps.eval_step(x, mask, tf.constant(1.0), states)[0]) < first - 1.0


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_hand_written_rnn_gradient_equals_autodiff(cell, rng):
    """The cell's sequence function (custom gradient) == autodiff through a plain loop of steps."""
    from srnn.cells import CELLS

    c = CELLS[cell]
    B, T, U = 3, 7, 5
    xp = tf.constant(rng.normal(size=(B, T, c.gates * U)), tf.float32)
    h = tf.constant(rng.normal(size=(B, c.states * U)), tf.float32)
    wh = tf.constant(rng.normal(size=(U, c.gates * U)) * 0.5, tf.float32)
    bh = tf.constant(rng.normal(size=c.gates * U), tf.float32)
    w_out = tf.constant(rng.normal(size=(B, T, U)), tf.float32)  # a loss that weighs every output
    w_last = tf.constant(rng.normal(size=(B, c.states * U)), tf.float32)  # ... and the carried state

    def loss(outs, last):
        return tf.reduce_sum(outs * w_out) + tf.reduce_sum(tf.sin(last) * w_last)

    with tf.GradientTape() as tape:
        tape.watch([xp, h, wh, bh])
        outs, last = c.sequence(xp, h, wh, bh)
        ours = tape.gradient(loss(outs, last), [xp, h, wh, bh])
    with tf.GradientTape() as tape:
        tape.watch([xp, h, wh, bh])
        hh, seq = h, []
        for t in range(T):
            hh = c.step(xp[:, t], hh, wh, bh)
            seq.append(hh[:, :U])
        ref = tape.gradient(loss(tf.stack(seq, 1), hh), [xp, h, wh, bh])
    np.testing.assert_allclose(outs, tf.stack(seq, 1), atol=1e-6)
    np.testing.assert_allclose(last, hh, atol=1e-6)
    for a, b in zip(ours, ref):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
