"""The two use cases behind train_srnn.py, between the parsed flags (srnn.cli) and the package:
a training run (the per-experiment defaults, what a checkpoint given to --load decides, the lock
and the cleanup of a killed run's temporaries, then srnn.training), and a generation to files (the
checks of its numbers, primer and outputs before the model loads, then srnn.sample). Nothing here
imports a deep-learning framework until every input has been checked."""
import dataclasses
import glob
import os
import shutil
import tempfile
import time

import numpy as np

from . import precision
from .engine import backend
from .config import ConfigError
from .errors import SrnnError, first_line


# Per-experiment defaults, as the original: `tiny` is its ~50 s demo, `all` Blizzard 2013 (~20 h).
# Any other name reads blizzard/NAME_parts and splits it by fractions: 80 % train, 10 % valid.
EXPERIMENTS = {
    "tiny": dict(nepochs=10, batchsize=2, trainstop=4, validstop=6),
    "all": dict(nepochs=3, batchsize=100, trainstop=8000, validstop=9000),
}
OTHER_EXPERIMENT = dict(nepochs=10, batchsize=2, trainstop=0.8, validstop=0.9)


def parse_frames(text):
    """`8,2` -> (8, 2); a one-line error for anything else."""
    try:
        frames = tuple(int(f) for f in text.replace(" ", "").split(","))
    except ValueError:
        raise SrnnError(f"--frames {text}: expected frame sizes in samples separated by commas, "
                        f"top tier first, e.g. --frames 8,2") from None
    return frames


def model_config(args, base):
    """The model's settings: each flag given, else `base`'s (the checkpoint's, or the defaults).
    A bad value or combination is a one-line error naming the flag."""
    from .config import ModelConfig

    pick = lambda flag, field=None: getattr(base, field or flag) if getattr(args, flag) is None \
        else getattr(args, flag)  # noqa: E731
    try:
        return ModelConfig(
            slowdim=pick("slowdim"), dim=pick("dim"), sample_rate=pick("samplerate", "sample_rate"),
            qtype=pick("qtype"), q_levels=pick("q_levels"), emb_size=pick("emb_size"),
            frames=base.frames if args.frames is None else parse_frames(args.frames),
            rnn=pick("rnn"), rnn_layers=pick("rnn_layers"), skip=pick("skip"),
            labels=base.labels,  # no flag: from the corpus (training) or the file
            sparse_block=base.sparse_block, sparsity=base.sparsity,  # the file's (training: sparse_config)
        )
    except ConfigError as e:
        raise SrnnError(str(e)) from None


def check_qtype_flag(args, ckpt):
    """The quantisation shapes no weight but is part of what a model learnt: it comes from the file."""
    if args.qtype and args.qtype != ckpt.config.qtype:
        raise SrnnError(f"{ckpt.path} was trained with --qtype {ckpt.config.qtype}, not {args.qtype}: "
                        f"leave --qtype out")


