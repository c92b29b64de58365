"""Audio in and out through soundfile (libsndfile ships in its wheel: no ffmpeg needed)."""
import math
import os

import numpy as np
import soundfile as sf
from scipy.signal import firwin, resample_poly, upfirdn

from .atomic import atomic_path

# What libsndfile reads; anything else under a folder is not audio to us.
AUDIO_EXTENSIONS = frozenset(
    ".wav .wave .flac .ogg .oga .opus .aif .aiff .aifc .au .snd .caf .w64 .rf64 .mp3".split()
)


def is_audio_name(path):
    return os.path.splitext(path)[1].lower() in AUDIO_EXTENSIONS


def read_mono(path):
    """A whole file as mono float32 (channels averaged) and its rate: read_blocks joined (for
    short files and tests; long ones are streamed). Raises soundfile's errors for unreadable files."""
    return np.concatenate([np.zeros(0, np.float32), *read_blocks(path)]), read_rate(path)


def resample(x, sr_in, sr_out):
    """Polyphase resampling with scipy's anti-aliasing FIR (exact for integer-ratio rates)."""
    if sr_in == sr_out:
        return np.asarray(x, np.float32)
    g = math.gcd(int(sr_in), int(sr_out))
    return resample_poly(x, sr_out // g, sr_in // g).astype(np.float32)


BLOCK = 1 << 18  # input frames read at a time: a few MB whatever the file's length or channels


class StreamResampler:
    """`resample` of a signal that arrives in blocks, holding only a filter's length of it: the
    same filter and the same output as scipy's resample_poly(x, up, down) of the whole signal
    (each output sample is the same sum of the same products), so long files need no more memory
    than short ones.

    Output sample k is sum_i x[i] * h[(k + R) * down - i * up] (h the zero-padded filter, R the
    samples resample_poly trims for the filter's delay); a block of outputs is computed by
    upfirdn over just the inputs it reads, starting at a multiple of `down` so that the filter
    phases line up with the whole-signal computation.
    """

    def __init__(self, sr_in, sr_out):
        g = math.gcd(int(sr_in), int(sr_out))
        self.up, self.down = int(sr_out) // g, int(sr_in) // g
        rate = max(self.up, self.down)
        half = 10 * rate  # resample_poly's filter: 2 * 10 * max(up, down) + 1 taps, Kaiser(5)
        h = firwin(2 * half + 1, 1.0 / rate, window=("kaiser", 5.0)).astype(np.float32)
        h *= self.up
        pre = self.down - half % self.down
        self.h = np.concatenate([np.zeros(pre, np.float32), h])
        self.delay = (half + pre) // self.down
        self.buf, self.buf_start, self.next_k, self.seen = np.zeros(0, np.float32), 0, 0, 0

    def gain(self):
        """The largest |output| for inputs within [-1, 1]: the largest sum of |taps| over the
        filter's phases (a full-scale input can overshoot by at most this)."""
        return float(max(np.abs(self.h[p::self.up]).sum() for p in range(self.up)))

    def _first_input(self, k):
        """The first input that output k reads, rounded down to a multiple of `down`."""
        i = max(0, -(-((k + self.delay) * self.down - len(self.h) + 1) // self.up))
        return i - i % self.down

    def feed(self, x):
        """Take the next input block; returns the outputs it completes (float32)."""
        self.buf = np.concatenate([self.buf, np.asarray(x, np.float32)])
        self.seen += len(x)
        # output k reads inputs up to (k + R) * down / up: those with it below `seen` are ready
        return self._emit(-(-self.seen * self.up // self.down) - self.delay)

    def finish(self):
        """The outputs left once the input has ended (resample_poly's length, ceil(n*up/down))."""
        return self._emit(-(-self.seen * self.up // self.down))

    def _emit(self, k1):
        k0 = self.next_k
        if k1 <= k0:
            return np.zeros(0, np.float32)
        i_lo = self._first_input(k0)
        x = self.buf[i_lo - self.buf_start:]
        # zeros past the end, as resample_poly's constant padding, and enough for upfirdn to
        # reach output k1 - 1
        x = np.concatenate([x, np.zeros(len(self.h) // self.up + 2, np.float32)])
        y = upfirdn(self.h, x, self.up, self.down)
        off = k0 + self.delay - i_lo * self.up // self.down
        self.next_k = k1
        keep = self._first_input(k1) - self.buf_start
        self.buf, self.buf_start = self.buf[keep:], self.buf_start + keep
        return y[off:off + k1 - k0].astype(np.float32)


def read_blocks(path, block=None):
    """A file's audio as mono float32 blocks (channels averaged), read `block` (default BLOCK)
    frames at a time; raises soundfile's errors for unreadable files."""
    with sf.SoundFile(os.fspath(path)) as f:
        for data in f.blocks(blocksize=block or BLOCK, dtype="float32", always_2d=True):
            yield data.mean(axis=1, dtype=np.float32)


def read_rate(path):
    """A file's sample rate, from its header."""
    return int(sf.info(os.fspath(path)).samplerate)


def stream_mono(path, sr_out, block=None):
    """A file's audio as mono float32 blocks at `sr_out`, in bounded memory (StreamResampler);
    the same samples as resample(read_mono(path)) in one piece."""
    sr = read_rate(path)
    if sr == sr_out:
        yield from read_blocks(path, block)
        return
    r = StreamResampler(sr, sr_out)
    for x in read_blocks(path, block):
        y = r.feed(x)
        if y.size:
            yield y
    y = r.finish()
    if y.size:
        yield y


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
