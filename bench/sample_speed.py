"""Sampling speed: generated samples per second, per stream and in aggregate.

    python bench/sample_speed.py            # the configurations of the speed issue
    python bench/sample_speed.py --quick    # shorter runs

The compiled loop is traced and compiled once per length; the figures are for a second call of
the same length (steady state), and the first call's time is shown apart.
"""
import argparse
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from common import REAL_TIME, describe_machine, matmul_gflops  # noqa: E402

from srnn.config import ModelConfig  # noqa: E402
from srnn.model import SampleRNN  # noqa: E402
from srnn.sample import Sampler  # noqa: E402

CONFIGS = [  # (dim, streams)
    (32, 1),
    (32, 16),
    (1024, 1),
    (1024, 16),
]


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--quick", action="store_true")
    args = p.parse_args()
    describe_machine()
    print(f"float32 matmul (16x1024)@(1024x3072): {matmul_gflops():.1f} GFLOP/s")
    print(f"{'dim':>5} {'streams':>7} {'xla':>5} {'samples':>8} {'first call':>10} {'per stream/s':>13} "
          f"{'aggregate/s':>12} {'x real time':>12}")
    times = {}
    for dim, streams in CONFIGS:
        n = (8000 if dim <= 256 else 2000) // (2 if args.quick else 1)
        sampler = Sampler(SampleRNN(ModelConfig(slowdim=dim, dim=dim)))
        t0 = time.perf_counter()
        sampler.generate(streams, n, seed=0)
        first = time.perf_counter() - t0
        t0 = time.perf_counter()
        sampler.generate(streams, n, seed=1)
        took = time.perf_counter() - t0
        times[(dim, streams)] = took
        per = n / took
        print(f"{dim:>5} {streams:>7} {str(sampler.xla):>5} {n:>8} {first:>9.1f}s {per:>13,.0f} "
              f"{per * streams:>12,.0f} {per * streams / REAL_TIME:>12.2f}", flush=True)
    if (32, 1) in times and (32, 16) in times:
        print(f"16 streams vs 1 stream at dim 32: {times[(32, 16)] / times[(32, 1)]:.2f}x the time")


if __name__ == "__main__":
    main()
