"""The JAX engine (run by tests/test_backends.py in a process with KERAS_BACKEND=jax; the main
suite runs on TensorFlow and does not collect this folder). SRNN_REFERENCE names a folder that the
TensorFlow side filled: checkpoints of small models, a chunk, and TensorFlow's losses on it; this
side writes its own trained checkpoint and losses there for the TensorFlow side to check."""
import json
import os
import re

import numpy as np
import pytest

import keras
from keras import ops

from srnn import checkpoint
from srnn.config import ModelConfig
from srnn.engine import module
from srnn.generation import generate_levels, level_chunks, plain_request
from srnn.model import SampleRNN
from srnn.training import Steps

E = module()
REF = os.environ.get("SRNN_REFERENCE", "")


def test_the_backend_is_jax():
    assert E.NAME == "jax" and keras.backend.backend() == "jax"


def reference():
    with open(os.path.join(REF, "reference.json")) as f:
        return json.load(f)


def chunk(name):
    data = np.load(os.path.join(REF, f"{name}.npz"))
    return data["x"], data["mask"], data["mix"]


@pytest.mark.parametrize("name", ["default", "lstm3-skip", "4-tier", "labels"])
def test_chunk_loss_equals_tensorflows(name):
    """The same weights (a TensorFlow checkpoint) and chunk: the loss in bits within 1e-4."""
    ckpt = checkpoint.load(os.path.join(REF, f"{name}.h5"))
    model = SampleRNN(ckpt.config)
    checkpoint.apply_weights(ckpt, model)
    x, mask, mix = chunk(name)
    steps = Steps(model)
    loss, _, _ = steps.eval_step(x, mask, E.scalar(1.0), steps.zero_states(len(x)), mix)
    assert abs(float(loss) - reference()[name]) < 1e-4, (float(loss), reference()[name])


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_hand_written_backward_equals_autodiff(cell):
    import jax

    from srnn import cells

    rng = np.random.default_rng(3)
    units, gates, states = 8, *{"gru": (3, 1), "lstm": (4, 2)}[cell]
    xp = rng.normal(size=(2, 5, gates * units)).astype(np.float32)
    s0 = rng.normal(size=(2, states * units)).astype(np.float32) * 0.5
    wh = rng.normal(size=(units, gates * units)).astype(np.float32) * 0.3
    bh = rng.normal(size=(gates * units,)).astype(np.float32) * 0.1
    parts = {"gru": cells._gru_parts, "lstm": cells._lstm_parts}[cell]
    w_out = rng.normal(size=(2, 5, units)).astype(np.float32)
    w_last = rng.normal(size=(2, states * units)).astype(np.float32)

    def by_hand(*args):
        outs, last = cells.CELLS[cell].sequence(*args)
        return ops.sum(outs * w_out) + ops.sum(last * w_last)

    def by_autodiff(xp, s0, wh, bh):
        ss = E.scan(lambda carry, xt: parts(xt, carry[0], wh, bh)[:1], ops.transpose(xp, [1, 0, 2]), (s0,))[0]
        outs = ops.transpose(ss[..., :units], [1, 0, 2])
        return ops.sum(outs * w_out) + ops.sum(ss[-1] * w_last)

    # (compiled: eagerly, each operation of the two would be compiled on its own, which takes longer)
    want = jax.jit(jax.grad(by_autodiff, argnums=(0, 1, 2, 3)))(xp, s0, wh, bh)
    got = jax.jit(jax.grad(by_hand, argnums=(0, 1, 2, 3)))(xp, s0, wh, bh)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5)


