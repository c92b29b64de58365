"""A listening check in numbers: how much of a recording is quiet, how much of the rest is voiced,
the longest pause, and the DC offset. For a model's generated.wav against the corpus it learnt from.

    python bench/listen.py generated.wav other.wav     # one row per file
    python bench/listen.py --corpus blizzard/voice     # every audio file under the folder, pooled

Per 40 ms window (non-overlapping; a last partial window is left out; stereo is mixed to mono):

quiet   the window's RMS, its own mean removed, below -40 dBFS (full scale = 1.0, a 16-bit file's
        32768). Absolute, not relative to the file's peak: whether a model is silent must not
        depend on how loud its loudest burst is (a file of faint hiss would be "loud" relative to
        its own peak). The prompts are normalised (peaks about -3 dBFS) and -40 dBFS lies between
        their pauses' room tone and their quietest speech. The window's mean is removed because a
        constant offset is silent to the ear (the demo model's silences sit at +0.04); the offset
        is reported on its own (DC, and the mean of the quiet windows, quiet DC).
voiced  a loud window whose normalised autocorrelation r(k) / r(0) (mean removed, no taper) has a
        local peak above 0.5 at a lag k of 1/400 s to 1/70 s: a clear pitch between 70 and 400 Hz.
        The voiced fraction is of the loud (not quiet) windows.
whine   a loud window whose strongest periodicity lies above the pitch range: a local peak of
        r(k) / r(0) above 0.5 at a lag shorter than 1/400 s that beats every peak in the pitch
        range. A model stuck in a steady tone with noise (a 1 kHz whine) is "voiced" by the
        measure above (the tone's period repeats inside the pitch lags) but not by the ear; this
        column shows it. Speech has some (a strong formant): blizzard/tiny pooled 15 %.
longest quiet run   the most consecutive quiet windows within one file, in seconds.
DC      the mean of all samples.

Calibrated against reference figures measured with a similar method: blizzard/tiny
pooled gives 14 % quiet, 81 % of loud voiced (reference: 14 %, 81 %); the demo model's 12 s
(`train_srnn.py --sample=models/demo_srnn_sz128.h5 --seconds 12`) 39 % quiet, 49 % voiced,
longest quiet run 1.8 s, DC +0.040 (reference: 39 %, 49 %, up to 1.8 s, silences at +0.04).

numpy and soundfile only: the measures (`measure`, `combine`) import without srnn or Keras.
"""
import argparse
import os
import sys

import numpy as np
import soundfile as sf

WINDOW_S = 0.04  # seconds per window
QUIET_DBFS = -40.0  # window RMS (mean removed) below this is quiet
CLARITY = 0.5  # normalised autocorrelation peak above this is voiced
PITCH_HZ = (70.0, 400.0)  # pitch range searched
BLOCK = 4096  # windows per autocorrelation batch (memory: a 30-minute file needs no more)
AUDIO_EXT = tuple("." + f.lower() for f in sf.available_formats())


def to_mono_float(x):
    """float64 mono in [-1, 1] from float or integer samples, 1-D or (frames, channels)."""
    x = np.asarray(x)
    if np.issubdtype(x.dtype, np.integer):
        x = x / float(-np.iinfo(x.dtype).min)
    x = np.asarray(x, dtype=np.float64)
    return x.mean(axis=1) if x.ndim == 2 else x


def clarity(frames, rate, pitch_hz=PITCH_HZ, above=False):
    """For each row of `frames` (mean removed), the highest local peak of r(k) / r(0) over the lags
    of `pitch_hz`; -1 where there is none (or the frame is all zero). `above`: also the highest
    over the shorter lags (2 samples up to the range), a periodicity above the pitch range."""
    n = frames.shape[1]
    lo = max(1, int(np.ceil(rate / pitch_hz[1])))
    hi = min(n - 2, int(np.floor(rate / pitch_hz[0])))
    if frames.shape[0] == 0 or hi < lo:
        none = np.full(frames.shape[0], -1.0)
        return (none, none) if above else none
    spec = np.fft.rfft(frames, 2 * n, axis=1)
    ac = np.fft.irfft(spec.real ** 2 + spec.imag ** 2, axis=1)[:, : hi + 2]
    energy = ac[:, :1]
    r = np.divide(ac, energy, out=np.zeros_like(ac), where=energy > 0)

    def highest_peak(first, last):
        if last < first:
            return np.full(frames.shape[0], -1.0)
        k = np.arange(first, last + 1)
        mid = r[:, k]
        peak = (mid >= r[:, k - 1]) & (mid >= r[:, k + 1])
        return np.where(peak, mid, -1.0).max(axis=1)

    pitch = highest_peak(lo, hi)
    return (pitch, highest_peak(2, lo - 1)) if above else pitch


