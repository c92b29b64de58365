"""Cut a folder of audio into consecutive fixed-length parts: `python preprocess.py DIR`.

Files are found recursively in sorted order, decoded, mixed to mono, resampled and concatenated;
the stream is cut into parts as it is read (bounded memory for any corpus size). Parts are written
to a hidden staging folder first and moved in only when everything succeeded, so a failed run never
leaves a mix of old and new parts, and a re-run never replaces parts without `--force`.

With `--labels folder`, each immediate subfolder of DIR is a label: its audio is cut on its own
(no part mixes two labels), and the parts of all labels are interleaved in prompts.txt in
proportion to their counts, so that any contiguous stretch of it -- the training, validation and
test splits -- holds parts of every label.
"""
import contextlib
import dataclasses
import os
import shutil
import tempfile

import numpy as np

from . import names
from .atomic import write_text
from .audio import StreamResampler, is_audio_name, read_blocks, read_rate, stream_mono, write_wav
from .config import SAMPLE_RATE
from .errors import SrnnError, first_line
from .labels import MODES, check_name
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
    label_parts: dict = dataclasses.field(default_factory=dict)  # label -> parts (--labels folder)


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
FEW_PARTS = 10  # a label with fewer parts cannot be in every tenth of prompts.txt (the default splits)