def train_command(args):
    from . import checkpoint
    from .batches import corpus_labels
    from .config import ModelConfig
    from .names import exp_parts_dir
    from .options import DEFAULT_SEED, TrainOptions, check_out_dir, prepare, preprocess_hint

    if args.distribute == "multiworker":
        from .distribute import require_tf_config

        require_tf_config()
    elif os.environ.get("TF_CONFIG"):  # left from a cluster job: it must not make this run a silent worker
        print(f"note: TF_CONFIG is set, but only --distribute multiworker reads it: this run trains alone "
              f"(--distribute {args.distribute})", flush=True)
    defaults = EXPERIMENTS.get(args.exp, OTHER_EXPERIMENT)
    pick = lambda flag: defaults[flag] if getattr(args, flag) is None else getattr(args, flag)  # noqa: E731
    ckpt = checkpoint.load(args.load) if args.load else None
    base = ckpt.config if ckpt else ModelConfig()
    if ckpt:
        check_qtype_flag(args, ckpt)
    cfg = model_config(args, base)
    trained = (ckpt.train if ckpt else None) or {}
    seed = args.seed if args.seed is not None else int(trained.get("seed", DEFAULT_SEED))
    stored = trained.get("precision", "float32")  # files written before --precision trained in float32
    if stored not in precision.TRAIN:
        raise SrnnError(f"{args.load} names an unknown training precision {stored!r}: the file is damaged; "
                        f"use another checkpoint")
    if args.precision and ckpt and args.precision != stored:
        print(f"note: {args.load} was trained in {stored}; training goes on in {args.precision}", flush=True)
    precision.check_distribute(args.precision or stored, args.distribute)
    precision.check_engine(args.precision or stored, backend())  # (--load's precision too, before any work)
    opts = TrainOptions(
        exp=args.exp, nepochs=pick("nepochs"), batchsize=pick("batchsize"),
        trainstop=pick("trainstop"), validstop=pick("validstop"), cutlen=args.cutlen,
        svepoch=args.svepoch, seed=seed, load=args.load, patience=args.patience,
        learning_rate=args.learning_rate, max_minutes=args.max_minutes, tensorboard=args.tensorboard,
        audition=args.audition, audition_seqs=args.nseqs or 2, audition_seconds=args.seconds, export=args.export,
        distribute=args.distribute, devices=[d.strip() for d in args.devices.split(",")] if args.devices else None,
        precision=args.precision or stored,
        prune_start=args.prune_start, prune_end=args.prune_end, scaling=args.scaling,
    )
    check_out_dir(opts)
    # the labels come from the corpus (prompts.txt's second column), unless --no-cond
    parts = exp_parts_dir(opts.exp, opts.parts_root)
    vocab = () if args.no_cond else corpus_labels(parts, hint=preprocess_hint(opts.exp, opts.parts_root))
    if ckpt and ckpt.config.labels != vocab:
        had = ", ".join(ckpt.config.labels) or "no labels"
        now = "--no-cond" if args.no_cond else f"{parts} has {', '.join(vocab) or 'no labels'}"
        raise SrnnError(f"{args.load} was trained on {had}, but {now}: train a new model, or give the corpus "
                        f"it was trained on")
    cfg = sparse_config(args, dataclasses.replace(cfg, labels=vocab), ckpt)
    opts.sparsity = args.sparsity if cfg.sparse_block else None  # None: no new schedule
    if ckpt:
        checkpoint.check_compatible(ckpt, cfg)
    splits = prepare(cfg, opts)  # data and folder problems surface before TensorFlow loads
    from . import names
    from .lock import exclusive

    # two runs of one experiment would overwrite each other's checkpoints
    with exclusive(names.train_lock(opts.out_dir, opts.exp, cfg.dim),
                   f"--exp {opts.exp} (its {names.checkpoint_name(opts.exp, cfg.dim, 'e*')} files)",
                   "choose another --exp or folder"):
        # a run killed while writing a checkpoint (or costs.png) leaves its hidden temporary file:
        # no one else can be writing those checkpoints now (the lock), so they go; costs.png is
        # the folder's, rewritten in a few milliseconds by whichever run ends an epoch, so a
        # temporary of it that is there now was left by a kill
        from .atomic import temporaries

        folder = glob.escape(opts.out_dir)
        stale = (temporaries(os.path.join(folder, names.checkpoint_name(glob.escape(opts.exp), cfg.dim, "*")))
                 + temporaries(os.path.join(folder, names.COSTS)))
        for path in stale:
            os.unlink(path)
        if stale:
            print(f"note: removed {len(stale)} temporary file(s) left by an interrupted run", flush=True)
        from .training import train

        train(cfg, opts, log=lambda m: print(m, flush=True), splits=splits, ckpt=ckpt)
    return 0


def sparse_config(args, cfg, ckpt):
    """The model's sparsity settings: --load's sparse checkpoint's blocks (its sparsity may rise,
    never fall), or --prune-block's (a new sparse model, or a dense checkpoint to prune)."""
    from .sparse import DEFAULT_BLOCK

    had = ckpt.config if ckpt else None
    if had is not None and had.sparse_block:
        target = float((ckpt.train or {}).get("sparsity_target", 0.0))
        if args.sparsity is not None and (args.sparsity < target or _lowers(ckpt, args.sparsity)):
            target = max(target, had.sparsity)
            raise SrnnError(f"{ckpt.path} is pruned towards sparsity {target:g} (reached {had.sparsity:g}): "
                            f"--sparsity {args.sparsity:g} would lower it; give at least {target:g}, or leave "
                            f"--sparsity out to go on with its schedule")
        if args.prune_block is not None and tuple(args.prune_block) != had.sparse_block:
            raise SrnnError(f"{ckpt.path} is pruned in {'x'.join(map(str, had.sparse_block))} blocks, not "
                            f"{'x'.join(map(str, args.prune_block))}: leave --prune-block out")
        return cfg
    if not args.sparsity:  # none, or 0: a dense model
        return cfg
    try:
        return dataclasses.replace(cfg, sparse_block=tuple(args.prune_block or DEFAULT_BLOCK), sparsity=0.0)
    except ConfigError as e:
        raise SrnnError(str(e)) from None


