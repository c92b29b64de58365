"""A generation, from what was asked for to audio: the request checked before any model loads
(its length or none, its sequences with their label weights and temperatures, its primer and its
seed), then run in chunks as it is generated (the primer read first, the compiled loop's calls,
the audio of each chunk).

Every way of generating goes through here: `--sample`'s files (srnn.commands, srnn.clips),
`srnn.Model.generate` and `Model.stream` (srnn.api), the live outputs (srnn.sinks, srnn.server),
--audition (srnn.watch); --export's SavedModel runs the same compiled loop in its graph. The checks
are the command line's and the API's alike (srnn.checks: the messages name Python's parameters,
the command line shows its flags). Checking loads no framework; running does (srnn.sampler)."""
import dataclasses
import os

import numpy as np

from . import checks, memory
from .checks import OptionError
from .errors import first_line
from .options import DEFAULT_SEED

LAYOUTS = ("auto", "dense", "sparse")  # --sample-layout: the pruned matrices' form in the sampler


@dataclasses.dataclass
class Request:
    """What to generate: `seqs` holds, per sequence, (its label for the file name or None, its
    index among `n_seqs`, its label weights or None); `temps` one temperature per sequence;
    `primer` the levels every sequence opens with; `n_samples` the new samples of each (None:
    endless, a stream's). `n_seqs` is the number asked for (Python's n, the command line's
    --nseqs), `total` the number generated (n_seqs of every label, for a conditioned model asked
    for none)."""
    config: object
    rate: int
    seconds: float
    n_samples: int
    n_seqs: int
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


def plain_request(config, n_seqs, n_samples, temperature=1.0, seed=0, argmax=False, primer=None, mix=None):
    """A Request from values the package itself holds (an audition, a test), unchecked: `mix`
    (n_seqs, n_labels) the label weights of a conditioned model's sequences, `primer` levels."""
    temps = np.broadcast_to(np.asarray(temperature, np.float64), (n_seqs,))
    seqs = [(None, i, None if mix is None else np.asarray(mix[i], np.float32)) for i in range(n_seqs)]
    primer = np.zeros(0, np.int32) if primer is None else np.asarray(primer, np.int32)
    return Request(config=config, rate=config.sample_rate, seconds=None if n_samples is None else n_samples
                   / config.sample_rate, n_samples=n_samples, n_seqs=n_seqs, seqs=seqs,
                   temps=[float(t) for t in temps], primer=primer, seed=int(seed), argmax=bool(argmax))


def _listed(value):
    """One value, or one per sequence, as a list."""
    return list(np.asarray(value, object).reshape(-1))  # (a NumPy scalar or 0-d array: one value)


def request(config, seconds, n=1, temperature=1.0, label=None, prime=None, seed=None, argmax=False,
            rate=None, source="the model", check_total=None):
    """The checked Request for a model of `config` (read from `source`, a path for the messages);
    a bad argument is an OptionError naming it (srnn.checks). `seconds`: the new audio of each
    sequence, None for endless (a stream). `label`: None (a conditioned model: `n` of every label,
    label by label), or a name or mixture (`speech:0.7,music:0.3`), or one per sequence. `prime`: a
    path to audio, or an array of samples at `rate` (the model's by default). `check_total(total)`
    is called once the number of sequences is known, before they are listed (the CLI's open-file
    limit)."""
    temps = _listed(temperature)
    labels = None if label is None else _listed(label)
    if seconds is not None:
        checks.positive("seconds", seconds)
    checks.positive("n", n, is_whole=True)
    checks.temperatures("temperature", temps, n)
    rate = rate or config.sample_rate
    n_samples = None if seconds is None else int(round(seconds * rate))
    if n_samples is not None and n_samples < 1:
        raise OptionError("seconds", f"{{seconds}}={seconds:g} is less than one sample at {rate} Hz: ask for more")
    # checked before the sequences are listed: a list of 10^8 of them is itself gigabytes
    total = n * (len(config.labels) if config.labels and not labels else 1)
    length = f"{seconds:g} s" if n_samples is not None else "a stream"
    memory.check(memory.generation_bytes(config, total, n_samples or STREAM_CHUNK), f"generating {total:,} x {length}",
                 "lower {seconds} or {n}", option="n")
    if check_total is not None:
        check_total(total)
    seqs = sequences(config, n, labels, source)
    assert len(seqs) == total, (len(seqs), total)  # the count checked above is the generation's
    primer = primer_levels(prime, config, rate)
    if n_samples is not None and 2 * (len(primer) + n_samples) > memory.WAV_LIMIT:  # 16-bit samples
        raise OptionError("seconds", f"{{seconds}} {seconds:g}{' with the primer' if primer.size else ''} is longer "
                                     f"than a WAV file holds ({memory.WAV_LIMIT // 2 / rate / 3600:.0f} hours at "
                                     f"{rate} Hz): ask for less")
    seed = DEFAULT_SEED if seed is None else checks.seed("seed", seed)
    return Request(config=config, rate=rate, seconds=seconds, n_samples=n_samples, n_seqs=n, seqs=seqs,
                   temps=[float(temps[i % len(temps)]) for _, i, _ in seqs], primer=primer, seed=seed,
                   argmax=bool(argmax))


