"""The sampling rule: how each next level is chosen from the model's logits.

A Rule is a value that the compiled generation loop (srnn.sampler) is handed: its `static` part
selects a compilation (a Python value: argmax or not), its `arrays` are the loop's inputs (the
temperature of each sequence), and `draw` is the one place that turns logits into a level. A new
sampling control is a field here and a line in `draw`; the loop does not change.
"""
import dataclasses

import numpy as np

from . import engine

E = engine.module()
from keras import ops  # noqa: E402  (after the engine has loaded its framework quietly)

PICK_BLOCK = 16  # levels per block of the two-level inverse CDF


def _batch(t):
    """The batch size: static when traced with a known shape (XLA wants it), else dynamic."""
    return t.shape[0] if t.shape[0] is not None else ops.shape(t)[0]


def inverse_cdf_pick(p, u):
    """Index k with cdf[k-1] <= u * total < cdf[k], for p (batch, q) >= 0 and u (batch,) in [0, 1).

    Two levels, a block of 16 levels and then a level inside it: two cumulative sums of 16
    instead of one of 256, which XLA's CPU backend computes as a quadratic reduce-window.
    """
    B, q = _batch(p), p.shape[-1]
    n_blocks = -(-q // PICK_BLOCK)
    p = ops.pad(p, [[0, 0], [0, n_blocks * PICK_BLOCK - q]])  # zero-probability padding
    blocks = ops.reshape(p, (B, n_blocks, PICK_BLOCK))
    block_sums = ops.sum(blocks, axis=-1)
    block_cdf = ops.cumsum(block_sums, axis=-1)
    target = u * block_cdf[:, -1]
    b = ops.minimum(ops.sum(ops.cast(block_cdf <= target[:, None], "int32"), axis=-1), n_blocks - 1)
    inner = ops.cumsum(E.row_pick(blocks, b), axis=-1)
    # what is left of the target inside block b; kept below the block's own total so that float
    # rounding can never carry the pick onto a zero-probability level at the block's end
    rest = ops.minimum(target - (E.row_pick(block_cdf, b) - E.row_pick(block_sums, b)),
                       inner[:, -1] * (1.0 - 1e-6))
    j = ops.sum(ops.cast(inner <= rest[:, None], "int32"), axis=-1)
    return ops.minimum(b * PICK_BLOCK + j, q - 1)


@dataclasses.dataclass(frozen=True)
class Rule:
    """Draw each sequence's next level from softmax(logits / its temperature), or take the most
    likely one (`argmax`, the original's --debug 1). `temperature`: one per sequence (a NumPy
    array outside the loop, a tensor inside it)."""
    temperature: object
    argmax: bool = False

    @classmethod
    def of(cls, temperature, n_seqs, argmax=False):
        """The rule for `n_seqs` sequences: one temperature for all, or one each."""
        temps = np.broadcast_to(np.asarray(temperature, np.float32), (n_seqs,)).copy()
        return cls(temps, bool(argmax))

    @property
    def static(self):
        """What selects a compilation: Python values, hashable."""
        return (self.argmax,)

    @property
    def arrays(self):
        """What the compiled loop takes as inputs."""
        return (self.temperature,)

    @classmethod
    def rebuild(cls, static, arrays):
        """The rule inside the compiled loop, from its two parts."""
        (argmax,), (temperature,) = static, arrays
        return cls(temperature, argmax)

    def draw(self, logits, u):
        """The next level of each sequence from its logits (batch, q) and one uniform number in
        [0, 1) per sequence `u` (batch,) (inverse CDF: Gumbel-max would need q numbers per draw,
        and drawing them was most of the time of a small model). Returns (levels (batch,) int32,
        the log-probabilities under the rule (batch, q))."""
        logp = ops.log_softmax(logits / self.temperature[:, None])
        if self.argmax:
            return ops.cast(ops.argmax(logp, axis=-1), "int32"), logp
        return inverse_cdf_pick(ops.exp(logp), u), logp