def make_parts(src_dir, out_dir=None, seconds=8.0, samplerate=SAMPLE_RATE, force=False, log=print, labels=None):
    """Run the whole preprocessing; returns a Summary. Raises SrnnError on bad input. `labels`:
    None (every part `none`), or "folder" (each subfolder of `src_dir` is a label).
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
        return _make_parts(src_dir, out_dir, seconds, samplerate, force, log, labels)


NO_AUDIO = "(looked for .wav, .flac, .ogg, .aiff, .mp3 and the other formats soundfile reads)"


def label_folders(src_dir, exclude=None):
    """--labels folder: [(label, audio files)] for each immediate subfolder of `src_dir` (sorted),
    and the non-audio count. Audio directly in `src_dir` has no label: an error."""
    exclude = os.path.realpath(exclude) if exclude else None
    loose = [f for f in sorted(os.listdir(src_dir)) if not f.startswith(".") and is_audio_name(f)
             and os.path.isfile(os.path.join(src_dir, f))]
    if loose:
        raise SrnnError(f"{os.path.join(src_dir, loose[0])} lies directly in {src_dir}: with --labels folder every "
                        f"audio file must be in a subfolder named by its label (move it, or leave --labels out)")
    groups, other = [], 0
    for d in sorted(os.listdir(src_dir)):
        path = os.path.join(src_dir, d)
        if d.startswith(".") or not os.path.isdir(path) or os.path.realpath(path) == exclude:
            continue
        files, non_audio = find_audio(path, exclude)
        groups.append((check_name(d, f"the folder {path}"), files))
        other += non_audio
    if not groups:
        raise SrnnError(f"{src_dir} has no subfolders: with --labels folder each subfolder is a label "
                        f"(e.g. {os.path.join(src_dir, 'speech')}, {os.path.join(src_dir, 'music')})")
    return groups, other


def interleave(counts):
    """The order of the parts of several labels in prompts.txt, as (label index, part index):
    part j of a label with n parts sits at (j + 1/2) / n of the way down, so every stretch of the
    file holds each label in proportion to its size."""
    keys = [((j + 0.5) / n, k, j) for k, n in enumerate(counts) for j in range(n)]
    return [(k, j) for _, k, j in sorted(keys)]


def _make_parts(src_dir, out_dir, seconds, samplerate, force, log, labels):
    old = existing_parts(out_dir)
    if old and not force:
        raise SrnnError(
            f"{out_dir} already holds parts ({old[0]} ...): pass --force to replace them "
            f"or --out to write elsewhere"
        )
    if labels is None:
        files, non_audio = find_audio(src_dir, exclude=out_dir)
        groups = [(names.NO_LABEL, files)]
    elif labels == "folder":
        groups, non_audio = label_folders(src_dir, exclude=out_dir)
        for label, files in groups:
            if not files:
                log(f"warning: the label {label} has no audio files in {os.path.join(src_dir, label)}: left out")
        groups = [(label, files) for label, files in groups if files]
        files = [f for _, group in groups for f in group]
    else:
        raise SrnnError(f"--labels {labels}: choose one of {', '.join(MODES)}")
    if not files:
        raise SrnnError(f"no audio files found in {src_dir} {NO_AUDIO}")
    check_not_input(old, out_dir, src_dir, files)

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
        staged = []  # per label: its parts' staged paths
        for k, (label, group) in enumerate(groups):
            folder = os.path.join(staging, str(k))  # by number: a label is not always a safe path
            os.mkdir(folder)
            n = _cut(group, folder, part_len, samplerate, summary, log, "" if labels is None else f"{label}: ")
            staged.append([os.path.join(folder, names.part_name(j)) for j in range(n)])
            if labels is not None:
                summary.label_parts[label] = n
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
        order = [(staged[k][j], groups[k][0]) for k, j in interleave([len(s) for s in staged])]
        _commit(order, out_dir, replace=old)
        committed = True
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if created and not committed:  # a failed run leaves no empty output folder behind
            with contextlib.suppress(OSError):
                os.rmdir(out_dir)
    return summary


def check_not_input(replaced, out_dir, src_dir, files):
    """--force replaces p*.wav and prompts.txt in the output folder: never when one of them is the
    user's input, i.e. when the output folder is the source folder itself (its p0.wav, prompts.txt
    are the user's), or when a file to replace is (a link to) one of the audio files being cut.
    An output folder inside the source (left out of the reading) or around it overwrites nothing
    of it."""
    if not replaced:
        return
    same = os.path.realpath(out_dir) == os.path.realpath(src_dir)
    inputs = {_inode(f) for f in files} - {None}
    for name in replaced:
        path = os.path.join(out_dir, name)
        if same or _inode(path) in inputs:
            raise SrnnError(f"{path} is the user's own file in the folder being cut ({src_dir}): --force would "
                            f"overwrite it with a part; write the parts elsewhere (--out, by default "
                            f"{names.parts_dir_for(src_dir)})")


def _inode(path):
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _scan(path, samplerate):
    """Pass one over a file: (its rate, seconds at `samplerate`, the peak there or a bound of it
    below full scale), or raises for unreadable audio; the peak is NaN when a sample is NaN or
    infinite. The file is only decoded, and resampled too only when the filter could push its
    peak past full scale (StreamResampler.gain): scaling needs the true peak only then."""
    n, peak = 0, 0.0
    for x in read_blocks(path):
        if not np.all(np.isfinite(x)):
            return 0, 0.0, float("nan")
        n += x.size
        peak = max(peak, float(np.max(np.abs(x))) if x.size else 0.0)
    sr = read_rate(path)
    if sr == samplerate:
        return sr, n / samplerate, peak
    resampler = StreamResampler(sr, samplerate)
    seconds = -(-n * resampler.up // resampler.down) / samplerate
    bound = peak * resampler.gain()
    if bound <= 1.0:
        return sr, seconds, bound
    return sr, seconds, max((float(np.max(np.abs(y))) for y in stream_mono(path, samplerate) if y.size), default=0.0)


def _cut(files, folder, part_len, samplerate, summary, log, tag=""):
    """Cut `files` into parts p0.wav, p1.wav, ... in `folder`; returns how many. `tag` opens each
    progress line (the label). Each file is read in blocks, twice: once for its peak (a float
    file beyond full scale is scaled, and the scale must be known before the first part is
    written), once to cut it; memory holds a block and the part being filled, whatever the files'
    lengths."""
    pending, n_pending, written = [], 0, 0  # audio read but not yet written as a part
    for k, path in enumerate(files, 1):
        try:
            sr, seconds, peak = _scan(path, samplerate)
        except Exception as e:  # soundfile raises several types for corrupt files
            reason = first_line(e)
            summary.files_skipped.append((path, reason))
            log(f"warning: skipping {path}: cannot read it as audio ({reason})")
            continue
        if not np.isfinite(peak):
            summary.files_skipped.append((path, "non-finite samples"))
            log(f"warning: skipping {path}: it holds NaN or infinite samples")
            continue
        if seconds == 0:
            summary.files_skipped.append((path, "no samples"))
            log(f"warning: skipping {path}: it holds no audio samples")
            continue
        scale = 1.0
        if peak > 1.0:  # a float file beyond full scale (or a resampling overshoot): the 16-bit
            scale = 1.0 / peak  # parts would clip it, turning a sine into a square; scale it instead
            log(f"warning: {path} peaks at {peak:.3g}, beyond full scale: scaled by 1/{peak:.3g}, not clipped")
        summary.files_read += 1
        summary.seconds_read += seconds
        log(f"{tag}[{k}/{len(files)}] {path}: {seconds:.2f} s at {sr} Hz")
        try:
            for x in stream_mono(path, samplerate):
                pending.append(x * scale if scale != 1.0 else x)
                n_pending += x.size
                if n_pending < part_len:
                    continue
                stream = np.concatenate(pending)
                n_full = stream.size // part_len
                for j in range(n_full):
                    part = stream[j * part_len:(j + 1) * part_len]
                    write_wav(os.path.join(folder, names.part_name(written)), part, samplerate)
                    written += 1
                rest = stream[n_full * part_len:]
                pending, n_pending = [rest], rest.size
        except SrnnError:
            raise
        except Exception as e:  # it read in the first pass: it changed, or the disk failed
            raise SrnnError(f"{path} could not be read a second time ({first_line(e)}): is it being written?") from None
    summary.parts += written
    summary.seconds_dropped += n_pending / samplerate
    return written


def _commit(order, out_dir, replace):
    """Move staged parts into `out_dir` as p0.wav, p1.wav, ... in `order` ((staged path, label)).

    The old prompts.txt is removed first and the new one written last, so at no moment does a
    prompts.txt list a part that is missing or stale.
    """
    for f in sorted(replace, key=lambda f: f != names.PROMPTS):
        os.unlink(os.path.join(out_dir, f))
    for i, (path, _) in enumerate(order):
        os.replace(path, os.path.join(out_dir, names.part_name(i)))
    write_text(os.path.join(out_dir, names.PROMPTS),
               "".join(names.prompt_line(i, label) for i, (_, label) in enumerate(order)))


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
    if summary.label_parts:
        lines.append("labels (interleaved in prompts.txt): "
                     + ", ".join(f"{label} {n} part(s)" for label, n in summary.label_parts.items()))
        few = [label for label, n in summary.label_parts.items() if n < FEW_PARTS]
        if few:
            lines.append(f"warning: {', '.join(few)} ha{'s' if len(few) == 1 else 've'} fewer than {FEW_PARTS} parts: "
                         f"the default splits (80/10/10 %) may leave a label out of validation or test")
    return "\n".join(lines)