def sequences(config, n_seqs, labels, source):
    """(label for the file name or None, index among n_seqs, label weights) per sequence. `labels`
    gives each of `n_seqs` sequences its label or mixture; a conditioned model without them
    generates `n_seqs` of every label, named by label."""
    from .labels import one_hot, parse_mix

    vocab = config.labels
    if labels and not vocab:
        raise OptionError("label", f"{checks.text(str(source))} was trained without labels: leave {{label}} out")
    if not vocab:
        return [(None, i, None) for i in range(n_seqs)]
    if labels:
        checks.per_sequence("label", labels, n_seqs)
        mixes = [parse_mix(str(text), vocab) for text in labels]
        return [(None, i, mixes[i % len(mixes)]) for i in range(n_seqs)]
    rows = one_hot(range(len(vocab)), len(vocab))
    return [(label, i, row) for label, row in zip(vocab, rows) for i in range(n_seqs)]


def primer_levels(prime, config, rate):
    """The primer's levels: none, an audio file (read in blocks and resampled to `rate` as it
    comes: only the model-rate mono signal is held) or an array of samples at `rate`."""
    from .quantize import quantize

    if prime is None:
        return np.zeros(0, np.int32)
    if isinstance(prime, (str, os.PathLike)):
        x = _read_primer(os.fspath(prime), rate)
        what, other = f"{{prime}} {checks.text(os.fspath(prime))}", "another file"
    else:
        x = np.asarray(prime)
        if x.ndim != 1 or x.dtype.kind not in "fiu":
            raise OptionError("prime", f"{{prime}}: give a file name or a 1-D array of samples at {rate} Hz (got an "
                                       f"array of shape {x.shape}, {x.dtype})")
        x = x.astype(np.float32)
        what, other = "{prime} (the array)", "finite samples"
    if x.size == 0 or not np.all(np.isfinite(x)):
        raise OptionError("prime", f"{what} holds no usable audio samples: give {other}")
    return quantize(x, config.qtype, config.q_levels)


def _read_primer(path, rate):
    from .audio import stream_mono

    shown = f"{{prime}} {checks.text(path)}"
    if os.path.isdir(path):
        raise OptionError("prime", f"{shown} is a folder: give an audio file")
    if not os.path.exists(path):
        raise OptionError("prime", f"{shown} not found: give an audio file")
    if not os.path.isfile(path):  # a device (/dev/zero never ends) or a FIFO
        raise OptionError("prime", f"{shown} is not a regular file: give an audio file")
    try:
        return np.concatenate([np.zeros(0, np.float32), *stream_mono(path, rate)])
    except Exception as e:
        raise OptionError("prime", f"{shown} cannot be read as audio ({checks.text(first_line(e))})") from None


# ---- a request run: the one path from a checked request to levels and audio, in chunks

STREAM_CHUNK = 4096  # samples per chunk of a stream (0.26 s at 16 kHz): the first sound comes after one
FRAME_COUNTER = 1 << 30  # big frames: an endless stream's draws are numbered modulo this (6 days at 16 kHz)


