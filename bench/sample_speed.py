"""Sampling speed: generated samples per second, per stream and in aggregate.

    python bench/sample_speed.py            # the original's model at two sizes, and other architectures
    python bench/sample_speed.py --quick    # shorter runs
    python bench/sample_speed.py --only original   # rows whose name starts with this
    python bench/sample_speed.py --precision float32,int8   # the sampler's weight formats to compare
    python bench/sample_speed.py --sparse   # block-sparse rows: dim 1024 at density 1, 0.1, 0.05, 0.04

The compiled loop is traced and compiled once per length; the figures are for a second call of
the same length (steady state), and the first call's time is shown apart. Each configuration runs
with its step weights in each --precision (default float32, bfloat16, int8 and auto, which says
what it chose), side by side, with the ratio to float32. The backend is Keras' (KERAS_BACKEND=jax
python bench/sample_speed.py for the JAX engine's rows).
"""
import argparse
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from common import ARCHITECTURES, REAL_TIME, describe_machine, model_config, sparse_model, yardsticks  # noqa: E402

from srnn.generation import generate_levels  # noqa: E402
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


SPARSE_CONFIGS = [("original", 1024, 1), ("original", 1024, 16)]  # (architecture, dim, streams)
DENSITIES = (1.0, 0.1, 0.05, 0.04)


def timed(sampler, streams, n):
    """(first call's seconds, a second call's samples per second per stream)."""
    t0 = time.perf_counter()
    generate_levels(sampler, streams, n, seed=0)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    generate_levels(sampler, streams, n, seed=1)
    return first, n / (time.perf_counter() - t0)


def sparse_rows(args):
    """A pruned model's sampling speed by density (random balanced masks, srnn.sparse.DEFAULT_BLOCK:
    any mask of a density runs as fast), in each precision, against the dense model in float32."""
    print(f"{'architecture':>12} {'dim':>5} {'streams':>7} {'density':>7} {'weights':>52} {'first call':>10} "
          f"{'per stream/s':>13} {'aggregate/s':>12} {'x real time':>12} {'vs dense':>8}")
    precisions = [p for p in args.precision.split(",") if p != "auto"] if args.precision_given else ["float32", "int8"]
    for arch, dim, streams in SPARSE_CONFIGS:
        base = None
        for density in DENSITIES:
            model = sparse_model(arch, dim, density)
            n = (16000 if density < 1 else 2000) // (2 if args.quick else 1)  # 1 s of audio: a call costs ~0.1 s more
            for precision in precisions:
                sampler = model.sampler(precision=precision)
                first, per = timed(sampler, streams, n)
                base = per if density == 1 and precision == "float32" else base
                print(f"{arch:>12} {dim:>5} {streams:>7} {density:>7g} {sampler.weight_precision(streams).describe():>52} "
                      f"{first:>9.1f}s {per:>13,.0f} {per * streams:>12,.0f} {per * streams / REAL_TIME:>12.2f} "
                      f"{f'{per / base:.1f}x' if base else '-':>8}", flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--only", default="", help="run only the rows whose architecture starts with this")
    p.add_argument("--precision", default=None,
                   help="comma-separated --sample-precision values to run each configuration with "
                   "(default float32,bfloat16,int8,auto; with --sparse float32,int8)")
    p.add_argument("--sparse", action="store_true", help="the block-sparse rows instead")
    args = p.parse_args()
    args.precision_given = args.precision is not None
    args.precision = args.precision or "float32,bfloat16,int8,auto"
    describe_machine()
    if args.sparse:
        sparse_rows(args)
        return
    yardsticks()
    print("architectures: " + "; ".join(f"{k}: {v}" for k, v in ARCHITECTURES.items()))
    print(f"{'architecture':>12} {'dim':>5} {'streams':>7} {'weights':>15} {'samples':>8} {'first call':>10} "
          f"{'per stream/s':>13} {'aggregate/s':>12} {'x real time':>12} {'vs float32':>10}")
    times = {}
    for arch, dim, streams in CONFIGS:
        if not arch.startswith(args.only):
            continue
        n = (8000 if dim <= 256 else 2000) // (2 if args.quick else 1)
        model = SampleRNN(model_config(arch, dim))
        for precision in args.precision.split(","):
            sampler = model.sampler(precision=precision)
            t0 = time.perf_counter()
            generate_levels(sampler, streams, n, seed=0)
            first = time.perf_counter() - t0
            t0 = time.perf_counter()
            generate_levels(sampler, streams, n, seed=1)
            took = time.perf_counter() - t0
            times[(arch, dim, streams, precision)] = took
            per = n / took
            base = times.get((arch, dim, streams, "float32"))
            chosen = sampler.weight_precision(streams).describe()
            name = f"auto: {chosen}" if precision == "auto" else precision
            print(f"{arch:>12} {dim:>5} {streams:>7} {name:>15} {n:>8} {first:>9.1f}s {per:>13,.0f} "
                  f"{per * streams:>12,.0f} {per * streams / REAL_TIME:>12.2f} "
                  f"{f'{base / took:.2f}x' if base else '-':>10}", flush=True)
    one, sixteen = times.get(("original", 32, 1, "float32")), times.get(("original", 32, 16, "float32"))
    if one and sixteen:
        print(f"16 streams vs 1 stream at dim 32: {sixteen / one:.2f}x the time")


if __name__ == "__main__":
    main()
