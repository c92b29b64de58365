"""A generation as asked for, checked before any model loads: its length, its sequences (each
one's label weights and temperature), its primer and its seed. The one place where `--sample`
(srnn.commands) and `srnn.Model.generate` (srnn.api) take their arguments apart, so that both
refuse the same things with the same words (the CLI's flags name them)."""
import dataclasses
import numbers
import os

import numpy as np

from . import memory
from .errors import SrnnError, first_line

LAYOUTS = ("auto", "dense", "sparse")  # --sample-layout: the pruned matrices' form in the sampler


@dataclasses.dataclass
class Request:
    """What to generate: `seqs` holds, per sequence, (its label for the file name or None, its
    index among `nseqs`, its label weights or None); `temps` one temperature per sequence;
    `primer` the levels every sequence opens with; `n_samples` the new samples of each."""
    config: object
    rate: int
    seconds: float
    n_samples: int
    nseqs: int
    seqs: list
    temps: list
    primer: np.ndarray
    seed: int
    argmax: bool = False

    @property
    def total(self):
        return len(self.seqs)

    @property
    def mix(self):
        """(total, n_labels) label weights, or None for a model without labels."""
        return np.stack([m for _, _, m in self.seqs]) if self.config.labels else None


def _listed(value):
    """One value, or one per sequence, as a list."""
    return list(np.asarray(value, object).reshape(-1))  # (a NumPy scalar or 0-d array: one value)


def per_sequence(flag, values, nseqs):
    """A flag that takes one value for all sequences, or one per sequence."""
    if len(values) not in (1, nseqs):
        raise SrnnError(f"{flag} has {len(values)} values: give one, or one per sequence (--nseqs {nseqs})")


def check_temperatures(temps, nseqs):
    if any(isinstance(t, (bool, np.bool_)) or not (isinstance(t, numbers.Real) and 0 < t < float("inf"))
           for t in temps):
        raise SrnnError(f"--temperature must be positive, got {' '.join(map(str, temps))}")
    per_sequence("--temperature", temps, nseqs)


def check_choice(flag, value, choices):
    """A setting argparse checks on the command line, checked the same way from Python."""
    if value not in choices:
        raise SrnnError(f"{flag} {value}: choose one of {', '.join(choices)}")


def _positive(flag, value, whole=False):
    if whole and (not isinstance(value, numbers.Integral) or isinstance(value, (bool, np.bool_))):
        raise SrnnError(f"{flag}={value} must be a whole number")
    if not isinstance(value, numbers.Real) or isinstance(value, (bool, np.bool_)) or not 0 < value < float("inf"):
        raise SrnnError(f"{flag}={value} must be positive and finite")


def request(config, seconds, nseqs=1, temperature=1.0, label=None, prime=None, seed=None, argmax=False,
            rate=None, source="the model", check_total=None):
    """The checked Request for a model of `config` (read from `source`, a path for the messages).
    `label`: None (a conditioned model: `nseqs` of every label, label by label), or a name or
    mixture (`speech:0.7,music:0.3`), or one per sequence. `prime`: a path to audio, or an array
    of samples at `rate` (the model's by default). `check_total(total)` is called once the number
    of sequences is known, before they are listed (the CLI's open-file limit)."""
    from .options import DEFAULT_SEED, check_seed

    temps = _listed(temperature)
    labels = None if label is None else _listed(label)
    _positive("--seconds", seconds)
    _positive("--nseqs", nseqs, whole=True)
    check_temperatures(temps, nseqs)
    rate = rate or config.sample_rate
    n = int(round(seconds * rate))
    if n < 1:
        raise SrnnError(f"--seconds={seconds:g} is less than one sample at {rate} Hz: ask for more")
    # checked before the sequences are listed: a list of 10^8 of them is itself gigabytes
    total = nseqs * (len(config.labels) if config.labels and not labels else 1)
    memory.check(memory.generation_bytes(config, total, n), f"generating {total:,} x {seconds:g} s",
                 "lower --seconds or --nseqs")
    if check_total is not None:
        check_total(total)
    seqs = sequences(config, nseqs, labels, source)
    assert len(seqs) == total, (len(seqs), total)  # the count checked above is the generation's
    primer = primer_levels(prime, config, rate)
    if 2 * (len(primer) + n) > memory.WAV_LIMIT:  # 16-bit samples
        raise SrnnError(f"--seconds {seconds:g}{' with the primer' if primer.size else ''} is longer than a WAV "
                        f"file holds ({memory.WAV_LIMIT // 2 / rate / 3600:.0f} hours at {rate} Hz): ask for less")
    if seed is not None and (not isinstance(seed, numbers.Integral) or isinstance(seed, bool)):
        raise SrnnError(f"--seed={seed} must be a whole number")
    seed = DEFAULT_SEED if seed is None else check_seed(int(seed))
    return Request(config=config, rate=rate, seconds=seconds, n_samples=n, nseqs=nseqs, seqs=seqs,
                   temps=[float(temps[i % len(temps)]) for _, i, _ in seqs], primer=primer, seed=seed,
                   argmax=bool(argmax))


def sequences(config, nseqs, labels, source):
    """(label for the file name or None, index among nseqs, label weights) per sequence. `labels`
    gives each of `nseqs` sequences its label or mixture; a conditioned model without them
    generates `nseqs` of every label, named by label."""
    from .labels import one_hot, parse_mix

    vocab = config.labels
    if labels and not vocab:
        raise SrnnError(f"{source} was trained without labels: leave --label out")
    if not vocab:
        return [(None, i, None) for i in range(nseqs)]
    if labels:
        per_sequence("--label", labels, nseqs)
        mixes = [parse_mix(str(text), vocab) for text in labels]
        return [(None, i, mixes[i % len(mixes)]) for i in range(nseqs)]
    rows = one_hot(range(len(vocab)), len(vocab))
    return [(label, i, row) for label, row in zip(vocab, rows) for i in range(nseqs)]


def primer_levels(prime, config, rate):
    """The primer's levels: none, an audio file (read in blocks and resampled to `rate` as it
    comes: only the model-rate mono signal is held) or an array of samples at `rate`."""
    from .quantize import quantize

    if prime is None:
        return np.zeros(0, np.int32)
    if isinstance(prime, (str, os.PathLike)):
        x = _read_primer(os.fspath(prime), rate)
        what, other = f"--prime {os.fspath(prime)}", "another file"
    else:
        x = np.asarray(prime)
        if x.ndim != 1 or x.dtype.kind not in "fiu":
            raise SrnnError(f"prime: give a file name or a 1-D array of samples at {rate} Hz (got an array of "
                            f"shape {x.shape}, {x.dtype})")
        x = x.astype(np.float32)
        what, other = "prime (the array)", "finite samples"
    if x.size == 0 or not np.all(np.isfinite(x)):
        raise SrnnError(f"{what} holds no usable audio samples: give {other}")
    return quantize(x, config.qtype, config.q_levels)


def _read_primer(path, rate):
    from .audio import stream_mono

    if os.path.isdir(path):
        raise SrnnError(f"--prime {path} is a folder: give an audio file")
    if not os.path.exists(path):
        raise SrnnError(f"--prime {path} not found: give an audio file")
    if not os.path.isfile(path):  # a device (/dev/zero never ends) or a FIFO
        raise SrnnError(f"--prime {path} is not a regular file: give an audio file")
    try:
        return np.concatenate([np.zeros(0, np.float32), *stream_mono(path, rate)])
    except Exception as e:
        raise SrnnError(f"--prime {path} cannot be read as audio ({first_line(e)})") from None
