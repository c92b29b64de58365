"""The model on every engine: the JAX engine's checks (tests/jax, in a process with
KERAS_BACKEND=jax) against TensorFlow's numbers, and checkpoints that cross both ways."""
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT, assert_clean_error, mix_for, run_tool, small_archs
from srnn import checkpoint
from srnn.model import SampleRNN
from srnn.training import Steps

ARCHS = {"default": "default", "lstm3-skip": "lstm3-skip", "4-tier": "4-tier", "labels": "emb32-q64-labels"}


def reference_folder(folder):
    """Checkpoints of small models (non-trivial initial states and label vectors), a chunk for
    each, and TensorFlow's loss on it."""
    import keras

    losses = {}
    for name, arch in ARCHS.items():
        keras.utils.set_random_seed(8)
        model = SampleRNN(small_archs()[arch])
        rng = np.random.default_rng(2)
        for tier in model.frame_tiers:
            for rnn in tier.rnns:
                rnn.h0.assign(rng.normal(size=rnn.h0.shape).astype(np.float32) * 0.5)
        for tier in model.tiers:
            if tier.label is not None:
                tier.label.table.assign(rng.normal(size=tier.label.table.shape).astype(np.float32))
        checkpoint.save(str(folder / f"{name}.h5"), model)
        c = model.cfg
        cutlen = 2 * c.big_frame if c.big_frame > 8 else 64
        x = rng.integers(0, c.q_levels, (2, cutlen + c.big_frame)).astype(np.int32)
        mask = np.ones((2, cutlen), np.float32)
        mix = mix_for(model, 2) if c.n_labels else np.zeros((2, 0), np.float32)
        np.savez(folder / f"{name}.npz", x=x, mask=mask, mix=mix)
        steps = Steps(model, xla=False, evaluate_only=True)
        losses[name] = float(steps.eval_step(x, mask, 1.0, steps.zero_states(2), mix)[0])
    (folder / "reference.json").write_text(json.dumps(losses))


def run_jax_tests(tmp_path, *files):
    """pytest on `files` of tests/jax in a process with KERAS_BACKEND=jax, where TensorFlow cannot
    be imported; SRNN_REFERENCE names the folder the two sides share. The tests run in two such
    processes (the engine's checks; the command line and the cluster), so that the two workers of
    the suite share them."""
    # (not a pytest-xdist worker, though started by one: its conftest.built_once folders are its own,
    # not ones shared with other runs under the temporary folders' root)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_XDIST")}
    env.update({
        "KERAS_BACKEND": "jax", "SRNN_REFERENCE": str(tmp_path), "PYTHONPATH": ROOT,
        # two CPU devices (DataParallel); and XLA's LLVM backend at its lowest optimization level:
        # these programs compute little, so compiling them is most of their time (a quarter less
        # so), and the same programs run, to float rounding
        "XLA_FLAGS": "--xla_force_host_platform_device_count=2 --xla_backend_optimization_level=0",
        "SRNN_HIDE_TENSORFLOW": "1",  # as on a GPU machine with JAX alone (conftest.hide_tensorflow)
        # JAX's own compilation cache, empty at the start: a program compiled again (the same
        # model in a new Steps, a resumed run) is read back instead, as JAX caches it for users
        # who turn it on; the programs themselves are the same
        "JAX_COMPILATION_CACHE_DIR": str(tmp_path / "jax-cache"),
    })
    # (Keras' Variable.numpy() warns of NumPy 2's copy keyword on JAX: not ours to fix)
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-n", "0", "-p", "no:cacheprovider",
                           "-W", "ignore::DeprecationWarning", *(os.path.join(ROOT, "tests", "jax", f) for f in files)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    assert re.fullmatch(r"\d+ passed in .*", proc.stdout.strip().splitlines()[-1]), proc.stdout[-2000:]


@pytest.mark.slow  # a JAX process
def test_jax_engine_and_checkpoints_across(tmp_path):
    reference_folder(tmp_path)
    run_jax_tests(tmp_path, "test_engine.py")
    # the other way: a checkpoint trained on JAX computes the same loss here, and samples
    ckpt = checkpoint.load(str(tmp_path / "jax_trained.h5"))
    model = SampleRNN(ckpt.config)
    checkpoint.apply_weights(ckpt, model)
    data = np.load(tmp_path / "default.npz")
    steps = Steps(model, xla=False, evaluate_only=True)
    loss = float(steps.eval_step(data["x"], data["mask"], 1.0, steps.zero_states(2), data["mix"])[0])
    assert abs(loss - json.loads((tmp_path / "jax_loss.json").read_text())) < 1e-4
    from srnn.generation import generate_levels

    levels, logp = generate_levels(model.sampler(), 2, 40, seed=1)
    assert levels.shape == (2, 40) and np.all(np.isfinite(logp))


@pytest.mark.slow  # a JAX process, and two more for the cluster
def test_jax_command_line_and_cluster(tmp_path):
    run_jax_tests(tmp_path, "test_tool.py", "test_cluster.py")


def test_what_only_tensorflow_does_is_one_line_on_another_backend(tmp_path):
    """Before anything loads: --export and mixed_float16 need TensorFlow, --distribute multiworker
    on JAX Keras' cluster variables; an unknown backend is named."""
    jax = {"KERAS_BACKEND": "jax"}
    assert_clean_error(run_tool("train_srnn.py", "--sample", "x.h5", "--export", "out", cwd=tmp_path, env=jax),
                       "--export needs the TensorFlow backend", "KERAS_BACKEND=tensorflow")
    assert_clean_error(run_tool("train_srnn.py", "--exp", "x", "--distribute", "multiworker", cwd=tmp_path, env=jax),
                       "--distribute multiworker on JAX needs KERAS_DISTRIBUTION_JOB_ADDRESSES")  # (srnn.cluster)
    assert_clean_error(run_tool("train_srnn.py", "--exp", "x", "--precision", "mixed_float16", cwd=tmp_path, env=jax),
                       "mixed_float16 needs the TensorFlow backend", "on jax use mixed_bfloat16")
    assert_clean_error(run_tool("train_srnn.py", "--exp", "x", cwd=tmp_path, env={"KERAS_BACKEND": "torch"}),
                       "the Keras backend is torch", "tensorflow or jax")


@pytest.mark.slow  # the shared training run
def test_the_log_names_the_engine_and_what_it_computes_on(base_run):
    from srnn.engine import module
    from srnn.engine.common import describe_processors

    assert [line for line in base_run[2] if line.startswith("engine: ")] == [
        f"engine: tensorflow on {module().processors()}"]
    assert describe_processors(["CPU"]) == "CPU"
    assert describe_processors(["NVIDIA H200"] * 8) == "8 x NVIDIA H200"
    assert describe_processors(["A", "B", "A"]) == "2 x A, B"