def _lowers(ckpt, sparsity):
    """Whether `sparsity` would give some pruned matrix of `ckpt` back blocks it has pruned (each
    rounds its own blocks, so the file's overall sparsity itself is not the bar)."""
    from .sparse import kept_blocks, kept_per_column, mask_suffixes

    for mask in mask_suffixes(ckpt.config).values():
        kept, n_blocks = kept_per_column(ckpt.weights[mask], ckpt.config.sparse_block, whole_blocks=True)
        if kept_blocks(n_blocks, sparsity) > kept:
            return True
    return False


def sample_command(args):
    from . import checkpoint, memory, names
    from .audio import stream_mono
    from .options import DEFAULT_SEED
    from .labels import describe_mix
    from .quantize import quantize

    args.nseqs = args.nseqs or 1
    temps = args.temperature
    if any(not 0 < t < float("inf") for t in temps):
        raise SrnnError(f"--temperature must be positive, got {' '.join(map(str, temps))}")
    per_sequence("--temperature", temps, args.nseqs)
    ckpt = checkpoint.load(args.sample)
    c = ckpt.config
    check_qtype_flag(args, ckpt)
    checkpoint.check_compatible(ckpt, model_config(args, c))
    rate = args.samplerate or c.sample_rate
    n = int(round(args.seconds * rate))
    if n < 1:
        raise SrnnError(f"--seconds={args.seconds:g} is less than one sample at {rate} Hz: ask for more")
    # checked before the sequences are listed: a list of 10^8 of them is itself gigabytes
    total = args.nseqs * (len(c.labels) if c.labels and not args.label else 1)
    memory.check(memory.generation_bytes(c, total, n), f"generating {total:,} x {args.seconds:g} s",
                 "lower --seconds or --nseqs")
    check_open_files(total)
    seqs = sequences(args, ckpt)
    assert len(seqs) == total, (len(seqs), total)  # the count checked above is the generation's and its files'
    temps = [temps[i % len(temps)] for _, i, _ in seqs]
    primer = np.zeros(0, np.int32)
    if args.prime:
        if os.path.isdir(args.prime):
            raise SrnnError(f"--prime {args.prime} is a folder: give an audio file")
        if not os.path.exists(args.prime):
            raise SrnnError(f"--prime {args.prime} not found: give an audio file")
        if not os.path.isfile(args.prime):  # a device (/dev/zero never ends) or a FIFO
            raise SrnnError(f"--prime {args.prime} is not a regular file: give an audio file")
        try:  # read in blocks and resampled as it comes: only the model-rate mono signal is held
            x = np.concatenate([np.zeros(0, np.float32), *stream_mono(args.prime, rate)])
        except Exception as e:
            raise SrnnError(f"--prime {args.prime} cannot be read as audio ({first_line(e)})") from None
        if x.size == 0 or not np.all(np.isfinite(x)):
            raise SrnnError(f"--prime {args.prime} holds no usable audio samples: give another file")
        primer = quantize(x, c.qtype, c.q_levels)
        del x
    if 2 * (len(primer) + n) > memory.WAV_LIMIT:  # 16-bit samples
        raise SrnnError(f"--seconds {args.seconds:g}{' with the primer' if primer.size else ''} is longer than a WAV "
                        f"file holds ({memory.WAV_LIMIT // 2 / rate / 3600:.0f} hours at {rate} Hz): ask for less")
    spool_bytes = 2 * total * (len(primer) + n)  # the levels wait on disk until the WAVs are written
    if spool_bytes > shutil.disk_usage(tempfile.gettempdir()).free:
        raise SrnnError(f"generating {total} x {args.seconds:g} s needs {spool_bytes / 2**30:,.1f} GB of "
                        f"temporary space in {tempfile.gettempdir()}, which has less: lower --seconds or --nseqs, "
                        f"or set TMPDIR to a larger disk")
    if not args.export:  # the outputs can be written: known before minutes of generating, not after
        outputs = [names.generated_name(i, args.nseqs, ext, label=name)
                   for name, i, _ in seqs for ext in (".wav", ".png")]
        from .atomic import check_outputs

        check_outputs(outputs)
        for out in outputs:  # the primer is the user's audio: never replaced by what it primes
            if args.prime and os.path.exists(out) and os.path.samefile(out, args.prime):
                raise SrnnError(f"--prime {args.prime} is {out}, which this run writes: copy or rename the primer")
    from .model import SampleRNN  # TensorFlow loads only now that the inputs are known to be good
    from .sample import Clip, write_clips

    model = SampleRNN(c)
    checkpoint.apply_weights(ckpt, model)
    if args.export:
        from .export import export

        mix = f", mix) with mix's columns the labels in {args.export}/{names.LABELS_FILE}" if c.labels else ")"
        print(f"exported {args.sample} to {export(model, args.export, args.scaling)}: "
              f"tf.saved_model.load(DIR).generate(n_seqs, n_samples, temperature, seed{mix}")
        return 0
    t0 = time.time()
    seed = DEFAULT_SEED if args.seed is None else args.seed
    sampler = model.sampler(precision=args.sample_precision, layout=args.sample_layout)
    say = Progress()
    start = None
    mix = np.stack([m for _, _, m in seqs]) if c.labels else None
    if primer.size:
        start = sampler.prime(primer, total, mix=mix,
                              progress=lambda done: done < len(primer) and say(
                                  f"primed {done / rate:.1f} of {len(primer) / rate:.1f} s"))
    what = f"{len(primer) / rate:.2f} s of primer + " if primer.size else ""
    clips, lines = [], []
    for (name, i, weights), temp in zip(seqs, temps):
        wav = names.generated_name(i, args.nseqs, label=name)
        label = f", label {describe_mix(weights, c.labels)}" if c.labels else ""
        clips.append(Clip(wav, f"{wav}: {what}{n / rate:.2f} s generated, T={temp:g}{label}"))
        lines.append(f"wrote {wav} ({what}{n / rate:.2f} s generated at {rate} Hz{label}) and its picture")
    took = None

    def generated():
        """The pieces as they come, saying how far a long generation is; the time it took."""
        nonlocal took
        done = 0
        for piece in sampler.pieces(total, n, temps, seed, bool(args.debug), start, mix=mix):
            yield piece
            done += piece[0].shape[1]
            if done < n:  # the end is said by the lines below
                say(f"generated {done / rate:.1f} of {n / rate:.1f} s")
        took = time.time() - t0

    write_clips(generated(), clips, c.qtype, c.q_levels, rate, primer, scaling=args.scaling)
    for line in lines:
        print(line)
    print(f"generated {total} x {n} samples from {args.sample} in {took:.1f} s "
          f"({total * n / took:,.0f} samples/s, compilation included; weights in "
          f"{sampler.weight_precision(total).describe()})")
    return 0


