"""Peak memory of `preprocess.py` on one long file: does it grow with the file's length?

Writes a 48 kHz stereo 16-bit WAV of --minutes (a tone and noise) into a temporary folder and runs
preprocess.py of a checkout (--root, default this one) on it in a child process, twice (a short
and the long file), printing each run's peak resident memory (ru_maxrss) and time. Reading each
file whole, the peak grew by ~36 bytes per input frame; read in blocks, it should not grow.

    python bench/preprocess_memory.py --minutes 30
    python bench/preprocess_memory.py --minutes 30 --root /path/to/an/older/checkout
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import soundfile as sf

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RATE = 48000


def write_long(path, minutes):
    """A stereo 16-bit WAV of `minutes`, written a minute at a time."""
    rng = np.random.default_rng(0)
    with sf.SoundFile(path, "w", RATE, 2, subtype="PCM_16") as f:
        for m in range(int(np.ceil(minutes))):
            n = int(min(1.0, minutes - m) * 60 * RATE)
            t = (m * 60 * RATE + np.arange(n)) / RATE
            x = 0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(n)
            f.write(np.stack([x, x], axis=1))


def run(root, folder):
    """(peak RSS in MB, seconds) of one preprocess.py run in a fresh child."""
    probe = ("import resource, subprocess, sys; "
             "subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL); "
             "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    t0 = time.time()
    out = subprocess.run([sys.executable, "-c", probe, sys.executable, os.path.join(root, "preprocess.py"), folder,
                          "--force"], capture_output=True, text=True, check=True)
    return int(out.stdout.strip()) / 1024, time.time() - t0


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=30.0)
    p.add_argument("--root", default=HERE, help="the checkout whose preprocess.py to run")
    args = p.parse_args()
    print(f"preprocess.py of {args.root}; CPU: {cpu()}")
    with tempfile.TemporaryDirectory() as tmp:
        for minutes in (1.0, args.minutes):
            folder = os.path.join(tmp, f"m{minutes:g}")
            os.makedirs(folder)
            write_long(os.path.join(folder, "long.wav"), minutes)
            rss, seconds = run(args.root, folder)
            print(f"{minutes:6g} min of 48 kHz stereo: peak {rss:8.0f} MB, {seconds:6.1f} s")


def cpu():
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return "unknown"


if __name__ == "__main__":
    main()
