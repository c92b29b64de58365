"""A training run from its options (srnn.options.TrainOptions), for `srnn.train(...)` and
`train_srnn.py` alike: the options checked, what a checkpoint given to `load` decides, the
experiment's defaults, the corpus's labels, the model's sparsity, the lock and a killed run's
temporaries, a cluster's meeting, then srnn.training. Nothing here imports a deep-learning
framework until every input has been checked."""
import contextlib
import dataclasses
import glob
import os

from . import checkpoint, checks, names, precision
from .checks import OptionError
from .config import ConfigError, ModelConfig
from .engine import backend, features
from .errors import SrnnError
from .options import TrainOptions, check_out_dir, prepare, preprocess_hint


def fit(opts, log=print):
    """Train as `opts` says (a TrainOptions; it is not changed); returns the history: per-epoch
    `train_bits` and `valid_bits`, and `test_bits` of the best model. `log(line)` gets what the
    run says."""
    from .batches import corpus_labels

    opts = dataclasses.replace(opts).check()
    check_cluster(opts, log)
    ckpt, cfg = from_load(opts, log)
    opts = resolved(opts, ckpt)
    if not process_zero(opts):  # a cluster's other processes write nothing: no folders for what they never write
        opts = dataclasses.replace(opts, tensorboard=None, audition=0, export=None)
    check_out_dir(opts)
    # the labels come from the corpus (prompts.txt's second column), unless no_cond
    parts = names.exp_parts_dir(opts.exp, opts.parts_root)
    vocab = () if opts.no_cond else corpus_labels(parts, hint=preprocess_hint(opts.exp, opts.parts_root))
    if ckpt and ckpt.config.labels != vocab:
        had = checks.text(", ".join(ckpt.config.labels) or "no labels")
        now = "{no_cond}" if opts.no_cond else checks.text(f"{parts} has {', '.join(vocab) or 'no labels'}")
        raise OptionError("load", f"{checks.text(opts.load)} was trained on {had}, but {now}: train a new model, or "
                                  f"give the corpus it was trained on")
    cfg = sparse_config(opts, dataclasses.replace(cfg, labels=vocab), ckpt)
    opts.sparsity = opts.sparsity if cfg.sparse_block else None  # None: no new schedule
    if ckpt:
        checkpoint.check_compatible(ckpt, cfg)
    splits = prepare(cfg, opts)  # data and folder problems surface before the framework loads
    chief = process_zero(opts)
    from .lock import exclusive

    # two runs of one experiment would overwrite each other's checkpoints (a cluster's: process 0's,
    # taken before the processes meet, so that a refusal leaves the others no started runtime)
    with exclusive(names.train_lock(opts.out_dir, opts.exp, cfg.dim),
                   f"--exp {opts.exp} (its {names.checkpoint_name(opts.exp, cfg.dim, 'e*')} files)",
                   "choose another --exp or folder") if chief else contextlib.nullcontext():
        if chief:
            remove_temporaries(opts, cfg, log)
        joined = join_cluster(opts, splits, log) if meets_through_srnn(opts) else None
        from .training import train

        return train(cfg, opts, log=log, splits=splits, ckpt=ckpt, cluster=joined)


def model_config(given, base):
    """The model's settings: each architecture option `given` (TrainOptions, or the command line's
    parsed flags), else `base`'s (the checkpoint's, or the defaults). A bad value or combination
    is a one-line error naming the flag."""
    from .options import parse_frames

    def pick(name, field=None):
        return getattr(base, field or name) if getattr(given, name) is None else getattr(given, name)

    try:
        return ModelConfig(
            slowdim=pick("slowdim"), dim=pick("dim"), sample_rate=pick("samplerate", "sample_rate"),
            qtype=pick("qtype"), q_levels=pick("q_levels"), emb_size=pick("emb_size"),
            frames=base.frames if given.frames is None else parse_frames(given.frames),
            rnn=pick("rnn"), rnn_layers=pick("rnn_layers"), skip=pick("skip"),
            labels=base.labels,  # not an option: from the corpus (training) or the file
            sparse_block=base.sparse_block, sparsity=base.sparsity,  # the file's (training: sparse_config)
        )
    except ConfigError as e:
        raise SrnnError(str(e)) from None


def check_qtype(given, ckpt):
    """The quantisation shapes no weight but is part of what a model learnt: it comes from the file."""
    if given.qtype and given.qtype != ckpt.config.qtype:
        raise OptionError("qtype", f"{checks.text(ckpt.path)} was trained with {{qtype}} {ckpt.config.qtype}, not "
                                   f"{given.qtype}: leave {{qtype}} out")


def from_load(opts, log):
    """`load`'s checkpoint (or None), and the model's settings (each option given, else the file's
    or the defaults); the precision checked against the engine and --distribute."""
    ckpt = checkpoint.load(opts.load) if opts.load else None
    base = ckpt.config if ckpt else ModelConfig()
    if ckpt:
        check_qtype(opts, ckpt)
    cfg = model_config(opts, base)
    stored = trained_precision(ckpt)
    if opts.precision and ckpt and opts.precision != stored:
        log(f"note: {opts.load} was trained in {stored}; training goes on in {opts.precision}")
    precision.check_distribute(opts.precision or stored, opts.distribute)
    precision.check_engine(opts.precision or stored, backend())  # (load's precision too, before any work)
    return ckpt, cfg