def check_open_files(total):
    """Each sequence waits in its own temporary file (srnn.sample.Spool) until its WAV is written."""
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    room = soft - 64  # what the process itself holds open (TensorFlow, the checkpoint, stdio)
    if soft != resource.RLIM_INFINITY and total > room:
        raise SrnnError(f"generating {total:,} sequences needs {total:,} temporary files open at once, more than the "
                        f"{soft:,} this process may open: lower --nseqs (or raise `ulimit -n`)")


def per_sequence(flag, values, nseqs):
    """A flag that takes one value for all sequences, or one per sequence."""
    if len(values) not in (1, nseqs):
        raise SrnnError(f"{flag} has {len(values)} values: give one, or one per sequence (--nseqs {nseqs})")


def sequences(args, ckpt):
    """What to generate: (label for the file name or None, index among --nseqs, label weights)
    per sequence. --label gives each of --nseqs sequences its label or mixture; a conditioned
    model without --label generates --nseqs of every label, named by label."""
    from .labels import one_hot, parse_mix

    vocab = ckpt.config.labels
    if args.label and not vocab:
        raise SrnnError(f"{ckpt.path} was trained without labels: leave --label out")
    if not vocab:
        return [(None, i, None) for i in range(args.nseqs)]
    if args.label:
        per_sequence("--label", args.label, args.nseqs)
        mixes = [parse_mix(text, vocab) for text in args.label]
        return [(None, i, mixes[i % len(mixes)]) for i in range(args.nseqs)]
    rows = one_hot(range(len(vocab)), len(vocab))
    return [(label, i, row) for label, row in zip(vocab, rows) for i in range(args.nseqs)]


class Progress:
    """Says how a long run goes, at most every `every` seconds (so not at all for a short one)."""

    def __init__(self, every=5.0):
        self.every, self.last = every, time.time()

    def __call__(self, text):
        if time.time() - self.last >= self.every:
            print(text, flush=True)
            self.last = time.time()