def level_chunks(sampler, req, chunk=None, progress=None):
    """The request's new levels as they are generated: (levels (total, k) int32, their
    log-probabilities (total, k)) in turn, the primer run through the model first. Each chunk is
    `chunk` samples (the last of a fixed length may be shorter), or with None the compiled calls'
    own pieces (memory.PIECE: a long generation's memory does not grow with its length); for ever
    when `req.n_samples` is None. The draws are numbered by big frame from the start, so the
    levels do not depend on the chunks. `progress(what, done, total)` after each chunk, `what`
    "primed" or "generated", in seconds (total None: endless). `sampler`: srnn.sampler.Sampler."""
    from .rule import Rule
    from .sampler import int32_seed, label_weights

    c, rate, n = sampler.model.cfg, req.rate, req.n_samples
    bf, primer = c.big_frame, req.primer
    if n is None and chunk is None:
        chunk = STREAM_CHUNK
    if primer.size:
        pad = (-len(primer)) % bf  # the silence the sampler puts before it
        start = sampler.prime(primer, req.total, mix=req.mix, progress=progress and (
            lambda done: progress("primed", min(max(done - pad, 0), len(primer)) / rate, len(primer) / rate)))
    else:
        start = sampler.initial(req.total)
    rule, fmt = Rule.of(req.temps, req.total, req.argmax), sampler.weight_precision(req.total)
    seed, mix = np.int32(int32_seed(req.seed)), label_weights(req.mix)
    per_call, room = memory.piece_frames(n or chunk, bf, chunk)
    frames = None if n is None else max(1, -(-n // bf))  # in all
    done, made, held = 0, 0, []  # frames run, samples given out, samples waiting for a whole chunk
    while frames is None or done < frames:
        count = per_call if frames is None else min(per_call, frames - done)
        levels, logp, start = sampler.run(np.int32(count), rule, seed, start, np.int32(done % FRAME_COUNTER), mix,
                                          fmt, room=room)
        keep = count * bf if n is None else min(count * bf, n - done * bf)
        done += count
        held.append((np.asarray(levels)[:, :keep], np.asarray(logp)[:, :keep]))
        last = frames is not None and done >= frames
        for piece in _whole_chunks(held, chunk, last):
            made += piece[0].shape[1]
            yield piece
            if progress:
                progress("generated", made / rate, None if n is None else n / rate)


def _whole_chunks(held, chunk, last):
    """The chunks of `chunk` samples that the pieces in `held` make (all of them when `last`), taken
    out of it; with chunk None each piece as it is."""
    if chunk is None:
        yield from held
        held.clear()
        return
    levels, logp = (np.concatenate(parts, axis=1) for parts in zip(*held))
    held.clear()
    whole = levels.shape[1] if last else levels.shape[1] // chunk * chunk
    for i in range(0, whole, chunk):
        yield levels[:, i:i + chunk], logp[:, i:i + chunk]
    if whole < levels.shape[1]:
        held.append((levels[:, whole:], logp[:, whole:]))


def audio_chunks(sampler, req, chunk=STREAM_CHUNK, progress=None):
    """The request's audio as it is generated, float32 (total, k) chunks with the fixed gain
    (srnn.quantize.scale_audio's `fixed`: a stream cannot know its peak in advance): the primer
    first, as it is (heard while the model reads it), then the new audio. Joined, the chunks are
    what the file of the same request holds with --scaling fixed."""
    from .quantize import to_audio

    c = req.config
    audio = lambda levels: to_audio(levels, c.qtype, c.q_levels, scaling="fixed")  # noqa: E731
    for i in range(0, req.primer.size, chunk):
        yield np.broadcast_to(audio(req.primer[i:i + chunk]), (req.total, len(req.primer[i:i + chunk])))
    for levels, _ in level_chunks(sampler, req, chunk, progress):
        yield audio(levels)


def generate_levels(sampler, n_seqs, n_samples, temperature=1.0, seed=0, argmax=False, primer=None, mix=None):
    """All of a generation's levels at once, for the package's own short ones (an audition, a test, a
    bench): `sampler` a srnn.sampler.Sampler (SampleRNN.sampler()), the other arguments
    plain_request's. Returns (levels (n_seqs, n_samples) int32, the log-probabilities of the chosen
    levels under the rule)."""
    req = plain_request(sampler.model.cfg, n_seqs, n_samples, temperature, seed, argmax, primer, mix)
    return tuple(np.concatenate(parts, axis=1) for parts in zip(*level_chunks(sampler, req)))
