"""tf.distribute: mirrored over two logical CPUs equals one device; a two-process multi-worker run on
loopback; memory that does not grow with the corpus."""
import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from conftest import ROOT, assert_clean_error

pytestmark = pytest.mark.slow  # each test runs the scripts or TensorFlow in new processes

MIRRORED = r"""
import json, os, sys
sys.path.insert(0, sys.argv[1])
from srnn.quiet import import_tensorflow
tf = import_tensorflow()
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras
import numpy as np
from srnn.batches import Feeder, read_prompts
from srnn.config import ModelConfig
from srnn.distribute import make_strategy
from srnn.errors import SrnnError
from srnn.labels import one_hot
from srnn.model import SampleRNN
from srnn.prune import Pruner
from srnn.sparse import Schedule
from srnn.engine.tensorflow import DistributedSteps
from srnn.training import Steps, run_pass

root = sys.argv[2]
# the original's tiny sizes, conditioned on two labels (so the label path is distributed too), pruned
# along a schedule between the steps (so the masks' updates are distributed too)
cfg = ModelConfig(slowdim=32, dim=32, labels=("a", "b"), sparse_block=(16, 1))
files = read_prompts(os.path.join(root, "mini_parts"))
feed = Feeder(files[:4], 2, 512, cfg, labels=["a", "b", "b", "a"])
valid = Feeder(files[4:8], 2, 512, cfg, labels=["a", "a", "b", "b"])
chunks = list(feed.chunks(feed.batches()))[:20]
strategy = make_strategy("mirrored", ["CPU:0", "CPU:1"])
keras.utils.set_random_seed(1)
one = Steps(SampleRNN(cfg), xla=False)
keras.utils.set_random_seed(1)
with strategy.scope():
    steps = DistributedSteps(SampleRNN(cfg), strategy)
result = {"step_losses": {}, "valid": {}, "sparsity": {}, "pruned_nonzero": 0}
for name, st in (("one", one), ("two", steps)):
    # training steps from the same weights on the same chunks, then a validation pass (the
    # evaluation step, with its per-label sums reduced over the replicas)
    result["step_losses"][name] = []
    pruner = Pruner(st.model, st, Schedule(0.5, 2, 6), cfg.sparse_block)
    for c in chunks:
        if c.reset:
            states = st.zero_states(2)
        pruner.before_step()
        loss, states = st.train_step(c.x, c.mask, tf.constant(float(c.reset)), states, c.mix)
        result["step_losses"][name].append(float(loss))
        result["pruned_nonzero"] += sum(int(np.count_nonzero(v.numpy()[m.numpy() == 0]))
                                        for v, _, m in st.model.pruned_kernels().values())
    result["sparsity"][name] = pruner.reached()
    vp = run_pass(st, valid, valid.batches(), False)
    result["valid"][name] = [vp.bits, vp.label_bits(cfg.labels)]
result["weight_diff"] = max(float(np.abs(a.numpy() - b.numpy()).max())
                            for (_, a), (_, b) in zip(one.model.named_weights(), steps.model.named_weights()))
# a batch that does not split over the replicas is a clear error
try:
    steps.zero_states(3)
except SrnnError as e:
    result["odd_batch"] = str(e)
print("RESULT " + json.dumps(result))
"""


def test_mirrored_on_two_devices_equals_one_device(mini_root, tmp_path):
    """Mirrored over two logical CPUs == one device: the same training steps give the same losses
    and weights, the same validation loss and per-label losses. (train() under a strategy runs in
    the multi-worker test below.)"""
    proc = subprocess.run([sys.executable, "-c", MIRRORED, ROOT, str(mini_root / "blizzard")],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.split("RESULT ", 1)[1])
    np.testing.assert_allclose(result["step_losses"]["one"], result["step_losses"]["two"], atol=1e-5)
    assert result["weight_diff"] < 1e-5
    # pruned on both alike, and the pruned weights stay zero after every step, mirrored or not
    assert result["sparsity"]["one"] == result["sparsity"]["two"] == 0.5 and result["pruned_nonzero"] == 0
    (one_bits, one_labels), (two_bits, two_labels) = result["valid"]["one"], result["valid"]["two"]
    assert abs(one_bits - two_bits) < 1e-5
    assert set(one_labels) == set(two_labels) == {"a", "b"} and one_labels["a"] != one_labels["b"]
    for label in one_labels:
        assert abs(one_labels[label] - two_labels[label]) < 1e-5
    # the per-label means weigh back to the overall mean (two parts each, of equal length)
    assert abs((one_labels["a"] + one_labels["b"]) / 2 - one_bits) < 1e-4
    assert "--batchsize 3 does not split over 2 replicas" in result["odd_batch"]


