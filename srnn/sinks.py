"""Where a stream's audio goes as it is generated: raw 16-bit PCM into a pipe (standard output, for
`aplay`, `sox` or `ffplay`), or a WAV file that grows and is a valid WAV of everything so far at every
moment. No deep-learning framework here: float chunks in, bytes out.

Each sequence is a channel: the chunks (sequences, k) are written interleaved, sample by sample.
"""
import errno
import os
import struct

import numpy as np

from . import memory
from .quantize import pcm16

WAV_HEADER = 44  # bytes: RIFF, fmt (PCM) and data chunk headers


class SinkClosed(Exception):
    """The reader went away (a pipe whose other end closed): the stream ends, nothing is wrong."""


def interleaved(chunk):
    """(sequences, k) float audio -> the k frames of 16-bit samples, channel by channel, as bytes."""
    return pcm16(np.asarray(chunk).T).tobytes()


def wav_header(rate, channels, data_bytes):
    """A PCM WAV header for `data_bytes` of 16-bit samples."""
    block = 2 * channels
    return (b"RIFF" + struct.pack("<I", 36 + data_bytes) + b"WAVE"
            + b"fmt " + struct.pack("<IHHIIHH", 16, 1, channels, rate, rate * block, block, 16)
            + b"data" + struct.pack("<I", data_bytes))


class PcmPipe:
    """Raw 16-bit little-endian PCM into the binary file object `out` (standard output's), flushed per
    chunk so that a player hears it at once. A reader that closes its end ends the stream (SinkClosed);
    any other failure to write (a full disk behind a redirection) is an OSError."""

    def __init__(self, out, channels):
        self.out, self.channels, self.frames = out, channels, 0

    def write(self, chunk):
        try:
            self.out.write(interleaved(chunk))
            self.out.flush()
        except (BrokenPipeError, ConnectionResetError):
            raise SinkClosed() from None
        except OSError as e:
            if e.errno in (errno.EPIPE, errno.ECONNRESET):
                raise SinkClosed() from None
            raise
        self.frames += np.shape(chunk)[1]

    def close(self):
        try:
            self.out.close()
        except OSError:  # a reader gone, or the last flush's full disk (said already)
            pass


class GrowingWav:
    """A WAV file written as the audio comes: the samples appended, then the header's two sizes
    rewritten to count them, so that a reader opening the file at any moment finds a valid WAV of
    every sample written so far (the header never counts a byte that is not there). The file must
    not exist (a stream never replaces a file); a failed write (a full disk) truncates the file
    back to the samples the header counts and raises the OSError. Stops at the WAV format's 4 GB
    (`full`)."""

    def __init__(self, path, rate, channels):
        self.path, self.rate, self.channels = path, rate, channels
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # FileExistsError: never replaced
        self.data = 0  # bytes of samples counted by the header
        try:
            self._write_all(wav_header(rate, channels, 0), 0)
        except OSError:
            self.close()
            os.unlink(path)
            raise

    @property
    def frames(self):
        return self.data // (2 * self.channels)

    def room(self):
        """Frames the file can still take before the WAV format's 32-bit sizes overflow."""
        return (memory.WAV_LIMIT - WAV_HEADER - self.data) // (2 * self.channels)

    def write(self, chunk):
        """Append a chunk (sequences, k); only what fits the format is written (see `room`)."""
        chunk = np.asarray(chunk)[:, :max(self.room(), 0)]
        data = interleaved(chunk)
        try:
            self._write_all(data, WAV_HEADER + self.data)
            # the sizes only once the samples are there (a reader never reads past the file's end),
            # in one write of the whole header (a reader never sees one size new and one old)
            self._write_all(wav_header(self.rate, self.channels, self.data + len(data)), 0)
        except OSError:
            self._truncate()
            raise
        self.data += len(data)

    def _write_all(self, data, offset):
        view = memoryview(data)
        while view:
            written = os.pwrite(self.fd, view, offset)
            view, offset = view[written:], offset + written

    def _truncate(self):
        """Back to the header's count of samples, and a header that says so (best effort)."""
        try:
            os.ftruncate(self.fd, WAV_HEADER + self.data)
            self._write_all(wav_header(self.rate, self.channels, self.data), 0)
        except OSError:
            pass

    @property
    def full(self):
        return self.room() <= 0

    def close(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
