"""Block sparsity, trained in (WaveRNN's recipe): which matrices are pruned, the schedule by which
their sparsity rises, and the balanced block masks. NumPy only: the CLI checks the flags with it
before a framework loads, and the masks are computed on the host between training steps.

A weight matrix is stored (inputs, outputs); a block is `rows` outputs by `cols` inputs, named
ROWSxCOLS as LPCNet and WaveRNN name theirs (16x1: 16 outputs of one input). Masks are
**balanced**: every block column (the `rows` outputs of one block) keeps the same number of
blocks, so the sampler's product is a gather of the kept inputs and a dense product of one fixed
shape (srnn.packed.SparseMatrix), which XLA runs well on every backend.

Which matrices: those that make a generated sample's bytes (every RNN layer's recurrent matrix
and its input matrix where the input is a vector of the model's width, every frame tier's output
layer, the sample MLP's two hidden layers and its q_levels-way output layer). The output layer is
read at every sample: at dim 1024 it is 1 MB, and left dense it alone held one stream of a 95 %
sparse model to 10,000 samples/s (bench/sample_speed.py; 22,000 pruned, in 32x1 blocks). Dense
stay: the top tier's first input matrix (it reads 8 samples: 8 rows), each lower tier's input
layer (frame rows), the sample MLP's input layer (it becomes lookup tables, one row read per
sample), biases, gains, initial states, label tables: small, or not read as matrices.
"""
import dataclasses
import math
import re

import numpy as np

# rows (outputs) x cols (inputs). Wide blocks of one input run fastest in the sampler (a gather of
# the kept inputs, then one batched matmul: bench/sparse_layouts.py); at dim 1024, 95 % sparse, one
# stream: 16x1 (LPCNet's) 15,000 samples/s, 32x1 22,000, 64x1 24,000 (bench/sample_speed.py
# --sparse). 32x1 is real time and tiles every width that is a multiple of 32.
DEFAULT_BLOCK = (32, 1)
PRUNE_UPDATES = 100  # mask updates over a gradual schedule (Zhu & Gupta prune every 100-1000 steps)
DEFAULT_START, DEFAULT_END = 0.2, 0.6  # fractions of a run's optimizer steps, when not given
SPARSE_MIN = 0.5  # a matrix at least this sparse (in blocks) is sampled in the block-sparse layout


def mask_suffixes(cfg):
    """{weight-norm `v` name: its mask's name} of every pruned matrix of a model of `cfg`, in the
    checkpoint's names (`frame0/rnn0/vh` -> `frame0/rnn0/maskh`)."""
    out = {}
    for k in range(len(cfg.frames)):
        tier = f"frame{k}"
        for layer in range(cfg.rnn_layers):
            rnn = f"{tier}/rnn{layer}"
            if k or layer:  # the top tier's first layer reads the frame itself: frame rows
                out[f"{rnn}/vx"] = f"{rnn}/maskx"
            out[f"{rnn}/vh"] = f"{rnn}/maskh"
        out[f"{tier}/out/v"] = f"{tier}/out/mask"
    out["sample/h1/v"] = "sample/h1/mask"
    out["sample/h2/v"] = "sample/h2/mask"
    out["sample/out/v"] = "sample/out/mask"
    return out


def parse_block(text):
    """`16x1` -> (16, 1); None for anything else (ASCII digits only: str.isdigit() takes '²',
    which int() refuses)."""
    match = re.fullmatch(r"([0-9]+)x([0-9]+)", str(text).lower())
    if not match or int(match[1]) < 1 or int(match[2]) < 1:
        return None
    return int(match[1]), int(match[2])


def block_problem(shapes, block):
    """The first pruned matrix that `block` (rows, cols) does not tile, in words, or None.
    `shapes`: {v name: (inputs, outputs)}."""
    rows, cols = block
    for name, (n_in, n_out) in shapes.items():
        if n_out % rows or n_in % cols:
            return f"{name} is {n_in} inputs x {n_out} outputs, which {rows}x{cols} blocks do not tile"
    return None


def kept_blocks(n_blocks, sparsity):
    """Blocks a block column keeps at `sparsity`: at least one (an output with no input would be a
    constant, and the weight norm's column norm would be zero)."""
    return max(1, min(n_blocks, int(round((1.0 - sparsity) * n_blocks))))


