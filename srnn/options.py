"""A training run's options: one dataclass with the defaults and the checks, for `srnn.train(...)` and
`train_srnn.py` alike (the command line parses its flags into it), and the checks that need the
data or the output folder. Nothing here imports a deep-learning framework: a bad option or a
missing file is reported before TensorFlow or JAX loads."""
import dataclasses
import os
import sys

from . import checks, memory, names
from .atomic import check_new_folder, require_writable
from .batches import prepare_splits
from .checks import OptionError
from .errors import SrnnError

DEFAULT_SEED = 1337  # the original seeded NumPy with 1337: runs are reproducible by default
SEED_LIMIT = checks.SEED_LIMIT
LEARNING_RATE = 1e-3  # Adam's, as the original
AUDITION_SEQS, AUDITION_SECONDS = 2, 4.0

# Per-experiment defaults, as the original: `tiny` is its ~50 s demo, `all` Blizzard 2013 (~20 h).
# Any other name reads blizzard/NAME_parts and splits it by fractions: 80 % train, 10 % valid.
EXPERIMENTS = {
    "tiny": dict(nepochs=10, batchsize=2, trainstop=4, validstop=6),
    "all": dict(nepochs=3, batchsize=100, trainstop=8000, validstop=9000),
}
OTHER_EXPERIMENT = dict(nepochs=10, batchsize=2, trainstop=0.8, validstop=0.9)

# the architecture's options: each None takes the checkpoint's (--load) or ModelConfig's default
ARCHITECTURE = ("slowdim", "dim", "samplerate", "qtype", "q_levels", "emb_size", "frames", "rnn", "rnn_layers",
                "skip")


@dataclasses.dataclass
class TrainOptions:
    """Everything a training run can be told. None: the experiment's default (nepochs, batchsize,
    trainstop, validstop: EXPERIMENTS), the checkpoint's with `load` (seed, learning_rate,
    precision, the architecture), or the default model's (ModelConfig). The command line's flags
    are these names with dashes (`rnn_layers` is --rnn-layers), but for `audition_seqs` (--nseqs)
    and `audition_seconds` (--seconds)."""
    exp: str = "tiny"  # reads blizzard/EXP_parts; names the checkpoints EXP_srnn_szDIM_eN.h5
    nepochs: int = None
    batchsize: int = None
    trainstop: float = None  # an int line index of prompts.txt, or a fraction in (0, 1]
    validstop: float = None
    cutlen: int = 256
    svepoch: int = -1  # also save after epochs 0, N, 2N, ... (-1: only at the end)
    seed: int = None  # DEFAULT_SEED, or the checkpoint's
    load: str = None  # a checkpoint to go on from
    patience: int = 0  # stop after this many epochs without a better validation loss; 0: never
    learning_rate: float = None  # LEARNING_RATE, or the checkpoint's
    max_minutes: float = None  # stop after the epoch during which this much training time has passed
    tensorboard: str = None  # a folder for TensorBoard event files
    audition: int = 0  # generate clips after every this many epochs; 0: never
    audition_seqs: int = None  # AUDITION_SEQS
    audition_seconds: float = None  # AUDITION_SECONDS
    export: str = None  # after training, the best epoch's model as a SavedModel here
    distribute: str = "none"  # none | mirrored | multiworker (srnn.distribute, srnn.cluster)
    devices: tuple = None  # for mirrored: device names; None: every local device
    cluster_timeout: float = 180.0  # multiworker on an engine whose processes meet through srnn.cluster
    precision: str = None  # float32 | mixed_bfloat16 | mixed_float16 (srnn.precision); or the checkpoint's
    sparsity: float = None  # prune to this fraction of zero weights (srnn.sparse); None: dense, or load's
    prune_start: int = None  # the pruning schedule's first and last optimizer steps, from now
    prune_end: int = None
    prune_block: tuple = None  # (rows, cols) of a pruned block; None: srnn.sparse.DEFAULT_BLOCK
    scaling: str = "peak"  # of the audition clips and the export's audio (srnn.quantize.SCALINGS)
    no_cond: bool = False  # an unconditional model even on a labelled corpus
    slowdim: int = None
    dim: int = None
    samplerate: int = None
    qtype: str = None
    q_levels: int = None
    emb_size: int = None
    frames: tuple = None  # (8, 2), or "8,2"
    rnn: str = None
    rnn_layers: int = None
    skip: bool = None
    parts_root: str = names.PARTS_ROOT
    out_dir: str = "."
    xla: bool = None  # None: chosen by model size

    def check(self):
        """Each option's value on its own (what needs a file is checked with it): OptionError,
        naming the option."""
        from .distribute import KINDS
        from .precision import TRAIN
        from .quantize import SCALINGS

        for name in ("slowdim", "dim", "nepochs", "batchsize", "cutlen", "samplerate", "emb_size", "audition_seqs",
                     "q_levels", "rnn_layers"):
            if getattr(self, name) is not None:
                checks.positive(name, getattr(self, name), is_whole=True)
        for name in ("learning_rate", "max_minutes", "cluster_timeout", "audition_seconds"):
            if getattr(self, name) is not None:
                checks.positive(name, getattr(self, name))
        checks.whole("svepoch", self.svepoch)
        checks.count("patience", self.patience, "positive")
        checks.count("audition", self.audition, "a number of epochs")
        if self.seed is not None:
            checks.seed("seed", self.seed)
        checks.choice("distribute", self.distribute, KINDS)
        checks.choice("scaling", self.scaling, SCALINGS)
        if self.precision is not None:
            checks.choice("precision", self.precision, TRAIN)
        self.frames = None if self.frames is None else parse_frames(self.frames)
        self.devices = None if self.devices is None else parse_devices(self.devices)
        self._check_pruning()
        self._check_engine()
        return self

    def _check_pruning(self):
        from .sparse import MAX_STEP, parse_block

        if self.sparsity is not None:
            checks.fraction("sparsity", self.sparsity, "the fraction of weights pruned, e.g. 0.9")
        for name in ("prune_start", "prune_end", "prune_block"):
            if getattr(self, name) is not None and not self.sparsity:
                raise OptionError(name, f"{{{name}}} needs {{sparsity}} above 0 (the sparsity to prune to)")
        for name in ("prune_start", "prune_end"):
            value = getattr(self, name)
            if value is not None and not 0 <= checks.whole(name, value) <= MAX_STEP:
                raise OptionError(name, f"{{{name}}}={value} must be 0 or a positive number of optimizer steps, "
                                        f"at most {MAX_STEP}")
        if self.prune_start is not None and self.prune_end is not None and self.prune_start > self.prune_end:
            raise OptionError("prune_start", f"{{prune_start}}={self.prune_start} is after {{prune_end}}="
                                             f"{self.prune_end}: pruning must start before it ends")
        if self.prune_block is not None:
            block = parse_block(self.prune_block)
            if block is None:
                raise OptionError("prune_block", f"{{prune_block}} {checks.text(self.prune_block)}: give ROWSxCOLS, "
                                                 f"two positive numbers, e.g. 16x1")
            self.prune_block = block

    def _check_engine(self):
        check_engine_options(self.export, self.tensorboard)

    def with_defaults(self):
        """A copy with every default the run has without a checkpoint filled in: the experiment's
        (EXPERIMENTS), the seed, the precision, the audition's clips."""
        per_exp = EXPERIMENTS.get(self.exp, OTHER_EXPERIMENT)
        given = {k: v for k, v in per_exp.items() if getattr(self, k) is None}
        fixed = dict(seed=DEFAULT_SEED, precision="float32", audition_seqs=AUDITION_SEQS,
                     audition_seconds=AUDITION_SECONDS)
        given.update({k: v for k, v in fixed.items() if getattr(self, k) is None})
        return dataclasses.replace(self, **given)