def trained_precision(ckpt):
    """The precision a checkpoint was trained in (float32 for none, and for older files)."""
    stored = ((ckpt.train if ckpt else None) or {}).get("precision", "float32")
    if stored not in precision.TRAIN:
        raise SrnnError(f"{ckpt.path} names an unknown training precision {stored!r}: the file is damaged; "
                        f"use another checkpoint")
    return stored


def resolved(opts, ckpt):
    """The options with every default filled in: the checkpoint's seed and precision, then the
    experiment's and the package's (TrainOptions.with_defaults)."""
    trained = (ckpt.train if ckpt else None) or {}
    from_file = {}
    if opts.seed is None and "seed" in trained:
        from_file["seed"] = int(trained["seed"])
    if opts.precision is None and ckpt is not None:
        from_file["precision"] = trained_precision(ckpt)
    return dataclasses.replace(opts, **from_file).with_defaults()


def meets_through_srnn(opts):
    """Whether this run's processes meet through srnn.cluster (the JAX engine's multi-worker runs)."""
    return opts.distribute == "multiworker" and features().uses_srnn_cluster


def process_zero(opts):
    """Whether this process writes the run's files: the only one, or a cluster's chief."""
    if meets_through_srnn(opts):
        from .cluster import from_env

        return from_env().chief
    from .distribute import is_chief

    return is_chief(opts.distribute)


def check_cluster(opts, log):
    if meets_through_srnn(opts):
        from .cluster import from_env

        from_env()  # a wrong variable is one line before any work
        if opts.devices:
            raise OptionError("devices", "{devices} is for {distribute} mirrored; a multi-worker run uses each "
                                         "process's devices")
    elif opts.distribute == "multiworker":
        from .distribute import require_tf_config

        require_tf_config()
    elif os.environ.get("TF_CONFIG"):  # left from a cluster job: it must not make this run a silent worker
        log(f"note: TF_CONFIG is set, but only --distribute multiworker reads it: this run trains alone "
            f"(--distribute {opts.distribute})")


def join_cluster(opts, splits, log):
    """A multi-worker run on an engine whose processes meet through srnn.cluster: they meet, the
    engine's runtime starts, each process's feeders take its rows. Returns the cluster."""
    from . import cluster

    joined = cluster.from_env()
    for feed in (splits.train, splits.valid):
        feed.shard(joined.index, joined.count)
    if joined.chief:
        log(f"multiworker: waiting for {joined.count - 1} other process(es) at {joined.coordinator} "
            f"(--cluster-timeout {opts.cluster_timeout:g} s)")
    cluster.meet(joined, opts.cluster_timeout)
    from .engine import module

    devices, here = module().start_cluster(joined, opts.cluster_timeout)
    if devices != here * joined.count:  # each process feeds batchsize / processes rows
        raise SrnnError(f"the cluster's processes have different numbers of devices ({devices} in all, {here} here): "
                        f"give each process as many (e.g. CUDA_VISIBLE_DEVICES)")
    if opts.batchsize % devices:
        raise OptionError("batchsize", f"{{batchsize}} {opts.batchsize} does not split over the cluster's {devices} "
                                       f"devices: use a multiple of {devices}")
    return joined


def remove_temporaries(opts, cfg, log):
    """A run killed while writing a checkpoint (or costs.png) leaves its hidden temporary file: no
    one else can be writing those checkpoints now (the caller holds the lock), so they go;
    costs.png is the folder's, rewritten in a few milliseconds by whichever run ends an epoch, so
    a temporary of it that is there now was left by a kill."""
    from .atomic import temporaries

    folder = glob.escape(opts.out_dir)
    stale = (temporaries(os.path.join(folder, names.checkpoint_name(glob.escape(opts.exp), cfg.dim, "*")))
             + temporaries(os.path.join(folder, names.COSTS)))
    for path in stale:
        os.unlink(path)
    if stale:
        log(f"note: removed {len(stale)} temporary file(s) left by an interrupted run")


def sparse_config(opts, cfg, ckpt):
    """The model's sparsity settings: `load`'s sparse checkpoint's blocks (its sparsity may rise,
    never fall), or prune_block's (a new sparse model, or a dense checkpoint to prune)."""
    from .sparse import DEFAULT_BLOCK

    had = ckpt.config if ckpt else None
    if had is not None and had.sparse_block:
        target = float((ckpt.train or {}).get("sparsity_target", 0.0))
        if opts.sparsity is not None and (opts.sparsity < target or _lowers(ckpt, opts.sparsity)):
            target = max(target, had.sparsity)
            raise OptionError("sparsity", f"{checks.text(ckpt.path)} is pruned towards sparsity {target:g} "
                                          f"(reached {had.sparsity:g}): {{sparsity}} {opts.sparsity:g} would lower "
                                          f"it; give at least {target:g}, or leave {{sparsity}} out to go on with its "
                                          f"schedule")
        if opts.prune_block is not None and tuple(opts.prune_block) != had.sparse_block:
            block = "x".join(map(str, had.sparse_block))
            raise OptionError("prune_block", f"{checks.text(ckpt.path)} is pruned in {block} blocks, not "
                                             f"{'x'.join(map(str, opts.prune_block))}: leave {{prune_block}} out")
        return cfg
    if not opts.sparsity:  # none, or 0: a dense model
        return cfg
    try:
        return dataclasses.replace(cfg, sparse_block=tuple(opts.prune_block or DEFAULT_BLOCK), sparsity=0.0)
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


__all__ = ["fit", "TrainOptions"]
