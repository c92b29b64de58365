"""Pruning during training (srnn.sparse has the schedule and the masks): between optimizer steps,
when the schedule says the sparsity has risen, each pruned matrix's mask is recomputed from its
effective weights, and its pruned weights and their Adam moments are set to zero.

The mask multiplies v inside every kernel (srnn.layers.masked), so a pruned weight is zero in
every forward pass and its gradient is zero; with its moments zeroed too, Adam's update of it is
exactly zero, so after every step (on every engine and under --distribute) the pruned weights
are zero in the variables as well. The masks are weights of the model: checkpoints hold them, and
a resumed run recomputes nothing it had (the schedule is a function of the optimizer's step).
"""
import numpy as np

from . import sparse


def effective(v, g, mask):
    """A weight-normalised kernel's effective matrix g * (v*mask) / ||v*mask||, in NumPy."""
    vm = np.asarray(v, np.float64) * mask
    norm = np.sqrt(np.square(vm).sum(axis=0))
    return vm * (np.asarray(g, np.float64) / np.where(norm > 0, norm, 1.0))


class Pruner:
    """Raises a model's sparsity along `schedule` (srnn.sparse.Schedule) in `block`s, between the
    steps of `steps` (an engine's training steps, whose optimizer holds the moments)."""

    def __init__(self, model, steps, schedule, block):
        self.model, self.steps, self.schedule, self.block = model, steps, schedule, tuple(block)
        self.kernels = model.pruned_kernels()
        self.kept = {name: self._kept(mask.numpy()) for name, (_, _, mask) in self.kernels.items()}

    def _kept(self, mask):
        return sparse.kept_per_column(mask, self.block, whole_blocks=True)[0]

    def _due(self, step):
        """The sparsity for `step`, if some mask keeps more blocks than it allows; else None. Never
        while the schedule stands at its start: each matrix rounds its blocks on its own, so the
        model's overall sparsity there can ask one of them for a block fewer than it keeps."""
        s = self.schedule.at(step)
        if s <= self.schedule.initial:
            return None
        for name, (v, _, _) in self.kernels.items():
            n_blocks = v.shape[0] // self.block[1]
            if sparse.kept_blocks(n_blocks, s) < self.kept[name]:
                return s
        return None

    def before_step(self):
        """Called before each training step: prune if the schedule has moved on. True if it did."""
        s = self._due(self.steps.iterations())
        if s is None:
            return False
        self.prune(s)
        return True

    def prune(self, sparsity):
        """Every pruned matrix to `sparsity` (never lower than it is)."""
        self.steps.sync()  # the JAX engine's steps hold the weights until then; they re-read them after
        opt = self.steps.optimizer
        for name, (v, g, mask) in self.kernels.items():
            old = mask.numpy()
            new = sparse.balanced_mask(effective(v.numpy(), g.numpy(), old), old, sparsity, self.block)
            mask.assign(new)
            v.assign(v.numpy() * new)
            for moments in _moments(opt, v):
                moments.assign(moments.numpy() * new)
            self.kept[name] = self._kept(new)

    def reached(self):
        """The pruned fraction of the pruned matrices now."""
        return sparse.mask_sparsity([mask.numpy() for _, _, mask in self.kernels.values()])


def _moments(optimizer, variable):
    """Adam's first and second moments of `variable` (Keras' Adam keeps them by the variable's
    index), or none where the optimizer does not say."""
    if optimizer is None or not hasattr(optimizer, "_get_variable_index"):
        return []
    i = optimizer._get_variable_index(variable)
    return [store[i] for store in (getattr(optimizer, "_momentums", None), getattr(optimizer, "_velocities", None))
            if store is not None]


def prune_to(model, sparsity, block):
    """A model's masks set at once to `sparsity` from its weights (no optimizer: for benchmarks,
    tests and a dense model pruned after training)."""
    class _NoSteps:
        optimizer = None

        def sync(self):
            pass

    Pruner(model, _NoSteps(), None, block).prune(sparsity)
