"""The two use cases behind train_srnn.py, between the parsed flags (srnn.cli) and the package:
a training run (the per-experiment defaults, what a checkpoint given to --load decides, the lock
and the cleanup of a killed run's temporaries, then srnn.training; srnn.train from Python runs the
same), and a generation to files (srnn.api's model and its checked request, the outputs checked
before the model loads, then the WAVs and pictures). Nothing here imports a deep-learning framework
until every input has been checked."""
import contextlib
import dataclasses
import glob
import os
import shutil
import tempfile
import time

from . import precision
from .engine import backend, features
from .config import ConfigError
from .errors import SrnnError


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
    train_run(args, log=lambda message: print(message, flush=True))
    return 0


def train_run(args, log=print):
    """A training run from the parsed flags: the per-experiment defaults, what --load's checkpoint
    decides, the corpus's labels, the lock and the cleanup of a killed run's temporaries, then
    srnn.training. Returns the history (srnn.training.Trainer.history)."""
    from .batches import corpus_labels
    from .names import exp_parts_dir
    from .options import check_out_dir, prepare, preprocess_hint

    check_cluster(args, log)
    ckpt, cfg, stored = from_load(args, log)
    opts = train_options(args, ckpt, stored)
    if not process_zero(args):  # a cluster's other processes write nothing: no folders for what they never write
        opts = dataclasses.replace(opts, tensorboard=None, audition=0, export=None)
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
        from . import checkpoint

        checkpoint.check_compatible(ckpt, cfg)
    splits = prepare(cfg, opts)  # data and folder problems surface before TensorFlow loads
    chief = process_zero(args)
    from . import names
    from .lock import exclusive

    # two runs of one experiment would overwrite each other's checkpoints (a cluster's: process 0's,
    # taken before the processes meet, so that a refusal leaves the others no started runtime)
    with exclusive(names.train_lock(opts.out_dir, opts.exp, cfg.dim),
                   f"--exp {opts.exp} (its {names.checkpoint_name(opts.exp, cfg.dim, 'e*')} files)",
                   "choose another --exp or folder") if chief else contextlib.nullcontext():
        if chief:
            remove_temporaries(opts, cfg, log)
        joined = join_cluster(args, opts, splits, log) if jax_cluster(args) else None
        from .training import train

        return train(cfg, opts, log=log, splits=splits, ckpt=ckpt, cluster=joined)


def jax_cluster(args):
    """Whether this run's processes meet through srnn.cluster (the JAX engine's multi-worker runs)."""
    return args.distribute == "multiworker" and features().uses_srnn_cluster


def process_zero(args):
    """Whether this process writes the run's files: the only one, or a cluster's chief."""
    if jax_cluster(args):
        from .cluster import from_env

        return from_env().chief
    from .distribute import is_chief

    return is_chief(args.distribute)


def check_cluster(args, log):
    if jax_cluster(args):
        from .cluster import from_env

        from_env()  # a wrong variable is one line before any work
        if args.devices:
            raise SrnnError("--devices is for --distribute mirrored; a multi-worker run uses each process's devices")
    elif args.distribute == "multiworker":
        from .distribute import require_tf_config

        require_tf_config()
    elif os.environ.get("TF_CONFIG"):  # left from a cluster job: it must not make this run a silent worker
        log(f"note: TF_CONFIG is set, but only --distribute multiworker reads it: this run trains alone "
            f"(--distribute {args.distribute})")


def join_cluster(args, opts, splits, log):
    """JAX's --distribute multiworker: the processes meet (srnn.cluster), JAX's runtime starts,
    each process's feeders take its rows. Returns the cluster (srnn.cluster.Cluster)."""
    from . import cluster

    joined = cluster.from_env()
    for feed in (splits.train, splits.valid):
        feed.shard(joined.index, joined.count)
    if joined.chief:
        log(f"multiworker: waiting for {joined.count - 1} other process(es) at {joined.coordinator} "
            f"(--cluster-timeout {args.cluster_timeout:g} s)")
    cluster.meet(joined, args.cluster_timeout)
    from .engine import load

    devices, here = load().start_cluster(joined, args.cluster_timeout)
    if devices != here * joined.count:  # each process feeds batchsize / processes rows
        raise SrnnError(f"the cluster's processes have different numbers of devices ({devices} in all, {here} here): "
                        f"give each process as many (e.g. CUDA_VISIBLE_DEVICES)")
    if opts.batchsize % devices:
        raise SrnnError(f"--batchsize {opts.batchsize} does not split over the cluster's {devices} devices: use a "
                        f"multiple of {devices}")
    return joined


