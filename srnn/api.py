"""srnn from Python: load a model, generate audio as arrays, score audio, train; what
train_srnn.py does, without files in between.

    import srnn
    model = srnn.load("models/demo_srnn_sz128.h5")
    audio = model.generate(seconds=2, n=2, temperature=0.95)   # float32 (2, 32000)
    srnn.write_wav("first.wav", audio[0], model.sample_rate)
    print(model.score(audio[0]))                               # bits per sample
    for chunk in model.stream(seconds=10):                     # float32 (1, 4096) as it is made
        ...

Nothing here imports a deep-learning framework until a model is first run (generate, score,
train): `srnn.load` reads and checks the file with h5py and NumPy only. A bad argument raises
srnn.SrnnError (a ValueError; srnn.checks.OptionError for a bad option's value) with the message
train_srnn.py prints for the same mistake, naming the Python parameter where train_srnn.py names
its flag (`n` where it says --nseqs).
"""
import html
import json
import math
import numbers

import numpy as np

from . import checkpoint, checks, generation, memory, precision
from .config import MAX_SAMPLE_RATE
from .errors import SrnnError
from .quantize import SCALINGS


def load(path):
    """The model in a checkpoint written by train_srnn.py (or srnn.train), checked as --sample
    checks it: every way the file can be wrong is one SrnnError naming it."""
    return Model(checkpoint.load(path))


class Model:
    """A trained SampleRNN: `config` (srnn.config.ModelConfig), `sample_rate`, `labels`; the
    network itself is built on first use."""

    def __init__(self, ckpt):
        self.checkpoint, self._net = ckpt, None

    path = property(lambda self: self.checkpoint.path)
    config = property(lambda self: self.checkpoint.config)
    sample_rate = property(lambda self: self.config.sample_rate)
    labels = property(lambda self: self.config.labels)

    def __repr__(self):
        return f"<srnn.Model {self.path}: {self.config.describe()}, {self.sample_rate} Hz>"

    def _repr_html_(self):
        """Jupyter's view of the model: its file and its settings, one row each."""
        rows = [("file", self.path), ("sample rate", f"{self.sample_rate} Hz"),
                *json.loads(self.config.to_json()).items()]
        cells = "".join(f"<tr><td>{html.escape(str(k))}</td><td>{html.escape(str(v))}</td></tr>" for k, v in rows)
        return f"<table><caption>srnn.Model</caption>{cells}</table>"

    @property
    def network(self):
        """The Keras model (srnn.model.SampleRNN) with the file's weights; built on first use."""
        if self._net is None:
            from .model import SampleRNN  # the framework loads only now

            net = SampleRNN(self.config)
            checkpoint.apply_weights(self.checkpoint, net)
            self._net = net
        return self._net

    def request(self, seconds, n=1, temperature=1.0, seed=None, prime=None, label=None, argmax=False, rate=None,
                check_total=None):
        """The checked generation (srnn.generation.Request) that `generate` runs (seconds None:
        endless, a stream)."""
        return generation.request(self.config, seconds, n, temperature, label, prime, seed, argmax, rate,
                                  source=self.path, check_total=check_total)

    def sampler(self, sample_precision="auto", layout="auto"):
        """The compiled loop (srnn.sampler.Sampler) for these settings, checked as the flags are."""
        checks.choice("precision", sample_precision, precision.SAMPLE)
        checks.choice("layout", layout, generation.LAYOUTS)
        return self.network.sampler(precision=sample_precision, layout=layout)

    def generate(self, seconds, n=1, temperature=1.0, seed=None, prime=None, label=None, precision="auto",
                 layout="auto", scaling="peak", argmax=False, progress=None):
        """Generate `seconds` of audio for each of `n` sequences: float32 (sequences, samples), each
        row what `train_srnn.py --sample` writes to its WAV for the same arguments (before 16-bit
        rounding), the primer included.

        temperature: one, or one per sequence. seed: the default is --seed's (1337): the same seed,
        the same audio. prime: an audio file, or an array of samples at `sample_rate`; every
        sequence opens with it and continues it. label: a conditioned model's label or mixture
        (`"speech"`, `"speech:0.7,music:0.3"`), or one per sequence; None generates `n` of every
        label in turn (rows label by label, as the CLI's files). precision / layout: the sampler's
        weights (--sample-precision, --sample-layout). scaling: "peak" (silence at 0, the largest
        magnitude at 0.475), "fixed" (silence at 0, the levels' own scale: what `stream` gives) or
        "minmax" (the original's). argmax: the most likely level at each step (--debug 1).
        progress(what, done, total): called as the pieces come (seconds)."""
        from .quantize import to_audio

        checks.choice("scaling", scaling, SCALINGS)
        req = self.request(seconds, n, temperature, seed, prime, label, argmax)
        # the whole output in memory (the command line writes as it goes): levels, then the audio
        # in float64 and float32 (srnn.quantize.to_audio)
        memory.check(24 * req.total * (req.primer.size + req.n_samples), f"generating {req.total:,} x {seconds:g} s "
                     f"as arrays", "lower seconds or n, or generate with train_srnn.py --sample, which writes files")
        sampler = self.sampler(precision, layout)
        levels = np.concatenate([p for p, _ in generation.level_chunks(sampler, req, progress=progress)], axis=1)
        whole = np.concatenate([np.broadcast_to(req.primer, (req.total, req.primer.size)), levels], axis=1)
        c = self.config
        return np.stack([to_audio(row, c.qtype, c.q_levels, scaling=scaling) for row in whole]).astype(np.float32)

    def stream(self, seconds=None, n=1, temperature=1.0, seed=None, prime=None, label=None, precision="auto",
               layout="auto", argmax=False, chunk=generation.STREAM_CHUNK):
        """Generate audio as it is made: a generator of float32 chunks (sequences, k), k = `chunk`
        samples (the last of a fixed length may be shorter), for ever when `seconds` is None (stop
        by leaving the loop). The other arguments are `generate`'s; joined, the chunks equal
        `generate(..., scaling="fixed")`: the same levels, silence at zero and the levels' own
        scale (a stream cannot know its peak in advance), the primer first. Memory stays flat
        however long it runs; the arguments are checked here, before the first chunk is asked for.

            for chunk in model.stream(temperature=0.9):   # endless
                speaker.write(chunk[0])
        """
        checks.positive("chunk", chunk, is_whole=True)
        req = self.request(seconds, n, temperature, seed, prime, label, argmax)
        sampler = self.sampler(precision, layout)
        return generation.audio_chunks(sampler, req, int(chunk))

    def score(self, audio, label=None, precision="float32"):
        """Bits per sample of `audio` (samples at `sample_rate`, quantised as training quantises
        a part) under the model, teacher-forced from its initial state as training's first chunk
        is: the loss train_srnn.py reports, for this one signal (whole big frames of it)."""
        from .quantize import quantize

        x = np.asarray(audio)
        with np.errstate(over="ignore"):  # finite as the model reads it, in float32 (a float64 1e300 is not)
            finite = x.dtype.kind in "fiu" and np.all(np.isfinite(x.astype(np.float32)))
        if x.ndim != 1 or not finite:
            raise SrnnError(f"score: give a 1-D array of finite samples at {self.sample_rate} Hz (got shape {x.shape})")
        if x.size < self.config.big_frame:
            raise SrnnError(f"score: {x.size} sample(s) is less than one big frame ({self.config.big_frame}): "
                            f"give more")
        if self.labels and label is None:
            raise SrnnError(f"{self.path} is conditioned on labels ({', '.join(self.labels)}): give label=")
        # the label's weights as --label reads them (or its refusal, for a model without labels)
        (_, _, mix), = generation.sequences(self.config, 1, None if label is None else [label], self.path)
        mix = None if mix is None else mix[None]
        levels = quantize(x.astype(np.float32), self.config.qtype, self.config.q_levels)
        _, logp = self.sampler(precision, "auto").score(levels[None], mix=mix)
        return float(-np.mean(logp) / math.log(2))


