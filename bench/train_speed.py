"""Training speed: steady-state target samples per second of the compiled TBPTT step.

    python bench/train_speed.py            # the original's model at three sizes, and other architectures
    python bench/train_speed.py --quick    # fewer steps
    python bench/train_speed.py --only original   # rows whose name starts with this

Each configuration runs in a fresh process, so its peak memory is its own.
"""
import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from common import ARCHITECTURES  # noqa: E402

CONFIGS = [  # (architecture, dim, batch, cutlen)
    ("original", 32, 2, 512),
    ("original", 256, 16, 512),
    ("original", 1024, 16, 512),
    ("music", 256, 16, 512),
    ("music", 1024, 16, 512),
    ("2-tier", 256, 16, 512),
]


def measure(arch, dim, batch, cutlen, seconds):
    from common import model_config, peak_rss_mb, tf  # noqa: F401

    import numpy as np

    from srnn.model import SampleRNN
    from srnn.train import Steps, use_xla

    cfg = model_config(arch, dim)
    model = SampleRNN(cfg)
    steps = Steps(model)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (batch, cutlen + cfg.big_frame)).astype(np.int32)
    mask = np.ones((batch, cutlen), np.float32)
    states = model.zero_states(batch)
    reset = tf.constant(0.0)
    for _ in range(3):  # compile and warm up
        loss, states = steps.train_step(x, mask, reset, states)
    float(loss)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds or n < 3:
        loss, states = steps.train_step(x, mask, reset, states)
        float(loss)  # the training loop reads every loss, so do we
        n += 1
    rate = n * batch * cutlen / (time.perf_counter() - t0)
    return {"xla": use_xla(cfg), "samples_per_s": rate, "peak_rss_mb": peak_rss_mb(),
            "params": model.count_params()}


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--only", default="", help="run only the rows whose architecture starts with this")
    p.add_argument("--one", help=argparse.SUPPRESS)
    args = p.parse_args()
    seconds = 4.0 if args.quick else 10.0
    if args.one:
        arch, dim, batch, cutlen = args.one.split(",")
        print(json.dumps(measure(arch, int(dim), int(batch), int(cutlen), seconds)))
        return
    from common import REAL_TIME, describe_machine, matmul_gflops

    describe_machine()
    print(f"float32 matmul (16x1024)@(1024x3072): {matmul_gflops():.1f} GFLOP/s")
    print("architectures: " + "; ".join(f"{k}: {v}" for k, v in ARCHITECTURES.items()))
    print(f"{'architecture':>12} {'dim':>5} {'params':>10} {'batch':>5} {'cutlen':>6} {'xla':>5} "
          f"{'target samples/s':>17} {'x real time':>12} {'peak RSS':>9}")
    for arch, dim, batch, cutlen in CONFIGS:
        if not arch.startswith(args.only):
            continue
        out = subprocess.run([sys.executable, __file__, "--one", f"{arch},{dim},{batch},{cutlen}"]
                             + (["--quick"] if args.quick else []), capture_output=True, text=True)
        if out.returncode:
            print(out.stderr[-2000:])
            continue
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"{arch:>12} {dim:>5} {r['params']:>10,} {batch:>5} {cutlen:>6} {str(r['xla']):>5} "
              f"{r['samples_per_s']:>17,.0f} {r['samples_per_s'] / REAL_TIME:>12.2f} {r['peak_rss_mb']:>7.0f}MB",
              flush=True)


if __name__ == "__main__":
    main()
