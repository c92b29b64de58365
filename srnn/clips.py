"""Generated sequences to files: each one's WAV and its picture (waveform over spectrogram), the one
way for --sample, --audition and the tests. No deep-learning framework here: levels in, files out."""
import dataclasses
import functools
import os
import tempfile

import numpy as np

from .atomic import cannot_write
from .audio import write_wav_blocks
from .plots import plot_audio
from .quantize import to_audio

PICTURE_SECONDS = 60  # a picture shows at most this much (a picture of an hour is a grey band)


class Spool:
    """One generated sequence's levels in a temporary file (2 bytes a sample), with their range."""

    def __init__(self):
        self.file = tempfile.TemporaryFile()
        self.lo, self.hi, self.count = np.inf, -np.inf, 0

    def add(self, levels):
        if len(levels):
            try:
                np.asarray(levels, np.uint16).tofile(self.file)  # q_levels <= 65536
            except OSError as e:
                raise cannot_write(f"a temporary file in {tempfile.gettempdir()} (set TMPDIR elsewhere)", e) from None
            self.lo, self.hi = min(self.lo, int(levels.min())), max(self.hi, int(levels.max()))
            self.count += len(levels)

    def blocks(self, size=1 << 16):
        self.file.seek(0)
        while (block := np.fromfile(self.file, np.uint16, count=size)).size:
            yield block

    def head(self, count):
        self.file.seek(0)
        return np.fromfile(self.file, np.uint16, count=count)

    def close(self):
        self.file.close()


@dataclasses.dataclass
class Clip:
    """One generated sequence's files: its WAV, and its picture beside it, with a title."""
    wav: str
    title: str

    @property
    def picture(self):
        return os.path.splitext(self.wav)[0] + ".png"


def write_clips(pieces, clips, qtype, q_levels, rate, primer=(), scaling="peak"):
    """Levels to files. `pieces`: the generation's (levels (sequences, n), ...) in turn, as
    srnn.generation.level_chunks yields them (or one array's worth); each sequence's levels, after
    the `primer`, wait in a temporary file, so memory does not grow with the length (the scaling
    needs the whole range), then become its WAV, written in blocks, and its picture (at most
    PICTURE_SECONDS, the title saying so; a line where the primer ends), scaled by `scaling`
    (srnn.quantize.to_audio). Returns each picture's audio (the whole clip when it is short)."""
    spools = [Spool() for _ in clips]
    primer = np.asarray(primer)
    try:
        for spool in spools:
            spool.add(primer)  # the primer opens every sequence
        for levels, *_ in pieces:
            for spool, row in zip(spools, levels):
                spool.add(row)
        shown = []
        for spool, clip in zip(spools, clips):
            audio = functools.partial(to_audio, qtype=qtype, q_levels=q_levels, lo=spool.lo, hi=spool.hi,
                                      scaling=scaling)
            write_wav_blocks(clip.wav, map(audio, spool.blocks()), rate)
            head = audio(spool.head(PICTURE_SECONDS * rate))
            cut = "" if len(head) == spool.count else f" (the first {PICTURE_SECONDS} s)"
            plot_audio(clip.picture, head, rate, clip.title + cut, primer_s=len(primer) / rate if primer.size else None)
            shown.append(head)
    finally:
        for spool in spools:
            spool.close()
    return shown