def from_load(args, log):
    """--load's checkpoint (or None), the model's settings (each flag given, else the file's or the
    defaults) and the precision the file was trained in."""
    from . import checkpoint
    from .config import ModelConfig

    ckpt = checkpoint.load(args.load) if args.load else None
    base = ckpt.config if ckpt else ModelConfig()
    if ckpt:
        check_qtype_flag(args, ckpt)
    cfg = model_config(args, base)
    stored = ((ckpt.train if ckpt else None) or {}).get("precision", "float32")  # older files: float32
    if stored not in precision.TRAIN:
        raise SrnnError(f"{args.load} names an unknown training precision {stored!r}: the file is damaged; "
                        f"use another checkpoint")
    if args.precision and ckpt and args.precision != stored:
        log(f"note: {args.load} was trained in {stored}; training goes on in {args.precision}")
    precision.check_distribute(args.precision or stored, args.distribute)
    precision.check_engine(args.precision or stored, backend())  # (--load's precision too, before any work)
    return ckpt, cfg, stored


def train_options(args, ckpt, stored):
    """The run's options (srnn.options.TrainOptions): the flags, the experiment's defaults, the
    file's seed."""
    from .options import DEFAULT_SEED, TrainOptions

    defaults = EXPERIMENTS.get(args.exp, OTHER_EXPERIMENT)
    pick = lambda flag: defaults[flag] if getattr(args, flag) is None else getattr(args, flag)  # noqa: E731
    trained = (ckpt.train if ckpt else None) or {}
    seed = args.seed if args.seed is not None else int(trained.get("seed", DEFAULT_SEED))
    return TrainOptions(
        exp=args.exp, nepochs=pick("nepochs"), batchsize=pick("batchsize"),
        trainstop=pick("trainstop"), validstop=pick("validstop"), cutlen=args.cutlen,
        svepoch=args.svepoch, seed=seed, load=args.load, patience=args.patience,
        learning_rate=args.learning_rate, max_minutes=args.max_minutes, tensorboard=args.tensorboard,
        audition=args.audition, audition_seqs=args.nseqs or 2, audition_seconds=args.seconds, export=args.export,
        distribute=args.distribute, devices=[d.strip() for d in args.devices.split(",")] if args.devices else None,
        precision=args.precision or stored,
        prune_start=args.prune_start, prune_end=args.prune_end, scaling=args.scaling,
    )


def remove_temporaries(opts, cfg, log):
    """A run killed while writing a checkpoint (or costs.png) leaves its hidden temporary file: no
    one else can be writing those checkpoints now (the caller holds the lock), so they go;
    costs.png is the folder's, rewritten in a few milliseconds by whichever run ends an epoch, so
    a temporary of it that is there now was left by a kill."""
    from . import names
    from .atomic import temporaries

    folder = glob.escape(opts.out_dir)
    stale = (temporaries(os.path.join(folder, names.checkpoint_name(glob.escape(opts.exp), cfg.dim, "*")))
             + temporaries(os.path.join(folder, names.COSTS)))
    for path in stale:
        os.unlink(path)
    if stale:
        log(f"note: removed {len(stale)} temporary file(s) left by an interrupted run")


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
    """--sample: the checks of the numbers, primer and outputs before the model loads (srnn.api and
    srnn.generation, as from Python), then the generation to WAVs and pictures (or, live, to a
    stream or a page: srnn.live)."""
    from . import api, generation

    nseqs = args.nseqs or 1
    generation.check_temperatures(args.temperature, nseqs)  # (before the file is read, as ever)
    from . import checkpoint

    # the file's values are checked when they reach the model (apply_weights), after every argument,
    # as ever: srnn.load checks them at once
    model = api.Model(checkpoint.load(args.sample))
    check_qtype_flag(args, model.checkpoint)
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

    outputs = [names.generated_name(i, req.nseqs, ext, label=name)
               for name, i, _ in req.seqs for ext in (".wav", ".png")]
    check_outputs(outputs)
    for out in outputs:  # the primer is the user's audio: never replaced by what it primes
        if args.prime and os.path.exists(out) and os.path.samefile(out, args.prime):
            raise SrnnError(f"--prime {args.prime} is {out}, which this run writes: copy or rename the primer")
    rate, n, vocab = req.rate, req.n_samples, req.config.labels
    what = f"{len(req.primer) / rate:.2f} s of primer + " if req.primer.size else ""
    clips, lines = [], []
    for (name, i, weights), temp in zip(req.seqs, req.temps):
        wav = names.generated_name(i, req.nseqs, label=name)
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
