"""The two use cases behind train_srnn.py, between the parsed flags (srnn.cli) and the library: a
training run (the flags as srnn.options.TrainOptions, then srnn.fit, which srnn.train runs too), and
a generation to files (srnn.api's model and srnn.generation's checked request, the outputs checked
before the model loads, then the WAVs and pictures; or, live, srnn.live). Nothing here imports a
deep-learning framework until every input has been checked."""
import dataclasses
import os
import shutil
import tempfile
import time

from .errors import SrnnError
from .fit import check_qtype, fit, model_config
from .options import TrainOptions


def train_options(args):
    """The parsed flags as the library's options (the flags are TrainOptions' names with dashes,
    but --nseqs and --seconds, which say how many clips of how long an audition makes)."""
    fields = {f.name for f in dataclasses.fields(TrainOptions)}
    values = {name: value for name, value in vars(args).items() if name in fields}
    return TrainOptions(**values, audition_seqs=args.nseqs, audition_seconds=args.seconds)


def train_command(args):
    fit(train_options(args), log=lambda message: print(message, flush=True))
    return 0


def sample_command(args):
    """--sample: the checks of the numbers, primer and outputs before the model loads (srnn.api and
    srnn.generation, as from Python), then the generation to WAVs and pictures (or, live, to a
    stream or a page: srnn.live)."""
    from . import api, checkpoint, checks, generation

    nseqs = 1 if args.nseqs is None else args.nseqs
    checks.temperatures("temperature", args.temperature, nseqs)  # (before the file is read, as ever)
    model = api.load(args.sample)
    check_qtype(args, model.checkpoint)
    checkpoint.check_compatible(model.checkpoint, model_config(args, model.config))
    live = args.stream is not None or args.serve is not None
    req = model.request(args.seconds, nseqs, args.temperature, args.seed, args.prime or None, args.label,
                        bool(args.debug), rate=args.samplerate or model.config.sample_rate,
                        check_total=None if live else check_open_files)
    if args.export:
        return export_command(args, model)
    if live:
        from . import live

        return (live.stream_command if args.stream is not None else live.serve_command)(args, model, req)
    check_spool_space(req)
    clips, lines = output_clips(args, req)
    sampler = model.sampler(args.sample_precision, args.sample_layout)  # (the framework loads, before the clock)
    t0, took = time.time(), []
    say = Progress()
    pieces = generation.level_chunks(sampler, req, progress=lambda what, done, total: done < total and say(
        f"{what} {done:.1f} of {total:.1f} s"))

    def timed():
        yield from pieces
        took.append(time.time() - t0)

    from .clips import write_clips

    c = model.config
    write_clips(timed(), clips, c.qtype, c.q_levels, req.rate, req.primer, scaling=args.scaling)
    for line in lines:
        print(line)
    total, n = req.total, req.n_samples
    print(f"generated {total} x {n} samples from {args.sample} in {took[0]:.1f} s "
          f"({total * n / took[0]:,.0f} samples/s, compilation included; weights in "
          f"{sampler.weight_precision(total).describe()})")
    return 0


def check_spool_space(req):
    """The levels wait on disk until the WAVs are written (srnn.clips.Spool): 2 bytes a sample."""
    spool_bytes = 2 * req.total * (len(req.primer) + req.n_samples)
    if spool_bytes > shutil.disk_usage(tempfile.gettempdir()).free:
        raise SrnnError(f"generating {req.total} x {req.seconds:g} s needs {spool_bytes / 2**30:,.1f} GB of "
                        f"temporary space in {tempfile.gettempdir()}, which has less: lower --seconds or --nseqs, "
                        f"or set TMPDIR to a larger disk")


def output_clips(args, req):
    """Each sequence's files (srnn.clips.Clip) and what is said of them once written; the outputs
    can be written (known before minutes of generating, not after) and none is the primer."""
    from . import names
    from .atomic import check_outputs
    from .labels import describe_mix
    from .clips import Clip

    outputs = [names.generated_name(i, req.n_seqs, ext, label=name)
               for name, i, _ in req.seqs for ext in (".wav", ".png")]
    check_outputs(outputs)
    for out in outputs:  # the primer is the user's audio: never replaced by what it primes
        if args.prime and os.path.exists(out) and os.path.samefile(out, args.prime):
            raise SrnnError(f"--prime {args.prime} is {out}, which this run writes: copy or rename the primer")
    rate, n, vocab = req.rate, req.n_samples, req.config.labels
    what = f"{len(req.primer) / rate:.2f} s of primer + " if req.primer.size else ""
    clips, lines = [], []
    for (name, i, weights), temp in zip(req.seqs, req.temps):
        wav = names.generated_name(i, req.n_seqs, label=name)
        label = f", label {describe_mix(weights, vocab)}" if vocab else ""
        clips.append(Clip(wav, f"{wav}: {what}{n / rate:.2f} s generated, T={temp:g}{label}"))
        lines.append(f"wrote {wav} ({what}{n / rate:.2f} s generated at {rate} Hz{label}) and its picture")
    return clips, lines


def export_command(args, model):
    """--sample FILE --export DIR: the model as a SavedModel with a compiled generate()."""
    from . import names
    from .export import export

    mix = f", mix) with mix's columns the labels in {args.export}/{names.LABELS_FILE}" if model.labels else ")"
    print(f"exported {args.sample} to {export(model.network, args.export, args.scaling)}: "
          f"tf.saved_model.load(DIR).generate(n_seqs, n_samples, temperature, seed{mix}")
    return 0


def check_open_files(total):
    """Each sequence waits in its own temporary file (srnn.clips.Spool) until its WAV is written."""
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    room = soft - 64  # what the process itself holds open (TensorFlow, the checkpoint, stdio)
    if soft != resource.RLIM_INFINITY and total > room:
        raise SrnnError(f"generating {total:,} sequences needs {total:,} temporary files open at once, more than the "
                        f"{soft:,} this process may open: lower --nseqs (or raise `ulimit -n`)")


class Progress:
    """Says how a long run goes, at most every `every` seconds (so not at all for a short one)."""

    def __init__(self, every=5.0):
        self.every, self.last = every, time.time()

    def __call__(self, text):
        if time.time() - self.last >= self.every:
            print(text, flush=True)
            self.last = time.time()