def teacher_forced_logp(model, levels, temps, mix=None):
    import jax

    c = model.cfg
    x = np.concatenate([np.full((len(levels), c.big_frame), c.q_levels // 2, np.int32), levels], axis=1)
    # the training graph's forward pass, compiled as training compiles it (run eagerly, each of its
    # operations would be compiled on its own, which took longer than the whole)
    forward = jax.jit(lambda x, mix: model.forward(x, model.zero_states(len(x)), 1.0, mix))
    logits, _ = forward(x, mix)
    logp = np.asarray(ops.log_softmax(logits / np.asarray(temps, np.float32).reshape(-1, 1, 1)))
    return np.take_along_axis(logp, levels[..., None], -1)[..., 0]


@pytest.mark.parametrize("name", ["default", "lstm3-skip", "labels"])
def test_step_form_equals_chunk_form_and_a_seed_gives_the_same_audio(name):
    ckpt = checkpoint.load(os.path.join(REF, f"{name}.h5"))
    model = SampleRNN(ckpt.config)
    checkpoint.apply_weights(ckpt, model)
    mix = chunk(name)[2] if ckpt.config.labels else None
    n = 4 * ckpt.config.big_frame
    levels, logp = generate_levels(model.sampler(), 2, n, temperature=[1.0, 0.8], seed=5, mix=mix)
    assert levels.shape == (2, n) and len(np.unique(levels)) > 3
    np.testing.assert_allclose(logp, teacher_forced_logp(model, levels, [1.0, 0.8], mix), atol=1e-4)
    again, _ = generate_levels(model.sampler(), 2, n, temperature=[1.0, 0.8], seed=5, mix=mix)
    other, _ = generate_levels(model.sampler(), 2, n, temperature=[1.0, 0.8], seed=6, mix=mix)
    np.testing.assert_array_equal(levels, again)
    assert not np.array_equal(levels, other)
    # in chunks: the same draws
    req = plain_request(ckpt.config, 2, n, [1.0, 0.8], 5, mix=mix)
    pieces = list(level_chunks(model.sampler(), req, chunk=2 * ckpt.config.big_frame + 3))
    np.testing.assert_array_equal(np.concatenate([p[0] for p in pieces], 1), levels)


def train_steps(model, steps, x, mask, n, states=None):
    """n steps on the chunk, from its start (learned initial states) or from carried `states`."""
    first = states is None
    states = steps.zero_states(len(x)) if first else states
    losses = []
    for i in range(n):
        loss, states = steps.train_step(x, mask, E.scalar(first and i == 0), states, None)
        losses.append(float(loss))
    return losses, states


def test_training_lowers_the_loss_resumes_exactly_and_crosses_to_tensorflow(tmp_path):
    """Four steps in one go == two, a checkpoint, two more from it (weights, Adam's state); the
    trained checkpoint is left for the TensorFlow side, with this side's loss on the chunk."""
    ckpt = checkpoint.load(os.path.join(REF, "default.h5"))
    x, mask, _ = chunk("default")
    keras.utils.set_random_seed(1)
    whole = SampleRNN(ckpt.config)
    checkpoint.apply_weights(ckpt, whole)
    steps = Steps(whole)
    losses, _ = train_steps(whole, steps, x, mask, 4)
    assert losses[-1] < losses[0]
    steps.sync()

    first = SampleRNN(ckpt.config)
    checkpoint.apply_weights(ckpt, first)
    s1 = Steps(first)
    head, states = train_steps(first, s1, x, mask, 2)
    s1.sync()
    path = str(tmp_path / "half.h5")
    checkpoint.save(path, first, s1.optimizer, {"epoch": 0})
    second = SampleRNN(ckpt.config)
    half = checkpoint.load(path)
    checkpoint.apply_weights(half, second)
    s2 = Steps(second)
    assert checkpoint.apply_optimizer(half, s2.optimizer)
    tail, _ = train_steps(second, s2, x, mask, 2, states)
    np.testing.assert_allclose(head + tail, losses, rtol=1e-6)
    s2.sync()
    for (_, a), (_, b) in zip(whole.named_weights(), second.named_weights()):
        np.testing.assert_allclose(np.asarray(a.value), np.asarray(b.value), rtol=1e-5, atol=1e-7)
    # for the TensorFlow side: the trained model and its loss on the chunk, here
    checkpoint.save(os.path.join(REF, "jax_trained.h5"), whole, steps.optimizer, {"epoch": 0})
    loss, _, _ = Steps(whole).eval_step(x, mask, E.scalar(1.0), steps.zero_states(len(x)), None)
    with open(os.path.join(REF, "jax_loss.json"), "w") as f:
        json.dump(float(loss), f)


def test_mixed_bfloat16_trains_close_to_float32():
    ckpt = checkpoint.load(os.path.join(REF, "default.h5"))
    x, mask, _ = chunk("default")
    got = {}
    for precision in ("float32", "mixed_bfloat16"):
        model = SampleRNN(ckpt.config, precision=precision)
        checkpoint.apply_weights(ckpt, model)
        got[precision], _ = train_steps(model, Steps(model), x, mask, 3)
    assert np.max(np.abs(np.subtract(got["float32"], got["mixed_bfloat16"]))) < 0.05, got


def test_mixed_float16_is_tensorflows():
    from srnn.errors import SrnnError

    config = checkpoint.load(os.path.join(REF, "default.h5")).config  # (a model of shapes built before)
    with pytest.raises(SrnnError, match="mixed_float16 needs the TensorFlow backend"):
        Steps(SampleRNN(config, precision="mixed_float16"))


@pytest.mark.parametrize("precision", ["bfloat16", "int8"])
def test_packed_step_weights_sample(precision):
    ckpt = checkpoint.load(os.path.join(REF, "default.h5"))
    model = SampleRNN(ckpt.config)
    checkpoint.apply_weights(ckpt, model)
    levels, logp = generate_levels(model.sampler(precision=precision), 2, 40, seed=1)
    assert levels.shape == (2, 40) and np.all(np.isfinite(logp))


def test_data_parallel_on_two_devices_equals_one_device():
    """--distribute mirrored on JAX: keras.distribution.DataParallel over two CPU devices (the
    test's XLA_FLAGS) takes the same steps, and evaluates a batch that does not split, as one device."""
    import jax

    assert len(jax.devices()) == 2
    ckpt = checkpoint.load(os.path.join(REF, "default.h5"))
    x, mask, _ = chunk("default")
    runs = []
    for parallel in (False, True):
        if parallel:
            assert E.data_parallel() == 2
        try:
            model = SampleRNN(ckpt.config)
            checkpoint.apply_weights(ckpt, model)
            steps = Steps(model)
            losses, _ = train_steps(model, steps, x, mask, 3)
            steps.sync()
            # one row does not split over two devices: evaluation (the test split's last batch) takes it whole
            odd = float(steps.eval_step(x[:1], mask[:1], E.scalar(1.0), steps.zero_states(1), None)[0])
            runs.append((losses + [odd], [np.asarray(w.value) for _, w in model.named_weights()]))
            if parallel:  # the weights live on both devices
                assert len(model.named_weights()[0][1].value.sharding.device_set) == 2
                with pytest.raises(Exception, match="does not split over 2 devices"):
                    steps.train_step(x[:1], mask[:1], E.scalar(1.0), steps.zero_states(1), None)
        finally:
            keras.distribution.set_distribution(None)
    (one, w_one), (two, w_two) = runs
    np.testing.assert_allclose(two, one, rtol=1e-5)
    for a, b in zip(w_one, w_two):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("parallel", [True], ids=["data-parallel"])
def test_pruned_weights_stay_zero_through_jax_steps(parallel):
    """The pruner between JAX's jitted steps (sync, masks and moments set, the steps re-read):
    pruned weights are zero in the variables after every step, also under DataParallel."""
    from srnn import sparse
    from srnn.prune import Pruner

    x, mask, _ = chunk("default")
    cfg = ModelConfig(slowdim=16, dim=16, sparse_block=(16, 1))
    if parallel:
        E.data_parallel()
    try:
        model = SampleRNN(cfg)
        steps = Steps(model)
        pruner = Pruner(model, steps, sparse.Schedule(0.75, 1, 3), cfg.sparse_block)
        states = steps.zero_states(len(x))
        for i in range(5):
            pruner.before_step()
            loss, states = steps.train_step(x, mask, E.scalar(float(i == 0)), states, None)
            steps.sync()
            for name, (v, _, m) in model.pruned_kernels().items():
                assert not np.any(np.asarray(v.value)[np.asarray(m.value) == 0]), (i, name)
        assert np.isfinite(float(loss)) and pruner.reached() == pytest.approx(0.75)
    finally:
        keras.distribution.set_distribution(None)


def test_sparse_sampler_equals_dense_sampler_on_jax():
    from srnn.prune import prune_to

    model = SampleRNN(ModelConfig(slowdim=16, dim=16, sparse_block=(16, 1)))
    prune_to(model, 0.9, (16, 1))
    a, _ = generate_levels(model.sampler(), 2, 96, seed=3)
    b, _ = generate_levels(model.sampler(layout="dense"), 2, 96, seed=3)
    assert len(model.sampler().weight_precision(2).sparse) == 8
    assert np.mean(a == b) > 0.99  # the same levels but for rare float ties: the NLL follows


def test_the_coordinator_listens_where_the_meeting_did(monkeypatch):
    """JAX's coordinator binds the interface process 0's address names (its default: every one)."""
    import jax

    from srnn import cluster
    from srnn.errors import SrnnError

    seen = {}

    def initialize(**kwargs):
        seen.update(kwargs)
        raise RuntimeError("not started here")
    monkeypatch.setattr(jax.config, "update", lambda *args: None)
    monkeypatch.setattr(jax.distributed, "initialize", initialize)
    for host, address in (("10.0.0.1", "10.0.0.1:1234"), ("::", "[::]:1234")):
        with pytest.raises(SrnnError, match=re.escape(f"did not start at {address} (not started here)")):
            E.start_cluster(cluster.Cluster(host, 1234, 2, 0), 5)
        assert seen["coordinator_bind_address"] == seen["coordinator_address"] == address