def free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def test_multiworker_two_processes_on_loopback(mini_root, tmp_path):
    import shutil

    cluster = {"worker": [f"127.0.0.1:{p}" for p in free_ports(2)]}
    procs, dirs = [], []
    for i in range(2):
        d = tmp_path / f"w{i}"
        shutil.copytree(mini_root, d)
        dirs.append(d)
        env = {**os.environ, "PYTHONUNBUFFERED": "1",
               "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})}
        procs.append(subprocess.Popen(
            [sys.executable, os.path.join(ROOT, "train_srnn.py"), "--exp=mini", "--dim=16", "--slowdim=16",
             "--cutlen=256", "--batchsize=2", "--trainstop=4", "--validstop=6", "--nepochs=1",
             "--distribute=multiworker"],
            cwd=d, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env))
    try:
        outs = [p.communicate(timeout=300) for p in procs]
    finally:
        for p in procs:
            p.kill()
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    chief_out, worker_out = outs[0][0], outs[1][0]
    assert "multiworker: 2 replica(s), 1 sequence(s) each" in chief_out
    assert "Epoch 0 valid loss in bits" in chief_out and "Epoch 0" not in worker_out  # one voice
    assert (dirs[0] / "mini_srnn_sz16_e0.h5").exists() and (dirs[0] / "costs.png").exists()
    assert not list(dirs[1].glob("*.h5")) and not (dirs[1] / "costs.png").exists()  # only the chief writes


def test_multiworker_without_tf_config_is_a_clear_error(mini_root, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "train_srnn.py"), "--exp=mini", "--dim=16",
                           "--slowdim=16", "--distribute=multiworker"],
                          cwd=mini_root, capture_output=True, text=True, env=env, timeout=120)
    assert_clean_error(proc, "TF_CONFIG")


MEMORY = r"""
import json, sys, tracemalloc
sys.path.insert(0, sys.argv[1])
from srnn.batches import Feeder, batch_chunks, read_prompts
from srnn.config import ModelConfig

parts_dir, peaks = sys.argv[2], {}
for n in (900, 9000):
    with open(parts_dir + "/prompts.txt", "w") as f:
        f.write("".join(f"p{i}.wav\tnone\n" for i in range(n)))
    feed = Feeder(read_prompts(parts_dir), batchsize=100, cutlen=256, cfg=ModelConfig())
    batches = feed.batches(seed=[0, 0])  # the corpus's index (~150 bytes a part) is made before
    tracemalloc.start()
    chunks = 0
    for _, seqs in feed.loaded(batches):  # reading with prefetch, as training does
        chunks += sum(1 for _ in batch_chunks(seqs, 256, 8, 256))
    peaks[n] = [tracemalloc.get_traced_memory()[1], chunks]
    tracemalloc.stop()
print(json.dumps(peaks))
"""


def test_memory_does_not_grow_with_the_corpus(tmp_path):
    """Peak memory while an epoch is read and cut into chunks, in a fresh interpreter."""
    d = tmp_path / "big_parts"
    d.mkdir()
    x = (np.sin(np.arange(1000) / 7) * 0.5).astype(np.float32)
    sf.write(str(d / "p0.wav"), x, 16000, subtype="PCM_16")
    for i in range(1, 9000):  # the same part under every name: hard links, written once (not 9000 times)
        os.link(d / "p0.wav", d / f"p{i}.wav")
    proc = subprocess.run([sys.executable, "-c", MEMORY, ROOT, str(d)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    peaks = json.loads(proc.stdout)
    (small, n_small), (large, n_large) = peaks["900"], peaks["9000"]
    assert (n_small, n_large) == (9 * 4, 90 * 4)  # 1000 samples -> 4 chunks of 256, 100 parts a batch
    print(f"peak memory while iterating an epoch: {small / 1e6:.2f} MB for 900 parts, {large / 1e6:.2f} MB for 9000")
    # the peak is the batches alive at one moment (the one training, the one being read ahead, and
    # quantisation's temporary copies), not the corpus: 10x the parts, not 10x the memory
    batch_bytes = 100 * 1000 * 4  # one batch of int32 levels
    corpus_bytes = 9000 * 1000 * 4
    assert large < 10 * batch_bytes < corpus_bytes / 5, (small, large)
    assert large < 2 * small, (small, large)
