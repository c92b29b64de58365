"""Shared by the bench scripts: machine description, load check, the matmul yardstick."""
import os
import platform
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import psutil  # noqa: E402

import numpy as np  # noqa: E402

from srnn.engine import module  # noqa: E402

E = module()  # the backend: KERAS_BACKEND (TensorFlow by default); every figure is this backend's
import keras  # noqa: E402
from keras import ops  # noqa: E402

REAL_TIME = 16000  # samples per second of 16 kHz audio

# the architectures the bench scripts compare, as training flags (the model's width comes apart)
ARCHITECTURES = {
    "original": "--frames 8,2 --rnn gru --rnn-layers 1",
    "music": "--frames 16,4 --rnn lstm --rnn-layers 3 --skip",
    "2-tier": "--frames 16 --rnn gru --rnn-layers 1",
}


def model_config(arch, dim):
    """The ModelConfig of one of ARCHITECTURES with --slowdim and --dim `dim`."""
    from srnn.cli import train_parser
    from srnn.commands import model_config as from_flags
    from srnn.config import ModelConfig

    args = train_parser().parse_args(ARCHITECTURES[arch].split() + [f"--dim={dim}", f"--slowdim={dim}"])
    return from_flags(args, ModelConfig())


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def describe_machine():
    from srnn.precision import cpu_flags

    have = cpu_flags()
    flags = " AVX-512" if "avx512f" in have else (" AVX2" if "avx2" in have else "")
    print(f"machine: {os.cpu_count()} cores, {cpu_model()}{flags}, "
          f"{psutil.virtual_memory().total / 2**30:.0f} GiB; Keras {keras.__version__} on {E.NAME} "
          f"{sys.modules[E.NAME].__version__}")
    busy = psutil.cpu_percent(interval=1.0)
    if busy > 15:
        print(f"WARNING: the machine is busy ({busy:.0f}% CPU used by others): figures will be low")


def matmul_gflops(m=16, k=1024, n=3072, seconds=2.0, dtype="float32"):
    """(m x k) @ (k x n) rate in GFLOP/s in `dtype`: the yardstick for the model's big matmuls."""
    rng = np.random.default_rng(0)
    a = ops.cast(rng.normal(size=(m, k)).astype(np.float32), dtype)
    b = ops.cast(rng.normal(size=(k, n)).astype(np.float32), dtype)
    f = E.function(ops.matmul, xla=False)
    np.asarray(f(a, b))
    batch = 10 if m > 1024 else 50  # calls between reads of the clock: fewer for the big product
    reps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for _ in range(batch):
            out = f(a, b)
        np.asarray(out)
        reps += batch
    return 2 * m * k * n * reps / (time.perf_counter() - t0) / 1e9


def yardsticks():
    """Print the float32 and bfloat16 matmul rates: a step's shape (16 rows) and a training GEMM's
    (8192 rows), so any machine shows what 16-bit arithmetic can gain on it at most."""
    from srnn.precision import cpu_has_bf16

    for m in (16, 8192):
        f32, bf16 = matmul_gflops(m=m), matmul_gflops(m=m, dtype="bfloat16")
        print(f"matmul ({m}x1024)@(1024x3072): float32 {f32:.1f} GFLOP/s, bfloat16 {bf16:.1f} GFLOP/s "
              f"({bf16 / f32:.2f}x)")
    print(f"CPU BF16 instructions (avx512_bf16 / amx_bf16): {'yes' if cpu_has_bf16() else 'no'}")


def peak_rss_mb():
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def sparse_model(arch, dim, density, block=None, seed=0):
    """A model of `arch` at `dim` whose pruned matrices (srnn.sparse) keep `density` of their
    blocks at random (balanced): the speed of a pruned model, whatever it learnt. Density 1: the
    dense model (no masks)."""
    import dataclasses

    from srnn import sparse
    from srnn.model import SampleRNN

    cfg = model_config(arch, dim)
    if density >= 1:
        return SampleRNN(cfg)
    block = block or sparse.DEFAULT_BLOCK
    model = SampleRNN(dataclasses.replace(cfg, sparse_block=block))
    rng = np.random.default_rng(seed)
    for v, _, mask in model.pruned_kernels().values():
        m = sparse.random_mask(tuple(v.shape), density, block, rng)
        mask.assign(m)
        v.assign(v.numpy() * m)
    return model