def block_scores(w, block):
    """Each block's squared magnitude (inputs/cols, outputs/rows) of a matrix w (inputs, outputs)."""
    rows, cols = block
    n_in, n_out = w.shape
    w = np.asarray(w, np.float64).reshape(n_in // cols, cols, n_out // rows, rows)
    return np.square(w).sum(axis=(1, 3))


def expand(block_mask, block):
    """A (inputs/cols, outputs/rows) block mask as the (inputs, outputs) float32 mask."""
    rows, cols = block
    return np.repeat(np.repeat(block_mask, cols, axis=0), rows, axis=1).astype(np.float32)


def balanced_mask(w, mask, sparsity, block):
    """The mask at `sparsity`: in each block column the largest blocks of w (the effective weights)
    among those `mask` keeps, so a pruned block never comes back while the sparsity rises. Ties go
    to the lower input index (a stable sort), so the mask is a function of the weights alone."""
    alive = block_scores(mask, block) > 0
    scores = np.where(alive, block_scores(np.asarray(w) * np.asarray(mask), block), -1.0)  # pruned ones last
    keep = kept_blocks(scores.shape[0], sparsity)
    order = np.argsort(-scores, axis=0, kind="stable")[:keep]  # per block column: its `keep` largest
    kept = np.zeros(scores.shape, bool)
    np.put_along_axis(kept, order, True, axis=0)
    return expand(kept & alive, block)  # (a column that kept fewer blocks than `keep`: no more)


def random_mask(shape, density, block, rng):
    """A balanced mask of `density` with random blocks (the speed benchmarks': any mask runs as fast)."""
    rows, cols = block
    nb_in, nb_out = shape[0] // cols, shape[1] // rows
    keep = kept_blocks(nb_in, 1.0 - density)
    kept = np.zeros((nb_in, nb_out), bool)
    for j in range(nb_out):
        kept[rng.choice(nb_in, keep, replace=False), j] = True
    return expand(kept, block)


def kept_per_column(w, block, whole_blocks=False):
    """The most nonzero blocks in any block column of w, and the number of blocks a column has:
    what a balanced layout of w must hold (srnn.packed.SparseMatrix). `whole_blocks`: w is a mask,
    each block all ones or all zeros, so one element a block says it (fast on a big model)."""
    rows, cols = block
    nonzero = (np.asarray(w)[::cols, ::rows] != 0) if whole_blocks else block_scores(w, block) > 0
    return int(nonzero.sum(axis=0).max(initial=0)), nonzero.shape[0]


def mask_sparsity(masks):
    """The pruned fraction of the masked matrices' weights (0 for none)."""
    total = sum(m.size for m in masks)
    return 0.0 if not total else 1.0 - float(sum(np.count_nonzero(m) for m in masks)) / total


@dataclasses.dataclass(frozen=True)
class Schedule:
    """Zhu & Gupta's cubic schedule (WaveRNN's): from `initial` at optimizer step `start` the
    sparsity rises to `target` at `end`, fast at first and slowly at the end (the weights that are
    left have time to take over), s(t) = target + (initial - target) * (1 - (t - start) /
    (end - start))^3; fixed after `end`. start == end prunes at once (one-shot). The masks are
    updated PRUNE_UPDATES times over the schedule (every `every` steps)."""
    target: float
    start: int
    end: int
    initial: float = 0.0

    @property
    def every(self):
        return max(1, (self.end - self.start) // PRUNE_UPDATES)

    def at(self, step):
        """The sparsity the masks should have for optimizer step `step` (a step numbered from 0
        is computed with the masks of the last update at or before it)."""
        if step < self.start:
            return self.initial
        if step >= self.end:
            return self.target
        last = self.start + (step - self.start) // self.every * self.every
        return self.target + (self.initial - self.target) * (1.0 - (last - self.start) / (self.end - self.start)) ** 3

    def to_state(self):
        return {"sparsity_target": self.target, "prune_start": self.start, "prune_end": self.end,
                "sparsity_initial": self.initial}

    @classmethod
    def from_state(cls, train):
        if "sparsity_target" not in train:
            return None
        return cls(float(train["sparsity_target"]), int(train["prune_start"]), int(train["prune_end"]),
                   float(train["sparsity_initial"]))


STATE_KEYS = ("sparsity_target", "prune_start", "prune_end", "sparsity_initial")  # checked by srnn.checkpoint
MAX_STEP = 2 ** 62  # the last optimizer step a schedule may name: a checkpoint naming a later one is refused


def default_steps(value, fraction, run_steps):
    """--prune-start / --prune-end: the flag's steps, else `fraction` of the run's steps."""
    return int(value) if value is not None else int(math.floor(fraction * run_steps))
