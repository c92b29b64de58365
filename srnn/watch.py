"""Watching training as it goes: TensorBoard event files and audition clips.

A SampleRNN is judged by ear, and the lowest loss is not always the best-sounding epoch: with
--audition N, every N epochs a few short clips are generated from the current weights, written
next to the checkpoints with their pictures, and checked with four simple signal measures (below).
With --tensorboard DIR the losses, speed, learning rate and the clips go to standard event files
(`tensorboard --logdir DIR` shows them; TensorFlow writes them, tensorboard itself is not needed).
"""
import dataclasses
import os

import numpy as np

from . import engine, names
from .errors import first_line
from .labels import one_hot
from .options import audition_length
from .quantize import dequantize

# the measures, on the dequantised signal in [-1, 1] (before the min-max scaling of the WAV)
SILENT_RMS = 0.01  # RMS below this: near-silent
CLIPPED_SHARE = 0.1  # more than this share of samples at the extreme levels: clipped (a sine has 8 %)
DC_RATIO = 2.0  # |mean| above this many standard deviations: a DC offset (the signal sits off zero
# and swings little around it; with linear quantisation speech's mean is off the middle level too)
LOOP_CORRELATION = 0.95  # normalised autocorrelation of the last second at a lag of 20 ms to 0.5 s
LOOP_LAGS = (0.02, 0.5)  # seconds; below 20 ms a voice's or an instrument's pitch period lives


@dataclasses.dataclass
class ClipReport:
    rms: float
    clipped: float  # share of samples at the extreme levels
    mean: float
    std: float
    loop: float  # the highest normalised autocorrelation of the last second over LOOP_LAGS

    def flags(self):
        """What is wrong with the clip, in words (empty: nothing these measures see)."""
        out = []
        if self.rms < SILENT_RMS:
            out.append("near-silent")
        if self.clipped > CLIPPED_SHARE:
            out.append("clipped")
        if abs(self.mean) > DC_RATIO * self.std and self.rms >= SILENT_RMS:
            out.append("DC offset")
        if self.loop > LOOP_CORRELATION and self.rms >= SILENT_RMS:
            out.append("stuck in a loop")
        return out


