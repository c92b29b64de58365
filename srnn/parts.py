"""Cut a folder of audio into consecutive fixed-length parts: `python preprocess.py DIR`.

Files are found recursively in sorted order, decoded, mixed to mono, resampled and concatenated;
the stream is cut into parts as it is read (bounded memory for any corpus size). Parts are written
to a hidden staging folder first and moved in only when everything succeeded, so a failed run never
leaves a mix of old and new parts, and a re-run never replaces parts without `--force`.
"""
import contextlib
import dataclasses
import os
import shutil
import tempfile

import numpy as np

from . import names
from .atomic import write_text
from .audio import is_audio_name, read_mono, resample, write_wav
from .errors import SrnnError, first_line
from .lock import exclusive


@dataclasses.dataclass
class Summary:
    out_dir: str
    files_read: int = 0
    files_skipped: list = dataclasses.field(default_factory=list)  # (path, reason)
    non_audio: int = 0
    seconds_read: float = 0.0
    parts: int = 0
    seconds_dropped: float = 0.0


def find_audio(src_dir, exclude=None):
    """Audio files under `src_dir`, recursively, in a stable sorted order; also the non-audio count.

    Hidden files and folders (dot-names) are left out, and so is `exclude` (an output folder that
    lies inside the input folder).
    """
    exclude = os.path.realpath(exclude) if exclude else None
    found, other = [], 0
    for root, dirs, files in os.walk(src_dir):
        dirs[:] = sorted(
            d for d in dirs
            if not d.startswith(".") and os.path.realpath(os.path.join(root, d)) != exclude
        )
        for f in sorted(files):
            if f.startswith("."):
                continue
            if is_audio_name(f):
                found.append(os.path.join(root, f))
            else:
                other += 1
    return found, other


def existing_parts(out_dir):
    """The files of ours already in `out_dir`: p{i}.wav and prompts.txt."""
    if not os.path.isdir(out_dir):
        return []
    return sorted(
        f for f in os.listdir(out_dir) if names.PART_RE.match(f) or f == names.PROMPTS
    )


MIN_RATE, MAX_RATE = 1000, 192000  # Hz: telephone-band speech to high-resolution audio
MIN_PART = 64  # samples: shorter parts are no training data (and a part of 0 samples is none)
MAX_PART_SECONDS = 3600


def make_parts(src_dir, out_dir=None, seconds=8.0, samplerate=16000, force=False, log=print):
    """Run the whole preprocessing; returns a Summary. Raises SrnnError on bad input.
    Two runs into one output folder at once would replace each other's parts: the second waits
    for nothing and says so (a lock next to the folder, held from the first check to the end)."""
    if not os.path.exists(src_dir):
        raise SrnnError(f"{src_dir} does not exist: give the folder that holds your audio files")
    if not os.path.isdir(src_dir):
        raise SrnnError(f"{src_dir} is not a folder: give the folder that holds your audio files")
    if not MIN_RATE <= samplerate <= MAX_RATE:
        raise SrnnError(f"--samplerate {samplerate} must lie between {MIN_RATE} and {MAX_RATE} Hz")
    # a part is held in memory while it is cut and again when training reads its batch
    if not (seconds > 0 and MIN_PART <= seconds * samplerate and seconds <= MAX_PART_SECONDS):
        raise SrnnError(f"--seconds {seconds:g} must be between {MIN_PART / samplerate:g} ({MIN_PART} samples "
                        f"at {samplerate} Hz) and {MAX_PART_SECONDS} (one hour)")
    out_dir = out_dir or names.parts_dir_for(src_dir)
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise SrnnError(f"{out_dir} exists and is not a folder: remove it or choose --out")
    try:  # the lock lives beside the output folder
        os.makedirs(os.path.dirname(os.path.abspath(out_dir)), exist_ok=True)
    except OSError as e:
        raise SrnnError(f"cannot write to {out_dir}: {e.strerror}; choose another --out") from None
    with exclusive(names.parts_lock(out_dir), out_dir, "choose another --out"):
        return _make_parts(src_dir, out_dir, seconds, samplerate, force, log)


