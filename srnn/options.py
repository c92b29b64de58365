"""A training run's options, and the checks that need no model: they run before TensorFlow is
imported, so a bad flag or a missing file is reported at once."""
import dataclasses
import os
import sys

from . import names
from .atomic import can_write
from .batches import prepare_splits
from .errors import SrnnError


DEFAULT_SEED = 1337  # the original seeded NumPy with 1337: runs are reproducible by default
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
    parts_root: str = "blizzard"
    out_dir: str = "."
    xla: bool = None  # None: chosen by model size
    distribute: str = "none"  # none | mirrored | multiworker (srnn.distribute)
    devices: list = None  # for mirrored: device names; None: all local GPUs (or the CPU)


def prepare(cfg, opts):
    """Everything that can be wrong with the data or the output folder, checked before a model is
    built: returns the Splits. (The CLI calls this before it imports TensorFlow.)"""
    reason = can_write(opts.out_dir)
    if reason:
        raise SrnnError(f"cannot write checkpoints to {os.path.abspath(opts.out_dir or '.')} ({reason}): "
                        f"run from a writable folder")
    return prepare_splits(
        names.exp_parts_dir(opts.exp, opts.parts_root), opts.trainstop, opts.validstop, opts.batchsize,
        opts.cutlen, cfg,
        hint=f"run `python preprocess.py {os.path.join(opts.parts_root, opts.exp)}` first",
        warn=lambda m: print(m, file=sys.stderr),
    )
