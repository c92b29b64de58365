"""Which architecture to pick with a few CPU minutes: each trains for the same wall-clock budget on
the shipped demo corpus, over several seeds, and the best epoch's valid and test bits are printed.

    python bench/quality.py                 # 10 minutes per run, 7 rows, 3 seeds: about 3.5 hours
    python bench/quality.py --minutes 2     # a quicker look
    python bench/quality.py --only music    # rows whose name starts with this
    python bench/quality.py --only "original tiny" --epochs 4 --seeds 1 \
        --precision float32,mixed_bfloat16,mixed_float16   # precisions, the same steps each
    python bench/quality.py --only sparse --epochs 8 --seeds 1 --sample   # what a large sparse model buys

The corpus is the demo cut into 8 s parts as the README's first command does (13 parts): the
original's tiny split, 4 parts to train, 2 to validate, the 7 others to test. Each run is a fresh
process running `train_srnn.py` with --max-minutes, so it is what a user gets with those flags.
"""
import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

# name -> training flags (beyond the split), each about the same cost per sample at these widths
RUNS = {
    "original tiny": "--frames 8,2 --slowdim 32 --dim 32 --cutlen 512 --batchsize 2",
    "original dim 64": "--frames 8,2 --slowdim 64 --dim 64 --cutlen 512 --batchsize 2",
    "2-tier GRU": "--frames 16 --slowdim 64 --dim 64 --cutlen 512 --batchsize 2",
    "music (LSTM x3, skip)": "--frames 16,4 --rnn lstm --rnn-layers 3 --skip --slowdim 32 --dim 32 --cutlen 512 "
                             "--batchsize 2",
    # sparsity: at equal epochs, a small dense model, a 4x wider one with 1/16 of its pruned matrices'
    # weights (about the small one's count), and the wide one dense
    "sparse: dense dim 128": "--slowdim 128 --dim 128 --cutlen 512 --batchsize 2",
    "sparse: dim 512, 93.75 %": "--slowdim 512 --dim 512 --cutlen 512 --batchsize 2 --sparsity 0.9375",
    "sparse: dense dim 512": "--slowdim 512 --dim 512 --cutlen 512 --batchsize 2",
}
SAMPLE_RATE_CODE = """
import sys, time
from srnn import checkpoint
from srnn.generation import generate_levels
from srnn.model import SampleRNN
ckpt = checkpoint.load(sys.argv[1])
model = SampleRNN(ckpt.config)
checkpoint.apply_weights(ckpt, model)
sampler = model.sampler()
generate_levels(sampler, 1, 16000, seed=0)  # compiled
t = time.perf_counter()
generate_levels(sampler, 1, 16000, seed=1)
print(16000 / (time.perf_counter() - t))
"""
SEEDS = (1, 2, 3)


def run(work, name, flags, seed, budget, sample=False):
    """One training run; `budget` the flags that end it (--max-minutes, or --nepochs); with `sample`,
    the best epoch's sampling rate (one stream, compiled, 1 s of audio)."""
    out = os.path.join(work, f"run_{abs(hash((name, seed)))}")
    os.makedirs(out)
    os.symlink(os.path.join(work, "blizzard"), os.path.join(out, "blizzard"))
    t0 = time.time()
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "train_srnn.py"), "--exp=tiny", "--trainstop=4",
                           "--validstop=6", *budget, f"--seed={seed}", *flags.split()],
                          cwd=out, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"{name} seed {seed} failed:\n{proc.stderr[-2000:]}")
    valid = [float(v) for v in re.findall(r"Epoch \d+ valid loss in bits ([\d.]+)", proc.stdout)]
    test = float(re.search(r"Test loss in bits ([\d.]+)", proc.stdout).group(1))
    params = int(re.search(r"Trainable params: ([\d,]+)", proc.stdout).group(1).replace(",", ""))
    sparsity = re.findall(r"Epoch \d+ sparsity ([\d.]+)", proc.stdout)
    took = time.time() - t0
    rate = None
    if sample:
        best = [f for f in os.listdir(out) if f.endswith("_best.h5")][0]
        rate = float(subprocess.run([sys.executable, "-c", SAMPLE_RATE_CODE, os.path.join(out, best)], cwd=ROOT,
                                    capture_output=True, text=True, check=True).stdout.split()[-1])
    shutil.rmtree(out)
    return {"valid": min(valid), "test": test, "epochs": len(valid), "params": params, "took": took,
            "sparsity": float(sparsity[-1]) if sparsity else 0.0, "rate": rate}


def spread(values):
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values) if len(values) > 1 else 0:.3f}"


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=10.0, help="training budget per run (default 10)")
    p.add_argument("--seeds", type=int, default=len(SEEDS), help="seeds per architecture (default 3)")
    p.add_argument("--only", default="", help="run only the rows whose name starts with this")
    p.add_argument("--epochs", type=int, default=None,
                   help="train this many epochs per run instead of --minutes (the same steps for every row)")
    p.add_argument("--sample", action="store_true",
                   help="also measure each run's best epoch's sampling rate (one stream, samples/s)")
    p.add_argument("--precision", default="float32",
                   help="comma-separated --precision values: a row per architecture and precision (default float32)")
    args = p.parse_args()
    budget = [f"--nepochs={args.epochs}"] if args.epochs else ["--nepochs=100000", f"--max-minutes={args.minutes}"]
    precisions = args.precision.split(",")
    from common import describe_machine

    describe_machine()
    with tempfile.TemporaryDirectory() as work:
        shutil.copytree(os.path.join(ROOT, "blizzard", "tiny"), os.path.join(work, "blizzard", "tiny"))
        pre = subprocess.run([sys.executable, os.path.join(ROOT, "preprocess.py"), "blizzard/tiny"], cwd=work,
                             capture_output=True, text=True)
        if pre.returncode:
            raise SystemExit(pre.stderr)
        per_run = f"{args.epochs} epoch(s)" if args.epochs else f"{args.minutes:g} minute(s)"
        print(f"{per_run} of training per run, seeds {', '.join(map(str, range(1, args.seeds + 1)))}; "
              f"bits per sample of the best epoch (mean ± standard deviation over seeds)")
        print(f"{'architecture':<24} {'precision':>14} {'params':>10} {'sparsity':>8} {'epochs':>7} {'minutes':>7} "
              f"{'valid bits':>14} {'test bits':>14} {'samples/s':>10}  flags")
        for name, flags in RUNS.items():
            if not name.startswith(args.only):
                continue
            for precision in precisions:
                rows = [run(work, name, f"{flags} --precision {precision}", seed, budget, args.sample)
                        for seed in range(1, args.seeds + 1)]
                rate = f"{statistics.mean(r['rate'] for r in rows):,.0f}" if args.sample else "-"
                print(f"{name:<24} {precision:>14} {rows[0]['params']:>10,} {rows[0]['sparsity']:>8.4f} "
                      f"{statistics.mean(r['epochs'] for r in rows):>7.0f} "
                      f"{statistics.mean(r['took'] for r in rows) / 60:>7.1f} {spread([r['valid'] for r in rows]):>14} "
                      f"{spread([r['test'] for r in rows]):>14} {rate:>10}  {flags}", flush=True)


if __name__ == "__main__":
    main()