def check_engine_options(export=None, tensorboard=None):
    """What this engine cannot do is refused before anything loads (srnn.engine.contract)."""
    import importlib.util

    from .engine import checked_backend, features

    name, can = checked_backend(), features()
    if export and not can.savedmodel:
        raise OptionError("export", f"{{export}} needs the TensorFlow backend (a TensorFlow SavedModel): run it "
                                    f"with KERAS_BACKEND=tensorflow (the {name} backend trains and samples)")
    if tensorboard and not can.owns_tensorflow and importlib.util.find_spec("tensorflow") is None:
        raise OptionError("tensorboard", "{tensorboard} writes TensorFlow's event files, and TensorFlow is not "
                                         "installed here: install it, or leave {tensorboard} out")


def parse_frames(frames):
    """`8,2` or (8, 2) -> (8, 2); OptionError for anything else."""
    try:
        parts = frames.replace(" ", "").split(",") if isinstance(frames, str) else list(frames)
        if any(isinstance(f, (bool, float)) for f in parts):
            raise ValueError
        return tuple(int(f) for f in parts)
    except (TypeError, ValueError):
        raise OptionError("frames", f"{{frames}} {checks.text(frames)}: expected frame sizes in samples separated "
                                    f"by commas, top tier first, e.g. 8,2") from None


def parse_devices(devices):
    """`GPU:0,GPU:1` or a sequence of names -> a tuple of names."""
    names_ = devices.split(",") if isinstance(devices, str) else list(devices)
    return tuple(str(d).strip() for d in names_ if str(d).strip())


def prepare(cfg, opts):
    """Everything that can be wrong with the data or the output folder, checked before a model is
    built: returns the Splits. (The run checks this before it imports TensorFlow.)"""
    check_out_dir(opts)
    splits = prepare_splits(
        names.exp_parts_dir(opts.exp, opts.parts_root), opts.trainstop, opts.validstop, opts.batchsize,
        opts.cutlen, cfg, hint=preprocess_hint(opts.exp, opts.parts_root),
        warn=lambda m: print(m, file=sys.stderr),
    )
    memory.check(memory.training_bytes(cfg, opts.batchsize, splits.train.cutlen),
                 f"training a model of {cfg.count_params():,} parameters with batch {opts.batchsize} and cutlen "
                 f"{splits.train.cutlen}", "lower {dim}/{slowdim}, {batchsize} or {cutlen}", option="batchsize")
    if opts.audition:  # checked now, not after the first epoch's training
        n = audition_length(cfg, opts.audition_seconds)
        memory.check(memory.audition_bytes(cfg, opts.audition_seqs, n),
                     f"auditioning {opts.audition_seqs:,} x {opts.audition_seconds:g} s",
                     "lower {audition_seconds} or {audition_seqs}", option="audition_seconds")
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
