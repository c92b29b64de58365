"""Training speed: steady-state target samples per second of the compiled TBPTT step.

    python bench/train_speed.py            # the three configurations of the speed issue
    python bench/train_speed.py --quick    # fewer steps

Each configuration runs in a fresh process, so its peak memory is its own.
"""
import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
CONFIGS = [  # (dim, batch, cutlen)
    (32, 2, 512),
    (256, 16, 512),
    (1024, 16, 512),
]


def measure(dim, batch, cutlen, seconds):
    sys.path.insert(0, HERE)
    from common import peak_rss_mb, tf  # noqa: F401

    import numpy as np

    from srnn.config import ModelConfig
    from srnn.model import SampleRNN
    from srnn.train import Steps, use_xla

    cfg = ModelConfig(slowdim=dim, dim=dim)
    model = SampleRNN(cfg)
    steps = Steps(model)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (batch, cutlen + 8)).astype(np.int32)
    mask = np.ones((batch, cutlen), np.float32)
    hs, hm = model.zero_states(batch)
    reset = tf.constant(0.0)
    for _ in range(3):  # compile and warm up
        loss, hs, hm = steps.train_step(x, mask, reset, hs, hm)
    float(loss)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds or n < 3:
        loss, hs, hm = steps.train_step(x, mask, reset, hs, hm)
        float(loss)  # the training loop reads every loss, so do we
        n += 1
    rate = n * batch * cutlen / (time.perf_counter() - t0)
    return {"dim": dim, "batch": batch, "cutlen": cutlen, "xla": use_xla(cfg),
            "samples_per_s": rate, "peak_rss_mb": peak_rss_mb()}


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--one", help=argparse.SUPPRESS)
    args = p.parse_args()
    seconds = 4.0 if args.quick else 10.0
    if args.one:
        print(json.dumps(measure(*map(int, args.one.split(",")), seconds)))
        return
    sys.path.insert(0, HERE)
    from common import REAL_TIME, describe_machine, matmul_gflops

    describe_machine()
    print(f"float32 matmul (16x1024)@(1024x3072): {matmul_gflops():.1f} GFLOP/s")
    print(f"{'dim':>5} {'batch':>5} {'cutlen':>6} {'xla':>5} {'target samples/s':>17} {'x real time':>12} {'peak RSS':>9}")
    for dim, batch, cutlen in CONFIGS:
        out = subprocess.run([sys.executable, __file__, "--one", f"{dim},{batch},{cutlen}"]
                             + (["--quick"] if args.quick else []), capture_output=True, text=True)
        if out.returncode:
            print(out.stderr[-2000:])
            continue
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"{dim:>5} {batch:>5} {cutlen:>6} {str(r['xla']):>5} {r['samples_per_s']:>17,.0f} "
              f"{r['samples_per_s'] / REAL_TIME:>12.2f} {r['peak_rss_mb']:>7.0f}MB", flush=True)


if __name__ == "__main__":
    main()
