"""A training run's options, and the checks that need no model: they run before TensorFlow is
imported, so a bad flag or a missing file is reported at once."""
import dataclasses
import os
import sys

from . import memory, names
from .atomic import check_new_folder, require_writable
from .batches import prepare_splits
from .errors import SrnnError


DEFAULT_SEED = 1337  # the original seeded NumPy with 1337: runs are reproducible by default
SEED_LIMIT = 2 ** 32  # seeds lie in [0, 2^32): what NumPy and keras.utils.set_random_seed take


def check_seed(seed, flag="--seed"):
    """A seed the whole run can use (training seeds Keras and NumPy with it, sampling the engine's
    counter-based draws): one line now, not a traceback later."""
    if not 0 <= seed < SEED_LIMIT:
        raise SrnnError(f"{flag}={seed} must lie between 0 and {SEED_LIMIT - 1}")
    return seed


LEARNING_RATE = 1e-3  # Adam's, as the original


@dataclasses.dataclass
class TrainOptions:
    exp: str
    nepochs: int
    batchsize: int
    trainstop: float
    validstop: float
    cutlen: int
    svepoch: int = -1
    seed: int = DEFAULT_SEED
    load: str = None
    patience: int = 0  # stop after this many epochs without a better validation loss; 0: never
    learning_rate: float = None  # None: LEARNING_RATE, or the checkpoint's with --load
    max_minutes: float = None  # stop after the epoch during which this much training time has passed
    tensorboard: str = None  # folder for TensorBoard event files
    audition: int = 0  # generate clips after every this many epochs; 0: never
    audition_seqs: int = 2
    audition_seconds: float = 4.0
    export: str = None  # after training, write the best epoch's model as a SavedModel here
    parts_root: str = names.PARTS_ROOT
    out_dir: str = "."
    xla: bool = None  # None: chosen by model size
    distribute: str = "none"  # none | mirrored | multiworker (srnn.distribute)
    devices: list = None  # for mirrored: device names; None: all local GPUs (or the CPU)
    precision: str = "float32"  # float32 | mixed_bfloat16 | mixed_float16 (srnn.precision)
    sparsity: float = None  # --sparsity: the target of a new pruning schedule (srnn.sparse); None: none
    prune_start: int = None  # its first and last optimizer steps, counted from now; None: the defaults
    prune_end: int = None
    scaling: str = "peak"  # of the audition clips and the export's audio (srnn.quantize.SCALINGS)


def prepare(cfg, opts):
    """Everything that can be wrong with the data or the output folder, checked before a model is
    built: returns the Splits. (The CLI calls this before it imports TensorFlow.)"""
    check_out_dir(opts)
    splits = prepare_splits(
        names.exp_parts_dir(opts.exp, opts.parts_root), opts.trainstop, opts.validstop, opts.batchsize,
        opts.cutlen, cfg, hint=preprocess_hint(opts.exp, opts.parts_root),
        warn=lambda m: print(m, file=sys.stderr),
    )
    memory.check(memory.training_bytes(cfg, opts.batchsize, splits.train.cutlen),
                 f"training a model of {cfg.count_params():,} parameters with batch {opts.batchsize} and cutlen "
                 f"{splits.train.cutlen}", "lower --dim/--slowdim, --batchsize or --cutlen")
    if opts.audition:  # checked now, not after the first epoch's training
        n = audition_length(cfg, opts.audition_seconds)
        memory.check(memory.audition_bytes(cfg, opts.audition_seqs, n),
                     f"auditioning {opts.audition_seqs:,} x {opts.audition_seconds:g} s", "lower --seconds or --nseqs")
        writable_folder(os.path.join(opts.out_dir, names.samples_dir(opts.exp)), "audition clips",
                        "remove what is in its place or choose another --exp")
    if opts.tensorboard:
        writable_folder(opts.tensorboard, "TensorBoard event files", "choose another --tensorboard folder")
    if opts.export:
        check_new_folder(opts.export, "--export")
    # `--exp sub/x` names checkpoints sub/x_srnn_...: make that folder now, not at the first save
    writable_folder(os.path.dirname(os.path.join(opts.out_dir, names.checkpoint_name(opts.exp, cfg.dim, 0))),
                    f"the checkpoints of --exp {opts.exp}", "choose another --exp")
    return splits


def audition_length(cfg, seconds):
    """Samples in one audition clip (at least one)."""
    return max(1, int(round(seconds * cfg.sample_rate)))


def check_out_dir(opts):
    """Checkpoints can be written where training writes them (the first check of a run)."""
    require_writable(opts.out_dir, "checkpoints", "run from a writable folder")


def preprocess_hint(exp, parts_root=names.PARTS_ROOT):
    """What to do when an experiment's parts are missing."""
    return f"run `python preprocess.py {os.path.join(parts_root, exp)}` first"


def writable_folder(folder, what, hint):
    """Make `folder` if it is missing and check that `what` can be written in it, before any work."""
    try:
        os.makedirs(folder or ".", exist_ok=True)
    except OSError as e:
        raise SrnnError(f"cannot make the folder {folder} for {what} ({e.strerror}): {hint}") from None
    require_writable(folder, what, hint)