def measure(x, rate, quiet_dbfs=QUIET_DBFS, clarity_min=CLARITY, window_s=WINDOW_S):
    """The listening figures of one signal `x` at `rate` Hz, as a dict: seconds, windows, quiet,
    loud, voiced (window counts), quiet_frac, voiced_frac (of loud; nan without loud windows),
    longest_quiet_s, dc (mean of all samples), quiet_dc (mean of the quiet windows; nan if none)."""
    x = to_mono_float(x)
    w = max(1, int(round(window_s * rate)))
    m = len(x) // w
    frames = x[: m * w].reshape(m, w)
    means = frames.mean(axis=1)
    ac_frames = frames - means[:, None]
    rms = np.sqrt((ac_frames ** 2).mean(axis=1))
    quiet = rms < 10 ** (quiet_dbfs / 20)
    voiced = whine = 0
    loud_frames = ac_frames[~quiet]
    for i in range(0, len(loud_frames), BLOCK):
        pitch, high = clarity(loud_frames[i : i + BLOCK], rate, above=True)
        voiced += int((pitch > clarity_min).sum())
        whine += int(((high > clarity_min) & (high > pitch)).sum())
    longest = run = 0
    for q in quiet:
        run = run + 1 if q else 0
        longest = max(longest, run)
    n_quiet, n_loud = int(quiet.sum()), int(m - quiet.sum())
    return {
        "seconds": len(x) / rate,
        "samples": len(x),
        "windows": m,
        "window_s": w / rate,
        "quiet": n_quiet,
        "loud": n_loud,
        "voiced": voiced,
        "whine": whine,
        "quiet_frac": n_quiet / m if m else float("nan"),
        "voiced_frac": voiced / n_loud if n_loud else float("nan"),
        "whine_frac": whine / n_loud if n_loud else float("nan"),
        "longest_quiet_s": longest * w / rate,
        "dc": float(x.mean()) if len(x) else float("nan"),
        "quiet_dc": float(means[quiet].mean()) if n_quiet else float("nan"),
    }


def combine(results):
    """Pool the measures of several files (a corpus): fractions over all windows, the longest run
    of any one file, the means weighted by samples (DC) and by quiet windows (quiet DC)."""
    results = list(results)
    tot = {k: sum(r[k] for r in results) for k in ("seconds", "samples", "windows", "quiet", "loud", "voiced", "whine")}

    def weighted(key, weight):
        pairs = [(r[key], r[weight]) for r in results if r[weight]]
        total = sum(wt for _, wt in pairs)
        return sum(v * wt for v, wt in pairs) / total if total else float("nan")

    return {
        **tot,
        "files": len(results),
        "quiet_frac": tot["quiet"] / tot["windows"] if tot["windows"] else float("nan"),
        "voiced_frac": tot["voiced"] / tot["loud"] if tot["loud"] else float("nan"),
        "whine_frac": tot["whine"] / tot["loud"] if tot["loud"] else float("nan"),
        "longest_quiet_s": max((r["longest_quiet_s"] for r in results), default=0.0),
        "dc": weighted("dc", "samples"),
        "quiet_dc": weighted("quiet_dc", "quiet"),
    }


def measure_file(path, **kw):
    x, rate = sf.read(path, dtype="float64", always_2d=True)
    return measure(x, rate, **kw)


def audio_files(folder):
    """Audio files under `folder`, recursively, sorted; dot-names left out."""
    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [os.path.join(root, f) for f in sorted(files)
                  if not f.startswith(".") and f.lower().endswith(AUDIO_EXT)]
    return found


COLUMNS = [  # header, key, format
    ("seconds", "seconds", "{:.1f}"),
    ("quiet", "quiet_frac", "{:.0%}"),
    ("voiced", "voiced_frac", "{:.0%}"),
    ("whine", "whine_frac", "{:.0%}"),
    ("longest quiet s", "longest_quiet_s", "{:.2f}"),
    ("DC", "dc", "{:+.4f}"),
    ("quiet DC", "quiet_dc", "{:+.4f}"),
]


def table(rows):
    """Aligned text: one row per (name, result)."""
    cells = [["input"] + [h for h, _, _ in COLUMNS]]
    for name, r in rows:
        cells.append([name] + ["-" if np.isnan(r[k]) else f.format(r[k]) for _, k, f in COLUMNS])
    widths = [max(len(c[i]) for c in cells) for i in range(len(cells[0]))]
    return "\n".join(
        "  ".join(c.ljust(widths[0]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(row))
        for row in cells)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("files", nargs="*", help="audio files, one row each")
    p.add_argument("--corpus", action="append", default=[], metavar="DIR",
                   help="a folder: all its audio files (recursively) pooled into one row; repeatable")
    p.add_argument("--quiet-db", type=float, default=QUIET_DBFS, help="quiet below this dBFS (default %(default)s)")
    p.add_argument("--clarity", type=float, default=CLARITY, help="voiced above this autocorrelation peak (default %(default)s)")
    a = p.parse_args(argv)
    if not a.files and not a.corpus:
        p.error("give audio files or --corpus DIR")
    kw = {"quiet_dbfs": a.quiet_db, "clarity_min": a.clarity}
    rows, bad = [], 0

    def read(path):
        nonlocal bad
        try:
            return measure_file(path, **kw)
        except (OSError, RuntimeError) as e:  # soundfile raises LibsndfileError, a RuntimeError
            print(f"listen: skipping {path}: {e}", file=sys.stderr)
            bad += 1
            return None

    for path in a.files:
        r = read(path)
        if r is not None:
            rows.append((path, r))
    for folder in a.corpus:
        if not os.path.isdir(folder):
            print(f"listen: {folder} is not a folder", file=sys.stderr)
            bad += 1
            continue
        found = [r for r in map(read, audio_files(folder)) if r is not None]
        if not found:
            print(f"listen: no audio files in {folder}", file=sys.stderr)
            bad += 1
            continue
        rows.append((f"{folder} ({len(found)} files)", combine(found)))
    if rows:
        print(table(rows))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
