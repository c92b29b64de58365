"""Sampling speed: generated samples per second, per stream and in aggregate.

    python bench/sample_speed.py            # the original's model at two sizes, and other architectures
    python bench/sample_speed.py --quick    # shorter runs
    python bench/sample_speed.py --only original   # rows whose name starts with this

The compiled loop is traced and compiled once per length; the figures are for a second call of
the same length (steady state), and the first call's time is shown apart.
"""
import argparse
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from common import ARCHITECTURES, REAL_TIME, describe_machine, matmul_gflops, model_config  # noqa: E402

from srnn.model import SampleRNN  # noqa: E402

CONFIGS = [  # (architecture, dim, streams)
    ("original", 32, 1),
    ("original", 32, 16),
    ("original", 1024, 1),
    ("original", 1024, 16),
    ("music", 256, 1),
    ("music", 1024, 1),
    ("music", 1024, 16),
    ("2-tier", 256, 1),
]


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--only", default="", help="run only the rows whose architecture starts with this")
    args = p.parse_args()
    describe_machine()
    print(f"float32 matmul (16x1024)@(1024x3072): {matmul_gflops():.1f} GFLOP/s")
    print("architectures: " + "; ".join(f"{k}: {v}" for k, v in ARCHITECTURES.items()))
    print(f"{'architecture':>12} {'dim':>5} {'streams':>7} {'samples':>8} {'first call':>10} {'per stream/s':>13} "
          f"{'aggregate/s':>12} {'x real time':>12}")
    times = {}
    for arch, dim, streams in CONFIGS:
        if not arch.startswith(args.only):
            continue
        n = (8000 if dim <= 256 else 2000) // (2 if args.quick else 1)
        model = SampleRNN(model_config(arch, dim))
        t0 = time.perf_counter()
        model.generate(streams, n, seed=0)
        first = time.perf_counter() - t0
        t0 = time.perf_counter()
        model.generate(streams, n, seed=1)
        took = time.perf_counter() - t0
        times[(arch, dim, streams)] = took
        per = n / took
        print(f"{arch:>12} {dim:>5} {streams:>7} {n:>8} {first:>9.1f}s {per:>13,.0f} "
              f"{per * streams:>12,.0f} {per * streams / REAL_TIME:>12.2f}", flush=True)
    one, sixteen = times.get(("original", 32, 1)), times.get(("original", 32, 16))
    if one and sixteen:
        print(f"16 streams vs 1 stream at dim 32: {sixteen / one:.2f}x the time")


if __name__ == "__main__":
    main()