def write_wav(path, audio, rate):
    """Write one sequence (a 1-D array in [-1, 1], e.g. a row of Model.generate's) as a 16-bit
    WAV, atomically: a temporary file renamed into place, never a half-written file."""
    from .audio import write_wav as write

    x = np.asarray(audio)
    if x.ndim != 1 or x.dtype.kind != "f" or not np.all(np.isfinite(x)):
        raise SrnnError(f"write_wav: give one sequence, a 1-D array of finite float samples in [-1, 1] (got "
                        f"{x.dtype} of shape {x.shape}); write each row of generate()'s output to its own file")
    if not isinstance(rate, numbers.Integral) or isinstance(rate, (bool, np.bool_)) or rate <= 0:
        raise SrnnError(f"write_wav: the rate must be a positive whole number of Hz, got {rate!r}")
    if rate > MAX_SAMPLE_RATE:
        raise SrnnError(f"write_wav: a WAV holds rates up to {MAX_SAMPLE_RATE} Hz, got {rate!r}")
    write(path, x, rate)


def play(audio, rate):
    """In Jupyter/IPython, a player for `audio` (one sequence, or rows played one after another),
    at its own level (no re-normalisation); IPython is an optional dependency."""
    try:
        from IPython.display import Audio
    except ImportError:
        raise SrnnError("play needs IPython (pip install ipython), as Jupyter has") from None
    return Audio(np.asarray(audio, np.float32).reshape(-1), rate=rate, normalize=False)


def train(exp="tiny", log=print, **options):
    """Train as `train_srnn.py --exp EXP ...` does, from Python: the options are
    srnn.options.TrainOptions' (`slowdim=32, dim=32, cutlen=512, batchsize=2`, `skip=True`,
    `frames=(8, 2)`, `load="x.h5"`, `audition=2, audition_seqs=1`), with the command's defaults,
    checks and files (EXP_srnn_szDIM_eN.h5, costs.png, ... in the current folder, or `out_dir`; the
    corpus in ./blizzard/EXP_parts, or `parts_root`). `log(line)` gets what the command prints
    (None: nothing). Returns the history: per-epoch `train_bits` and `valid_bits`, and
    `test_bits` of the best model."""
    import dataclasses

    from .fit import fit
    from .options import TrainOptions

    known = {f.name for f in dataclasses.fields(TrainOptions)}
    unknown = sorted(set(options) - known)
    if "sample" in unknown:
        raise SrnnError("srnn.train: sample is the command line's --sample; from Python: srnn.load(path).generate(...)")
    if unknown:
        raise SrnnError(f"srnn.train: unknown option(s) {', '.join(unknown)}: the options are srnn.options."
                        f"TrainOptions' fields ({', '.join(sorted(known))})")
    return fit(TrainOptions(exp=exp, **options), log=log or (lambda line: None))