def _make_parts(src_dir, out_dir, seconds, samplerate, force, log):
    old = existing_parts(out_dir)
    if old and not force:
        raise SrnnError(
            f"{out_dir} already holds parts ({old[0]} ...): pass --force to replace them "
            f"or --out to write elsewhere"
        )
    files, non_audio = find_audio(src_dir, exclude=out_dir)
    if not files:
        raise SrnnError(
            f"no audio files found in {src_dir} (looked for .wav, .flac, .ogg, .aiff, .mp3 "
            f"and the other formats soundfile reads)"
        )

    part_len = int(round(seconds * samplerate))
    summary = Summary(out_dir=out_dir, non_audio=non_audio)
    created = not os.path.exists(out_dir)
    try:
        os.makedirs(out_dir, exist_ok=True)
        staging = tempfile.mkdtemp(prefix=".srnn-staging-", dir=out_dir)
    except OSError as e:
        raise SrnnError(f"cannot write to {out_dir}: {e.strerror}; choose another --out") from None
    committed = False
    try:
        _cut(files, staging, part_len, samplerate, summary, log)
        if summary.files_read == 0:
            raise SrnnError(
                f"none of the {len(files)} audio files in {src_dir} could be read "
                f"(first: {summary.files_skipped[0][0]}: {summary.files_skipped[0][1]})"
            )
        if summary.parts == 0:
            raise SrnnError(
                f"only {summary.seconds_read:.1f} s of audio in {src_dir}: one part needs "
                f"{seconds:g} s; add audio or lower --seconds"
            )
        _commit(staging, out_dir, summary.parts, replace=old)
        committed = True
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if created and not committed:  # a failed run leaves no empty output folder behind
            with contextlib.suppress(OSError):
                os.rmdir(out_dir)
    return summary


def _cut(files, staging, part_len, samplerate, summary, log):
    pending, n_pending = [], 0  # audio read but not yet written as a part
    for k, path in enumerate(files, 1):
        try:
            x, sr = read_mono(path)
        except Exception as e:  # soundfile raises several types for corrupt files
            reason = first_line(e)
            summary.files_skipped.append((path, reason))
            log(f"warning: skipping {path}: cannot read it as audio ({reason})")
            continue
        if x.size == 0:
            summary.files_skipped.append((path, "no samples"))
            log(f"warning: skipping {path}: it holds no audio samples")
            continue
        if not np.all(np.isfinite(x)):
            summary.files_skipped.append((path, "non-finite samples"))
            log(f"warning: skipping {path}: it holds NaN or infinite samples")
            continue
        duration = x.size / sr
        x = resample(x, sr, samplerate)
        peak = float(np.abs(x).max())
        if peak > 1.0:  # a float file beyond full scale (or a resampling overshoot): the 16-bit
            x = x / peak  # parts would clip it, turning a sine into a square; scale it instead
            log(f"warning: {path} peaks at {peak:.3g}, beyond full scale: scaled by 1/{peak:.3g}, not clipped")
        summary.files_read += 1
        summary.seconds_read += duration
        log(f"[{k}/{len(files)}] {path}: {duration:.2f} s at {sr} Hz")
        pending.append(x)
        n_pending += x.size
        if n_pending >= part_len:
            stream = np.concatenate(pending)
            n_full = stream.size // part_len
            for j in range(n_full):
                write_wav(
                    os.path.join(staging, names.part_name(summary.parts)),
                    stream[j * part_len:(j + 1) * part_len],
                    samplerate,
                )
                summary.parts += 1
            rest = stream[n_full * part_len:]
            pending, n_pending = [rest], rest.size
    summary.seconds_dropped = n_pending / samplerate


def _commit(staging, out_dir, n_parts, replace):
    """Move staged parts into `out_dir`.

    The old prompts.txt is removed first and the new one written last, so at no moment does a
    prompts.txt list a part that is missing or stale.
    """
    for f in sorted(replace, key=lambda f: f != names.PROMPTS):
        os.unlink(os.path.join(out_dir, f))
    for i in range(n_parts):
        os.replace(os.path.join(staging, names.part_name(i)), os.path.join(out_dir, names.part_name(i)))
    write_text(os.path.join(out_dir, names.PROMPTS), "".join(names.prompt_line(i) for i in range(n_parts)))


def describe(summary, seconds):
    skipped = len(summary.files_skipped)
    lines = [
        f"read {summary.files_read} audio file(s), {summary.seconds_read:.1f} s"
        + (f"; skipped {skipped} unreadable" if skipped else "")
        + (f"; ignored {summary.non_audio} non-audio file(s)" if summary.non_audio else ""),
        f"wrote {summary.parts} part(s) of {seconds:g} s to {summary.out_dir} "
        f"(p0.wav ... p{summary.parts - 1}.wav, {names.PROMPTS}); "
        f"dropped the last {summary.seconds_dropped:.2f} s (shorter than one part)",
    ]
    return "\n".join(lines)
