"""Does reading audio slow training down? Step time with the data already in memory, and with
each batch read from disk and quantised, without and with the background prefetch.

    python bench/data_overlap.py

Uses its own short parts (1 s, so reading is as large a share of the work as it gets), dim 32.
"""
import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from common import E, describe_machine  # noqa: E402

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402

from srnn.batches import Feeder, batch_chunks, read_prompts  # noqa: E402
from srnn.config import ModelConfig  # noqa: E402
from srnn.model import SampleRNN  # noqa: E402
from srnn.training import Steps, run_pass  # noqa: E402

N_PARTS, SECONDS, BATCH, CUTLEN = 96, 1.0, 16, 512


def make_parts(folder):
    rng = np.random.default_rng(0)
    t = np.arange(int(SECONDS * 16000)) / 16000
    with open(os.path.join(folder, "prompts.txt"), "w") as f:
        for i in range(N_PARTS):
            x = 0.3 * np.sin(2 * np.pi * rng.uniform(80, 400) * t) + 0.05 * rng.normal(size=t.size)
            sf.write(os.path.join(folder, f"p{i}.wav"), x, 16000, subtype="PCM_16")
            f.write(f"p{i}.wav\tnone\n")


def main():
    describe_machine()
    with tempfile.TemporaryDirectory() as folder:
        make_parts(folder)
        cfg = ModelConfig(slowdim=32, dim=32)
        feed = Feeder(read_prompts(folder), BATCH, CUTLEN, cfg)
        batches = feed.batches(seed=[0, 0])
        steps = Steps(SampleRNN(cfg))
        run_pass(steps, feed, batches[:1], train=True)  # compile

        t0 = time.perf_counter()
        for b in batches:
            feed.load(b)
        read_s = time.perf_counter() - t0

        in_memory = [list(batch_chunks(feed.load(b), CUTLEN, cfg.big_frame, cfg.q_levels)) for b in batches]
        n_steps = sum(len(c) for c in in_memory)
        t0 = time.perf_counter()
        for chunks in in_memory:
            states = steps.zero_states(BATCH)
            for c in chunks:
                loss, states = steps.train_step(c.x, c.mask, E.scalar(c.reset), states)
                float(loss)
        memory_s = time.perf_counter() - t0

        times = {}
        for prefetch in (False, True):
            t0 = time.perf_counter()
            run_pass(steps, feed, batches, train=True, prefetch=prefetch)
            times[prefetch] = time.perf_counter() - t0

    print(f"{N_PARTS} parts of {SECONDS:g} s, batch {BATCH}, cutlen {CUTLEN}, dim 32: {n_steps} steps an epoch; "
          f"reading + quantising all parts alone takes {read_s * 1000:.0f} ms")
    print(f"{'data':<34} {'epoch s':>8} {'ms/step':>8} {'vs in memory':>13}")
    for name, s in [("already in memory", memory_s), ("read from disk, no prefetch", times[False]),
                    ("read from disk, prefetch (default)", times[True])]:
        print(f"{name:<34} {s:>8.2f} {s / n_steps * 1000:>8.2f} {s / memory_s:>12.2f}x")


if __name__ == "__main__":
    main()
