"""Training speed: steady-state target samples per second of the compiled TBPTT step.

    python bench/train_speed.py            # the original's model at three sizes, and other architectures
    python bench/train_speed.py --quick    # fewer steps
    python bench/train_speed.py --only original   # rows whose name starts with this
    python bench/train_speed.py --precision float32,mixed_bfloat16,mixed_float16
    python bench/train_speed.py --sparse --only original   # a step with masks (95 % pruned) against dense

Each configuration runs in a fresh process, so its peak memory is its own. Every configuration runs
in each --precision (default float32 and mixed_bfloat16), side by side, with the ratio to float32;
the matmul yardsticks at the top say what this machine's 16-bit arithmetic can gain at most.
The backend is Keras' (KERAS_BACKEND=jax python bench/train_speed.py for the JAX engine's rows).
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


def measure(arch, dim, batch, cutlen, seconds, precision, density=1.0):
    from common import E, model_config, peak_rss_mb, sparse_model

    import numpy as np

    from srnn.model import SampleRNN
    from srnn.engine.common import use_xla
    from srnn.training import Steps

    cfg = model_config(arch, dim)
    if density < 1:  # masks in every kernel, and the pruner's check before every step (its schedule done)
        from srnn.prune import Pruner
        from srnn.sparse import Schedule

        assert precision == "float32"
        model = sparse_model(arch, dim, density)
        cfg = model.cfg
        steps = Steps(model)
        pruner = Pruner(model, steps, Schedule(1 - density, 0, 0, 1 - density), cfg.sparse_block)
        step = steps.train_step

        def train_step(*a):
            pruner.before_step()
            return step(*a)

        steps.train_step = train_step
    else:
        model = SampleRNN(cfg, precision=precision)
        steps = Steps(model)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (batch, cutlen + cfg.big_frame)).astype(np.int32)
    mask = np.ones((batch, cutlen), np.float32)
    states = model.zero_states(batch)
    reset = E.scalar(0.0)
    for _ in range(3):  # compile and warm up
        loss, states = steps.train_step(x, mask, reset, states)
    float(loss)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds or n < 3:
        loss, states = steps.train_step(x, mask, reset, states)
        float(loss)  # the training loop reads every loss, so do we
        n += 1
    rate = n * batch * cutlen / (time.perf_counter() - t0)
    return {"xla": use_xla(cfg) or E.NAME == "jax", "samples_per_s": rate, "peak_rss_mb": peak_rss_mb(),
            "params": int(sum(np.prod(v.shape) for v in model.trainable_variables))}  # masks are not parameters


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--only", default="", help="run only the rows whose architecture starts with this")
    p.add_argument("--precision", default="float32,mixed_bfloat16",
                   help="comma-separated --precision values to run each configuration in")
    p.add_argument("--sparse", action="store_true",
                   help="each configuration dense and with 95 %% of its pruned matrices masked (float32)")
    p.add_argument("--one", help=argparse.SUPPRESS)
    args = p.parse_args()
    seconds = 4.0 if args.quick else 10.0
    if args.one:
        arch, dim, batch, cutlen, precision = args.one.split(",")[:5]
        density = float(args.one.split(",")[5]) if len(args.one.split(",")) > 5 else 1.0
        print(json.dumps(measure(arch, int(dim), int(batch), int(cutlen), seconds, precision, density)))
        return
    if args.sparse:
        args.precision = "float32,sparse 0.95"
    from common import REAL_TIME, describe_machine, yardsticks

    describe_machine()
    yardsticks()
    print("architectures: " + "; ".join(f"{k}: {v}" for k, v in ARCHITECTURES.items()))
    print(f"{'architecture':>12} {'dim':>5} {'params':>10} {'batch':>5} {'cutlen':>6} {'xla':>5} {'precision':>14} "
          f"{'target samples/s':>17} {'x real time':>12} {'vs float32':>10} {'peak RSS':>9}")
    for arch, dim, batch, cutlen in CONFIGS:
        if not arch.startswith(args.only):
            continue
        base = None
        for precision in args.precision.split(","):
            one = (f"{arch},{dim},{batch},{cutlen},{precision}" if not precision.startswith("sparse") else
                   f"{arch},{dim},{batch},{cutlen},float32,{1 - float(precision.split()[1]):g}")
            out = subprocess.run([sys.executable, __file__, "--one", one]
                                 + (["--quick"] if args.quick else []), capture_output=True, text=True)
            if out.returncode:
                print(out.stderr[-2000:])
                continue
            r = json.loads(out.stdout.strip().splitlines()[-1])
            rate = r["samples_per_s"]
            base = rate if precision == "float32" else base
            ratio = f"{rate / base:.2f}x" if base else "-"
            print(f"{arch:>12} {dim:>5} {r['params']:>10,} {batch:>5} {cutlen:>6} {str(r['xla']):>5} {precision:>14} "
                  f"{rate:>17,.0f} {rate / REAL_TIME:>12.2f} {ratio:>10} {r['peak_rss_mb']:>7.0f}MB", flush=True)


if __name__ == "__main__":
    main()
