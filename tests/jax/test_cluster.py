"""--distribute multiworker on JAX: two processes on this machine (CPU, gloo) train as one process
does with the same global batch, and only process 0 writes."""
import os
import shutil
import socket
import subprocess
import sys

import numpy as np

from conftest import ROOT, run_tool
from srnn import checkpoint

ARGV = ["--exp=mini", "--slowdim=16", "--dim=16", "--cutlen=512", "--batchsize=4", "--trainstop=4", "--validstop=8",
        "--nepochs=1"]
# `python train_srnn.py ARGV` where TensorFlow cannot be imported, as in this process: conftest hides
# it on import (SRNN_HIDE_TENSORFLOW), as on a GPU machine with JAX alone; Keras' seeding would
# otherwise import it in each process, for nothing
WITHOUT_TENSORFLOW = ("import runpy, sys; sys.path.insert(0, sys.argv.pop(1)); import conftest; sys.argv.pop(0); "
                      "runpy.run_path(sys.argv[0], run_name='__main__')")


def test_two_processes_train_as_one(mini_root, tmp_path):
    alone = tmp_path / "alone"
    shutil.copytree(mini_root / "blizzard", alone / "blizzard")
    proc = run_tool("train_srnn.py", *ARGV, cwd=alone)
    assert proc.returncode == 0, proc.stderr[-2000:]
    one = checkpoint.load(str(alone / "mini_srnn_sz16_e0.h5"))

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    procs, folders = [], []
    for i in range(2):
        folders.append(tmp_path / f"p{i}")
        shutil.copytree(mini_root / "blizzard", folders[i] / "blizzard")
        env = {**os.environ, "KERAS_DISTRIBUTION_JOB_ADDRESSES": f"127.0.0.1:{port}",
               "KERAS_DISTRIBUTION_NUM_PROCESSES": "2", "KERAS_DISTRIBUTION_PROCESS_ID": str(i)}
        # (the two compile the same programs at the same moment: no compilation cache that both would write)
        env.pop("JAX_COMPILATION_CACHE_DIR", None)
        procs.append(subprocess.Popen([sys.executable, "-c", WITHOUT_TENSORFLOW, os.path.join(ROOT, "tests"),
                                       os.path.join(ROOT, "train_srnn.py"), *ARGV,
                                       "--distribute=multiworker", "--cluster-timeout=120", "--audition=1",
                                       "--seconds=0.05"],
                                      cwd=folders[i], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True))
    try:
        outs = [p.communicate(timeout=400) for p in procs]
    finally:
        for p in procs:
            p.kill()
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, (out[-2000:], err[-2000:])
    assert "multiworker: 2 processes, 4 device(s) in all, 1 sequence(s) each" in outs[0][0]
    assert "Epoch 0 valid loss" in outs[0][0] and "Epoch 0" not in outs[1][0] and "Gloo" not in outs[0][0] + outs[1][0]
    two = checkpoint.load(str(folders[0] / "mini_srnn_sz16_e0.h5"))
    for key in ("train_bits", "valid_bits"):  # each process fed two of the four rows of every batch
        np.testing.assert_allclose(two.train[key], one.train[key], rtol=1e-5)
    for name, w in one.weights.items():
        np.testing.assert_allclose(two.weights[name], w, atol=1e-5)
    assert (folders[0] / "mini_samples" / "e0_0.wav").is_file()  # process 0's audition
    assert sorted(p.name for p in folders[1].iterdir()) == ["blizzard"]  # process 1 writes nothing