def inspect_clip(levels, qtype, q_levels, rate):
    """The four measures of one generated clip (int levels)."""
    levels = np.asarray(levels)
    x = dequantize(levels, qtype, q_levels).astype(np.float64)
    clipped = float(np.mean((levels == 0) | (levels == q_levels - 1))) if levels.size else 0.0
    tail = x[-rate:] - x[-rate:].mean()
    loop = 0.0
    lo, hi = (int(round(s * rate)) for s in LOOP_LAGS)
    hi = min(hi, len(tail) // 2)
    if hi > lo and np.dot(tail, tail) > 0:
        spectrum = np.fft.rfft(tail, 2 * len(tail))  # autocorrelation by FFT, zero-padded
        ac = np.fft.irfft(spectrum * np.conj(spectrum))[:len(tail)]
        ac /= ac[0]
        # each lag's sum has fewer terms; rescale so that a perfect repetition reads 1
        ac[1:] *= len(tail) / (len(tail) - np.arange(1, len(tail)))
        loop = float(ac[lo:hi].max())
    return ClipReport(rms=float(np.sqrt(np.mean(x * x))) if x.size else 0.0, clipped=clipped,
                      mean=float(x.mean()) if x.size else 0.0, std=float(x.std()) if x.size else 0.0, loop=loop)


def audition(model, out_dir, exp, epoch, n_seqs, seconds, seed, temperature=1.0, scaling="peak"):
    """Generate `n_seqs` clips of `seconds` from the model's current weights (a conditioned model's
    clips take its labels in turn) through srnn.generation, as --sample's, and write them
    (audition_files); returns [(path, audio, ClipReport)]."""
    from .generation import generate_levels

    c = model.cfg
    mix = one_hot([i % c.n_labels for i in range(n_seqs)], c.n_labels) if c.labels else None
    # the draws are a pure function of the seed: auditioning leaves no trace on training
    levels, _ = generate_levels(model.sampler(), n_seqs, audition_length(c, seconds), temperature=temperature,
                                seed=seed, mix=mix)
    return audition_files(levels, c, out_dir, exp, epoch, scaling)


def audition_files(levels, cfg, out_dir, exp, epoch, scaling="peak"):
    """An audition's clips (levels (clips, n)) into {out_dir}/{exp}_samples/e{epoch}_{i}.wav with
    pictures through srnn.clips, each with its measures in its title; returns [(path, audio,
    ClipReport)]."""
    from .clips import Clip, write_clips

    c = cfg
    folder = os.path.join(out_dir, names.samples_dir(exp))
    os.makedirs(folder, exist_ok=True)
    reports = [inspect_clip(row, c.qtype, c.q_levels, c.sample_rate) for row in levels]
    clips = [Clip(os.path.join(folder, names.audition_name(epoch, i)),
                  f"epoch {epoch}, clip {i}{f' ({c.labels[i % c.n_labels]})' if c.labels else ''}: "
                  f"{', '.join(report.flags()) or 'no flags'}") for i, report in enumerate(reports)]
    audio = write_clips([(levels,)], clips, c.qtype, c.q_levels, c.sample_rate, scaling=scaling)
    return [(clip.wav, x, report) for clip, x, report in zip(clips, audio, reports)]


def describe_clips(clips):
    """One line for the epoch's log: each clip's flags."""
    parts = [f"{os.path.basename(p)}: {', '.join(r.flags()) or 'ok'}" for p, _, r in clips]
    return "audition " + "; ".join(parts)


class Board:
    """TensorBoard event files; a no-op when no folder is given.

    Written with TensorFlow's own summary op and the plugins' metadata, so that the `tensorboard`
    package (which TensorFlow no longer brings along, and which tf.summary.scalar now needs) is
    not a run-time dependency: `pip install tensorboard` only to view them.
    """

    # each plugin's metadata content: its PluginData protocol buffer, version 0; for audio, the
    # encoding field (2) set to WAV (1)
    PLUGINS = {"scalars": b"", "images": b"", "audio": b"\x10\x01"}

    def __init__(self, logdir, log=print):
        self.writer, self.logdir, self.log = None, logdir, log
        if logdir:
            from .quiet import import_tensorflow

            self.tf = import_tensorflow()
            if not engine.features().owns_tensorflow:
                # TensorFlow only writes the files here: it must not take the GPU the backend trains
                # on (its context reserves most of a GPU's memory when it starts)
                try:
                    self.tf.config.set_visible_devices([], "GPU")
                except RuntimeError:  # its context has started already: too late, nothing to undo
                    pass
            self.writer = self.tf.summary.create_file_writer(logdir)

    def _guard(self, action):
        """Run a write; the first that fails (a full disk, a folder gone) is said once and ends
        the event files: they are a side job, training goes on."""
        if self.writer is None:
            return
        try:
            action()
        except (self.tf.errors.OpError, OSError) as e:
            self.writer = None
            self.log(f"warning: cannot write TensorBoard events to {self.logdir} ({first_line(e)}): training goes "
                     f"on without them")

    def _write(self, tag, tensor, step, plugin):
        from tensorflow.core.framework.summary_pb2 import SummaryMetadata

        meta = SummaryMetadata(plugin_data=SummaryMetadata.PluginData(plugin_name=plugin,
                                                                       content=self.PLUGINS[plugin]))
        self.tf.summary.write(tag, tensor, step=int(step), metadata=meta)

    def scalars(self, step, **values):
        def write():
            with self.writer.as_default():
                for name, value in values.items():
                    self._write(name, self.tf.constant(float(value), self.tf.float32), step, "scalars")
        self._guard(write)

    def clips(self, step, clips, rate):
        """Each audition clip as audio, and its picture (waveform over spectrogram) as an image."""
        def write():
            tf = self.tf
            with self.writer.as_default():
                for i, (path, audio, _) in enumerate(clips):
                    wav = tf.audio.encode_wav(np.asarray(audio, np.float32)[:, None], rate)
                    self._write(f"audition/{i}", tf.stack([wav, tf.constant(os.path.basename(path))])[None], step,
                                "audio")
                    png = os.path.splitext(path)[0] + ".png"
                    with open(png, "rb") as f:
                        data = f.read()
                    height, width = tf.io.decode_png(data).shape[:2]
                    self._write(f"audition/{i}_picture", tf.constant([str(width), str(height), data]), step,
                                "images")
            self.writer.flush()
        self._guard(write)

    def flush(self):
        self._guard(lambda: self.writer.flush())

    def close(self):
        self._guard(lambda: self.writer.close())
