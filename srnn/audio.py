"""Audio in and out through soundfile (libsndfile ships in its wheel: no ffmpeg needed)."""
import math
import os

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

from .atomic import atomic_path

# What libsndfile reads; anything else under a folder is not audio to us.
AUDIO_EXTENSIONS = frozenset(
    ".wav .wave .flac .ogg .oga .opus .aif .aiff .aifc .au .snd .caf .w64 .rf64 .mp3".split()
)


def is_audio_name(path):
    return os.path.splitext(path)[1].lower() in AUDIO_EXTENSIONS


def read_mono(path):
    """Read any soundfile-readable file as mono float32 (channels averaged) and its rate.

    Raises RuntimeError/soundfile errors for unreadable files; callers decide how to report them.
    """
    data, sr = sf.read(os.fspath(path), dtype="float32", always_2d=True)
    return data.mean(axis=1, dtype=np.float32), int(sr)


def resample(x, sr_in, sr_out):
    """Polyphase resampling with scipy's anti-aliasing FIR (exact for integer-ratio rates)."""
    if sr_in == sr_out:
        return np.asarray(x, np.float32)
    g = math.gcd(int(sr_in), int(sr_out))
    return resample_poly(x, sr_out // g, sr_in // g).astype(np.float32)


def write_wav_blocks(path, blocks, sr, subtype="PCM_16"):
    """Write a mono WAV from an iterable of float blocks in [-1, 1], atomically, holding one block
    at a time (a long generation's output)."""
    with atomic_path(path) as tmp:
        with sf.SoundFile(tmp, "w", int(sr), 1, subtype=subtype, format="WAV") as f:
            for x in blocks:
                f.write(np.clip(np.asarray(x, np.float32), -1.0, 1.0))


def write_wav(path, x, sr, subtype="PCM_16"):
    """Write a mono WAV atomically; float input in [-1, 1] is clipped for PCM subtypes."""
    x = np.asarray(x, np.float32)
    if subtype.startswith("PCM"):
        x = np.clip(x, -1.0, 1.0)
    with atomic_path(path) as tmp:
        sf.write(tmp, x, int(sr), subtype=subtype, format="WAV")
